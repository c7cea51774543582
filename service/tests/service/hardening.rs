//! Issue #9's service findings, each replayed against the real server: FIFOs and hostile names
//! in file references, log-forging names, unbounded metric labels, DNS rebinding and CORS,
//! and the Unix-domain-socket listener.

use std::os::unix::fs::PermissionsExt;

use classify_service::Config;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

fn with_dir(dir: &std::path::Path) -> Config {
    Config {
        allowed_dirs: vec![dir.to_path_buf()],
        ..config("colour")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_in_an_allowed_directory_is_404_not_a_hung_thread() {
    let (_keep, dir) = image_dir();
    let fifo = dir.join("pipe.png");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let app = spawn_ready(with_dir(&dir)).await;
    // Before the fix the blocking open waited for a writer: 504 at the deadline, then a
    // process that never exited. Now the open does not block and fstat refuses the FIFO.
    let response = app
        .post_json(json!({"image_dir": dir, "fname": "pipe.png"}))
        .await;
    let problem = expect_problem(response, 404, "file-not-found").await;
    assert!(
        problem.detail.contains("not a regular file"),
        "{}",
        problem.detail
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_refused_with_403_and_never_echoed_raw() {
    let (_keep, dir) = image_dir();
    std::os::unix::fs::symlink(dir.join("loop.png"), dir.join("loop.png")).unwrap();
    let app = spawn_ready(with_dir(&dir)).await;
    let long = "x".repeat(10_000);
    for fname in [
        "red\0.png",
        "red.png\nINFO classify_service: forged line",
        long.as_str(),
        "loop.png",
    ] {
        let response = app
            .post_json(json!({"image_dir": dir, "fname": fname}))
            .await;
        let problem = expect_problem(response, 403, "path-forbidden").await;
        assert!(!problem.detail.contains('\n'), "{}", problem.detail);
        assert!(problem.detail.len() < 500, "{}", problem.detail);
    }
    // The same directory still serves its real file.
    let ok = app
        .post_json(json!({"image_dir": dir, "fname": "red.png"}))
        .await;
    assert_eq!(expect_ok(ok).await.label, "red");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_share_one_metric_label() {
    let app = spawn_ready(config("colour")).await;
    for i in 0..40 {
        let method = reqwest::Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
        let response = app
            .client
            .request(method, app.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405);
    }
    let metrics = app.get_text("/metrics").await;
    assert!(!metrics.contains("MADEUP"), "{metrics}");
    assert!(
        metrics.contains(
            r#"classify_http_requests_total{method="other",route="/healthz",status="405"} 40"#
        ),
        "{metrics}"
    );
    app.stop().await;
}

async fn get_with(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.client.get(app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebinding_host_is_421_and_foreign_origins_are_403_by_default() {
    let app = spawn_ready(Config {
        allowed_hosts: vec!["camera.local".into()],
        ..config("colour")
    })
    .await;
    let port = app.base.rsplit(':').next().unwrap().to_string();
    let evil = get_with(&app, "/v1/model", &[("host", "evil.example")]).await;
    let problem = expect_problem(evil, 421, "misdirected-request").await;
    assert!(
        problem.detail.contains("allowed_hosts"),
        "{}",
        problem.detail
    );
    for host in ["localhost", "127.0.0.1", "camera.local"] {
        let host = format!("{host}:{port}");
        let ok = get_with(&app, "/healthz", &[("host", &host)]).await;
        assert_eq!(ok.status(), 200, "{host}");
    }
    let foreign = get_with(&app, "/healthz", &[("origin", "http://evil.example")]).await;
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    expect_problem(foreign, 403, "origin-forbidden").await;
    // Swagger UI's own requests carry the service's origin.
    let own = format!("http://127.0.0.1:{port}");
    let same = get_with(&app, "/healthz", &[("origin", &own)]).await;
    assert_eq!(same.status(), 200);
    assert!(
        same.headers().get("access-control-allow-origin").is_none(),
        "CORS is off"
    );
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains(r#"route="rejected",status="421"} 1"#),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_cors_origins_get_cors_headers_and_preflights() {
    let dashboard = "http://dashboard.local:3000";
    let app = spawn_ready(Config {
        cors_origins: vec![dashboard.into()],
        ..config("colour")
    })
    .await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/classify"))
        .header("origin", dashboard)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        dashboard
    );
    let methods = preflight.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(methods.contains("POST"), "{methods}");
    let response = app
        .client
        .post(app.url("/classify"))
        .header("origin", dashboard)
        .header("content-type", "image/png")
        .body(png(RED))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], dashboard);
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    assert_eq!(expect_ok(response).await.label, "red");
    let other = get_with(&app, "/healthz", &[("origin", "http://evil.example")]).await;
    expect_problem(other, 403, "origin-forbidden").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_listener_serves_with_mode_0660_and_is_removed_at_exit() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("classify.sock");
    let app = classify_service::Application::build(Config {
        listen: format!("unix:{}", socket.display()).parse().unwrap(),
        ..config("colour")
    })
    .await
    .expect("the service builds");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "{mode:o}");
    let mut ready = app.readiness();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    ready
        .wait_for(|r| r.is_ready())
        .await
        .expect("the service warms up");
    let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""status":"ready""#), "{answer}");
    let _ = stop.send(());
    server.await.unwrap().expect("clean exit");
    assert!(!socket.exists(), "the socket file is removed");
}
