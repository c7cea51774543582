//! The `classify-ipc-adapter` binary: signals, exit statuses, socket wait, ready files, the
//! subcommands, and plain (colourless) logs when stderr is not a terminal.

use std::process::Stdio;
use std::time::Duration;

use crate::support::*;
use greengrass_ipc::Flavour;
use greengrass_ipc::iot_core::Qos;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_classify-ipc-adapter");

/// The adapter as Greengrass starts it: socket and token in the environment; `ready` is the
/// ready file it writes once subscribed and reported RUNNING.
fn adapter_process(socket: &std::path::Path, service_url: &str, ready: &std::path::Path) -> Child {
    Command::new(BIN)
        .args([
            "run",
            "--service-url",
            service_url,
            "--reply-deadline-ms",
            "5000",
        ])
        .arg("--ready-file")
        .arg(ready)
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

/// `classify-ipc-adapter emulate --socket SOCKET --ready-file READY EXTRA…`, stderr piped.
fn emulate(socket: &std::path::Path, ready: &std::path::Path, extra: &[&std::ffi::OsStr]) -> Child {
    Command::new(BIN)
        .arg("emulate")
        .arg("--socket")
        .arg(socket)
        .arg("--ready-file")
        .arg(ready)
        .args(extra)
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

/// Waits for ready files with the binary's own `wait-ready`, as a script would.
async fn wait_ready(files: &[&std::path::Path]) {
    let status = Command::new(BIN)
        .arg("wait-ready")
        .args(files)
        .args(["--timeout-ms", "15000"])
        .kill_on_drop(true)
        .status()
        .await
        .unwrap();
    assert!(status.success(), "ready files {files:?} did not appear");
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
    let ready = dir.path().join("adapter.ready");
    let mut child = adapter_process(emu.socket_path(), &stub.url, &ready);
    wait_ready(&[&ready]).await;
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
    assert!(
        !stderr.contains('\x1b'),
        "no ANSI colour codes when stderr is not a terminal: {stderr:?}"
    );
}

#[tokio::test]
async fn adapter_started_before_the_nucleus_waits_for_its_socket() {
    let stub = stub_service().await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nucleus.sock");
    let ready = dir.path().join("adapter.ready");
    // Started first, as a laptop script or a slow nucleus start would do it.
    let mut child = adapter_process(&socket, &stub.url, &ready);
    let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
    let waiting = async {
        while let Some(line) = log.next_line().await.unwrap() {
            if line.contains("nucleus socket not ready; waiting for it") {
                return;
            }
        }
        panic!("the adapter exited instead of waiting for the socket");
    };
    tokio::time::timeout(WAIT, waiting)
        .await
        .expect("the adapter says it waits");
    let emu = start_emulator_at(&socket, Flavour::Lite).await;
    emu.wait_for_state(ADAPTER, "RUNNING").await;
    wait_ready(&[&ready]).await;
    let req = client(emu.socket_path(), REQUESTER, Flavour::Lite).await;
    let mut replies = req.subscribe("local/result", None).await.unwrap();
    req.publish(
        "local/inference",
        &bin(&json!({"path": "/x/first.png", "request_id": "first"})),
    )
    .await
    .unwrap();
    let v = next_reply(&mut replies).await.json.unwrap();
    assert_eq!(
        (v["request_id"].as_str(), v["status"].as_str()),
        (Some("first"), Some("ok"))
    );
    signal(&child, "-TERM");
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn adapter_gives_up_on_a_socket_that_never_appears() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--socket-wait-ms", "300"])
        .arg("--socket")
        .arg(dir.path().join("absent.sock"))
        .args(["--auth-token", ADAPTER])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (code, stderr) = wait_exit(&mut child).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("after waiting 300 ms"), "{stderr}");
}

/// A former variable name (`CLASSIFY_SOCKET_WAIT_MS`) is still read, with a warning naming the
/// new one, unless the new name (`CLASSIFY_ADAPTER_SOCKET_WAIT_MS`) is set too.
#[tokio::test]
async fn a_former_variable_name_still_works_with_a_deprecation_warning() {
    let dir = tempfile::tempdir().unwrap();
    let run = |vars: &[(&str, &str)]| {
        let mut command = Command::new(BIN);
        command
            .arg("run")
            .arg("--socket")
            .arg(dir.path().join("absent.sock"))
            .args(["--auth-token", ADAPTER])
            .env_remove("CLASSIFY_SOCKET_WAIT_MS")
            .env_remove("CLASSIFY_ADAPTER_SOCKET_WAIT_MS")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command.envs(vars.iter().copied());
        command.spawn().unwrap()
    };
    let (code, stderr) = wait_exit(&mut run(&[("CLASSIFY_SOCKET_WAIT_MS", "300")])).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("after waiting 300 ms"), "{stderr}");
    assert!(
        stderr.contains("WARN")
            && stderr.contains("CLASSIFY_SOCKET_WAIT_MS is deprecated")
            && stderr.contains("rename it to CLASSIFY_ADAPTER_SOCKET_WAIT_MS"),
        "{stderr}"
    );

    let (code, stderr) = wait_exit(&mut run(&[
        ("CLASSIFY_SOCKET_WAIT_MS", "300"),
        ("CLASSIFY_ADAPTER_SOCKET_WAIT_MS", "200"),
    ]))
    .await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("after waiting 200 ms"), "{stderr}");
    assert!(!stderr.contains("deprecated"), "{stderr}");
}

#[tokio::test]
async fn nucleus_loss_exits_with_status_4_and_a_clear_log() {
    let stub = stub_service().await;
    let dir = tempfile::tempdir().unwrap();
    let emu = start_emulator(dir.path(), Flavour::Classic).await;
    let ready = dir.path().join("adapter.ready");
    let mut child = adapter_process(emu.socket_path(), &stub.url, &ready);
    emu.wait_for_state(ADAPTER, "RUNNING").await;
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
        assert!(!String::from_utf8_lossy(&out.stderr).contains('\x1b'));
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
    let ready = dir.path().join("emu.ready");
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
        .arg("--ready-file")
        .arg(&ready)
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
    wait_ready(&[&ready]).await;
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
    let denied = greengrass_ipc::client::IpcClient::connect(
        greengrass_ipc::client::ClientConfig::new(&socket, "com.custom.requester"),
    )
    .await;
    assert!(
        denied.is_err(),
        "with --token, only listed tokens are accepted"
    );
    signal(&child, "-TERM");
    let (code, stderr) = wait_exit(&mut child).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains('\x1b'), "no ANSI colour codes: {stderr:?}");
    assert!(!socket.exists());
    let reason = tokio::time::timeout(Duration::from_secs(5), c.closed())
        .await
        .unwrap();
    assert!(!reason.is_empty());
}

#[tokio::test]
async fn emulate_serves_a_recipes_default_configuration_with_the_file_merged_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("emu.sock");
    let ready = dir.path().join("emu.ready");
    let recipe = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../recipes/com.example.ImageClassification.IpcAdapter/recipe.yaml");
    let adapter = "com.example.ImageClassification.IpcAdapter";
    let file = dir.path().join("configuration.json");
    std::fs::write(
        &file,
        json!({adapter: {"ReplyFormat": "label"}}).to_string(),
    )
    .unwrap();
    let mut child = emulate(
        &socket,
        &ready,
        &[
            "--access-control".as_ref(),
            recipe.as_ref(),
            "--configuration".as_ref(),
            file.as_ref(),
        ],
    );
    wait_ready(&[&ready]).await;
    let c = client(&socket, adapter, Flavour::Classic).await;
    let config = c.get_configuration(None, &[]).await.unwrap().value;
    assert_eq!(config["ReplyFormat"], "label", "the file wins: {config}");
    assert_eq!(
        config["RequestTopic"], "local/inference",
        "recipe default: {config}"
    );
    let mut updates = c
        .subscribe_to_configuration_update(None, &[])
        .await
        .unwrap();
    let tmp = dir.path().join("configuration.tmp");
    std::fs::write(&tmp, json!({adapter: {"ReplyFormat": "json"}}).to_string()).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let event = tokio::time::timeout(WAIT, updates.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(event.key_path, ["ReplyFormat"]);
    let leaf = c.get_configuration(None, &["ReplyFormat"]).await.unwrap();
    assert_eq!(leaf.value, json!({"ReplyFormat": "json"}));
    signal(&child, "-TERM");
    let (code, stderr) = wait_exit(&mut child).await;
    assert_eq!(code, 0, "{stderr}");

    // A configuration file that does not parse stops the emulator at start, saying which.
    std::fs::write(&file, "{ not json").unwrap();
    let out = Command::new(BIN)
        .args(["emulate", "--socket", socket.to_str().unwrap()])
        .arg("--configuration")
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("configuration file") && stderr.contains("configuration.json"),
        "{stderr}"
    );
}

#[tokio::test]
async fn emulate_logs_what_reaches_iot_core_and_goes_offline_while_a_file_exists() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("emu.sock");
    let ready = dir.path().join("emu.ready");
    let acl = dir.path().join("acl.json");
    std::fs::write(&acl, ACL).unwrap();
    let log = dir.path().join("iot-core.jsonl");
    let offline = dir.path().join("offline");
    std::fs::write(&offline, "").unwrap();
    let mut child = emulate(
        &socket,
        &ready,
        &[
            "--access-control".as_ref(),
            acl.as_ref(),
            "--iot-core-log".as_ref(),
            log.as_ref(),
            "--cloud-unreachable-while".as_ref(),
            offline.as_ref(),
        ],
    );
    wait_ready(&[&ready]).await;
    let c = client(&socket, REQUESTER, Flavour::Classic).await;
    let topic = "ml/dlr/image-classification";
    // Offline from the start: the classic nucleus accepts QoS 1 into its spooler.
    c.publish_to_iot_core(topic, Qos::AtLeastOnce, br#"{"n": 1}"#)
        .await
        .unwrap();
    assert!(!log.exists(), "nothing reached IoT Core while offline");
    std::fs::remove_file(&offline).unwrap();
    assert!(
        eventually(|| std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() == 1)).await,
        "the spooled message is delivered once the cloud is back"
    );
    c.publish_to_iot_core(topic, Qos::AtMostOnce, b"plain text")
        .await
        .unwrap();
    assert!(
        eventually(|| std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() == 2)).await
    );
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            json!({"component": REQUESTER, "topic": topic, "qos": "1", "spooled": true,
                   "payload": {"n": 1}}),
            json!({"component": REQUESTER, "topic": topic, "qos": "0", "spooled": false,
                   "payload": "plain text"}),
        ]
    );
    signal(&child, "-TERM");
    let (code, stderr) = wait_exit(&mut child).await;
    assert_eq!(code, 0, "{stderr}");
}
