//! The nucleus's side of a recipe, without a nucleus: recipe variables substituted
//! ([`Interpolation`]) and the Install and Run scripts run under `sh` with every artifact
//! replaced by a stub that prints its arguments ([`launch`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::*;

// Recipe variables

/// Paths and configuration the nucleus would substitute into one component's recipe.
pub(crate) struct Interpolation<'a> {
    recipe: &'a Value,
    /// The component's configuration: `DefaultConfiguration` with the test's overrides.
    pub(crate) configuration: Value,
    artifacts: PathBuf,
    unarchived: PathBuf,
    pub(crate) work: PathBuf,
    kernel_root: PathBuf,
    /// Direct dependencies by component name.
    pub(crate) dependencies: BTreeMap<String, Dependency>,
}

/// What a recipe may refer to of one of its direct dependencies.
#[derive(Debug)]
pub(crate) struct Dependency {
    /// `{<dep>:artifacts:path}`.
    pub(crate) artifacts: PathBuf,
    /// `{<dep>:artifacts:decompressedPath}`.
    pub(crate) unarchived: PathBuf,
    /// `{<dep>:configuration:/...}`: the dependency's default configuration.
    pub(crate) configuration: Value,
}

impl<'a> Interpolation<'a> {
    pub(crate) fn new(recipe: &'a Value, sandbox: &Path, overrides: &[(&str, &str)]) -> Self {
        let mut configuration = Value::Object(default_configuration(recipe).clone());
        for (key, value) in overrides {
            assert!(
                configuration.get(*key).is_some(),
                "override of unknown key {key}"
            );
            configuration[*key] = Value::String((*value).to_owned());
        }
        let name = str_at(recipe, "/ComponentName");
        let packages = sandbox.join("packages");
        let mut dependencies = BTreeMap::new();
        if let Some(deps) = recipe
            .get("ComponentDependencies")
            .and_then(Value::as_object)
        {
            for dep in deps.keys() {
                let config = dist::COMPONENTS
                    .iter()
                    .find(|c| c.name == dep)
                    .map(|c| {
                        Value::Object(default_configuration(&crate::support::recipe(c)).clone())
                    })
                    .unwrap_or_else(|| crate::variant_dlr::public_component_configuration(dep));
                dependencies.insert(
                    dep.clone(),
                    Dependency {
                        artifacts: packages.join("artifacts").join(dep).join("1.0.0"),
                        unarchived: packages
                            .join("artifacts-unarchived")
                            .join(dep)
                            .join("1.0.0"),
                        configuration: config,
                    },
                );
            }
        }
        Self {
            recipe,
            configuration,
            artifacts: packages.join("artifacts").join(name).join("0.0.0"),
            unarchived: packages
                .join("artifacts-unarchived")
                .join(name)
                .join("0.0.0"),
            work: sandbox.join("work").join(name),
            kernel_root: sandbox.to_path_buf(),
            dependencies,
        }
    }

    fn config_value(config: &Value, pointer: &str, context: &str) -> String {
        match config.pointer(pointer) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => panic!(
                "{context}: {{configuration:{pointer}}} is {other}; store configuration values as strings"
            ),
            None => panic!("{context}: {{configuration:{pointer}}} is not in DefaultConfiguration"),
        }
    }

    /// Substitutes every recipe variable; panics on unknown or unresolvable ones.
    pub(crate) fn apply(&self, text: &str, context: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let end = after
                .find('}')
                .unwrap_or_else(|| panic!("{context}: unclosed '{{' in {text:?}"));
            let token = &after[..end];
            assert!(
                !rest[..start].ends_with('$'),
                "{context}: shell parameter expansion ${{{token}}} looks like a recipe variable; avoid it"
            );
            out.push_str(&self.resolve(token, context));
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    fn resolve(&self, token: &str, context: &str) -> String {
        let path = |p: &Path| p.display().to_string();
        if let Some(pointer) = token.strip_prefix("configuration:") {
            return Self::config_value(&self.configuration, pointer, context);
        }
        match token {
            "artifacts:path" => return path(&self.artifacts),
            "artifacts:decompressedPath" => return path(&self.unarchived),
            "work:path" => return path(&self.work),
            "kernel:rootPath" => return path(&self.kernel_root),
            "iot:thingName" => return "test-thing".into(),
            _ => {}
        }
        let (dep, what) = token
            .split_once(':')
            .unwrap_or_else(|| panic!("{context}: {{{token}}} is not a recipe variable"));
        let dependency = self.dependencies.get(dep).unwrap_or_else(|| {
            panic!(
                "{context}: {{{token}}} names {dep}, which is not a direct dependency of {}",
                str_at(self.recipe, "/ComponentName")
            )
        });
        match what {
            "artifacts:path" => path(&dependency.artifacts),
            "artifacts:decompressedPath" => path(&dependency.unarchived),
            _ => match what.strip_prefix("configuration:") {
                Some(pointer) => Self::config_value(&dependency.configuration, pointer, context),
                None => panic!("{context}: unknown recipe variable {{{token}}}"),
            },
        }
    }
}
// Running the lifecycle scripts with a stub binary

/// What one manifest's Run step hands to the binary.
#[derive(Debug)]
pub(crate) struct Launch {
    /// argv, argv[0] being the artifact path the script executes.
    pub(crate) argv: Vec<String>,
    /// The manifest's Setenv, substituted.
    pub(crate) env: BTreeMap<String, String>,
}

/// Runs the manifest's Install (if any) and Run scripts under `sh -c`, as the nucleus does, with
/// every artifact of the manifest replaced by a stub printing its arguments.
pub(crate) fn launch(interpolation: &Interpolation, manifest: &Value, context: &str) -> Launch {
    let lifecycle = manifest.get("Lifecycle").expect("Lifecycle");
    let mut env = BTreeMap::new();
    if let Some(setenv) = lifecycle.get("Setenv").and_then(Value::as_object) {
        for (key, value) in setenv {
            let value = value.as_str().expect("Setenv values are strings");
            env.insert(key.clone(), interpolation.apply(value, context));
        }
    }
    std::fs::create_dir_all(&interpolation.artifacts).unwrap();
    std::fs::create_dir_all(&interpolation.work).unwrap();
    for artifact in manifest
        .get("Artifacts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let uri = str_at(artifact, "/URI");
        let file = interpolation
            .artifacts
            .join(uri.rsplit('/').next().unwrap());
        std::fs::write(&file, "#!/bin/sh\nprintf '%s\\0' \"$0\" \"$@\"\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let run_script = |step: &str| -> Option<std::process::Output> {
        let text = script(lifecycle.get(step)?)
            .unwrap_or_else(|| panic!("{context}: {step} has no Script"));
        let text = interpolation.apply(text, &format!("{context} {step}"));
        let output = Command::new("sh")
            .arg("-c")
            .arg(&text)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(&env)
            .current_dir(&interpolation.work)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{context}: {step} script failed ({}): {}\n{text}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Some(output)
    };
    run_script("Install");
    // The adapter starts in a Startup step (it reports RUNNING itself once subscribed).
    let run = run_script("Run")
        .or_else(|| run_script("Startup"))
        .unwrap_or_else(|| panic!("{context}: no Run or Startup step"));
    let mut argv: Vec<String> = String::from_utf8(run.stdout)
        .unwrap()
        .split('\0')
        .map(str::to_owned)
        .collect();
    assert_eq!(
        argv.pop().as_deref(),
        Some(""),
        "{context}: the Run step did not execute an artifact"
    );
    Launch { argv, env }
}

/// Checks the Setenv of a launch against the CLI: a variable that is a clap `env` of some
/// option is appended as that option (so its value is parsed too); others must be known.
pub(crate) fn with_env_as_flags(
    mut launch: Launch,
    cli: &clap::Command,
    context: &str,
) -> Vec<String> {
    let mut args: Vec<&clap::Arg> = cli.get_arguments().collect();
    for sub in cli.get_subcommands() {
        args.extend(sub.get_arguments());
    }
    for (name, value) in std::mem::take(&mut launch.env) {
        let arg = args
            .iter()
            .find(|a| a.get_env().is_some_and(|e| e == name.as_str()));
        match arg {
            Some(arg) => {
                let long = arg.get_long().expect("env options have a long name");
                launch.argv.push(format!("--{long}={value}"));
            }
            None => assert!(
                NON_CLI_ENV.contains(&name.as_str()),
                "{context}: Setenv {name} is neither an option's environment variable nor one of {NON_CLI_ENV:?}"
            ),
        }
    }
    launch.argv
}

#[test]
fn recipe_variable_substitution_rejects_unknown_references() {
    let recipe = recipe(&dist::ADAPTER);
    let sandbox = tempfile::tempdir().unwrap();
    let interpolation = Interpolation::new(&recipe, sandbox.path(), &[]);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        interpolation.apply("{configuration:/NoSuchKey}", "t")
    }));
    assert!(result.is_err());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        interpolation.apply(&format!("{{{MODEL_STORE}:artifacts:path}}"), "t")
    }));
    assert!(
        result.is_err(),
        "the ModelStore is not a direct dependency of the adapter"
    );
    assert_eq!(
        interpolation.apply("{configuration:/RequestTopic}", "t"),
        "local/inference"
    );
}
