//! The result document, in the shape of AWS's `aws.greengrass.DLRImageClassification`, so that
//! the IoT rules and dashboards built on it keep working:
//!
//! ```json
//! {"timestamp": "2026-12-07T16:38:27.123456+00:00",
//!  "inference-type": "image-classification",
//!  "inference-description": "Top 5 predictions with score 0.3 or above ",
//!  "inference-results": [{"Label": "macaw", "Score": "0.912345"}],
//!  "image-path": "/greengrass/…/sample_images/cat.jpeg",
//!  "model": {"name": "resnet50", "version": "1.0"},
//!  "duration-ms": 41.2}
//! ```
//!
//! AWS's keys, AWS's types (`Label` and `Score` are strings; the description ends with a space),
//! and where AWS's document is wrong, corrected: `timestamp` is ISO 8601 in UTC with its offset
//! (AWS's is naive local time), `Score` is a probability with six decimals (AWS's DLR scores are
//! raw logits compared with a probability threshold). The keys after `inference-results` are
//! extras a consumer of AWS's keys does not read.

use classify_api::ClassifyResponse;

use crate::messages::ErrorCode;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

/// `inference-type` of every result document.
pub const INFERENCE_TYPE: &str = "image-classification";

/// `2026-12-07T16:38:27.123456+00:00`: microseconds, like AWS's, and the offset it lacks.
const TIMESTAMP: &[FormatItem<'static>] = format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6][offset_hour sign:mandatory]:[offset_minute]"
);

/// One prediction as AWS's document has it: strings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Result {
    /// The class label.
    #[serde(rename = "Label")]
    pub label: String,
    /// The probability, six decimals.
    #[serde(rename = "Score")]
    pub score: String,
}

/// The model that answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Model {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// A result document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultDocument {
    /// When the classification finished (ISO 8601, UTC, with its offset).
    pub timestamp: String,
    /// Always [`INFERENCE_TYPE`].
    #[serde(rename = "inference-type")]
    pub inference_type: &'static str,
    /// `Top <k> predictions with score <threshold> or above ` (AWS's words, trailing space).
    #[serde(rename = "inference-description")]
    pub inference_description: String,
    /// Up to `k` predictions with probability ≥ the threshold, most probable first.
    #[serde(rename = "inference-results")]
    pub inference_results: Vec<Result>,
    /// The image classified (extra).
    #[serde(rename = "image-path", skip_serializing_if = "Option::is_none")]
    pub image_path: Option<String>,
    /// The model that answered (extra).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<Model>,
    /// From reading the file to the answer, in milliseconds (extra).
    #[serde(rename = "duration-ms", skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
}

impl ResultDocument {
    /// The document for the service's `answer` (already limited to `top_k` and `threshold`).
    pub fn new(
        answer: &ClassifyResponse,
        top_k: u64,
        threshold: f64,
        image_path: &str,
        duration_ms: f64,
        at: OffsetDateTime,
    ) -> Self {
        Self {
            timestamp: timestamp(at),
            inference_type: INFERENCE_TYPE,
            inference_description: description(top_k, threshold),
            inference_results: answer
                .predictions
                .iter()
                .map(|p| Result {
                    label: p.label.clone(),
                    score: format!("{:.6}", p.probability),
                })
                .collect(),
            image_path: Some(image_path.to_owned()),
            model: Some(Model {
                name: answer.model.name.clone(),
                version: answer.model.version.clone(),
            }),
            duration_ms: Some((duration_ms * 1000.0).round() / 1000.0),
        }
    }

    /// The same document with AWS's keys only: what is sent when the whole one does not fit the
    /// nucleus' size limit (the results are never trimmed).
    pub fn without_extras(&self) -> Self {
        Self {
            image_path: None,
            model: None,
            duration_ms: None,
            ..self.clone()
        }
    }

    /// The document as JSON.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("the document serialises")
    }

    /// The document as JSON text, keys in the order above (AWS's first).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("the document serialises")
    }
}

/// What a failed run publishes on the local topic (never to IoT Core, where consumers expect
/// `inference-results`):
///
/// ```json
/// {"timestamp": "2026-12-07T16:38:27.123456+00:00", "inference-type": "image-classification",
///  "error": {"code": "not_found", "message": "/data/frames/latest.jpg does not exist"},
///  "image-path": "/data/frames/latest.jpg"}
/// ```
///
/// The codes are the IPC adapter's reply codes (`not_found`, `forbidden_path`,
/// `image_too_large`, `invalid_image`, `unsupported_media_type`, `service_unreachable`, …).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorDocument {
    /// When the run failed (ISO 8601, UTC, with its offset).
    pub timestamp: String,
    /// Always [`INFERENCE_TYPE`].
    #[serde(rename = "inference-type")]
    pub inference_type: &'static str,
    /// What went wrong.
    pub error: ErrorDetail,
    /// The image the run was for.
    #[serde(rename = "image-path")]
    pub image_path: String,
}

/// The `error` of an [`ErrorDocument`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorDetail {
    /// A stable code.
    pub code: ErrorCode,
    /// What went wrong, in plain words.
    pub message: String,
}

impl ErrorDocument {
    /// The document for a run that failed with `code` and `message`.
    pub fn new(code: ErrorCode, message: &str, image_path: &str, at: OffsetDateTime) -> Self {
        Self {
            timestamp: timestamp(at),
            inference_type: INFERENCE_TYPE,
            error: ErrorDetail {
                code,
                message: message.to_owned(),
            },
            image_path: image_path.to_owned(),
        }
    }

    /// The document as JSON text.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("the document serialises")
    }
}

/// AWS's description text, trailing space included.
pub fn description(top_k: u64, threshold: f64) -> String {
    format!("Top {top_k} predictions with score {threshold} or above ")
}

/// `at` in UTC as `2026-12-07T16:38:27.123456+00:00`.
pub fn timestamp(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(TIMESTAMP)
        .expect("every date formats")
}

#[cfg(test)]
mod tests {
    use super::*;
    use classify_api::{ModelRef, Prediction, Timings};
    use serde_json::json;

    #[test]
    fn aws_keys_and_types_with_a_zoned_timestamp_and_probabilities() {
        let answer = ClassifyResponse {
            request_id: "r".into(),
            label: "macaw".into(),
            predictions: vec![
                Prediction {
                    index: 88,
                    label: "macaw".into(),
                    probability: 0.912_345_678,
                    logit: 9.598_218,
                },
                Prediction {
                    index: 90,
                    label: "lorikeet".into(),
                    probability: 0.3,
                    logit: 6.357,
                },
            ],
            model: ModelRef {
                name: "efficientnet-lite0".into(),
                version: "1".into(),
            },
            timings: Timings {
                decode_ms: 1.0,
                preprocess_ms: 1.0,
                queue_ms: 0.0,
                inference_ms: 5.0,
                total_ms: 7.0,
            },
        };
        let at = time::macros::datetime!(2022-12-27 00:38:48.033218 +01:00);
        let doc = ResultDocument::new(&answer, 5, 0.3, "/img/cat.jpeg", 12.345_67, at);
        assert_eq!(
            doc.to_value(),
            json!({
                "timestamp": "2022-12-26T23:38:48.033218+00:00",
                "inference-type": "image-classification",
                "inference-description": "Top 5 predictions with score 0.3 or above ",
                "inference-results": [
                    {"Label": "macaw", "Score": "0.912346"},
                    {"Label": "lorikeet", "Score": "0.300000"}
                ],
                "image-path": "/img/cat.jpeg",
                "model": {"name": "efficientnet-lite0", "version": "1"},
                "duration-ms": 12.346
            })
        );
        let bare = serde_json::from_slice::<Value>(&doc.without_extras().to_bytes()).unwrap();
        let keys: Vec<&String> = bare.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "inference-description",
                "inference-results",
                "inference-type",
                "timestamp"
            ]
        );
        assert_eq!(
            bare["inference-results"],
            doc.to_value()["inference-results"]
        );
        // AWS's keys come first, in AWS's order.
        let text = String::from_utf8(doc.to_bytes()).unwrap();
        let order: Vec<usize> = [
            "timestamp",
            "inference-type",
            "inference-description",
            "inference-results",
        ]
        .iter()
        .map(|k| text.find(&format!("\"{k}\"")).unwrap())
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn an_error_document_names_the_code_the_message_and_the_image() {
        let at = time::macros::datetime!(2026-12-07 16:38:27.5 UTC);
        let doc = ErrorDocument::new(
            ErrorCode::NotFound,
            "/f/x.jpg does not exist",
            "/f/x.jpg",
            at,
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&doc.to_bytes()).unwrap(),
            json!({
                "timestamp": "2026-12-07T16:38:27.500000+00:00",
                "inference-type": "image-classification",
                "error": {"code": "not_found", "message": "/f/x.jpg does not exist"},
                "image-path": "/f/x.jpg"
            })
        );
    }
}
