//! The `classify-ipc-adapter` binary: signals, exit statuses and the three subcommands.

mod common;

use std::process::Stdio;
use std::time::Duration;

use classify_ipc_adapter::config::Flavour;
use common::*;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_classify-ipc-adapter");

fn adapter_process(socket: &std::path::Path, service_url: &str) -> Child {
    Command::new(BIN)
        .args([
            "run",
            "--service-url",
            service_url,
            "--request-timeout-ms",
            "5000",
        ])
        .env(
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
            socket,
        )
        .env("SVCUID", ADAPTER)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn signal(child: &Child, sig: &str) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn wait_exit(child: &mut Child) -> (i32, String) {
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits in time")
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    (status.code().unwrap_or(-1), stderr)
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    let stub = stub_service().await;
    let dir = tempfile::tempdir().unwrap();
    let emu = start_emulator(dir.path(), Flavour::Lite).await;
    let mut child = adapter_process(emu.socket_path(), &stub.url);
    assert!(
        eventually(|| emu.subscription_count() == 1).await,
        "adapter subscribed"
    );
    let req = client(emu.socket_path(), REQUESTER, Flavour::Lite).await;
    let mut replies = req.subscribe("local/result", None).await.unwrap();
    for i in 0..2 {
        req.publish(
            "local/inference",
            &bin(&json!({"path": "/x/slow.png", "request_id": format!("t{i}")})),
        )
        .await
        .unwrap();
    }
    assert!(eventually(|| stub.log.lock().unwrap().bodies.len() == 2).await);
    signal(&child, "-TERM");
    for _ in 0..2 {
        let v = next_reply(&mut replies).await.json.unwrap();
        assert_eq!(v["status"], "ok");
    }
    let (code, stderr) = wait_exit(&mut child).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
}

#[tokio::test]
async fn nucleus_loss_exits_with_status_4_and_a_clear_log() {
    let stub = stub_service().await;
    let dir = tempfile::tempdir().unwrap();
    let emu = start_emulator(dir.path(), Flavour::Classic).await;
    let mut child = adapter_process(emu.socket_path(), &stub.url);
    assert!(
        eventually(|| emu.subscription_count() == 1).await,
        "adapter subscribed"
    );
    emu.shutdown().await;
    let (code, stderr) = wait_exit(&mut child).await;
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("lost the connection to the Greengrass nucleus"),
        "{stderr}"
    );
}

#[tokio::test]
async fn missing_configuration_exits_with_status_2() {
    let mut child = Command::new(BIN)
        .arg("run")
        .env_remove("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT")
        .env_remove("SVCUID")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (code, stderr) = wait_exit(&mut child).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"),
        "{stderr}"
    );
}

#[tokio::test]
async fn request_subcommand_prints_the_reply() {
    let stub = stub_service().await;
    let dir = tempfile::tempdir().unwrap();
    let emu = start_emulator(dir.path(), Flavour::Lite).await;
    let running = start_adapter(adapter_config(emu.socket_path(), &stub.url, Flavour::Lite)).await;
    let image = dir.path().join("tiny.png");
    std::fs::write(&image, b"\x89PNG fake").unwrap();
    for (args, ok, label) in [
        (
            vec!["--image-dir", "/images", "--fname", "pelican.jpeg"],
            true,
            Some("pelican"),
        ),
        (
            vec!["--path", "/images/missing.jpg", "--json-message"],
            false,
            None,
        ),
        (
            vec![
                "--image-base64-file",
                image.to_str().unwrap(),
                "--top-k",
                "1",
            ],
            true,
            Some("inline"),
        ),
    ] {
        let out = Command::new(BIN)
            .arg("request")
            .args(&args)
            .args(["--request-id", "cli-1"])
            .env(
                "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
                emu.socket_path(),
            )
            .env("SVCUID", REQUESTER)
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(WAIT, out).await.unwrap().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.success(),
            ok,
            "{args:?}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(v["request_id"], "cli-1");
        match label {
            Some(l) => assert_eq!(v["label"], l),
            None => assert_eq!(v["error"]["code"], "not_found"),
        }
    }
    running.stop().await.unwrap();
}

#[tokio::test]
async fn emulate_subcommand_serves_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("emu.sock");
    let acl = dir.path().join("acl.json");
    std::fs::write(&acl, ACL).unwrap();
    let mut child = Command::new(BIN)
        .args([
            "emulate",
            "--socket",
            socket.to_str().unwrap(),
            "--flavour",
            "lite",
        ])
        .args([
            "--access-control",
            acl.to_str().unwrap(),
            "--token",
            "secret-1=com.custom.requester",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    assert!(eventually(|| socket.exists()).await);
    let c = client(&socket, "secret-1", Flavour::Lite).await;
    let mut sub = c.subscribe("local/result", None).await.unwrap();
    c.publish("local/result", &bin(&json!({"x": 1})))
        .await
        .unwrap();
    next_event(&mut sub).await;
    assert!(
        c.publish("elsewhere", &bin(&json!({})))
            .await
            .unwrap_err()
            .is_unauthorized()
    );
    let denied = classify_ipc_adapter::client::IpcClient::connect(
        classify_ipc_adapter::client::ClientConfig::new(&socket, "com.custom.requester"),
    )
    .await;
    assert!(
        denied.is_err(),
        "with --token, only listed tokens are accepted"
    );
    signal(&child, "-TERM");
    let (code, stderr) = wait_exit(&mut child).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(!socket.exists());
    let reason = tokio::time::timeout(Duration::from_secs(5), c.closed())
        .await
        .unwrap();
    assert!(!reason.is_empty());
}
