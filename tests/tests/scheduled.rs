//! The scheduled component (`classify-ipc-adapter schedule`, the drop-in for AWS's
//! `aws.greengrass.DLRImageClassification`) with every part real: its recipe's Run script run
//! under `sh` as Greengrass runs it (recipe variables substituted from the DefaultConfiguration
//! merged with the test's deployment, `Setenv`, socket and token in the environment), the nucleus
//! emulator serving that configuration and enforcing the recipe's accessControl while recording
//! what reaches IoT Core, and the classification service on a real socket running the real
//! EfficientNet-Lite0 through libdlr on real photos.
//!
//! No clock decides a verdict: the tests wait for the emulator's IoT Core record and for lines in
//! the component's log; the interval is checked from the documents' own timestamps, with a lower
//! bound only (a schedule cannot run early without being wrong).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use dlr_test_models::paths;
use e2e_tests::{RunningService, service_config};
use greengrass_ipc::Flavour;
use greengrass_ipc::iot_core::Qos;
use greengrass_ipc_emulator::acl::AccessControl;
use greengrass_ipc_emulator::emulator::{self, EmulatorConfig, EmulatorHandle, IotCoreRecord};
use serde_json::{Value, json};

const COMPONENT: &str = "com.example.ImageClassification.Scheduled";
const TOPIC: &str = "ml/dlr/image-classification";
/// A second topic the component's policy allows.
const OTHER_TOPIC: &str = "fleet/results";
/// The local pub/sub topic of results and errors, and a component that watches it.
const LOCAL_TOPIC: &str = "local/scheduled";
const WATCHER: &str = "com.example.Watcher";
/// Bound on waiting for an event that must come: a guard against hanging, not a verdict.
const WAIT: Duration = Duration::from_secs(90);

fn recipe_path() -> PathBuf {
    paths::workspace_root()
        .join("recipes")
        .join(COMPONENT)
        .join("recipe.yaml")
}

/// The recipe's accessControl, plus what a deployment moving the results to [`OTHER_TOPIC`]
/// merges.
fn access_control() -> AccessControl {
    let AccessControl::Policies(mut policies) = AccessControl::from_file(&recipe_path()).unwrap()
    else {
        panic!("the recipe has policies");
    };
    let AccessControl::Policies(other) = AccessControl::from_value(&json!({
        "aws.greengrass.ipc.mqttproxy": {
            format!("{COMPONENT}:mqttproxy:2"): {
                "operations": ["aws.greengrass#PublishToIoTCore"],
                "resources": [OTHER_TOPIC]
            }
        },
        "aws.greengrass.ipc.pubsub": {
            format!("{COMPONENT}:pubsub:1"): {
                "operations": ["aws.greengrass#PublishToTopic"],
                "resources": [LOCAL_TOPIC]
            },
            format!("{WATCHER}:pubsub:1"): {
                "operations": ["aws.greengrass#SubscribeToTopic"],
                "resources": [LOCAL_TOPIC]
            }
        }
    }))
    .unwrap() else {
        unreachable!()
    };
    policies.extend(other);
    AccessControl::Policies(policies)
}

/// The x86_64 manifest's Run script and Setenv with `{artifacts:path}` and every
/// `{configuration:/Key}` substituted, as the nucleus does before running it.
fn run_script(configuration: &Value, artifacts: &Path) -> (String, Vec<(String, String)>) {
    let manifest = e2e_tests::amd64_manifest(COMPONENT);
    let substitute = |text: &str| {
        let mut text = text.replace("{artifacts:path}", &artifacts.display().to_string());
        for (key, value) in configuration.as_object().unwrap() {
            if let Some(value) = value.as_str() {
                text = text.replace(&format!("{{configuration:/{key}}}"), value);
            }
        }
        assert!(
            !text.contains('{'),
            "an unsubstituted recipe variable: {text}"
        );
        text
    };
    let lifecycle = &manifest["Lifecycle"];
    let script = substitute(lifecycle["Run"]["Script"].as_str().unwrap());
    let env = lifecycle["Setenv"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), substitute(v.as_str().unwrap())))
        .collect();
    (script, env)
}

/// The workspace's `classify-ipc-adapter` executable.
fn adapter_bin() -> PathBuf {
    e2e_tests::workspace_binary("classify-ipc-adapter")
}

/// Copies a real photo to `dir/name` by a rename, so that a reader never sees half a file.
fn put_photo(photo: &str, dir: &Path, name: &str) {
    put_bytes(&std::fs::read(paths::photo(photo)).unwrap(), dir, name);
}

fn put_bytes(bytes: &[u8], dir: &Path, name: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// The emulator, the real service and the scheduled component as a process.
struct Scheduled {
    dir: tempfile::TempDir,
    images: PathBuf,
    emulator: EmulatorHandle,
    service: RunningService,
    child: tokio::process::Child,
    log: PathBuf,
}

impl Scheduled {
    async fn start(configuration: Value) -> Self {
        Self::start_on(Flavour::Classic, configuration).await
    }

    async fn start_on(flavour: Flavour, configuration: Value) -> Self {
        Self::start_with(flavour, configuration, None, &[]).await
    }

    /// `offline`: the cloud is unreachable while this file exists (checked before the component
    /// starts). `env`: more variables for the component's process.
    async fn start_with(
        flavour: Flavour,
        configuration: Value,
        offline: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        std::fs::create_dir(&images).unwrap();
        put_photo("chelsea.png", &images, "cat.png");
        let service = RunningService::start(service_config("efficientnet-lite0")).await;

        // The deployment: the recipe's defaults, merged with where the service listens, the
        // nucleus flavour, the image and the test's own changes.
        let mut deployed =
            greengrass_ipc_emulator::configuration::recipe_defaults(&[recipe_path()])
                .unwrap()
                .remove(COMPONENT)
                .expect("the recipe's DefaultConfiguration");
        let nucleus = match flavour {
            Flavour::Classic => "classic",
            Flavour::Lite => "lite",
        };
        greengrass_ipc::configuration::merge(
            &mut deployed,
            &json!({"ServiceUrl": service.base_url(), "Nucleus": nucleus,
                    "ImageDirectory": images, "ImageName": "cat.png"}),
        );
        greengrass_ipc::configuration::merge(&mut deployed, &configuration);
        let mut config = EmulatorConfig::new(dir.path().join("gg.sock"), flavour);
        config.access_control = access_control();
        config
            .configurations
            .insert(COMPONENT.into(), deployed.clone());
        config.cloud_unreachable_while = offline.map(Path::to_path_buf);
        let emulator = emulator::spawn(config).await.unwrap();

        // The component's artifact folder, holding the binary under the recipe's file name.
        let artifacts = dir.path().join("artifacts");
        std::fs::create_dir(&artifacts).unwrap();
        std::os::unix::fs::symlink(adapter_bin(), artifacts.join("classify-ipc-adapter-x86_64"))
            .unwrap();
        let env_extra = env;
        let (script, env) = run_script(&deployed, &artifacts);
        let log = dir.path().join("scheduled.log");
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .envs(env)
            .envs(env_extra.iter().copied())
            .env(
                "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
                emulator.socket_path(),
            )
            .env("SVCUID", COMPONENT)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Self {
            dir,
            images,
            emulator,
            service,
            child,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the `n`-th message to reach IoT Core and returns them all.
    async fn results(&self, n: usize) -> Vec<IotCoreRecord> {
        tokio::time::timeout(WAIT, self.emulator.wait_for_iot_core(n))
            .await
            .unwrap_or_else(|_| panic!("no result {n}; the component's log:\n{}", self.log()))
    }

    /// Waits until the log has at least `n` lines containing `text`.
    async fn log_lines(&self, text: &str, n: usize) {
        let found = tokio::time::timeout(WAIT, async {
            while self.log().matches(text).count() < n {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(found.is_ok(), "{n}× {text:?} never logged:\n{}", self.log());
    }

    /// SIGTERM, as Greengrass stops a component; expects a clean exit.
    async fn stop(mut self) {
        let pid = self.child.id().expect("still running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap();
        assert!(exit.success(), "{exit:?}\n{}", self.log());
        self.service.stop().await.unwrap();
        self.emulator.shutdown().await;
        drop(self.dir);
    }
}

fn document(record: &IotCoreRecord) -> Value {
    document_on(record, TOPIC)
}

fn document_on(record: &IotCoreRecord, topic: &str) -> Value {
    assert_eq!(record.component, COMPONENT);
    assert_eq!(record.message.topic_name, topic);
    assert_eq!(record.message.qos, Qos::AtLeastOnce, "AWS's QoS 1");
    serde_json::from_slice(&record.message.payload).expect("a JSON document")
}

fn labels(doc: &Value) -> Vec<String> {
    doc["inference-results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Label"].as_str().unwrap().to_owned())
        .collect()
}

fn timestamp(doc: &Value) -> time::OffsetDateTime {
    let text = doc["timestamp"].as_str().unwrap();
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{text} is not ISO 8601 / RFC 3339: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classifies_at_start_then_every_interval_reading_the_file_fresh_and_survives_a_missing_one()
{
    let s = Scheduled::start(json!({"InferenceInterval": "1"})).await;

    // The first result comes at start, in AWS's document shape.
    let first = document(&s.results(1).await[0]);
    assert_eq!(first["inference-type"], "image-classification");
    assert_eq!(
        first["inference-description"],
        "Top 5 predictions with score 0.3 or above "
    );
    let results = first["inference-results"].as_array().unwrap();
    assert!(!results.is_empty() && results.len() <= 5, "{first}");
    for r in results {
        assert_eq!(r.as_object().unwrap().len(), 2, "Label and Score only: {r}");
        let score: f64 = r["Score"]
            .as_str()
            .expect("Score is a string")
            .parse()
            .unwrap();
        assert!(
            (0.3..=1.0).contains(&score),
            "a probability over the threshold: {r}"
        );
    }
    assert!(
        labels(&first)[0].contains("cat"),
        "chelsea is a cat: {first}"
    );
    assert_eq!(timestamp(&first).offset(), time::UtcOffset::UTC);
    assert_eq!(
        first["image-path"],
        s.images.join("cat.png").display().to_string()
    );
    assert_eq!(first["model"]["name"], "efficientnet-lite0");

    // Then one per interval: four results span at least three intervals.
    let four = s.results(4).await;
    let span = timestamp(&document(&four[3])) - timestamp(&document(&four[0]));
    assert!(
        span >= time::Duration::milliseconds(2500),
        "4 results of a 1 s schedule within {span}"
    );

    // The file is read fresh at every tick: a replaced photo is seen.
    put_photo("coffee.png", &s.images, "cat.png");
    let coffee = ["espresso", "cup", "coffee mug"];
    let mut n = four.len();
    loop {
        n += 1;
        let doc = document(&s.results(n).await[n - 1]);
        if coffee.contains(&labels(&doc)[0].as_str()) {
            break;
        }
        assert!(n < four.len() + 5, "the new photo was never classified");
    }

    // A missing image is a logged error, and the schedule goes on until it is back.
    std::fs::remove_file(s.images.join("cat.png")).unwrap();
    s.log_lines("does not exist", 2).await;
    let before = s.emulator.iot_core_messages().len();
    put_photo("chelsea.png", &s.images, "cat.png");
    let back = s.results(before + 2).await;
    assert!(labels(&document(&back[before + 1]))[0].contains("cat"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthorised_topic_is_logged_and_the_schedule_goes_on() {
    let s = Scheduled::start(json!({
        "InferenceInterval": "0.5",
        "PublishResultsOnTopic": "not/in/the/policy",
        "TopK": "2",
        "ScoreThreshold": "0"
    }))
    .await;
    s.log_lines("not authorised to publish to IoT Core", 3)
        .await;
    assert!(s.emulator.iot_core_messages().is_empty());
    // Each run still classified, with the configured options.
    s.log_lines("Top 2 predictions with score 0 or above", 3)
        .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_change_takes_effect_at_once_without_a_restart() {
    for flavour in [Flavour::Classic, Flavour::Lite] {
        // An hour between runs: every result after the first comes from a change.
        let s = Scheduled::start_on(flavour, json!({})).await;
        put_photo("coffee.png", &s.images, "coffee.png");
        let image = |name: &str| s.images.join(name).display().to_string();
        let mut base = s.emulator.configuration(COMPONENT).unwrap();
        greengrass_ipc::configuration::merge(&mut base, &json!({"ImageName": "cat.png"}));
        let with = |changes: Value| {
            let mut c = base.clone();
            greengrass_ipc::configuration::merge(&mut c, &changes);
            c
        };
        let pid = s.child.id();
        assert_eq!(
            document(&s.results(1).await[0])["image-path"],
            image("cat.png")
        );

        // A new image: classified at once.
        s.emulator
            .set_configuration(COMPONENT, with(json!({"ImageName": "coffee.png"})));
        let second = document(&s.results(2).await[1]);
        assert_eq!(second["image-path"], image("coffee.png"), "{flavour:?}");

        // A new topic and options, in one deployment (several events, one classification).
        s.emulator.set_configuration(
            COMPONENT,
            with(
                json!({"ImageName": "coffee.png", "PublishResultsOnTopic": OTHER_TOPIC,
                        "TopK": "1", "ScoreThreshold": "0.01"}),
            ),
        );
        let third = document_on(&s.results(3).await[2], OTHER_TOPIC);
        assert_eq!(
            third["inference-description"],
            "Top 1 predictions with score 0.01 or above "
        );

        // A bad interval is refused and classifies nothing; the next good change does.
        s.emulator.set_configuration(
            COMPONENT,
            with(
                json!({"ImageName": "coffee.png", "PublishResultsOnTopic": OTHER_TOPIC,
                        "TopK": "1", "ScoreThreshold": "0.01", "InferenceInterval": "-1"}),
            ),
        );
        s.log_lines("InferenceInterval", 1).await;
        s.emulator
            .set_configuration(COMPONENT, with(json!({"InferenceInterval": "-1"})));
        let fourth = s.results(4).await;
        let fourth = document(&fourth[3]);
        assert_eq!(
            fourth["image-path"],
            image("cat.png"),
            "{flavour:?}: the refused change classified nothing"
        );
        assert!(
            s.log().contains("configuration value refused"),
            "{}",
            s.log()
        );

        // A shorter interval: the schedule restarts with it.
        s.emulator
            .set_configuration(COMPONENT, with(json!({"InferenceInterval": "0.3"})));
        s.results(8).await;
        assert_eq!(s.child.id(), pid, "the same process throughout");
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_and_error_documents_reach_the_local_topic_and_a_bad_image_never_stops_it() {
    for flavour in [Flavour::Classic, Flavour::Lite] {
        // No image yet.
        let s = Scheduled::start_on(
            flavour,
            json!({"InferenceInterval": "0.3", "ImageName": "frame.jpg",
                   "PublishResultsOnLocalTopic": LOCAL_TOPIC}),
        )
        .await;
        let pid = s.child.id();
        let mut watcher = greengrass_ipc::client::IpcClient::connect(
            greengrass_ipc::client::ClientConfig::new(s.emulator.socket_path(), WATCHER),
        )
        .await
        .unwrap()
        .subscribe(LOCAL_TOPIC, None)
        .await
        .unwrap();
        let frame = s.images.join("frame.jpg").display().to_string();
        let mut next_local = async || -> (Vec<u8>, Value) {
            let event = tokio::time::timeout(WAIT, watcher.next())
                .await
                .expect("a local document")
                .unwrap()
                .unwrap();
            let greengrass_ipc::pubsub::Payload::Binary(bytes) = event.payload else {
                panic!("a binaryMessage holding JSON text")
            };
            let doc = serde_json::from_slice(&bytes).unwrap();
            (bytes, doc)
        };
        let error_code = |doc: &Value| doc["error"]["code"].as_str().map(str::to_owned);

        // A missing image: an error document, nothing to IoT Core.
        let (_, missing) = next_local().await;
        assert_eq!(
            error_code(&missing).as_deref(),
            Some("not_found"),
            "{missing}"
        );
        assert_eq!(missing["image-path"], frame);
        assert!(
            missing["error"]["message"]
                .as_str()
                .unwrap()
                .contains("does not exist")
        );
        assert!(missing.get("inference-results").is_none());
        timestamp(&missing);

        // Not an image: the service's refusal, as an error document.
        put_bytes(b"these bytes are not a JPEG", &s.images, "frame.jpg");
        let mut seen = Vec::new();
        loop {
            let (_, doc) = next_local().await;
            let code = error_code(&doc);
            if code.as_deref() != Some("not_found") {
                assert_eq!(code.as_deref(), Some("invalid_image"), "{doc}");
                break;
            }
            seen.push(doc);
            assert!(seen.len() < 20, "the file was never read again");
        }
        assert!(s.emulator.iot_core_messages().is_empty());

        // A photo: the same document locally as to IoT Core.
        put_photo("chelsea.png", &s.images, "frame.jpg");
        let local = loop {
            let (bytes, doc) = next_local().await;
            if doc.get("inference-results").is_some() {
                break bytes;
            }
        };
        let cloud = s.results(1).await;
        assert_eq!(
            String::from_utf8_lossy(&cloud[0].message.payload),
            String::from_utf8_lossy(&local),
            "{flavour:?}"
        );
        assert_eq!(s.child.id(), pid, "the same process throughout");
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_results_are_kept_and_delivered_in_order_on_lite_and_spooled_by_classic() {
    for flavour in [Flavour::Lite, Flavour::Classic] {
        let flags = tempfile::tempdir().unwrap();
        let offline = flags.path().join("offline");
        std::fs::write(&offline, "").unwrap();
        let s = Scheduled::start_with(
            flavour,
            json!({"InferenceInterval": "0.3"}),
            Some(&offline),
            &[("CLASSIFY_SCHEDULE_SPOOL_MAX_RESULTS", "4")],
        )
        .await;
        let runs = |log: &str| log.matches(" classified run=").count();
        match flavour {
            // Lite has no spooler: the publishes fail; the component keeps 4 and drops the oldest.
            Flavour::Lite => s.log_lines("the oldest were dropped", 2).await,
            // The classic nucleus accepts QoS 1 while offline and spools it itself.
            Flavour::Classic => {
                let spooled = async {
                    while s.emulator.iot_core_spool().0 < 6 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                };
                tokio::time::timeout(WAIT, spooled).await.unwrap();
                assert!(!s.log().contains("cannot be reached"), "{}", s.log());
            }
        }
        assert!(s.emulator.iot_core_messages().is_empty());
        let made_offline = runs(&s.log());
        std::fs::remove_file(&offline).unwrap();

        let delivered = s.results(made_offline.min(4) + 3).await;
        let times: Vec<_> = delivered.iter().map(|r| timestamp(&document(r))).collect();
        assert!(
            times.windows(2).all(|w| w[0] < w[1]),
            "{flavour:?}: delivered in the order made, each once: {times:?}"
        );
        let first_run = s
            .log()
            .lines()
            .find(|l| l.contains(" classified run=1 "))
            .map(|l| {
                let doc = &l[l.find("result=").unwrap() + "result=".len()..];
                timestamp(&serde_json::from_str(doc).unwrap())
            })
            .unwrap();
        match flavour {
            Flavour::Lite => {
                assert!(times[0] > first_run, "the oldest results were dropped");
                assert!(s.log().contains("were delivered"), "{}", s.log());
            }
            Flavour::Classic => {
                assert_eq!(times[0], first_run, "the nucleus kept everything");
                assert!(delivered[0].spooled);
            }
        }
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_over_lite_s_frame_limit_is_refused_with_the_reason_never_trimmed_of_results() {
    // Every ImageNet class: a document of about 45 KB.
    let every_class = json!({"TopK": "1000", "ScoreThreshold": "0"});
    let s = Scheduled::start_on(Flavour::Lite, every_class.clone()).await;
    s.log_lines("lower TopK or raise ScoreThreshold", 1).await;
    assert!(s.emulator.iot_core_messages().is_empty());
    s.stop().await;
    // The classic nucleus takes up to 128 KB: the whole document arrives.
    let s = Scheduled::start_on(Flavour::Classic, every_class).await;
    let doc = document(&s.results(1).await[0]);
    assert_eq!(doc["inference-results"].as_array().unwrap().len(), 1000);
    assert!(doc.get("model").is_some(), "with its extras");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_new_image_is_classified_once_complete_and_a_burst_is_bounded() {
    use std::io::Write;
    let s = Scheduled::start_with(
        Flavour::Classic,
        json!({"ImageName": "", "ClassifyNewImages": "true"}),
        None,
        &[("CLASSIFY_SCHEDULE_NEW_IMAGES_MAX_PENDING", "3")],
    )
    .await;
    s.log_lines("classifying each new image in the folder", 1)
        .await;
    let path = |name: &str| s.images.join(name).display().to_string();

    // One being written (half of it so far), and one renamed into the folder complete.
    let cat = std::fs::read(paths::photo("chelsea.png")).unwrap();
    let mut slow = std::fs::File::create(s.images.join("slow.png")).unwrap();
    slow.write_all(&cat[..cat.len() / 2]).unwrap();
    slow.flush().unwrap();
    put_photo("coffee.png", &s.images, "cup.png");
    let first = document(&s.results(1).await[0]);
    assert_eq!(first["image-path"], path("cup.png"), "{first}");
    // The half-written one is read once it is closed, whole.
    slow.write_all(&cat[cat.len() / 2..]).unwrap();
    drop(slow);
    let second = document(&s.results(2).await[1]);
    assert_eq!(second["image-path"], path("slow.png"));
    assert!(labels(&second)[0].contains("cat"), "{second}");
    assert!(!s.log().contains("invalid_image"), "{}", s.log());

    // A burst of 20: the newest are classified, the oldest waiting ones dropped and counted.
    for n in 0..20 {
        put_photo("chelsea.png", &s.images, &format!("burst-{n:02}.png"));
    }
    let mut n = 2;
    loop {
        n += 1;
        let doc = document(&s.results(n).await[n - 1]);
        if doc["image-path"] == path("burst-19.png") {
            break;
        }
    }
    let burst = n - 2;
    assert!(
        burst < 20,
        "{burst} of 20 classified: the waiting room is bounded"
    );
    assert!(
        s.log().contains("the oldest waiting one was dropped"),
        "{}",
        s.log()
    );
    s.stop().await;
}
