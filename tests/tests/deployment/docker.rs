//! `docker/Dockerfile` and its ignore file, checked against the workspace and the binaries.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use clap::CommandFactory;

use crate::command_lines::{parse_adapter, parse_service};
use crate::support::*;
use classify_ipc_adapter::config as adapter_config;
use classify_service::config as service_config;

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
    assert_eq!(config.listen.port().unwrap().to_string(), default_port);
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
