//! The raw C API of libdlr 1.6, as a table of function pointers resolved at run time.
//!
//! Nothing here is safe to call directly: these are the C functions exactly as `dlr.h` declares
//! them. [`crate::Model`] is the safe layer. The table is public so that callers who need an
//! advanced entry point (pipelines, DLPack tensors, custom allocators) can reach it through
//! [`crate::DlrLibrary::api`].

use std::ffi::{c_char, c_int, c_void};

/// `DLRModelHandle`: an opaque pointer owned by libdlr.
pub type DlrModelHandle = *mut c_void;

/// `DLDeviceType` value for the CPU (`kDLCPU`).
pub const DEVICE_CPU: c_int = 1;

/// A malloc-like function for `SetDLRCustomAllocatorMalloc`.
pub type DlrMallocFn = unsafe extern "C" fn(usize) -> *mut c_void;
/// A free-like function for `SetDLRCustomAllocatorFree`.
pub type DlrFreeFn = unsafe extern "C" fn(*mut c_void);
/// A memalign-like function `(alignment, size)` for `SetDLRCustomAllocatorMemalign`.
pub type DlrMemalignFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;

/// `DLRModelElemType`: what one [`DlrModelElem`] describes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DlrModelElemType {
    /// A Hexagon `_hexagon_model.so`.
    HexagonLib = 0,
    /// Neo metadata (`compiled.meta`).
    NeoMetadata = 1,
    /// The TVM graph JSON.
    TvmGraph = 2,
    /// The TVM kernel library (must be a path: it is `dlopen`ed).
    TvmLib = 3,
    /// The TVM params blob.
    TvmParams = 4,
    /// A Relay VM executable.
    RelayExec = 5,
}

/// `DLRModelElem`: one model part, given either as a file path or as bytes in memory.
#[repr(C)]
#[derive(Debug)]
pub struct DlrModelElem {
    /// Which part this is.
    pub elem_type: DlrModelElemType,
    /// A NUL-terminated path, or null when `data` is given.
    pub path: *const c_char,
    /// The part's bytes, or null when `path` is given.
    pub data: *const c_void,
    /// Length of `data` in bytes.
    pub data_size: usize,
}

/// DLPack `DLDevice` (called `DLContext` in older DLPack).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DlDevice {
    /// `DLDeviceType` (1 = CPU).
    pub device_type: i32,
    /// Device ordinal.
    pub device_id: i32,
}

/// DLPack `DLDataType`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DlDataType {
    /// 0 int, 1 uint, 2 float.
    pub code: u8,
    /// Bits per lane.
    pub bits: u8,
    /// Lanes per element (1 for scalars).
    pub lanes: u16,
}

/// DLPack `DLTensor`, for `SetDLRInputTensor` and `GetDLROutputTensor`.
#[repr(C)]
#[derive(Debug)]
pub struct DlTensor {
    /// Start of the data.
    pub data: *mut c_void,
    /// Where the data lives.
    pub device: DlDevice,
    /// Number of dimensions.
    pub ndim: i32,
    /// Element type.
    pub dtype: DlDataType,
    /// `ndim` extents.
    pub shape: *mut i64,
    /// `ndim` strides in elements, or null for compact row-major.
    pub strides: *mut i64,
    /// Offset of the first element from `data`, in bytes.
    pub byte_offset: u64,
}

type H = *mut DlrModelHandle;

/// Every function of libdlr 1.6's C API. Fields are the C symbols, in `dlr.h` order.
///
/// The advanced entry points are `Option`s: they are absent from some older builds, and the
/// safe layer never needs them.
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct DlrApi {
    pub create_model: unsafe extern "C" fn(H, *const c_char, c_int, c_int) -> c_int,
    pub create_model_from_model_elem:
        Option<unsafe extern "C" fn(H, *const DlrModelElem, usize, c_int, c_int) -> c_int>,
    pub create_pipeline:
        Option<unsafe extern "C" fn(H, c_int, *const *const c_char, c_int, c_int) -> c_int>,
    pub delete_model: unsafe extern "C" fn(H) -> c_int,
    pub run_model: unsafe extern "C" fn(H) -> c_int,
    pub get_num_inputs: unsafe extern "C" fn(H, *mut c_int) -> c_int,
    pub get_num_weights: unsafe extern "C" fn(H, *mut c_int) -> c_int,
    pub get_input_name: unsafe extern "C" fn(H, c_int, *mut *const c_char) -> c_int,
    pub get_input_type: unsafe extern "C" fn(H, c_int, *mut *const c_char) -> c_int,
    pub get_weight_name: unsafe extern "C" fn(H, c_int, *mut *const c_char) -> c_int,
    pub set_input:
        unsafe extern "C" fn(H, *const c_char, *const i64, *const c_void, c_int) -> c_int,
    pub get_input: unsafe extern "C" fn(H, *const c_char, *mut c_void) -> c_int,
    pub get_input_shape: unsafe extern "C" fn(H, c_int, *mut i64) -> c_int,
    pub get_input_size_dim: unsafe extern "C" fn(H, c_int, *mut i64, *mut c_int) -> c_int,
    pub get_output_shape: unsafe extern "C" fn(H, c_int, *mut i64) -> c_int,
    pub get_output: unsafe extern "C" fn(H, c_int, *mut c_void) -> c_int,
    pub get_output_ptr: unsafe extern "C" fn(H, c_int, *mut *const c_void) -> c_int,
    pub get_num_outputs: unsafe extern "C" fn(H, *mut c_int) -> c_int,
    pub get_output_size_dim: unsafe extern "C" fn(H, c_int, *mut i64, *mut c_int) -> c_int,
    pub get_output_type: unsafe extern "C" fn(H, c_int, *mut *const c_char) -> c_int,
    pub get_has_metadata: unsafe extern "C" fn(H, *mut bool) -> c_int,
    pub get_output_name: unsafe extern "C" fn(H, c_int, *mut *const c_char) -> c_int,
    pub get_output_index: unsafe extern "C" fn(H, *const c_char, *mut c_int) -> c_int,
    pub get_output_by_name: unsafe extern "C" fn(H, *const c_char, *mut c_void) -> c_int,
    pub get_last_error: unsafe extern "C" fn() -> *const c_char,
    pub get_backend: unsafe extern "C" fn(H, *mut *const c_char) -> c_int,
    pub get_device_type: unsafe extern "C" fn(*const c_char) -> c_int,
    pub get_version: unsafe extern "C" fn(*mut *const c_char) -> c_int,
    pub set_num_threads: unsafe extern "C" fn(H, c_int) -> c_int,
    pub use_cpu_affinity: unsafe extern "C" fn(H, c_int) -> c_int,
    pub set_custom_allocator_malloc: Option<unsafe extern "C" fn(DlrMallocFn) -> c_int>,
    pub set_custom_allocator_free: Option<unsafe extern "C" fn(DlrFreeFn) -> c_int>,
    pub set_custom_allocator_memalign: Option<unsafe extern "C" fn(DlrMemalignFn) -> c_int>,
    pub set_input_tensor: Option<unsafe extern "C" fn(H, *const c_char, *mut DlTensor) -> c_int>,
    pub get_output_tensor: Option<unsafe extern "C" fn(H, c_int, *mut DlTensor) -> c_int>,
    pub get_output_managed_tensor_ptr:
        Option<unsafe extern "C" fn(H, c_int, *mut *const c_void) -> c_int>,
}

/// Resolves every symbol of [`DlrApi`] from an open library.
///
/// Returns the name of the first required symbol that is missing.
///
/// # Safety
/// `lib` must be a libdlr build whose exported functions have the signatures of `dlr.h` 1.6;
/// the returned pointers are valid only while `lib` stays loaded.
pub(crate) unsafe fn resolve(lib: &libloading::Library) -> Result<DlrApi, &'static str> {
    macro_rules! required {
        ($name:literal) => {
            // SAFETY: the caller guarantees the symbol has the declared C signature.
            *unsafe { lib.get($name) }.map_err(|_| $name)?
        };
    }
    macro_rules! optional {
        ($name:literal) => {
            // SAFETY: as above; a missing optional symbol is simply `None`.
            unsafe { lib.get($name) }.ok().map(|symbol| *symbol)
        };
    }
    Ok(DlrApi {
        create_model: required!("CreateDLRModel"),
        create_model_from_model_elem: optional!("CreateDLRModelFromModelElem"),
        create_pipeline: optional!("CreateDLRPipeline"),
        delete_model: required!("DeleteDLRModel"),
        run_model: required!("RunDLRModel"),
        get_num_inputs: required!("GetDLRNumInputs"),
        get_num_weights: required!("GetDLRNumWeights"),
        get_input_name: required!("GetDLRInputName"),
        get_input_type: required!("GetDLRInputType"),
        get_weight_name: required!("GetDLRWeightName"),
        set_input: required!("SetDLRInput"),
        get_input: required!("GetDLRInput"),
        get_input_shape: required!("GetDLRInputShape"),
        get_input_size_dim: required!("GetDLRInputSizeDim"),
        get_output_shape: required!("GetDLROutputShape"),
        get_output: required!("GetDLROutput"),
        get_output_ptr: required!("GetDLROutputPtr"),
        get_num_outputs: required!("GetDLRNumOutputs"),
        get_output_size_dim: required!("GetDLROutputSizeDim"),
        get_output_type: required!("GetDLROutputType"),
        get_has_metadata: required!("GetDLRHasMetadata"),
        get_output_name: required!("GetDLROutputName"),
        get_output_index: required!("GetDLROutputIndex"),
        get_output_by_name: required!("GetDLROutputByName"),
        get_last_error: required!("DLRGetLastError"),
        get_backend: required!("GetDLRBackend"),
        get_device_type: required!("GetDLRDeviceType"),
        get_version: required!("GetDLRVersion"),
        set_num_threads: required!("SetDLRNumThreads"),
        use_cpu_affinity: required!("UseDLRCPUAffinity"),
        set_custom_allocator_malloc: optional!("SetDLRCustomAllocatorMalloc"),
        set_custom_allocator_free: optional!("SetDLRCustomAllocatorFree"),
        set_custom_allocator_memalign: optional!("SetDLRCustomAllocatorMemalign"),
        set_input_tensor: optional!("SetDLRInputTensor"),
        get_output_tensor: optional!("GetDLROutputTensor"),
        get_output_managed_tensor_ptr: optional!("GetDLROutputManagedTensorPtr"),
    })
}
