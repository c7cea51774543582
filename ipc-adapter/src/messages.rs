//! The adapter's request and reply documents.
//!
//! Requests (binaryMessage holding JSON text, or jsonMessage): the body of `POST /classify` —
//! exactly one image source, `{"image_dir", "fname"}` (the seed's form), `{"path"}` or
//! `{"image_base64"}`, plus optional `top_k` and `threshold`, read by `classify-api`'s one
//! reader with the service's rules and messages — and two fields of the adapter's own:
//! `request_id` (string, echoed; a UUID is generated when absent) and `reply_topic` (where to
//! publish the reply). As in the body, no field is nullable: `null` is refused like any other
//! wrong type, and a field the adapter does not know is refused by name.
//!
//! Replies: `{"request_id", "status": "ok", "label", "predictions": [...]}` or
//! `{"request_id", "status": "error", "error": {"code", "message"}}`. The `code` values are the
//! stable [`ErrorCode`] names; `predictions` carry the service's numbers unchanged (serde_json's
//! `float_roundtrip` parses each one to the exact f64 the service printed, which prints back the
//! same). `request_id` is `null` only when a message was too large to be read at all.
//!
//! Liveness probes (`{"classify_adapter_liveness_probe": "<id>"}`, see [`probe_id`]) share the
//! request topic but are never answered.

use classify_api::ClassifyJson;
pub use classify_api::Prediction;
use classify_api::request::describe;
use serde::Serialize;
use serde_json::Value;

use greengrass_ipc::pubsub::Payload;

/// Key of the adapter's liveness probe messages.
pub const PROBE_KEY: &str = "classify_adapter_liveness_probe";

/// A liveness probe message carrying `id`.
pub fn probe(id: &str) -> Payload {
    Payload::Json(serde_json::json!({ PROBE_KEY: id }))
}

/// The id of a liveness probe, or `None` for any other message.
pub fn probe_id(payload: &Payload) -> Option<&str> {
    match payload {
        Payload::Json(Value::Object(map)) if map.len() == 1 => {
            map.get(PROBE_KEY).and_then(Value::as_str)
        }
        _ => None,
    }
}

/// Longest reply topic accepted from a request (Greengrass' limit on topic names).
pub const MAX_TOPIC_LEN: usize = 256;

/// Stable error codes of error replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Not JSON, not an object, wrong field types, zero or several image sources.
    MalformedRequest,
    /// `reply_topic` empty, too long, with wildcards, or the request topic itself.
    InvalidReplyTopic,
    /// Service 400: the image (or the request) could not be decoded.
    InvalidImage,
    /// Service 403: the path is outside the directories the service may read.
    ForbiddenPath,
    /// Service 404: no such image file.
    NotFound,
    /// Service 413: the image is too large.
    ImageTooLarge,
    /// Service 415: unsupported image type.
    UnsupportedMediaType,
    /// Service 422: invalid `top_k` / `threshold`.
    InvalidOptions,
    /// Service 503: overloaded or not ready.
    ServiceUnavailable,
    /// Service 504: the service's own deadline passed.
    ServiceTimeout,
    /// Service 500, any other status, or an unreadable answer.
    ServiceError,
    /// The service could not be reached (not running, connection refused).
    ServiceUnreachable,
    /// The adapter's per-request timeout elapsed.
    Timeout,
    /// The adapter's queue of waiting requests is full.
    Overloaded,
    /// The reply could not be published where requested (for example not authorised).
    ReplyFailed,
    /// The reply did not fit in one IPC frame under the nucleus' limit.
    ReplyTooLarge,
    /// The request message was larger than the adapter reads (`--max-incoming-frame-bytes`).
    MessageTooLarge,
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl ErrorCode {
    /// The code as it appears in replies.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedRequest => "malformed_request",
            Self::InvalidReplyTopic => "invalid_reply_topic",
            Self::InvalidImage => "invalid_image",
            Self::ForbiddenPath => "forbidden_path",
            Self::NotFound => "not_found",
            Self::ImageTooLarge => "image_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::InvalidOptions => "invalid_options",
            Self::ServiceUnavailable => "service_unavailable",
            Self::ServiceTimeout => "service_timeout",
            Self::ServiceError => "service_error",
            Self::ServiceUnreachable => "service_unreachable",
            Self::Timeout => "timeout",
            Self::Overloaded => "overloaded",
            Self::ReplyFailed => "reply_failed",
            Self::ReplyTooLarge => "reply_too_large",
            Self::MessageTooLarge => "message_too_large",
        }
    }
}

/// The adapter's own field of a request message (beside the body it passes on): the id.
pub const REQUEST_ID: &str = "request_id";
/// The adapter's own field of a request message: where to publish the reply.
pub const REPLY_TOPIC: &str = "reply_topic";

/// Longest `request_id` accepted.
pub const MAX_REQUEST_ID_LEN: usize = 256;

/// A valid classification request.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifyRequest {
    /// Echoed or generated id.
    pub request_id: String,
    /// The body of `POST /classify`, as read; options the sender left out are not sent, so
    /// the service's configured defaults apply.
    pub body: ClassifyJson,
    /// Reply topic requested by the sender, already validated.
    pub reply_topic: Option<String>,
}

/// A request that cannot be processed, with what is needed to answer it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Echoed or generated id.
    pub request_id: String,
    /// Error code for the reply.
    pub code: ErrorCode,
    /// Human-readable reason.
    pub message: String,
}

/// Parses a request message. `request_topic` is the adapter's subscription, which a
/// `reply_topic` must not equal (the adapter would read its own replies as requests).
pub fn parse_request(payload: &Payload, request_topic: &str) -> Result<ClassifyRequest, Rejected> {
    let parsed: Result<Value, String> = match payload {
        Payload::Json(v) => Ok(v.clone()),
        Payload::Binary(bytes) => std::str::from_utf8(bytes)
            .map_err(|_| "binaryMessage is not UTF-8 text".to_owned())
            .and_then(|s| serde_json::from_str(s).map_err(|e| format!("request is not JSON: {e}"))),
    };
    let malformed = |request_id: String, message: String| Rejected {
        request_id,
        code: ErrorCode::MalformedRequest,
        message,
    };
    let mut fields = match parsed {
        Ok(Value::Object(fields)) => fields,
        // The reader's own words for a document that is not an object.
        Ok(other) => {
            let message = match ClassifyJson::from_value(other) {
                Err(e) => e.to_string(),
                Ok(_) => unreachable!("only an object is a request document"),
            };
            return Err(malformed(new_request_id(), message));
        }
        Err(message) => return Err(malformed(new_request_id(), message)),
    };
    // The id is read first so that every later rejection can still echo it.
    let request_id = match fields.remove(REQUEST_ID) {
        None => new_request_id(),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_REQUEST_ID_LEN => s,
        Some(other) => {
            return Err(malformed(
                new_request_id(),
                format!(
                    "request_id must be a non-empty string of at most {MAX_REQUEST_ID_LEN} \
                     bytes, got {}",
                    describe(&other)
                ),
            ));
        }
    };
    let reply_topic = fields.remove(REPLY_TOPIC);
    let body = ClassifyJson::from_fields(fields, &[REQUEST_ID, REPLY_TOPIC])
        .map_err(|e| malformed(request_id.clone(), e.to_string()))?;
    let reply_topic = match reply_topic {
        None => None,
        Some(Value::String(topic)) => match validate_reply_topic(&topic, request_topic) {
            Ok(()) => Some(topic),
            Err(why) => {
                return Err(Rejected {
                    request_id,
                    code: ErrorCode::InvalidReplyTopic,
                    message: why,
                });
            }
        },
        Some(other) => {
            return Err(Rejected {
                request_id,
                code: ErrorCode::InvalidReplyTopic,
                message: format!("reply_topic must be a string, got {}", describe(&other)),
            });
        }
    };
    Ok(ClassifyRequest {
        request_id,
        body,
        reply_topic,
    })
}

/// Checks a topic to publish replies on.
pub fn validate_reply_topic(topic: &str, request_topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("reply_topic must not be empty".into());
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(format!("reply_topic is longer than {MAX_TOPIC_LEN} bytes"));
    }
    if topic.contains(['+', '#', '*', '\0']) {
        return Err("reply_topic must be a concrete topic (no +, #, * or NUL)".into());
    }
    if greengrass_ipc::topic::filter_matches(request_topic, topic) {
        return Err(format!(
            "reply_topic {topic:?} would be delivered to the adapter's own request topic"
        ));
    }
    Ok(())
}

/// A fresh request id.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Outcome status of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Classified.
    Ok,
    /// Not classified; see `error`.
    Error,
}

/// `error` member of an error reply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplyError {
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
}

/// A reply document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reply {
    /// The request's id; `None` (JSON `null`) only when the request could not be read at all.
    pub request_id: Option<String>,
    /// ok | error.
    pub status: Status,
    /// Top-1 label (ok only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Predictions as returned by the service (ok only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predictions: Option<Vec<Prediction>>,
    /// Failure (error only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ReplyError>,
}

impl Reply {
    /// A success reply.
    pub fn ok(request_id: String, label: String, predictions: Vec<Prediction>) -> Self {
        Self {
            request_id: Some(request_id),
            status: Status::Ok,
            label: Some(label),
            predictions: Some(predictions),
            error: None,
        }
    }

    /// An error reply (`request_id` `None` only for a request that could not be read).
    pub fn error(
        request_id: impl Into<Option<String>>,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Self {
        Self {
            request_id: request_id.into(),
            status: Status::Error,
            label: None,
            predictions: None,
            error: Some(ReplyError {
                code,
                message: message.into(),
            }),
        }
    }

    /// The reply as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("reply serializes")
    }

    /// The seed-compatible text: the label, or `ERROR <code>: <message>`.
    pub fn to_label_text(&self) -> String {
        match (&self.label, &self.error) {
            (Some(label), _) => label.clone(),
            (None, Some(e)) => format!("ERROR {}: {}", e.code.as_str(), e.message),
            (None, None) => "ERROR service_error: no label".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bin(v: &str) -> Payload {
        Payload::Binary(v.as_bytes().to_vec())
    }

    #[test]
    fn seed_request() {
        let r = parse_request(
            &bin(r#"{"image_dir":"/img","fname":"a.jpg"}"#),
            "local/inference",
        )
        .unwrap();
        assert_eq!(r.request_id.len(), 36);
        assert_eq!(
            serde_json::to_value(&r.body).unwrap(),
            json!({"image_dir":"/img","fname":"a.jpg"})
        );
        let with_options = parse_request(
            &bin(r#"{"path":"/img/a.jpg","top_k":3,"threshold":0.25,"request_id":"r"}"#),
            "local/inference",
        )
        .unwrap();
        assert_eq!(with_options.request_id, "r");
        assert_eq!(
            serde_json::to_value(&with_options.body).unwrap(),
            json!({"path":"/img/a.jpg","top_k":3,"threshold":0.25})
        );
    }

    #[test]
    fn rejections_keep_the_id() {
        let e = parse_request(
            &Payload::Json(json!({"request_id":"r1","path":"/a","image_base64":"x"})),
            "local/inference",
        )
        .unwrap_err();
        assert_eq!(
            (e.request_id.as_str(), e.code),
            ("r1", ErrorCode::MalformedRequest)
        );
        let e = parse_request(
            &Payload::Json(json!({"request_id":"r2","path":"/a","reply_topic":"local/#"})),
            "local/inference",
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidReplyTopic);
        let e = parse_request(
            &Payload::Json(json!({"path":"/a","reply_topic":"local/inference"})),
            "local/inference",
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidReplyTopic);
        let e = parse_request(&bin("not json"), "local/inference").unwrap_err();
        assert_eq!(e.code, ErrorCode::MalformedRequest);
        let e = parse_request(&Payload::Json(json!({"path":"/a","top_k":0})), "t").unwrap_err();
        assert_eq!(e.code, ErrorCode::MalformedRequest);
        let e = parse_request(
            &Payload::Json(json!({"request_id":"r3","path":"/a","reply":"x"})),
            "t",
        )
        .unwrap_err();
        assert_eq!(e.request_id, "r3");
        assert!(
            e.message.ends_with("request_id, reply_topic"),
            "{}",
            e.message
        );
        let e =
            parse_request(&Payload::Json(json!({"request_id":null,"path":"/a"})), "t").unwrap_err();
        assert!(e.message.contains("got null"), "{}", e.message);
    }

    #[test]
    fn reply_shapes() {
        let prediction = Prediction {
            index: 2,
            label: "red".into(),
            probability: 0.5,
            logit: 1.25,
        };
        let ok = Reply::ok("r".into(), "red".into(), vec![prediction]);
        assert_eq!(
            ok.to_json(),
            json!({"request_id":"r","status":"ok","label":"red",
                   "predictions":[{"index":2,"label":"red","probability":0.5,"logit":1.25}]})
        );
        let unreadable = Reply::error(None, ErrorCode::MessageTooLarge, "big");
        assert_eq!(unreadable.to_json()["request_id"], Value::Null);
        let err = Reply::error("r".to_owned(), ErrorCode::NotFound, "gone");
        assert_eq!(
            err.to_json(),
            json!({"request_id":"r","status":"error","error":{"code":"not_found","message":"gone"}})
        );
        assert_eq!(err.to_label_text(), "ERROR not_found: gone");
    }

    #[test]
    fn probes_are_recognised_and_requests_are_not() {
        assert_eq!(probe_id(&probe("p-1")), Some("p-1"));
        assert_eq!(
            probe_id(&bin(r#"{"classify_adapter_liveness_probe":"p"}"#)),
            None
        );
        assert_eq!(
            probe_id(&Payload::Json(json!({PROBE_KEY: "p", "path": "/a"}))),
            None
        );
    }
}
