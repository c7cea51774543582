//! The adapter: requests from local pub/sub → `POST /classify` → one reply each.
//!
//! Flow: connect to the nucleus, subscribe to the request topic, and for every message spawn a
//! task that parses it ([`crate::messages`]), calls the service ([`crate::service`]) under the
//! per-request timeout, and publishes exactly one reply — success or an error with a stable code.
//!
//! **Bounded work.** At most `max_in_flight` requests call the service at once (a semaphore); at
//! most `max_queued` more wait for a slot. A request beyond that is answered at once with
//! `overloaded`, so every request still gets its one reply. The IPC reader itself never waits on
//! this work (see [`crate::client`]).
//!
//! **Replies** go to the request's validated `reply_topic` or the configured reply topic, in the
//! request's own message kind (binaryMessage JSON text for a binaryMessage request, jsonMessage for
//! a jsonMessage request); in `label` format always as binaryMessage text. A reply that cannot be
//! published on a requested `reply_topic` (for example unauthorised) is replaced by a
//! `reply_failed` error on the default reply topic; a reply too large for the nucleus' frame limit
//! is replaced by `reply_too_large`.
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

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::{IpcClient, IpcError, Subscription};
use crate::config::{AdapterConfig, ReplyFormat};
use crate::messages::{self, ErrorCode, Reply};
use crate::pubsub::{Payload, SubscriptionEvent};
use crate::service::ServiceClient;

/// Why the adapter stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Connecting or subscribing failed at start-up.
    #[error("cannot start: {0}")]
    Startup(#[source] IpcError),
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
            Self::Startup(_) => 3,
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
}

/// A connected, subscribed adapter that has not started processing yet.
#[derive(Debug)]
pub struct Adapter {
    ctx: Arc<Context>,
    subscription: Subscription,
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
    /// Validates the configuration, connects to the nucleus and subscribes to the request topic.
    /// When this returns, requests published on the topic will be received.
    pub async fn start(config: AdapterConfig) -> Result<Self, AdapterError> {
        let client_config = config.ipc.client_config().map_err(AdapterError::Config)?;
        messages::validate_reply_topic(&config.reply_topic, &config.request_topic)
            .map_err(|e| AdapterError::Config(format!("--reply-topic: {e}")))?;
        if config.request_topic.is_empty() {
            return Err(AdapterError::Config(
                "--request-topic must not be empty".into(),
            ));
        }
        let service = ServiceClient::new(&config.service_url).map_err(AdapterError::Config)?;
        let client = IpcClient::connect(client_config)
            .await
            .map_err(AdapterError::Startup)?;
        let subscription = client
            .subscribe(&config.request_topic, None)
            .await
            .map_err(AdapterError::Startup)?;
        tracing::info!(
            request_topic = %config.request_topic,
            reply_topic = %config.reply_topic,
            service = %config.service_url,
            format = ?config.reply_format,
            max_in_flight = config.max_in_flight,
            "adapter subscribed and ready"
        );
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight as usize));
        Ok(Self {
            ctx: Arc::new(Context {
                client,
                service,
                config,
                in_flight,
            }),
            subscription,
        })
    }

    /// Processes requests until `shutdown` resolves (then drains and returns `Ok`) or the
    /// connection is lost (then returns [`AdapterError::ConnectionLost`] at once).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), AdapterError> {
        let admitted = Arc::new(Semaphore::new(
            self.ctx.config.max_in_flight as usize + self.ctx.config.max_queued as usize,
        ));
        let mut tasks = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        let lost = loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break None,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                next = self.subscription.next() => match next {
                    Some(Ok(event)) => dispatch(&self.ctx, &admitted, &mut tasks, event),
                    Some(Err(e)) => break Some(e.to_string()),
                    None => break Some("subscription ended".to_owned()),
                },
            }
        };
        if let Some(reason) = lost {
            tasks.abort_all();
            tracing::error!(
                %reason,
                abandoned = tasks.len(),
                "lost the connection to the Greengrass nucleus; exiting so that Greengrass restarts the component"
            );
            return Err(AdapterError::ConnectionLost(reason));
        }

        tracing::info!(
            in_flight = tasks.len(),
            "shutdown requested: no new requests, finishing the ones received"
        );
        if let Err(e) = self.subscription.close().await {
            tracing::warn!(error = %e, "closing the request subscription failed");
        }
        // Requests that were received before the close still get their reply.
        while let Some(Ok(event)) = self.subscription.try_next() {
            dispatch(&self.ctx, &admitted, &mut tasks, event);
        }
        while tasks.join_next().await.is_some() {}
        tracing::info!("adapter stopped");
        Ok(())
    }
}

fn dispatch(
    ctx: &Arc<Context>,
    admitted: &Arc<Semaphore>,
    tasks: &mut JoinSet<()>,
    event: SubscriptionEvent,
) {
    let ctx = ctx.clone();
    match admitted.clone().try_acquire_owned() {
        Ok(admission) => {
            tasks.spawn(async move {
                let _admission = admission;
                handle(&ctx, event).await;
            });
        }
        Err(_) => {
            tasks.spawn(async move {
                let binary = matches!(event.payload, Payload::Binary(_));
                let (request_id, topic) =
                    match messages::parse_request(&event.payload, &ctx.config.request_topic) {
                        Ok(r) => (r.request_id, r.reply_topic),
                        Err(r) => (r.request_id, None),
                    };
                tracing::warn!(%request_id, "queue full: answering overloaded");
                let reply = Reply::error(
                    request_id,
                    ErrorCode::Overloaded,
                    "the adapter's request queue is full",
                );
                publish_reply(&ctx, topic.as_deref(), &reply, binary).await;
            });
        }
    }
}

async fn handle(ctx: &Context, event: SubscriptionEvent) {
    let started = Instant::now();
    let binary = matches!(event.payload, Payload::Binary(_));
    let (reply, topic) = match messages::parse_request(&event.payload, &ctx.config.request_topic) {
        Err(rejected) => (
            Reply::error(rejected.request_id, rejected.code, rejected.message),
            None,
        ),
        Ok(request) => {
            // The deadline covers the wait for a free slot too, so a backlog cannot hold a
            // request (or a shutdown) for longer than one request timeout.
            let timeout = ctx.config.request_timeout();
            let attempt = async {
                // Closed only if the adapter is dropped; then no reply can be sent anyway.
                let _slot = ctx.in_flight.acquire().await.ok()?;
                Some(ctx.service.classify(&request).await)
            };
            let reply = match tokio::time::timeout(timeout, attempt).await {
                Ok(None) => return,
                Ok(Some(Ok(c))) => Reply::ok(request.request_id.clone(), c.label, c.predictions),
                Ok(Some(Err(f))) => Reply::error(request.request_id.clone(), f.code, f.message),
                Err(_) => Reply::error(
                    request.request_id.clone(),
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
    match &reply.error {
        None => {
            tracing::info!(request_id = %reply.request_id, label = ?reply.label, elapsed_ms = started.elapsed().as_millis() as u64, "classified")
        }
        Some(e) => {
            tracing::warn!(request_id = %reply.request_id, code = e.code.as_str(), message = %e.message, "request failed")
        }
    }
    publish_reply(ctx, topic.as_deref(), &reply, binary).await;
}

fn encode_reply(format: ReplyFormat, reply: &Reply, binary: bool) -> Payload {
    match format {
        ReplyFormat::Label => Payload::Binary(reply.to_label_text().into_bytes()),
        ReplyFormat::Json if binary => Payload::Binary(reply.to_json().to_string().into_bytes()),
        ReplyFormat::Json => Payload::Json(reply.to_json()),
    }
}

/// Publishes `reply`, falling back to an error reply when the first attempt cannot be delivered.
async fn publish_reply(ctx: &Context, requested_topic: Option<&str>, reply: &Reply, binary: bool) {
    let default_topic = ctx.config.reply_topic.as_str();
    let topic = requested_topic.unwrap_or(default_topic);
    let format = ctx.config.reply_format;
    let fallback = match ctx
        .client
        .publish(topic, &encode_reply(format, reply, binary))
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
            tracing::error!(request_id = %reply.request_id, %topic, error = %e, "reply could not be published");
            None
        }
    };
    if let Some((topic, fallback)) = fallback {
        tracing::warn!(request_id = %reply.request_id, %topic, "publishing a fallback error reply");
        if let Err(e) = ctx
            .client
            .publish(topic, &encode_reply(format, &fallback, binary))
            .await
        {
            tracing::error!(request_id = %reply.request_id, %topic, error = %e, "fallback reply could not be published");
        }
    }
}
