//! A development tool, not for devices: a local Greengrass nucleus IPC server that stands in
//! for the classic nucleus or nucleus lite on a laptop and in tests, with their observable
//! differences, a token check and the recipes' pub/sub `accessControl` enforced.
//!
//! * [`emulator`] — the server: Connect, PublishToTopic, SubscribeToTopic, UpdateState, both
//!   flavours' behaviour.
//! * [`acl`] — recipe-style `accessControl` files, as a nucleus applies them.
//!
//! It speaks the protocol through `greengrass-ipc`, the same frames and shapes as the client.
//! The IPC adapter offers it as its `emulate` subcommand in development builds; the device
//! artifacts (`cargo xtask dist`) are built without it.

pub mod acl;
pub mod emulator;
