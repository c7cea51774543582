//! The emulator's IoT Core side (PublishToIoTCore, the mqttproxy policies, an unreachable
//! cloud), through the crate's client and the official Python client, in both flavours.

use crate::support::*;
use greengrass_ipc::Flavour;
use greengrass_ipc::iot_core::Qos;

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
