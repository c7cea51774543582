//! A copy of the generated `gated` model in a private directory, and its gate: while the gate
//! is closed, every inference waits inside the real libdlr run (see
//! `test-models/kernels/gate.c`). Tests use it to create "a worker is busy" and "the queue is
//! full" as facts instead of guessing them from timing.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Gate {
    dir: tempfile::TempDir,
}

impl Gate {
    /// Copies the gated model; the gate starts open (warm-up runs pass).
    pub fn new() -> Self {
        let source = dlr_test_models::paths::model_dir("gated");
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(&source).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
        Self { dir }
    }

    /// The model directory to serve.
    pub fn model_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// From now on, inferences wait.
    pub fn close(&self) {
        std::fs::write(self.file("gate-closed"), b"").unwrap();
    }

    /// Releases every waiting inference.
    pub fn open(&self) {
        let _ = std::fs::remove_file(self.file("gate-closed"));
    }

    pub fn is_closed(&self) -> bool {
        self.file("gate-closed").exists()
    }

    /// Waits until an inference is held at the closed gate.
    pub async fn wait_held(&self) {
        wait_for(&self.file("gate-held"), "an inference to reach the gate").await;
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        // A failing test must not leave a worker stuck (the service joins its workers).
        self.open();
    }
}

/// Polls for a file; the bound only turns a hang into a failure, it is no verdict.
async fn wait_for(path: &Path, what: &str) {
    for _ in 0..6000 {
        if path.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("gave up waiting for {what}");
}

/// Polls `/metrics` until the queue holds `depth` jobs.
pub async fn wait_queue_depth(app: &crate::common::TestApp, depth: usize) {
    let needle = format!("classify_queue_depth {depth}\n");
    for _ in 0..6000 {
        if app.get_text("/metrics").await.contains(&needle) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the queue never held {depth} job(s)");
}
