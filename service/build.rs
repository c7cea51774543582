//! Embeds the demo model (`dlr_test_models::ColourModel::COLOUR`) into the binary.
//!
//! The graph, params, `compiled.meta` and `synset.txt` come from `dlr_test_models::model_files`;
//! the kernel library is compiled here for the TARGET with the `cc` crate's compiler, so a
//! cross-compiled service carries kernels its device can load. `src/demo.rs` includes the
//! files from `OUT_DIR/demo-model/` with `include_bytes!`.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
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
