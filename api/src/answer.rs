//! The answer to a successful `POST /classify` (status 200, `application/json`).

use serde::{Deserialize, Serialize};

/// A successful classification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "request_id": "9b2c0f4e-3d1a-4c8e-9f57-2a6a1c0d7e11",
    "label": "red",
    "predictions": [
        {"index": 2, "label": "red", "probability": 0.726, "logit": 0.692},
        {"index": 7, "label": "orange", "probability": 0.118, "logit": -1.124}
    ],
    "model": {"name": "colour-demo", "version": "0.1.0"},
    "timings": {"decode_ms": 0.291, "preprocess_ms": 0.418, "queue_ms": 0.031,
                "inference_ms": 0.254, "total_ms": 1.203}
})))]
pub struct ClassifyResponse {
    /// The request's id (`x-request-id` if given, else a UUID).
    pub request_id: String,
    /// The model's top-1 label (independent of `top_k` and `threshold`).
    pub label: String,
    /// Up to `top_k` classes with probability ≥ `threshold`, most probable first.
    pub predictions: Vec<Prediction>,
    /// The model that answered.
    pub model: ModelRef,
    /// Where the time went, in milliseconds.
    pub timings: Timings,
}

/// One class of the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Prediction {
    /// Class index in the model's output.
    #[cfg_attr(feature = "openapi", schema(example = 2))]
    pub index: usize,
    /// The class label.
    #[cfg_attr(feature = "openapi", schema(example = "red"))]
    pub label: String,
    /// Probability from 0 to 1 (softmax of the logits unless the model outputs probabilities).
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 0.0, maximum = 1.0, example = 0.726)
    )]
    pub probability: f64,
    /// The model's raw output for this class (a logit for logit models).
    #[cfg_attr(feature = "openapi", schema(example = 0.692))]
    pub logit: f64,
}

/// Model name and version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelRef {
    /// Model name (directory name unless configured).
    #[cfg_attr(feature = "openapi", schema(example = "colour-demo"))]
    pub name: String,
    /// Model version (ModelStore version unless configured).
    #[cfg_attr(feature = "openapi", schema(example = "0.1.0"))]
    pub version: String,
}

/// Time spent per stage, in milliseconds rounded to the microsecond.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Timings {
    /// Decoding the image (incl. orientation, alpha, grayscale).
    #[cfg_attr(feature = "openapi", schema(example = 0.291))]
    pub decode_ms: f64,
    /// Resizing and laying out the tensor.
    #[cfg_attr(feature = "openapi", schema(example = 0.418))]
    pub preprocess_ms: f64,
    /// Waiting for a model worker.
    #[cfg_attr(feature = "openapi", schema(example = 0.031))]
    pub queue_ms: f64,
    /// Running the model.
    #[cfg_attr(feature = "openapi", schema(example = 0.254))]
    pub inference_ms: f64,
    /// Whole request, from the first byte handled to the answer.
    #[cfg_attr(feature = "openapi", schema(example = 1.203))]
    pub total_ms: f64,
}
