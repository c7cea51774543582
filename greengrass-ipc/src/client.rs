//! Async Greengrass IPC client (tokio, Unix socket): request–response and streaming operations.
//!
//! Design, driven by what the classic nucleus and nucleus lite both accept:
//!
//! * **One writer lock** holds the socket's write half *and* the next stream id. A new stream's id is
//!   taken and its first frame written under that lock, so ids reach the wire strictly as 1, 2, 3…
//!   (the classic nucleus closes the connection otherwise). The write runs in its own task so that
//!   a caller that is cancelled half-way (a timeout around `publish`) can never leave half a frame
//!   on the socket.
//! * **One reader task** owns the read half and routes frames by stream id. The first message on a
//!   stream completes the request whatever its flags (lite never sets TerminateStream on
//!   responses). Later messages on a subscription stream are events. The reader never blocks on a
//!   consumer (event queues are unbounded): it also carries the responses the consumers may be
//!   waiting for, and blocking it would deadlock them. Consumers bound their own work instead.
//! * Incoming frames above the configured bound are skipped unread (prelude CRC checked first)
//!   instead of being allocated; only their headers and the first payload bytes are looked at, so
//!   a skipped subscription event is still reported on its stream ([`IpcError::MessageTooLarge`],
//!   which does not end the subscription) and its sender can be answered. Outgoing frames above
//!   the configured limit are refused before anything is written (nucleus lite resets the
//!   connection at 10000 bytes).
//! * Connecting waits, with a growing pause and a bound ([`ClientConfig::socket_wait`]), while
//!   the socket is missing or refuses connections: a component may start before its nucleus
//!   (or, on a laptop, before the emulator) listens.
//! * No keep-alive: Ping is never sent, because nucleus lite closes the connection on it.
//! * When the connection ends, every pending request and subscription gets
//!   [`IpcError::ConnectionLost`] and [`IpcClient::closed`] resolves; the client never reconnects by
//!   itself (see the adapter for the policy built on that).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;

use crate::configuration::{self, ConfigurationUpdateEvent, GetConfigurationResponse};
use crate::frame::{self, Frame, FrameError, FrameReader, MessageType, ReadOutcome, flags, header};
use crate::iot_core::Qos;
use crate::operation::{
    GetConfiguration, Operation, PublishToIoTCore, PublishToTopic, UpdateState,
};
use crate::pubsub::{self, Payload, ReceiveMode, SubscriptionEvent};

/// Settings of one IPC connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Path of the nucleus Unix socket (`AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT`).
    pub socket_path: PathBuf,
    /// The component's token (`SVCUID`).
    pub auth_token: String,
    /// Incoming frames larger than this are skipped without being allocated.
    pub max_incoming_frame: usize,
    /// Outgoing frames larger than this are refused (use [`frame::LITE_MAX_FRAME`] for lite).
    pub max_outgoing_frame: usize,
    /// How long to keep retrying while the socket is missing or refuses connections (the nucleus
    /// may still be starting); zero tries once.
    pub socket_wait: Duration,
    /// Bound on the Connect handshake (waiting for ConnectAck).
    pub connect_timeout: Duration,
    /// Bound on waiting for the response of one operation.
    pub operation_timeout: Duration,
}

impl ClientConfig {
    /// Default bound on incoming frames, 4 MiB: the classic nucleus may send up to 24 MiB, but a
    /// buffer of that size per message is more memory than a small device should give one
    /// frame; a frame above the bound is skipped unread and reported on its stream.
    pub const DEFAULT_MAX_INCOMING_FRAME: usize = 4 * 1024 * 1024;
    /// Default wait for the socket, 60 s: a component may start before its nucleus listens.
    pub const DEFAULT_SOCKET_WAIT: Duration = Duration::from_secs(60);
    /// Default bound on the handshake and on each operation, 10 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// A configuration with the given socket and token and every other setting at its default:
    /// the `DEFAULT_*` values above, and the outgoing frame limit of nucleus lite (safe for
    /// both flavours).
    pub fn new(socket_path: impl Into<PathBuf>, auth_token: impl Into<String>) -> Self {
        Self {
            socket_path: socket_path.into(),
            auth_token: auth_token.into(),
            max_incoming_frame: Self::DEFAULT_MAX_INCOMING_FRAME,
            max_outgoing_frame: crate::Flavour::Lite.max_outgoing_frame(),
            socket_wait: Self::DEFAULT_SOCKET_WAIT,
            connect_timeout: Self::DEFAULT_TIMEOUT,
            operation_timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

/// Errors of the IPC client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IpcError {
    /// The socket could not be opened.
    #[error("cannot connect to the nucleus socket {path}: {message}")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// OS error text.
        message: String,
    },
    /// The nucleus refused the Connect (bad token, or wrong socket).
    #[error("nucleus rejected the IPC connection: {0}")]
    ConnectRejected(String),
    /// The connection ended; the text says how.
    #[error("connection to the nucleus lost: {0}")]
    ConnectionLost(String),
    /// The nucleus answered with a modelled error (UnauthorizedError, ServiceError, …).
    #[error("{model_type}: {message}")]
    Service {
        /// `service-model-type` of the error, e.g. `aws.greengrass#UnauthorizedError`.
        model_type: String,
        /// `_errorCode` when given.
        error_code: Option<String>,
        /// `message` (classic) or `_message` (lite).
        message: String,
    },
    /// An outgoing frame would exceed the configured limit (nothing was sent).
    #[error("frame of {len} bytes exceeds the outgoing limit of {max} bytes")]
    FrameTooLarge {
        /// Encoded size.
        len: usize,
        /// Limit in force.
        max: usize,
    },
    /// A frame could not be encoded or decoded.
    #[error("frame error: {0}")]
    Frame(String),
    /// The peer broke the RPC protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// No response within the configured time.
    #[error("no response from the nucleus within {0:?}")]
    Timeout(Duration),
    /// The nucleus ended the subscription.
    #[error("the nucleus closed the stream")]
    StreamClosed,
    /// A message on a subscription was larger than the incoming frame bound and was skipped
    /// unread. Unlike the other errors it does not end the subscription.
    #[error("a message of {len} bytes exceeded the incoming limit of {max} bytes and was skipped")]
    MessageTooLarge {
        /// Size of the frame in bytes.
        len: usize,
        /// The limit in force.
        max: usize,
        /// Whether the message was a binaryMessage (from the start of its payload; `true` when
        /// that could not be told), so that a reply can use the same kind.
        binary: bool,
    },
}

impl IpcError {
    /// Whether this is the nucleus' UnauthorizedError.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Self::Service { model_type, .. } if model_type.ends_with("#UnauthorizedError"))
    }

    /// Whether the connection is gone (no further operation can succeed on it).
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, Self::ConnectionLost(_))
    }
}

impl From<FrameError> for IpcError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(io) => Self::ConnectionLost(io.to_string()),
            FrameError::Truncated => Self::ConnectionLost(e.to_string()),
            FrameError::TooLarge { len, max } => Self::FrameTooLarge { len, max },
            other => Self::Frame(other.to_string()),
        }
    }
}

/// The event type of a streaming operation: the model type its events carry and how their JSON
/// body reads.
pub trait StreamEvent: Sized {
    /// `service-model-type` of the events, e.g. `aws.greengrass#SubscriptionResponseMessage`.
    const MODEL: &'static str;
    /// Reads one event's JSON body, which came in a frame payload of `frame_len` bytes; the
    /// error text says what is wrong with it.
    fn from_body(body: &Value, frame_len: usize) -> Result<Self, String>;
}

impl StreamEvent for SubscriptionEvent {
    const MODEL: &'static str = pubsub::SUBSCRIPTION_MESSAGE;
    fn from_body(body: &Value, frame_len: usize) -> Result<Self, String> {
        let (payload, topic) = pubsub::parse_message(body).map_err(|e| e.to_string())?;
        Ok(Self {
            topic,
            payload,
            frame_len,
        })
    }
}

impl StreamEvent for ConfigurationUpdateEvent {
    const MODEL: &'static str = configuration::CONFIGURATION_UPDATE_EVENTS;
    fn from_body(body: &Value, _frame_len: usize) -> Result<Self, String> {
        Self::from_body(body)
    }
}

type EventSender = mpsc::UnboundedSender<Result<Frame, IpcError>>;
type EventReceiver = mpsc::UnboundedReceiver<Result<Frame, IpcError>>;

/// Routing entry of an open stream.
struct StreamSlot {
    /// Completes the request on the stream's first message.
    first: Option<oneshot::Sender<Result<Frame, IpcError>>>,
    /// Present for subscriptions: receives every later message, and the model type of its
    /// events (an event may arrive before the response).
    events: Option<(EventSender, &'static str)>,
}

#[derive(Default)]
struct Streams {
    map: HashMap<i32, StreamSlot>,
    /// Set once the connection is gone; new streams fail with it.
    lost: Option<String>,
}

/// State shared between the client handles and the reader task.
struct Shared {
    streams: Mutex<Streams>,
    lost_tx: watch::Sender<Option<String>>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Streams> {
        // A panic while holding this lock cannot leave the map inconsistent in a way that matters
        // more than losing the connection would, so recover the guard.
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the connection lost and fails every pending stream.
    fn fail_all(&self, reason: &str) {
        let slots: Vec<StreamSlot> = {
            let mut s = self.lock();
            if s.lost.is_none() {
                s.lost = Some(reason.to_owned());
            }
            s.map.drain().map(|(_, v)| v).collect()
        };
        for slot in slots {
            if let Some(first) = slot.first {
                let _ = first.send(Err(IpcError::ConnectionLost(reason.to_owned())));
            }
            if let Some((events, _)) = slot.events {
                let _ = events.send(Err(IpcError::ConnectionLost(reason.to_owned())));
            }
        }
        self.lost_tx.send_if_modified(|v| {
            if v.is_none() {
                *v = Some(reason.to_owned());
                true
            } else {
                false
            }
        });
    }
}

struct WriterState {
    half: OwnedWriteHalf,
    next_stream_id: i32,
}

struct Inner {
    writer: Arc<tokio::sync::Mutex<WriterState>>,
    shared: Arc<Shared>,
    config: ClientConfig,
    reader: AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A connected IPC client. Cheap to clone; the connection closes when the last clone (and the last
/// [`Subscription`]) is dropped.
#[derive(Clone)]
pub struct IpcClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for IpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpcClient")
            .field("socket_path", &self.inner.config.socket_path)
            .finish_non_exhaustive()
    }
}

impl IpcClient {
    /// Connects, sends Connect with the token and waits for an accepting ConnectAck.
    ///
    /// While the socket does not exist or refuses connections (a nucleus still starting, or an
    /// emulator started in the same breath), retries with a pause growing from 50 ms to 2 s for
    /// at most [`ClientConfig::socket_wait`]; any other failure is returned at once.
    pub async fn connect(config: ClientConfig) -> Result<Self, IpcError> {
        let stream = wait_for_socket(&config.socket_path, config.socket_wait).await?;
        let timeout = config.connect_timeout;
        match tokio::time::timeout(timeout, Self::handshake(stream, config)).await {
            Ok(r) => r,
            Err(_) => Err(IpcError::Timeout(timeout)),
        }
    }

    async fn handshake(stream: UnixStream, config: ClientConfig) -> Result<Self, IpcError> {
        let (read_half, mut write_half) = stream.into_split();
        let payload = serde_json::to_vec(&serde_json::json!({ "authToken": config.auth_token }))
            .expect("serializing a string map cannot fail");
        let connect = Frame::new(MessageType::Connect, 0, 0)
            .with_str_header(header::VERSION, frame::PROTOCOL_VERSION)
            .with_str_header(header::CONTENT_TYPE, frame::CONTENT_TYPE_JSON)
            .with_payload(payload);
        let bytes = frame::encode(&connect, config.max_outgoing_frame)?;
        frame::write_encoded(&mut write_half, &bytes)
            .await
            .map_err(|e| IpcError::ConnectRejected(format!("could not send Connect: {e}")))?;

        let mut reader = FrameReader::new(read_half, config.max_incoming_frame);
        let silent_close = || {
            IpcError::ConnectRejected(
                "the nucleus closed the connection without a ConnectAck; nucleus lite does this \
                 when it rejects the authentication token (check SVCUID and that the socket \
                 belongs to this nucleus)"
                    .into(),
            )
        };
        let ack = match reader.read().await {
            Ok(ReadOutcome::Frame(f)) => f,
            Ok(ReadOutcome::Eof) | Err(FrameError::Truncated) => return Err(silent_close()),
            Err(FrameError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                return Err(silent_close());
            }
            Err(e) => return Err(e.into()),
        };
        match ack.message_type {
            MessageType::ConnectAck if ack.flags & flags::CONNECTION_ACCEPTED != 0 => {}
            MessageType::ConnectAck => {
                return Err(IpcError::ConnectRejected(
                    "ConnectAck without ConnectionAccepted: the authentication token (SVCUID) \
                     was not accepted"
                        .into(),
                ));
            }
            other => {
                return Err(IpcError::Protocol(format!(
                    "expected ConnectAck, got {other:?} ({})",
                    String::from_utf8_lossy(&ack.payload)
                )));
            }
        }

        let (lost_tx, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            streams: Mutex::new(Streams::default()),
            lost_tx,
        });
        let reader_task = tokio::spawn(read_loop(reader, shared.clone()));
        Ok(Self {
            inner: Arc::new(Inner {
                writer: Arc::new(tokio::sync::Mutex::new(WriterState {
                    half: write_half,
                    next_stream_id: 1,
                })),
                shared,
                config,
                reader: reader_task.abort_handle(),
            }),
        })
    }

    /// Resolves when the connection is lost, with the reason. Resolves at once if it already is.
    pub async fn closed(&self) -> String {
        let mut rx = self.inner.shared.lost_tx.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or_default(),
            // The sender lives in `Shared`, which `self` keeps alive; this cannot happen.
            Err(_) => "client dropped".into(),
        }
    }

    /// Whether the connection has been lost.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.lock().lost.is_some()
    }

    /// Calls a request–response operation and reads its response (see [`crate::operation`]).
    pub async fn call<O: Operation>(&self, operation: &O) -> Result<O::Response, IpcError> {
        let (stream_id, first, _) = self
            .open_stream(O::NAME, O::REQUEST_MODEL, &operation.body(), None)
            .await?;
        let frame = match self.await_first(first).await {
            Ok(frame) => frame,
            Err(e) => {
                if matches!(e, IpcError::Timeout(_)) {
                    // Forget the stream so a late (or never coming) response does not pin its
                    // slot.
                    self.inner.shared.lock().map.remove(&stream_id);
                }
                return Err(e);
            }
        };
        let payload: &[u8] = if frame.payload.is_empty() {
            b"{}"
        } else {
            &frame.payload
        };
        serde_json::from_slice(payload)
            .map_err(|e| IpcError::Protocol(format!("unreadable {} response: {e}", O::NAME)))
    }

    /// Publishes `payload` on `topic` and waits for the nucleus' response.
    pub async fn publish(&self, topic: &str, payload: &Payload) -> Result<(), IpcError> {
        self.call(&PublishToTopic { topic, payload })
            .await
            .map(|_| ())
    }

    /// Reports this component's lifecycle state (`aws.greengrass#UpdateState`): `RUNNING` from
    /// a `Startup` step tells the nucleus the component is ready, so dependents start after it.
    pub async fn update_state(&self, state: &str) -> Result<(), IpcError> {
        self.call(&UpdateState { state }).await.map(|_| ())
    }

    /// Publishes `payload` to AWS IoT Core on `topic_name` (`aws.greengrass#PublishToIoTCore`).
    /// On the classic nucleus success means queued to its spooler; on nucleus lite, sent (it
    /// fails while the cloud is unreachable). See [`crate::iot_core`].
    pub async fn publish_to_iot_core(
        &self,
        topic_name: &str,
        qos: Qos,
        payload: &[u8],
    ) -> Result<(), IpcError> {
        self.call(&PublishToIoTCore {
            topic_name,
            qos,
            payload,
        })
        .await
        .map(|_| ())
    }

    /// Reads a component's configuration (`aws.greengrass#GetConfiguration`): `None` is this
    /// component, an empty `key_path` the whole configuration, a leaf reads as `{"<leaf>": value}`
    /// (see [`crate::configuration::read`]).
    pub async fn get_configuration(
        &self,
        component_name: Option<&str>,
        key_path: &[&str],
    ) -> Result<GetConfigurationResponse, IpcError> {
        self.call(&GetConfiguration {
            component_name,
            key_path,
        })
        .await
    }

    /// Subscribes to `topic` (MQTT wildcards allowed where the nucleus supports them).
    pub async fn subscribe(
        &self,
        topic: &str,
        receive_mode: Option<ReceiveMode>,
    ) -> Result<Subscription, IpcError> {
        let body = pubsub::subscribe_request(topic, receive_mode);
        self.open_subscription(pubsub::OP_SUBSCRIBE, pubsub::SUBSCRIBE_REQUEST, &body)
            .await
    }

    /// Subscribes to a component's configuration updates
    /// (`aws.greengrass#SubscribeToConfigurationUpdate`; `None` is this component, an empty
    /// `key_path` the root — subscribe at the root, see [`crate::configuration`]). The events
    /// carry no value: read it with [`IpcClient::get_configuration`].
    pub async fn subscribe_to_configuration_update(
        &self,
        component_name: Option<&str>,
        key_path: &[&str],
    ) -> Result<Subscription<ConfigurationUpdateEvent>, IpcError> {
        let body = configuration::request(component_name, key_path);
        self.open_subscription(
            configuration::OP_SUBSCRIBE_TO_CONFIGURATION_UPDATE,
            configuration::SUBSCRIBE_TO_CONFIGURATION_UPDATE_REQUEST,
            &body,
        )
        .await
    }

    async fn open_subscription<E: StreamEvent>(
        &self,
        operation: &str,
        model_type: &str,
        body: &Value,
    ) -> Result<Subscription<E>, IpcError> {
        let (stream_id, first, events) = self
            .open_stream(operation, model_type, body, Some(E::MODEL))
            .await?;
        let events = events.expect("streaming request has an event queue");
        match self.await_first(first).await {
            Ok(_) => Ok(Subscription {
                client: self.clone(),
                stream_id,
                events,
                open: true,
                _event: std::marker::PhantomData,
            }),
            Err(e) => {
                self.inner.shared.lock().map.remove(&stream_id);
                Err(e)
            }
        }
    }

    async fn await_first(
        &self,
        first: oneshot::Receiver<Result<Frame, IpcError>>,
    ) -> Result<Frame, IpcError> {
        let timeout = self.inner.config.operation_timeout;
        let frame = match tokio::time::timeout(timeout, first).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => return Err(IpcError::ConnectionLost("client closed".into())),
            Err(_) => return Err(IpcError::Timeout(timeout)),
        };
        match frame.message_type {
            MessageType::ApplicationMessage => Ok(frame),
            MessageType::ApplicationError => Err(parse_error(&frame)),
            other => Err(IpcError::Protocol(format!(
                "unexpected {other:?} as the response on stream {}",
                frame.stream_id
            ))),
        }
    }

    /// Allocates the next stream id, registers its routing slot and writes the request frame, all
    /// under the writer lock, in a task of its own so that cancellation cannot tear a frame.
    async fn open_stream(
        &self,
        operation: &str,
        model_type: &str,
        body: &Value,
        event_model: Option<&'static str>,
    ) -> Result<
        (
            i32,
            oneshot::Receiver<Result<Frame, IpcError>>,
            Option<EventReceiver>,
        ),
        IpcError,
    > {
        let payload = serde_json::to_vec(body).expect("JSON values always serialize");
        let writer = self.inner.writer.clone();
        let shared = self.inner.shared.clone();
        let max_out = self.inner.config.max_outgoing_frame;
        let operation = operation.to_owned();
        let model_type = model_type.to_owned();
        let task = tokio::spawn(async move {
            let mut w = writer.lock().await;
            let stream_id = w.next_stream_id;
            let request = Frame::json(
                MessageType::ApplicationMessage,
                0,
                stream_id,
                &model_type,
                payload,
            )
            .with_str_header(header::OPERATION, &operation);
            // Encode first: a refused (oversized) request must not consume an id.
            let bytes = frame::encode(&request, max_out)?;
            let (first_tx, first_rx) = oneshot::channel();
            let (events_tx, events_rx) = match event_model {
                Some(model) => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    (Some((tx, model)), Some(rx))
                }
                None => (None, None),
            };
            {
                let mut s = shared.lock();
                if let Some(reason) = &s.lost {
                    return Err(IpcError::ConnectionLost(reason.clone()));
                }
                s.map.insert(
                    stream_id,
                    StreamSlot {
                        first: Some(first_tx),
                        events: events_tx,
                    },
                );
            }
            w.next_stream_id = stream_id
                .checked_add(1)
                .ok_or_else(|| IpcError::Protocol("stream ids exhausted".into()))?;
            if let Err(e) = frame::write_encoded(&mut w.half, &bytes).await {
                let err = IpcError::from(e);
                drop(w);
                shared.fail_all(&format!("writing to the nucleus socket failed: {err}"));
                return Err(err);
            }
            Ok((stream_id, first_rx, events_rx))
        });
        task.await
            .map_err(|e| IpcError::Protocol(format!("writer task failed: {e}")))?
    }

    /// Sends TerminateStream on `stream_id` and forgets it (the nucleus does not answer).
    async fn terminate_stream(&self, stream_id: i32) -> Result<(), IpcError> {
        self.inner.shared.lock().map.remove(&stream_id);
        let bytes = frame::encode(
            &Frame::new(
                MessageType::ApplicationMessage,
                flags::TERMINATE_STREAM,
                stream_id,
            ),
            self.inner.config.max_outgoing_frame,
        )?;
        let writer = self.inner.writer.clone();
        tokio::spawn(async move {
            let mut w = writer.lock().await;
            frame::write_encoded(&mut w.half, &bytes).await
        })
        .await
        .map_err(|e| IpcError::Protocol(format!("writer task failed: {e}")))?
        .map_err(IpcError::from)
    }
}

/// Opens the socket, retrying while it is missing or refusing connections, up to `wait`.
async fn wait_for_socket(path: &std::path::Path, wait: Duration) -> Result<UnixStream, IpcError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(50);
    let mut logged = false;
    loop {
        let error = match UnixStream::connect(path).await {
            Ok(stream) => return Ok(stream),
            Err(e) => e,
        };
        let retryable = matches!(
            error.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
        );
        let now = tokio::time::Instant::now();
        if !retryable || now >= deadline {
            let message = if retryable && !wait.is_zero() {
                format!("{error} (still, after waiting {} ms)", wait.as_millis())
            } else {
                error.to_string()
            };
            return Err(IpcError::Connect {
                path: path.to_path_buf(),
                message,
            });
        }
        if !logged {
            tracing::info!(socket = %path.display(), error = %error, wait_ms = wait.as_millis() as u64, "nucleus socket not ready; waiting for it");
            logged = true;
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// An open subscription to a streaming operation, by default `SubscribeToTopic`'s. Events arrive
/// in order; `None` after the stream ended.
pub struct Subscription<E = SubscriptionEvent> {
    client: IpcClient,
    stream_id: i32,
    events: EventReceiver,
    open: bool,
    _event: std::marker::PhantomData<fn() -> E>,
}

impl<E> std::fmt::Debug for Subscription<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("stream_id", &self.stream_id)
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

impl<E: StreamEvent> Subscription<E> {
    /// Stream id of the subscription.
    pub fn stream_id(&self) -> i32 {
        self.stream_id
    }

    /// The next event, an error that ended the stream (connection lost, stream closed by the
    /// nucleus), or `None` once the stream has ended and its error was delivered.
    /// [`IpcError::MessageTooLarge`] is the exception: one message was skipped, the stream goes on.
    pub async fn next(&mut self) -> Option<Result<E, IpcError>> {
        self.events
            .recv()
            .await
            .map(|r| r.and_then(|f| to_event(&f)))
    }

    /// An event already received, without waiting (used to drain before shutting down).
    pub fn try_next(&mut self) -> Option<Result<E, IpcError>> {
        self.events
            .try_recv()
            .ok()
            .map(|r| r.and_then(|f| to_event(&f)))
    }

    /// Closes the subscription (TerminateStream from the client side). Events received before the
    /// close stay readable with [`Subscription::try_next`] / [`Subscription::next`].
    pub async fn close(&mut self) -> Result<(), IpcError> {
        if !self.open {
            return Ok(());
        }
        self.open = false;
        if self.client.is_closed() {
            return Ok(());
        }
        self.client.terminate_stream(self.stream_id).await
    }
}

impl<E> Drop for Subscription<E> {
    fn drop(&mut self) {
        if self.open && !self.client.is_closed() {
            // Best effort: tell the nucleus to stop sending, if a runtime is still around.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let client = self.client.clone();
                let id = self.stream_id;
                rt.spawn(async move {
                    let _ = client.terminate_stream(id).await;
                });
            }
        }
    }
}

/// Builds the error of an ApplicationError frame: `message` (classic) or `_message` (lite).
pub fn parse_error(frame: &Frame) -> IpcError {
    let model_type = frame
        .str_header(header::SERVICE_MODEL_TYPE)
        .unwrap_or("unknown error")
        .to_owned();
    let (message, error_code) = match serde_json::from_slice::<Value>(&frame.payload) {
        Ok(v) => {
            let message = ["message", "_message"]
                .iter()
                .find_map(|k| v.get(*k).and_then(Value::as_str))
                .unwrap_or("")
                .to_owned();
            let code = v
                .get("_errorCode")
                .and_then(Value::as_str)
                .map(str::to_owned);
            (message, code)
        }
        // The classic nucleus answers unmodelled failures as text/plain.
        Err(_) => (String::from_utf8_lossy(&frame.payload).into_owned(), None),
    };
    IpcError::Service {
        model_type,
        error_code,
        message,
    }
}

async fn read_loop(mut reader: FrameReader<OwnedReadHalf>, shared: Arc<Shared>) {
    let reason = loop {
        match reader.read().await {
            Ok(ReadOutcome::Frame(f)) => {
                if let Some(reason) = route(&shared, f) {
                    break reason;
                }
            }
            Ok(ReadOutcome::Eof) => break "the nucleus closed the socket".to_owned(),
            Err(FrameError::TooLarge { len, max }) => {
                tracing::warn!(
                    len,
                    max,
                    "skipping an incoming IPC frame above the size bound"
                );
                match reader.skip_oversized().await {
                    Ok(head) => route_oversized(&shared, head, len, max),
                    Err(e) => break format!("reading the nucleus socket failed: {e}"),
                }
            }
            Err(e) => break format!("reading the nucleus socket failed: {e}"),
        }
    };
    tracing::debug!(%reason, "IPC reader stopped");
    shared.fail_all(&reason);
}

/// Delivers one frame; returns `Some(reason)` when the connection must be considered lost.
fn route(shared: &Shared, f: Frame) -> Option<String> {
    if f.stream_id == 0 {
        return match f.message_type {
            MessageType::ProtocolError | MessageType::InternalError => Some(format!(
                "the nucleus reported {:?}: {}",
                f.message_type,
                String::from_utf8_lossy(&f.payload)
            )),
            _ => None,
        };
    }
    let mut streams = shared.lock();
    let Some(slot) = streams.map.get_mut(&f.stream_id) else {
        tracing::debug!(
            stream_id = f.stream_id,
            "frame for an unknown stream ignored"
        );
        return None;
    };
    let is_error = f.message_type == MessageType::ApplicationError;
    if let Some(first) = slot.first.take() {
        let event_model = slot.events.as_ref().map(|(_, model)| *model);
        let is_event =
            event_model.is_some() && f.str_header(header::SERVICE_MODEL_TYPE) == event_model;
        if is_event && let Some((events, _)) = &slot.events {
            // An event before the response still proves the subscription is in place.
            let _ = events.send(Ok(f.clone()));
        }
        let done = slot.events.is_none() || is_error || (f.terminates_stream() && !is_event);
        let stream_id = f.stream_id;
        let _ = first.send(Ok(f));
        if done {
            streams.map.remove(&stream_id);
        }
        return None;
    }
    let Some((events, event_model)) = &slot.events else {
        return None;
    };
    let model = f.str_header(header::SERVICE_MODEL_TYPE);
    let closes = f.payload.is_empty() && f.terminates_stream();
    if !is_error && !closes && model.is_some_and(|m| m != *event_model) {
        // The response, after an event that arrived first and completed the request.
        tracing::debug!(stream_id = f.stream_id, model, "late response ignored");
        return None;
    }
    if is_error {
        let _ = events.send(Err(parse_error(&f)));
        streams.map.remove(&f.stream_id);
    } else if closes {
        let _ = events.send(Err(IpcError::StreamClosed));
        streams.map.remove(&f.stream_id);
    } else {
        let terminates = f.terminates_stream();
        let stream_id = f.stream_id;
        let _ = events.send(Ok(f));
        if terminates {
            streams.map.remove(&stream_id);
        }
    }
    None
}

/// Tells the subscription an oversized message was skipped, so its sender can still be answered.
fn route_oversized(shared: &Shared, head: frame::OversizedHead, len: usize, max: usize) {
    let streams = shared.lock();
    let Some(events) = head
        .stream_id
        .and_then(|id| streams.map.get(&id))
        .and_then(|slot| slot.events.as_ref())
        .map(|(events, _)| events)
    else {
        return;
    };
    let binary = !head.payload_prefix_contains(b"jsonMessage");
    let _ = events.send(Err(IpcError::MessageTooLarge { len, max, binary }));
}

fn to_event<E: StreamEvent>(f: &Frame) -> Result<E, IpcError> {
    let body: Value = serde_json::from_slice(&f.payload)
        .map_err(|e| IpcError::Protocol(format!("{} event is not JSON: {e}", E::MODEL)))?;
    E::from_body(&body, f.payload.len())
        .map_err(|e| IpcError::Protocol(format!("invalid {} event: {e}", E::MODEL)))
}
