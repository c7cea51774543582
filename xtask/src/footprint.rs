//! The edge-footprint budget: the stripped x86_64 service binary must stay within
//! [`SERVICE_BUDGET_BYTES`]. Checked by `cargo xtask test` right after `dist` built the
//! artifacts, so growing past the budget fails the test command with the figures.

use std::path::Path;

use crate::dist;

/// 10 MB (decimal), the target. The binary was 20.9 MB while Swagger UI was embedded
/// in every flavour (see `service/src/http/docs.rs`); trimming that brought it to 9.91 MB. The
/// ONNX Runtime backend, figment and the scaled JPEG decoder then took it to 11.03 MB, of which
/// 3.4 MB was `fast_image_resize` compiled for every pixel type and SIMD flavour behind its
/// run-time dispatch; resizing through its typed API for RGB8 only brought it to 8.14 MB.
pub const SERVICE_BUDGET_BYTES: u64 = 10_000_000;

/// Fails when the stripped x86_64 `classify-service` built by `dist` exceeds the budget.
pub fn check(root: &Path) -> crate::Result {
    let artifact = dist::Artifact {
        package: "classify-service",
        binary: "classify-service",
        target: dist::X86_64,
    };
    let path = artifact.built_path(root);
    let size = std::fs::metadata(&path)
        .map_err(|e| format!("{}: {e}; `cargo xtask dist` builds it", path.display()))?
        .len();
    within_budget(size, SERVICE_BUDGET_BYTES)?;
    eprintln!(
        "footprint: {} is {:.2} MB (budget {:.1} MB)",
        path.display(),
        size as f64 / 1e6,
        SERVICE_BUDGET_BYTES as f64 / 1e6
    );
    Ok(())
}

fn within_budget(size: u64, budget: u64) -> crate::Result {
    if size > budget {
        return Err(format!(
            "the stripped x86_64 classify-service is {:.2} MB, over its {:.1} MB budget; look \
             for what new dependency or embedded file grew it (e.g. `cargo bloat`), or raise \
             footprint::SERVICE_BUDGET_BYTES with a reason",
            size as f64 / 1e6,
            budget as f64 / 1e6
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_over_the_budget_fails() {
        assert!(within_budget(SERVICE_BUDGET_BYTES, SERVICE_BUDGET_BYTES).is_ok());
        let e = within_budget(SERVICE_BUDGET_BYTES + 1, SERVICE_BUDGET_BYTES).unwrap_err();
        assert!(e.to_string().contains("over its 10.0 MB budget"), "{e}");
    }
}
