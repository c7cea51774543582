//! Shared fixtures of the end-to-end tests, in one place so that every test binary finds the
//! Python client and starts the service the same way.
//!
//! * [`python`] — the interpreter of the virtual environment `cargo xtask setup` creates with
//!   the official Greengrass IPC client (`CLASSIFY_TEST_PYTHON` overrides it).
//! * [`workspace_binary`] — an executable of the workspace (`classify-service`,
//!   `classify-ipc-adapter`), and [`amd64_manifest`], a recipe's x86_64 manifest, for tests that
//!   start components as processes the way their recipes do.
//! * [`RunningService`] — the classification service in this process on a free port, ready
//!   when [`RunningService::start`] returns: readiness is awaited on the service's own watch
//!   channel, not by polling `/readyz`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use classify_service::{Application, Config};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use dlr_test_models::paths::python;

/// How long start-up may take before a test gives up: a bound against hanging, not a verdict.
const START_BOUND: Duration = Duration::from_secs(30);

/// The workspace's executable `name`, beside the running test binary (which lives in
/// `deps/`): `cargo test --workspace --all-targets` builds it; alone, build its package first.
/// Panics, saying so, when it is missing.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps/")
        .join(name);
    assert!(
        path.exists(),
        "{} not found: `cargo build -p {name}` first",
        path.display()
    );
    path
}

/// The `amd64` manifest of the committed recipe of `component` (`recipes/<component>/recipe.yaml`).
pub fn amd64_manifest(component: &str) -> serde_json::Value {
    let path = dlr_test_models::paths::workspace_root()
        .join("recipes")
        .join(component)
        .join("recipe.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let recipe: serde_json::Value = serde_norway::from_str(&text).expect("the recipe is YAML");
    recipe["Manifests"]
        .as_array()
        .expect("the recipe has manifests")
        .iter()
        .find(|m| m["Platform"]["architecture"] == "amd64")
        .expect("an amd64 manifest")
        .clone()
}

/// A configuration for a generated model (e.g. "colour") served on a free loopback port with
/// the real libdlr; everything else is the service's default.
pub fn service_config(model: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("a socket address"),
        model_dir: Some(dlr_test_models::paths::model_dir(model)),
        dlr_library: Some(dlr_test_models::paths::libdlr_path()),
        ..Config::default()
    }
}

/// The service serving in a background task; dropping it starts a graceful shutdown.
#[derive(Debug)]
pub struct RunningService {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), classify_service::Error>>>,
}

impl RunningService {
    /// Builds the service, starts serving and returns once every model worker is ready.
    /// Panics when it cannot start or is not ready within 30 s.
    pub async fn start(config: Config) -> Self {
        let app = Application::build(config)
            .await
            .expect("the service starts");
        let port = app.port();
        let mut readiness = app.readiness();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        tokio::time::timeout(
            START_BOUND,
            readiness.wait_for(|r| !matches!(r, classify_service::Readiness::Starting(_))),
        )
        .await
        .expect("the service settles within 30 s")
        .expect("the readiness channel stays open");
        let state = readiness.borrow().clone();
        assert!(
            state.is_ready(),
            "the service did not become ready: {state:?}"
        );
        Self {
            port,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Shuts down gracefully and returns how serving ended.
    pub async fn stop(mut self) -> Result<(), classify_service::Error> {
        drop(self.stop.take());
        self.task
            .take()
            .expect("stopped once")
            .await
            .expect("the service task does not panic")
    }
}
