//! Each component's Run command, as the nucleus would launch it, parsed by its binary's own
//! clap type and compared with the recipe's configuration.

use clap::{CommandFactory, Parser};
use serde_json::Value;

use crate::lifecycle::{Interpolation, launch, with_env_as_flags};
use crate::support::*;
use classify_ipc_adapter::config as adapter_config;
use classify_service::config as service_config;

pub(crate) fn parse_service(argv: &[String], context: &str) -> service_config::ServeArgs {
    let cli = service_config::Cli::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("{context}: classify-service rejects {argv:?}:\n{e}"));
    match cli.command {
        None => cli.serve,
        Some(service_config::CliCommand::Serve(args)) => *args,
        Some(other) => panic!("{context}: runs {other:?} instead of serving"),
    }
}

pub(crate) fn parse_adapter(argv: &[String], context: &str) -> adapter_config::Command {
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
        assert_eq!(
            config.workers, None,
            "empty Workers = from the performance hint"
        );
        assert_eq!(
            lower_debug(config.performance_hint),
            value("PerformanceHint")
        );
        assert_eq!(
            config.threads_per_worker, None,
            "empty ThreadsPerWorker = automatic"
        );
        assert_eq!(config.dlr_library, None, "empty DlrLibrary = discovery");
        assert_eq!(lower_debug(config.backend), value("Backend"));
        assert_eq!(config.onnx_library, None, "empty OnnxLibrary = discovery");
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
            interpolation.dependencies[MODEL_STORE]
                .unarchived
                .join(format!(
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
        let onnx_library = sandbox.path().join("onnxruntime");
        let onnx_model = sandbox.path().join("my model");
        let dirs = format!("{}:{}", a.display(), b.display());
        let interpolation = Interpolation::new(
            &recipe,
            sandbox.path(),
            &[
                ("AllowedImageDirectories", &dirs),
                ("ThreadsPerWorker", "3"),
                ("Workers", "2"),
                ("PerformanceHint", "throughput"),
                ("DlrLibrary", &library.display().to_string()),
                ("ModelDirectory", &onnx_model.display().to_string()),
                ("Backend", "onnx"),
                ("OnnxLibrary", &onnx_library.display().to_string()),
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
        assert_eq!(lower_debug(config.performance_hint), "throughput");
        assert_eq!(config.dlr_library.as_deref(), Some(library.as_path()));
        assert_eq!(config.model_dir.as_deref(), Some(onnx_model.as_path()));
        assert_eq!(lower_debug(config.backend), "onnx");
        assert_eq!(config.onnx_library.as_deref(), Some(onnx_library.as_path()));
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
    let service_dirs =
        default_configuration(&crate::support::recipe(&dist::SERVICE))["AllowedImageDirectories"]
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
fn scheduled_run_command_is_accepted_and_wired_to_the_configuration() {
    let recipe = recipe(&dist::SCHEDULED);
    let cli = adapter_config::Cli::command();
    let defaults = default_configuration(&recipe);
    let value = |key: &str| defaults[key].as_str().unwrap().to_owned();
    for manifest in manifests(&recipe) {
        let target = target_for(manifest);
        let context = format!("{} {}", dist::SCHEDULED.name, target.arch);
        let sandbox = tempfile::tempdir().unwrap();
        let interpolation = Interpolation::new(&recipe, sandbox.path(), &[]);
        let argv = with_env_as_flags(launch(&interpolation, manifest, &context), &cli, &context);
        assert!(argv[0].ends_with(&format!("/classify-ipc-adapter-{}", target.arch)));
        let adapter_config::Command::Schedule(args) = parse_adapter(&argv, &context) else {
            panic!("{context}: the scheduled component must run the `schedule` subcommand");
        };
        assert_eq!(args.service_url, value("ServiceUrl"));
        assert_eq!(lower_debug(args.ipc.nucleus), value("Nucleus"));
    }
    // It calls the service where the service listens.
    let listen = default_configuration(&crate::support::recipe(&dist::SERVICE))["Listen"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(value("ServiceUrl"), format!("http://{listen}"));
}

#[test]
fn scheduled_defaults_are_aws_keys_with_the_code_s_defaults() {
    use classify_ipc_adapter::scheduled::settings::{self, Settings};
    let recipe = recipe(&dist::SCHEDULED);
    let config = serde_json::Value::Object(default_configuration(&recipe).clone());
    for key in settings::KEYS {
        assert!(
            config[key].is_string(),
            "{key} is in DefaultConfiguration, a string as in AWS's recipe"
        );
    }
    // AWS's values for AWS's keys.
    assert_eq!(config["InferenceInterval"], "3600");
    assert_eq!(config["ImageName"], "cat.jpeg");
    assert_eq!(
        config["PublishResultsOnTopic"],
        "ml/dlr/image-classification"
    );
    // The recipe says what the code does when a key is missing: applying it changes nothing
    // but the folder.
    let code = Settings::defaults("/elsewhere");
    let (from_recipe, refused) = code.apply(&config);
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(
        from_recipe.image_directory,
        std::path::Path::new(config["ImageDirectory"].as_str().unwrap())
    );
    assert_eq!(
        (
            from_recipe.interval,
            &from_recipe.image_name,
            &from_recipe.iot_core_topic,
            from_recipe.top_k,
            from_recipe.threshold
        ),
        (
            code.interval,
            &code.image_name,
            &code.iot_core_topic,
            code.top_k,
            code.threshold
        )
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
