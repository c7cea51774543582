//! The model worker pool: dedicated OS threads, a bounded queue, readiness.
//!
//! * Each worker owns one [`dlr_sys::Model`] (a DLR handle is never shared between threads)
//!   loaded with `threads_per_worker` DLR threads, so `workers × threads_per_worker` CPUs are
//!   busy at full load. Blocking FFI calls never run on the async runtime.
//! * Jobs travel through one bounded MPMC channel. [`InferencePool::submit`] uses `try_send`:
//!   a full queue is an immediate [`InferenceError::Overloaded`] (503 + Retry-After) instead of
//!   an unbounded wait. Each job carries its deadline; a worker skips jobs whose deadline has
//!   passed or whose requester has gone (timed out, disconnected), so a backlog of abandoned
//!   work cannot delay live requests.
//! * Readiness is a `tokio::sync::watch` value: [`Readiness::Starting`] until every worker has
//!   loaded its model and run `warmup_runs` inferences on a blank image, then
//!   [`Readiness::Ready`]; a worker that fails to load or warm up turns it into
//!   [`Readiness::Failed`] (fatal for the process: see `Application::run_until_stopped`).
//! * Shutdown drops the stop channel; workers finish the job in hand and exit; the pool joins
//!   them so that every DLR handle is deleted before the model directory may be removed.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use dlr_sys::{DlrLibrary, Input, Model, ModelOptions};
use tokio::sync::{oneshot, watch};

use crate::preprocess::{InputSpec, Tensor};

/// The pool's state as `/readyz` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Loading or warming up; the text says which.
    Starting(String),
    /// Every worker has loaded and warmed up.
    Ready,
    /// A worker could not load or warm up; the text says why.
    Failed(String),
}

impl Readiness {
    /// True when requests can be served.
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Ready)
    }
}

/// How the pool is built.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Model directory each worker loads.
    pub model_dir: PathBuf,
    /// Model instances (threads).
    pub workers: usize,
    /// DLR threads per instance, and CPU affinity.
    pub model: ModelOptions,
    /// Jobs that may wait.
    pub queue_capacity: usize,
    /// Warm-up runs per worker before ready.
    pub warmup_runs: u32,
    /// The model's input.
    pub input: InputSpec,
}

/// A worker's answer.
#[derive(Debug, Clone)]
pub struct JobOutput {
    /// The first output, widened to f64.
    pub raw: Vec<f64>,
    /// Time spent waiting in the queue.
    pub queue_wait: Duration,
    /// Time spent in `RunDLRModel` (and copying in/out).
    pub inference: Duration,
}

/// Why a job did not produce an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InferenceError {
    /// Not ready yet (or failed to start).
    #[error("the model is not ready: {0}")]
    NotReady(String),
    /// The queue is full.
    #[error("the inference queue is full ({0} waiting)")]
    Overloaded(usize),
    /// The deadline passed before a worker took the job.
    #[error("the deadline passed while the request waited for a model worker")]
    Expired,
    /// The pool is shutting down or every worker has stopped.
    #[error("the model workers have stopped")]
    Stopped,
    /// DLR reported an error (or the worker panicked); logged in full, not sent to clients.
    #[error("inference failed: {0}")]
    Model(String),
}

struct Job {
    tensor: Tensor,
    enqueued: Instant,
    deadline: Instant,
    reply: oneshot::Sender<Result<JobOutput, InferenceError>>,
}

/// The running pool. Cheap to share behind an `Arc`.
pub struct InferencePool {
    jobs: Sender<Job>,
    readiness: watch::Receiver<Readiness>,
    stop: std::sync::Mutex<Option<Sender<()>>>,
    threads: std::sync::Mutex<Vec<JoinHandle<()>>>,
    capacity: usize,
}

impl std::fmt::Debug for InferencePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferencePool")
            .field("queued", &self.jobs.len())
            .field("capacity", &self.capacity)
            .field("readiness", &*self.readiness.borrow())
            .finish_non_exhaustive()
    }
}

impl InferencePool {
    /// Starts the workers. `first` is the model already loaded to read metadata at start-up;
    /// worker 0 adopts it instead of loading a second copy.
    pub fn start(first: Model, library: Arc<DlrLibrary>, options: PoolOptions) -> Self {
        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded::<Job>(options.queue_capacity);
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let (ready_tx, ready_rx) = watch::channel(Readiness::Starting(format!(
            "loading the model into {} worker(s)",
            options.workers
        )));
        let ready_tx = Arc::new(ready_tx);
        let warmed = Arc::new(AtomicUsize::new(0));
        let options = Arc::new(options);
        let mut first = Some(first);
        let threads = (0..options.workers)
            .map(|id| {
                let preloaded = first.take();
                let worker = Worker {
                    id,
                    library: library.clone(),
                    options: options.clone(),
                    jobs: jobs_rx.clone(),
                    stop: stop_rx.clone(),
                    ready: ready_tx.clone(),
                    warmed: warmed.clone(),
                };
                std::thread::Builder::new()
                    .name(format!("model-worker-{id}"))
                    .spawn(move || worker.run(preloaded))
                    .expect("spawn a model worker thread")
            })
            .collect();
        Self {
            jobs: jobs_tx,
            readiness: ready_rx,
            stop: std::sync::Mutex::new(Some(stop_tx)),
            threads: std::sync::Mutex::new(threads),
            capacity: options.queue_capacity,
        }
    }

    /// Queues a tensor; the receiver yields the answer. Never blocks.
    pub fn submit(
        &self,
        tensor: Tensor,
        deadline: Instant,
    ) -> Result<oneshot::Receiver<Result<JobOutput, InferenceError>>, InferenceError> {
        match &*self.readiness.borrow() {
            Readiness::Ready => {}
            Readiness::Starting(why) | Readiness::Failed(why) => {
                return Err(InferenceError::NotReady(why.clone()));
            }
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            tensor,
            enqueued: Instant::now(),
            deadline,
            reply,
        };
        match self.jobs.try_send(job) {
            Ok(()) => Ok(answer),
            Err(TrySendError::Full(_)) => Err(InferenceError::Overloaded(self.capacity)),
            Err(TrySendError::Disconnected(_)) => Err(InferenceError::Stopped),
        }
    }

    /// Jobs waiting for a worker.
    pub fn queue_depth(&self) -> usize {
        self.jobs.len()
    }

    /// Queue capacity.
    pub fn queue_capacity(&self) -> usize {
        self.capacity
    }

    /// A receiver of readiness changes.
    pub fn readiness(&self) -> watch::Receiver<Readiness> {
        self.readiness.clone()
    }

    /// Stops the workers after their current job and waits for them (blocking).
    pub fn shutdown(&self) {
        drop(self.stop.lock().unwrap_or_else(|e| e.into_inner()).take());
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("a model worker panicked while stopping");
            }
        }
    }
}

struct Worker {
    id: usize,
    library: Arc<DlrLibrary>,
    options: Arc<PoolOptions>,
    jobs: Receiver<Job>,
    stop: Receiver<()>,
    ready: Arc<watch::Sender<Readiness>>,
    warmed: Arc<AtomicUsize>,
}

impl Worker {
    fn run(self, preloaded: Option<Model>) {
        let model = match preloaded {
            Some(model) => Ok(model),
            None => Model::load_with(
                self.library.clone(),
                &self.options.model_dir,
                &self.options.model,
            )
            .map_err(|e| e.to_string()),
        };
        let mut model = match model.and_then(|m| self.warm_up(m)) {
            Ok(model) => model,
            Err(reason) => {
                let reason = format!("model worker {} failed to start: {reason}", self.id);
                tracing::error!("{reason}");
                self.ready.send_replace(Readiness::Failed(reason));
                return;
            }
        };
        let warmed = self.warmed.fetch_add(1, Ordering::SeqCst) + 1;
        tracing::info!(
            worker = self.id,
            warmed,
            of = self.options.workers,
            "model worker ready"
        );
        if warmed == self.options.workers {
            self.ready.send_if_modified(|state| {
                // A failure elsewhere stays visible; only "starting" becomes "ready".
                let starting = matches!(state, Readiness::Starting(_));
                if starting {
                    *state = Readiness::Ready;
                }
                starting
            });
        } else {
            self.ready.send_if_modified(|state| match state {
                Readiness::Starting(text) => {
                    *text = format!(
                        "warming up: {warmed} of {} model workers ready",
                        self.options.workers
                    );
                    true
                }
                _ => false,
            });
        }
        loop {
            crossbeam_channel::select! {
                recv(self.jobs) -> job => match job {
                    Ok(job) => self.serve(&mut model, job),
                    Err(_) => break,
                },
                recv(self.stop) -> _ => break,
            }
        }
        tracing::debug!(worker = self.id, "model worker stopped");
    }

    fn warm_up(&self, mut model: Model) -> Result<Model, String> {
        let spec = &self.options.input;
        let elements = spec.shape.iter().product::<i64>() as usize;
        let blank = match spec.dtype {
            crate::preprocess::InputDType::F32 => Tensor::F32(vec![0.0; elements]),
            crate::preprocess::InputDType::U8 => Tensor::U8(vec![0; elements]),
        };
        for _ in 0..self.options.warmup_runs {
            run(&mut model, spec, &blank)?;
        }
        Ok(model)
    }

    fn serve(&self, model: &mut Model, job: Job) {
        let taken = Instant::now();
        if job.reply.is_closed() {
            return;
        }
        if taken >= job.deadline {
            let _ = job.reply.send(Err(InferenceError::Expired));
            return;
        }
        let spec = &self.options.input;
        // A panic must not take the worker (and its model) down with it; the requester gets
        // an error and the next job is served.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| run(model, spec, &job.tensor)))
            .unwrap_or_else(|_| Err("the model worker panicked".into()));
        let answer = result
            .map(|raw| JobOutput {
                raw,
                queue_wait: taken - job.enqueued,
                inference: taken.elapsed(),
            })
            .map_err(|e| {
                tracing::error!(worker = self.id, error = %e, "inference failed");
                InferenceError::Model(e)
            });
        let _ = job.reply.send(answer);
    }
}

fn run(model: &mut Model, spec: &InputSpec, tensor: &Tensor) -> Result<Vec<f64>, String> {
    let input = match tensor {
        Tensor::F32(data) => Input::f32(&spec.name, &spec.shape, data),
        Tensor::U8(data) => Input::u8(&spec.name, &spec.shape, data),
    };
    let outputs = model.run(&[input]).map_err(|e| e.to_string())?;
    let first = outputs
        .into_iter()
        .next()
        .ok_or_else(|| "the model produced no output".to_string())?;
    Ok(first.data.to_f64())
}
