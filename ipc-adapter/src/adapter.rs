//! The adapter: requests from local pub/sub → `POST /classify` → one reply each.
//!
//! Flow: connect to the nucleus (waiting, bounded, for its socket), subscribe to the request
//! topic, prove the subscription delivers with a first liveness probe, report `RUNNING` to the
//! nucleus (`UpdateState`; the recipe starts the adapter in a `Startup` step, so Greengrass
//! starts dependent components only then), write the ready file if asked; then for every
//! message spawn a task that parses it ([`crate::messages`]), calls the service
//! ([`crate::service`]) under the reply deadline, and publishes exactly one reply — success or an
//! error with a stable code.
//!
//! **Bounded work.** At most `max_in_flight` requests call the service at once (a semaphore); at
//! most `max_queued` more wait for a slot, and all admitted messages together hold at most
//! `max_queued_bytes` of payload (an inline base64 image can be megabytes under the classic
//! nucleus). A request beyond either bound is answered at once with `overloaded`, so every
//! request still gets its one reply and the adapter's memory stays bounded. The IPC reader itself never waits on
//! this work (see [`greengrass_ipc::client`]).
//!
//! **Replies** go to the request's validated `reply_topic` or the configured reply topic. With
//! `--nucleus classic` they use the request's own message kind (binaryMessage JSON text for a
//! binaryMessage request, jsonMessage for a jsonMessage request). With `--nucleus lite` every
//! reply is a binaryMessage holding the JSON text: lite drops a delivered jsonMessage of more
//! than 50 JSON values (a reply with five predictions has 58) and silently closes the requester's
//! subscription, whereas a binaryMessage is one buffer to it. In `label` format replies are
//! always binaryMessage text. A reply that cannot be published on a requested `reply_topic` is
//! replaced by a `reply_failed` error on the default reply topic; a reply too large for the
//! nucleus' frame limit by `reply_too_large`. A request message above the incoming frame bound
//! is not read, so its id is unknown: it is answered with `message_too_large` and
//! `request_id: null` on the default reply topic.
//!
//! **Liveness probe.** Nucleus lite never tells a client that its subscription died (a message
//! it cannot decode, a restart of its pub/sub daemon). Every `liveness_interval` the adapter
//! publishes `{"classify_adapter_liveness_probe": "<id>"}` on the request topic itself and waits
//! for it on its own subscription: the probe travels the very path requests take, so it also
//! catches the loss of just that subscription. A probe not back within `liveness_timeout` ends
//! the adapter like a lost connection (exit 4), and Greengrass restarts it.
//!
//! **Connection loss policy: exit.** If the nucleus connection ends, [`Adapter::run`] returns
//! [`AdapterError::ConnectionLost`] at once (in-flight work is abandoned: its replies could not be
//! delivered) and the binary exits with status 4 after logging why. The adapter does not
//! reconnect: a restarted nucleus hands its components new tokens and restarts them itself, and
//! Greengrass restarts a component whose process exits with an error, so exiting is what brings the
//! component back in a clean state. Under a supervisor-less setup (the emulator on a laptop),
//! restart the adapter.
//!
//! **Shutdown** (the future passed to [`run`], SIGTERM/SIGINT in the binary): close the
//! subscription, answer the requests already received (including those still queued), then return
//! `Ok(())`.

use std::collections::VecDeque;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::{AdapterConfig, ReplyFormat, defaults};
use crate::messages::{self, ErrorCode, Reply};
use crate::service::ServiceClient;
use greengrass_ipc::Flavour;
use greengrass_ipc::client::{IpcClient, IpcError, Subscription};
use greengrass_ipc::pubsub::{Payload, SubscriptionEvent};

/// Why the adapter stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Connecting or subscribing failed at start-up.
    #[error("cannot start: {0}")]
    Startup(#[source] IpcError),
    /// The subscription was acknowledged but the adapter's first probe did not come back.
    #[error("cannot start: {0}")]
    Deaf(String),
    /// The nucleus connection ended while running.
    #[error(
        "lost the connection to the Greengrass nucleus ({0}); exiting so that Greengrass restarts the component"
    )]
    ConnectionLost(String),
}

impl AdapterError {
    /// Process exit status for this error: 2 configuration, 3 start-up, 4 connection lost.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Config(_) => 2,
            Self::Startup(_) | Self::Deaf(_) => 3,
            Self::ConnectionLost(_) => 4,
        }
    }
}

/// What every request task needs.
struct Context {
    client: IpcClient,
    service: ServiceClient,
    config: AdapterConfig,
    in_flight: Arc<Semaphore>,
    /// `--max-queued-bytes`, or its default derived from the memory limit.
    max_queued_bytes: u64,
}

/// A connected, subscribed adapter that has not started processing yet.
#[derive(Debug)]
pub struct Adapter {
    ctx: Arc<Context>,
    subscription: Subscription,
    /// Requests that arrived while the start-up probe was awaited.
    early: VecDeque<Result<SubscriptionEvent, IpcError>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// Connects, subscribes and processes requests until `shutdown` resolves or the connection is lost.
pub async fn run(
    config: AdapterConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AdapterError> {
    Adapter::start(config).await?.run(shutdown).await
}

impl Adapter {
    /// Validates the configuration, connects to the nucleus (waiting for its socket up to
    /// `--socket-wait-ms`), subscribes to the request topic, checks with a probe that messages
    /// arrive, reports RUNNING and writes the ready file. When this returns, requests published on
    /// the topic will be received.
    pub async fn start(config: AdapterConfig) -> Result<Self, AdapterError> {
        // A file left by an earlier run must not announce this one before it is ready.
        remove_ready_file(&config);
        let client_config = config.ipc.client_config().map_err(AdapterError::Config)?;
        let topics = &config.topics;
        if topics.request_topic.is_empty() {
            return Err(AdapterError::Config(
                "--request-topic must not be empty".into(),
            ));
        }
        messages::validate_reply_topic(&topics.reply_topic, &topics.request_topic)
            .map_err(|e| AdapterError::Config(format!("--reply-topic: {e}")))?;
        let service = ServiceClient::new(&config.service_url).map_err(AdapterError::Config)?;
        let client = IpcClient::connect(client_config)
            .await
            .map_err(AdapterError::Startup)?;
        let mut subscription = client
            .subscribe(&topics.request_topic, None)
            .await
            .map_err(AdapterError::Startup)?;
        let mut early = VecDeque::new();
        if config.timeouts.liveness_interval_ms > 0 {
            first_probe(&client, &mut subscription, &config, &mut early).await?;
        }
        if !config.no_report_state {
            // Without this a `Startup` step never leaves STARTING; under a `Run` step (or a
            // nucleus without the lifecycle service) it is harmless, so a refusal only warns.
            match client.update_state("RUNNING").await {
                Ok(()) => tracing::debug!("reported RUNNING to the nucleus"),
                Err(e) if e.is_connection_lost() => return Err(AdapterError::Startup(e)),
                Err(e) => tracing::warn!(error = %e, "the nucleus refused UpdateState RUNNING"),
            }
        }
        if let Some(path) = &config.ready_file {
            write_ready_file(path).map_err(|e| {
                AdapterError::Config(format!("cannot write --ready-file {}: {e}", path.display()))
            })?;
        }
        let max_queued_bytes = queued_bytes(&config);
        tracing::info!(
            request_topic = %topics.request_topic,
            reply_topic = %topics.reply_topic,
            service = %config.service_url,
            format = ?config.reply_format,
            max_in_flight = config.max_in_flight,
            max_queued = config.max_queued,
            max_queued_bytes,
            "adapter subscribed and ready"
        );
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight as usize));
        Ok(Self {
            ctx: Arc::new(Context {
                client,
                service,
                config,
                in_flight,
                max_queued_bytes,
            }),
            subscription,
            early,
        })
    }

    /// Processes requests until `shutdown` resolves (then drains and returns `Ok`) or the
    /// connection is lost (then returns [`AdapterError::ConnectionLost`] at once).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), AdapterError> {
        let ctx = self.ctx.clone();
        let admitted = WaitingRoom::new(&ctx.config, ctx.max_queued_bytes);
        let mut tasks = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut liveness = Liveness::new(&ctx.config);
        let mut lost = None;
        while let Some(delivery) = self.early.pop_front() {
            if let Err(reason) = deliver(&ctx, &admitted, &mut tasks, &mut liveness, delivery) {
                lost = Some(reason);
                break;
            }
        }
        let lost = match lost {
            Some(reason) => Some(reason),
            None => loop {
                tokio::select! {
                    biased;
                    () = &mut shutdown => break None,
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                    next = self.subscription.next() => {
                        let Some(delivery) = next else {
                            break Some("subscription ended".to_owned());
                        };
                        if let Err(reason) = deliver(&ctx, &admitted, &mut tasks, &mut liveness, delivery) {
                            break Some(reason);
                        }
                    }
                    () = sleep_until(liveness.due()) => {
                        if let Err(reason) = liveness.on_due(&ctx.client, &ctx.config.topics.request_topic) {
                            break Some(reason);
                        }
                    }
                }
            },
        };
        if let Some(reason) = lost {
            remove_ready_file(&ctx.config);
            tasks.abort_all();
            tracing::error!(
                %reason,
                abandoned = tasks.len(),
                "lost the connection to the Greengrass nucleus; exiting so that Greengrass restarts the component"
            );
            return Err(AdapterError::ConnectionLost(reason));
        }

        remove_ready_file(&ctx.config);
        tracing::info!(
            in_flight = tasks.len(),
            "shutdown requested: no new requests, finishing the ones received"
        );
        if let Err(e) = self.subscription.close().await {
            tracing::warn!(error = %e, "closing the request subscription failed");
        }
        // Requests that were received before the close still get their reply.
        while let Some(delivery) = self.subscription.try_next() {
            if delivery.is_err() && !matches!(delivery, Err(IpcError::MessageTooLarge { .. })) {
                break;
            }
            let _ = deliver(&ctx, &admitted, &mut tasks, &mut liveness, delivery);
        }
        while tasks.join_next().await.is_some() {}
        tracing::info!("adapter stopped");
        Ok(())
    }
}

/// Publishes a first probe and waits for it, keeping whatever else arrives meanwhile.
async fn first_probe(
    client: &IpcClient,
    subscription: &mut Subscription,
    config: &AdapterConfig,
    early: &mut VecDeque<Result<SubscriptionEvent, IpcError>>,
) -> Result<(), AdapterError> {
    let id = format!("start-{}", messages::new_request_id());
    let topic = &config.topics.request_topic;
    client
        .publish(topic, &messages::probe(&id))
        .await
        .map_err(|e| {
            AdapterError::Deaf(format!(
                "publishing the liveness probe on {topic} failed: {e} (the adapter's \
                 accessControl must allow PublishToTopic on its request topic)"
            ))
        })?;
    let timeout = Duration::from_millis(config.timeouts.liveness_timeout_ms);
    let wait = async {
        loop {
            match subscription.next().await {
                Some(Ok(event)) if messages::probe_id(&event.payload) == Some(id.as_str()) => {
                    return Ok(());
                }
                Some(Ok(event)) if messages::probe_id(&event.payload).is_some() => {}
                Some(Err(e)) if !matches!(e, IpcError::MessageTooLarge { .. }) => {
                    return Err(AdapterError::Startup(e));
                }
                Some(other) => early.push_back(other),
                None => {
                    return Err(AdapterError::Startup(IpcError::StreamClosed));
                }
            }
        }
    };
    tokio::time::timeout(timeout, wait).await.map_err(|_| {
        AdapterError::Deaf(format!(
            "the subscription to {topic} was acknowledged but the adapter's own probe did not \
             arrive within {} ms",
            timeout.as_millis()
        ))
    })?
}

/// Writes `ready` to `path` atomically (temporary file, then rename), so a waiter never sees a
/// half-written file.
pub fn write_ready_file(path: &Path) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, "ready\n")?;
    std::fs::rename(&tmp, path)
}

/// Removes the ready file, if one is configured: the adapter is not (or no longer) ready.
fn remove_ready_file(config: &AdapterConfig) {
    if let Some(path) = &config.ready_file
        && let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove the ready file");
    }
}

/// The periodic liveness probe's state.
struct Liveness {
    interval: Option<Duration>,
    timeout: Duration,
    /// When the next probe is sent (no probe outstanding) or when the outstanding one is late.
    due: Instant,
    outstanding: Option<String>,
    sequence: u64,
    instance: String,
}

impl Liveness {
    fn new(config: &AdapterConfig) -> Self {
        let interval = match config.timeouts.liveness_interval_ms {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        };
        Self {
            interval,
            timeout: Duration::from_millis(config.timeouts.liveness_timeout_ms),
            due: Instant::now() + interval.unwrap_or_default(),
            outstanding: None,
            sequence: 0,
            instance: messages::new_request_id(),
        }
    }

    /// When [`Liveness::on_due`] must run next; `None` with the probe off.
    fn due(&self) -> Option<Instant> {
        self.interval.map(|_| self.due)
    }

    /// Sends the next probe, or reports the adapter deaf when the outstanding one is late.
    fn on_due(&mut self, client: &IpcClient, topic: &str) -> Result<(), String> {
        if self.outstanding.is_some() {
            return Err(format!(
                "the liveness probe published on {topic} did not come back within {} ms: the \
                 nucleus dropped the subscription without a word (nucleus lite does this)",
                self.timeout.as_millis()
            ));
        }
        self.sequence += 1;
        let id = format!("{}-{}", self.instance, self.sequence);
        let client = client.clone();
        let topic = topic.to_owned();
        let payload = messages::probe(&id);
        // The publish runs on its own; a failure shows up as the probe not coming back.
        tokio::spawn(async move {
            if let Err(e) = client.publish(&topic, &payload).await {
                tracing::warn!(error = %e, "publishing the liveness probe failed");
            }
        });
        self.outstanding = Some(id);
        self.due = Instant::now() + self.timeout;
        Ok(())
    }

    /// A probe arrived; returns whether it was this adapter's outstanding one.
    fn on_probe(&mut self, id: &str) -> bool {
        if self.outstanding.as_deref() != Some(id) {
            return false;
        }
        self.outstanding = None;
        self.due = Instant::now() + self.interval.unwrap_or_default();
        true
    }
}

/// Sleeps until `at`, or forever when there is no such time.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Handles one delivery from the subscription; `Err` when the connection is to be counted lost.
fn deliver(
    ctx: &Arc<Context>,
    admitted: &WaitingRoom,
    tasks: &mut JoinSet<()>,
    liveness: &mut Liveness,
    delivery: Result<SubscriptionEvent, IpcError>,
) -> Result<(), String> {
    match delivery {
        Ok(event) => {
            if let Some(id) = messages::probe_id(&event.payload) {
                if !liveness.on_probe(id) {
                    tracing::debug!(probe = id, "ignoring another adapter's liveness probe");
                }
            } else {
                dispatch(ctx, admitted, tasks, event);
            }
            Ok(())
        }
        Err(IpcError::MessageTooLarge { len, max, binary }) => {
            let ctx = ctx.clone();
            tasks.spawn(async move {
                tracing::warn!(
                    len,
                    max,
                    "request message above the incoming limit: answering message_too_large"
                );
                let reply = Reply::error(
                    None,
                    ErrorCode::MessageTooLarge,
                    format!(
                        "the request message ({len} bytes) exceeds the adapter's limit of {max} \
                         bytes; send a file reference (image_dir + fname, or path) instead of \
                         image_base64"
                    ),
                );
                publish_reply(&ctx, None, &reply, binary).await;
            });
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// `--max-queued-bytes`, or when it is not set, the bound derived from the memory limit this
/// process runs under ([`defaults::queued_bytes_for`]), with a log line saying which.
fn queued_bytes(config: &AdapterConfig) -> u64 {
    if let Some(bytes) = config.max_queued_bytes {
        return bytes;
    }
    let limit = memory_limit::detect();
    let bytes = defaults::queued_bytes_for(
        limit.as_ref().map(|l| l.bytes),
        config.ipc.max_incoming_frame_bytes,
    );
    match &limit {
        Some(limit) => tracing::info!(
            memory_limit_mib = limit.bytes >> 20,
            memory_limit_source = %limit.source,
            max_queued_bytes = bytes,
            "max_queued_bytes derived from the memory limit"
        ),
        None => tracing::warn!(
            max_queued_bytes = bytes,
            "memory limit unknown (no /proc?): max_queued_bytes left at its largest default"
        ),
    }
    bytes
}

/// Admission of messages: a request count (`max_in_flight + max_queued`) and a payload byte
/// budget (`max_queued_bytes`, counted in KiB), both held until the message is answered.
struct WaitingRoom {
    requests: Arc<Semaphore>,
    kib: Arc<Semaphore>,
}

impl WaitingRoom {
    fn new(config: &AdapterConfig, max_queued_bytes: u64) -> Self {
        let kib = usize::try_from(max_queued_bytes.div_ceil(1024))
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            requests: Arc::new(Semaphore::new(
                config.max_in_flight as usize + config.max_queued as usize,
            )),
            kib: Arc::new(Semaphore::new(kib)),
        }
    }

    /// Both admissions for a message of `bytes`, or `None` when either bound is reached.
    fn admit(
        &self,
        bytes: usize,
    ) -> Option<(
        tokio::sync::OwnedSemaphorePermit,
        tokio::sync::OwnedSemaphorePermit,
    )> {
        let kib = u32::try_from(bytes.div_ceil(1024).max(1)).ok()?;
        let request = self.requests.clone().try_acquire_owned().ok()?;
        let payload = self.kib.clone().try_acquire_many_owned(kib).ok()?;
        Some((request, payload))
    }
}

/// The bytes a message holds while it waits: a binaryMessage its bytes, a jsonMessage the JSON
/// text it arrived as (its frame's payload; the parsed document is not serialised again).
fn held_bytes(event: &SubscriptionEvent) -> usize {
    match &event.payload {
        Payload::Binary(bytes) => bytes.len(),
        Payload::Json(_) => event.frame_len,
    }
}

fn dispatch(
    ctx: &Arc<Context>,
    admitted: &WaitingRoom,
    tasks: &mut JoinSet<()>,
    event: SubscriptionEvent,
) {
    let ctx = ctx.clone();
    match admitted.admit(held_bytes(&event)) {
        Some(admission) => {
            tasks.spawn(async move {
                let _admission = admission;
                handle(&ctx, event).await;
            });
        }
        None => {
            tasks.spawn(async move {
                let binary = matches!(event.payload, Payload::Binary(_));
                let (request_id, topic) =
                    match messages::parse_request(&event.payload, &ctx.config.topics.request_topic)
                    {
                        Ok(r) => (r.request_id, r.reply_topic),
                        Err(r) => (r.request_id, None),
                    };
                tracing::warn!(%request_id, "queue full: answering overloaded");
                let reply = Reply::error(
                    request_id,
                    ErrorCode::Overloaded,
                    "the adapter's request queue is full (max_queued requests or \
                     max_queued_bytes of messages are waiting); retry shortly",
                );
                publish_reply(&ctx, topic.as_deref(), &reply, binary).await;
            });
        }
    }
}

async fn handle(ctx: &Context, event: SubscriptionEvent) {
    let started = Instant::now();
    let binary = matches!(event.payload, Payload::Binary(_));
    let (reply, topic) =
        match messages::parse_request(&event.payload, &ctx.config.topics.request_topic) {
            Err(rejected) => (
                Reply::error(rejected.request_id, rejected.code, rejected.message),
                None,
            ),
            Ok(request) => {
                // The deadline covers the wait for a free slot too, so a backlog cannot hold a
                // request (or a shutdown) for longer than one reply deadline.
                let timeout = ctx.config.timeouts.reply_deadline();
                let deadline = started + timeout;
                let attempt = async {
                    // Closed only if the adapter is dropped; then no reply can be sent anyway.
                    let _slot = ctx.in_flight.acquire().await.ok()?;
                    Some(ctx.service.classify_until(&request, deadline).await)
                };
                let id = request.request_id.clone();
                let reply = match tokio::time::timeout_at(deadline, attempt).await {
                    Ok(None) => return,
                    Ok(Some(Ok(answer))) => Reply::ok(id, answer.label, answer.predictions),
                    Ok(Some(Err(f))) => Reply::error(id, f.code, f.message),
                    Err(_) => Reply::error(
                        id,
                        ErrorCode::Timeout,
                        format!(
                            "no answer from the service within {} ms",
                            timeout.as_millis()
                        ),
                    ),
                };
                (reply, request.reply_topic)
            }
        };
    let request_id = reply.request_id.as_deref().unwrap_or("");
    match &reply.error {
        None => {
            tracing::info!(request_id, label = ?reply.label, elapsed_ms = started.elapsed().as_millis() as u64, "classified")
        }
        Some(e) => {
            tracing::warn!(request_id, code = e.code.as_str(), message = %e.message, "request failed")
        }
    }
    publish_reply(ctx, topic.as_deref(), &reply, binary).await;
}

/// The message carrying `reply`: label text, or JSON as binaryMessage text or jsonMessage.
fn encode_reply(config: &AdapterConfig, reply: &Reply, binary_request: bool) -> Payload {
    let json_message_fits = config.ipc.nucleus == Flavour::Classic;
    match config.reply_format {
        ReplyFormat::Label => Payload::Binary(reply.to_label_text().into_bytes()),
        ReplyFormat::Json if binary_request || !json_message_fits => {
            Payload::Binary(reply.to_json().to_string().into_bytes())
        }
        ReplyFormat::Json => Payload::Json(reply.to_json()),
    }
}

/// Publishes `reply`, falling back to an error reply when the first attempt cannot be delivered.
async fn publish_reply(ctx: &Context, requested_topic: Option<&str>, reply: &Reply, binary: bool) {
    let default_topic = ctx.config.topics.reply_topic.as_str();
    let topic = requested_topic.unwrap_or(default_topic);
    let request_id = reply.request_id.as_deref().unwrap_or("");
    let fallback = match ctx
        .client
        .publish(topic, &encode_reply(&ctx.config, reply, binary))
        .await
    {
        Ok(()) => return,
        Err(IpcError::FrameTooLarge { len, max }) => Some((
            topic,
            Reply::error(
                reply.request_id.clone(),
                ErrorCode::ReplyTooLarge,
                format!(
                    "the reply ({len} bytes) exceeds the nucleus frame limit ({max} bytes); ask for a smaller top_k"
                ),
            ),
        )),
        Err(e @ IpcError::Service { .. }) if topic != default_topic => Some((
            default_topic,
            Reply::error(
                reply.request_id.clone(),
                ErrorCode::ReplyFailed,
                format!("cannot publish the reply on {topic}: {e}"),
            ),
        )),
        Err(e) => {
            tracing::error!(request_id, %topic, error = %e, "reply could not be published");
            None
        }
    };
    if let Some((topic, fallback)) = fallback {
        tracing::warn!(request_id, %topic, "publishing a fallback error reply");
        if let Err(e) = ctx
            .client
            .publish(topic, &encode_reply(&ctx.config, &fallback, binary))
            .await
        {
            tracing::error!(request_id, %topic, error = %e, "fallback reply could not be published");
        }
    }
}
