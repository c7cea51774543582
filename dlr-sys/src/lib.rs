//! A run-time binding to libdlr, the neo-ai Deep Learning Runtime (DLR 1.6), and a safe model
//! API over it.
//!
//! * [`ffi`]: the complete C API as a table of function pointers ([`ffi::DlrApi`]).
//! * [`library`]: finding `libdlr.so` at run time and opening it ([`DlrLibrary`]); nothing
//!   links against libdlr, so code using this crate builds and unit-tests without it.
//! * [`loading`]: how a handle is created; by default the parameters file is mapped and
//!   handed to libdlr, which keeps peak memory while loading low ([`ParamsLoading`]).
//! * [`model`]: [`Model`], a loaded model directory with its [`ModelMetadata`], run with typed
//!   [`Input`]s checked before any FFI call; outputs are copied into Rust-owned buffers.
//!
//! This crate is the only place in the workspace that calls libdlr. A model handle is never
//! used by two threads at once (see [`model`]).

pub mod error;
pub mod ffi;
pub mod library;
pub mod loading;
pub mod metadata;
pub mod model;
pub mod tensor;

pub use error::Error;
pub use library::{Candidate, DlrLibrary, LIBRARY_FILE_NAME, LibrarySearch, LibrarySource};
pub use loading::ParamsLoading;
pub use metadata::{CompiledMeta, ModelMetadata, TensorInfo};
pub use model::{Model, ModelOptions, check_model_dir};
pub use tensor::{DType, Input, Layout, Output, OutputData, TensorData};

/// CPUs this process may run on: the smaller of its CPU affinity mask and its cgroup CPU
/// quota (both honoured by [`std::thread::available_parallelism`] on Linux), at least 1.
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
