//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/`) through the same check
//! the cargo-fuzz target runs (`fuzz/src/checks.rs`, compiled here on stable), so inputs that
//! once found a bug, and the coverage the fuzzer built up, are re-tested by the normal test
//! command. Fuzzing itself (nightly, long runs) is described in RELIABILITY.md.

#[path = "../../fuzz/src/checks.rs"]
mod checks;

use std::path::PathBuf;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    for file in &files {
        let data = std::fs::read(file).unwrap();
        // A panic names the input, which is what a failing replay needs to say.
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} fails the check",
            file.display()
        );
    }
}

#[test]
fn decode_preprocess_corpus() {
    replay("decode_preprocess", checks::decode_preprocess);
}

#[test]
fn body_parsing_corpus() {
    replay("body_parsing", checks::body_parsing);
}

#[test]
fn labels_corpus() {
    replay("labels", checks::labels);
}

#[test]
fn ipc_frame_corpus() {
    replay("ipc_frame", checks::ipc_frame);
}

#[test]
fn ipc_message_corpus() {
    replay("ipc_message", checks::ipc_message);
}
