//! Where the model comes from: an explicit directory, the Greengrass ModelStore, or the demo.
//!
//! Discovery mirrors how Greengrass installs `variant.DLR.ImageClassification.ModelStore`:
//! `<root>/packages/artifacts-unarchived/variant.DLR.ImageClassification.ModelStore/<version>/`
//! `DLR-resnet50-<arch>-cpu-ImageClassification`, with `<arch>` one of `x86_64`, `aarch64`,
//! `armv7l`. The highest version (compared numerically, part by part) that holds a directory
//! for this machine wins; when none does, the error lists exactly which paths were examined.
//!
//! The demo model is embedded in the binary (see `build.rs`) and written at start-up to a
//! private (0700) temporary directory that is removed when the [`LocatedModel`] is dropped.

use std::path::{Path, PathBuf};

use crate::config::Config;

/// The ModelStore component name.
pub const MODEL_STORE_COMPONENT: &str = "variant.DLR.ImageClassification.ModelStore";

/// A model directory ready to load, with the name and version answers report.
#[derive(Debug)]
pub struct LocatedModel {
    /// The directory to load.
    pub dir: PathBuf,
    /// Name reported in answers.
    pub name: String,
    /// Version reported in answers.
    pub version: String,
    /// Keeps the demo's temporary directory alive; removed on drop.
    pub(crate) _demo_dir: Option<tempfile::TempDir>,
}

/// Why no model directory could be found.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// Nothing suitable under the Greengrass root.
    #[error(
        "no {component} model for architecture {arch} found; looked for \
         {pattern}{found}. Install the component, or pass --model-dir DIR (or --demo)",
        component = MODEL_STORE_COMPONENT
    )]
    NotFound {
        /// Machine architecture as the ModelStore names it.
        arch: String,
        /// The glob-like path examined.
        pattern: String,
        /// What was there instead (may be empty).
        found: String,
    },
    /// The demo model could not be written out.
    #[error("cannot write the demo model to a temporary directory: {0}")]
    Demo(std::io::Error),
}

/// The architecture name the ModelStore uses for this machine.
pub fn model_store_arch() -> &'static str {
    match std::env::consts::ARCH {
        "arm" => "armv7l",
        other => other,
    }
}

/// Resolves the configured model: `demo`, else `model_dir`, else ModelStore discovery.
pub fn locate(config: &Config) -> Result<LocatedModel, LocateError> {
    if config.demo {
        let temp = crate::demo::materialise().map_err(LocateError::Demo)?;
        return Ok(LocatedModel {
            dir: temp.path().to_path_buf(),
            name: config
                .model_name
                .clone()
                .unwrap_or_else(|| crate::demo::NAME.into()),
            version: config
                .model_version
                .clone()
                .unwrap_or_else(|| crate::demo::VERSION.into()),
            _demo_dir: Some(temp),
        });
    }
    let (dir, found_version) = match &config.model_dir {
        Some(dir) => (dir.clone(), version_from_path(dir)),
        None => {
            let (dir, version) = discover(&config.greengrass_root, model_store_arch())?;
            (dir, Some(version))
        }
    };
    let name = config.model_name.clone().unwrap_or_else(|| {
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    });
    let version = config
        .model_version
        .clone()
        .or(found_version)
        .unwrap_or_else(|| "unknown".into());
    Ok(LocatedModel {
        dir,
        name,
        version,
        _demo_dir: None,
    })
}

/// When a directory sits inside a ModelStore install, the version directory above it.
fn version_from_path(dir: &Path) -> Option<String> {
    let parent = dir.parent()?;
    let grandparent = parent.parent()?;
    (grandparent.file_name()? == MODEL_STORE_COMPONENT)
        .then(|| parent.file_name().map(|v| v.to_string_lossy().into_owned()))
        .flatten()
}

/// Finds the newest ModelStore model for `arch` under a Greengrass root.
pub fn discover(root: &Path, arch: &str) -> Result<(PathBuf, String), LocateError> {
    let component = root
        .join("packages")
        .join("artifacts-unarchived")
        .join(MODEL_STORE_COMPONENT);
    let leaf = format!("DLR-resnet50-{arch}-cpu-ImageClassification");
    let pattern = component.join("*").join(&leaf).display().to_string();
    let not_found = |found: String| LocateError::NotFound {
        arch: arch.to_string(),
        pattern: pattern.clone(),
        found,
    };
    let entries = match std::fs::read_dir(&component) {
        Ok(entries) => entries,
        Err(e) => {
            let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                "; Greengrass ModelStore artifacts may be readable only by their owner: run \
                 this component as the same user"
            } else {
                ""
            };
            return Err(not_found(format!(
                " ({} cannot be read: {e}{hint})",
                component.display()
            )));
        }
    };
    let mut versions: Vec<(Vec<u64>, String)> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .map(|v| (version_key(&v), v))
        .collect();
    versions.sort();
    for (_, version) in versions.iter().rev() {
        let candidate = component.join(version).join(&leaf);
        if candidate.is_dir() {
            return Ok((candidate, version.clone()));
        }
    }
    let listed: Vec<&str> = versions.iter().map(|(_, v)| v.as_str()).collect();
    Err(not_found(if listed.is_empty() {
        format!(" ({} has no version directories)", component.display())
    } else {
        format!(
            " (versions present: {}; none has {leaf})",
            listed.join(", ")
        )
    }))
}

/// Numeric parts of a version for ordering ("2.1.10" > "2.1.9"); non-numeric parts sort as 0.
fn version_key(version: &str) -> Vec<u64> {
    version
        .split(['.', '-', '+'])
        .map(|part| part.parse().unwrap_or(0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn install(root: &Path, version: &str, arch: &str) -> PathBuf {
        let dir = root
            .join("packages/artifacts-unarchived")
            .join(MODEL_STORE_COMPONENT)
            .join(version)
            .join(format!("DLR-resnet50-{arch}-cpu-ImageClassification"));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn newest_version_for_this_arch_wins() {
        let root = tempfile::tempdir().unwrap();
        install(root.path(), "2.1.9", "x86_64");
        let newest = install(root.path(), "2.1.10", "x86_64");
        install(root.path(), "2.1.11", "aarch64");
        let (dir, version) = discover(root.path(), "x86_64").unwrap();
        assert_eq!(dir, newest);
        assert_eq!(version, "2.1.10");
        assert_eq!(version_from_path(&dir).as_deref(), Some("2.1.10"));
    }

    #[test]
    fn not_found_says_where_it_looked() {
        let root = tempfile::tempdir().unwrap();
        let err = discover(root.path(), "x86_64").unwrap_err().to_string();
        assert!(err.contains(&root.path().display().to_string()), "{err}");
        assert!(
            err.contains("DLR-resnet50-x86_64-cpu-ImageClassification"),
            "{err}"
        );
        assert!(err.contains("--model-dir"), "{err}");
        install(root.path(), "2.1.9", "aarch64");
        let err = discover(root.path(), "x86_64").unwrap_err().to_string();
        assert!(err.contains("versions present: 2.1.9"), "{err}");
    }
}
