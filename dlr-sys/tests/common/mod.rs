//! Helpers shared by the tests that run the generated models through the real libdlr.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dlr_sys::{DlrLibrary, Model, ModelOptions};
use dlr_test_models::{CLASSES, ColourModel, Layout, paths};

pub fn library() -> Arc<DlrLibrary> {
    DlrLibrary::open(&paths::libdlr_path()).expect("the real libdlr loads")
}

pub fn load(name: &str) -> Model {
    Model::load_with(library(), &paths::model_dir(name), &ModelOptions::default())
        .expect("generated model loads")
}

/// A uniform image of one RGB colour, laid out as `spec` expects, as f32 0..255.
pub fn uniform_f32(spec: &ColourModel, rgb: [u8; 3]) -> Vec<f32> {
    let pixels = (spec.height * spec.width) as usize;
    match spec.layout {
        Layout::Nhwc => (0..pixels).flat_map(|_| rgb.map(f32::from)).collect(),
        Layout::Nchw => rgb
            .iter()
            .flat_map(|&c| std::iter::repeat_n(f32::from(c), pixels))
            .collect(),
    }
}

pub fn argmax(values: &[f32]) -> usize {
    (0..values.len())
        .max_by(|&a, &b| values[a].total_cmp(&values[b]))
        .unwrap()
}

pub fn label_of(logits: &[f32]) -> &'static str {
    CLASSES[argmax(logits)].0
}

pub fn assert_logits_close(actual: &[f32], rgb: [u8; 3]) {
    let expected = dlr_test_models::expected_logits(rgb.map(f64::from));
    assert_eq!(actual.len(), expected.len());
    for (k, (a, e)) in actual.iter().zip(&expected).enumerate() {
        assert!(
            (f64::from(*a) - e).abs() < 1e-4,
            "logit {k} ({}): got {a}, expected {e}",
            CLASSES[k].0
        );
    }
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("dlr-sys-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies a generated model directory into a scratch directory, to damage it safely.
pub fn copy_model(name: &str, tag: &str) -> TempDir {
    let tmp = TempDir::new(tag);
    for entry in std::fs::read_dir(paths::model_dir(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    tmp
}
