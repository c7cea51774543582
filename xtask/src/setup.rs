//! `cargo xtask setup`: fetches and generates everything under `generated/`.

use std::path::Path;
use std::process::Command;

use dlr_test_models::paths;

use crate::{Result, sh};

/// The only libdlr wheel that carries the library (1.7+ are pure Python), pinned by hash.
const DLR_WHEEL: &str = "dlr-1.6.0-py2.py3-none-manylinux1_x86_64.whl";
const DLR_WHEEL_SHA256: &str = "cb9672db941537567005d6c5ea98a03ede8ca4c8f8c51db4fcfa49d83d3c75cf";
const DLR_LIBRARY_IN_WHEEL: &str = "dlr-1.6.0.data/data/dlr/libdlr.so";
/// The official Greengrass IPC client the end-to-end tests drive.
const AWSIOTSDK: &str = "awsiotsdk==1.31.0";

fn run_setup(heavy_passes: u32) -> Result {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    install_nasm();
    fetch_libdlr(&python)?;
    make_venv(&python)?;
    crate::setup_browser::install()?;
    crate::setup_robustness::install()?;
    crate::setup_oip::install(&python)?;
    crate::setup_cdk::install()?;
    let dirs = dlr_test_models::generate_all(&paths::models_dir(), heavy_passes)?;
    eprintln!(
        "generated {} models in {}",
        dirs.len(),
        paths::models_dir().display()
    );
    crate::samples::write_all(&paths::samples_dir())?;
    crate::setup_model::run(&python)?;
    crate::setup_onnx::run(&python)?;
    Ok(())
}

/// `cargo xtask setup [--heavy-passes N]`.
pub fn run(args: &[String]) -> Result {
    let mut heavy_passes = dlr_test_models::ColourModel::DEFAULT_HEAVY_PASSES;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--heavy-passes" => {
                heavy_passes = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--heavy-passes needs a whole number")?;
            }
            // The aarch64 ONNX Runtime, for running the aarch64 build under qemu-user.
            "--onnxruntime-aarch64" => {
                let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
                crate::setup_onnx::fetch_onnxruntime(&python, "aarch64")?;
            }
            other => return Err(format!("setup: unknown argument {other}").into()),
        }
    }
    run_setup(heavy_passes)
}

fn fetch_libdlr(python: &str) -> Result {
    let target = paths::libdlr_dir().join("libdlr.so");
    if target.is_file() {
        return Ok(());
    }
    if std::env::consts::ARCH != "x86_64" {
        return Err(format!(
            "the dlr 1.6.0 wheel only carries an x86_64 libdlr.so; on {} put a libdlr.so built \
             for this machine at {}",
            std::env::consts::ARCH,
            target.display()
        )
        .into());
    }
    let wheels = paths::generated_dir().join("wheels");
    let wheel = wheels.join(DLR_WHEEL);
    if !wheel.is_file() {
        sh(Command::new(python)
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary",
                ":all:",
            ])
            .args(["--platform", "manylinux1_x86_64", "--python-version", "3"])
            .arg("--dest")
            .arg(&wheels)
            .arg("dlr==1.6.0"))?;
    }
    // Python is already required (pip), and its zipfile/hashlib avoid two Rust dependencies.
    let script = r#"
import hashlib, sys, zipfile
wheel, expected, member, target = sys.argv[1:]
digest = hashlib.sha256(open(wheel, "rb").read()).hexdigest()
if digest != expected:
    sys.exit(f"{wheel}: sha256 {digest}, expected {expected}")
with zipfile.ZipFile(wheel) as z, open(target + ".partial", "wb") as out:
    out.write(z.read(member))
"#;
    std::fs::create_dir_all(paths::libdlr_dir())?;
    sh(Command::new(python)
        .args(["-c", script])
        .arg(&wheel)
        .args([DLR_WHEEL_SHA256, DLR_LIBRARY_IN_WHEEL])
        .arg(&target))?;
    std::fs::rename(partial(&target), &target)?;
    eprintln!("libdlr 1.6.0: {}", target.display());
    Ok(())
}

pub(crate) fn partial(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    name.into()
}

fn make_venv(python: &str) -> Result {
    let venv = paths::venv_dir();
    let venv_python = venv.join("bin/python");
    let ready = venv_python.is_file()
        && Command::new(&venv_python)
            .args(["-c", "import awsiot.greengrasscoreipc.clientv2"])
            .status()
            .is_ok_and(|s| s.success());
    if ready {
        return Ok(());
    }
    sh(Command::new(python).args(["-m", "venv"]).arg(&venv))?;
    sh(Command::new(&venv_python).args(["-m", "pip", "install", "--quiet", AWSIOTSDK]))?;
    Ok(())
}

/// Rust target, Debian cross compiler and the packages that bring it (the compiler, and the
/// target's C library, only a recommendation of the compiler package) for each cross-compiled
/// release build (`cargo xtask dist`).
const CROSS_TOOLCHAINS: &[(&str, &str, &[&str])] = &[
    (
        "aarch64-unknown-linux-gnu",
        "aarch64-linux-gnu-gcc",
        &["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"],
    ),
    (
        "armv7-unknown-linux-gnueabihf",
        "arm-linux-gnueabihf-gcc",
        &["gcc-arm-linux-gnueabihf", "libc6-dev-armhf-cross"],
    ),
];

/// Installs what cross-compiling to aarch64 and armv7 needs, when missing: the rustup targets and
/// Debian's cross compilers (linker, and C compiler for build scripts). Idempotent; apt-get
/// needs root (as in CI), otherwise the error says what to install.
pub fn install_cross_toolchain() -> Result {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup is needed to add the cross targets: {e}"))?;
    let installed = String::from_utf8_lossy(&installed.stdout).into_owned();
    let mut packages = Vec::new();
    let mut missing = Vec::new();
    for (target, gcc, debian) in CROSS_TOOLCHAINS {
        if !installed.lines().any(|l| l.trim() == *target) {
            sh(Command::new("rustup").args(["target", "add", target]))?;
        }
        let have_gcc = Command::new(gcc)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !have_gcc {
            packages.extend_from_slice(debian);
            missing.push(*gcc);
        }
    }
    apt_install(&missing.join(" and "), &packages)
}

/// Debian's `nasm` on x86_64: libjpeg-turbo's x86_64 SIMD code is nasm assembly, which
/// `mozjpeg-sys` builds only when `nasm` runs. Without it (not root, or no apt) the service
/// still builds, without SIMD, and says so at start; so this only warns.
pub fn install_nasm() {
    if std::env::consts::ARCH != "x86_64" {
        return;
    }
    let have = Command::new("nasm")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have && let Err(e) = apt_install("nasm", &["nasm"]) {
        eprintln!("warning: {e}; JPEG decoding is built without libjpeg-turbo's x86_64 SIMD");
    }
}

/// Debian's `qemu-user` (`qemu-arm`): the armv7 artifacts' smoke test runs them under it.
pub fn install_qemu_user() -> Result {
    let have = Command::new("qemu-arm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if have {
        return Ok(());
    }
    apt_install("qemu-arm", &["qemu-user"])
}

/// `apt-get install` of `packages` (nothing when empty), which bring what is `missing`; as
/// root, else an error saying what is missing and what to install.
pub(crate) fn apt_install(missing: &str, packages: &[&str]) -> Result {
    if packages.is_empty() {
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !is_root {
        return Err(format!(
            "{missing} not found: install Debian's {0} (sudo apt-get install {0})",
            packages.join(" ")
        )
        .into());
    }
    sh(Command::new("apt-get").args(["update", "-qq"]))?;
    sh(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    Ok(())
}
