//! Finding `libonnxruntime.so` at run time and opening it, once per process.
//!
//! Nothing links against ONNX Runtime: `ort`'s `load-dynamic` feature opens the library from a
//! path given at run time. Discovery tries, in order, and the first place holding a library
//! wins:
//!
//! 1. an explicit path from configuration (the library file, or a directory holding one);
//! 2. the model directory (a model may ship the runtime it was validated with);
//! 3. the `ONNXRUNTIME_LIBRARY_PATH` environment variable (file or directory);
//! 4. the Python `onnxruntime` package's copy, `onnxruntime/capi/libonnxruntime.so.<version>`
//!    in the `site-packages` / `dist-packages` of the active virtualenv, conda environment,
//!    `~/.local`, `/usr/local` and `/usr`;
//! 5. the system's library directories: `LD_LIBRARY_PATH`, then `/usr/local/lib`,
//!    `/usr/lib/<multiarch>`, `/usr/lib`, `/lib/<multiarch>`, `/lib`.
//!
//! In a directory, `libonnxruntime.so` wins over versioned names (`libonnxruntime.so.1.22.1`,
//! as the wheel ships it); among those the highest version wins. Step 5 looks at files rather
//! than asking the dynamic loader by bare name, because `ort` panics when the loader fails: an
//! absent library must be a "not found" error that lists where it looked.
//!
//! An explicit path that holds no library is an error, not a reason to fall through: a user
//! who names a library means that one.
//!
//! The walk (the places, their order, first wins, the "looked at" list) is
//! `native-lib-discovery`'s, shared with `dlr-sys`; the versioned file names and the
//! once-per-process loading are this crate's own.
//!
//! **One library per process.** `ort` keeps the loaded library and its environment in process
//! globals. The first successful [`OnnxRuntime::discover`] decides; later calls get the same
//! runtime when they resolve to the same file, and [`Error::AlreadyLoaded`] otherwise. A failed
//! load poisons `ort`'s globals, so it is remembered and reported by every later call.
//!
//! **Version.** This build speaks the C API of ONNX Runtime 1.22 ([`crate::API_MINOR_VERSION`]).
//! A versioned file name older than that is refused before loading; `ort` itself refuses an
//! older library whose name carries no version (reported as [`Error::LibraryLoad`]), and
//! accepts newer ones (the C API is backward compatible).

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use native_lib_discovery::{self as discovery, Rules, System};

use crate::error::Error;

/// The unversioned file name; versioned copies are `libonnxruntime.so.<major>.<minor>.<patch>`.
pub const LIBRARY_FILE_NAME: &str = "libonnxruntime.so";

/// Environment variable naming a `libonnxruntime.so*` file or a directory that holds one.
pub const LIBRARY_PATH_ENV: &str = "ONNXRUNTIME_LIBRARY_PATH";

/// Where to look for ONNX Runtime besides the fixed places (the explicit path and the model
/// directory); which rule found the library; one place discovery considers (a library file or
/// a directory to look into). The shared discovery walk's own types.
pub use native_lib_discovery::{
    Place as Candidate, Search as LibrarySearch, Source as LibrarySource,
};

/// ONNX Runtime's discovery rules: the Python `onnxruntime` package keeps versioned copies
/// in `onnxruntime/capi`; the system's library directories are looked into rather than asking
/// the loader (see the module docs).
const RULES: Rules = Rules {
    env_var: LIBRARY_PATH_ENV,
    python_package_path: "onnxruntime/capi",
    python_data_path: None,
    system: System::Directories,
};

/// Every place discovery would look, in order (places that do not exist included, so that a
/// "not found" error can say exactly where it looked).
pub fn candidates(search: &LibrarySearch) -> Vec<Candidate> {
    search.places(&RULES)
}

/// The library discovery picks, and the rule that found it, without loading it.
pub fn resolve(search: &LibrarySearch) -> Result<(PathBuf, LibrarySource), Error> {
    discovery::walk(candidates(search), |place| library_at(&place.path))
        .map(|(file, place)| (file, place.source))
        .map_err(|not_found| Error::LibraryNotFound {
            searched: not_found.searched,
        })
}

/// The library a place holds, if any: the file itself, or the one a directory holds.
fn library_at(path: &Path) -> Option<PathBuf> {
    if path.is_dir() {
        library_in_dir(path)
    } else {
        path.is_file().then(|| path.to_path_buf())
    }
}

/// `libonnxruntime.so` in `dir`, else its highest-versioned `libonnxruntime.so.X.Y.Z`.
fn library_in_dir(dir: &Path) -> Option<PathBuf> {
    let plain = dir.join(LIBRARY_FILE_NAME);
    if plain.is_file() {
        return Some(plain);
    }
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = version_in_file_name(&name)?;
            let path = entry.path();
            path.is_file().then_some((version, path))
        })
        .max()
        .map(|(_, path)| path)
}

/// `(major, minor, patch)` from `libonnxruntime.so.1.22.1` (missing parts are 0).
fn version_in_file_name(name: &str) -> Option<(u32, u32, u32)> {
    let rest = name.strip_prefix(LIBRARY_FILE_NAME)?.strip_prefix('.')?;
    let mut parts = rest.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().unwrap_or(Some(0))?;
    let patch = parts.next().unwrap_or(Some(0))?;
    Some((major, minor, patch))
}

/// The version a library's file name (or, for a symlink, its target's name) carries.
fn version_of_file(path: &Path) -> Option<(u32, u32, u32)> {
    let named = |p: &Path| version_in_file_name(p.file_name()?.to_str()?);
    named(path).or_else(|| named(&std::fs::canonicalize(path).ok()?))
}

/// The loaded ONNX Runtime: which file, found how, and its version.
#[derive(Debug)]
pub struct OnnxRuntime {
    path: PathBuf,
    canonical: PathBuf,
    source: LibrarySource,
    version: String,
}

/// What this process has done with ONNX Runtime so far.
enum State {
    Unloaded,
    Loaded(Arc<OnnxRuntime>),
    /// A load was attempted through `ort` and failed; its globals are unusable now.
    Broken(String),
}

static STATE: Mutex<State> = Mutex::new(State::Unloaded);

impl OnnxRuntime {
    /// Finds ONNX Runtime by this module's discovery order and loads it, or returns the
    /// runtime this process already loaded from the same file.
    pub fn discover(search: &LibrarySearch) -> Result<Arc<Self>, Error> {
        let (path, source) = resolve(search)?;
        Self::load(path, source)
    }

    /// Loads one specific library file (same once-per-process rules as [`Self::discover`]).
    pub fn open(path: &Path) -> Result<Arc<Self>, Error> {
        if !path.is_file() {
            return Err(Error::LibraryNotFound {
                searched: vec![path.to_path_buf()],
            });
        }
        Self::load(path.to_path_buf(), LibrarySource::Explicit)
    }

    fn load(path: PathBuf, source: LibrarySource) -> Result<Arc<Self>, Error> {
        let canonical = std::fs::canonicalize(&path).map_err(|e| Error::LibraryLoad {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
        match &*state {
            State::Loaded(runtime) if runtime.canonical == canonical => {
                return Ok(runtime.clone());
            }
            State::Loaded(runtime) => {
                return Err(Error::AlreadyLoaded {
                    loaded: runtime.path.clone(),
                    requested: path,
                });
            }
            State::Broken(reason) => return Err(Error::LibraryUnusable(reason.clone())),
            State::Unloaded => {}
        }
        let file_version = version_of_file(&path);
        let too_old = |&(major, minor, _): &(u32, u32, u32)| {
            major < 1 || (major == 1 && minor < crate::API_MINOR_VERSION)
        };
        if let Some((major, minor, patch)) = file_version.filter(too_old) {
            return Err(Error::LibraryTooOld {
                path,
                found: format!("{major}.{minor}.{patch}"),
            });
        }
        match commit_environment(&canonical) {
            Ok(()) => {}
            Err(reason) => {
                *state = State::Broken(format!("{}: {reason}", path.display()));
                return Err(Error::LibraryLoad { path, reason });
            }
        }
        let version = version_from_build_info(ort::info())
            .or_else(|| file_version.map(|(a, b, c)| format!("{a}.{b}.{c}")))
            .unwrap_or_else(|| "unknown".into());
        let runtime = Arc::new(Self {
            path,
            canonical,
            source,
            version,
        });
        tracing::info!(
            library = %runtime.path.display(),
            source = %runtime.source,
            version = %runtime.version,
            "ONNX Runtime loaded"
        );
        *state = State::Loaded(runtime.clone());
        Ok(runtime)
    }

    /// The file that was loaded, as discovery found it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The discovery rule that found it.
    pub fn source(&self) -> LibrarySource {
        self.source
    }

    /// ONNX Runtime's version, e.g. "1.22.1".
    pub fn version(&self) -> &str {
        &self.version
    }
}

/// Opens the library and creates `ort`'s process-wide environment. `ort` reports a library
/// the loader refuses, or one older than its C API, by panicking inside a `Once`; the panic is
/// turned into the error it describes.
fn commit_environment(library: &Path) -> Result<(), String> {
    let path = library.display().to_string();
    let committed = std::panic::catch_unwind(AssertUnwindSafe(|| {
        ort::init_from(path).with_name("onnx-backend").commit()
    }));
    match committed {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.message().to_string()),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the library could not be initialised".into())),
    }
}

/// "1.22.1" from ONNX Runtime's build info, e.g. `ORT Build Info: git-branch=rel-1.22.1, ...`.
fn version_from_build_info(info: &str) -> Option<String> {
    let branch = info.split("git-branch=").nth(1)?;
    let branch = branch.split([',', ' ']).next()?;
    let version = branch.strip_prefix("rel-")?;
    version
        .split('.')
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .then(|| version.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("onnx-backend-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn candidates_follow_the_documented_order() {
        let search = LibrarySearch {
            explicit: Some("/opt/ort/libonnxruntime.so".into()),
            model_dir: Some("/models/effnet".into()),
        };
        let candidates = candidates(&search);
        assert_eq!(candidates[0].path, Path::new("/opt/ort/libonnxruntime.so"));
        assert_eq!(candidates[0].source, LibrarySource::Explicit);
        assert_eq!(candidates[1].path, Path::new("/models/effnet"));
        assert_eq!(candidates[1].source, LibrarySource::ModelDirectory);
        let sources: Vec<_> = candidates.iter().map(|c| c.source).collect();
        let first_system = sources
            .iter()
            .position(|s| *s == LibrarySource::System)
            .unwrap();
        assert!(
            sources[first_system..]
                .iter()
                .all(|s| *s == LibrarySource::System)
        );
        assert!(candidates.iter().any(|c| c.path == Path::new("/usr/lib")));
    }

    #[test]
    fn versions_are_read_from_file_names() {
        assert_eq!(
            version_in_file_name("libonnxruntime.so.1.22.1"),
            Some((1, 22, 1))
        );
        assert_eq!(version_in_file_name("libonnxruntime.so.1"), Some((1, 0, 0)));
        assert_eq!(version_in_file_name("libonnxruntime.so"), None);
        assert_eq!(
            version_in_file_name("libonnxruntime_providers_shared.so"),
            None
        );
        assert_eq!(version_in_file_name("libonnxruntime.so.1.x"), None);
    }

    #[test]
    fn a_directory_yields_its_plain_library_else_the_highest_version() {
        let dir = temp_dir("dir-pick");
        for name in [
            "libonnxruntime.so.1.9.0",
            "libonnxruntime.so.1.22.1",
            "libonnxruntime_providers_shared.so",
        ] {
            std::fs::write(dir.join(name), b"").unwrap();
        }
        assert_eq!(
            library_in_dir(&dir),
            Some(dir.join("libonnxruntime.so.1.22.1"))
        );
        std::fs::write(dir.join(LIBRARY_FILE_NAME), b"").unwrap();
        assert_eq!(library_in_dir(&dir), Some(dir.join(LIBRARY_FILE_NAME)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_explicit_place_without_a_library_is_an_error_naming_it() {
        let dir = temp_dir("explicit-empty");
        let search = LibrarySearch {
            explicit: Some(dir.clone()),
            model_dir: None,
        };
        let err = resolve(&search).unwrap_err();
        assert!(matches!(err, Error::LibraryNotFound { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(&dir.display().to_string()), "{text}");
        assert!(text.contains(LIBRARY_PATH_ENV), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_model_directory_is_searched_before_the_fixed_places() {
        let dir = temp_dir("model-dir");
        std::fs::write(dir.join("libonnxruntime.so.1.22.1"), b"").unwrap();
        let search = LibrarySearch {
            explicit: None,
            model_dir: Some(dir.clone()),
        };
        let (path, source) = resolve(&search).unwrap();
        assert_eq!(path, dir.join("libonnxruntime.so.1.22.1"));
        assert_eq!(source, LibrarySource::ModelDirectory);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_library_named_older_than_the_api_is_refused_before_loading() {
        let dir = temp_dir("too-old");
        let file = dir.join("libonnxruntime.so.1.16.3");
        std::fs::write(&file, b"").unwrap();
        let err = OnnxRuntime::open(&file).unwrap_err();
        assert!(matches!(err, Error::LibraryTooOld { .. }), "{err}");
        assert!(err.to_string().contains("1.16.3"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_version_comes_from_the_build_info() {
        let info =
            "ORT Build Info: git-branch=rel-1.22.1, git-commit-id=5b4d3e3, build type=Release";
        assert_eq!(version_from_build_info(info).as_deref(), Some("1.22.1"));
        assert_eq!(version_from_build_info("git-branch=main, x"), None);
    }
}
