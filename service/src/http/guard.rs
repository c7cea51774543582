//! Who may talk to the service from a browser: the `Host` allow-list (DNS rebinding) and an
//! explicit CORS policy.
//!
//! The service listens on loopback, which a web page cannot reach by itself — except through
//! DNS rebinding: a page on `evil.example` re-points its own name at 127.0.0.1, and the browser
//! then sends `Host: evil.example` to the service. So a request is served only when its `Host`
//! is `localhost`, an IP address (a rebinding page can only send its own *name*), or one of
//! `allowed_hosts`; any other host gets **421 Misdirected Request**. A request without `Host`
//! (HTTP/1.0 tools) is served: browsers always send one.
//!
//! CORS is off by default: no `Access-Control-*` headers, so browsers do not let other origins
//! read answers — and since a cross-origin `multipart/form-data` POST needs no preflight and
//! would still *run*, a request carrying an `Origin` other than the service's own gets **403**.
//! Origins listed in `cors_origins` are served with CORS headers (tower-http's `CorsLayer`:
//! `GET`/`POST`, `Content-Type` and `X-Request-Id` allowed, `X-Request-Id` and `Retry-After`
//! exposed); their preflight `OPTIONS` requests are answered there.
//!
//! The guard wraps the whole router (see `Application::run_until_stopped`), so it answers before
//! any route runs; its refusals are problem documents like every other error, counted in
//! `classify_http_requests_total` under `route="rejected"`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::REQUEST_ID_HEADER;
use super::problem::status_of;
use crate::metrics::{Metrics, method_label};
use classify_api::{PROBLEM_JSON, Problem, ProblemType};

/// The accepted hosts and origins.
#[derive(Debug, Clone, Default)]
pub struct BrowserPolicy {
    /// Lower-case host names accepted besides `localhost` and IP addresses.
    pub allowed_hosts: Vec<String>,
    /// Lower-case origins allowed by CORS.
    pub cors_origins: Vec<String>,
}

impl BrowserPolicy {
    /// From the configured lists (case does not matter in host names).
    pub fn new(allowed_hosts: &[String], cors_origins: &[String]) -> Self {
        let lower = |v: &[String]| v.iter().map(|s| s.to_ascii_lowercase()).collect();
        Self {
            allowed_hosts: lower(allowed_hosts),
            cors_origins: lower(cors_origins),
        }
    }

    /// True when `host` (a `Host` header value: name or address, optional port) may be served.
    pub fn host_allowed(&self, host: &str) -> bool {
        let Ok(authority) = host.parse::<axum::http::uri::Authority>() else {
            return false;
        };
        let name = authority.host().trim_end_matches('.').to_ascii_lowercase();
        let unbracketed = name.trim_start_matches('[').trim_end_matches(']');
        name == "localhost"
            || name.ends_with(".localhost")
            || unbracketed.parse::<IpAddr>().is_ok()
            || self.allowed_hosts.contains(&name)
    }

    /// True when a request with this `Origin` may be served: the service's own origin (its
    /// `Host`, as Swagger UI's requests carry), or a configured CORS origin.
    pub fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.to_ascii_lowercase();
        let same_origin = host.is_some_and(|host| {
            origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority == host.to_ascii_lowercase())
        });
        same_origin || self.cors_origins.contains(&origin)
    }
}

/// Wraps `router` with the guard and, when origins are configured, the CORS layer.
pub fn apply(router: Router, policy: BrowserPolicy, metrics: Metrics) -> Router {
    let cors = (!policy.cors_origins.is_empty()).then(|| {
        let origins: Vec<HeaderValue> = policy
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::CONTENT_TYPE,
                header::HeaderName::from_static(REQUEST_ID_HEADER),
            ])
            .expose_headers([
                header::HeaderName::from_static(REQUEST_ID_HEADER),
                header::RETRY_AFTER,
            ])
            .max_age(Duration::from_secs(600))
    });
    let router = match cors {
        Some(cors) => router.layer(cors),
        None => router,
    };
    let state = Arc::new((policy, metrics));
    router.layer(middleware::from_fn(move |request: Request, next: Next| {
        let state = state.clone();
        async move { guard(&state.0, &state.1, request, next).await }
    }))
}

async fn guard(
    policy: &BrowserPolicy,
    metrics: &Metrics,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    if let Some(host) = host
        && !policy.host_allowed(host)
    {
        // `{:?}`: the header is attacker-chosen text going into a log line.
        tracing::debug!(host = ?host, "refused: Host not allowed");
        return refuse(
            metrics,
            request.method(),
            ProblemType::MisdirectedRequest,
            format!(
                "Host {host:?} is not served here; use localhost or an IP address, or add the \
                 name to allowed_hosts"
            ),
        );
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("\u{fffd}");
        if !policy.origin_allowed(origin, host) {
            tracing::debug!(origin = ?origin, "refused: cross-origin request");
            return refuse(
                metrics,
                request.method(),
                ProblemType::OriginForbidden,
                format!(
                    "requests from origin {origin:?} are not allowed; add it to cors_origins to \
                     let a web page on it call the service"
                ),
            );
        }
    }
    next.run(request).await
}

fn refuse(metrics: &Metrics, method: &Method, kind: ProblemType, detail: String) -> Response {
    let status = status_of(kind);
    metrics
        .requests
        .with_label_values(&["rejected", method_label(method), status.as_str()])
        .inc();
    let id = uuid::Uuid::new_v4().to_string();
    let problem = Problem::new(kind, detail, Some(id.clone()));
    let mut response = (status, Json(problem)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if let Ok(id) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID_HEADER, id);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_addresses_pass_other_names_do_not() {
        let policy = BrowserPolicy::new(&["Camera.Local".into()], &[]);
        for host in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.",
            "app.localhost:1",
            "127.0.0.1:8080",
            "[::1]:8080",
            "192.168.1.20",
            "camera.local:8080",
        ] {
            assert!(policy.host_allowed(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.nip.io",
            "",
            "a b",
        ] {
            assert!(!policy.host_allowed(host), "{host}");
        }
    }

    #[test]
    fn only_the_own_origin_and_configured_ones_pass() {
        let policy = BrowserPolicy::new(&[], &["http://dash.local:3000".into()]);
        assert!(policy.origin_allowed("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
        assert!(policy.origin_allowed("http://DASH.local:3000", Some("127.0.0.1:8080")));
        assert!(!policy.origin_allowed("http://evil.example", Some("127.0.0.1:8080")));
        assert!(!policy.origin_allowed("null", Some("127.0.0.1:8080")));
        assert!(!policy.origin_allowed("http://127.0.0.1:8080", None));
    }
}
