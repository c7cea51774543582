//! The backend against the real ONNX Runtime 1.22.1 from the `onnxruntime` wheel and the ONNX
//! colour models, both made by `cargo xtask setup`. The colour models hold the DLR colour
//! models' parameters, so `dlr_test_models::expected_logits` predicts every answer.

use std::path::PathBuf;

use dlr_test_models::{CLASSES, expected_logits, paths};
use onnx_backend::{
    DType, Error, Layout, LibrarySearch, LibrarySource, Model, ModelOptions, OnnxRuntime,
    OutputData, TensorData,
};

/// `generated/onnxruntime/`, or its `<arch>/` subfolder when this test runs as another
/// architecture's build (the aarch64 build under qemu-user, see onnx-backend/README.md).
fn library_dir() -> PathBuf {
    let host = paths::generated_dir().join("onnxruntime");
    let other = host.join(std::env::consts::ARCH);
    let dir = if other.is_dir() { other } else { host };
    assert!(
        dir.is_dir(),
        "{} missing: run `{}` first",
        dir.display(),
        paths::SETUP_COMMAND
    );
    dir
}

fn load(name: &str, threads: Option<usize>) -> Model {
    let options = ModelOptions {
        threads,
        library_path: Some(library_dir()),
        ..Default::default()
    };
    Model::load(&paths::model_dir(name), &options).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn class(label: &str) -> [u8; 3] {
    CLASSES.iter().find(|(l, _)| *l == label).unwrap().1
}

fn logits(model: &mut Model, pixels: TensorData<'_>) -> Vec<f32> {
    let outputs = model.run(pixels).unwrap();
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].name, "logits");
    assert_eq!(outputs[0].shape, vec![1, CLASSES.len() as i64]);
    match &outputs[0].data {
        OutputData::F32(v) => v.clone(),
        other => panic!("float32 logits expected, got {other:?}"),
    }
}

fn assert_close(got: &[f32], rgb: [u8; 3]) {
    let want = expected_logits(rgb.map(f64::from));
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (f64::from(*g) - w).abs() < 1e-3,
            "class {k} for {rgb:?}: got {g}, expected {w}"
        );
    }
}

#[test]
fn the_nhwc_model_reports_its_contract_and_scores_like_the_dlr_model() {
    let mut model = load("colour-onnx", Some(2));
    let meta = model.metadata().clone();
    assert_eq!(meta.ort_version, onnx_backend::WHEEL_VERSION);
    assert!(meta.library_path.starts_with(library_dir()));
    assert_eq!(meta.library_source, LibrarySource::Explicit);
    assert_eq!(model.threads(), 2);
    let input = &meta.image_input;
    assert_eq!(input.name, "data");
    assert_eq!(input.shape, [1, 224, 224, 3]);
    assert_eq!(
        (input.layout, input.dtype, input.height, input.width),
        (Layout::Nhwc, DType::F32, 224, 224)
    );
    assert_eq!(meta.outputs[0].dtype, "float32");
    assert_eq!(meta.outputs[0].shape, vec![1, 10]);
    assert_eq!(meta.graph_name.as_deref(), Some("colour-onnx"));

    for label in ["red", "jack-o'-lantern", "grey"] {
        let rgb = class(label);
        let pixels: Vec<f32> = (0..224 * 224).flat_map(|_| rgb.map(f32::from)).collect();
        let got = logits(&mut model, TensorData::F32(&pixels));
        assert_close(&got, rgb);
        let best = (0..got.len()).max_by(|&a, &b| got[a].total_cmp(&got[b]));
        assert_eq!(best.map(|i| CLASSES[i].0), Some(label));
    }
}

#[test]
fn the_nchw_model_with_a_dynamic_batch_is_fed_planes() {
    let mut model = load("colour-onnx-nchw", None);
    assert_eq!(model.threads(), onnx_backend::available_cpus());
    let meta = model.metadata();
    assert_eq!(meta.inputs[0].shape, vec![-1, 3, 120, 160]);
    assert_eq!(meta.inputs[0].dimension_names[0], "N");
    let input = &meta.image_input;
    assert_eq!(input.shape, [1, 3, 120, 160]);
    assert_eq!(
        (input.layout, input.height, input.width),
        (Layout::Nchw, 120, 160)
    );
    // Channel planes one after another: in NHWC order these values would average to a grey.
    let rgb = class("blue");
    let plane = 120 * 160;
    let pixels: Vec<f32> = (0..3 * plane).map(|i| f32::from(rgb[i / plane])).collect();
    assert_close(&logits(&mut model, TensorData::F32(&pixels)), rgb);
}

#[test]
fn a_session_whose_threads_do_not_spin_answers_the_same() {
    let options = ModelOptions {
        threads: Some(2),
        library_path: Some(library_dir()),
        spinning: false,
    };
    let mut model = Model::load(&paths::model_dir("colour-onnx"), &options).unwrap();
    assert_eq!(model.threads(), 2);
    let rgb = class("green");
    let pixels: Vec<f32> = (0..224 * 224).flat_map(|_| rgb.map(f32::from)).collect();
    assert_close(&logits(&mut model, TensorData::F32(&pixels)), rgb);
}

#[test]
fn the_uint8_model_takes_bytes() {
    let mut model = load("colour-onnx-u8", Some(1));
    assert_eq!(model.metadata().image_input.dtype, DType::U8);
    let rgb = [200, 40, 90];
    let pixels: Vec<u8> = (0..64 * 64).flat_map(|_| rgb).collect();
    assert_close(&logits(&mut model, TensorData::U8(&pixels)), rgb);
}

#[test]
fn input_that_does_not_fit_is_refused_before_onnx_runtime_sees_it() {
    let mut model = load("colour-onnx-u8", Some(1));
    let err = model.run(TensorData::F32(&[0.0; 64 * 64 * 3])).unwrap_err();
    assert!(matches!(err, Error::InputMismatch { .. }), "{err}");
    assert!(err.to_string().contains("U8"), "{err}");
    let err = model.run(TensorData::U8(&[0; 10])).unwrap_err();
    assert!(err.to_string().contains("takes 12288 elements"), "{err}");
    // The session is still usable.
    let pixels = vec![0u8; 64 * 64 * 3];
    assert_close(&logits(&mut model, TensorData::U8(&pixels)), [0, 0, 0]);
}

#[test]
fn the_runtime_is_loaded_once_and_another_copy_is_refused() {
    let first = OnnxRuntime::discover(&LibrarySearch {
        explicit: Some(library_dir()),
        model_dir: None,
    })
    .unwrap();
    let again = OnnxRuntime::open(first.path()).unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &again));
    assert_eq!(first.version(), onnx_backend::WHEEL_VERSION);

    let elsewhere = std::env::temp_dir().join(format!("onnx-second-copy-{}", std::process::id()));
    std::fs::create_dir_all(&elsewhere).unwrap();
    let copy = elsewhere.join(format!("libonnxruntime.so.{}", onnx_backend::WHEEL_VERSION));
    std::fs::copy(first.path(), &copy).unwrap();
    let err = OnnxRuntime::open(&copy).unwrap_err();
    std::fs::remove_dir_all(&elsewhere).unwrap();
    assert!(matches!(err, Error::AlreadyLoaded { .. }), "{err}");
}

#[test]
fn a_file_that_is_not_a_model_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("onnx-not-a-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.onnx"), b"not protobuf").unwrap();
    let options = ModelOptions {
        threads: Some(1),
        library_path: Some(library_dir()),
        ..Default::default()
    };
    let err = Model::load(&dir, &options).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(err, Error::Ort { .. }), "{err}");
    assert!(err.to_string().contains("loading the model"), "{err}");
}
