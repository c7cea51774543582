//! `POST /classify`: accept an image in any of four forms, classify it, answer once.
//!
//! Input forms, chosen by `Content-Type`:
//! * `image/jpeg|png|webp|bmp|gif` or `application/octet-stream`: the raw body (the format is
//!   always sniffed from the bytes);
//! * `multipart/form-data`: the part named `image` (text parts `top_k`, `threshold` allowed);
//! * `application/json`: `image_base64`, or a file reference `path` / `image_dir` + `fname`
//!   resolved inside the allowed directories (read by `classify-api`'s one reader of the
//!   request document, [`ClassifyJson::from_value`], which the IPC adapter uses too).
//!
//! Options `top_k` and `threshold` come from the query string; values in a JSON or multipart
//! body take precedence. The whole request — reading the body, decoding, waiting for a worker,
//! inference — runs under one deadline. Everything after the body is read (file read, decode,
//! inference, ranking) is `crate::classifier`'s; this handler maps its errors to problems and
//! its result to the `classify-api` answer.

use std::path::PathBuf;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;

use classify_api::request::{SHAPE, field, threshold_from_text, top_k_from_text};
use classify_api::{ClassifyJson, ClassifyResponse, ModelRef, Timings};

use super::problem::{ApiError, classify_error, inference_error};
use super::{SharedState, request_id};
use crate::classifier::Image;

/// Raw media types accepted as an image body.
const IMAGE_TYPES: [&str; 6] = [
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/bmp",
    "image/gif",
    "application/octet-stream",
];

/// Query-string options (for the OpenAPI document; the handler reads the query itself so that
/// repeated and unknown keys get a plain answer).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ClassifyQuery {
    /// Number of predictions to return (larger than the class count returns all; default 5
    /// unless configured). A value in a JSON or multipart body wins.
    #[param(value_type = u32, required = false, minimum = 1, example = 3)]
    top_k: Option<u32>,
    /// Minimum probability of returned predictions (default 0). A value in a JSON or
    /// multipart body wins.
    #[param(value_type = f64, required = false, minimum = 0.0, maximum = 1.0, example = 0.0)]
    threshold: Option<f64>,
}

/// The optional request-id header (for the OpenAPI document; the middleware reads it).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct RequestIdHeader {
    /// Your id for this request (printable ASCII, at most 200 characters); echoed in the
    /// answer, its `x-request-id` header and the service's logs. A UUID is made up when absent.
    #[param(rename = "x-request-id", value_type = String, required = false,
            example = "order-4711-photo-1")]
    request_id: Option<String>,
}

/// Options as given (text from query or multipart, a JSON number's digits), validated later.
#[derive(Default)]
struct RawOptions {
    top_k: Option<String>,
    threshold: Option<String>,
}

/// Classify an image.
///
/// Send the image as the raw body (its format is read from the bytes), as the multipart part
/// `image`, or in JSON: base64, or a file inside a directory the service was started with
/// (`--allowed-dir`). `top_k` and `threshold` go in the query string, or in the multipart or
/// JSON body.
#[utoipa::path(
    post,
    path = "/classify",
    tag = "classify",
    operation_id = "classify_image",
    params(
        ClassifyQuery,
        RequestIdHeader,
    ),
    request_body(
        description = "The image: raw bytes, a multipart file, or JSON",
        content(
            (ImageBytes = "image/jpeg"), (ImageBytes = "image/png"), (ImageBytes = "image/webp"),
            (ImageBytes = "image/bmp"), (ImageBytes = "image/gif"),
            (ImageBytes = "application/octet-stream"),
            (ClassifyMultipart = "multipart/form-data"),
            (ClassifyJson = "application/json", examples(
                // Named after the forms' schemas; the first by name is the one Swagger UI
                // prefills, a red PNG that classifies as is.
                ("ClassifyBase64" = (summary = "The image in base64",
                    value = json!(ClassifyJson::examples()[0]))),
                ("ClassifyPath" = (summary = "A file inside an allowed directory (on a device, /tmp/images by default)",
                    value = json!(ClassifyJson::examples()[1]))),
                ("ClassifyDirAndName" = (summary = "A directory and a file name in it, inside an allowed directory",
                    value = json!(ClassifyJson::examples()[2]))),
            )),
        )
    ),
    responses(
        (status = 200, description = "Classified", body = ClassifyResponse,
         headers(("x-request-id" = String, description = "The request's id"))),
        (status = 400, description = "The image cannot be decoded, or the body is malformed",
         body = Problem, content_type = "application/problem+json", examples(
            ("undecodable-image" = (value = json!({"type": "urn:classify-service:problem:undecodable-image",
                "title": "The image cannot be decoded", "status": 400,
                "detail": "not a JPEG, PNG, WebP, BMP or GIF image (format sniffed from the bytes)",
                "request_id": "9b2c0f4e-3d1a-4c8e-9f57-2a6a1c0d7e11"}))),
            ("invalid-body" = (value = json!({"type": "urn:classify-service:problem:invalid-body",
                "title": "The request body is malformed", "status": 400,
                "detail": "image_base64 is not valid base64 (standard alphabet, optionally after a data: URL prefix)",
                "request_id": "9b2c0f4e-3d1a-4c8e-9f57-2a6a1c0d7e11"}))),
        )),
        (status = 403, description = "The file is outside the allowed directories",
         body = Problem, content_type = "application/problem+json",
         example = json!({"type": "urn:classify-service:problem:path-forbidden",
            "title": "The path is outside the allowed directories", "status": 403,
            "detail": "/etc/passwd is outside the allowed directories",
            "request_id": "9b2c0f4e-3d1a-4c8e-9f57-2a6a1c0d7e11"})),
        (status = 404, description = "The file does not exist",
         body = Problem, content_type = "application/problem+json",
         example = json!({"type": "urn:classify-service:problem:file-not-found",
            "title": "The file does not exist", "status": 404,
            "detail": "/tmp/images/missing.jpg does not exist",
            "request_id": "9b2c0f4e-3d1a-4c8e-9f57-2a6a1c0d7e11"})),
        (status = 413, description = "The body, the file or the image's dimensions exceed the limits",
         body = Problem, content_type = "application/problem+json", examples(
            ("payload-too-large" = (value = json!({"type": "urn:classify-service:problem:payload-too-large",
                "title": "The request is too large", "status": 413,
                "detail": "the request body is 31457280 bytes; the limit is 16777216 bytes",
                "request_id": "9b2c0f4e-3d1a-4c8e-9f57-2a6a1c0d7e11"}))),
            ("image-too-large" = (value = json!({"type": "urn:classify-service:problem:image-too-large",
                "title": "The image is too large", "status": 413,
                "detail": "the image is 20000x15000 = 300000000 pixels; the limit is 100000000",
                "request_id": "9b2c0f4e-3d1a-4c8e-9f57-2a6a1c0d7e11"}))),
        )),
        (status = 415, description = "The Content-Type is not one of those listed here",
         body = Problem, content_type = "application/problem+json",
         example = json!({"type": "urn:classify-service:problem:unsupported-media-type",
            "title": "Unsupported media type", "status": 415,
            "detail": "Content-Type text/plain is not accepted; send image/jpeg, image/png, image/webp, image/bmp, image/gif, application/octet-stream, multipart/form-data or application/json",
            "request_id": "9b2c0f4e-3d1a-4c8e-9f57-2a6a1c0d7e11"})),
        (status = 422, description = "An option or field has a value that is not accepted",
         body = Problem, content_type = "application/problem+json",
         example = json!({"type": "urn:classify-service:problem:invalid-options",
            "title": "Invalid options", "status": 422,
            "detail": "top_k must be a whole number from 1 to 2147483647, got \"0\"",
            "request_id": "9b2c0f4e-3d1a-4c8e-9f57-2a6a1c0d7e11"})),
        (status = 500, description = "The server failed; the cause is logged under the request id",
         body = Problem, content_type = "application/problem+json",
         example = json!({"type": "urn:classify-service:problem:internal",
            "title": "Internal server error", "status": 500,
            "detail": "the server failed to handle this request; the failure is logged under its request id",
            "request_id": "9b2c0f4e-3d1a-4c8e-9f57-2a6a1c0d7e11"})),
        (status = 503, description = "The model is not ready yet, or the queue is full",
         body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u32, description = "Seconds to wait before retrying")),
         examples(
            ("not-ready" = (value = json!({"type": "urn:classify-service:problem:not-ready",
                "title": "The model is not ready", "status": 503,
                "detail": "the model is not ready: warming up",
                "request_id": "9b2c0f4e-3d1a-4c8e-9f57-2a6a1c0d7e11"}))),
            ("overloaded" = (value = json!({"type": "urn:classify-service:problem:overloaded",
                "title": "The service is overloaded", "status": 503,
                "detail": "the inference queue is full (64 waiting); retry later",
                "request_id": "9b2c0f4e-3d1a-4c8e-9f57-2a6a1c0d7e11"}))),
        )),
        (status = 504, description = "The request's deadline passed",
         body = Problem, content_type = "application/problem+json",
         example = json!({"type": "urn:classify-service:problem:deadline-exceeded",
            "title": "The request took too long", "status": 504,
            "detail": "the request did not complete within 30000 ms",
            "request_id": "9b2c0f4e-3d1a-4c8e-9f57-2a6a1c0d7e11"})),
    )
)]
pub async fn classify(State(state): State<SharedState>, request: Request) -> Response {
    let started = Instant::now();
    let id = request_id(&request).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let timeout = state.request_timeout;
    let outcome = tokio::time::timeout(timeout, handle(state.clone(), request, &id, started)).await;
    match outcome {
        Ok(Ok(answer)) => {
            state.metrics.total.observe(started.elapsed().as_secs_f64());
            Json(answer).into_response()
        }
        Ok(Err(e)) => e.into_response_for(Some(&id)),
        Err(_) => {
            ApiError::DeadlineExceeded(timeout.as_millis() as u64).into_response_for(Some(&id))
        }
    }
}

// Only for the OpenAPI attribute above.
use super::api::{ClassifyMultipart, ImageBytes};
use classify_api::Problem;

async fn handle(
    state: SharedState,
    request: Request,
    id: &str,
    started: Instant,
) -> Result<ClassifyResponse, ApiError> {
    let timeout_ms = state.request_timeout.as_millis() as u64;
    let (mut options, kind, slot, _body_memory) = match admit(&state, &request) {
        Ok(admitted) => admitted,
        Err(e) => {
            let declared = declared_length(request.headers());
            discard_body(request.into_body(), state.max_body_bytes, declared).await;
            return Err(e);
        }
    };
    let image = extract(&state, request, kind, &mut options).await?;
    let (top_k, threshold) =
        validate_options(&options, state.default_top_k, state.default_threshold)?;

    let deadline = started + state.request_timeout;
    let done = state
        .classifier
        .classify(slot, image, top_k, threshold, deadline)
        .await
        .map_err(|e| classify_error(e, state.retry_after_secs, timeout_ms))?;
    let ms = super::millis;
    Ok(ClassifyResponse {
        request_id: id.to_string(),
        label: done.label,
        predictions: done.predictions,
        model: ModelRef {
            name: state.model.name.clone(),
            version: state.model.version.clone(),
        },
        timings: Timings {
            decode_ms: ms(done.decode),
            preprocess_ms: ms(done.preprocess),
            queue_ms: ms(done.queue),
            inference_ms: ms(done.inference),
            total_ms: ms(started.elapsed()),
        },
    })
}

fn validate_options(
    options: &RawOptions,
    default_top_k: usize,
    default_threshold: f64,
) -> Result<(usize, f64), ApiError> {
    // The documented schema is an int32 of at least 1; anything past it is refused rather
    // than silently clamped, so a client learns its value was out of range.
    let top_k = match &options.top_k {
        None => default_top_k,
        Some(text) => {
            top_k_from_text(text).map_err(|e| ApiError::InvalidOptions(e.to_string()))? as usize
        }
    };
    let threshold = match &options.threshold {
        None => default_threshold,
        Some(text) => {
            threshold_from_text(text).map_err(|e| ApiError::InvalidOptions(e.to_string()))?
        }
    };
    Ok((top_k, threshold))
}

/// How the body is to be read, from its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    /// `application/json` or `+json`: [`ClassifyJson`].
    Json,
    /// `multipart/form-data` with a part named `image`.
    Multipart,
    /// The raw image.
    Image,
}

/// Checks the Content-Type before anything else is done for the request.
fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .ok_or_else(|| {
            ApiError::UnsupportedMediaType(
                "a Content-Type is required: an image type, application/octet-stream, \
                 multipart/form-data or application/json"
                    .into(),
            )
        })?
        .to_str()
        .ok()
        .and_then(|t| t.parse::<mime::Mime>().ok())
        .ok_or_else(|| ApiError::UnsupportedMediaType("the Content-Type is malformed".into()))?;
    let essence = content_type.essence_str().to_ascii_lowercase();
    if essence == "application/json" || content_type.suffix() == Some(mime::JSON) {
        Ok(BodyKind::Json)
    } else if essence == "multipart/form-data" {
        Ok(BodyKind::Multipart)
    } else if IMAGE_TYPES.contains(&essence.as_str()) {
        Ok(BodyKind::Image)
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {essence} is not accepted; send {}, multipart/form-data or \
             application/json",
            IMAGE_TYPES.join(", ")
        )))
    }
}

/// Reads the body in the form its Content-Type announces.
/// Everything decided from the request line and headers alone: the query's options, the body's
/// kind and — admission before work — an inference slot, so that a request refused for load
/// costs no decode. The slot is given back if anything after this fails.
fn admit(
    state: &SharedState,
    request: &Request,
) -> Result<
    (
        RawOptions,
        BodyKind,
        crate::inference::Slot,
        tokio::sync::OwnedSemaphorePermit,
    ),
    ApiError,
> {
    let options = query_options(request.uri().query())?;
    // A value in the body wins over the query's, but a query value out of its documented
    // range is still the client's mistake: refused, not silently ignored.
    validate_options(&options, state.default_top_k, state.default_threshold)?;
    let kind = body_kind(request.headers())?;
    let timeout_ms = state.request_timeout.as_millis() as u64;
    let slot = state
        .pool()
        .reserve()
        .map_err(|e| inference_error(e, state.retry_after_secs, timeout_ms))?;
    let body = reserve_body(state, request.headers())?;
    Ok((options, kind, slot, body))
}

/// Reserves the memory for a request's body (its declared length, or the body limit) before a
/// byte of it is read; a request that finds too little left is refused like a full queue.
pub(crate) fn reserve_body(
    state: &SharedState,
    headers: &HeaderMap,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    state
        .body_memory
        .reserve(declared_length(headers), state.max_body_bytes)
        .ok_or_else(|| ApiError::Overloaded {
            detail: format!(
                "the request bodies being read and classified hold the whole body memory \
                 budget ({} MiB, sized from the memory limit); retry later",
                state.body_memory.total() >> 20
            ),
            retry_after: state.retry_after_secs,
        })
}

/// Reads and drops the body of a request refused from its headers (load, options, media
/// type) before the answer goes out — up to twice the body limit, like an oversized body,
/// never decoded. HTTP/1.1 clients that write the whole request before reading the answer
/// (Python's `http.client`, many small embedded ones) would otherwise write into a closed
/// connection and see a broken pipe instead of the 503, and the connection could not be
/// reused. Past the bound hyper closes the connection, as before.
pub(crate) async fn discard_body(body: axum::body::Body, limit: usize, declared: Option<u64>) {
    // Whatever the outcome, the request already has its answer.
    let _ = read_body_keeping(body, limit, declared, Keep::Nothing).await;
}

async fn extract(
    state: &SharedState,
    request: Request,
    kind: BodyKind,
    options: &mut RawOptions,
) -> Result<Image, ApiError> {
    let limit = state.max_body_bytes;
    let declared = declared_length(request.headers());
    let (parts, body) = request.into_parts();
    let bytes = read_body(body, limit, declared).await?;

    if kind == BodyKind::Multipart {
        let request = Request::from_parts(parts, axum::body::Body::from(bytes));
        return multipart_source(request, options).await;
    }
    if kind == BodyKind::Json {
        return json_source(&bytes, options);
    }
    Ok(Image::Bytes(bytes))
}

/// Query parameters the handler reads.
const QUERY_OPTIONS: &str = "top_k, threshold";

/// `top_k` and `threshold` from the query string; anything else, or either one twice, is
/// refused so that a typo or a conflicting value does not pass silently.
fn query_options(query: Option<&str>) -> Result<RawOptions, ApiError> {
    let mut options = RawOptions::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let slot = options.slot(&key).ok_or_else(|| {
            ApiError::InvalidOptions(format!(
                "unknown query parameter {key:?}; accepted: {QUERY_OPTIONS}"
            ))
        })?;
        if slot.is_some() {
            return Err(ApiError::InvalidOptions(format!(
                "{key} is given more than once in the query string; give it once"
            )));
        }
        *slot = Some(value.into_owned());
    }
    Ok(options)
}

impl RawOptions {
    fn slot(&mut self, name: &str) -> Option<&mut Option<String>> {
        match name {
            field::TOP_K => Some(&mut self.top_k),
            field::THRESHOLD => Some(&mut self.threshold),
            _ => None,
        }
    }
}

/// The part named `image`, plus the text parts `top_k` and `threshold` (each at most once).
async fn multipart_source(request: Request, options: &mut RawOptions) -> Result<Image, ApiError> {
    let malformed = |e: axum::extract::multipart::MultipartError| {
        ApiError::InvalidBody(format!(
            "the multipart body is malformed: {}",
            e.body_text()
        ))
    };
    let mut multipart = Multipart::from_request(request, &()).await.map_err(|e| {
        ApiError::InvalidBody(format!(
            "the multipart body is malformed: {}",
            e.body_text()
        ))
    })?;
    let mut image = None;
    let mut from_body = RawOptions::default();
    while let Some(field) = multipart.next_field().await.map_err(malformed)? {
        let name = field.name().unwrap_or_default().to_string();
        let data = field.bytes().await.map_err(malformed)?;
        if name == "image" {
            if image.is_some() {
                return Err(ApiError::InvalidOptions(
                    "the multipart body has more than one part named \"image\"; send one image \
                     per request"
                        .into(),
                ));
            }
            image = Some(data);
            continue;
        }
        let slot = from_body.slot(&name).ok_or_else(|| {
            ApiError::InvalidOptions(format!(
                "unknown multipart part {name:?}; accepted: image, top_k, threshold"
            ))
        })?;
        if slot.is_some() {
            return Err(ApiError::InvalidOptions(format!(
                "the multipart body has more than one part named {name:?}; give it once"
            )));
        }
        *slot = Some(String::from_utf8_lossy(&data).into_owned());
    }
    options.top_k = from_body.top_k.or(options.top_k.take());
    options.threshold = from_body.threshold.or(options.threshold.take());
    image.map(Image::Bytes).ok_or_else(|| {
        ApiError::InvalidBody(
            "the multipart body has no part named \"image\"; attach the image file as \"image\""
                .into(),
        )
    })
}

/// Reads a JSON request body as `POST /classify` does, without serving it: `Ok` when the
/// body names one image source and well-formed options, else the client's error message.
/// For the fuzz targets and their replay in the test command.
pub fn check_json_body(bytes: &[u8]) -> Result<(), String> {
    let mut options = RawOptions::default();
    json_source(bytes, &mut options)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Reads the JSON body with the one reader of the request document, which names the field
/// of each mistake in plain words; JSON that does not parse is a 400, a document that breaks
/// the rules a 422.
fn json_source(bytes: &[u8], options: &mut RawOptions) -> Result<Image, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::InvalidBody(format!(
            "the body is not valid JSON (line {}, column {}); send {SHAPE}",
            e.line(),
            e.column()
        ))
    })?;
    let body =
        ClassifyJson::from_value(value).map_err(|e| ApiError::InvalidOptions(e.to_string()))?;
    // Already checked by the reader; as text they go through the same rule as the query's.
    if let Some(top_k) = body.top_k() {
        options.top_k = Some(top_k.to_string());
    }
    if let Some(threshold) = body.threshold() {
        options.threshold = Some(threshold.to_string());
    }
    Ok(match body {
        ClassifyJson::Base64(b) => Image::Bytes(decode_base64(&b.image_base64)?.into()),
        ClassifyJson::Path(p) => Image::File(PathBuf::from(p.path)),
        ClassifyJson::DirAndName(d) => Image::File(PathBuf::from(d.image_dir).join(d.fname)),
    })
}

/// Standard base64; whitespace and a `data:…;base64,` prefix (what browsers produce) are
/// accepted.
fn decode_base64(encoded: &str) -> Result<Vec<u8>, ApiError> {
    let payload = match encoded.split_once(";base64,") {
        Some((prefix, rest)) if prefix.starts_with("data:") => rest,
        _ => encoded,
    };
    let cleaned: String = payload
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .map_err(|e| {
            ApiError::InvalidBody(format!(
                "image_base64 is not valid base64 ({e}); use the standard alphabet \
                 (A-Z, a-z, 0-9, +, /) with = padding"
            ))
        })
}

pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads at most `limit` bytes. A larger body is still read and discarded up to twice the
/// limit before the 413 goes out: a client that sends its whole body before reading the
/// answer would otherwise see a broken pipe instead of the problem document. Beyond that the
/// connection is simply closed after the answer.
pub(crate) async fn read_body(
    body: axum::body::Body,
    limit: usize,
    declared: Option<u64>,
) -> Result<Bytes, ApiError> {
    read_body_keeping(body, limit, declared, Keep::UpToLimit).await
}

/// What [`read_body_keeping`] holds on to of the bytes it reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// The body, as long as it stays within the limit.
    UpToLimit,
    /// Nothing: the body is only read so that the client can finish sending it.
    Nothing,
}

/// Reads the body to its end, or until twice `limit` (so that a client still sending an
/// oversized body gets to read the 413 instead of a reset), keeping what `keep` says.
async fn read_body_keeping(
    body: axum::body::Body,
    limit: usize,
    declared: Option<u64>,
    keep: Keep,
) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let drain_limit = limit.saturating_mul(2) as u64;
    if let Some(size) = declared.filter(|&n| n > drain_limit) {
        return Err(too_large(format!("{size} bytes"), limit));
    }
    let mut body = body;
    let mut buffer = bytes::BytesMut::new();
    let mut seen: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::InvalidBody(format!("the request body could not be read: {e}"))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len() as u64;
        if seen > drain_limit {
            break;
        }
        if keep == Keep::UpToLimit && seen <= limit as u64 {
            buffer.extend_from_slice(&data);
        }
    }
    if seen > limit as u64 {
        let size = match declared {
            Some(size) => format!("{size} bytes"),
            // Reading stopped at twice the limit; the rest was never seen.
            None if seen > drain_limit => format!("more than {drain_limit} bytes"),
            None => format!("{seen} bytes"),
        };
        return Err(too_large(size, limit));
    }
    Ok(buffer.freeze())
}

fn too_large(size: String, limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "the request body is {size}; the limit is {limit} bytes (--max-body-bytes)"
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    //! Admission before work, through the whole router, with the scripted backend of
    //! `backend::fake` holding the only worker: no clock decides any verdict.

    use std::io::Cursor;
    use std::sync::Arc;
    use std::time::Duration;

    use axum::body::Body;
    use classify_api::ProblemType;
    use tower::ServiceExt;

    use super::*;
    use crate::backend::fake::{FakeFactory, HOLD};
    use crate::classifier::Classifier;
    use crate::config::{ChannelOrder, HexColour, ResizeFilter, ScoreMode};
    use crate::files::AllowedDirs;
    use crate::http::AppState;
    use crate::http::api::{InputInfo, ModelInfo, OutputInfo};
    use crate::inference::{InferencePool, PoolOptions};
    use crate::metrics::Metrics;
    use crate::preprocess::{InputSpec, PreprocessOptions};

    /// The state of a router on `pool`: model "fake", two classes, input `input`.
    pub(crate) fn state(pool: Arc<InferencePool>, input: InputSpec) -> SharedState {
        state_with_body_memory(pool, input, u64::MAX >> 1)
    }

    /// [`state`] with a body memory budget of `body_memory` bytes.
    fn state_with_body_memory(
        pool: Arc<InferencePool>,
        input: InputSpec,
        body_memory: u64,
    ) -> SharedState {
        let text = |s: &str| s.to_string();
        let metrics = Metrics::new();
        let body_memory = Arc::new(crate::classifier::BodyMemory::new(body_memory));
        let classifier = Classifier {
            pool,
            labels: vec![text("first"), text("second")],
            input: input.clone(),
            preprocess: PreprocessOptions {
                channel_order: ChannelOrder::Rgb,
                filter: ResizeFilter::Bilinear,
                resize: crate::config::ResizeMode::Squash,
                background: HexColour([255, 255, 255]),
                max_dimension: 64,
                max_pixels: 4096,
                min_decoded_side: 128,
                budget: Arc::new(crate::preprocess::DecodeBudget::new(
                    64 << 20,
                    Duration::ZERO,
                )),
            },
            scores: ScoreMode::Auto,
            allowed: AllowedDirs::new(&[]).unwrap(),
            decode_permits: Arc::new(tokio::sync::Semaphore::new(2)),
            max_file_bytes: 1 << 20,
            body_memory: body_memory.clone(),
            metrics: metrics.clone(),
        };
        Arc::new(AppState {
            body_memory,
            memory_limit: None,
            classifier: Arc::new(classifier),
            model: ModelInfo {
                name: text("fake"),
                version: text("0"),
                path: text("/nowhere"),
                backend: text("scripted"),
                dlr_version: text("0"),
                dlr_library: text("/nowhere/libfake.so"),
                input: InputInfo {
                    name: input.name.clone(),
                    shape: input.shape.clone(),
                    layout: text("NHWC"),
                    dtype: text("float32"),
                },
                output: OutputInfo {
                    name: "output0".into(),
                    shape: vec![1, 2],
                    dtype: text("float32"),
                },
                labels: 2,
                performance_hint: text("latency"),
                workers: 1,
                threads_per_worker: 1,
                queue_capacity: 1,
                channel_order: text("rgb"),
                resize_filter: text("bilinear"),
                scores: text("auto"),
                memory: crate::http::api::MemoryInfo {
                    limit_bytes: None,
                    limit_source: None,
                    decode_memory_budget_bytes: 0,
                    decode_memory_budget: text("configured"),
                    body_memory_budget_bytes: 0,
                },
            },
            default_top_k: 2,
            default_threshold: 0.0,
            metrics,
            request_timeout: Duration::from_secs(3600),
            retry_after_secs: 7,
            max_body_bytes: 1 << 20,
        })
    }

    /// A 1×1 PNG: the fake reads red as the action and green as the id.
    pub(crate) fn pixel(rgb: [u8; 3]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image::RgbImage::from_pixel(1, 1, image::Rgb(rgb))
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    pub(crate) fn post(body: impl Into<Body>, content_type: &str) -> Request {
        Request::post("/classify")
            .header(header::CONTENT_TYPE, content_type)
            .body(body.into())
            .unwrap()
    }

    async fn problem_kind(response: Response) -> Option<ProblemType> {
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let problem: classify_api::Problem = serde_json::from_slice(&body).unwrap();
        problem.kind()
    }

    /// A router on one scripted worker with `capacity` places in the queue, its worker held by a
    /// first request (a red-HOLD pixel to `/classify`) until the test opens the gate: the pool,
    /// the router, the fake's controls, and the held request.
    pub(crate) async fn held_worker(
        capacity: usize,
    ) -> (
        Arc<InferencePool>,
        axum::Router,
        crate::backend::fake::Controls,
        tokio::task::JoinHandle<Result<Response, std::convert::Infallible>>,
    ) {
        let (factory, controls) = FakeFactory::new();
        let input = InputSpec::square_f32("x", 1);
        let pool = ready_pool(factory, &input, capacity).await;
        let app = super::super::router(state(pool.clone(), input));
        let held = tokio::spawn(
            app.clone()
                .oneshot(post(pixel([HOLD as u8, 1, 0]), "image/png")),
        );
        let runs = controls.runs.clone();
        let started = tokio::task::spawn_blocking(move || runs.recv().unwrap());
        assert_eq!(started.await.unwrap(), 1, "the only worker holds request 1");
        (pool, app, controls, held)
    }

    /// One scripted worker on `factory` with `capacity` places in the queue, ready.
    async fn ready_pool(
        factory: FakeFactory,
        input: &InputSpec,
        capacity: usize,
    ) -> Arc<InferencePool> {
        let pool = Arc::new(InferencePool::start(
            Arc::new(factory),
            PoolOptions {
                workers: 1,
                queue_capacity: capacity,
                warmup_runs: 0,
                input: input.clone(),
            },
        ));
        pool.readiness().wait_for(|r| r.is_ready()).await.unwrap();
        pool
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_answers_503_before_the_body_is_read_or_decoded() {
        let (pool, app, controls, held) = held_worker(1).await;
        // The only slot: the queue is provably full while the gate stays closed.
        let slot = pool.reserve().unwrap();

        // Bytes that would be a 400 if they were decoded, and a file that would be a 403 if
        // it were looked at: both are refused for load first.
        let garbage = app
            .clone()
            .oneshot(post("not an image", "image/png"))
            .await
            .unwrap();
        assert_eq!(garbage.status(), 503);
        assert_eq!(garbage.headers()[header::RETRY_AFTER], "7");
        assert_eq!(problem_kind(garbage).await, Some(ProblemType::Overloaded));
        let file = app
            .clone()
            .oneshot(post(r#"{"path": "/etc/passwd"}"#, "application/json"))
            .await
            .unwrap();
        assert_eq!(file.status(), 503);

        // Once a slot is free the same bytes are read and decoded.
        drop(slot);
        let undecodable = app
            .clone()
            .oneshot(post("not an image", "image/png"))
            .await
            .unwrap();
        assert_eq!(undecodable.status(), 400);
        assert_eq!(
            problem_kind(undecodable).await,
            Some(ProblemType::UndecodableImage)
        );

        controls.gate.send(()).unwrap();
        let held = held.await.unwrap().unwrap();
        assert_eq!(held.status(), 200);
        pool.shutdown();
    }

    /// An encoded image reserves its input tensor from the body memory before it is decoded:
    /// with room for its body alone it is answered 503 naming the budget, never decoded; with
    /// room for both it is classified.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_image_without_memory_left_for_its_tensor_is_answered_503() {
        let (factory, _controls) = FakeFactory::new();
        // 64 × 64 × 3 float32: a 48 KiB tensor.
        let input = InputSpec::square_f32("x", 64);
        assert_eq!(input.tensor_bytes(), 48 << 10);
        let pool = ready_pool(factory, &input, 4).await;
        let image = pixel([0, 1, 0]);
        let request = || {
            let mut request = post(image.clone(), "image/png");
            request
                .headers_mut()
                .insert(header::CONTENT_LENGTH, image.len().into());
            request
        };
        // The body (one KiB counted) fits; its tensor does not.
        let body_only =
            super::super::router(state_with_body_memory(pool.clone(), input.clone(), 1 << 10));
        let refused = body_only.oneshot(request()).await.unwrap();
        assert_eq!(refused.status(), 503);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "7");
        let body = axum::body::to_bytes(refused.into_body(), 1 << 16)
            .await
            .unwrap();
        let problem: classify_api::Problem = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem.kind(), Some(ProblemType::Overloaded));
        assert!(
            problem.detail.contains("body memory budget")
                && problem.detail.contains("input tensor (48 KiB)"),
            "{problem:?}"
        );
        // Room for the body and the tensor: classified.
        let both = super::super::router(state_with_body_memory(pool.clone(), input, 49 << 10));
        let answered = both.oneshot(request()).await.unwrap();
        assert_eq!(answered.status(), 200);
        pool.shutdown();
    }
}
