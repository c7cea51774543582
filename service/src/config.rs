//! One typed configuration for the whole service, layered from four sources.
//!
//! Precedence, lowest first: built-in defaults < the TOML file named by `--config` (or
//! `CLASSIFY_CONFIG`) < environment variables (`CLASSIFY_*`) < command-line flags. Clap
//! resolves the last two (a flag beats its environment variable); every command-line field is
//! an `Option`, so "not given" never overwrites a value from the file.
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

/// Prefix of every environment variable the service reads.
pub const ENV_PREFIX: &str = "CLASSIFY_";

/// The default listening address: loopback only, so nothing outside the device can reach the
/// model unless an operator says so.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The default Greengrass v2 root directory.
pub const DEFAULT_GREENGRASS_ROOT: &str = "/greengrass/v2";

/// Everything the service can be told. Field docs double as the configuration reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address and port to listen on (`127.0.0.1:8080`; port 0 for an ephemeral port), or
    /// `unix:/path` for a Unix-domain socket (see `unix_socket_mode`).
    pub listen: ListenAddress,
    /// Model directory (graph, params, kernels, `synset.txt`). When absent and `demo` is off,
    /// the newest Greengrass ModelStore ResNet-50 for this machine is used.
    pub model_dir: Option<PathBuf>,
    /// Greengrass v2 root searched for the ModelStore component when `model_dir` is absent.
    pub greengrass_root: PathBuf,
    /// Serve the embedded demo colour model (written to a private temporary directory).
    pub demo: bool,
    /// `libdlr.so` (file or directory). Otherwise: the model directory's copy,
    /// `DLR_LIBRARY_PATH`, the Python `dlr` package, the system loader.
    pub dlr_library: Option<PathBuf>,
    /// The runtime that serves the model. `auto`: ONNX Runtime when the model directory holds
    /// `model.onnx` (or a single `*.onnx` file) and no DLR model, else DLR.
    pub backend: BackendChoice,
    /// `libonnxruntime.so*` for the ONNX backend (file or directory). Otherwise: the model
    /// directory's copy, `ONNXRUNTIME_LIBRARY_PATH`, the Python `onnxruntime` package, the
    /// system library directories.
    pub onnx_library: Option<PathBuf>,
    /// Labels file; defaults to `synset.txt` in the model directory. Python dict literal, one
    /// label per line, or a JSON array/object.
    pub labels: Option<PathBuf>,
    /// Model name reported in answers; defaults to the model directory's name.
    pub model_name: Option<String>,
    /// Model version reported in answers; defaults to the ModelStore version directory (or
    /// "unknown").
    pub model_version: Option<String>,
    /// Model instances, each on its own OS thread with its own DLR handle. Default 1.
    pub workers: Option<usize>,
    /// DLR threads per instance. Default: available CPUs divided by `workers` (at least 1).
    pub threads_per_worker: Option<usize>,
    /// Pin DLR's threads to cores (`UseDLRCPUAffinity`); unset leaves DLR's default.
    pub cpu_affinity: Option<bool>,
    /// Requests admitted and not yet on a model worker (being read, decoded or queued);
    /// beyond that the answer is 503 at once, before the body is read.
    pub queue_capacity: usize,
    /// Warm-up inferences each worker runs before the service reports ready.
    pub warmup_runs: u32,
    /// Per-request deadline in milliseconds (body, decode, queue and inference); 504 after.
    pub request_timeout_ms: u64,
    /// How long shutdown waits for in-flight requests, in milliseconds.
    pub shutdown_timeout_ms: u64,
    /// Time a client has to send its request head (after connecting, or between keep-alive
    /// requests), in milliseconds; the connection is closed after it.
    pub header_read_timeout_ms: u64,
    /// Client connections served at once; further clients wait in the accept backlog.
    pub max_connections: usize,
    /// `Retry-After` seconds sent with 503 answers.
    pub retry_after_secs: u32,
    /// Largest accepted request body (and referenced file), in bytes. 413 beyond.
    pub max_body_bytes: usize,
    /// Largest accepted image width or height, in pixels (decoded size). 413 beyond.
    pub max_image_dimension: u32,
    /// Largest accepted image area, in pixels (decompression-bomb guard). 413 beyond.
    pub max_image_pixels: u64,
    /// Images decoded and preprocessed at once on the blocking pool. Default: available CPUs.
    pub decode_concurrency: Option<usize>,
    /// Bytes all concurrent decodes may hold at once, each estimated from its image's header
    /// (decoder output plus conversion to RGB) before anything is allocated. An image needing
    /// more than all of it gets 413; one that must wait longer than `decode_memory_wait_ms`
    /// for others to finish gets 503. The default, 256 MiB, suits a 1 GB device and admits a
    /// 50-megapixel 8-bit RGB PNG (150 MB) or any JPEG within the limits.
    pub decode_memory_budget_bytes: u64,
    /// Longest a decode waits for its share of the decode memory budget, in milliseconds.
    pub decode_memory_wait_ms: u64,
    /// Channel order fed to the model. GluonCV/ModelStore models expect RGB; the seed fed
    /// OpenCV's BGR unconverted.
    pub channel_order: ChannelOrder,
    /// Resize filter (`fast_image_resize`); every filter but `nearest` is anti-aliased.
    pub resize_filter: ResizeFilter,
    /// Resize geometry: `squash` stretches the whole image to the model's size (the
    /// ModelStore ResNet-50 pipeline); `centre-crop` scales the shorter side to the model's
    /// size / 0.875 (224 → 256) and takes the centre, keeping the aspect ratio (what
    /// EfficientNet-style models are evaluated with). A property of the model.
    pub resize: ResizeMode,
    /// Colour transparent pixels are flattened onto, as `#rrggbb`.
    pub alpha_background: HexColour,
    /// Input layout; `auto` reads it from the model's input shape.
    pub layout: LayoutChoice,
    /// How to read the model's output; `auto` applies softmax unless the output already looks
    /// like probabilities (non-negative, sum ≈ 1).
    pub scores: ScoreMode,
    /// Default number of predictions returned when a request does not say.
    pub top_k: usize,
    /// Default probability threshold (0 to 1) when a request does not say: predictions below
    /// it are left out (the top-1 `label` is always reported).
    pub threshold: f64,
    /// Directories file references (`path`, `image_dir`/`fname`) may read from. Empty: file
    /// references are refused.
    pub allowed_dirs: Vec<PathBuf>,
    /// Log output format.
    pub log_format: LogFormat,
    /// Log filter in `tracing` `EnvFilter` syntax (`RUST_LOG` overrides it).
    pub log_filter: String,
    /// Permissions of the socket file with `listen = "unix:/path"`, in octal: connecting needs
    /// write permission, so the default 0660 admits only the service's user and group.
    pub unix_socket_mode: SocketMode,
    /// Host names accepted in the `Host` header besides `localhost` and IP addresses (which a
    /// DNS-rebinding page cannot send). Requests naming another host get 421.
    pub allowed_hosts: Vec<String>,
    /// Web origins (`scheme://host[:port]`) allowed to call the service from a browser (CORS).
    /// Empty (the default): no CORS headers, and requests carrying any other `Origin` than
    /// the service's own get 403.
    pub cors_origins: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            model_dir: None,
            greengrass_root: PathBuf::from(DEFAULT_GREENGRASS_ROOT),
            demo: false,
            dlr_library: None,
            backend: BackendChoice::Auto,
            onnx_library: None,
            labels: None,
            model_name: None,
            model_version: None,
            workers: None,
            threads_per_worker: None,
            cpu_affinity: None,
            queue_capacity: 64,
            warmup_runs: 1,
            request_timeout_ms: 30_000,
            shutdown_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            max_connections: 256,
            retry_after_secs: 1,
            max_body_bytes: 16 * 1024 * 1024,
            max_image_dimension: 16_384,
            max_image_pixels: 50_000_000,
            decode_concurrency: None,
            decode_memory_budget_bytes: 256 << 20,
            decode_memory_wait_ms: 5_000,
            channel_order: ChannelOrder::Rgb,
            resize_filter: ResizeFilter::Bilinear,
            resize: ResizeMode::Squash,
            alpha_background: HexColour([255, 255, 255]),
            layout: LayoutChoice::Auto,
            scores: ScoreMode::Auto,
            top_k: 5,
            threshold: 0.0,
            allowed_dirs: Vec::new(),
            log_format: LogFormat::Text,
            log_filter: "info".into(),
            unix_socket_mode: SocketMode(0o660),
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
        }
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
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Model instances after applying the default.
    pub fn effective_workers(&self) -> usize {
        self.workers.unwrap_or(1)
    }

    /// DLR threads per instance after applying the default: the CPUs shared among workers.
    pub fn effective_threads_per_worker(&self) -> usize {
        self.threads_per_worker
            .unwrap_or_else(|| (dlr_sys::available_cpus() / self.effective_workers().max(1)).max(1))
    }

    /// Concurrent decodes after applying the default.
    pub fn effective_decode_concurrency(&self) -> usize {
        self.decode_concurrency
            .unwrap_or_else(dlr_sys::available_cpus)
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
            self.decode_memory_budget_bytes,
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

/// Flags of `serve`. Each overrides the TOML key of the same name (dashes for underscores).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file (keys as in the reference table).
    #[arg(long, env = "CLASSIFY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[arg(
        long,
        env = "CLASSIFY_LISTEN",
        value_name = "ADDR:PORT",
        help = "Listen address, or unix:/path for a Unix-domain socket [default: 127.0.0.1:8080]"
    )]
    listen: Option<ListenAddress>,
    #[arg(
        long,
        env = "CLASSIFY_MODEL_DIR",
        value_name = "DIR",
        help = "Model directory [default: discover the Greengrass ModelStore]"
    )]
    model_dir: Option<PathBuf>,
    #[arg(
        long,
        env = "CLASSIFY_GREENGRASS_ROOT",
        value_name = "DIR",
        help = "Greengrass root [default: /greengrass/v2]"
    )]
    greengrass_root: Option<PathBuf>,
    #[arg(long, env = "CLASSIFY_DEMO", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL", help = "Serve the embedded demo model")]
    demo: Option<bool>,
    #[arg(
        long,
        env = "CLASSIFY_DLR_LIBRARY",
        value_name = "PATH",
        help = "libdlr.so file or directory"
    )]
    dlr_library: Option<PathBuf>,
    #[arg(
        long,
        env = "CLASSIFY_BACKEND",
        value_enum,
        help = "Runtime: auto (from the model directory), dlr or onnx [default: auto]"
    )]
    backend: Option<BackendChoice>,
    #[arg(
        long,
        env = "CLASSIFY_ONNX_LIBRARY",
        value_name = "PATH",
        help = "libonnxruntime.so file or directory (ONNX backend)"
    )]
    onnx_library: Option<PathBuf>,
    #[arg(
        long,
        env = "CLASSIFY_LABELS",
        value_name = "FILE",
        help = "Labels file [default: <model_dir>/synset.txt]"
    )]
    labels: Option<PathBuf>,
    #[arg(
        long,
        env = "CLASSIFY_MODEL_NAME",
        help = "Model name in answers [default: model directory name]"
    )]
    model_name: Option<String>,
    #[arg(
        long,
        env = "CLASSIFY_MODEL_VERSION",
        help = "Model version in answers"
    )]
    model_version: Option<String>,
    #[arg(
        long,
        env = "CLASSIFY_WORKERS",
        value_name = "N",
        help = "Model instances [default: 1]"
    )]
    workers: Option<usize>,
    #[arg(
        long,
        env = "CLASSIFY_THREADS_PER_WORKER",
        value_name = "N",
        help = "DLR threads per instance [default: CPUs / workers]"
    )]
    threads_per_worker: Option<usize>,
    #[arg(
        long,
        env = "CLASSIFY_CPU_AFFINITY",
        value_name = "BOOL",
        help = "Pin DLR threads to cores"
    )]
    cpu_affinity: Option<bool>,
    #[arg(
        long,
        env = "CLASSIFY_QUEUE_CAPACITY",
        value_name = "N",
        help = "Waiting requests before 503 [default: 64]"
    )]
    queue_capacity: Option<usize>,
    #[arg(
        long,
        env = "CLASSIFY_WARMUP_RUNS",
        value_name = "N",
        help = "Warm-up inferences per worker [default: 1]"
    )]
    warmup_runs: Option<u32>,
    #[arg(
        long,
        env = "CLASSIFY_REQUEST_TIMEOUT_MS",
        value_name = "MS",
        help = "Per-request deadline [default: 30000]"
    )]
    request_timeout_ms: Option<u64>,
    #[arg(
        long,
        env = "CLASSIFY_SHUTDOWN_TIMEOUT_MS",
        value_name = "MS",
        help = "Grace period for in-flight requests [default: 10000]"
    )]
    shutdown_timeout_ms: Option<u64>,
    #[arg(
        long,
        env = "CLASSIFY_HEADER_READ_TIMEOUT_MS",
        value_name = "MS",
        help = "Time a client has to send its request head [default: 10000]"
    )]
    header_read_timeout_ms: Option<u64>,
    #[arg(
        long,
        env = "CLASSIFY_MAX_CONNECTIONS",
        value_name = "N",
        help = "Client connections served at once [default: 256]"
    )]
    max_connections: Option<usize>,
    #[arg(
        long,
        env = "CLASSIFY_RETRY_AFTER_SECS",
        value_name = "S",
        help = "Retry-After of 503 answers [default: 1]"
    )]
    retry_after_secs: Option<u32>,
    #[arg(
        long,
        env = "CLASSIFY_MAX_BODY_BYTES",
        value_name = "BYTES",
        help = "Largest body or file [default: 16777216]"
    )]
    max_body_bytes: Option<usize>,
    #[arg(
        long,
        env = "CLASSIFY_MAX_IMAGE_DIMENSION",
        value_name = "PX",
        help = "Largest image side [default: 16384]"
    )]
    max_image_dimension: Option<u32>,
    #[arg(
        long,
        env = "CLASSIFY_MAX_IMAGE_PIXELS",
        value_name = "PX",
        help = "Largest image area [default: 50000000]"
    )]
    max_image_pixels: Option<u64>,
    #[arg(
        long,
        env = "CLASSIFY_DECODE_CONCURRENCY",
        value_name = "N",
        help = "Concurrent decodes [default: CPUs]"
    )]
    decode_concurrency: Option<usize>,
    #[arg(
        long,
        env = "CLASSIFY_DECODE_MEMORY_BUDGET_BYTES",
        value_name = "BYTES",
        help = "Memory all concurrent decodes may hold [default: 268435456]"
    )]
    decode_memory_budget_bytes: Option<u64>,
    #[arg(
        long,
        env = "CLASSIFY_DECODE_MEMORY_WAIT_MS",
        value_name = "MS",
        help = "Longest wait for decode memory, then 503 [default: 5000]"
    )]
    decode_memory_wait_ms: Option<u64>,
    #[arg(
        long,
        env = "CLASSIFY_CHANNEL_ORDER",
        value_enum,
        help = "Channel order fed to the model [default: rgb]"
    )]
    channel_order: Option<ChannelOrder>,
    #[arg(
        long,
        env = "CLASSIFY_RESIZE_FILTER",
        value_enum,
        help = "Resize filter [default: bilinear]"
    )]
    resize_filter: Option<ResizeFilter>,
    #[arg(
        long,
        env = "CLASSIFY_RESIZE",
        value_enum,
        help = "Resize geometry [default: squash]"
    )]
    resize: Option<ResizeMode>,
    #[arg(
        long,
        env = "CLASSIFY_ALPHA_BACKGROUND",
        value_name = "#RRGGBB",
        help = "Background for transparent pixels [default: #ffffff]"
    )]
    alpha_background: Option<HexColour>,
    #[arg(
        long,
        env = "CLASSIFY_LAYOUT",
        value_enum,
        help = "Input layout [default: auto]"
    )]
    layout: Option<LayoutChoice>,
    #[arg(
        long,
        env = "CLASSIFY_SCORES",
        value_enum,
        help = "Output interpretation [default: auto]"
    )]
    scores: Option<ScoreMode>,
    #[arg(
        long,
        env = "CLASSIFY_TOP_K",
        value_name = "N",
        help = "Default predictions per answer [default: 5]"
    )]
    top_k: Option<usize>,
    #[arg(
        long,
        env = "CLASSIFY_THRESHOLD",
        value_name = "P",
        help = "Default probability threshold, 0 to 1 [default: 0]"
    )]
    threshold: Option<f64>,
    #[arg(
        long = "allowed-dir",
        env = "CLASSIFY_ALLOWED_DIRS",
        value_delimiter = ':',
        value_name = "DIR",
        help = "Directory file references may read (repeatable; env: colon-separated)"
    )]
    allowed_dirs: Vec<PathBuf>,
    #[arg(
        long,
        env = "CLASSIFY_LOG_FORMAT",
        value_enum,
        help = "Log format [default: text]"
    )]
    log_format: Option<LogFormat>,
    #[arg(
        long,
        env = "CLASSIFY_LOG_FILTER",
        value_name = "FILTER",
        help = "Log filter [default: info]"
    )]
    log_filter: Option<String>,
    #[arg(
        long,
        env = "CLASSIFY_UNIX_SOCKET_MODE",
        value_name = "OCTAL",
        help = "Mode of the socket file with --listen unix:/path [default: 0660]"
    )]
    unix_socket_mode: Option<SocketMode>,
    #[arg(
        long = "allowed-host",
        env = "CLASSIFY_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_name = "NAME",
        help = "Host header name accepted besides localhost and IP addresses (repeatable; env: comma-separated)"
    )]
    allowed_hosts: Vec<String>,
    #[arg(
        long = "cors-origin",
        env = "CLASSIFY_CORS_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN",
        help = "Browser origin allowed by CORS, scheme://host[:port] (repeatable; env: comma-separated) [default: none]"
    )]
    cors_origins: Vec<String>,
}

impl ServeArgs {
    /// Resolves the layers: defaults < file < environment < flags.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::from_toml_file(path)?,
            None => Config::default(),
        };
        macro_rules! overlay {
            ($($field:ident),* $(,)?) => {$(
                if let Some(value) = self.$field.clone() { config.$field = value; }
            )*};
        }
        overlay!(
            listen,
            greengrass_root,
            demo,
            backend,
            queue_capacity,
            warmup_runs,
            request_timeout_ms,
            shutdown_timeout_ms,
            header_read_timeout_ms,
            max_connections,
            retry_after_secs,
            max_body_bytes,
            max_image_dimension,
            max_image_pixels,
            decode_memory_budget_bytes,
            decode_memory_wait_ms,
            channel_order,
            resize_filter,
            resize,
            alpha_background,
            layout,
            scores,
            top_k,
            threshold,
            log_format,
            log_filter,
        );
        macro_rules! overlay_option {
            ($($field:ident),* $(,)?) => {$(
                if self.$field.is_some() { config.$field = self.$field.clone(); }
            )*};
        }
        overlay_option!(
            model_dir,
            dlr_library,
            onnx_library,
            labels,
            model_name,
            model_version,
            workers,
            threads_per_worker,
            cpu_affinity,
            decode_concurrency,
        );
        if !self.allowed_dirs.is_empty() {
            config.allowed_dirs = self.allowed_dirs.clone();
        }
        if let Some(mode) = self.unix_socket_mode {
            config.unix_socket_mode = mode;
        }
        if !self.allowed_hosts.is_empty() {
            config.allowed_hosts = self.allowed_hosts.clone();
        }
        if !self.cors_origins.is_empty() {
            config.cors_origins = self.cors_origins.clone();
        }
        Ok(config)
    }
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
