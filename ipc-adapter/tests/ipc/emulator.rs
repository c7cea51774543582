//! The emulator's classic and lite behaviours, seen through raw frames and the crate's client.

use std::time::Duration;

use crate::support::*;
use greengrass_ipc::Flavour;
use greengrass_ipc::client::IpcClient;
use greengrass_ipc::frame::{self, Frame, FrameReader, MessageType, ReadOutcome, flags, header};
use greengrass_ipc::pubsub::{self, Payload, ReceiveMode};
use greengrass_ipc_emulator::acl::AccessControl;
use greengrass_ipc_emulator::emulator::{self, EmulatorConfig};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

struct Raw {
    r: FrameReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Raw {
    async fn connect(socket: &std::path::Path, token: &str) -> (Self, Option<Frame>) {
        let s = UnixStream::connect(socket).await.unwrap();
        let (r, w) = s.into_split();
        let mut raw = Raw {
            r: FrameReader::new(r, frame::CLASSIC_MAX_FRAME),
            w,
        };
        let connect = Frame::new(MessageType::Connect, 0, 0)
            .with_str_header(header::VERSION, "0.1.0")
            .with_payload(json!({"authToken": token}).to_string());
        raw.send(&connect).await;
        let ack = raw.next().await;
        (raw, ack)
    }

    async fn send(&mut self, f: &Frame) {
        self.send_bytes(&frame::encode(f, frame::CLASSIC_MAX_FRAME).unwrap())
            .await;
    }

    async fn send_bytes(&mut self, b: &[u8]) {
        let _ = self.w.write_all(b).await;
    }

    /// Next frame, or None when the emulator closed the connection.
    async fn next(&mut self) -> Option<Frame> {
        match tokio::time::timeout(WAIT, self.r.read())
            .await
            .expect("emulator answers in time")
        {
            Ok(ReadOutcome::Frame(f)) => Some(f),
            _ => None,
        }
    }

    async fn publish(&mut self, stream_id: i32, topic: &str) -> Option<Frame> {
        let body = pubsub::publish_request(topic, &Payload::Json(json!(1)));
        self.send(
            &Frame::json(
                MessageType::ApplicationMessage,
                0,
                stream_id,
                pubsub::PUBLISH_REQUEST,
                body.to_string(),
            )
            .with_str_header(header::OPERATION, pubsub::OP_PUBLISH),
        )
        .await;
        self.next().await
    }
}

#[tokio::test]
async fn connect_rejection_differs_by_flavour() {
    let dir = tempfile::tempdir().unwrap();
    let classic = start_emulator(dir.path(), Flavour::Classic).await;
    let (mut raw, ack) = Raw::connect(classic.socket_path(), "nobody").await;
    let ack = ack.expect("classic answers");
    assert_eq!((ack.message_type, ack.flags), (MessageType::ConnectAck, 0));
    assert!(raw.next().await.is_none(), "then closes");
    classic.shutdown().await;

    let lite = start_emulator(dir.path(), Flavour::Lite).await;
    let (_raw, ack) = Raw::connect(lite.socket_path(), "nobody").await;
    assert!(ack.is_none(), "lite closes without ConnectAck");
    let (_raw, ack) = Raw::connect(lite.socket_path(), REQUESTER).await;
    assert_eq!(ack.unwrap().flags, flags::CONNECTION_ACCEPTED);
}

#[tokio::test]
async fn response_flags_and_error_payloads_differ_by_flavour() {
    let dir = tempfile::tempdir().unwrap();
    for flavour in [Flavour::Classic, Flavour::Lite] {
        let emu = start_emulator(dir.path(), flavour).await;
        let (mut raw, _) = Raw::connect(emu.socket_path(), REQUESTER).await;
        let ok = raw.publish(1, "local/inference").await.unwrap();
        assert_eq!(
            ok.str_header(header::SERVICE_MODEL_TYPE),
            Some(pubsub::PUBLISH_RESPONSE)
        );
        assert_eq!(
            ok.str_header(header::CONTENT_TYPE),
            Some("application/json")
        );
        assert_eq!(ok.terminates_stream(), flavour == Flavour::Classic);
        let err = raw.publish(2, "not/allowed").await.unwrap();
        assert_eq!(err.message_type, MessageType::ApplicationError);
        assert!(err.terminates_stream());
        assert_eq!(
            err.str_header(header::SERVICE_MODEL_TYPE),
            Some(pubsub::UNAUTHORIZED_ERROR)
        );
        let body: Value = serde_json::from_slice(&err.payload).unwrap();
        assert_eq!(body["_errorCode"], "UnauthorizedError");
        assert!(body["_message"].as_str().unwrap().contains("not/allowed"));
        assert_eq!(body.get("message").is_some(), flavour == Flavour::Classic);
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn ping_is_answered_by_classic_and_closes_lite() {
    let dir = tempfile::tempdir().unwrap();
    for flavour in [Flavour::Classic, Flavour::Lite] {
        let emu = start_emulator(dir.path(), flavour).await;
        let (mut raw, _) = Raw::connect(emu.socket_path(), REQUESTER).await;
        raw.send(&Frame::new(MessageType::Ping, 0, 0)).await;
        let answer = raw.next().await;
        match flavour {
            Flavour::Classic => assert_eq!(answer.unwrap().message_type, MessageType::PingResponse),
            Flavour::Lite => assert!(answer.is_none(), "lite closes on Ping"),
        }
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn stream_ids_must_be_sequential_on_classic_only() {
    let dir = tempfile::tempdir().unwrap();
    let classic = start_emulator(dir.path(), Flavour::Classic).await;
    let (mut raw, _) = Raw::connect(classic.socket_path(), REQUESTER).await;
    assert!(raw.publish(1, "local/inference").await.is_some());
    let answer = raw.publish(3, "local/inference").await.unwrap();
    assert_eq!(answer.message_type, MessageType::ProtocolError);
    assert!(
        raw.next().await.is_none(),
        "classic closes after ProtocolError"
    );
    classic.shutdown().await;

    let lite = start_emulator(dir.path(), Flavour::Lite).await;
    let (mut raw, _) = Raw::connect(lite.socket_path(), REQUESTER).await;
    assert_eq!(
        raw.publish(5, "local/inference").await.unwrap().stream_id,
        5
    );
    assert_eq!(
        raw.publish(2, "local/inference").await.unwrap().stream_id,
        2
    );
}

#[tokio::test]
async fn lite_closes_on_frames_of_10000_bytes_or_more() {
    let dir = tempfile::tempdir().unwrap();
    for flavour in [Flavour::Lite, Flavour::Classic] {
        let emu = start_emulator(dir.path(), flavour).await;
        let (mut raw, _) = Raw::connect(emu.socket_path(), REQUESTER).await;
        let body = pubsub::publish_request("local/inference", &Payload::Binary(vec![7; 7_600]));
        let big = Frame::json(
            MessageType::ApplicationMessage,
            0,
            1,
            pubsub::PUBLISH_REQUEST,
            body.to_string(),
        )
        .with_str_header(header::OPERATION, pubsub::OP_PUBLISH);
        let bytes = frame::encode(&big, frame::CLASSIC_MAX_FRAME).unwrap();
        assert!(bytes.len() >= 10_000);
        raw.send_bytes(&bytes).await;
        let answer = raw.next().await;
        match flavour {
            Flavour::Lite => assert!(answer.is_none(), "lite resets the connection"),
            Flavour::Classic => assert_eq!(
                answer.unwrap().str_header(header::SERVICE_MODEL_TYPE),
                Some(pubsub::PUBLISH_RESPONSE)
            ),
        }
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn fan_out_wildcards_receive_mode_and_close() {
    let dir = tempfile::tempdir().unwrap();
    for flavour in [Flavour::Classic, Flavour::Lite] {
        let mut config = EmulatorConfig::new(dir.path().join("open.sock"), flavour);
        config.tokens = [
            ("t-a".to_owned(), "comp.a".to_owned()),
            ("t-b".to_owned(), "comp.b".to_owned()),
        ]
        .into();
        let emu = emulator::spawn(config).await.unwrap();
        let a = client(emu.socket_path(), "t-a", flavour).await;
        let b = client(emu.socket_path(), "t-b", flavour).await;
        let mut a_plus = a.subscribe("room/+", None).await.unwrap();
        let mut a_others = a
            .subscribe("room/1", Some(ReceiveMode::ReceiveMessagesFromOthers))
            .await
            .unwrap();
        let mut b_hash = b.subscribe("room/#", None).await.unwrap();
        assert_eq!(emu.subscription_count(), 3);

        a.publish("room/1", &Payload::Json(json!("from a")))
            .await
            .unwrap();
        let ev = next_event(&mut a_plus).await;
        assert_eq!(
            (ev.topic.as_deref(), ev.payload),
            (Some("room/1"), Payload::Json(json!("from a")))
        );
        next_event(&mut b_hash).await;
        let own = tokio::time::timeout(Duration::from_millis(300), a_others.next()).await;
        match flavour {
            Flavour::Classic => {
                assert!(own.is_err(), "classic honours RECEIVE_MESSAGES_FROM_OTHERS")
            }
            Flavour::Lite => assert!(own.is_ok(), "lite ignores receiveMode"),
        }
        b.publish("room/1", &Payload::Binary(b"from b".to_vec()))
            .await
            .unwrap();
        let ev = next_event(&mut a_others).await;
        assert_eq!(ev.payload, Payload::Binary(b"from b".to_vec()));

        // a_plus got b's message too (room/+); read it so that only post-close traffic remains.
        let ev = next_event(&mut a_plus).await;
        assert_eq!(ev.payload, Payload::Binary(b"from b".to_vec()));

        // Closing a subscription stops its deliveries, others continue.
        a_plus.close().await.unwrap();
        assert!(eventually(|| emu.subscription_count() == 2).await);
        b.publish("room/2", &Payload::Json(json!(2))).await.unwrap();
        next_event(&mut b_hash).await;
        let after_close = tokio::time::timeout(Duration::from_millis(200), a_plus.next()).await;
        assert!(
            matches!(after_close, Err(_) | Ok(None)),
            "no event after close: {after_close:?}"
        );

        // Dropping a connection removes its subscriptions.
        drop((a_others, a_plus, a));
        assert!(eventually(|| emu.subscription_count() == 1).await);
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn access_control_from_yaml_with_wildcards() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acl.yaml");
    std::fs::write(
        &path,
        "aws.greengrass.ipc.pubsub:\n  com.x.Cam:pubsub:1:\n    operations: ['aws.greengrass#PublishToTopic']\n    resources: ['cam/*']\n  com.x.Viewer:pubsub:1:\n    operations: ['*']\n    resources: ['cam/#']\n",
    )
    .unwrap();
    let mut config = EmulatorConfig::new(dir.path().join("acl.sock"), Flavour::Classic);
    config.access_control = AccessControl::from_file(&path).unwrap();
    let emu = emulator::spawn(config).await.unwrap();
    let cam = client(emu.socket_path(), "com.x.Cam", Flavour::Classic).await;
    let viewer = client(emu.socket_path(), "com.x.Viewer", Flavour::Classic).await;
    let mut sub = viewer.subscribe("cam/#", None).await.unwrap();
    cam.publish("cam/front/jpeg", &Payload::Binary(vec![1]))
        .await
        .unwrap();
    next_event(&mut sub).await;
    let err = cam.subscribe("cam/front", None).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    let err = cam
        .publish("other", &Payload::Binary(vec![1]))
        .await
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    // The unauthorised calls did not break the connection.
    cam.publish("cam/x", &Payload::Binary(vec![2]))
        .await
        .unwrap();
    let err = IpcClient::connect(greengrass_ipc::client::ClientConfig::new(
        emu.socket_path(),
        "com.x.Unknown",
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("rejected"), "{err}");
}

#[tokio::test]
async fn shutdown_closes_client_connections() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start_emulator(dir.path(), Flavour::Lite).await;
    let c = client(emu.socket_path(), REQUESTER, Flavour::Lite).await;
    let socket = emu.socket_path().to_owned();
    emu.shutdown().await;
    let reason = tokio::time::timeout(WAIT, c.closed())
        .await
        .expect("client notices");
    assert!(!reason.is_empty());
    assert!(!socket.exists(), "socket file removed");
}
