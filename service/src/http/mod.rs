//! The HTTP layer: the only module that knows status codes, headers and OpenAPI.
//!
//! * `router` assembles the routes, the Swagger UI and the middleware stack. From the outside
//!   in: tracing span, request id (honours a well-formed incoming `x-request-id`, else a UUID;
//!   echoed on every response), per-route request counting, a body-size limit, and
//!   `CatchPanicLayer` as the last line of defence so even a bug answers once with a 500
//!   problem document.
//! * `classify` holds `POST /classify`: its input forms and options, handed to the
//!   transport-independent `crate::classifier`; [`problem`] the error type;
//!   [`api`] the response schemas and the OpenAPI document; the small read-only endpoints live
//!   here.

pub mod api;
pub(crate) mod classify;
pub mod docs;
pub mod guard;

pub use classify::check_json_body;
pub mod problem;
pub(crate) mod v2;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

use crate::classifier::Classifier;
use crate::inference::{InferencePool, Readiness};
use crate::metrics::Metrics;
use api::{Health, ModelInfo};
use problem::ApiError;

/// Header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request's id, placed in request extensions by the request-id middleware.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Everything handlers share.
#[derive(Debug)]
pub(crate) struct AppState {
    /// Everything between an image and ranked classes.
    pub(crate) classifier: Arc<Classifier>,
    /// What `/v1/model` reports (and name/version for answers).
    pub(crate) model: ModelInfo,
    /// `top_k` when a request gives none.
    pub(crate) default_top_k: usize,
    /// `threshold` when a request gives none.
    pub(crate) default_threshold: f64,
    /// This application's registry (not process-global, so test servers count separately).
    pub(crate) metrics: Metrics,
    /// Per-request deadline.
    pub(crate) request_timeout: Duration,
    /// `Retry-After` of 503 answers.
    pub(crate) retry_after_secs: u32,
    /// Body (and file) limit.
    pub(crate) max_body_bytes: usize,
    /// The memory limit the process runs under, as detected at start-up.
    pub(crate) memory_limit: Option<memory_limit::MemoryLimit>,
    /// Memory for the request bodies held at once.
    pub(crate) body_memory: Arc<crate::classifier::BodyMemory>,
}

impl AppState {
    /// The model workers, for admission (`reserve`) and readiness: the classifier's own, so
    /// the slot a handler reserves is in the pool its job is submitted to.
    pub(crate) fn pool(&self) -> &Arc<InferencePool> {
        &self.classifier.pool
    }
}

/// Shared state handle.
pub(crate) type SharedState = Arc<AppState>;

/// The complete router with middleware.
pub(crate) fn router(state: SharedState) -> Router {
    let max_body = state.max_body_bytes;
    Router::new()
        .route("/classify", post(classify::classify))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/model", get(model))
        .merge(v2::routes())
        .with_state(state.clone())
        .merge(docs::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // A little headroom so a body exactly at the limit is not refused by the extractor
        // the multipart path re-uses; the handler enforces the exact limit itself.
        .layer(DefaultBodyLimit::max(max_body.saturating_add(64 * 1024)))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(state, count_requests))
        .layer(middleware::from_fn(request_context))
}

/// Request id and tracing span; the id goes into extensions and back out as a header.
async fn request_context(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_acceptable_request_id(v))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    request.extensions_mut().insert(RequestId(id.clone()));
    let is_probe = matches!(request.uri().path(), "/readyz" | "/healthz");
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    async move {
        let started = std::time::Instant::now();
        let mut response = next.run(request).await;
        let status = response.status().as_u16();
        let elapsed_ms = millis(started.elapsed());
        // Health checks poll these every few seconds; at info they would drown the log.
        if is_probe {
            tracing::debug!(status, elapsed_ms, "answered");
        } else {
            tracing::info!(status, elapsed_ms, "answered");
        }
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        response
    }
    .instrument(span)
    .await
}

/// Milliseconds rounded to the microsecond, for answers and logs: more digits are float noise
/// (`0.33802099999999996`), not precision.
pub fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1e3
}

/// Ids are echoed into headers, logs and JSON: printable ASCII, bounded length.
fn is_acceptable_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 200 && id.bytes().all(|b| b.is_ascii_graphic())
}

async fn count_requests(
    State(state): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    // Unmatched paths share one label so that scanners cannot grow the label set.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = crate::metrics::method_label(request.method());
    let response = next.run(request).await;
    state
        .metrics
        .requests
        .with_label_values(&[route.as_str(), method, response.status().as_str()])
        .inc();
    response
}

fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal("a request handler panicked".into()).into_response()
}

fn request_id(request: &Request) -> Option<String> {
    request.extensions().get::<RequestId>().map(|r| r.0.clone())
}

async fn not_found(request: Request) -> Response {
    let id = request_id(&request);
    ApiError::RouteNotFound(request.uri().path().to_string()).into_response_for(id.as_deref())
}

async fn method_not_allowed(request: Request) -> Response {
    let id = request_id(&request);
    ApiError::MethodNotAllowed(request.method().to_string()).into_response_for(id.as_deref())
}

/// Liveness: the process answers HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health", operation_id = "get_health",
    responses((status = 200, description = "The process is alive", body = Health,
               example = json!({"status": "ok"}))))]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the model is loaded and a warm-up inference has run.
#[utoipa::path(get, path = "/readyz", tag = "health", operation_id = "get_readiness",
    responses(
        (status = 200, description = "Ready to classify", body = Health,
         example = json!({"status": "ready"})),
        (status = 503, description = "Not ready; `detail` says why", body = classify_api::Problem,
         content_type = "application/problem+json",
         headers(("Retry-After" = u32, description = "Seconds to wait")),
         example = json!({"type": "urn:classify-service:problem:not-ready",
            "title": "The model is not ready", "status": 503,
            "detail": "warming up", "request_id": "9b2c0f4e-3d1a-4c8e-9f57-2a6a1c0d7e11"})),
    ))]
pub(crate) async fn readyz(
    State(state): State<SharedState>,
    axum::Extension(id): axum::Extension<RequestId>,
) -> Response {
    let readiness = state.pool().readiness().borrow().clone();
    match readiness {
        Readiness::Ready => Json(Health {
            status: "ready".into(),
        })
        .into_response(),
        Readiness::Starting(why) | Readiness::Failed(why) => ApiError::NotReady {
            detail: why,
            retry_after: state.retry_after_secs,
        }
        .into_response_for(Some(&id.0)),
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "health", operation_id = "get_metrics",
    responses((status = 200, description = "Prometheus text format", body = String,
               content_type = "text/plain; version=0.0.4")))]
pub(crate) async fn metrics(State(state): State<SharedState>) -> Response {
    let m = &state.metrics;
    m.queue_depth.set(state.pool().queue_depth() as i64);
    m.ready
        .set(i64::from(state.pool().readiness().borrow().is_ready()));
    let budget = &state.classifier.preprocess.budget;
    let bytes = |b: u64| i64::try_from(b).unwrap_or(i64::MAX);
    m.memory_limit
        .set(state.memory_limit.as_ref().map_or(0, |l| bytes(l.bytes)));
    m.decode_memory_budget.set(bytes(budget.total()));
    m.decode_memory_in_use.set(bytes(budget.in_use()));
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        m.render(),
    )
        .into_response()
}

/// What model is loaded and how it is fed.
#[utoipa::path(get, path = "/v1/model", tag = "model", operation_id = "get_model",
    responses((status = 200, description = "The loaded model", body = ModelInfo)))]
pub(crate) async fn model(State(state): State<SharedState>) -> Json<ModelInfo> {
    let mut model = state.model.clone();
    model.memory.decode_memory_budget_bytes = state.classifier.preprocess.budget.total();
    Json(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn boom() -> &'static str {
        panic!("secret internals")
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_one_500_problem() {
        let app: Router = Router::new()
            .route("/boom", get(boom))
            .layer(CatchPanicLayer::custom(panic_response));
        let response = app
            .oneshot(
                Request::get("/boom")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            classify_api::PROBLEM_JSON
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("urn:classify-service:problem:internal"),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn durations_are_rounded_to_microseconds() {
        assert_eq!(millis(Duration::from_nanos(338_020_999)), 338.02);
        assert_eq!(millis(Duration::from_nanos(34_562)), 0.034);
        assert_eq!(millis(Duration::from_micros(1)).to_string(), "0.001");
    }

    #[test]
    fn request_ids_are_bounded_printable_ascii() {
        assert!(is_acceptable_request_id("abc-123_X.y"));
        assert!(!is_acceptable_request_id(""));
        assert!(!is_acceptable_request_id("has space"));
        assert!(!is_acceptable_request_id(&"x".repeat(201)));
    }
}
