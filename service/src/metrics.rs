//! Prometheus metrics, rendered in the text exposition format at `/metrics`.
//!
//! Uses the `prometheus` crate with one [`prometheus::Registry`] per application rather than
//! a process-global recorder, so several servers in one process (the test suite) keep separate
//! counts. Names (all prefixed `classify_`):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `classify_http_requests_total` | counter | `route` (matched route, `unmatched`, or `rejected` by the Host/Origin guard), `method` (the standard methods, any other as `other`), `status` |
//! | `classify_decode_seconds` | histogram | |
//! | `classify_preprocess_seconds` | histogram | |
//! | `classify_queue_wait_seconds` | histogram | |
//! | `classify_inference_seconds` | histogram | |
//! | `classify_request_duration_seconds` | histogram | (successful classifications, end to end) |
//! | `classify_queue_depth` | gauge | (requests admitted and not yet on a model worker, sampled at scrape) |
//! | `classify_queue_capacity` | gauge | |
//! | `classify_ready` | gauge | 1 when ready |
//! | `classify_model_info` | gauge (always 1) | `name`, `version`, `backend`, `dlr_version`, `input_shape`, `workers`, `threads_per_worker` |
//!
//! `classify_model_info`'s `backend` is DLR's backend ("tvm") for DLR models and "onnxruntime"
//! for ONNX models; `dlr_version` is then ONNX Runtime's version (label names kept stable).

use http::Method;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Buckets from 0.5 ms to 30 s: the demo model runs in well under a millisecond, the
/// ModelStore ResNet-50 in a few hundred milliseconds on small devices.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every metric the service exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route, method and status.
    pub requests: IntCounterVec,
    /// Decode time.
    pub decode: Histogram,
    /// Resize and layout time.
    pub preprocess: Histogram,
    /// Time waiting for a worker.
    pub queue_wait: Histogram,
    /// Time in the model.
    pub inference: Histogram,
    /// Whole classification.
    pub total: Histogram,
    /// Jobs waiting.
    pub queue_depth: IntGauge,
    /// Queue capacity.
    pub queue_capacity: IntGauge,
    /// 1 when ready.
    pub ready: IntGauge,
    /// The memory limit the process runs under (0 when unknown).
    pub memory_limit: IntGauge,
    /// The decode memory budget.
    pub decode_memory_budget: IntGauge,
    /// Bytes of the decode memory budget held by decodes in progress.
    pub decode_memory_in_use: IntGauge,
    /// Model information, value 1.
    pub model_info: IntGaugeVec,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let histogram = |name: &str, help: &str| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()))
                .expect("valid histogram");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid gauge");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let requests = IntCounterVec::new(
            Opts::new(
                "classify_http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid counter");
        registry
            .register(Box::new(requests.clone()))
            .expect("unique metric");
        let model_info = IntGaugeVec::new(
            Opts::new(
                "classify_model_info",
                "The loaded model (value is always 1)",
            ),
            &[
                "name",
                "version",
                "backend",
                "dlr_version",
                "input_shape",
                "workers",
                "threads_per_worker",
            ],
        )
        .expect("valid gauge");
        registry
            .register(Box::new(model_info.clone()))
            .expect("unique metric");
        Self {
            requests,
            decode: histogram("classify_decode_seconds", "Image decoding time"),
            preprocess: histogram(
                "classify_preprocess_seconds",
                "Resize and tensor layout time",
            ),
            queue_wait: histogram(
                "classify_queue_wait_seconds",
                "Time waiting for a model worker",
            ),
            inference: histogram("classify_inference_seconds", "Model run time"),
            total: histogram(
                "classify_request_duration_seconds",
                "End-to-end time of successful classifications",
            ),
            queue_depth: gauge(
                "classify_queue_depth",
                "Requests waiting for a model worker",
            ),
            queue_capacity: gauge("classify_queue_capacity", "Capacity of the inference queue"),
            ready: gauge("classify_ready", "1 when the model is loaded and warmed up"),
            memory_limit: gauge(
                "classify_memory_limit_bytes",
                "The memory limit the process runs under: its cgroup's or MemTotal (0: unknown)",
            ),
            decode_memory_budget: gauge(
                "classify_decode_memory_budget_bytes",
                "Bytes all concurrent decodes may hold at once",
            ),
            decode_memory_in_use: gauge(
                "classify_decode_memory_in_use_bytes",
                "Bytes of the decode memory budget held by decodes in progress",
            ),
            model_info,
            registry,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding to a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// The `method` label: one of the standard methods, or `other` — a client can send any token
/// as a method, and each distinct label value would be a new time series forever.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
