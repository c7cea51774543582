//! Embeds the demo model (`dlr_test_models::ColourModel::COLOUR`) into the binary.
//!
//! The graph, params, `compiled.meta` and `synset.txt` come from `dlr_test_models::model_files`;
//! the kernel library is compiled here for the TARGET with the `cc` crate's compiler, so a
//! cross-compiled service carries kernels its device can load. `src/demo.rs` includes the
//! files from `OUT_DIR/demo-model/` with `include_bytes!`.
//!
//! It also gzips the three Swagger UI files the docs page loads (bundle, stylesheet, icon)
//! from the vendored Swagger UI release into `OUT_DIR/swagger-ui/`: only those, compressed,
//! end up in the binary (`src/http/docs.rs`), instead of every bundle flavour and source map.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    swagger_ui_assets();
    jpeg_simd();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dir = out.join("demo-model");
    std::fs::create_dir_all(&dir).expect("create OUT_DIR/demo-model");

    // `model_files` records the build host's architecture in compiled.meta; the demo runs on
    // the target, so say that (it matters only to readers of /v1/model and the file).
    let host_arch = format!("\"{}\"", std::env::consts::ARCH.to_uppercase());
    let target_arch = std::env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets the target arch");
    let target_arch = format!("\"{}\"", target_arch.to_uppercase());
    for (name, bytes) in dlr_test_models::model_files(&dlr_test_models::ColourModel::COLOUR) {
        let bytes = if name == "compiled.meta" {
            String::from_utf8(bytes)
                .expect("compiled.meta is UTF-8")
                .replace(&host_arch, &target_arch)
                .into_bytes()
        } else {
            bytes
        };
        std::fs::write(dir.join(name), bytes).expect("write demo model file");
    }

    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .get_compiler()
        .to_command();
    let library = dlr_test_models::compile_kernels_with(compiler, &dir)
        .unwrap_or_else(|e| panic!("cannot build the demo model's kernels: {e}"));
    std::fs::rename(&library, dir.join(dlr_test_models::KERNEL_FILE_NAME))
        .expect("move the demo kernels into place");
}

/// Whether `mozjpeg-sys` built libjpeg-turbo with its SIMD code — on x86_64 only when `nasm`
/// ran (Debian's `nasm`, which `cargo xtask setup` installs), on ARM always (NEON) — read from
/// the `jconfig.h` it generated (its include path comes as `DEP_JPEG_INCLUDE`), which defines
/// `WITH_SIMD` then. `CLASSIFY_JPEG_SIMD` ("on" or "off") lets the service say so at start.
fn jpeg_simd() {
    let include = std::env::var_os("DEP_JPEG_INCLUDE").unwrap_or_default();
    let simd = std::env::split_paths(&include).any(|dir| {
        std::fs::read_to_string(dir.join("jconfig.h"))
            .is_ok_and(|text| text.lines().any(|l| l.trim() == "#define WITH_SIMD 1"))
    });
    println!(
        "cargo:rustc-env=CLASSIFY_JPEG_SIMD={}",
        if simd { "on" } else { "off" }
    );
}

/// The files of Swagger UI's `dist/` folder the docs page loads.
const SWAGGER_UI_FILES: [&str; 3] = [
    "swagger-ui-bundle.js",
    "swagger-ui.css",
    "favicon-32x32.png",
];

fn swagger_ui_assets() {
    use std::io::{Read, Write};

    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dir = out.join("swagger-ui");
    std::fs::create_dir_all(&dir).expect("create OUT_DIR/swagger-ui");
    let archive = std::io::Cursor::new(utoipa_swagger_ui_vendored::SWAGGER_UI_VENDORED);
    let mut archive = zip::ZipArchive::new(archive).expect("the vendored Swagger UI is a zip");
    for name in SWAGGER_UI_FILES {
        let entry = archive
            .file_names()
            .find(|path| path.ends_with(&format!("/dist/{name}")))
            .unwrap_or_else(|| panic!("dist/{name} is missing from the vendored Swagger UI"))
            .to_string();
        let mut bytes = Vec::new();
        archive
            .by_name(&entry)
            .and_then(|mut file| Ok(file.read_to_end(&mut bytes)?))
            .unwrap_or_else(|e| panic!("read {entry}: {e}"));
        if name.ends_with(".js") || name.ends_with(".css") {
            // The source maps are not shipped, so the pointer to them would only 404.
            let text = String::from_utf8(bytes).expect("Swagger UI's JS and CSS are UTF-8");
            let kept: Vec<&str> = text
                .lines()
                .filter(|line| !line.contains("sourceMappingURL="))
                .collect();
            bytes = kept.join("\n").into_bytes();
        }
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&bytes).expect("gzip in memory");
        let gz = encoder.finish().expect("gzip in memory");
        std::fs::write(dir.join(format!("{name}.gz")), gz).expect("write a Swagger UI asset");
    }
}
