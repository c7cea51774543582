//! Schemathesis (pinned, installed into `generated/venv` by `cargo xtask setup`) against the
//! real server: it generates requests from the served OpenAPI document — valid and invalid
//! ones — and checks every answer: no 5xx, status codes, content types, headers and bodies
//! as documented. The amount of work is fixed by `--max-examples` and a fixed seed (so a failure
//! reproduces and the case count does not depend on the machine's speed: about 1 minute on an idle
//! 2-core machine); a hard process timeout only turns a hang into a failure. It must cover at
//! least 1000 cases.
//!
//! Excluded check: `positive_data_acceptance`. The JSON body's schema cannot say "exactly one
//! of image_base64, path, image_dir+fname" (every field is optional there), so a body with
//! none is schema-valid and rightly answered 422; schemathesis reports that as a rejected
//! valid request. Every response check stays on.

use std::process::Command;

use classify_service::Config;

use crate::common::*;

/// Generated cases per operation (the `/classify` operation takes most of them).
const MAX_EXAMPLES: u32 = 1500;
/// A hang guard, not a verdict on speed.
const HARD_LIMIT_SECS: u32 = 600;
const MIN_CASES: u64 = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let schemathesis = dlr_test_models::paths::venv_dir().join("bin/schemathesis");
    assert!(
        schemathesis.exists(),
        "{} missing: run `cargo xtask setup`",
        schemathesis.display()
    );
    let samples = dlr_test_models::paths::samples_dir();
    let app = spawn_ready(Config {
        allowed_dirs: vec![samples],
        // Generous: schemathesis' concurrent requests must never be shed as 503/504.
        queue_capacity: 256,
        request_timeout_ms: 60_000,
        ..config("colour")
    })
    .await;
    let schema = app.url("/openapi.json");
    // Schemathesis keeps a cache in its working directory: not in the source tree.
    let scratch = tempfile::tempdir().unwrap();
    let cwd = scratch.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .current_dir(cwd)
            .arg(HARD_LIMIT_SECS.to_string())
            .arg(&schemathesis)
            .args(["run", &schema, "--checks", "all"])
            .args(["--exclude-checks", "positive_data_acceptance"])
            .args(["--max-examples", &MAX_EXAMPLES.to_string()])
            .args(["--seed", "20261127", "--workers", "2"])
            .args(["--generation-database", "none", "--no-color"])
            .env("NO_COLOR", "1")
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis failed ({}):\n{text}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let cases = text
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" generated")
                .and_then(|(n, _)| n.parse::<u64>().ok())
        })
        .unwrap_or_else(|| panic!("no case count in:\n{text}"));
    eprintln!("schemathesis: {cases} cases, no failure");
    assert!(cases >= MIN_CASES, "only {cases} cases:\n{text}");
    app.stop().await;
}
