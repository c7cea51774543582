//! The DLR backend: `dlr_sys::Model` behind the [`Backend`] seam.
//!
//! Start-up loads one model to read its metadata (the [`ModelDescription`]) and check it
//! against the labels; [`DlrFactory`] keeps that handle and gives it to the first worker
//! that asks, so the model is not loaded once more than there are workers. Every other worker
//! loads its own handle on its own thread with the same library and options.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use dlr_sys::{DlrLibrary, Input, Model, ModelOptions};

use super::{
    Backend, BackendError, BackendFactory, InputTensor, ModelDescription, Output, Preloaded,
    Tensor, TensorDesc,
};

/// Builds one [`dlr_sys::Model`] per worker from one model directory and one libdlr.
pub struct DlrFactory {
    library: Arc<DlrLibrary>,
    model_dir: PathBuf,
    options: ModelOptions,
    description: ModelDescription,
    /// The handle loaded at start-up, until a worker adopts it.
    preloaded: Preloaded<Model>,
}

impl std::fmt::Debug for DlrFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DlrFactory")
            .field("model_dir", &self.model_dir)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl DlrFactory {
    /// Loads the model once with `library` and reads what it declares.
    pub fn load(
        library: Arc<DlrLibrary>,
        model_dir: PathBuf,
        options: ModelOptions,
    ) -> Result<Self, dlr_sys::Error> {
        let first = Model::load_with(library.clone(), &model_dir, &options)?;
        let metadata = first.metadata();
        let describe = |info: &dlr_sys::TensorInfo| TensorDesc {
            name: info.name.clone(),
            shape: info.shape.clone(),
            dtype: info.dtype.clone(),
        };
        let description = ModelDescription {
            runtime: "dlr",
            runtime_version: metadata.dlr_version.clone(),
            runtime_library: metadata.library_path.clone(),
            backend: metadata.backend.clone(),
            inputs: metadata.inputs.iter().map(describe).collect(),
            outputs: metadata.outputs.iter().map(describe).collect(),
        };
        Ok(Self {
            library,
            model_dir,
            options,
            description,
            preloaded: Preloaded::new(first),
        })
    }
}

impl BackendFactory for DlrFactory {
    fn description(&self) -> &ModelDescription {
        &self.description
    }

    fn create(&self, _worker: usize) -> Result<Box<dyn Backend>, BackendError> {
        let model = self
            .preloaded
            .take_or_load(|| Model::load_with(self.library.clone(), &self.model_dir, &self.options))
            .map_err(|e| BackendError::Load(e.into()))?;
        Ok(Box::new(model))
    }
}

impl Backend for Model {
    fn run(&mut self, input: InputTensor<'_>) -> Result<Output, BackendError> {
        let started = Instant::now();
        let dlr_input = match input.data {
            Tensor::F32(data) => Input::f32(input.name, input.shape, data),
            Tensor::U8(data) => Input::u8(input.name, input.shape, data),
        };
        let outputs = Model::run(self, &[dlr_input]).map_err(|e| BackendError::Run(e.into()))?;
        let first = outputs.into_iter().next().ok_or(BackendError::NoOutput)?;
        Ok(Output {
            values: first.data.to_f64(),
            elapsed: started.elapsed(),
        })
    }
}
