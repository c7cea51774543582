//! Schemathesis (pinned, installed into `generated/venv` by `cargo xtask setup`) against the
//! real server: it generates requests from the served OpenAPI document — valid and invalid
//! ones — and checks every answer: no 5xx, status codes, content types, headers and bodies
//! as documented. The amount of work is fixed by `max-examples` and a fixed seed (so a failure
//! reproduces and the case count does not depend on the machine's speed: about 1½ minutes on an
//! idle 2-core machine); a hard process timeout only turns a hang into a failure. It must cover at
//! least 1000 cases.
//!
//! `positive_data_acceptance` runs with the statuses a schema-valid request can rightly get:
//! 2xx, and the answers about the image itself that no JSON schema can express — 400 (bytes
//! that are not a decodable image), 403 (a path outside the allowed directories), 404 (no such
//! file), 413 (too large) and 415 (not an image format). 422 is deliberately *not* among them:
//! it means the body broke a rule of the schema, so a schema-valid body that gets 422 is a
//! disagreement between the document and the validation, which is what this check finds.
//! Every response check stays on.

use std::process::Command;

use classify_service::Config;

use crate::common::*;

/// A hang guard, not a verdict on speed.
const HARD_LIMIT_SECS: u32 = 600;
const MIN_CASES: u64 = 1000;
/// Generated cases per operation: up to 1500 (the `/classify` operation takes most of them),
/// 300 for each v2 infer route, whose request the schema can only sketch; the v2 routes' model
/// and version are the served ones, so that their answers are more than 404s. And what a
/// schema-valid request may be answered (see the module documentation).
const CONFIG: &str = "generation.max-examples = 1500

[checks.positive_data_acceptance]
expected-statuses = [\"2xx\", \"400\", \"403\", \"404\", \"413\", \"415\"]

[[operations]]
include-tag = \"v2\"
parameters = { \"path.model\" = \"colour\", \"path.version\" = \"unknown\" }

[[operations]]
include-operation-id-regex = \"^v2_(version_)?infer$\"
generation.max-examples = 300
";

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
    let config_file = cwd.join("schemathesis.toml");
    std::fs::write(&config_file, CONFIG).unwrap();
    let config_file = config_file.display().to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .current_dir(cwd)
            .arg(HARD_LIMIT_SECS.to_string())
            .arg(&schemathesis)
            .args([
                "--config-file",
                &config_file,
                "run",
                &schema,
                "--checks",
                "all",
            ])
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
