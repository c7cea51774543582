//! Writes complete model directories.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::graph::{Node, graph_json};
use crate::params::{Param, ParamData, params_bytes};
use crate::spec::{
    CLASSES, ColourModel, INPUT_NAME, Layout, MEAN, STD, dense_weights, synset_text,
};

/// The C source of every kernel the generated models call (`kernels/colour.c`), as one
/// self-contained file: the packed-function ABI header it shares with the real model's kernels
/// (`kernels/packed_func.h`) comes first, so it compiles wherever it is written.
pub const KERNEL_SOURCE: &str = concat!(
    include_str!("../kernels/packed_func.h"),
    include_str!("../kernels/colour.c")
);

/// The gate kernel of the `gated` model (`kernels/gate.c`), compiled into the same library.
pub const GATE_KERNEL_SOURCE: &str = include_str!("../kernels/gate.c");

/// File name of the compiled kernel library inside a model directory.
pub const KERNEL_FILE_NAME: &str = "compiled.so";

/// Why generation failed.
#[derive(Debug)]
pub enum GenerateError {
    /// Writing or renaming a file failed.
    Io(PathBuf, std::io::Error),
    /// The C compiler could not be run or failed.
    Compiler(String),
}

impl std::fmt::Display for GenerateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(path, e) => write!(f, "{}: {e}", path.display()),
            Self::Compiler(msg) => write!(f, "compiling the test-model kernels: {msg}"),
        }
    }
}

impl std::error::Error for GenerateError {}

fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T, GenerateError> {
    r.map_err(|e| GenerateError::Io(path.to_path_buf(), e))
}

/// Generates every model of [`crate::all_models`] under `models_dir`, compiling the kernels
/// once. Returns the model directories.
pub fn generate_all(models_dir: &Path, heavy_passes: u32) -> Result<Vec<PathBuf>, GenerateError> {
    io(models_dir, std::fs::create_dir_all(models_dir))?;
    let kernels = compile_kernels(models_dir)?;
    let dirs = crate::all_models(heavy_passes)
        .iter()
        .map(|spec| generate(spec, models_dir, &kernels))
        .collect();
    io(&kernels, std::fs::remove_file(&kernels))?;
    dirs
}

/// Compiles [`KERNEL_SOURCE`] into a shared library inside `work_dir`, with `$CC` (default
/// `cc`).
fn compile_kernels(work_dir: &Path) -> Result<PathBuf, GenerateError> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    compile_kernels_with(Command::new(&cc), work_dir)
}

/// Compiles [`KERNEL_SOURCE`] into `work_dir/colour-kernels.so` with the given compiler
/// command (for a build script: the target's compiler from the `cc` crate).
pub fn compile_kernels_with(
    mut compiler: Command,
    work_dir: &Path,
) -> Result<PathBuf, GenerateError> {
    let source = work_dir.join("colour-kernels.c");
    let gate_source = work_dir.join("gate-kernel.c");
    let library = work_dir.join("colour-kernels.so");
    io(&source, std::fs::write(&source, KERNEL_SOURCE))?;
    io(
        &gate_source,
        std::fs::write(&gate_source, GATE_KERNEL_SOURCE),
    )?;
    let cc = format!("{:?}", compiler.get_program());
    let output = compiler
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o"])
        .arg(&library)
        .arg(&source)
        .arg(&gate_source)
        .output()
        .map_err(|e| GenerateError::Compiler(format!("cannot run {cc}: {e}")))?;
    io(&source, std::fs::remove_file(&source))?;
    io(&gate_source, std::fs::remove_file(&gate_source))?;
    if !output.status.success() {
        return Err(GenerateError::Compiler(
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ));
    }
    Ok(library)
}

/// Writes one model directory `models_dir/<spec.name>` with the ModelStore's file names,
/// replacing any previous one. The directory appears whole or not at all.
pub fn generate(
    spec: &ColourModel,
    models_dir: &Path,
    kernels: &Path,
) -> Result<PathBuf, GenerateError> {
    let final_dir = models_dir.join(spec.name);
    let staging = models_dir.join(format!(".{}.partial", spec.name));
    if staging.exists() {
        io(&staging, std::fs::remove_dir_all(&staging))?;
    }
    io(&staging, std::fs::create_dir_all(&staging))?;

    for (name, bytes) in model_files(spec) {
        let path = staging.join(name);
        io(&path, std::fs::write(&path, bytes))?;
    }
    let so = staging.join(KERNEL_FILE_NAME);
    io(&so, std::fs::copy(kernels, &so))?;

    if final_dir.exists() {
        io(&final_dir, std::fs::remove_dir_all(&final_dir))?;
    }
    io(&final_dir, std::fs::rename(&staging, &final_dir))?;
    Ok(final_dir)
}

/// Every file of the model directory except the kernel library ([`KERNEL_FILE_NAME`], built
/// from [`KERNEL_SOURCE`]): graph, params, `compiled.meta` and `synset.txt`, with the
/// ModelStore's file names. Lets a build script embed a model without writing a directory.
pub fn model_files(spec: &ColourModel) -> Vec<(&'static str, Vec<u8>)> {
    let (nodes, params) = graph_of(spec);
    let graph = serde_json::to_string_pretty(&graph_json(&nodes)).expect("graph serialises");
    vec![
        ("compiled_model.json", graph.into_bytes()),
        ("compiled.params", params_bytes(&params)),
        ("compiled.meta", compiled_meta(spec).into_bytes()),
        ("synset.txt", synset_text().into_bytes()),
    ]
}

fn graph_of(spec: &ColourModel) -> (Vec<Node>, Vec<Param>) {
    let nchw = vec![1, 3, spec.height, spec.width];
    let classes = CLASSES.len() as i64;
    let (weight, bias) = dense_weights();
    let mut params = vec![
        Param {
            name: "normalize_mean",
            shape: vec![3],
            data: ParamData::F32(MEAN.to_vec()),
        },
        Param {
            name: "normalize_std",
            shape: vec![3],
            data: ParamData::F32(STD.to_vec()),
        },
        Param {
            name: "dense_weight",
            shape: vec![classes, 3],
            data: ParamData::F32(weight),
        },
        Param {
            name: "dense_bias",
            shape: vec![classes],
            data: ParamData::F32(bias),
        },
    ];
    let normalize = match (spec.layout, spec.dtype) {
        (Layout::Nhwc, crate::DType::F32) => "colour_normalize_nhwc_f32",
        (Layout::Nhwc, crate::DType::U8) => "colour_normalize_nhwc_u8",
        (Layout::Nchw, crate::DType::F32) => "colour_normalize_nchw_f32",
        (layout, dtype) => unimplemented!("no {layout:?} {dtype} kernel"),
    };
    let null = |name: &str, shape: Vec<i64>, dtype| Node {
        name: name.to_string(),
        func: None,
        inputs: vec![],
        shape,
        dtype,
    };
    let op = |func: &'static str, inputs: Vec<usize>, shape: Vec<i64>| Node {
        name: func.to_string(),
        func: Some(func),
        inputs,
        shape,
        dtype: "float32",
    };
    let mut nodes = vec![
        null(INPUT_NAME, spec.input_shape().to_vec(), spec.dtype.as_str()),
        null("normalize_mean", vec![3], "float32"),
        null("normalize_std", vec![3], "float32"),
        op(normalize, vec![0, 1, 2], nchw.clone()),
    ];
    let mut features = 3;
    if spec.blur_passes > 0 {
        params.push(Param {
            name: "blur_passes",
            shape: vec![1],
            data: ParamData::I32(vec![spec.blur_passes as i32]),
        });
        nodes.push(null("blur_passes", vec![1], "int32"));
        nodes.push(op("colour_box_blur", vec![features, nodes.len() - 1], nchw));
        features = nodes.len() - 1;
    }
    nodes.push(op("colour_mean_pool", vec![features], vec![1, 3]));
    let mut pooled = nodes.len() - 1;
    if spec.gated {
        nodes.push(op("colour_gate", vec![pooled], vec![1, 3]));
        pooled = nodes.len() - 1;
    }
    nodes.push(null("dense_weight", vec![classes, 3], "float32"));
    nodes.push(null("dense_bias", vec![classes], "float32"));
    let (w, b) = (nodes.len() - 2, nodes.len() - 1);
    nodes.push(op("colour_dense", vec![pooled, w, b], vec![1, classes]));
    (nodes, params)
}

fn compiled_meta(spec: &ColourModel) -> String {
    let meta = serde_json::json!({
        "Requirements": {"TargetPlatformOs": "LINUX", "TargetPlatformArch": std::env::consts::ARCH.to_uppercase()},
        "Compilation": {"CreatedTime": 0, "Generator": "dlr-test-models"},
        "Model": {
            "Inputs": [{"name": INPUT_NAME, "shape": spec.input_shape(), "dtype": spec.dtype.as_str()}],
            "Outputs": [{"dtype": "float32", "shape": spec.output_shape()}],
        },
    });
    serde_json::to_string_pretty(&meta).expect("meta serialises")
}
