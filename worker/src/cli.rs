//! The command line: `countersign-worker [run]`, `replay dead`, `replay archive`, `upgrade
//! dead-queue`, `healthcheck`; what the operator commands do is [`crate::commands`].
// The subcommands' doc comments are their `--help` text, where `<prefix>` reads as a
// placeholder; rustdoc would take it for an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Parser, Subcommand};

/// Records the webhooks that Countersign's ingester accepted; serves what it recorded.
#[derive(Debug, Parser)]
#[command(name = "countersign-worker", version)]
pub struct Cli {
    /// The configuration file (TOML). AMQP_URL and DATABASE_URL from the environment override it.
    #[arg(
        long,
        global = true,
        env = "COUNTERSIGN_CONFIG",
        default_value = countersign::config::DEFAULT_CONFIG_PATH
    )]
    pub config: std::path::PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume <prefix>.persist, record into PostgreSQL, serve the read API (the default).
    Run,
    /// Process events again, after their failure's cause is fixed. Safe to repeat.
    #[command(subcommand)]
    Replay(Replay),
    /// Exit 0 if a worker answers /healthz on this configuration's port (for containers).
    Healthcheck,
    /// Bring what an earlier version declared up to this version's topology.
    #[command(subcommand)]
    Upgrade(Upgrade),
}

#[derive(Debug, Subcommand)]
pub enum Upgrade {
    /// Declare <prefix>.dead again with x-delivery-limit, keeping its messages (stop the workers
    /// first). Safe to repeat; finishes an interrupted run.
    DeadQueue,
}

#[derive(Debug, Subcommand)]
pub enum Replay {
    /// Move the messages parked in <prefix>.dead back to <prefix>.persist.
    Dead {
        /// Move at most this many (oldest first).
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Re-publish archived events (webhook_events) to <prefix>.persist, to rebuild their projection.
    Archive {
        /// The source whose events to replay.
        #[arg(long)]
        source: String,
        /// Received at or after (RFC 3339, or a date: 2026-11-20 is its midnight UTC).
        #[arg(long, value_parser = parse_time)]
        since: Option<DateTime<Utc>>,
        /// Received before (RFC 3339, or a date).
        #[arg(long, value_parser = parse_time)]
        until: Option<DateTime<Utc>>,
        /// Only the events of this signing process.
        #[arg(long = "process")]
        process_key: Option<String>,
        /// Count what would be replayed; publish nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

impl Command {
    /// True for the commands that need PostgreSQL (a missing `DATABASE_URL` is then a
    /// configuration error, reported before anything starts).
    pub fn needs_database(&self) -> bool {
        matches!(self, Command::Run | Command::Replay(Replay::Archive { .. }))
    }
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        .map_err(|_| {
            format!("{text:?} is neither RFC 3339 (2026-11-20T08:00:00Z) nor a date (2026-11-20)")
        })
}
