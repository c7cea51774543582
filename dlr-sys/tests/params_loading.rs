//! The two ways libdlr can get a model's parameters (`ParamsLoading`) give the same model: the
//! real EfficientNet-Lite0 and a generated model, loaded both ways through the real libdlr,
//! answer bit for bit alike, and a corrupt params file is a DLR error either way.

mod common;

use common::*;
use dlr_sys::{Error, Input, Model, ModelOptions, ParamsLoading, TensorData};
use dlr_test_models::paths;

fn load(dir: &std::path::Path, loading: ParamsLoading) -> Model {
    let options = ModelOptions {
        threads: Some(1),
        ..Default::default()
    };
    Model::load_with_params(library(), dir, &options, loading).expect("model loads")
}

/// Runs `model` on a fixed, varied image (every pixel different) and returns its first output.
fn answer(model: &mut Model) -> Vec<f32> {
    let info = model.metadata().inputs[0].clone();
    let name = info.name.clone().unwrap();
    let pixels: Vec<f32> = (0..info.element_count())
        .map(|i| ((i * 7919) % 256) as f32)
        .collect();
    let outputs = model
        .run(&[Input {
            name: &name,
            shape: &info.shape,
            data: TensorData::F32(&pixels),
        }])
        .unwrap();
    outputs[0].data.as_f32().unwrap().to_vec()
}

#[test]
fn the_real_model_answers_identically_mapped_and_read_by_libdlr() {
    let dir = paths::model_dir("efficientnet-lite0");
    let mut read = load(&dir, ParamsLoading::ReadByDlr);
    let mut mapped = load(&dir, ParamsLoading::Mapped);
    assert_eq!(read.metadata().inputs, mapped.metadata().inputs);
    assert_eq!(read.metadata().outputs, mapped.metadata().outputs);
    assert_eq!(read.metadata().num_weights, mapped.metadata().num_weights);
    let expected = answer(&mut read);
    assert_eq!(expected.len(), 1000);
    // The mapping is gone once the handle exists: the parameters must be libdlr's own copy.
    assert_eq!(answer(&mut mapped), expected);
    // Not a degenerate answer that any parameters would give.
    assert!(expected.iter().any(|&v| v != expected[0]));
}

#[test]
fn a_generated_model_answers_identically_both_ways() {
    let dir = paths::model_dir("colour");
    let expected = answer(&mut load(&dir, ParamsLoading::ReadByDlr));
    assert_eq!(answer(&mut load(&dir, ParamsLoading::Mapped)), expected);
}

#[test]
fn a_corrupt_params_file_is_a_dlr_error_either_way() {
    let dir = copy_model("colour", "badparams-both");
    std::fs::write(dir.path().join("compiled.params"), b"not params").unwrap();
    for (loading, expected_call) in [
        (ParamsLoading::Mapped, "CreateDLRModelFromModelElem"),
        (ParamsLoading::ReadByDlr, "CreateDLRModel"),
    ] {
        let err = Model::load_with_params(library(), dir.path(), &Default::default(), loading)
            .unwrap_err();
        let Error::Dlr { call, message } = &err else {
            panic!("expected a DLR error, got {err}");
        };
        assert_eq!(*call, expected_call);
        assert!(
            !message.is_empty() && !message.contains('\n'),
            "{message:?}"
        );
    }
}
