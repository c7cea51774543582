//! Command-line and environment configuration of every subcommand (clap derive).
//!
//! Each flag can also come from the environment variable shown in `--help`. The nucleus passes
//! the socket path and token to a component as `AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT`
//! and `SVCUID`, so inside Greengrass the adapter needs no flag for them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use greengrass_ipc::Flavour;

/// Every default of the adapter's settings, written once: clap's defaults, the `Default` impls,
/// the constructors and (through `greengrass-ipc`'s own `ClientConfig` defaults, which the
/// connection settings are) the IPC client read these.
pub mod defaults {
    use greengrass_ipc::Flavour;
    use greengrass_ipc::client::ClientConfig;

    use super::ReplyFormat;

    /// `--nucleus`: lite, whose frame limit is also safe for classic.
    pub const NUCLEUS: Flavour = Flavour::Lite;
    /// `--max-incoming-frame-bytes` (see [`ClientConfig::DEFAULT_MAX_INCOMING_FRAME`]).
    pub const MAX_INCOMING_FRAME_BYTES: usize = ClientConfig::DEFAULT_MAX_INCOMING_FRAME;
    /// `--socket-wait-ms` (see [`ClientConfig::DEFAULT_SOCKET_WAIT`]).
    pub const SOCKET_WAIT_MS: u64 = ClientConfig::DEFAULT_SOCKET_WAIT.as_millis() as u64;
    /// `--ipc-timeout-ms` (see [`ClientConfig::DEFAULT_TIMEOUT`]).
    pub const IPC_TIMEOUT_MS: u64 = ClientConfig::DEFAULT_TIMEOUT.as_millis() as u64;
    /// `--request-topic`: the seed's.
    pub const REQUEST_TOPIC: &str = "local/inference";
    /// `--reply-topic`: the seed's.
    pub const REPLY_TOPIC: &str = "local/result";
    /// `--reply-deadline-ms`.
    pub const REPLY_DEADLINE_MS: u64 = 10_000;
    /// `--liveness-interval-ms`.
    pub const LIVENESS_INTERVAL_MS: u64 = 30_000;
    /// `--liveness-timeout-ms`.
    pub const LIVENESS_TIMEOUT_MS: u64 = 10_000;
    /// `--service-url`: the service's own default listen address.
    pub const SERVICE_URL: &str = "http://127.0.0.1:8080";
    /// `--reply-format`.
    pub const REPLY_FORMAT: ReplyFormat = ReplyFormat::Json;
    /// `--max-in-flight`.
    pub const MAX_IN_FLIGHT: u32 = 4;
    /// `--max-queued`.
    pub const MAX_QUEUED: u32 = 1024;
    /// `--max-queued-bytes` when not set: a quarter of the memory limit the adapter runs under
    /// (see [`queued_bytes_for`]), at most this, 64 MiB.
    pub const MAX_QUEUED_BYTES: u64 = 64 << 20;

    /// The derived `--max-queued-bytes` under a memory limit of `limit` bytes (`None`: none
    /// known): a quarter of it — a waiting message is held once more while it is sent to the
    /// service, and the process needs room of its own —, never less than one largest incoming
    /// frame (`max_frame`, so a single request is never refused for it), at most
    /// [`MAX_QUEUED_BYTES`].
    pub fn queued_bytes_for(limit: Option<u64>, max_frame: usize) -> u64 {
        let quarter = limit.map_or(MAX_QUEUED_BYTES, |limit| limit / 4);
        quarter.min(MAX_QUEUED_BYTES).max(max_frame as u64)
    }
    /// `schedule --max-image-bytes`: 12 MiB, which base64 turns into the service's 16 MiB.
    pub const MAX_IMAGE_BYTES: u64 = 12 << 20;
    /// `schedule --classify-deadline-ms`: 30 s, long enough for a service still loading its
    /// model at the first, start-up classification.
    pub const CLASSIFY_DEADLINE_MS: u64 = 30_000;
    /// `schedule --spool-max-results`: 1000 results (41 days of the hourly default).
    pub const SPOOL_MAX_RESULTS: usize = 1000;
    /// `schedule --spool-max-bytes`: 4 MiB.
    pub const SPOOL_MAX_BYTES: usize = 4 << 20;
    /// `schedule --spool-retry-max-ms`: at most a minute between delivery attempts.
    pub const SPOOL_RETRY_MAX_MS: u64 = 60_000;
    /// `schedule --new-images-max-pending`: 16 new images waiting at most.
    pub const NEW_IMAGES_MAX_PENDING: usize = 16;
}

/// Environment variables renamed to the adapter's own prefix, as `(name, former name)`: every
/// adapter variable is `CLASSIFY_ADAPTER_*`, so an environment shared with the service (whose
/// variables are `CLASSIFY_*`) says which program each one is for. The former names are still
/// read, with a warning, for one release (they go in 0.2.0), when the new one is not set.
pub const RENAMED_ENV: &[(&str, &str)] = &[
    ("CLASSIFY_ADAPTER_NUCLEUS", "CLASSIFY_NUCLEUS"),
    (
        "CLASSIFY_ADAPTER_MAX_INCOMING_FRAME_BYTES",
        "CLASSIFY_MAX_INCOMING_FRAME_BYTES",
    ),
    ("CLASSIFY_ADAPTER_SOCKET_WAIT_MS", "CLASSIFY_SOCKET_WAIT_MS"),
    ("CLASSIFY_ADAPTER_IPC_TIMEOUT_MS", "CLASSIFY_IPC_TIMEOUT_MS"),
    ("CLASSIFY_ADAPTER_REQUEST_TOPIC", "CLASSIFY_REQUEST_TOPIC"),
    ("CLASSIFY_ADAPTER_REPLY_TOPIC", "CLASSIFY_REPLY_TOPIC"),
    ("CLASSIFY_ADAPTER_SERVICE_URL", "CLASSIFY_SERVICE_URL"),
    ("CLASSIFY_ADAPTER_REPLY_FORMAT", "CLASSIFY_REPLY_FORMAT"),
    ("CLASSIFY_ADAPTER_MAX_IN_FLIGHT", "CLASSIFY_MAX_IN_FLIGHT"),
    ("CLASSIFY_ADAPTER_MAX_QUEUED", "CLASSIFY_MAX_QUEUED"),
];

/// The command line of every subcommand, with each renamed option reading its former variable
/// (see [`RENAMED_ENV`]) when `var` has that one and not the new one; returns the warnings to
/// log, one per former variable read.
pub fn command(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> (clap::Command, Vec<String>) {
    use clap::CommandFactory;
    let mut warnings = Vec::new();
    let mut read_former = |arg: clap::Arg| -> clap::Arg {
        let Some(name) = arg.get_env().and_then(|e| e.to_str()) else {
            return arg;
        };
        let Some(&(name, former)) = RENAMED_ENV.iter().find(|(new, _)| *new == name) else {
            return arg;
        };
        if var(name).is_some() || var(former).is_none() {
            return arg;
        }
        let warning = format!(
            "the environment variable {former} is deprecated and will be ignored from \
             version 0.2.0; it is read for now because {name} is not set: rename it to {name}"
        );
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
        arg.env(former)
    };
    let command = Cli::command()
        .mut_args(&mut read_former)
        .mut_subcommands(|sub| sub.mut_args(&mut read_former));
    (command, warnings)
}

/// Environment variable holding the nucleus socket path.
pub const ENV_SOCKET: &str = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT";
/// Environment variable holding the component's IPC token.
pub const ENV_TOKEN: &str = "SVCUID";

/// Format of the replies the adapter publishes (default: [`defaults::REPLY_FORMAT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplyFormat {
    /// A JSON reply document: request_id, status, label, predictions or error.
    Json,
    /// Only the top-1 label text as a binaryMessage, like the seed's classifier
    /// (errors become `ERROR <code>: <message>`).
    Label,
}

/// `classify-ipc-adapter [run] …` / `emulate …` / `request …`.
#[derive(Debug, Parser)]
#[command(
    name = "classify-ipc-adapter",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Subcommand; without one the adapter runs (`run`).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Adapter options when no subcommand is given.
    #[command(flatten)]
    pub run: AdapterConfig,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the adapter: local/inference → POST /classify → local/result (the default).
    Run(AdapterConfig),
    /// Run a local nucleus IPC emulator on a Unix socket (development builds only).
    #[cfg(feature = "emulator")]
    Emulate(EmulatorArgs),
    /// Publish one classification request and print the reply.
    Request(RequestArgs),
    /// Classify ImageDirectory/ImageName at start and every InferenceInterval seconds and publish
    /// the result to IoT Core: a drop-in for aws.greengrass.DLRImageClassification, configured by
    /// the component's configuration (GetConfiguration).
    Schedule(ScheduleArgs),
    /// Wait until ready files exist (scripts: start `emulate`/`run` in the background, then this).
    WaitReady(WaitReadyArgs),
}

/// Connection to the nucleus, shared by `run` and `request`.
#[derive(Debug, Clone, Args, PartialEq, Eq)]
pub struct IpcArgs {
    /// Nucleus IPC Unix socket path.
    #[arg(long = "socket", env = ENV_SOCKET, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Component IPC token sent in Connect.
    #[arg(long = "auth-token", env = ENV_TOKEN, hide_env_values = true, value_name = "TOKEN")]
    pub auth_token: Option<String>,
    /// Nucleus flavour: `lite` caps outgoing frames at 9999 bytes and sends every reply as a
    /// binaryMessage (lite drops jsonMessages of more than 50 JSON values); `classic` allows 24 MiB.
    #[arg(long = "nucleus", env = "CLASSIFY_ADAPTER_NUCLEUS", value_enum, default_value_t = defaults::NUCLEUS)]
    pub nucleus: Flavour,
    /// Incoming IPC frames above this many bytes are not read; a request that large is answered
    /// with a `message_too_large` error.
    #[arg(long = "max-incoming-frame-bytes", env = "CLASSIFY_ADAPTER_MAX_INCOMING_FRAME_BYTES", default_value_t = defaults::MAX_INCOMING_FRAME_BYTES)]
    pub max_incoming_frame_bytes: usize,
    /// Timeouts of the nucleus connection.
    #[command(flatten)]
    pub timeouts: IpcTimeouts,
}

/// How long to wait for the nucleus: its socket at start-up, then each operation.
#[derive(Debug, Clone, Copy, Args, PartialEq, Eq)]
pub struct IpcTimeouts {
    /// How long to keep retrying (with a growing pause, 50 ms up to 2 s) while the nucleus socket
    /// does not exist or refuses connections, in milliseconds; 0 tries once.
    #[arg(
        long = "socket-wait-ms",
        env = "CLASSIFY_ADAPTER_SOCKET_WAIT_MS",
        default_value_t = defaults::SOCKET_WAIT_MS
    )]
    pub socket_wait_ms: u64,
    /// Timeout for the Connect handshake and for each IPC operation, in milliseconds.
    #[arg(
        long = "ipc-timeout-ms",
        env = "CLASSIFY_ADAPTER_IPC_TIMEOUT_MS",
        default_value_t = defaults::IPC_TIMEOUT_MS
    )]
    pub ipc_timeout_ms: u64,
}

impl Default for IpcTimeouts {
    fn default() -> Self {
        Self {
            socket_wait_ms: defaults::SOCKET_WAIT_MS,
            ipc_timeout_ms: defaults::IPC_TIMEOUT_MS,
        }
    }
}

/// The two pub/sub topics, shared by `run` (subscribe / answer) and `request` (publish / wait).
#[derive(Debug, Clone, Args, PartialEq, Eq)]
pub struct TopicArgs {
    /// Topic requests are published on (the adapter subscribes to it).
    #[arg(
        long = "request-topic",
        env = "CLASSIFY_ADAPTER_REQUEST_TOPIC",
        default_value = defaults::REQUEST_TOPIC
    )]
    pub request_topic: String,
    /// Topic replies are published on, unless a request names its own `reply_topic`.
    #[arg(
        long = "reply-topic",
        env = "CLASSIFY_ADAPTER_REPLY_TOPIC",
        default_value = defaults::REPLY_TOPIC
    )]
    pub reply_topic: String,
}

impl Default for TopicArgs {
    fn default() -> Self {
        Self {
            request_topic: defaults::REQUEST_TOPIC.into(),
            reply_topic: defaults::REPLY_TOPIC.into(),
        }
    }
}

impl IpcArgs {
    /// Settings for `socket` and `token` with every other value at its default.
    pub fn new(socket: impl Into<PathBuf>, token: impl Into<String>) -> Self {
        Self {
            socket: Some(socket.into()),
            auth_token: Some(token.into()),
            nucleus: defaults::NUCLEUS,
            max_incoming_frame_bytes: defaults::MAX_INCOMING_FRAME_BYTES,
            timeouts: IpcTimeouts::default(),
        }
    }

    /// Client settings, or an error naming the missing variable.
    pub fn client_config(&self) -> Result<greengrass_ipc::client::ClientConfig, String> {
        let socket = self
            .socket
            .clone()
            .ok_or_else(|| format!("no nucleus socket: pass --socket or set {ENV_SOCKET}"))?;
        let token = self
            .auth_token
            .clone()
            .ok_or_else(|| format!("no IPC token: pass --auth-token or set {ENV_TOKEN}"))?;
        let timeout = Duration::from_millis(self.timeouts.ipc_timeout_ms);
        Ok(greengrass_ipc::client::ClientConfig {
            socket_path: socket,
            auth_token: token,
            max_incoming_frame: self.max_incoming_frame_bytes,
            max_outgoing_frame: self.nucleus.max_outgoing_frame(),
            socket_wait: Duration::from_millis(self.timeouts.socket_wait_ms),
            connect_timeout: timeout,
            operation_timeout: timeout,
        })
    }
}

/// The adapter's own deadlines and its liveness probe.
#[derive(Debug, Clone, Copy, Args, PartialEq, Eq)]
pub struct AdapterTimeouts {
    /// Deadline for answering one request, in milliseconds: the wait for a free in-flight slot,
    /// the service call and its retries while the service is starting. Past it the request is
    /// answered with `timeout`. (Not the service's own `CLASSIFY_REQUEST_TIMEOUT_MS`.)
    #[arg(
        long = "reply-deadline-ms",
        env = "CLASSIFY_ADAPTER_REPLY_DEADLINE_MS",
        default_value_t = defaults::REPLY_DEADLINE_MS
    )]
    pub reply_deadline_ms: u64,
    /// How often the adapter publishes a liveness probe to itself on the request topic, in
    /// milliseconds; 0 turns the probe off. Nucleus lite drops subscriptions without telling
    /// the client: a probe that does not come back means the adapter went deaf, and it exits
    /// with status 4 so that Greengrass restarts it.
    #[arg(
        long = "liveness-interval-ms",
        env = "CLASSIFY_ADAPTER_LIVENESS_INTERVAL_MS",
        default_value_t = defaults::LIVENESS_INTERVAL_MS
    )]
    pub liveness_interval_ms: u64,
    /// How long a probe may take to come back before the adapter counts itself deaf, in
    /// milliseconds.
    #[arg(
        long = "liveness-timeout-ms",
        env = "CLASSIFY_ADAPTER_LIVENESS_TIMEOUT_MS",
        default_value_t = defaults::LIVENESS_TIMEOUT_MS
    )]
    pub liveness_timeout_ms: u64,
}

impl Default for AdapterTimeouts {
    fn default() -> Self {
        Self {
            reply_deadline_ms: defaults::REPLY_DEADLINE_MS,
            liveness_interval_ms: defaults::LIVENESS_INTERVAL_MS,
            liveness_timeout_ms: defaults::LIVENESS_TIMEOUT_MS,
        }
    }
}

impl AdapterTimeouts {
    /// The per-request deadline.
    pub fn reply_deadline(&self) -> Duration {
        Duration::from_millis(self.reply_deadline_ms)
    }
}

/// Configuration of the adapter (`run`).
#[derive(Debug, Clone, Args, PartialEq, Eq)]
pub struct AdapterConfig {
    /// Nucleus connection.
    #[command(flatten)]
    pub ipc: IpcArgs,
    /// Request and reply topics.
    #[command(flatten)]
    pub topics: TopicArgs,
    /// Deadlines and the liveness probe.
    #[command(flatten)]
    pub timeouts: AdapterTimeouts,
    /// Base URL of the classification service (`POST {url}/classify`).
    #[arg(
        long = "service-url",
        env = "CLASSIFY_ADAPTER_SERVICE_URL",
        default_value = defaults::SERVICE_URL
    )]
    pub service_url: String,
    /// Reply format: `json` documents or the seed's `label` text.
    #[arg(long = "reply-format", env = "CLASSIFY_ADAPTER_REPLY_FORMAT", value_enum, default_value_t = defaults::REPLY_FORMAT)]
    pub reply_format: ReplyFormat,
    /// Requests processed concurrently (calls to the service in flight).
    #[arg(long = "max-in-flight", env = "CLASSIFY_ADAPTER_MAX_IN_FLIGHT", default_value_t = defaults::MAX_IN_FLIGHT, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,
    /// Requests allowed to wait for a slot; beyond that a request gets an `overloaded` reply at once.
    #[arg(
        long = "max-queued",
        env = "CLASSIFY_ADAPTER_MAX_QUEUED",
        default_value_t = defaults::MAX_QUEUED
    )]
    pub max_queued: u32,
    /// Bytes of request messages (their payloads) admitted at once, waiting or in flight;
    /// beyond that a request gets an `overloaded` reply at once. Default: a quarter of the
    /// memory limit the adapter runs under (its cgroup's, or the machine's), at least one
    /// largest incoming frame, at most 64 MiB.
    #[arg(
        long = "max-queued-bytes",
        env = "CLASSIFY_ADAPTER_MAX_QUEUED_BYTES",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max_queued_bytes: Option<u64>,
    /// Do not report RUNNING to the nucleus (`UpdateState`) once subscribed. Only for a recipe
    /// that starts the adapter in a `Run` step, where the nucleus counts it running at once.
    #[arg(long = "no-report-state", env = "CLASSIFY_ADAPTER_NO_REPORT_STATE")]
    pub no_report_state: bool,
    /// File written (atomically, containing `ready`) once the adapter is subscribed, has seen
    /// its own probe come back and has reported RUNNING: scripts wait for it instead of sleeping.
    #[arg(long = "ready-file", value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

impl AdapterConfig {
    /// A configuration for tests and embedding: everything default except the given endpoints.
    pub fn new(
        socket: impl Into<PathBuf>,
        token: impl Into<String>,
        service_url: impl Into<String>,
    ) -> Self {
        Self {
            ipc: IpcArgs::new(socket, token),
            topics: TopicArgs::default(),
            timeouts: AdapterTimeouts::default(),
            service_url: service_url.into(),
            reply_format: defaults::REPLY_FORMAT,
            max_in_flight: defaults::MAX_IN_FLIGHT,
            max_queued: defaults::MAX_QUEUED,
            max_queued_bytes: None,
            no_report_state: false,
            ready_file: None,
        }
    }
}

/// Options of `emulate`.
#[cfg(feature = "emulator")]
#[derive(Debug, Clone, Args)]
pub struct EmulatorArgs {
    /// Unix socket path to listen on.
    #[arg(long = "socket", env = "CLASSIFY_EMULATOR_SOCKET", value_name = "PATH")]
    pub socket: PathBuf,
    /// Recipe-style accessControl file or whole recipe (JSON or YAML); repeat it to combine
    /// several components' policies. Without any, every topic is allowed. A whole recipe's
    /// DefaultConfiguration is also its component's configuration (GetConfiguration).
    #[arg(
        long = "access-control",
        env = "CLASSIFY_EMULATOR_ACCESS_CONTROL",
        value_name = "FILE"
    )]
    pub access_control: Vec<PathBuf>,
    /// Per-component configuration merged over the recipes' defaults, as a deployment's merge
    /// does (JSON or YAML: `{"<component>": {"Key": "value"}}`). Watched: when it changes,
    /// subscribers get configuration update events.
    #[arg(
        long = "configuration",
        env = "CLASSIFY_EMULATOR_CONFIGURATION",
        value_name = "FILE"
    )]
    pub configuration: Option<PathBuf>,
    /// Append each message that reaches IoT Core (PublishToIoTCore) to this file as one JSON
    /// line: topic, qos, component, spooled, payload (as published).
    #[arg(
        long = "iot-core-log",
        env = "CLASSIFY_EMULATOR_IOT_CORE_LOG",
        value_name = "FILE"
    )]
    pub iot_core_log: Option<PathBuf>,
    /// The cloud is unreachable while this file exists: the classic nucleus spools QoS 1
    /// messages, nucleus lite fails the publish (`touch` it to go offline, remove it to
    /// reconnect).
    #[arg(long = "cloud-unreachable-while", value_name = "PATH")]
    pub cloud_unreachable_while: Option<PathBuf>,
    /// Nucleus behaviour to imitate.
    #[arg(long = "flavour", env = "CLASSIFY_EMULATOR_FLAVOUR", value_enum, default_value_t = Flavour::Classic)]
    pub flavour: Flavour,
    /// Accepted token as `TOKEN=COMPONENT` (repeatable). Without any, a token equal to a component
    /// named in the access-control file is accepted (or any token when there is no file).
    #[arg(long = "token", value_name = "TOKEN=COMPONENT", value_parser = parse_token)]
    pub tokens: Vec<(String, String)>,
    /// File written (atomically, containing `ready`) once the socket accepts connections.
    #[arg(long = "ready-file", value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

#[cfg(feature = "emulator")]
fn parse_token(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((t, c)) if !t.is_empty() && !c.is_empty() => Ok((t.to_owned(), c.to_owned())),
        _ => Err(format!("expected TOKEN=COMPONENT, got {s:?}")),
    }
}

/// Options of `schedule`. What to classify, how often and where to publish come from the
/// component's configuration (AWS's keys, see `scheduled::settings`), not from flags.
#[derive(Debug, Clone, Args)]
pub struct ScheduleArgs {
    /// Nucleus connection.
    #[command(flatten)]
    pub ipc: IpcArgs,
    /// Base URL of the classification service.
    #[arg(
        long = "service-url",
        env = "CLASSIFY_SCHEDULE_SERVICE_URL",
        default_value = defaults::SERVICE_URL
    )]
    pub service_url: String,
    /// Folder of the image when the configuration has no ImageDirectory (the recipe passes the
    /// component's sample images); a relative path is taken from the working directory.
    #[arg(
        long = "default-image-directory",
        env = "CLASSIFY_SCHEDULE_DEFAULT_IMAGE_DIRECTORY",
        default_value = ".",
        value_name = "DIR"
    )]
    pub default_image_directory: PathBuf,
    /// Largest image file read, in bytes; a larger one is a logged error (the file travels
    /// base64-encoded, so 12 MiB fits the service's default 16 MiB body limit).
    #[arg(
        long = "max-image-bytes",
        env = "CLASSIFY_SCHEDULE_MAX_IMAGE_BYTES",
        default_value_t = defaults::MAX_IMAGE_BYTES
    )]
    pub max_image_bytes: u64,
    /// Deadline of one classification (the service call and its retries while the service is
    /// still starting), in milliseconds.
    #[arg(
        long = "classify-deadline-ms",
        env = "CLASSIFY_SCHEDULE_CLASSIFY_DEADLINE_MS",
        default_value_t = defaults::CLASSIFY_DEADLINE_MS
    )]
    pub classify_deadline_ms: u64,
    /// Results kept while IoT Core cannot be reached (nucleus lite has no spooler); beyond it
    /// the oldest are dropped, and counted in the log.
    #[arg(
        long = "spool-max-results",
        env = "CLASSIFY_SCHEDULE_SPOOL_MAX_RESULTS",
        default_value_t = defaults::SPOOL_MAX_RESULTS
    )]
    pub spool_max_results: usize,
    /// Bytes of results kept while IoT Core cannot be reached.
    #[arg(
        long = "spool-max-bytes",
        env = "CLASSIFY_SCHEDULE_SPOOL_MAX_BYTES",
        default_value_t = defaults::SPOOL_MAX_BYTES
    )]
    pub spool_max_bytes: usize,
    /// Longest pause between attempts to deliver kept results, in milliseconds (the pause
    /// doubles from 1 s up to it).
    #[arg(
        long = "spool-retry-max-ms",
        env = "CLASSIFY_SCHEDULE_SPOOL_RETRY_MAX_MS",
        default_value_t = defaults::SPOOL_RETRY_MAX_MS
    )]
    pub spool_retry_max_ms: u64,
    /// New images (ClassifyNewImages) allowed to wait for their turn; when a burst brings more,
    /// the oldest waiting ones are dropped and counted in the log.
    #[arg(
        long = "new-images-max-pending",
        env = "CLASSIFY_SCHEDULE_NEW_IMAGES_MAX_PENDING",
        default_value_t = defaults::NEW_IMAGES_MAX_PENDING
    )]
    pub new_images_max_pending: usize,
    /// File written (atomically, containing `ready`) once the configuration is read and the
    /// schedule started; removed at exit.
    #[arg(long = "ready-file", value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

impl ScheduleArgs {
    /// Settings for `socket`, `token` and `service_url` with every other value at its default.
    pub fn new(
        socket: impl Into<PathBuf>,
        token: impl Into<String>,
        service_url: impl Into<String>,
    ) -> Self {
        Self {
            ipc: IpcArgs::new(socket, token),
            service_url: service_url.into(),
            default_image_directory: PathBuf::from("."),
            max_image_bytes: defaults::MAX_IMAGE_BYTES,
            classify_deadline_ms: defaults::CLASSIFY_DEADLINE_MS,
            spool_max_results: defaults::SPOOL_MAX_RESULTS,
            spool_max_bytes: defaults::SPOOL_MAX_BYTES,
            spool_retry_max_ms: defaults::SPOOL_RETRY_MAX_MS,
            new_images_max_pending: defaults::NEW_IMAGES_MAX_PENDING,
            ready_file: None,
        }
    }
}

/// Options of `request`.
#[derive(Debug, Clone, Args)]
pub struct RequestArgs {
    /// Nucleus connection.
    #[command(flatten)]
    pub ipc: IpcArgs,
    /// Image directory (with `--fname`), as in the seed's requests.
    #[arg(long = "image-dir", requires = "fname", conflicts_with_all = ["path", "image_base64_file"])]
    pub image_dir: Option<String>,
    /// Image file name inside `--image-dir`.
    #[arg(long = "fname", requires = "image_dir")]
    pub fname: Option<String>,
    /// Image path on the device.
    #[arg(long = "path", conflicts_with = "image_base64_file")]
    pub path: Option<String>,
    /// Local image file to send inline as `image_base64` (small images; lite limits frames to 10 KB).
    #[arg(long = "image-base64-file", value_name = "FILE")]
    pub image_base64_file: Option<PathBuf>,
    /// Number of predictions wanted.
    #[arg(long = "top-k")]
    pub top_k: Option<u32>,
    /// Minimum probability of returned predictions (0..1).
    #[arg(long = "threshold")]
    pub threshold: Option<f64>,
    /// Request id (a UUID is generated when absent).
    #[arg(long = "request-id")]
    pub request_id: Option<String>,
    /// Request and reply topics (the reply topic is sent as the request's `reply_topic` when it
    /// is not the default).
    #[command(flatten)]
    pub topics: TopicArgs,
    /// Send the request as a jsonMessage instead of the seed's binaryMessage.
    #[arg(long = "json-message")]
    pub json_message: bool,
    /// How long to wait for the reply, in milliseconds.
    #[arg(long = "timeout-ms", default_value_t = 30_000)]
    pub timeout_ms: u64,
}

/// Options of `wait-ready`.
#[derive(Debug, Clone, Args)]
pub struct WaitReadyArgs {
    /// The ready file(s) to wait for (`run --ready-file`, `emulate --ready-file`).
    #[arg(required = true, value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Give up (exit 1) after this many milliseconds.
    #[arg(long = "timeout-ms", default_value_t = 60_000)]
    pub timeout_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_reply_deadline_has_a_name_of_its_own() {
        let help = Cli::command()
            .find_subcommand_mut("run")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.contains("--reply-deadline-ms"), "{help}");
        assert!(
            help.contains("CLASSIFY_ADAPTER_REPLY_DEADLINE_MS"),
            "{help}"
        );
        // The service's variable of that name means its own deadline; the adapter ignores it.
        assert!(!help.contains("env: CLASSIFY_REQUEST_TIMEOUT_MS"), "{help}");
        assert!(!help.contains("--request-timeout-ms"), "{help}");
        let cli = Cli::try_parse_from(["x", "run", "--reply-deadline-ms", "1234"]).unwrap();
        let Some(Command::Run(config)) = cli.command else {
            panic!()
        };
        assert_eq!(config.timeouts.reply_deadline_ms, 1234);
    }

    #[test]
    fn every_default_is_the_same_through_clap_the_constructors_and_the_client() {
        // Nothing in the environment may stand in for a default here.
        let cli = Cli::try_parse_from(["x", "--socket", "/s", "--auth-token", "t"]).unwrap();
        let constructed = AdapterConfig::new("/s", "t", defaults::SERVICE_URL);
        assert_eq!(cli.run, constructed);
        let client = constructed.ipc.client_config().unwrap();
        assert_eq!(
            client,
            greengrass_ipc::client::ClientConfig::new("/s", "t"),
            "the adapter's connection defaults are the IPC client's"
        );
        let Some(Command::Request(request)) = Cli::try_parse_from([
            "x",
            "request",
            "--socket",
            "/s",
            "--auth-token",
            "t",
            "--path",
            "/p",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(request.ipc, constructed.ipc);
        assert_eq!(request.topics, constructed.topics);
    }

    #[test]
    fn every_renamed_variable_is_an_option_s_variable_and_follows_the_prefix() {
        let (parser, warnings) = command(|_| None);
        assert!(warnings.is_empty());
        let mut names = Vec::new();
        for sub in std::iter::once(&parser).chain(parser.get_subcommands()) {
            for arg in sub.get_arguments() {
                if let Some(name) = arg.get_env().and_then(|e| e.to_str()) {
                    names.push(name.to_owned());
                }
            }
        }
        for (name, former) in RENAMED_ENV {
            assert!(
                names.iter().any(|n| n == name),
                "{name} is an option's variable"
            );
            assert!(
                !names.iter().any(|n| n == former),
                "{former} is no longer one"
            );
            assert!(name.starts_with("CLASSIFY_ADAPTER_"), "{name}");
        }
        for name in &names {
            assert!(
                name.starts_with("CLASSIFY_ADAPTER_")
                    || name.starts_with("CLASSIFY_EMULATOR_")
                    || name.starts_with("CLASSIFY_SCHEDULE_")
                    || [ENV_SOCKET, ENV_TOKEN].contains(&name.as_str()),
                "{name}: adapter variables are CLASSIFY_ADAPTER_*"
            );
        }
    }

    #[test]
    fn a_former_variable_is_read_only_when_its_new_name_is_not_set() {
        let only_former = |name: &str| {
            (name == "CLASSIFY_SOCKET_WAIT_MS").then(|| std::ffi::OsString::from("300"))
        };
        let (parser, warnings) = command(only_former);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("CLASSIFY_SOCKET_WAIT_MS")
                && warnings[0].contains("CLASSIFY_ADAPTER_SOCKET_WAIT_MS"),
            "{warnings:?}"
        );
        let run = parser
            .get_subcommands()
            .find(|s| s.get_name() == "run")
            .unwrap();
        let wait = run
            .get_arguments()
            .find(|a| a.get_id() == "socket_wait_ms")
            .unwrap();
        assert_eq!(wait.get_env().unwrap(), "CLASSIFY_SOCKET_WAIT_MS");
        let both = |name: &str| name.contains("SOCKET_WAIT_MS").then(|| "1".into());
        let (_, warnings) = command(both);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn the_queued_bytes_default_is_a_quarter_of_the_limit_within_bounds() {
        const MIB: u64 = 1 << 20;
        let frame = defaults::MAX_INCOMING_FRAME_BYTES;
        assert_eq!(defaults::queued_bytes_for(Some(128 * MIB), frame), 32 * MIB);
        assert_eq!(defaults::queued_bytes_for(Some(24 << 30), frame), 64 * MIB);
        assert_eq!(defaults::queued_bytes_for(None, frame), 64 * MIB);
        // One largest frame always fits, however small the limit.
        assert_eq!(
            defaults::queued_bytes_for(Some(8 * MIB), frame),
            frame as u64
        );
        assert_eq!(
            defaults::queued_bytes_for(Some(8 * MIB), 24 << 20),
            24 * MIB
        );
    }

    #[test]
    fn run_is_the_default_subcommand() {
        let cli = Cli::try_parse_from([
            "x",
            "--socket",
            "/s",
            "--auth-token",
            "t",
            "--reply-format",
            "label",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.reply_format, ReplyFormat::Label);
        assert_eq!(cli.run.topics.request_topic, "local/inference");
        assert!(
            Cli::try_parse_from(["x", "request", "--image-dir", "/d"]).is_err(),
            "needs --fname"
        );
    }

    #[cfg(feature = "emulator")]
    #[test]
    fn emulate_takes_tokens() {
        let cli = Cli::try_parse_from([
            "x",
            "emulate",
            "--socket",
            "/s",
            "--token",
            "a=b",
            "--flavour",
            "lite",
        ])
        .unwrap();
        let Some(Command::Emulate(e)) = cli.command else {
            panic!()
        };
        assert_eq!(e.tokens, vec![("a".to_owned(), "b".to_owned())]);
    }
}
