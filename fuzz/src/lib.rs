//! Fuzz checks for the service and the IPC adapter; see `checks`.

pub mod checks;
