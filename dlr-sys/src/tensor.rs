//! Typed tensors crossing the binding: borrowed inputs and owned outputs.

use std::ffi::c_void;
use std::fmt;

/// Element types this binding can pass to and from libdlr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// `float32`
    F32,
    /// `float64`
    F64,
    /// `uint8`
    U8,
    /// `int8`
    I8,
    /// `int32`
    I32,
    /// `int64`
    I64,
}

impl DType {
    /// Parses DLR's dtype text ("float32", "uint8", ...).
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "float32" => Self::F32,
            "float64" => Self::F64,
            "uint8" => Self::U8,
            "int8" => Self::I8,
            "int32" => Self::I32,
            "int64" => Self::I64,
            _ => return None,
        })
    }

    /// DLR's name for the type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::F64 => "float64",
            Self::U8 => "uint8",
            Self::I8 => "int8",
            Self::I32 => "int32",
            Self::I64 => "int64",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::U8 | Self::I8 => 1,
            Self::I32 | Self::F32 => 4,
            Self::I64 | Self::F64 => 8,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Memory layout of an image input of batch 1 with 3 channels: the one definition that the
/// service's preprocessing and the generated test models share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// `[1, H, W, 3]`, as the ModelStore ResNet-50.
    Nhwc,
    /// `[1, 3, H, W]`.
    Nchw,
}

/// Borrowed input data of one of the supported element types.
#[derive(Debug, Clone, Copy)]
pub enum TensorData<'a> {
    /// `float32` elements.
    F32(&'a [f32]),
    /// `float64` elements.
    F64(&'a [f64]),
    /// `uint8` elements.
    U8(&'a [u8]),
    /// `int8` elements.
    I8(&'a [i8]),
    /// `int32` elements.
    I32(&'a [i32]),
    /// `int64` elements.
    I64(&'a [i64]),
}

impl TensorData<'_> {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Self::F32(_) => DType::F32,
            Self::F64(_) => DType::F64,
            Self::U8(_) => DType::U8,
            Self::I8(_) => DType::I8,
            Self::I32(_) => DType::I32,
            Self::I64(_) => DType::I64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::F32(d) => d.len(),
            Self::F64(d) => d.len(),
            Self::U8(d) => d.len(),
            Self::I8(d) => d.len(),
            Self::I32(d) => d.len(),
            Self::I64(d) => d.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn as_ptr(&self) -> *const c_void {
        match self {
            Self::F32(d) => d.as_ptr().cast(),
            Self::F64(d) => d.as_ptr().cast(),
            Self::U8(d) => d.as_ptr().cast(),
            Self::I8(d) => d.as_ptr().cast(),
            Self::I32(d) => d.as_ptr().cast(),
            Self::I64(d) => d.as_ptr().cast(),
        }
    }
}

/// One named input for [`crate::Model::run`].
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The model's input name, e.g. "data".
    pub name: &'a str,
    /// The shape, which must equal the model's.
    pub shape: &'a [i64],
    /// The elements, row-major.
    pub data: TensorData<'a>,
}

impl<'a> Input<'a> {
    /// A `float32` input.
    pub fn f32(name: &'a str, shape: &'a [i64], data: &'a [f32]) -> Self {
        Self {
            name,
            shape,
            data: TensorData::F32(data),
        }
    }

    /// A `uint8` input.
    pub fn u8(name: &'a str, shape: &'a [i64], data: &'a [u8]) -> Self {
        Self {
            name,
            shape,
            data: TensorData::U8(data),
        }
    }
}

/// Owned output data, copied out of libdlr.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputData {
    /// `float32` elements.
    F32(Vec<f32>),
    /// `float64` elements.
    F64(Vec<f64>),
    /// `uint8` elements.
    U8(Vec<u8>),
    /// `int8` elements.
    I8(Vec<i8>),
    /// `int32` elements.
    I32(Vec<i32>),
    /// `int64` elements.
    I64(Vec<i64>),
}

impl OutputData {
    pub(crate) fn zeroed(dtype: DType, len: usize) -> Self {
        match dtype {
            DType::F32 => Self::F32(vec![0.0; len]),
            DType::F64 => Self::F64(vec![0.0; len]),
            DType::U8 => Self::U8(vec![0; len]),
            DType::I8 => Self::I8(vec![0; len]),
            DType::I32 => Self::I32(vec![0; len]),
            DType::I64 => Self::I64(vec![0; len]),
        }
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut c_void {
        match self {
            Self::F32(d) => d.as_mut_ptr().cast(),
            Self::F64(d) => d.as_mut_ptr().cast(),
            Self::U8(d) => d.as_mut_ptr().cast(),
            Self::I8(d) => d.as_mut_ptr().cast(),
            Self::I32(d) => d.as_mut_ptr().cast(),
            Self::I64(d) => d.as_mut_ptr().cast(),
        }
    }

    /// The values widened to `f64`, whatever the element type (for scoring).
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            Self::F32(d) => d.iter().map(|&v| f64::from(v)).collect(),
            Self::F64(d) => d.clone(),
            Self::U8(d) => d.iter().map(|&v| f64::from(v)).collect(),
            Self::I8(d) => d.iter().map(|&v| f64::from(v)).collect(),
            Self::I32(d) => d.iter().map(|&v| f64::from(v)).collect(),
            Self::I64(d) => d.iter().map(|&v| v as f64).collect(),
        }
    }

    /// The `float32` elements, if that is the type.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            Self::F32(d) => Some(d),
            _ => None,
        }
    }
}

/// One output of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The output's shape.
    pub shape: Vec<i64>,
    /// The elements, row-major.
    pub data: OutputData,
}
