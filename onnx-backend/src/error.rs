//! The one error type of this crate. Messages name the file, input or rule involved, so that a
//! log line alone tells an operator what to fix.

use std::path::PathBuf;

/// An error from finding ONNX Runtime, loading a model or running it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No `libonnxruntime.so*` at any of the places discovery tried.
    #[error(
        "ONNX Runtime library (libonnxruntime.so*) not found; looked at: {}. Fix: run `cargo \
         xtask setup` (development), pass --onnx-library PATH, set {env} to the library file \
         or its directory, or `pip install onnxruntime=={version}`",
        native_lib_discovery::PathList(searched),
        env = crate::LIBRARY_PATH_ENV,
        version = crate::WHEEL_VERSION
    )]
    LibraryNotFound {
        /// Every file or directory looked at, in order.
        searched: Vec<PathBuf>,
    },
    /// The library's file name says it is older than the C API this build speaks.
    #[error(
        "{} is ONNX Runtime {found}; this build needs 1.{minor} or newer (the `onnxruntime` \
         {wheel} wheel has a matching library)",
        path.display(),
        minor = crate::API_MINOR_VERSION,
        wheel = crate::WHEEL_VERSION
    )]
    LibraryTooOld {
        /// The file.
        path: PathBuf,
        /// The version its name carries.
        found: String,
    },
    /// A file was found but could not be loaded as ONNX Runtime.
    #[error("cannot load ONNX Runtime from {}: {reason}", path.display())]
    LibraryLoad {
        /// The file.
        path: PathBuf,
        /// Why, from the loader or from ONNX Runtime.
        reason: String,
    },
    /// ONNX Runtime can be loaded once per process, and another copy already is.
    #[error(
        "ONNX Runtime is already loaded in this process from {}; it cannot also load {}",
        loaded.display(),
        requested.display()
    )]
    AlreadyLoaded {
        /// The library in use.
        loaded: PathBuf,
        /// The one this request resolved to.
        requested: PathBuf,
    },
    /// An earlier attempt to load ONNX Runtime in this process failed, which leaves it unusable.
    #[error("ONNX Runtime failed to load earlier in this process: {0}")]
    LibraryUnusable(String),
    /// The model path names no ONNX model.
    #[error("no ONNX model at {}: {reason}", path.display())]
    ModelNotFound {
        /// The path given (a file or a directory).
        path: PathBuf,
        /// What was expected there.
        reason: String,
    },
    /// The model file exists but cannot be read.
    #[error("cannot read ONNX model {}: {source}{hint}", path.display(), hint = permission_hint(source))]
    ModelUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// ONNX Runtime refused an option, the model, or a run.
    #[error("ONNX Runtime: {context}: {message}")]
    Ort {
        /// What was being done.
        context: String,
        /// ONNX Runtime's message.
        message: String,
    },
    /// The model's inputs are not one image tensor this crate can feed.
    #[error("unsupported model input: {0}")]
    UnsupportedInput(String),
    /// An option is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The data given to `run` does not match the model's input.
    #[error("input {name:?} {reason}")]
    InputMismatch {
        /// The model's input name.
        name: String,
        /// What does not match.
        reason: String,
    },
    /// An output has an element type this crate does not read.
    #[error("output {name:?} has element type {dtype}; readable: float32, float64, int64, uint8")]
    UnsupportedOutput {
        /// The output's name.
        name: String,
        /// Its ONNX element type.
        dtype: String,
    },
}

impl Error {
    pub(crate) fn ort(context: impl Into<String>, error: ort::Error) -> Self {
        Self::Ort {
            context: context.into(),
            message: error.message().to_string(),
        }
    }
}

fn permission_hint(error: &std::io::Error) -> &'static str {
    if error.kind() == std::io::ErrorKind::PermissionDenied {
        " (Greengrass component artifacts may be readable only by their owner: run the service \
         as that user or make the artifact readable)"
    } else {
        ""
    }
}
