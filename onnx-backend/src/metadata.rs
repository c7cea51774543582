//! What a loaded ONNX model says about itself, and the image input derived from it.

use std::path::PathBuf;

use crate::error::Error;
use crate::library::LibrarySource;

/// Name, shape and element type of one model input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name in the graph.
    pub name: String,
    /// The shape as the graph declares it; `-1` marks a dynamic dimension.
    pub shape: Vec<i64>,
    /// The names of dynamic dimensions (e.g. "batch"), `""` where a dimension is fixed or
    /// unnamed; as long as `shape`.
    pub dimension_names: Vec<String>,
    /// The element type in DLR's spelling ("float32", "uint8", "int64", ...), so that callers
    /// can treat both backends' metadata alike.
    pub dtype: String,
}

/// Element type of the image input: what `run` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// float32 pixels (the model normalises them, or expects them normalised by its docs).
    F32,
    /// uint8 pixels.
    U8,
}

/// Where the channel axis of a 4-d image input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[1, H, W, 3]` (TensorFlow's convention).
    Nhwc,
    /// `[1, 3, H, W]` (PyTorch's and most ONNX exports').
    Nchw,
}

/// The model's single image input, with every dimension fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInput {
    /// The input's name in the graph.
    pub name: String,
    /// The concrete shape `run` feeds: a dynamic batch dimension becomes 1.
    pub shape: [i64; 4],
    /// Where the channel axis is.
    pub layout: Layout,
    /// Height in pixels.
    pub height: u32,
    /// Width in pixels.
    pub width: u32,
    /// Element type.
    pub dtype: DType,
}

impl ImageInput {
    /// Elements one image holds.
    pub fn element_count(&self) -> usize {
        self.shape.iter().map(|&d| d as usize).product()
    }

    /// Derives the image input from a model's declared inputs: exactly one 4-d float32 or
    /// uint8 tensor with 3 channels, batch 1 or dynamic, fixed height and width. The layout is
    /// where the 3 is; `[1, 3, 3, 3]` is read as NCHW, ONNX's convention.
    pub fn from_inputs(inputs: &[TensorInfo]) -> Result<Self, Error> {
        let [input] = inputs else {
            return Err(Error::UnsupportedInput(format!(
                "the model has {} inputs ({}); an image classifier has exactly one",
                inputs.len(),
                inputs
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let name = &input.name;
        let dtype = match input.dtype.as_str() {
            "float32" => DType::F32,
            "uint8" => DType::U8,
            other => {
                return Err(Error::UnsupportedInput(format!(
                    "input {name:?} has element type {other}; supported: float32, uint8"
                )));
            }
        };
        let &[batch, d1, d2, d3] = input.shape.as_slice() else {
            return Err(Error::UnsupportedInput(format!(
                "input {name:?} has shape {:?}; an image input has 4 dimensions, [1,H,W,3] or \
                 [1,3,H,W]",
                input.shape
            )));
        };
        if batch != 1 && batch != -1 {
            return Err(Error::UnsupportedInput(format!(
                "input {name:?} has batch size {batch}; supported: 1 or dynamic"
            )));
        }
        let (layout, height, width) = match (d1, d3) {
            (3, _) => (Layout::Nchw, d2, d3),
            (_, 3) => (Layout::Nhwc, d1, d2),
            _ => {
                return Err(Error::UnsupportedInput(format!(
                    "input {name:?} has shape {:?}: no 3-channel axis at position 1 (NCHW) or \
                     3 (NHWC)",
                    input.shape
                )));
            }
        };
        let pixels = |d: i64, what: &str| {
            u32::try_from(d).ok().filter(|&v| v > 0).ok_or_else(|| {
                Error::UnsupportedInput(format!(
                    "input {name:?} has a dynamic or invalid {what} (shape {:?}); export the \
                     model with a fixed input size",
                    input.shape
                ))
            })
        };
        let (height, width) = (pixels(height, "height")?, pixels(width, "width")?);
        let (h, w) = (i64::from(height), i64::from(width));
        let shape = match layout {
            Layout::Nchw => [1, 3, h, w],
            Layout::Nhwc => [1, h, w, 3],
        };
        Ok(Self {
            name: name.clone(),
            shape,
            layout,
            height,
            width,
            dtype,
        })
    }
}

/// Everything known about a loaded ONNX model.
#[derive(Debug, Clone)]
pub struct ModelMetadata {
    /// The `.onnx` file that was loaded.
    pub model_path: PathBuf,
    /// Inputs, in the graph's order.
    pub inputs: Vec<TensorInfo>,
    /// Outputs, in the graph's order.
    pub outputs: Vec<TensorInfo>,
    /// The single image input `run` feeds.
    pub image_input: ImageInput,
    /// The tool that wrote the model (`producer_name`), when it says.
    pub producer: Option<String>,
    /// The graph's name, when it has one.
    pub graph_name: Option<String>,
    /// ONNX Runtime's version, e.g. "1.22.1".
    pub ort_version: String,
    /// The ONNX Runtime library file in use.
    pub library_path: PathBuf,
    /// How that library was found.
    pub library_source: LibrarySource,
}

/// DLR's spelling of an ONNX element type.
pub(crate) fn dtype_name(ty: ort::tensor::TensorElementType) -> String {
    use ort::tensor::TensorElementType as T;
    match ty {
        T::Float32 => "float32",
        T::Float64 => "float64",
        T::Float16 => "float16",
        T::Bfloat16 => "bfloat16",
        T::Uint8 => "uint8",
        T::Int8 => "int8",
        T::Uint16 => "uint16",
        T::Int16 => "int16",
        T::Uint32 => "uint32",
        T::Int32 => "int32",
        T::Uint64 => "uint64",
        T::Int64 => "int64",
        T::Bool => "bool",
        T::String => "string",
        other => return format!("{other:?}").to_lowercase(),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(shape: &[i64], dtype: &str) -> Vec<TensorInfo> {
        vec![TensorInfo {
            name: "data".into(),
            shape: shape.to_vec(),
            dimension_names: vec![String::new(); shape.len()],
            dtype: dtype.into(),
        }]
    }

    #[test]
    fn layout_follows_the_channel_axis() {
        let nhwc = ImageInput::from_inputs(&info(&[1, 224, 224, 3], "float32")).unwrap();
        assert_eq!(
            (nhwc.layout, nhwc.height, nhwc.width),
            (Layout::Nhwc, 224, 224)
        );
        let nchw = ImageInput::from_inputs(&info(&[1, 3, 120, 160], "uint8")).unwrap();
        assert_eq!(
            (nchw.layout, nchw.height, nchw.width, nchw.dtype),
            (Layout::Nchw, 120, 160, DType::U8)
        );
        assert_eq!(nchw.element_count(), 3 * 120 * 160);
    }

    #[test]
    fn a_dynamic_batch_becomes_one() {
        let input = ImageInput::from_inputs(&info(&[-1, 3, 224, 224], "float32")).unwrap();
        assert_eq!(input.shape, [1, 3, 224, 224]);
    }

    #[test]
    fn unsupported_inputs_are_explained() {
        let cases: [(&[i64], &str, &str); 5] = [
            (&[1, 224, 224, 4], "float32", "no 3-channel axis"),
            (&[1, 3, -1, -1], "float32", "dynamic or invalid height"),
            (&[8, 3, 224, 224], "float32", "batch size 8"),
            (&[1, 3, 224, 224], "int64", "element type int64"),
            (&[3, 224, 224], "float32", "4 dimensions"),
        ];
        for (shape, dtype, expected) in cases {
            let err = ImageInput::from_inputs(&info(shape, dtype)).unwrap_err();
            assert!(err.to_string().contains(expected), "{shape:?}: {err}");
        }
        let mut two = info(&[1, 3, 8, 8], "float32");
        two.extend(info(&[1, 3, 8, 8], "float32"));
        let err = ImageInput::from_inputs(&two).unwrap_err();
        assert!(err.to_string().contains("2 inputs"), "{err}");
    }
}
