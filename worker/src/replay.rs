//! Processing events again, after a bug or an outage is fixed: safe to repeat, because the
//! projection is an idempotent function of the raw event.
//!
//! - [`replay_dead`]: moves messages from `<prefix>.dead` back to `<prefix>.persist`. Each is
//!   published with a confirm before its original is acked, so a crash in the middle duplicates at
//!   worst (and the worker de-duplicates), never loses. The retry bookkeeping is reset.
//! - [`replay_archive`]: re-publishes raw events from `webhook_events` (by source, time range,
//!   process) to `<prefix>.persist`, to rebuild projection rows — for example after a parser fix.
//!   Archive replays are marked `x-replay: archive` and do not count as deliveries.
//!
//! The same move from the dead-letter queue can be done in the RabbitMQ management UI ("Move
//! messages", shovel plugins); the worker then resets the attempt count itself.

use std::time::Duration;

use chrono::{DateTime, Utc};
use countersign::amqp::publish_confirmed;
use countersign::message::{self, redriven_headers};
use countersign::topology::Topology;
use countersign_providers::ProviderKind;
use futures_util::TryStreamExt;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel};

use crate::db::Db;

const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Called once per message replayed, with the count so far and the total.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadReplay {
    /// Messages in `<prefix>.dead` when the replay started.
    pub found: u64,
    pub moved: u64,
}

/// Moves up to `limit` messages (all by default) from `<prefix>.dead` to `<prefix>.persist`.
/// Only the messages present at the start are moved, so one parked again meanwhile is not
/// cycled.
pub async fn replay_dead(
    channel: &Channel,
    topology: &Topology,
    limit: Option<u64>,
    progress: Progress<'_>,
) -> anyhow::Result<DeadReplay> {
    let found = u64::from(countersign::amqp::queue_length(channel, topology.dead_queue()).await?);
    let total = limit.map_or(found, |l| l.min(found));
    let moved = move_messages(
        channel,
        topology.dead_queue(),
        topology.persist_queue(),
        total,
        &|properties| {
            properties
                .clone()
                .with_headers(redriven_headers(properties.headers().as_ref(), "dead"))
        },
        progress,
    )
    .await?;
    Ok(DeadReplay { found, moved })
}

/// Moves up to `count` messages, oldest first, from queue `from` to queue `to` (through the
/// default exchange), their properties passed through `properties`. Each is published with a
/// confirm before its original is acked: a crash in the middle duplicates one message at worst,
/// never loses one. Returns how many were moved (fewer than `count` if `from` ran out).
pub async fn move_messages(
    channel: &Channel,
    from: &str,
    to: &str,
    count: u64,
    properties: &(dyn Fn(&BasicProperties) -> BasicProperties + Sync),
    progress: Progress<'_>,
) -> anyhow::Result<u64> {
    let mut moved = 0;
    while moved < count {
        let Some(message) = channel
            .basic_get(ShortString::from(from), BasicGetOptions { no_ack: false })
            .await?
        else {
            break;
        };
        let delivery = message.delivery;
        publish_confirmed(
            channel,
            ShortString::from(""),
            ShortString::from(to),
            &delivery.data,
            properties(&delivery.properties),
            CONFIRM_TIMEOUT,
        )
        .await?;
        // Only now is the message safe in `to`.
        delivery
            .acker
            .ack(BasicAckOptions { multiple: false })
            .await?;
        moved += 1;
        progress(moved, count);
    }
    Ok(moved)
}

/// Which archived events to replay.
#[derive(Debug, Clone, Default)]
pub struct ArchiveFilter {
    pub source: String,
    /// `received_at >= since`.
    pub since: Option<DateTime<Utc>>,
    /// `received_at < until`.
    pub until: Option<DateTime<Utc>>,
    /// Only events that concern this process (found by parsing each archived body).
    pub process_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveReplay {
    /// Events in the source and time range.
    pub matched: u64,
    /// Events published (0 in a dry run).
    pub published: u64,
}

struct ArchivedEvent {
    provider: String,
    event_id: String,
    received_at: DateTime<Utc>,
    body: Vec<u8>,
    headers: serde_json::Value,
}

from_row!(ArchivedEvent {
    provider,
    event_id,
    received_at,
    body,
    headers
});

/// Re-publishes the archived events that match `filter` to `<prefix>.persist`; with `dry_run`,
/// only counts them.
pub async fn replay_archive(
    db: &Db,
    channel: Option<&Channel>,
    topology: &Topology,
    filter: &ArchiveFilter,
    dry_run: bool,
    progress: Progress<'_>,
) -> anyhow::Result<ArchiveReplay> {
    const WHERE: &str = "WHERE source = $1 AND ($2::timestamptz IS NULL OR received_at >= $2)
                           AND ($3::timestamptz IS NULL OR received_at < $3)";
    let in_range: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM webhook_events {WHERE}"))
        .bind(&filter.source)
        .bind(filter.since)
        .bind(filter.until)
        .fetch_one(db.pool())
        .await?;
    let total = u64::try_from(in_range).unwrap_or(0);
    if dry_run && filter.process_key.is_none() {
        return Ok(ArchiveReplay {
            matched: total,
            published: 0,
        });
    }

    let select = format!(
        "SELECT provider, event_id, received_at, body, headers FROM webhook_events {WHERE} ORDER BY received_at, event_id"
    );
    let mut rows = sqlx::query_as::<_, ArchivedEvent>(&select)
        .bind(&filter.source)
        .bind(filter.since)
        .bind(filter.until)
        .fetch(db.pool());
    let (mut seen, mut matched, mut published) = (0, 0, 0);
    while let Some(event) = rows.try_next().await? {
        seen += 1;
        progress(seen, total);
        if let Some(process_key) = &filter.process_key {
            let concerns = ProviderKind::from_name(&event.provider)
                .and_then(|p| p.parse(&event.body).ok())
                .is_some_and(|events| events.iter().any(|e| &e.process_key == process_key));
            if !concerns {
                continue;
            }
        }
        matched += 1;
        if dry_run {
            continue;
        }
        let channel =
            channel.ok_or_else(|| anyhow::anyhow!("a broker channel is needed to publish"))?;
        publish_confirmed(
            channel,
            ShortString::from(""),
            ShortString::from(topology.persist_queue()),
            &event.body,
            archived_properties(&event),
            CONFIRM_TIMEOUT,
        )
        .await?;
        published += 1;
    }
    Ok(ArchiveReplay { matched, published })
}

/// The message an archived event travelled in, rebuilt from the archive's columns and headers.
fn archived_properties(event: &ArchivedEvent) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let serde_json::Value::Object(stored) = &event.headers {
        for (name, value) in stored {
            let value = match value {
                serde_json::Value::String(s) => AMQPValue::LongString(LongString::from(s.as_str())),
                serde_json::Value::Number(n) if n.is_i64() => {
                    AMQPValue::LongLongInt(n.as_i64().unwrap_or_default())
                }
                serde_json::Value::Bool(b) => AMQPValue::Boolean(*b),
                // Nested values (x-death) are broker bookkeeping, dropped below anyway.
                _ => continue,
            };
            if let Ok(name) = ShortString::try_new(name.as_str()) {
                headers.insert(name, value);
            }
        }
    }
    let headers = redriven_headers(Some(&headers), "archive");
    let mut properties = BasicProperties::default()
        .with_delivery_mode(message::PERSISTENT)
        .with_timestamp(u64::try_from(event.received_at.timestamp()).unwrap_or(0))
        .with_app_id("countersign-worker replay".into())
        .with_headers(headers);
    if let Ok(id) = ShortString::try_new(event.event_id.as_str()) {
        properties = properties.with_message_id(id);
    }
    properties
}
