//! Pub/sub access control: each component is granted exactly its configured topics.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::*;
use classify_service::config as service_config;

const PUBLISH: &str = "aws.greengrass#PublishToTopic";
const SUBSCRIBE: &str = "aws.greengrass#SubscribeToTopic";

/// `(operation, topic)` pairs granted by a recipe's pub/sub access control.
fn pubsub_grants(recipe: &Value) -> BTreeSet<(String, String)> {
    let name = str_at(recipe, "/ComponentName");
    let acl = default_configuration(recipe)
        .get("accessControl")
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("{name}: no accessControl"));
    assert_eq!(
        acl.keys().collect::<Vec<_>>(),
        ["aws.greengrass.ipc.pubsub"],
        "{name}: only local pub/sub is granted"
    );
    let mut grants = BTreeSet::new();
    for (policy_name, policy) in acl["aws.greengrass.ipc.pubsub"].as_object().unwrap() {
        assert!(
            policy_name.starts_with(&format!("{name}:pubsub:")),
            "{name}: policy name {policy_name}"
        );
        let operations = policy["operations"].as_array().unwrap();
        let resources = policy["resources"].as_array().unwrap();
        for op in operations {
            for resource in resources {
                let resource = resource.as_str().unwrap();
                assert!(
                    !resource.contains(['*', '+', '#']),
                    "{name}: wildcard resource {resource}"
                );
                grants.insert((op.as_str().unwrap().to_owned(), resource.to_owned()));
            }
        }
    }
    grants
}

#[test]
fn access_control_grants_exactly_the_configured_topics() {
    let adapter = recipe(&dist::ADAPTER);
    let config = default_configuration(&adapter);
    let request = config["RequestTopic"].as_str().unwrap();
    let reply = config["ReplyTopic"].as_str().unwrap();
    assert_eq!(
        pubsub_grants(&adapter),
        BTreeSet::from([
            (SUBSCRIBE.to_owned(), request.to_owned()),
            (PUBLISH.to_owned(), reply.to_owned()),
            // The adapter's liveness probe to itself travels its own request topic.
            (PUBLISH.to_owned(), request.to_owned()),
        ])
    );

    let requester = recipe(&dist::REQUESTER);
    let requester_config = default_configuration(&requester);
    assert_eq!(requester_config["RequestTopic"], request);
    assert_eq!(requester_config["ReplyTopic"], reply);
    assert_eq!(
        pubsub_grants(&requester),
        BTreeSet::from([
            (PUBLISH.to_owned(), request.to_owned()),
            (SUBSCRIBE.to_owned(), reply.to_owned()),
        ])
    );

    // The scheduled component: PublishToIoTCore on its results topic, nothing else.
    let scheduled = recipe(&dist::SCHEDULED);
    let scheduled_config = default_configuration(&scheduled);
    let acl = scheduled_config["accessControl"].as_object().unwrap();
    assert_eq!(
        acl.keys().collect::<Vec<_>>(),
        ["aws.greengrass.ipc.mqttproxy"],
        "only IoT Core is granted"
    );
    let policies = acl["aws.greengrass.ipc.mqttproxy"].as_object().unwrap();
    assert_eq!(policies.len(), 1);
    let (name, policy) = policies.iter().next().unwrap();
    assert!(name.starts_with(&format!("{}:mqttproxy:", dist::SCHEDULED.name)));
    assert_eq!(
        policy["operations"],
        serde_json::json!(["aws.greengrass#PublishToIoTCore"])
    );
    assert_eq!(
        policy["resources"],
        serde_json::json!([scheduled_config["PublishResultsOnTopic"]])
    );

    let service = recipe(&dist::SERVICE);
    assert!(
        default_configuration(&service)
            .get("accessControl")
            .is_none(),
        "the service uses no IPC"
    );
}

#[test]
fn adapter_calls_the_service_where_it_listens() {
    let listen = default_configuration(&recipe(&dist::SERVICE))["Listen"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = default_configuration(&recipe(&dist::ADAPTER))["ServiceUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(url, format!("http://{listen}"));
    assert_eq!(listen, service_config::DEFAULT_LISTEN);
}
