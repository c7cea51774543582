//! Recipes: identity, versions, gdk configuration, dependencies, configuration keys.

use serde_json::Value;

use crate::lifecycle::Interpolation;
use crate::support::*;
use classify_ipc_adapter::scheduled;

#[test]
fn every_recipe_folder_is_a_dist_component() {
    let mut folders: Vec<String> = std::fs::read_dir(root().join("recipes"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "greengrass-build")
        .collect();
    folders.sort();
    let mut declared: Vec<String> = dist::COMPONENTS.iter().map(|c| c.name.to_owned()).collect();
    declared.sort();
    assert_eq!(folders, declared);
}

#[test]
fn recipes_have_format_name_and_version_consistent_with_gdk_and_cargo() {
    for component in dist::COMPONENTS {
        let recipe = recipe(component);
        let text = read(&component.recipe_path(&root()));
        assert_eq!(str_at(&recipe, "/RecipeFormatVersion"), "2020-01-25");
        let name = str_at(&recipe, "/ComponentName");
        assert_eq!(name, component.name);
        assert!(name.len() <= 128);
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        );
        assert!(!name.to_ascii_lowercase().starts_with("aws.greengrass"));
        let version = str_at(&recipe, "/ComponentVersion");
        assert_eq!(
            version,
            package_version(component.version_package),
            "{name}: version of Cargo package {}",
            component.version_package
        );
        // The dist task's line-based reading agrees with the YAML parser.
        assert_eq!(dist::recipe_name(&text).as_deref(), Some(name));
        assert_eq!(dist::recipe_version(&text).as_deref(), Some(version));
        assert_eq!(
            dist::package_version(&root(), component.version_package).unwrap(),
            version
        );
        assert_eq!(str_at(&recipe, "/ComponentType"), "aws.greengrass.generic");
        assert!(!str_at(&recipe, "/ComponentDescription").is_empty());
        assert!(!str_at(&recipe, "/ComponentPublisher").is_empty());

        // gdk: one component per gdk-config.json, next to recipe.yaml, built by `dist --gdk`.
        let gdk_path = component.dir(&root()).join("gdk-config.json");
        let gdk: Value = serde_json::from_str(&read(&gdk_path)).unwrap();
        let components = gdk["component"].as_object().expect("component object");
        assert_eq!(components.keys().collect::<Vec<_>>(), [name], "{name}");
        let entry = &components[name];
        assert_eq!(entry["version"], version, "{name}: gdk version");
        assert!(!entry["author"].as_str().unwrap().is_empty());
        assert_eq!(entry["build"]["build_system"], "custom");
        assert_eq!(
            entry["build"]["custom_build_command"],
            serde_json::json!(["cargo", "xtask", "dist", "--gdk", name])
        );
        assert!(entry["publish"]["bucket"].is_string());
        assert!(entry["publish"]["region"].is_string());
        let gdk_version = gdk["gdk_version"].as_str().unwrap();
        assert_eq!(
            gdk_version.split('.').count(),
            3,
            "gdk_version {gdk_version}"
        );
        assert!(
            !component.dir(&root()).join("recipe.json").exists(),
            "gdk refuses a folder with both recipe.json and recipe.yaml"
        );
    }
}

#[test]
fn dependencies_model_store_and_between_components() {
    let service = recipe(&dist::SERVICE);
    let deps = service["ComponentDependencies"].as_object().unwrap();
    let mut names: Vec<&str> = deps.keys().map(String::as_str).collect();
    names.sort_unstable();
    // variant.DLR provides libdlr (see variant_dlr::service_looks_for_libdlr_where_variant_dlr_installs_it).
    assert_eq!(names, ["variant.DLR", MODEL_STORE]);
    assert_eq!(deps["variant.DLR"]["DependencyType"], "HARD");
    assert_eq!(deps[MODEL_STORE]["VersionRequirement"], MODEL_STORE_RANGE);
    assert_eq!(deps[MODEL_STORE]["DependencyType"], "HARD");
    for version in ["2.1.0", "2.1.9"] {
        assert!(in_range(MODEL_STORE_RANGE, version));
    }
    assert!(!in_range(MODEL_STORE_RANGE, "2.2.0"));
    assert!(!in_range(MODEL_STORE_RANGE, "2.0.9"));

    // Each platform's model folder is the ModelStore's folder for that architecture.
    for manifest in manifests(&service) {
        let target = target_for(manifest);
        let run = script(&manifest["Lifecycle"]["Run"]).unwrap();
        let model = format!(
            "{{{MODEL_STORE}:artifacts:decompressedPath}}/DLR-resnet50-{}-cpu-ImageClassification",
            target.arch
        );
        assert!(
            run.contains(&format!("model_dir=\"{model}\""))
                && run.contains("--model-dir \"$model_dir\""),
            "{}: Run must pass --model-dir {model} unless ModelDirectory is set",
            target.arch
        );
    }

    for (dependent, dependency) in [
        (&dist::ADAPTER, &dist::SERVICE),
        (&dist::REQUESTER, &dist::ADAPTER),
        (&dist::SCHEDULED, &dist::SERVICE),
    ] {
        let recipe = recipe(dependent);
        let deps = recipe["ComponentDependencies"].as_object().unwrap();
        assert_eq!(deps.keys().collect::<Vec<_>>(), [dependency.name]);
        let dep = &deps[dependency.name];
        assert_eq!(dep["DependencyType"], "HARD");
        let range = dep["VersionRequirement"].as_str().unwrap();
        let version = crate::support::recipe(dependency)["ComponentVersion"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            in_range(range, &version),
            "{}: {range} excludes {} {version}",
            dependent.name,
            dependency.name
        );
    }
}

#[test]
fn configuration_references_resolve_and_every_setting_is_used() {
    let sandbox = tempfile::tempdir().unwrap();
    for component in dist::COMPONENTS {
        let recipe = recipe(component);
        let config = default_configuration(&recipe);
        for (key, value) in config {
            if key != "accessControl" {
                assert!(
                    value.is_string(),
                    "{}: {key} should be a string",
                    component.name
                );
            }
        }
        let interpolation = Interpolation::new(&recipe, sandbox.path(), &[]);
        let mut texts = Vec::new();
        for manifest in manifests(&recipe) {
            strings(manifest, &mut texts);
        }
        for text in &texts {
            interpolation.apply(text, component.name);
        }
        let all = texts.join("\n");
        // The scheduled component reads these over IPC (GetConfiguration), live, instead.
        let live: &[&str] = if component.name == dist::SCHEDULED.name {
            &scheduled::settings::KEYS
        } else {
            &[]
        };
        for key in config
            .keys()
            .filter(|k| *k != "accessControl" && !live.contains(&k.as_str()))
        {
            assert!(
                all.contains(&format!("{{configuration:/{key}}}")),
                "{}: DefaultConfiguration.{key} is not used by any manifest",
                component.name
            );
        }
    }
}
