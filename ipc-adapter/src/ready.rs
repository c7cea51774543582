//! `wait-ready`: blocks until ready files exist, so a script can start `emulate` and `run` in the
//! background and go on exactly when they are ready, without guessing a sleep.
//!
//! The files are written atomically (`adapter::write_ready_file`), so existence means ready.
//! Existence is checked every 20 ms inside this command — the one place that polls — up to a
//! bounded timeout.

use std::path::PathBuf;
use std::time::Duration;

/// Waits until every file in `files` exists, or fails after `timeout_ms` naming the missing ones.
pub async fn wait_for_files(files: &[PathBuf], timeout_ms: u64) -> Result<(), String> {
    let all_exist = async {
        loop {
            if files.iter().all(|f| f.exists()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_millis(timeout_ms), all_exist)
        .await
        .map_err(|_| {
            let missing: Vec<String> = files
                .iter()
                .filter(|f| !f.exists())
                .map(|f| f.display().to_string())
                .collect();
            format!(
                "not ready within {timeout_ms} ms: {} still missing (is the process running? \
                 see its log)",
                missing.join(", ")
            )
        })
}
