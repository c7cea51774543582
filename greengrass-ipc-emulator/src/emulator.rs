//! A local Greengrass nucleus IPC server for tests and for running the flow without Greengrass.
//!
//! It implements what the adapter and the seed's components use — Connect/ConnectAck with a token
//! check, PublishToTopic, SubscribeToTopic with fan-out and stream close — with recipe-style topic
//! authorisation ([`crate::acl`]), and it reproduces the observable differences between the two
//! nucleus flavours (see `greengrass-ipc.md`):
//!
//! | behaviour                         | classic                          | lite                     |
//! |-----------------------------------|----------------------------------|--------------------------|
//! | rejected token                    | ConnectAck flags 0, then close   | close, no ConnectAck     |
//! | TerminateStream on responses      | on non-streaming operations      | never                    |
//! | error payload                     | `message`, `_message`, `_errorCode`, `_service` | `_message`, `_errorCode` |
//! | incoming frame limit              | 24 MiB                           | 9999 bytes, then close   |
//! | Ping                              | PingResponse                     | close                    |
//! | new stream id ≠ previous + 1      | ProtocolError, close             | accepted                 |
//! | `receiveMode`                     | honoured                         | ignored                  |
//! | jsonMessage of > 50 JSON values   | delivered                        | dropped, and the receiving subscription silently closed |
//!
//! **IoT Core.** `PublishToIoTCore` is authorised by the recipes' `aws.greengrass.ipc.mqttproxy`
//! policies and checked with each flavour's rules ([`greengrass_ipc::iot_core`]). What reaches
//! the cloud is recorded ([`EmulatorHandle::iot_core_messages`],
//! [`EmulatorHandle::wait_for_iot_core`]). The cloud can be made unreachable
//! ([`EmulatorHandle::set_cloud_reachable`]): the classic nucleus then answers success and
//! spools QoS 1 messages (delivered in order when the cloud is back; a publish that would take the
//! spool over [`CLASSIC_SPOOL_BYTES`] fails) and drops QoS 0 ones; nucleus lite has no spooler,
//! so the publish fails with a ServiceError.
//!
//! **Configuration.** Each component's configuration is its recipe's `DefaultConfiguration` with
//! the configuration file's entry merged on top ([`crate::configuration`]); `GetConfiguration`
//! reads it (a leaf as `{"<leaf>": value}`, a missing key or component as ResourceNotFoundError)
//! and `SubscribeToConfigurationUpdate` streams one event per changed node when the watched file
//! changes or a test calls [`EmulatorHandle::set_configuration`]. The classic nucleus reports
//! removals; nucleus lite does not, and sends each event twice (a lite deployment can notify more
//! than once), so consumers must coalesce.
//!
//! Both flavours accept `UpdateState` (any component may report its own state, as with the real
//! nuclei, which need no policy for it); [`EmulatorHandle::wait_for_state`] is how a test waits,
//! like the nucleus does before starting dependents, for a component to report RUNNING.
//! [`EmulatorHandle::drop_subscriptions_silently`] models a restart of lite's pub/sub daemon:
//! every subscription ends without the clients being told.
//!
//! Tokens: with an explicit token table a token must be in it; otherwise, with an access-control
//! file, a token equal to a component name of the file is accepted as that component; with
//! neither, any non-empty token is accepted and names the component.
//!
//! Each connection has one reader (this module's `serve`) and one writer task fed by an unbounded
//! queue, so fan-out to a slow subscriber never blocks a publisher.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::acl::{AccessControl, PUBSUB_SERVICE as PUBSUB};
use crate::configuration::{self as files, Configurations};
use greengrass_ipc::Flavour;
use greengrass_ipc::configuration::{
    self as config_ops, Change, ConfigurationRequest, ConfigurationUpdateEvent,
};
use greengrass_ipc::frame::{
    self, Frame, FrameError, FrameReader, MessageType, ReadOutcome, flags, header,
};
use greengrass_ipc::iot_core::{self, IotCoreMessage, MQTTPROXY_SERVICE, Qos};
use greengrass_ipc::pubsub::{self, Payload, ReceiveMode};
use greengrass_ipc::topic;

/// Settings of an emulator instance.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Unix socket path to listen on (a stale file there is replaced).
    pub socket_path: PathBuf,
    /// Which nucleus to imitate.
    pub flavour: Flavour,
    /// Pub/sub authorisation.
    pub access_control: AccessControl,
    /// Token → component name. Empty: see the module docs for the fallback rules.
    pub tokens: HashMap<String, String>,
    /// Each component's configuration before the configuration file is applied (its recipe's
    /// `DefaultConfiguration`, see [`files::recipe_defaults`]).
    pub configurations: Configurations,
    /// A JSON or YAML file of per-component configuration merged over
    /// [`EmulatorConfig::configurations`], watched for changes.
    pub configuration_file: Option<PathBuf>,
    /// A file each message that reaches IoT Core is appended to, as one JSON line
    /// ([`IotCoreRecord::to_line`]).
    pub iot_core_log: Option<PathBuf>,
    /// While this file exists the cloud is unreachable (checked every 200 ms).
    pub cloud_unreachable_while: Option<PathBuf>,
}

impl EmulatorConfig {
    /// An open emulator (no access control, any token) on `socket_path`.
    pub fn new(socket_path: impl Into<PathBuf>, flavour: Flavour) -> Self {
        Self {
            socket_path: socket_path.into(),
            flavour,
            access_control: AccessControl::AllowAll,
            tokens: HashMap::new(),
            configurations: Configurations::new(),
            configuration_file: None,
            iot_core_log: None,
            cloud_unreachable_while: None,
        }
    }

    fn component_for(&self, token: &str) -> Option<String> {
        if token.is_empty() {
            return None;
        }
        if !self.tokens.is_empty() {
            return self.tokens.get(token).cloned();
        }
        match &self.access_control {
            AccessControl::AllowAll => Some(token.to_owned()),
            acl => acl.components().into_iter().find(|c| c == token),
        }
    }

    fn max_incoming(&self) -> usize {
        match self.flavour {
            Flavour::Classic => frame::CLASSIC_MAX_FRAME,
            Flavour::Lite => frame::LITE_MAX_FRAME,
        }
    }
}

struct Subscriber {
    conn_id: u64,
    stream_id: i32,
    filter: String,
    component: String,
    mode: ReceiveMode,
    tx: mpsc::UnboundedSender<Vec<u8>>,
}

/// Bytes of payload the classic nucleus' spooler holds by default (2.5 MB) while the cloud is
/// unreachable; a QoS 1 publish beyond it fails.
pub const CLASSIC_SPOOL_BYTES: usize = 2_621_440;

/// One message that reached IoT Core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IotCoreRecord {
    /// The component that published it.
    pub component: String,
    /// The message as published.
    pub message: IotCoreMessage,
    /// Whether it waited in the classic nucleus' spooler while the cloud was unreachable.
    pub spooled: bool,
}

impl IotCoreRecord {
    /// One line of the IoT Core log, in this key order: `topic`, `qos` (`"0"`/`"1"`),
    /// `component`, `spooled`, and the payload as `payload` — a JSON document inline, exactly as
    /// published (its keys in their order), else UTF-8 text — or as `payload_base64`.
    pub fn to_line(&self) -> String {
        #[derive(Serialize)]
        struct Line<'a> {
            topic: &'a str,
            qos: &'a str,
            component: &'a str,
            spooled: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            payload: Option<Payload<'a>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            payload_base64: Option<String>,
        }
        #[derive(Serialize)]
        #[serde(untagged)]
        enum Payload<'a> {
            Json(&'a RawValue),
            Text(&'a str),
        }
        let bytes = &self.message.payload;
        let text = std::str::from_utf8(bytes).ok();
        let json = text.and_then(|t| serde_json::from_str::<&RawValue>(t).ok());
        let payload = match (json, text) {
            (Some(raw), _) => Some(Payload::Json(raw)),
            (None, Some(text)) => Some(Payload::Text(text)),
            (None, None) => None,
        };
        let payload_base64 = payload.is_none().then(|| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(bytes)
        });
        serde_json::to_string(&Line {
            topic: &self.message.topic_name,
            qos: self.message.qos.as_str(),
            component: &self.component,
            spooled: self.spooled,
            payload,
            payload_base64,
        })
        .expect("a log line serialises")
    }
}

/// The emulated cloud connection: reachable or not, what reached it, what waits in the spooler.
#[derive(Debug, Default)]
struct Cloud {
    unreachable: bool,
    delivered: Vec<IotCoreRecord>,
    spool: std::collections::VecDeque<IotCoreRecord>,
    spool_bytes: usize,
    dropped_qos0: u64,
}

/// A `SubscribeToConfigurationUpdate` stream.
struct ConfigSubscriber {
    conn_id: u64,
    stream_id: i32,
    /// Whose configuration.
    component: String,
    /// The subscribed node; events come for it, everything below it and its removal.
    key_path: Vec<String>,
    tx: mpsc::UnboundedSender<Vec<u8>>,
}

struct State {
    config: EmulatorConfig,
    subscribers: Mutex<Vec<Subscriber>>,
    /// The configurations in force.
    configurations: Mutex<Configurations>,
    config_subscribers: Mutex<Vec<ConfigSubscriber>>,
    cloud: watch::Sender<Cloud>,
    next_conn_id: AtomicU64,
    connections: AtomicU64,
    /// Lifecycle state each component last reported with UpdateState.
    component_states: watch::Sender<HashMap<String, String>>,
}

impl State {
    fn subs(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn configs(&self) -> std::sync::MutexGuard<'_, Configurations> {
        self.configurations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn config_subs(&self) -> std::sync::MutexGuard<'_, Vec<ConfigSubscriber>> {
        self.config_subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Puts `new` in force for `component` and sends update events for what changed.
    fn set_configuration(&self, component: &str, new: Value) {
        let old = {
            let mut configs = self.configs();
            configs
                .insert(component.to_owned(), new.clone())
                .unwrap_or_else(|| Value::Object(Default::default()))
        };
        let changes = config_ops::changes(&old, &new);
        if changes.is_empty() {
            return;
        }
        let lite = self.config.flavour == Flavour::Lite;
        let subs = self.config_subs();
        let mut sent = 0;
        for (path, change) in &changes {
            if lite && *change == Change::Removed {
                continue; // lite reports no removals
            }
            let event = ConfigurationUpdateEvent {
                component_name: component.to_owned(),
                key_path: path.clone(),
            }
            .to_body()
            .to_string();
            for sub in subs.iter().filter(|s| {
                s.component == component
                    && (path.starts_with(&s.key_path) || s.key_path.starts_with(path))
            }) {
                let frame = Frame::json(
                    MessageType::ApplicationMessage,
                    0,
                    sub.stream_id,
                    config_ops::CONFIGURATION_UPDATE_EVENTS,
                    event.clone(),
                );
                let Ok(bytes) = frame::encode(&frame, self.config.flavour.max_outgoing_frame())
                else {
                    continue;
                };
                // Lite: one deployment can notify more than once.
                for _ in 0..if lite { 2 } else { 1 } {
                    let _ = sub.tx.send(bytes.clone());
                    sent += 1;
                }
            }
        }
        tracing::info!(
            component,
            changed = changes.len(),
            events = sent,
            "configuration updated"
        );
    }

    /// Rebuilds every configuration from the defaults and the configuration file's `file`.
    fn apply_file(&self, file: &Value) -> Result<(), crate::acl::AclError> {
        let merged = files::with_file(&self.config.configurations, file)?;
        let mut components: Vec<String> = merged.keys().cloned().collect();
        components.extend(self.configs().keys().cloned());
        components.sort();
        components.dedup();
        for component in components {
            let new = merged
                .get(&component)
                .cloned()
                .unwrap_or_else(|| Value::Object(Default::default()));
            self.set_configuration(&component, new);
        }
        Ok(())
    }
}

/// A running emulator. Dropping it stops accepting and closes every connection.
#[derive(Debug)]
pub struct EmulatorHandle {
    socket_path: PathBuf,
    cancel: CancellationToken,
    tracker: TaskTracker,
    state: Arc<State>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

impl EmulatorHandle {
    /// The socket clients connect to.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Number of open subscriptions over all connections.
    pub fn subscription_count(&self) -> usize {
        self.state.subs().len()
    }

    /// The lifecycle state `component` last reported with UpdateState.
    pub fn component_state(&self, component: &str) -> Option<String> {
        self.state.component_states.borrow().get(component).cloned()
    }

    /// Resolves once `component` has reported `state` (as the nucleus waits before starting the
    /// components that depend on it).
    pub async fn wait_for_state(&self, component: &str, state: &str) {
        let mut rx = self.state.component_states.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx
            .wait_for(|states| states.get(component).map(String::as_str) == Some(state))
            .await;
    }

    /// Forgets every subscription without telling the clients, as a restart of nucleus lite's
    /// pub/sub daemon does. Returns how many there were.
    pub fn drop_subscriptions_silently(&self) -> usize {
        let mut subs = self.state.subs();
        let n = subs.len();
        subs.clear();
        n
    }

    /// The configuration in force for `component`.
    pub fn configuration(&self, component: &str) -> Option<Value> {
        self.state.configs().get(component).cloned()
    }

    /// Puts `config` in force for `component`, as a deployment would, and sends update events
    /// for every node that changed.
    pub fn set_configuration(&self, component: &str, config: Value) {
        self.state.set_configuration(component, config);
    }

    /// Number of open `SubscribeToConfigurationUpdate` streams.
    pub fn configuration_subscription_count(&self) -> usize {
        self.state.config_subs().len()
    }

    /// Makes the emulated cloud reachable or unreachable. Made reachable again, the classic
    /// nucleus' spooler delivers what it kept, in order.
    pub fn set_cloud_reachable(&self, reachable: bool) {
        set_cloud_reachable(&self.state, reachable);
    }

    /// Every message that reached IoT Core, in order.
    pub fn iot_core_messages(&self) -> Vec<IotCoreRecord> {
        self.state.cloud.borrow().delivered.clone()
    }

    /// Messages waiting in the classic nucleus' spooler, and QoS 0 messages it dropped while the
    /// cloud was unreachable.
    pub fn iot_core_spool(&self) -> (usize, u64) {
        let cloud = self.state.cloud.borrow();
        (cloud.spool.len(), cloud.dropped_qos0)
    }

    /// Resolves once at least `n` messages have reached IoT Core; returns them all.
    pub async fn wait_for_iot_core(&self, n: usize) -> Vec<IotCoreRecord> {
        let mut rx = self.state.cloud.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        match rx.wait_for(|cloud| cloud.delivered.len() >= n).await {
            Ok(cloud) => cloud.delivered.clone(),
            Err(_) => Vec::new(),
        }
    }

    /// Number of connections currently open.
    pub fn connection_count(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Stops accepting, closes every connection, waits for the tasks and removes the socket file.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        let _ = std::fs::remove_file(&self.socket_path);
    }

    /// Resolves when the emulator has been asked to stop (used by the CLI to run until signalled).
    pub async fn stopped(&self) {
        self.cancel.cancelled().await;
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn set_cloud_reachable(state: &State, reachable: bool) {
    state.cloud.send_modify(|cloud| {
        cloud.unreachable = !reachable;
        if reachable {
            let kept = cloud.spool.len();
            cloud.delivered.extend(cloud.spool.drain(..));
            cloud.spool_bytes = 0;
            if kept > 0 {
                tracing::info!(
                    kept,
                    "cloud reachable again: spooled IoT Core messages delivered"
                );
            }
        }
    });
}

/// Binds the socket and starts serving in the background.
pub async fn spawn(config: EmulatorConfig) -> std::io::Result<EmulatorHandle> {
    let path = config.socket_path.clone();
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        use std::os::unix::fs::FileTypeExt;
        if meta.file_type().is_socket() {
            std::fs::remove_file(&path)?;
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
    }
    let invalid = |e: crate::acl::AclError| {
        let path = config
            .configuration_file
            .as_deref()
            .unwrap_or(Path::new(""));
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("configuration file {}: {e}", path.display()),
        )
    };
    // Read once, here: the watcher compares with exactly what was applied.
    let (configurations, file_bytes) = match &config.configuration_file {
        Some(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            let doc = files::parse_bytes(&bytes).map_err(invalid)?;
            (
                files::with_file(&config.configurations, &doc).map_err(invalid)?,
                Some(bytes),
            )
        }
        None => (config.configurations.clone(), None),
    };
    let cloud_unreachable_at_start = config
        .cloud_unreachable_while
        .as_deref()
        .is_some_and(Path::exists);
    let listener = UnixListener::bind(&path)?;
    let state = Arc::new(State {
        config,
        subscribers: Mutex::new(Vec::new()),
        configurations: Mutex::new(configurations),
        config_subscribers: Mutex::new(Vec::new()),
        cloud: watch::Sender::new(Cloud {
            // Decided before the socket exists, so the first client already sees it.
            unreachable: cloud_unreachable_at_start,
            ..Cloud::default()
        }),
        next_conn_id: AtomicU64::new(1),
        connections: AtomicU64::new(0),
        component_states: watch::Sender::new(HashMap::new()),
    });
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    tracker.spawn(accept_loop(
        listener,
        state.clone(),
        cancel.clone(),
        tracker.clone(),
    ));
    if let Some(log) = state.config.iot_core_log.clone() {
        tracker.spawn(write_iot_core_log(log, state.clone(), cancel.clone()));
    }
    if let Some(flag) = state.config.cloud_unreachable_while.clone() {
        tracker.spawn(follow_cloud_flag(flag, state.clone(), cancel.clone()));
    }
    if let Some(file) = state.config.configuration_file.clone() {
        tracker.spawn(watch_configuration_file(
            file,
            file_bytes,
            state.clone(),
            cancel.clone(),
        ));
    }
    tracing::info!(socket = %path.display(), flavour = ?state.config.flavour, "nucleus emulator listening");
    Ok(EmulatorHandle {
        socket_path: path,
        cancel,
        tracker,
        state,
    })
}

/// Appends each message that reaches IoT Core to `path`, one JSON line each.
async fn write_iot_core_log(path: PathBuf, state: Arc<State>, cancel: CancellationToken) {
    let mut rx = state.cloud.subscribe();
    let mut written = 0;
    loop {
        let lines: String = {
            let cloud = rx.borrow_and_update();
            let new = cloud.delivered.get(written..).unwrap_or_default();
            written += new.len();
            new.iter().map(|r| format!("{}\n", r.to_line())).collect()
        };
        if !lines.is_empty() {
            let appended = async {
                let mut f = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .await?;
                f.write_all(lines.as_bytes()).await?;
                f.flush().await
            };
            if let Err(e) = appended.await {
                tracing::warn!(file = %path.display(), error = %e, "cannot append to the IoT Core log");
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
        }
    }
}

/// Makes the cloud unreachable while `flag` exists.
async fn follow_cloud_flag(flag: PathBuf, state: Arc<State>, cancel: CancellationToken) {
    let mut unreachable = state.cloud.borrow().unreachable;
    loop {
        let exists = tokio::fs::try_exists(&flag).await.unwrap_or(false);
        if exists != unreachable {
            unreachable = exists;
            tracing::info!(flag = %flag.display(), unreachable, "cloud reachability changed");
            set_cloud_reachable(&state, !unreachable);
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(WATCH_PERIOD) => {}
        }
    }
}

/// How often the configuration file is looked at.
const WATCH_PERIOD: std::time::Duration = std::time::Duration::from_millis(200);

/// Re-reads the configuration file whenever its contents change (polling: it works the same for
/// files edited in place, replaced by a rename, removed and created again).
async fn watch_configuration_file(
    path: PathBuf,
    mut last: Option<Vec<u8>>,
    state: Arc<State>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(WATCH_PERIOD) => {}
        }
        let now = tokio::fs::read(&path).await.ok();
        if now == last {
            continue;
        }
        last = now;
        let Some(bytes) = &last else {
            tracing::warn!(file = %path.display(), "configuration file removed: the configuration in force stays");
            continue;
        };
        let parsed = files::parse_bytes(bytes).and_then(|doc| state.apply_file(&doc));
        if let Err(e) = parsed {
            tracing::warn!(file = %path.display(), error = %e, "configuration file not applied: the configuration in force stays");
        }
    }
}

async fn accept_loop(
    listener: UnixListener,
    state: Arc<State>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let conn_id = state.next_conn_id.fetch_add(1, Ordering::SeqCst);
                    tracker.spawn(serve(stream, conn_id, state.clone(), cancel.clone(), tracker.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Per-connection protocol state.
struct Session {
    conn_id: u64,
    component: Option<String>,
    last_stream_id: i32,
    /// Subscription streams of this connection.
    subscriptions: HashSet<i32>,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    state: Arc<State>,
}

/// What the reader does after a frame.
enum Next {
    Continue,
    Close,
}

async fn serve(
    stream: UnixStream,
    conn_id: u64,
    state: Arc<State>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    state.connections.fetch_add(1, Ordering::SeqCst);
    let (read_half, mut write_half) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer_cancel = cancel.clone();
    let writer = tracker.spawn(async move {
        loop {
            tokio::select! {
                () = writer_cancel.cancelled() => break,
                next = rx.recv() => match next {
                    Some(bytes) => {
                        if frame::write_encoded(&mut write_half, &bytes).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
            }
        }
        let _ = write_half.shutdown().await;
    });

    let mut session = Session {
        conn_id,
        component: None,
        last_stream_id: 0,
        subscriptions: HashSet::new(),
        tx,
        state: state.clone(),
    };
    let mut reader = FrameReader::new(read_half, state.config.max_incoming());
    loop {
        let outcome = tokio::select! {
            () = cancel.cancelled() => break,
            r = reader.read() => r,
        };
        match outcome {
            Ok(ReadOutcome::Frame(f)) => {
                if let Next::Close = session.handle(f) {
                    break;
                }
            }
            Ok(ReadOutcome::Eof) => break,
            Err(FrameError::TooLarge { len, max }) => {
                // Both nuclei drop the connection; lite's limit is the one that bites.
                tracing::warn!(
                    conn_id,
                    len,
                    max,
                    "frame above the limit: closing the connection"
                );
                break;
            }
            Err(e) => {
                tracing::warn!(conn_id, error = %e, "bad frame: closing the connection");
                break;
            }
        }
    }
    state.subs().retain(|s| s.conn_id != conn_id);
    state.config_subs().retain(|s| s.conn_id != conn_id);
    drop(session);
    // The writer drains what was queued (e.g. a final ProtocolError) and then closes.
    let _ = writer.await;
    state.connections.fetch_sub(1, Ordering::SeqCst);
}

impl Session {
    fn flavour(&self) -> Flavour {
        self.state.config.flavour
    }

    fn max_outgoing(&self) -> usize {
        // Nothing stops lite from sending a bit more than it accepts, but stay inside its own limit.
        match self.flavour() {
            Flavour::Classic => frame::CLASSIC_MAX_FRAME,
            Flavour::Lite => frame::LITE_MAX_FRAME,
        }
    }

    fn send(&self, f: &Frame) {
        match frame::encode(f, self.max_outgoing()) {
            Ok(bytes) => {
                let _ = self.tx.send(bytes);
            }
            Err(e) => tracing::warn!(conn_id = self.conn_id, error = %e, "cannot send frame"),
        }
    }

    fn protocol_error(&self, message: &str) -> Next {
        tracing::warn!(conn_id = self.conn_id, message, "protocol error: closing");
        if self.flavour() == Flavour::Classic {
            let payload = serde_json::json!({ "message": message }).to_string();
            self.send(
                &Frame::new(MessageType::ProtocolError, 0, 0)
                    .with_str_header(header::CONTENT_TYPE, frame::CONTENT_TYPE_JSON)
                    .with_payload(payload),
            );
        }
        Next::Close
    }

    fn handle(&mut self, f: Frame) -> Next {
        let Some(component) = self.component.clone() else {
            return self.handle_connect(f);
        };
        match f.message_type {
            MessageType::Ping => match self.flavour() {
                Flavour::Classic => {
                    let mut pong = f.clone();
                    pong.message_type = MessageType::PingResponse;
                    self.send(&pong);
                    Next::Continue
                }
                Flavour::Lite => {
                    tracing::info!(conn_id = self.conn_id, "Ping received: lite closes");
                    Next::Close
                }
            },
            MessageType::PingResponse => Next::Continue,
            MessageType::Connect => self.protocol_error("Connect sent twice"),
            MessageType::ApplicationMessage | MessageType::ApplicationError if f.stream_id > 0 => {
                self.handle_application(&component, f)
            }
            other => {
                self.protocol_error(&format!("unexpected {other:?} on stream {}", f.stream_id))
            }
        }
    }

    fn handle_connect(&mut self, f: Frame) -> Next {
        if f.message_type != MessageType::Connect || f.stream_id != 0 {
            return self.protocol_error("the first frame must be Connect on stream 0");
        }
        let token = serde_json::from_slice::<Value>(&f.payload)
            .ok()
            .and_then(|v| {
                v.get("authToken")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        let version_ok = f.str_header(header::VERSION) == Some(frame::PROTOCOL_VERSION);
        let component = if version_ok {
            self.state.config.component_for(&token)
        } else {
            None
        };
        let Some(component) = component else {
            tracing::info!(
                conn_id = self.conn_id,
                version_ok,
                "Connect rejected (bad or unknown token, or wrong :version)"
            );
            if self.flavour() == Flavour::Classic {
                self.send(&Frame::new(MessageType::ConnectAck, 0, 0));
            }
            return Next::Close;
        };
        tracing::info!(conn_id = self.conn_id, %component, "component connected");
        self.component = Some(component);
        self.send(&Frame::new(
            MessageType::ConnectAck,
            flags::CONNECTION_ACCEPTED,
            0,
        ));
        Next::Continue
    }

    fn handle_application(&mut self, component: &str, f: Frame) -> Next {
        let id = f.stream_id;
        if self.subscriptions.contains(&id) {
            if f.terminates_stream() {
                self.subscriptions.remove(&id);
                let this = |conn_id, stream_id| conn_id == self.conn_id && stream_id == id;
                self.state.subs().retain(|s| !this(s.conn_id, s.stream_id));
                self.state
                    .config_subs()
                    .retain(|s| !this(s.conn_id, s.stream_id));
                tracing::debug!(
                    conn_id = self.conn_id,
                    stream_id = id,
                    "subscription closed by client"
                );
            }
            return Next::Continue;
        }
        let is_new = match self.flavour() {
            Flavour::Classic => {
                if id <= self.last_stream_id {
                    // A late frame on a finished stream: nothing to do.
                    return Next::Continue;
                }
                if id != self.last_stream_id + 1 {
                    return self.protocol_error(&format!(
                        "stream id {id} is not the previous stream id {} + 1",
                        self.last_stream_id
                    ));
                }
                true
            }
            Flavour::Lite => f.str_header(header::OPERATION).is_some(),
        };
        if !is_new {
            return Next::Continue;
        }
        self.last_stream_id = self.last_stream_id.max(id);
        let operation = f.str_header(header::OPERATION).unwrap_or("").to_owned();
        let body: Value = match serde_json::from_slice(&f.payload) {
            Ok(v) => v,
            Err(e) => {
                self.send_error(
                    id,
                    pubsub::INVALID_ARGUMENTS_ERROR,
                    &format!("payload is not JSON: {e}"),
                );
                return Next::Continue;
            }
        };
        match operation.as_str() {
            pubsub::OP_PUBLISH => self.publish(component, id, &body),
            pubsub::OP_SUBSCRIBE => self.subscribe(component, id, &body),
            pubsub::OP_UPDATE_STATE => self.update_state(component, id, &body),
            iot_core::OP_PUBLISH_TO_IOT_CORE => self.publish_to_iot_core(component, id, &body),
            config_ops::OP_GET_CONFIGURATION => self.get_configuration(component, id, &body),
            config_ops::OP_SUBSCRIBE_TO_CONFIGURATION_UPDATE => {
                self.subscribe_to_configuration_update(component, id, &body);
            }
            other => self.send_error(
                id,
                pubsub::SERVICE_ERROR,
                &format!("operation {other:?} is not supported by this emulator"),
            ),
        }
        Next::Continue
    }

    fn send_error(&self, stream_id: i32, model_type: &str, message: &str) {
        let code = model_type.rsplit('#').next().unwrap_or(model_type);
        let payload = match self.flavour() {
            Flavour::Classic => serde_json::json!({
                "message": message, "_message": message, "_errorCode": code,
                "_service": pubsub::SERVICE_NAME,
            }),
            Flavour::Lite => serde_json::json!({ "_message": message, "_errorCode": code }),
        };
        self.send(&Frame::json(
            MessageType::ApplicationError,
            flags::TERMINATE_STREAM,
            stream_id,
            model_type,
            payload.to_string(),
        ));
    }

    fn response_flags(&self, streaming: bool) -> i32 {
        match self.flavour() {
            Flavour::Classic if !streaming => flags::TERMINATE_STREAM,
            _ => 0,
        }
    }

    /// Whether the access control lets `component` run `operation` of `service` on `topic`;
    /// when it does not, answers the stream with an UnauthorizedError.
    fn authorised(
        &self,
        component: &str,
        (service, operation): (&str, &str),
        topic: &str,
        stream_id: i32,
    ) -> bool {
        let acl = &self.state.config.access_control;
        if acl.allows(component, service, operation, topic) {
            return true;
        }
        let message = format!(
            "Principal {component} is not authorized to perform {service}:{operation} on resource {topic}"
        );
        tracing::info!(conn_id = self.conn_id, %message, "unauthorised");
        self.send_error(stream_id, pubsub::UNAUTHORIZED_ERROR, &message);
        false
    }

    fn publish(&self, component: &str, stream_id: i32, body: &Value) {
        let (topic, payload) = match pubsub::parse_publish_request(body) {
            Ok(v) => v,
            Err(e) => {
                return self.send_error(stream_id, pubsub::INVALID_ARGUMENTS_ERROR, &e.to_string());
            }
        };
        if !self.authorised(component, (PUBSUB, pubsub::OP_PUBLISH), &topic, stream_id) {
            return;
        }
        self.send(&Frame::json(
            MessageType::ApplicationMessage,
            self.response_flags(false),
            stream_id,
            pubsub::PUBLISH_RESPONSE,
            "{}",
        ));
        self.fan_out(component, &topic, &payload);
    }

    /// PublishToIoTCore: the flavour's argument rules, the mqttproxy policies, then the cloud.
    fn publish_to_iot_core(&self, component: &str, stream_id: i32, body: &Value) {
        let message = match iot_core::parse_publish_request(body, self.flavour()) {
            Ok(m) => m,
            Err(e) => {
                return self.send_error(stream_id, pubsub::INVALID_ARGUMENTS_ERROR, &e.to_string());
            }
        };
        let operation = (MQTTPROXY_SERVICE, iot_core::OP_PUBLISH_TO_IOT_CORE);
        if !self.authorised(component, operation, &message.topic_name, stream_id) {
            return;
        }
        let flavour = self.flavour();
        let mut refusal = None;
        self.state.cloud.send_modify(|cloud| {
            let mut record = IotCoreRecord {
                component: component.to_owned(),
                message,
                spooled: false,
            };
            if !cloud.unreachable {
                cloud.delivered.push(record);
                return;
            }
            match (flavour, record.message.qos) {
                (Flavour::Lite, _) => refusal = Some("Failed to publish the message."),
                (Flavour::Classic, Qos::AtMostOnce) => cloud.dropped_qos0 += 1,
                (Flavour::Classic, Qos::AtLeastOnce) => {
                    let len = record.message.payload.len();
                    if cloud.spool_bytes + len > CLASSIC_SPOOL_BYTES {
                        refusal = Some("the spooler is full");
                    } else {
                        record.spooled = true;
                        cloud.spool_bytes += len;
                        cloud.spool.push_back(record);
                    }
                }
            }
        });
        if let Some(reason) = refusal {
            tracing::info!(conn_id = self.conn_id, %component, reason, "PublishToIoTCore failed: cloud unreachable");
            return self.send_error(stream_id, pubsub::SERVICE_ERROR, reason);
        }
        self.send(&Frame::json(
            MessageType::ApplicationMessage,
            self.response_flags(false),
            stream_id,
            iot_core::PUBLISH_TO_IOT_CORE_RESPONSE,
            "{}",
        ));
    }

    /// Reads a configuration request; answers InvalidArgumentsError when it is not one.
    fn configuration_request(
        &self,
        component: &str,
        stream_id: i32,
        body: &Value,
    ) -> Option<(String, Vec<String>)> {
        match serde_json::from_value::<ConfigurationRequest>(body.clone()) {
            Ok(r) => Some((
                r.component_name.unwrap_or_else(|| component.to_owned()),
                r.key_path,
            )),
            Err(e) => {
                self.send_error(
                    stream_id,
                    pubsub::INVALID_ARGUMENTS_ERROR,
                    &format!("invalid configuration request: {e}"),
                );
                None
            }
        }
    }

    /// GetConfiguration: the node at the key path of the component's configuration in force.
    fn get_configuration(&self, component: &str, stream_id: i32, body: &Value) {
        let Some((target, key_path)) = self.configuration_request(component, stream_id, body)
        else {
            return;
        };
        let value = {
            let configs = self.state.configs();
            configs
                .get(&target)
                .map(|config| config_ops::read(config, &key_path))
        };
        let value = match value {
            Some(Some(v)) => v,
            Some(None) => {
                let message = format!("Key not found: {}", key_path.join("."));
                return self.send_error(stream_id, config_ops::RESOURCE_NOT_FOUND_ERROR, &message);
            }
            None => {
                let message = format!("Component not found: {target}");
                return self.send_error(stream_id, config_ops::RESOURCE_NOT_FOUND_ERROR, &message);
            }
        };
        let answer = serde_json::json!({ "componentName": target, "value": value });
        self.send(&Frame::json(
            MessageType::ApplicationMessage,
            self.response_flags(false),
            stream_id,
            config_ops::GET_CONFIGURATION_RESPONSE,
            answer.to_string(),
        ));
    }

    /// SubscribeToConfigurationUpdate: the response, then events as configurations change.
    fn subscribe_to_configuration_update(&mut self, component: &str, stream_id: i32, body: &Value) {
        let Some((target, key_path)) = self.configuration_request(component, stream_id, body)
        else {
            return;
        };
        // Queue the response before registering, so it precedes every event on this stream.
        self.send(&Frame::json(
            MessageType::ApplicationMessage,
            self.response_flags(true),
            stream_id,
            config_ops::SUBSCRIBE_TO_CONFIGURATION_UPDATE_RESPONSE,
            "{}",
        ));
        self.subscriptions.insert(stream_id);
        self.state.config_subs().push(ConfigSubscriber {
            conn_id: self.conn_id,
            stream_id,
            component: target,
            key_path,
            tx: self.tx.clone(),
        });
    }

    /// UpdateState: only RUNNING and ERRORED may be reported, as on both nuclei.
    fn update_state(&self, component: &str, stream_id: i32, body: &Value) {
        let state = body.get("state").and_then(Value::as_str).unwrap_or("");
        if !matches!(state, "RUNNING" | "ERRORED") {
            return self.send_error(
                stream_id,
                pubsub::INVALID_ARGUMENTS_ERROR,
                &format!("state must be RUNNING or ERRORED, got {state:?}"),
            );
        }
        tracing::info!(conn_id = self.conn_id, %component, state, "component reported its state");
        self.state.component_states.send_modify(|states| {
            states.insert(component.to_owned(), state.to_owned());
        });
        self.send(&Frame::json(
            MessageType::ApplicationMessage,
            self.response_flags(false),
            stream_id,
            pubsub::UPDATE_STATE_RESPONSE,
            "{}",
        ));
    }

    fn fan_out(&self, publisher: &str, topic: &str, payload: &Payload) {
        let body = pubsub::subscription_message(topic, payload).to_string();
        let honour_mode = self.flavour() == Flavour::Classic;
        let undeliverable_on_lite = match payload {
            Payload::Json(v) if self.flavour() == Flavour::Lite => {
                let n = pubsub::lite_subobjects(v);
                (n > pubsub::LITE_MAX_SUBOBJECTS).then_some(n)
            }
            _ => None,
        };
        let mut subs = self.state.subs();
        if let Some(n) = undeliverable_on_lite {
            // Lite's IPC daemon cannot decode the message for any subscriber: it drops it and
            // closes each matching subscription, telling no one.
            let before = subs.len();
            subs.retain(|s| !topic::filter_matches(&s.filter, topic));
            tracing::warn!(
                topic,
                subobjects = n,
                max = pubsub::LITE_MAX_SUBOBJECTS,
                dropped_subscriptions = before - subs.len(),
                "lite: Insufficient memory to decode packet; message dropped, subscriptions closed silently"
            );
            return;
        }
        for s in subs.iter() {
            if !topic::filter_matches(&s.filter, topic) {
                continue;
            }
            if honour_mode
                && s.mode == ReceiveMode::ReceiveMessagesFromOthers
                && s.component == publisher
            {
                continue;
            }
            let event = Frame::json(
                MessageType::ApplicationMessage,
                0,
                s.stream_id,
                pubsub::SUBSCRIPTION_MESSAGE,
                body.clone(),
            );
            match frame::encode(&event, self.max_outgoing()) {
                Ok(bytes) => {
                    let _ = s.tx.send(bytes);
                }
                Err(e) => tracing::warn!(error = %e, "event not delivered"),
            }
        }
    }

    fn subscribe(&mut self, component: &str, stream_id: i32, body: &Value) {
        let (filter, mode) = match pubsub::parse_subscribe_request(body) {
            Ok(v) => v,
            Err(e) => {
                return self.send_error(stream_id, pubsub::INVALID_ARGUMENTS_ERROR, &e.to_string());
            }
        };
        if !self.authorised(
            component,
            (PUBSUB, pubsub::OP_SUBSCRIBE),
            &filter,
            stream_id,
        ) {
            return;
        }
        // Queue the response before registering, so it precedes every event on this stream.
        self.send(&Frame::json(
            MessageType::ApplicationMessage,
            self.response_flags(true),
            stream_id,
            pubsub::SUBSCRIBE_RESPONSE,
            "{}",
        ));
        self.subscriptions.insert(stream_id);
        self.state.subs().push(Subscriber {
            conn_id: self.conn_id,
            stream_id,
            filter,
            component: component.to_owned(),
            mode: mode.unwrap_or_default(),
            tx: self.tx.clone(),
        });
    }
}
