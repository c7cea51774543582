//! Starting the real server on port 0 with the generated models and the real libdlr.

use std::io::Cursor;
use std::path::PathBuf;
use std::time::Duration;

use classify_api::{ClassifyResponse, Problem, ProblemType};
use classify_service::{Application, Config, Readiness};
use image::{DynamicImage, ImageFormat, RgbImage};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// A running server.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), classify_service::Error>>>,
    readiness: watch::Receiver<Readiness>,
}

/// The `classify-service` binary that cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_classify-service");

/// The child's stderr, a line at a time, read on a thread of its own so a test can wait for
/// a line with a timeout (a guard against a hang, not a verdict).
pub fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader};
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// A configuration for a generated model through the real libdlr: port 0, one worker, short
/// deadlines so that failures show quickly.
pub fn config(model: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        model_dir: Some(dlr_test_models::paths::model_dir(model)),
        dlr_library: Some(dlr_test_models::paths::libdlr_path()),
        workers: Some(1),
        threads_per_worker: Some(1),
        decode_concurrency: Some(2),
        request_timeout_ms: 10_000,
        shutdown_timeout_ms: 5_000,
        log_filter: "warn".into(),
        ..Config::default()
    }
}

/// Builds and starts the server; does not wait for readiness.
pub async fn spawn_app(config: Config) -> TestApp {
    classify_service::telemetry::init(config.log_format, &config.log_filter);
    let app = Application::build(config)
        .await
        .expect("the service builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let readiness = app.readiness();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        base,
        client: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        stop: Some(stop),
        handle: Some(handle),
        readiness,
    }
}

/// Builds, starts and waits until `/readyz` says ready.
pub async fn spawn_ready(config: Config) -> TestApp {
    let app = spawn_app(config).await;
    app.wait_ready().await;
    app
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits on the service's readiness channel (no polling) until the workers have settled;
    /// panics unless they are ready. The 30 s bound only stops a hung test.
    pub async fn wait_ready(&self) {
        let mut readiness = self.readiness.clone();
        let state = tokio::time::timeout(
            Duration::from_secs(30),
            readiness.wait_for(|r| !matches!(r, Readiness::Starting(_))),
        )
        .await
        .expect("the workers settle within 30 s")
        .expect("the readiness channel stays open")
        .clone();
        assert!(
            state.is_ready(),
            "the service did not become ready: {state:?}"
        );
    }

    /// GETs `path` and returns its JSON body, whatever the status.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// GETs `path` and returns its body as text, whatever the status.
    pub async fn get_text(&self, path: &str) -> String {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// POSTs raw bytes with a Content-Type to `/classify{query}`.
    pub async fn post_raw(
        &self,
        bytes: Vec<u8>,
        content_type: &str,
        query: &str,
    ) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/classify{query}")))
            .header("content-type", content_type)
            .body(bytes)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_json(&self, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url("/classify"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Classifies and expects 200.
    pub async fn classify(
        &self,
        bytes: Vec<u8>,
        content_type: &str,
        query: &str,
    ) -> ClassifyResponse {
        let response = self.post_raw(bytes, content_type, query).await;
        expect_ok(response).await
    }

    /// Stops the server (as SIGTERM would) and waits for a clean exit.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let handle = self.handle.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("the service stops in time")
            .unwrap()
            .expect("the service stops cleanly");
    }

    /// Triggers shutdown and returns the server task.
    pub fn begin_stop(&mut self) -> JoinHandle<Result<(), classify_service::Error>> {
        let _ = self.stop.take().unwrap().send(());
        self.handle.take().unwrap()
    }
}

pub async fn expect_ok(response: reqwest::Response) -> ClassifyResponse {
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Asserts a problem+json answer with the given status and `type` slug; returns it.
pub async fn expect_problem(response: reqwest::Response, status: u16, slug: &str) -> Problem {
    let got = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let header_id = response
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    assert_eq!(content_type, "application/problem+json", "{text}");
    let problem: Problem = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let kind = ProblemType::from_slug(slug).unwrap_or_else(|| panic!("no problem type {slug}"));
    assert_eq!(problem.kind(), Some(kind), "{text}");
    assert_eq!(kind.status(), status, "the table's status for {slug}");
    assert_eq!(problem.status, status);
    assert_eq!(problem.title, kind.title());
    assert!(!problem.detail.is_empty());
    assert_eq!(
        problem.request_id, header_id,
        "body and header carry the same request id"
    );
    problem
}

pub fn uniform(rgb: [u8; 3], w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_pixel(w, h, image::Rgb(rgb)))
}

pub fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

pub fn png(rgb: [u8; 3]) -> Vec<u8> {
    encode(&uniform(rgb, 64, 48), ImageFormat::Png)
}

pub fn jpeg(rgb: [u8; 3]) -> Vec<u8> {
    encode(&uniform(rgb, 64, 48), ImageFormat::Jpeg)
}

pub const RED: [u8; 3] = [255, 0, 0];

/// A directory to use as an allowed directory, with `red.png` in it.
pub fn image_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().canonicalize().unwrap();
    std::fs::write(canonical.join("red.png"), png(RED)).unwrap();
    (dir, canonical)
}

/// The label the colour models give a mean colour.
pub fn expected_label(mean_rgb: [f64; 3]) -> &'static str {
    let logits = dlr_test_models::expected_logits(mean_rgb);
    let best = (0..logits.len())
        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
        .unwrap();
    dlr_test_models::CLASSES[best].0
}
