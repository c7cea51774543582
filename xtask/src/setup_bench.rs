//! The Python side of the benchmarks, in its own virtualenv `generated/bench-venv`: OpenCV, the
//! baseline the preprocessing benchmark compares against, and FastAPI + uvicorn + ONNX Runtime +
//! Pillow, the Python peer the throughput benchmark runs (`service/benches/support/fastapi_peer.py`).
//!
//! Separate from the test venv and installed only by `cargo xtask bench`, so `cargo xtask test`
//! and `setup` stay lean (OpenCV's wheel is about 50 MB). Versions are pinned like the test
//! venv's; numpy is pinned to a release OpenCV 4.12 supports, ONNX Runtime to the release the
//! service loads (`generated/onnxruntime`), so the peer runs the same runtime.

use std::process::Command;

use dlr_test_models::paths;

use crate::{Result, sh};

const PACKAGES: [&str; 6] = [
    "opencv-python-headless==4.12.0.88",
    "numpy==2.2.6",
    "fastapi==0.165.0",
    "uvicorn==0.55.0",
    "pillow==13.0.0",
    "onnxruntime==1.22.1",
];

/// Creates `generated/bench-venv` with the packages unless they already import; returns its
/// python.
pub fn ensure_venv() -> Result<std::path::PathBuf> {
    let venv = paths::generated_dir().join("bench-venv");
    let python = venv.join("bin/python");
    let ready = python.is_file()
        && Command::new(&python)
            .args([
                "-c",
                "import cv2, numpy, fastapi, uvicorn, onnxruntime, PIL",
            ])
            .status()
            .is_ok_and(|s| s.success());
    if !ready {
        let system = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        sh(Command::new(system).args(["-m", "venv"]).arg(&venv))?;
        sh(Command::new(&python)
            .args(["-m", "pip", "install", "--quiet"])
            .args(PACKAGES))?;
    }
    Ok(python)
}
