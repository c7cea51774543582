//! OpenAPI drift, offline Swagger UI, metrics, model info.

use crate::common::*;

const REGENERATE: &str = "cargo run -p classify-service -- openapi > openapi/openapi.json";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_openapi_matches_the_committed_document() {
    let app = spawn_app(config("colour")).await;
    let served: serde_json::Value = app.get_json("/openapi.json").await;
    assert_eq!(served["openapi"], "3.1.0");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json");
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; regenerate it with `{REGENERATE}`", path.display()));
    let committed: serde_json::Value = serde_json::from_str(&committed).unwrap_or_else(|e| {
        panic!(
            "{} is not JSON ({e}); regenerate it with `{REGENERATE}`",
            path.display()
        )
    });
    assert!(
        served == committed,
        "openapi/openapi.json differs from the document the service serves; regenerate it with `{REGENERATE}`"
    );
    // The subcommand prints exactly the committed bytes.
    assert_eq!(
        classify_service::http::api::openapi_json(),
        std::fs::read_to_string(&path).unwrap(),
        "openapi/openapi.json is not formatted as the subcommand prints it; regenerate it with `{REGENERATE}`"
    );
    for route in ["/classify", "/healthz", "/readyz", "/metrics", "/v1/model"] {
        assert!(served["paths"].get(route).is_some(), "{route}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_is_served_from_vendored_assets() {
    // Everything comes from the binary: the test client talks only to 127.0.0.1 and the
    // assets are compiled in (utoipa-swagger-ui feature `vendored`), so no network is used.
    let app = spawn_app(config("colour")).await;
    let page = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(html.contains("swagger-ui-bundle.js"), "{html}");
    let bundle = app
        .client
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), 200);
    let bundle = bundle.bytes().await.unwrap();
    assert!(
        bundle.len() > 100_000,
        "the bundle is {} bytes",
        bundle.len()
    );
    let init = app.get_text("/docs/swagger-initializer.js").await;
    assert!(init.contains("/openapi.json"), "{init}");
    let compact: String = init.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(
        compact.contains(r#""validatorUrl":"none""#),
        "online validator disabled: {init}"
    );
    let redirect = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url("/docs"))
        .send()
        .await
        .unwrap();
    assert!(redirect.status().is_redirection());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_model_info() {
    let app = spawn_ready(config("colour")).await;
    let health: serde_json::Value = app.get_json("/healthz").await;
    assert_eq!(health["status"], "ok");
    app.classify(png(RED), "image/png", "").await;
    app.post_raw(b"junk".to_vec(), "image/png", "").await;
    app.client
        .get(app.url("/no/such/route"))
        .send()
        .await
        .unwrap();

    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for needle in [
        r#"classify_http_requests_total{method="POST",route="/classify",status="200"} 1"#,
        r#"classify_http_requests_total{method="POST",route="/classify",status="400"} 1"#,
        r#"classify_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        // Junk fails format sniffing before a decode is timed.
        "classify_decode_seconds_count 1",
        "classify_preprocess_seconds_count 1",
        "classify_queue_wait_seconds_count 1",
        "classify_inference_seconds_count 1",
        "classify_request_duration_seconds_count 1",
        "classify_request_duration_seconds_bucket{le=\"+Inf\"} 1",
        "classify_queue_depth 0",
        "classify_queue_capacity 64",
        "classify_ready 1",
        r#"classify_model_info{backend="tvm",dlr_version="1.6.0",input_shape="[1, 224, 224, 3]",name="colour""#,
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }

    let info: serde_json::Value = app.get_json("/v1/model").await;
    assert_eq!(info["name"], "colour");
    assert_eq!(info["backend"], "tvm");
    assert_eq!(info["dlr_version"], "1.6.0");
    assert!(info["dlr_library"].as_str().unwrap().ends_with("libdlr.so"));
    assert_eq!(info["input"]["name"], "data");
    assert_eq!(info["input"]["shape"], serde_json::json!([1, 224, 224, 3]));
    assert_eq!(info["input"]["layout"], "NHWC");
    assert_eq!(info["input"]["dtype"], "float32");
    assert_eq!(info["output"]["shape"], serde_json::json!([1, 10]));
    assert_eq!(info["labels"], 10);
    assert_eq!(info["workers"], 1);
    assert_eq!(info["threads_per_worker"], 1);
    app.stop().await;
}
