//! The whole offline path, with every part real: the official Python Greengrass client doing
//! what the seed's requester does ↔ the nucleus emulator (authorising with the committed
//! recipes' accessControl) ↔ the IPC adapter ↔ the classification service on a real socket ↔
//! the real libdlr 1.6.0 running a generated model.
//!
//! The start-order tests run the built executables (`target/<profile>/classify-service` and
//! `classify-ipc-adapter`, which `cargo test --workspace --all-targets` builds; alone:
//! `cargo build -p classify-service -p classify-ipc-adapter` first) as separate processes, the
//! way Greengrass starts components.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use classify_ipc_adapter::adapter::Adapter;
use classify_ipc_adapter::config::{AdapterConfig, ReplyFormat};
use classify_service::Config;
use dlr_test_models::paths;
use e2e_tests::{RunningService, python, service_config};
use greengrass_ipc::Flavour;
use greengrass_ipc_emulator::acl::AccessControl;
use greengrass_ipc_emulator::emulator::{self, EmulatorConfig, EmulatorHandle};
use image::{Rgb, RgbImage};
use serde_json::Value;
use tokio::sync::oneshot;

const ADAPTER: &str = "com.example.ImageClassification.IpcAdapter";
const REQUESTER: &str = "com.example.ImageClassification.Requester";
const ADAPTER_TOKEN: &str = "adapter-token";
const REQUESTER_TOKEN: &str = "requester-token";

/// A running service, emulator and adapter, stopped when dropped.
struct Flow {
    images: tempfile::TempDir,
    socket: PathBuf,
    _emulator: EmulatorHandle,
    _stop_adapter: oneshot::Sender<()>,
    service: RunningService,
}

fn recipe(component: &str) -> PathBuf {
    paths::workspace_root()
        .join("recipes")
        .join(component)
        .join("recipe.yaml")
}

/// The pub/sub policies of the adapter's and the requester's recipes, as Greengrass would
/// enforce them.
fn recipes_access_control() -> AccessControl {
    AccessControl::from_files(&[recipe(ADAPTER), recipe(REQUESTER)]).expect("recipes parse")
}

async fn start_service(images: &Path) -> RunningService {
    RunningService::start(Config {
        allowed_dirs: vec![images.to_path_buf()],
        workers: Some(2),
        ..service_config("colour")
    })
    .await
}

async fn start_flow(flavour: Flavour, reply_format: ReplyFormat) -> Flow {
    let images = tempfile::tempdir().unwrap();
    draw_images(images.path());
    let service = start_service(images.path()).await;

    let socket = images.path().join("ipc.socket");
    let emulator = emulator::spawn(EmulatorConfig {
        socket_path: socket.clone(),
        flavour,
        access_control: recipes_access_control(),
        tokens: HashMap::from([
            (ADAPTER_TOKEN.to_owned(), ADAPTER.to_owned()),
            (REQUESTER_TOKEN.to_owned(), REQUESTER.to_owned()),
        ]),
        ..EmulatorConfig::new(&socket, flavour)
    })
    .await
    .expect("emulator starts");

    let mut config = AdapterConfig::new(&socket, ADAPTER_TOKEN, service.base_url());
    config.ipc.nucleus = flavour;
    // These tests count answers, not time: a generous deadline keeps a busy machine (a debug
    // build decoding 200 images on 2 cores) from turning answers into `timeout` errors.
    config.timeouts.reply_deadline_ms = 60_000;
    config.reply_format = reply_format;
    let adapter = Adapter::start(config).await.expect("adapter subscribes");
    let (stop_adapter, stopped) = oneshot::channel::<()>();
    tokio::spawn(adapter.run(async {
        let _ = stopped.await;
    }));

    Flow {
        images,
        socket,
        _emulator: emulator,
        _stop_adapter: stop_adapter,
        service,
    }
}

/// `pelican.jpeg` is the seed's file name; here it is a red picture. `pumpkin.png` is the
/// orange of the "jack-o'-lantern" class.
fn draw_images(dir: &Path) {
    RgbImage::from_pixel(500, 375, Rgb([250, 10, 10]))
        .save(dir.join("pelican.jpeg"))
        .unwrap();
    RgbImage::from_pixel(300, 300, Rgb([255, 128, 0]))
        .save(dir.join("pumpkin.png"))
        .unwrap();
}

/// Runs the seed's requester with the official client and returns the replies it printed.
/// `socket` and `token` are what the nucleus hands the requester component.
async fn seed_requester(
    socket: &Path,
    token: &str,
    image_dir: &Path,
    fnames: &[&str],
) -> Vec<String> {
    let mut args = vec!["--image-dir".into(), image_dir.as_os_str().to_owned()];
    for fname in fnames {
        args.extend(["--fname".into(), fname.into()]);
    }
    run_requester(socket, token, &args).await
}

/// Runs `tests/python/seed_requester.py` with `args` and returns the replies it printed.
async fn run_requester(socket: &Path, token: &str, args: &[std::ffi::OsString]) -> Vec<String> {
    let script = paths::workspace_root().join("tests/python/seed_requester.py");
    let mut command = tokio::process::Command::new(python());
    command
        .arg(script)
        .args(args)
        .env(
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
            socket,
        )
        .env("SVCUID", token)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("requester finishes within 60 s")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "requester failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("one JSON line per reply");
            v["reply"].as_str().expect("a reply").to_owned()
        })
        .collect()
}

fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_requester_gets_json_answers_through_the_whole_flow() {
    let flow = start_flow(Flavour::Classic, ReplyFormat::Json).await;
    let replies = seed_requester(
        &flow.socket,
        REQUESTER_TOKEN,
        flow.images.path(),
        &["pelican.jpeg", "pumpkin.png"],
    )
    .await;
    let mut by_label: HashMap<String, Value> = HashMap::new();
    for reply in replies {
        let v: Value = serde_json::from_str(&reply).expect("JSON reply");
        assert_eq!(v["status"], "ok", "{v}");
        assert!(!v["request_id"].as_str().unwrap().is_empty(), "{v}");
        by_label.insert(v["label"].as_str().unwrap().to_owned(), v);
    }
    assert!(by_label.contains_key("red"), "{by_label:?}");
    // A uniform PNG stays uniform through decoding and resizing, so the model's answer is
    // exactly computable: top-1 probability = softmax(expected logits).
    let pumpkin = &by_label["jack-o'-lantern"];
    let expected = softmax(&dlr_test_models::expected_logits([255.0, 128.0, 0.0]));
    let top = &pumpkin["predictions"][0];
    assert_eq!(top["label"], "jack-o'-lantern");
    assert_eq!(top["index"], 9);
    let probability = top["probability"].as_f64().unwrap();
    assert!(
        (probability - expected[9]).abs() < 1e-4,
        "{probability} vs {}",
        expected[9]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_only_mode_answers_like_the_seed_classifier() {
    let flow = start_flow(Flavour::Lite, ReplyFormat::Label).await;
    let mut replies = seed_requester(
        &flow.socket,
        REQUESTER_TOKEN,
        flow.images.path(),
        &["pelican.jpeg", "pumpkin.png"],
    )
    .await;
    replies.sort();
    assert_eq!(replies, ["jack-o'-lantern", "red"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_forbidden_files_get_error_replies() {
    let flow = start_flow(Flavour::Lite, ReplyFormat::Json).await;
    let missing = seed_requester(
        &flow.socket,
        REQUESTER_TOKEN,
        flow.images.path(),
        &["no-such.jpeg"],
    )
    .await;
    let v: Value = serde_json::from_str(&missing[0]).unwrap();
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["error"]["code"], "not_found", "{v}");

    let outside = tempfile::tempdir().unwrap();
    draw_images(outside.path());
    let forbidden = seed_requester(
        &flow.socket,
        REQUESTER_TOKEN,
        outside.path(),
        &["pelican.jpeg"],
    )
    .await;
    let v: Value = serde_json::from_str(&forbidden[0]).unwrap();
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["error"]["code"], "forbidden_path", "{v}");
}

/// The table of request documents that `classify-api` reads (`api/tests/request_documents.json`)
/// sent as they are over HTTP to the service and over IPC (the official client) to the
/// adapter: the same verdicts, and the same words for each refused document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_document_gets_the_same_verdict_over_http_and_ipc() {
    let flow = start_flow(Flavour::Classic, ReplyFormat::Json).await;
    let table: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(paths::workspace_root().join("api/tests/request_documents.json"))
            .unwrap(),
    )
    .unwrap();
    let documents: Vec<String> = table.iter().map(|case| case["doc"].to_string()).collect();
    let mut args = Vec::new();
    for document in &documents {
        args.extend(["--document".into(), document.into()]);
    }
    let replies = run_requester(&flow.socket, REQUESTER_TOKEN, &args).await;
    assert_eq!(replies.len(), table.len());

    let client = reqwest::Client::new();
    let url = format!("{}/classify", flow.service.base_url());
    for ((case, document), reply) in table.iter().zip(&documents).zip(&replies) {
        let answer = client
            .post(&url)
            .header("content-type", "application/json")
            .body(document.clone())
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        let problem: Value = answer.json().await.unwrap();
        let reply: Value = serde_json::from_str(reply).expect("a JSON reply");
        assert_eq!(
            reply["status"], "error",
            "{document}: the table's images are not real"
        );
        let code = reply["error"]["code"].as_str().unwrap();
        if case.get("form").is_some() {
            assert_ne!(status, 422, "{document} is valid over HTTP: {problem}");
            assert_ne!(
                code, "malformed_request",
                "{document} is valid over IPC: {reply}"
            );
            continue;
        }
        assert_eq!(status, 422, "{document} is refused over HTTP: {problem}");
        assert_eq!(
            code, "malformed_request",
            "{document} is refused over IPC: {reply}"
        );
        let detail = problem["detail"].as_str().unwrap();
        let message = reply["error"]["message"].as_str().unwrap();
        for words in case["says"].as_array().unwrap() {
            let words = words.as_str().unwrap();
            assert!(
                detail.contains(words),
                "{document}: {words:?} not in {detail:?}"
            );
        }
        // The adapter's list of accepted fields adds its own two to the service's.
        assert!(
            message.starts_with(detail),
            "{document}: over IPC {message:?}, over HTTP {detail:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_requests_in_flight_are_each_answered_once() {
    let flow = start_flow(Flavour::Lite, ReplyFormat::Json).await;
    let fnames: Vec<&str> = (0..200)
        .map(|i| {
            if i % 2 == 0 {
                "pelican.jpeg"
            } else {
                "pumpkin.png"
            }
        })
        .collect();
    let replies = seed_requester(&flow.socket, REQUESTER_TOKEN, flow.images.path(), &fnames).await;
    assert_eq!(replies.len(), 200);
    let mut ids = std::collections::HashSet::new();
    let mut labels: HashMap<String, usize> = HashMap::new();
    for reply in &replies {
        let v: Value = serde_json::from_str(reply).unwrap();
        assert_eq!(v["status"], "ok", "{v}");
        assert!(
            ids.insert(v["request_id"].as_str().unwrap().to_owned()),
            "duplicate {v}"
        );
        *labels
            .entry(v["label"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(labels.get("red"), Some(&100), "{labels:?}");
    assert_eq!(labels.get("jack-o'-lantern"), Some(&100), "{labels:?}");
}

// ---------------------------------------------------------------------------------------------
// Start order, with every component a process of its own
// ---------------------------------------------------------------------------------------------

/// The directory holding the workspace's executables: the test binary lives in its `deps/`.
fn bin_dir() -> PathBuf {
    let service = e2e_tests::workspace_binary("classify-service");
    e2e_tests::workspace_binary("classify-ipc-adapter");
    service.parent().expect("a folder").to_path_buf()
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process killed when dropped, its stderr kept in a file for failure messages.
struct Process {
    /// Kept so that dropping the `Process` kills it.
    _child: tokio::process::Child,
    log: PathBuf,
}

impl Process {
    fn spawn(command: &mut tokio::process::Command, log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Self { _child: child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The service executable as the service recipe starts it (no waiting for it: under a `Run`
/// step Greengrass counts it RUNNING as soon as the process exists).
fn service_process(images: &Path, port: u16, log: PathBuf) -> Process {
    let mut command = tokio::process::Command::new(bin_dir().join("classify-service"));
    command
        .arg("--model-dir")
        .arg(paths::model_dir("colour"))
        .arg("--dlr-library")
        .arg(paths::libdlr_path())
        .arg("--allowed-dir")
        .arg(images)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--workers", "1"]);
    Process::spawn(&mut command, log)
}

/// `classify-ipc-adapter wait-ready FILE`, as a script waits.
async fn wait_ready(file: &Path, waiting_for: &[&Process]) {
    let status = tokio::process::Command::new(bin_dir().join("classify-ipc-adapter"))
        .arg("wait-ready")
        .arg(file)
        .args(["--timeout-ms", "30000"])
        .kill_on_drop(true)
        .status()
        .await
        .unwrap();
    let logs: Vec<String> = waiting_for.iter().map(|p| p.log()).collect();
    assert!(
        status.success(),
        "{} never appeared:\n{}",
        file.display(),
        logs.join("\n---\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_as_greengrass_starts_them_every_first_request_is_answered_20_times() {
    let images = tempfile::tempdir().unwrap();
    draw_images(images.path());
    let adapter_bin = bin_dir().join("classify-ipc-adapter");
    for round in 0..20 {
        let flavour = if round % 2 == 0 { "classic" } else { "lite" };
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("gg.sock");
        let port = free_port();

        // The nucleus is up before any component.
        let emulator_ready = dir.path().join("emulator.ready");
        let mut command = tokio::process::Command::new(&adapter_bin);
        command
            .arg("emulate")
            .arg("--socket")
            .arg(&socket)
            .args(["--flavour", flavour])
            .arg("--access-control")
            .arg(recipe(ADAPTER))
            .arg("--access-control")
            .arg(recipe(REQUESTER))
            .arg("--ready-file")
            .arg(&emulator_ready);
        let emulator = Process::spawn(&mut command, dir.path().join("emulator.log"));
        wait_ready(&emulator_ready, &[&emulator]).await;

        // The service (Run: RUNNING at once), then its dependent the adapter right away.
        let service = service_process(images.path(), port, dir.path().join("service.log"));
        let adapter_ready = dir.path().join("adapter.ready");
        let mut command = tokio::process::Command::new(&adapter_bin);
        command
            .arg("run")
            .args(["--nucleus", flavour])
            .args(["--service-url", &format!("http://127.0.0.1:{port}")])
            .arg("--ready-file")
            .arg(&adapter_ready)
            .env(
                "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
                &socket,
            )
            .env("SVCUID", ADAPTER);
        let adapter = Process::spawn(&mut command, dir.path().join("adapter.log"));

        // The requester depends on the adapter: it starts once the adapter reported RUNNING,
        // which the adapter's ready file follows.
        wait_ready(&adapter_ready, &[&emulator, &service, &adapter]).await;
        // Without --token the emulator takes a component's name as its token.
        let replies = seed_requester(&socket, REQUESTER, images.path(), &["pumpkin.png"]).await;
        let v: Value = serde_json::from_str(&replies[0]).expect("JSON reply");
        assert_eq!(
            (v["status"].as_str(), v["label"].as_str()),
            (Some("ok"), Some("jack-o'-lantern")),
            "round {round} ({flavour}): {v}\nadapter:\n{}\nservice:\n{}",
            adapter.log(),
            service.log()
        );
        drop((adapter, service, emulator));
    }
}

/// The shell block of the README's IPC section (the one starting the emulator and the adapter).
fn readme_ipc_block() -> String {
    readme_block("classify-ipc-adapter run").expect("README has the IPC flow")
}

/// The README's first shell block containing `text`.
fn readme_block(text: &str) -> Option<String> {
    let readme = std::fs::read_to_string(paths::workspace_root().join("README.md")).unwrap();
    let mut blocks = readme
        .split("```sh\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap().to_owned());
    blocks.find(|b| b.contains(text))
}

/// The README block made runnable in a test: the binaries' folder and the `/tmp/` paths become
/// shell variables (`$README_BIN_DIR`, `$README_TMP`) set in the script's environment. No
/// path is pasted into the text, so no later rewrite can touch it, and a path with spaces
/// stays one word.
fn readme_script(block: &str) -> String {
    block
        .replace("$PWD/target/release", "\"$README_BIN_DIR\"")
        .replace("/tmp/", "\"$README_TMP\"/")
}

#[test]
fn readme_script_substitutes_the_block_only() {
    let script = readme_script(
        "export PATH=$PWD/target/release:$PATH\nrun --socket /tmp/gg.sock --dir \"$PWD/x\"",
    );
    assert_eq!(
        script,
        "export PATH=\"$README_BIN_DIR\":$PATH\nrun --socket \"$README_TMP\"/gg.sock --dir \"$PWD/x\""
    );
}

/// Runs the README's IPC flow from a checkout seen at a path that contains `/tmp/` and a
/// space (a symlink to this checkout), with the binaries at such a path too: the test must
/// pass wherever the checkout lives, including a fresh clone under `mktemp -d`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_ipc_flow_runs_as_written() {
    let block = readme_ipc_block();
    assert!(
        block.contains("wait-ready"),
        "the README waits for the adapter's readiness:\n{block}"
    );
    let stdout = run_readme_block(&block, "CLASSIFY_ADAPTER_SERVICE_URL").await;
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("a JSON reply");
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["label"], "jack-o'-lantern", "{v}");
}

/// The README's scheduled flow (the drop-in for AWS's component), run the same way: its last
/// line is the first result that reached the emulator's IoT Core, in AWS's document shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_scheduled_flow_runs_as_written() {
    let block = readme_block("classify-ipc-adapter schedule").expect("README has the flow");
    let stdout = run_readme_block(&block, "CLASSIFY_SCHEDULE_SERVICE_URL").await;
    let line: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("an IoT Core log line");
    assert_eq!(line["topic"], "ml/dlr/image-classification", "{line}");
    assert_eq!(
        line["component"],
        "com.example.ImageClassification.Scheduled"
    );
    let doc = &line["payload"];
    assert_eq!(doc["inference-type"], "image-classification", "{doc}");
    assert_eq!(
        doc["inference-results"][0]["Label"], "jack-o'-lantern",
        "{doc}"
    );
    assert!(doc["inference-results"][0]["Score"].is_string());
}

/// Runs a README shell block from a checkout seen at a path that contains `/tmp/` and a space
/// (a symlink to this checkout), with the binaries at such a path too, and the README's demo
/// service ("The service must be running first") at the URL given in `service_url_env`.
/// Returns its stdout.
async fn run_readme_block(block: &str, service_url_env: &str) -> String {
    let work = tempfile::tempdir().unwrap();
    // `.../tmp/my checkout` whatever TMPDIR is.
    let seen = work.path().join("tmp");
    std::fs::create_dir(&seen).unwrap();
    let root = seen.join("my checkout");
    std::os::unix::fs::symlink(paths::workspace_root(), &root).unwrap();
    let bins = seen.join("my bin");
    std::os::unix::fs::symlink(bin_dir(), &bins).unwrap();
    let private_tmp = seen.join("private tmp");
    std::fs::create_dir(&private_tmp).unwrap();

    assert!(
        !block.contains("sleep"),
        "the README waits for events, not for time:\n{block}"
    );
    // Only the machine-specific parts change: where the executables are, and a private folder
    // instead of /tmp so that parallel runs do not meet.
    let script = readme_script(block);

    let port = free_port();
    let mut command = tokio::process::Command::new(bins.join("classify-service"));
    command
        .args(["--demo", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--dlr-library")
        .arg(paths::libdlr_path())
        .arg("--allowed-dir")
        .arg(root.join("generated/samples"));
    let service = Process::spawn(&mut command, work.path().join("service.log"));

    use std::os::unix::process::CommandExt as _;
    let mut sh = std::process::Command::new("sh");
    sh.arg("-c")
        .arg(format!("set -e\n{script}"))
        .current_dir(&root)
        // As a shell started in that folder sees it (not the symlink's target).
        .env("PWD", &root)
        .env("README_BIN_DIR", &bins)
        .env("README_TMP", &private_tmp)
        .env(service_url_env, format!("http://127.0.0.1:{port}"))
        .stdin(Stdio::null())
        // Its own process group, so the background processes can be stopped after.
        .process_group(0);
    // Output to files: the background processes keep pipes open, files need no reader.
    let (out_path, err_path) = (work.path().join("out"), work.path().join("err"));
    sh.stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    let mut child = tokio::process::Command::from(sh)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let group = child.id().unwrap().to_string();
    let status = tokio::time::timeout(Duration::from_secs(90), child.wait()).await;
    // The script leaves its background processes running, as on a laptop.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", "--", &format!("-{group}")])
        .status();
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    let status = status
        .unwrap_or_else(|_| panic!("the README flow hangs:\n{stdout}\n{stderr}"))
        .unwrap();
    assert!(
        status.success(),
        "README flow failed:\n{script}\nstdout: {stdout}\nstderr: {stderr}\nservice: {}",
        service.log()
    );
    stdout
}
