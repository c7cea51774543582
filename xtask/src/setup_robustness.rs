//! Installs the robustness tooling the test command uses: schemathesis, which generates
//! requests from the service's OpenAPI document and checks every answer against it
//! (`service/tests/service/schemathesis.rs`). It goes into `generated/venv` next to the IPC
//! client, from `xtask/schemathesis-requirements.txt` — every package pinned by version and
//! SHA-256, installed with `--require-hashes --no-deps`, so what runs is exactly what was
//! reviewed. Idempotent: nothing happens when the pinned version already answers.

use std::process::Command;

use dlr_test_models::paths;

use crate::{Result, sh};

/// The schemathesis release the requirements file pins.
pub const SCHEMATHESIS_VERSION: &str = "4.32.5";

/// Installs schemathesis into the venv (which `make_venv` created) unless it is already there.
pub fn install() -> Result {
    let bin = paths::venv_dir().join("bin");
    let installed = Command::new(bin.join("schemathesis"))
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(SCHEMATHESIS_VERSION));
    if installed {
        return Ok(());
    }
    let requirements = paths::workspace_root().join("xtask/schemathesis-requirements.txt");
    sh(Command::new(bin.join("python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--require-hashes",
            "--no-deps",
        ])
        .arg("-r")
        .arg(&requirements))?;
    Ok(())
}
