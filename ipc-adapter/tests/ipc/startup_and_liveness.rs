//! Start order, readiness and staying alive: the adapter reports RUNNING only once its
//! subscription delivers, lite's limits (50 JSON values per delivered jsonMessage, silent
//! subscription loss) are modelled by the emulator and handled by the adapter, and an oversized
//! request still gets exactly one answer.

use std::time::Duration;

use classify_ipc_adapter::adapter::{self, AdapterError};
use greengrass_ipc::Flavour;
use greengrass_ipc::pubsub::Payload;
use greengrass_ipc_emulator::acl::AccessControl;
use greengrass_ipc_emulator::emulator::EmulatorConfig;
use serde_json::{Value, json};

use crate::support::*;

/// A jsonMessage reply-shaped document with `n` predictions (lite delivers 4, not 5).
fn reply_like(n: usize) -> Value {
    let prediction = json!({"index": 1, "label": "x", "probability": 0.5, "logit": 1.0});
    json!({"request_id": "r", "status": "ok", "label": "x",
           "predictions": vec![prediction; n]})
}

#[tokio::test]
async fn running_is_reported_only_once_requests_are_received() {
    for flavour in [Flavour::Classic, Flavour::Lite] {
        let stub = stub_service().await;
        let dir = tempfile::tempdir().unwrap();
        let emu = start_emulator(dir.path(), flavour).await;
        let config = adapter_config(emu.socket_path(), &stub.url, flavour);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(adapter::run(config, async {
            let _ = stopped.await;
        }));
        // What the nucleus waits for before starting dependents.
        tokio::time::timeout(WAIT, emu.wait_for_state(ADAPTER, "RUNNING"))
            .await
            .expect("the adapter reports RUNNING");
        // A dependent's very first request, published right then, is answered.
        let req = client(emu.socket_path(), REQUESTER, flavour).await;
        let mut replies = req.subscribe("local/result", None).await.unwrap();
        req.publish(
            "local/inference",
            &bin(&json!({"path": "/x/first.png", "request_id": "first"})),
        )
        .await
        .unwrap();
        let v = next_reply(&mut replies).await.json.unwrap();
        assert_eq!(v["request_id"], "first", "{flavour:?}");
        assert_eq!(v["status"], "ok", "{flavour:?}");
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn without_leave_to_probe_itself_the_adapter_refuses_to_start() {
    // The adapter may subscribe but not publish its probe: it cannot know that it hears
    // requests, so it does not claim RUNNING.
    let stub = stub_service().await;
    let dir = tempfile::tempdir().unwrap();
    let mut emulator = EmulatorConfig::new(dir.path().join("nucleus.sock"), Flavour::Lite);
    emulator.access_control = AccessControl::from_value(&json!({
        "aws.greengrass.ipc.pubsub": {
            "com.example.Adapter:pubsub:1": {
                "operations": ["aws.greengrass#SubscribeToTopic"],
                "resources": ["local/inference"]
            }
        }
    }))
    .unwrap();
    let emu = greengrass_ipc_emulator::emulator::spawn(emulator)
        .await
        .unwrap();
    let config = adapter_config(emu.socket_path(), &stub.url, Flavour::Lite);
    let err = tokio::time::timeout(WAIT, adapter::run(config, std::future::pending()))
        .await
        .expect("fails at once")
        .unwrap_err();
    assert!(matches!(err, AdapterError::Deaf(_)), "{err}");
    assert_eq!(err.exit_code(), 3);
    assert!(err.to_string().contains("PublishToTopic"), "{err}");
    assert_eq!(emu.component_state(ADAPTER), None, "never reported RUNNING");
}

#[tokio::test]
async fn the_ready_file_is_written_after_running_is_reported() {
    let stub = stub_service().await;
    let dir = tempfile::tempdir().unwrap();
    let emu = start_emulator(dir.path(), Flavour::Lite).await;
    let ready = dir.path().join("adapter.ready");
    let mut config = adapter_config(emu.socket_path(), &stub.url, Flavour::Lite);
    config.ready_file = Some(ready.clone());
    let running = start_adapter(config).await;
    assert_eq!(std::fs::read_to_string(&ready).unwrap(), "ready\n");
    assert_eq!(emu.component_state(ADAPTER).as_deref(), Some("RUNNING"));
    running.stop().await.unwrap();
}

#[tokio::test]
async fn lite_emulator_drops_big_json_messages_and_the_subscription_with_them() {
    for flavour in [Flavour::Classic, Flavour::Lite] {
        let dir = tempfile::tempdir().unwrap();
        let emu = start_emulator(dir.path(), flavour).await;
        let listener = client(emu.socket_path(), REQUESTER, flavour).await;
        let mut sub = listener.subscribe("local/result", None).await.unwrap();
        let publisher = client(emu.socket_path(), ADAPTER, flavour).await;
        publisher
            .publish("local/result", &Payload::Json(reply_like(4)))
            .await
            .unwrap();
        assert_eq!(
            next_event(&mut sub).await.payload,
            Payload::Json(reply_like(4))
        );
        publisher
            .publish("local/result", &Payload::Json(reply_like(5)))
            .await
            .unwrap();
        publisher
            .publish("local/result", &bin(&json!({"after": true})))
            .await
            .unwrap();
        match flavour {
            Flavour::Classic => {
                assert_eq!(
                    next_event(&mut sub).await.payload,
                    Payload::Json(reply_like(5))
                );
                assert_eq!(
                    next_event(&mut sub).await.payload,
                    bin(&json!({"after": true}))
                );
            }
            Flavour::Lite => {
                // Dropped, and the subscription with it: nothing more arrives, and the client
                // is not told.
                assert_eq!(emu.subscription_count(), 0);
                assert_quiet(&mut sub, Duration::from_millis(300)).await;
                assert!(!listener.is_closed());
            }
        }
    }
}

#[tokio::test]
async fn lite_replies_with_five_predictions_reach_a_json_requester_again_and_again() {
    let stub = stub_service().await;
    let dir = tempfile::tempdir().unwrap();
    let emu = start_emulator(dir.path(), Flavour::Lite).await;
    let running = start_adapter(adapter_config(emu.socket_path(), &stub.url, Flavour::Lite)).await;
    let req = client(emu.socket_path(), REQUESTER, Flavour::Lite).await;
    let mut replies = req.subscribe("local/result", None).await.unwrap();
    for i in 0..3 {
        req.publish(
            "local/inference",
            &Payload::Json(
                json!({"path": "/x/red.png", "top_k": 5, "request_id": format!("j{i}")}),
            ),
        )
        .await
        .unwrap();
        let r = next_reply(&mut replies).await;
        assert!(r.binary, "lite replies are binaryMessages");
        let v = r.json.unwrap();
        assert_eq!(v["request_id"], format!("j{i}"));
        assert_eq!(v["predictions"].as_array().unwrap().len(), 5);
    }
    running.stop().await.unwrap();
}

async fn deaf_adapter_exits(
    break_it: impl AsyncFnOnce(&greengrass_ipc_emulator::emulator::EmulatorHandle),
) -> AdapterError {
    let stub = stub_service().await;
    let dir = tempfile::tempdir().unwrap();
    let emu = start_emulator(dir.path(), Flavour::Lite).await;
    let mut config = adapter_config(emu.socket_path(), &stub.url, Flavour::Lite);
    config.timeouts.liveness_interval_ms = 100;
    config.timeouts.liveness_timeout_ms = 2_000;
    let mut running = start_adapter(config).await;
    break_it(&emu).await;
    tokio::time::timeout(WAIT, &mut running.task)
        .await
        .expect("the deaf adapter exits")
        .unwrap()
        .unwrap_err()
}

#[tokio::test]
async fn silent_loss_of_every_subscription_makes_the_adapter_exit_4() {
    let err = deaf_adapter_exits(async |emu| {
        assert!(emu.drop_subscriptions_silently() >= 1);
    })
    .await;
    assert!(matches!(err, AdapterError::ConnectionLost(_)), "{err}");
    assert_eq!(err.exit_code(), 4);
    assert!(err.to_string().contains("liveness probe"), "{err}");
}

#[tokio::test]
async fn a_request_lite_cannot_decode_deafens_the_adapter_and_the_probe_notices() {
    let err = deaf_adapter_exits(async |emu| {
        let sender = client(emu.socket_path(), REQUESTER, Flavour::Lite).await;
        // 60 JSON values: lite drops it and, with it, the adapter's request subscription.
        let values: Vec<u32> = (0..60).collect();
        sender
            .publish(
                "local/inference",
                &Payload::Json(json!({"path": "/a", "junk": values})),
            )
            .await
            .unwrap();
    })
    .await;
    assert_eq!(err.exit_code(), 4, "{err}");
    assert!(err.to_string().contains("did not come back"), "{err}");
}

#[tokio::test]
async fn a_request_over_the_incoming_limit_gets_exactly_one_error_reply() {
    for binary in [true, false] {
        let stub = stub_service().await;
        let dir = tempfile::tempdir().unwrap();
        let emu = start_emulator(dir.path(), Flavour::Classic).await;
        let mut config = adapter_config(emu.socket_path(), &stub.url, Flavour::Classic);
        config.ipc.max_incoming_frame_bytes = 64 * 1024;
        let running = start_adapter(config).await;
        let req = client(emu.socket_path(), REQUESTER, Flavour::Classic).await;
        let mut replies = req.subscribe("local/result", None).await.unwrap();
        let big = json!({"image_base64": "A".repeat(100 * 1024), "request_id": "big"});
        let payload = if binary {
            bin(&big)
        } else {
            Payload::Json(big)
        };
        req.publish("local/inference", &payload).await.unwrap();
        let r = next_reply(&mut replies).await;
        assert_eq!(
            r.binary, binary,
            "the reply uses the request's message kind"
        );
        let v = r.json.unwrap();
        assert_eq!(
            v["request_id"],
            Value::Null,
            "the id could not be read: {v}"
        );
        assert_eq!(v["error"]["code"], "message_too_large", "{v}");
        // The subscription goes on.
        req.publish(
            "local/inference",
            &bin(&json!({"path": "/x/after.png", "request_id": "after"})),
        )
        .await
        .unwrap();
        let v = next_reply(&mut replies).await.json.unwrap();
        assert_eq!(
            (v["request_id"].as_str(), v["status"].as_str()),
            (Some("after"), Some("ok"))
        );
        assert_quiet(&mut replies, Duration::from_millis(300)).await;
        assert!(
            stub.log.lock().unwrap().bodies.len() == 1,
            "the big one never reached the service"
        );
        running.stop().await.unwrap();
    }
}
