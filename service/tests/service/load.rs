//! Readiness, overload, deadlines and graceful shutdown, with one worker. Whether a worker is
//! busy is never guessed from timing: the gated model holds it until the test opens the gate.

use std::time::Duration;

use classify_service::Config;

use crate::common::*;
use crate::gate::{Gate, wait_queue_depth};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_warmed_up() {
    // The gate is closed before start: the warm-up run waits in the model.
    let gate = Gate::new();
    gate.close();
    let app = spawn_app(Config {
        model_dir: Some(gate.model_dir()),
        ..config("colour")
    })
    .await;
    gate.wait_held().await;
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.headers()["retry-after"], "1");
    let problem = expect_problem(response, 503, "not-ready").await;
    assert!(
        problem.detail.contains("loading") || problem.detail.contains("warming"),
        "{}",
        problem.detail
    );
    let response = app.post_raw(png(RED), "image/png", "").await;
    assert!(response.headers().contains_key("retry-after"));
    expect_problem(response, 503, "not-ready").await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "alive while warming up");
    let metrics = app.get_text("/metrics").await;
    assert!(metrics.contains("classify_ready 0"), "{metrics}");

    gate.open();
    app.wait_ready().await;
    let body: serde_json::Value = app.get_json("/readyz").await;
    assert_eq!(body["status"], "ready");
    assert_eq!(app.classify(png(RED), "image/png", "").await.label, "red");
    app.stop().await;
}

/// The service on a private copy of the gated model, one worker.
async fn gated(gate: &Gate, config: Config) -> TestApp {
    spawn_ready(Config {
        model_dir: Some(gate.model_dir()),
        ..config
    })
    .await
}

fn send(app: &TestApp) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let request = app
        .client
        .post(app.url("/classify"))
        .header("content-type", "image/png")
        .body(png(RED));
    tokio::spawn(request.send())
}

/// The service with its only worker held by the gate and its only queue slot taken: provably
/// full, whatever the machine's speed.
pub(crate) struct FullQueue {
    pub(crate) app: TestApp,
    held: tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
    queued: tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
}

pub(crate) async fn full_queue(gate: &Gate, config: Config) -> FullQueue {
    let app = gated(
        gate,
        Config {
            queue_capacity: 1,
            ..config
        },
    )
    .await;
    gate.close();
    let held = send(&app);
    gate.wait_held().await;
    let queued = send(&app);
    wait_queue_depth(&app, 1).await;
    FullQueue { app, held, queued }
}

impl FullQueue {
    /// Opens the gate; the held and the queued request are both answered.
    pub(crate) async fn release(self, gate: &Gate) -> TestApp {
        gate.open();
        for request in [self.held, self.queued] {
            assert_eq!(
                expect_ok(request.await.unwrap().unwrap()).await.label,
                "red"
            );
        }
        self.app
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_503_at_once() {
    let gate = Gate::new();
    let full = full_queue(
        &gate,
        Config {
            retry_after_secs: 2,
            ..config("colour")
        },
    )
    .await;
    let app = &full.app;
    // The worker is held and the queue is full: these can only be answered by admission.
    for _ in 0..3 {
        let response = app.post_raw(png(RED), "image/png", "").await;
        assert!(gate.is_closed(), "answered while the worker was still held");
        assert_eq!(response.headers()["retry-after"], "2");
        expect_problem(response, 503, "overloaded").await;
    }
    let app = full.release(&gate).await;
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains(
            r#"classify_http_requests_total{method="POST",route="/classify",status="503"} 3"#
        ),
        "{metrics}"
    );
    app.stop().await;
}

/// A client that writes its whole request before reading (as Python's `http.client` does)
/// must get the 503, not a broken pipe, and keep its connection: the refused body is read and
/// dropped before the answer goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shed_request_is_answered_to_a_client_still_writing_and_its_connection_stays_open() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    let gate = Gate::new();
    let full = full_queue(&gate, config("colour")).await;
    let address = full.app.base.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    // Far more than the socket buffers hold: the server must read it for the write to finish.
    let body = vec![0u8; 4 << 20];
    let head = format!(
        "POST /classify HTTP/1.1\r\nHost: {address}\r\nContent-Type: image/png\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    writer
        .write_all(&body)
        .await
        .expect("the whole body was written: the refused request's body was read");

    async fn status_and_body(reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
        let mut status = String::new();
        reader.read_line(&mut status).await.unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).await.unwrap();
        format!("{} {}", status.trim(), String::from_utf8_lossy(&body))
    }
    let shed = status_and_body(&mut reader).await;
    assert!(shed.starts_with("HTTP/1.1 503"), "{shed}");
    assert!(shed.contains("overloaded"), "{shed}");
    assert!(gate.is_closed(), "answered while the worker was still held");

    let again = format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\n\r\n");
    writer.write_all(again.as_bytes()).await.unwrap();
    let health = status_and_body(&mut reader).await;
    assert!(
        health.starts_with("HTTP/1.1 200"),
        "same connection: {health}"
    );

    full.release(&gate).await.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_is_504() {
    let gate = Gate::new();
    let app = gated(
        &gate,
        Config {
            request_timeout_ms: 200,
            ..config("colour")
        },
    )
    .await;
    gate.close();
    let response = app.post_raw(png(RED), "image/png", "").await;
    assert!(
        gate.is_closed(),
        "the answer came while the model was still running"
    );
    expect_problem(response, 504, "deadline-exceeded").await;
    gate.open();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests() {
    let gate = Gate::new();
    let mut app = gated(&gate, config("colour")).await;
    gate.close();
    let in_flight = send(&app);
    gate.wait_held().await;
    let server = app.begin_stop();
    gate.open();
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(expect_ok(response).await.label, "red");
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .expect("clean exit");
    assert!(
        app.client.get(app.url("/healthz")).send().await.is_err(),
        "no longer listening"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_grace_period_is_an_error_naming_the_unanswered_requests() {
    let gate = Gate::new();
    let mut app = gated(
        &gate,
        Config {
            shutdown_timeout_ms: 100,
            ..config("colour")
        },
    )
    .await;
    gate.close();
    let in_flight = send(&app);
    gate.wait_held().await;
    let server = app.begin_stop();
    // The grace period ends with the request still held: its connection is closed unanswered.
    assert!(in_flight.await.unwrap().is_err(), "no answer was possible");
    gate.open();
    let outcome = server.await.unwrap();
    match outcome {
        Err(classify_service::Error::GraceExpired { unanswered, .. }) => {
            assert_eq!(unanswered, 1)
        }
        other => panic!("expected GraceExpired, got {other:?}"),
    }
}
