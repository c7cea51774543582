//! The Open Inference Protocol v2 clients the service's v2 routes are tested with
//! (`service/tests/service/v2.rs`): `tritonclient[http]` and kserve's `InferenceRESTClient`,
//! pinned, in a virtual environment of their own (`generated/oip-venv/`). kserve brings a large
//! dependency set (fastapi, grpcio, pydantic, …); apart from the IPC client's and schemathesis's
//! venv, neither can move the other's pins.

use std::process::Command;

use dlr_test_models::paths;

use crate::{Result, sh};

/// The clients, pinned.
pub const PACKAGES: &[&str] = &["tritonclient[http]==2.73.0", "kserve==0.21.0"];

/// Creates the venv and installs the clients unless they are already there.
pub fn install(python: &str) -> Result {
    let venv_python = paths::oip_venv_dir().join("bin/python");
    let present = Command::new(&venv_python)
        .args(["-c", "import tritonclient.http, kserve"])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    sh(Command::new(python)
        .args(["-m", "venv"])
        .arg(paths::oip_venv_dir()))?;
    sh(Command::new(&venv_python)
        .args(["-m", "pip", "install", "--quiet"])
        .args(PACKAGES))?;
    Ok(())
}
