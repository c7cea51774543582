//! Classifying one image, whatever transport brought it: file read → decode → preprocess →
//! model worker → ranking.
//!
//! The HTTP handler (`http::classify`) does what only HTTP knows — the Content-Type, the body
//! forms, the options' sources, admission before the body is read, the deadline as a status —
//! and hands the image here as bytes or as a file reference, with the queue slot it already
//! holds. What comes back is the ranked answer with its stage durations, or a
//! [`ClassifyError`] that keeps the lower layer's own error for `http::problem` to map.
//!
//! File reads and decodes run on the blocking pool; decodes are bounded by a semaphore whose
//! permit moves into the blocking task, so a decode abandoned by its request (the deadline
//! fired) still counts against the bound until it really finishes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::backend::Tensor;
use crate::config::ScoreMode;
use crate::files::{AllowedDirs, FileError};
use crate::inference::{InferenceError, InferencePool, Slot};
use crate::metrics::Metrics;
use crate::preprocess::{InputSpec, PreprocessError, PreprocessOptions};
use crate::scoring::{self, Prediction};

/// Where the image comes from.
#[derive(Debug)]
pub(crate) enum Image {
    /// The encoded image itself.
    Bytes(Bytes),
    /// A file to read inside the allowed directories.
    File(PathBuf),
    /// The model's input tensor itself, preprocessed by the client (its size already checked).
    Tensor(Tensor),
}

/// The model, its labels and everything between an encoded image and ranked classes.
#[derive(Debug)]
pub(crate) struct Classifier {
    /// The model workers (the caller reserved the slot `classify` fills).
    pub(crate) pool: Arc<InferencePool>,
    /// One label per output class.
    pub(crate) labels: Vec<String>,
    /// The tensor the model takes.
    pub(crate) input: InputSpec,
    /// Decode and layout settings.
    pub(crate) preprocess: PreprocessOptions,
    /// How to read the output.
    pub(crate) scores: ScoreMode,
    /// Where file references may point.
    pub(crate) allowed: AllowedDirs,
    /// Bounds concurrent decodes on the blocking pool.
    pub(crate) decode_permits: Arc<Semaphore>,
    /// Largest file read for a file reference (the same bound as a request body).
    pub(crate) max_file_bytes: usize,
    /// Memory for bodies and referenced files, shared with the HTTP layer's admission.
    pub(crate) body_memory: Arc<BodyMemory>,
    /// Stage durations are recorded here, also for requests that fail at a later stage.
    pub(crate) metrics: Metrics,
}

/// A ranked answer.
#[derive(Debug)]
pub(crate) struct Classification {
    /// The model's top-1 label, whatever `top_k` and `threshold` select.
    pub(crate) label: String,
    /// Up to `top_k` classes with probability ≥ `threshold`, most probable first.
    pub(crate) predictions: Vec<Prediction>,
    /// Decoding the image (orientation, alpha and grayscale included).
    pub(crate) decode: Duration,
    /// Resizing and laying out the tensor.
    pub(crate) preprocess: Duration,
    /// Waiting in the queue for a worker.
    pub(crate) queue: Duration,
    /// The model run.
    pub(crate) inference: Duration,
}

/// Why an image was not classified: the failing layer's own error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClassifyError {
    /// Reading the referenced file.
    #[error(transparent)]
    File(#[from] FileError),
    /// Decoding or preprocessing.
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    /// The worker pool: not ready, expired, stopped, the model failed.
    #[error(transparent)]
    Inference(#[from] InferenceError),
    /// The body memory budget is spent: too little left for this image's input tensor.
    #[error(
        "the requests being read, decoded and queued hold the whole body memory budget \
         ({} MiB, sized from the memory limit); too little is left for this image's input \
         tensor ({} KiB); retry later",
        budget >> 20,
        tensor.div_ceil(1024)
    )]
    MemorySpent {
        /// The body memory budget, bytes.
        budget: u64,
        /// The input tensor, bytes.
        tensor: u64,
    },
    /// A bug here: a task failed or the model's output does not fit its labels.
    #[error("{0}")]
    Internal(String),
}

/// Memory for the request bodies, referenced files and input tensors held at once — from
/// reading until the decode is done, or for a tensor until the model has run — counted in KiB.
/// A body reserves its declared length (the body limit when it declares none) at admission,
/// before a byte of it is read, and a request that finds too little left is shed like one that
/// finds the queue full (503). An encoded image reserves its input tensor before it is decoded,
/// without waiting (503 when too little is left): the queue's tensors are bounded by memory,
/// not only by `queue_capacity`. A file reference reserves the file's size before it is read,
/// waiting for it within the request's deadline. Sized from the memory limit
/// ([`crate::memory_budget::body_memory_budget`]), and never below one largest body.
#[derive(Debug)]
pub(crate) struct BodyMemory {
    total: u64,
    kib: std::sync::Arc<tokio::sync::Semaphore>,
}

impl BodyMemory {
    pub(crate) fn new(total: u64) -> Self {
        let kib = usize::try_from(total.div_ceil(1024))
            .unwrap_or(usize::MAX)
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        Self {
            total,
            kib: std::sync::Arc::new(tokio::sync::Semaphore::new(kib)),
        }
    }

    /// The budget in bytes.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Reserves a body's bytes without waiting; `None` when too little is left.
    pub(crate) fn reserve(
        &self,
        declared: Option<u64>,
        limit: usize,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.try_reserve(declared.map_or(limit as u64, |d| d.min(limit as u64)))
    }

    /// Reserves `bytes` without waiting; `None` when too little is left.
    fn try_reserve(&self, bytes: u64) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let kib = u32::try_from(bytes.div_ceil(1024).max(1)).ok()?;
        self.kib.clone().try_acquire_many_owned(kib).ok()
    }

    /// Reserves `bytes` (at most the whole budget), waiting until they are free.
    async fn wait_for(&self, bytes: u64) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let kib = bytes.div_ceil(1024).max(1).min(self.total.div_ceil(1024));
        let kib = u32::try_from(kib).ok()?;
        self.kib.clone().acquire_many_owned(kib).await.ok()
    }
}

/// The model's raw output for one image, with the stage durations.
#[derive(Debug)]
pub(crate) struct Inferred {
    /// The model's first output, row-major, widened to f64.
    pub(crate) raw: Vec<f64>,
    /// Decoding the image (orientation, alpha and grayscale included).
    pub(crate) decode: Duration,
    /// Resizing and laying out the tensor.
    pub(crate) preprocess: Duration,
    /// Waiting in the queue for a worker.
    pub(crate) queue: Duration,
    /// The model run.
    pub(crate) inference: Duration,
}

impl Classifier {
    /// Classifies `image` in the queue place `slot` holds; the job expires at `deadline`.
    pub(crate) async fn classify(
        self: &Arc<Self>,
        slot: Slot,
        image: Image,
        top_k: usize,
        threshold: f64,
        deadline: Instant,
    ) -> Result<Classification, ClassifyError> {
        let inferred = self.infer(slot, image, deadline).await?;
        let ranked = self.rank(&inferred.raw)?;
        let label = ranked
            .first()
            .map(|p| p.label.clone())
            .ok_or_else(|| ClassifyError::Internal("the model returned no scores".into()))?;
        Ok(Classification {
            label,
            predictions: scoring::select(&ranked, top_k, threshold),
            decode: inferred.decode,
            preprocess: inferred.preprocess,
            queue: inferred.queue,
            inference: inferred.inference,
        })
    }

    /// Every class of one raw output, most probable first (scores read as `scores` says).
    pub(crate) fn rank(&self, raw: &[f64]) -> Result<Vec<Prediction>, ClassifyError> {
        if raw.len() != self.labels.len() {
            return Err(ClassifyError::Internal(format!(
                "the model returned {} values for {} labels",
                raw.len(),
                self.labels.len()
            )));
        }
        Ok(scoring::rank(raw, &self.labels, self.scores))
    }

    /// Runs the model on `image` in the queue place `slot` holds (the job expires at
    /// `deadline`): the raw output, not ranked.
    pub(crate) async fn infer(
        self: &Arc<Self>,
        slot: Slot,
        image: Image,
        deadline: Instant,
    ) -> Result<Inferred, ClassifyError> {
        // The input tensor an encoded image becomes, held until the model has run on it (a
        // tensor sent as one came in the body, whose memory the request already holds).
        let _tensor_memory = match image {
            Image::Tensor(_) => None,
            Image::Bytes(_) | Image::File(_) => Some(self.reserve_tensor()?),
        };
        // Held until the file's bytes are decoded and dropped.
        let mut file_memory = None;
        let bytes = match image {
            Image::Tensor(tensor) => {
                return self
                    .run(slot, tensor, Duration::ZERO, Duration::ZERO, deadline)
                    .await;
            }
            Image::Bytes(bytes) => bytes,
            Image::File(path) => {
                // The file's size, to hold its share of memory before reading it (a file that
                // cannot be looked at reserves the most a read may take; the read itself says
                // why it fails).
                let size = std::fs::metadata(&path)
                    .map_or(self.max_file_bytes as u64, |m| m.len())
                    .min(self.max_file_bytes as u64);
                file_memory = Some(self.body_memory.wait_for(size).await.ok_or_else(|| {
                    ClassifyError::Internal("body memory semaphore closed".into())
                })?);
                let this = Arc::clone(self);
                tokio::task::spawn_blocking(move || this.allowed.read(&path, this.max_file_bytes))
                    .await
                    .map_err(|e| ClassifyError::Internal(format!("file read task: {e}")))??
                    .into()
            }
        };

        let permit = Arc::clone(&self.decode_permits)
            .acquire_owned()
            .await
            .map_err(|_| ClassifyError::Internal("decode semaphore closed".into()))?;
        let this = Arc::clone(self);
        let (tensor, decode, preprocess) = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _file_memory = file_memory;
            let t0 = Instant::now();
            let image = crate::preprocess::decode(&bytes, &this.preprocess)?;
            let t1 = Instant::now();
            let tensor = crate::preprocess::to_tensor(image, &this.input, &this.preprocess)?;
            Ok::<_, ClassifyError>((tensor, t1 - t0, t1.elapsed()))
        })
        .await
        .map_err(|e| ClassifyError::Internal(format!("preprocessing task failed: {e}")))??;
        self.metrics.decode.observe(decode.as_secs_f64());
        self.metrics.preprocess.observe(preprocess.as_secs_f64());
        self.run(slot, tensor, decode, preprocess, deadline).await
    }

    /// Reserves one input tensor's memory without waiting.
    fn reserve_tensor(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ClassifyError> {
        let tensor = self.input.tensor_bytes();
        self.body_memory
            .try_reserve(tensor)
            .ok_or(ClassifyError::MemorySpent {
                budget: self.body_memory.total(),
                tensor,
            })
    }

    /// Runs the model on a tensor in the place `slot` holds.
    async fn run(
        &self,
        slot: Slot,
        tensor: Tensor,
        decode: Duration,
        preprocess: Duration,
        deadline: Instant,
    ) -> Result<Inferred, ClassifyError> {
        let output = self.pool.submit(slot, tensor, deadline)?.outcome().await?;
        self.metrics
            .queue_wait
            .observe(output.queue_wait.as_secs_f64());
        self.metrics
            .inference
            .observe(output.inference.as_secs_f64());

        Ok(Inferred {
            raw: output.raw,
            decode,
            preprocess,
            queue: output.queue_wait,
            inference: output.inference,
        })
    }
}
