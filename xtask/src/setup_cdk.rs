//! The CDK app of `deploy/cdk/` (the fleet deployment): its npm packages — `aws-cdk-lib`,
//! `constructs`, `cdk-nag`, the `aws-cdk` CLI, TypeScript and ts-node — installed with
//! `npm ci` from the committed lock file into `deploy/cdk/node_modules/` (ignored). Installed
//! again only when the lock file changes: a copy of the one installed from is kept beside the
//! packages.

use std::process::Command;

use dlr_test_models::paths;

use crate::{Result, sh};

/// Installs the packages unless those of the current lock file are there.
pub fn install() -> Result {
    let app = paths::workspace_root().join("deploy/cdk");
    let lock = std::fs::read(app.join("package-lock.json"))?;
    let stamp = app.join("node_modules/.installed-from-package-lock.json");
    if std::fs::read(&stamp).is_ok_and(|installed| installed == lock) {
        return Ok(());
    }
    sh(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--prefix"])
        .arg(&app))?;
    std::fs::write(stamp, lock)?;
    Ok(())
}
