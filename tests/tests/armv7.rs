//! The armv7 (32-bit ARM, Greengrass `arm`) device artifacts that `cargo xtask dist` builds,
//! run under Debian's `qemu-arm` with the armhf C library of the cross toolchain: what can run
//! without an armv7 libdlr. The adapter answers requests and the scheduled mode publishes to IoT
//! Core, both against the nucleus emulator (the x86_64 host's, in this process) and a service on
//! the host; the armv7 service says plainly that libdlr is missing.
//!
//! `cargo xtask test` builds the artifacts and installs qemu-user before the tests; alone, run
//! `cargo xtask dist --target armv7-unknown-linux-gnueabihf` first.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use classify_service::Config;
use dlr_test_models::paths;
use e2e_tests::{RunningService, service_config};
use greengrass_ipc::Flavour;
use greengrass_ipc::client::{ClientConfig, IpcClient};
use greengrass_ipc::pubsub::Payload;
use greengrass_ipc_emulator::acl::AccessControl;
use greengrass_ipc_emulator::emulator::{self, EmulatorConfig};
use serde_json::{Value, json};
use xtask::dist;

/// Bound on waiting for what must happen (emulated ARM is slow): not a verdict.
const WAIT: Duration = Duration::from_secs(120);
/// The armhf C library and loader of Debian's `libc6-armhf-cross`.
const ARMHF_SYSROOT: &str = "/usr/arm-linux-gnueabihf";

/// The armv7 build of `binary` (a `dist` artifact).
fn armv7(package: &'static str, binary: &'static str) -> PathBuf {
    let artifact = dist::Artifact {
        package,
        binary,
        target: dist::ARMV7,
    };
    let path = artifact.built_path(&paths::workspace_root());
    assert!(
        path.exists(),
        "{} not found: `cargo xtask dist` builds it",
        path.display()
    );
    path
}

/// `qemu-arm` running `binary`, killed when dropped.
fn qemu(binary: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("qemu-arm");
    command
        .arg("-L")
        .arg(ARMHF_SYSROOT)
        .arg(binary)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// The adapter's and the scheduled component's policies, as their recipes grant them.
fn recipes_access_control() -> AccessControl {
    let recipe = |name: &str| {
        paths::workspace_root()
            .join("recipes")
            .join(name)
            .join("recipe.yaml")
    };
    let mut requester = AccessControl::from_value(&json!({"aws.greengrass.ipc.pubsub": {
        "com.example.Requester:pubsub:1": {
            "operations": ["aws.greengrass#PublishToTopic", "aws.greengrass#SubscribeToTopic"],
            "resources": ["local/inference", "local/result"]}}}))
    .unwrap();
    let AccessControl::Policies(policies) =
        AccessControl::from_files(&[recipe(dist::ADAPTER.name), recipe(dist::SCHEDULED.name)])
            .unwrap()
    else {
        unreachable!()
    };
    if let AccessControl::Policies(p) = &mut requester {
        p.extend(policies);
    }
    requester
}

#[tokio::test]
async fn the_armv7_service_says_plainly_that_libdlr_is_missing() {
    let home = tempfile::tempdir().unwrap();
    let output = qemu(&armv7("classify-service", "classify-service"))
        .args(["--demo", "--listen", "127.0.0.1:0"])
        .env_remove("DLR_LIBRARY_PATH")
        .env_remove("VIRTUAL_ENV")
        .env_remove("CONDA_PREFIX")
        .env("HOME", home.path())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    for words in ["libdlr.so not found", "DLR_LIBRARY_PATH", "variant.DLR"] {
        assert!(stderr.contains(words), "{words:?} in: {stderr}");
    }
    // The x86_64 library is refused for what it is, not loaded.
    let output = qemu(&armv7("classify-service", "classify-service"))
        .args(["--demo", "--listen", "127.0.0.1:0", "--dlr-library"])
        .arg(paths::libdlr_path())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("wrong ELF class"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_armv7_adapter_and_scheduled_mode_work_against_the_emulator() {
    let dir = tempfile::tempdir().unwrap();
    let service = RunningService::start(Config {
        allowed_dirs: vec![paths::samples_dir()],
        ..service_config("colour")
    })
    .await;
    let mut config = EmulatorConfig::new(dir.path().join("gg.sock"), Flavour::Lite);
    config.access_control = recipes_access_control();
    config.configurations.insert(
        dist::SCHEDULED.name.into(),
        json!({"ImageDirectory": paths::samples_dir(), "ImageName": "pumpkin.png",
               "InferenceInterval": "3600"}),
    );
    let emu = emulator::spawn(config).await.unwrap();
    let socket = emu.socket_path().to_owned();
    let env = |c: &mut tokio::process::Command, component: &str| {
        c.env(
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
            &socket,
        )
        .env("SVCUID", component);
    };
    let adapter_bin = armv7("classify-ipc-adapter", "classify-ipc-adapter");

    // The adapter: RUNNING once subscribed, then a request answered.
    let mut adapter = qemu(&adapter_bin);
    adapter
        .args(["run", "--service-url", &service.base_url()])
        .stderr(std::fs::File::create(dir.path().join("adapter.log")).unwrap());
    env(&mut adapter, dist::ADAPTER.name);
    let _adapter = adapter.spawn().unwrap();
    let log = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    tokio::time::timeout(WAIT, emu.wait_for_state(dist::ADAPTER.name, "RUNNING"))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the armv7 adapter never reported RUNNING:\n{}",
                log("adapter.log")
            )
        });
    let requester = IpcClient::connect(ClientConfig::new(&socket, "com.example.Requester"))
        .await
        .unwrap();
    let mut replies = requester.subscribe("local/result", None).await.unwrap();
    let request = json!({"image_dir": paths::samples_dir(), "fname": "pumpkin.png",
                         "request_id": "armv7"});
    requester
        .publish("local/inference", &Payload::Json(request))
        .await
        .unwrap();
    let reply = tokio::time::timeout(WAIT, async {
        loop {
            let event = replies.next().await.unwrap().unwrap();
            let text = match event.payload {
                Payload::Binary(bytes) => String::from_utf8(bytes).unwrap(),
                Payload::Json(v) => v.to_string(),
            };
            let reply: Value = serde_json::from_str(&text).unwrap();
            if reply["request_id"] == "armv7" {
                break reply;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no reply:\n{}", log("adapter.log")));
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["label"], "jack-o'-lantern", "{reply}");

    // The scheduled mode: the first result reaches IoT Core at start.
    let mut scheduled = qemu(&adapter_bin);
    scheduled
        .args(["schedule", "--service-url", &service.base_url()])
        .stderr(std::fs::File::create(dir.path().join("scheduled.log")).unwrap());
    env(&mut scheduled, dist::SCHEDULED.name);
    let _scheduled = scheduled.spawn().unwrap();
    let results = tokio::time::timeout(WAIT, emu.wait_for_iot_core(1))
        .await
        .unwrap_or_else(|_| panic!("no result:\n{}", log("scheduled.log")));
    let doc: Value = serde_json::from_slice(&results[0].message.payload).unwrap();
    assert_eq!(
        doc["inference-results"][0]["Label"], "jack-o'-lantern",
        "{doc}"
    );
    emu.shutdown().await;
}
