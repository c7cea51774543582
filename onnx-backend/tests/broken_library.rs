//! A file that claims to be ONNX Runtime but is not. In its own test binary (process): a
//! failed load leaves `ort`'s process globals unusable, which is exactly what is checked here.

use onnx_backend::{Error, LibrarySearch, OnnxRuntime};

#[test]
fn a_library_that_fails_to_load_is_an_error_and_stays_one() {
    let dir = std::env::temp_dir().join(format!("onnx-broken-lib-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // No version in the name, so the refusal comes from loading it, not from the name.
    std::fs::write(dir.join("libonnxruntime.so"), b"not an ELF file").unwrap();
    let search = LibrarySearch {
        explicit: None,
        model_dir: Some(dir.clone()),
    };
    let err = OnnxRuntime::discover(&search).unwrap_err();
    assert!(matches!(err, Error::LibraryLoad { .. }), "{err}");
    assert!(
        err.to_string().contains(&dir.display().to_string()),
        "{err}"
    );

    let err = OnnxRuntime::discover(&search).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(err, Error::LibraryUnusable(_)), "{err}");
}
