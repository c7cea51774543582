//! Where `cargo xtask setup` puts what it generates, so that every crate's tests find it.
//!
//! Everything lives under `<workspace>/generated/` (git-ignored). Helpers that return a path
//! a test needs panic with a message naming the set-up command when it is missing: a test that
//! needs the real libdlr fails loudly rather than skipping.

use std::path::{Path, PathBuf};

/// The command that creates everything under [`generated_dir`].
pub const SETUP_COMMAND: &str = "cargo xtask setup";

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate lives inside the workspace")
        .to_path_buf()
}

/// `<workspace>/generated`.
pub fn generated_dir() -> PathBuf {
    workspace_root().join("generated")
}

/// Where the generated model directories go.
pub fn models_dir() -> PathBuf {
    generated_dir().join("models")
}

/// Where sample images go.
pub fn samples_dir() -> PathBuf {
    generated_dir().join("samples")
}

/// Where the real libdlr 1.6.0 from the `dlr` wheel goes.
pub fn libdlr_dir() -> PathBuf {
    generated_dir().join("libdlr")
}

/// The Python virtual environment with the official Greengrass IPC client.
pub fn venv_dir() -> PathBuf {
    generated_dir().join("venv")
}

/// The Python virtual environment with the Open Inference Protocol v2 clients (tritonclient,
/// kserve).
pub fn oip_venv_dir() -> PathBuf {
    generated_dir().join("oip-venv")
}

/// Its interpreter; panics with a set-up hint when it is missing.
pub fn oip_python() -> PathBuf {
    require(
        oip_venv_dir().join("bin/python"),
        "the Python interpreter with tritonclient and kserve",
    )
}

fn require(path: PathBuf, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} not found at {}: run `{SETUP_COMMAND}` first",
        path.display()
    );
    path
}

/// The real `libdlr.so`; panics with a set-up hint when it is missing.
pub fn libdlr_path() -> PathBuf {
    require(libdlr_dir().join("libdlr.so"), "libdlr.so")
}

/// A generated model directory by name (e.g. "colour"); panics with a set-up hint when
/// missing.
pub fn model_dir(name: &str) -> PathBuf {
    require(models_dir().join(name), "generated model")
}

/// A generated sample image by file name (e.g. "red.png"); panics when missing.
pub fn sample(name: &str) -> PathBuf {
    require(samples_dir().join(name), "sample image")
}

/// The Python interpreter of the virtual environment with the official Greengrass IPC client
/// (`CLASSIFY_TEST_PYTHON` overrides it); panics with a set-up hint when it is missing.
pub fn python() -> PathBuf {
    let python = std::env::var_os("CLASSIFY_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| venv_dir().join("bin/python"));
    require(
        python,
        "the Python interpreter with the Greengrass IPC client",
    )
}

/// Real photos from the scikit-image wheel's `skimage/data/` (chelsea.png, coffee.png, ...).
pub fn photos_dir() -> PathBuf {
    samples_dir().join("photos")
}

/// A real photo by file name (e.g. "chelsea.png"); panics with a set-up hint when missing.
pub fn photo(name: &str) -> PathBuf {
    require(photos_dir().join(name), "photo")
}

/// Downloaded model inputs: the EfficientNet-Lite0 checkpoint and the ImageNet label list.
pub fn weights_dir() -> PathBuf {
    generated_dir().join("weights")
}

/// The generator and independent numpy reference of the EfficientNet-Lite0 model.
pub fn efficientnet_source_dir() -> PathBuf {
    workspace_root().join("test-models/efficientnet")
}
