//! The HTTP boundary's one error type and its RFC 9457 `application/problem+json` form.
//!
//! Every failure a client can see is an [`ApiError`] variant of one [`ProblemType`] (the table
//! of slugs, statuses and titles in `classify-api`, shared with the clients); clients branch on
//! the problem's `type`, humans read `detail`. Internal errors are logged with the request id
//! and answered with a generic detail: nothing about files, libraries or DLR leaks.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use classify_api::{PROBLEM_JSON, Problem, ProblemType};

use crate::classifier::ClassifyError;
use crate::files::FileError;
use crate::inference::InferenceError;
use crate::preprocess::PreprocessError;

/// Everything that can go wrong while answering a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the bytes are not a supported image.
    #[error("{0}")]
    UndecodableImage(String),
    /// 400: malformed JSON, multipart or base64.
    #[error("{0}")]
    InvalidBody(String),
    /// 403: a file reference outside the allowed directories.
    #[error("{0}")]
    PathForbidden(String),
    /// 404: a referenced file does not exist.
    #[error("{0}")]
    FileNotFound(String),
    /// 404: no such route.
    #[error("no route for {0}")]
    RouteNotFound(String),
    /// 405: the route exists, the method does not.
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    /// 413: body or file larger than the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 413: image dimensions beyond the configured limits.
    #[error("{0}")]
    ImageTooLarge(String),
    /// 415: a Content-Type this endpoint does not take.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed but invalid options or fields.
    #[error("{0}")]
    InvalidOptions(String),
    /// 503: model loading or warming up.
    #[error("{detail}")]
    NotReady {
        /// Sent as the problem's `detail`.
        detail: String,
        /// Sent as the `Retry-After` header (`--retry-after-secs`).
        retry_after: u32,
    },
    /// 503: the queue is full.
    #[error("{detail}")]
    Overloaded {
        /// Sent as the problem's `detail`.
        detail: String,
        /// Sent as the `Retry-After` header (`--retry-after-secs`).
        retry_after: u32,
    },
    /// 504: the request's deadline passed.
    #[error("the request did not complete within {0} ms")]
    DeadlineExceeded(u64),
    /// 500: a bug or failure on the server; the message is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The kind of problem: its `type`, status and title.
    pub fn kind(&self) -> ProblemType {
        match self {
            Self::UndecodableImage(_) => ProblemType::UndecodableImage,
            Self::InvalidBody(_) => ProblemType::InvalidBody,
            Self::PathForbidden(_) => ProblemType::PathForbidden,
            Self::FileNotFound(_) => ProblemType::FileNotFound,
            Self::RouteNotFound(_) => ProblemType::NotFound,
            Self::MethodNotAllowed(_) => ProblemType::MethodNotAllowed,
            Self::PayloadTooLarge(_) => ProblemType::PayloadTooLarge,
            Self::ImageTooLarge(_) => ProblemType::ImageTooLarge,
            Self::UnsupportedMediaType(_) => ProblemType::UnsupportedMediaType,
            Self::InvalidOptions(_) => ProblemType::InvalidOptions,
            Self::NotReady { .. } => ProblemType::NotReady,
            Self::Overloaded { .. } => ProblemType::Overloaded,
            Self::DeadlineExceeded(_) => ProblemType::DeadlineExceeded,
            Self::Internal(_) => ProblemType::Internal,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        status_of(self.kind())
    }

    /// The problem document for this error.
    pub fn problem(&self, request_id: Option<&str>) -> Problem {
        let detail = match self {
            Self::Internal(_) => {
                "the server failed to handle this request; the failure is logged under its \
                 request id"
                    .to_string()
            }
            other => other.to_string(),
        };
        Problem::new(self.kind(), detail, request_id.map(str::to_string))
    }

    /// The same error with `prefix` in front of its message (which image of a batch failed);
    /// errors without a message of their own are returned as they are.
    pub fn prefixed(self, prefix: &str) -> Self {
        let with = |message: String| format!("{prefix}{message}");
        match self {
            Self::UndecodableImage(m) => Self::UndecodableImage(with(m)),
            Self::InvalidBody(m) => Self::InvalidBody(with(m)),
            Self::PathForbidden(m) => Self::PathForbidden(with(m)),
            Self::FileNotFound(m) => Self::FileNotFound(with(m)),
            Self::PayloadTooLarge(m) => Self::PayloadTooLarge(with(m)),
            Self::ImageTooLarge(m) => Self::ImageTooLarge(with(m)),
            Self::UnsupportedMediaType(m) => Self::UnsupportedMediaType(with(m)),
            Self::InvalidOptions(m) => Self::InvalidOptions(with(m)),
            Self::NotReady {
                detail,
                retry_after,
            } => Self::NotReady {
                detail: with(detail),
                retry_after,
            },
            Self::Overloaded {
                detail,
                retry_after,
            } => Self::Overloaded {
                detail: with(detail),
                retry_after,
            },
            other @ (Self::RouteNotFound(_)
            | Self::MethodNotAllowed(_)
            | Self::DeadlineExceeded(_)
            | Self::Internal(_)) => other,
        }
    }

    /// Logs the error at the level it deserves: internal errors in full (their message is
    /// never sent), other server errors as warnings, the client's mistakes at debug.
    pub fn log(&self, request_id: Option<&str>) {
        match self {
            Self::Internal(message) => {
                tracing::error!(request_id, error = %message, "internal error");
            }
            // Load balancers and Greengrass health checks poll /readyz while the model loads.
            not_ready @ Self::NotReady { .. } => {
                tracing::debug!(request_id, status = 503, "{not_ready}");
            }
            other if other.status().is_server_error() => {
                tracing::warn!(request_id, status = other.status().as_u16(), "{other}");
            }
            other => tracing::debug!(request_id, status = other.status().as_u16(), "{other}"),
        }
    }

    /// The `Retry-After` seconds of a 503 worth retrying.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Self::NotReady { retry_after, .. } | Self::Overloaded { retry_after, .. } => {
                Some(*retry_after)
            }
            _ => None,
        }
    }

    /// The full response: problem body, status and `Retry-After` for 503.
    pub fn into_response_for(self, request_id: Option<&str>) -> Response {
        self.log(request_id);
        let retry_after = self.retry_after();
        let mut response = (self.status(), Json(self.problem(request_id))).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The status of every answer of `kind`.
pub fn status_of(kind: ProblemType) -> StatusCode {
    // The table's statuses are constants from 400 to 599 (a unit test reads each one).
    StatusCode::from_u16(kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_response_for(None)
    }
}

impl From<PreprocessError> for ApiError {
    fn from(e: PreprocessError) -> Self {
        match e {
            PreprocessError::Undecodable(m) => Self::UndecodableImage(m),
            PreprocessError::TooLarge(m) => Self::ImageTooLarge(m),
            PreprocessError::Busy {
                detail,
                retry_after_secs,
            } => Self::Overloaded {
                detail,
                retry_after: retry_after_secs,
            },
            PreprocessError::Internal(m) => Self::Internal(m),
        }
    }
}

impl From<FileError> for ApiError {
    fn from(e: FileError) -> Self {
        match e {
            FileError::Forbidden(m) => Self::PathForbidden(m),
            FileError::NotFound(m) => Self::FileNotFound(m),
            FileError::TooLarge(m) => Self::PayloadTooLarge(m),
            io @ FileError::Io { .. } => {
                Self::Internal(crate::telemetry::ErrorChain(&io).to_string())
            }
        }
    }
}

/// Converts a classifier error; `retry_after` and `timeout_ms` as for [`inference_error`].
pub(crate) fn classify_error(e: ClassifyError, retry_after: u32, timeout_ms: u64) -> ApiError {
    match e {
        ClassifyError::File(e) => e.into(),
        ClassifyError::Preprocess(e) => e.into(),
        ClassifyError::Inference(e) => inference_error(e, retry_after, timeout_ms),
        spent @ ClassifyError::MemorySpent { .. } => ApiError::Overloaded {
            detail: spent.to_string(),
            retry_after,
        },
        ClassifyError::Internal(message) => ApiError::Internal(message),
    }
}

/// Converts a worker-pool error; the pool does not know HTTP, so retry hints come from here.
pub fn inference_error(e: InferenceError, retry_after: u32, timeout_ms: u64) -> ApiError {
    match e {
        InferenceError::NotReady(why) => ApiError::NotReady {
            detail: format!("the model is not ready: {why}"),
            retry_after,
        },
        overloaded @ InferenceError::Overloaded(_) => ApiError::Overloaded {
            detail: format!("{overloaded}; retry later"),
            retry_after,
        },
        InferenceError::Expired => ApiError::DeadlineExceeded(timeout_ms),
        InferenceError::Stopped => ApiError::NotReady {
            detail: "the service is shutting down".into(),
            retry_after,
        },
        failed @ (InferenceError::Backend(_) | InferenceError::Panicked) => {
            ApiError::Internal(crate::telemetry::ErrorChain(&failed).to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_are_not_leaked() {
        let problem = ApiError::Internal("RunDLRModel failed: /secret/compiled.so".into())
            .problem(Some("r1"));
        assert_eq!(problem.status, 500);
        assert!(!problem.detail.contains("secret"), "{}", problem.detail);
        assert_eq!(problem.kind(), Some(ProblemType::Internal));
        assert_eq!(problem.request_id.as_deref(), Some("r1"));
    }

    #[test]
    fn every_problem_kind_has_a_valid_error_status() {
        for &kind in ProblemType::ALL {
            let status = StatusCode::from_u16(kind.status()).expect("a valid status");
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{kind:?}"
            );
            assert_eq!(status_of(kind), status);
        }
    }

    #[test]
    fn overload_carries_retry_after() {
        let response = ApiError::Overloaded {
            detail: "full".into(),
            retry_after: 3,
        }
        .into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }
}
