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

use chrono::{DateTime, Utc};
use countersign_providers::event::SigningEvent;
use futures_util::future::try_join_all;
use sqlx::{Postgres, Transaction};

use crate::db::{Db, RawEvent, RecordError, Recorded};
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
        let mut recorded = vec![Recorded::Duplicate; items.len()];
        for round in rounds(items) {
            check_signatures(&mut tx, items, &round).await?;
            archive(&mut tx, items, &round, &mut recorded).await?;
        }
        // Documents only now: a parked message leaves no stored content behind.
        let document_ids = self.store_batch_documents(items, store).await?;
        for layer in layers(items) {
            project_layer(&mut tx, items, &document_ids, &layer).await?;
        }
        tx.commit().await?;
        Ok(recorded)
    }

    /// `ids[item][event][document]`: each content stored by its sha256, the contents
    /// written concurrently and their `stored_documents` rows in one statement.
    async fn store_batch_documents(
        &self,
        items: &[Item<'_>],
        store: &dyn DocumentStore,
    ) -> Result<Vec<Vec<Vec<Option<String>>>>, RecordError> {
        let ids = try_join_all(items.iter().map(|item| async move {
            let mut per_event = Vec::with_capacity(item.events.len());
            for event in &item.events {
                let mut per_document = Vec::with_capacity(event.documents.len());
                for document in &event.documents {
                    let Some(content) = &document.content else {
                        per_document.push(None);
                        continue;
                    };
                    let sha256 = crate::documents::sha256_hex(content);
                    store
                        .put(&sha256, content)
                        .await
                        .map_err(|e| RecordError::DocumentStore(e.to_string()))?;
                    per_document.push(Some(sha256));
                }
                per_event.push(per_document);
            }
            Ok::<_, RecordError>(per_event)
        }))
        .await?;

        let mut rows: Vec<(&str, i64, &str)> = Vec::new();
        for (item, item_ids) in items.iter().zip(&ids) {
            for (event, event_ids) in item.events.iter().zip(item_ids) {
                for (document, id) in event.documents.iter().zip(event_ids) {
                    if let (Some(id), Some(content)) = (id, &document.content) {
                        let content_type = document
                            .content_type
                            .as_deref()
                            .unwrap_or("application/octet-stream");
                        rows.push((id, content.len() as i64, content_type));
                    }
                }
            }
        }
        if !rows.is_empty() {
            rows.sort_unstable_by_key(|r| r.0);
            rows.dedup_by_key(|r| r.0);
            let (sha256, size, content_type) = columns3(&rows);
            sqlx::query(
                "INSERT INTO stored_documents (sha256, size, content_type)
                 SELECT * FROM unnest($1::text[], $2::int8[], $3::text[])
                 ON CONFLICT DO NOTHING",
            )
            .bind(sha256)
            .bind(size)
            .bind(content_type)
            .execute(self.pool())
            .await?;
        }
        Ok(ids)
    }
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

/// The signature check for a round: a signature that does not cover the body must never carry
/// a second body, whichever replica received it.
async fn check_signatures(
    tx: &mut Transaction<'_, Postgres>,
    items: &[Item<'_>],
    round: &[usize],
) -> Result<(), RecordError> {
    let mut rows: Vec<(&str, &str, &[u8], &str)> = round
        .iter()
        .filter_map(|&i| {
            let raw = &items[i].raw;
            let signature = raw.signature_id.as_deref()?;
            Some((
                raw.source,
                signature,
                &raw.content_sha256[..],
                &*raw.event_id,
            ))
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    rows.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let source: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let signature: Vec<&str> = rows.iter().map(|r| r.1).collect();
    sqlx::query(
        "INSERT INTO signature_uses (source, signature_id, body_sha256, event_id)
         SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[])
         ON CONFLICT DO NOTHING",
    )
    .bind(&source)
    .bind(&signature)
    .bind(rows.iter().map(|r| r.2).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.3).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    let first: Vec<(String, String, Vec<u8>, String)> = sqlx::query_as(
        // One key lookup per signature: a join let the planner hash the whole table (its cost
        // grew with every event ever received).
        "SELECT u.source, u.signature_id, u.body_sha256, u.event_id
         FROM unnest($1::text[], $2::text[]) AS k(source, signature_id)
         CROSS JOIN LATERAL (
            SELECT * FROM signature_uses s
            WHERE s.source = k.source AND s.signature_id = k.signature_id
         ) u",
    )
    .bind(&source)
    .bind(&signature)
    .fetch_all(&mut **tx)
    .await?;
    let first: HashMap<(&str, &str), (&[u8], &str)> = first
        .iter()
        .map(|(s, g, b, e)| ((s.as_str(), g.as_str()), (b.as_slice(), e.as_str())))
        .collect();
    for row in &rows {
        match first.get(&(row.0, row.1)) {
            Some((sha256, _)) if *sha256 == row.2 => {}
            Some((_, first_event_id)) => {
                return Err(RecordError::SuspectedReplay {
                    first_event_id: (*first_event_id).to_owned(),
                });
            }
            // Inserted by a transaction that committed after this statement's snapshot.
            None => return Err(RecordError::Unsettled("a signature's first use")),
        }
    }
    Ok(())
}

/// The raw archive for a round: a new row, or one more delivery of a known event (not for a
/// replay from the archive, which is not a delivery by the provider).
async fn archive(
    tx: &mut Transaction<'_, Postgres>,
    items: &[Item<'_>],
    round: &[usize],
    recorded: &mut [Recorded],
) -> Result<(), RecordError> {
    let mut order = round.to_vec();
    order.sort_unstable_by_key(|&i| (items[i].raw.source, &*items[i].raw.event_id));
    let raws: Vec<&RawEvent<'_>> = order.iter().map(|&i| &items[i].raw).collect();
    // `deliveries` carries what this delivery adds: 0 for a replay from the archive. A replay
    // whose row is gone is new again and set to 1 below, as the column's default would.
    let returned: Vec<(String, String, bool, Vec<u8>)> = sqlx::query_as(
        "INSERT INTO webhook_events
            (source, provider, event_id, event_type, received_at, body, body_sha256, headers,
             deliveries)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                              $6::bytea[], $7::bytea[], $8::jsonb[], $9::int4[])
         ON CONFLICT (source, event_id) DO UPDATE
            SET deliveries = webhook_events.deliveries + EXCLUDED.deliveries,
                last_delivered_at = CASE WHEN EXCLUDED.deliveries > 0 THEN now()
                                         ELSE webhook_events.last_delivered_at END
         RETURNING source, event_id, (xmax = 0), body_sha256",
    )
    .bind(raws.iter().map(|r| r.source).collect::<Vec<_>>())
    .bind(raws.iter().map(|r| r.provider.name()).collect::<Vec<_>>())
    .bind(raws.iter().map(|r| &*r.event_id).collect::<Vec<_>>())
    .bind(raws.iter().map(|r| r.event_type).collect::<Vec<_>>())
    .bind(raws.iter().map(|r| r.received_at).collect::<Vec<_>>())
    .bind(raws.iter().map(|r| r.body).collect::<Vec<_>>())
    .bind(raws.iter().map(|r| &r.body_sha256[..]).collect::<Vec<_>>())
    .bind(raws.iter().map(|r| &r.headers).collect::<Vec<_>>())
    .bind(
        raws.iter()
            .map(|r| i32::from(r.counts_as_delivery))
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut **tx)
    .await?;
    let returned: HashMap<(&str, &str), (bool, &[u8])> = returned
        .iter()
        .map(|(s, e, new, sha)| ((s.as_str(), e.as_str()), (*new, sha.as_slice())))
        .collect();
    let mut revived: Vec<(&str, &str)> = Vec::new();
    for &i in &order {
        let raw = &items[i].raw;
        let Some(&(new, sha256)) = returned.get(&(raw.source, &*raw.event_id)) else {
            return Err(RecordError::Unsettled("an archived event"));
        };
        // Where a provider sends one event as different bytes (Legalesign's unsigned form
        // encoding, senders that re-serialize on every attempt), the same id is the same event:
        // a duplicate, not a conflict.
        if sha256 != raw.body_sha256 && !raw.provider.resends_reencoded() {
            return Err(RecordError::ConflictingBody);
        }
        if new && !raw.counts_as_delivery {
            revived.push((raw.source, &*raw.event_id));
        }
        recorded[i] = if new {
            Recorded::New
        } else {
            Recorded::Duplicate
        };
    }
    if !revived.is_empty() {
        sqlx::query(
            "UPDATE webhook_events w SET deliveries = 1
             FROM unnest($1::text[], $2::text[]) AS k(source, event_id)
             WHERE w.source = k.source AND w.event_id = k.event_id",
        )
        .bind(revived.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind(revived.iter().map(|r| r.1).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The projection of one layer (no process twice), with `db::project`'s merge rules.
async fn project_layer(
    tx: &mut Transaction<'_, Postgres>,
    items: &[Item<'_>],
    document_ids: &[Vec<Vec<Option<String>>>],
    layer: &[(usize, usize)],
) -> Result<(), RecordError> {
    let mut layer = layer.to_vec();
    layer.sort_unstable_by_key(|&(i, e)| (items[i].raw.source, &items[i].events[e].process_key));
    let applied: Vec<Applied<'_>> = layer
        .iter()
        .map(|&(i, e)| Applied::new(&items[i].raw, &items[i].events[e], &document_ids[i][e]))
        .collect();

    let (status, rank): (Vec<&str>, Vec<i16>) = applied
        .iter()
        .map(|a| {
            a.event
                .status
                .map_or(("unknown", 0), |s| (s.as_str(), s.rank()))
        })
        .unzip();
    sqlx::query(&format!(
        "INSERT INTO signing_processes
            (source, process_key, provider, status, status_rank, flow_key, flow_name, company_key,
             created_at, updated_at, status_changed_at, metadata)
         SELECT s, p, pr, st, r, fk, fn, ck, at, at, at, md
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int2[], $6::text[],
                     $7::text[], $8::text[], $9::timestamptz[], $10::jsonb[])
              AS t(s, p, pr, st, r, fk, fn, ck, at, md)
         {}",
        crate::db::PROCESS_MERGE
    ))
    .bind(applied.iter().map(|a| a.raw.source).collect::<Vec<_>>())
    .bind(
        applied
            .iter()
            .map(|a| &a.event.process_key)
            .collect::<Vec<_>>(),
    )
    .bind(
        applied
            .iter()
            .map(|a| a.raw.provider.name())
            .collect::<Vec<_>>(),
    )
    .bind(status)
    .bind(rank)
    .bind(
        applied
            .iter()
            .map(|a| &a.event.flow_key)
            .collect::<Vec<_>>(),
    )
    .bind(
        applied
            .iter()
            .map(|a| &a.event.flow_name)
            .collect::<Vec<_>>(),
    )
    .bind(
        applied
            .iter()
            .map(|a| &a.event.company_key)
            .collect::<Vec<_>>(),
    )
    .bind(applied.iter().map(|a| a.at).collect::<Vec<_>>())
    .bind(
        applied
            .iter()
            .map(|a| serde_json::Value::Object(a.event.metadata.clone()))
            .collect::<Vec<_>>(),
    )
    .execute(&mut **tx)
    .await?;

    let mut signees: Vec<(&Applied<'_>, &countersign_providers::event::Signee)> = applied
        .iter()
        .flat_map(|a| a.event.signees.iter().map(move |s| (a, s)))
        .collect();
    if !signees.is_empty() {
        signees.sort_by(|x, y| {
            (x.0.raw.source, &x.0.event.process_key, &x.1.key).cmp(&(
                y.0.raw.source,
                &y.0.event.process_key,
                &y.1.key,
            ))
        });
        sqlx::query(&format!(
            "INSERT INTO signees
                (source, process_key, signee_key, name, ssn, email, phone, address, postal_code,
                 city, delivery_method, signed, signed_at, created_at, updated_at)
             SELECT s, p, k, n, ssn, e, ph, ad, pc, c, dm, sg, sa, at, at
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
                         $12::bool[], $13::timestamptz[], $14::timestamptz[])
                  AS t(s, p, k, n, ssn, e, ph, ad, pc, c, dm, sg, sa, at)
             {}",
            crate::db::SIGNEE_MERGE
        ))
        .bind(signees.iter().map(|x| x.0.raw.source).collect::<Vec<_>>())
        .bind(
            signees
                .iter()
                .map(|x| &x.0.event.process_key)
                .collect::<Vec<_>>(),
        )
        .bind(signees.iter().map(|x| &x.1.key).collect::<Vec<_>>())
        .bind(signees.iter().map(|x| &x.1.name).collect::<Vec<_>>())
        .bind(signees.iter().map(|x| &x.1.ssn).collect::<Vec<_>>())
        .bind(signees.iter().map(|x| &x.1.email).collect::<Vec<_>>())
        .bind(signees.iter().map(|x| &x.1.phone).collect::<Vec<_>>())
        .bind(signees.iter().map(|x| &x.1.address).collect::<Vec<_>>())
        .bind(signees.iter().map(|x| &x.1.postal_code).collect::<Vec<_>>())
        .bind(signees.iter().map(|x| &x.1.city).collect::<Vec<_>>())
        .bind(
            signees
                .iter()
                .map(|x| &x.1.delivery_method)
                .collect::<Vec<_>>(),
        )
        .bind(signees.iter().map(|x| x.1.signed).collect::<Vec<_>>())
        .bind(signees.iter().map(|x| x.1.signed_at).collect::<Vec<_>>())
        .bind(signees.iter().map(|x| x.0.at).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }

    let mut activity: Vec<(&Applied<'_>, &countersign_providers::event::ActivityEntry)> = applied
        .iter()
        .flat_map(|a| a.event.activity.iter().map(move |x| (a, x)))
        .collect();
    if !activity.is_empty() {
        activity.sort_by(|x, y| {
            (x.0.raw.source, &x.0.event.process_key, &x.1.key).cmp(&(
                y.0.raw.source,
                &y.0.event.process_key,
                &y.1.key,
            ))
        });
        sqlx::query(&format!(
            "INSERT INTO activity
                (source, process_key, entry_key, flow_key, signee_key, status, description,
                 file_name, created_at, created_by, event_id)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::text[], $8::text[], $9::timestamptz[],
                                  $10::text[], $11::text[])
             {}",
            crate::db::ACTIVITY_MERGE
        ))
        .bind(activity.iter().map(|x| x.0.raw.source).collect::<Vec<_>>())
        .bind(
            activity
                .iter()
                .map(|x| &x.0.event.process_key)
                .collect::<Vec<_>>(),
        )
        .bind(activity.iter().map(|x| &x.1.key).collect::<Vec<_>>())
        .bind(
            activity
                .iter()
                .map(|x| &x.0.event.flow_key)
                .collect::<Vec<_>>(),
        )
        .bind(activity.iter().map(|x| &x.1.signee_key).collect::<Vec<_>>())
        .bind(activity.iter().map(|x| &x.1.status).collect::<Vec<_>>())
        .bind(
            activity
                .iter()
                .map(|x| &x.1.description)
                .collect::<Vec<_>>(),
        )
        .bind(activity.iter().map(|x| &x.1.file_name).collect::<Vec<_>>())
        .bind(
            activity
                .iter()
                .map(|x| x.1.created_at.unwrap_or(x.0.at))
                .collect::<Vec<_>>(),
        )
        .bind(activity.iter().map(|x| &x.1.created_by).collect::<Vec<_>>())
        .bind(
            activity
                .iter()
                .map(|x| &*x.0.raw.event_id)
                .collect::<Vec<_>>(),
        )
        .execute(&mut **tx)
        .await?;
    }

    let documents: Vec<crate::db::DocumentRow<'_>> = applied
        .iter()
        .flat_map(|a| {
            a.event
                .documents
                .iter()
                .zip(a.document_ids)
                .map(move |(d, id)| crate::db::DocumentRow::new(a.raw, a.event, d, id))
        })
        .collect();
    if !documents.is_empty() {
        let mut documents = documents;
        documents.sort_by(|x, y| x.key().cmp(&y.key()));
        // One event may list a document twice; one statement may not update a row twice.
        documents.dedup_by(|x, y| x.key() == y.key());
        sqlx::query(&format!(
            "INSERT INTO documents
                (source, process_key, kind, file_name, content_key, sha256, content_type, size,
                 url, reference_id, attachment_type, signee_key, description, event_id)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::text[], $8::int8[], $9::text[], $10::text[],
                                  $11::int4[], $12::text[], $13::text[], $14::text[])
             {}",
            crate::db::DOCUMENT_MERGE
        ))
        .bind(documents.iter().map(|d| d.source).collect::<Vec<_>>())
        .bind(documents.iter().map(|d| d.process_key).collect::<Vec<_>>())
        .bind(documents.iter().map(|d| d.kind).collect::<Vec<_>>())
        .bind(documents.iter().map(|d| d.file_name).collect::<Vec<_>>())
        .bind(
            documents
                .iter()
                .map(|d| d.content_key.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(documents.iter().map(|d| d.sha256).collect::<Vec<_>>())
        .bind(documents.iter().map(|d| d.content_type).collect::<Vec<_>>())
        .bind(documents.iter().map(|d| d.size).collect::<Vec<_>>())
        .bind(documents.iter().map(|d| d.url).collect::<Vec<_>>())
        .bind(documents.iter().map(|d| d.reference_id).collect::<Vec<_>>())
        .bind(
            documents
                .iter()
                .map(|d| d.attachment_type)
                .collect::<Vec<_>>(),
        )
        .bind(documents.iter().map(|d| d.signee_key).collect::<Vec<_>>())
        .bind(documents.iter().map(|d| d.description).collect::<Vec<_>>())
        .bind(documents.iter().map(|d| d.event_id).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// One event as the projection applies it.
struct Applied<'a> {
    raw: &'a RawEvent<'a>,
    event: &'a SigningEvent,
    document_ids: &'a [Option<String>],
    /// When it happened: the event's own time, else when it was received.
    at: DateTime<Utc>,
}

impl<'a> Applied<'a> {
    fn new(
        raw: &'a RawEvent<'a>,
        event: &'a SigningEvent,
        document_ids: &'a [Option<String>],
    ) -> Self {
        Self {
            raw,
            event,
            document_ids,
            at: event.occurred_at.unwrap_or(raw.received_at),
        }
    }
}

fn columns3<A: Copy, B: Copy, C: Copy>(rows: &[(A, B, C)]) -> (Vec<A>, Vec<B>, Vec<C>) {
    let mut a = Vec::with_capacity(rows.len());
    let mut b = Vec::with_capacity(rows.len());
    let mut c = Vec::with_capacity(rows.len());
    for &(x, y, z) in rows {
        a.push(x);
        b.push(y);
        c.push(z);
    }
    (a, b, c)
}
