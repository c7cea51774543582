//! `cargo xtask setup`, ONNX Runtime part: the real `libonnxruntime.so` and ONNX test models.
//!
//! * The library comes from the `onnxruntime` wheel on the Python package index (the only
//!   registry that ships it): downloaded with `pip download` into `generated/wheels/`, checked
//!   against a pinned SHA-256, and `onnxruntime/capi/libonnxruntime.so.<version>` extracted to
//!   `generated/onnxruntime/` (x86_64, every set-up) or `generated/onnxruntime/aarch64/` (on
//!   demand, for running the aarch64 build under qemu). The wheel is CPython-specific only in
//!   its Python extension; the library inside is the plain C API, so one pinned file serves
//!   whatever Python runs the set-up.
//! * The `onnx` Python package (pinned) goes into the project's virtualenv and writes the
//!   colour test models as ONNX (`xtask/python/colour_onnx.py`), with the same parameters as
//!   the DLR colour models, into `generated/models/colour-onnx*`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dlr_test_models::{CLASSES, ColourModel, Layout, paths};
use serde_json::json;

use crate::{Result, sh};

/// The ONNX Runtime release `onnx-backend` is built against (its `ort` speaks the 1.22 C API).
pub const ORT_VERSION: &str = "1.22.1";

/// One pinned `onnxruntime` wheel.
struct Wheel {
    /// `std::env::consts::ARCH` of the library inside.
    arch: &'static str,
    /// pip's `--platform` tag that selects it.
    platform: &'static str,
    file: &'static str,
    sha256: &'static str,
}

const WHEELS: [Wheel; 2] = [
    Wheel {
        arch: "x86_64",
        platform: "manylinux_2_28_x86_64",
        file: "onnxruntime-1.22.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
        sha256: "f6effa1299ac549a05c784d50292e3378dbbf010346ded67400193b09ddc2f04",
    },
    Wheel {
        arch: "aarch64",
        platform: "manylinux_2_28_aarch64",
        file: "onnxruntime-1.22.1-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl",
        sha256: "7ae7526cf10f93454beb0f751e78e5cb7619e3b92f9fc3bd51aa6f3b7a8977e5",
    },
];

/// The library's name inside the wheel and in `generated/onnxruntime/`.
fn library_file_name() -> String {
    format!("libonnxruntime.so.{ORT_VERSION}")
}

/// The `onnx` package that writes the test models (the version `setup_model` pins too).
const ONNX_PACKAGE: &str = "onnx==1.23.2";

/// The ONNX colour models: the DLR colour models' contracts, the NCHW one with a dynamic batch
/// dimension as PyTorch exports have.
const ONNX_MODELS: [(&str, ColourModel, bool); 3] = [
    ("colour-onnx", ColourModel::COLOUR, false),
    ("colour-onnx-nchw", ColourModel::COLOUR_NCHW, true),
    ("colour-onnx-u8", ColourModel::COLOUR_U8, false),
];

/// Where the host's `libonnxruntime.so.<version>` goes.
pub fn onnxruntime_dir() -> PathBuf {
    paths::generated_dir().join("onnxruntime")
}

/// Where the library for `arch` goes: the host's in [`onnxruntime_dir`], others beneath it.
pub fn onnxruntime_dir_for(arch: &str) -> PathBuf {
    if arch == std::env::consts::ARCH {
        onnxruntime_dir()
    } else {
        onnxruntime_dir().join(arch)
    }
}

/// Everything the ONNX backend's tests need; called by `run_setup`.
pub fn run(python: &str) -> Result {
    fetch_onnxruntime(python, std::env::consts::ARCH)?;
    install_onnx_package()?;
    write_colour_models()
}

/// Downloads (once) and extracts the pinned wheel's library for `arch`; returns its path.
pub fn fetch_onnxruntime(python: &str, arch: &str) -> Result<PathBuf> {
    let dir = onnxruntime_dir_for(arch);
    let target = dir.join(library_file_name());
    if target.is_file() {
        return Ok(target);
    }
    let wheel = WHEELS.iter().find(|w| w.arch == arch).ok_or_else(|| {
        format!(
            "no pinned onnxruntime wheel for {arch}; put libonnxruntime.so.{ORT_VERSION} for \
             this machine at {}",
            target.display()
        )
    })?;
    let wheels = paths::generated_dir().join("wheels");
    let file = wheels.join(wheel.file);
    if !file.is_file() {
        sh(Command::new(python)
            .args(["-m", "pip", "download", "--quiet", "--no-deps"])
            .args(["--only-binary", ":all:", "--platform", wheel.platform])
            .args(["--python-version", "3.11", "--implementation", "cp"])
            .arg("--dest")
            .arg(&wheels)
            .arg(format!("onnxruntime=={ORT_VERSION}")))?;
    }
    // As for libdlr: Python's zipfile and hashlib avoid two Rust dependencies.
    let script = r#"
import hashlib, sys, zipfile
wheel, expected, member, target = sys.argv[1:]
digest = hashlib.sha256(open(wheel, "rb").read()).hexdigest()
if digest != expected:
    sys.exit(f"{wheel}: sha256 {digest}, expected {expected}")
with zipfile.ZipFile(wheel) as z, open(target + ".partial", "wb") as out:
    out.write(z.read(member))
"#;
    std::fs::create_dir_all(&dir)?;
    sh(Command::new(python)
        .args(["-c", script])
        .arg(&file)
        .arg(wheel.sha256)
        .arg(format!("onnxruntime/capi/{}", library_file_name()))
        .arg(&target))?;
    std::fs::rename(crate::setup::partial(&target), &target)?;
    eprintln!("onnxruntime {ORT_VERSION} ({arch}): {}", target.display());
    Ok(target)
}

fn install_onnx_package() -> Result {
    let venv_python = paths::venv_dir().join("bin/python");
    let ready = Command::new(&venv_python)
        .args(["-c", "import onnx, numpy"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ready {
        return Ok(());
    }
    sh(Command::new(&venv_python).args(["-m", "pip", "install", "--quiet", ONNX_PACKAGE]))
}

fn write_colour_models() -> Result {
    let out = paths::models_dir();
    let missing = ONNX_MODELS
        .iter()
        .any(|(name, ..)| !out.join(name).join("model.onnx").is_file());
    if !missing {
        return Ok(());
    }
    let script = paths::workspace_root().join("xtask/python/colour_onnx.py");
    let mut child = Command::new(paths::venv_dir().join("bin/python"))
        .arg(&script)
        .stdin(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or("no stdin for colour_onnx.py")?
        .write_all(spec_json(&out).as_bytes())?;
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("{} failed: {status}", script.display()).into());
    }
    eprintln!(
        "generated {} ONNX models in {}",
        ONNX_MODELS.len(),
        out.display()
    );
    Ok(())
}

/// The generator's input: parameters exactly as the DLR colour models hold them.
fn spec_json(out: &Path) -> String {
    // The dense layer of `dlr_test_models` (row k = 2·p_k, bias k = -|p_k|², in f64 then
    // rounded to f32); the backend's tests compare ONNX Runtime's logits with
    // `expected_logits`, which reads the DLR models' copy, so the two cannot drift apart.
    let mut weight = Vec::new();
    let mut bias = Vec::new();
    for (_, rgb) in CLASSES {
        let p = dlr_test_models::normalised_prototype(rgb);
        weight.extend(p.iter().map(|v| (2.0 * v) as f32));
        bias.push(-(p.iter().map(|v| v * v).sum::<f64>()) as f32);
    }
    let models: Vec<_> = ONNX_MODELS
        .iter()
        .map(|(name, model, dynamic_batch)| {
            json!({
                "name": name,
                "layout": match model.layout {
                    Layout::Nhwc => "NHWC",
                    Layout::Nchw => "NCHW",
                },
                "height": model.height,
                "width": model.width,
                "dtype": model.dtype.as_str(),
                "batch": if *dynamic_batch { json!("N") } else { json!(1) },
            })
        })
        .collect();
    json!({
        "out": out,
        "mean": dlr_test_models::MEAN,
        "std": dlr_test_models::STD,
        "weight": weight,
        "bias": bias,
        "synset": dlr_test_models::synset_text(),
        "models": models,
    })
    .to_string()
}
