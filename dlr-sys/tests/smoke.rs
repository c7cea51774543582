use dlr_sys::*;
use dlr_test_models::paths;
#[test]
fn smoke() {
    let lib = DlrLibrary::open(&paths::libdlr_path()).unwrap();
    println!("{lib:?}");
    let mut m =
        Model::load_with(lib, &paths::model_dir("colour"), &ModelOptions::default()).unwrap();
    println!("{:#?}", m.metadata());
    let mut data = vec![0f32; 224 * 224 * 3];
    for p in data.chunks_mut(3) {
        p[0] = 255.0;
    }
    let out = m
        .run(&[Input::f32("data", &[1, 224, 224, 3], &data)])
        .unwrap();
    println!("{:?}", out);
    println!("{:?}", dlr_test_models::expected_logits([255.0, 0.0, 0.0]));
}
