//! Developer tasks, run as `cargo xtask <task>` (an alias in `.cargo/config.toml`).
//!
//! * `setup`   — everything tests and the demo need, into the git-ignored `generated/`:
//!   the real libdlr 1.6.0 from the `dlr` wheel (hash-pinned), a Python virtualenv with the
//!   official Greengrass IPC client, the generated DLR test models and sample images.
//!   Idempotent: what is already in place is kept.
//! * `demo`    — set-up, then the service on 127.0.0.1 with its embedded demo model,
//!   classifying a sample image with curl; keeps serving until Ctrl-C (`--once` to stop).
//! * `test`    — set-up, then `cargo fmt --check`, `cargo clippy -D warnings`, the device
//!   artifacts (`dist`), and every test. `.ci/run` runs exactly this.
//! * `openapi` — regenerates the committed `openapi/openapi.json` from the service.
//! * `dist`    — release binaries for x86_64 and (cross-compiled) aarch64, laid out with the
//!   Greengrass recipes in `greengrass-build/` for gdk and `greengrass-cli` (see `dist.rs`).

mod dist;
mod samples;
mod setup;
mod setup_robustness;

use std::path::Path;
use std::process::{Command, ExitCode};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup::run(&args[1..]),
        Some("demo") => demo(&args[1..]),
        Some("test") => test(),
        Some("openapi") => openapi(),
        Some("dist") => dist::run(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <setup [--heavy-passes N] | demo [--once] | test | openapi \
                 | dist [--component NAME]... [--target TRIPLE]... [--out DIR] [--gdk NAME] \
                 [--no-build] [--list]>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command in the workspace root, echoing it, failing on a non-zero exit.
pub(crate) fn sh(command: &mut Command) -> Result {
    eprintln!("+ {command:?}");
    let status = command
        .current_dir(dlr_test_models::paths::workspace_root())
        .status()?;
    if !status.success() {
        return Err(format!("{command:?} failed: {status}").into());
    }
    Ok(())
}

/// Tests passed and failed, summed over cargo's `test result:` lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct TestCounts {
    passed: u64,
    failed: u64,
}

impl TestCounts {
    /// Reads `test result: ok. 4 passed; 0 failed; 0 ignored; ...`.
    fn parse(line: &str) -> Option<Self> {
        let rest = line.trim().strip_prefix("test result: ")?;
        let count = |what: &str| {
            rest.split(';').find_map(|part| {
                let mut words = part.split_whitespace().rev();
                (words.next() == Some(what))
                    .then(|| words.next()?.parse().ok())
                    .flatten()
            })
        };
        Some(Self {
            passed: count("passed")?,
            failed: count("failed")?,
        })
    }
}

/// Runs a `cargo test` command, passing its output through, and counts the results.
fn run_tests(
    command: &mut Command,
) -> std::result::Result<TestCounts, (TestCounts, Box<dyn std::error::Error>)> {
    use std::io::BufRead;
    let mut counts = TestCounts::default();
    eprintln!("+ {command:?}");
    let spawned = command
        .current_dir(dlr_test_models::paths::workspace_root())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let mut child = spawned.map_err(|e| (counts, e.into()))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.map_err(|e| (counts, e.into()))?;
        println!("{line}");
        if let Some(found) = TestCounts::parse(&line) {
            counts.passed += found.passed;
            counts.failed += found.failed;
        }
    }
    let status = child.wait().map_err(|e| (counts, e.into()))?;
    if !status.success() {
        return Err((counts, format!("{command:?} failed: {status}").into()));
    }
    Ok(counts)
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn test() -> Result {
    setup::run(&[])?;
    sh(cargo().args(["fmt", "--all", "--", "--check"]))?;
    sh(cargo().args([
        "clippy",
        "--locked",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The device artifacts (x86_64 and cross-compiled aarch64) are built before the tests so
    // that the test runner's summary is the last thing printed.
    dist::run(&[])?;
    let doc = run_tests(cargo().args(["test", "--locked", "--workspace", "--doc"]));
    let all = run_tests(cargo().args(["test", "--locked", "--workspace", "--all-targets"]));
    let mut totals = TestCounts::default();
    for outcome in [&doc, &all] {
        let (Ok(counts) | Err((counts, _))) = outcome;
        totals.passed += counts.passed;
        totals.failed += counts.failed;
    }
    // One closing line for the whole run: cargo's own last summary is that of whichever test
    // binary ran last, which may hold no tests at all.
    println!("tests: {} passed, {} failed", totals.passed, totals.failed);
    doc.map_err(|(_, e)| e)?;
    all.map_err(|(_, e)| e)?;
    Ok(())
}

fn openapi() -> Result {
    let root = dlr_test_models::paths::workspace_root();
    eprintln!("+ cargo run -p classify-service -- openapi > openapi/openapi.json");
    let output = cargo()
        .args(["run", "--quiet", "-p", "classify-service", "--", "openapi"])
        .current_dir(&root)
        .output()?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned().into());
    }
    std::fs::write(root.join("openapi/openapi.json"), output.stdout)?;
    Ok(())
}

const DEMO_ADDRESS: &str = "127.0.0.1:8080";

fn demo(args: &[String]) -> Result {
    let once = args.iter().any(|a| a == "--once");
    setup::run(&[])?;
    sh(cargo().args(["build", "--release", "-p", "classify-service"]))?;
    let root = dlr_test_models::paths::workspace_root();
    let binary = root.join("target/release/classify-service");
    let mut service = Command::new(&binary)
        .args(["--demo", "--listen", DEMO_ADDRESS])
        .env("DLR_LIBRARY_PATH", dlr_test_models::paths::libdlr_path())
        .current_dir(&root)
        .spawn()?;
    let outcome = classify_sample(&dlr_test_models::paths::sample("red-apple.jpg"));
    if outcome.is_err() || once {
        let _ = Command::new("kill").arg(service.id().to_string()).status();
        service.wait()?;
        return outcome;
    }
    eprintln!(
        "\nThe service is running: http://{DEMO_ADDRESS}/docs (Swagger UI), \
         http://{DEMO_ADDRESS}/metrics. Ctrl-C stops it."
    );
    service.wait()?;
    Ok(())
}

/// Waits for readiness, then classifies one image the way a user would: with curl.
fn classify_sample(image: &Path) -> Result {
    let ready_url = format!("http://{DEMO_ADDRESS}/readyz");
    let mut ready = false;
    for _ in 0..300 {
        let status = Command::new("curl")
            .args(["--silent", "--fail", "--output", "/dev/null", &ready_url])
            .status()?;
        if status.success() {
            ready = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if !ready {
        return Err(format!("the service did not become ready at {ready_url} within 30 s").into());
    }
    sh(Command::new("curl").args([
        "--silent",
        "--show-error",
        "--fail-with-body",
        "-H",
        "Content-Type: image/jpeg",
        "--data-binary",
        &format!("@{}", image.display()),
        &format!("http://{DEMO_ADDRESS}/classify?top_k=3"),
    ]))?;
    println!();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::TestCounts;

    #[test]
    fn reads_cargo_test_summaries() {
        let line = "test result: ok. 14 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.06s";
        assert_eq!(
            TestCounts::parse(line),
            Some(TestCounts {
                passed: 14,
                failed: 2
            })
        );
        assert_eq!(TestCounts::parse("running 14 tests"), None);
    }
}
