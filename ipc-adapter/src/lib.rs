//! Greengrass IPC adapter: bridges local pub/sub to the classification service.
//!
//! The Greengrass IPC protocol itself is the `greengrass-ipc` crate; the nucleus emulator
//! behind `emulate` is `greengrass-ipc-emulator` (feature `emulator`, on by default, off in the
//! device artifacts).
//!
//! Modules, one job each:
//! * [`messages`] — the adapter's request and reply documents.
//! * [`service`] — HTTP client of the classification service and its error mapping.
//! * [`adapter`] — the adapter loop: subscribe, classify, reply; shutdown and connection loss.
//! * [`requester`] — one-shot requester (the seed's `com.custom.requester`).
//! * [`scheduled`] — `schedule`: the drop-in for AWS's `aws.greengrass.DLRImageClassification`
//!   (classify a file on a timer, publish AWS's result document to IoT Core).
//! * [`ready`] — waiting for the ready files `run` and `emulate` write (scripts without sleeps).
//! * [`config`] — command-line / environment configuration of every subcommand.

#![warn(missing_docs)]

pub mod adapter;
pub mod config;
pub mod messages;
pub mod ready;
pub mod requester;
pub mod scheduled;
pub mod service;
