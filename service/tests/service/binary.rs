//! The `classify-service` binary itself: `--demo` with `DLR_LIBRARY_PATH`, layered
//! configuration (file < environment), SIGTERM, exit codes, the `openapi` subcommand.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_binary_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("service.toml");
    std::fs::write(&file, "top_k = 1\nqueue_capacity = 5\n").unwrap();
    let mut child = Command::new(BIN)
        .args(["--demo", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("DLR_LIBRARY_PATH", dlr_test_models::paths::libdlr_path())
        .env("CLASSIFY_CONFIG", &file)
        .env("CLASSIFY_TOP_K", "2")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = stderr_lines(&mut child);
    let mut address = None;
    let mut seen = Vec::new();
    while address.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no 'listening' log line; stderr so far: {seen:#?}"));
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line)
            && json["fields"]["message"] == "listening"
        {
            address = json["fields"]["address"].as_str().map(str::to_string);
        }
        seen.push(line);
    }
    // It says how JPEGs are decoded: with libjpeg-turbo's SIMD code, which the test command's
    // set-up makes possible on x86_64 (nasm) and ARM always has.
    let messages: Vec<String> = seen
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|j| j["fields"]["message"].as_str().map(str::to_string))
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m == "JPEG decoding: libjpeg-turbo with its SIMD code"),
        "no JPEG SIMD line at start (is nasm installed? `cargo xtask setup` installs it): \
         {messages:#?}"
    );
    let base = format!("http://{}", address.unwrap());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut ready = false;
    for _ in 0..200 {
        if client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ready, "the demo did not become ready");
    let info: serde_json::Value = client
        .get(format!("{base}/v1/model"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["queue_capacity"], 5, "from the file");
    let demo_dir = std::path::PathBuf::from(info["path"].as_str().unwrap());
    let response = client
        .post(format!("{base}/classify"))
        .header("content-type", "image/jpeg")
        .body(jpeg(RED))
        .send()
        .await
        .unwrap();
    let answer = expect_ok(response).await;
    assert_eq!(answer.label, "red");
    assert_eq!(answer.predictions.len(), 2, "environment beats the file");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    assert!(!demo_dir.exists(), "the demo directory is removed at exit");
}

#[test]
fn invalid_configuration_exits_non_zero_with_every_problem() {
    let output = Command::new(BIN)
        .args([
            "--workers",
            "0",
            "--queue-capacity",
            "0",
            "--demo",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("workers must be at least 1"), "{stderr}");
    assert!(
        stderr.contains("queue_capacity must be at least 1"),
        "{stderr}"
    );

    let output = Command::new(BIN)
        .args(["--channel-order", "rbg"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("rbg"));
}

#[test]
fn openapi_subcommand_prints_the_committed_document() {
    let output = Command::new(BIN).arg("openapi").output().unwrap();
    assert!(output.status.success());
    let committed = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json"),
    )
    .unwrap();
    assert!(
        output.stdout == committed,
        "regenerate with `cargo run -p classify-service -- openapi > openapi/openapi.json`"
    );
}
