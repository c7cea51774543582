//! What the binary writes to stderr: JSON stays JSON with libdlr's own prints captured,
//! start-up messages in order, one line per start-up error with a hint that says what to do.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{BIN, stderr_lines};

#[test]
fn json_logs_stay_json_with_libdlr_output_captured_and_in_order() {
    let mut child = Command::new(BIN)
        .args(["--demo", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .arg("--dlr-library")
        .arg(dlr_test_models::paths::libdlr_path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = stderr_lines(&mut child);
    let mut events = Vec::new();
    // Until the worker has warmed up, the listener is announced and libdlr's first print has
    // been relayed (these three may come in any order), then stop the service.
    let seen = |events: &[serde_json::Value]| {
        let has = |message: &str| events.iter().any(|e| e["fields"]["message"] == message);
        has("model worker ready")
            && has("listening")
            && events.iter().any(|e| e["target"] == "native_output")
    };
    while !seen(&events) {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("start-up events missing; so far: {events:#?}"));
        let event = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line:?}"));
        events.push(event);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let position = |message: &str| {
        events
            .iter()
            .position(|e| e["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} event in {events:#?}"))
    };
    assert!(position("model loaded; warming up") < position("model worker ready"));
    let native = events
        .iter()
        .find(|e| e["target"] == "native_output")
        .unwrap_or_else(|| panic!("libdlr's prints were not captured: {events:#?}"));
    assert!(
        native["fields"]["source"]
            .as_str()
            .unwrap()
            .contains(".cc:"),
        "{native}"
    );
    let listening = &events[position("listening")];
    assert!(
        listening["fields"]["docs"]
            .as_str()
            .unwrap()
            .ends_with("/docs/"),
        "{listening}"
    );
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains('\u{1b}'), "no colour codes into a pipe");
}

/// (arguments, what the single error line must say)
const START_UP_ERRORS: &[(&[&str], &[&str])] = &[
    (
        &["--demo", "--dlr-library", "/etc/hostname"],
        &[
            "/etc/hostname",
            "file too short",
            "DLR_LIBRARY_PATH",
            "variant.DLR",
        ],
    ),
    (
        &["--demo", "--dlr-library", "/nonexistent/libdlr.so"],
        &[
            "not found",
            "DLR_LIBRARY_PATH",
            "--dlr-library",
            "variant.DLR",
        ],
    ),
    (
        &["--demo", "--listen", "localhost:8080"],
        &["localhost:8080", "127.0.0.1:PORT"],
    ),
    (
        &["--demo", "--listen", "example.org:80"],
        &["not an IP address and port", "host names are not resolved"],
    ),
];

#[test]
fn each_start_up_error_is_one_line_with_a_hint() {
    for (args, needles) in START_UP_ERRORS {
        let output = Command::new(BIN)
            .args(*args)
            .env_remove("RUST_LOG")
            .env_remove("DLR_LIBRARY_PATH")
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("ERROR") || l.starts_with("error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{args:?}: one error line in\n{stderr}");
        for needle in *needles {
            assert!(
                errors[0].contains(needle),
                "{args:?}: {needle:?} in\n{stderr}"
            );
        }
        assert!(
            !stderr.contains('\u{1b}'),
            "{args:?}: colour codes in a pipe"
        );
    }
}
