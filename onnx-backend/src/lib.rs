//! ONNX Runtime as a model backend, through the `ort` crate's safe API with the library loaded
//! at run time.
//!
//! * [`library`]: finding `libonnxruntime.so*` (explicit path → model directory →
//!   `ONNXRUNTIME_LIBRARY_PATH` → the Python `onnxruntime` package → system library
//!   directories) and loading it once per process ([`OnnxRuntime`]).
//! * [`model`]: [`Model`], one ONNX Runtime session on a `model.onnx` with its
//!   [`ModelMetadata`], run on one image whose layout, size and element type are checked
//!   before ONNX Runtime sees it; outputs are copied into Rust-owned buffers.
//! * [`metadata`]: the model's inputs and outputs, and the [`ImageInput`] derived from them
//!   (name, concrete shape, NHWC/NCHW from where the 3 is, float32 or uint8).
//!
//! This crate contains no `unsafe`: everything goes through `ort`'s safe API. It speaks the
//! C API of ONNX Runtime 1.22 ([`API_MINOR_VERSION`]); `cargo xtask setup` fetches the library
//! from the `onnxruntime` [`WHEEL_VERSION`] wheel.

#![forbid(unsafe_code)]

pub mod error;
pub mod library;
pub mod metadata;
pub mod model;

pub use error::Error;
pub use library::{
    Candidate, LIBRARY_FILE_NAME, LIBRARY_PATH_ENV, LibrarySearch, LibrarySource, OnnxRuntime,
};
pub use metadata::{DType, ImageInput, Layout, ModelMetadata, TensorInfo};
pub use model::{
    MODEL_FILE_NAME, Model, ModelOptions, Output, OutputData, TensorData, find_model_file,
};

/// The ONNX Runtime minor version whose C API this build uses (`ort`'s); older libraries are
/// refused, newer ones accepted.
pub const API_MINOR_VERSION: u32 = ort::MINOR_VERSION;

/// The `onnxruntime` Python wheel whose library `cargo xtask setup` extracts and the tests use.
pub const WHEEL_VERSION: &str = "1.22.1";

/// CPUs this process may run on: the smaller of its CPU affinity mask and its cgroup CPU
/// quota (both honoured by [`std::thread::available_parallelism`] on Linux), at least 1.
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
