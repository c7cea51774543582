//! Discovery through the environment: `DLR_LIBRARY_PATH` and a Python virtualenv's `dlr`
//! package. Environment variables are process-wide, so this binary holds a single test.

mod common;

use common::*;
use dlr_sys::{DlrLibrary, LibrarySearch, LibrarySource};
use dlr_test_models::paths;

fn set(var: &str, value: Option<&std::path::Path>) {
    // SAFETY: this test binary runs one test on one thread; nothing else reads the
    // environment concurrently.
    unsafe {
        match value {
            Some(v) => std::env::set_var(var, v),
            None => std::env::remove_var(var),
        }
    }
}

#[test]
fn environment_and_python_package_locations_are_searched_in_order() {
    set("DLR_LIBRARY_PATH", None);

    // A virtualenv with the dlr wheel installed: <venv>/lib/python3.X/site-packages/dlr/.
    let venv = TempDir::new("venv");
    let package = venv.path().join("lib/python3.11/site-packages/dlr");
    std::fs::create_dir_all(&package).unwrap();
    std::fs::copy(paths::libdlr_path(), package.join("libdlr.so")).unwrap();
    set("VIRTUAL_ENV", Some(venv.path()));
    let lib = DlrLibrary::discover(&LibrarySearch::default()).unwrap();
    assert_eq!(lib.source(), LibrarySource::PythonPackage);
    assert_eq!(lib.path(), package.join("libdlr.so"));

    // DLR_LIBRARY_PATH (here a directory) comes before the Python package.
    set("DLR_LIBRARY_PATH", Some(&paths::libdlr_dir()));
    let lib = DlrLibrary::discover(&LibrarySearch::default()).unwrap();
    assert_eq!(lib.source(), LibrarySource::Environment);
    assert_eq!(lib.path(), paths::libdlr_path());

    // The model directory's own copy comes before the environment.
    let model = copy_model("colour", "bundled");
    std::fs::copy(paths::libdlr_path(), model.path().join("libdlr.so")).unwrap();
    let lib = DlrLibrary::discover(&LibrarySearch {
        explicit: None,
        model_dir: Some(model.path().to_path_buf()),
    })
    .unwrap();
    assert_eq!(lib.source(), LibrarySource::ModelDirectory);

    // With nothing anywhere, the error lists the places tried.
    set("DLR_LIBRARY_PATH", None);
    set("VIRTUAL_ENV", None);
    if let Err(err) = DlrLibrary::discover(&LibrarySearch::default()) {
        let text = err.to_string();
        assert!(text.contains("/usr/local/dlr/libdlr.so"), "{text}");
        assert!(text.contains("libdlr.so"), "{text}");
    } // (a machine with libdlr installed system-wide finds it, which is also right)
}
