//! The emulator's IoT Core side (PublishToIoTCore, the mqttproxy policies, an unreachable
//! cloud) and component configuration (GetConfiguration, SubscribeToConfigurationUpdate, the
//! watched configuration file), through the crate's client and the official Python client, in
//! both flavours.

use std::time::Duration;

use crate::support::*;
use greengrass_ipc::Flavour;
use greengrass_ipc::client::Subscription;
use greengrass_ipc::configuration::ConfigurationUpdateEvent;
use greengrass_ipc::iot_core::Qos;
use greengrass_ipc_emulator::acl::AccessControl;
use greengrass_ipc_emulator::emulator::{self, EmulatorConfig, EmulatorHandle};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const TOPIC: &str = "ml/dlr/image-classification";

#[tokio::test]
async fn authorised_publishes_reach_iot_core_and_others_are_refused() {
    for flavour in [Flavour::Classic, Flavour::Lite] {
        let dir = tempfile::tempdir().unwrap();
        let emu = start_emulator(dir.path(), flavour).await;
        let requester = client(emu.socket_path(), REQUESTER, flavour).await;
        requester
            .publish_to_iot_core(TOPIC, Qos::AtLeastOnce, b"{\"a\": 1}")
            .await
            .unwrap();
        // An MQTT wildcard in the policy covers one level.
        requester
            .publish_to_iot_core("fleet/cam-7/results", Qos::AtMostOnce, b"2")
            .await
            .unwrap();
        for topic in ["fleet/a/b/results", "local/result"] {
            let err = requester
                .publish_to_iot_core(topic, Qos::AtLeastOnce, b"x")
                .await
                .unwrap_err();
            assert!(err.is_unauthorized(), "{flavour:?} {topic}: {err}");
        }
        // A component with pub/sub rights only has none for IoT Core.
        let adapter = client(emu.socket_path(), ADAPTER, flavour).await;
        let err = adapter
            .publish_to_iot_core(TOPIC, Qos::AtLeastOnce, b"x")
            .await
            .unwrap_err();
        assert!(err.is_unauthorized(), "{flavour:?}: {err}");
        let got = emu.iot_core_messages();
        let seen: Vec<(&str, &str, Qos, &[u8], bool)> = got
            .iter()
            .map(|r| {
                (
                    r.component.as_str(),
                    r.message.topic_name.as_str(),
                    r.message.qos,
                    r.message.payload.as_slice(),
                    r.spooled,
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (
                    REQUESTER,
                    TOPIC,
                    Qos::AtLeastOnce,
                    &b"{\"a\": 1}"[..],
                    false
                ),
                (
                    REQUESTER,
                    "fleet/cam-7/results",
                    Qos::AtMostOnce,
                    &b"2"[..],
                    false
                ),
            ],
            "{flavour:?}"
        );
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn unreachable_cloud_classic_spools_qos1_lite_fails_the_publish() {
    // Classic: success while offline; QoS 1 kept and delivered in order later, QoS 0 dropped.
    let dir = tempfile::tempdir().unwrap();
    let emu = start_emulator(dir.path(), Flavour::Classic).await;
    let c = client(emu.socket_path(), REQUESTER, Flavour::Classic).await;
    emu.set_cloud_reachable(false);
    for (qos, payload) in [
        (Qos::AtLeastOnce, "first"),
        (Qos::AtMostOnce, "lost"),
        (Qos::AtLeastOnce, "second"),
    ] {
        c.publish_to_iot_core(TOPIC, qos, payload.as_bytes())
            .await
            .unwrap();
    }
    assert!(emu.iot_core_messages().is_empty());
    assert_eq!(emu.iot_core_spool(), (2, 1));
    emu.set_cloud_reachable(true);
    c.publish_to_iot_core(TOPIC, Qos::AtLeastOnce, b"third")
        .await
        .unwrap();
    let got = emu.wait_for_iot_core(3).await;
    let payloads: Vec<(&[u8], bool)> = got
        .iter()
        .map(|r| (r.message.payload.as_slice(), r.spooled))
        .collect();
    assert_eq!(
        payloads,
        vec![
            (&b"first"[..], true),
            (&b"second"[..], true),
            (&b"third"[..], false)
        ]
    );
    emu.shutdown().await;

    // Lite: no spooler, the publish fails while offline and works again afterwards.
    let dir = tempfile::tempdir().unwrap();
    let emu = start_emulator(dir.path(), Flavour::Lite).await;
    let c = client(emu.socket_path(), REQUESTER, Flavour::Lite).await;
    emu.set_cloud_reachable(false);
    let err = c
        .publish_to_iot_core(TOPIC, Qos::AtLeastOnce, b"offline")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, greengrass_ipc::client::IpcError::Service { model_type, message, .. }
            if model_type.ends_with("#ServiceError") && message.contains("Failed to publish")),
        "{err}"
    );
    assert_eq!(emu.iot_core_spool(), (0, 0));
    emu.set_cloud_reachable(true);
    c.publish_to_iot_core(TOPIC, Qos::AtLeastOnce, b"online")
        .await
        .unwrap();
    let got = emu.wait_for_iot_core(1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message.payload, b"online");
    emu.shutdown().await;
}

#[tokio::test]
async fn official_client_publishes_to_iot_core_with_each_flavours_rules() {
    for flavour in [Flavour::Classic, Flavour::Lite] {
        let dir = tempfile::tempdir().unwrap();
        let emu = start_emulator(dir.path(), flavour).await;
        let out = python_scenario(
            emu.socket_path(),
            REQUESTER,
            &["iot-core", "--topic", TOPIC],
            flavour,
        )
        .await;
        assert_eq!(out["qos1"], serde_json::Value::Null, "{out}");
        assert_eq!(out["qos0"], serde_json::Value::Null, "{out}");
        assert_eq!(out["other_topic"], "UnauthorizedError", "{out}");
        // The classic nucleus requires qos; lite defaults it to 0.
        let (no_qos, recorded) = match flavour {
            Flavour::Classic => (serde_json::json!("InvalidArgumentsError"), 2),
            Flavour::Lite => (serde_json::Value::Null, 3),
        };
        assert_eq!(out["no_qos"], no_qos, "{flavour:?}: {out}");
        let got = emu.iot_core_messages();
        assert_eq!(got.len(), recorded, "{flavour:?}: {got:?}");
        assert_eq!(got[0].message.qos, Qos::AtLeastOnce);
        assert_eq!(got[0].message.payload, b"{\"n\": 1}");
        assert_eq!(got[1].message.qos, Qos::AtMostOnce);
        emu.shutdown().await;
    }
}

/// An emulator whose requester has a recipe default configuration and a configuration file
/// (in `dir`) merged over it.
async fn emulator_with_configuration(dir: &std::path::Path, flavour: Flavour) -> EmulatorHandle {
    let file = dir.join("configuration.yaml");
    write_atomically(&file, format!("{REQUESTER}:\n  ImageName: pelican.jpeg\n")).unwrap();
    let mut config = EmulatorConfig::new(dir.join("nucleus.sock"), flavour);
    config.access_control = AccessControl::from_text(ACL).unwrap();
    config.configurations.insert(
        REQUESTER.into(),
        json!({"ImageName": "cat.jpeg", "InferenceInterval": "3600", "Nested": {"A": "1"}}),
    );
    config
        .configurations
        .insert(ADAPTER.into(), json!({"ReplyTopic": "local/result"}));
    config.configuration_file = Some(file);
    emulator::spawn(config).await.unwrap()
}

async fn next_update(updates: &mut Subscription<ConfigurationUpdateEvent>) -> Vec<String> {
    let event = tokio::time::timeout(WAIT, updates.next())
        .await
        .expect("an update event")
        .expect("the stream is open")
        .expect("a readable event");
    assert_eq!(event.component_name, REQUESTER);
    event.key_path
}

#[tokio::test]
async fn configuration_is_the_recipe_defaults_with_the_file_merged_and_updates_are_events() {
    for flavour in [Flavour::Classic, Flavour::Lite] {
        let dir = tempfile::tempdir().unwrap();
        let emu = emulator_with_configuration(dir.path(), flavour).await;
        let c = client(emu.socket_path(), REQUESTER, flavour).await;
        let whole = c.get_configuration(None, &[]).await.unwrap();
        assert_eq!(whole.component_name.as_deref(), Some(REQUESTER));
        assert_eq!(
            whole.value,
            json!({"ImageName": "pelican.jpeg", "InferenceInterval": "3600", "Nested": {"A": "1"}})
        );
        let leaf = c.get_configuration(None, &["InferenceInterval"]).await;
        assert_eq!(leaf.unwrap().value, json!({"InferenceInterval": "3600"}));
        let other = c.get_configuration(Some(ADAPTER), &[]).await.unwrap();
        assert_eq!(other.value, json!({"ReplyTopic": "local/result"}));
        for (component, path) in [(None, &["Missing"][..]), (Some("com.no.Such"), &[][..])] {
            let err = c.get_configuration(component, path).await.unwrap_err();
            assert!(
                err.to_string().contains("ResourceNotFoundError"),
                "{flavour:?} {component:?} {path:?}: {err}"
            );
        }

        let mut updates = c
            .subscribe_to_configuration_update(None, &[])
            .await
            .unwrap();
        assert!(eventually(|| emu.configuration_subscription_count() == 1).await);
        // A change of the watched file is an event naming the key; the value is read after.
        write_atomically(
            dir.path().join("configuration.yaml"),
            format!("{REQUESTER}:\n  ImageName: pelican.jpeg\n  InferenceInterval: \"10\"\n"),
        )
        .unwrap();
        let repeats = if flavour == Flavour::Lite { 2 } else { 1 };
        for _ in 0..repeats {
            assert_eq!(next_update(&mut updates).await, ["InferenceInterval"]);
        }
        let now = c.get_configuration(None, &["InferenceInterval"]).await;
        assert_eq!(now.unwrap().value, json!({"InferenceInterval": "10"}));

        // A removal: the classic nucleus reports it, lite does not (the next event is the change
        // that follows).
        emu.set_configuration(
            REQUESTER,
            json!({"ImageName": "pelican.jpeg", "InferenceInterval": "10"}),
        );
        emu.set_configuration(
            REQUESTER,
            json!({"ImageName": "pelican.jpeg", "InferenceInterval": "20"}),
        );
        if flavour == Flavour::Classic {
            assert_eq!(next_update(&mut updates).await, ["Nested"]);
        }
        for _ in 0..repeats {
            assert_eq!(next_update(&mut updates).await, ["InferenceInterval"]);
        }
        // Another component's change is not this subscription's event.
        emu.set_configuration(ADAPTER, json!({"ReplyTopic": "x"}));
        emu.set_configuration(
            REQUESTER,
            json!({"ImageName": "a.png", "InferenceInterval": "20"}),
        );
        for _ in 0..repeats {
            assert_eq!(next_update(&mut updates).await, ["ImageName"]);
        }

        // A file that does not parse changes nothing; the next good one applies.
        let file = dir.path().join("configuration.yaml");
        write_atomically(&file, "{ not: [valid").unwrap();
        write_atomically(&file, format!("{REQUESTER}:\n  ImageName: b.png\n")).unwrap();
        assert_eq!(next_update(&mut updates).await, ["ImageName"]);
        assert_eq!(emu.configuration(REQUESTER).unwrap()["ImageName"], "b.png");
        updates.close().await.unwrap();
        assert!(eventually(|| emu.configuration_subscription_count() == 0).await);
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn official_client_reads_configuration_and_receives_update_events() {
    for flavour in [Flavour::Classic, Flavour::Lite] {
        let dir = tempfile::tempdir().unwrap();
        let emu = emulator_with_configuration(dir.path(), flavour).await;
        let mut child = python_interactive(
            emu.socket_path(),
            REQUESTER,
            &["configuration", "--key", "InferenceInterval"],
        );
        let mut stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next_line = async || -> Value {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .expect("python answers")
                .unwrap()
                .expect("a line");
            serde_json::from_str(&line).unwrap()
        };
        let read = next_line().await;
        assert_eq!(read["component"], REQUESTER, "{read}");
        assert_eq!(read["whole"]["ImageName"], "pelican.jpeg", "{read}");
        assert_eq!(read["leaf"], json!({"InferenceInterval": "3600"}), "{read}");
        assert_eq!(read["missing"], "ResourceNotFoundError", "{read}");
        assert_eq!(next_line().await["step"], "subscribed");
        assert!(eventually(|| emu.configuration_subscription_count() == 1).await);
        emu.set_configuration(
            REQUESTER,
            json!({"ImageName": "pelican.jpeg", "InferenceInterval": "60", "Nested": {"A": "1"}}),
        );
        stdin.write_all(b"\n").await.unwrap();
        let seen = next_line().await;
        assert_eq!(
            seen["event"],
            json!({"component": REQUESTER, "key_path": ["InferenceInterval"]}),
            "{flavour:?}: {seen}"
        );
        assert_eq!(seen["value"], json!({"InferenceInterval": "60"}), "{seen}");
        drop(stdin);
        assert_eq!(next_line().await["ok"], true);
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success());
        emu.shutdown().await;
    }
}

/// Writes `text` to `path` by a rename, so the emulator's watcher never reads half a file.
fn write_atomically(
    path: impl AsRef<std::path::Path>,
    text: impl AsRef<[u8]>,
) -> std::io::Result<()> {
    let path = path.as_ref();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
