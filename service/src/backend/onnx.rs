//! The ONNX Runtime backend: `onnx_backend::Model` (one ONNX Runtime session) behind the
//! [`Backend`] seam, and the choice between runtimes from the model directory.
//!
//! As for DLR, start-up loads one session to read the model's description and check it
//! against the labels; the first worker adopts it and every other worker opens its own session
//! on its own thread (a session is used by one thread at a time, with `threads_per_worker`
//! intra-op threads). ONNX Runtime itself is loaded once per process (see
//! `onnx_backend::library`).
//!
//! The description reports the image input and the outputs with a dynamic batch dimension
//! resolved to 1: ONNX exports often declare a dynamic batch, and the service feeds one image
//! per run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use onnx_backend::{Model, ModelOptions, OnnxRuntime, TensorData};

use super::{
    Backend, BackendError, BackendFactory, InputTensor, ModelDescription, Output, Preloaded,
    Tensor, TensorDesc,
};
use crate::config::BackendChoice;

/// The runtime a model directory is served with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// DLR.
    Dlr,
    /// ONNX Runtime.
    Onnx,
}

/// Resolves `--backend`: an explicit choice stands; `auto` looks at the directory. A directory
/// with both an ONNX model and a DLR model is ambiguous and needs the explicit choice.
pub fn choose(choice: BackendChoice, model_dir: &Path) -> Result<Runtime, String> {
    match choice {
        BackendChoice::Dlr => Ok(Runtime::Dlr),
        BackendChoice::Onnx => Ok(Runtime::Onnx),
        BackendChoice::Auto => {
            let onnx = onnx_backend::find_model_file(model_dir).is_ok();
            let dlr = dlr_sys::check_model_dir(model_dir).is_ok();
            match (onnx, dlr) {
                (true, true) => Err(format!(
                    "{} holds both an ONNX model and a DLR model: choose one with --backend \
                     onnx or --backend dlr",
                    model_dir.display()
                )),
                (true, false) => Ok(Runtime::Onnx),
                // Not an ONNX model: DLR, whose loading explains what is missing.
                (false, _) => Ok(Runtime::Dlr),
            }
        }
    }
}

/// Builds one ONNX Runtime session per worker from one `.onnx` model.
pub struct OnnxFactory {
    runtime: Arc<OnnxRuntime>,
    model_path: PathBuf,
    options: ModelOptions,
    description: ModelDescription,
    /// The session opened at start-up, until a worker adopts it.
    preloaded: Preloaded<Model>,
}

impl std::fmt::Debug for OnnxFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxFactory")
            .field("model_path", &self.model_path)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl OnnxFactory {
    /// Finds ONNX Runtime (the options' explicit library, the model directory, ...), opens
    /// one session on the model in `model_dir` and reads what it declares.
    pub fn load(model_dir: &Path, options: ModelOptions) -> Result<Self, onnx_backend::Error> {
        let first = Model::load(model_dir, &options)?;
        let metadata = first.metadata();
        let runtime = first.runtime().clone();
        // One image per run: a dynamic batch dimension of an output is 1 too.
        let describe = |info: &onnx_backend::TensorInfo| TensorDesc {
            name: Some(info.name.clone()),
            shape: info
                .shape
                .iter()
                .enumerate()
                .map(|(i, &d)| if i == 0 && d < 0 { 1 } else { d })
                .collect(),
            dtype: info.dtype.clone(),
        };
        let image = &metadata.image_input;
        let input = TensorDesc {
            name: Some(image.name.clone()),
            shape: image.shape.to_vec(),
            dtype: metadata.inputs[0].dtype.clone(),
        };
        let description = ModelDescription {
            runtime: "onnxruntime",
            runtime_version: metadata.ort_version.clone(),
            runtime_library: metadata.library_path.clone(),
            backend: "onnxruntime".into(),
            inputs: vec![input],
            outputs: metadata.outputs.iter().map(describe).collect(),
        };
        Ok(Self {
            runtime,
            model_path: metadata.model_path.clone(),
            options,
            description,
            preloaded: Preloaded::new(first),
        })
    }
}

impl BackendFactory for OnnxFactory {
    fn description(&self) -> &ModelDescription {
        &self.description
    }

    fn create(&self, _worker: usize) -> Result<Box<dyn Backend>, BackendError> {
        let model = self
            .preloaded
            .take_or_load(|| {
                Model::load_with(self.runtime.clone(), &self.model_path, &self.options)
            })
            .map_err(|e| BackendError::Load(e.into()))?;
        Ok(Box::new(model))
    }
}

impl Backend for Model {
    fn run(&mut self, input: InputTensor<'_>) -> Result<Output, BackendError> {
        let started = Instant::now();
        let pixels = match input.data {
            Tensor::F32(data) => TensorData::F32(data),
            Tensor::U8(data) => TensorData::U8(data),
        };
        let outputs = Model::run(self, pixels).map_err(|e| BackendError::Run(e.into()))?;
        let first = outputs.into_iter().next().ok_or(BackendError::NoOutput)?;
        Ok(Output {
            values: first.data.to_f64(),
            elapsed: started.elapsed(),
        })
    }
}
