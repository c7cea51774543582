//! Reading images by path, only inside the configured allowed directories.
//!
//! A request path goes through four gates, cheapest first:
//! 1. the name itself, before any system call: no NUL or control characters (they can forge
//!    log lines and are never part of a real image name), at most 4095 bytes in all and 255
//!    per component (the kernel's own limits, so "File name too long" cannot surface as a
//!    500) — refused with 403;
//! 2. lexically: absolute, no `..`, under an allowed directory — so a refused path does not
//!    even reveal whether it exists (403);
//! 3. after `canonicalize` (which resolves every symlink): the real file must still lie under
//!    the canonical form of an allowed directory — a symlink pointing out is refused (403);
//! 4. the open itself is relative to the allowed directory with `openat2(RESOLVE_BENEATH |
//!    RESOLVE_NO_SYMLINKS)` (plain `open` with `O_NOFOLLOW` on kernels before 5.6), always
//!    `O_NONBLOCK`, and the *opened descriptor* is `fstat`ed: anything but a regular file is
//!    404. So a symlink, a FIFO or a device swapped in after gate 3 cannot redirect the read,
//!    and cannot block the thread (opening a FIFO for reading without `O_NONBLOCK` waits for a
//!    writer forever, which used to keep the process alive after shutdown).
//!
//! Only then does "missing" become 404. The size is bounded by the same limit as request
//! bodies. Names appear in messages escaped (`{:?}`) and shortened, never raw.

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Longest path the kernel accepts (`PATH_MAX` less the terminating NUL).
const MAX_PATH_BYTES: usize = 4095;
/// Longest single path component (`NAME_MAX`).
const MAX_COMPONENT_BYTES: usize = 255;
/// How much of a refused name is echoed back in messages.
const SHOWN_CHARS: usize = 120;

/// The allowed directories, in configured and canonical form.
#[derive(Debug, Clone, Default)]
pub struct AllowedDirs {
    dirs: Vec<(PathBuf, PathBuf)>,
}

/// Why a referenced file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Outside every allowed directory (or no directories are allowed), or a name the
    /// service never opens.
    #[error("{0}")]
    Forbidden(String),
    /// Inside, but missing or not a regular file.
    #[error("{0}")]
    NotFound(String),
    /// Larger than the limit.
    #[error("{0}")]
    TooLarge(String),
    /// Any other I/O failure; details are logged, not returned.
    #[error("reading {path}")]
    Io {
        /// The file, escaped and shortened as in every message.
        path: String,
        /// The failure other than "not found" and "not a file", e.g. permission denied.
        source: std::io::Error,
    },
}

impl AllowedDirs {
    /// Canonicalises each directory (they must exist).
    pub fn new(dirs: &[PathBuf]) -> std::io::Result<Self> {
        let dirs = dirs
            .iter()
            .map(|d| Ok((d.clone(), d.canonicalize()?)))
            .collect::<std::io::Result<_>>()?;
        Ok(Self { dirs })
    }

    /// True when at least one directory is allowed.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// Resolves a request's path to a canonical file inside an allowed directory; returns it
    /// with the canonical allowed directory that contains it.
    pub fn resolve(&self, requested: &Path) -> Result<(PathBuf, PathBuf), FileError> {
        let shown = shown(requested);
        check_name(requested, &shown)?;
        if self.dirs.is_empty() {
            return Err(FileError::Forbidden(
                "file references are disabled: no allowed directories are configured".into(),
            ));
        }
        if !requested.is_absolute() {
            return Err(FileError::Forbidden(format!(
                "{shown} is not an absolute path"
            )));
        }
        if requested.components().any(|c| c == Component::ParentDir) {
            return Err(FileError::Forbidden(format!(
                "{shown} contains '..'; paths must stay inside an allowed directory"
            )));
        }
        let lexically_inside = self.dirs.iter().any(|(given, canonical)| {
            requested.starts_with(given) || requested.starts_with(canonical)
        });
        if !lexically_inside {
            return Err(FileError::Forbidden(format!(
                "{shown} is outside the allowed directories"
            )));
        }
        let canonical = requested
            .canonicalize()
            .map_err(|e| classify_io(e, &shown))?;
        let dir = self
            .dirs
            .iter()
            .map(|(_, dir)| dir)
            .find(|dir| canonical.starts_with(dir))
            .ok_or_else(|| {
                FileError::Forbidden(format!(
                    "{shown} resolves (through a symbolic link) outside the allowed directories"
                ))
            })?;
        Ok((canonical, dir.clone()))
    }

    /// Resolves and reads a file of at most `limit` bytes (blocking, but never on a FIFO or
    /// device: see the module docs).
    pub fn read(&self, requested: &Path, limit: usize) -> Result<Vec<u8>, FileError> {
        let shown = shown(requested);
        let (canonical, dir) = self.resolve(requested)?;
        let file = open_beneath(&dir, &canonical).map_err(|e| classify_errno(e, &shown))?;
        let stat = rustix::fs::fstat(&file).map_err(|e| classify_errno(e, &shown))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(FileError::NotFound(format!(
                "{shown} is not a regular file"
            )));
        }
        if u64::try_from(stat.st_size).unwrap_or(0) > limit as u64 {
            return Err(too_large(&shown, limit));
        }
        // Sized from the file up front: growing by doubling would hold about twice the file
        // while it is copied.
        let size = usize::try_from(stat.st_size).unwrap_or(0).min(limit);
        let mut bytes = Vec::with_capacity(size.saturating_add(1));
        File::from(file)
            .take(limit as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| classify_io(e, &shown))?;
        if bytes.len() > limit {
            return Err(too_large(&shown, limit));
        }
        Ok(bytes)
    }
}

/// Opens `canonical` (which lies in `dir`) without following any symbolic link and without
/// blocking, refusing to leave `dir` on kernels that have `openat2`.
fn open_beneath(dir: &Path, canonical: &Path) -> Result<rustix::fd::OwnedFd, Errno> {
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let relative = match canonical.strip_prefix(dir) {
        Ok(rest) if !rest.as_os_str().is_empty() => rest,
        // The allowed directory itself: opened so that fstat reports "not a regular file".
        _ => Path::new("."),
    };
    let dir_fd = rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    // EAGAIN: a concurrent rename raced the lookup; the kernel asks for a retry.
    for _ in 0..3 {
        match rustix::fs::openat2(&dir_fd, relative, flags, Mode::empty(), resolve) {
            Err(Errno::AGAIN) => continue,
            // No openat2 (Linux < 5.6) or a seccomp filter refusing it: the final component
            // is still never followed, and the descriptor is still checked.
            Err(Errno::NOSYS | Errno::PERM) => break,
            other => return other,
        }
    }
    rustix::fs::open(canonical, flags | OFlags::NOFOLLOW, Mode::empty())
}

/// Gate 1: names the service never passes to the kernel.
fn check_name(requested: &Path, shown: &str) -> Result<(), FileError> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = requested.as_os_str().as_bytes();
    let refuse = |why: &str| Err(FileError::Forbidden(format!("{shown} {why}")));
    if bytes.contains(&0) {
        return refuse("contains a NUL byte");
    }
    if String::from_utf8_lossy(bytes).chars().any(char::is_control) {
        return refuse("contains control characters");
    }
    if bytes.len() > MAX_PATH_BYTES {
        return refuse(&format!(
            "is {} bytes long; paths may have at most {MAX_PATH_BYTES}",
            bytes.len()
        ));
    }
    if requested
        .components()
        .any(|c| c.as_os_str().len() > MAX_COMPONENT_BYTES)
    {
        return refuse(&format!(
            "has a component longer than {MAX_COMPONENT_BYTES} bytes"
        ));
    }
    Ok(())
}

/// The name as it appears in messages and logs: quoted with escapes, at most
/// [`SHOWN_CHARS`] characters.
fn shown(requested: &Path) -> String {
    let escaped = format!("{:?}", requested.to_string_lossy());
    if escaped.chars().count() <= SHOWN_CHARS {
        return escaped;
    }
    let head: String = escaped.chars().take(SHOWN_CHARS).collect();
    format!("{head}…\" ({} bytes)", requested.as_os_str().len())
}

fn too_large(shown: &str, limit: usize) -> FileError {
    FileError::TooLarge(format!("{shown} is larger than the {limit}-byte limit"))
}

fn classify_errno(e: Errno, shown: &str) -> FileError {
    classify_io(e.into(), shown)
}

/// Maps the errors a hostile or changing directory can cause to 403/404; the rest are
/// internal errors.
fn classify_io(e: std::io::Error, shown: &str) -> FileError {
    match Errno::from_io_error(&e) {
        Some(Errno::NOENT | Errno::NOTDIR) => {
            FileError::NotFound(format!("{shown} does not exist"))
        }
        Some(Errno::LOOP | Errno::XDEV) => FileError::Forbidden(format!(
            "{shown} is or passes through a symbolic link that changed while it was opened"
        )),
        Some(Errno::NAMETOOLONG) => FileError::Forbidden(format!("{shown} is too long")),
        Some(Errno::ACCESS) => {
            FileError::Forbidden(format!("{shown} is not readable by the service"))
        }
        _ => FileError::Io {
            path: shown.to_string(),
            source: e,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_refused_and_missing_is_not_found() {
        let root = tempfile::tempdir().unwrap();
        let allowed = root.path().join("allowed");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(&allowed).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(allowed.join("a.png"), b"x").unwrap();
        std::fs::write(outside.join("secret.png"), b"s").unwrap();
        std::os::unix::fs::symlink(outside.join("secret.png"), allowed.join("link.png")).unwrap();
        std::os::unix::fs::symlink(allowed.join("a.png"), allowed.join("inner.png")).unwrap();
        let dirs = AllowedDirs::new(std::slice::from_ref(&allowed)).unwrap();

        assert_eq!(dirs.read(&allowed.join("a.png"), 10).unwrap(), b"x");
        assert_eq!(dirs.read(&allowed.join("inner.png"), 10).unwrap(), b"x");
        let err = |p: PathBuf| dirs.read(&p, 10).unwrap_err();
        assert!(matches!(
            err(allowed.join("../outside/secret.png")),
            FileError::Forbidden(_)
        ));
        assert!(matches!(
            err(allowed.join("link.png")),
            FileError::Forbidden(_)
        ));
        assert!(matches!(
            err(outside.join("secret.png")),
            FileError::Forbidden(_)
        ));
        assert!(matches!(
            err("relative.png".into()),
            FileError::Forbidden(_)
        ));
        assert!(matches!(
            err(allowed.join("missing.png")),
            FileError::NotFound(_)
        ));
        assert!(matches!(err(allowed.clone()), FileError::NotFound(_)));
        assert!(matches!(
            dirs.read(&allowed.join("a.png"), 0).unwrap_err(),
            FileError::TooLarge(_)
        ));
        assert!(matches!(
            AllowedDirs::default()
                .read(&allowed.join("a.png"), 10)
                .unwrap_err(),
            FileError::Forbidden(_)
        ));
    }

    fn allowed_dir() -> (tempfile::TempDir, PathBuf, AllowedDirs) {
        let root = tempfile::tempdir().unwrap();
        let allowed = root.path().canonicalize().unwrap();
        let dirs = AllowedDirs::new(std::slice::from_ref(&allowed)).unwrap();
        (root, allowed, dirs)
    }

    #[test]
    fn a_fifo_is_not_found_and_does_not_block() {
        let (_root, allowed, dirs) = allowed_dir();
        let fifo = allowed.join("pipe.png");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // Without O_NONBLOCK this open would wait for a writer forever.
        let err = dirs.read(&fifo, 10).unwrap_err();
        assert!(
            matches!(err, FileError::NotFound(ref m) if m.contains("not a regular file")),
            "{err}"
        );
    }

    #[test]
    fn names_the_kernel_would_refuse_are_forbidden_before_any_system_call() {
        let (_root, allowed, dirs) = allowed_dir();
        let named = |name: &str| dirs.read(&allowed.join(name), 10).unwrap_err();
        for (name, why) in [
            ("a\0b.png", "NUL"),
            ("a\nfake log line.png", "control characters"),
            ("a\u{1b}[31m.png", "control characters"),
        ] {
            let err = named(name);
            assert!(
                matches!(err, FileError::Forbidden(ref m) if m.contains(why)),
                "{err}"
            );
            assert!(!err.to_string().contains('\n'), "escaped: {err}");
        }
        let long_component = "x".repeat(10_000);
        let err = named(&long_component);
        assert!(matches!(err, FileError::Forbidden(_)), "{err}");
        assert!(err.to_string().len() < 400, "not echoed whole: {err}");
        let long_path = vec!["x".repeat(200); 30].join("/");
        assert!(matches!(named(&long_path), FileError::Forbidden(_)));
    }

    #[test]
    fn symlink_loops_and_links_in_the_path_are_forbidden() {
        let (_root, allowed, dirs) = allowed_dir();
        std::os::unix::fs::symlink(allowed.join("loop.png"), allowed.join("loop.png")).unwrap();
        let err = dirs.read(&allowed.join("loop.png"), 10).unwrap_err();
        assert!(matches!(err, FileError::Forbidden(_)), "{err}");
    }

    #[test]
    fn a_symlink_swapped_in_after_resolution_is_not_followed() {
        // The race of gate 3 and the open, replayed in order: resolve, swap, open.
        let (_root, allowed, dirs) = allowed_dir();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        std::fs::write(allowed.join("a.png"), b"x").unwrap();
        let (canonical, dir) = dirs.resolve(&allowed.join("a.png")).unwrap();
        std::fs::remove_file(&canonical).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), &canonical).unwrap();
        let err = open_beneath(&dir, &canonical).unwrap_err();
        assert_eq!(err, Errno::LOOP);
        assert!(matches!(classify_errno(err, "x"), FileError::Forbidden(_)));
        // A directory in the path swapped for a link is refused too (openat2 kernels).
        std::fs::create_dir(allowed.join("sub")).unwrap();
        std::fs::write(allowed.join("sub/b.png"), b"x").unwrap();
        let (canonical, dir) = dirs.resolve(&allowed.join("sub/b.png")).unwrap();
        std::fs::remove_dir_all(allowed.join("sub")).unwrap();
        std::os::unix::fs::symlink(outside.path(), allowed.join("sub")).unwrap();
        std::fs::write(outside.path().join("b.png"), b"s").unwrap();
        assert!(open_beneath(&dir, &canonical).is_err());
    }
}
