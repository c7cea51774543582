//! Swagger UI in a real browser, and a client generated from the committed OpenAPI document.
//!
//! Both run Python from `generated/venv/` (Selenium and openapi-python-client, pinned and
//! installed by `cargo xtask setup`, with Debian's `chromium` and `chromium-driver`): the
//! scripts in `tests/browser/` do what a person or a client program does; the verdict is here.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(name)
}

fn venv_bin(tool: &str) -> PathBuf {
    dlr_test_models::paths::venv_dir().join("bin").join(tool)
}

/// Runs a command to completion on the blocking pool (the server keeps answering meanwhile).
async fn run(mut command: Command) -> String {
    let shown = format!("{command:?}");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{shown}: {e}; `cargo xtask setup` installs it"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{shown} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The JSON body's three forms appear by name in the request body's "Schema" tab, not as
/// three unnamed objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_names_the_json_forms() {
    let app = spawn_ready(config("colour")).await;
    let mut command = Command::new(venv_bin("python"));
    command
        .arg(script("swagger_ui.py"))
        .arg(&app.base)
        .arg("/dev/null")
        .arg("schema:application/json");
    let printed = run(command).await;
    let shown: serde_json::Value = serde_json::from_str(printed.trim()).unwrap();
    assert_eq!(
        shown["one_of"],
        serde_json::json!([
            "#0 ClassifyBase64",
            "#1 ClassifyPath",
            "#2 ClassifyDirAndName"
        ]),
        "{printed}"
    );
    app.stop().await;
}

/// Swagger UI lists every Open Inference Protocol v2 route under its tag, and GET /v2 answers
/// from the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_lists_the_v2_routes() {
    let app = spawn_ready(config("colour")).await;
    let mut command = Command::new(venv_bin("python"));
    command
        .arg(script("swagger_ui.py"))
        .arg(&app.base)
        .arg("/dev/null")
        .arg("v2");
    let printed = run(command).await;
    let shown: serde_json::Value = serde_json::from_str(printed.trim()).unwrap();
    let mut operations: Vec<&str> = shown["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    operations.sort();
    assert_eq!(
        operations,
        [
            "v2_health_live",
            "v2_health_ready",
            "v2_infer",
            "v2_model_config",
            "v2_model_metadata",
            "v2_model_ready",
            "v2_model_version_config",
            "v2_model_version_metadata",
            "v2_model_version_ready",
            "v2_repository_index",
            "v2_server_metadata",
            "v2_version_infer",
        ],
        "{printed}"
    );
    assert_eq!(shown["status"], "200", "{printed}");
    let body: serde_json::Value = serde_json::from_str(shown["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["name"], "classify-service", "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_classifies_every_form_with_its_prefilled_values() {
    let app = spawn_ready(config("colour")).await;
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("red.png");
    std::fs::write(&image, png(RED)).unwrap();
    let forms = [
        "multipart/form-data",
        "image/png",
        "application/octet-stream",
        "application/json",
    ];
    let mut command = Command::new(venv_bin("python"));
    command
        .arg(script("swagger_ui.py"))
        .arg(&app.base)
        .arg(&image)
        .args(forms);
    let printed = run(command).await;
    let results: Vec<serde_json::Value> = printed
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(results.len(), forms.len(), "{printed}");
    for (result, form) in results.iter().zip(forms) {
        assert_eq!(result["form"], form);
        assert_eq!(result["status"], "200", "{form}: {result}");
        let body: serde_json::Value =
            serde_json::from_str(result["body"].as_str().unwrap()).unwrap();
        // The JSON example is a red PNG too, so every form has the same expected label.
        assert_eq!(body["label"], "red", "{form}: {body}");
        // The prefilled top_k (the document's example, 3) was sent.
        assert_eq!(
            body["predictions"].as_array().unwrap().len(),
            3,
            "{form}: {body}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_generated_from_the_committed_document_sends_raw_bytes() {
    let app = spawn_ready(config("colour")).await;
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("red.png");
    std::fs::write(&image, png(RED)).unwrap();
    let document = Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json");
    // Generated on every run, so the client always matches the committed document.
    let mut generate = Command::new(venv_bin("openapi-python-client"));
    generate
        .args(["generate", "--meta", "none", "--path"])
        .arg(&document)
        .arg("--output-path")
        .arg(work.path().join("classify_client"))
        .env("PATH", venv_with_path());
    run(generate).await;
    let mut call = Command::new(venv_bin("python"));
    call.arg(script("generated_client.py"))
        .arg(work.path())
        .arg(&app.base)
        .arg(&image);
    let printed = run(call).await;
    let answer: serde_json::Value = serde_json::from_str(printed.trim()).unwrap();
    assert_eq!(answer["label"], "red", "{answer}");
    assert_eq!(answer["predictions"], 2, "{answer}");
    assert_eq!(answer["request_id"], "generated-client-1", "{answer}");
    app.stop().await;
}

/// The generator formats its output with `ruff`, installed beside it in the venv.
fn venv_with_path() -> std::ffi::OsString {
    let mut path = dlr_test_models::paths::venv_dir()
        .join("bin")
        .into_os_string();
    if let Some(rest) = std::env::var_os("PATH") {
        path.push(":");
        path.push(rest);
    }
    path
}
