//! Greengrass IPC frames on top of AWS event-stream messages.
//!
//! The byte-level format (prelude, header encoding, both CRC32s) is delegated entirely to
//! `aws-smithy-eventstream`, the library the AWS SDKs use, so this module never computes a CRC or
//! lays out a header by hand. What it adds is the RPC layer the nucleus speaks on top
//! (`:message-type`, `:message-flags`, `:stream-id`) and the size limits the crate needs:
//!
//! * **Incoming**: the event-stream library trusts the length prefix. [`FrameReader`] reads only the
//!   12-byte prelude first, lets the library verify its CRC, and refuses a frame whose declared length
//!   is above the configured bound *before* allocating a buffer for it. The caller can then either
//!   drop the connection or [`FrameReader::skip_oversized`] the frame: its (small) headers and the
//!   first bytes of its payload are read so the caller can still tell which stream it was for and
//!   what kind of message, the rest is streamed through a small scratch buffer.
//! * **Outgoing**: [`encode`] refuses to produce a frame larger than the configured limit, because
//!   nucleus lite resets the connection on any frame of 10000 bytes or more.

use std::fmt;

use aws_smithy_eventstream::frame::{read_message_from, write_message_to};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes of the event-stream prelude: total length, headers length, prelude CRC.
pub const PRELUDE_LEN: usize = 12;
/// Fixed overhead of a frame: prelude plus trailing message CRC.
pub const FRAME_OVERHEAD: usize = 16;
/// Largest frame nucleus lite accepts is 9999 bytes: it resets the connection at 10000 and above.
pub const LITE_MAX_FRAME: usize = 9_999;
/// Largest frame the classic nucleus' IPC library accepts (24 MiB).
pub const CLASSIC_MAX_FRAME: usize = 24 * 1024 * 1024;

/// Header names used by the Greengrass RPC layer.
pub mod header {
    /// Message type (i32), see [`super::MessageType`].
    pub const MESSAGE_TYPE: &str = ":message-type";
    /// Message flags (i32), see [`super::flags`].
    pub const MESSAGE_FLAGS: &str = ":message-flags";
    /// Stream id (i32); 0 for connection-level messages.
    pub const STREAM_ID: &str = ":stream-id";
    /// Protocol version, only on Connect.
    pub const VERSION: &str = ":version";
    /// Payload content type.
    pub const CONTENT_TYPE: &str = ":content-type";
    /// Operation name, only on a stream's first frame.
    pub const OPERATION: &str = "operation";
    /// Smithy shape name of the payload.
    pub const SERVICE_MODEL_TYPE: &str = "service-model-type";
}

/// Flag bits carried in `:message-flags`.
pub mod flags {
    /// Set on a ConnectAck that accepts the connection.
    pub const CONNECTION_ACCEPTED: i32 = 0x1;
    /// Ends the stream the frame belongs to.
    pub const TERMINATE_STREAM: i32 = 0x2;
}

/// The protocol version both sides announce in Connect.
pub const PROTOCOL_VERSION: &str = "0.1.0";
/// Content type of every JSON payload.
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// `:message-type` values of the Greengrass RPC layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// Request, response or stream event.
    ApplicationMessage,
    /// Modelled error; ends the stream.
    ApplicationError,
    /// Keep-alive probe (never sent by this crate: nucleus lite closes on it).
    Ping,
    /// Answer to a Ping.
    PingResponse,
    /// First frame of a connection.
    Connect,
    /// Answer to Connect.
    ConnectAck,
    /// The peer broke the protocol; the connection closes.
    ProtocolError,
    /// The peer failed internally; the connection closes.
    InternalError,
}

impl MessageType {
    /// Wire value of the type.
    pub fn as_i32(self) -> i32 {
        match self {
            Self::ApplicationMessage => 0,
            Self::ApplicationError => 1,
            Self::Ping => 2,
            Self::PingResponse => 3,
            Self::Connect => 4,
            Self::ConnectAck => 5,
            Self::ProtocolError => 6,
            Self::InternalError => 7,
        }
    }

    /// Parses a wire value.
    pub fn from_i32(value: i32) -> Option<Self> {
        Some(match value {
            0 => Self::ApplicationMessage,
            1 => Self::ApplicationError,
            2 => Self::Ping,
            3 => Self::PingResponse,
            4 => Self::Connect,
            5 => Self::ConnectAck,
            6 => Self::ProtocolError,
            7 => Self::InternalError,
            _ => return None,
        })
    }
}

/// One RPC frame: the three routing headers plus any others and the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// `:message-type`.
    pub message_type: MessageType,
    /// `:message-flags` bit set.
    pub flags: i32,
    /// `:stream-id`.
    pub stream_id: i32,
    /// Every other header, in wire order.
    pub headers: Vec<(String, HeaderValue)>,
    /// Raw payload (JSON for application messages).
    pub payload: Bytes,
}

impl Frame {
    /// A frame with no extra headers and an empty payload.
    pub fn new(message_type: MessageType, flags: i32, stream_id: i32) -> Self {
        Self {
            message_type,
            flags,
            stream_id,
            headers: Vec::new(),
            payload: Bytes::new(),
        }
    }

    /// Adds a string header (builder style).
    pub fn with_str_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((
            name.to_owned(),
            HeaderValue::String(value.to_owned().into()),
        ));
        self
    }

    /// Sets the payload (builder style).
    pub fn with_payload(mut self, payload: impl Into<Bytes>) -> Self {
        self.payload = payload.into();
        self
    }

    /// A JSON application frame with `:content-type` and `service-model-type` set.
    pub fn json(
        message_type: MessageType,
        flags: i32,
        stream_id: i32,
        model_type: &str,
        payload: impl Into<Bytes>,
    ) -> Self {
        Self::new(message_type, flags, stream_id)
            .with_str_header(header::CONTENT_TYPE, CONTENT_TYPE_JSON)
            .with_str_header(header::SERVICE_MODEL_TYPE, model_type)
            .with_payload(payload)
    }

    /// Value of a string header, if present and a string.
    pub fn str_header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|(n, v)| match v {
            HeaderValue::String(s) if n == name => Some(s.as_str()),
            _ => None,
        })
    }

    /// Whether the TerminateStream flag is set.
    pub fn terminates_stream(&self) -> bool {
        self.flags & flags::TERMINATE_STREAM != 0
    }
}

/// Why a frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The frame (declared or encoded) is above the configured limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of the frame in bytes.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// Bad CRC, bad header encoding, bad length fields.
    #[error("malformed event-stream frame: {0}")]
    Malformed(String),
    /// A valid event-stream message without the RPC routing headers.
    #[error("frame is missing or has an invalid {0} header")]
    MissingHeader(&'static str),
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// Socket error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `frame`, refusing results larger than `max_len` bytes.
pub fn encode(frame: &Frame, max_len: usize) -> Result<Vec<u8>, FrameError> {
    let mut message = Message::new(frame.payload.clone())
        .add_header(Header::new(
            header::MESSAGE_TYPE,
            HeaderValue::Int32(frame.message_type.as_i32()),
        ))
        .add_header(Header::new(
            header::MESSAGE_FLAGS,
            HeaderValue::Int32(frame.flags),
        ))
        .add_header(Header::new(
            header::STREAM_ID,
            HeaderValue::Int32(frame.stream_id),
        ));
    for (name, value) in &frame.headers {
        message = message.add_header(Header::new(name.clone(), value.clone()));
    }
    let mut out = Vec::with_capacity(FRAME_OVERHEAD + frame.payload.len() + 128);
    write_message_to(&message, &mut out).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if out.len() > max_len {
        return Err(FrameError::TooLarge {
            len: out.len(),
            max: max_len,
        });
    }
    Ok(out)
}

/// Decodes one complete frame held in `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
    let message = read_message_from(bytes).map_err(|e| FrameError::Malformed(e.to_string()))?;
    from_message(message)
}

fn from_message(message: Message) -> Result<Frame, FrameError> {
    let mut message_type = None;
    let mut flags = None;
    let mut stream_id = None;
    let mut headers = Vec::new();
    for h in message.headers() {
        match (h.name().as_str(), h.value()) {
            (header::MESSAGE_TYPE, HeaderValue::Int32(v)) => message_type = Some(*v),
            (header::MESSAGE_FLAGS, HeaderValue::Int32(v)) => flags = Some(*v),
            (header::STREAM_ID, HeaderValue::Int32(v)) => stream_id = Some(*v),
            (name, value) => headers.push((name.to_owned(), value.clone())),
        }
    }
    let message_type = message_type
        .and_then(MessageType::from_i32)
        .ok_or(FrameError::MissingHeader(header::MESSAGE_TYPE))?;
    Ok(Frame {
        message_type,
        flags: flags.ok_or(FrameError::MissingHeader(header::MESSAGE_FLAGS))?,
        stream_id: stream_id.ok_or(FrameError::MissingHeader(header::STREAM_ID))?,
        headers,
        payload: message.payload().clone(),
    })
}

/// Reads frames from a byte stream with a bound on their size.
pub struct FrameReader<R> {
    inner: R,
    max_len: usize,
    /// Prelude of the oversized frame last refused by [`FrameReader::read`], body still unread.
    refused: Option<[u8; PRELUDE_LEN]>,
}

/// Headers larger than this are not read even from an oversized frame (real ones are ~150 bytes).
const MAX_SKIPPED_HEADERS: usize = 16 * 1024;
/// Bytes of an oversized frame's payload kept to tell binaryMessage from jsonMessage.
const PAYLOAD_PREFIX: usize = 64;

/// What could be read of an oversized frame before its body was discarded.
#[derive(Debug, Clone, Default)]
pub struct OversizedHead {
    /// Its `:stream-id`, when its headers could be read (their CRC is not checked: the message
    /// CRC covers the whole frame, which is not read).
    pub stream_id: Option<i32>,
    /// The first bytes of its payload.
    pub payload_prefix: Vec<u8>,
}

impl OversizedHead {
    /// Whether `needle` occurs in the kept start of the payload.
    pub fn payload_prefix_contains(&self, needle: &[u8]) -> bool {
        self.payload_prefix
            .windows(needle.len())
            .any(|w| w == needle)
    }
}

impl<R> fmt::Debug for FrameReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameReader")
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

/// Result of reading the next frame.
#[derive(Debug)]
pub enum ReadOutcome {
    /// A complete, valid frame.
    Frame(Frame),
    /// The peer closed the connection cleanly between frames.
    Eof,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps `inner`; frames whose declared total length exceeds `max_len` are refused.
    pub fn new(inner: R, max_len: usize) -> Self {
        Self {
            inner,
            max_len,
            refused: None,
        }
    }

    /// Reads the next frame.
    ///
    /// On [`FrameError::TooLarge`] the rest of that frame is still unread: call
    /// [`FrameReader::skip`] with the reported length to continue, or drop the connection.
    pub async fn read(&mut self) -> Result<ReadOutcome, FrameError> {
        let mut prelude = [0u8; PRELUDE_LEN];
        // Distinguish a clean close (no byte of a new frame) from a truncated frame.
        let first = self.inner.read(&mut prelude).await?;
        if first == 0 {
            return Ok(ReadOutcome::Eof);
        }
        read_fully(&mut self.inner, &mut prelude[first..]).await?;

        let total_len =
            u32::from_be_bytes([prelude[0], prelude[1], prelude[2], prelude[3]]) as usize;
        if total_len < FRAME_OVERHEAD {
            return Err(FrameError::Malformed(format!(
                "declared frame length {total_len} is below the 16-byte minimum"
            )));
        }
        // Refuse an oversized frame before allocating; its prelude CRC is still checked so that a
        // corrupted length is reported as corruption rather than as a (skippable) big frame.
        if total_len > self.max_len {
            verify_prelude(&prelude)?;
            self.refused = Some(prelude);
            return Err(FrameError::TooLarge {
                len: total_len,
                max: self.max_len,
            });
        }
        let mut buf = vec![0u8; total_len];
        buf[..PRELUDE_LEN].copy_from_slice(&prelude);
        read_fully(&mut self.inner, &mut buf[PRELUDE_LEN..]).await?;
        decode(&buf).map(ReadOutcome::Frame)
    }

    /// Discards the rest of the frame [`FrameReader::read`] just refused as too large, keeping
    /// its stream id and the start of its payload.
    pub async fn skip_oversized(&mut self) -> Result<OversizedHead, FrameError> {
        let Some(prelude) = self.refused.take() else {
            return Ok(OversizedHead::default());
        };
        let total_len =
            u32::from_be_bytes([prelude[0], prelude[1], prelude[2], prelude[3]]) as usize;
        let headers_len =
            u32::from_be_bytes([prelude[4], prelude[5], prelude[6], prelude[7]]) as usize;
        let body_len = total_len - PRELUDE_LEN;
        let mut head = OversizedHead::default();
        let mut consumed = 0;
        if headers_len <= MAX_SKIPPED_HEADERS && headers_len + 4 <= body_len {
            let mut headers = vec![0u8; headers_len];
            read_fully(&mut self.inner, &mut headers).await?;
            consumed += headers_len;
            head.stream_id = stream_id_of_headers(&headers);
            let prefix_len = PAYLOAD_PREFIX.min(body_len - headers_len - 4);
            head.payload_prefix = vec![0u8; prefix_len];
            read_fully(&mut self.inner, &mut head.payload_prefix).await?;
            consumed += prefix_len;
        }
        self.discard(body_len - consumed).await?;
        Ok(head)
    }

    /// Discards the remainder of an oversized frame of `total_len` bytes whose prelude was read.
    pub async fn skip(&mut self, total_len: usize) -> Result<(), FrameError> {
        self.refused = None;
        self.discard(total_len.saturating_sub(PRELUDE_LEN)).await
    }

    async fn discard(&mut self, mut remaining: usize) -> Result<(), FrameError> {
        let mut scratch = [0u8; 8192];
        while remaining > 0 {
            let n = remaining.min(scratch.len());
            read_fully(&mut self.inner, &mut scratch[..n]).await?;
            remaining -= n;
        }
        Ok(())
    }
}

/// Reads `:stream-id` from a frame's header block by wrapping it in a payload-less message and
/// letting the event-stream library decode it, so no header is parsed by hand here.
fn stream_id_of_headers(headers: &[u8]) -> Option<i32> {
    let total = FRAME_OVERHEAD + headers.len();
    let mut bytes = Vec::with_capacity(total);
    bytes.extend_from_slice(&(total as u32).to_be_bytes());
    bytes.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&prelude_crc.to_be_bytes());
    bytes.extend_from_slice(headers);
    let message_crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&message_crc.to_be_bytes());
    let message = read_message_from(&bytes[..]).ok()?;
    message
        .headers()
        .iter()
        .find_map(|h| match (h.name().as_str(), h.value()) {
            (header::STREAM_ID, HeaderValue::Int32(id)) => Some(*id),
            _ => None,
        })
}

/// Checks the prelude CRC of a frame whose body is not read.
///
/// `aws-smithy-eventstream` validates whole messages only, so this one check uses `crc32fast`,
/// the CRC implementation that library itself uses.
fn verify_prelude(prelude: &[u8; PRELUDE_LEN]) -> Result<(), FrameError> {
    let expected = crc32fast::hash(&prelude[..8]);
    let actual = u32::from_be_bytes([prelude[8], prelude[9], prelude[10], prelude[11]]);
    if expected != actual {
        return Err(FrameError::Malformed(format!(
            "prelude checksum mismatch (expected {expected:#010x}, got {actual:#010x})"
        )));
    }
    Ok(())
}

async fn read_fully<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<(), FrameError> {
    match r.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(FrameError::Truncated),
        Err(e) => Err(FrameError::Io(e)),
    }
}

/// Writes one already-encoded frame and flushes it.
pub async fn write_encoded<W: AsyncWrite + Unpin>(
    w: &mut W,
    bytes: &[u8],
) -> Result<(), FrameError> {
    w.write_all(bytes).await?;
    w.flush().await?;
    Ok(())
}
