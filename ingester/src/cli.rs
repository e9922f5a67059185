//! The command line: `countersign-ingester [run]`, `healthcheck`, `spool drain`,
//! `spool quarantine …`.

use std::path::PathBuf;
use std::time::Duration;

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
    /// The local spool (ingester.spool.dir, or --dir).
    Spool(Spool),
}

#[derive(Debug, clap::Args)]
pub struct Spool {
    /// The spool directory, instead of the configuration's ingester.spool.dir (a claim of an
    /// ingester that is gone, mounted elsewhere).
    #[arg(long, global = true)]
    pub dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: SpoolCommand,
}

#[derive(Debug, Subcommand)]
pub enum SpoolCommand {
    /// Publish every message the spool holds to the broker (with confirms, oldest first), then
    /// exit: for a spool no ingester will open again (a scaled-away pod's volume). Refuses a
    /// directory a running ingester holds. Exit 0: the spool is empty; 1: the broker did not take
    /// everything within --timeout (what is left stays on disk); 3: the spool is empty but its
    /// quarantine holds messages the broker refused (`spool quarantine list`).
    Drain {
        /// How long to keep trying while the broker is away or refuses.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Messages the broker refused every time they were sent, set aside so that the rest drained.
    #[command(subcommand)]
    Quarantine(Quarantine),
}

#[derive(Debug, Subcommand)]
pub enum Quarantine {
    /// One line per quarantined message: id, spooled at, routing key, message id, bytes, reason.
    List,
    /// A message's properties and headers (names and sizes), its body's size and sha256, and why
    /// it is here. `--body` writes the body itself to standard output instead.
    Show {
        id: String,
        #[arg(long)]
        body: bool,
    },
    /// Publish quarantined messages to the broker again (with confirms); each one confirmed
    /// leaves the quarantine, each one refused stays, with the broker's answer printed.
    Requeue {
        /// The ids to re-drive (see `list`).
        ids: Vec<String>,
        /// Every message in the quarantine.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Drop forwarded request headers over 1 KiB (not the x-… contract headers) so that the
        /// message fits the broker's frame; their names are kept in x-dropped-headers.
        #[arg(long)]
        drop_oversized_headers: bool,
    },
}
