use std::process::ExitCode;

use countersign::config::{Config, Role};
use countersign_worker::Application;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    countersign::telemetry::init("countersign-worker");
    if let Some(argument) = std::env::args().nth(1) {
        eprintln!("countersign-worker: unknown command {argument:?}; run it without arguments");
        return ExitCode::from(2);
    }
    let config = match Config::load(Role::Worker) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("countersign-worker: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(countersign::telemetry::cancel_on_signal(shutdown.clone()));
    let result = match Application::build(config).await {
        Ok(app) => app.run_until_stopped(shutdown).await,
        Err(error) => Err(error),
    };
    if let Err(error) = result {
        tracing::error!(error = format!("{error:#}"), "worker failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
