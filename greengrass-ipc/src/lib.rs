//! The AWS IoT Greengrass v2 nucleus IPC protocol, client side, as both nucleus flavours speak
//! it: the classic (Java) nucleus and nucleus lite.
//!
//! Modules, one job each:
//! * [`frame`] — RPC frames over AWS event-stream (via `aws-smithy-eventstream`): the
//!   `:message-type` / `:message-flags` / `:stream-id` layer and both directions' size limits.
//! * [`client`] — the async client over the nucleus Unix socket: Connect / ConnectAck,
//!   request–response operations ([`client::IpcClient::call`]), streaming operations, closing
//!   a stream.
//! * [`operation`] — one type per request–response operation: its name, request body and
//!   response type. A new operation is one such type and one client method.
//! * [`pubsub`] — the JSON shapes of local pub/sub, their names and the common error types.
//! * [`iot_core`] — `PublishToIoTCore` and each flavour's rules for it.
//! * [`configuration`] — `GetConfiguration`, `SubscribeToConfigurationUpdate` and their events;
//!   what a key path reads as and which key paths a change touches.
//! * [`topic`] — MQTT-style topic filters and access-control resource matching.
//! * [`flavour`] — [`Flavour`], the nucleus implementation, and its frame limit.
//!
//! Implemented operations: `PublishToTopic`, `SubscribeToTopic` (with its stream of
//! `SubscriptionResponseMessage` events and closing it), `UpdateState`, `PublishToIoTCore`,
//! `GetConfiguration` and `SubscribeToConfigurationUpdate` (with its stream of
//! `ConfigurationUpdateEvents`). Not implemented:
//! every other operation of `aws.greengrass#GreengrassCoreIPC`, pings (nucleus lite closes the
//! connection on one) and reconnecting (a caller decides its own policy when
//! [`client::IpcClient::closed`] resolves).
//!
//! The crate knows nothing of what travels in the messages: no service, no adapter, no HTTP.
//! With the `clap` feature, [`Flavour`] can be read from a command line.

pub mod client;
pub mod configuration;
pub mod flavour;
pub mod frame;
pub mod iot_core;
pub mod operation;
pub mod pubsub;
pub mod topic;

pub use flavour::Flavour;
