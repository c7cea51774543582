//! A loaded ONNX model: one ONNX Runtime session, its metadata, and `run` for its image input.
//!
//! Thread-safety mirrors `dlr_sys::Model`: [`Model`] is `Send` but `run` takes `&mut self`, so
//! one session serves one caller at a time; a worker pool loads one `Model` per worker thread,
//! each with its own intra-op thread count. Inter-op parallelism stays off (sequential
//! execution), as classification graphs are chains.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::session::{Session, SessionInputValue};
use ort::tensor::TensorElementType;
use ort::value::{TensorRef, ValueType};

use crate::error::Error;
use crate::library::{LibrarySearch, OnnxRuntime};
use crate::metadata::{DType, ImageInput, ModelMetadata, TensorInfo, dtype_name};

/// The model file a model directory holds.
pub const MODEL_FILE_NAME: &str = "model.onnx";

/// How a model is loaded.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    /// ONNX Runtime intra-op threads; `None` means the CPUs this process may use
    /// ([`crate::available_cpus`]), as the DLR backend does.
    pub threads: Option<usize>,
    /// An explicit `libonnxruntime.so*` file or directory (first in discovery).
    pub library_path: Option<PathBuf>,
    /// Whether the intra-op pool's threads spin while they wait for work
    /// (`session.intra_op.allow_spinning`; on by default, as in ONNX Runtime). Spinning gives
    /// one request at a time its lowest latency; off, the waiting threads leave their cores to
    /// other work in the process (image decoding, other sessions).
    pub spinning: bool,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self {
            threads: None,
            library_path: None,
            spinning: true,
        }
    }
}

/// The pixels of one image, in the model's layout and element type.
#[derive(Debug, Clone, Copy)]
pub enum TensorData<'a> {
    /// float32 elements.
    F32(&'a [f32]),
    /// uint8 elements.
    U8(&'a [u8]),
}

impl TensorData<'_> {
    fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::U8(v) => v.len(),
        }
    }

    fn dtype(&self) -> DType {
        match self {
            Self::F32(_) => DType::F32,
            Self::U8(_) => DType::U8,
        }
    }
}

/// One output of a run, copied out of ONNX Runtime's buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The output's name in the graph.
    pub name: String,
    /// Its shape in this run.
    pub shape: Vec<i64>,
    /// Its elements.
    pub data: OutputData,
}

/// Elements of an output, by element type.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputData {
    /// float32.
    F32(Vec<f32>),
    /// float64.
    F64(Vec<f64>),
    /// int64 (e.g. class indices of an arg-max head).
    I64(Vec<i64>),
    /// uint8.
    U8(Vec<u8>),
}

impl OutputData {
    /// The elements widened to f64 (i64 beyond 2^53 loses precision, which class scores and
    /// indices never reach).
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            Self::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Self::F64(v) => v.clone(),
            Self::I64(v) => v.iter().map(|&x| x as f64).collect(),
            Self::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        }
    }
}

/// A loaded ONNX model (see the module docs for the thread-safety contract).
#[derive(Debug)]
pub struct Model {
    session: Session,
    metadata: ModelMetadata,
    threads: usize,
    runtime: Arc<OnnxRuntime>,
}

/// The `.onnx` file `path` names: the file itself, or `model.onnx` in a directory (else the
/// directory's only `*.onnx` file).
pub fn find_model_file(path: &Path) -> Result<PathBuf, Error> {
    let not_found = |reason: String| Error::ModelNotFound {
        path: path.to_path_buf(),
        reason,
    };
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.is_dir() {
        return Err(not_found("no such file or directory".into()));
    }
    let conventional = path.join(MODEL_FILE_NAME);
    if conventional.is_file() {
        return Ok(conventional);
    }
    let entries = std::fs::read_dir(path).map_err(|source| Error::ModelUnreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let mut onnx: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx") && p.is_file())
        .collect();
    match onnx.len() {
        1 => Ok(onnx.remove(0)),
        0 => Err(not_found(format!(
            "the directory holds no {MODEL_FILE_NAME} (nor any other *.onnx file)"
        ))),
        n => Err(not_found(format!(
            "the directory holds {n} *.onnx files and no {MODEL_FILE_NAME}; name the one to \
             serve {MODEL_FILE_NAME}"
        ))),
    }
}

impl Model {
    /// Loads the model at `path` (a `.onnx` file or a directory holding `model.onnx`), finding
    /// ONNX Runtime by the discovery order (the options' explicit library first, then the
    /// model directory's own copy, ...).
    pub fn load(path: &Path, options: &ModelOptions) -> Result<Self, Error> {
        let file = find_model_file(path)?;
        let model_dir = file.parent().map(Path::to_path_buf);
        let runtime = OnnxRuntime::discover(&LibrarySearch {
            explicit: options.library_path.clone(),
            model_dir,
        })?;
        Self::load_file(runtime, &file, options)
    }

    /// Loads the model at `path` with an already loaded runtime (`library_path` in the
    /// options is ignored).
    pub fn load_with(
        runtime: Arc<OnnxRuntime>,
        path: &Path,
        options: &ModelOptions,
    ) -> Result<Self, Error> {
        let file = find_model_file(path)?;
        Self::load_file(runtime, &file, options)
    }

    fn load_file(
        runtime: Arc<OnnxRuntime>,
        file: &Path,
        options: &ModelOptions,
    ) -> Result<Self, Error> {
        let threads = match options.threads {
            None => crate::available_cpus(),
            Some(0) => return Err(Error::InvalidOption("threads must be at least 1".into())),
            Some(n) if n > 1024 => {
                return Err(Error::InvalidOption(format!("threads {n} is too large")));
            }
            Some(n) => n,
        };
        // ONNX Runtime's own message for an unreadable file is a bare "Load model failed";
        // checking first lets the error say why.
        std::fs::File::open(file).map_err(|source| Error::ModelUnreadable {
            path: file.to_path_buf(),
            source,
        })?;
        let context = |what: &str| format!("{what} ({})", file.display());
        let session = Session::builder()
            .and_then(|b| b.with_intra_threads(threads))
            .and_then(|b| b.with_inter_threads(1))
            .and_then(|b| b.with_intra_op_spinning(options.spinning))
            .and_then(|b| b.with_parallel_execution(false))
            .map_err(|e| Error::ort(context("session options"), e))?
            .commit_from_file(file)
            .map_err(|e| Error::ort(context("loading the model"), e))?;

        let inputs = session
            .inputs
            .iter()
            .map(|i| tensor_info(&i.name, &i.input_type))
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = session
            .outputs
            .iter()
            .map(|o| tensor_info(&o.name, &o.output_type))
            .collect::<Result<Vec<_>, _>>()?;
        let image_input = ImageInput::from_inputs(&inputs)?;
        let (producer, graph_name) = match session.metadata() {
            Ok(meta) => (
                meta.producer().ok().filter(|s| !s.is_empty()),
                meta.name().ok().filter(|s| !s.is_empty()),
            ),
            Err(_) => (None, None),
        };
        let metadata = ModelMetadata {
            model_path: file.to_path_buf(),
            inputs,
            outputs,
            image_input,
            producer,
            graph_name,
            ort_version: runtime.version().to_string(),
            library_path: runtime.path().to_path_buf(),
            library_source: runtime.source(),
        };
        Ok(Self {
            session,
            metadata,
            threads,
            runtime,
        })
    }

    /// What the model says about itself.
    pub fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    /// The ONNX Runtime library this session runs on (for loading more sessions with it).
    pub fn runtime(&self) -> &Arc<OnnxRuntime> {
        &self.runtime
    }

    /// The intra-op thread count the session was created with.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs the model on one image, given in the image input's layout, size and element type
    /// (checked here, before ONNX Runtime sees it), and returns every output.
    pub fn run(&mut self, pixels: TensorData<'_>) -> Result<Vec<Output>, Error> {
        let input = &self.metadata.image_input;
        if pixels.dtype() != input.dtype {
            return Err(Error::InputMismatch {
                name: input.name.clone(),
                reason: format!("takes {:?} elements, got {:?}", input.dtype, pixels.dtype()),
            });
        }
        if pixels.len() != input.element_count() {
            return Err(Error::InputMismatch {
                name: input.name.clone(),
                reason: format!(
                    "takes {} elements (shape {:?}), got {}",
                    input.element_count(),
                    input.shape,
                    pixels.len()
                ),
            });
        }
        let shape = input.shape.to_vec();
        let value = match pixels {
            TensorData::F32(data) => {
                TensorRef::from_array_view((shape, data)).map(SessionInputValue::from)
            }
            TensorData::U8(data) => {
                TensorRef::from_array_view((shape, data)).map(SessionInputValue::from)
            }
        }
        .map_err(|e| Error::ort("preparing the input", e))?;
        let name = input.name.clone();
        let names: Vec<String> = self
            .metadata
            .outputs
            .iter()
            .map(|o| o.name.clone())
            .collect();
        let results = self
            .session
            .run(vec![(name, value)])
            .map_err(|e| Error::ort("running the model", e))?;
        names
            .into_iter()
            .map(|name| {
                let value = &results[name.as_str()];
                let ty = value.dtype().tensor_type();
                let unsupported = || Error::UnsupportedOutput {
                    name: name.clone(),
                    dtype: ty.map_or_else(|| "non-tensor".into(), dtype_name),
                };
                let failed = |e| Error::ort(format!("reading output {name:?}"), e);
                let (shape, data) = match ty.ok_or_else(unsupported)? {
                    TensorElementType::Float32 => {
                        let (s, d) = value.try_extract_tensor::<f32>().map_err(failed)?;
                        (s.to_vec(), OutputData::F32(d.to_vec()))
                    }
                    TensorElementType::Float64 => {
                        let (s, d) = value.try_extract_tensor::<f64>().map_err(failed)?;
                        (s.to_vec(), OutputData::F64(d.to_vec()))
                    }
                    TensorElementType::Int64 => {
                        let (s, d) = value.try_extract_tensor::<i64>().map_err(failed)?;
                        (s.to_vec(), OutputData::I64(d.to_vec()))
                    }
                    TensorElementType::Uint8 => {
                        let (s, d) = value.try_extract_tensor::<u8>().map_err(failed)?;
                        (s.to_vec(), OutputData::U8(d.to_vec()))
                    }
                    _ => return Err(unsupported()),
                };
                Ok(Output { name, shape, data })
            })
            .collect()
    }
}

fn tensor_info(name: &str, ty: &ValueType) -> Result<TensorInfo, Error> {
    match ty {
        ValueType::Tensor {
            ty,
            shape,
            dimension_symbols,
        } => Ok(TensorInfo {
            name: name.to_string(),
            shape: shape.to_vec(),
            dimension_names: dimension_symbols.iter().map(|s| s.to_string()).collect(),
            dtype: dtype_name(*ty),
        }),
        other => Err(Error::UnsupportedInput(format!(
            "{name:?} is a {other:?}, not a tensor"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_names_its_model_onnx_or_its_only_onnx_file() {
        let dir = std::env::temp_dir().join(format!("onnx-backend-find-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let err = find_model_file(&dir).unwrap_err();
        assert!(err.to_string().contains("holds no model.onnx"), "{err}");
        std::fs::write(dir.join("effnet.onnx"), b"").unwrap();
        assert_eq!(find_model_file(&dir).unwrap(), dir.join("effnet.onnx"));
        std::fs::write(dir.join("other.onnx"), b"").unwrap();
        let err = find_model_file(&dir).unwrap_err();
        assert!(err.to_string().contains("2 *.onnx files"), "{err}");
        std::fs::write(dir.join(MODEL_FILE_NAME), b"").unwrap();
        assert_eq!(find_model_file(&dir).unwrap(), dir.join(MODEL_FILE_NAME));
        assert!(find_model_file(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
