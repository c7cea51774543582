//! What a loaded model says about itself, and the optional `compiled.meta` file beside it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Name, shape and element type of one model input or output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorInfo {
    /// The tensor's name (outputs have one only when the model carries metadata).
    pub name: Option<String>,
    /// The shape, e.g. `[1, 224, 224, 3]`.
    pub shape: Vec<i64>,
    /// DLR's dtype text, e.g. "float32".
    pub dtype: String,
}

impl TensorInfo {
    /// Number of elements the shape holds.
    pub fn element_count(&self) -> usize {
        element_count(&self.shape)
    }
}

pub(crate) fn element_count(shape: &[i64]) -> usize {
    shape
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(0))
        .product()
}

/// Everything known about a loaded model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelMetadata {
    /// The directory the model was loaded from.
    pub model_dir: PathBuf,
    /// Inputs, in DLR's order (parameters excluded).
    pub inputs: Vec<TensorInfo>,
    /// Outputs, in DLR's order.
    pub outputs: Vec<TensorInfo>,
    /// Number of weights (parameters) in the model.
    pub num_weights: usize,
    /// `GetDLRBackend`: "tvm", "relayvm", "treelite", ...
    pub backend: String,
    /// `GetDLRVersion` of the library that loaded it.
    pub dlr_version: String,
    /// The libdlr file that loaded it.
    pub library_path: PathBuf,
    /// The parsed `*.meta` file, when the directory has one.
    pub compiled_meta: Option<CompiledMeta>,
}

impl ModelMetadata {
    /// The input with this name.
    pub fn input(&self, name: &str) -> Option<&TensorInfo> {
        self.inputs.iter().find(|i| i.name.as_deref() == Some(name))
    }
}

/// SageMaker Neo's `compiled.meta`: what the compiler recorded about the model.
///
/// Only the parts this project reads are typed; the whole document stays in `raw`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompiledMeta {
    /// `Requirements`: target OS and architecture.
    #[serde(rename = "Requirements", default)]
    pub requirements: Option<MetaRequirements>,
    /// `Model`: declared inputs and outputs.
    #[serde(rename = "Model", default)]
    pub model: Option<MetaModel>,
    /// The whole document as parsed.
    #[serde(skip_deserializing)]
    pub raw: serde_json::Value,
}

/// `Requirements` of `compiled.meta`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaRequirements {
    /// e.g. "LINUX".
    #[serde(rename = "TargetPlatformOs", default)]
    pub target_platform_os: Option<String>,
    /// e.g. "X86_64".
    #[serde(rename = "TargetPlatformArch", default)]
    pub target_platform_arch: Option<String>,
}

/// `Model` of `compiled.meta`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaModel {
    /// Declared inputs.
    #[serde(rename = "Inputs", default)]
    pub inputs: Vec<MetaTensor>,
    /// Declared outputs.
    #[serde(rename = "Outputs", default)]
    pub outputs: Vec<MetaTensor>,
}

/// One tensor declared in `compiled.meta`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaTensor {
    /// Name, when declared.
    #[serde(default)]
    pub name: Option<String>,
    /// Shape, when declared.
    #[serde(default)]
    pub shape: Option<Vec<i64>>,
    /// Element type, when declared.
    #[serde(default)]
    pub dtype: Option<String>,
}

impl CompiledMeta {
    /// Parses a `compiled.meta` document.
    pub fn parse(path: &Path, text: &str) -> Result<Self, Error> {
        let invalid = |e: serde_json::Error| Error::ModelFileInvalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let raw: serde_json::Value = serde_json::from_str(text).map_err(invalid)?;
        let mut meta: CompiledMeta = serde_json::from_value(raw.clone()).map_err(invalid)?;
        meta.raw = raw;
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_model_store_layout() {
        let text = r#"{"Requirements": {"TargetPlatformOs": "LINUX", "TargetPlatformArch": "X86_64"},
            "Compilation": {"CreatedTime": 1600000000.0},
            "Model": {"Inputs": [{"name": "data", "shape": [1, 224, 224, 3]}],
                      "Outputs": [{"dtype": "float32", "shape": [1, 1000]}]}}"#;
        let meta = CompiledMeta::parse(Path::new("compiled.meta"), text).unwrap();
        let model = meta.model.as_ref().unwrap();
        assert_eq!(model.inputs[0].name.as_deref(), Some("data"));
        assert_eq!(
            model.inputs[0].shape.as_deref(),
            Some(&[1, 224, 224, 3][..])
        );
        assert_eq!(model.outputs[0].dtype.as_deref(), Some("float32"));
        assert_eq!(
            meta.requirements.unwrap().target_platform_arch.as_deref(),
            Some("X86_64")
        );
        assert!(meta.raw.get("Compilation").is_some());
    }

    #[test]
    fn malformed_meta_is_an_error_naming_the_file() {
        let err = CompiledMeta::parse(Path::new("/m/compiled.meta"), "{not json").unwrap_err();
        assert!(err.to_string().contains("/m/compiled.meta"), "{err}");
    }
}
