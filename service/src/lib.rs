//! Local HTTP image-classification service backed by DLR.
//!
//! A library with a thin binary (`src/main.rs`): [`Application::build`] takes one
//! [`Config`], finds and loads the model, binds the listener and starts the model workers;
//! [`Application::run_until_stopped`] serves until the given future completes (the binary
//! passes [`shutdown_signal`]: SIGTERM or SIGINT), then finishes in-flight requests, stops the
//! workers and removes the demo model's temporary directory. Tests and the end-to-end crate
//! use the same two calls with `listen` on port 0 and read [`Application::port`].
//!
//! Modules, one job each:
//! * [`config`] — the typed configuration (defaults < TOML file < env < flags) and validation;
//! * [`model_store`] / [`demo`] — where the model directory comes from;
//! * [`labels`] — `synset.txt` in its several forms;
//! * [`preprocess`] — bytes → upright RGB → the tensor the model's metadata asks for;
//! * [`backend`] — the seam under the pool: a model instance that runs one input tensor, and
//!   its DLR implementation;
//! * `inference` — the worker pool on dedicated threads, admission, the bounded queue,
//!   readiness;
//! * [`scoring`] — softmax (or not), ranking, `top_k` / `threshold`;
//! * `classifier` — one image through file read, decode, the pool and ranking, whatever
//!   transport brought it (the HTTP handler only maps its errors);
//! * [`files`] — file references confined to allowed directories;
//! * [`http`] — routes, extractors, problem+json errors, OpenAPI and Swagger UI;
//! * `server` — the accept loop: header-read timeout, connection cap, graceful drain;
//! * [`metrics`] — Prometheus text exposition; [`telemetry`] — `tracing` set-up.

pub mod backend;
pub(crate) mod classifier;
pub mod config;
pub mod demo;
pub mod files;
pub mod http;
pub(crate) mod inference;
pub mod labels;
pub mod memory_budget;
pub mod metrics;
pub mod model_store;
pub mod preprocess;
pub mod scoring;
mod server;
pub mod telemetry;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dlr_sys::{DlrLibrary, LibrarySearch, ModelOptions};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

pub use config::Config;
use config::ListenAddress;
pub use inference::Readiness;

use crate::backend::BackendFactory;
use crate::backend::dlr::DlrFactory;
use crate::backend::onnx::{OnnxFactory, Runtime};
use crate::files::AllowedDirs;
use crate::http::api::{InputInfo, MemoryInfo, ModelInfo, OutputInfo};
use crate::inference::{InferencePool, PoolOptions};
use crate::metrics::Metrics;
use crate::model_store::LocatedModel;
use crate::preprocess::{DecodeBudget, InputSpec};
use memory_limit::MemoryLimit;

/// Why the service could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// No model directory.
    #[error(transparent)]
    Locate(#[from] model_store::LocateError),
    /// libdlr could not be found or the model could not be loaded.
    #[error(transparent)]
    Dlr(#[from] dlr_sys::Error),
    /// ONNX Runtime could not be found or the ONNX model could not be loaded.
    #[error("{0}")]
    Onnx(#[from] onnx_backend::Error),
    /// The model's input or output is not something this service can feed or score.
    #[error("unsupported model in {dir}: {reason}")]
    UnsupportedModel {
        /// The model directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The labels file is missing, malformed or of the wrong length.
    #[error(transparent)]
    Labels(#[from] labels::LabelsError),
    /// An allowed directory could not be resolved.
    #[error("cannot use allowed directory {}", dir.display())]
    AllowedDir {
        /// The first configured allowed directory (they are resolved together).
        dir: PathBuf,
        /// Why it could not be canonicalised: usually it does not exist.
        source: std::io::Error,
    },
    /// The listening socket could not be bound.
    #[error("cannot listen on {address}")]
    Bind {
        /// The configured address.
        address: ListenAddress,
        /// The bind or `local_addr` failure: in use, no permission, no such interface.
        source: std::io::Error,
    },
    /// Shutdown's grace period ran out with requests still in progress; their connections
    /// were closed without an answer.
    #[error(
        "the {grace_ms} ms shutdown grace period ran out with {unanswered} request(s) \
         unanswered; their connections were closed"
    )]
    GraceExpired {
        /// Requests closed without an answer.
        unanswered: usize,
        /// The grace period.
        grace_ms: u64,
    },
    /// A model worker failed to load or warm up after start-up.
    #[error("{0}")]
    WorkerFailed(String),
    /// The signal handlers could not be installed.
    #[error("cannot install the SIGTERM and SIGINT handlers")]
    Signal(#[source] std::io::Error),
    /// A start-up task panicked or was cancelled, or the HTTP server stopped on its own.
    #[error("start-up task failed: {0}")]
    Task(String),
}

/// The bound socket.
#[derive(Debug)]
enum BoundListener {
    Tcp(TcpListener),
    /// The socket file is removed again when the service stops.
    Unix(UnixListener, PathBuf),
}

/// A built, listening, not yet serving service.
#[derive(Debug)]
pub struct Application {
    listener: BoundListener,
    address: ListenAddress,
    state: http::SharedState,
    browsers: http::guard::BrowserPolicy,
    limits: server::ConnectionLimits,
    // Dropped last: the demo model's temporary directory outlives the workers.
    model: LocatedModel,
}

impl Application {
    /// Validates the configuration, binds the listener, loads the model (one handle, to read
    /// its metadata and check the labels against it) and starts the workers, which warm up in
    /// the background — `/readyz` answers 503 until they are done.
    pub async fn build(config: Config) -> Result<Self, Error> {
        config.validate()?;
        let (listener, address) = bind(&config.listen, config.unix_socket_mode.0)
            .await
            .map_err(|source| Error::Bind {
                address: config.listen.clone(),
                source,
            })?;
        let config = Arc::new(config);
        let loading = config.clone();
        let (model, state) = tokio::task::spawn_blocking(move || prepare(&loading))
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        // A budget derived from the memory limit is sized again once the workers have warmed
        // up, when the memory they took is known.
        if config.decode_memory_budget_bytes.is_none() {
            let mut readiness = state.pool().readiness();
            let budget = state.classifier.preprocess.budget.clone();
            let limit = state.memory_limit.clone();
            tokio::spawn(async move {
                let ready = readiness
                    .wait_for(|r| !matches!(r, Readiness::Starting(_)))
                    .await;
                if ready.is_ok_and(|r| r.is_ready()) {
                    size_decode_budget(None, limit.as_ref(), &budget, "after warm-up");
                }
            });
        }
        Ok(Self {
            listener,
            address,
            state,
            browsers: http::guard::BrowserPolicy::new(&config.allowed_hosts, &config.cors_origins),
            limits: server::ConnectionLimits {
                header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
                max_connections: config.max_connections,
                shutdown_grace: Duration::from_millis(config.shutdown_timeout_ms),
            },
            model,
        })
    }

    /// The bound TCP port (useful with port 0); 0 on a Unix-domain socket.
    pub fn port(&self) -> u16 {
        self.local_addr().map_or(0, |a| a.port())
    }

    /// The bound TCP address; `None` on a Unix-domain socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.address {
            ListenAddress::Tcp(address) => Some(*address),
            ListenAddress::Unix(_) => None,
        }
    }

    /// Where the service listens (the bound port filled in).
    pub fn listen_address(&self) -> &ListenAddress {
        &self.address
    }

    /// Readiness changes (`Starting` → `Ready`, or `Failed`).
    pub fn readiness(&self) -> watch::Receiver<Readiness> {
        self.state.pool().readiness()
    }

    /// What `/v1/model` reports.
    pub fn model_info(&self) -> &ModelInfo {
        &self.state.model
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish
    /// (up to `shutdown_timeout_ms`), stops the workers and cleans up. Returns an error when a
    /// worker fails to load or warm up (the process should exit non-zero so that Greengrass
    /// notices), when the grace period ran out with requests unanswered, or when the server
    /// fails.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let Self {
            listener,
            state,
            browsers,
            limits,
            model,
            ..
        } = self;
        let pool = state.pool().clone();
        let metrics = state.metrics.clone();
        let router = http::guard::apply(http::router(state), browsers, metrics);
        let (trigger, triggered) = tokio::sync::oneshot::channel::<()>();
        let triggered = async {
            let _ = triggered.await;
        };
        let (mut server, socket_file) = match listener {
            BoundListener::Tcp(listener) => {
                let serving =
                    server::serve(server::without_nagle(listener), router, limits, triggered);
                (tokio::spawn(serving), None)
            }
            BoundListener::Unix(listener, path) => {
                let serving = server::serve(listener, router, limits, triggered);
                (tokio::spawn(serving), Some(path))
            }
        };
        let mut readiness = pool.readiness();
        let worker_failure = async move {
            loop {
                if let Readiness::Failed(reason) = &*readiness.borrow_and_update() {
                    return reason.clone();
                }
                if readiness.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        let mut server_running = true;
        let mut outcome = tokio::select! {
            result = &mut server => {
                // Whatever ended the accept loop, the workers below are still stopped and
                // joined before the model directory goes.
                server_running = false;
                Err(Error::Task(match result {
                    Ok(_) => "the HTTP server stopped on its own".into(),
                    Err(e) => e.to_string(),
                }))
            }
            () = shutdown => {
                tracing::info!("shutdown requested; finishing in-flight requests");
                Ok(())
            }
            reason = worker_failure => Err(Error::WorkerFailed(reason)),
        };
        if server_running {
            let _ = trigger.send(());
            // The server bounds its own drain by the grace period.
            match (&mut server).await {
                Ok(drained) if drained.unanswered > 0 => {
                    let grace_ms = limits.shutdown_grace.as_millis() as u64;
                    tracing::warn!(
                        unanswered = drained.unanswered,
                        grace_ms,
                        "in-flight requests did not finish in time; their connections were closed"
                    );
                    if outcome.is_ok() {
                        outcome = Err(Error::GraceExpired {
                            unanswered: drained.unanswered,
                            grace_ms,
                        });
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if outcome.is_ok() {
                        outcome = Err(Error::Task(e.to_string()));
                    }
                }
            }
        }
        if let Some(path) = socket_file {
            let _ = std::fs::remove_file(path);
        }
        tokio::task::spawn_blocking(move || pool.shutdown())
            .await
            .map_err(|e| Error::Task(e.to_string()))?;
        drop(model);
        tracing::info!("stopped");
        outcome
    }
}

/// Binds the configured address. A Unix-domain socket gets `mode` (0660 by default: only the
/// owner and its group may connect); a stale socket file left by a crashed run is replaced,
/// but any other kind of file at that path is an error.
async fn bind(
    address: &ListenAddress,
    mode: u32,
) -> std::io::Result<(BoundListener, ListenAddress)> {
    match address {
        ListenAddress::Tcp(address) => {
            let listener = TcpListener::bind(address).await?;
            let bound = ListenAddress::Tcp(listener.local_addr()?);
            Ok((BoundListener::Tcp(listener), bound))
        }
        ListenAddress::Unix(path) => {
            use std::os::unix::fs::{FileTypeExt, PermissionsExt};
            match std::fs::symlink_metadata(path) {
                Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
                Ok(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "a file that is not a socket is in the way",
                    ));
                }
                Err(_) => {}
            }
            // Bound under a random name, given its mode, then renamed into place: clients can
            // only reach the socket once its mode is final.
            let staging = path.with_file_name(format!(".classify-{}.sock", uuid::Uuid::new_v4()));
            let listener = UnixListener::bind(&staging)?;
            let placed = std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(mode))
                .and_then(|()| std::fs::rename(&staging, path));
            if let Err(e) = placed {
                let _ = std::fs::remove_file(&staging);
                return Err(e);
            }
            Ok((
                BoundListener::Unix(listener, path.clone()),
                ListenAddress::Unix(path.clone()),
            ))
        }
    }
}

/// Installs the SIGTERM (how Greengrass stops a component) and SIGINT (Ctrl-C) handlers at
/// once and returns a future that completes on either. Installing eagerly matters: a signal
/// that arrives while the model is still loading is kept and ends the service as soon as it
/// serves, instead of killing the process with the default action. Needs a Tokio runtime.
pub fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static, Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(Error::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Error::Signal)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

/// Everything blocking of start-up: locate, load, check, start the pool.
fn prepare(config: &Config) -> Result<(LocatedModel, http::SharedState), Error> {
    let located = model_store::locate(config)?;
    let dir = located.dir.clone();
    let workers = config.effective_workers();
    let threads = config.effective_threads_per_worker();
    let unsupported = |reason: String| Error::UnsupportedModel {
        dir: dir.clone(),
        reason,
    };
    let factory: Arc<dyn BackendFactory> =
        match backend::onnx::choose(config.backend, &dir).map_err(unsupported)? {
            Runtime::Dlr => {
                let library = DlrLibrary::discover(&LibrarySearch {
                    explicit: config.dlr_library.clone(),
                    model_dir: Some(dir.clone()),
                })?;
                let model_options = ModelOptions {
                    threads: Some(threads),
                    cpu_affinity: config.cpu_affinity,
                    library_path: None,
                };
                Arc::new(DlrFactory::load(library, dir.clone(), model_options)?)
            }
            Runtime::Onnx => {
                let options = onnx_backend::ModelOptions {
                    threads: Some(threads),
                    library_path: config.onnx_library.clone(),
                    spinning: config.performance_hint.spinning(),
                };
                Arc::new(OnnxFactory::load(&dir, options)?)
            }
        };
    let description = factory.description().clone();
    let input =
        InputSpec::from_metadata(&description.inputs, config.layout).map_err(unsupported)?;
    let output = description
        .outputs
        .first()
        .ok_or_else(|| unsupported("the model has no outputs".into()))?
        .clone();
    let classes = output.element_count();
    if classes == 0 {
        return Err(unsupported(format!(
            "output shape {:?} is empty",
            output.shape
        )));
    }

    let labels = match &config.labels {
        Some(path) => {
            let labels = labels::load(path)?;
            labels::check_count(path, &labels, classes)?;
            labels
        }
        None => {
            let path = dir.join("synset.txt");
            if path.exists() {
                let labels = labels::load(&path)?;
                labels::check_count(&path, &labels, classes)?;
                labels
            } else {
                tracing::warn!(
                    "no synset.txt in {}; labels are class indices (set --labels)",
                    dir.display()
                );
                (0..classes).map(|i| i.to_string()).collect()
            }
        }
    };

    let allowed = AllowedDirs::new(&config.allowed_dirs).map_err(|source| Error::AllowedDir {
        dir: config.allowed_dirs.first().cloned().unwrap_or_default(),
        source,
    })?;

    if preprocess::JPEG_SIMD {
        tracing::info!("JPEG decoding: libjpeg-turbo with its SIMD code");
    } else {
        tracing::warn!(
            "JPEG decoding: libjpeg-turbo was built without its SIMD code (on x86_64 it needs \
             nasm when the service is built: install Debian's nasm, then `cargo clean -p \
             mozjpeg-sys` and rebuild); JPEGs decode slower"
        );
    }
    // The memory budgets, sized for the memory the process holds with the model loaded.
    let preprocess = config.preprocess_options(&input);
    let memory_limit = memory_limit::detect();
    size_decode_budget(
        config.decode_memory_budget_bytes,
        memory_limit.as_ref(),
        &preprocess.budget,
        "after loading the model",
    );
    // Without a known limit, every admitted request may hold a whole body and its tensor.
    let body_memory = match &memory_limit {
        Some(limit) => memory_budget::body_memory_budget(
            limit.bytes,
            config.max_body_bytes as u64,
            input.tensor_bytes(),
        ),
        None => (config.max_body_bytes as u64 + input.tensor_bytes())
            .saturating_mul((config.queue_capacity + config.effective_workers()) as u64),
    };
    tracing::info!(
        body_memory_mib = body_memory >> 20,
        "request bodies, referenced files and input tensors held at once are bounded by the body \
         memory budget"
    );
    let memory = MemoryInfo {
        limit_bytes: memory_limit.as_ref().map(|l| l.bytes),
        limit_source: memory_limit.as_ref().map(|l| l.source.to_string()),
        decode_memory_budget_bytes: preprocess.budget.total(),
        decode_memory_budget: if config.decode_memory_budget_bytes.is_some() {
            "configured"
        } else {
            "derived"
        }
        .into(),
        body_memory_budget_bytes: body_memory,
    };

    let model = ModelInfo {
        name: located.name.clone(),
        version: located.version.clone(),
        path: dir.display().to_string(),
        backend: description.backend.clone(),
        dlr_version: description.runtime_version.clone(),
        dlr_library: description.runtime_library.display().to_string(),
        input: InputInfo {
            name: input.name.clone(),
            shape: input.shape.clone(),
            layout: format!("{:?}", input.layout).to_uppercase(),
            dtype: description.inputs[0].dtype.clone(),
        },
        output: OutputInfo {
            name: output.name.clone().unwrap_or_else(|| "output0".into()),
            shape: output.shape.clone(),
            dtype: output.dtype.clone(),
        },
        labels: labels.len(),
        performance_hint: value_name(&config.performance_hint),
        workers,
        threads_per_worker: threads,
        queue_capacity: config.queue_capacity,
        channel_order: value_name(&config.channel_order),
        resize_filter: value_name(&config.resize_filter),
        scores: value_name(&config.scores),
        memory,
    };

    let metrics = Metrics::new();
    metrics.queue_capacity.set(config.queue_capacity as i64);
    metrics
        .model_info
        .with_label_values(&[
            model.name.as_str(),
            model.version.as_str(),
            model.backend.as_str(),
            model.dlr_version.as_str(),
            &format!("{:?}", model.input.shape),
            &workers.to_string(),
            &threads.to_string(),
        ])
        .set(1);

    // Logged before the workers start, so that it comes before their "model worker ready".
    tracing::info!(
        model = %located.dir.display(),
        name = %model.name,
        version = %model.version,
        performance_hint = %model.performance_hint,
        workers,
        threads_per_worker = threads,
        "model loaded; warming up"
    );
    let pool = InferencePool::start(
        factory,
        PoolOptions {
            workers,
            queue_capacity: config.queue_capacity,
            warmup_runs: config.warmup_runs,
            input: input.clone(),
        },
    );
    let body_memory = Arc::new(classifier::BodyMemory::new(body_memory));
    let classifier = classifier::Classifier {
        pool: Arc::new(pool),
        labels,
        preprocess,
        input,
        scores: config.scores,
        allowed,
        decode_permits: Arc::new(tokio::sync::Semaphore::new(
            config.effective_decode_concurrency(),
        )),
        max_file_bytes: config.max_body_bytes,
        body_memory: body_memory.clone(),
        metrics: metrics.clone(),
    };
    let state = Arc::new(http::AppState {
        body_memory,
        memory_limit,
        classifier: Arc::new(classifier),
        model,
        default_top_k: config.top_k,
        default_threshold: config.threshold,
        metrics,
        request_timeout: Duration::from_millis(config.request_timeout_ms),
        retry_after_secs: config.retry_after_secs,
        max_body_bytes: config.max_body_bytes,
    });
    Ok((located, state))
}

/// Sets the decode memory budget from the memory limit (unless `configured`) for the memory the
/// process holds now, and logs the limit, where it came from and the budget; `stage` says
/// when. A configured budget that does not fit beside the model and the headroom is kept, with
/// a warning: the budget is reached only when large images arrive together, and refusing to
/// start would stop a service that answers its usual images well.
fn size_decode_budget(
    configured: Option<u64>,
    limit: Option<&MemoryLimit>,
    budget: &DecodeBudget,
    stage: &str,
) {
    let mib = |bytes: u64| bytes >> 20;
    let resident = memory_limit::resident_bytes();
    let (Some(limit), Some(resident)) = (limit, resident) else {
        tracing::warn!(
            decode_memory_budget_mib = mib(budget.total()),
            "memory limit or resident size unknown (no /proc?): decode memory budget left at {} MiB",
            mib(budget.total())
        );
        return;
    };
    let derived = memory_budget::derived_decode_budget(limit.bytes, resident);
    let chosen = configured.unwrap_or(derived);
    budget.set_total(chosen);
    tracing::info!(
        memory_limit_mib = mib(limit.bytes),
        memory_limit_source = %limit.source,
        resident_mib = mib(resident),
        decode_memory_budget_mib = mib(chosen),
        decode_memory_budget = if configured.is_some() { "configured" } else { "derived" },
        "memory {stage}"
    );
    if !memory_budget::fits(limit.bytes, resident, chosen) {
        let why = match configured {
            Some(_) => format!(
                "decode_memory_budget_bytes ({} MiB) does not fit under the memory limit",
                mib(chosen)
            ),
            None => format!(
                "the memory limit leaves less than the smallest decode budget ({} MiB)",
                mib(chosen)
            ),
        };
        tracing::warn!(
            "{why}: {} MiB ({}) less {} MiB in use and {} MiB of headroom; large images at once \
             may get the service killed for memory. Raise the limit{}",
            mib(limit.bytes),
            limit.source,
            mib(resident),
            mib(memory_budget::headroom(limit.bytes)),
            if configured.is_some() {
                format!(" or lower the budget (derived: {} MiB)", mib(derived))
            } else {
                String::new()
            }
        );
    }
}

/// The name clap and serde use for an enum value ("catmull-rom", "bgr", ...).
fn value_name<T: clap::ValueEnum>(value: &T) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    /// The handlers are in place when `shutdown_signal` returns, before the future is polled:
    /// a SIGTERM sent in between is kept (with lazy installation it would end the process).
    #[tokio::test]
    async fn shutdown_signal_installs_its_handlers_before_it_is_awaited() {
        let shutdown = super::shutdown_signal().expect("handlers installed");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success());
        shutdown.await;
    }
}
