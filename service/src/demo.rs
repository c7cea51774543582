//! The embedded demo model (`--demo`): the generated "colour" model with the ModelStore
//! ResNet-50's exact input/output contract, built into the binary by `build.rs`.
//!
//! libdlr loads models only from a directory, so the files are written at start-up to a fresh
//! temporary directory with mode 0700 (nobody else may swap the kernel library the process is
//! about to `dlopen`); dropping the returned [`tempfile::TempDir`] removes it.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

/// Name reported for the demo model.
pub const NAME: &str = "colour-demo";
/// Version reported for the demo model: the service's own.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

macro_rules! embedded {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_bytes!(concat!(env!("OUT_DIR"), "/demo-model/", $name)))),*]
    };
}

/// Every file of the demo model directory.
pub const FILES: &[(&str, &[u8])] = embedded!(
    "compiled_model.json",
    "compiled.params",
    "compiled.meta",
    "synset.txt",
    "compiled.so",
);

/// Writes the demo model to a new private temporary directory.
pub fn materialise() -> std::io::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("classify-demo-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()?;
    for (name, bytes) in FILES {
        let mut file = std::fs::File::create(dir.path().join(name))?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_directory_is_private_complete_and_removed() {
        let dir = materialise().unwrap();
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        dlr_sys::check_model_dir(dir.path()).unwrap();
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists());
    }
}
