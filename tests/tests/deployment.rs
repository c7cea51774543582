//! Deployment files checked without Greengrass, gdk or Docker: the component recipes under
//! `recipes/`, their `gdk-config.json`, what `cargo xtask dist` declares it builds, and
//! `docker/Dockerfile`.
//!
//! The command lines are checked as the nucleus would run them: every recipe variable is
//! substituted (configuration values from `DefaultConfiguration`, optionally merged with
//! overrides the way a deployment merges configuration), the Install and Run scripts run under a
//! real `sh` with the binary replaced by a stub that prints its arguments, and those arguments are
//! parsed by the binary's own clap type (`try_parse_from`) — then compared with the
//! configuration values, so a flag wired to the wrong setting fails too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{CommandFactory, Parser};
use serde_json::Value;

/// `dist.rs` refers to `crate::Result`.
type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The dist task's own declarations (components, artifacts, targets), compiled in here so the
/// test compares the recipes with exactly what the task builds, without building.
#[path = "../../xtask/src/dist.rs"]
#[allow(dead_code)]
mod dist;

/// `dist.rs` installs the cross toolchain through this before building; never called here.
#[allow(dead_code)]
mod setup {
    pub fn install_cross_toolchain() -> crate::Result {
        Err("the deployment test never builds".into())
    }
}

use classify_ipc_adapter::config as adapter_config;
use classify_service::config as service_config;

const MODEL_STORE: &str = "variant.DLR.ImageClassification.ModelStore";
const MODEL_STORE_RANGE: &str = ">=2.1.0 <2.2.0";
const PUBLISH: &str = "aws.greengrass#PublishToTopic";
const SUBSCRIBE: &str = "aws.greengrass#SubscribeToTopic";
/// Environment variables a recipe may set that are not CLI options.
const NON_CLI_ENV: &[&str] = &["RUST_LOG", "DLR_LIBRARY_PATH"];

fn root() -> PathBuf {
    dist::workspace_root()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn recipe(component: &dist::Component) -> Value {
    let path = component.recipe_path(&root());
    serde_norway::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{}: invalid YAML: {e}", path.display()))
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} missing or not a string"))
}

fn default_configuration(recipe: &Value) -> &serde_json::Map<String, Value> {
    recipe
        .pointer("/ComponentConfiguration/DefaultConfiguration")
        .and_then(Value::as_object)
        .expect("ComponentConfiguration.DefaultConfiguration")
}

fn manifests(recipe: &Value) -> &Vec<Value> {
    recipe
        .get("Manifests")
        .and_then(Value::as_array)
        .expect("Manifests")
}

fn cargo_toml(path: &Path) -> toml::Table {
    toml::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn package_version(package: &str) -> String {
    let manifest = dist::package_dir(&root(), package)
        .unwrap()
        .join("Cargo.toml");
    let table = cargo_toml(&manifest);
    assert_eq!(table["package"]["name"].as_str(), Some(package));
    table["package"]["version"].as_str().unwrap().to_owned()
}

/// `>=A <B` (the only range shape the recipes use): does `version` satisfy it?
fn in_range(range: &str, version: &str) -> bool {
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

// ---------------------------------------------------------------------------------------------
// Recipe variables
// ---------------------------------------------------------------------------------------------

/// Paths and configuration the nucleus would substitute into one component's recipe.
struct Interpolation<'a> {
    recipe: &'a Value,
    configuration: Value,
    artifacts: PathBuf,
    unarchived: PathBuf,
    work: PathBuf,
    kernel_root: PathBuf,
    /// Direct dependencies: name -> (artifacts path, unarchived path, default configuration).
    dependencies: BTreeMap<String, (PathBuf, PathBuf, Value)>,
}

impl<'a> Interpolation<'a> {
    fn new(recipe: &'a Value, sandbox: &Path, overrides: &[(&str, &str)]) -> Self {
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
                    .map(|c| Value::Object(default_configuration(&recipe_of(c)).clone()))
                    .unwrap_or(Value::Object(Default::default()));
                dependencies.insert(
                    dep.clone(),
                    (
                        packages.join("artifacts").join(dep).join("1.0.0"),
                        packages
                            .join("artifacts-unarchived")
                            .join(dep)
                            .join("1.0.0"),
                        config,
                    ),
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
    fn apply(&self, text: &str, context: &str) -> String {
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
        let (artifacts, unarchived, config) = self.dependencies.get(dep).unwrap_or_else(|| {
            panic!(
                "{context}: {{{token}}} names {dep}, which is not a direct dependency of {}",
                str_at(self.recipe, "/ComponentName")
            )
        });
        match what {
            "artifacts:path" => path(artifacts),
            "artifacts:decompressedPath" => path(unarchived),
            _ => match what.strip_prefix("configuration:") {
                Some(pointer) => Self::config_value(config, pointer, context),
                None => panic!("{context}: unknown recipe variable {{{token}}}"),
            },
        }
    }
}

fn recipe_of(component: &dist::Component) -> Value {
    recipe(component)
}

/// Every string in a JSON tree.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// The `Script` of a lifecycle step (given as a string or as `{Script: ...}`).
fn script(step: &Value) -> Option<&str> {
    step.as_str()
        .or_else(|| step.get("Script").and_then(Value::as_str))
}

// ---------------------------------------------------------------------------------------------
// Running the lifecycle scripts with a stub binary
// ---------------------------------------------------------------------------------------------

/// What one manifest's Run step hands to the binary.
#[derive(Debug)]
struct Launch {
    /// argv, argv[0] being the artifact path the script executes.
    argv: Vec<String>,
    /// The manifest's Setenv, substituted.
    env: BTreeMap<String, String>,
}

/// Runs the manifest's Install (if any) and Run scripts under `sh -c`, as the nucleus does, with
/// every artifact of the manifest replaced by a stub printing its arguments.
fn launch(interpolation: &Interpolation, manifest: &Value, context: &str) -> Launch {
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
fn with_env_as_flags(mut launch: Launch, cli: &clap::Command, context: &str) -> Vec<String> {
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

fn architecture_of(manifest: &Value) -> &str {
    str_at(manifest, "/Platform/architecture")
}

fn target_for(manifest: &Value) -> dist::Target {
    let arch = architecture_of(manifest);
    *dist::TARGETS
        .iter()
        .find(|t| t.greengrass_arch == arch)
        .unwrap_or_else(|| panic!("manifest for {arch}, which dist does not build"))
}

// ---------------------------------------------------------------------------------------------
// Recipes: identity, versions, gdk
// ---------------------------------------------------------------------------------------------

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
    assert_eq!(deps.keys().collect::<Vec<_>>(), [MODEL_STORE]);
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
            run.contains(&format!("--model-dir \"{model}\"")),
            "{}: Run must pass --model-dir {model}",
            target.arch
        );
    }

    for (dependent, dependency) in [
        (&dist::ADAPTER, &dist::SERVICE),
        (&dist::REQUESTER, &dist::ADAPTER),
    ] {
        let recipe = recipe(dependent);
        let deps = recipe["ComponentDependencies"].as_object().unwrap();
        assert_eq!(deps.keys().collect::<Vec<_>>(), [dependency.name]);
        let dep = &deps[dependency.name];
        assert_eq!(dep["DependencyType"], "HARD");
        let range = dep["VersionRequirement"].as_str().unwrap();
        let version = recipe_of(dependency)["ComponentVersion"]
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
        for key in config.keys().filter(|k| *k != "accessControl") {
            assert!(
                all.contains(&format!("{{configuration:/{key}}}")),
                "{}: DefaultConfiguration.{key} is not used by any manifest",
                component.name
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Access control
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Command lines
// ---------------------------------------------------------------------------------------------

fn parse_service(argv: &[String], context: &str) -> service_config::ServeArgs {
    let cli = service_config::Cli::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("{context}: classify-service rejects {argv:?}:\n{e}"));
    match cli.command {
        None => cli.serve,
        Some(service_config::CliCommand::Serve(args)) => *args,
        Some(other) => panic!("{context}: runs {other:?} instead of serving"),
    }
}

fn parse_adapter(argv: &[String], context: &str) -> adapter_config::Command {
    let cli = adapter_config::Cli::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("{context}: classify-ipc-adapter rejects {argv:?}:\n{e}"));
    cli.command.unwrap_or(adapter_config::Command::Run(cli.run))
}

fn lower_debug(value: impl std::fmt::Debug) -> String {
    format!("{value:?}").to_ascii_lowercase()
}

#[test]
fn service_run_command_is_accepted_and_wired_to_the_configuration() {
    let recipe = recipe(&dist::SERVICE);
    let cli = service_config::Cli::command();
    for manifest in manifests(&recipe) {
        let target = target_for(manifest);
        let context = format!("{} {}", dist::SERVICE.name, target.arch);

        // 1. The defaults, exactly as deployed.
        let sandbox = tempfile::tempdir().unwrap();
        let mut interpolation = Interpolation::new(&recipe, sandbox.path(), &[]);
        // The Install step creates the allowed image directories: keep them in the sandbox.
        let images = sandbox.path().join("images");
        interpolation.configuration["AllowedImageDirectories"] =
            Value::String(images.display().to_string());
        let argv = with_env_as_flags(launch(&interpolation, manifest, &context), &cli, &context);
        assert!(argv[0].ends_with(&format!("/classify-service-{}", target.arch)));
        let config = parse_service(&argv, &context).resolve().unwrap();
        let defaults = default_configuration(&recipe);
        let value = |key: &str| defaults[key].as_str().unwrap().to_owned();
        assert_eq!(config.listen.to_string(), value("Listen"));
        assert_eq!(config.workers, Some(value("Workers").parse().unwrap()));
        assert_eq!(
            config.threads_per_worker, None,
            "empty ThreadsPerWorker = automatic"
        );
        assert_eq!(config.dlr_library, None, "empty DlrLibrary = discovery");
        assert_eq!(config.queue_capacity.to_string(), value("QueueCapacity"));
        assert_eq!(config.top_k.to_string(), value("TopK"));
        assert_eq!(config.threshold, value("Threshold").parse::<f64>().unwrap());
        assert_eq!(lower_debug(config.channel_order), value("ChannelOrder"));
        assert_eq!(
            config.request_timeout_ms.to_string(),
            value("RequestTimeoutMs")
        );
        assert_eq!(config.max_body_bytes.to_string(), value("MaxBodyBytes"));
        assert_eq!(config.log_filter, value("LogFilter"));
        assert_eq!(lower_debug(config.log_format), value("LogFormat"));
        assert_eq!(config.allowed_dirs, std::slice::from_ref(&images));
        assert!(
            images.is_dir(),
            "{context}: Install creates the image directory"
        );
        let model_dir = config.model_dir.clone().expect("--model-dir");
        assert_eq!(
            model_dir,
            interpolation.dependencies[MODEL_STORE].1.join(format!(
                "DLR-resnet50-{}-cpu-ImageClassification",
                target.arch
            ))
        );
        assert!(!config.demo);

        // 2. Every optional setting filled in, as a deployment's merge would: still accepted,
        //    each value arrives where it belongs, and the service's own validation passes.
        let sandbox = tempfile::tempdir().unwrap();
        let a = sandbox.path().join("images a");
        let b = sandbox.path().join("images-b");
        let library = sandbox.path().join("libdlr.so");
        let dirs = format!("{}:{}", a.display(), b.display());
        let interpolation = Interpolation::new(
            &recipe,
            sandbox.path(),
            &[
                ("AllowedImageDirectories", &dirs),
                ("ThreadsPerWorker", "3"),
                ("Workers", "2"),
                ("DlrLibrary", &library.display().to_string()),
                ("ChannelOrder", "bgr"),
                ("LogFormat", "json"),
            ],
        );
        let launched = launch(&interpolation, manifest, &context);
        let argv = with_env_as_flags(launched, &cli, &context);
        let config = parse_service(&argv, &context).resolve().unwrap();
        assert_eq!(config.allowed_dirs, [a.clone(), b.clone()]);
        assert!(
            a.is_dir() && b.is_dir(),
            "{context}: Install creates each directory"
        );
        assert_eq!(config.threads_per_worker, Some(3));
        assert_eq!(config.workers, Some(2));
        assert_eq!(config.dlr_library.as_deref(), Some(library.as_path()));
        assert_eq!(lower_debug(config.channel_order), "bgr");
        assert_eq!(lower_debug(config.log_format), "json");
        std::fs::create_dir_all(config.model_dir.as_ref().unwrap()).unwrap();
        config
            .validate()
            .unwrap_or_else(|e| panic!("{context}: {e}"));
    }
}

#[test]
fn adapter_run_command_is_accepted_and_wired_to_the_configuration() {
    let recipe = recipe(&dist::ADAPTER);
    let cli = adapter_config::Cli::command();
    let defaults = default_configuration(&recipe);
    let value = |key: &str| defaults[key].as_str().unwrap().to_owned();
    for manifest in manifests(&recipe) {
        let target = target_for(manifest);
        let context = format!("{} {}", dist::ADAPTER.name, target.arch);
        let sandbox = tempfile::tempdir().unwrap();
        let interpolation = Interpolation::new(&recipe, sandbox.path(), &[]);
        let launched = launch(&interpolation, manifest, &context);
        assert_eq!(launched.env.get("RUST_LOG"), Some(&value("LogFilter")));
        let argv = with_env_as_flags(launched, &cli, &context);
        assert!(argv[0].ends_with(&format!("/classify-ipc-adapter-{}", target.arch)));
        let adapter_config::Command::Run(config) = parse_adapter(&argv, &context) else {
            panic!("{context}: the adapter component must run the adapter");
        };
        assert_eq!(config.topics.request_topic, value("RequestTopic"));
        assert_eq!(config.topics.reply_topic, value("ReplyTopic"));
        assert_eq!(config.service_url, value("ServiceUrl"));
        assert_eq!(lower_debug(config.reply_format), value("ReplyFormat"));
        assert_eq!(config.max_in_flight.to_string(), value("MaxInFlight"));
        assert_eq!(config.max_queued.to_string(), value("MaxQueued"));
        assert_eq!(
            config.timeouts.reply_deadline_ms.to_string(),
            value("ReplyDeadlineMs")
        );
        assert_eq!(
            config.timeouts.liveness_interval_ms.to_string(),
            value("LivenessIntervalMs")
        );
        assert!(
            !config.no_report_state,
            "{context}: Startup needs UpdateState"
        );
        assert_eq!(lower_debug(config.ipc.nucleus), value("Nucleus"));
        assert!(
            config.ipc.socket.is_none() && config.ipc.auth_token.is_none(),
            "{context}: the socket and token come from the nucleus's environment, not flags"
        );

        // The other reply format is accepted too.
        let interpolation =
            Interpolation::new(&recipe, sandbox.path(), &[("ReplyFormat", "label")]);
        let argv = with_env_as_flags(launch(&interpolation, manifest, &context), &cli, &context);
        let adapter_config::Command::Run(config) = parse_adapter(&argv, &context) else {
            panic!("{context}: run expected");
        };
        assert_eq!(lower_debug(config.reply_format), "label");
    }
}

#[test]
fn requester_run_command_is_accepted_and_wired_to_the_configuration() {
    let recipe = recipe(&dist::REQUESTER);
    let cli = adapter_config::Cli::command();
    let defaults = default_configuration(&recipe);
    let value = |key: &str| defaults[key].as_str().unwrap().to_owned();
    for manifest in manifests(&recipe) {
        let target = target_for(manifest);
        let context = format!("{} {}", dist::REQUESTER.name, target.arch);
        let sandbox = tempfile::tempdir().unwrap();
        let interpolation = Interpolation::new(&recipe, sandbox.path(), &[]);
        let argv = with_env_as_flags(launch(&interpolation, manifest, &context), &cli, &context);
        assert!(argv[0].ends_with(&format!("/classify-ipc-adapter-{}", target.arch)));
        let adapter_config::Command::Request(args) = parse_adapter(&argv, &context) else {
            panic!("{context}: the requester must run the `request` subcommand");
        };
        assert_eq!(
            args.image_dir.as_deref(),
            Some(value("ImageDirectory").as_str())
        );
        assert_eq!(args.fname.as_deref(), Some(value("ImageName").as_str()));
        assert_eq!(args.topics.request_topic, value("RequestTopic"));
        assert_eq!(args.topics.reply_topic, value("ReplyTopic"));
        assert_eq!(args.timeout_ms.to_string(), value("TimeoutMs"));
        assert_eq!(lower_debug(args.ipc.nucleus), value("Nucleus"));
    }
    // The service must allow the directory the requester points at.
    let service_dirs = default_configuration(&recipe_of(&dist::SERVICE))["AllowedImageDirectories"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        service_dirs
            .split(':')
            .any(|d| d == value("ImageDirectory")),
        "the requester's ImageDirectory is not among the service's AllowedImageDirectories"
    );
}

#[test]
fn no_lifecycle_step_requires_privilege() {
    for component in dist::COMPONENTS {
        let recipe = recipe(component);
        for manifest in manifests(&recipe) {
            let lifecycle = manifest["Lifecycle"].as_object().unwrap();
            for (step, body) in lifecycle {
                let privileged = body
                    .get("RequiresPrivilege")
                    .map(|v| v == true || v == "true");
                assert_ne!(
                    privileged,
                    Some(true),
                    "{}: {step} requires privilege",
                    component.name
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Artifacts versus the dist task
// ---------------------------------------------------------------------------------------------

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
                .map(|(_, _, to)| to.clone())
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
            for (artifact, from, _) in &planned.artifacts {
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

// ---------------------------------------------------------------------------------------------
// Docker
// ---------------------------------------------------------------------------------------------

/// One Dockerfile instruction: keyword (upper case) and its arguments, continuations joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

fn dockerfile_instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if !current.is_empty() && trimmed.starts_with('#') {
            continue; // comment lines inside a continued instruction
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, args) = current.split_once(char::is_whitespace).unwrap();
        out.push(Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_owned(),
        });
        current.clear();
    }
    out
}

/// Instructions per stage name (`FROM … AS name`).
fn dockerfile_stages(instructions: &[Instruction]) -> BTreeMap<String, Vec<&Instruction>> {
    let mut stages: BTreeMap<String, Vec<&Instruction>> = BTreeMap::new();
    let mut current = None;
    for instruction in instructions {
        if instruction.keyword == "FROM" {
            let words: Vec<&str> = instruction.args.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => name.to_string(),
                _ => panic!("every stage is named: FROM {}", instruction.args),
            };
            assert!(
                stages.insert(name.clone(), Vec::new()).is_none(),
                "stage {name} twice"
            );
            current = Some(name);
            continue;
        }
        if let Some(name) = &current {
            stages.get_mut(name).unwrap().push(instruction);
        }
    }
    stages
}

/// The single exec-form (JSON array) instruction `keyword` of a stage.
fn exec_form(stage: &[&Instruction], keyword: &str) -> Vec<String> {
    let found: Vec<_> = stage.iter().filter(|i| i.keyword == keyword).collect();
    assert_eq!(found.len(), 1, "one {keyword} per stage");
    serde_json::from_str(&found[0].args)
        .unwrap_or_else(|e| panic!("{keyword} must use the exec (JSON) form: {e}"))
}

/// `.dockerignore` semantics for the patterns used here: the last matching line wins; a
/// pattern matches the path itself or anything below it; `**` matches everything and `**/x`
/// matches `x` at any depth.
fn docker_ignored(patterns: &[String], path: &str) -> bool {
    let matches = |pattern: &str| {
        if pattern == "**" {
            return true;
        }
        let pattern = pattern.trim_end_matches('/');
        let under = |p: &str, prefix: &str| p == prefix || p.starts_with(&format!("{prefix}/"));
        match pattern.strip_prefix("**/") {
            Some(name) => path.split('/').any(|segment| segment == name),
            None => under(path, pattern),
        }
    };
    let mut ignored = false;
    for pattern in patterns {
        match pattern.strip_prefix('!') {
            Some(p) if matches(p) => ignored = false,
            None if matches(pattern) => ignored = true,
            _ => {}
        }
    }
    ignored
}

#[test]
fn dockerfile_is_consistent_with_the_workspace_and_the_binaries() {
    let root = root();
    let dockerfile = read(&root.join("docker/Dockerfile"));
    let ignore: Vec<String> = read(&root.join("docker/Dockerfile.dockerignore"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let instructions = dockerfile_instructions(&dockerfile);
    let stages = dockerfile_stages(&instructions);
    for name in ["builder", "service", "ipc-adapter"] {
        assert!(stages.contains_key(name), "stage {name}");
    }

    // COPY sources exist in the build context and are not filtered out; --from names a stage.
    let mut copied = BTreeSet::new();
    for (stage, body) in &stages {
        for instruction in body.iter().filter(|i| i.keyword == "COPY") {
            let words: Vec<&str> = instruction.args.split_whitespace().collect();
            let (flags, paths): (Vec<&str>, Vec<&str>) =
                words.iter().partition(|w| w.starts_with("--"));
            let (destination, sources) = paths.split_last().expect("COPY src… dest");
            assert!(!sources.is_empty() && !destination.is_empty());
            if let Some(from) = flags.iter().find_map(|f| f.strip_prefix("--from=")) {
                assert!(stages.contains_key(from), "{stage}: COPY --from={from}");
                continue;
            }
            for source in sources {
                assert!(!source.contains('*'), "no globs: {source}");
                assert!(
                    root.join(source).exists(),
                    "{stage}: COPY source {source} does not exist"
                );
                assert!(
                    !docker_ignored(&ignore, source),
                    "{stage}: COPY source {source} is excluded by Dockerfile.dockerignore"
                );
                copied.insert(source.trim_end_matches('/').to_owned());
            }
        }
    }
    // Everything cargo needs to load the workspace is copied.
    let workspace = cargo_toml(&root.join("Cargo.toml"));
    let members = workspace["workspace"]["members"].as_array().unwrap();
    for needed in members
        .iter()
        .map(|m| m.as_str().unwrap())
        .chain(["Cargo.toml", "Cargo.lock"])
    {
        assert!(
            copied.contains(needed),
            "the builder does not copy {needed}"
        );
    }
    for excluded in ["target", "generated", "greengrass-build", "service/target"] {
        assert!(
            docker_ignored(&ignore, excluded),
            "{excluded} is sent to the daemon"
        );
    }

    // The service image.
    let service = &stages["service"];
    let default_port = service_config::DEFAULT_LISTEN
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let exposed: Vec<&str> = service
        .iter()
        .filter(|i| i.keyword == "EXPOSE")
        .map(|i| i.args.as_str())
        .collect();
    assert_eq!(
        exposed,
        [default_port.as_str()],
        "EXPOSE equals the default port"
    );
    let mut argv = exec_form(service, "ENTRYPOINT");
    argv.extend(exec_form(service, "CMD"));
    assert_eq!(argv[0], "/usr/local/bin/classify-service");
    let config = parse_service(&argv, "Dockerfile service")
        .resolve()
        .unwrap();
    assert_eq!(config.listen.port().to_string(), default_port);
    let volumes: Vec<String> = service
        .iter()
        .filter(|i| i.keyword == "VOLUME")
        .flat_map(|i| serde_json::from_str::<Vec<String>>(&i.args).unwrap())
        .collect();
    let model_dir = config.model_dir.expect("--model-dir in CMD");
    assert!(
        volumes.iter().any(|v| Path::new(v) == model_dir),
        "the model directory {} is a VOLUME ({volumes:?})",
        model_dir.display()
    );
    let healthcheck: Vec<&str> = service
        .iter()
        .filter(|i| i.keyword == "HEALTHCHECK")
        .map(|i| i.args.as_str())
        .collect();
    assert_eq!(healthcheck.len(), 1);
    assert!(healthcheck[0].contains("/readyz"));
    assert!(healthcheck[0].contains(&format!("127.0.0.1/{default_port}")));
    check_env_is_cli_env(service, &service_config::Cli::command());

    // The adapter image.
    let adapter = &stages["ipc-adapter"];
    let mut argv = exec_form(adapter, "ENTRYPOINT");
    argv.extend(exec_form(adapter, "CMD"));
    assert_eq!(argv[0], "/usr/local/bin/classify-ipc-adapter");
    let adapter_config::Command::Run(run) = parse_adapter(&argv, "Dockerfile ipc-adapter") else {
        panic!("the adapter image runs the adapter");
    };
    assert_eq!(run.service_url, format!("http://127.0.0.1:{default_port}"));
    check_env_is_cli_env(adapter, &adapter_config::Cli::command());

    // Both images run unprivileged and carry their binary from the builder.
    for (name, binary) in [
        ("service", "classify-service"),
        ("ipc-adapter", "classify-ipc-adapter"),
    ] {
        let stage = &stages[name];
        let users: Vec<&str> = stage
            .iter()
            .filter(|i| i.keyword == "USER")
            .map(|i| i.args.as_str())
            .collect();
        let user = users.last().unwrap_or_else(|| panic!("{name}: no USER"));
        let uid = user.split(':').next().unwrap();
        assert!(uid != "root" && uid != "0", "{name} runs as root");
        assert!(
            stage.iter().any(|i| i.keyword == "COPY"
                && i.args.contains("--from=builder")
                && i.args.contains(&format!("/out/{binary}"))),
            "{name}: binary from the builder"
        );
    }
    let builder_run: String = stages["builder"]
        .iter()
        .filter(|i| i.keyword == "RUN")
        .map(|i| i.args.clone())
        .collect();
    assert!(builder_run.contains(&format!("--profile {}", dist::PROFILE)));
    for binary in ["classify-service", "classify-ipc-adapter"] {
        assert!(builder_run.contains(&format!("target/{}/{binary} /out/{binary}", dist::PROFILE)));
    }
}

/// `ENV` names in a stage are either options' environment variables (and their values parse
/// as that option) or known non-CLI variables.
fn check_env_is_cli_env(stage: &[&Instruction], cli: &clap::Command) {
    for instruction in stage.iter().filter(|i| i.keyword == "ENV") {
        let (name, value) = instruction
            .args
            .split_once('=')
            .expect("ENV NAME=value form");
        let known = cli
            .get_arguments()
            .any(|a| a.get_env().is_some_and(|e| e == name));
        assert!(
            known || NON_CLI_ENV.contains(&name),
            "ENV {name}={value} is not read by {}",
            cli.get_name()
        );
    }
}

#[test]
fn docker_ignore_matching_follows_the_last_pattern() {
    let patterns: Vec<String> = ["**", "!service", "**/target"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert!(docker_ignored(&patterns, "README.md"));
    assert!(!docker_ignored(&patterns, "service"));
    assert!(!docker_ignored(&patterns, "service/src/main.rs"));
    assert!(docker_ignored(&patterns, "service/target"));
    assert!(docker_ignored(&patterns, "target"));
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
