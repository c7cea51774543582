//! libdlr from AWS's variant.DLR runtime component: the service recipe's Setenv points the
//! service's libdlr discovery at the environment variant.DLR installs.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::lifecycle::{Interpolation, launch};
use crate::support::*;

/// The DefaultConfiguration of public AWS components our recipes read, as published in their
/// recipes (evidence in recipes/README.md, "Where libdlr comes from").
pub(crate) fn public_component_configuration(name: &str) -> Value {
    match name {
        "variant.DLR" => serde_json::json!({
            "MLRootPath": "../variant.DLR/greengrass_ml",
            "WindowsMLRootPath": "%cd%\\..\\variant.DLR\\greengrass_ml",
            "UseInstaller": "true",
        }),
        _ => Value::Object(Default::default()),
    }
}

#[test]
fn service_looks_for_libdlr_where_variant_dlr_installs_it() {
    let recipe = recipe(&dist::SERVICE);
    assert!(
        recipe["ComponentDependencies"]["variant.DLR"]["VersionRequirement"]
            .as_str()
            .is_some_and(|r| in_range(r, "1.6.0")),
        "the service depends on variant.DLR 1.6.x (DLR 1.6.0)"
    );
    for manifest in manifests(&recipe) {
        let target = target_for(manifest);
        let context = format!("{} {}", dist::SERVICE.name, target.arch);
        let sandbox = tempfile::tempdir().unwrap();
        let mut interpolation = Interpolation::new(&recipe, sandbox.path(), &[]);
        interpolation.configuration["AllowedImageDirectories"] =
            Value::String(sandbox.path().join("images").display().to_string());
        let launch = launch(&interpolation, manifest, &context);
        // Where variant.DLR's installer puts its environment: MLRootPath resolved against
        // its own work folder (`<root>/work/variant.DLR`).
        let ml_root = sandbox.path().join("work/variant.DLR/greengrass_ml");
        let (variable, expected) = match target.arch {
            "x86_64" => (
                "CONDA_PREFIX",
                ml_root.join("greengrass_ml_dlr_conda/envs/greengrass_ml_dlr_conda"),
            ),
            "aarch64" | "armv7l" => ("VIRTUAL_ENV", ml_root.join("greengrass_ml_dlr_venv")),
            other => panic!("{context}: no variant.DLR layout known for {other}"),
        };
        let value = launch
            .env
            .get(variable)
            .unwrap_or_else(|| panic!("{context}: Setenv {variable} missing: {:?}", launch.env));
        // The service runs in its own work folder, a sibling of variant.DLR's.
        let resolved = normalise(&interpolation.work.join(value));
        assert_eq!(resolved, expected, "{context}: {variable}={value}");
        // A copy in the model directory (discovery step 2) comes before this one (step 4), and
        // the recipe does not name a library explicitly by default.
        assert!(
            !launch.argv.iter().any(|a| a.starts_with("--dlr-library")),
            "{context}: {:?}",
            launch.argv
        );
    }
}

/// `a/b/../c` -> `a/c`, without touching the file system.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
