//! Recipe artifacts versus what `cargo xtask dist` builds and where it lays them out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::support::*;

#[test]
fn every_artifact_is_built_by_dist_and_every_built_file_is_used() {
    let root = root();
    let workspace = cargo_toml(&root.join("Cargo.toml"));
    assert!(
        workspace["profile"].get(dist::PROFILE).is_some(),
        "profile.{} missing in the workspace Cargo.toml",
        dist::PROFILE
    );
    for component in dist::COMPONENTS {
        let recipe = recipe(component);
        let version = str_at(&recipe, "/ComponentVersion");
        let declared: BTreeMap<String, dist::Artifact> = component
            .artifacts()
            .into_iter()
            .map(|a| (a.file_name(), a))
            .collect();
        let mut referenced = BTreeSet::new();
        let mut platforms = BTreeSet::new();
        for manifest in manifests(&recipe) {
            assert_eq!(str_at(manifest, "/Platform/os"), "linux");
            let target = target_for(manifest);
            assert!(
                platforms.insert(target.greengrass_arch),
                "duplicate platform"
            );
            let lifecycle = &manifest["Lifecycle"];
            let run = script(&lifecycle["Run"])
                .or_else(|| script(&lifecycle["Startup"]))
                .unwrap();
            for artifact in manifest["Artifacts"].as_array().unwrap() {
                let uri = str_at(artifact, "/URI");
                let file = uri.rsplit('/').next().unwrap();
                assert_eq!(
                    uri,
                    format!("s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/{file}"),
                    "{}: gdk's placeholder URI",
                    component.name
                );
                let built = declared.get(file).unwrap_or_else(|| {
                    panic!(
                        "{}: artifact {file} is not built by `cargo xtask dist`",
                        component.name
                    )
                });
                assert_eq!(
                    built.target, target,
                    "{file} in the {} manifest",
                    target.arch
                );
                assert_eq!(str_at(artifact, "/Permission/Execute"), "OWNER");
                assert_eq!(str_at(artifact, "/Permission/Read"), "OWNER");
                assert!(
                    artifact.get("Unarchive").is_none_or(|u| u == "NONE"),
                    "{file} is a plain binary"
                );
                assert!(
                    run.contains(&format!("\"{{artifacts:path}}/{file}\"")),
                    "{}: Run does not execute {file}",
                    component.name
                );
                referenced.insert(file.to_owned());
            }
        }
        assert_eq!(
            referenced,
            declared.keys().cloned().collect::<BTreeSet<_>>(),
            "{}: every file dist builds is referenced",
            component.name
        );
        // The dist task's own line-based reading of the URIs finds the same files.
        let text = read(&component.recipe_path(&root));
        assert_eq!(
            dist::recipe_artifact_files(&text)
                .into_iter()
                .collect::<BTreeSet<_>>(),
            referenced
        );
        let expected_platforms: BTreeSet<_> =
            dist::TARGETS.iter().map(|t| t.greengrass_arch).collect();
        assert_eq!(platforms, expected_platforms, "{}", component.name);

        // Each binary is a [[bin]] of its package, and the package is a workspace member.
        for artifact in declared.values() {
            let dir = dist::package_dir(&root, artifact.package).unwrap();
            let manifest = cargo_toml(&dir.join("Cargo.toml"));
            let bins = manifest["bin"].as_array().expect("[[bin]]");
            assert!(
                bins.iter()
                    .any(|b| b["name"].as_str() == Some(artifact.binary)),
                "{} has no binary {}",
                artifact.package,
                artifact.binary
            );
            let member = dir.file_name().unwrap().to_str().unwrap();
            assert!(
                workspace["workspace"]["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m.as_str() == Some(member))
            );
        }

        // The layout the task writes: what gdk and greengrass-cli read.
        let out = Path::new("/out");
        for gdk in [false, true] {
            let planned = dist::plan(&root, out, &[*component], dist::TARGETS, gdk).unwrap();
            let [planned] = planned.as_slice() else {
                panic!("one plan per component")
            };
            assert_eq!(planned.version, version);
            let recipe_file = if gdk {
                "recipe.yaml".to_owned()
            } else {
                format!("{}-{version}.yaml", component.name)
            };
            assert_eq!(planned.recipe_out, out.join("recipes").join(recipe_file));
            let files: BTreeSet<PathBuf> = planned
                .artifacts
                .iter()
                .map(|planned| planned.to.clone())
                .collect();
            let expected: BTreeSet<PathBuf> = referenced
                .iter()
                .map(|f| {
                    out.join("artifacts")
                        .join(component.name)
                        .join(version)
                        .join(f)
                })
                .collect();
            assert_eq!(files, expected);
            for dist::PlannedArtifact { artifact, from, .. } in &planned.artifacts {
                assert_eq!(
                    *from,
                    dist::target_dir(&root)
                        .join(artifact.target.triple)
                        .join(dist::PROFILE)
                        .join(artifact.binary)
                );
            }
        }
    }
}
