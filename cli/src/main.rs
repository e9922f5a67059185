//! `countersign`: the whole product on one machine for development (`dev`), and a signed sample
//! event for any configured source (`send`). Production runs `countersign-ingester` and
//! `countersign-worker`, each with its configuration file; nothing here is needed there.

mod dev;
mod send;

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
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Send(args) => send::run(args).await,
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
