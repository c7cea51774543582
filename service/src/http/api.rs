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

/// Mirror of [`Prediction`] for (de)serialisation in clients and tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Prediction)]
pub struct PredictionSchema {
    /// Class index in the model's output.
    pub index: usize,
    /// The class label.
    pub label: String,
    /// Probability in [0, 1] (softmax of the logits unless the model outputs probabilities).
    pub probability: f64,
    /// The model's raw output for this class (a logit for logit models).
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
    pub name: String,
    /// Model version (ModelStore version unless configured).
    pub version: String,
}

/// Time spent per stage, in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Timings {
    /// Decoding the image (incl. orientation, alpha, grayscale).
    pub decode_ms: f64,
    /// Resizing and laying out the tensor.
    pub preprocess_ms: f64,
    /// Waiting for a model worker.
    pub queue_ms: f64,
    /// Running the model.
    pub inference_ms: f64,
    /// Whole request, from the first byte handled to the answer.
    pub total_ms: f64,
}

/// JSON request body of `POST /classify`: exactly one image source, plus options.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassifyJson {
    /// The image, base64 (standard alphabet; a `data:` URL prefix is accepted).
    pub image_base64: Option<String>,
    /// An image file inside an allowed directory (absolute path).
    pub path: Option<String>,
    /// The seed's form: a directory inside an allowed directory ...
    pub image_dir: Option<String>,
    /// ... and a file name in it.
    pub fname: Option<String>,
    /// Number of predictions (default from configuration, 5).
    pub top_k: Option<usize>,
    /// Minimum probability of returned predictions, 0..1 (default 0).
    pub threshold: Option<f64>,
}

/// Multipart request body of `POST /classify` (for the OpenAPI document and Swagger UI).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ClassifyMultipart {
    /// The image file.
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    pub image: String,
    /// Number of predictions.
    pub top_k: Option<usize>,
    /// Minimum probability.
    pub threshold: Option<f64>,
}

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
        description = "Local image classification on the device with a DLR model (the \
            Greengrass ModelStore ResNet-50 by default). Errors are RFC 9457 \
            `application/problem+json` documents whose `type` is stable.",
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
        ClassifyResponse, PredictionSchema, ModelRef, Timings, ClassifyJson, ClassifyMultipart,
        Health, ModelInfo, InputInfo, OutputInfo, Problem,
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
