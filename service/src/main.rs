//! `classify-service`: the HTTP classification service (see the library docs), or
//! `classify-service openapi` to print the OpenAPI document.

use std::process::ExitCode;

use clap::Parser;
use classify_service::config::{Cli, CliCommand};
use classify_service::{Application, shutdown_signal, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(CliCommand::Openapi) => {
            print!("{}", classify_service::http::api::openapi_json());
            return ExitCode::SUCCESS;
        }
        Some(CliCommand::Serve(args)) => *args,
        None => cli.serve,
    };
    let config = match args.resolve() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("classify-service: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format, &config.log_filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("classify-service: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let app = Application::build(config).await?;
        tracing::info!(address = %app.listen_address(), "listening");
        app.run_until_stopped(shutdown_signal()).await
    });
    // Blocking tasks still running (a decode, say) must not keep the process alive past the
    // grace period: the runtime waits for them only briefly.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("classify-service: {e}");
            ExitCode::FAILURE
        }
    }
}
