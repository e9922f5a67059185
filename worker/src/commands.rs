//! What the operator commands do (`replay dead`, `replay archive`, `upgrade dead-queue`); the
//! command line itself is [`crate::cli`].

use countersign::config::Config;
use countersign::topology::Topology;
use indicatif::{ProgressBar, ProgressStyle};
use secrecy::ExposeSecret as _;

use crate::cli::{Replay, Upgrade};
use crate::db::Db;
use crate::replay::{ArchiveFilter, replay_archive, replay_dead};

/// Runs an `upgrade` command; prints a one-line summary on stdout.
#[allow(clippy::print_stdout)]
pub async fn upgrade(config: Config, command: Upgrade) -> anyhow::Result<()> {
    let topology = Topology::from_config(&config.amqp);
    match command {
        Upgrade::DeadQueue => {
            let (connection, _) = countersign::amqp::connect(
                config.amqp.url.expose_secret(),
                "countersign-worker upgrade",
                &topology,
            )
            .await?;
            let result = crate::upgrade::upgrade_dead_queue(&connection, &topology).await;
            let _ = connection.close(200, "done".into()).await;
            match result? {
                crate::upgrade::DeadQueueUpgrade::AlreadyCurrent => println!(
                    "{} already has x-delivery-limit {}; nothing to do",
                    topology.dead_queue(),
                    countersign::topology::DEAD_DELIVERY_LIMIT
                ),
                crate::upgrade::DeadQueueUpgrade::Upgraded { moved } => println!(
                    "{} declared again with x-delivery-limit {}; {moved} parked message(s) kept",
                    topology.dead_queue(),
                    countersign::topology::DEAD_DELIVERY_LIMIT
                ),
            }
        }
    }
    Ok(())
}

fn progress_bar(what: &str) -> ProgressBar {
    // Drawn on stderr only when it is a terminal; scripts and logs get the summary line alone.
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// Runs a `replay` command; prints a one-line summary on stdout (the command's output, for
/// people and scripts; logs go to stderr).
#[allow(clippy::print_stdout)]
pub async fn replay(config: Config, command: Replay) -> anyhow::Result<()> {
    let topology = Topology::from_config(&config.amqp);
    match command {
        Replay::Dead { limit } => replay_dead_command(&config, &topology, limit).await,
        Replay::Archive {
            source,
            since,
            until,
            process_key,
            dry_run,
        } => {
            let filter = ArchiveFilter {
                source,
                since,
                until,
                process_key,
            };
            replay_archive_command(&config, &topology, filter, dry_run).await
        }
    }
}

/// `replay dead`: moves up to `limit` parked messages back to the persist queue.
#[allow(clippy::print_stdout)]
async fn replay_dead_command(
    config: &Config,
    topology: &Topology,
    limit: Option<u64>,
) -> anyhow::Result<()> {
    let (connection, channel) = countersign::amqp::connect(
        config.amqp.url.expose_secret(),
        "countersign-worker replay",
        topology,
    )
    .await?;
    let bar = progress_bar("moving");
    let result = replay_dead(&channel, topology, limit, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await;
    bar.finish_and_clear();
    let _ = connection.close(200, "done".into()).await;
    let summary = result?;
    println!(
        "moved {} of {} messages from {} to {}",
        summary.moved,
        summary.found,
        topology.dead_queue(),
        topology.persist_queue()
    );
    Ok(())
}

/// `replay archive`: re-publishes the archived events `filter` selects (or counts them).
#[allow(clippy::print_stdout)]
async fn replay_archive_command(
    config: &Config,
    topology: &Topology,
    filter: ArchiveFilter,
    dry_run: bool,
) -> anyhow::Result<()> {
    if !config.sources.iter().any(|s| s.name == filter.source) {
        let names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
        anyhow::bail!(
            "--source {}: no such source in the configuration (sources: {})",
            countersign::telemetry::Escaped(&filter.source),
            names.join(", ")
        );
    }
    let url = config.require_database_url()?;
    let db = Db::connect_lazy(url.expose_secret(), 2, config.worker.database_timeout)?;
    let broker = if dry_run {
        None
    } else {
        Some(
            countersign::amqp::connect(
                config.amqp.url.expose_secret(),
                "countersign-worker replay",
                topology,
            )
            .await?,
        )
    };
    let bar = progress_bar(if dry_run { "counting" } else { "replaying" });
    let result = replay_archive(
        &db,
        broker.as_ref().map(|(_, c)| c),
        topology,
        &filter,
        dry_run,
        &|done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    )
    .await;
    bar.finish_and_clear();
    if let Some((connection, _)) = broker {
        let _ = connection.close(200, "done".into()).await;
    }
    let summary = result?;
    if dry_run {
        println!(
            "would replay {} events of source {}",
            summary.matched, filter.source
        );
    } else {
        println!(
            "replayed {} events of source {} to {}",
            summary.published,
            filter.source,
            topology.persist_queue()
        );
    }
    Ok(())
}
