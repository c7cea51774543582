//! HTTP client of the classification service (`POST /classify`) and its error mapping.
//!
//! Every failure — refused connection, HTTP error status with an `application/problem+json` body,
//! unreadable answer — becomes a [`ServiceFailure`] with a stable [`ErrorCode`], so the adapter can
//! always answer. The per-request deadline is applied by the caller around [`ServiceClient::classify`].

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::messages::{ClassifyRequest, ErrorCode};

/// A successful classification.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// Top-1 label.
    pub label: String,
    /// Predictions exactly as the service sent them.
    pub predictions: Vec<Value>,
}

/// A failed classification.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceFailure {
    /// Stable code for the reply.
    pub code: ErrorCode,
    /// Detail (the problem document's `detail` or `title` when there is one).
    pub message: String,
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

    /// Calls `POST /classify` for `request`, forwarding its id as `x-request-id`.
    pub async fn classify(
        &self,
        request: &ClassifyRequest,
    ) -> Result<Classification, ServiceFailure> {
        let response = self
            .http
            .post(&self.classify_url)
            .header("x-request-id", &request.request_id)
            .json(&request.service_body())
            .send()
            .await
            .map_err(|e| {
                let code = if e.is_connect() {
                    ErrorCode::ServiceUnreachable
                } else if e.is_timeout() {
                    ErrorCode::Timeout
                } else {
                    ErrorCode::ServiceError
                };
                ServiceFailure {
                    code,
                    message: format!("calling {}: {}", self.classify_url, error_chain(&e)),
                }
            })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| ServiceFailure {
            code: ErrorCode::ServiceError,
            message: format!("reading the service answer: {}", error_chain(&e)),
        })?;
        if status == StatusCode::OK {
            return parse_success(&body);
        }
        Err(ServiceFailure {
            code: code_for_status(status),
            message: problem_message(status, &body),
        })
    }
}

fn parse_success(body: &[u8]) -> Result<Classification, ServiceFailure> {
    let invalid = |why: &str| ServiceFailure {
        code: ErrorCode::ServiceError,
        message: format!("invalid answer from the service: {why}"),
    };
    let v: Value = serde_json::from_slice(body).map_err(|_| invalid("not JSON"))?;
    let predictions = v
        .get("predictions")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| invalid("no predictions array"))?;
    // Prefer the service's own top-1; fall back to the first prediction's label.
    let label = v
        .get("label")
        .and_then(Value::as_str)
        .or_else(|| {
            predictions
                .first()
                .and_then(|p| p.get("label"))
                .and_then(Value::as_str)
        })
        .ok_or_else(|| invalid("no label"))?
        .to_owned();
    Ok(Classification { label, predictions })
}

/// Maps an HTTP error status of the service to a reply code.
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

fn problem_message(status: StatusCode, body: &[u8]) -> String {
    let problem: Option<Value> = serde_json::from_slice(body).ok();
    let text = problem.as_ref().and_then(|p| {
        p.get("detail")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or_else(|| p.get("title").and_then(Value::as_str))
            .map(str::to_owned)
    });
    match text {
        Some(t) => t,
        None => format!("service answered HTTP {status}"),
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
