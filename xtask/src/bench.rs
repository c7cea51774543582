//! `cargo xtask bench [preprocess | throughput]...`: the benchmarks behind `BENCHMARKS.md`.
//!
//! Runs `setup` and the benchmark venv set-up first, then each named `cargo bench` target of
//! the service (both when none is named). The benches print the CPU model and core count with
//! their figures; they are never part of `cargo xtask test`'s verdict.

use crate::{Result, cargo, sh};

const BENCHES: [&str; 2] = ["preprocess", "throughput"];

pub fn run(args: &[String]) -> Result {
    let names: Vec<&str> = if args.is_empty() {
        BENCHES.to_vec()
    } else {
        args.iter().map(String::as_str).collect()
    };
    if let Some(unknown) = names.iter().find(|n| !BENCHES.contains(n)) {
        return Err(format!("bench: unknown benchmark {unknown}; known: {BENCHES:?}").into());
    }
    crate::setup::run(&[])?;
    let python = crate::setup_bench::ensure_venv()?;
    for name in names {
        sh(cargo()
            .args([
                "bench",
                "--locked",
                "-p",
                "classify-service",
                "--bench",
                name,
            ])
            .env("BENCH_PYTHON", &python))?;
    }
    Ok(())
}
