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
    match std::env::args().nth(1).as_deref() {
        None => {}
        // For the container's HEALTHCHECK: the admin port's /healthz.
        Some("healthcheck") => {
            let healthy = countersign::telemetry::probe_health(config.ingester.admin_listen.port());
            return if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        Some(other) => {
            eprintln!("countersign-ingester: unknown command {other:?} (commands: healthcheck)");
            return ExitCode::from(2);
        }
    }
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
