use std::process::ExitCode;

use clap::Parser as _;
use countersign::config::{Config, Role};
use countersign_ingester::Application;
use countersign_ingester::cli::{Cli, Command, SpoolCommand};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    // Before the runtime starts its threads.
    countersign::allocator::tune();
    run()
}

#[tokio::main]
async fn run() -> ExitCode {
    let cli = Cli::parse();
    let _log = countersign::telemetry::init("countersign-ingester");
    // Every configuration problem, the sources' key files included, is exit 2 and one line.
    let loaded = Config::load_path(&cli.config, Role::Ingester).and_then(|config| {
        // Keys and certificates are read now: their errors name the file too.
        let sources = config
            .build_sources()
            .map_err(|e| e.within(&cli.config.display().to_string()))?;
        Ok((config, sources))
    });
    let (mut config, sources) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("countersign-ingester: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {}
        Command::Spool(spool) => {
            if let Some(dir) = spool.dir {
                config.ingester.spool.dir = dir;
            }
            let done = match spool.command {
                SpoolCommand::Quarantine(command) => {
                    countersign_ingester::commands::quarantine(&config, command)
                        .await
                        .map(|all| if all { 0 } else { 1 })
                }
                SpoolCommand::Drain { timeout } => {
                    countersign_ingester::commands::drain(&config, timeout).await
                }
            };
            return match done {
                Ok(code) => ExitCode::from(code),
                Err(error) => {
                    eprintln!(
                        "countersign-ingester: {}",
                        countersign::telemetry::error_line(error.chain())
                    );
                    ExitCode::FAILURE
                }
            };
        }
        Command::Healthcheck => {
            let healthy = countersign::telemetry::probe_health(config.ingester.admin_listen.port());
            return if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(countersign::shutdown::cancel_on_signal(shutdown.clone()));
    let result = match Application::build_with(config, sources).await {
        Ok(app) => {
            // SIGHUP, or a change of the file or of what it references: sources reloaded.
            let watching = app.reloader(cli.config.clone()).watch(shutdown.clone());
            let result = app.run_until_stopped(shutdown.clone()).await;
            shutdown.cancel();
            let _ = watching.await;
            result
        }
        Err(error) => Err(error),
    };
    if let Err(error) = result {
        tracing::error!(
            error = countersign::telemetry::error_line(error.chain()),
            "ingester failed"
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
