//! The Open Inference Protocol v2 (KServe v2 / Triton HTTP): server and model metadata, health,
//! readiness and the repository index, for the clients people already have (`tritonclient`,
//! kserve's `InferenceRESTClient`), and inference (`infer`, its wire format in `wire`).
//!
//! Facts the routes follow (`open-inference-protocol.md`): `extensions` is always present and
//! lists only what is implemented; kserve's client reads `{"live": true}` / `{"ready": true}` from
//! the health answers, so they have bodies; errors are `{"error": "…"}` with `Content-Type`
//! exactly `application/json`; an unknown model or version is 404; a model that is not ready is
//! 503 on the readiness routes, as KServe answers (Triton answers 400).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use utoipa::ToSchema;

use super::SharedState;
use crate::inference::Readiness;

pub(crate) mod infer;
pub(crate) mod wire;

/// The protocol extensions served (only what is implemented).
pub const EXTENSIONS: &[&str] = &[
    "binary_tensor_data",
    "classification",
    "model_configuration",
    "model_repository",
];

/// The v2 routes, `/versions/{version}` optional where the protocol allows it.
pub(crate) fn routes() -> axum::Router<SharedState> {
    axum::Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{model}", get(model_metadata))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(model_version_metadata),
        )
        .route("/v2/models/{model}/config", get(model_config))
        .route(
            "/v2/models/{model}/versions/{version}/config",
            get(model_version_config),
        )
        .route("/v2/models/{model}/ready", get(model_ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(model_version_ready),
        )
        .route("/v2/models/{model}/infer", post(infer::infer))
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(infer::infer_version),
        )
        .route("/v2/repository/index", post(repository_index))
}

/// An error of the v2 routes.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": "no model named \"resnet50\"; this server serves \"efficientnet-lite0\""}))]
pub struct V2Error {
    /// What went wrong, in plain words.
    pub error: String,
}

/// A v2 error: `{"error": message}` with its status.
fn error(status: StatusCode, message: String) -> Response {
    (status, Json(V2Error { error: message })).into_response()
}

/// The server's name, version and protocol extensions.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerMetadata {
    /// `classify-service`.
    pub name: String,
    /// The service's version.
    pub version: String,
    /// The protocol extensions served.
    #[schema(example = json!(EXTENSIONS))]
    pub extensions: Vec<String>,
}

/// Server metadata.
#[utoipa::path(get, path = "/v2", tag = "v2", operation_id = "v2_server_metadata",
    responses((status = 200, description = "The server and the extensions it serves",
               body = ServerMetadata)))]
pub(crate) async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "classify-service".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: EXTENSIONS.iter().map(|e| e.to_string()).collect(),
    })
}

/// Liveness as kserve's client reads it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Live {
    /// Always true when the server answers.
    pub live: bool,
}

/// Readiness as kserve's client reads it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// True: the model is loaded and warmed up.
    pub ready: bool,
}

/// Server liveness: the process answers (like `/healthz`).
#[utoipa::path(get, path = "/v2/health/live", tag = "v2", operation_id = "v2_health_live",
    responses((status = 200, description = "Live", body = Live)))]
pub(crate) async fn live() -> Json<Live> {
    Json(Live { live: true })
}

/// Why the model is not ready, if it is not.
fn not_ready(state: &SharedState) -> Option<String> {
    match state.pool().readiness().borrow().clone() {
        Readiness::Ready => None,
        Readiness::Starting(why) | Readiness::Failed(why) => Some(why),
    }
}

/// Server readiness: the model is loaded and warmed up (like `/readyz`).
#[utoipa::path(get, path = "/v2/health/ready", tag = "v2", operation_id = "v2_health_ready",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Not ready; the error says why", body = V2Error),
    ))]
pub(crate) async fn ready(State(state): State<SharedState>) -> Response {
    match not_ready(&state) {
        None => Json(Ready { ready: true }).into_response(),
        Some(why) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the model is not ready: {why}"),
        ),
    }
}

/// Whether `model` (and `version`) is the served model; the 404 answer when it is not.
fn served(state: &SharedState, model: &str, version: Option<&str>) -> Result<(), NotServed> {
    let info = &state.model;
    if model != info.name {
        return Err(NotServed(format!(
            "no model named {model:?}; this server serves {:?}",
            info.name
        )));
    }
    if let Some(version) = version
        && version != info.version
    {
        return Err(NotServed(format!(
            "model {model:?} has no version {version:?}; it has {:?}",
            info.version
        )));
    }
    Ok(())
}

/// An unknown model or version: 404 with its message.
struct NotServed(String);

impl IntoResponse for NotServed {
    fn into_response(self) -> Response {
        error(StatusCode::NOT_FOUND, self.0)
    }
}

/// A tensor of the model metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct TensorMetadata {
    /// The tensor's name.
    #[schema(example = "data")]
    pub name: String,
    /// Its element type: `FP32`, `UINT8`, ….
    #[schema(example = "FP32")]
    pub datatype: String,
    /// Its shape; `-1` is the batch dimension (any N).
    #[schema(example = json!([-1, 224, 224, 3]))]
    pub shape: Vec<i64>,
}

/// The model's metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelMetadata {
    /// The model's name (as `/v1/model` shows it).
    #[schema(example = "efficientnet-lite0")]
    pub name: String,
    /// Its one version.
    pub versions: Vec<String>,
    /// `dlr` or `onnxruntime_onnx`.
    #[schema(example = "dlr")]
    pub platform: String,
    /// The model's input tensor. It also takes encoded images (JPEG, PNG, WebP, BMP, GIF) as
    /// `BYTES` with shape `[N]`, which this metadata cannot say.
    pub inputs: Vec<TensorMetadata>,
    /// The model's output: one row per image.
    pub outputs: Vec<TensorMetadata>,
}

/// The v2 datatype of a runtime element type ("float32" → "FP32").
pub(crate) fn datatype(dtype: &str) -> String {
    match dtype {
        "float16" => "FP16",
        "float32" => "FP32",
        "float64" => "FP64",
        "bfloat16" => "BF16",
        "uint8" => "UINT8",
        "uint16" => "UINT16",
        "uint32" => "UINT32",
        "uint64" => "UINT64",
        "int8" => "INT8",
        "int16" => "INT16",
        "int32" => "INT32",
        "int64" => "INT64",
        "bool" => "BOOL",
        other => return other.to_ascii_uppercase(),
    }
    .to_owned()
}

/// A tensor's shape in a batch: `-1` (any N) in front of one image's shape, as Triton reports
/// a batching model. The input is the model's own tensor with its batch dimension of 1 made N
/// (or encoded images as BYTES `[N]`, which the metadata cannot say; the README does); the
/// output is one row of the model's output per image.
fn batched(per_image: &[i64]) -> Vec<i64> {
    std::iter::once(-1)
        .chain(per_image.iter().copied())
        .collect()
}

/// Triton's platform name for the runtime serving the model.
fn platform(state: &SharedState) -> &'static str {
    if state.model.backend == "onnxruntime" {
        "onnxruntime_onnx"
    } else {
        "dlr"
    }
}

fn metadata(state: &SharedState) -> ModelMetadata {
    let info = &state.model;
    ModelMetadata {
        name: info.name.clone(),
        versions: vec![info.version.clone()],
        platform: platform(state).into(),
        inputs: vec![TensorMetadata {
            name: info.input.name.clone(),
            datatype: datatype(&info.input.dtype),
            shape: batched(&info.input.shape[1..]),
        }],
        outputs: vec![TensorMetadata {
            name: info.output.name.clone(),
            datatype: datatype(&info.output.dtype),
            shape: batched(&[info.output.shape.iter().product()]),
        }],
    }
}

/// Model metadata.
#[utoipa::path(get, path = "/v2/models/{model}", tag = "v2", operation_id = "v2_model_metadata",
    params(("model" = String, Path, description = "The served model's name")),
    responses(
        (status = 200, description = "The model's tensors", body = ModelMetadata),
        (status = 404, description = "No such model", body = V2Error),
    ))]
pub(crate) async fn model_metadata(
    State(state): State<SharedState>,
    Path(model): Path<String>,
) -> Response {
    match served(&state, &model, None) {
        Ok(()) => Json(metadata(&state)).into_response(),
        Err(not_served) => not_served.into_response(),
    }
}

/// Model metadata of one version.
#[utoipa::path(get, path = "/v2/models/{model}/versions/{version}", tag = "v2",
    operation_id = "v2_model_version_metadata",
    params(("model" = String, Path, description = "The served model's name"),
           ("version" = String, Path, description = "Its version")),
    responses(
        (status = 200, description = "The model's tensors", body = ModelMetadata),
        (status = 404, description = "No such model or version", body = V2Error),
    ))]
pub(crate) async fn model_version_metadata(
    State(state): State<SharedState>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    match served(&state, &model, Some(&version)) {
        Ok(()) => Json(metadata(&state)).into_response(),
        Err(not_served) => not_served.into_response(),
    }
}

/// One tensor of Triton's model configuration.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigTensor {
    /// The tensor's name.
    pub name: String,
    /// `TYPE_` and its datatype: `TYPE_FP32`, ….
    #[schema(example = "TYPE_FP32")]
    pub data_type: String,
    /// The input's layout: `FORMAT_NHWC` or `FORMAT_NCHW` (inputs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    pub format: Option<String>,
    /// The shape of one image's tensor (without the batch dimension).
    #[schema(example = json!([224, 224, 3]))]
    pub dims: Vec<i64>,
}

/// Triton's model configuration, as its tools read it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelConfig {
    /// The model's name.
    pub name: String,
    /// `dlr` or `onnxruntime_onnx`.
    pub platform: String,
    /// The most images one infer request may hold (the inference queue's capacity).
    pub max_batch_size: usize,
    /// The model's input.
    pub input: Vec<ConfigTensor>,
    /// The model's output.
    pub output: Vec<ConfigTensor>,
}

/// Triton's model configuration (the `model_configuration` extension): `max_batch_size` is the
/// most images one request may hold (the queue's capacity), and the tensors' `dims` leave out
/// the batch dimension, as Triton's do when a model batches.
fn configuration(state: &SharedState) -> ModelConfig {
    let info = &state.model;
    let data_type = |dtype: &str| format!("TYPE_{}", datatype(dtype));
    let format = match state.classifier.input.layout {
        crate::preprocess::Layout::Nchw => "FORMAT_NCHW",
        crate::preprocess::Layout::Nhwc => "FORMAT_NHWC",
    };
    ModelConfig {
        name: info.name.clone(),
        platform: platform(state).into(),
        max_batch_size: state.pool().capacity(),
        input: vec![ConfigTensor {
            name: info.input.name.clone(),
            data_type: data_type(&info.input.dtype),
            format: Some(format.into()),
            dims: info.input.shape[1..].to_vec(),
        }],
        output: vec![ConfigTensor {
            name: info.output.name.clone(),
            data_type: data_type(&info.output.dtype),
            format: None,
            dims: vec![info.output.shape.iter().product()],
        }],
    }
}

/// Model configuration.
#[utoipa::path(get, path = "/v2/models/{model}/config", tag = "v2",
    operation_id = "v2_model_config",
    params(("model" = String, Path, description = "The served model's name")),
    responses(
        (status = 200, description = "Triton's model configuration", body = ModelConfig),
        (status = 404, description = "No such model", body = V2Error),
    ))]
pub(crate) async fn model_config(
    State(state): State<SharedState>,
    Path(model): Path<String>,
) -> Response {
    match served(&state, &model, None) {
        Ok(()) => Json(configuration(&state)).into_response(),
        Err(not_served) => not_served.into_response(),
    }
}

/// Model configuration of one version.
#[utoipa::path(get, path = "/v2/models/{model}/versions/{version}/config", tag = "v2",
    operation_id = "v2_model_version_config",
    params(("model" = String, Path, description = "The served model's name"),
           ("version" = String, Path, description = "Its version")),
    responses(
        (status = 200, description = "Triton's model configuration", body = ModelConfig),
        (status = 404, description = "No such model or version", body = V2Error),
    ))]
pub(crate) async fn model_version_config(
    State(state): State<SharedState>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    match served(&state, &model, Some(&version)) {
        Ok(()) => Json(configuration(&state)).into_response(),
        Err(not_served) => not_served.into_response(),
    }
}

/// A model's readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelReady {
    /// The model's name.
    pub name: String,
    /// True: loaded and warmed up.
    pub ready: bool,
}

fn model_readiness(state: &SharedState, model: &str, version: Option<&str>) -> Response {
    if let Err(not_served) = served(state, model, version) {
        return not_served.into_response();
    }
    match not_ready(state) {
        None => Json(ModelReady {
            name: model.into(),
            ready: true,
        })
        .into_response(),
        Some(why) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("model {model:?} is not ready: {why}"),
        ),
    }
}

/// Model readiness.
#[utoipa::path(get, path = "/v2/models/{model}/ready", tag = "v2", operation_id = "v2_model_ready",
    params(("model" = String, Path, description = "The served model's name")),
    responses(
        (status = 200, description = "Ready", body = ModelReady),
        (status = 404, description = "No such model", body = V2Error),
        (status = 503, description = "Not ready; the error says why", body = V2Error),
    ))]
pub(crate) async fn model_ready(
    State(state): State<SharedState>,
    Path(model): Path<String>,
) -> Response {
    model_readiness(&state, &model, None)
}

/// Model readiness of one version.
#[utoipa::path(get, path = "/v2/models/{model}/versions/{version}/ready", tag = "v2",
    operation_id = "v2_model_version_ready",
    params(("model" = String, Path, description = "The served model's name"),
           ("version" = String, Path, description = "Its version")),
    responses(
        (status = 200, description = "Ready", body = ModelReady),
        (status = 404, description = "No such model or version", body = V2Error),
        (status = 503, description = "Not ready; the error says why", body = V2Error),
    ))]
pub(crate) async fn model_version_ready(
    State(state): State<SharedState>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    model_readiness(&state, &model, Some(&version))
}

/// One model of the repository index.
#[derive(Debug, Serialize, ToSchema)]
pub struct IndexEntry {
    /// The model's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// `READY` or `UNAVAILABLE`.
    #[schema(example = "READY")]
    pub state: String,
}

/// The repository index (the `model_repository` extension): the one model this server serves.
/// The request body (an optional `{"ready": bool}` filter) is not read.
#[utoipa::path(post, path = "/v2/repository/index", tag = "v2", operation_id = "v2_repository_index",
    responses((status = 200, description = "The served model", body = Vec<IndexEntry>)))]
pub(crate) async fn repository_index(State(state): State<SharedState>) -> Json<Vec<IndexEntry>> {
    let info = &state.model;
    let model_state = if not_ready(&state).is_none() {
        "READY"
    } else {
        "UNAVAILABLE"
    };
    Json(vec![IndexEntry {
        name: info.name.clone(),
        version: info.version.clone(),
        state: model_state.into(),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_element_types_are_v2_datatypes() {
        assert_eq!(datatype("float32"), "FP32");
        assert_eq!(datatype("uint8"), "UINT8");
        assert_eq!(datatype("int64"), "INT64");
    }
}
