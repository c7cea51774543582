//! Connection-level bounds: a client that never finishes its request head is disconnected, and
//! connections beyond the cap wait instead of piling up.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

fn address(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received))
        .await
        .expect("the server closes a stalled connection");
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_in_its_request_head_is_disconnected() {
    let app = spawn_ready(classify_service::Config {
        header_read_timeout_ms: 300,
        ..config("colour")
    })
    .await;
    let mut stalled = TcpStream::connect(address(&app)).await.unwrap();
    stalled
        .write_all(b"POST /classify HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    read_until_closed(&mut stalled).await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    // The server itself is fine.
    let ok = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let app = spawn_ready(classify_service::Config {
        header_read_timeout_ms: 500,
        max_connections: 1,
        ..config("colour")
    })
    .await;
    // The readiness probe's keep-alive connection is closed by the same timeout once idle.
    tokio::time::sleep(Duration::from_millis(800)).await;
    // One idle connection takes the only slot until its header-read timeout closes it.
    let mut idle = TcpStream::connect(address(&app)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let waiting = tokio::spawn({
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let url = app.url("/healthz");
        async move {
            let started = Instant::now();
            let status = client.get(url).send().await.unwrap().status();
            (status, started.elapsed())
        }
    });
    read_until_closed(&mut idle).await;
    let (status, waited) = waiting.await.unwrap();
    assert_eq!(status, 200, "served once the slot is free");
    assert!(
        waited >= Duration::from_millis(300),
        "the second client waited for the slot ({waited:?})"
    );
    app.stop().await;
}
