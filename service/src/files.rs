//! Reading images by path, only inside the configured allowed directories.
//!
//! A request path is checked twice:
//! 1. lexically, before touching the file system: it must be absolute, contain no `..`, and
//!    lie under an allowed directory — so a refused path does not even reveal whether it
//!    exists (403);
//! 2. after `canonicalize` (which resolves every symlink): the real file must still lie under
//!    the canonical form of an allowed directory — a symlink pointing out is refused (403).
//!
//! Only then does "missing" become 404. The final open uses `O_NOFOLLOW` so the last
//! component cannot be swapped for a symlink between the check and the read; the size is
//! bounded by the same limit as request bodies.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// The allowed directories, in configured and canonical form.
#[derive(Debug, Clone, Default)]
pub struct AllowedDirs {
    dirs: Vec<(PathBuf, PathBuf)>,
}

/// Why a referenced file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Outside every allowed directory (or no directories are allowed).
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
        /// The path as the request gave it (for the log, never for the client).
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

    /// Resolves a request's path to a canonical file inside an allowed directory.
    pub fn resolve(&self, requested: &Path) -> Result<PathBuf, FileError> {
        let shown = requested.display().to_string();
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
        let canonical = requested.canonicalize().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => {
                FileError::NotFound(format!("{shown} does not exist"))
            }
            _ => FileError::Io {
                path: shown.clone(),
                source: e,
            },
        })?;
        if !self.dirs.iter().any(|(_, dir)| canonical.starts_with(dir)) {
            return Err(FileError::Forbidden(format!(
                "{shown} resolves (through a symbolic link) outside the allowed directories"
            )));
        }
        if !canonical.is_file() {
            return Err(FileError::NotFound(format!(
                "{shown} is not a regular file"
            )));
        }
        Ok(canonical)
    }

    /// Resolves and reads a file of at most `limit` bytes (blocking).
    pub fn read(&self, requested: &Path, limit: usize) -> Result<Vec<u8>, FileError> {
        let path = self.resolve(requested)?;
        let shown = requested.display().to_string();
        let io = |source| FileError::Io {
            path: shown.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_o_nofollow())
            .open(&path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.take(limit as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() > limit {
            return Err(FileError::TooLarge(format!(
                "{shown} is larger than the {limit}-byte limit"
            )));
        }
        Ok(bytes)
    }
}

/// `O_NOFOLLOW` without a libc dependency: the value is fixed per architecture by the kernel ABI.
const fn libc_o_nofollow() -> i32 {
    if cfg!(any(target_arch = "aarch64", target_arch = "arm")) {
        0o100000
    } else {
        0o400000
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
}
