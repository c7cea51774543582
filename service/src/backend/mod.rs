//! The seam between the worker pool and an inference runtime.
//!
//! The pool (`inference`) knows nothing about DLR: it owns one [`Backend`] per worker
//! thread and hands it one preprocessed input tensor at a time. A runtime plugs in with two
//! pieces:
//!
//! * a [`BackendFactory`], built once at start-up on the caller's thread. It has already read
//!   the model's [`ModelDescription`] (inputs, outputs, runtime name and version) so start-up
//!   can check the model and fill `/v1/model` before any worker exists. The pool calls
//!   [`BackendFactory::create`] once per worker, *on that worker's thread*, so a backend never
//!   has to be `Send`: a model handle is created, used and dropped by one thread.
//! * a [`Backend`]: one model instance. [`Backend::run`] takes `&mut self`, so the type system
//!   already says what the runtimes require (a DLR handle or an ONNX Runtime session is never
//!   used by two threads at once).
//!
//! Both traits are object-safe: the pool holds `Arc<dyn BackendFactory>` and `Box<dyn Backend>`,
//! so choosing a runtime is a start-up decision, not a type parameter threaded through the
//! HTTP layer. Errors are typed ([`BackendError`]) with the runtime's own error kept as the
//! `source`; the pool adds the worker and request context when it logs them.
//!
//! [`dlr`] is the DLR implementation (`dlr_sys::Model`), [`onnx`] the ONNX Runtime one
//! (`onnx_backend::Model`) and the choice between the two from the model directory.

pub mod dlr;
#[cfg(test)]
pub(crate) mod fake;
pub mod onnx;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// Any runtime's own error, kept as the `source` of a [`BackendError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The elements of the model's single input, as preprocessing produced them.
#[derive(Debug, Clone, PartialEq)]
pub enum Tensor {
    /// float32 elements.
    F32(Vec<f32>),
    /// uint8 elements.
    U8(Vec<u8>),
}

impl Tensor {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::F32(data) => data.len(),
            Self::U8(data) => data.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One input as a runtime needs it: the tensor plus the name and shape the model declares.
#[derive(Debug, Clone, Copy)]
pub struct InputTensor<'a> {
    /// The input's name in the model (DLR needs it; ONNX Runtime keys its inputs by it).
    pub name: &'a str,
    /// The full shape, batch first; the element count of `data` matches it.
    pub shape: &'a [i64],
    /// The elements, in the layout the model expects.
    pub data: &'a Tensor,
}

/// What one run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The model's first output widened to f64: logits or probabilities, one per class.
    pub values: Vec<f64>,
    /// Time inside the runtime, including copying the input in and the output out.
    pub elapsed: Duration,
}

/// A tensor as the model declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorDesc {
    /// Its name; DLR may not report one for outputs.
    pub name: Option<String>,
    /// The declared shape (batch first).
    pub shape: Vec<i64>,
    /// Element type in the runtimes' spelling: "float32", "uint8", ...
    pub dtype: String,
}

impl TensorDesc {
    /// Elements in one tensor of this shape; 0 when a dimension is not positive.
    pub fn element_count(&self) -> usize {
        self.shape
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(0))
            .product()
    }
}

/// What a loaded model is and which runtime runs it (for start-up checks and `/v1/model`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDescription {
    /// The runtime: "dlr", "onnxruntime".
    pub runtime: &'static str,
    /// The runtime library's own version string.
    pub runtime_version: String,
    /// The shared library file the runtime was loaded from.
    pub runtime_library: PathBuf,
    /// The execution backend inside the runtime as it reports it ("tvm" for DLR models);
    /// "onnxruntime" for ONNX models, which always run on its CPU execution provider here.
    pub backend: String,
    /// The model's inputs in declaration order.
    pub inputs: Vec<TensorDesc>,
    /// The model's outputs in declaration order; the service scores the first.
    pub outputs: Vec<TensorDesc>,
}

/// Why a backend could not be created or could not run.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A worker's model instance could not be created.
    #[error("the model could not be loaded")]
    Load(#[source] BoxError),
    /// The runtime refused or failed the run.
    #[error("the model run failed")]
    Run(#[source] BoxError),
    /// The run succeeded but returned no output tensor.
    #[error("the model produced no output")]
    NoOutput,
}

/// One model instance, owned and used by a single worker thread.
pub trait Backend {
    /// Runs the model on one input and returns its first output.
    fn run(&mut self, input: InputTensor<'_>) -> Result<Output, BackendError>;
}

/// Creates the per-worker model instances of one model.
pub trait BackendFactory: Send + Sync {
    /// The model, as read once at start-up.
    fn description(&self) -> &ModelDescription;

    /// Creates the instance for worker `worker` (0-based); called on that worker's thread.
    fn create(&self, worker: usize) -> Result<Box<dyn Backend>, BackendError>;
}

/// The instance a factory loaded at start-up to read the model's description, kept for the
/// first worker that asks, so the model is not loaded once more than there are workers.
pub(crate) struct Preloaded<T>(Mutex<Option<T>>);

impl<T> Preloaded<T> {
    pub(crate) fn new(first: T) -> Self {
        Self(Mutex::new(Some(first)))
    }

    /// The preloaded instance the first time, a fresh one from `load` after that.
    pub(crate) fn take_or_load<E>(&self, load: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let preloaded = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        match preloaded {
            Some(first) => Ok(first),
            None => load(),
        }
    }
}
