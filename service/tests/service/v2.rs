//! The Open Inference Protocol v2 metadata routes on the real server: server metadata, health,
//! model metadata and readiness (with and without a version), the repository index, and the
//! `{"error"}` answers — on a DLR model and on an ONNX Runtime one.

use classify_service::Config;
use serde_json::{Value, json};

use crate::common::*;

/// What `GET /v2` advertises: only what is implemented.
const EXTENSIONS: [&str; 4] = [
    "binary_tensor_data",
    "classification",
    "model_configuration",
    "model_repository",
];

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
    serve_with(model, |_| {}).await
}

/// [`serve`], with `change` made to the configuration first.
async fn serve_with(model: &str, change: impl FnOnce(&mut Config)) -> (TestApp, Value) {
    let mut config = config(model);
    config.onnx_library = Some(dlr_test_models::paths::generated_dir().join("onnxruntime"));
    change(&mut config);
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
        assert_eq!(server["extensions"], json!(EXTENSIONS), "{server}");
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
            // The model's own tensors as /v1/model describes them, the batch dimension -1.
            assert_eq!(meta["inputs"][0]["name"], v1["input"]["name"]);
            let mut input_shape = v1["input"]["shape"].as_array().unwrap().clone();
            input_shape[0] = json!(-1);
            assert_eq!(meta["inputs"][0]["shape"], json!(input_shape));
            assert_eq!(meta["inputs"][0]["datatype"], "FP32", "{meta}");
            assert_eq!(meta["outputs"][0]["name"], v1["output"]["name"]);
            let classes: i64 = v1["output"]["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_i64().unwrap())
                .product();
            assert_eq!(meta["outputs"][0]["shape"], json!([-1, classes]));
            let (status, _, config) = call(&app, false, &format!("{path}/config")).await;
            assert_eq!(status, 200, "{path}/config: {config}");
            assert_eq!(config["name"], name);
            assert_eq!(config["max_batch_size"], v1["queue_capacity"], "{config}");
            assert_eq!(config["input"][0]["name"], v1["input"]["name"]);
            assert_eq!(config["input"][0]["data_type"], "TYPE_FP32");
            assert_eq!(
                config["input"][0]["dims"],
                json!(v1["input"]["shape"].as_array().unwrap()[1..]),
                "{config}"
            );
            assert_eq!(config["output"][0]["name"], v1["output"]["name"]);
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

/// Runs the clients' venv's Python with `args` in `dir`, on a thread of its own (the server
/// keeps the runtime's workers): its standard output, once it has succeeded.
async fn oip_python(args: Vec<String>, dir: std::path::PathBuf) -> String {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(dlr_test_models::paths::oip_python())
            .args(&args)
            .current_dir(dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Runs `service/tests/python/oip_clients.py` (tritonclient and kserve's client) against `app`
/// in `mode` (`metadata` or `infer`) with `args`.
async fn real_clients(app: &TestApp, mode: &str, args: &[&str]) -> Value {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = manifest.join("tests/python/oip_clients.py");
    let address = app.base.trim_start_matches("http://");
    let mut all = vec![
        script.display().to_string(),
        mode.to_owned(),
        address.to_owned(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let stdout = oip_python(all, manifest.to_path_buf()).await;
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
        let seen = real_clients(&app, "metadata", &[name, version]).await;

        let triton = &seen["triton"];
        for key in ["live", "ready", "model_ready", "model_version_ready"] {
            assert_eq!(triton[key], true, "{model} tritonclient {key}: {triton}");
        }
        assert_eq!(triton["unknown_ready"], false, "{triton}");
        assert_eq!(triton["server"]["extensions"], json!(EXTENSIONS));
        for key in ["metadata", "version_metadata"] {
            assert_eq!(triton[key]["name"], name, "{triton}");
            assert_eq!(triton[key]["inputs"][0]["name"], v1["input"]["name"]);
        }
        assert_eq!(triton["config"]["name"], name, "{triton}");
        assert_eq!(triton["config"]["max_batch_size"], v1["queue_capacity"]);
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

/// `[[index, value]; 5]` of one row, as the script reports it.
fn top5(row: &Value) -> Vec<(u64, f64)> {
    row.as_array()
        .unwrap()
        .iter()
        .map(|pair| (pair[0].as_u64().unwrap(), pair[1].as_f64().unwrap()))
        .collect()
}

/// The row agrees with `/classify`'s top 5: the same classes, the model's raw values.
fn assert_same_top5(row: &Value, classified: &classify_api::ClassifyResponse, what: &str) {
    let row = top5(row);
    assert_eq!(row.len(), 5, "{what}");
    for ((index, value), p) in row.iter().zip(&classified.predictions) {
        assert_eq!(*index, p.index as u64, "{what}: {row:?}");
        assert!(
            (value - p.logit).abs() <= 1e-6,
            "{what}: {value} vs {}",
            p.logit
        );
    }
}

/// Real photos through tritonclient and kserve's client as encoded images (BYTES [N]), on the
/// real EfficientNet-Lite0 with DLR and with ONNX Runtime: binary and JSON outputs, a batch,
/// the classification extension, each agreeing with `/classify` on the same photo; and the
/// errors a client meets, each with its status and message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_infer_encoded_photos_as_classify_does() {
    let photos = dlr_test_models::paths::samples_dir().join("photos");
    let files = [photos.join("chelsea.png"), photos.join("rocket.jpg")];
    for model in ["efficientnet-lite0", "efficientnet-lite0-onnx"] {
        // A batch holds at most the queue's capacity: two photos fit, three do not.
        let (app, v1) = serve_with(model, |config| config.queue_capacity = 2).await;
        let text = |v: &Value| v.as_str().unwrap().to_owned();
        let (name, version) = (text(&v1["name"]), text(&v1["version"]));
        let (input, output) = (text(&v1["input"]["name"]), text(&v1["output"]["name"]));
        let mut classified = Vec::new();
        for (file, kind) in files.iter().zip(["image/png", "image/jpeg"]) {
            let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
            classified.push(app.classify(bytes, kind, "?top_k=5").await);
        }
        let paths: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        let mut args = vec![name.as_str(), input.as_str(), output.as_str()];
        args.extend(paths.iter().map(String::as_str));
        let seen = real_clients(&app, "infer", &args).await;

        let triton = &seen["triton"];
        assert_same_top5(&triton["binary"][0], &classified[0], "binary");
        assert_same_top5(&triton["json"][0], &classified[0], "json");
        for (i, classified) in classified.iter().enumerate() {
            assert_same_top5(&triton["batch"][i], classified, "batch");
            assert_same_top5(&seen["kserve"]["top5"][i], classified, "kserve");
            let labels = triton["classification"][i].as_array().unwrap();
            assert_eq!(labels.len(), 5, "{triton}");
            for (element, p) in labels.iter().zip(&classified.predictions) {
                let element = element.as_str().unwrap();
                let mut parts = element.splitn(3, ':');
                let value: f64 = parts.next().unwrap().parse().unwrap();
                assert!((value - p.probability).abs() <= 1e-6, "{element} vs {p:?}");
                assert_eq!(
                    parts.next(),
                    Some(p.index.to_string().as_str()),
                    "{element}"
                );
                assert_eq!(parts.next(), Some(p.label.as_str()), "{element}");
            }
        }
        let header = &triton["binary_header"];
        assert_eq!(header["model_name"], name.as_str());
        assert_eq!(header["model_version"], version.as_str());
        assert_eq!(header["outputs"][0]["datatype"], "FP32", "{header}");
        assert_eq!(header["outputs"][0]["shape"], json!([1, 1000]), "{header}");
        assert_eq!(
            header["outputs"][0]["parameters"]["binary_data_size"], 4000,
            "{header}"
        );
        assert_eq!(triton["json_header"], json!([1, 1000]));
        assert_eq!(triton["batch_id"], "batch-1");
        let kserve = &seen["kserve"];
        assert_eq!(kserve["id"], "kserve-1");
        assert_eq!(kserve["model_name"], name.as_str());
        assert_eq!(
            (&kserve["output"], &kserve["shape"]),
            (&json!(output), &json!([2, 1000]))
        );

        for (case, status, words) in [
            ("not_an_image", "400", "image 1 of the batch of 2"),
            ("unknown_model", "404", "no-such-model"),
            ("wrong_datatype", "400", "FP16"),
            ("unknown_output", "400", "no-such-output"),
            ("too_many", "413", "at most 2"),
        ] {
            let failure = &triton[case];
            assert_eq!(failure["status"], status, "{case}: {failure}");
            let message = failure["message"].as_str().unwrap();
            assert!(message.contains(words), "{case}: {message}");
        }
        app.stop().await;
    }
}

/// A client that preprocesses: the model's own tensor (its datatype, its shape with N in
/// front), binary and JSON, through tritonclient and kserve's client, on DLR and ONNX Runtime.
/// A tensor of one colour gives the raw output `/classify` gives for an image of that colour;
/// a tensor of another shape is refused with the shape it takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_infer_the_models_own_tensor() {
    let colour = [200u8, 30, 40];
    for model in ["colour", "colour-onnx"] {
        let (app, v1) = serve(model).await;
        let text = |v: &Value| v.as_str().unwrap().to_owned();
        let classified = app
            .classify(
                encode(&uniform(colour, 64, 48), image::ImageFormat::Png),
                "image/png",
                "?top_k=1000",
            )
            .await;
        let mut expected = vec![0.0; classified.predictions.len()];
        for p in &classified.predictions {
            expected[p.index] = p.logit;
        }
        let args = [
            text(&v1["name"]),
            text(&v1["input"]["name"]),
            text(&v1["output"]["name"]),
            "FP32".to_owned(),
            text(&v1["input"]["layout"]),
            v1["input"]["shape"].to_string(),
            colour.map(|c| c.to_string()).join(","),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let seen = real_clients(&app, "tensor", &args).await;

        for (case, rows) in [("binary", 2), ("json", 1), ("kserve_json", 2)] {
            let got = seen[case].as_array().unwrap();
            assert_eq!(got.len(), rows, "{model} {case}: {seen}");
            for row in got {
                let row: Vec<f64> = row
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect();
                assert_eq!(row.len(), expected.len(), "{model} {case}");
                for (got, want) in row.iter().zip(&expected) {
                    assert!(
                        (got - want).abs() <= 1e-4,
                        "{model} {case}: {row:?} vs {expected:?}"
                    );
                }
            }
        }
        let wrong = &seen["wrong_shape"];
        assert_eq!(wrong["status"], "400", "{wrong}");
        let message = wrong["message"].as_str().unwrap();
        let mut per_image: Vec<String> = v1["input"]["shape"].as_array().unwrap()[1..]
            .iter()
            .map(|d| d.to_string())
            .collect();
        per_image.insert(0, "N".into());
        let takes = format!("[{}]", per_image.join(", "));
        assert!(message.contains(&takes), "{message} should name {takes}");
        app.stop().await;
    }
}

/// The tritonclient example of `service/README.md`, exactly as written except for the address,
/// run twice with the pinned client against the colour model and a red `cat.jpg`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_tritonclient_example_runs_as_written() {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let example = readme
        .split("```python\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block))
        .find(|block| block.contains("tritonclient"))
        .expect("a tritonclient example in service/README.md")
        .to_owned();
    let app = spawn_ready(config("colour")).await;
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("cat.jpg"), jpeg(RED)).unwrap();
    let script = example.replace("127.0.0.1:8080", app.base.trim_start_matches("http://"));
    let dir = work.path().to_owned();
    for _ in 0..2 {
        let stdout = oip_python(vec!["-c".into(), script.clone()], dir.clone()).await;
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 5, "{stdout}");
        let top: Vec<&str> = lines[0].splitn(3, ':').collect();
        assert_eq!(top[2], expected_label([255.0, 0.0, 0.0]), "{stdout}");
        assert!(top[0].parse::<f64>().unwrap() > 0.5, "{stdout}");
    }
    app.stop().await;
}

/// The v2 infer route sits behind the same guards as `/classify` on the real socket: a foreign
/// `Host` is refused before the handler, the body limit holds, the request id is echoed, and
/// the answers are counted under the route's own label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_infer_is_behind_the_same_guards() {
    let (app, v1) = serve_with("colour", |config| config.max_body_bytes = 64 * 1024).await;
    let name = v1["name"].as_str().unwrap();
    let url = app.url(&format!("/v2/models/{name}/infer"));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let request = |body: Vec<u8>| {
        client
            .post(&url)
            .header("x-request-id", "v2-guard-1")
            .body(body)
    };
    let small = json!({"inputs": [{"name": v1["input"]["name"], "shape": [1],
                                    "datatype": "BYTES", "data": ["not an image"]}]})
    .to_string()
    .into_bytes();

    let foreign = request(small.clone())
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 421);

    let undecodable = request(small).send().await.unwrap();
    assert_eq!(undecodable.status(), 400);
    assert_eq!(undecodable.headers()["x-request-id"], "v2-guard-1");
    let error: Value = undecodable.json().await.unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("not a JPEG"),
        "{error}"
    );

    let too_large = request(vec![b' '; 100 * 1024]).send().await.unwrap();
    assert_eq!(too_large.status(), 413);
    let error: Value = too_large.json().await.unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("65536"),
        "{error}"
    );

    let metrics = app.get_text("/metrics").await;
    for status in ["400", "413"] {
        let line = format!(
            r#"classify_http_requests_total{{method="POST",route="/v2/models/{{model}}/infer",status="{status}"}} 1"#
        );
        assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    }
    app.stop().await;
}

/// A full queue, as a fact (the gated model holds the only worker, a second request holds the
/// only place in the queue): tritonclient and kserve's client both get 503 with the reason, and
/// the requests already admitted are answered once the gate opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_are_refused_503_by_a_full_queue() {
    let gate = crate::gate::Gate::new();
    let full = crate::load::full_queue(&gate, config("colour")).await;
    let v1 = full.app.get_json("/v1/model").await;
    let work = tempfile::tempdir().unwrap();
    let photo = work.path().join("red.png");
    std::fs::write(&photo, png(RED)).unwrap();
    let args = [
        v1["name"].as_str().unwrap().to_owned(),
        v1["input"]["name"].as_str().unwrap().to_owned(),
        photo.display().to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let seen = real_clients(&full.app, "refused", &args).await;
    for client in ["triton", "kserve"] {
        let failure = &seen[client];
        assert_eq!(failure["status"], "503", "{client}: {seen}");
        let message = failure["message"].as_str().unwrap();
        assert!(message.contains("queue is full"), "{client}: {message}");
    }
    full.release(&gate).await.stop().await;
}
