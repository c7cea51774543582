//! The adapter against the emulator (both flavours) and a stub of the service.

use std::collections::HashSet;
use std::time::Duration;

use crate::support::*;
use classify_ipc_adapter::adapter::{self, AdapterError};
use classify_ipc_adapter::config::ReplyFormat;
use greengrass_ipc::Flavour;
use greengrass_ipc::pubsub::Payload;
use serde_json::{Value, json};

/// An emulator with a running adapter and a requester subscribed to the reply topic.
struct Harness {
    /// Holds the socket's directory.
    _dir: tempfile::TempDir,
    emulator: greengrass_ipc_emulator::emulator::EmulatorHandle,
    running: RunningAdapter,
    requester: greengrass_ipc::client::IpcClient,
    replies: greengrass_ipc::client::Subscription,
}

async fn setup(
    flavour: Flavour,
    service_url: &str,
    tweak: impl FnOnce(&mut classify_ipc_adapter::config::AdapterConfig),
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let emu = start_emulator(dir.path(), flavour).await;
    let mut config = adapter_config(emu.socket_path(), service_url, flavour);
    tweak(&mut config);
    let running = start_adapter(config).await;
    let requester = client(emu.socket_path(), REQUESTER, flavour).await;
    let replies = requester.subscribe("local/result", None).await.unwrap();
    Harness {
        _dir: dir,
        emulator: emu,
        running,
        requester,
        replies,
    }
}

fn error_code(r: &Received) -> String {
    r.json.as_ref().unwrap()["error"]["code"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn binary_seed_request_both_flavours() {
    for flavour in [Flavour::Classic, Flavour::Lite] {
        let stub = stub_service().await;
        let h = setup(flavour, &stub.url, |_| {}).await;
        let (running, req, mut replies) = (h.running, h.requester, h.replies);
        req.publish(
            "local/inference",
            &bin(&json!({"image_dir": "/images", "fname": "pelican.jpeg", "request_id": "seed-1"})),
        )
        .await
        .unwrap();
        let r = next_reply(&mut replies).await;
        assert!(r.binary, "binary request gets a binary reply");
        let v = r.json.unwrap();
        assert_eq!(v["request_id"], "seed-1");
        assert_eq!(v["status"], "ok");
        assert_eq!(v["label"], "pelican");
        assert_eq!(v["predictions"][0]["label"], "pelican");
        assert!(v.get("error").is_none());
        assert_eq!(
            stub.log.lock().unwrap().bodies[0],
            json!({"image_dir": "/images", "fname": "pelican.jpeg"})
        );
        assert_eq!(
            stub.log.lock().unwrap().request_ids,
            vec!["seed-1".to_owned()]
        );
        assert_quiet(&mut replies, Duration::from_millis(300)).await;
        running.stop().await.unwrap();
    }
}

#[tokio::test]
async fn json_request_with_options_and_generated_id() {
    // Classic answers a jsonMessage with a jsonMessage; lite always with a binaryMessage holding
    // the same JSON text (lite drops jsonMessages of more than 50 JSON values).
    for (flavour, binary_reply) in [(Flavour::Classic, false), (Flavour::Lite, true)] {
        let stub = stub_service().await;
        let h = setup(flavour, &stub.url, |_| {}).await;
        let (running, req, mut replies) = (h.running, h.requester, h.replies);
        req.publish(
            "local/inference",
            &Payload::Json(json!({"path": "/images/red.png", "top_k": 3, "threshold": 0.1})),
        )
        .await
        .unwrap();
        let r = next_reply(&mut replies).await;
        assert_eq!(r.binary, binary_reply, "{flavour:?}");
        let v = r.json.unwrap();
        assert_eq!(v["status"], "ok");
        assert_eq!(v["label"], "red");
        assert_eq!(v["predictions"].as_array().unwrap().len(), 3);
        let id = v["request_id"].as_str().unwrap();
        assert!(
            uuid::Uuid::parse_str(id).is_ok(),
            "generated id is a UUID: {id}"
        );
        {
            let log = stub.log.lock().unwrap();
            assert_eq!(
                log.bodies[0],
                json!({"path": "/images/red.png", "top_k": 3, "threshold": 0.1})
            );
            assert_eq!(log.request_ids, vec![id.to_owned()]);
        }
        running.stop().await.unwrap();
    }
}

#[tokio::test]
async fn inline_base64_request() {
    let stub = stub_service().await;
    let h = setup(Flavour::Lite, &stub.url, |_| {}).await;
    let (running, req, mut replies) = (h.running, h.requester, h.replies);
    req.publish(
        "local/inference",
        &bin(&json!({"image_base64": "iVBORw0KGgo=", "request_id": "b64"})),
    )
    .await
    .unwrap();
    let v = next_reply(&mut replies).await.json.unwrap();
    assert_eq!(
        (v["request_id"].as_str(), v["status"].as_str()),
        (Some("b64"), Some("ok"))
    );
    assert_eq!(
        stub.log.lock().unwrap().bodies[0],
        json!({"image_base64": "iVBORw0KGgo="})
    );
    running.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_requests_get_error_replies() {
    let stub = stub_service().await;
    let h = setup(Flavour::Classic, &stub.url, |_| {}).await;
    let (running, req, mut replies) = (h.running, h.requester, h.replies);
    let cases: Vec<(Payload, Option<&str>, &str)> = vec![
        (
            Payload::Binary(b"not json at all".to_vec()),
            None,
            "malformed_request",
        ),
        (
            Payload::Binary(vec![0xff, 0xfe, 0x00]),
            None,
            "malformed_request",
        ),
        (Payload::Json(json!([1, 2, 3])), None, "malformed_request"),
        (
            Payload::Json(json!({"request_id": "m1"})),
            Some("m1"),
            "malformed_request",
        ),
        (
            Payload::Json(json!({"request_id": "m2", "image_dir": "/x"})),
            Some("m2"),
            "malformed_request",
        ),
        (
            Payload::Json(json!({"request_id": "m3", "path": "/x", "image_base64": "aa"})),
            Some("m3"),
            "malformed_request",
        ),
        (
            Payload::Json(json!({"request_id": "m4", "path": "/x", "top_k": "five"})),
            Some("m4"),
            "malformed_request",
        ),
        (
            Payload::Json(json!({"request_id": "m5", "path": "/x", "threshold": 7})),
            Some("m5"),
            "malformed_request",
        ),
        (
            Payload::Json(json!({"request_id": "m6", "path": "/x", "reply_topic": "local/#"})),
            Some("m6"),
            "invalid_reply_topic",
        ),
        (
            Payload::Json(
                json!({"request_id": "m7", "path": "/x", "reply_topic": "local/inference"}),
            ),
            Some("m7"),
            "invalid_reply_topic",
        ),
        (
            Payload::Json(json!({"request_id": 42, "path": "/x"})),
            None,
            "malformed_request",
        ),
    ];
    for (payload, id, code) in cases {
        req.publish("local/inference", &payload).await.unwrap();
        let r = next_reply(&mut replies).await;
        let v = r.json.clone().unwrap();
        assert_eq!(v["status"], "error", "{payload:?}");
        assert_eq!(error_code(&r), code, "{payload:?}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
        match id {
            Some(id) => assert_eq!(v["request_id"], id),
            None => assert!(uuid::Uuid::parse_str(v["request_id"].as_str().unwrap()).is_ok()),
        }
    }
    assert!(
        stub.log.lock().unwrap().bodies.is_empty(),
        "nothing malformed reaches the service"
    );
    assert_quiet(&mut replies, Duration::from_millis(300)).await;
    running.stop().await.unwrap();
}

#[tokio::test]
async fn service_errors_map_to_stable_codes() {
    let stub = stub_service().await;
    let h = setup(Flavour::Lite, &stub.url, |c| {
        c.timeouts.reply_deadline_ms = 700
    })
    .await;
    let (running, req, mut replies) = (h.running, h.requester, h.replies);
    // The service's problem `type` decides (garbled: 400 invalid-body is the request's fault,
    // wrongroute: a 404 route is a wrong --service-url, not a missing file); an unknown type
    // (teapot: 403 with about:blank) falls back to the status.
    for (fname, code) in [
        ("missing.jpg", "not_found"),
        ("busy.jpg", "service_unavailable"),
        ("broken.jpg", "service_error"),
        ("bad.jpg", "invalid_image"),
        ("garbled.jpg", "malformed_request"),
        ("wrongroute.jpg", "service_error"),
        ("teapot.jpg", "forbidden_path"),
        ("slow.jpg", "timeout"),
    ] {
        req.publish(
            "local/inference",
            &bin(&json!({"image_dir": "/images", "fname": fname, "request_id": fname})),
        )
        .await
        .unwrap();
        let r = next_reply(&mut replies).await;
        assert_eq!(r.json.as_ref().unwrap()["request_id"], fname);
        assert_eq!(error_code(&r), code, "{fname}");
    }
    // The 404's problem detail is forwarded.
    running.stop().await.unwrap();
}

#[tokio::test]
async fn missing_file_detail_is_forwarded() {
    let stub = stub_service().await;
    let h = setup(Flavour::Classic, &stub.url, |_| {}).await;
    let (running, req, mut replies) = (h.running, h.requester, h.replies);
    req.publish(
        "local/inference",
        &bin(&json!({"path": "/images/missing-cat.jpg"})),
    )
    .await
    .unwrap();
    let v = next_reply(&mut replies).await.json.unwrap();
    assert_eq!(v["error"]["code"], "not_found");
    assert_eq!(v["error"]["message"], "no such file: missing-cat.jpg");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn service_down_gives_error_replies_and_adapter_keeps_running() {
    let url = dead_url().await;
    // Unreachable is retried until the deadline is near (the service may be starting), then
    // answered; a short deadline keeps the test quick.
    let h = setup(Flavour::Lite, &url, |c| c.timeouts.reply_deadline_ms = 600).await;
    let (running, req, mut replies) = (h.running, h.requester, h.replies);
    for i in 0..3 {
        req.publish(
            "local/inference",
            &bin(&json!({"path": "/a.jpg", "request_id": format!("down-{i}")})),
        )
        .await
        .unwrap();
        let r = next_reply(&mut replies).await;
        assert_eq!(r.json.as_ref().unwrap()["request_id"], format!("down-{i}"));
        assert_eq!(error_code(&r), "service_unreachable");
    }
    assert!(!running.task.is_finished());
    running.stop().await.unwrap();
}

#[tokio::test]
async fn label_mode_publishes_only_the_label() {
    let stub = stub_service().await;
    let h = setup(Flavour::Lite, &stub.url, |c| {
        c.reply_format = ReplyFormat::Label
    })
    .await;
    let (running, req, mut replies) = (h.running, h.requester, h.replies);
    req.publish(
        "local/inference",
        &bin(&json!({"image_dir": "/images", "fname": "pelican.jpeg"})),
    )
    .await
    .unwrap();
    let r = next_reply(&mut replies).await;
    assert!(r.binary);
    assert_eq!(r.text, "pelican");
    req.publish(
        "local/inference",
        &Payload::Json(json!({"path": "/images/missing.jpg"})),
    )
    .await
    .unwrap();
    let r = next_reply(&mut replies).await;
    assert!(
        r.binary,
        "label mode always answers with binaryMessage text"
    );
    assert!(r.text.starts_with("ERROR not_found: "), "{}", r.text);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn reply_topic_from_request_and_unauthorised_fallback() {
    let stub = stub_service().await;
    let h = setup(Flavour::Classic, &stub.url, |_| {}).await;
    let (running, req, mut replies) = (h.running, h.requester, h.replies);
    let mut custom = req.subscribe("custom/+", None).await.unwrap();
    req.publish(
        "local/inference",
        &bin(&json!({"path": "/a/green.png", "reply_topic": "custom/me", "request_id": "c1"})),
    )
    .await
    .unwrap();
    let v = next_reply(&mut custom).await.json.unwrap();
    assert_eq!(
        (v["request_id"].as_str(), v["label"].as_str()),
        (Some("c1"), Some("green"))
    );
    // The adapter may not publish on forbidden/x: the requester gets reply_failed on the default topic.
    req.publish(
        "local/inference",
        &bin(&json!({"path": "/a/green.png", "reply_topic": "forbidden/x", "request_id": "c2"})),
    )
    .await
    .unwrap();
    let r = next_reply(&mut replies).await;
    assert_eq!(r.json.as_ref().unwrap()["request_id"], "c2");
    assert_eq!(error_code(&r), "reply_failed");
    assert_quiet(&mut custom, Duration::from_millis(200)).await;
    assert_quiet(&mut replies, Duration::from_millis(200)).await;
    running.stop().await.unwrap();
}

#[tokio::test]
async fn reply_too_large_for_lite_becomes_an_error_reply() {
    let stub = stub_service().await;
    let h = setup(Flavour::Lite, &stub.url, |_| {}).await;
    let (running, req, mut replies) = (h.running, h.requester, h.replies);
    req.publish(
        "local/inference",
        &bin(&json!({"path": "/a/many.png", "request_id": "big"})),
    )
    .await
    .unwrap();
    let r = next_reply(&mut replies).await;
    assert_eq!(r.json.as_ref().unwrap()["request_id"], "big");
    assert_eq!(error_code(&r), "reply_too_large");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn unauthorised_request_topic_fails_start_up() {
    let stub = stub_service().await;
    let dir = tempfile::tempdir().unwrap();
    let emu = start_emulator(dir.path(), Flavour::Lite).await;
    let mut config = adapter_config(emu.socket_path(), &stub.url, Flavour::Lite);
    config.topics.request_topic = "secret/requests".into();
    let err = tokio::time::timeout(WAIT, adapter::run(config, std::future::pending()))
        .await
        .expect("fails fast")
        .unwrap_err();
    assert!(
        matches!(&err, AdapterError::Startup(e) if e.is_unauthorized()),
        "{err}"
    );
    assert_eq!(err.exit_code(), 3);
}

#[tokio::test]
async fn bad_token_fails_start_up_with_a_clear_error() {
    for flavour in [Flavour::Classic, Flavour::Lite] {
        let dir = tempfile::tempdir().unwrap();
        let emu = start_emulator(dir.path(), flavour).await;
        let mut config = adapter_config(emu.socket_path(), "http://127.0.0.1:9", flavour);
        config.ipc.auth_token = Some("wrong-token".into());
        let err = adapter::run(config, std::future::pending())
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("rejected") && text.contains("SVCUID"),
            "{flavour:?}: {text}"
        );
    }
}

#[tokio::test]
async fn nucleus_restart_makes_the_adapter_exit_and_a_restarted_adapter_works() {
    let stub = stub_service().await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nucleus.sock");
    let emu = start_emulator_at(&socket, Flavour::Classic).await;
    let mut running = start_adapter(adapter_config(&socket, &stub.url, Flavour::Classic)).await;
    emu.shutdown().await;
    // Documented policy: the adapter returns ConnectionLost (binary: exit status 4) at once.
    let result = tokio::time::timeout(WAIT, &mut running.task)
        .await
        .expect("adapter exits")
        .unwrap();
    let err = result.unwrap_err();
    assert!(matches!(err, AdapterError::ConnectionLost(_)), "{err}");
    assert_eq!(err.exit_code(), 4);
    assert!(
        err.to_string()
            .contains("Greengrass restarts the component")
    );

    // The nucleus comes back on the same path; the restarted adapter serves again.
    let emu = start_emulator_at(&socket, Flavour::Classic).await;
    let running = start_adapter(adapter_config(&socket, &stub.url, Flavour::Classic)).await;
    let req = client(&socket, REQUESTER, Flavour::Classic).await;
    let mut replies = req.subscribe("local/result", None).await.unwrap();
    req.publish(
        "local/inference",
        &bin(&json!({"path": "/x/back.png", "request_id": "again"})),
    )
    .await
    .unwrap();
    let v = next_reply(&mut replies).await.json.unwrap();
    assert_eq!(
        (v["request_id"].as_str(), v["label"].as_str()),
        (Some("again"), Some("back"))
    );
    running.stop().await.unwrap();
    emu.shutdown().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests() {
    let stub = stub_service().await;
    let h = setup(Flavour::Lite, &stub.url, |_| {}).await;
    let (running, req, mut replies) = (h.running, h.requester, h.replies);
    let emu = &h.emulator;
    for i in 0..3 {
        req.publish(
            "local/inference",
            &bin(&json!({"path": "/x/slow.png", "request_id": format!("s{i}")})),
        )
        .await
        .unwrap();
    }
    // Let the adapter receive them, then ask it to stop while the service is still working.
    assert!(eventually(|| stub.log.lock().unwrap().bodies.len() == 3).await);
    running.stop().await.expect("clean stop");
    let mut ids = HashSet::new();
    for _ in 0..3 {
        let v = next_reply(&mut replies).await.json.unwrap();
        assert_eq!(v["status"], "ok");
        ids.insert(v["request_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 3);
    // After the stop the adapter's subscription is gone: new requests are not taken.
    assert!(
        eventually(|| emu.subscription_count() == 1).await,
        "only the requester's subscription remains"
    );
}

#[tokio::test]
async fn two_hundred_concurrent_requests_each_answered_exactly_once() {
    for flavour in [Flavour::Classic, Flavour::Lite] {
        let stub = stub_service().await;
        let h = setup(flavour, &stub.url, |c| c.max_in_flight = 8).await;
        let (running, req, mut replies) = (h.running, h.requester, h.replies);
        let mut publishers = Vec::new();
        for i in 0..200 {
            let req = req.clone();
            publishers.push(tokio::spawn(async move {
                let payload = if i % 2 == 0 {
                    bin(&json!({"path": format!("/x/img{i}.png"), "request_id": format!("r{i}")}))
                } else {
                    Payload::Json(json!({"image_dir": "/x", "fname": format!("img{i}.png"), "request_id": format!("r{i}")}))
                };
                req.publish("local/inference", &payload).await
            }));
        }
        for p in publishers {
            p.await.unwrap().unwrap();
        }
        let mut seen = Vec::new();
        for _ in 0..200 {
            let v: Value = next_reply(&mut replies).await.json.unwrap();
            assert_eq!(v["status"], "ok", "{v}");
            let id = v["request_id"].as_str().unwrap().to_owned();
            let n: usize = id[1..].parse().unwrap();
            assert_eq!(v["label"], format!("img{n}"));
            seen.push(id);
        }
        assert_quiet(&mut replies, Duration::from_millis(500)).await;
        let unique: HashSet<_> = seen.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            200,
            "{flavour:?}: every request answered exactly once"
        );
        assert_eq!(stub.log.lock().unwrap().bodies.len(), 200);
        running.stop().await.unwrap();
    }
}

/// The next `n` replies' outcomes: "ok" or the error code.
async fn reply_codes(replies: &mut greengrass_ipc::client::Subscription, n: usize) -> Vec<String> {
    let mut codes = Vec::new();
    for _ in 0..n {
        let v = next_reply(replies).await.json.unwrap();
        codes.push(if v["status"] == "ok" {
            "ok".to_owned()
        } else {
            v["error"]["code"].as_str().unwrap().to_owned()
        });
    }
    codes
}

#[tokio::test]
async fn queue_overflow_is_answered_with_overloaded() {
    let stub = stub_service().await;
    let h = setup(Flavour::Lite, &stub.url, |c| {
        c.max_in_flight = 1;
        c.max_queued = 1;
    })
    .await;
    let (running, req, mut replies) = (h.running, h.requester, h.replies);
    for i in 0..4 {
        req.publish(
            "local/inference",
            &bin(&json!({"path": "/x/slow.png", "request_id": format!("q{i}")})),
        )
        .await
        .unwrap();
    }
    let codes = reply_codes(&mut replies, 4).await;
    let c = counts(codes.iter().map(String::as_str));
    assert_eq!(c.get("ok"), Some(&2), "{codes:?}");
    assert_eq!(c.get("overloaded"), Some(&2), "{codes:?}");
    running.stop().await.unwrap();
}

/// The payload bound: room for many requests, but only 4 KiB of messages; each message here is
/// about 1.45 KB, counted as 2 KiB (whole KiB), so one in flight and one waiting fit and the
/// rest are answered `overloaded`.
#[tokio::test]
async fn queued_bytes_overflow_is_answered_with_overloaded() {
    let stub = stub_service().await;
    let h = setup(Flavour::Lite, &stub.url, |c| {
        c.max_in_flight = 1;
        c.max_queued = 1024;
        c.max_queued_bytes = Some(4 * 1024);
    })
    .await;
    let (running, req, mut replies) = (h.running, h.requester, h.replies);
    let padding = "p".repeat(1400);
    for i in 0..4 {
        req.publish(
            "local/inference",
            &bin(&json!({"path": format!("/x/{padding}/slow.png"), "request_id": format!("b{i}")})),
        )
        .await
        .unwrap();
    }
    let codes = reply_codes(&mut replies, 4).await;
    let c = counts(codes.iter().map(String::as_str));
    assert_eq!(c.get("ok"), Some(&2), "{codes:?}");
    assert_eq!(c.get("overloaded"), Some(&2), "{codes:?}");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn the_deadline_covers_waiting_for_a_free_slot() {
    let stub = stub_service().await;
    // One call at a time; each slow call takes 1.5 s. The second request waits 1.5 s for the
    // slot and would need 1.5 s more: past its 2.5 s deadline, so it is answered `timeout`.
    let h = setup(Flavour::Lite, &stub.url, |c| {
        c.max_in_flight = 1;
        c.timeouts.reply_deadline_ms = 2500;
    })
    .await;
    let (running, req, mut replies) = (h.running, h.requester, h.replies);
    for i in 0..2 {
        req.publish(
            "local/inference",
            &bin(&json!({"path": "/x/slow.png", "request_id": format!("w{i}")})),
        )
        .await
        .unwrap();
    }
    let mut outcome = std::collections::BTreeMap::new();
    for _ in 0..2 {
        let v = next_reply(&mut replies).await.json.unwrap();
        let code = if v["status"] == "ok" {
            "ok".to_owned()
        } else {
            v["error"]["code"].as_str().unwrap().to_owned()
        };
        outcome.insert(v["request_id"].as_str().unwrap().to_owned(), code);
    }
    assert_eq!(outcome["w0"], "ok", "{outcome:?}");
    assert_eq!(outcome["w1"], "timeout", "{outcome:?}");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_service_still_starting_is_retried_within_the_deadline() {
    let stub = stub_service().await;
    let h = setup(Flavour::Lite, &stub.url, |_| {}).await;
    let (running, req, mut replies) = (h.running, h.requester, h.replies);
    // The stub answers 503 not-ready twice for "starting" images, then classifies.
    req.publish(
        "local/inference",
        &bin(&json!({"path": "/x/starting.png", "request_id": "early"})),
    )
    .await
    .unwrap();
    let v = next_reply(&mut replies).await.json.unwrap();
    assert_eq!(
        (v["request_id"].as_str(), v["status"].as_str()),
        (Some("early"), Some("ok")),
        "{v}"
    );
    assert_eq!(
        stub.log.lock().unwrap().bodies.len(),
        3,
        "two refusals, one answer"
    );
    assert_quiet(&mut replies, Duration::from_millis(300)).await;
    running.stop().await.unwrap();
}

#[tokio::test]
async fn probabilities_pass_through_digit_for_digit() {
    let stub = stub_service().await;
    let h = setup(Flavour::Classic, &stub.url, |_| {}).await;
    let (running, req, mut replies) = (h.running, h.requester, h.replies);
    // "digits" makes the stub answer with many probabilities of full f64 precision; the reply
    // must carry each exactly as the service printed it.
    req.publish(
        "local/inference",
        &bin(&json!({"path": "/x/digits.png", "request_id": "d"})),
    )
    .await
    .unwrap();
    let text = next_reply(&mut replies).await.text;
    let altered: Vec<String> = digits_numbers()
        .into_iter()
        .filter(|n| !text.contains(n.as_str()))
        .collect();
    assert!(altered.is_empty(), "altered on the way: {altered:?}");
    running.stop().await.unwrap();
}
