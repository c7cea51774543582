//! JSON shapes of the nucleus local pub/sub service (`aws.greengrass.ipc.pubsub`).
//!
//! Shared by the client and the emulator so both sides agree on one definition. Binary messages
//! travel as standard padded base64 inside the JSON payload.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Operation name of PublishToTopic.
pub const OP_PUBLISH: &str = "aws.greengrass#PublishToTopic";
/// Operation name of SubscribeToTopic.
pub const OP_SUBSCRIBE: &str = "aws.greengrass#SubscribeToTopic";
/// Model type of a PublishToTopic request.
pub const PUBLISH_REQUEST: &str = "aws.greengrass#PublishToTopicRequest";
/// Model type of a PublishToTopic response.
pub const PUBLISH_RESPONSE: &str = "aws.greengrass#PublishToTopicResponse";
/// Model type of a SubscribeToTopic request.
pub const SUBSCRIBE_REQUEST: &str = "aws.greengrass#SubscribeToTopicRequest";
/// Model type of a SubscribeToTopic response.
pub const SUBSCRIBE_RESPONSE: &str = "aws.greengrass#SubscribeToTopicResponse";
/// Model type of a subscription event.
pub const SUBSCRIPTION_MESSAGE: &str = "aws.greengrass#SubscriptionResponseMessage";
/// Model type of an authorization failure.
pub const UNAUTHORIZED_ERROR: &str = "aws.greengrass#UnauthorizedError";
/// Model type of a generic service failure.
pub const SERVICE_ERROR: &str = "aws.greengrass#ServiceError";
/// Model type of a request with invalid arguments.
pub const INVALID_ARGUMENTS_ERROR: &str = "aws.greengrass#InvalidArgumentsError";
/// Operation name of UpdateState (component lifecycle service; needs no authorization policy).
pub const OP_UPDATE_STATE: &str = "aws.greengrass#UpdateState";
/// Model type of an UpdateState request.
pub const UPDATE_STATE_REQUEST: &str = "aws.greengrass#UpdateStateRequest";
/// Model type of an UpdateState response.
pub const UPDATE_STATE_RESPONSE: &str = "aws.greengrass#UpdateStateResponse";
/// Service name the classic nucleus puts in `_service` of error payloads.
pub const SERVICE_NAME: &str = "aws.greengrass#GreengrassCoreIPC";

/// A message body: raw bytes or a JSON document.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// `binaryMessage`: arbitrary bytes.
    Binary(Vec<u8>),
    /// `jsonMessage`: any JSON value.
    Json(Value),
}

/// Whether a subscriber receives its own component's publishes (classic nucleus only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReceiveMode {
    /// Receive every matching message (the default when the field is absent).
    #[default]
    ReceiveAllMessages,
    /// Skip messages published by the subscribing component itself.
    ReceiveMessagesFromOthers,
}

/// A message delivered on a subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionEvent {
    /// Topic the message was published on (from its `context`).
    pub topic: Option<String>,
    /// The message body.
    pub payload: Payload,
    /// Bytes of the frame payload that carried it: the message's JSON text (a binaryMessage
    /// as base64), so a bound on messages held can count them without serialising them again.
    pub frame_len: usize,
}

/// Body of PublishToTopicRequest.
pub fn publish_request(topic: &str, payload: &Payload) -> Value {
    serde_json::json!({ "topic": topic, "publishMessage": message_body(payload, None) })
}

/// Body of SubscribeToTopicRequest.
pub fn subscribe_request(topic: &str, receive_mode: Option<ReceiveMode>) -> Value {
    let mut v = serde_json::json!({ "topic": topic });
    if let Some(mode) = receive_mode {
        v["receiveMode"] = serde_json::to_value(mode).unwrap_or(Value::Null);
    }
    v
}

/// Body of SubscriptionResponseMessage for a message published on `topic`.
pub fn subscription_message(topic: &str, payload: &Payload) -> Value {
    message_body(payload, Some(topic))
}

fn message_body(payload: &Payload, context_topic: Option<&str>) -> Value {
    let (key, mut inner) = match payload {
        Payload::Binary(bytes) => (
            "binaryMessage",
            serde_json::json!({ "message": BASE64.encode(bytes) }),
        ),
        Payload::Json(value) => ("jsonMessage", serde_json::json!({ "message": value })),
    };
    if let Some(topic) = context_topic {
        inner["context"] = serde_json::json!({ "topic": topic });
    }
    serde_json::json!({ key: inner })
}

/// Why a pub/sub body could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    /// Not a JSON object of the expected form.
    #[error("{0}")]
    Invalid(String),
}

/// Parses the `publishMessage` of a request or the body of a SubscriptionResponseMessage:
/// exactly one of `binaryMessage` / `jsonMessage`.
pub fn parse_message(body: &Value) -> Result<(Payload, Option<String>), ShapeError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ShapeError::Invalid("message must be a JSON object".into()))?;
    let binary = obj.get("binaryMessage").filter(|v| !v.is_null());
    let json = obj.get("jsonMessage").filter(|v| !v.is_null());
    let (inner, is_binary) = match (binary, json) {
        (Some(b), None) => (b, true),
        (None, Some(j)) => (j, false),
        _ => {
            return Err(ShapeError::Invalid(
                "exactly one of binaryMessage and jsonMessage must be set".into(),
            ));
        }
    };
    let topic = inner
        .get("context")
        .and_then(|c| c.get("topic"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let payload = if is_binary {
        let text = inner
            .get("message")
            .and_then(Value::as_str)
            .ok_or_else(|| ShapeError::Invalid("binaryMessage.message must be a string".into()))?;
        Payload::Binary(
            BASE64
                .decode(text)
                .map_err(|e| ShapeError::Invalid(format!("binaryMessage is not base64: {e}")))?,
        )
    } else {
        Payload::Json(inner.get("message").cloned().unwrap_or(Value::Null))
    };
    Ok((payload, topic))
}

/// Parses a PublishToTopicRequest body into topic and payload.
pub fn parse_publish_request(body: &Value) -> Result<(String, Payload), ShapeError> {
    let topic = topic_of(body)?;
    let message = body
        .get("publishMessage")
        .ok_or_else(|| ShapeError::Invalid("publishMessage is required".into()))?;
    let (payload, _) = parse_message(message)?;
    Ok((topic, payload))
}

/// Parses a SubscribeToTopicRequest body into topic and receive mode.
pub fn parse_subscribe_request(body: &Value) -> Result<(String, Option<ReceiveMode>), ShapeError> {
    let topic = topic_of(body)?;
    let mode = match body.get("receiveMode") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            serde_json::from_value(v.clone())
                .map_err(|_| ShapeError::Invalid(format!("invalid receiveMode {v}")))?,
        ),
    };
    Ok((topic, mode))
}

fn topic_of(body: &Value) -> Result<String, ShapeError> {
    match body.get("topic").and_then(Value::as_str) {
        Some(t) if !t.is_empty() => Ok(t.to_owned()),
        _ => Err(ShapeError::Invalid(
            "topic must be a non-empty string".into(),
        )),
    }
}

/// Nucleus lite decodes a delivered jsonMessage into at most this many JSON objects
/// (`PAYLOAD_MAX_SUBOBJECTS` in its core bus); above it the message is dropped and the receiving
/// subscription closed without a word to the client.
pub const LITE_MAX_SUBOBJECTS: usize = 50;
/// Objects lite's delivery envelope adds around the message itself (measured against lite).
pub const LITE_ENVELOPE_SUBOBJECTS: usize = 4;

/// The objects lite needs to decode `message` as a delivered jsonMessage: one per JSON value,
/// one per map key, plus the envelope. Delivery fails above [`LITE_MAX_SUBOBJECTS`].
pub fn lite_subobjects(message: &Value) -> usize {
    fn count(v: &Value) -> usize {
        match v {
            Value::Array(items) => 1 + items.iter().map(count).sum::<usize>(),
            Value::Object(map) => 1 + map.values().map(|v| 1 + count(v)).sum::<usize>(),
            _ => 1,
        }
    }
    count(message) + LITE_ENVELOPE_SUBOBJECTS
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lite_subobjects_match_what_lite_was_measured_to_accept() {
        let prediction = json!({"index": 1, "label": "x", "probability": 0.5, "logit": 1.0});
        let reply = |n: usize| {
            json!({"request_id": "r", "status": "ok", "label": "x",
                   "predictions": vec![prediction.clone(); n]})
        };
        // Measured on a real nucleus lite: 4 predictions are delivered, 5 are not.
        assert!(lite_subobjects(&reply(4)) <= LITE_MAX_SUBOBJECTS);
        assert!(lite_subobjects(&reply(5)) > LITE_MAX_SUBOBJECTS);
    }
}
