//! Recipe-style access control for the emulator: local pub/sub
//! (`aws.greengrass.ipc.pubsub`) and the MQTT proxy to IoT Core (`aws.greengrass.ipc.mqttproxy`).
//!
//! The file holds what a Greengrass recipe puts under
//! `ComponentConfiguration.DefaultConfiguration.accessControl`, in JSON or YAML:
//!
//! ```json
//! {"aws.greengrass.ipc.pubsub": {
//!   "com.custom.requester:pubsub:1": {
//!     "policyDescription": "…",
//!     "operations": ["aws.greengrass#PublishToTopic", "aws.greengrass#SubscribeToTopic"],
//!     "resources": ["local/inference", "local/result"]}}}
//! ```
//!
//! A real nucleus applies a recipe's policies to that recipe's component; one emulator file serves
//! several components, so each policy applies to the component named by its id up to the first
//! `:` (component names cannot contain `:`). `aws.greengrass.ipc.mqttproxy` policies have the
//! same shape, with `aws.greengrass#PublishToIoTCore` and IoT Core topics. Also accepted: that
//! object wrapped in
//! `{"accessControl": …}`, or a whole recipe (then every policy belongs to its `ComponentName`).
//! Operations may be `*`; resources may use `*`, `+` and `#` (see [`greengrass_ipc::topic`]).

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use greengrass_ipc::iot_core::MQTTPROXY_SERVICE;
use greengrass_ipc::topic;

/// The local pub/sub IPC service.
pub const PUBSUB_SERVICE: &str = "aws.greengrass.ipc.pubsub";
/// The IPC services whose policies this module reads.
pub const SERVICES: [&str; 2] = [PUBSUB_SERVICE, MQTTPROXY_SERVICE];

/// One policy: a component may run `operations` on `resources`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The IPC service the policy is for, e.g. `aws.greengrass.ipc.pubsub`.
    pub service: String,
    /// Component the policy applies to.
    pub component: String,
    /// Policy id as written in the file.
    pub id: String,
    /// Allowed operations, e.g. `aws.greengrass#PublishToTopic`, or `*`.
    pub operations: Vec<String>,
    /// Allowed topics or patterns.
    pub resources: Vec<String>,
}

/// A set of pub/sub policies, or "allow everything".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessControl {
    /// No file given: every component may do everything (developer convenience).
    AllowAll,
    /// Only what the policies allow.
    Policies(Vec<Policy>),
}

/// Why an access-control file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AclError {
    /// The file could not be read.
    #[error("cannot read access-control file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// Neither valid JSON nor valid YAML.
    #[error("access-control file is neither JSON nor YAML: {0}")]
    Parse(String),
    /// Parsed, but not of the expected shape.
    #[error("invalid access-control document: {0}")]
    Shape(String),
}

#[derive(Deserialize)]
struct RawPolicy {
    #[serde(default)]
    operations: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
}

impl AccessControl {
    /// Reads a JSON or YAML file.
    pub fn from_file(path: &Path) -> Result<Self, AclError> {
        Self::from_value(&crate::configuration::read_document(path)?)
    }

    /// Reads and combines several files (e.g. the recipes of every component that talks over
    /// the emulator). No files at all means [`AccessControl::AllowAll`].
    pub fn from_files(paths: &[impl AsRef<Path>]) -> Result<Self, AclError> {
        if paths.is_empty() {
            return Ok(Self::AllowAll);
        }
        let mut combined = Vec::new();
        for path in paths {
            if let Self::Policies(policies) = Self::from_file(path.as_ref())? {
                combined.extend(policies);
            }
        }
        Ok(Self::Policies(combined))
    }

    /// Parses JSON or YAML text.
    pub fn from_text(text: &str) -> Result<Self, AclError> {
        Self::from_value(&crate::configuration::parse_document(text)?)
    }

    /// Interprets an already parsed document.
    pub fn from_value(doc: &Value) -> Result<Self, AclError> {
        let recipe_component = doc
            .get("ComponentName")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let access = doc
            .pointer("/ComponentConfiguration/DefaultConfiguration/accessControl")
            .or_else(|| doc.get("accessControl"))
            .unwrap_or(doc);
        let services = access
            .as_object()
            .ok_or_else(|| AclError::Shape("expected an object".into()))?;
        let mut policies = Vec::new();
        let mut found = false;
        for service in SERVICES {
            let Some(section) = services.get(service) else {
                continue;
            };
            found = true;
            let map = section.as_object().ok_or_else(|| {
                AclError::Shape(format!("{service} must map policy ids to policies"))
            })?;
            for (id, raw) in map {
                let raw: RawPolicy = serde_json::from_value(raw.clone())
                    .map_err(|e| AclError::Shape(format!("policy {id}: {e}")))?;
                let component = recipe_component
                    .clone()
                    .unwrap_or_else(|| id.split(':').next().unwrap_or(id).to_owned());
                policies.push(Policy {
                    service: service.to_owned(),
                    component,
                    id: id.clone(),
                    operations: raw.operations,
                    resources: raw.resources,
                });
            }
        }
        if !found && !services.is_empty() && recipe_component.is_none() {
            // Catch a mistyped service key rather than silently denying everything.
            let keys: Vec<_> = services.keys().cloned().collect();
            return Err(AclError::Shape(format!(
                "no {} section (found keys: {})",
                SERVICES.join(" or "),
                keys.join(", ")
            )));
        }
        Ok(Self::Policies(policies))
    }

    /// Whether `component` may run `operation` of the IPC `service` on `topic`.
    pub fn allows(&self, component: &str, service: &str, operation: &str, topic: &str) -> bool {
        match self {
            Self::AllowAll => true,
            Self::Policies(policies) => policies.iter().any(|p| {
                p.component == component
                    && p.service == service
                    && p.operations.iter().any(|o| o == operation || o == "*")
                    && p.resources
                        .iter()
                        .any(|r| topic::resource_matches(r, topic))
            }),
        }
    }

    /// Components named by the policies (used to accept tokens equal to component names).
    pub fn components(&self) -> Vec<String> {
        match self {
            Self::AllowAll => Vec::new(),
            Self::Policies(p) => {
                let mut names: Vec<String> = p.iter().map(|p| p.component.clone()).collect();
                names.sort();
                names.dedup();
                names
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUB: &str = "aws.greengrass#PublishToTopic";
    const SUB: &str = "aws.greengrass#SubscribeToTopic";

    #[test]
    fn several_files_combine_their_policies() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        let b = dir.path().join("b.yaml");
        std::fs::write(
            &a,
            r#"{"aws.greengrass.ipc.pubsub": {"com.a:pubsub:1": {"operations": ["aws.greengrass#PublishToTopic"], "resources": ["t/in"]}}}"#,
        )
        .unwrap();
        std::fs::write(
            &b,
            "aws.greengrass.ipc.pubsub:\n  com.b:pubsub:1:\n    operations: [\"aws.greengrass#SubscribeToTopic\"]\n    resources: [t/out]\n",
        )
        .unwrap();
        let acl = AccessControl::from_files(&[&a, &b]).unwrap();
        assert!(acl.allows("com.a", PUBSUB_SERVICE, PUB, "t/in"));
        assert!(acl.allows("com.b", PUBSUB_SERVICE, SUB, "t/out"));
        assert!(!acl.allows("com.a", PUBSUB_SERVICE, SUB, "t/out"));
        let none: [&Path; 0] = [];
        assert_eq!(
            AccessControl::from_files(&none).unwrap(),
            AccessControl::AllowAll
        );
        assert!(AccessControl::from_files(&[dir.path().join("missing.json")]).is_err());
    }

    #[test]
    fn json_policies() {
        let acl = AccessControl::from_text(
            r#"{"aws.greengrass.ipc.pubsub": {"com.custom.requester:pubsub:1": {
                "policyDescription": "x", "operations": ["aws.greengrass#PublishToTopic"],
                "resources": ["local/inference"]}}}"#,
        )
        .unwrap();
        assert!(acl.allows(
            "com.custom.requester",
            PUBSUB_SERVICE,
            PUB,
            "local/inference"
        ));
        assert!(!acl.allows(
            "com.custom.requester",
            PUBSUB_SERVICE,
            SUB,
            "local/inference"
        ));
        assert!(!acl.allows("com.custom.requester", PUBSUB_SERVICE, PUB, "local/result"));
        assert!(!acl.allows("other", PUBSUB_SERVICE, PUB, "local/inference"));
        assert_eq!(acl.components(), vec!["com.custom.requester".to_owned()]);
    }

    #[test]
    fn yaml_recipe() {
        let acl = AccessControl::from_text(
            "ComponentName: com.example.Adapter\nComponentConfiguration:\n  DefaultConfiguration:\n    accessControl:\n      aws.greengrass.ipc.pubsub:\n        policy:pubsub:1:\n          operations: ['*']\n          resources: ['local/#']\n",
        )
        .unwrap();
        assert!(acl.allows(
            "com.example.Adapter",
            PUBSUB_SERVICE,
            SUB,
            "local/inference"
        ));
        assert!(!acl.allows("com.example.Adapter", PUBSUB_SERVICE, SUB, "remote/x"));
    }

    #[test]
    fn mqttproxy_policies_are_their_own_service() {
        let acl = AccessControl::from_text(
            "ComponentName: com.example.Scheduled\nComponentConfiguration:\n  DefaultConfiguration:\n    accessControl:\n      aws.greengrass.ipc.mqttproxy:\n        com.example.Scheduled:mqttproxy:1:\n          operations: ['aws.greengrass#PublishToIoTCore']\n          resources: ['ml/dlr/image-classification']\n      aws.greengrass.ipc.pubsub:\n        com.example.Scheduled:pubsub:1:\n          operations: ['*']\n          resources: ['local/#']\n",
        )
        .unwrap();
        let iot = "aws.greengrass#PublishToIoTCore";
        let c = "com.example.Scheduled";
        assert!(acl.allows(c, MQTTPROXY_SERVICE, iot, "ml/dlr/image-classification"));
        assert!(!acl.allows(c, MQTTPROXY_SERVICE, iot, "ml/other"));
        // A pub/sub policy never authorises IoT Core, even with `*` operations, nor the reverse.
        assert!(!acl.allows(c, MQTTPROXY_SERVICE, iot, "local/x"));
        assert!(acl.allows(c, PUBSUB_SERVICE, PUB, "local/x"));
        assert!(!acl.allows(c, PUBSUB_SERVICE, PUB, "ml/dlr/image-classification"));
        let only_mqtt = AccessControl::from_text(
            r#"{"aws.greengrass.ipc.mqttproxy": {"com.a:mqttproxy:1": {"operations": ["aws.greengrass#PublishToIoTCore"], "resources": ["a/#"]}}}"#,
        )
        .unwrap();
        assert!(only_mqtt.allows("com.a", MQTTPROXY_SERVICE, iot, "a/b"));
    }

    #[test]
    fn wrong_service_key_is_an_error() {
        assert!(AccessControl::from_text(r#"{"aws.greengrass.ipc.pubsubb": {}}"#).is_err());
    }
}
