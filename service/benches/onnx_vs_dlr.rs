//! The same model on DLR and on ONNX Runtime, bare and behind the service, in one run.
//!
//! For each runtime: the bare model (`Model::run` in a loop on one thread with every CPU as
//! runtime threads, no HTTP, no decoding; its input is the bench's JPEG resized to the model's
//! square NHWC input, since a run's time depends on the data — a constant tensor ran DLR's
//! EfficientNet-Lite0 faster than a photo), then the service (1 worker with the same threads)
//! answering one JPEG request at a time (p50 and p95 as the client sees them: HTTP, decode,
//! resize, queue, inference, scoring) and then 4 clients at once (throughput, against the
//! bare model's limit of 1 / p50 runs per second). Reported: the service's p50 minus the bare
//! p50 (what the service adds), and ONNX Runtime against DLR. Then the same JPEG through the
//! Open Inference Protocol v2 (`POST /v2/models/{m}/infer`, BYTES `[1]` in binary, the top 5
//! through the classification extension, as tritonclient sends it) and through `/classify`,
//! one request at a time, alternating, so that both see the same machine: v2's p50 minus
//! `/classify`'s. With the 1-client row, the medians of the service's own `timings` (decode,
//! preprocess, queue, inference, total) say which stage the difference to the bare model is in.
//!
//! Models: `generated/models/efficientnet-lite0` (DLR) and `efficientnet-lite0-onnx` (ONNX)
//! when both are there, else the colour models `colour` and `colour-onnx` (whose run time is
//! negligible, so the figures are the service's overhead alone); `BENCH_DLR_MODEL` and
//! `BENCH_ONNX_MODEL` name other directories under `generated/models/`. `BENCH_REQUESTS`
//! (default 40) sets the runs and requests per row.
//!
//! `cargo bench -p classify-service --bench onnx_vs_dlr` (after `cargo xtask setup`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use classify_service::config::BackendChoice;
use classify_service::{Application, Config};
use dlr_test_models::paths;

#[path = "support/model_input.rs"]
mod model_input;

use model_input::photo_input;

#[derive(Debug, Clone, Copy)]
struct Figures {
    p50: Duration,
    p95: Duration,
    throughput: f64,
}

impl Figures {
    fn of(mut latencies: Vec<Duration>, elapsed: Duration) -> Self {
        latencies.sort();
        let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
        Self {
            p50: at(0.5),
            p95: at(0.95),
            throughput: latencies.len() as f64 / elapsed.as_secs_f64(),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn timed(runs: usize, mut run: impl FnMut()) -> Figures {
    run();
    let started = Instant::now();
    let latencies = (0..runs)
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed()
        })
        .collect();
    Figures::of(latencies, started.elapsed())
}

fn bare_dlr(dir: &std::path::Path, threads: usize, runs: usize, image: &[u8]) -> (Figures, String) {
    let mut model = dlr_sys::Model::load(
        dir,
        &dlr_sys::ModelOptions {
            threads: Some(threads),
            library_path: Some(paths::libdlr_path()),
            ..Default::default()
        },
    )
    .unwrap();
    let info = model.metadata().inputs[0].clone();
    let name = info.name.clone().unwrap_or_else(|| "data".into());
    let (f32s, u8s) = photo_input(image, info.element_count());
    let input = match info.dtype.as_str() {
        "uint8" => dlr_sys::Input::u8(&name, &info.shape, &u8s),
        _ => dlr_sys::Input::f32(&name, &info.shape, &f32s),
    };
    let version = model.metadata().dlr_version.clone();
    let figures = timed(runs, || {
        model.run(&[input]).unwrap();
    });
    (figures, format!("DLR {version}"))
}

fn bare_onnx(
    dir: &std::path::Path,
    threads: usize,
    runs: usize,
    image: &[u8],
) -> (Figures, String) {
    let mut model = onnx_backend::Model::load(
        dir,
        &onnx_backend::ModelOptions {
            threads: Some(threads),
            library_path: Some(onnx_library()),
            ..Default::default()
        },
    )
    .unwrap();
    let count = model.metadata().image_input.element_count();
    let (f32s, u8s) = photo_input(image, count);
    let data = match model.metadata().image_input.dtype {
        onnx_backend::DType::F32 => onnx_backend::TensorData::F32(&f32s),
        onnx_backend::DType::U8 => onnx_backend::TensorData::U8(&u8s),
    };
    let version = model.metadata().ort_version.clone();
    let figures = timed(runs, || {
        model.run(data).unwrap();
    });
    (figures, format!("ONNX Runtime {version}"))
}

fn onnx_library() -> std::path::PathBuf {
    paths::generated_dir().join("onnxruntime")
}

/// The service with `dir` on `backend`, one worker with `threads` runtime threads: p50/p95 of
/// one request at a time, then throughput of 4 clients at once.
async fn service(
    dir: &std::path::Path,
    backend: BackendChoice,
    threads: usize,
    requests: usize,
    image: &[u8],
) -> (Figures, Figures, Figures, Figures, String) {
    let app = Application::build(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        model_dir: Some(dir.to_path_buf()),
        backend,
        dlr_library: Some(paths::libdlr_path()),
        onnx_library: Some(onnx_library()),
        workers: Some(1),
        threads_per_worker: Some(threads),
        queue_capacity: 64,
        request_timeout_ms: 600_000,
        log_filter: "warn".into(),
        ..Config::default()
    })
    .await
    .unwrap();
    let url = format!("http://127.0.0.1:{}/classify", app.port());
    let mut ready = app.readiness();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    ready.wait_for(|r| r.is_ready()).await.unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let mut rounds = Vec::new();
    let mut stages = String::new();
    for clients in [1, 4] {
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (client, url, next) = (client.clone(), url.clone(), next.clone());
                let body = image.to_vec();
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut timings = Vec::new();
                    // One unmeasured warm-up request per client, then the shared count.
                    let mut warm = true;
                    while warm || next.fetch_add(1, Ordering::SeqCst) < requests {
                        let t = Instant::now();
                        let response = client
                            .post(&url)
                            .header("content-type", "image/jpeg")
                            .body(body.clone())
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(response.status(), 200);
                        let answer: serde_json::Value = response.json().await.unwrap();
                        if !warm {
                            latencies.push(t.elapsed());
                            timings.push(answer["timings"].clone());
                        }
                        warm = false;
                    }
                    (latencies, timings)
                })
            })
            .collect();
        let mut latencies = Vec::new();
        let mut timings = Vec::new();
        for task in tasks {
            let (l, t) = task.await.unwrap();
            latencies.extend(l);
            timings.extend(t);
        }
        if clients == 1 {
            stages = [
                "decode_ms",
                "preprocess_ms",
                "queue_ms",
                "inference_ms",
                "total_ms",
            ]
            .iter()
            .map(|stage| {
                let mut values: Vec<f64> =
                    timings.iter().filter_map(|t| t[stage].as_f64()).collect();
                values.sort_by(f64::total_cmp);
                let median = values.get(values.len() / 2).copied().unwrap_or(f64::NAN);
                format!("{} {median:.2}", stage.trim_end_matches("_ms"))
            })
            .collect::<Vec<_>>()
            .join(", ");
        }
        rounds.push(Figures::of(latencies, started.elapsed()));
    }
    let base = url.trim_end_matches("/classify").to_owned();
    let (classify, v2) = alternating(&client, &base, image, requests).await;
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    (rounds[0], rounds[1], classify, v2, stages)
}

/// `/classify` and v2 infer of the same JPEG, one request at a time, alternating: p50/p95 of
/// each.
async fn alternating(
    client: &reqwest::Client,
    base: &str,
    image: &[u8],
    requests: usize,
) -> (Figures, Figures) {
    let model: serde_json::Value = client
        .get(format!("{base}/v1/model"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = serde_json::json!({
        "inputs": [{"name": model["input"]["name"], "shape": [1], "datatype": "BYTES",
                    "parameters": {"binary_data_size": image.len() + 4}}],
        "outputs": [{"name": model["output"]["name"], "parameters": {"classification": 5}}],
    })
    .to_string();
    let mut v2_body = header.clone().into_bytes();
    v2_body.extend_from_slice(&(image.len() as u32).to_le_bytes());
    v2_body.extend_from_slice(image);
    let v2_url = format!("{base}/v2/models/{}/infer", model["name"].as_str().unwrap());
    let classify_url = format!("{base}/classify");
    let (mut classify, mut v2) = (Vec::new(), Vec::new());
    // Throughput is not reported for these rows; the elapsed time only completes the figures.
    let started = Instant::now();
    for round in 0..=requests {
        for through_v2 in [round % 2 == 0, round % 2 == 1] {
            let t = Instant::now();
            let request = if through_v2 {
                client
                    .post(&v2_url)
                    .header("inference-header-content-length", header.len())
                    .body(v2_body.clone())
            } else {
                client
                    .post(&classify_url)
                    .header("content-type", "image/jpeg")
                    .body(image.to_vec())
            };
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.bytes().await.unwrap();
            // Round 0 warms both paths up.
            if round > 0 {
                let into = if through_v2 { &mut v2 } else { &mut classify };
                into.push(t.elapsed());
            }
        }
    }
    let elapsed = started.elapsed();
    (Figures::of(classify, elapsed), Figures::of(v2, elapsed))
}

fn jpeg() -> Vec<u8> {
    // A real photo when the real-model setup fetched them, else a drawn one of photo size.
    let photo = paths::samples_dir().join("photos/chelsea.png");
    let image = match image::open(&photo) {
        Ok(image) => image,
        Err(_) => image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(451, 300, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
        })),
    };
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .to_rgb8()
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .unwrap();
    out.into_inner()
}

fn main() {
    // `cargo test --all-targets` runs bench binaries too (without `--bench`): only check that
    // this one builds and starts, and leave the measuring to `cargo bench`.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("onnx_vs_dlr: measured only under `cargo bench`");
        return;
    }
    let requests: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let models = paths::models_dir();
    let (dlr_name, onnx_name) = match (
        std::env::var("BENCH_DLR_MODEL"),
        std::env::var("BENCH_ONNX_MODEL"),
    ) {
        (Ok(d), Ok(o)) => (d, o),
        _ if models.join("efficientnet-lite0-onnx/model.onnx").is_file()
            && models.join("efficientnet-lite0").is_dir() =>
        {
            (
                "efficientnet-lite0".into(),
                "efficientnet-lite0-onnx".into(),
            )
        }
        _ => ("colour".into(), "colour-onnx".into()),
    };
    let threads = onnx_backend::available_cpus();
    let image = jpeg();
    println!(
        "models {dlr_name} (DLR) / {onnx_name} (ONNX); {threads} runtime threads, 1 worker; \
         {requests} runs or requests per row; {} byte JPEG",
        image.len()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut bare = Vec::new();
    for (backend, name) in [
        (BackendChoice::Dlr, &dlr_name),
        (BackendChoice::Onnx, &onnx_name),
    ] {
        let dir = paths::model_dir(name);
        let (model, runtime_name) = match backend {
            BackendChoice::Onnx => bare_onnx(&dir, threads, requests, &image),
            _ => bare_dlr(&dir, threads, requests, &image),
        };
        let (one, four, classify, v2, stages) =
            runtime.block_on(service(&dir, backend, threads, requests, &image));
        println!("{runtime_name}:");
        println!(
            "  bare model              p50 {:>8.2} ms  p95 {:>8.2} ms  limit {:>7.1} runs/s",
            ms(model.p50),
            ms(model.p95),
            1.0 / model.p50.as_secs_f64()
        );
        println!(
            "  service, 1 client       p50 {:>8.2} ms  p95 {:>8.2} ms  p50 - bare p50 = {:+.2} ms",
            ms(one.p50),
            ms(one.p95),
            ms(one.p50) - ms(model.p50)
        );
        println!("  service's own timings   p50 ms: {stages}");
        println!(
            "  service, 4 clients      p50 {:>8.2} ms  p95 {:>8.2} ms  {:>7.1} req/s = x{:.2} of the limit",
            ms(four.p50),
            ms(four.p95),
            four.throughput,
            four.throughput * model.p50.as_secs_f64()
        );
        println!(
            "  /classify vs v2 infer   p50 {:>8.2} ms  vs {:>8.2} ms  (v2 - /classify = {:+.2} ms; \
             p95 {:.2} vs {:.2} ms; alternating, 1 client)",
            ms(classify.p50),
            ms(v2.p50),
            ms(v2.p50) - ms(classify.p50),
            ms(classify.p95),
            ms(v2.p95)
        );
        bare.push((model, one));
    }
    let (dlr, onnx) = (&bare[0], &bare[1]);
    println!(
        "ONNX Runtime vs DLR: bare p50 x{:.2}, service p50 x{:.2} (below 1: ONNX Runtime faster)",
        ms(onnx.0.p50) / ms(dlr.0.p50),
        ms(onnx.1.p50) / ms(dlr.1.p50)
    );
}
