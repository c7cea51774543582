//! The adapter crate's integration tests, one binary with a module per concern (the protocol's
//! own, against a scripted server, are `greengrass-ipc/tests/frame_and_client.rs`):
//!
//! * `emulator` — the emulator's classic and lite behaviours through raw frames and the client;
//! * `adapter` — the adapter against the emulator (both flavours) and a stub of the service;
//! * `startup_and_liveness` — waiting for the nucleus, readiness, the liveness probe, lite limits;
//! * `python_client` — the emulator and adapter driven by the official Python IPC client;
//! * `binary` — the `classify-ipc-adapter` executable: signals, exit statuses, subcommands;
//! * `cloud` — the emulator's IoT Core and configuration operations, both clients, both flavours.
//!
//! `support` holds the shared fixtures (the service stub, emulator and adapter start-up, reply
//! reading, the Python interpreter).

mod adapter;
mod binary;
mod cloud;
mod emulator;
mod python_client;
mod startup_and_liveness;
mod support;
