//! What the browser and generated-client tests need (`service/tests/service/browser.rs`):
//! Debian's `chromium` and `chromium-driver`, installed with apt-get like the cross toolchain
//! (as root; otherwise the error says what to install), and two pinned Python packages in
//! `generated/venv/`.
//!
//! Selenium drives the browser rather than a Rust WebDriver crate: the venv already exists for
//! the Greengrass IPC client, the generated client needs Python anyway, and Selenium is the
//! reference WebDriver client (maintained by the WebDriver spec's authors), so the test adds
//! no Rust dependencies to the workspace's build.

use std::process::Command;

use dlr_test_models::paths;

use crate::{Result, sh};

/// Debian packages: the browser and the matching WebDriver server.
const BROWSER_PACKAGES: &[&str] = &["chromium", "chromium-driver"];
/// Where Debian puts them (the test scripts use these paths).
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Pinned Python packages: the WebDriver client and the OpenAPI client generator.
const PYTHON_PACKAGES: &[&str] = &["selenium==4.51.0", "openapi-python-client==0.29.1"];

/// Installs what is missing; does nothing when everything is in place.
pub fn install() -> Result {
    install_browser()?;
    let python = paths::venv_dir().join("bin/python");
    let present = Command::new(&python)
        .args(["-c", "import selenium, openapi_python_client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        sh(Command::new(&python)
            .args(["-m", "pip", "install", "--quiet"])
            .args(PYTHON_PACKAGES))?;
    }
    Ok(())
}

fn install_browser() -> Result {
    if std::path::Path::new(CHROMIUM).is_file() && std::path::Path::new(CHROMEDRIVER).is_file() {
        return Ok(());
    }
    crate::setup::apt_install(&format!("{CHROMIUM} or {CHROMEDRIVER}"), BROWSER_PACKAGES)
}
