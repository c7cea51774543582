//! A development tool, not for devices: a local Greengrass nucleus IPC server that stands in
//! for the classic nucleus or nucleus lite on a laptop and in tests, with their observable
//! differences, a token check and the recipes' pub/sub `accessControl` enforced.
//!
//! * [`emulator`] — the server: Connect, PublishToTopic, SubscribeToTopic, UpdateState,
//!   PublishToIoTCore (with an emulated cloud), GetConfiguration, SubscribeToConfigurationUpdate;
//!   both flavours' behaviour.
//! * [`acl`] — recipe-style `accessControl` files, as a nucleus applies them.
//! * [`configuration`] — component configurations: recipe defaults and a watched file merged
//!   over them.
//!
//! It speaks the protocol through `greengrass-ipc`, the same frames and shapes as the client.
//! The IPC adapter offers it as its `emulate` subcommand in development builds; the device
//! artifacts (`cargo xtask dist`) are built without it.

pub mod acl;
pub mod configuration;
pub mod emulator;
