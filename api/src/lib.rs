//! The documents `POST /classify` exchanges, defined once for every side of the wire.
//!
//! The service reads request bodies with them (the one reader, `ClassifyJson::from_value`),
//! writes answers and problems with them and documents all three with them; the IPC adapter
//! reads its request messages with the same reader, writes its request bodies and reads the
//! answers and problems with them, and so do the tests. None of them keeps a mirror of its own, so a field renamed here
//! is renamed everywhere, and the committed OpenAPI document (generated from these types by
//! the service, checked by a drift test) shows the change as a reviewed diff.
//!
//! * [`request`] — the JSON request body: exactly one image source plus the options, and its
//!   one reader with the rules every side follows.
//! * [`answer`] — the 200 answer: top-1 label, ranked predictions, model, timings.
//! * [`problem`] — RFC 9457 problem documents and [`ProblemType`], the one table of problem
//!   kinds (slug, `type` URI, status, title) that the service answers with and clients branch on.
//!
//! The crate needs serde only. With the `openapi` feature (enabled by the service alone) every
//! type also derives utoipa's `ToSchema`, with the descriptions and examples the published
//! document carries; clients never compile utoipa.
//!
//! Numbers are plain `f64`: a client that must pass the service's figures on digit for digit
//! (the IPC adapter) parses with serde_json's `float_roundtrip` feature, which these types leave
//! to the client.

pub mod answer;
pub mod problem;
pub mod request;

pub use answer::{ClassifyResponse, ModelRef, Prediction, Timings};
pub use problem::{PROBLEM_JSON, Problem, ProblemType, TYPE_PREFIX};
pub use request::{
    ClassifyBase64, ClassifyDirAndName, ClassifyJson, ClassifyPath, EXAMPLE_PNG_BASE64,
    RequestError,
};
