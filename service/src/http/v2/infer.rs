//! `POST /v2/models/{model}[/versions/{version}]/infer`: encoded images or tensors in, the
//! model's output (or its classification) out.
//!
//! The model's input takes either encoded images as `BYTES` with shape `[N]` (OpenVINO Model
//! Server's pattern: each element one JPEG, PNG, WebP, BMP or GIF file, decoded by the same
//! pipeline as `POST /classify`), or the model's own tensor — its datatype, its shape with N in
//! place of the batch dimension — for clients that preprocess, checked exactly. The N images of a request are admitted as one unit — one place in the
//! inference queue before the body is read, the other N − 1 once the JSON says how many there
//! are, all or none — and run on the worker pool side by side; the first image that fails
//! fails the request with its index in the message, and the others are abandoned (queued jobs
//! whose requester has gone are skipped by the workers).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::wire::AnswerHeader as InferResponse;
use super::wire::{self, InferRequest, InputData, OutputData, OutputTensor, TensorType};
use super::{SharedState, V2Error, served};
use crate::backend::Tensor;
use crate::classifier::{Image, Inferred};
use crate::http::classify::{declared_length, discard_body, read_body, reserve_body};
use crate::http::problem::{ApiError, classify_error, inference_error};
use crate::http::request_id;
use crate::inference::Slot;
use crate::preprocess::InputDType;

/// The JSON request, then the binary inputs' bytes (binary tensor extension).
#[derive(Debug, utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct InferBinary(Vec<u8>);

/// The header of the binary tensor extension (for the OpenAPI document; the handler reads it).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct BinaryHeader {
    /// The JSON part's length in bytes, when binary data follows it (in a request and in an
    /// answer with binary outputs).
    #[param(rename = "Inference-Header-Content-Length", value_type = u64, required = false)]
    length: Option<u64>,
}

/// Infer: encoded images, or the model's own tensor.
///
/// The model's input takes encoded images (JPEG, PNG, WebP, BMP, GIF) as `BYTES` with shape
/// `[N]`, one image per element, decoded and resized as `POST /classify` does them. An image
/// travels binary: the JSON request first, then each element as a 4-byte little-endian length
/// and its bytes, `Inference-Header-Content-Length` giving the JSON's length and the input's
/// `parameters.binary_data_size` its bytes (tritonclient and kserve's client send exactly this;
/// any Content-Type). A client that preprocesses sends the model's own tensor instead: its
/// datatype, N in place of the batch dimension, in JSON `data` (flat or nested) or binary.
///
/// A request holds at most `max_batch_size` images (`GET …/config`; the inference queue's
/// capacity) and is admitted whole or refused whole (503 with `Retry-After`). The first image
/// that fails fails the request, its index named in the error. The answer is the model's output
/// as `[N, classes]`, or with `parameters.classification: K` on the output the top K classes as
/// `"probability:index:label"`; in JSON, or — for outputs asked for binary — their bytes after
/// the JSON, `Inference-Header-Content-Length` giving the JSON's length.
#[utoipa::path(post, path = "/v2/models/{model}/infer", tag = "v2", operation_id = "v2_infer",
    params(("model" = String, Path, description = "The served model's name"), BinaryHeader),
    request_body(description = "The infer request: JSON, or JSON then binary data",
        content((InferRequest = "application/json"), (InferBinary = "application/octet-stream"))),
    responses(
        (status = 200, description = "The outputs", content(
            (InferResponse = "application/json"),
            (InferBinary = "application/octet-stream"))),
        (status = 400, description = "The request does not fit the model; the error says how", body = V2Error),
        (status = 404, description = "No such model", body = V2Error),
        (status = 413, description = "The body or an image is too large, or the batch holds more than max_batch_size images", body = V2Error),
        (status = 500, description = "The server failed; logged under the request id", body = V2Error),
        (status = 503, description = "Not ready, or too few places in the queue for the batch", body = V2Error,
         headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
        (status = 504, description = "The request's deadline passed", body = V2Error),
    ))]
pub(crate) async fn infer(
    State(state): State<SharedState>,
    Path(model): Path<String>,
    request: Request,
) -> Response {
    answer(state, &model, None, request).await
}

/// Infer with one version of the model (as `POST /v2/models/{model}/infer`).
#[utoipa::path(post, path = "/v2/models/{model}/versions/{version}/infer", tag = "v2",
    operation_id = "v2_version_infer",
    params(("model" = String, Path, description = "The served model's name"),
           ("version" = String, Path, description = "Its version"), BinaryHeader),
    request_body(description = "The infer request: JSON, or JSON then binary data",
        content((InferRequest = "application/json"), (InferBinary = "application/octet-stream"))),
    responses(
        (status = 200, description = "The outputs", content(
            (InferResponse = "application/json"),
            (InferBinary = "application/octet-stream"))),
        (status = 400, description = "The request does not fit the model; the error says how", body = V2Error),
        (status = 404, description = "No such model or version", body = V2Error),
        (status = 413, description = "The body or an image is too large, or the batch holds more than max_batch_size images", body = V2Error),
        (status = 500, description = "The server failed; logged under the request id", body = V2Error),
        (status = 503, description = "Not ready, or too few places in the queue for the batch", body = V2Error,
         headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
        (status = 504, description = "The request's deadline passed", body = V2Error),
    ))]
pub(crate) async fn infer_version(
    State(state): State<SharedState>,
    Path((model, version)): Path<(String, String)>,
    request: Request,
) -> Response {
    answer(state, &model, Some(&version), request).await
}

async fn answer(
    state: SharedState,
    model: &str,
    version: Option<&str>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let id = request_id(&request).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if let Err(not_served) = served(&state, model, version) {
        let declared = declared_length(request.headers());
        discard_body(request.into_body(), state.max_body_bytes, declared).await;
        return not_served.into_response();
    }
    let timeout = state.request_timeout;
    match tokio::time::timeout(timeout, handle(&state, request, &id, started)).await {
        Ok(Ok(response)) => {
            state.metrics.total.observe(started.elapsed().as_secs_f64());
            response
        }
        Ok(Err(e)) => error_response(e, &id),
        Err(_) => error_response(ApiError::DeadlineExceeded(timeout.as_millis() as u64), &id),
    }
}

/// An error as v2 answers it: `{"error": detail}`, its status, `Retry-After` on a 503 worth
/// retrying; logged like the problem documents of `/classify`.
fn error_response(e: ApiError, id: &str) -> Response {
    e.log(Some(id));
    let retry_after = e.retry_after();
    let mut response = super::error(e.status(), e.problem(None).detail);
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

async fn handle(
    state: &SharedState,
    request: Request,
    id: &str,
    started: Instant,
) -> Result<Response, ApiError> {
    let timeout_ms = state.request_timeout.as_millis() as u64;
    let declared = declared_length(request.headers());
    // Admission before work: one place in the queue and the body's memory, before the body is
    // read; a refused request's body is drained so that the client reads its answer.
    let admitted = state
        .pool()
        .reserve()
        .map_err(|e| inference_error(e, state.retry_after_secs, timeout_ms))
        .and_then(|slot| Ok((slot, reserve_body(state, request.headers())?)));
    let (first_slot, _body_memory) = match admitted {
        Ok(admitted) => admitted,
        Err(e) => {
            discard_body(request.into_body(), state.max_body_bytes, declared).await;
            return Err(e);
        }
    };
    let header_length = request
        .headers()
        .get(wire::HEADER_LENGTH)
        .map(|v| {
            v.to_str().map(str::to_owned).map_err(|_| {
                ApiError::InvalidBody("Inference-Header-Content-Length is not text".into())
            })
        })
        .transpose()?;
    let body = read_body(request.into_body(), state.max_body_bytes, declared).await?;
    let (document, data) = wire::parse(body, header_length.as_deref())?;
    let images = batch(state, &document, data)?;
    let outputs = requested_outputs(state, &document)?;
    let slots = batch_slots(state, first_slot, images.len())?;
    let inferred = run(state, slots, images, started + state.request_timeout).await?;

    let tensors = outputs
        .iter()
        .map(|wanted| output_tensor(state, wanted, &inferred))
        .collect::<Result<Vec<_>, _>>()?;
    let id = document.id.as_deref().unwrap_or(id);
    let encoded = wire::encode(&state.model.name, &state.model.version, id, &tensors)
        .map_err(|e| ApiError::Internal(format!("encoding the v2 answer: {e}")))?;
    let mut response = Response::new(Body::from(encoded.body));
    let headers = response.headers_mut();
    match encoded.header_length {
        Some(length) => {
            headers.insert(wire::HEADER_LENGTH, HeaderValue::from(length));
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
        }
        None => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    *response.status_mut() = StatusCode::OK;
    Ok(response)
}

/// The batch in the request's one input, checked against the model: encoded images (BYTES
/// `[N]`), or the model's own tensor with N in front of its per-image shape.
fn batch(
    state: &SharedState,
    document: &InferRequest,
    mut data: Vec<InputData>,
) -> Result<Vec<Image>, ApiError> {
    let spec = &state.classifier.input;
    let tensor_type = match spec.dtype {
        InputDType::F32 => TensorType::Fp32,
        InputDType::U8 => TensorType::Uint8,
    };
    let per_image = &spec.shape[1..];
    let tensor_shape = || {
        let dims: Vec<String> = per_image.iter().map(i64::to_string).collect();
        format!("[N, {}]", dims.join(", "))
    };
    let takes = || {
        format!(
            "model {:?} takes one input, {:?}: encoded images as BYTES with shape [N], or its \
             tensor as {} with shape {}",
            state.model.name,
            spec.name,
            tensor_type.name(),
            tensor_shape()
        )
    };
    let (Some(input), Some(data)) = (document.inputs.first(), data.pop()) else {
        return Err(ApiError::InvalidBody(takes()));
    };
    if document.inputs.len() > 1 {
        let names: Vec<&str> = document.inputs.iter().map(|i| i.name.as_str()).collect();
        return Err(ApiError::InvalidBody(format!(
            "the request has {} inputs ({names:?}); {}",
            names.len(),
            takes()
        )));
    }
    if input.name != spec.name {
        return Err(ApiError::InvalidBody(format!(
            "unexpected input {:?}; {}",
            input.name,
            takes()
        )));
    }
    let whose = format!("input {:?}", spec.name);
    let batch_size = |shape: &[i64]| match shape.first() {
        Some(&n) if n >= 1 => Some(n as usize),
        _ => None,
    };
    if input.datatype == "BYTES" {
        let count = match (batch_size(&input.shape), input.shape.len()) {
            (Some(n), 1) => n,
            _ => {
                return Err(ApiError::InvalidBody(format!(
                    "{whose} has shape {:?}; encoded images take shape [N], N at least 1 (one \
                     element per image)",
                    input.shape
                )));
            }
        };
        let images = wire::bytes_elements(data, &whose)?;
        if images.len() != count {
            return Err(ApiError::InvalidBody(format!(
                "{whose} has shape [{count}] but holds {} elements",
                images.len()
            )));
        }
        return Ok(images.into_iter().map(Image::Bytes).collect());
    }
    if input.datatype != tensor_type.name() {
        return Err(ApiError::InvalidBody(format!(
            "{whose} has datatype {:?}; {}",
            input.datatype,
            takes()
        )));
    }
    let count = match batch_size(&input.shape) {
        Some(n) if input.shape[1..] == *per_image => n,
        _ => {
            return Err(ApiError::InvalidBody(format!(
                "{whose} has shape {:?}; its tensor takes {}, N at least 1",
                input.shape,
                tensor_shape()
            )));
        }
    };
    let per_image_elements = per_image.iter().product::<i64>() as usize;
    let expected = count.checked_mul(per_image_elements).ok_or_else(|| {
        ApiError::InvalidBody(format!("{whose} has shape {:?}: too large", input.shape))
    })?;
    let tensor = wire::tensor_elements(data, tensor_type, expected, &whose)?;
    Ok(split(tensor, count, per_image_elements)
        .into_iter()
        .map(Image::Tensor)
        .collect())
}

/// One tensor of N images' elements as N tensors.
fn split(tensor: Tensor, count: usize, each: usize) -> Vec<Tensor> {
    match tensor {
        Tensor::F32(v) if count == 1 => vec![Tensor::F32(v)],
        Tensor::U8(v) if count == 1 => vec![Tensor::U8(v)],
        Tensor::F32(v) => v.chunks(each).map(|c| Tensor::F32(c.to_vec())).collect(),
        Tensor::U8(v) => v.chunks(each).map(|c| Tensor::U8(c.to_vec())).collect(),
    }
}

/// What to send back for one output.
#[derive(Debug)]
struct Wanted {
    name: String,
    binary: bool,
    /// The classification extension's K: the top K classes as "value:index:label".
    classification: Option<usize>,
}

/// The outputs asked for (every output when none are named), checked against the model.
fn requested_outputs(
    state: &SharedState,
    document: &InferRequest,
) -> Result<Vec<Wanted>, ApiError> {
    let all_binary = wire::flag(
        document.parameters.as_ref(),
        "binary_data_output",
        "the request",
    )?;
    let model_output = &state.model.output.name;
    let Some(requested) = &document.outputs else {
        return Ok(vec![Wanted {
            name: model_output.clone(),
            binary: all_binary,
            classification: None,
        }]);
    };
    let mut wanted: Vec<Wanted> = Vec::with_capacity(requested.len());
    for output in requested {
        let whose = format!("output {:?}", output.name);
        if &output.name != model_output {
            return Err(ApiError::InvalidBody(format!(
                "unknown {whose}; model {:?} has one output, {model_output:?}",
                state.model.name
            )));
        }
        if wanted.iter().any(|w| w.name == output.name) {
            return Err(ApiError::InvalidBody(format!(
                "{whose} is asked for twice; name it once"
            )));
        }
        let parameters = output.parameters.as_ref();
        let classification = match wire::count(parameters, "classification", &whose)? {
            None => None,
            Some(0) => {
                return Err(ApiError::InvalidBody(format!(
                    "{whose}: parameters.classification must be at least 1 (the number of \
                     classes to return)"
                )));
            }
            Some(k) => Some(usize::try_from(k).unwrap_or(usize::MAX)),
        };
        wanted.push(Wanted {
            name: output.name.clone(),
            binary: all_binary || wire::flag(parameters, "binary_data", &whose)?,
            classification,
        });
    }
    Ok(wanted)
}

/// One place in the queue per image, all or none: the first was taken at admission.
fn batch_slots(state: &SharedState, first: Slot, images: usize) -> Result<Vec<Slot>, ApiError> {
    let capacity = state.pool().capacity();
    if images > capacity {
        return Err(ApiError::PayloadTooLarge(format!(
            "the request holds {images} images; a batch holds at most {capacity} (the inference \
             queue's capacity, --queue-capacity)"
        )));
    }
    let mut slots = Vec::with_capacity(images);
    slots.push(first);
    for _ in 1..images {
        match state.pool().reserve() {
            Ok(slot) => slots.push(slot),
            Err(e) => {
                let free = slots.len();
                let timeout_ms = state.request_timeout.as_millis() as u64;
                // The places already taken go back when `slots` is dropped.
                return Err(
                    inference_error(e, state.retry_after_secs, timeout_ms).prefixed(&format!(
                        "a batch of {images} images needs {images} places in the inference \
                         queue, and {free} were free: "
                    )),
                );
            }
        }
    }
    Ok(slots)
}

/// Runs every image of the batch on the pool; the first failure names its image and drops
/// the rest (the join set aborts their tasks).
async fn run(
    state: &SharedState,
    slots: Vec<Slot>,
    images: Vec<Image>,
    deadline: Instant,
) -> Result<Vec<Inferred>, ApiError> {
    let count = images.len();
    let timeout_ms = state.request_timeout.as_millis() as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (slot, image)) in slots.into_iter().zip(images).enumerate() {
        let classifier = Arc::clone(&state.classifier);
        tasks.spawn(
            async move {
                let result = classifier.infer(slot, image, deadline).await;
                (index, result)
            }
            .instrument(tracing::Span::current()),
        );
    }
    let mut done: Vec<Option<Inferred>> = (0..count).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (index, result) =
            joined.map_err(|e| ApiError::Internal(format!("a batch image's task failed: {e}")))?;
        let inferred = result.map_err(|e| {
            let e = classify_error(e, state.retry_after_secs, timeout_ms);
            if count > 1 {
                e.prefixed(&format!("image {index} of the batch of {count}: "))
            } else {
                e
            }
        })?;
        done[index] = Some(inferred);
    }
    Ok(done.into_iter().flatten().collect())
}

/// One output of the answer for the whole batch.
fn output_tensor(
    state: &SharedState,
    wanted: &Wanted,
    inferred: &[Inferred],
) -> Result<OutputTensor, ApiError> {
    let classes = inferred.first().map_or(0, |i| i.raw.len());
    let (shape, data) = match wanted.classification {
        Some(k) => {
            let k = k.min(classes);
            let mut elements = Vec::with_capacity(inferred.len() * k);
            for image in inferred {
                let ranked = state
                    .classifier
                    .rank(&image.raw)
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                elements.extend(
                    ranked
                        .iter()
                        .take(k)
                        .map(|p| format!("{:.6}:{}:{}", p.probability, p.index, p.label)),
                );
            }
            (vec![inferred.len(), k], OutputData::Bytes(elements))
        }
        None => {
            let values = inferred
                .iter()
                .flat_map(|i| i.raw.iter().copied())
                .collect();
            (
                vec![inferred.len(), classes],
                OutputData::numbers(&state.model.output.dtype, values),
            )
        }
    };
    Ok(OutputTensor {
        name: wanted.name.clone(),
        shape,
        data,
        binary: wanted.binary,
    })
}

#[cfg(test)]
mod tests {
    //! Batch admission through the whole router, with the scripted backend holding the only
    //! worker: no clock decides any verdict.

    use axum::body::Body;
    use axum::http::header;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use crate::backend::fake::OK;
    use crate::http::classify::tests::{held_worker, pixel};

    /// A v2 infer request of `images` as BYTES [N] through the binary extension, as
    /// tritonclient sends it (no Content-Type).
    fn batch(images: &[Vec<u8>]) -> axum::extract::Request {
        let mut tail = Vec::new();
        for image in images {
            tail.extend_from_slice(&(image.len() as u32).to_le_bytes());
            tail.extend_from_slice(image);
        }
        let header = json!({"inputs": [{"name": "x", "shape": [images.len()], "datatype": "BYTES",
            "parameters": {"binary_data_size": tail.len()}}]})
        .to_string();
        let mut body = header.clone().into_bytes();
        body.extend_from_slice(&tail);
        axum::extract::Request::post("/v2/models/fake/infer")
            .header("inference-header-content-length", header.len())
            .body(Body::from(body))
            .unwrap()
    }

    async fn json_body(response: axum::response::Response) -> Value {
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_is_admitted_whole_or_refused_whole() {
        let (pool, app, controls, held) = held_worker(2).await;
        // One of the two places taken: a batch of two cannot have both.
        let slot = pool.reserve().unwrap();
        let ok = || pixel([OK as u8, 2, 0]);

        let refused = app.clone().oneshot(batch(&[ok(), ok()])).await.unwrap();
        assert_eq!(refused.status(), 503);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "7");
        assert_eq!(refused.headers()[header::CONTENT_TYPE], "application/json");
        let error = json_body(refused).await["error"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            error.contains("a batch of 2 images needs 2 places") && error.contains("1 were free"),
            "{error}"
        );
        // Refused whole: the place it had taken first is free again.
        assert_eq!(pool.queue_depth(), 1);

        let too_big = app
            .clone()
            .oneshot(batch(&[ok(), ok(), ok()]))
            .await
            .unwrap();
        assert_eq!(too_big.status(), 413);
        let error = json_body(too_big).await["error"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(error.contains("at most 2"), "{error}");

        drop(slot);
        controls.gate.send(()).unwrap();
        assert_eq!(held.await.unwrap().unwrap().status(), 200);
        let answered = app.clone().oneshot(batch(&[ok(), ok()])).await.unwrap();
        assert_eq!(answered.status(), 200);
        // No output named and no binary_data_output: JSON, the raw output per image.
        assert_eq!(
            json_body(answered).await["outputs"],
            json!([{"name": "output0", "datatype": "FP32", "shape": [2, 2],
                    "data": [2.0, 1.0, 2.0, 1.0]}])
        );
        pool.shutdown();
    }
}
