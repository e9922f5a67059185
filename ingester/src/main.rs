use std::process::ExitCode;

use countersign::config::Config;
use countersign_ingester::Application;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let _log = countersign::telemetry::init("countersign-ingester");
    let config = match Config::load(countersign::config::Role::Ingester) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("countersign-ingester: invalid configuration: {error}");
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
        tracing::error!(error = format!("{error:#}"), "ingester failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
