//! The safe model API: load a model directory, read its metadata, run it.
//!
//! # Thread-safety contract
//! A DLR model handle holds mutable input and output buffers, so one handle must never be used
//! by two threads at once. [`Model`] encodes that: it is `Send` (a handle may move to another
//! thread) but not `Sync`, and [`Model::run`] takes `&mut self`. To share one model between
//! threads, put it behind a `Mutex`; for parallel inference, load one `Model` per worker thread.
//! Creating and deleting handles is serialised per library, because those calls touch
//! libdlr's global registries.
//!
//! # Errors before FFI
//! `DLRGetLastError` is not reset by every failing call, so a failure can carry the text of an
//! earlier one. Everything that can be checked in Rust — the directory and its files, input
//! names, dtypes, shapes and lengths — is checked before libdlr is called.

use std::ffi::{CStr, CString, c_char, c_int};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Error;
use crate::ffi::DlrModelHandle;
use crate::library::{DlrLibrary, LibrarySearch};
use crate::loading::{ParamsLoading, create_handle};
use crate::metadata::{CompiledMeta, ModelMetadata, TensorInfo, element_count};
use crate::tensor::{DType, Input, Output, OutputData};

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct ModelOptions {
    /// Threads libdlr may use for one inference; `None` means the CPUs available to this
    /// process ([`crate::available_cpus`]). Always applied with `SetDLRNumThreads`, because
    /// DLR's own default ran a ResNet-50 about 1.75x slower on a 2-core machine.
    pub threads: Option<usize>,
    /// `UseDLRCPUAffinity`: pin libdlr's worker threads to cores. `None` leaves DLR's default.
    pub cpu_affinity: Option<bool>,
    /// An explicit `libdlr.so` (or a directory holding one); see [`crate::library`] for the
    /// discovery order used otherwise.
    pub library_path: Option<PathBuf>,
}

/// A loaded DLR model. See the module docs for the thread-safety contract.
pub struct Model {
    library: Arc<DlrLibrary>,
    handle: DlrModelHandle,
    metadata: ModelMetadata,
    threads: usize,
}

// SAFETY: a DLR handle is not tied to the thread that created it; it only must not be used by
// two threads at once, which `&mut self` on `run` and the absence of `Sync` guarantee.
unsafe impl Send for Model {}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("metadata", &self.metadata)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Loads the model in `model_dir`, finding libdlr by the discovery order (the options'
    /// explicit library first, then the model directory's own copy, ...).
    pub fn load(model_dir: &Path, options: &ModelOptions) -> Result<Self, Error> {
        let parts = model_parts(model_dir)?;
        let library = DlrLibrary::discover(&LibrarySearch {
            explicit: options.library_path.clone(),
            model_dir: Some(model_dir.to_path_buf()),
        })?;
        Self::load_checked(
            library,
            model_dir,
            &parts,
            options,
            ParamsLoading::default(),
        )
    }

    /// Loads the model in `model_dir` with an already open library (`library_path` in the
    /// options is ignored).
    pub fn load_with(
        library: Arc<DlrLibrary>,
        model_dir: &Path,
        options: &ModelOptions,
    ) -> Result<Self, Error> {
        Self::load_with_params(library, model_dir, options, ParamsLoading::default())
    }

    /// [`Self::load_with`], choosing how libdlr gets the parameters (the default,
    /// [`ParamsLoading::Mapped`], keeps peak memory while loading lowest).
    pub fn load_with_params(
        library: Arc<DlrLibrary>,
        model_dir: &Path,
        options: &ModelOptions,
        params: ParamsLoading,
    ) -> Result<Self, Error> {
        let parts = model_parts(model_dir)?;
        Self::load_checked(library, model_dir, &parts, options, params)
    }

    /// Loads a model whose directory passed [`check_model_dir`].
    fn load_checked(
        library: Arc<DlrLibrary>,
        model_dir: &Path,
        parts: &ModelParts,
        options: &ModelOptions,
        params: ParamsLoading,
    ) -> Result<Self, Error> {
        let threads = match options.threads {
            None => crate::available_cpus(),
            Some(0) => return Err(Error::InvalidOption("threads must be at least 1".into())),
            Some(n) if c_int::try_from(n).is_err() => {
                return Err(Error::InvalidOption(format!("threads {n} is too large")));
            }
            Some(n) => n,
        };
        let compiled_meta = read_compiled_meta(parts)?;
        let handle = {
            let _guard = library.lifecycle_lock();
            create_handle(&library, model_dir, parts, params)?
        };
        // From here on `Drop` deletes the handle, whatever fails next.
        let mut model = Model {
            metadata: ModelMetadata {
                model_dir: model_dir.to_path_buf(),
                inputs: Vec::new(),
                outputs: Vec::new(),
                num_weights: 0,
                backend: String::new(),
                dlr_version: library.version().to_string(),
                library_path: library.path().to_path_buf(),
                compiled_meta,
            },
            library,
            handle,
            threads,
        };
        model.call("SetDLRNumThreads", |api, h| {
            // SAFETY: `h` is a live handle; `threads` fits in c_int (checked above).
            unsafe { (api.set_num_threads)(h, threads as c_int) }
        })?;
        if let Some(affinity) = options.cpu_affinity {
            model.call("UseDLRCPUAffinity", |api, h| {
                // SAFETY: `h` is a live handle.
                unsafe { (api.use_cpu_affinity)(h, c_int::from(affinity)) }
            })?;
        }
        model.read_metadata()?;
        Ok(model)
    }

    /// What the model says about itself.
    pub fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    /// The thread count given to `SetDLRNumThreads`.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The library this model runs on.
    pub fn library(&self) -> &Arc<DlrLibrary> {
        &self.library
    }

    /// Sets every input, runs the model and copies every output into Rust-owned buffers.
    ///
    /// Each model input must be given exactly once, with the model's dtype and shape; all of
    /// that is checked before libdlr is called.
    pub fn run(&mut self, inputs: &[Input<'_>]) -> Result<Vec<Output>, Error> {
        self.check_inputs(inputs)?;
        for input in inputs {
            let name = CString::new(input.name)
                .map_err(|_| Error::InvalidOption("input name contains NUL".into()))?;
            let ndim = c_int::try_from(input.shape.len())
                .map_err(|_| Error::InvalidOption("too many dimensions".into()))?;
            self.call("SetDLRInput", |api, h| {
                // SAFETY: name is NUL-terminated; shape has `ndim` entries; data holds
                // exactly product(shape) elements of the model's dtype (checked above). DLR
                // copies the data before returning.
                unsafe {
                    (api.set_input)(
                        h,
                        name.as_ptr(),
                        input.shape.as_ptr(),
                        input.data.as_ptr(),
                        ndim,
                    )
                }
            })?;
        }
        self.call("RunDLRModel", |api, h| {
            // SAFETY: `h` is a live handle with every input set.
            unsafe { (api.run_model)(h) }
        })?;
        let mut outputs = Vec::with_capacity(self.metadata.outputs.len());
        for index in 0..self.metadata.outputs.len() {
            let info = &self.metadata.outputs[index];
            let dtype = DType::parse(&info.dtype)
                .ok_or_else(|| Error::UnsupportedDType(info.dtype.clone()))?;
            let mut data = OutputData::zeroed(dtype, info.element_count());
            let shape = info.shape.clone();
            let out = data.as_mut_ptr();
            self.call("GetDLROutput", |api, h| {
                // SAFETY: `out` has room for the output's element count of its dtype, which
                // DLR reported at load time for this static graph.
                unsafe { (api.get_output)(h, index as c_int, out) }
            })?;
            outputs.push(Output { shape, data });
        }
        Ok(outputs)
    }

    fn check_inputs(&self, inputs: &[Input<'_>]) -> Result<(), Error> {
        let expected_names = || {
            self.metadata
                .inputs
                .iter()
                .filter_map(|i| i.name.clone())
                .collect::<Vec<_>>()
        };
        for (position, input) in inputs.iter().enumerate() {
            let info = self
                .metadata
                .input(input.name)
                .ok_or_else(|| Error::UnknownInput {
                    name: input.name.to_string(),
                    expected: expected_names(),
                })?;
            if inputs[..position]
                .iter()
                .any(|earlier| earlier.name == input.name)
            {
                return Err(Error::DuplicateInput(input.name.to_string()));
            }
            if DType::parse(&info.dtype) != Some(input.data.dtype()) {
                return Err(Error::DTypeMismatch {
                    name: input.name.to_string(),
                    expected: info.dtype.clone(),
                    actual: input.data.dtype(),
                });
            }
            if input.shape != info.shape.as_slice() {
                return Err(Error::ShapeMismatch {
                    name: input.name.to_string(),
                    expected: info.shape.clone(),
                    actual: input.shape.to_vec(),
                });
            }
            let needed = element_count(input.shape);
            if input.data.len() != needed {
                return Err(Error::DataLength {
                    name: input.name.to_string(),
                    shape: input.shape.to_vec(),
                    expected: needed,
                    actual: input.data.len(),
                });
            }
        }
        for info in &self.metadata.inputs {
            let name = info.name.as_deref().unwrap_or_default();
            if !inputs.iter().any(|i| i.name == name) {
                return Err(Error::MissingInput(name.to_string()));
            }
        }
        Ok(())
    }

    fn read_metadata(&mut self) -> Result<(), Error> {
        let num_inputs = self.get_count("GetDLRNumInputs", |api| api.get_num_inputs)?;
        let num_outputs = self.get_count("GetDLRNumOutputs", |api| api.get_num_outputs)?;
        let num_weights = self.get_count("GetDLRNumWeights", |api| api.get_num_weights)?;
        let mut inputs = Vec::with_capacity(num_inputs);
        for index in 0..num_inputs as c_int {
            let name = self.get_string("GetDLRInputName", |api, h, out| {
                // SAFETY: live handle, index < num_inputs, valid out-pointer.
                unsafe { (api.get_input_name)(h, index, out) }
            })?;
            let dtype = self.get_string("GetDLRInputType", |api, h, out| {
                // SAFETY: as above.
                unsafe { (api.get_input_type)(h, index, out) }
            })?;
            let shape = self.get_shape(
                index,
                ("GetDLRInputSizeDim", self.library.api().get_input_size_dim),
                ("GetDLRInputShape", self.library.api().get_input_shape),
            )?;
            inputs.push(TensorInfo {
                name: Some(name),
                shape,
                dtype,
            });
        }
        let mut has_metadata = false;
        self.call("GetDLRHasMetadata", |api, h| {
            // SAFETY: live handle, valid out-pointer to a C `bool`.
            unsafe { (api.get_has_metadata)(h, &mut has_metadata) }
        })?;
        let mut outputs = Vec::with_capacity(num_outputs);
        for index in 0..num_outputs as c_int {
            let dtype = self.get_string("GetDLROutputType", |api, h, out| {
                // SAFETY: live handle, index < num_outputs, valid out-pointer.
                unsafe { (api.get_output_type)(h, index, out) }
            })?;
            let shape = self.get_shape(
                index,
                (
                    "GetDLROutputSizeDim",
                    self.library.api().get_output_size_dim,
                ),
                ("GetDLROutputShape", self.library.api().get_output_shape),
            )?;
            let name = if has_metadata {
                self.get_string("GetDLROutputName", |api, h, out| {
                    // SAFETY: as above; only called when the model has metadata.
                    unsafe { (api.get_output_name)(h, index, out) }
                })
                .ok()
            } else {
                None
            };
            outputs.push(TensorInfo { name, shape, dtype });
        }
        let backend = self.get_string("GetDLRBackend", |api, h, out| {
            // SAFETY: live handle, valid out-pointer.
            unsafe { (api.get_backend)(h, out) }
        })?;
        self.metadata.inputs = inputs;
        self.metadata.outputs = outputs;
        self.metadata.num_weights = num_weights;
        self.metadata.backend = backend;
        Ok(())
    }

    /// Calls one C function on this model's handle and turns a non-zero status into an error.
    fn call(
        &mut self,
        name: &'static str,
        f: impl FnOnce(&crate::ffi::DlrApi, *mut DlrModelHandle) -> c_int,
    ) -> Result<(), Error> {
        let status = f(self.library.api(), &mut self.handle);
        if status != 0 {
            return Err(self.library.last_error(name));
        }
        Ok(())
    }

    fn get_count(
        &mut self,
        name: &'static str,
        f: impl FnOnce(
            &crate::ffi::DlrApi,
        ) -> unsafe extern "C" fn(*mut DlrModelHandle, *mut c_int) -> c_int,
    ) -> Result<usize, Error> {
        let mut count: c_int = 0;
        self.call(name, |api, h| {
            // SAFETY: live handle, valid out-pointer.
            unsafe { f(api)(h, &mut count) }
        })?;
        usize::try_from(count).map_err(|_| Error::Dlr {
            call: name,
            message: format!("negative count {count}"),
        })
    }

    fn get_string(
        &mut self,
        name: &'static str,
        f: impl FnOnce(&crate::ffi::DlrApi, *mut DlrModelHandle, *mut *const c_char) -> c_int,
    ) -> Result<String, Error> {
        let mut ptr: *const c_char = std::ptr::null();
        self.call(name, |api, h| f(api, h, &mut ptr))?;
        if ptr.is_null() {
            return Err(Error::Dlr {
                call: name,
                message: "returned a null string".into(),
            });
        }
        // SAFETY: DLR returned a NUL-terminated string owned by the model, valid now.
        Ok(unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned())
    }

    /// Reads a tensor's shape with a `Get…SizeDim` / `Get…Shape` pair of functions.
    fn get_shape(
        &mut self,
        index: c_int,
        (size_dim_name, size_dim): (&'static str, SizeDimFn),
        (shape_name, shape): (&'static str, ShapeFn),
    ) -> Result<Vec<i64>, Error> {
        let (mut size, mut dim) = (0i64, 0 as c_int);
        self.call(size_dim_name, |_, h| {
            // SAFETY: live handle, valid index, valid out-pointers.
            unsafe { size_dim(h, index, &mut size, &mut dim) }
        })?;
        let dim = usize::try_from(dim).unwrap_or(0);
        let mut extents = vec![0i64; dim];
        self.call(shape_name, |_, h| {
            // SAFETY: `extents` has room for `dim` entries as DLR reported.
            unsafe { shape(h, index, extents.as_mut_ptr()) }
        })?;
        Ok(extents)
    }
}

type SizeDimFn = unsafe extern "C" fn(*mut DlrModelHandle, c_int, *mut i64, *mut c_int) -> c_int;
type ShapeFn = unsafe extern "C" fn(*mut DlrModelHandle, c_int, *mut i64) -> c_int;

impl Drop for Model {
    fn drop(&mut self) {
        let _guard = self.library.lifecycle_lock();
        // SAFETY: the handle came from CreateDLRModel and is deleted exactly once, here.
        unsafe { (self.library.api().delete_model)(&mut self.handle) };
    }
}

pub(crate) fn c_path(path: &Path) -> Result<CString, Error> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidOption(format!("path {} contains NUL", path.display())))
}

/// Checks what can be checked before libdlr sees the directory: it exists, and it holds a
/// readable kernel library, params file and graph (or a Relay VM executable).
pub fn check_model_dir(dir: &Path) -> Result<(), Error> {
    model_parts(dir).map(|_| ())
}

/// The files of a model directory, by kind, each list sorted (what [`check_model_dir`] checks,
/// kept for loading).
#[derive(Debug, Default)]
pub(crate) struct ModelParts {
    pub(crate) kernels: Vec<PathBuf>,
    pub(crate) relay_vm: Vec<PathBuf>,
    pub(crate) params: Vec<PathBuf>,
    pub(crate) graphs: Vec<PathBuf>,
    pub(crate) metas: Vec<PathBuf>,
}

pub(crate) fn model_parts(dir: &Path) -> Result<ModelParts, Error> {
    if !dir.is_dir() {
        return Err(Error::ModelDirMissing(dir.to_path_buf()));
    }
    let entries = std::fs::read_dir(dir).map_err(|source| Error::ModelFileUnreadable {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let with_ext = |ext: &str| -> Vec<PathBuf> {
        files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .filter(|p| p.file_name().is_some_and(|n| n != crate::LIBRARY_FILE_NAME))
            .cloned()
            .collect()
    };
    let parts = ModelParts {
        kernels: with_ext("so"),
        relay_vm: with_ext("ro"),
        params: with_ext("params"),
        graphs: with_ext("json"),
        metas: with_ext("meta"),
    };
    let mut missing = Vec::new();
    if parts.kernels.is_empty() {
        missing.push("a compiled kernel library (*.so other than libdlr.so)");
    }
    if parts.relay_vm.is_empty() {
        if parts.params.is_empty() {
            missing.push("a parameters file (*.params)");
        }
        if parts.graphs.is_empty() {
            missing.push("a graph file (*.json)");
        }
    }
    if !missing.is_empty() {
        return Err(Error::ModelDirIncomplete {
            dir: dir.to_path_buf(),
            missing,
        });
    }
    for file in parts
        .kernels
        .iter()
        .chain(&parts.relay_vm)
        .chain(&parts.params)
        .chain(&parts.graphs)
    {
        std::fs::File::open(file).map_err(|source| Error::ModelFileUnreadable {
            path: file.clone(),
            source,
        })?;
    }
    Ok(parts)
}

fn read_compiled_meta(parts: &ModelParts) -> Result<Option<CompiledMeta>, Error> {
    let Some(path) = parts.metas.first() else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|source| Error::ModelFileUnreadable {
        path: path.clone(),
        source,
    })?;
    CompiledMeta::parse(path, &text).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dlr-sys-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn missing_directory_is_reported() {
        let err = check_model_dir(Path::new("/nonexistent/model")).unwrap_err();
        assert!(matches!(err, Error::ModelDirMissing(_)), "{err}");
    }

    #[test]
    fn incomplete_directory_lists_what_is_missing() {
        let dir = temp_dir("incomplete");
        std::fs::write(dir.join("compiled.so"), b"").unwrap();
        std::fs::write(dir.join("libdlr.so"), b"").unwrap();
        let err = check_model_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("*.params"), "{err}");
        assert!(err.contains("*.json"), "{err}");
        assert!(!err.contains("kernel"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn libdlr_alone_is_not_a_kernel_library() {
        let dir = temp_dir("onlylibdlr");
        for f in ["libdlr.so", "m.params", "m.json"] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        let err = check_model_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("kernel library"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
