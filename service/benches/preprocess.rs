//! Decode + preprocessing per image size, against OpenCV in Python measured in the same run.
//!
//! `cargo xtask bench preprocess` (or `cargo bench -p classify-service --bench preprocess`;
//! the OpenCV column needs `generated/bench-venv`, which `cargo xtask bench` installs).
//!
//! Images: photo-like JPEGs (smooth shading, hard edges, per-pixel noise; quality 90) of 0.3,
//! 0.7 (the throughput bench's photo), 2 and 12 megapixels and a 2 MP PNG, written once to cargo's bench temp dir so OpenCV reads
//! the same files; plus every JPEG under `generated/samples` and `generated/photos` for the
//! quality column. Per image, the median of several runs of:
//! * **service**: `preprocess::decode` + `to_tensor` to a 224×224 float32 NHWC tensor, as a
//!   request does (JPEGs reduced in the DCT domain);
//! * **full decode**: the previous pipeline, the `image` crate's full-size decode + the same
//!   resize — also the reference for the quality column, the largest absolute difference of
//!   any tensor element;
//! * **OpenCV**: `cv2.imdecode` + `cv2.resize(INTER_LINEAR)` to 224×224 + BGR→RGB + float32,
//!   the original Python classifier's preprocessing;
//! * **entropy floor** (JPEGs): libjpeg-turbo decoding the same file at 1/8 scale. Every
//!   coefficient is still Huffman-decoded — the stage no scaled decode can skip — while the
//!   inverse DCT keeps only the DC term and colour conversion touches 1/64 of the pixels, so
//!   this is the entropy decoding plus a little: the floor any decode of the file stays above
//!   (slightly above `jpeg_read_coefficients` alone, which the safe `mozjpeg` API does not
//!   offer). The service's time is printed as a multiple of it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use classify_service::backend::Tensor;
use classify_service::config::{ChannelOrder, HexColour, ResizeFilter, ResizeMode};
use classify_service::preprocess::{
    DecodeBudget, InputDType, InputSpec, Layout, PreprocessOptions, decode, to_tensor,
};

#[path = "support/bench_venv.rs"]
mod bench_venv;
#[path = "support/machine.rs"]
mod machine;
#[path = "support/photo.rs"]
mod photo;

use machine::machine;
use photo::photo;

const SIDE: u32 = 224;

fn options(min_decoded_side: u32) -> PreprocessOptions {
    PreprocessOptions {
        channel_order: ChannelOrder::Rgb,
        filter: ResizeFilter::Bilinear,
        resize: ResizeMode::Squash,
        background: HexColour([255, 255, 255]),
        max_dimension: 16_384,
        max_pixels: 50_000_000,
        min_decoded_side,
        budget: Arc::new(DecodeBudget::new(1 << 30, Duration::from_secs(10))),
    }
}

fn spec() -> InputSpec {
    InputSpec {
        name: "data".into(),
        shape: vec![1, i64::from(SIDE), i64::from(SIDE), 3],
        layout: Layout::Nhwc,
        height: SIDE,
        width: SIDE,
        dtype: InputDType::F32,
    }
}

/// Writes the synthetic images once; returns (label, path).
fn synthetic(dir: &Path, scale: u32) -> Vec<(String, PathBuf)> {
    std::fs::create_dir_all(dir).unwrap();
    let sizes = [
        ("0.3 MP JPEG", 640, 480, "jpg"),
        ("0.7 MP JPEG", 1024, 683, "jpg"),
        ("2 MP JPEG", 1920, 1080, "jpg"),
        ("12 MP JPEG", 4032, 3024, "jpg"),
        // Chroma at half resolution both ways, as cameras and phones write JPEGs (the `image`
        // crate's encoder above writes 4:4:4).
        ("0.7 MP JPEG 4:2:0", 1024, 683, "420.jpg"),
        ("12 MP JPEG 4:2:0", 4032, 3024, "420.jpg"),
        ("2 MP PNG", 1920, 1080, "png"),
    ];
    sizes
        .into_iter()
        .map(|(label, w, h, ext)| {
            let (w, h) = (w / scale, h / scale);
            let path = dir.join(format!("photo-{w}x{h}.{ext}"));
            if !path.is_file() {
                let image = photo(w, h);
                let mut bytes = Vec::new();
                if ext == "420.jpg" {
                    let mut encoder = jpeg_encoder::Encoder::new(&mut bytes, 90);
                    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
                    encoder
                        .encode(
                            image.as_raw(),
                            u16::try_from(w).unwrap(),
                            u16::try_from(h).unwrap(),
                            jpeg_encoder::ColorType::Rgb,
                        )
                        .unwrap();
                } else if ext == "jpg" {
                    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
                        .encode_image(&image)
                        .unwrap();
                } else {
                    image
                        .write_to(
                            &mut std::io::Cursor::new(&mut bytes),
                            image::ImageFormat::Png,
                        )
                        .unwrap();
                }
                std::fs::write(&path, bytes).unwrap();
            }
            (label.to_string(), path)
        })
        .collect()
}

/// JPEGs in the generated sample and photo folders, for the quality column.
fn sample_photos() -> Vec<(String, PathBuf)> {
    let generated = dlr_test_models::paths::generated_dir();
    let mut found: Vec<_> = ["samples", "photos"]
        .iter()
        .filter_map(|d| std::fs::read_dir(generated.join(d)).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
        })
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    found.sort();
    found
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time(runs: usize, mut f: impl FnMut() -> Tensor) -> (Duration, Tensor) {
    let mut last = f();
    let samples = (0..runs)
        .map(|_| {
            let t = Instant::now();
            last = f();
            t.elapsed()
        })
        .collect();
    (median(samples), last)
}

/// Median time of a 1/8-scale libjpeg-turbo decode of `bytes` (see the module docs).
fn entropy_floor(bytes: &[u8], runs: usize) -> Duration {
    let once = || {
        let mut decompress = mozjpeg::Decompress::new_mem(bytes).unwrap();
        decompress.scale(1);
        let mut started = decompress.rgb().unwrap();
        let pixels: Vec<u8> = started.read_scanlines().unwrap();
        started.finish().unwrap();
        pixels.len()
    };
    once();
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(once());
                t.elapsed()
            })
            .collect(),
    )
}

/// libjpeg's merged upsampling against its default ("fancy", triangle-filtered) chroma
/// upsampling, decoding `bytes` at `eighths`/8 as the service does: the median times of each
/// (alternating run by run) and the largest difference between their pixels, or `None` when
/// the file's chroma is not subsampled (nothing to upsample).
fn merged_upsampling(bytes: &[u8], eighths: u8, runs: usize) -> Option<(Duration, Duration, u8)> {
    let once = |fancy: bool| {
        let mut decompress = mozjpeg::Decompress::new_mem(bytes).unwrap();
        decompress.scale(eighths);
        decompress.do_fancy_upsampling(fancy);
        let mut started = decompress.rgb().unwrap();
        let pixels: Vec<u8> = started.read_scanlines().unwrap();
        started.finish().unwrap();
        pixels
    };
    let sampling = mozjpeg::Decompress::new_mem(bytes)
        .unwrap()
        .components()
        .iter()
        .map(|c| (c.h_samp_factor, c.v_samp_factor))
        .collect::<Vec<_>>();
    if sampling.windows(2).all(|w| w[0] == w[1]) {
        return None;
    }
    let (fancy, merged) = (once(true), once(false));
    let most = fancy
        .iter()
        .zip(&merged)
        .map(|(a, b)| a.abs_diff(*b))
        .max()?;
    let mut times = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        std::hint::black_box(once(true));
        times.0.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(once(false));
        times.1.push(t.elapsed());
    }
    Some((median(times.0), median(times.1), most))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    let (Tensor::F32(a), Tensor::F32(b)) = (a, b) else {
        panic!("float32 tensors expected")
    };
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

const OPENCV: &str = r#"
import sys, time
import cv2, numpy as np
cv2.setNumThreads(1)
runs = int(sys.argv[1])
for path in sys.argv[2:]:
    data = open(path, "rb").read()
    def once():
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        img = cv2.resize(img, (224, 224), interpolation=cv2.INTER_LINEAR)
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32)
    once()
    samples = []
    for _ in range(runs):
        t = time.perf_counter(); once(); samples.append(time.perf_counter() - t)
    samples.sort()
    print(samples[len(samples) // 2] * 1e3)
"#;

/// OpenCV's median milliseconds per file, or why it was not measured.
fn opencv(paths: &[&Path], runs: usize) -> Result<Vec<f64>, String> {
    let python = bench_venv::python();
    if !python.is_file() {
        return Err(format!(
            "{} missing: `cargo xtask bench` installs OpenCV there",
            python.display()
        ));
    }
    let out = Command::new(&python)
        .args(["-c", OPENCV, &runs.to_string()])
        .args(paths)
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().map_err(|e| format!("{l:?}: {e}")))
        .collect()
}

fn main() {
    // Under `cargo test --all-targets` (no `--bench`): one pass over small images, so the code
    // path stays exercised, and nothing timed.
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let (scale, runs) = if measuring { (1, 15) } else { (8, 1) };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("preprocess-bench");
    let mut images = synthetic(&dir, scale);
    let synthetic_count = images.len();
    if measuring {
        images.extend(sample_photos());
    }
    let spec = spec();
    let service = options(2 * SIDE);
    let full = options(u32::MAX);

    println!(
        "preprocessing to {SIDE}x{SIDE} float32, median of {runs} runs; {}",
        machine()
    );
    let paths: Vec<&Path> = images[..synthetic_count]
        .iter()
        .map(|(_, p)| p.as_path())
        .collect();
    let cv = if measuring {
        opencv(&paths, runs)
    } else {
        Err("not measured outside `cargo bench`".into())
    };
    if let Err(why) = &cv {
        println!("OpenCV: {why}");
    }
    println!(
        "{:<22} {:>9} {:>8} {:>11} {:>9} {:>9} {:>8} {:>9} {:>13}",
        "image",
        "size",
        "service",
        "full decode",
        "OpenCV",
        "OpenCV ÷",
        "entropy",
        "service ÷",
        "max |Δ| vs"
    );
    println!(
        "{:<22} {:>9} {:>8} {:>11} {:>9} {:>9} {:>8} {:>9} {:>13}",
        "", "", "ms", "ms", "ms", "service", "floor ms", "floor", "full decode"
    );
    for (i, (label, path)) in images.iter().enumerate() {
        let bytes = std::fs::read(path).unwrap();
        let (ours, tensor) = time(runs, || {
            to_tensor(decode(&bytes, &service).unwrap(), &spec, &service).unwrap()
        });
        let (before, reference) = time(runs, || {
            let image = image::load_from_memory(&bytes).unwrap().into_rgb8();
            to_tensor(image, &spec, &full).unwrap()
        });
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let cv_ms = cv
            .as_ref()
            .ok()
            .filter(|_| i < synthetic_count)
            .map(|v| v[i]);
        let (image_w, image_h) = image::image_dimensions(path).unwrap();
        let floor = bytes
            .starts_with(&[0xFF, 0xD8])
            .then(|| ms(entropy_floor(&bytes, runs)));
        println!(
            "{:<22} {:>9} {:>8.2} {:>11.2} {:>9} {:>9} {:>8} {:>9} {:>13.1}",
            label,
            format!(
                "{:.1}MP {:.1}MB",
                f64::from(image_w) * f64::from(image_h) / 1e6,
                bytes.len() as f64 / 1e6
            ),
            ms(ours),
            ms(before),
            cv_ms.map_or("-".into(), |v| format!("{v:.2}")),
            cv_ms.map_or("-".into(), |v| format!("x{:.1}", v / ms(ours))),
            floor.map_or("-".into(), |v| format!("{v:.2}")),
            floor.map_or("-".into(), |v| format!("x{:.2}", ms(ours) / v)),
            max_abs_diff(&tensor, &reference)
        );
    }

    // Merged upsampling (`do_fancy_upsampling(false)`): libjpeg upsamples the chroma and
    // converts to RGB in one pass, without the triangle filter.
    println!(
        "\nchroma upsampling at the service's scale: fancy (the default) against merged\n{:<22} {:>6} {:>9} {:>9} {:>9} {:>12}",
        "image", "scale", "fancy ms", "merged ms", "merged ÷", "max |Δ| of"
    );
    println!(
        "{:<22} {:>6} {:>9} {:>9} {:>9} {:>12}",
        "", "", "", "", "fancy", "the pixels"
    );
    for (label, path) in &images {
        let bytes = std::fs::read(path).unwrap();
        if !bytes.starts_with(&[0xFF, 0xD8]) {
            continue;
        }
        let (width, _) = image::image_dimensions(path).unwrap();
        // The scale the service chose, read back from the size it decoded to.
        let decoded = decode(&bytes, &service).unwrap().width();
        let eighths = u8::try_from(8 * decoded / width).unwrap_or(8);
        match merged_upsampling(&bytes, eighths, runs) {
            Some((fancy, merged, most)) => println!(
                "{label:<22} {:>6} {:>9.2} {:>9.2} {:>9} {most:>12}",
                format!("{eighths}/8"),
                fancy.as_secs_f64() * 1e3,
                merged.as_secs_f64() * 1e3,
                format!("x{:.2}", merged.as_secs_f64() / fancy.as_secs_f64()),
            ),
            None => println!("{label:<22} no chroma subsampling"),
        }
    }
}
