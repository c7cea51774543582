//! HTTP client of the classification service (`POST /classify`) and its error mapping.
//!
//! The service's answers are read as the service's own wire types (the `classify-api` crate):
//! [`ClassifyResponse`] for a 200, [`Problem`] (RFC 9457) for an error. A problem's `type` (a
//! [`ProblemType`], the service's stable contract) decides the reply's [`ErrorCode`]; only a
//! type this adapter does not know falls back to the HTTP status. Every failure — refused
//! connection, problem, unreadable answer — becomes a [`ServiceFailure`], so the adapter can
//! always answer. Answers are parsed with serde_json's `float_roundtrip` (this crate's
//! dependency), so the predictions' numbers are passed on digit for digit.
//!
//! **Start-up race.** Greengrass counts the service RUNNING as soon as its process starts, so the
//! adapter may get requests before the service listens or has loaded its model. A refused
//! connection and a `not-ready` problem are therefore retried (50 ms doubling to 1 s) until the
//! caller's deadline is near; the last failure is returned if the service never comes up.

use std::time::Duration;

use classify_api::{ClassifyResponse, Problem, ProblemType};
use reqwest::StatusCode;
use tokio::time::Instant;

use crate::messages::{ClassifyRequest, ErrorCode};

/// A failed classification.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceFailure {
    /// Stable code for the reply.
    pub code: ErrorCode,
    /// Detail (the problem document's `detail` or `title` when there is one).
    pub message: String,
    /// Whether trying again soon may succeed (the service is not up or not ready yet).
    pub retryable: bool,
}

/// Client of one service base URL.
#[derive(Debug, Clone)]
pub struct ServiceClient {
    http: reqwest::Client,
    classify_url: String,
}

impl ServiceClient {
    /// A client for `base_url` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base_url: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            // The service is on localhost: never route through a proxy from the environment.
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            // Below the service's default header-read timeout (10 s), after which it closes
            // idle keep-alive connections: reusing one it is closing would fail the request.
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let base = base_url.trim_end_matches('/');
        let classify_url = format!("{base}/classify");
        reqwest::Url::parse(&classify_url)
            .map_err(|e| format!("invalid service URL {base_url:?}: {e}"))?;
        Ok(Self { http, classify_url })
    }

    /// Calls `POST /classify`, retrying while the service is not up or not ready yet, as long
    /// as the next attempt can start before `deadline`.
    pub async fn classify_until(
        &self,
        request: &ClassifyRequest,
        deadline: Instant,
    ) -> Result<ClassifyResponse, ServiceFailure> {
        let mut pause = Duration::from_millis(50);
        loop {
            match self.classify(request).await {
                Err(failure) if failure.retryable && Instant::now() + pause < deadline => {
                    tracing::debug!(request_id = %request.request_id, message = %failure.message, "service not ready; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                result => return result,
            }
        }
    }

    /// Calls `POST /classify` once for `request`, forwarding its id as `x-request-id`.
    pub async fn classify(
        &self,
        request: &ClassifyRequest,
    ) -> Result<ClassifyResponse, ServiceFailure> {
        let response = self
            .http
            .post(&self.classify_url)
            .header("x-request-id", &request.request_id)
            .json(&request.body)
            .send()
            .await
            .map_err(|e| {
                let (code, retryable) = if e.is_connect() {
                    (ErrorCode::ServiceUnreachable, true)
                } else if e.is_timeout() {
                    (ErrorCode::Timeout, false)
                } else {
                    (ErrorCode::ServiceError, false)
                };
                ServiceFailure {
                    code,
                    message: format!("calling {}: {}", self.classify_url, error_chain(&e)),
                    retryable,
                }
            })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| ServiceFailure {
            code: ErrorCode::ServiceError,
            message: format!("reading the service answer: {}", error_chain(&e)),
            retryable: false,
        })?;
        if status == StatusCode::OK {
            return serde_json::from_slice::<ClassifyResponse>(&body).map_err(|e| ServiceFailure {
                code: ErrorCode::ServiceError,
                message: format!("invalid answer from the service: {e}"),
                retryable: false,
            });
        }
        Err(failure_for(status, &body))
    }
}

/// The failure for a non-200 answer: by problem type, else by status.
fn failure_for(status: StatusCode, body: &[u8]) -> ServiceFailure {
    let problem = serde_json::from_slice::<Problem>(body).ok();
    let kind = problem.as_ref().and_then(Problem::kind);
    let code = kind
        .map(code_for_problem)
        .unwrap_or_else(|| code_for_status(status));
    let text = problem.as_ref().and_then(|p| {
        [&p.detail, &p.title]
            .into_iter()
            .find(|s| !s.is_empty())
            .cloned()
    });
    let message = match (kind, text) {
        (Some(ProblemType::NotFound | ProblemType::MethodNotAllowed), Some(t)) => format!(
            "the service at the configured --service-url does not offer POST /classify ({t})"
        ),
        (_, Some(t)) => t,
        (_, None) => format!("service answered HTTP {status}"),
    };
    ServiceFailure {
        code,
        message,
        retryable: kind == Some(ProblemType::NotReady),
    }
}

/// Maps a problem type of the service to a reply code. Exhaustive on purpose: a kind added to
/// the service's table does not compile here until it has a code.
pub fn code_for_problem(kind: ProblemType) -> ErrorCode {
    match kind {
        ProblemType::UndecodableImage => ErrorCode::InvalidImage,
        // The adapter builds the body itself: what the service cannot read is the request's
        // own content (e.g. image_base64 that is not base64).
        ProblemType::InvalidBody => ErrorCode::MalformedRequest,
        ProblemType::PathForbidden => ErrorCode::ForbiddenPath,
        ProblemType::FileNotFound => ErrorCode::NotFound,
        // A missing route or method means a wrong --service-url, not a missing image; a refused
        // host or origin is the service's configuration, not the request.
        ProblemType::NotFound
        | ProblemType::MethodNotAllowed
        | ProblemType::Internal
        | ProblemType::MisdirectedRequest
        | ProblemType::OriginForbidden => ErrorCode::ServiceError,
        ProblemType::PayloadTooLarge | ProblemType::ImageTooLarge => ErrorCode::ImageTooLarge,
        ProblemType::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
        ProblemType::InvalidOptions => ErrorCode::InvalidOptions,
        ProblemType::NotReady | ProblemType::Overloaded => ErrorCode::ServiceUnavailable,
        ProblemType::DeadlineExceeded => ErrorCode::ServiceTimeout,
    }
}

/// Maps an HTTP error status of the service to a reply code (for unknown problem types).
pub fn code_for_status(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        400 => ErrorCode::InvalidImage,
        403 => ErrorCode::ForbiddenPath,
        404 => ErrorCode::NotFound,
        413 => ErrorCode::ImageTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        422 => ErrorCode::InvalidOptions,
        503 => ErrorCode::ServiceUnavailable,
        504 => ErrorCode::ServiceTimeout,
        _ => ErrorCode::ServiceError,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(slug: &str, status: u16) -> Vec<u8> {
        serde_json::json!({"type": format!("{}{slug}", classify_api::TYPE_PREFIX), "title": "t",
                           "status": status, "detail": "d"})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn the_problem_type_decides_before_the_status() {
        let cases = [
            ("invalid-body", 400, ErrorCode::MalformedRequest),
            ("undecodable-image", 400, ErrorCode::InvalidImage),
            ("not-found", 404, ErrorCode::ServiceError),
            ("file-not-found", 404, ErrorCode::NotFound),
            ("payload-too-large", 413, ErrorCode::ImageTooLarge),
            ("not-ready", 503, ErrorCode::ServiceUnavailable),
            ("deadline-exceeded", 504, ErrorCode::ServiceTimeout),
            // A refused host or origin is the service's configuration, not the request's path.
            ("origin-forbidden", 403, ErrorCode::ServiceError),
            ("misdirected-request", 421, ErrorCode::ServiceError),
            // Unknown types fall back to the status.
            ("something-new", 403, ErrorCode::ForbiddenPath),
            ("something-new", 418, ErrorCode::ServiceError),
        ];
        for (slug, status, code) in cases {
            let failure = failure_for(
                StatusCode::from_u16(status).unwrap(),
                &problem(slug, status),
            );
            assert_eq!(failure.code, code, "{slug} {status}");
        }
        let not_json = failure_for(StatusCode::NOT_FOUND, b"<html>");
        assert_eq!(not_json.code, ErrorCode::NotFound);
        assert_eq!(not_json.message, "service answered HTTP 404 Not Found");
        assert!(failure_for(StatusCode::SERVICE_UNAVAILABLE, &problem("not-ready", 503)).retryable);
        assert!(
            !failure_for(StatusCode::SERVICE_UNAVAILABLE, &problem("overloaded", 503)).retryable
        );
    }
}
