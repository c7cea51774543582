//! The one error type of this crate: everything that can go wrong finding libdlr, loading a
//! model or running it. Messages name the file, input or call involved so that a log line alone
//! tells an operator what to fix.

use std::path::PathBuf;

use crate::tensor::DType;

/// An error from finding libdlr, loading a model or running it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No `libdlr.so` at any of the places discovery tried.
    #[error(
        "libdlr.so not found; looked at: {}. {LIBRARY_HINT}",
        native_lib_discovery::PathList(searched)
    )]
    LibraryNotFound {
        /// Every path tried, in order.
        searched: Vec<PathBuf>,
    },
    /// A file was found but the dynamic loader refused it.
    #[error("cannot load DLR library {}: {reason}. {LIBRARY_HINT}", path.display())]
    LibraryLoad {
        /// The file.
        path: PathBuf,
        /// The loader's reason.
        reason: String,
    },
    /// The library loaded but lacks a function of the DLR 1.6 C API.
    #[error("{} is not a usable libdlr: symbol {symbol} is missing", path.display())]
    MissingSymbol {
        /// The file.
        path: PathBuf,
        /// The missing C symbol.
        symbol: &'static str,
    },
    /// The model directory does not exist or is not a directory.
    #[error("model directory {} does not exist or is not a directory", .0.display())]
    ModelDirMissing(PathBuf),
    /// The model directory lacks files a TVM model needs.
    #[error("model directory {} is incomplete: missing {}", dir.display(), missing.join(", "))]
    ModelDirIncomplete {
        /// The directory.
        dir: PathBuf,
        /// Descriptions of the missing files, e.g. "a *.params file".
        missing: Vec<&'static str>,
    },
    /// A model file exists but cannot be read.
    #[error("cannot read model file {}{hint}", path.display(), hint = permission_hint(source))]
    ModelFileUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A model file exists but its contents are not what DLR expects.
    #[error("invalid model file {}: {reason}", path.display())]
    ModelFileInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// libdlr reported a failure; `message` is the first line of `DLRGetLastError`.
    #[error("{call} failed: {message}")]
    Dlr {
        /// The C function that failed.
        call: &'static str,
        /// The first line of DLR's message.
        message: String,
    },
    /// An input name the model does not have.
    #[error("model has no input named {name:?} (inputs: {})", expected.join(", "))]
    UnknownInput {
        /// The name given.
        name: String,
        /// The model's input names.
        expected: Vec<String>,
    },
    /// A model input was not given to `run`.
    #[error("input {0:?} was not provided")]
    MissingInput(String),
    /// The same input was given twice.
    #[error("input {0:?} was provided more than once")]
    DuplicateInput(String),
    /// The input's shape differs from the model's.
    #[error("input {name:?} has shape {actual:?}, the model expects {expected:?}")]
    ShapeMismatch {
        /// Input name.
        name: String,
        /// The model's shape.
        expected: Vec<i64>,
        /// The shape given.
        actual: Vec<i64>,
    },
    /// The input's element type differs from the model's.
    #[error("input {name:?} has dtype {actual}, the model expects {expected}")]
    DTypeMismatch {
        /// Input name.
        name: String,
        /// The model's dtype.
        expected: String,
        /// The dtype given.
        actual: DType,
    },
    /// The data length does not match the product of the shape.
    #[error("input {name:?} has {actual} elements, its shape {shape:?} needs {expected}")]
    DataLength {
        /// Input name.
        name: String,
        /// The shape given.
        shape: Vec<i64>,
        /// Elements the shape needs.
        expected: usize,
        /// Elements given.
        actual: usize,
    },
    /// The model uses an element type this binding cannot copy.
    #[error("unsupported dtype {0:?}")]
    UnsupportedDType(String),
    /// An option given to the binding is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
}

/// How to fix a missing or unloadable libdlr, appended to those errors.
const LIBRARY_HINT: &str = "Point at a libdlr.so built for this machine with the \
    DLR_LIBRARY_PATH environment variable (a file or a directory), classify-service's \
    --dlr-library, or a copy in the model directory. Where one comes from: on a Greengrass \
    device the variant.DLR component installs DLR 1.6.0 in its virtual environment; on \
    x86_64 `pip install dlr==1.6.0` carries one (`cargo xtask setup` extracts it into \
    generated/libdlr/)";

fn permission_hint(source: &std::io::Error) -> &'static str {
    if source.kind() == std::io::ErrorKind::PermissionDenied {
        " (Greengrass ModelStore artifacts may be readable only by their owner: run the \
         component as that user, or with RequiresPrivilege)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_model_files_hint_at_the_model_store_permissions() {
        let denied = Error::ModelFileUnreadable {
            path: "/greengrass/v2/packages/artifacts-unarchived/m/compiled.so".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        let text = denied.to_string();
        assert!(text.contains("compiled.so"), "{text}");
        assert!(text.contains("readable only by their owner"), "{text}");
        let missing = Error::ModelFileUnreadable {
            path: "/m/compiled.so".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert!(!missing.to_string().contains("owner"), "{missing}");
    }
}
