//! Integration tests: the real server on port 0, the generated models, the real libdlr.
//! One test binary (modules below) to keep link time down.

mod binary;
mod browser;
mod common;
mod connections;
mod docs;
mod gate;
mod hardening;
mod inputs;
mod load;
mod logs;
mod onnx;
mod readme;
mod schemathesis;
mod semantics;
mod startup;
mod statuses;
mod v2;
