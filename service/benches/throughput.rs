//! End to end: the real `classify-service` binary (default workers and threads) under a small
//! load generator, against the bare model measured in the same run.
//!
//! `cargo xtask bench throughput` (or `cargo bench -p classify-service --bench throughput`).
//! Needs `cargo xtask setup`. `BENCH_REQUESTS` (default 24) sets the requests per row;
//! `BENCH_SKIP_MEMORY` / `BENCH_ONLY_MEMORY` skip or keep only the decode-memory part.
//!
//! Per model (the compute-heavy generated model, and the real EfficientNet-Lite0 when
//! `generated/models/efficientnet-lite0` exists):
//! * bare model: `dlr_sys::Model::run` in a loop on one handle with the service's default
//!   thread count, fed the 0.7 MP JPEG resized to its input — its p50 and its throughput (the
//!   model's limit);
//! * service: p50 / p90 / p99 and throughput at concurrency 1, 2, 4 and 16 for a 0.7 MP and a
//!   12 MP photo-like JPEG; overhead = p50 − bare p50, throughput ÷ the model's limit, and the
//!   12 MP p50 ÷ the 0.7 MP p50 at concurrency 1;
//! * start to ready (spawn → `/readyz` 200), steady RSS (after warm-up and the first load),
//!   peak RSS while loading (`VmHWM` at readiness) and peak RSS over the whole run.
//!
//! Then, with a fresh service and default limits: eight concurrent "maximal" images of each
//! kind, and the RSS rise (`VmHWM` − steady) they cause, against the decode memory budget.
//!
//! And the **Python peer**: the server a Python user writes for the same job
//! (`support/fastapi_peer.py`: FastAPI + ONNX Runtime + Pillow under uvicorn, with 1 and with 2
//! workers), against the service on the same ONNX model (`efficientnet-lite0-onnx`, ONNX
//! Runtime, centre crop as the peer does), the same JPEGs, concurrency 1 and 4: p50 and req/s of
//! each, and the service's ratios against the better peer — p50 ÷ peer p50 at concurrency 1,
//! req/s ÷ peer req/s at concurrency 4. Needs the bench venv's FastAPI (`cargo xtask bench`
//! installs it; `BENCH_PYTHON` names its python); `BENCH_ONLY_PEER` runs only this part.
//! The servers take turns: `BENCH_ROUNDS` (default 3) rounds, each server in turn, and every
//! figure is the median over the rounds, so that a slow spell of a shared machine falls on all
//! of them. The service runs with its defaults and with `--performance-hint throughput`;
//! `BENCH_SERVICE_ARGS` adds rows with other settings, `;`-separated (e.g.
//! `--workers 2 --threads-per-worker 2; --decode-concurrency 1`).
//!
//! With it, the **machine's limit** for each JPEG: cores ÷ (decode + preprocess time + the
//! model's time on one thread), the throughput of every core doing nothing but that work at
//! its single-thread CPU cost — the default service's median `decode_ms` + `preprocess_ms` at
//! concurrency 1 and the bare ONNX model on one intra-op thread, fed the same photo, both in
//! this run — and each service row's req/s at concurrency 4 as a fraction of it. Each row also
//! shows the service's own median decode + preprocess and inference times (`timings`), and
//! the CPU time per request of the server (the service only: uvicorn's workers are other
//! processes) and of the load generator, which runs on the same cores.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[path = "support/bench_venv.rs"]
mod bench_venv;
#[path = "support/machine.rs"]
mod machine;
#[path = "support/model_input.rs"]
mod model_input;
#[path = "support/photo.rs"]
mod photo;

use machine::machine;
use model_input::photo_input;
use photo::photo;

fn jpeg(w: u32, h: u32, quality: u8) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode_image(&photo(w, h))
        .unwrap();
    bytes
}

fn png(image: image::DynamicImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    bytes
}

struct Figures {
    throughput: f64,
    p50: Duration,
    p90: Duration,
    p99: Duration,
}

fn figures(mut latencies: Vec<Duration>, elapsed: Duration) -> Figures {
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    Figures {
        throughput: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
    }
}

/// The bare model on `image` resized to its input (a run's time depends on the data).
fn bare_model(dir: &Path, requests: usize, image: &[u8]) -> Figures {
    let mut model = dlr_sys::Model::load(
        dir,
        &dlr_sys::ModelOptions {
            threads: Some(dlr_sys::available_cpus()),
            library_path: Some(dlr_test_models::paths::libdlr_path()),
            ..Default::default()
        },
    )
    .unwrap();
    let info = model.metadata().inputs[0].clone();
    let len = info.shape.iter().product::<i64>() as usize;
    let name = info.name.clone().unwrap_or_else(|| "data".into());
    let (f32s, u8s) = photo_input(image, len);
    let input = if info.dtype == "uint8" {
        [dlr_sys::Input::u8(&name, &info.shape, &u8s)]
    } else {
        [dlr_sys::Input::f32(&name, &info.shape, &f32s)]
    };
    model.run(&input).unwrap();
    let started = Instant::now();
    let latencies = (0..requests)
        .map(|_| {
            let t = Instant::now();
            model.run(&input).unwrap();
            t.elapsed()
        })
        .collect();
    figures(latencies, started.elapsed())
}

/// Resident and peak resident memory of a process, in MB.
fn rss(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
            / 1024.0
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

struct Service {
    child: Child,
    base: String,
    start_to_ready: Duration,
    /// Stop with SIGTERM rather than SIGKILL: uvicorn then stops its worker processes too.
    terminate: bool,
}

impl Drop for Service {
    fn drop(&mut self) {
        let terminated = self.terminate
            && Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
        if !terminated {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(model_dir: &Path, client: &reqwest::Client, extra: &[&str]) -> Service {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_classify-service"));
    command
        .arg("--model-dir")
        .arg(model_dir)
        .arg("--dlr-library")
        .arg(dlr_test_models::paths::libdlr_path())
        .arg("--onnx-library")
        .arg(dlr_test_models::paths::generated_dir().join("onnxruntime"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--log-filter", "error", "--request-timeout-ms", "600000"])
        .args(["--queue-capacity", "256"])
        .args(extra);
    serve(command, port, client).await
}

/// Spawns `command`, serving on `port`, and waits until its `/readyz` answers 200.
async fn serve(mut command: Command, port: u16, client: &reqwest::Client) -> Service {
    let started = Instant::now();
    let child = command.stdout(Stdio::null()).spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut service = Service {
        child,
        base,
        start_to_ready: Duration::ZERO,
        terminate: false,
    };
    loop {
        let ready = client.get(format!("{}/readyz", service.base)).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        if let Ok(Some(status)) = service.child.try_wait() {
            panic!("{command:?} exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    service.start_to_ready = started.elapsed();
    service
}

/// What one [`load`] saw.
struct Load {
    statuses: Vec<u16>,
    figures: Figures,
    /// Per answer that has the service's `timings`: [`Stages`].
    stages: Vec<Stages>,
}

/// From a service answer's `timings`: `decode_ms` + `preprocess_ms` (the CPU time the request
/// took before the model: both stages run on one thread) and `inference_ms`.
#[derive(Debug, Clone, Copy)]
struct Stages {
    front_ms: f64,
    model_ms: f64,
}

impl Stages {
    fn of(answer: &[u8]) -> Option<Self> {
        let answer: serde_json::Value = serde_json::from_slice(answer).ok()?;
        let timings = answer.get("timings")?;
        Some(Self {
            front_ms: timings["decode_ms"].as_f64()? + timings["preprocess_ms"].as_f64()?,
            model_ms: timings["inference_ms"].as_f64()?,
        })
    }
}

/// `requests` POSTs of `body` from `concurrency` clients.
async fn load(
    client: &reqwest::Client,
    base: &str,
    body: &[u8],
    requests: usize,
    concurrency: usize,
) -> Load {
    let next = Arc::new(AtomicUsize::new(0));
    let body = bytes::Bytes::copy_from_slice(body);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, body, next) = (client.clone(), body.clone(), next.clone());
            let url = format!("{base}/classify");
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while next.fetch_add(1, Ordering::SeqCst) < requests {
                    let t = Instant::now();
                    let sent = client
                        .post(&url)
                        .header("content-type", "application/octet-stream")
                        .body(body.clone())
                        .send()
                        .await;
                    // 0: the connection closed before an answer was read (e.g. a 413 sent
                    // while the body was still being written).
                    let (status, front) = match sent {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            match response.bytes().await {
                                Ok(answer) => (status, Stages::of(&answer)),
                                Err(_) => (0, None),
                            }
                        }
                        Err(_) => (0, None),
                    };
                    seen.push((status, t.elapsed(), front));
                }
                seen
            })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    Load {
        statuses: seen.iter().map(|s| s.0).collect(),
        stages: seen.iter().filter_map(|s| s.2).collect(),
        figures: figures(seen.into_iter().map(|s| s.1).collect(), elapsed),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// CPU seconds (user + system) a process has used so far, from `/proc/{pid}/stat` (in
/// `USER_HZ` ticks, 100 per second on Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses: utime is the
    // 12th, stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => f64::NAN,
    }
}

/// The p50 of the bare ONNX model in `dir` on one thread, fed `image` resized to its input:
/// the model's CPU time per image (one intra-op thread runs on the caller's thread).
fn onnx_one_thread_ms(dir: &Path, image: &[u8], runs: usize) -> f64 {
    let mut model = onnx_backend::Model::load(
        dir,
        &onnx_backend::ModelOptions {
            threads: Some(1),
            library_path: Some(dlr_test_models::paths::generated_dir().join("onnxruntime")),
            ..Default::default()
        },
    )
    .unwrap();
    let (f32s, u8s) = photo_input(image, model.metadata().image_input.element_count());
    let data = match model.metadata().image_input.dtype {
        onnx_backend::DType::F32 => onnx_backend::TensorData::F32(&f32s),
        onnx_backend::DType::U8 => onnx_backend::TensorData::U8(&u8s),
    };
    model.run(data).unwrap();
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                model.run(data).unwrap();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    )
}

async fn model_rows(name: &str, dir: &Path, requests: usize, client: &reqwest::Client) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let bare = bare_model(dir, requests, &jpeg(1024, 683, 90));
    println!(
        "\n== {name}: bare model p50 {:.1} ms, limit {:.2} req/s",
        ms(bare.p50),
        bare.throughput
    );
    let service = start(dir, client, &[]).await;
    let pid = service.child.id();
    let (_, load_peak) = rss(pid);
    println!(
        "start to ready {:.0} ms; peak RSS while loading {load_peak:.0} MB",
        ms(service.start_to_ready)
    );
    println!(
        "{:<12} {:>4} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8}",
        "image", "conc", "p50 ms", "p90 ms", "p99 ms", "overhead", "req/s", "÷ limit"
    );
    let images = [
        ("0.7 MP JPEG", jpeg(1024, 683, 90)),
        ("12 MP JPEG", jpeg(4032, 3024, 90)),
    ];
    let mut p50_at_1 = Vec::new();
    let mut steady = f64::NAN;
    for (label, body) in &images {
        for concurrency in [1, 2, 4, 16] {
            let Load {
                statuses,
                figures: f,
                ..
            } = load(
                client,
                &service.base,
                body,
                requests.max(2 * concurrency),
                concurrency,
            )
            .await;
            assert!(statuses.iter().all(|&s| s == 200), "{label}: {statuses:?}");
            if concurrency == 1 {
                p50_at_1.push(f.p50);
            }
            if steady.is_nan() {
                steady = rss(pid).0;
            }
            println!(
                "{label:<12} {concurrency:>4} {:>8.1} {:>8.1} {:>8.1} {:>8.1}ms {:>8.2} {:>8.2}",
                ms(f.p50),
                ms(f.p90),
                ms(f.p99),
                ms(f.p50) - ms(bare.p50),
                f.throughput,
                f.throughput / bare.throughput
            );
        }
    }
    let (_, peak) = rss(pid);
    println!(
        "12 MP ÷ 0.7 MP p50 at concurrency 1: x{:.3}; steady RSS {steady:.0} MB, peak RSS {peak:.0} MB",
        p50_at_1[1].as_secs_f64() / p50_at_1[0].as_secs_f64()
    );
}

/// The FastAPI peer with `workers` uvicorn workers on the model in `dir`, or why it cannot run.
async fn start_peer(
    dir: &Path,
    workers: usize,
    client: &reqwest::Client,
) -> Result<Service, String> {
    let python = bench_venv::python();
    let has_fastapi = Command::new(&python)
        .args(["-c", "import fastapi, uvicorn, onnxruntime, PIL"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_fastapi {
        return Err(format!(
            "{} has no FastAPI, uvicorn, onnxruntime or Pillow: `cargo xtask bench` installs them",
            python.display()
        ));
    }
    let port = free_port();
    let mut command = Command::new(python);
    command
        .args(["-m", "uvicorn", "--app-dir"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/support"))
        .args([
            "fastapi_peer:app",
            "--host",
            "127.0.0.1",
            "--log-level",
            "warning",
        ])
        .args([
            "--port",
            &port.to_string(),
            "--workers",
            &workers.to_string(),
        ])
        .env("PEER_MODEL_DIR", dir);
    let mut peer = serve(command, port, client).await;
    peer.terminate = true;
    Ok(peer)
}

/// One row of [`peer_rows`]: the medians over the rounds.
struct Row {
    server: String,
    image: &'static str,
    concurrency: usize,
    p50: Duration,
    throughput: f64,
    /// The service's median decode + preprocess and inference times (its `timings`), when it
    /// answers them.
    front_ms: Option<f64>,
    model_ms: Option<f64>,
    /// The service's CPU time per request (not measured for the peer's processes).
    cpu_ms: Option<f64>,
    /// The load generator's (this process's) CPU time per request: it shares the cores.
    client_cpu_ms: f64,
}

/// The service against the FastAPI peer on the same ONNX model and JPEGs, and against the
/// machine's limit.
async fn peer_rows(requests: usize, client: &reqwest::Client) {
    let dir = dlr_test_models::paths::models_dir().join("efficientnet-lite0-onnx");
    println!(
        "\n== Python peer (FastAPI + ONNX Runtime + Pillow) against the service, ONNX Runtime"
    );
    if !dir.join("model.onnx").is_file() {
        println!("skipped: {} missing (`cargo xtask setup`)", dir.display());
        return;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let images = [
        ("0.7 MP JPEG", jpeg(1024, 683, 90)),
        ("12 MP JPEG", jpeg(4032, 3024, 90)),
    ];
    let mut servers = Vec::new();
    for workers in [1, 2] {
        match start_peer(&dir, workers, client).await {
            Ok(peer) => servers.push((format!("peer, {workers} worker(s)"), peer)),
            Err(why) => {
                println!("peer skipped: {why}");
                return;
            }
        }
    }
    // The service with its defaults, with the throughput layout, then with each `;`-separated
    // set of extra arguments.
    let extra = std::env::var("BENCH_SERVICE_ARGS").unwrap_or_default();
    let layouts = ["", "--performance-hint throughput"];
    for settings in layouts
        .into_iter()
        .chain(extra.split(';').filter(|s| !s.trim().is_empty()))
    {
        let mut args = vec!["--resize", "centre-crop"];
        args.extend(settings.split_whitespace());
        let name = format!("service {}", settings.trim());
        servers.push((name.trim().to_string(), start(&dir, client, &args).await));
    }
    // Every server takes its turn in each round, so that a slower spell of the machine falls
    // on all of them rather than on one.
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let width = servers.iter().map(|s| s.0.len()).max().unwrap_or(0);
    println!(
        "{rounds} rounds, each server in turn; medians over the rounds\n{:<width$} {:<12} {:>4} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10}",
        "server",
        "image",
        "conc",
        "p50 ms",
        "req/s",
        "pre ms",
        "model ms",
        "CPU ms/req",
        "client CPU"
    );
    /// One cell's figures, one per round.
    #[derive(Default)]
    struct Samples {
        p50: Vec<Duration>,
        throughput: Vec<f64>,
        /// Medians of the round's [`Stages`].
        front_ms: Vec<f64>,
        model_ms: Vec<f64>,
        /// CPU time per request: the server's, the load generator's.
        cpu_ms: Vec<f64>,
        client_cpu_ms: Vec<f64>,
    }
    // One cell per (server, image, concurrency), measured once a round, in this order.
    let mut samples: Vec<((usize, &str, usize), Samples)> = (0..servers.len())
        .flat_map(|server| {
            images.iter().flat_map(move |(label, _)| {
                [1, 4].map(|concurrency| ((server, *label, concurrency), Samples::default()))
            })
        })
        .collect();
    // Every worker started and warm before the figures.
    for (_, server) in &servers {
        load(client, &server.base, &images[0].1, 8, 4).await;
    }
    for _ in 0..rounds {
        for ((index, label, concurrency), entry) in &mut samples {
            let (name, server) = &servers[*index];
            let body = &images.iter().find(|i| i.0 == *label).unwrap().1;
            let cpu_before = cpu_seconds(server.child.id());
            let client_before = cpu_seconds(std::process::id());
            let Load {
                statuses,
                figures,
                stages,
            } = load(
                client,
                &server.base,
                body,
                requests.max(2 * *concurrency),
                *concurrency,
            )
            .await;
            let cpu = cpu_seconds(server.child.id()) - cpu_before;
            let client_cpu = cpu_seconds(std::process::id()) - client_before;
            assert!(
                statuses.iter().all(|&s| s == 200),
                "{name} {label}: {statuses:?}"
            );
            let per_request = 1e3 / statuses.len() as f64;
            entry.p50.push(figures.p50);
            entry.throughput.push(figures.throughput);
            if !stages.is_empty() {
                entry
                    .front_ms
                    .push(median(stages.iter().map(|s| s.front_ms).collect()));
                entry
                    .model_ms
                    .push(median(stages.iter().map(|s| s.model_ms).collect()));
            }
            entry.cpu_ms.push(cpu * per_request);
            entry.client_cpu_ms.push(client_cpu * per_request);
        }
    }
    let mut rows = Vec::new();
    for ((index, image, concurrency), mut cell) in samples {
        cell.p50.sort();
        let (name, server) = &servers[index];
        let answered = |values: Vec<f64>| (!values.is_empty()).then(|| median(values));
        let row = Row {
            server: name.clone(),
            image,
            concurrency,
            p50: cell.p50[cell.p50.len() / 2],
            throughput: median(cell.throughput),
            front_ms: answered(cell.front_ms),
            model_ms: answered(cell.model_ms),
            // uvicorn's workers are other processes: the peer's figure would be partial.
            cpu_ms: (!server.terminate).then(|| median(cell.cpu_ms)),
            client_cpu_ms: median(cell.client_cpu_ms),
        };
        let or_dash = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
        println!(
            "{name:<width$} {image:<12} {concurrency:>4} {:>8.1} {:>8.2} {:>8} {:>8} {:>10} {:>10.2}",
            ms(row.p50),
            row.throughput,
            or_dash(row.front_ms),
            or_dash(row.model_ms),
            or_dash(row.cpu_ms),
            row.client_cpu_ms
        );
        rows.push(row);
    }
    let cores = dlr_sys::available_cpus();
    for (label, body) in &images {
        let of = |peer: bool, concurrency: usize| {
            rows.iter()
                .filter(|r| {
                    r.image == *label
                        && r.concurrency == concurrency
                        && r.server.starts_with("peer") == peer
                })
                .collect::<Vec<_>>()
        };
        let best_p50 = of(true, 1).iter().map(|r| r.p50).min().unwrap();
        let best_rps = of(true, 4).iter().map(|r| r.throughput).fold(0.0, f64::max);
        // The machine's limit: every core busy with nothing but decoding, preprocessing and
        // running the model, each at its single-thread CPU cost (the default service's decode
        // and preprocess times, the bare model on one thread), measured in this run.
        let decode = of(false, 1)[0].front_ms.unwrap_or(f64::NAN);
        let model = onnx_one_thread_ms(&dir, body, requests.max(20));
        let limit = cores as f64 * 1e3 / (decode + model);
        println!(
            "{label}: machine limit {cores} cores ÷ (decode + preprocess {decode:.2} ms + model on \
             one thread {model:.2} ms) = {limit:.1} req/s"
        );
        for (one, four) in of(false, 1).iter().zip(of(false, 4)) {
            println!(
                "  {:<width$} p50 ÷ best peer p50 at concurrency 1: x{:.2}; at concurrency 4: \
                 req/s ÷ best peer: x{:.2}, ÷ machine limit: x{:.2}",
                one.server,
                one.p50.as_secs_f64() / best_p50.as_secs_f64(),
                four.throughput / best_rps,
                four.throughput / limit
            );
        }
    }
}

/// Eight concurrent maximal images per kind against a fresh service with default limits.
async fn memory_rows(dir: &Path, client: &reqwest::Client) {
    println!("\n== decode memory: 8 concurrent images, default limits and budget");
    let kinds: [(&str, Vec<u8>); 3] = [
        ("50 MP JPEG q75", jpeg(8160, 6120, 75)),
        (
            "50 MP RGB8 PNG",
            png(image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(
                7071,
                7071,
                |x, y| image::Rgb([(x / 28) as u8, (y / 28) as u8, 90]),
            ))),
        ),
        (
            "49 MP RGB16 PNG",
            png(image::DynamicImage::ImageRgb16(
                image::ImageBuffer::from_fn(7000, 7000, |x, y| {
                    image::Rgb([(x * 9) as u16, (y * 9) as u16, 0])
                }),
            )),
        ),
    ];
    for (label, body) in &kinds {
        let service = start(dir, client, &[]).await;
        let pid = service.child.id();
        // Steady state: after one ordinary request.
        load(client, &service.base, &jpeg(640, 480, 90), 2, 1).await;
        let (steady, _) = rss(pid);
        let Load {
            statuses,
            figures: f,
            ..
        } = load(client, &service.base, body, 8, 8).await;
        let (_, peak) = rss(pid);
        let mut counts = std::collections::BTreeMap::new();
        for s in statuses {
            *counts.entry(s).or_insert(0) += 1;
        }
        println!(
            "{label:<16} {:>5.1} MB body  statuses {counts:?}  p50 {:.0} ms  steady RSS {steady:.0} MB, \
             peak {peak:.0} MB, rise {:.0} MB",
            body.len() as f64 / 1e6,
            f.p50.as_secs_f64() * 1e3,
            peak - steady
        );
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
    println!("end to end, {requests} requests per row; {}", machine());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut models = vec![("heavy", dlr_test_models::paths::model_dir("heavy"))];
    let real: PathBuf = dlr_test_models::paths::models_dir().join("efficientnet-lite0");
    if real.is_dir() {
        models.push(("efficientnet-lite0", real));
    }
    let only = |part: &str| std::env::var_os(format!("BENCH_ONLY_{part}")).is_some();
    runtime.block_on(async {
        if !only("MEMORY") && !only("PEER") {
            for (name, dir) in &models {
                model_rows(name, dir, requests, &client).await;
            }
        }
        if !only("PEER") && std::env::var_os("BENCH_SKIP_MEMORY").is_none() {
            memory_rows(&models[0].1, &client).await;
        }
        if !only("MEMORY") {
            peer_rows(requests, &client).await;
        }
    });
}
