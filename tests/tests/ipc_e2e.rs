//! The whole offline path, with every part real: the official Python Greengrass client doing
//! what the seed's requester does ↔ the nucleus emulator (authorising with the committed
//! recipes' accessControl) ↔ the IPC adapter ↔ the classification service on a real socket ↔
//! the real libdlr 1.6.0 running a generated model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use classify_ipc_adapter::acl::AccessControl;
use classify_ipc_adapter::adapter::Adapter;
use classify_ipc_adapter::config::{AdapterConfig, Flavour, ReplyFormat};
use classify_ipc_adapter::emulator::{self, EmulatorConfig, EmulatorHandle};
use classify_service::Config;
use dlr_test_models::paths;
use e2e_tests::{RunningService, python, service_config};
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
    _service: RunningService,
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
    })
    .await
    .expect("emulator starts");

    let mut config = AdapterConfig::new(&socket, ADAPTER_TOKEN, service.base_url());
    config.ipc.nucleus = flavour;
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
        _service: service,
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
async fn seed_requester(flow: &Flow, image_dir: &Path, fnames: &[&str]) -> Vec<String> {
    let script = paths::workspace_root().join("tests/python/seed_requester.py");
    let mut command = tokio::process::Command::new(python());
    command
        .arg(script)
        .arg("--image-dir")
        .arg(image_dir)
        .env(
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
            &flow.socket,
        )
        .env("SVCUID", REQUESTER_TOKEN)
        .kill_on_drop(true);
    for fname in fnames {
        command.args(["--fname", fname]);
    }
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
    let replies = seed_requester(&flow, flow.images.path(), &["pelican.jpeg", "pumpkin.png"]).await;
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
    let mut replies =
        seed_requester(&flow, flow.images.path(), &["pelican.jpeg", "pumpkin.png"]).await;
    replies.sort();
    assert_eq!(replies, ["jack-o'-lantern", "red"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_forbidden_files_get_error_replies() {
    let flow = start_flow(Flavour::Lite, ReplyFormat::Json).await;
    let missing = seed_requester(&flow, flow.images.path(), &["no-such.jpeg"]).await;
    let v: Value = serde_json::from_str(&missing[0]).unwrap();
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["error"]["code"], "not_found", "{v}");

    let outside = tempfile::tempdir().unwrap();
    draw_images(outside.path());
    let forbidden = seed_requester(&flow, outside.path(), &["pelican.jpeg"]).await;
    let v: Value = serde_json::from_str(&forbidden[0]).unwrap();
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["error"]["code"], "forbidden_path", "{v}");
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
    let replies = seed_requester(&flow, flow.images.path(), &fnames).await;
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
