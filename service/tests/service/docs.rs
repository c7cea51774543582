//! OpenAPI drift, offline Swagger UI, metrics, model info.

use crate::common::*;

const REGENERATE: &str = "cargo xtask openapi";

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
async fn swagger_ui_is_served_from_the_binary_gzipped() {
    // Everything comes from the binary: the test client talks only to 127.0.0.1.
    let app = spawn_app(config("colour")).await;
    let html = app.get_text("/docs/").await;
    assert!(html.contains("<title>classify-service"), "{html}");
    for asset in [
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "swagger-initializer.js",
    ] {
        assert!(html.contains(asset), "{asset} not loaded by\n{html}");
    }
    let init = app.get_text("/docs/swagger-initializer.js").await;
    assert!(init.contains("\"/openapi.json\""), "{init}");
    assert!(
        init.contains("validatorUrl: \"none\""),
        "online validator disabled: {init}"
    );

    // A browser gets the stored gzip stream; a client that does not accept gzip gets the
    // same file inflated.
    let gzipped = app
        .client
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .header("accept-encoding", "gzip, deflate, br")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.status(), 200);
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    assert_eq!(gzipped.headers()["vary"], "accept-encoding");
    let gzipped = gzipped.bytes().await.unwrap();
    assert_eq!(gzipped[..2], [0x1f, 0x8b], "a gzip stream");
    let plain = app
        .client
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
    assert!(plain.headers().get("content-encoding").is_none());
    assert!(
        plain.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let plain = plain.text().await.unwrap();
    assert!(plain.contains("SwaggerUIBundle"), "the bundle");
    assert!(
        !plain.contains("sourceMappingURL"),
        "no pointer to unshipped source maps"
    );
    assert!(
        gzipped.len() * 3 < plain.len(),
        "stored compressed: {} of {} bytes",
        gzipped.len(),
        plain.len()
    );
    let css = app
        .client
        .get(app.url("/docs/swagger-ui.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200);
    assert!(css.text().await.unwrap().contains(".swagger-ui"));

    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in ["/", "/docs"] {
        let redirect = no_redirects.get(app.url(path)).send().await.unwrap();
        assert!(redirect.status().is_redirection(), "{path}");
        assert_eq!(redirect.headers()["location"], "/docs/", "{path}");
    }
    app.stop().await;
}

#[test]
fn the_document_says_what_the_service_enforces() {
    let doc: serde_json::Value =
        serde_json::from_str(&classify_service::http::api::openapi_json()).unwrap();
    let text = doc.to_string();
    // Nullable unions render as "integernull" in Swagger UI; optional is expressed by
    // `required` instead.
    assert!(
        !text.contains("\"null\""),
        "a nullable type in the document"
    );
    for internal in ["Mirror of", "seed", "serde", "usize"] {
        assert!(!text.contains(internal), "internal wording {internal:?}");
    }
    let classify = &doc["paths"]["/classify"]["post"];
    assert_eq!(classify["operationId"], "classify_image");
    let params = classify["parameters"].as_array().unwrap();
    let param = |name: &str| params.iter().find(|p| p["name"] == name).unwrap().clone();
    assert_eq!(param("top_k")["schema"]["minimum"], 1);
    assert_eq!(param("threshold")["schema"]["minimum"], 0);
    assert_eq!(param("threshold")["schema"]["maximum"], 1);
    assert_eq!(param("x-request-id")["in"], "header");
    let schemas = &doc["components"]["schemas"];
    for form in [
        "ClassifyMultipart",
        "ClassifyBase64",
        "ClassifyPath",
        "ClassifyDirAndName",
    ] {
        assert_eq!(schemas[form]["properties"]["top_k"]["minimum"], 1, "{form}");
        assert_eq!(
            schemas[form]["properties"]["threshold"]["maximum"], 1,
            "{form}"
        );
    }
    assert_eq!(
        schemas["ClassifyJson"]["oneOf"].as_array().unwrap().len(),
        3
    );
    let content = &classify["requestBody"]["content"];
    for raw in [
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/bmp",
        "image/gif",
        "application/octet-stream",
    ] {
        let schema = &content[raw]["schema"]["$ref"];
        assert_eq!(schema, "#/components/schemas/ImageBytes", "{raw}");
    }
    assert_eq!(schemas["ImageBytes"]["format"], "binary");
    // Each problem example carries the status it is listed under.
    for (status, response) in classify["responses"].as_object().unwrap() {
        let media = &response["content"]["application/problem+json"];
        let examples: Vec<&serde_json::Value> = match media.get("examples") {
            Some(named) => named
                .as_object()
                .unwrap()
                .values()
                .map(|e| &e["value"])
                .collect(),
            None => media.get("example").into_iter().collect(),
        };
        for example in examples {
            assert_eq!(example["status"].to_string(), *status, "{example}");
        }
    }
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
    assert_eq!(info["performance_hint"], "latency");
    assert_eq!(info["workers"], 1);
    assert_eq!(info["threads_per_worker"], 1);
    // The memory limit seen and the budget derived from it, the same in both documents.
    let memory = &info["memory"];
    assert_eq!(memory["decode_memory_budget"], "derived", "{memory}");
    assert!(memory["limit_source"].is_string(), "{memory}");
    let budget = memory["decode_memory_budget_bytes"].as_u64().unwrap();
    let limit = memory["limit_bytes"].as_u64().unwrap();
    assert!((16 << 20..=256 << 20).contains(&budget), "{memory}");
    assert!(
        memory["body_memory_budget_bytes"].as_u64().unwrap() >= 16 << 20,
        "at least one largest body: {memory}"
    );
    for needle in [
        format!("classify_decode_memory_budget_bytes {budget}"),
        format!("classify_memory_limit_bytes {limit}"),
        "classify_decode_memory_in_use_bytes 0".to_owned(),
    ] {
        assert!(text.contains(&needle), "{needle} missing in\n{text}");
    }
    app.stop().await;
}
