//! Throughput and latency of the service with the heavy generated model (~100-300 ms per run),
//! 1 worker versus N workers (N = available CPUs, 1 DLR thread each), under the same
//! concurrent load through the real HTTP stack and the real libdlr.
//!
//! Baseline, measured in the same run: the bare model (`dlr_sys::Model::run` in a loop on one
//! thread, no HTTP, no decoding). Reported ratios: each configuration's throughput against that
//! baseline (HTTP + preprocessing overhead and parallel speed-up), and N workers against 1.
//!
//! `cargo bench -p classify-service --bench throughput`; `BENCH_REQUESTS` (default 24) sets the
//! requests per configuration. Needs `cargo xtask setup` (libdlr and the generated models).

use std::time::{Duration, Instant};

use classify_service::{Application, Config};

fn png() -> Vec<u8> {
    let image = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    }));
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

struct Figures {
    throughput: f64,
    p50: Duration,
    p95: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn bare_model(requests: usize) -> Figures {
    let dir = dlr_test_models::paths::model_dir("heavy");
    let mut model = dlr_sys::Model::load(
        &dir,
        &dlr_sys::ModelOptions {
            threads: Some(1),
            library_path: Some(dlr_test_models::paths::libdlr_path()),
            ..Default::default()
        },
    )
    .unwrap();
    let shape = model.metadata().inputs[0].shape.clone();
    let data = vec![100.0f32; shape.iter().product::<i64>() as usize];
    let input = [dlr_sys::Input::f32("data", &shape, &data)];
    model.run(&input).unwrap();
    let mut latencies = Vec::new();
    let started = Instant::now();
    for _ in 0..requests {
        let t = Instant::now();
        model.run(&input).unwrap();
        latencies.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Figures {
        throughput: requests as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.5),
        p95: percentile(&latencies, 0.95),
    }
}

async fn service(workers: usize, requests: usize, concurrency: usize) -> Figures {
    let app = Application::build(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        model_dir: Some(dlr_test_models::paths::model_dir("heavy")),
        dlr_library: Some(dlr_test_models::paths::libdlr_path()),
        workers: Some(workers),
        threads_per_worker: Some(1),
        queue_capacity: requests,
        request_timeout_ms: 600_000,
        log_filter: "warn".into(),
        ..Config::default()
    })
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let mut ready = app.readiness();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    ready.wait_for(|r| r.is_ready()).await.unwrap();

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let body = png();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, body, next, url) = (
                client.clone(),
                body.clone(),
                next.clone(),
                format!("{base}/classify"),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < requests {
                    let t = Instant::now();
                    let response = client
                        .post(&url)
                        .header("content-type", "image/png")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200);
                    response.bytes().await.unwrap();
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    latencies.sort();
    Figures {
        throughput: requests as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.5),
        p95: percentile(&latencies, 0.95),
    }
}

fn main() {
    // `cargo test --all-targets` runs bench binaries too (without `--bench`): only check that
    // this one builds and starts, and leave the measuring to `cargo bench`.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("throughput: measured only under `cargo bench`");
        return;
    }
    let requests: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let cpus = dlr_sys::available_cpus();
    let concurrency = 2 * cpus.max(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "heavy model, {requests} requests per row, {concurrency} concurrent clients, {cpus} CPUs"
    );
    let baseline = bare_model(requests);
    let row = |name: &str, f: &Figures| {
        println!(
            "{name:<28} {:>7.2} req/s  p50 {:>7.1} ms  p95 {:>7.1} ms  x{:.2} of baseline",
            f.throughput,
            f.p50.as_secs_f64() * 1e3,
            f.p95.as_secs_f64() * 1e3,
            f.throughput / baseline.throughput
        );
    };
    row("baseline: bare model, 1 thr", &baseline);
    let one = runtime.block_on(service(1, requests, concurrency));
    row("service, 1 worker x 1 thr", &one);
    let n = runtime.block_on(service(cpus, requests, concurrency));
    row(&format!("service, {cpus} workers x 1 thr"), &n);
    println!(
        "{cpus} workers vs 1 worker: x{:.2} throughput",
        n.throughput / one.throughput
    );
}
