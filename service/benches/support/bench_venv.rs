//! The bench venv's python (OpenCV for the preprocessing benchmark, the FastAPI peer for the
//! throughput one), which `cargo xtask bench` installs. A plain file included with `#[path]` by
//! each benchmark that runs Python.

use std::path::PathBuf;

/// `BENCH_PYTHON` (set by `cargo xtask bench`), else `generated/bench-venv/bin/python`.
pub fn python() -> PathBuf {
    std::env::var_os("BENCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| dlr_test_models::paths::generated_dir().join("bench-venv/bin/python"))
}
