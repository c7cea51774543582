//! Readiness, overload, deadlines and graceful shutdown, with the heavy model (~100-300 ms per
//! run) and one worker.

use std::time::Duration;

use classify_service::Config;

use crate::common::*;

fn heavy() -> Config {
    Config {
        threads_per_worker: Some(1),
        ..config("heavy")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_warmed_up() {
    let app = spawn_app(Config {
        warmup_runs: 4,
        ..heavy()
    })
    .await;
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

    app.wait_ready().await;
    let body: serde_json::Value = app.get_json("/readyz").await;
    assert_eq!(body["status"], "ready");
    assert_eq!(app.classify(png(RED), "image/png", "").await.label, "red");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_503_at_once() {
    let app = spawn_ready(Config {
        queue_capacity: 1,
        retry_after_secs: 2,
        ..heavy()
    })
    .await;
    let requests = (0..6).map(|_| {
        let client = app.client.clone();
        let url = app.url("/classify");
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let response = client
                .post(url)
                .header("content-type", "image/png")
                .body(png(RED))
                .send()
                .await
                .unwrap();
            (response, started.elapsed())
        })
    });
    let mut ok = 0;
    let mut overloaded = 0;
    for request in requests.collect::<Vec<_>>() {
        let (response, elapsed) = request.await.unwrap();
        match response.status().as_u16() {
            200 => ok += 1,
            503 => {
                assert_eq!(response.headers()["retry-after"], "2");
                assert!(
                    elapsed < Duration::from_millis(250),
                    "503 is immediate: {elapsed:?}"
                );
                expect_problem(response, 503, "overloaded").await;
                overloaded += 1;
            }
            other => panic!(
                "unexpected status {other}: {}",
                response.text().await.unwrap()
            ),
        }
    }
    assert!(
        ok >= 1 && overloaded >= 1,
        "ok {ok}, overloaded {overloaded}"
    );
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains(
            r#"classify_http_requests_total{method="POST",route="/classify",status="503"}"#
        ),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_is_504() {
    let app = spawn_ready(Config {
        request_timeout_ms: 60,
        ..heavy()
    })
    .await;
    let started = std::time::Instant::now();
    let response = app.post_raw(png(RED), "image/png", "").await;
    expect_problem(response, 504, "deadline-exceeded").await;
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests() {
    let mut app = spawn_ready(heavy()).await;
    let client = app.client.clone();
    let url = app.url("/classify");
    let in_flight = tokio::spawn(async move {
        client
            .post(url)
            .header("content-type", "image/png")
            .body(png(RED))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(60)).await;
    let server = app.begin_stop();
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
