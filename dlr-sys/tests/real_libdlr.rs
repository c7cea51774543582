//! The binding against the real libdlr 1.6.0 and the generated models: exact outputs,
//! metadata, the thread setting, and every error path a user can hit.

mod common;

use common::*;
use dlr_sys::{
    DlrLibrary, Error, Input, LibrarySearch, LibrarySource, Model, ModelOptions, TensorData,
};
use dlr_test_models::{ColourModel, paths};

#[test]
fn library_reports_its_file_and_version() {
    let lib = library();
    assert_eq!(lib.version(), "1.6.0");
    assert_eq!(lib.path(), paths::libdlr_path());
    assert_eq!(lib.source(), LibrarySource::Explicit);
    // GetDLRDeviceType reads compiled.meta's device fields, which these models (like the
    // ModelStore's) lack; whatever it says, it must be a Result, not a crash.
    let _ = lib.device_type(&paths::model_dir("colour"));
    assert!(lib.device_type("/nonexistent/model".as_ref()).is_err());
}

#[test]
fn red_image_is_red_with_exact_logits() {
    let spec = ColourModel::COLOUR;
    let mut model = load(spec.name);
    let data = uniform_f32(&spec, [255, 0, 0]);
    let outputs = model
        .run(&[Input::f32("data", &spec.input_shape(), &data)])
        .unwrap();
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].shape, vec![1, 10]);
    let logits = outputs[0].data.as_f32().unwrap();
    assert_eq!(label_of(logits), "red");
    assert_logits_close(logits, [255, 0, 0]);
}

#[test]
fn every_class_colour_is_recognised_and_runs_are_repeatable() {
    let spec = ColourModel::COLOUR;
    let mut model = load(spec.name);
    for (label, rgb) in dlr_test_models::CLASSES {
        let data = uniform_f32(&spec, rgb);
        for _ in 0..2 {
            let out = model
                .run(&[Input::f32("data", &spec.input_shape(), &data)])
                .unwrap();
            let logits = out[0].data.as_f32().unwrap();
            assert_eq!(label_of(logits), label);
            assert_logits_close(logits, rgb);
        }
    }
}

#[test]
fn nchw_variant_answers_exactly_too() {
    let spec = ColourModel::COLOUR_NCHW;
    let mut model = load(spec.name);
    assert_eq!(model.metadata().inputs[0].shape, vec![1, 3, 120, 160]);
    for rgb in [[255, 0, 0], [0, 0, 255], [255, 128, 0]] {
        let data = uniform_f32(&spec, rgb);
        let out = model
            .run(&[Input::f32("data", &spec.input_shape(), &data)])
            .unwrap();
        assert_logits_close(out[0].data.as_f32().unwrap(), rgb);
    }
}

#[test]
fn feeding_nhwc_pixels_to_the_nchw_model_is_not_red() {
    // Pins why preprocessing must follow the model's layout: interleaved RGB read as planes
    // averages the channels together.
    let spec = ColourModel::COLOUR_NCHW;
    let mut model = load(spec.name);
    let nhwc = uniform_f32(
        &ColourModel {
            layout: dlr_test_models::Layout::Nhwc,
            ..spec.clone()
        },
        [255, 0, 0],
    );
    let out = model
        .run(&[Input::f32("data", &spec.input_shape(), &nhwc)])
        .unwrap();
    assert_ne!(label_of(out[0].data.as_f32().unwrap()), "red");
}

#[test]
fn uint8_model_takes_uint8_input() {
    let spec = ColourModel::COLOUR_U8;
    let mut model = load(spec.name);
    assert_eq!(model.metadata().inputs[0].dtype, "uint8");
    let data: Vec<u8> = uniform_f32(&spec, [0, 255, 0])
        .into_iter()
        .map(|v| v as u8)
        .collect();
    let out = model
        .run(&[Input::u8("data", &spec.input_shape(), &data)])
        .unwrap();
    assert_logits_close(out[0].data.as_f32().unwrap(), [0, 255, 0]);
}

#[test]
fn metadata_matches_the_model_store_contract() {
    let model = load("colour");
    let meta = model.metadata();
    assert_eq!(meta.inputs.len(), 1);
    assert_eq!(meta.inputs[0].name.as_deref(), Some("data"));
    assert_eq!(meta.inputs[0].shape, vec![1, 224, 224, 3]);
    assert_eq!(meta.inputs[0].dtype, "float32");
    assert_eq!(meta.outputs.len(), 1);
    assert_eq!(meta.outputs[0].shape, vec![1, 10]);
    assert_eq!(meta.outputs[0].dtype, "float32");
    assert_eq!(meta.backend, "tvm");
    assert_eq!(meta.dlr_version, "1.6.0");
    assert_eq!(meta.num_weights, 4);
    assert_eq!(meta.library_path, paths::libdlr_path());
    let compiled = meta.compiled_meta.as_ref().expect("compiled.meta parsed");
    let declared = &compiled.model.as_ref().unwrap().inputs[0];
    assert_eq!(declared.shape.as_deref(), Some(&[1, 224, 224, 3][..]));
}

#[test]
fn threads_default_to_available_cpus_and_can_be_set() {
    let model = load("colour");
    assert_eq!(model.threads(), dlr_sys::available_cpus());
    let one = Model::load_with(
        library(),
        &paths::model_dir("colour"),
        &ModelOptions {
            threads: Some(1),
            cpu_affinity: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(one.threads(), 1);
    let err = Model::load_with(
        library(),
        &paths::model_dir("colour"),
        &ModelOptions {
            threads: Some(0),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidOption(_)), "{err}");
}

#[test]
fn load_finds_the_library_by_explicit_option_and_inside_the_model_directory() {
    let explicit = Model::load(
        &paths::model_dir("colour"),
        &ModelOptions {
            library_path: Some(paths::libdlr_dir()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(explicit.library().source(), LibrarySource::Explicit);

    let dir = copy_model("colour", "ownlib");
    std::fs::copy(paths::libdlr_path(), dir.path().join("libdlr.so")).unwrap();
    let mut bundled = Model::load(dir.path(), &ModelOptions::default()).unwrap();
    assert_eq!(bundled.library().source(), LibrarySource::ModelDirectory);
    assert_eq!(bundled.library().path(), dir.path().join("libdlr.so"));
    let data = uniform_f32(&ColourModel::COLOUR, [255, 0, 0]);
    let out = bundled
        .run(&[Input::f32("data", &[1, 224, 224, 3], &data)])
        .unwrap();
    assert_eq!(label_of(out[0].data.as_f32().unwrap()), "red");
}

#[test]
fn library_not_found_says_where_it_looked() {
    let search = LibrarySearch {
        explicit: Some("/nonexistent/libdlr.so".into()),
        model_dir: None,
    };
    let err = DlrLibrary::discover(&search).unwrap_err();
    assert!(matches!(err, Error::LibraryNotFound { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/libdlr.so"), "{err}");
}

#[test]
fn missing_model_directory_is_an_error() {
    let err = Model::load_with(
        library(),
        "/nonexistent/model".as_ref(),
        &Default::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::ModelDirMissing(_)), "{err}");
}

#[test]
fn incomplete_model_directory_names_the_missing_file() {
    let dir = copy_model("colour", "noparams");
    std::fs::remove_file(dir.path().join("compiled.params")).unwrap();
    let err = Model::load_with(library(), dir.path(), &Default::default()).unwrap_err();
    assert!(matches!(err, Error::ModelDirIncomplete { .. }), "{err}");
    assert!(err.to_string().contains("*.params"), "{err}");
}

#[test]
fn corrupt_files_are_dlr_errors_with_a_one_line_message() {
    let dir = copy_model("colour", "badparams");
    std::fs::write(dir.path().join("compiled.params"), b"not params").unwrap();
    let err = Model::load_with(library(), dir.path(), &Default::default()).unwrap_err();
    let Error::Dlr { call, message } = &err else {
        panic!("expected a DLR error, got {err}");
    };
    assert_eq!(*call, "CreateDLRModelFromModelElem");
    assert!(
        !message.is_empty() && !message.contains('\n'),
        "{message:?}"
    );

    let dir = copy_model("colour", "badgraph");
    std::fs::write(dir.path().join("compiled_model.json"), b"{\"nodes\": [").unwrap();
    let err = Model::load_with(library(), dir.path(), &Default::default()).unwrap_err();
    assert!(matches!(err, Error::Dlr { .. }), "{err}");

    let dir = copy_model("colour", "badmeta");
    std::fs::write(dir.path().join("compiled.meta"), b"{oops").unwrap();
    let err = Model::load_with(library(), dir.path(), &Default::default()).unwrap_err();
    assert!(matches!(err, Error::ModelFileInvalid { .. }), "{err}");

    // The process is fine and a good model still loads and runs afterwards.
    red_image_is_red_with_exact_logits();
}

#[test]
fn input_mistakes_are_errors_before_any_ffi_call() {
    let mut model = load("colour");
    let shape = [1, 224, 224, 3];
    let data = vec![0f32; 224 * 224 * 3];

    let err = model
        .run(&[Input::f32("image", &shape, &data)])
        .unwrap_err();
    assert!(matches!(err, Error::UnknownInput { .. }), "{err}");
    assert!(err.to_string().contains("\"image\"") && err.to_string().contains("data"));

    let err = model
        .run(&[Input::f32("data", &[1, 3, 224, 224], &data)])
        .unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");

    let bytes = vec![0u8; 224 * 224 * 3];
    let err = model.run(&[Input::u8("data", &shape, &bytes)]).unwrap_err();
    assert!(matches!(err, Error::DTypeMismatch { .. }), "{err}");
    assert!(err.to_string().contains("float32"), "{err}");

    let err = model
        .run(&[Input::f32("data", &shape, &data[..100])])
        .unwrap_err();
    assert!(matches!(err, Error::DataLength { .. }), "{err}");

    let err = model.run(&[]).unwrap_err();
    assert!(matches!(err, Error::MissingInput(_)), "{err}");

    let input = Input::f32("data", &shape, &data);
    let err = model.run(&[input, input]).unwrap_err();
    assert!(matches!(err, Error::DuplicateInput(_)), "{err}");

    let err = model
        .run(&[Input {
            name: "data",
            shape: &shape,
            data: TensorData::I64(&[0; 4]),
        }])
        .unwrap_err();
    assert!(matches!(err, Error::DTypeMismatch { .. }), "{err}");

    // After all those refusals the handle still works.
    let red = uniform_f32(&ColourModel::COLOUR, [255, 0, 0]);
    let out = model.run(&[Input::f32("data", &shape, &red)]).unwrap();
    assert_eq!(label_of(out[0].data.as_f32().unwrap()), "red");
}
