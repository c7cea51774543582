//! Frame limits and the client's wire behaviour, checked against a scripted raw server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use greengrass_ipc::client::{ClientConfig, IpcClient, IpcError};
use greengrass_ipc::configuration::{self, ConfigurationUpdateEvent};
use greengrass_ipc::frame::{
    self, Frame, FrameError, FrameReader, LITE_MAX_FRAME, MessageType, ReadOutcome, flags, header,
};
use greengrass_ipc::iot_core::{self, Qos};
use greengrass_ipc::operation::Operation;
use greengrass_ipc::pubsub::{self, Payload};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use tokio::net::unix::OwnedWriteHalf;

/// Bound on waiting for an event that must come (a failure, not a verdict on time).
const WAIT: Duration = Duration::from_secs(15);

fn publish_frame(stream_id: i32, payload_len: usize) -> Frame {
    let body = pubsub::publish_request("t", &Payload::Binary(vec![b'a'; payload_len]));
    Frame::json(
        MessageType::ApplicationMessage,
        0,
        stream_id,
        pubsub::PUBLISH_REQUEST,
        body.to_string(),
    )
    .with_str_header(header::OPERATION, pubsub::OP_PUBLISH)
}

#[test]
fn encode_decode_roundtrip_and_outgoing_limit() {
    let f = publish_frame(7, 100);
    let bytes = frame::encode(&f, LITE_MAX_FRAME).unwrap();
    assert_eq!(frame::decode(&bytes).unwrap(), f);
    // 7500 raw bytes become ~10000 base64 bytes: refused under the lite limit, fine for classic.
    let big = publish_frame(8, 7500);
    match frame::encode(&big, LITE_MAX_FRAME) {
        Err(FrameError::TooLarge { len, max }) => assert!(len >= 10_000 && max == 9_999),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(frame::encode(&big, frame::CLASSIC_MAX_FRAME).is_ok());
}

#[tokio::test]
async fn oversized_incoming_frame_is_refused_before_its_body_is_read() {
    let big = frame::encode(&publish_frame(1, 3_000_000), frame::CLASSIC_MAX_FRAME).unwrap();
    // Only the prelude is available: the reader must decide without waiting for (or allocating) the body.
    let mut reader = FrameReader::new(&big[..12], 1024 * 1024);
    match reader.read().await {
        Err(FrameError::TooLarge { len, max }) => assert_eq!((len, max), (big.len(), 1024 * 1024)),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // With the whole frame plus a small one behind it, skipping resynchronises.
    let small = frame::encode(&publish_frame(2, 10), LITE_MAX_FRAME).unwrap();
    let stream = [big.clone(), small].concat();
    let mut reader = FrameReader::new(&stream[..], 1024 * 1024);
    let Err(FrameError::TooLarge { len, .. }) = reader.read().await else {
        panic!()
    };
    reader.skip(len).await.unwrap();
    match reader.read().await.unwrap() {
        ReadOutcome::Frame(f) => assert_eq!(f.stream_id, 2),
        ReadOutcome::Eof => panic!("expected the small frame"),
    }
    assert!(matches!(reader.read().await.unwrap(), ReadOutcome::Eof));
}

#[tokio::test]
async fn corrupt_and_truncated_frames_are_errors() {
    let mut bytes = frame::encode(&publish_frame(1, 10), LITE_MAX_FRAME).unwrap();
    let mut reader = FrameReader::new(&bytes[..bytes.len() - 3], 1 << 20);
    assert!(matches!(reader.read().await, Err(FrameError::Truncated)));
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff; // message CRC
    let mut reader = FrameReader::new(&bytes[..], 1 << 20);
    assert!(matches!(reader.read().await, Err(FrameError::Malformed(_))));
    let mut huge = frame::encode(&publish_frame(1, 3_000_000), frame::CLASSIC_MAX_FRAME).unwrap();
    huge[1] ^= 0x01; // corrupt the length: the prelude CRC catches it instead of a "big frame"
    let mut reader = FrameReader::new(&huge[..12], 1 << 20);
    assert!(matches!(reader.read().await, Err(FrameError::Malformed(_))));
}

/// What the scripted server does after accepting Connect.
#[derive(Clone, Copy, PartialEq)]
enum Script {
    /// Answer every request like lite: flags 0, lite error payloads for topic "deny".
    Lite,
    /// Close without ConnectAck (lite's rejection).
    SilentReject,
    /// ConnectAck without the accepted flag (classic's rejection).
    ClassicReject,
}

struct RawServer {
    socket: std::path::PathBuf,
    stream_ids: Arc<Mutex<Vec<i32>>>,
    _dir: tempfile::TempDir,
}

async fn send(w: &mut OwnedWriteHalf, f: &Frame) {
    w.write_all(&frame::encode(f, frame::CLASSIC_MAX_FRAME).unwrap())
        .await
        .unwrap();
}

/// A response (lite's: flags 0) on `stream_id`.
async fn respond(w: &mut OwnedWriteHalf, stream_id: i32, model: &str, payload: impl Into<Vec<u8>>) {
    let frame = Frame::json(
        MessageType::ApplicationMessage,
        0,
        stream_id,
        model,
        payload.into(),
    );
    send(w, &frame).await;
}

async fn raw_server(script: Script) -> RawServer {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("raw.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let stream_ids = Arc::new(Mutex::new(Vec::new()));
    let ids = stream_ids.clone();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (r, mut w) = stream.into_split();
        let mut reader = FrameReader::new(r, frame::CLASSIC_MAX_FRAME);
        let ReadOutcome::Frame(connect) = reader.read().await.unwrap() else {
            return;
        };
        assert_eq!(connect.message_type, MessageType::Connect);
        assert_eq!(connect.str_header(header::VERSION), Some("0.1.0"));
        match script {
            Script::SilentReject => return,
            Script::ClassicReject => {
                send(&mut w, &Frame::new(MessageType::ConnectAck, 0, 0)).await;
                return;
            }
            Script::Lite => {}
        }
        send(
            &mut w,
            &Frame::new(MessageType::ConnectAck, flags::CONNECTION_ACCEPTED, 0),
        )
        .await;
        while let Ok(ReadOutcome::Frame(f)) = reader.read().await {
            assert_ne!(f.message_type, MessageType::Ping, "clients must never ping");
            if f.str_header(header::OPERATION).is_none() {
                continue; // TerminateStream of a subscription
            }
            ids.lock().unwrap().push(f.stream_id);
            let body: serde_json::Value = serde_json::from_slice(&f.payload).unwrap();
            if configuration_and_iot_core(&mut w, &f, &body).await {
                continue;
            }
            let topic = body["topic"].as_str().unwrap().to_owned();
            match topic.as_str() {
                "deny" => {
                    let p =
                        json!({"_message": "not allowed here", "_errorCode": "UnauthorizedError"});
                    send(
                        &mut w,
                        &Frame::json(
                            MessageType::ApplicationError,
                            flags::TERMINATE_STREAM,
                            f.stream_id,
                            pubsub::UNAUTHORIZED_ERROR,
                            p.to_string(),
                        ),
                    )
                    .await;
                }
                "plain" => {
                    let e = Frame::new(
                        MessageType::ApplicationError,
                        flags::TERMINATE_STREAM,
                        f.stream_id,
                    )
                    .with_str_header(header::CONTENT_TYPE, "text/plain")
                    .with_payload("InternalServerError");
                    send(&mut w, &e).await;
                }
                "events" => {
                    // Response without TerminateStream (lite), then an oversized event, then a small one.
                    send(
                        &mut w,
                        &Frame::json(
                            MessageType::ApplicationMessage,
                            0,
                            f.stream_id,
                            pubsub::SUBSCRIBE_RESPONSE,
                            "{}",
                        ),
                    )
                    .await;
                    for n in [20_000usize, 10] {
                        let ev =
                            pubsub::subscription_message("events", &Payload::Binary(vec![b'e'; n]));
                        send(
                            &mut w,
                            &Frame::json(
                                MessageType::ApplicationMessage,
                                0,
                                f.stream_id,
                                pubsub::SUBSCRIPTION_MESSAGE,
                                ev.to_string(),
                            ),
                        )
                        .await;
                    }
                }
                "echo" => {
                    let p = json!({"echoed": body["text"], "extra": [1, 2]});
                    respond(&mut w, f.stream_id, "test#EchoResponse", p.to_string()).await;
                }
                "garbage" => respond(&mut w, f.stream_id, "test#EchoResponse", "not JSON").await,
                _ => respond(&mut w, f.stream_id, pubsub::PUBLISH_RESPONSE, "{}").await,
            }
        }
    });
    RawServer {
        socket,
        stream_ids,
        _dir: dir,
    }
}

/// The configuration and IoT Core operations, answered as nucleus lite may: a configuration
/// event *before* the subscription's response, values echoing what was asked. Returns whether
/// the frame was one of them.
async fn configuration_and_iot_core(
    w: &mut OwnedWriteHalf,
    f: &Frame,
    body: &serde_json::Value,
) -> bool {
    let event = |key: &str| {
        Frame::json(
            MessageType::ApplicationMessage,
            0,
            f.stream_id,
            configuration::CONFIGURATION_UPDATE_EVENTS,
            ConfigurationUpdateEvent {
                component_name: "com.example.Me".into(),
                key_path: vec![key.into()],
            }
            .to_body()
            .to_string(),
        )
    };
    match f.str_header(header::OPERATION) {
        Some(configuration::OP_SUBSCRIBE_TO_CONFIGURATION_UPDATE) => {
            assert_eq!(
                body,
                &json!({}),
                "subscribe at the root, as the caller's own"
            );
            send(w, &event("early")).await;
            respond(
                w,
                f.stream_id,
                configuration::SUBSCRIBE_TO_CONFIGURATION_UPDATE_RESPONSE,
                "{}",
            )
            .await;
            send(w, &event("later")).await;
        }
        Some(configuration::OP_GET_CONFIGURATION) => {
            let value = json!({"asked": body});
            let answer = json!({"componentName": "com.example.Me", "value": value});
            respond(
                w,
                f.stream_id,
                configuration::GET_CONFIGURATION_RESPONSE,
                answer.to_string(),
            )
            .await;
        }
        Some(iot_core::OP_PUBLISH_TO_IOT_CORE) => {
            // The classic nucleus' rules: qos a string, payload present.
            let message = iot_core::parse_publish_request(body, greengrass_ipc::Flavour::Classic)
                .expect("a request the classic nucleus accepts");
            assert_eq!(message.payload, b"{\"Label\":\"x\"}");
            respond(w, f.stream_id, iot_core::PUBLISH_TO_IOT_CORE_RESPONSE, "").await;
        }
        _ => return false,
    }
    true
}

fn config(socket: &std::path::Path) -> ClientConfig {
    let mut c = ClientConfig::new(socket, "token");
    c.operation_timeout = Duration::from_secs(5);
    c.max_incoming_frame = 10_000;
    c
}

#[tokio::test]
async fn concurrent_operations_use_strictly_sequential_stream_ids() {
    let server = raw_server(Script::Lite).await;
    let client = IpcClient::connect(config(&server.socket)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            // Lite-style responses (no TerminateStream) must complete every request.
            c.publish("t", &Payload::Json(json!({"n": i}))).await
        }));
    }
    for t in tasks {
        tokio::time::timeout(WAIT, t)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
    let ids = server.stream_ids.lock().unwrap().clone();
    assert_eq!(ids, (1..=100).collect::<Vec<i32>>());
}

#[tokio::test]
async fn refused_oversized_request_does_not_consume_a_stream_id() {
    let server = raw_server(Script::Lite).await;
    let client = IpcClient::connect(config(&server.socket)).await.unwrap();
    client
        .publish("t", &Payload::Binary(vec![1; 10]))
        .await
        .unwrap();
    let err = client
        .publish("t", &Payload::Binary(vec![1; 9_000]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, IpcError::FrameTooLarge { max: 9_999, .. }),
        "{err}"
    );
    client
        .publish("t", &Payload::Binary(vec![1; 10]))
        .await
        .unwrap();
    assert_eq!(*server.stream_ids.lock().unwrap(), vec![1, 2]);
}

#[tokio::test]
async fn error_payloads_with_underscore_message_and_plain_text() {
    let server = raw_server(Script::Lite).await;
    let client = IpcClient::connect(config(&server.socket)).await.unwrap();
    match client
        .publish("deny", &Payload::Binary(vec![]))
        .await
        .unwrap_err()
    {
        e @ IpcError::Service { .. } => {
            assert!(e.is_unauthorized());
            let IpcError::Service {
                message,
                error_code,
                ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!(message, "not allowed here");
            assert_eq!(error_code.as_deref(), Some("UnauthorizedError"));
        }
        other => panic!("{other}"),
    }
    match client
        .publish("plain", &Payload::Binary(vec![]))
        .await
        .unwrap_err()
    {
        IpcError::Service { message, .. } => assert_eq!(message, "InternalServerError"),
        other => panic!("{other}"),
    }
    // The connection is still usable after errors.
    client
        .publish("ok", &Payload::Binary(vec![]))
        .await
        .unwrap();
}

#[tokio::test]
async fn oversized_incoming_event_is_skipped_and_the_connection_survives() {
    let server = raw_server(Script::Lite).await;
    let client = IpcClient::connect(config(&server.socket)).await.unwrap();
    let mut sub = client.subscribe("events", None).await.unwrap();
    // The oversized event is reported on its own stream (its kind read from the payload's
    // start), without ending the subscription.
    let skipped = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            skipped,
            Err(IpcError::MessageTooLarge {
                max: 10_000,
                binary: true,
                ..
            })
        ),
        "{skipped:?}"
    );
    let ev = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ev.payload, Payload::Binary(vec![b'e'; 10]));
    assert_eq!(ev.topic.as_deref(), Some("events"));
    // The frame's payload length comes with the event (the JSON text the server sent).
    let sent = pubsub::subscription_message("events", &Payload::Binary(vec![b'e'; 10]));
    assert_eq!(ev.frame_len, sent.to_string().len());
    client
        .publish("ok", &Payload::Binary(vec![]))
        .await
        .unwrap();
    sub.close().await.unwrap();
}

#[tokio::test]
async fn lite_silent_close_is_reported_as_a_rejected_token() {
    let server = raw_server(Script::SilentReject).await;
    let err = IpcClient::connect(config(&server.socket))
        .await
        .unwrap_err();
    assert!(matches!(err, IpcError::ConnectRejected(_)), "{err}");
    assert!(err.to_string().contains("SVCUID"), "{err}");
}

#[tokio::test]
async fn classic_connect_ack_without_accept_is_a_rejection() {
    let server = raw_server(Script::ClassicReject).await;
    let err = IpcClient::connect(config(&server.socket))
        .await
        .unwrap_err();
    assert!(matches!(err, IpcError::ConnectRejected(_)), "{err}");
    assert!(err.to_string().contains("SVCUID"), "{err}");
}

#[tokio::test]
async fn missing_socket_is_a_connect_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir.path().join("none.sock"));
    // Try once instead of waiting for a nucleus that may still be starting.
    config.socket_wait = Duration::ZERO;
    let err = IpcClient::connect(config).await.unwrap_err();
    assert!(matches!(err, IpcError::Connect { .. }), "{err}");
}

/// An operation defined outside the crate, as a new one is: a request type and its response.
struct Echo<'a> {
    topic: &'a str,
    text: &'a str,
}

#[derive(Debug, serde::Deserialize, PartialEq)]
struct Echoed {
    echoed: String,
}

impl Operation for Echo<'_> {
    const NAME: &'static str = "test#Echo";
    const REQUEST_MODEL: &'static str = "test#EchoRequest";
    type Response = Echoed;
    fn body(&self) -> serde_json::Value {
        json!({"topic": self.topic, "text": self.text})
    }
}

#[tokio::test]
async fn an_operation_is_a_request_type_and_its_response_type() {
    let server = raw_server(Script::Lite).await;
    let client = IpcClient::connect(config(&server.socket)).await.unwrap();
    let answer = client
        .call(&Echo {
            topic: "echo",
            text: "hello",
        })
        .await
        .unwrap();
    assert_eq!(
        answer,
        Echoed {
            echoed: "hello".into()
        }
    );
    // An error payload is the operation's error, as for the built-in ones.
    let denied = client
        .call(&Echo {
            topic: "deny",
            text: "x",
        })
        .await
        .unwrap_err();
    assert!(denied.is_unauthorized(), "{denied}");
    // A response that does not read as the operation's type is a protocol error naming it.
    let garbage = client
        .call(&Echo {
            topic: "garbage",
            text: "x",
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&garbage, IpcError::Protocol(m) if m.contains("test#Echo")),
        "{garbage}"
    );
    // The connection is still usable.
    client
        .publish("after", &Payload::Binary(vec![1]))
        .await
        .unwrap();
}

#[tokio::test]
async fn configuration_events_and_reads_and_iot_core_publishes() {
    let server = raw_server(Script::Lite).await;
    let client = IpcClient::connect(config(&server.socket)).await.unwrap();
    let mut updates = client
        .subscribe_to_configuration_update(None, &[])
        .await
        .unwrap();
    // The event that came before the response is kept, in order, with the later one.
    for key in ["early", "later"] {
        let event = tokio::time::timeout(WAIT, updates.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(event.component_name, "com.example.Me");
        assert_eq!(event.key_path, vec![key.to_owned()]);
    }
    let read = client
        .get_configuration(Some("com.example.Other"), &["ImageName"])
        .await
        .unwrap();
    assert_eq!(read.component_name.as_deref(), Some("com.example.Me"));
    assert_eq!(
        read.value,
        json!({"asked": {"componentName": "com.example.Other", "keyPath": ["ImageName"]}})
    );
    // An empty response body reads as success.
    client
        .publish_to_iot_core(
            "ml/dlr/image-classification",
            Qos::AtLeastOnce,
            b"{\"Label\":\"x\"}",
        )
        .await
        .unwrap();
    updates.close().await.unwrap();
    // Stream ids stayed sequential across the three kinds of operation.
    assert_eq!(*server.stream_ids.lock().unwrap(), vec![1, 2, 3]);
}
