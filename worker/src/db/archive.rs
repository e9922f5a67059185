//! The raw archive, a round at a time (no event id and no signature twice in a round): the
//! signature check, then `webhook_events`.

use std::collections::HashMap;

use sqlx::{Postgres, Transaction};

use super::record::{Item, Plans, plan_mode};
use super::{RawEvent, RecordError, Recorded};

/// The signature check for a round: a signature that does not cover the body must never carry
/// a second body, whichever replica received it.
pub(super) async fn check_signatures(
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
    // The rows this statement inserted are their signature's first use: nothing to compare.
    let inserted: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO signature_uses (source, signature_id, body_sha256, event_id)
         SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[])
         ON CONFLICT DO NOTHING
         RETURNING source, signature_id",
    )
    .bind(&source)
    .bind(&signature)
    .bind(rows.iter().map(|r| r.2).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.3).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await?;
    let inserted: std::collections::HashSet<(&str, &str)> = inserted
        .iter()
        .map(|(s, g)| (s.as_str(), g.as_str()))
        .collect();
    rows.retain(|row| !inserted.contains(&(row.0, row.1)));
    if rows.is_empty() {
        return Ok(());
    }
    // The others were used before (or by a transaction this insert waited for, which a new
    // statement's snapshot sees): compare their first body with this one.
    plan_mode(tx, Plans::Custom).await?;
    let first = first_uses(tx, &rows).await?;
    plan_mode(tx, Plans::Generic).await?;
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

/// The first use of each of `rows`' signatures: (source, signature, body's sha256, event id).
async fn first_uses(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[(&str, &str, &[u8], &str)],
) -> Result<Vec<(String, String, Vec<u8>, String)>, RecordError> {
    let source: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let signature: Vec<&str> = rows.iter().map(|r| r.1).collect();
    Ok(sqlx::query_as(
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
    .await?)
}

/// The raw archive for a round: a new row, or one more delivery of a known event (not for a
/// replay from the archive, which is not a delivery by the provider).
pub(super) async fn archive(
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
        plan_mode(tx, Plans::Custom).await?;
        sqlx::query(
            "UPDATE webhook_events w SET deliveries = 1
             FROM unnest($1::text[], $2::text[]) AS k(source, event_id)
             WHERE w.source = k.source AND w.event_id = k.event_id",
        )
        .bind(revived.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind(revived.iter().map(|r| r.1).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
        plan_mode(tx, Plans::Generic).await?;
    }
    Ok(())
}
