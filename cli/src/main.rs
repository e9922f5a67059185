//! `countersign`: the whole product on one machine for development (`dev`), a signed sample
//! event for any configured source (`send`), and whether a running system is healthy
//! (`status`). Production runs `countersign-ingester` and
//! `countersign-worker`, each with its configuration file; nothing here is needed there.

mod dev;
mod send;
mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Countersign for development: run the ingester and the worker together, send sample events.
#[derive(Debug, Parser)]
#[command(name = "countersign", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Development mode: ingester and worker in one process with a built-in configuration (a
    /// Taktikal source `acme` with a development key), on the local RabbitMQ and PostgreSQL.
    Dev(dev::Args),
    /// Sign a sample event for a configured source and POST it to the ingester.
    Send(send::Args),
    /// Is it healthy? Readiness, versions, spool, queues, parked messages, reconciliation, last
    /// events — exit 0 when healthy, 1 with the problems listed.
    Status(status::Args),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Send(args) => send::run(args).await,
        Command::Status(args) => status::run(args).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!(
                "countersign: {}",
                countersign::telemetry::error_line(error.chain())
            );
            ExitCode::FAILURE
        }
    }
}
