//! The OpenAPI 3.1 document, and the wire types only the service's own endpoints use.
//!
//! What `POST /classify` exchanges (request body, answer, problem documents) is defined once in
//! the `classify-api` crate, shared with the IPC adapter and the tests; its `openapi` feature
//! gives those types their schemas here. This module adds the schemas of bodies that are not
//! JSON (raw image, multipart) and the documents of `/healthz`, `/readyz` and `/v1/model`. The
//! committed `openapi/openapi.json` is checked against [`ApiDoc`] by a test, so any change to a
//! wire type shows up as a reviewed diff of that file.

use super::v2;
use classify_api::{
    ClassifyBase64, ClassifyDirAndName, ClassifyJson, ClassifyPath, ClassifyResponse, ModelRef,
    Prediction, Problem, Timings,
};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

// Only for the OpenAPI document: the handler reads multipart bodies part by part.
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
    /// What the worker layout is for ("latency" or "throughput"; see `--performance-hint`).
    pub performance_hint: String,
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
    /// The memory limit seen and the decode memory budget.
    pub memory: MemoryInfo,
}

/// The memory limit the service runs under and the budget it derived from it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MemoryInfo {
    /// The limit in bytes: the process's cgroup's or the machine's `MemTotal`, the smaller
    /// (absent when it cannot be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = u64, example = 268435456)]
    pub limit_bytes: Option<u64>,
    /// Where the limit came from, e.g. `cgroup v2 /sys/fs/cgroup/system.slice/x/memory.max`
    /// or `MemTotal` (absent with the limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        value_type = String,
        example = "cgroup v1 /sys/fs/cgroup/memory/greengrass/memory.limit_in_bytes"
    )]
    pub limit_source: Option<String>,
    /// Bytes all concurrent decodes may hold at once (its current value: a derived budget is
    /// sized again once the workers have warmed up).
    #[schema(example = 116391936)]
    pub decode_memory_budget_bytes: u64,
    /// "derived" from the limit, or "configured".
    #[schema(example = "derived")]
    pub decode_memory_budget: String,
    /// Bytes of request bodies, referenced files and input tensors held at once (a body from
    /// reading until the answer, a tensor until the model has run); a request that finds too
    /// little left for its body is answered 503 before its body is read, an image too little
    /// for its tensor 503 before it is decoded.
    #[schema(example = 50331648)]
    pub body_memory_budget_bytes: u64,
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
    /// Output name (the model's, or `output0` when the runtime reports none).
    pub name: String,
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
            `deadline-exceeded`, `internal`, `misdirected-request` (a `Host` not served \
            here), `origin-forbidden` (a browser origin not allowed). Every answer carries \
            `x-request-id`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        super::classify::classify,
        super::healthz,
        super::readyz,
        super::metrics,
        super::model,
        v2::server_metadata,
        v2::live,
        v2::ready,
        v2::model_metadata,
        v2::model_version_metadata,
        v2::model_config,
        v2::model_version_config,
        v2::model_ready,
        v2::model_version_ready,
        v2::infer::infer,
        v2::infer::infer_version,
        v2::repository_index,
    ),
    components(schemas(
        ClassifyResponse, Prediction, ModelRef, Timings, ClassifyJson,
        ClassifyBase64, ClassifyPath, ClassifyDirAndName, ClassifyMultipart, ImageBytes, Health, ModelInfo, InputInfo, OutputInfo, MemoryInfo, Problem,
    )),
    tags(
        (name = "classify", description = "Image classification"),
        (name = "health", description = "Liveness, readiness, metrics"),
        (name = "model", description = "The loaded model"),
        (name = "v2", description = "The Open Inference Protocol v2 (KServe v2 / Triton HTTP), \
            for tritonclient, kserve's client and the tools built on them. Errors are \
            `{\"error\": \"…\"}` as `application/json`."),
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

#[cfg(test)]
mod tests {
    use classify_api::ProblemType;
    use utoipa::OpenApi;

    use super::ApiDoc;

    #[test]
    fn the_document_lists_every_problem_type() {
        let description = ApiDoc::openapi().info.description.unwrap_or_default();
        for kind in ProblemType::ALL {
            assert!(
                description.contains(&format!("`{}`", kind.slug())),
                "the OpenAPI description does not list {}",
                kind.slug()
            );
        }
    }
}
