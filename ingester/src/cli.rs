//! The command line: `countersign-ingester [run]`, `healthcheck`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Receives e-signature webhooks, verifies them, and hands them to RabbitMQ before replying 200.
#[derive(Debug, Parser)]
#[command(name = "countersign-ingester", version)]
pub struct Cli {
    /// The configuration file (TOML). AMQP_URL from the environment overrides its broker.
    #[arg(
        long,
        global = true,
        env = "COUNTERSIGN_CONFIG",
        default_value = countersign::config::DEFAULT_CONFIG_PATH
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve webhooks and the admin port until SIGTERM or Ctrl-C (the default).
    Run,
    /// Exit 0 if an ingester answers /healthz on this configuration's admin port (for containers).
    Healthcheck,
}
