//! The library half of `xtask`: the tasks the binary (`cargo xtask <task>`) dispatches to,
//! and the declarations other crates check against without running them — the end-to-end
//! tests compare the committed recipes with [`dist::COMPONENTS`] and [`dist::TARGETS`] (what
//! `cargo xtask dist` builds and lays out) instead of keeping a second copy.

pub mod dist;
pub mod samples;
pub mod setup;
pub mod setup_browser;
pub mod setup_cdk;
pub mod setup_model;
pub mod setup_oip;
pub mod setup_onnx;
pub mod setup_robustness;

use std::process::Command;

/// A task's outcome; errors are printed by the binary and end it with a failure status.
pub type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Runs a command in the workspace root, echoing it, failing on a non-zero exit.
pub fn sh(command: &mut Command) -> Result {
    eprintln!("+ {command:?}");
    let status = command
        .current_dir(dlr_test_models::paths::workspace_root())
        .status()?;
    if !status.success() {
        return Err(format!("{command:?} failed: {status}").into());
    }
    Ok(())
}
