//! The emulator (and the adapter behind it) driven by the OFFICIAL Python IPC client
//! (`awsiotsdk==1.31.0`, `GreengrassCoreIPCClientV2`), see `tests/python/ipc_client.py`.
//!
//! The interpreter is `CLASSIFY_TEST_PYTHON` or `<workspace>/generated/venv/bin/python`; when it is
//! missing these tests fail and say to run `cargo xtask setup`.

use std::time::Duration;

use crate::support::*;
use classify_ipc_adapter::config::ReplyFormat;
use greengrass_ipc::Flavour;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const FLAVOURS: [Flavour; 2] = [Flavour::Classic, Flavour::Lite];

#[tokio::test]
async fn official_client_publishes_and_receives_binary_and_json() {
    for flavour in FLAVOURS {
        let dir = tempfile::tempdir().unwrap();
        let emu = start_emulator(dir.path(), flavour).await;
        python_scenario(
            emu.socket_path(),
            REQUESTER,
            &["roundtrip", "--topic", "local/result"],
            flavour,
        )
        .await;
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn official_client_sees_receive_mode_per_flavour() {
    for (flavour, expected) in [(Flavour::Classic, 0), (Flavour::Lite, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let emu = start_emulator(dir.path(), flavour).await;
        let out = python_scenario(
            emu.socket_path(),
            REQUESTER,
            &["own-messages", "--topic", "local/result"],
            flavour,
        )
        .await;
        assert_eq!(out["received_own"], expected, "{flavour:?}");
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn official_client_gets_unauthorized_error() {
    for flavour in FLAVOURS {
        let dir = tempfile::tempdir().unwrap();
        let emu = start_emulator(dir.path(), flavour).await;
        for op in ["publish", "subscribe"] {
            let out = python_scenario(
                emu.socket_path(),
                REQUESTER,
                &["unauthorized", "--operation", op, "--topic", "secret/topic"],
                (flavour, op),
            )
            .await;
            if flavour == Flavour::Classic {
                // Classic sends `message`, which the Python model reads.
                assert!(
                    out["message"].as_str().unwrap().contains("secret/topic"),
                    "{out}"
                );
            }
        }
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn official_client_connect_with_bad_token_fails() {
    for flavour in FLAVOURS {
        let dir = tempfile::tempdir().unwrap();
        let emu = start_emulator(dir.path(), flavour).await;
        python_scenario(emu.socket_path(), "not-a-component", &["rejected"], flavour).await;
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn official_client_closing_a_subscription_removes_it() {
    for flavour in FLAVOURS {
        let dir = tempfile::tempdir().unwrap();
        let emu = start_emulator(dir.path(), flavour).await;
        let mut child = python_interactive(
            emu.socket_path(),
            REQUESTER,
            &["close-handshake", "--topic", "local/result"],
        );
        let mut stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next_line = async || {
            tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .expect("python answers")
                .unwrap()
                .expect("a line")
        };
        assert!(next_line().await.contains("subscribed"));
        assert!(eventually(|| emu.subscription_count() == 1).await);
        stdin.write_all(b"\n").await.unwrap();
        assert!(next_line().await.contains("closed"));
        assert!(
            eventually(|| emu.subscription_count() == 0).await,
            "{flavour:?}: TerminateStream removed it"
        );
        assert_eq!(emu.connection_count(), 1, "the connection stays open");
        stdin.write_all(b"\n").await.unwrap();
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success());
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn seed_requester_flow_through_emulator_adapter_and_service() {
    for flavour in FLAVOURS {
        for format in [ReplyFormat::Json, ReplyFormat::Label] {
            let stub = stub_service().await;
            let dir = tempfile::tempdir().unwrap();
            let emu = start_emulator(dir.path(), flavour).await;
            let mut config = adapter_config(emu.socket_path(), &stub.url, flavour);
            config.reply_format = format;
            let running = start_adapter(config).await;
            let out = python_scenario(
                emu.socket_path(),
                REQUESTER,
                &[
                    "seed-request",
                    "--image-dir",
                    "/greengrass/images",
                    "--fname",
                    "pelican.jpeg",
                ],
                (flavour, format),
            )
            .await;
            assert_eq!(out["reply"]["kind"], "binary");
            let text = out["reply"]["message"].as_str().unwrap();
            match format {
                ReplyFormat::Label => assert_eq!(text, "pelican"),
                ReplyFormat::Json => {
                    let v: serde_json::Value = serde_json::from_str(text).unwrap();
                    assert_eq!(
                        (v["status"].as_str(), v["label"].as_str()),
                        (Some("ok"), Some("pelican"))
                    );
                }
            }
            assert_eq!(
                stub.log.lock().unwrap().bodies,
                vec![json!({"image_dir": "/greengrass/images", "fname": "pelican.jpeg"})]
            );
            running.stop().await.unwrap();
            emu.shutdown().await;
        }
    }
}

#[tokio::test]
async fn official_client_as_a_json_requester_gets_every_reply_on_both_nuclei() {
    for flavour in FLAVOURS {
        let stub = stub_service().await;
        let dir = tempfile::tempdir().unwrap();
        let emu = start_emulator(dir.path(), flavour).await;
        let running = start_adapter(adapter_config(emu.socket_path(), &stub.url, flavour)).await;
        let output = python_scenario(
            emu.socket_path(),
            REQUESTER,
            &["json-requests", "--count", "3", "--fname", "red.png"],
            flavour,
        )
        .await;
        let replies = output["replies"].as_array().unwrap();
        assert_eq!(replies.len(), 3, "{flavour:?}: {output}");
        for (i, reply) in replies.iter().enumerate() {
            // Classic keeps the request's kind; lite answers with the JSON text in a
            // binaryMessage, because five predictions are more JSON values than lite delivers.
            let document: serde_json::Value = match flavour {
                Flavour::Classic => {
                    assert_eq!(reply["kind"], "json", "{reply}");
                    reply["message"].clone()
                }
                Flavour::Lite => {
                    assert_eq!(reply["kind"], "binary", "{reply}");
                    serde_json::from_str(reply["message"].as_str().unwrap()).unwrap()
                }
            };
            assert_eq!(document["request_id"], format!("json-{i}"));
            assert_eq!(document["predictions"].as_array().unwrap().len(), 5);
        }
        running.stop().await.unwrap();
        emu.shutdown().await;
    }
}
