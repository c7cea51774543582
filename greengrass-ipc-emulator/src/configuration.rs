//! Component configurations for the emulator, as a nucleus holds them after a deployment.
//!
//! A component's configuration is its recipe's `DefaultConfiguration` (from any recipe given to
//! the emulator, JSON or YAML) with a **configuration file**'s entry for it merged on top, as a
//! deployment's `configurationUpdate.merge` does ([`greengrass_ipc::configuration::merge`]):
//!
//! ```yaml
//! com.example.ImageClassification.Scheduled:
//!   ImageName: "pelican.jpeg"
//!   InferenceInterval: "10"
//! ```
//!
//! The emulator watches that file: when it changes, every component's configuration is rebuilt
//! from the defaults and the new file, and subscribers get update events for the key paths that
//! changed. A file that does not parse is logged and ignored; the configuration in force stays.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::acl::AclError;

/// Component name → configuration object.
pub type Configurations = HashMap<String, Value>;

/// Reads a JSON or YAML document.
pub fn read_document(path: &Path) -> Result<Value, AclError> {
    let text = std::fs::read_to_string(path).map_err(|source| AclError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_document(&text)
}

/// Parses a file's bytes as JSON or YAML text.
pub fn parse_bytes(bytes: &[u8]) -> Result<Value, AclError> {
    let text = std::str::from_utf8(bytes).map_err(|e| AclError::Parse(e.to_string()))?;
    parse_document(text)
}

/// Parses JSON or YAML text.
pub fn parse_document(text: &str) -> Result<Value, AclError> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(json_err) => serde_norway::from_str(text)
            .map_err(|yaml_err| AclError::Parse(format!("JSON: {json_err}; YAML: {yaml_err}"))),
    }
}

/// The `DefaultConfiguration` of each file that is a whole recipe (files that are only an
/// `accessControl` object contribute nothing).
pub fn recipe_defaults(paths: &[impl AsRef<Path>]) -> Result<Configurations, AclError> {
    let mut defaults = Configurations::new();
    for path in paths {
        let doc = read_document(path.as_ref())?;
        if let Some(name) = doc.get("ComponentName").and_then(Value::as_str) {
            let config = doc
                .pointer("/ComponentConfiguration/DefaultConfiguration")
                .cloned()
                .unwrap_or_else(|| Value::Object(Default::default()));
            defaults.insert(name.to_owned(), config);
        }
    }
    Ok(defaults)
}

/// The configurations in force: `defaults` with the configuration file's per-component entries
/// merged on top. The file must be an object of objects.
pub fn with_file(defaults: &Configurations, file: &Value) -> Result<Configurations, AclError> {
    let entries = file.as_object().ok_or_else(|| {
        AclError::Shape("a configuration file maps component names to objects".into())
    })?;
    let mut out = defaults.clone();
    for (component, update) in entries {
        if !update.is_object() {
            return Err(AclError::Shape(format!(
                "the configuration of {component} must be an object"
            )));
        }
        let config = out
            .entry(component.clone())
            .or_insert_with(|| Value::Object(Default::default()));
        greengrass_ipc::configuration::merge(config, update);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn recipe_defaults_then_the_file_merged_on_top() {
        let dir = tempfile::tempdir().unwrap();
        let recipe = dir.path().join("recipe.yaml");
        std::fs::write(
            &recipe,
            "ComponentName: com.x.Scheduled\nComponentConfiguration:\n  DefaultConfiguration:\n    InferenceInterval: \"3600\"\n    ImageName: cat.jpeg\n    accessControl: {}\n",
        )
        .unwrap();
        let acl_only = dir.path().join("acl.json");
        std::fs::write(&acl_only, r#"{"aws.greengrass.ipc.pubsub": {}}"#).unwrap();
        let defaults = recipe_defaults(&[&recipe, &acl_only]).unwrap();
        assert_eq!(defaults.len(), 1);
        assert_eq!(defaults["com.x.Scheduled"]["InferenceInterval"], "3600");

        let file = parse_document(
            "com.x.Scheduled:\n  InferenceInterval: \"10\"\ncom.x.Other:\n  Key: v\n",
        )
        .unwrap();
        let merged = with_file(&defaults, &file).unwrap();
        assert_eq!(
            merged["com.x.Scheduled"],
            json!({"InferenceInterval": "10", "ImageName": "cat.jpeg", "accessControl": {}})
        );
        assert_eq!(merged["com.x.Other"], json!({"Key": "v"}));
        assert!(with_file(&defaults, &json!({"com.x.Scheduled": "10"})).is_err());
        assert!(with_file(&defaults, &json!([1])).is_err());
    }
}
