//! `classify-service`: the HTTP classification service (see the library docs), or
//! `classify-service openapi` to print the OpenAPI document.

use std::process::ExitCode;

use clap::Parser;
use classify_service::config::{Cli, CliCommand};
use classify_service::telemetry::{self, ErrorChain};
use classify_service::{Application, shutdown_signal};

fn main() -> ExitCode {
    // Before any thread starts: glibc fixes its arena count when a thread first needs one.
    let arenas = memory_limit::arenas::bound(memory_limit::arenas::DEFAULT_MAX_ARENAS);
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
            eprintln!("classify-service: {}", ErrorChain(&e));
            return ExitCode::from(2);
        }
    };
    telemetry::init_capturing_native_output(config.log_format, &config.log_filter);
    tracing::info!("allocator: {arenas}");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        let app = Application::build(config).await?;
        let address = app.listen_address();
        match app.local_addr() {
            Some(tcp) => tracing::info!(
                %address,
                docs = %format!("http://{tcp}{}", classify_service::http::docs::DOCS_PATH),
                "listening"
            ),
            None => tracing::info!(%address, "listening"),
        }
        app.run_until_stopped(shutdown).await
    });
    // Blocking tasks still running (a decode, say) must not keep the process alive past the
    // grace period: the runtime waits for them only briefly.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // One line per start-up error, in the log's format (stderr is the log from here on).
        Err(e) => {
            let e = ErrorChain(&e);
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
