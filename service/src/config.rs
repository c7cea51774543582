//! One typed configuration for the whole service, each setting defined once.
//!
//! [`Config`] is at the same time the `serve` flags (clap, each with its `CLASSIFY_*`
//! environment variable), the keys of the TOML file (serde, the field names) and the
//! library's configuration. Each default is written once, in `defaults`, and reaches `--help`,
//! the README table ([`reference_table`], kept equal by a test) and [`Config::default`].
//!
//! Precedence, lowest first: defaults < the TOML file named by `--config` (or
//! `CLASSIFY_CONFIG`) < environment variables < command-line flags. Clap resolves the last
//! two (a flag beats its variable) and [`ServeArgs`] remembers which settings were given
//! explicitly; [`ServeArgs::resolve`] layers defaults, file and those explicit values with
//! `figment`, so a flag left out never overwrites the file.
//!
//! [`Config`] is also the library's entry point: tests and the end-to-end crate build one in
//! code (`Config { model_dir: Some(..), ..Config::default() }`) and pass it to
//! [`crate::Application::build`], which calls [`Config::validate`] first. Validation collects
//! every problem and reports them together, each naming the setting as the user spells it.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::preprocess::{DecodeBudget, InputSpec, PreprocessOptions};

/// Prefix of every environment variable the service reads (a test checks each setting's).
pub const ENV_PREFIX: &str = "CLASSIFY_";

/// The default listening address: loopback only, so nothing outside the device can reach the
/// model unless an operator says so.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The default Greengrass v2 root directory.
pub const DEFAULT_GREENGRASS_ROOT: &str = "/greengrass/v2";

/// Every default, written once. Clap shows it in `--help` (and the README table shows what
/// clap shows), serde fills it in for keys a TOML file leaves out, and [`Config::default`]
/// is built from it.
mod defaults {
    use super::*;

    pub(super) fn listen() -> ListenAddress {
        DEFAULT_LISTEN.parse().expect("valid default address")
    }
    pub(super) fn greengrass_root() -> PathBuf {
        PathBuf::from(DEFAULT_GREENGRASS_ROOT)
    }
    pub(super) fn backend() -> BackendChoice {
        BackendChoice::Auto
    }
    pub(super) fn performance_hint() -> PerformanceHint {
        PerformanceHint::Latency
    }
    pub(super) fn queue_capacity() -> usize {
        64
    }
    pub(super) fn warmup_runs() -> u32 {
        1
    }
    pub(super) fn request_timeout_ms() -> u64 {
        30_000
    }
    pub(super) fn shutdown_timeout_ms() -> u64 {
        10_000
    }
    pub(super) fn header_read_timeout_ms() -> u64 {
        10_000
    }
    pub(super) fn max_connections() -> usize {
        256
    }
    pub(super) fn retry_after_secs() -> u32 {
        1
    }
    pub(super) fn max_body_bytes() -> usize {
        16 * 1024 * 1024
    }
    pub(super) fn max_image_dimension() -> u32 {
        16_384
    }
    pub(super) fn max_image_pixels() -> u64 {
        50_000_000
    }
    pub(super) fn decode_memory_wait_ms() -> u64 {
        5_000
    }
    pub(super) fn channel_order() -> ChannelOrder {
        ChannelOrder::Rgb
    }
    pub(super) fn resize_filter() -> ResizeFilter {
        ResizeFilter::Bilinear
    }
    pub(super) fn resize() -> ResizeMode {
        ResizeMode::Squash
    }
    pub(super) fn alpha_background() -> HexColour {
        HexColour([255, 255, 255])
    }
    pub(super) fn layout() -> LayoutChoice {
        LayoutChoice::Auto
    }
    pub(super) fn scores() -> ScoreMode {
        ScoreMode::Auto
    }
    pub(super) fn top_k() -> usize {
        5
    }
    pub(super) fn threshold() -> f64 {
        0.0
    }
    pub(super) fn log_format() -> LogFormat {
        LogFormat::Text
    }
    pub(super) fn log_filter() -> String {
        "info".into()
    }
    /// Connecting needs write permission, so 0660 admits only the service's user and group.
    pub(super) fn unix_socket_mode() -> SocketMode {
        SocketMode(0o660)
    }
}

/// Everything the service can be told: one struct that is at once the `serve` flags (each
/// with its `CLASSIFY_*` environment variable), the TOML keys (the field names) and the
/// library's configuration. The first paragraph of each field's doc is its `--help` text and
/// its row in the README table (`reference_table`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listen address (port 0 picks a free port), or unix:/absolute/path for a Unix-domain
    /// socket (created with unix_socket_mode, a stale socket replaced, removed at exit; curl
    /// --unix-socket /path http://localhost/healthz).
    #[arg(
        long,
        env = "CLASSIFY_LISTEN",
        value_name = "ADDR:PORT",
        default_value_t = defaults::listen(),
    )]
    #[serde(default = "defaults::listen")]
    pub listen: ListenAddress,
    /// Model directory (graph, params, kernels, synset.txt) [default: the newest Greengrass
    /// ModelStore ResNet-50 for this machine].
    #[arg(long, env = "CLASSIFY_MODEL_DIR", value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// Greengrass v2 root searched for the ModelStore component when no model directory is
    /// given.
    #[arg(
        long,
        env = "CLASSIFY_GREENGRASS_ROOT",
        value_name = "DIR",
        default_value_os_t = defaults::greengrass_root(),
    )]
    #[serde(default = "defaults::greengrass_root")]
    pub greengrass_root: PathBuf,
    /// Serve the embedded demo colour model (written to a private temporary directory, removed
    /// at exit).
    #[arg(
        long,
        env = "CLASSIFY_DEMO",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true",
        default_value_t = false,
        action = clap::ArgAction::Set,
    )]
    #[serde(default)]
    pub demo: bool,
    /// libdlr.so file or directory [default: the model directory's copy, DLR_LIBRARY_PATH,
    /// the Python dlr package, the system loader].
    #[arg(long, env = "CLASSIFY_DLR_LIBRARY", value_name = "PATH")]
    pub dlr_library: Option<PathBuf>,
    /// The runtime that serves the model; auto: ONNX Runtime when the model directory holds
    /// model.onnx (or a single *.onnx file) and no DLR model, else DLR (both present is an
    /// error asking for a choice).
    #[arg(
        long,
        env = "CLASSIFY_BACKEND",
        value_enum,
        default_value_t = defaults::backend(),
    )]
    #[serde(default = "defaults::backend")]
    pub backend: BackendChoice,
    /// libonnxruntime.so* file or directory for the ONNX backend (ONNX Runtime 1.22 or newer)
    /// [default: the model directory's copy, ONNXRUNTIME_LIBRARY_PATH, the Python onnxruntime
    /// package, the system library directories].
    #[arg(long, env = "CLASSIFY_ONNX_LIBRARY", value_name = "PATH")]
    pub onnx_library: Option<PathBuf>,
    /// Labels file: Python dict literal, one label per line, or a JSON array or object
    /// [default: synset.txt in the model directory].
    #[arg(long, env = "CLASSIFY_LABELS", value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Model name in answers [default: the model directory's name].
    #[arg(long, env = "CLASSIFY_MODEL_NAME", value_name = "NAME")]
    pub model_name: Option<String>,
    /// Model version in answers [default: the ModelStore version directory, else "unknown"].
    #[arg(long, env = "CLASSIFY_MODEL_VERSION", value_name = "V")]
    pub model_version: Option<String>,
    /// What the model workers are laid out for: `latency` (one worker with every CPU, one
    /// request at a time answered soonest) or `throughput` (one single-thread worker per CPU,
    /// up to 4, without spinning threads: the most answers per second under concurrent
    /// load). `workers` and `threads_per_worker` override the layout it picks.
    #[arg(
        long,
        env = "CLASSIFY_PERFORMANCE_HINT",
        value_enum,
        default_value_t = defaults::performance_hint(),
    )]
    #[serde(default = "defaults::performance_hint")]
    pub performance_hint: PerformanceHint,
    /// Model instances, each on its own OS thread with its own model handle [default: from
    /// performance_hint: 1 for latency, the available CPUs up to 4 for throughput].
    #[arg(long, env = "CLASSIFY_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    /// Runtime threads per instance [default: available CPUs / workers, at least 1].
    #[arg(long, env = "CLASSIFY_THREADS_PER_WORKER", value_name = "N")]
    pub threads_per_worker: Option<usize>,
    /// Pin DLR's threads to cores (UseDLRCPUAffinity) [default: DLR's own].
    #[arg(long, env = "CLASSIFY_CPU_AFFINITY", value_name = "BOOL")]
    pub cpu_affinity: Option<bool>,
    /// Requests admitted and not yet on a model worker (being read, decoded or queued); 503
    /// at once beyond, before the body is read.
    #[arg(
        long,
        env = "CLASSIFY_QUEUE_CAPACITY",
        value_name = "N",
        default_value_t = defaults::queue_capacity(),
    )]
    #[serde(default = "defaults::queue_capacity")]
    pub queue_capacity: usize,
    /// Warm-up inferences each worker runs before the service reports ready.
    #[arg(
        long,
        env = "CLASSIFY_WARMUP_RUNS",
        value_name = "N",
        default_value_t = defaults::warmup_runs(),
    )]
    #[serde(default = "defaults::warmup_runs")]
    pub warmup_runs: u32,
    /// Per-request deadline in milliseconds (body, decode, queue and inference); 504 after it.
    #[arg(
        long,
        env = "CLASSIFY_REQUEST_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = defaults::request_timeout_ms(),
    )]
    #[serde(default = "defaults::request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Grace for in-flight requests on SIGTERM/SIGINT, in milliseconds.
    #[arg(
        long,
        env = "CLASSIFY_SHUTDOWN_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = defaults::shutdown_timeout_ms(),
    )]
    #[serde(default = "defaults::shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// Time a client has to send its request head (also closes idle keep-alive connections),
    /// in milliseconds.
    #[arg(
        long,
        env = "CLASSIFY_HEADER_READ_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = defaults::header_read_timeout_ms(),
    )]
    #[serde(default = "defaults::header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// Client connections served at once; more wait in the accept backlog.
    #[arg(
        long,
        env = "CLASSIFY_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = defaults::max_connections(),
    )]
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Retry-After seconds sent with 503 answers.
    #[arg(
        long,
        env = "CLASSIFY_RETRY_AFTER_SECS",
        value_name = "S",
        default_value_t = defaults::retry_after_secs(),
    )]
    #[serde(default = "defaults::retry_after_secs")]
    pub retry_after_secs: u32,
    /// Largest request body and referenced file, in bytes; 413 beyond.
    #[arg(
        long,
        env = "CLASSIFY_MAX_BODY_BYTES",
        value_name = "BYTES",
        default_value_t = defaults::max_body_bytes(),
    )]
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: usize,
    /// Largest image width or height in pixels (decoded size); 413 beyond.
    #[arg(
        long,
        env = "CLASSIFY_MAX_IMAGE_DIMENSION",
        value_name = "PX",
        default_value_t = defaults::max_image_dimension(),
    )]
    #[serde(default = "defaults::max_image_dimension")]
    pub max_image_dimension: u32,
    /// Largest image area in pixels, checked from the header (decompression-bomb guard); 413
    /// beyond.
    #[arg(
        long,
        env = "CLASSIFY_MAX_IMAGE_PIXELS",
        value_name = "PX",
        default_value_t = defaults::max_image_pixels(),
    )]
    #[serde(default = "defaults::max_image_pixels")]
    pub max_image_pixels: u64,
    /// Images decoded and preprocessed at once on the blocking pool [default: available CPUs].
    #[arg(long, env = "CLASSIFY_DECODE_CONCURRENCY", value_name = "N")]
    pub decode_concurrency: Option<usize>,
    /// Bytes all concurrent decodes may hold at once, each estimated from its image's header
    /// (decoder output plus conversion to RGB) before anything is allocated; an image needing
    /// more than all of it gets 413, one that waits longer than decode_memory_wait_ms for the
    /// others gets 503. 256 MiB admits any JPEG within the limits (decoded reduced) and PNGs up
    /// to 50 MP of 8-bit RGB [default: derived from the memory limit the process runs under
    /// (its cgroup's, else the machine's): what is left once the model is loaded and warmed up,
    /// less 64 MiB and an eighth of the limit, from 16 MiB to 256 MiB]
    #[arg(
        long,
        env = "CLASSIFY_DECODE_MEMORY_BUDGET_BYTES",
        value_name = "BYTES"
    )]
    #[serde(default)]
    pub decode_memory_budget_bytes: Option<u64>,
    /// Longest a decode waits for its share of the decode memory budget, in milliseconds; 503
    /// after it.
    #[arg(
        long,
        env = "CLASSIFY_DECODE_MEMORY_WAIT_MS",
        value_name = "MS",
        default_value_t = defaults::decode_memory_wait_ms(),
    )]
    #[serde(default = "defaults::decode_memory_wait_ms")]
    pub decode_memory_wait_ms: u64,
    /// Channel order fed to the model (GluonCV/ModelStore models expect RGB; the seed fed
    /// OpenCV's BGR unconverted).
    #[arg(
        long,
        env = "CLASSIFY_CHANNEL_ORDER",
        value_enum,
        default_value_t = defaults::channel_order(),
    )]
    #[serde(default = "defaults::channel_order")]
    pub channel_order: ChannelOrder,
    /// Resize filter; every filter but nearest is anti-aliased.
    #[arg(
        long,
        env = "CLASSIFY_RESIZE_FILTER",
        value_enum,
        default_value_t = defaults::resize_filter(),
    )]
    #[serde(default = "defaults::resize_filter")]
    pub resize_filter: ResizeFilter,
    /// Resize geometry, a property of the model: squash stretches the whole image to the
    /// model's size (the ModelStore ResNet-50 pipeline); centre-crop scales the shorter side to
    /// the model's size / 0.875 (224 → 256) and takes the centre (EfficientNet-style models).
    #[arg(
        long,
        env = "CLASSIFY_RESIZE",
        value_enum,
        default_value_t = defaults::resize(),
    )]
    #[serde(default = "defaults::resize")]
    pub resize: ResizeMode,
    /// Colour transparent pixels are flattened onto.
    #[arg(
        long,
        env = "CLASSIFY_ALPHA_BACKGROUND",
        value_name = "#RRGGBB",
        default_value_t = defaults::alpha_background(),
    )]
    #[serde(default = "defaults::alpha_background")]
    pub alpha_background: HexColour,
    /// Input layout; auto reads it from the model's input shape.
    #[arg(long, env = "CLASSIFY_LAYOUT", value_enum, default_value_t = defaults::layout())]
    #[serde(default = "defaults::layout")]
    pub layout: LayoutChoice,
    /// How to read the model's output; auto applies softmax unless it already is a
    /// distribution (non-negative, sum ≈ 1).
    #[arg(long, env = "CLASSIFY_SCORES", value_enum, default_value_t = defaults::scores())]
    #[serde(default = "defaults::scores")]
    pub scores: ScoreMode,
    /// Predictions returned when a request does not say.
    #[arg(long, env = "CLASSIFY_TOP_K", value_name = "N", default_value_t = defaults::top_k())]
    #[serde(default = "defaults::top_k")]
    pub top_k: usize,
    /// Probability threshold (0 to 1) when a request does not say; the top-1 label is always
    /// reported.
    #[arg(
        long,
        env = "CLASSIFY_THRESHOLD",
        value_name = "P",
        default_value_t = defaults::threshold(),
    )]
    #[serde(default = "defaults::threshold")]
    pub threshold: f64,
    /// Directory file references (path, image_dir/fname) may read; none: file references are
    /// refused.
    #[arg(
        long = "allowed-dir",
        env = "CLASSIFY_ALLOWED_DIRS",
        value_name = "DIR",
        value_delimiter = ':'
    )]
    #[serde(default)]
    pub allowed_dirs: Vec<PathBuf>,
    /// Log line format on stderr.
    #[arg(long, env = "CLASSIFY_LOG_FORMAT", value_enum, default_value_t = defaults::log_format())]
    #[serde(default = "defaults::log_format")]
    pub log_format: LogFormat,
    /// Log filter in tracing's EnvFilter syntax (RUST_LOG overrides it).
    #[arg(
        long,
        env = "CLASSIFY_LOG_FILTER",
        value_name = "FILTER",
        default_value_t = defaults::log_filter(),
    )]
    #[serde(default = "defaults::log_filter")]
    pub log_filter: String,
    /// Permissions of the socket file with listen = unix:/path, in octal; connecting needs
    /// write permission, so the default admits only the service's user and group.
    #[arg(
        long,
        env = "CLASSIFY_UNIX_SOCKET_MODE",
        value_name = "OCTAL",
        default_value_t = defaults::unix_socket_mode(),
    )]
    #[serde(default = "defaults::unix_socket_mode")]
    pub unix_socket_mode: SocketMode,
    /// Host name accepted in the Host header besides localhost, *.localhost and IP addresses
    /// (which a DNS-rebinding page cannot send); requests naming another host get 421.
    #[arg(
        long = "allowed-host",
        env = "CLASSIFY_ALLOWED_HOSTS",
        value_name = "NAME",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Web origin (scheme://host[:port]) allowed to call the service from a browser (CORS);
    /// they get CORS headers and preflight answers. None: no CORS headers, and requests
    /// carrying another Origin than the service's own get 403.
    #[arg(
        long = "cors-origin",
        env = "CLASSIFY_CORS_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub cors_origins: Vec<String>,
}

impl Default for Config {
    /// The defaults of `defaults`, nothing read from the environment.
    fn default() -> Self {
        figment::Figment::new()
            .extract()
            .expect("every setting has a default or is optional")
    }
}

/// Channel order of the tensor fed to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red (OpenCV's order).
    Bgr,
}

/// Resize filter names (see `fast_image_resize::FilterType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeFilter {
    /// Nearest neighbour: no anti-aliasing (aliasing on downscale).
    Nearest,
    /// Box (area average).
    Box,
    /// Bilinear (tent) convolution.
    Bilinear,
    /// Hamming.
    Hamming,
    /// Catmull-Rom bicubic.
    CatmullRom,
    /// Mitchell-Netravali bicubic.
    Mitchell,
    /// Gaussian.
    Gaussian,
    /// Lanczos3.
    Lanczos3,
}

/// What the model workers are laid out for when `workers` and `threads_per_worker` leave it
/// open (OpenVINO's performance hints, for this service's worker pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PerformanceHint {
    /// One worker with every CPU as runtime threads, which spin while they wait for work
    /// (ONNX Runtime): one request at a time is answered soonest.
    Latency,
    /// One single-thread worker per CPU (at most [`PerformanceHint::MAX_THROUGHPUT_WORKERS`],
    /// the CPUs shared among them beyond), runtime threads that never spin: concurrent
    /// requests and their image decoding share the cores with the least CPU wasted.
    Throughput,
}

impl PerformanceHint {
    /// The most workers `throughput` starts by itself: each holds its own copy of the model.
    pub const MAX_THROUGHPUT_WORKERS: usize = 4;

    /// Model workers on a machine with `cpus` CPUs.
    pub fn workers(self, cpus: usize) -> usize {
        match self {
            Self::Latency => 1,
            Self::Throughput => cpus.clamp(1, Self::MAX_THROUGHPUT_WORKERS),
        }
    }

    /// Whether the runtime's idle threads may spin (ONNX Runtime's `allow_spinning`).
    pub fn spinning(self) -> bool {
        self == Self::Latency
    }
}

/// Runtime selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// From the model directory's contents.
    Auto,
    /// DLR (SageMaker Neo / TVM model directories).
    Dlr,
    /// ONNX Runtime (`model.onnx`).
    Onnx,
}

/// Resize geometry (see [`Config::resize`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeMode {
    /// The whole image stretched to the model's size.
    Squash,
    /// Shorter side to the model's size / 0.875, then the centre; aspect ratio kept.
    CentreCrop,
}

/// Input layout selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LayoutChoice {
    /// From the input shape: `[1,H,W,3]` is NHWC, `[1,3,H,W]` is NCHW.
    Auto,
    /// Force `[1,H,W,C]`.
    Nhwc,
    /// Force `[1,C,H,W]`.
    Nchw,
}

/// How to turn the model output into probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ScoreMode {
    /// Detect: probabilities when all outputs are within 0..=1 and sum to 1 (±1e-3), else logits.
    Auto,
    /// The output is logits: apply softmax.
    Logits,
    /// The output is already probabilities: use as is.
    Probabilities,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// An RGB colour written `#rrggbb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HexColour(pub [u8; 3]);

impl FromStr for HexColour {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix('#').unwrap_or(s);
        if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{s:?} is not a colour of the form #rrggbb"));
        }
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).expect("checked hex digits");
        Ok(Self([byte(0), byte(2), byte(4)]))
    }
}

impl TryFrom<String> for HexColour {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<HexColour> for String {
    fn from(c: HexColour) -> String {
        c.to_string()
    }
}

impl fmt::Display for HexColour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [r, g, b] = self.0;
        write!(f, "#{r:02x}{g:02x}{b:02x}")
    }
}

/// Where the service listens: `ADDR:PORT`, or `unix:/absolute/path` for a Unix-domain socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ListenAddress {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix-domain socket path (replaced if a stale socket is there, removed at exit).
    Unix(PathBuf),
}

impl ListenAddress {
    /// The TCP port; `None` for a Unix-domain socket.
    pub fn port(&self) -> Option<u16> {
        match self {
            Self::Tcp(address) => Some(address.port()),
            Self::Unix(_) => None,
        }
    }
}

impl FromStr for ListenAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() || path.file_name().is_none() {
                return Err(format!(
                    "{s:?}: a Unix socket is written unix:/absolute/path/file.sock"
                ));
            }
            return Ok(Self::Unix(path));
        }
        parse_listen(s)
            .map(Self::Tcp)
            .map_err(|e| format!("{e}; or unix:/absolute/path for a Unix-domain socket"))
    }
}

impl TryFrom<String> for ListenAddress {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ListenAddress> for String {
    fn from(a: ListenAddress) -> String {
        a.to_string()
    }
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(address) => write!(f, "{address}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// File permission bits written in octal (`0660`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SocketMode(pub u32);

impl FromStr for SocketMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match u32::from_str_radix(s.trim_start_matches("0o"), 8) {
            Ok(mode) if mode <= 0o777 => Ok(Self(mode)),
            _ => Err(format!("{s:?} is not an octal mode from 000 to 777")),
        }
    }
}

impl TryFrom<String> for SocketMode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<SocketMode> for String {
    fn from(m: SocketMode) -> String {
        m.to_string()
    }
}

impl fmt::Display for SocketMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// A configuration that cannot be used; the message lists every problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("cannot read configuration file {}", path.display())]
    Read {
        /// The `--config` path as given.
        path: PathBuf,
        /// The read failure: missing, not permitted, not UTF-8.
        source: std::io::Error,
    },
    /// The TOML file is not valid.
    #[error("invalid configuration file {}: {message}", path.display())]
    Parse {
        /// The `--config` path as given.
        path: PathBuf,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// Values are out of range or contradict each other.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

impl Config {
    /// Reads a TOML file over the defaults. Keys are the field names above.
    pub fn from_toml_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        use figment::providers::Serialized;
        figment::Figment::from(Serialized::defaults(Config::default()))
            .merge(Serialized::defaults(read_toml(path)?))
            .extract()
            .map_err(|e| ConfigError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
    }

    /// Model instances after applying the default (from the performance hint).
    pub fn effective_workers(&self) -> usize {
        self.workers
            .unwrap_or_else(|| self.performance_hint.workers(dlr_sys::available_cpus()))
    }

    /// Runtime threads per instance after applying the default: the CPUs shared among workers.
    pub fn effective_threads_per_worker(&self) -> usize {
        self.threads_per_worker
            .unwrap_or_else(|| (dlr_sys::available_cpus() / self.effective_workers().max(1)).max(1))
    }

    /// Concurrent decodes after applying the default.
    pub fn effective_decode_concurrency(&self) -> usize {
        self.decode_concurrency
            .unwrap_or_else(dlr_sys::available_cpus)
    }

    /// How the service decodes and preprocesses images for a model taking `input`: the
    /// configured options, a decode memory budget of its own, and JPEGs reduced in the DCT
    /// domain no further than twice the input's larger side (so the resize after it still
    /// anti-aliases).
    pub fn preprocess_options(&self, input: &InputSpec) -> PreprocessOptions {
        PreprocessOptions {
            channel_order: self.channel_order,
            filter: self.resize_filter,
            resize: self.resize,
            background: self.alpha_background,
            max_dimension: self.max_image_dimension,
            max_pixels: self.max_image_pixels,
            min_decoded_side: input.width.max(input.height).saturating_mul(2),
            budget: std::sync::Arc::new(DecodeBudget::new(
                self.decode_memory_budget_bytes
                    .unwrap_or(crate::memory_budget::MAX_DERIVED_BUDGET),
                std::time::Duration::from_millis(self.decode_memory_wait_ms),
            )),
        }
    }

    /// Checks ranges and combinations; returns every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut positive = |name: &str, value: u64| {
            if value == 0 {
                problems.push(format!("{name} must be at least 1"));
            }
        };
        positive("workers", self.workers.unwrap_or(1) as u64);
        positive(
            "threads_per_worker",
            self.threads_per_worker.unwrap_or(1) as u64,
        );
        positive(
            "decode_concurrency",
            self.decode_concurrency.unwrap_or(1) as u64,
        );
        positive("queue_capacity", self.queue_capacity as u64);
        positive("request_timeout_ms", self.request_timeout_ms);
        positive("header_read_timeout_ms", self.header_read_timeout_ms);
        positive("max_connections", self.max_connections as u64);
        positive("max_body_bytes", self.max_body_bytes as u64);
        positive("max_image_dimension", u64::from(self.max_image_dimension));
        positive("max_image_pixels", self.max_image_pixels);
        positive(
            "decode_memory_budget_bytes",
            self.decode_memory_budget_bytes.unwrap_or(1),
        );
        positive("top_k", self.top_k as u64);
        if !(0.0..=1.0).contains(&self.threshold) {
            problems.push(format!(
                "threshold must be from 0 to 1, got {}",
                self.threshold
            ));
        }
        if self.workers.is_some_and(|w| w > 256) {
            problems.push("workers must be at most 256".into());
        }
        if self.demo && self.model_dir.is_some() {
            problems.push("demo and model_dir are mutually exclusive: choose one model".into());
        }
        if self.demo && self.backend == BackendChoice::Onnx {
            problems
                .push("the demo model is a DLR model: backend onnx needs an ONNX model_dir".into());
        }
        if let Some(dir) = &self.model_dir
            && !dir.is_dir()
        {
            problems.push(format!(
                "model_dir {} does not exist or is not a directory",
                dir.display()
            ));
        }
        if let Some(labels) = &self.labels
            && !labels.is_file()
        {
            problems.push(format!("labels file {} does not exist", labels.display()));
        }
        for dir in &self.allowed_dirs {
            if !dir.is_absolute() {
                problems.push(format!(
                    "allowed_dirs entry {} must be an absolute path",
                    dir.display()
                ));
            } else if !dir.is_dir() {
                problems.push(format!(
                    "allowed_dirs entry {} does not exist or is not a directory",
                    dir.display()
                ));
            }
        }
        for origin in &self.cors_origins {
            let scheme = origin.split_once("://").map(|(s, _)| s);
            if !matches!(scheme, Some("http" | "https")) || origin.ends_with('/') {
                problems.push(format!(
                    "cors_origins entry {origin:?} must be scheme://host[:port] (http or https, \
                     no path)"
                ));
            }
        }
        for host in &self.allowed_hosts {
            if host.is_empty() || host.contains(['/', ' ', ':']) {
                problems.push(format!(
                    "allowed_hosts entry {host:?} must be a host name without port or path"
                ));
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_filter) {
            problems.push(format!("log_filter {:?} is invalid: {e}", self.log_filter));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

/// Command line of the `classify-service` binary.
#[derive(Debug, Parser)]
#[command(
    name = "classify-service",
    version,
    about = "Local HTTP image classification backed by DLR",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do; serving is the default.
    #[command(subcommand)]
    pub command: Option<CliCommand>,
    /// Serving options.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Serve HTTP (the default when no subcommand is given).
    Serve(Box<ServeArgs>),
    /// Print the OpenAPI document (JSON) to stdout.
    Openapi,
}

/// Flags of `serve`: `--config` plus every [`Config`] setting.
///
/// Parsing keeps which settings were given explicitly (a flag, or its `CLASSIFY_*` variable),
/// so that [`ServeArgs::resolve`] layers only those over the file: a flag left out never
/// overwrites a value from the file with its default.
#[derive(Debug, Clone, Default)]
pub struct ServeArgs {
    /// `--config FILE` / `CLASSIFY_CONFIG`: the TOML file, keys as the field names of
    /// [`Config`].
    pub config: Option<PathBuf>,
    /// Every setting as clap parsed it, defaults included.
    pub settings: Config,
    /// Field names given on the command line or in the environment.
    explicit: Vec<String>,
}

/// The id of the `--config` argument.
const CONFIG_ARG: &str = "config";

impl clap::Args for ServeArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        Config::augment_args(cmd.arg(config_arg()))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Config::augment_args_for_update(cmd.arg(config_arg()))
    }
}

fn config_arg() -> clap::Arg {
    clap::Arg::new(CONFIG_ARG)
        .long(CONFIG_ARG)
        .env("CLASSIFY_CONFIG")
        .value_name("FILE")
        .value_parser(clap::value_parser!(PathBuf))
        .help("TOML configuration file; its keys are the settings below (snake_case)")
}

impl clap::FromArgMatches for ServeArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        use clap::parser::ValueSource;
        let explicit = matches
            .ids()
            .map(|id| id.as_str())
            .filter(|&id| id != CONFIG_ARG)
            .filter(|&id| {
                matches!(
                    matches.value_source(id),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                )
            })
            .map(str::to_owned)
            .collect();
        Ok(Self {
            config: matches.get_one::<PathBuf>(CONFIG_ARG).cloned(),
            settings: Config::from_arg_matches(matches)?,
            explicit,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl ServeArgs {
    /// Resolves the layers with `figment`: defaults < the `--config` file < environment and
    /// flags (clap already let a flag beat its variable). A `--config` file that cannot be
    /// read is an error, never silently skipped.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        use figment::providers::Serialized;
        let mut layers = figment::Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &self.config {
            layers = layers.merge(Serialized::defaults(read_toml(path)?));
        }
        let given = figment::value::Value::serialize(&self.settings)
            .map_err(|e| ConfigError::Invalid(vec![e.to_string()]))?;
        let given: figment::value::Dict = given
            .into_dict()
            .unwrap_or_default()
            .into_iter()
            .filter(|(key, _)| self.explicit.contains(key))
            .collect();
        layers
            .merge(Serialized::defaults(given))
            .extract()
            .map_err(|e| ConfigError::Parse {
                path: self.config.clone().unwrap_or_default(),
                message: e.to_string(),
            })
    }
}

/// A TOML file as a table, with the read and syntax errors the user needs.
fn read_toml(path: &std::path::Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The README's configuration table, generated from the `serve` arguments: flag,
/// environment variable, TOML key, default as `--help` shows it, and the help text. A test
/// keeps `service/README.md` equal to it.
pub fn reference_table() -> String {
    let command = <ServeArgs as clap::Args>::augment_args(clap::Command::new("serve"));
    let mut table = String::from(
        "| flag | environment | TOML key | default | meaning |\n|---|---|---|---|---|\n",
    );
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else {
            continue;
        };
        let values = arg.get_possible_values();
        let value = if values.is_empty() {
            arg.get_value_names()
                .map(|names| names.join(" "))
                .unwrap_or_default()
        } else {
            values
                .iter()
                .map(|v| v.get_name().to_owned())
                .collect::<Vec<_>>()
                .join("\\|")
        };
        let optional = arg.get_num_args().is_some_and(|n| n.min_values() == 0);
        let mut flag = match (value.is_empty(), optional) {
            (true, _) => format!("`--{long}`"),
            (false, true) => format!("`--{long} [{value}]`"),
            (false, false) => format!("`--{long} {value}`"),
        };
        let repeatable = matches!(arg.get_action(), clap::ArgAction::Append);
        if repeatable {
            flag.push_str(" (repeatable)");
        }
        let mut env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        if let Some(delimiter) = arg.get_value_delimiter() {
            env.push_str(&format!(" (`{delimiter}`-separated)"));
        }
        let id = arg.get_id().as_str();
        let key = if id == CONFIG_ARG {
            "—".to_owned()
        } else if repeatable {
            format!("`{id}` (array)")
        } else {
            format!("`{id}`")
        };
        let mut help = arg
            .get_help()
            .map(|h| h.to_string())
            .unwrap_or_default()
            .replace('|', "\\|");
        let defaults = arg.get_default_values();
        let default = if !defaults.is_empty() {
            let text: Vec<_> = defaults.iter().map(|d| d.to_string_lossy()).collect();
            format!("`{}`", text.join(","))
        } else if let Some((text, described)) = help
            .strip_suffix(']')
            .and_then(|h| h.rsplit_once(" [default: "))
        {
            // An optional setting whose default is worked out at start-up: its help says how.
            let described = described.to_owned();
            help = text.to_owned();
            described
        } else {
            "none".to_owned()
        };
        table.push_str(&format!(
            "| {flag} | {env} | {key} | {default} | {help} |\n"
        ));
    }
    table
}

/// `--listen`: an IP address and a port; a host name gets a hint instead of "invalid socket
/// address syntax" (names are not resolved, so the bound address is exactly the one given).
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        let host = text.rsplit_once(':').map_or(text, |(host, _)| host);
        if host.eq_ignore_ascii_case("localhost") {
            format!("{text:?} is not an IP address and port; use 127.0.0.1:PORT (or [::1]:PORT)")
        } else {
            format!(
                "{text:?} is not an IP address and port such as 127.0.0.1:8080, 0.0.0.0:8080 or \
                 [::1]:8080 (host names are not resolved)"
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_loopback_and_valid_except_for_the_model() {
        let config = Config::default();
        assert!(
            matches!(config.listen, ListenAddress::Tcp(a) if a.ip().is_loopback()),
            "{}",
            config.listen
        );
        assert_eq!(config.max_body_bytes, 16 * 1024 * 1024);
        config.validate().unwrap();
    }

    #[test]
    fn the_performance_hint_lays_out_the_workers_unless_they_are_given() {
        assert_eq!(PerformanceHint::Latency.workers(8), 1);
        assert_eq!(PerformanceHint::Throughput.workers(1), 1);
        assert_eq!(PerformanceHint::Throughput.workers(2), 2);
        assert_eq!(PerformanceHint::Throughput.workers(64), 4);
        assert!(PerformanceHint::Latency.spinning());
        assert!(!PerformanceHint::Throughput.spinning());

        let cpus = dlr_sys::available_cpus();
        let latency = Config::default();
        assert_eq!(latency.performance_hint, PerformanceHint::Latency);
        assert_eq!(
            (
                latency.effective_workers(),
                latency.effective_threads_per_worker()
            ),
            (1, cpus)
        );
        let throughput = Config {
            performance_hint: PerformanceHint::Throughput,
            ..Config::default()
        };
        let workers = cpus.min(PerformanceHint::MAX_THROUGHPUT_WORKERS);
        assert_eq!(throughput.effective_workers(), workers);
        assert_eq!(
            throughput.effective_threads_per_worker(),
            (cpus / workers).max(1)
        );
        let given = Config {
            workers: Some(3),
            threads_per_worker: Some(2),
            ..throughput
        };
        assert_eq!(
            (
                given.effective_workers(),
                given.effective_threads_per_worker()
            ),
            (3, 2)
        );
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "top_k = 3\nqueue_capacity = 7\nchannel_order = \"bgr\"\nresize_filter = \"catmull-rom\"\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "classify-service",
            "--config",
            file.to_str().unwrap(),
            "--top-k",
            "9",
            "--demo",
        ])
        .unwrap();
        let config = cli.serve.resolve().unwrap();
        assert_eq!(config.top_k, 9, "flag beats file");
        assert_eq!(config.queue_capacity, 7, "file beats default");
        assert_eq!(config.channel_order, ChannelOrder::Bgr);
        assert_eq!(config.resize_filter, ResizeFilter::CatmullRom);
        assert!(config.demo);
    }

    #[test]
    fn unknown_toml_keys_are_errors_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "topk = 3\n").unwrap();
        let err = Config::from_toml_file(&file).unwrap_err().to_string();
        assert!(err.contains("topk"), "{err}");
    }

    #[test]
    fn validation_lists_every_problem() {
        let config = Config {
            workers: Some(0),
            queue_capacity: 0,
            demo: true,
            model_dir: Some("/nonexistent".into()),
            allowed_dirs: vec!["relative".into()],
            threshold: 1.5,
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        for needle in [
            "threshold",
            "workers",
            "queue_capacity",
            "mutually exclusive",
            "/nonexistent",
            "relative",
        ] {
            assert!(err.contains(needle), "{needle} missing in {err}");
        }
    }

    #[test]
    fn unix_listen_addresses_and_socket_modes_parse() {
        let cli = Cli::try_parse_from([
            "classify-service",
            "--listen",
            "unix:/run/classify.sock",
            "--unix-socket-mode",
            "0600",
            "--allowed-host",
            "camera.local",
            "--cors-origin",
            "http://dashboard.local:3000",
        ])
        .unwrap();
        let config = cli.serve.resolve().unwrap();
        assert_eq!(
            config.listen,
            ListenAddress::Unix("/run/classify.sock".into())
        );
        assert_eq!(config.listen.to_string(), "unix:/run/classify.sock");
        assert_eq!(config.unix_socket_mode, SocketMode(0o600));
        assert_eq!(config.allowed_hosts, ["camera.local"]);
        assert_eq!(config.cors_origins, ["http://dashboard.local:3000"]);
        assert_eq!(Config::default().unix_socket_mode.to_string(), "0660");
        assert!("unix:relative.sock".parse::<ListenAddress>().is_err());
        assert!("localhost".parse::<ListenAddress>().is_err());
        assert!("888".parse::<SocketMode>().is_err());
        let bad = Config {
            cors_origins: vec!["dashboard.local".into()],
            allowed_hosts: vec!["a:80".into()],
            ..Config::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(
            err.contains("cors_origins") && err.contains("allowed_hosts"),
            "{err}"
        );
    }

    #[test]
    fn hex_colours_round_trip() {
        let c: HexColour = "#ff8000".parse().unwrap();
        assert_eq!(c.0, [255, 128, 0]);
        assert_eq!(c.to_string(), "#ff8000");
        assert!("red".parse::<HexColour>().is_err());
    }
}

#[cfg(test)]
mod reference {
    //! The single definition is what users see: `--help`, the README table, the environment.

    use clap::{CommandFactory, FromArgMatches};

    use super::*;

    fn serve_command() -> clap::Command {
        <ServeArgs as clap::Args>::augment_args(clap::Command::new("serve"))
    }

    #[test]
    fn help_shows_the_defaults_the_code_uses() {
        // Without the environment, clap's defaults alone must give `Config::default()`.
        let mut command = serve_command().mut_args(|arg| arg.env(None));
        let matches = command.try_get_matches_from_mut(["serve"]).unwrap();
        let parsed = ServeArgs::from_arg_matches(&matches).unwrap();
        assert_eq!(parsed.settings, Config::default());
        assert!(parsed.explicit.is_empty(), "{:?}", parsed.explicit);

        let help = Cli::command().render_long_help().to_string();
        let mut shown = 0;
        for arg in serve_command().get_arguments() {
            for value in arg.get_default_values() {
                let text = format!("[default: {}]", value.to_string_lossy());
                assert!(help.contains(&text), "--help lacks {text}:\n{help}");
                shown += 1;
            }
        }
        assert!(shown >= 20, "only {shown} defaults shown");
    }

    #[test]
    fn every_setting_has_its_prefixed_environment_variable() {
        for arg in serve_command().get_arguments() {
            let id = arg.get_id().as_str();
            let expected = format!("{ENV_PREFIX}{}", id.to_ascii_uppercase());
            assert_eq!(
                arg.get_env().map(|e| e.to_string_lossy().into_owned()),
                Some(expected),
                "{id}"
            );
        }
    }

    #[test]
    fn every_kind_of_value_survives_the_file_layer() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "listen = \"unix:/run/c.sock\"\nunix_socket_mode = \"0600\"\nbackend = \"onnx\"\n\
             resize = \"centre-crop\"\ndecode_memory_budget_bytes = 1024\n\
             alpha_background = \"#000000\"\ncors_origins = [\"http://a.local\"]\n\
             threshold = 0.5\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "classify-service",
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .unwrap();
        let config = cli.serve.resolve().unwrap();
        assert_eq!(
            config.listen,
            "127.0.0.1:0".parse().unwrap(),
            "flag beats file"
        );
        assert_eq!(config.unix_socket_mode, SocketMode(0o600));
        assert_eq!(config.backend, BackendChoice::Onnx);
        assert_eq!(config.resize, ResizeMode::CentreCrop);
        assert_eq!(config.decode_memory_budget_bytes, Some(1024));
        assert_eq!(config.alpha_background, HexColour([0, 0, 0]));
        assert_eq!(config.cors_origins, ["http://a.local"]);
        assert_eq!(config.threshold, 0.5);
        assert_eq!(
            config.decode_memory_wait_ms,
            Config::default().decode_memory_wait_ms
        );
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let cli =
            Cli::try_parse_from(["classify-service", "--config", "/nonexistent/c.toml"]).unwrap();
        let err = cli.serve.resolve().unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/c.toml"), "{err}");
    }

    #[test]
    fn a_flag_given_with_the_default_value_still_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "top_k = 3\nworkers = 2\n").unwrap();
        let cli = Cli::try_parse_from([
            "classify-service",
            "--config",
            file.to_str().unwrap(),
            "--top-k",
            "5",
        ])
        .unwrap();
        let config = cli.serve.resolve().unwrap();
        assert_eq!(config.top_k, 5);
        assert_eq!(
            config.workers,
            Some(2),
            "the file's value for a flag left out"
        );
    }

    #[test]
    fn the_readme_table_is_generated_from_the_code() {
        const BEGIN: &str = "<!-- configuration table: generated by config::reference_table -->\n";
        const END: &str = "<!-- end of configuration table -->";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let start = readme.find(BEGIN).expect("the table's begin marker") + BEGIN.len();
        let end = readme.find(END).expect("the table's end marker");
        let expected = reference_table();
        assert!(
            readme[start..end] == expected,
            "service/README.md's configuration table differs from the code; replace it \
             with:\n\n{expected}"
        );
    }
}
