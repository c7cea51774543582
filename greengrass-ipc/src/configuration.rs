//! JSON shapes of a component's configuration operations: `GetConfiguration` and
//! `SubscribeToConfigurationUpdate`, and the rules both sides need (what a key path reads as,
//! which key paths a change touches).
//!
//! Facts (the official client's model and both nuclei's sources, see `greengrass-ipc.md`):
//! * `GetConfiguration {"componentName"?, "keyPath"?}` → `{"componentName", "value"}`. No key path
//!   is the whole configuration object; a key path to an object is that object; a key path to a
//!   leaf is `{"<leaf>": value}`; a missing key is `ResourceNotFoundError`.
//! * `SubscribeToConfigurationUpdate {"componentName"?, "keyPath"?}` answers `{}` and then sends
//!   events `{"configurationUpdateEvent": {"componentName", "keyPath"}}` that carry **no value**:
//!   read it with GetConfiguration. No event at subscribe time. Subscribe at the root: a
//!   key-level subscription can be lost when a reset deletes the key.
//! * The classic nucleus sends one event per changed node, removals included; nucleus lite sends
//!   none for removals and may notify more than once per deployment. Consumers filter by
//!   `componentName` and coalesce.

use serde::Deserialize;
use serde_json::{Map, Value};

/// Operation name of GetConfiguration.
pub const OP_GET_CONFIGURATION: &str = "aws.greengrass#GetConfiguration";
/// Model type of a GetConfiguration request.
pub const GET_CONFIGURATION_REQUEST: &str = "aws.greengrass#GetConfigurationRequest";
/// Model type of a GetConfiguration response.
pub const GET_CONFIGURATION_RESPONSE: &str = "aws.greengrass#GetConfigurationResponse";
/// Operation name of SubscribeToConfigurationUpdate.
pub const OP_SUBSCRIBE_TO_CONFIGURATION_UPDATE: &str =
    "aws.greengrass#SubscribeToConfigurationUpdate";
/// Model type of a SubscribeToConfigurationUpdate request.
pub const SUBSCRIBE_TO_CONFIGURATION_UPDATE_REQUEST: &str =
    "aws.greengrass#SubscribeToConfigurationUpdateRequest";
/// Model type of a SubscribeToConfigurationUpdate response.
pub const SUBSCRIBE_TO_CONFIGURATION_UPDATE_RESPONSE: &str =
    "aws.greengrass#SubscribeToConfigurationUpdateResponse";
/// Model type of a configuration update event.
pub const CONFIGURATION_UPDATE_EVENTS: &str = "aws.greengrass#ConfigurationUpdateEvents";
/// Model type of a missing key or component.
pub const RESOURCE_NOT_FOUND_ERROR: &str = "aws.greengrass#ResourceNotFoundError";

/// Body of GetConfigurationRequest or SubscribeToConfigurationUpdateRequest: both take an
/// optional component name (default: the caller) and an optional key path (default: the root).
pub fn request(component_name: Option<&str>, key_path: &[&str]) -> Value {
    let mut body = Map::new();
    if let Some(name) = component_name {
        body.insert("componentName".into(), Value::from(name));
    }
    if !key_path.is_empty() {
        body.insert("keyPath".into(), Value::from(key_path.to_vec()));
    }
    Value::Object(body)
}

/// The target of a configuration request, as the nucleus reads it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationRequest {
    /// Whose configuration; `None` means the caller's own.
    #[serde(default)]
    pub component_name: Option<String>,
    /// Which node; empty means the root.
    #[serde(default)]
    pub key_path: Vec<String>,
}

/// Response of GetConfiguration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetConfigurationResponse {
    /// The component whose configuration this is.
    #[serde(default)]
    pub component_name: Option<String>,
    /// The node read (see the module docs for the shape of a leaf).
    #[serde(default)]
    pub value: Value,
}

/// One configuration update event: which component, which node. It carries no value.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationUpdateEvent {
    /// The component whose configuration changed.
    #[serde(default)]
    pub component_name: String,
    /// The node that changed.
    #[serde(default)]
    pub key_path: Vec<String>,
}

impl ConfigurationUpdateEvent {
    /// Reads the body of a `ConfigurationUpdateEvents` message.
    pub fn from_body(body: &Value) -> Result<Self, String> {
        let inner = body
            .get("configurationUpdateEvent")
            .ok_or("configurationUpdateEvent is missing")?;
        Self::deserialize(inner).map_err(|e| format!("invalid configurationUpdateEvent: {e}"))
    }

    /// The body of a `ConfigurationUpdateEvents` message.
    pub fn to_body(&self) -> Value {
        serde_json::json!({"configurationUpdateEvent": {
            "componentName": self.component_name, "keyPath": self.key_path}})
    }
}

/// What GetConfiguration answers for `key_path` in `config`: the root or an object as itself, a
/// leaf as `{"<leaf>": value}`; `None` when the path does not exist.
pub fn read(config: &Value, key_path: &[String]) -> Option<Value> {
    let mut node = config;
    for key in key_path {
        node = node.as_object()?.get(key)?;
    }
    match (node, key_path.last()) {
        (Value::Object(_), _) | (_, None) => Some(node.clone()),
        (leaf, Some(name)) => Some(serde_json::json!({ name: leaf })),
    }
}

/// How a node changed between two configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Added or given another value.
    Updated,
    /// Removed (with everything under it).
    Removed,
}

/// The nodes that differ between `old` and `new`, in key order: a leaf whose value changed or
/// appeared, and the top of each removed subtree. An added object is reported by its leaves (an
/// empty one by itself).
pub fn changes(old: &Value, new: &Value) -> Vec<(Vec<String>, Change)> {
    let mut out = Vec::new();
    diff(old, new, &mut Vec::new(), &mut out);
    out
}

fn diff(old: &Value, new: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, Change)>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                path.push(key.clone());
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => diff(x, y, path, out),
                    (Some(_), None) => out.push((path.clone(), Change::Removed)),
                    (None, Some(y)) => added(y, path, out),
                    (None, None) => {}
                }
                path.pop();
            }
        }
        (a, b) if a == b => {}
        (_, b) => added(b, path, out),
    }
}

fn added(value: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, Change)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for key in keys {
                path.push(key.clone());
                added(&map[key], path, out);
                path.pop();
            }
        }
        _ => out.push((path.clone(), Change::Updated)),
    }
}

/// Merges `update` into `base` as a deployment's `MERGE` does: objects key by key, anything
/// else replaced.
pub fn merge(base: &mut Value, update: &Value) {
    match (base, update) {
        (Value::Object(b), Value::Object(u)) => {
            for (key, value) in u {
                match b.get_mut(key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        b.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, update) => *base = update.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| (*k).to_owned()).collect()
    }

    #[test]
    fn a_leaf_reads_as_a_one_key_object_and_an_object_as_itself() {
        let config = json!({"InferenceInterval": "3600", "nested": {"a": 1}});
        assert_eq!(read(&config, &[]), Some(config.clone()));
        assert_eq!(
            read(&config, &path(&["InferenceInterval"])),
            Some(json!({"InferenceInterval": "3600"}))
        );
        assert_eq!(read(&config, &path(&["nested"])), Some(json!({"a": 1})));
        assert_eq!(
            read(&config, &path(&["nested", "a"])),
            Some(json!({"a": 1}))
        );
        assert_eq!(read(&config, &path(&["missing"])), None);
        assert_eq!(read(&config, &path(&["InferenceInterval", "x"])), None);
    }

    #[test]
    fn changes_name_changed_leaves_and_removed_subtrees() {
        let old = json!({"a": "1", "b": {"c": 1, "d": 2}, "gone": {"x": 1}, "same": [1]});
        let new = json!({"a": "2", "b": {"c": 1, "e": {"f": true}}, "same": [1], "new": {}});
        assert_eq!(
            changes(&old, &new),
            vec![
                (path(&["a"]), Change::Updated),
                (path(&["b", "d"]), Change::Removed),
                (path(&["b", "e", "f"]), Change::Updated),
                (path(&["gone"]), Change::Removed),
                (path(&["new"]), Change::Updated),
            ]
        );
        assert!(changes(&new, &new).is_empty());
    }

    #[test]
    fn merge_is_key_by_key_for_objects() {
        let mut base = json!({"a": "1", "b": {"c": 1, "d": 2}});
        merge(&mut base, &json!({"b": {"d": 3, "e": 4}, "f": [1]}));
        assert_eq!(
            base,
            json!({"a": "1", "b": {"c": 1, "d": 3, "e": 4}, "f": [1]})
        );
    }

    #[test]
    fn events_and_requests_have_the_wire_shape() {
        let event = ConfigurationUpdateEvent {
            component_name: "com.x".into(),
            key_path: path(&["ImageName"]),
        };
        let body = event.to_body();
        assert_eq!(
            body,
            json!({"configurationUpdateEvent": {"componentName": "com.x", "keyPath": ["ImageName"]}})
        );
        assert_eq!(ConfigurationUpdateEvent::from_body(&body).unwrap(), event);
        assert!(ConfigurationUpdateEvent::from_body(&json!({})).is_err());
        assert_eq!(request(None, &[]), json!({}));
        assert_eq!(
            request(Some("c"), &["a", "b"]),
            json!({"componentName": "c", "keyPath": ["a", "b"]})
        );
    }
}
