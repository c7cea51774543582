//! The OpenAPI document and Swagger UI at `/docs/`, served from the binary (works offline).
//!
//! Only what the page loads is embedded: Swagger UI's self-contained bundle, its stylesheet
//! and icon, gzipped by `build.rs` from the vendored release — about 0.4 MB instead of the
//! ~12 MB of every bundle flavour and source map an embed of the whole `dist/` folder costs.
//! They are sent as stored with `Content-Encoding: gzip`; a client that does not accept gzip
//! (plain `curl`, say) gets them inflated on the fly. The page itself and its start-up script
//! are written here, so the title names the service and the online validator stays off.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// Where Swagger UI lives.
pub const DOCS_PATH: &str = "/docs/";

const INDEX_HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>classify-service · API docs</title>
  <link rel="stylesheet" href="swagger-ui.css">
  <link rel="icon" type="image/png" href="favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="swagger-ui-bundle.js"></script>
  <script src="swagger-initializer.js"></script>
</body>
</html>
"#;

// The standalone preset (top bar with a URL box) is not embedded: this page shows one document.
const INITIALIZER_JS: &str = r##"window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: "none",
  });
};
"##;

const BUNDLE_GZ: &[u8] = include_bytes!(concat!(
    env!("OUT_DIR"),
    "/swagger-ui/swagger-ui-bundle.js.gz"
));
const CSS_GZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui/swagger-ui.css.gz"));
const ICON_GZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui/favicon-32x32.png.gz"));

/// The document, serialised once.
static OPENAPI_JSON: LazyLock<String> = LazyLock::new(super::api::openapi_json);

/// `/`, `/docs`, `/docs/…` and `/openapi.json`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to(DOCS_PATH) }))
        .route("/docs", get(|| async { Redirect::to(DOCS_PATH) }))
        .route(
            "/docs/",
            get(|| async { text(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/docs/swagger-initializer.js",
            get(|| async { text(INITIALIZER_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/docs/swagger-ui-bundle.js",
            get(|headers: HeaderMap| async move {
                gzipped(&headers, BUNDLE_GZ, "text/javascript; charset=utf-8")
            }),
        )
        .route(
            "/docs/swagger-ui.css",
            get(|headers: HeaderMap| async move {
                gzipped(&headers, CSS_GZ, "text/css; charset=utf-8")
            }),
        )
        .route(
            "/docs/favicon-32x32.png",
            get(|headers: HeaderMap| async move { gzipped(&headers, ICON_GZ, "image/png") }),
        )
        .route(
            "/openapi.json",
            get(|| async { text(&OPENAPI_JSON, "application/json") }),
        )
}

fn text(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The stored gzip stream as is when the client accepts it, else inflated.
fn gzipped(headers: &HeaderMap, gz: &'static [u8], content_type: &'static str) -> Response {
    let vary = (header::VARY, HeaderValue::from_static("accept-encoding"));
    let content_type = (header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if accepts_gzip(headers) {
        let encoding = (header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        return ([content_type, encoding, vary], gz).into_response();
    }
    let mut plain = Vec::new();
    match std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut plain) {
        Ok(_) => ([content_type, vary], plain).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "an embedded Swagger UI file does not inflate");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Whether `Accept-Encoding` admits gzip (by name or `*`, with a non-zero quality).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    #[test]
    fn gzip_is_recognised_by_name_wildcard_and_quality() {
        assert!(accepts_gzip(&accept("gzip, deflate, br")));
        assert!(accepts_gzip(&accept("br;q=1.0, GZIP;q=0.5")));
        assert!(accepts_gzip(&accept("*")));
        assert!(!accepts_gzip(&accept("gzip;q=0")));
        assert!(!accepts_gzip(&accept("br, deflate")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
