use std::process::ExitCode;

use clap::Parser as _;
use countersign::config::{Config, Role};
use countersign_worker::Application;
use countersign_worker::cli::{Cli, Command};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    // Before the runtime starts its threads.
    countersign::allocator::tune();
    run()
}

#[tokio::main]
async fn run() -> ExitCode {
    let cli = Cli::parse();
    let _log = countersign::telemetry::init("countersign-worker");
    let command = cli.command.unwrap_or(Command::Run);
    let loaded = Config::load_path(&cli.config, Role::Worker).and_then(|config| {
        if command.needs_database() {
            config
                .require_database_url()
                .map_err(|e| e.within(&cli.config.display().to_string()))?;
        }
        Ok(config)
    });
    let config = match loaded {
        Ok(config) => config,
        Err(error) => {
            eprintln!("countersign-worker: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::Run => {
            let shutdown = CancellationToken::new();
            tokio::spawn(countersign::shutdown::cancel_on_signal(shutdown.clone()));
            match Application::build(config).await {
                Ok(app) => app.run_until_stopped(shutdown).await,
                Err(error) => Err(error),
            }
        }
        Command::Replay(replay) => countersign_worker::commands::replay(config, replay).await,
        Command::Upgrade(upgrade) => countersign_worker::commands::upgrade(config, upgrade).await,
        Command::Healthcheck => {
            let healthy = countersign::telemetry::probe_health(config.worker.listen.port());
            return if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    };
    if let Err(error) = result {
        eprintln!(
            "countersign-worker: {}",
            countersign::telemetry::error_line(error.chain())
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
