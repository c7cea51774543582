//! The Open Inference Protocol v2 metadata routes on the real server: server metadata, health,
//! model metadata and readiness (with and without a version), the repository index, and the
//! `{"error"}` answers — on a DLR model and on an ONNX Runtime one.

use serde_json::{Value, json};

use crate::common::*;

/// GET or POST `path`: status, `Content-Type`, JSON body.
async fn call(app: &TestApp, post: bool, path: &str) -> (u16, String, Value) {
    let client = reqwest::Client::new();
    let request = if post {
        client.post(app.url(path))
    } else {
        client.get(app.url(path))
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.json().await.unwrap())
}

/// The service on `model` (a DLR or an ONNX colour model), ready, and its `/v1/model`.
async fn serve(model: &str) -> (TestApp, Value) {
    let mut config = config(model);
    config.onnx_library = Some(dlr_test_models::paths::generated_dir().join("onnxruntime"));
    let app = spawn_ready(config).await;
    let v1 = app.get_json("/v1/model").await;
    (app, v1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_metadata_health_readiness_and_repository_index() {
    for model in ["colour", "colour-onnx"] {
        let (app, v1) = serve(model).await;
        let (name, version) = (
            v1["name"].as_str().unwrap(),
            v1["version"].as_str().unwrap(),
        );

        let (status, _, server) = call(&app, false, "/v2").await;
        assert_eq!(status, 200);
        assert_eq!(server["name"], "classify-service");
        assert_eq!(
            server["extensions"],
            json!(["model_repository"]),
            "{server}"
        );
        assert_eq!(
            call(&app, false, "/v2/health/live").await.2,
            json!({"live": true})
        );
        assert_eq!(
            call(&app, false, "/v2/health/ready").await.2,
            json!({"ready": true})
        );

        for path in [
            format!("/v2/models/{name}"),
            format!("/v2/models/{name}/versions/{version}"),
        ] {
            let (status, _, meta) = call(&app, false, &path).await;
            assert_eq!(status, 200, "{path}: {meta}");
            assert_eq!(meta["name"], name);
            assert_eq!(meta["versions"], json!([version]));
            let platform = if model.ends_with("onnx") {
                "onnxruntime_onnx"
            } else {
                "dlr"
            };
            assert_eq!(meta["platform"], platform, "{model}");
            // The model's own tensors, as /v1/model describes them.
            assert_eq!(meta["inputs"][0]["name"], v1["input"]["name"]);
            assert_eq!(meta["inputs"][0]["shape"], v1["input"]["shape"]);
            assert_eq!(meta["inputs"][0]["datatype"], "FP32", "{meta}");
            assert_eq!(meta["outputs"][0]["name"], v1["output"]["name"]);
            assert_eq!(meta["outputs"][0]["shape"], v1["output"]["shape"]);
            let (status, _, ready) = call(&app, false, &format!("{path}/ready")).await;
            assert_eq!((status, ready), (200, json!({"name": name, "ready": true})));
        }
        let (status, _, index) = call(&app, true, "/v2/repository/index").await;
        assert_eq!(status, 200);
        assert_eq!(
            index,
            json!([{"name": name, "version": version, "state": "READY"}])
        );

        // Unknown model or version: 404 with {"error"}, Content-Type exactly application/json
        // (kserve's client reads the message only then).
        for path in [
            "/v2/models/resnet50".to_owned(),
            format!("/v2/models/{name}/versions/999"),
            "/v2/models/resnet50/ready".to_owned(),
        ] {
            let (status, content_type, body) = call(&app, false, &path).await;
            assert_eq!(status, 404, "{path}");
            assert_eq!(content_type, "application/json", "{path}");
            assert!(
                body["error"].as_str().unwrap().contains(name),
                "{path}: {body}"
            );
        }
        app.stop().await;
    }
}

/// Runs `service/tests/python/oip_clients.py` (tritonclient and kserve's client) against `app`.
async fn real_clients(app: &TestApp, model: &str, version: &str) -> Value {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/oip_clients.py");
    let address = app.base.trim_start_matches("http://");
    let args = [address.to_owned(), model.to_owned(), version.to_owned()];
    // Blocking, on a thread of its own: the server keeps the runtime's workers.
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(dlr_test_models::paths::oip_python())
            .arg(script)
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("the clients' findings")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_and_kserve_read_health_metadata_and_the_index() {
    for model in ["colour", "colour-onnx"] {
        let (app, v1) = serve(model).await;
        let (name, version) = (
            v1["name"].as_str().unwrap(),
            v1["version"].as_str().unwrap(),
        );
        let seen = real_clients(&app, name, version).await;

        let triton = &seen["triton"];
        for key in ["live", "ready", "model_ready", "model_version_ready"] {
            assert_eq!(triton[key], true, "{model} tritonclient {key}: {triton}");
        }
        assert_eq!(triton["unknown_ready"], false, "{triton}");
        assert_eq!(triton["server"]["extensions"], json!(["model_repository"]));
        for key in ["metadata", "version_metadata"] {
            assert_eq!(triton[key]["name"], name, "{triton}");
            assert_eq!(triton[key]["inputs"][0]["name"], v1["input"]["name"]);
        }
        assert_eq!(
            triton["index"],
            json!([{"name": name, "version": version, "state": "READY"}])
        );
        // The {"error"} message reaches the client's exception.
        assert_eq!(triton["unknown"]["status"], "404", "{triton}");
        assert!(
            triton["unknown"]["message"]
                .as_str()
                .unwrap()
                .contains("no-such-model"),
            "{triton}"
        );

        let kserve = &seen["kserve"];
        assert_eq!(
            kserve,
            &json!({"live": true, "ready": true, "model_ready": true, "unknown_ready": false}),
            "{model}"
        );
        app.stop().await;
    }
}
