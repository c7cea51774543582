//! Shared test fixtures: a stub of the classification service (a fake is acceptable only inside
//! this crate's tests), emulator start-up, adapter start-up, reply collection, the Python client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use classify_api::{
    ClassifyResponse, ModelRef, PROBLEM_JSON, Prediction, Problem, ProblemType, Timings,
};
use classify_ipc_adapter::adapter::{Adapter, AdapterError};
use classify_ipc_adapter::config::AdapterConfig;
use dlr_test_models::paths;
use greengrass_ipc::Flavour;
use greengrass_ipc::client::{ClientConfig, IpcClient, Subscription};
use greengrass_ipc::pubsub::{Payload, SubscriptionEvent};
use greengrass_ipc_emulator::acl::AccessControl;
use greengrass_ipc_emulator::emulator::{self, EmulatorConfig, EmulatorHandle};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Bound on every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(15);

/// What the stub saw.
#[derive(Default)]
pub struct StubLog {
    /// Request bodies received.
    pub bodies: Vec<Value>,
    /// `x-request-id` headers received.
    pub request_ids: Vec<String>,
}

/// A running stub of the classification service.
pub struct StubService {
    pub url: String,
    pub log: Arc<Mutex<StubLog>>,
    task: JoinHandle<()>,
}

impl Drop for StubService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A problem document written with the service's own types; `kind` None gives `about:blank`
/// (a problem type the adapter cannot know).
fn problem(status: StatusCode, kind: Option<ProblemType>, detail: &str) -> Response {
    let document = match kind {
        Some(kind) => {
            assert_eq!(kind.status(), status.as_u16(), "{kind:?}");
            Problem::new(kind, detail, None)
        }
        None => Problem {
            type_: "about:blank".into(),
            title: status.canonical_reason().unwrap_or_default().into(),
            status: status.as_u16(),
            detail: detail.into(),
            request_id: None,
        },
    };
    let mut r = (status, Json(document)).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, PROBLEM_JSON.parse().unwrap());
    r
}

/// A 200 answer written with the service's own type; the top-1 label is the first prediction's.
fn answer(request_id: &str, predictions: Vec<Prediction>) -> Response {
    Json(ClassifyResponse {
        request_id: request_id.into(),
        label: predictions[0].label.clone(),
        predictions,
        model: ModelRef {
            name: "stub".into(),
            version: "0".into(),
        },
        timings: Timings {
            decode_ms: 0.0,
            preprocess_ms: 0.0,
            queue_ms: 0.0,
            inference_ms: 0.0,
            total_ms: 0.0,
        },
    })
    .into_response()
}

fn prediction(index: usize, label: String, probability: f64, logit: f64) -> Prediction {
    Prediction {
        index,
        label,
        probability,
        logit,
    }
}

async fn classify(
    State(log): State<Arc<Mutex<StubLog>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    {
        let mut l = log.lock().unwrap();
        l.bodies.push(body.clone());
        if let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
            l.request_ids.push(id.to_owned());
        }
    }
    // The behaviour is chosen by the image name: <behaviour>... or the label to return.
    let name = body
        .get("fname")
        .or_else(|| body.get("path"))
        .and_then(Value::as_str)
        .map(|s| s.rsplit('/').next().unwrap_or(s).to_owned())
        .unwrap_or_else(|| "inline.png".to_owned());
    let stem = name.split('.').next().unwrap_or(&name).to_owned();
    if stem.starts_with("missing") {
        return problem(
            StatusCode::NOT_FOUND,
            Some(ProblemType::FileNotFound),
            &format!("no such file: {name}"),
        );
    }
    if stem.starts_with("busy") {
        let mut r = problem(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(ProblemType::Overloaded),
            "queue full",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, "1".parse().unwrap());
        return r;
    }
    if stem.starts_with("starting") {
        let attempts = log.lock().unwrap().bodies.len();
        if attempts <= 2 {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(ProblemType::NotReady),
                "model warming up",
            );
        }
    }
    if stem.starts_with("broken") {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some(ProblemType::Internal),
            "boom",
        );
    }
    if stem.starts_with("bad") {
        return problem(
            StatusCode::BAD_REQUEST,
            Some(ProblemType::UndecodableImage),
            "cannot decode image",
        );
    }
    if stem.starts_with("garbled") {
        return problem(
            StatusCode::BAD_REQUEST,
            Some(ProblemType::InvalidBody),
            "not base64",
        );
    }
    if stem.starts_with("wrongroute") {
        return problem(
            StatusCode::NOT_FOUND,
            Some(ProblemType::NotFound),
            "no route",
        );
    }
    if stem.starts_with("teapot") {
        return problem(StatusCode::FORBIDDEN, None, "outside");
    }
    if stem.starts_with("digits") {
        let preds = digits_numbers()
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let p: f64 = serde_json::from_str(n).unwrap();
                prediction(i, format!("c{i}"), p, p)
            })
            .collect();
        return answer("x", preds);
    }
    if stem.starts_with("slow") {
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    if stem.starts_with("many") {
        let preds = (0..400)
            .map(|i| prediction(i, format!("label-{i}"), 0.001, 0.1))
            .collect();
        return answer("x", preds);
    }
    let top_k = body.get("top_k").and_then(Value::as_u64).unwrap_or(2);
    let preds = (0..top_k.min(5) as usize)
        .map(|i| {
            let label = if i == 0 {
                stem.clone()
            } else {
                format!("other{i}")
            };
            prediction(i, label, 0.9 / (i + 1) as f64, 3.0 - i as f64)
        })
        .collect();
    let request_id = headers.get("x-request-id").and_then(|v| v.to_str().ok());
    answer(request_id.unwrap_or(""), preds)
}

/// Numbers with 16–17 significant digits, as the service prints probabilities (shortest
/// round-trip form); spread over many magnitudes so that a lossy parser alters some of them.
pub fn digits_numbers() -> Vec<String> {
    (1..200u32)
        .map(|i| {
            let x = (f64::from(i) * 0.618_033_988_749_894_9).fract() / f64::from(i % 7 + 1);
            serde_json::to_string(&x).unwrap()
        })
        .collect()
}

/// Starts the stub on 127.0.0.1 (ephemeral port).
pub async fn stub_service() -> StubService {
    let log = Arc::new(Mutex::new(StubLog::default()));
    let app = axum::Router::new()
        .route("/classify", post(classify))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    StubService {
        url: format!("http://{addr}"),
        log,
        task,
    }
}

/// A URL on which nothing listens (bound then released).
pub async fn dead_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// Access control used by the adapter tests: the adapter and a requester, as in the seed recipes,
/// and the requester's IoT Core topics.
pub const ACL: &str = r#"{
  "aws.greengrass.ipc.pubsub": {
    "com.example.Adapter:pubsub:1": {
      "policyDescription": "adapter",
      "operations": ["aws.greengrass#SubscribeToTopic", "aws.greengrass#PublishToTopic"],
      "resources": ["local/inference", "local/result", "custom/+"]
    },
    "com.custom.requester:pubsub:1": {
      "policyDescription": "requester",
      "operations": ["aws.greengrass#PublishToTopic", "aws.greengrass#SubscribeToTopic"],
      "resources": ["local/inference", "local/result", "custom/#", "forbidden/x"]
    }
  },
  "aws.greengrass.ipc.mqttproxy": {
    "com.custom.requester:mqttproxy:1": {
      "policyDescription": "requester to IoT Core",
      "operations": ["aws.greengrass#PublishToIoTCore"],
      "resources": ["ml/dlr/image-classification", "fleet/+/results"]
    }
  }
}"#;

pub const ADAPTER: &str = "com.example.Adapter";
pub const REQUESTER: &str = "com.custom.requester";

/// Starts an emulator in `dir` with [`ACL`] (tokens = component names).
pub async fn start_emulator(dir: &Path, flavour: Flavour) -> EmulatorHandle {
    start_emulator_at(&dir.join("nucleus.sock"), flavour).await
}

/// Same, at a given socket path (to restart on the same path).
pub async fn start_emulator_at(socket: &Path, flavour: Flavour) -> EmulatorHandle {
    let mut config = EmulatorConfig::new(socket, flavour);
    config.access_control = AccessControl::from_text(ACL).unwrap();
    emulator::spawn(config).await.unwrap()
}

/// A connected client with the given token.
pub async fn client(socket: &Path, token: &str, flavour: Flavour) -> IpcClient {
    let mut c = ClientConfig::new(socket, token);
    c.max_outgoing_frame = flavour.max_outgoing_frame();
    IpcClient::connect(c).await.unwrap()
}

/// Adapter configuration against the emulator and a service URL.
pub fn adapter_config(socket: &Path, service_url: &str, flavour: Flavour) -> AdapterConfig {
    let mut c = AdapterConfig::new(socket, ADAPTER, service_url);
    c.ipc.nucleus = flavour;
    c.timeouts.reply_deadline_ms = 5_000;
    c
}

/// A running adapter and the trigger of its shutdown.
pub struct RunningAdapter {
    pub stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), AdapterError>>,
}

impl RunningAdapter {
    /// Triggers shutdown and waits for the result.
    pub async fn stop(mut self) -> Result<(), AdapterError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("adapter stops in time")
            .unwrap()
    }
}

/// Starts (connects + subscribes) and runs an adapter in the background.
pub async fn start_adapter(config: AdapterConfig) -> RunningAdapter {
    let adapter = Adapter::start(config).await.expect("adapter starts");
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(adapter.run(async {
        let _ = rx.await;
    }));
    RunningAdapter {
        stop: Some(tx),
        task,
    }
}

/// A reply as received: the message kind and the parsed JSON (or text).
#[derive(Debug, Clone)]
pub struct Received {
    pub binary: bool,
    pub text: String,
    pub json: Option<Value>,
}

/// Reads the next event from `sub` within [`WAIT`]; panics on a timeout, a closed
/// subscription or a stream error.
pub async fn next_event(sub: &mut Subscription) -> SubscriptionEvent {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("an event within the wait")
        .expect("subscription open")
        .expect("no stream error")
}

/// Reads the next reply from `sub` within [`WAIT`].
pub async fn next_reply(sub: &mut Subscription) -> Received {
    match next_event(sub).await.payload {
        Payload::Binary(b) => {
            let text = String::from_utf8(b).unwrap();
            Received {
                binary: true,
                json: serde_json::from_str(&text).ok(),
                text,
            }
        }
        Payload::Json(v) => Received {
            binary: false,
            text: v.to_string(),
            json: Some(v),
        },
    }
}

/// Asserts that nothing else arrives on `sub` for `quiet`.
pub async fn assert_quiet(sub: &mut Subscription, quiet: Duration) {
    if let Ok(Some(ev)) = tokio::time::timeout(quiet, sub.next()).await {
        panic!("unexpected extra message: {ev:?}");
    }
}

/// Binary JSON text payload.
pub fn bin(v: &Value) -> Payload {
    Payload::Binary(v.to_string().into_bytes())
}

/// The Python interpreter with awsiotsdk: `CLASSIFY_TEST_PYTHON`, else the venv that
/// `cargo xtask setup` makes (found as the end-to-end tests find it). Panics (test failure, no
/// skip) when it is missing.
pub fn python() -> PathBuf {
    let path = std::env::var_os("CLASSIFY_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| paths::venv_dir().join("bin/python"));
    assert!(
        path.exists(),
        "{} not found: run `{}` first (it installs the official Greengrass IPC client, \
         awsiotsdk==1.31.0), or set CLASSIFY_TEST_PYTHON",
        path.display(),
        paths::SETUP_COMMAND
    );
    path
}

/// Path of the Python driver script.
pub fn python_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/ipc_client.py")
}

/// Runs a scenario of the Python driver as `token` and expects it to exit 0 (every scenario
/// checks its own outcome and says so in its exit status); returns its last stdout line, the
/// scenario's result, parsed as JSON. `case` names the test case in a failure.
pub async fn python_scenario(
    socket: &Path,
    token: &str,
    args: &[&str],
    case: impl std::fmt::Debug,
) -> Value {
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(python_script())
        .args(args)
        .env(
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
            socket,
        )
        .env("SVCUID", token)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the Python client finishes in time")
        .expect("the Python client runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let last = stdout.lines().last().unwrap_or("null");
    let output: Value =
        serde_json::from_str(last).unwrap_or_else(|_| panic!("bad output: {stdout}\n{stderr}"));
    assert!(
        out.status.success(),
        "{case:?} {args:?}: {output}\n{stderr}"
    );
    output
}

/// A Python driver scenario run as `token` with its stdin and stdout piped, for scenarios that
/// take their steps from stdin lines; killed when dropped.
pub fn python_interactive(socket: &Path, token: &str, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(python())
        .arg(python_script())
        .args(args)
        .env(
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
            socket,
        )
        .env("SVCUID", token)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Polls `f` until true or [`WAIT`] passes.
pub async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Counts by key.
pub fn counts<'a>(items: impl IntoIterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    let mut m = HashMap::new();
    for i in items {
        *m.entry(i).or_default() += 1;
    }
    m
}
