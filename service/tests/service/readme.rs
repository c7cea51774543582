//! Runs the curl examples of `service/README.md` against a live server, exactly as written
//! except for the address and the image directory.

use std::process::Command;

use crate::common::*;

/// Shell blocks (```sh) of the README that call curl.
fn curl_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```sh") => current = Some(String::new()),
            (Some(block), l) if l.starts_with("```") => {
                if block.contains("curl ") {
                    blocks.push(std::mem::take(block));
                }
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_curl_examples_work() {
    let readme_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let blocks = curl_blocks(&readme);
    assert!(
        blocks.len() >= 6,
        "expected curl examples in {}",
        readme_path.display()
    );

    let work = tempfile::tempdir().unwrap();
    let images = work.path().canonicalize().unwrap().join("images");
    std::fs::create_dir(&images).unwrap();
    for name in ["cat.jpg", "image.jpg"] {
        std::fs::write(work.path().join(name), jpeg(RED)).unwrap();
        std::fs::write(images.join(name), jpeg(RED)).unwrap();
    }
    // A photo-sized cat.jpg: its base64 is far beyond the 128 KiB a single command-line
    // argument may hold, so the base64 example must build its body in a pipe or a file.
    let photo = noisy_red_jpeg(1200, 900);
    let base64_len = photo.len().div_ceil(3) * 4;
    assert!(base64_len > 2 * 128 * 1024, "{base64_len} bytes of base64");
    std::fs::write(work.path().join("cat.jpg"), photo).unwrap();
    std::fs::write(work.path().join("cat.png"), png(RED)).unwrap();
    let app = spawn_ready(classify_service::Config {
        allowed_dirs: vec![images.clone()],
        ..config("colour")
    })
    .await;
    let mut forms = std::collections::BTreeSet::new();
    for block in &blocks {
        let script = block
            .replace("http://127.0.0.1:8080", &app.base)
            .replace("/tmp/images", &images.display().to_string());
        let output = Command::new("sh")
            .arg("-c")
            .arg(format!("set -e\n{script}"))
            .current_dir(work.path())
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .output()
            .expect("sh and curl are needed for the README test");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "README example failed:\n{script}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if script.contains("/classify") {
            assert!(stdout.contains("\"label\":\"red\""), "{script}\n{stdout}");
            for form in [
                "image/jpeg",
                "octet-stream",
                "image=@",
                "image_base64",
                "\"path\"",
                "image_dir",
            ] {
                if script.contains(form) {
                    forms.insert(form);
                }
            }
        }
    }
    assert_eq!(
        forms.len(),
        6,
        "every input form has a README example: {forms:?}"
    );
    app.stop().await;
}

/// A red JPEG with deterministic noise, so that it compresses like a photo, not like a flat
/// colour.
fn noisy_red_jpeg(width: u32, height: u32) -> Vec<u8> {
    let mut state: u32 = 0x1234_5678;
    let mut noise = move || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 24) as u8 / 6
    };
    let image = image::RgbImage::from_fn(width, height, |_, _| {
        image::Rgb([255 - noise(), noise(), noise()])
    });
    encode(
        &image::DynamicImage::ImageRgb8(image),
        image::ImageFormat::Jpeg,
    )
}
