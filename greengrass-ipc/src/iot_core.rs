//! JSON shapes of the nucleus' MQTT proxy to AWS IoT Core (`aws.greengrass.ipc.mqttproxy`):
//! `PublishToIoTCore`, and the rules each nucleus flavour applies to it.
//!
//! Shared by the client and the emulator. What the two nuclei do differently (see
//! `greengrass-ipc.md`):
//!
//! | | classic | lite |
//! |---|---|---|
//! | `qos` | required, the string `"0"` or `"1"` | optional (default 0), string or integer |
//! | `payload` | required, at most 128 KB | optional |
//! | success means | queued to the nucleus' spooler (QoS 1 kept while offline) | sent; **fails while the cloud is unreachable** |
//! | size bound | the payload | the whole frame, under 10000 bytes |
//!
//! MQTT 5 keys (`retain`, `userProperties`, …) are not sent by this crate; lite ignores them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Flavour;
use crate::pubsub::ShapeError;

/// The IPC service whose `accessControl` policies authorise IoT Core operations.
pub const MQTTPROXY_SERVICE: &str = "aws.greengrass.ipc.mqttproxy";
/// Operation name of PublishToIoTCore.
pub const OP_PUBLISH_TO_IOT_CORE: &str = "aws.greengrass#PublishToIoTCore";
/// Model type of a PublishToIoTCore request.
pub const PUBLISH_TO_IOT_CORE_REQUEST: &str = "aws.greengrass#PublishToIoTCoreRequest";
/// Model type of a PublishToIoTCore response.
pub const PUBLISH_TO_IOT_CORE_RESPONSE: &str = "aws.greengrass#PublishToIoTCoreResponse";
/// Largest payload the classic nucleus accepts by default (its MQTT message size limit).
pub const CLASSIC_MAX_PAYLOAD: usize = 128 * 1024;

/// MQTT quality of service. On the wire a **string**, `"0"` or `"1"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Qos {
    /// `"0"`: at most once; the classic nucleus drops it while offline.
    #[serde(rename = "0")]
    AtMostOnce,
    /// `"1"`: at least once; the classic nucleus spools it while offline.
    #[serde(rename = "1")]
    AtLeastOnce,
}

impl Qos {
    /// The wire value, `"0"` or `"1"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AtMostOnce => "0",
            Self::AtLeastOnce => "1",
        }
    }
}

/// One message for IoT Core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IotCoreMessage {
    /// The MQTT topic (no wildcards).
    pub topic_name: String,
    /// Quality of service.
    pub qos: Qos,
    /// The payload bytes (base64 on the wire).
    pub payload: Vec<u8>,
}

/// Body of PublishToIoTCoreRequest. `qos` and `payload` are always sent: the classic nucleus
/// requires both.
pub fn publish_request(topic_name: &str, qos: Qos, payload: &[u8]) -> Value {
    serde_json::json!({
        "topicName": topic_name,
        "qos": qos.as_str(),
        "payload": BASE64.encode(payload),
    })
}

/// Parses a PublishToIoTCoreRequest body as the nucleus of `flavour` does: the classic nucleus
/// requires `qos` (as a string) and `payload` and bounds the payload; lite takes `qos` as a
/// string or an integer, defaults it to 0 and accepts a missing payload.
pub fn parse_publish_request(body: &Value, flavour: Flavour) -> Result<IotCoreMessage, ShapeError> {
    let invalid = |m: &str| ShapeError::Invalid(m.to_owned());
    let topic_name = match body.get("topicName").and_then(Value::as_str) {
        Some(t) if !t.is_empty() => t.to_owned(),
        _ => return Err(invalid("topicName is required")),
    };
    if topic_name.contains(['+', '#']) {
        return Err(invalid(
            "topicName must be a topic, not a filter: '+' and '#' are not allowed",
        ));
    }
    let qos = match (body.get("qos"), flavour) {
        (None | Some(Value::Null), Flavour::Classic) => return Err(invalid("QoS is required")),
        (None | Some(Value::Null), Flavour::Lite) => Qos::AtMostOnce,
        (Some(Value::String(s)), _) if s == "0" => Qos::AtMostOnce,
        (Some(Value::String(s)), _) if s == "1" => Qos::AtLeastOnce,
        (Some(Value::Number(n)), Flavour::Lite) if n.as_u64() == Some(0) => Qos::AtMostOnce,
        (Some(Value::Number(n)), Flavour::Lite) if n.as_u64() == Some(1) => Qos::AtLeastOnce,
        (Some(_), _) => return Err(invalid("Invalid QoS value: \"0\" or \"1\" is accepted")),
    };
    let payload = match (body.get("payload"), flavour) {
        (None | Some(Value::Null), Flavour::Classic) => {
            return Err(invalid("Payload is required"));
        }
        (None | Some(Value::Null), Flavour::Lite) => Vec::new(),
        (Some(Value::String(s)), _) => BASE64
            .decode(s)
            .map_err(|e| ShapeError::Invalid(format!("payload is not base64: {e}")))?,
        (Some(_), _) => return Err(invalid("payload must be a base64 string")),
    };
    if flavour == Flavour::Classic && payload.len() > CLASSIC_MAX_PAYLOAD {
        return Err(ShapeError::Invalid(format!(
            "payload of {} bytes exceeds the limit of {CLASSIC_MAX_PAYLOAD} bytes",
            payload.len()
        )));
    }
    Ok(IotCoreMessage {
        topic_name,
        qos,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn qos_is_a_string_on_the_wire_and_the_request_round_trips() {
        let body = publish_request("ml/dlr/x", Qos::AtLeastOnce, b"{\"a\":1}");
        assert_eq!(body["qos"], "1");
        assert_eq!(body["payload"], "eyJhIjoxfQ==");
        for flavour in [Flavour::Classic, Flavour::Lite] {
            let m = parse_publish_request(&body, flavour).unwrap();
            assert_eq!(m.topic_name, "ml/dlr/x");
            assert_eq!(m.qos, Qos::AtLeastOnce);
            assert_eq!(m.payload, b"{\"a\":1}");
        }
    }

    #[test]
    fn classic_requires_qos_and_payload_lite_does_not() {
        let bare = json!({"topicName": "t"});
        let err = parse_publish_request(&bare, Flavour::Classic).unwrap_err();
        assert!(err.to_string().contains("QoS is required"), "{err}");
        let no_payload = json!({"topicName": "t", "qos": "0"});
        let err = parse_publish_request(&no_payload, Flavour::Classic).unwrap_err();
        assert!(err.to_string().contains("Payload is required"), "{err}");
        let lite = parse_publish_request(&bare, Flavour::Lite).unwrap();
        assert_eq!((lite.qos, lite.payload.len()), (Qos::AtMostOnce, 0));
        let int_qos = json!({"topicName": "t", "qos": 1, "payload": ""});
        assert_eq!(
            parse_publish_request(&int_qos, Flavour::Lite).unwrap().qos,
            Qos::AtLeastOnce
        );
        assert!(parse_publish_request(&int_qos, Flavour::Classic).is_err());
    }

    #[test]
    fn bad_requests_are_refused_with_the_reason() {
        for (body, words) in [
            (json!({"qos": "1", "payload": ""}), "topicName"),
            (
                json!({"topicName": "a/+", "qos": "1", "payload": ""}),
                "not a filter",
            ),
            (
                json!({"topicName": "t", "qos": "2", "payload": ""}),
                "Invalid QoS",
            ),
            (
                json!({"topicName": "t", "qos": "1", "payload": "***"}),
                "base64",
            ),
        ] {
            let err = parse_publish_request(&body, Flavour::Lite).unwrap_err();
            assert!(err.to_string().contains(words), "{body}: {err}");
        }
        let big = publish_request("t", Qos::AtMostOnce, &vec![b'x'; CLASSIC_MAX_PAYLOAD + 1]);
        let err = parse_publish_request(&big, Flavour::Classic).unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
    }
}
