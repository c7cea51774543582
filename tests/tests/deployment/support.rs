//! Reading the deployment files: recipes (YAML), Cargo manifests, and the dist task's own
//! declarations from the `xtask` library.

use std::path::{Path, PathBuf};

use serde_json::Value;
pub(crate) use xtask::dist;

pub(crate) const MODEL_STORE: &str = "variant.DLR.ImageClassification.ModelStore";
pub(crate) const MODEL_STORE_RANGE: &str = ">=2.1.0 <2.2.0";
/// Environment variables a recipe may set that are not CLI options.
pub(crate) const NON_CLI_ENV: &[&str] = &[
    "RUST_LOG",
    "DLR_LIBRARY_PATH",
    "ONNXRUNTIME_LIBRARY_PATH",
    // Where the service's libdlr discovery finds the copy variant.DLR installed.
    "CONDA_PREFIX",
    "VIRTUAL_ENV",
    // Read by glibc's malloc; the service bounds its arenas itself unless a recipe sets it.
    "MALLOC_ARENA_MAX",
];

pub(crate) fn root() -> PathBuf {
    dist::workspace_root()
}

pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn recipe(component: &dist::Component) -> Value {
    let path = component.recipe_path(&root());
    serde_norway::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{}: invalid YAML: {e}", path.display()))
}

pub(crate) fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} missing or not a string"))
}

pub(crate) fn default_configuration(recipe: &Value) -> &serde_json::Map<String, Value> {
    recipe
        .pointer("/ComponentConfiguration/DefaultConfiguration")
        .and_then(Value::as_object)
        .expect("ComponentConfiguration.DefaultConfiguration")
}

pub(crate) fn manifests(recipe: &Value) -> &Vec<Value> {
    recipe
        .get("Manifests")
        .and_then(Value::as_array)
        .expect("Manifests")
}

pub(crate) fn cargo_toml(path: &Path) -> toml::Table {
    toml::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn package_version(package: &str) -> String {
    let manifest = dist::package_dir(&root(), package)
        .unwrap()
        .join("Cargo.toml");
    let table = cargo_toml(&manifest);
    assert_eq!(table["package"]["name"].as_str(), Some(package));
    table["package"]["version"].as_str().unwrap().to_owned()
}

/// `>=A <B` (the only range shape the recipes use): does `version` satisfy it?
pub(crate) fn in_range(range: &str, version: &str) -> bool {
    fn parse(v: &str) -> (u64, u64, u64) {
        let parts: Vec<u64> = v.split('.').map(|p| p.parse().expect("numeric")).collect();
        assert_eq!(parts.len(), 3, "{v} is not MAJOR.MINOR.PATCH");
        (parts[0], parts[1], parts[2])
    }
    let (low, high) = range
        .strip_prefix(">=")
        .and_then(|r| r.split_once(" <"))
        .unwrap_or_else(|| panic!("range {range:?} is not of the form \">=A <B\""));
    let v = parse(version);
    parse(low) <= v && v < parse(high)
}

/// Every string in a JSON tree.
pub(crate) fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// The `Script` of a lifecycle step (given as a string or as `{Script: ...}`).
pub(crate) fn script(step: &Value) -> Option<&str> {
    step.as_str()
        .or_else(|| step.get("Script").and_then(Value::as_str))
}

pub(crate) fn architecture_of(manifest: &Value) -> &str {
    str_at(manifest, "/Platform/architecture")
}

pub(crate) fn target_for(manifest: &Value) -> dist::Target {
    let arch = architecture_of(manifest);
    *dist::TARGETS
        .iter()
        .find(|t| t.greengrass_arch == arch)
        .unwrap_or_else(|| panic!("manifest for {arch}, which dist does not build"))
}
