//! Finding and opening `libdlr.so` at run time.
//!
//! Nothing links against libdlr: the workspace builds and most tests run on machines without
//! it, and a device can use whichever copy its model came with. Discovery tries, in order, and
//! the first file that exists wins:
//!
//! 1. an explicit path from configuration (a file, or a directory holding `libdlr.so`);
//! 2. `libdlr.so` inside the model directory (SageMaker Neo artifacts may ship their own);
//! 3. the `DLR_LIBRARY_PATH` environment variable (file or directory);
//! 4. the Python `dlr` package's copy: `<prefix>/dlr/libdlr.so` and
//!    `<prefix>/lib/python3.*/{site,dist}-packages/dlr/libdlr.so` for the active virtualenv,
//!    conda environment, the user's `~/.local`, `/usr/local` and `/usr`;
//! 5. the system loader (`dlopen("libdlr.so")`, honouring `LD_LIBRARY_PATH` and ldconfig).
//!
//! An explicit path that fails to load is an error, not a reason to fall through: a user who
//! names a library means that one.
//!
//! The walk (the places, their order, first wins, an explicit path is not fallen through, the
//! "looked at" list) is `native-lib-discovery`'s, shared with `onnx-backend`; what is libdlr's
//! own is here: a directory means `libdlr.so` inside it, and the system step is a `dlopen` by
//! bare name, whose real file `dladdr` reports afterwards.

use std::ffi::CStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use native_lib_discovery::{self as discovery, Rules, Source, System};

use crate::error::Error;
use crate::ffi::{self, DlrApi};

/// The loader's own words: libloading's message ("dlopen failed") wraps the `dlerror` text
/// (e.g. "invalid ELF header", or the missing dependency) as its source.
fn loader_reason(e: &libloading::Error) -> String {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}

/// File name of the runtime library on Linux.
pub const LIBRARY_FILE_NAME: &str = "libdlr.so";

/// Environment variable naming a `libdlr.so` file or a directory that holds one.
pub const LIBRARY_PATH_ENV: &str = "DLR_LIBRARY_PATH";

/// Where to look for `libdlr.so` besides the fixed places (the explicit path and the model
/// directory); which rule found a library; one place discovery considered (a file path, or
/// the bare file name for the system loader). The shared discovery walk's own types.
pub use native_lib_discovery::{
    Place as Candidate, Search as LibrarySearch, Source as LibrarySource,
};

/// libdlr's discovery rules: the Python `dlr` wheel's two locations, and the system loader.
const RULES: Rules = Rules {
    env_var: LIBRARY_PATH_ENV,
    python_package_path: "dlr/libdlr.so",
    python_data_path: Some("dlr/libdlr.so"),
    system: System::Loader(LIBRARY_FILE_NAME),
};

/// Every file discovery would try, in order (files that do not exist included, so that a "not
/// found" error can say exactly where it looked): the shared walk's places, each made the
/// library file it means — a directory (the model directory, or one named explicitly or by
/// the environment) means `libdlr.so` inside it.
pub fn candidates(search: &LibrarySearch) -> Vec<Candidate> {
    let mut places = search.places(&RULES);
    for place in &mut places {
        match place.source {
            Source::ModelDirectory => place.path.push(LIBRARY_FILE_NAME),
            Source::Explicit | Source::Environment => {
                place.path = library_file_in(&place.path);
            }
            Source::PythonPackage | Source::System => {}
        }
    }
    places
}

fn library_file_in(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(LIBRARY_FILE_NAME)
    } else {
        path.to_path_buf()
    }
}

/// An open libdlr: the resolved C API, which file it came from, and its version.
///
/// Shared between models with `Arc`; the library stays loaded while any model uses it.
pub struct DlrLibrary {
    api: DlrApi,
    path: PathBuf,
    source: LibrarySource,
    version: String,
    /// Serialises model creation and deletion, which touch libdlr's global registries.
    lifecycle: Mutex<()>,
    _library: libloading::Library,
}

impl fmt::Debug for DlrLibrary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DlrLibrary")
            .field("path", &self.path)
            .field("source", &self.source)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl DlrLibrary {
    /// Finds and opens libdlr following the discovery order of this module.
    pub fn discover(search: &LibrarySearch) -> Result<Arc<Self>, Error> {
        let found = discovery::walk(candidates(search), |place| {
            let source = place.source;
            match source {
                // The loader searches its own path list; only a failure to find it falls
                // through to the "not found" report.
                Source::System => Self::open_as(&place.path, source).ok().map(Ok),
                // A named library that exists but does not load is an error, not a reason to
                // look elsewhere.
                Source::Explicit => place
                    .path
                    .exists()
                    .then(|| Self::open_as(&place.path, source)),
                _ => place
                    .path
                    .is_file()
                    .then(|| Self::open_as(&place.path, source)),
            }
        });
        match found {
            Ok((opened, _)) => opened,
            Err(not_found) => Err(Error::LibraryNotFound {
                searched: not_found.searched,
            }),
        }
    }

    /// Opens one specific library file.
    pub fn open(path: &Path) -> Result<Arc<Self>, Error> {
        Self::open_as(path, LibrarySource::Explicit)
    }

    fn open_as(path: &Path, source: LibrarySource) -> Result<Arc<Self>, Error> {
        if source != LibrarySource::System && !path.exists() {
            return Err(Error::LibraryNotFound {
                searched: vec![path.to_path_buf()],
            });
        }
        // SAFETY: loading libdlr runs its static initialisers, which only set up TVM's
        // registries; it has no other load-time side effects.
        let library =
            unsafe { libloading::Library::new(path) }.map_err(|e| Error::LibraryLoad {
                path: path.to_path_buf(),
                reason: loader_reason(&e),
            })?;
        // SAFETY: the library is libdlr (checked below by GetDLRVersion succeeding), whose
        // symbols have the dlr.h signatures; `_library` keeps it loaded as long as `api`.
        let api = unsafe { ffi::resolve(&library) }.map_err(|symbol| Error::MissingSymbol {
            path: path.to_path_buf(),
            symbol,
        })?;
        let mut version_ptr = std::ptr::null();
        // SAFETY: GetDLRVersion writes a pointer to a static NUL-terminated string.
        let status = unsafe { (api.get_version)(&mut version_ptr) };
        if status != 0 || version_ptr.is_null() {
            return Err(Error::LibraryLoad {
                path: path.to_path_buf(),
                reason: "GetDLRVersion failed".into(),
            });
        }
        // SAFETY: non-null, static, NUL-terminated (see above).
        let version = unsafe { CStr::from_ptr(version_ptr) }
            .to_string_lossy()
            .into_owned();
        let path = if source == LibrarySource::System {
            loaded_file_of(&api).unwrap_or_else(|| path.to_path_buf())
        } else {
            path.to_path_buf()
        };
        Ok(Arc::new(Self {
            api,
            path,
            source,
            version,
            lifecycle: Mutex::new(()),
            _library: library,
        }))
    }

    /// The file that was loaded.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The discovery rule that found it.
    pub fn source(&self) -> LibrarySource {
        self.source
    }

    /// `GetDLRVersion`, e.g. "1.6.0".
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The raw C API. Calling it is `unsafe`; prefer [`crate::Model`].
    pub fn api(&self) -> &DlrApi {
        &self.api
    }

    /// `GetDLRDeviceType` for a model directory: the DLPack device type it was compiled for.
    pub fn device_type(&self, model_dir: &Path) -> Result<i32, Error> {
        let path = crate::model::c_path(model_dir)?;
        // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
        let device = unsafe { (self.api.get_device_type)(path.as_ptr()) };
        if device < 0 {
            return Err(self.last_error("GetDLRDeviceType"));
        }
        Ok(device)
    }

    pub(crate) fn lifecycle_lock(&self) -> MutexGuard<'_, ()> {
        self.lifecycle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Builds an error from `DLRGetLastError`, keeping only its first line (the message; the
    /// rest is a C++ stack trace).
    pub(crate) fn last_error(&self, call: &'static str) -> Error {
        // SAFETY: DLRGetLastError returns a thread-local NUL-terminated string or null.
        let ptr = unsafe { (self.api.get_last_error)() };
        let text = if ptr.is_null() {
            String::new()
        } else {
            // SAFETY: non-null and NUL-terminated, valid until the next DLR call on this thread.
            unsafe { CStr::from_ptr(ptr) }
                .to_string_lossy()
                .into_owned()
        };
        let message = text
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .unwrap_or("no message from libdlr")
            .to_string();
        Error::Dlr { call, message }
    }
}

/// Asks the dynamic loader which file provides `GetDLRVersion`, so that a library found by
/// bare name can still report its real path.
fn loaded_file_of(api: &DlrApi) -> Option<PathBuf> {
    let mut info = std::mem::MaybeUninit::<DlInfo>::zeroed();
    let symbol = api.get_version as *const std::ffi::c_void;
    // SAFETY: dladdr only reads the address and fills `info`; it is part of libc on Linux.
    let found = unsafe { dladdr(symbol, info.as_mut_ptr()) };
    if found == 0 {
        return None;
    }
    // SAFETY: dladdr returned non-zero, so `info` was filled.
    let info = unsafe { info.assume_init() };
    if info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    Some(PathBuf::from(name.to_string_lossy().into_owned()))
}

#[repr(C)]
struct DlInfo {
    dli_fname: *const std::ffi::c_char,
    dli_fbase: *mut std::ffi::c_void,
    dli_sname: *const std::ffi::c_char,
    dli_saddr: *mut std::ffi::c_void,
}

unsafe extern "C" {
    fn dladdr(addr: *const std::ffi::c_void, info: *mut DlInfo) -> std::ffi::c_int;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_the_documented_order() {
        let search = LibrarySearch {
            explicit: Some("/opt/custom/libdlr.so".into()),
            model_dir: Some("/models/resnet".into()),
        };
        let candidates = candidates(&search);
        assert_eq!(candidates[0].path, Path::new("/opt/custom/libdlr.so"));
        assert_eq!(candidates[0].source, LibrarySource::Explicit);
        assert_eq!(candidates[1].path, Path::new("/models/resnet/libdlr.so"));
        assert_eq!(candidates[1].source, LibrarySource::ModelDirectory);
        let last = candidates.last().unwrap();
        assert_eq!(last.source, LibrarySource::System);
        assert!(
            candidates
                .iter()
                .any(|c| c.path == Path::new("/usr/local/dlr/libdlr.so"))
        );
    }

    #[test]
    fn explicit_directory_means_the_library_inside_it() {
        let dir = std::env::temp_dir();
        let search = LibrarySearch {
            explicit: Some(dir.clone()),
            model_dir: None,
        };
        assert_eq!(candidates(&search)[0].path, dir.join(LIBRARY_FILE_NAME));
    }

    #[test]
    fn explicit_path_that_does_not_exist_is_a_clear_error() {
        let search = LibrarySearch {
            explicit: Some("/nonexistent/dir/libdlr.so".into()),
            model_dir: None,
        };
        let err = DlrLibrary::discover(&search).unwrap_err();
        assert!(matches!(err, Error::LibraryNotFound { .. }), "{err}");
        assert!(
            err.to_string().contains("/nonexistent/dir/libdlr.so"),
            "{err}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_library_is_a_load_error() {
        let dir = std::env::temp_dir().join(format!("dlr-sys-notlib-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(LIBRARY_FILE_NAME);
        std::fs::write(&file, b"not an ELF file").unwrap();
        let err = DlrLibrary::open(&file).unwrap_err();
        assert!(matches!(err, Error::LibraryLoad { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
