//! Writes the generated DLR test models into a directory (default `<workspace>/generated/models`).
//!
//! Usage: `gen-test-models [OUT_DIR] [--heavy-passes N]`

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut out = dlr_test_models::paths::models_dir();
    let mut passes = dlr_test_models::ColourModel::DEFAULT_HEAVY_PASSES;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--heavy-passes" {
            match args.next().and_then(|v| v.parse().ok()) {
                Some(n) => passes = n,
                None => {
                    eprintln!("--heavy-passes needs a whole number");
                    return ExitCode::FAILURE;
                }
            }
        } else {
            out = arg.into();
        }
    }
    match dlr_test_models::generate_all(&out, passes) {
        Ok(dirs) => {
            for dir in dirs {
                println!("{}", dir.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
