//! `countersign-ingester spool drain`: a spool no ingester will open again, published and
//! emptied. `countersign-ingester spool quarantine list | show | requeue`: what an operator does
//! with the messages the spool set aside (see [`crate::spool::quarantine`]).
//!
//! `drain` opens the spool as an ingester does (locked: never beside the ingester that owns it)
//! and runs the ingester's own drainer until the spool is empty.
//!
//! These read the quarantine directory beside the running ingester's spool (it needs no lock:
//! the drainer only adds whole files there, by rename). `requeue` publishes with confirms on a
//! connection of its own and removes a message only once the broker has confirmed it.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use countersign::config::Config;
use countersign::message::{self, MAX_FORWARDED_VALUE};
use countersign::topology::Topology;
use lapin::BasicProperties;
use lapin::types::AMQPValue;
use secrecy::ExposeSecret as _;
use sha2::{Digest as _, Sha256};

use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::cli::Quarantine;
use crate::metrics::Metrics;
use crate::spool::Spool;
use crate::spool::quarantine::{self, Entry};

/// How long `requeue` waits for each confirm.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// How often `drain` reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Drains the spool in `config.ingester.spool.dir` into the broker; the exit code (see
/// [`crate::cli::SpoolCommand::Drain`]).
pub async fn drain(config: &Config, timeout: Duration) -> anyhow::Result<u8> {
    // Opening creates a missing directory, as an ingester's first start should; a mistyped
    // path here would only "drain" an empty new spool.
    let wanted = &config.ingester.spool.dir;
    if !wanted.is_dir() {
        anyhow::bail!("no spool directory at {}", wanted.display());
    }
    let metrics = Metrics::new();
    let spool = Arc::new(Spool::open(&config.ingester.spool, metrics.clone())?);
    let dir = spool.dir().to_owned();
    let before = spool.status();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "spool {}: {} message(s), {} bytes{}",
        dir.display(),
        before.messages,
        before.bytes,
        before.oldest_age.map_or_else(String::new, |age| format!(
            ", the oldest spooled {} ago",
            humantime::format_duration(Duration::from_secs(age.as_secs()))
        )),
    )?;
    let started = Instant::now();
    if before.messages > 0 {
        drain_while(config, &spool, metrics, started, timeout, &mut out).await?;
    }
    let after = spool.status();
    let spool_to_close = spool.clone();
    tokio::task::spawn_blocking(move || spool_to_close.close())
        .await
        .context("the spool's writer")?;
    let quarantined = quarantine::count(&dir);
    if after.messages > 0 {
        writeln!(
            out,
            "gave up after {}: {} message(s) left in {} (nothing is lost: run it again once the broker takes them)",
            humantime::format_duration(timeout),
            after.messages,
            dir.display()
        )?;
        return Ok(1);
    }
    writeln!(
        out,
        "drained {} message(s) in {:.1} s; the spool is empty",
        before.messages,
        started.elapsed().as_secs_f64()
    )?;
    if quarantined > 0 {
        writeln!(
            out,
            "its quarantine holds {quarantined} message(s) the broker refused: countersign-ingester spool --dir {} quarantine list",
            dir.display()
        )?;
        return Ok(3);
    }
    Ok(0)
}

/// Connects to the broker and lets the spool drain into it until it is empty or `timeout` since
/// `started` has passed, saying what is left every [`PROGRESS_EVERY`].
async fn drain_while(
    config: &Config,
    spool: &Arc<Spool>,
    metrics: Metrics,
    started: Instant,
    timeout: Duration,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let broker = Broker::new(
        Topology::from_config(&config.amqp),
        config.ingester.confirm_timeout,
        metrics,
    );
    let stop = CancellationToken::new();
    let connection = tokio::spawn(
        broker
            .clone()
            .maintain(config.amqp.url.expose_secret().to_owned(), stop.clone()),
    );
    let drainer = tokio::spawn(spool.clone().drain(broker.clone(), stop.clone()));
    let mut reported = Instant::now();
    while spool.status().messages > 0 && started.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if reported.elapsed() >= PROGRESS_EVERY {
            reported = Instant::now();
            let now = spool.status();
            writeln!(
                out,
                "  {} left{}",
                now.messages,
                if broker.is_ready() {
                    ""
                } else {
                    " (the broker is not connected)"
                }
            )?;
        }
    }
    stop.cancel();
    drainer.await.context("the spool's drainer")?;
    connection.await.context("the broker connection")?;
    Ok(())
}

/// Runs a quarantine command; `Ok(false)` when some message could not be re-driven.
pub async fn quarantine(config: &Config, command: Quarantine) -> anyhow::Result<bool> {
    let dir = config.ingester.spool.dir.as_path();
    let mut out = std::io::stdout().lock();
    match command {
        Quarantine::List => {
            let ids = quarantine::ids(dir)
                .with_context(|| format!("cannot read {}", quarantine::dir(dir).display()))?;
            if ids.is_empty() {
                writeln!(
                    out,
                    "the quarantine is empty ({})",
                    quarantine::dir(dir).display()
                )?;
            }
            for id in ids {
                match quarantine::read(dir, &id) {
                    Ok(entry) => writeln!(
                        out,
                        "{id}  spooled {}  {}  message {}  {} bytes  {}",
                        humantime::format_rfc3339_seconds(entry.spooled_at),
                        escaped(entry.message.routing_key.as_str()),
                        escaped(&message_id(&entry.message.properties)),
                        entry.message.body.len(),
                        escaped(&entry.reason),
                    )?,
                    Err(error) => writeln!(out, "{id}  unreadable: {error}")?,
                }
            }
            Ok(true)
        }
        Quarantine::Show { id, body } => {
            let entry =
                quarantine::read(dir, &id).with_context(|| format!("quarantine id {id}"))?;
            if body {
                out.write_all(&entry.message.body)?;
            } else {
                describe(&mut out, &entry)?;
            }
            Ok(true)
        }
        Quarantine::Requeue {
            ids,
            all,
            drop_oversized_headers,
        } => {
            let ids = if all { quarantine::ids(dir)? } else { ids };
            if ids.is_empty() {
                anyhow::bail!("name the ids to requeue (see `spool quarantine list`), or --all");
            }
            requeue(config, dir, &ids, drop_oversized_headers, &mut out).await
        }
    }
}

fn message_id(properties: &BasicProperties) -> String {
    properties
        .message_id()
        .as_ref()
        .map_or_else(|| "-".to_owned(), |m| m.as_str().to_owned())
}

fn escaped(text: &str) -> String {
    countersign::telemetry::Escaped(text).to_string()
}

/// What a person needs to decide: never the body (it may hold personal data) unless asked.
fn describe(out: &mut impl std::io::Write, entry: &Entry) -> std::io::Result<()> {
    let properties = &entry.message.properties;
    writeln!(out, "id:              {}", entry.id)?;
    writeln!(out, "reason:          {}", escaped(&entry.reason))?;
    writeln!(out, "tries:           {}", entry.tries)?;
    writeln!(out, "quarantined at:  {}", entry.quarantined_at)?;
    writeln!(
        out,
        "spooled at:      {}",
        humantime::format_rfc3339_millis(entry.spooled_at)
    )?;
    writeln!(
        out,
        "routing key:     {}",
        escaped(entry.message.routing_key.as_str())
    )?;
    writeln!(out, "message id:      {}", escaped(&message_id(properties)))?;
    writeln!(
        out,
        "header frame:    {} bytes",
        countersign::amqp::header_frame_len(properties)
    )?;
    writeln!(
        out,
        "body:            {} bytes, sha256 {}",
        entry.message.body.len(),
        Sha256::digest(&entry.message.body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )?;
    writeln!(out, "headers:")?;
    if let Some(headers) = properties.headers() {
        for (name, value) in headers.inner() {
            let shown = match value {
                AMQPValue::LongString(text) if text.as_bytes().len() <= 120 => {
                    escaped(&String::from_utf8_lossy(text.as_bytes()))
                }
                AMQPValue::LongString(text) => format!("({} bytes)", text.as_bytes().len()),
                other => format!("{other:?}").chars().take(120).collect(),
            };
            writeln!(out, "  {}: {shown}", escaped(name.as_str()))?;
        }
    }
    Ok(())
}

async fn requeue(
    config: &Config,
    dir: &Path,
    ids: &[String],
    drop_oversized_headers: bool,
    out: &mut impl std::io::Write,
) -> anyhow::Result<bool> {
    let topology = Topology::from_config(&config.amqp);
    let (connection, channel) = countersign::amqp::connect(
        config.amqp.url.expose_secret(),
        "countersign-ingester-requeue",
        &topology,
    )
    .await
    .context("cannot connect to the broker")?;
    let frame_max = connection.configuration().frame_max();
    let mut all_done = true;
    for id in ids {
        let entry = match quarantine::read(dir, id) {
            Ok(entry) => entry,
            Err(error) => {
                writeln!(out, "{id}: not requeued: {error}")?;
                all_done = false;
                continue;
            }
        };
        let mut properties = entry.message.properties.clone();
        if drop_oversized_headers {
            let (trimmed, dropped) = message::drop_oversized(&properties);
            if !dropped.is_empty() {
                writeln!(out, "{id}: dropping {}", escaped(&dropped.join(", ")))?;
            }
            properties = trimmed;
        }
        if let Err(refused) = countersign::amqp::check_header_frame(&properties, frame_max) {
            writeln!(
                out,
                "{id}: not requeued: {refused} (--drop-oversized-headers drops forwarded headers over {MAX_FORWARDED_VALUE} bytes)"
            )?;
            all_done = false;
            continue;
        }
        let published = countersign::amqp::publish_confirmed(
            &channel,
            topology.exchange().into(),
            entry.message.routing_key.clone(),
            &entry.message.body,
            properties,
            CONFIRM_TIMEOUT,
        )
        .await;
        match published {
            Ok(()) => {
                quarantine::remove(dir, id).with_context(|| {
                    format!("{id} was published, but is still in the quarantine")
                })?;
                writeln!(out, "{id}: requeued (confirmed by the broker)")?;
            }
            Err(error) => {
                writeln!(out, "{id}: not requeued: {error}")?;
                all_done = false;
                if !channel.status().connected() {
                    writeln!(out, "the broker closed the channel; stopping")?;
                    break;
                }
            }
        }
    }
    let _ = channel.close(200, "done".into()).await;
    let _ = connection.close(200, "done".into()).await;
    Ok(all_done)
}
