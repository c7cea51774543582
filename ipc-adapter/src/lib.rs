//! Greengrass IPC adapter: bridges local pub/sub to the classification service.
//!
//! Modules, one job each:
//! * [`frame`] — Greengrass RPC frames over AWS event-stream (via `aws-smithy-eventstream`), size limits.
//! * [`pubsub`] — JSON shapes of the local pub/sub IPC service.
//! * [`client`] — async IPC client (connect, publish, subscribe, close subscription).
//! * [`topic`] — MQTT-style topic filters and access-control resource matching.
//! * [`acl`] — recipe-style `accessControl` files for the emulator.
//! * [`emulator`] — a local nucleus IPC server (classic or lite behaviour) for tests and laptops.
//! * [`messages`] — the adapter's request and reply documents.
//! * [`service`] — HTTP client of the classification service and its error mapping.
//! * [`adapter`] — the adapter loop: subscribe, classify, reply; shutdown and connection loss.
//! * [`requester`] — one-shot requester (the seed's `com.custom.requester`).
//! * [`ready`] — waiting for the ready files `run` and `emulate` write (scripts without sleeps).
//! * [`config`] — command-line / environment configuration of every subcommand.

#![warn(missing_docs)]

pub mod acl;
pub mod adapter;
pub mod client;
pub mod config;
pub mod emulator;
pub mod frame;
pub mod messages;
pub mod pubsub;
pub mod ready;
pub mod requester;
pub mod service;
pub mod topic;
