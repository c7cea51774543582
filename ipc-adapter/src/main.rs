//! `classify-ipc-adapter`: `run` (default), `emulate`, `request`, `schedule`, `wait-ready`. Logic lives in
//! the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::FromArgMatches;
use classify_ipc_adapter::config::{self, Cli, Command};
use classify_ipc_adapter::{adapter, ready, requester, scheduled};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    // Logs go to stderr (Greengrass captures it into the component log); `RUST_LOG` overrides.
    // Colour only on a terminal: a component log or a pipe gets plain text.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let (command, warnings) = config::command(|name| std::env::var_os(name));
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let cli = Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit());
    match cli.command.unwrap_or(Command::Run(cli.run)) {
        Command::Run(config) => exit_status(adapter::run(config, shutdown_signal()).await),
        #[cfg(feature = "emulator")]
        Command::Emulate(args) => emulate(args).await,
        Command::Request(args) => match requester::request(&args).await {
            Ok(outcome) => {
                println!("{}", outcome.text);
                if outcome.ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Schedule(args) => exit_status(scheduled::run(args, shutdown_signal()).await),
        Command::WaitReady(args) => match ready::wait_for_files(&args.files, args.timeout_ms).await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::from(1)
            }
        },
    }
}

/// The exit status of `run` or `schedule`, the error logged.
fn exit_status(result: Result<(), adapter::AdapterError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// `emulate`: the nucleus emulator until SIGTERM/SIGINT (development builds only).
#[cfg(feature = "emulator")]
async fn emulate(args: classify_ipc_adapter::config::EmulatorArgs) -> ExitCode {
    use greengrass_ipc_emulator::acl::AccessControl;
    use greengrass_ipc_emulator::emulator;
    use std::collections::HashMap;
    let access_control = match AccessControl::from_files(&args.access_control) {
        Ok(acl) => acl,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    let configurations =
        match greengrass_ipc_emulator::configuration::recipe_defaults(&args.access_control) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(2);
            }
        };
    let config = emulator::EmulatorConfig {
        socket_path: args.socket,
        flavour: args.flavour,
        access_control,
        tokens: args.tokens.into_iter().collect::<HashMap<_, _>>(),
        configurations,
        configuration_file: args.configuration,
        iot_core_log: args.iot_core_log,
        cloud_unreachable_while: args.cloud_unreachable_while,
    };
    let stop = shutdown_signal();
    if let Some(path) = &args.ready_file {
        // A file left by an earlier run must not announce this one.
        let _ = std::fs::remove_file(path);
    }
    let handle = match emulator::spawn(config).await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!("cannot start the emulator: {e}");
            return ExitCode::from(3);
        }
    };
    if let Some(path) = &args.ready_file
        && let Err(e) = adapter::write_ready_file(path)
    {
        tracing::error!("cannot write --ready-file {}: {e}", path.display());
        handle.shutdown().await;
        return ExitCode::from(2);
    }
    stop.await;
    handle.shutdown().await;
    if let Some(path) = &args.ready_file {
        let _ = std::fs::remove_file(path);
    }
    ExitCode::SUCCESS
}

/// Resolves on SIGTERM (how Greengrass stops a component) or SIGINT. The handlers are installed
/// when this is called, not when first polled, so a signal during start-up is not lost.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
}
