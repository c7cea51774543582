//! `POST /classify`: accept an image in any of four forms, classify it, answer once.
//!
//! Input forms, chosen by `Content-Type`:
//! * `image/jpeg|png|webp|bmp|gif` or `application/octet-stream`: the raw body (the format is
//!   always sniffed from the bytes);
//! * `multipart/form-data`: the part named `image` (text parts `top_k`, `threshold` allowed);
//! * `application/json`: [`ClassifyJson`] — `image_base64`, or a file reference `path` /
//!   `image_dir` + `fname` resolved inside the allowed directories.
//!
//! Options `top_k` and `threshold` come from the query string; values in a JSON or multipart
//! body take precedence. The whole request — reading the body, decoding, waiting for a worker,
//! inference — runs under one deadline; decoding and preprocessing run on the blocking pool
//! (bounded by a semaphore) so they overlap inference of other requests.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;

use super::api::{ClassifyJson, ClassifyResponse, ModelRef, Timings};
use super::problem::{ApiError, inference_error};
use super::{RequestId, SharedState};
use crate::scoring;

/// Raw media types accepted as an image body.
const IMAGE_TYPES: [&str; 6] = [
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/bmp",
    "image/gif",
    "application/octet-stream",
];

/// Query-string options; unknown keys are refused so that typos do not pass silently.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ClassifyQuery {
    /// Number of predictions to return (≥ 1; larger than the class count returns all).
    #[param(value_type = Option<u32>, minimum = 1)]
    top_k: Option<String>,
    /// Minimum probability of returned predictions, 0 to 1.
    #[param(value_type = Option<f64>, minimum = 0.0, maximum = 1.0)]
    threshold: Option<String>,
}

/// Where the image comes from.
enum Source {
    Bytes(Bytes),
    File(PathBuf),
}

/// Options as given (text from query or multipart, numbers from JSON), validated later.
#[derive(Default)]
struct RawOptions {
    top_k: Option<String>,
    threshold: Option<String>,
}

/// Classify an image.
#[utoipa::path(
    post,
    path = "/classify",
    tag = "classify",
    params(ClassifyQuery),
    request_body(
        description = "The image: raw bytes, multipart field `image`, or JSON",
        content(
            ("image/jpeg"), ("image/png"), ("image/webp"), ("image/bmp"), ("image/gif"),
            ("application/octet-stream"),
            (ClassifyMultipart = "multipart/form-data"),
            (ClassifyJson = "application/json"),
        )
    ),
    responses(
        (status = 200, description = "Classified", body = ClassifyResponse),
        (status = 400, description = "Undecodable image, malformed JSON/multipart/base64", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "File reference outside the allowed directories", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Referenced file not found", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body, file or image dimensions too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Unsupported Content-Type", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid options or fields", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details are logged, not returned)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Not ready or overloaded", body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
        (status = 504, description = "The request's deadline passed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn classify(State(state): State<SharedState>, request: Request) -> Response {
    let started = Instant::now();
    let id = request
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
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
use super::api::ClassifyMultipart;
use super::problem::Problem;

async fn handle(
    state: SharedState,
    request: Request,
    id: &str,
    started: Instant,
) -> Result<ClassifyResponse, ApiError> {
    let timeout_ms = state.request_timeout.as_millis() as u64;
    let query: ClassifyQuery = Query::try_from_uri(request.uri())
        .map(|Query(q)| q)
        .map_err(|e| {
            ApiError::InvalidOptions(format!("invalid query string: {}", e.body_text()))
        })?;
    let mut options = RawOptions {
        top_k: query.top_k,
        threshold: query.threshold,
    };
    let kind = body_kind(request.headers())?;
    // Admission before work: a request refused for load costs neither a body read nor a
    // decode. The slot is given back if anything below fails.
    let slot = state
        .pool
        .reserve()
        .map_err(|e| inference_error(e, state.retry_after_secs, timeout_ms))?;
    let source = extract(&state, request, kind, &mut options).await?;
    let (top_k, threshold) =
        validate_options(&options, state.default_top_k, state.default_threshold)?;

    let bytes = match source {
        Source::Bytes(bytes) => bytes,
        Source::File(path) => {
            let state = state.clone();
            let limit = state.max_body_bytes;
            tokio::task::spawn_blocking(move || state.allowed.read(&path, limit))
                .await
                .map_err(|e| ApiError::Internal(format!("file read task: {e}")))??
                .into()
        }
    };

    // The permit moves into the blocking task: if the deadline fires first, the decode still
    // counts against the bound until it really finishes.
    let permit = Arc::clone(&state.decode_permits)
        .acquire_owned()
        .await
        .map_err(|_| ApiError::Internal("decode semaphore closed".into()))?;
    let prep_state = state.clone();
    let (tensor, decode_time, preprocess_time) = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let t0 = Instant::now();
        let image = crate::preprocess::decode(&bytes, &prep_state.preprocess)?;
        let t1 = Instant::now();
        let tensor =
            crate::preprocess::to_tensor(image, &prep_state.input, &prep_state.preprocess)?;
        Ok::<_, ApiError>((tensor, t1 - t0, t1.elapsed()))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("preprocessing task failed: {e}")))??;
    state.metrics.decode.observe(decode_time.as_secs_f64());
    state
        .metrics
        .preprocess
        .observe(preprocess_time.as_secs_f64());

    let deadline = started + state.request_timeout;
    let answer = state
        .pool
        .submit(slot, tensor, deadline)
        .map_err(|e| inference_error(e, state.retry_after_secs, timeout_ms))?;
    let output = answer
        .outcome()
        .await
        .map_err(|e| inference_error(e, state.retry_after_secs, timeout_ms))?;
    state
        .metrics
        .queue_wait
        .observe(output.queue_wait.as_secs_f64());
    state
        .metrics
        .inference
        .observe(output.inference.as_secs_f64());

    if output.raw.len() != state.labels.len() {
        return Err(ApiError::Internal(format!(
            "the model returned {} values for {} labels",
            output.raw.len(),
            state.labels.len()
        )));
    }
    let ranked = scoring::rank(&output.raw, &state.labels, state.scores);
    let label = ranked
        .first()
        .map(|p| p.label.clone())
        .ok_or_else(|| ApiError::Internal("the model returned no scores".into()))?;
    let predictions = scoring::select(&ranked, top_k, threshold)
        .into_iter()
        .map(Into::into)
        .collect();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(ClassifyResponse {
        request_id: id.to_string(),
        label,
        predictions,
        model: ModelRef {
            name: state.model.name.clone(),
            version: state.model.version.clone(),
        },
        timings: Timings {
            decode_ms: ms(decode_time),
            preprocess_ms: ms(preprocess_time),
            queue_ms: ms(output.queue_wait),
            inference_ms: ms(output.inference),
            total_ms: ms(started.elapsed()),
        },
    })
}

fn validate_options(
    options: &RawOptions,
    default_top_k: usize,
    default_threshold: f64,
) -> Result<(usize, f64), ApiError> {
    let top_k = match &options.top_k {
        None => default_top_k,
        Some(text) => match text.trim().parse::<usize>() {
            Ok(0) | Err(_) => {
                return Err(ApiError::InvalidOptions(format!(
                    "top_k must be a whole number of at least 1, got {text:?}"
                )));
            }
            Ok(n) => n,
        },
    };
    let threshold = match &options.threshold {
        None => default_threshold,
        Some(text) => match text.trim().parse::<f64>() {
            Ok(t) if (0.0..=1.0).contains(&t) => t,
            _ => {
                return Err(ApiError::InvalidOptions(format!(
                    "threshold must be a number from 0 to 1, got {text:?}"
                )));
            }
        },
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
async fn extract(
    state: &SharedState,
    request: Request,
    kind: BodyKind,
    options: &mut RawOptions,
) -> Result<Source, ApiError> {
    let limit = state.max_body_bytes;
    let declared = declared_length(request.headers());
    let (parts, body) = request.into_parts();
    let bytes = read_body(body, limit, declared).await?;

    if kind == BodyKind::Multipart {
        let request = Request::from_parts(parts, axum::body::Body::from(bytes));
        let mut multipart = Multipart::from_request(request, &()).await.map_err(|e| {
            ApiError::InvalidBody(format!("malformed multipart body: {}", e.body_text()))
        })?;
        let mut image = None;
        while let Some(field) = multipart.next_field().await.map_err(|e| {
            ApiError::InvalidBody(format!("malformed multipart body: {}", e.body_text()))
        })? {
            let name = field.name().unwrap_or_default().to_string();
            let data = field.bytes().await.map_err(|e| {
                ApiError::InvalidBody(format!(
                    "malformed multipart part {name:?}: {}",
                    e.body_text()
                ))
            })?;
            let text = || String::from_utf8_lossy(&data).into_owned();
            match name.as_str() {
                "image" => image = Some(data.clone()),
                "top_k" => options.top_k = Some(text()),
                "threshold" => options.threshold = Some(text()),
                _ => {
                    return Err(ApiError::InvalidOptions(format!(
                        "unexpected multipart field {name:?}; expected image, top_k, threshold"
                    )));
                }
            }
        }
        return image.map(Source::Bytes).ok_or_else(|| {
            ApiError::InvalidBody("the multipart body has no part named \"image\"".into())
        });
    }

    if kind == BodyKind::Json {
        let body: ClassifyJson = serde_json::from_slice(&bytes).map_err(|e| {
            if e.classify() == serde_json::error::Category::Data {
                ApiError::InvalidOptions(format!("invalid JSON fields: {e}"))
            } else {
                ApiError::InvalidBody(format!("the body is not valid JSON: {e}"))
            }
        })?;
        if let Some(k) = body.top_k {
            options.top_k = Some(k.to_string());
        }
        if let Some(t) = body.threshold {
            options.threshold = Some(t.to_string());
        }
        return json_source(body);
    }

    Ok(Source::Bytes(bytes))
}

fn json_source(body: ClassifyJson) -> Result<Source, ApiError> {
    let sources = [
        body.image_base64.is_some(),
        body.path.is_some(),
        body.image_dir.is_some() || body.fname.is_some(),
    ];
    let given = sources.iter().filter(|&&s| s).count();
    if given != 1 {
        return Err(ApiError::InvalidOptions(format!(
            "give exactly one image source: image_base64, path, or image_dir with fname \
             ({given} given)"
        )));
    }
    if let Some(encoded) = body.image_base64 {
        // Accept `data:image/png;base64,...` as browsers and Swagger UI users produce it.
        let payload = match encoded.split_once(";base64,") {
            Some((prefix, rest)) if prefix.starts_with("data:") => rest,
            _ => encoded.as_str(),
        };
        let cleaned: String = payload
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(cleaned.as_bytes())
            .map_err(|e| ApiError::InvalidBody(format!("image_base64 is not valid base64: {e}")))?;
        return Ok(Source::Bytes(bytes.into()));
    }
    if let Some(path) = body.path {
        return Ok(Source::File(PathBuf::from(path)));
    }
    match (body.image_dir, body.fname) {
        (Some(dir), Some(fname)) if !fname.is_empty() => {
            Ok(Source::File(PathBuf::from(dir).join(fname)))
        }
        _ => Err(ApiError::InvalidOptions(
            "image_dir and fname must be given together".into(),
        )),
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads at most `limit` bytes. A larger body is still read and discarded up to twice the
/// limit before the 413 goes out: a client that sends its whole body before reading the
/// answer would otherwise see a broken pipe instead of the problem document. Beyond that the
/// connection is simply closed after the answer.
async fn read_body(
    body: axum::body::Body,
    limit: usize,
    declared: Option<u64>,
) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let drain_limit = limit.saturating_mul(2) as u64;
    if declared.is_some_and(|n| n > drain_limit) {
        return Err(too_large(limit));
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
        if seen <= limit as u64 {
            buffer.extend_from_slice(&data);
        }
    }
    if seen > limit as u64 {
        return Err(too_large(limit));
    }
    Ok(buffer.freeze())
}

fn too_large(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!("the request body exceeds the {limit}-byte limit"))
}

#[cfg(test)]
mod tests {
    //! Admission before work, through the whole router, with the scripted backend of
    //! `backend::fake` holding the only worker: no clock decides any verdict.

    use std::io::Cursor;

    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;
    use crate::backend::fake::{FakeFactory, HOLD};
    use crate::config::{ChannelOrder, HexColour, ResizeFilter, ScoreMode};
    use crate::files::AllowedDirs;
    use crate::http::AppState;
    use crate::http::api::{InputInfo, ModelInfo, OutputInfo};
    use crate::inference::{InferencePool, PoolOptions};
    use crate::metrics::Metrics;
    use crate::preprocess::{InputDType, InputSpec, Layout, PreprocessOptions};

    fn state(pool: Arc<InferencePool>, input: InputSpec) -> SharedState {
        let text = |s: &str| s.to_string();
        Arc::new(AppState {
            pool,
            labels: vec![text("first"), text("second")],
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
                    shape: vec![1, 2],
                    dtype: text("float32"),
                },
                labels: 2,
                workers: 1,
                threads_per_worker: 1,
                queue_capacity: 1,
                channel_order: text("rgb"),
                resize_filter: text("bilinear"),
                scores: text("auto"),
            },
            input,
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
            default_top_k: 2,
            default_threshold: 0.0,
            allowed: AllowedDirs::new(&[]).unwrap(),
            decode_permits: Arc::new(tokio::sync::Semaphore::new(2)),
            metrics: Metrics::new(),
            request_timeout: Duration::from_secs(3600),
            retry_after_secs: 7,
            max_body_bytes: 1 << 20,
        })
    }

    /// A 1×1 PNG: the fake reads red as the action and green as the id.
    fn pixel(rgb: [u8; 3]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image::RgbImage::from_pixel(1, 1, image::Rgb(rgb))
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    fn post(body: impl Into<Body>, content_type: &str) -> Request {
        Request::post("/classify")
            .header(header::CONTENT_TYPE, content_type)
            .body(body.into())
            .unwrap()
    }

    async fn problem_type(response: Response) -> String {
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let problem: super::super::problem::Problem = serde_json::from_slice(&body).unwrap();
        problem.type_
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_answers_503_before_the_body_is_read_or_decoded() {
        let (factory, controls) = FakeFactory::new();
        let input = InputSpec {
            name: "x".into(),
            shape: vec![1, 1, 1, 3],
            layout: Layout::Nhwc,
            height: 1,
            width: 1,
            dtype: InputDType::F32,
        };
        let pool = Arc::new(InferencePool::start(
            Arc::new(factory),
            PoolOptions {
                workers: 1,
                queue_capacity: 1,
                warmup_runs: 0,
                input: input.clone(),
            },
        ));
        pool.readiness().wait_for(|r| r.is_ready()).await.unwrap();
        let app = super::super::router(state(pool.clone(), input));

        let held = tokio::spawn(
            app.clone()
                .oneshot(post(pixel([HOLD as u8, 1, 0]), "image/png")),
        );
        let runs = controls.runs.clone();
        let started = tokio::task::spawn_blocking(move || runs.recv().unwrap());
        assert_eq!(started.await.unwrap(), 1, "the only worker holds request 1");
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
        assert_eq!(
            problem_type(garbage).await,
            "urn:classify-service:problem:overloaded"
        );
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
            problem_type(undecodable).await,
            "urn:classify-service:problem:undecodable-image"
        );

        controls.gate.send(()).unwrap();
        let held = held.await.unwrap().unwrap();
        assert_eq!(held.status(), 200);
        pool.shutdown();
    }
}
