//! Many deliveries in one transaction, written with set-based statements (`INSERT … SELECT FROM
//! unnest(…)`): a batch of N messages costs a handful of round trips instead of 6–12 per message.
//!
//! It gives the rows that recording the messages one by one, in batch order, would give:
//!
//! - **Rounds.** A multi-row upsert may not touch one row twice. A message whose event id or
//!   signature was already seen earlier in the batch goes to a later round of the archive
//!   statements (so a duplicate pair counts two deliveries, as one by one); an event whose
//!   process was already projected earlier in the batch goes to a later layer of the projection
//!   statements (so two events of one process are applied in batch order, as one by one).
//! - **Lock order.** Every statement's rows are sorted by key: concurrent batches touching the
//!   same processes take their row locks in one order and do not deadlock each other.
//! - **Fallback.** Any error rolls the whole batch back. Unless it is the database being away
//!   ([`RecordError::concerns_all`]), the caller then records each message alone — a batch of
//!   one — which gives each its own outcome: the poison (a signature used with another body, an
//!   event id recorded with another body, a value the database refuses, a document the store
//!   cannot take) is parked or retried alone, the rest commit.
//!
//! One message is recorded the same way, as a batch of one: there is one set of statements.

use std::collections::HashMap;

use sqlx::{Postgres, Transaction};

use countersign_providers::event::SigningEvent;

use super::archive::{archive, check_signatures};
use super::projection::{Applied, project};
use super::{Db, RawEvent, RecordError, Recorded};
use crate::documents::DocumentStore;

/// One parsed message of a batch.
#[derive(Debug)]
pub struct Item<'a> {
    pub raw: RawEvent<'a>,
    pub events: Vec<SigningEvent>,
}

impl Db {
    /// Records `items` and projects their events in one transaction; on success, whether each
    /// raw event was new. Signature check, then the raw archive, then the documents' contents
    /// (only once nothing can park the message: a parked event leaves nothing the API would
    /// serve), then the projection.
    pub async fn record_batch(
        &self,
        items: &[Item<'_>],
        store: &dyn DocumentStore,
    ) -> Result<Vec<Recorded>, RecordError> {
        let mut tx = self.pool().begin().await?;
        plan_mode(&mut tx, Plans::Generic).await?;
        let mut recorded = vec![Recorded::Duplicate; items.len()];
        for round in rounds(items) {
            check_signatures(&mut tx, items, &round).await?;
            archive(&mut tx, items, &round, &mut recorded).await?;
        }
        // Documents only now: a parked message leaves no stored content behind.
        let document_ids = self.store_batch_documents(items, store).await?;
        for layer in layers(items) {
            let applied = layer
                .iter()
                .map(|&(i, e)| {
                    Applied::new(&items[i].raw, &items[i].events, e, &document_ids[i][e])
                })
                .collect();
            project(&mut tx, applied).await?;
        }
        tx.commit().await?;
        Ok(recorded)
    }
}

/// How the transaction's statements are planned.
#[derive(Debug, Clone, Copy)]
pub(super) enum Plans {
    /// One plan per statement and connection. A batch's writes are inserts whose only index
    /// use is their conflict target: there is no plan to choose, and planning each of them
    /// again for every batch cost ~10 core-µs per event (`pg_stat_statements`' plan time).
    Generic,
    /// Planned for the tables as they are now, at every execution: the connection's default,
    /// and what a lookup needs (a plan cached while its table was empty would scan it whole).
    Custom,
}

/// Sets how the rest of the transaction's statements are planned.
pub(super) async fn plan_mode(
    tx: &mut Transaction<'_, Postgres>,
    plans: Plans,
) -> Result<(), RecordError> {
    sqlx::query(match plans {
        Plans::Generic => "SET LOCAL plan_cache_mode = force_generic_plan",
        Plans::Custom => "SET LOCAL plan_cache_mode = force_custom_plan",
    })
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Splits item indexes into rounds in which no event id and no signature appears twice; an
/// item goes to the round after the last one that used any of its keys.
fn rounds(items: &[Item<'_>]) -> Vec<Vec<usize>> {
    let mut last: HashMap<(&str, &str, bool), usize> = HashMap::new();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let raw = &item.raw;
        let mut keys = vec![(raw.source, &*raw.event_id, false)];
        if let Some(signature) = &raw.signature_id {
            keys.push((raw.source, signature.as_str(), true));
        }
        let round = keys
            .iter()
            .filter_map(|k| last.get(k))
            .max()
            .map_or(0, |r| r + 1);
        for key in keys {
            last.insert(key, round);
        }
        if rounds.len() <= round {
            rounds.push(Vec::new());
        }
        rounds[round].push(i);
    }
    rounds
}

/// Splits the events, as (item, event) indexes in batch order, into layers in which no process
/// appears twice; an event goes to the layer after the last one that touched its process.
fn layers(items: &[Item<'_>]) -> Vec<Vec<(usize, usize)>> {
    let mut last: HashMap<(&str, &str), usize> = HashMap::new();
    let mut layers: Vec<Vec<(usize, usize)>> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        for (e, event) in item.events.iter().enumerate() {
            let key = (item.raw.source, event.process_key.as_str());
            let layer = last.get(&key).map_or(0, |l| l + 1);
            last.insert(key, layer);
            if layers.len() <= layer {
                layers.push(Vec::new());
            }
            layers[layer].push((i, e));
        }
    }
    layers
}
