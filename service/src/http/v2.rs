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
use serde_json::json;

use super::SharedState;
use crate::inference::Readiness;

mod infer;
mod wire;

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

/// A v2 error: `{"error": message}` with its status.
fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn server_metadata() -> Json<serde_json::Value> {
    Json(json!({
        "name": "classify-service",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": EXTENSIONS,
    }))
}

async fn live() -> Json<serde_json::Value> {
    Json(json!({ "live": true }))
}

/// Why the model is not ready, if it is not.
fn not_ready(state: &SharedState) -> Option<String> {
    match state.pool().readiness().borrow().clone() {
        Readiness::Ready => None,
        Readiness::Starting(why) | Readiness::Failed(why) => Some(why),
    }
}

async fn ready(State(state): State<SharedState>) -> Response {
    match not_ready(&state) {
        None => Json(json!({ "ready": true })).into_response(),
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
#[derive(Debug, Serialize)]
struct TensorMetadata {
    name: String,
    datatype: String,
    shape: Vec<i64>,
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

fn metadata(state: &SharedState) -> serde_json::Value {
    let info = &state.model;
    let platform = platform(state);
    json!({
        "name": info.name,
        "versions": [info.version],
        "platform": platform,
        "inputs": [TensorMetadata {
            name: info.input.name.clone(),
            datatype: datatype(&info.input.dtype),
            shape: batched(&info.input.shape[1..]),
        }],
        "outputs": [TensorMetadata {
            name: info.output.name.clone(),
            datatype: datatype(&info.output.dtype),
            shape: batched(&[info.output.shape.iter().product()]),
        }],
    })
}

async fn model_metadata(State(state): State<SharedState>, Path(model): Path<String>) -> Response {
    match served(&state, &model, None) {
        Ok(()) => Json(metadata(&state)).into_response(),
        Err(not_served) => not_served.into_response(),
    }
}

async fn model_version_metadata(
    State(state): State<SharedState>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    match served(&state, &model, Some(&version)) {
        Ok(()) => Json(metadata(&state)).into_response(),
        Err(not_served) => not_served.into_response(),
    }
}

/// Triton's model configuration (the `model_configuration` extension), as its tools read it:
/// `max_batch_size` is the most images one request may hold (the queue's capacity), and the
/// tensors' `dims` leave out the batch dimension, as Triton's do when a model batches.
fn configuration(state: &SharedState) -> serde_json::Value {
    let info = &state.model;
    let data_type = |dtype: &str| format!("TYPE_{}", datatype(dtype));
    let format = match state.classifier.input.layout {
        crate::preprocess::Layout::Nchw => "FORMAT_NCHW",
        crate::preprocess::Layout::Nhwc => "FORMAT_NHWC",
    };
    json!({
        "name": info.name,
        "platform": platform(state),
        "max_batch_size": state.pool().capacity(),
        "input": [{
            "name": info.input.name,
            "data_type": data_type(&info.input.dtype),
            "format": format,
            "dims": info.input.shape[1..],
        }],
        "output": [{
            "name": info.output.name,
            "data_type": data_type(&info.output.dtype),
            "dims": [info.output.shape.iter().product::<i64>()],
        }],
    })
}

async fn model_config(State(state): State<SharedState>, Path(model): Path<String>) -> Response {
    match served(&state, &model, None) {
        Ok(()) => Json(configuration(&state)).into_response(),
        Err(not_served) => not_served.into_response(),
    }
}

async fn model_version_config(
    State(state): State<SharedState>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    match served(&state, &model, Some(&version)) {
        Ok(()) => Json(configuration(&state)).into_response(),
        Err(not_served) => not_served.into_response(),
    }
}

fn model_readiness(state: &SharedState, model: &str, version: Option<&str>) -> Response {
    if let Err(not_served) = served(state, model, version) {
        return not_served.into_response();
    }
    match not_ready(state) {
        None => Json(json!({ "name": model, "ready": true })).into_response(),
        Some(why) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("model {model:?} is not ready: {why}"),
        ),
    }
}

async fn model_ready(State(state): State<SharedState>, Path(model): Path<String>) -> Response {
    model_readiness(&state, &model, None)
}

async fn model_version_ready(
    State(state): State<SharedState>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    model_readiness(&state, &model, Some(&version))
}

/// `[{"name","version","state"}]`: the one model this server serves. The request body (an
/// optional `{"ready": bool}` filter) may be empty, so it is not read.
async fn repository_index(State(state): State<SharedState>) -> Json<serde_json::Value> {
    let info = &state.model;
    let model_state = if not_ready(&state).is_none() {
        "READY"
    } else {
        "UNAVAILABLE"
    };
    Json(json!([{ "name": info.name, "version": info.version, "state": model_state }]))
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
