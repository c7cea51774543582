//! The model worker pool: dedicated OS threads, admission, a bounded queue, readiness.
//!
//! * Each worker owns one [`Backend`] (a model instance is never shared between threads),
//!   created by the [`BackendFactory`] on the worker's own thread. Blocking runtime calls never
//!   run on the async runtime. The pool does not know which runtime it drives: DLR today
//!   ([`crate::backend::dlr`]), others through the same seam.
//! * **Admission before work.** A request first [`reserve`](InferencePool::reserve)s a
//!   [`Slot`]; when all `queue_capacity` slots are taken that fails at once with
//!   [`InferenceError::Overloaded`] (503 + Retry-After), before the caller has read a file or
//!   decoded an image. A slot counts from the reservation until a worker takes the job, so
//!   the bound covers requests being decoded as well as requests waiting for a worker.
//!   [`submit`](InferencePool::submit) turns the slot into a queued job and never blocks.
//! * Jobs travel through one MPMC channel (`crossbeam-channel`), each with its deadline and
//!   its requester's tracing span. A worker re-enters that span while it handles the job, so
//!   its log lines carry the request id. It skips jobs whose deadline has passed
//!   ([`InferenceError::Expired`]) or whose requester has gone (timed out, disconnected), so a
//!   backlog of abandoned work cannot delay live requests.
//! * A panic inside a run is caught: the requester gets [`InferenceError::Panicked`] and the
//!   worker goes on with the next job. Runtime failures stay typed
//!   ([`InferenceError::Backend`] with the [`BackendError`] as its source).
//! * Readiness is a `tokio::sync::watch` value: [`Readiness::Starting`] until every worker has
//!   created its backend and run `warmup_runs` inferences on a blank input, then
//!   [`Readiness::Ready`]; a worker that fails to start turns it into [`Readiness::Failed`]
//!   (fatal for the process: see `Application::run_until_stopped`).
//! * Shutdown stops the workers after the job in hand and joins them, so every model instance
//!   is dropped before the model directory may be removed. Jobs still queued are dropped with
//!   the queue; their requesters get [`InferenceError::Stopped`].

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};

use crate::backend::{Backend, BackendError, BackendFactory, InputTensor, Tensor};
use crate::preprocess::{InputDType, InputSpec};
use crate::telemetry::ErrorChain;

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
    /// Model instances, one per dedicated thread.
    pub workers: usize,
    /// Requests admitted and not yet taken by a worker (being decoded or queued); the
    /// reservation after that many fails with [`InferenceError::Overloaded`].
    pub queue_capacity: usize,
    /// Inferences on a blank input each worker runs before the pool reports ready, so the
    /// first real request does not pay for lazy initialisation inside the runtime.
    pub warmup_runs: u32,
    /// The model's input: its name and shape go with every run; its dtype and shape make the
    /// warm-up input.
    pub input: InputSpec,
}

/// A worker's answer.
#[derive(Debug, Clone)]
pub struct JobOutput {
    /// The first output, widened to f64.
    pub raw: Vec<f64>,
    /// Time from `submit` until a worker took the job.
    pub queue_wait: Duration,
    /// Time inside the runtime, as the backend measured it.
    pub inference: Duration,
}

/// Why a job did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// Not ready yet (or failed to start); the text says why.
    #[error("the model is not ready: {0}")]
    NotReady(String),
    /// Every slot is taken; the number is the capacity.
    #[error("the inference queue is full ({0} waiting)")]
    Overloaded(usize),
    /// The deadline passed before a worker took the job.
    #[error("the deadline passed while the request waited for a model worker")]
    Expired,
    /// The pool is shutting down or every worker has stopped.
    #[error("the model workers have stopped")]
    Stopped,
    /// The runtime failed; logged in full by the worker, not sent to clients.
    #[error("inference failed")]
    Backend(#[source] BackendError),
    /// The run panicked; the worker caught it and carries on.
    #[error("the model worker panicked during inference")]
    Panicked,
}

/// A place in the queue, held from admission until a worker takes the job.
///
/// Dropping it (the request failed before submitting, or timed out) gives the place back.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// The answer to one submitted job.
#[derive(Debug)]
pub struct Answer(oneshot::Receiver<Result<JobOutput, InferenceError>>);

impl Answer {
    /// Waits for the worker's answer. A job dropped unanswered (the pool stopped with it still
    /// queued) is [`InferenceError::Stopped`].
    pub async fn outcome(self) -> Result<JobOutput, InferenceError> {
        self.0.await.unwrap_or(Err(InferenceError::Stopped))
    }
}

struct Job {
    tensor: Tensor,
    enqueued: Instant,
    deadline: Instant,
    reply: oneshot::Sender<Result<JobOutput, InferenceError>>,
    /// The requester's span, re-entered on the worker thread.
    span: tracing::Span,
    slot: Slot,
}

/// The running pool. Cheap to share behind an `Arc`.
pub struct InferencePool {
    /// `None` once shut down, so that later submissions fail instead of queueing forever.
    jobs: Mutex<Option<Sender<Job>>>,
    slots: Arc<Semaphore>,
    readiness: watch::Receiver<Readiness>,
    stop: Mutex<Option<Sender<()>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    capacity: usize,
}

impl std::fmt::Debug for InferencePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferencePool")
            .field("admitted", &self.queue_depth())
            .field("capacity", &self.capacity)
            .field("readiness", &*self.readiness.borrow())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values stay consistent across a panic (options taken or replaced whole).
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl InferencePool {
    /// Starts `options.workers` threads; each creates its backend with `factory` and warms
    /// it up. Returns at once: watch [`readiness`](Self::readiness) for the outcome.
    pub fn start(factory: Arc<dyn BackendFactory>, options: PoolOptions) -> Self {
        // The slots bound the channel; its own bound is a second line that is never reached.
        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded::<Job>(options.queue_capacity.max(1));
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let (ready_tx, ready_rx) = watch::channel(Readiness::Starting(format!(
            "loading the model into {} worker(s)",
            options.workers
        )));
        let ready_tx = Arc::new(ready_tx);
        let warmed = Arc::new(AtomicUsize::new(0));
        let options = Arc::new(options);
        // Workers log through the subscriber of the thread that started them (the global one
        // in the binary, a scoped one in a test).
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        let threads = (0..options.workers)
            .map(|id| {
                let worker = Worker {
                    id,
                    factory: factory.clone(),
                    options: options.clone(),
                    jobs: jobs_rx.clone(),
                    stop: stop_rx.clone(),
                    ready: ready_tx.clone(),
                    warmed: warmed.clone(),
                };
                let dispatch = dispatch.clone();
                std::thread::Builder::new()
                    .name(format!("model-worker-{id}"))
                    .spawn(move || tracing::dispatcher::with_default(&dispatch, || worker.run()))
                    .expect("spawn a model worker thread")
            })
            .collect();
        Self {
            jobs: Mutex::new(Some(jobs_tx)),
            slots: Arc::new(Semaphore::new(options.queue_capacity)),
            readiness: ready_rx,
            stop: Mutex::new(Some(stop_tx)),
            threads: Mutex::new(threads),
            capacity: options.queue_capacity,
        }
    }

    /// Admits one request or refuses it at once: [`InferenceError::NotReady`] while the
    /// workers start, [`InferenceError::Overloaded`] when every slot is taken. Call it before
    /// doing any work for the request.
    pub fn reserve(&self) -> Result<Slot, InferenceError> {
        match &*self.readiness.borrow() {
            Readiness::Ready => {}
            Readiness::Starting(why) | Readiness::Failed(why) => {
                return Err(InferenceError::NotReady(why.clone()));
            }
        }
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Ok(Slot { _permit: permit }),
            Err(_) => Err(InferenceError::Overloaded(self.capacity)),
        }
    }

    /// Queues a tensor in the place `slot` holds. Never blocks. The current tracing span goes
    /// with the job.
    pub fn submit(
        &self,
        slot: Slot,
        tensor: Tensor,
        deadline: Instant,
    ) -> Result<Answer, InferenceError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            tensor,
            enqueued: Instant::now(),
            deadline,
            reply,
            span: tracing::Span::current(),
            slot,
        };
        let jobs = lock(&self.jobs);
        let Some(jobs) = jobs.as_ref() else {
            return Err(InferenceError::Stopped);
        };
        match jobs.try_send(job) {
            Ok(()) => Ok(Answer(answer)),
            Err(TrySendError::Full(_)) => Err(InferenceError::Overloaded(self.capacity)),
            Err(TrySendError::Disconnected(_)) => Err(InferenceError::Stopped),
        }
    }

    /// How many requests may be admitted and not yet taken by a worker.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Requests admitted and not yet taken by a worker.
    pub fn queue_depth(&self) -> usize {
        self.capacity - self.slots.available_permits()
    }

    /// A receiver of readiness changes.
    pub fn readiness(&self) -> watch::Receiver<Readiness> {
        self.readiness.clone()
    }

    /// Stops the workers after their current job and waits for them (blocking).
    pub fn shutdown(&self) {
        self.stop();
        self.join();
    }

    /// Tells the workers to stop after the job in hand and refuses new jobs; does not wait.
    fn stop(&self) {
        drop(lock(&self.stop).take());
        // Dropping the last sender also drops, once the workers are gone, the jobs still
        // queued: their requesters see `Stopped` instead of waiting for their deadline.
        drop(lock(&self.jobs).take());
    }

    /// Waits for every worker thread to end.
    fn join(&self) {
        let threads = std::mem::take(&mut *lock(&self.threads));
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("a model worker panicked while stopping");
            }
        }
    }
}

struct Worker {
    id: usize,
    factory: Arc<dyn BackendFactory>,
    options: Arc<PoolOptions>,
    jobs: Receiver<Job>,
    stop: Receiver<()>,
    ready: Arc<watch::Sender<Readiness>>,
    warmed: Arc<AtomicUsize>,
}

impl Worker {
    fn run(self) {
        let started = std::panic::catch_unwind(AssertUnwindSafe(|| self.start_backend()))
            .unwrap_or_else(|_| Err("it panicked".to_string()));
        let mut backend = match started {
            Ok(backend) => backend,
            Err(reason) => {
                let reason = format!("model worker {} failed to start: {reason}", self.id);
                tracing::error!("{reason}");
                self.ready.send_replace(Readiness::Failed(reason));
                return;
            }
        };
        self.report_warm();
        loop {
            // Stop wins over queued work, so shutdown waits for one job per worker at most.
            if let Err(TryRecvError::Disconnected) = self.stop.try_recv() {
                break;
            }
            crossbeam_channel::select! {
                recv(self.jobs) -> job => match job {
                    Ok(job) => self.serve(backend.as_mut(), job),
                    Err(_) => break,
                },
                recv(self.stop) -> _ => break,
            }
        }
        tracing::debug!(worker = self.id, "model worker stopped");
    }

    /// Creates the backend and warms it up; the error text is for readiness and the log.
    fn start_backend(&self) -> Result<Box<dyn Backend>, String> {
        let mut backend = self
            .factory
            .create(self.id)
            .map_err(|e| ErrorChain(&e).to_string())?;
        let spec = &self.options.input;
        let elements = spec.shape.iter().product::<i64>() as usize;
        let blank = match spec.dtype {
            InputDType::F32 => Tensor::F32(vec![0.0; elements]),
            InputDType::U8 => Tensor::U8(vec![0; elements]),
        };
        for _ in 0..self.options.warmup_runs {
            backend
                .run(self.input(&blank))
                .map_err(|e| format!("warm-up: {}", ErrorChain(&e)))?;
        }
        Ok(backend)
    }

    fn input<'a>(&'a self, data: &'a Tensor) -> InputTensor<'a> {
        InputTensor {
            name: &self.options.input.name,
            shape: &self.options.input.shape,
            data,
        }
    }

    fn report_warm(&self) {
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
    }

    fn serve(&self, backend: &mut dyn Backend, job: Job) {
        let taken = Instant::now();
        let Job {
            tensor,
            enqueued,
            deadline,
            reply,
            span,
            slot,
        } = job;
        // The place in the queue is free as soon as a worker has the job.
        drop(slot);
        let _entered = span.enter();
        if reply.is_closed() {
            tracing::debug!(worker = self.id, "skipped: the requester has gone");
            return;
        }
        if taken >= deadline {
            let _ = reply.send(Err(InferenceError::Expired));
            return;
        }
        // A panic must not take the worker (and its model) down with it; the requester gets
        // an error and the next job is served.
        let result =
            std::panic::catch_unwind(AssertUnwindSafe(|| backend.run(self.input(&tensor))));
        let answer = match result {
            Ok(Ok(output)) => Ok(JobOutput {
                raw: output.values,
                queue_wait: taken - enqueued,
                inference: output.elapsed,
            }),
            Ok(Err(e)) => {
                tracing::error!(worker = self.id, error = %ErrorChain(&e), "inference failed");
                Err(InferenceError::Backend(e))
            }
            Err(_) => {
                tracing::error!(
                    worker = self.id,
                    "inference panicked; the worker carries on"
                );
                Err(InferenceError::Panicked)
            }
        };
        let _ = reply.send(answer);
    }
}

#[cfg(test)]
mod tests {
    //! The pool with the scripted backend of `backend::fake`: every verdict follows from
    //! events (a run started, a gate opened), never from elapsed time.

    use std::io::Write;

    use super::*;
    use crate::backend::fake::{self, Controls, FAIL, FakeFactory, HOLD, OK, PANIC};
    use crate::preprocess::Layout;

    fn options(workers: usize, queue_capacity: usize, warmup_runs: u32) -> PoolOptions {
        PoolOptions {
            workers,
            queue_capacity,
            warmup_runs,
            input: InputSpec {
                name: "x".into(),
                shape: vec![1, 1, 1, 3],
                layout: Layout::Nhwc,
                height: 1,
                width: 1,
                dtype: InputDType::F32,
            },
        }
    }

    async fn wait_until(pool: &InferencePool, done: impl Fn(&Readiness) -> bool) -> Readiness {
        pool.readiness()
            .wait_for(|state| done(state))
            .await
            .expect("the pool keeps its readiness sender")
            .clone()
    }

    /// A ready pool of one worker on a fake backend.
    async fn ready_pool(queue_capacity: usize) -> (InferencePool, Controls) {
        let (factory, controls) = FakeFactory::new();
        let pool = InferencePool::start(Arc::new(factory), options(1, queue_capacity, 0));
        wait_until(&pool, Readiness::is_ready).await;
        (pool, controls)
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    fn submit(pool: &InferencePool, action: f32, id: u8) -> Answer {
        let slot = pool.reserve().expect("a free slot");
        pool.submit(slot, fake::input(action, id), far())
            .expect("queued")
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_frees_its_slot_when_a_worker_takes_the_job() {
        let (pool, controls) = ready_pool(1).await;
        let held = submit(&pool, HOLD, 1);
        assert_eq!(controls.runs.recv().unwrap(), 1, "the worker holds job 1");
        assert_eq!(pool.queue_depth(), 0, "a job on a worker holds no slot");

        let waiting = pool.reserve().expect("the one slot is free");
        assert_eq!(pool.queue_depth(), 1);
        assert!(matches!(pool.reserve(), Err(InferenceError::Overloaded(1))));

        let queued = pool.submit(waiting, fake::input(OK, 2), far()).unwrap();
        assert!(matches!(pool.reserve(), Err(InferenceError::Overloaded(1))));
        controls.gate.send(()).unwrap();
        assert_eq!(held.outcome().await.unwrap().raw, fake::VALUES);
        assert_eq!(queued.outcome().await.unwrap().raw, fake::VALUES);
        assert_eq!(pool.queue_depth(), 0);
        drop(pool.reserve().expect("free again"));
        pool.shutdown();
    }

    #[tokio::test]
    async fn a_dropped_slot_gives_its_place_back() {
        let (pool, _controls) = ready_pool(1).await;
        let slot = pool.reserve().unwrap();
        assert!(matches!(pool.reserve(), Err(InferenceError::Overloaded(1))));
        drop(slot);
        assert!(pool.reserve().is_ok());
        pool.shutdown();
    }

    #[tokio::test]
    async fn expired_and_abandoned_jobs_are_not_run() {
        let (pool, controls) = ready_pool(3).await;
        let held = submit(&pool, HOLD, 1);
        assert_eq!(controls.runs.recv().unwrap(), 1);
        // Already due when queued: a worker can only take it later.
        let slot = pool.reserve().unwrap();
        let expired = pool
            .submit(slot, fake::input(OK, 2), Instant::now())
            .unwrap();
        let abandoned = submit(&pool, OK, 3);
        drop(abandoned);
        let live = submit(&pool, OK, 4);
        controls.gate.send(()).unwrap();

        assert!(held.outcome().await.is_ok());
        assert!(matches!(
            expired.outcome().await,
            Err(InferenceError::Expired)
        ));
        assert!(live.outcome().await.is_ok());
        assert_eq!(
            controls.runs.try_iter().collect::<Vec<_>>(),
            [4],
            "only the live job ran after the held one"
        );
        pool.shutdown();
    }

    #[tokio::test]
    async fn a_panicking_run_is_answered_and_the_worker_serves_the_next_job() {
        let (pool, controls) = ready_pool(2).await;
        let panicked = submit(&pool, PANIC, 1);
        assert!(matches!(
            panicked.outcome().await,
            Err(InferenceError::Panicked)
        ));
        let next = submit(&pool, OK, 2);
        assert_eq!(next.outcome().await.unwrap().raw, fake::VALUES);
        assert_eq!(controls.runs.try_iter().collect::<Vec<_>>(), [1, 2]);
        assert!(pool.readiness().borrow().is_ready());
        pool.shutdown();
    }

    #[tokio::test]
    async fn a_failed_run_keeps_the_backend_error_as_its_source() {
        let (pool, _controls) = ready_pool(1).await;
        let error = submit(&pool, FAIL, 1).outcome().await.unwrap_err();
        assert!(
            matches!(error, InferenceError::Backend(BackendError::Run(_))),
            "{error:?}"
        );
        assert_eq!(
            ErrorChain(&error).to_string(),
            "inference failed: the model run failed: scripted failure"
        );
        pool.shutdown();
    }

    #[tokio::test]
    async fn not_ready_until_every_worker_has_started_and_warmed_up() {
        let (factory, controls) = FakeFactory::gated();
        let pool = InferencePool::start(Arc::new(factory), options(2, 4, 3));
        assert!(matches!(pool.reserve(), Err(InferenceError::NotReady(_))));
        controls.create.send(()).unwrap();
        let progress = wait_until(
            &pool,
            |state| matches!(state, Readiness::Starting(text) if text.contains("1 of 2")),
        )
        .await;
        assert!(!progress.is_ready());
        assert!(matches!(pool.reserve(), Err(InferenceError::NotReady(_))));
        controls.create.send(()).unwrap();
        wait_until(&pool, Readiness::is_ready).await;
        assert_eq!(
            controls.runs.try_iter().collect::<Vec<_>>(),
            [0; 6],
            "three blank warm-up runs per worker"
        );
        assert!(pool.reserve().is_ok());
        pool.shutdown();
    }

    #[tokio::test]
    async fn a_worker_that_cannot_start_fails_readiness_with_the_reason() {
        let (factory, _controls) = FakeFactory::new();
        let pool =
            InferencePool::start(Arc::new(factory.failing("no model here")), options(1, 1, 0));
        let state = wait_until(&pool, |state| !matches!(state, Readiness::Starting(_))).await;
        let Readiness::Failed(reason) = state else {
            panic!("{state:?}");
        };
        assert_eq!(
            reason,
            "model worker 0 failed to start: the model could not be loaded: no model here"
        );
        assert!(matches!(pool.reserve(), Err(InferenceError::NotReady(_))));
        pool.shutdown();
    }

    #[tokio::test]
    async fn shutdown_finishes_the_job_in_hand_and_stops_the_queued_ones() {
        let (pool, controls) = ready_pool(2).await;
        let in_hand = submit(&pool, HOLD, 1);
        assert_eq!(controls.runs.recv().unwrap(), 1);
        let queued = submit(&pool, OK, 2);
        let spare = pool.reserve().unwrap();

        pool.stop();
        controls.gate.send(()).unwrap();
        assert!(in_hand.outcome().await.is_ok());
        assert!(matches!(
            queued.outcome().await,
            Err(InferenceError::Stopped)
        ));
        pool.join();
        assert!(matches!(
            pool.submit(spare, fake::input(OK, 3), far()),
            Err(InferenceError::Stopped)
        ));
        assert_eq!(controls.runs.try_iter().count(), 0, "job 2 never ran");
    }

    /// Collects formatted log output.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn worker_log_lines_carry_the_request_span() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _scoped = tracing::subscriber::set_default(subscriber);
        let (pool, _controls) = ready_pool(1).await;

        let span = tracing::info_span!("request", request_id = "r-42");
        let answer = span.in_scope(|| submit(&pool, FAIL, 1));
        assert!(answer.outcome().await.is_err());
        pool.shutdown();

        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line = text
            .lines()
            .find(|line| line.contains("inference failed"))
            .unwrap_or_else(|| panic!("no failure logged:\n{text}"));
        assert!(
            line.contains("request_id=\"r-42\"") || line.contains("request_id=r-42"),
            "{line}"
        );
        assert!(line.contains("scripted failure"), "{line}");
    }
}
