//! Wire types of the HTTP API and the OpenAPI 3.1 document generated from them.
//!
//! These shapes are a contract other components code against (the IPC adapter, the
//! end-to-end tests); the committed `openapi/openapi.json` is checked against [`ApiDoc`] by a
//! test, so any change here shows up as a reviewed diff of that file.

use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::problem::Problem;
use crate::scoring::Prediction;

/// A successful classification.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "request_id": "9b2c0f4e-3d1a-4c8e-9f57-2a6a1c0d7e11",
    "label": "red",
    "predictions": [
        {"index": 2, "label": "red", "probability": 0.726, "logit": 0.692},
        {"index": 7, "label": "orange", "probability": 0.118, "logit": -1.124}
    ],
    "model": {"name": "colour-demo", "version": "0.1.0"},
    "timings": {"decode_ms": 0.291, "preprocess_ms": 0.418, "queue_ms": 0.031,
                "inference_ms": 0.254, "total_ms": 1.203}
}))]
pub struct ClassifyResponse {
    /// The request's id (`x-request-id` if given, else a UUID).
    pub request_id: String,
    /// The model's top-1 label (independent of `top_k` and `threshold`).
    pub label: String,
    /// Up to `top_k` classes with probability ≥ `threshold`, most probable first.
    pub predictions: Vec<PredictionSchema>,
    /// The model that answered.
    pub model: ModelRef,
    /// Where the time went, in milliseconds.
    pub timings: Timings,
}

/// One class of the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Prediction)]
pub struct PredictionSchema {
    /// Class index in the model's output.
    #[schema(example = 2)]
    pub index: usize,
    /// The class label.
    #[schema(example = "red")]
    pub label: String,
    /// Probability from 0 to 1 (softmax of the logits unless the model outputs probabilities).
    #[schema(minimum = 0.0, maximum = 1.0, example = 0.726)]
    pub probability: f64,
    /// The model's raw output for this class (a logit for logit models).
    #[schema(example = 0.692)]
    pub logit: f64,
}

impl From<Prediction> for PredictionSchema {
    fn from(p: Prediction) -> Self {
        Self {
            index: p.index,
            label: p.label,
            probability: p.probability,
            logit: p.logit,
        }
    }
}

/// Model name and version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelRef {
    /// Model name (directory name unless configured).
    #[schema(example = "colour-demo")]
    pub name: String,
    /// Model version (ModelStore version unless configured).
    #[schema(example = "0.1.0")]
    pub version: String,
}

/// Time spent per stage, in milliseconds rounded to the microsecond.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Timings {
    /// Decoding the image (incl. orientation, alpha, grayscale).
    #[schema(example = 0.291)]
    pub decode_ms: f64,
    /// Resizing and laying out the tensor.
    #[schema(example = 0.418)]
    pub preprocess_ms: f64,
    /// Waiting for a model worker.
    #[schema(example = 0.031)]
    pub queue_ms: f64,
    /// Running the model.
    #[schema(example = 0.254)]
    pub inference_ms: f64,
    /// Whole request, from the first byte handled to the answer.
    #[schema(example = 1.203)]
    pub total_ms: f64,
}

/// A tiny red PNG, so that the prefilled JSON example in Swagger UI classifies as is.
pub const EXAMPLE_PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAEUlEQVR42mO4IyKHFTEMLQkAj85DgTY7KIkAAAAASUVORK5CYII=";

// Only for the OpenAPI document: the handler reads JSON field by field so that every mistake
// gets a plain answer naming the field.
/// JSON body of `POST /classify`: exactly one image source, plus the options.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
#[schema(as = ClassifyJson)]
pub enum ClassifyJsonSchema {
    /// The image itself, base64-encoded.
    Base64(ClassifyBase64),
    /// An image file inside a directory the service was started with (`--allowed-dir`).
    Path(ClassifyPath),
    /// A directory and a file name in it, inside an allowed directory.
    DirAndName(ClassifyDirAndName),
}

/// The image itself, base64-encoded.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ClassifyBase64 {
    /// The image, base64 (standard alphabet; a `data:image/...;base64,` prefix is accepted).
    #[schema(example = json!(EXAMPLE_PNG_BASE64))]
    pub image_base64: String,
    /// Number of predictions to return (larger than the class count returns all).
    #[serde(default)]
    #[schema(minimum = 1, example = 3)]
    pub top_k: u32,
    /// Minimum probability of returned predictions.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 1.0, example = 0.0)]
    pub threshold: f64,
}

/// An image file by absolute path, inside an allowed directory.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ClassifyPath {
    /// Absolute path of the image file.
    #[schema(example = "/tmp/images/pelican.jpeg")]
    pub path: String,
    /// Number of predictions to return (larger than the class count returns all).
    #[serde(default)]
    #[schema(minimum = 1, example = 3)]
    pub top_k: u32,
    /// Minimum probability of returned predictions.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 1.0, example = 0.0)]
    pub threshold: f64,
}

/// A directory and a file name in it (the form the original Greengrass sample used), inside
/// an allowed directory.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ClassifyDirAndName {
    /// Absolute path of the directory.
    #[schema(example = "/tmp/images")]
    pub image_dir: String,
    /// File name inside `image_dir`.
    #[schema(example = "pelican.jpeg", min_length = 1)]
    pub fname: String,
    /// Number of predictions to return (larger than the class count returns all).
    #[serde(default)]
    #[schema(minimum = 1, example = 3)]
    pub top_k: u32,
    /// Minimum probability of returned predictions.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 1.0, example = 0.0)]
    pub threshold: f64,
}

// Only for the OpenAPI document, like `ClassifyJsonSchema`.
/// Multipart body of `POST /classify`: the image file, plus the options.
#[derive(Debug, Serialize, ToSchema)]
// Makes the document say what the handler does: a part with any other name is refused (422).
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ClassifyMultipart {
    /// The image file (JPEG, PNG, WebP, BMP or GIF).
    #[schema(value_type = String, format = Binary, content_media_type = "application/octet-stream")]
    pub image: Vec<u8>,
    /// Number of predictions to return (larger than the class count returns all).
    #[serde(default)]
    #[schema(minimum = 1, example = 3)]
    pub top_k: u32,
    /// Minimum probability of returned predictions.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 1.0, example = 0.0)]
    pub threshold: f64,
}

/// The image file's bytes as the request body.
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct ImageBytes(Vec<u8>);

/// Liveness/readiness answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// "ok" (alive) or "ready".
    pub status: String,
}

/// Everything about the loaded model and how it is served.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelInfo {
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
    /// Model directory.
    pub path: String,
    /// The runtime: DLR's own backend name for DLR models ("tvm", ...), "onnxruntime" for
    /// ONNX models.
    pub backend: String,
    /// Version of the runtime library: libdlr's, or ONNX Runtime's when `backend` is
    /// "onnxruntime".
    pub dlr_version: String,
    /// The runtime library file in use (libdlr.so, or libonnxruntime.so for ONNX models).
    pub dlr_library: String,
    /// The image input.
    pub input: InputInfo,
    /// The scored output.
    pub output: OutputInfo,
    /// Number of labels (= classes).
    pub labels: usize,
    /// Model instances.
    pub workers: usize,
    /// Runtime threads per instance (DLR threads, or ONNX Runtime intra-op threads).
    pub threads_per_worker: usize,
    /// Inference queue capacity.
    pub queue_capacity: usize,
    /// Channel order fed to the model ("rgb" or "bgr").
    pub channel_order: String,
    /// Resize filter.
    pub resize_filter: String,
    /// Output interpretation ("auto", "logits", "probabilities").
    pub scores: String,
}

/// The model input.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InputInfo {
    /// Input name.
    pub name: String,
    /// Shape.
    pub shape: Vec<i64>,
    /// "NHWC" or "NCHW".
    pub layout: String,
    /// Element type.
    pub dtype: String,
}

/// The model output.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OutputInfo {
    /// Shape.
    pub shape: Vec<i64>,
    /// Element type.
    pub dtype: String,
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "classify-service",
        description = "Image classification on the device with a DLR model (the Greengrass \
            ModelStore ResNet-50 by default). Send an image to `POST /classify` as the raw \
            body, as a multipart file, or in JSON (base64, or a file inside a directory the \
            service was started with).\n\nErrors are RFC 9457 `application/problem+json` \
            documents; branch on their `type`, one of `urn:classify-service:problem:` + \
            `undecodable-image`, `invalid-body`, `path-forbidden`, `file-not-found`, \
            `not-found`, `method-not-allowed`, `payload-too-large`, `image-too-large`, \
            `unsupported-media-type`, `invalid-options`, `not-ready`, `overloaded`, \
            `deadline-exceeded`, `internal`. Every answer carries `x-request-id`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        super::classify::classify,
        super::healthz,
        super::readyz,
        super::metrics,
        super::model,
    ),
    components(schemas(
        ClassifyResponse, PredictionSchema, ModelRef, Timings, ClassifyJsonSchema,
        ClassifyBase64, ClassifyPath, ClassifyDirAndName, ClassifyMultipart, ImageBytes, Health, ModelInfo, InputInfo, OutputInfo, Problem,
    )),
    tags(
        (name = "classify", description = "Image classification"),
        (name = "health", description = "Liveness, readiness, metrics"),
        (name = "model", description = "The loaded model"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The OpenAPI document as pretty JSON with a trailing newline (what `classify-service
/// openapi` prints and `openapi/openapi.json` holds).
pub fn openapi_json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    text.push('\n');
    text
}
