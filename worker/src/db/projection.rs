//! The projection of one layer of events (no process twice in it) into the normalized tables:
//! one function per table, each with its `INSERT` and the merge rule (`ON CONFLICT`) that makes
//! the rows the same whatever order events arrive in and however many workers record them (a
//! test sends one event set through one worker and, reordered, through three, and compares
//! every table) — with two exceptions where events disagree about a value: a `metadata` key
//! and a signee's contact details take the value of the event recorded last.
//!
//! Each table's columns are built by a pure function (rows sorted by key, so that concurrent
//! batches take their row locks in one order), unit-tested without PostgreSQL; the statements
//! are thin.

use chrono::{DateTime, Utc};
use countersign_providers::event::{ActivityEntry, Document, ProcessStatus, Signee, SigningEvent};
use sqlx::{Postgres, Transaction};

use super::{RawEvent, RecordError};

/// One event as the projection applies it.
pub(super) struct Applied<'a> {
    pub raw: &'a RawEvent<'a>,
    pub event: &'a SigningEvent,
    /// The stored content's sha256 of each of the event's documents (`None`: a reference).
    pub document_ids: &'a [Option<String>],
    /// When it happened: the event's own time, else when it was received.
    pub at: DateTime<Utc>,
    /// Where the event's activity log starts in its delivery's (a delivery of several events,
    /// such as Legalesign's batches, lists their entries one event after another).
    pub first_entry: usize,
}

impl<'a> Applied<'a> {
    /// The `index`th event of the delivery `raw` whose events are `events`.
    pub fn new(
        raw: &'a RawEvent<'a>,
        events: &'a [SigningEvent],
        index: usize,
        document_ids: &'a [Option<String>],
    ) -> Self {
        let event = &events[index];
        Self {
            raw,
            event,
            document_ids,
            at: event.occurred_at.unwrap_or(raw.received_at),
            first_entry: events[..index].iter().map(|e| e.activity.len()).sum(),
        }
    }
}

/// Projects `applied` (one layer: no process twice) into every table.
pub(super) async fn project(
    tx: &mut Transaction<'_, Postgres>,
    mut applied: Vec<Applied<'_>>,
) -> Result<(), RecordError> {
    applied.sort_unstable_by_key(|a| (a.raw.source, &a.event.process_key));
    upsert_processes(tx, &ProcessColumns::of(&applied)).await?;
    let signees = SigneeColumns::of(&applied);
    if !signees.is_empty() {
        upsert_signees(tx, &signees).await?;
    }
    let activity = ActivityColumns::of(&applied);
    if !activity.is_empty() {
        upsert_activity(tx, &activity).await?;
    }
    let documents = DocumentColumns::of(&applied);
    if !documents.is_empty() {
        upsert_documents(tx, &documents).await?;
    }
    Ok(())
}

/// The `rows` of every event (its signees, its activity), each with its event, sorted by
/// (source, process, the row's `key`): the order in which rows are locked.
fn by_process<'s, 'a, T>(
    applied: &'s [Applied<'a>],
    rows: impl Fn(&'a SigningEvent) -> &'a [T],
    key: impl Fn(&T) -> &str,
) -> Vec<(&'s Applied<'a>, usize, &'a T)> {
    let mut all: Vec<(&'s Applied<'a>, usize, &'a T)> = applied
        .iter()
        .flat_map(|a| {
            rows(a.event)
                .iter()
                .enumerate()
                .map(move |(i, row)| (a, i, row))
        })
        .collect();
    all.sort_by(|x, y| {
        (x.0.raw.source, &x.0.event.process_key, key(x.2)).cmp(&(
            y.0.raw.source,
            &y.0.event.process_key,
            key(y.2),
        ))
    });
    all
}

// --- signing_processes ------------------------------------------------------------------------

/// The status only moves forward (by rank); the first known flow, company and creation time
/// stay; metadata keys merge, the event recorded last winning a key.
const PROCESS_MERGE: &str = "ON CONFLICT (source, process_key) DO UPDATE SET
    status = CASE WHEN EXCLUDED.status_rank > signing_processes.status_rank
                  THEN EXCLUDED.status ELSE signing_processes.status END,
    status_changed_at = CASE WHEN EXCLUDED.status_rank > signing_processes.status_rank
                  THEN EXCLUDED.status_changed_at ELSE signing_processes.status_changed_at END,
    status_rank = GREATEST(signing_processes.status_rank, EXCLUDED.status_rank),
    flow_key = COALESCE(signing_processes.flow_key, EXCLUDED.flow_key),
    flow_name = COALESCE(signing_processes.flow_name, EXCLUDED.flow_name),
    company_key = COALESCE(signing_processes.company_key, EXCLUDED.company_key),
    created_at = LEAST(signing_processes.created_at, EXCLUDED.created_at),
    updated_at = GREATEST(signing_processes.updated_at, EXCLUDED.updated_at),
    metadata = signing_processes.metadata || EXCLUDED.metadata,
    api_confirmed = COALESCE(EXCLUDED.api_confirmed, signing_processes.api_confirmed)";

/// One `signing_processes` row per event, in the order given.
#[derive(Debug, Default, PartialEq)]
struct ProcessColumns<'a> {
    source: Vec<&'a str>,
    process_key: Vec<&'a str>,
    provider: Vec<&'static str>,
    /// `unknown` (rank 0) where the event says nothing of the status.
    status: Vec<&'static str>,
    rank: Vec<i16>,
    flow_key: Vec<Option<&'a str>>,
    flow_name: Vec<Option<&'a str>>,
    company_key: Vec<Option<&'a str>>,
    at: Vec<DateTime<Utc>>,
    metadata: Vec<serde_json::Value>,
    /// The final status the provider's API confirmed, where it did.
    api_confirmed: Vec<Option<&'static str>>,
}

impl<'a> ProcessColumns<'a> {
    fn of(applied: &[Applied<'a>]) -> Self {
        let mut c = Self::default();
        for a in applied {
            let (status, rank) = a
                .event
                .status
                .map_or(("unknown", 0), |s| (s.as_str(), s.rank()));
            c.source.push(a.raw.source);
            c.process_key.push(&a.event.process_key);
            c.provider.push(a.raw.provider.name());
            c.status.push(status);
            c.rank.push(rank);
            c.api_confirmed.push(
                a.event
                    .status
                    .filter(|s| a.raw.api_confirmed && s.is_final_claim())
                    .map(ProcessStatus::as_str),
            );
            c.flow_key.push(a.event.flow_key.as_deref());
            c.flow_name.push(a.event.flow_name.as_deref());
            c.company_key.push(a.event.company_key.as_deref());
            c.at.push(a.at);
            c.metadata
                .push(serde_json::Value::Object(a.event.metadata.clone()));
        }
        c
    }
}

async fn upsert_processes(
    tx: &mut Transaction<'_, Postgres>,
    c: &ProcessColumns<'_>,
) -> Result<(), RecordError> {
    sqlx::query(&format!(
        "INSERT INTO signing_processes
            (source, process_key, provider, status, status_rank, flow_key, flow_name, company_key,
             created_at, updated_at, status_changed_at, metadata, api_confirmed)
         SELECT s, p, pr, st, r, fk, fn, ck, at, at, at, md, ac
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int2[], $6::text[],
                     $7::text[], $8::text[], $9::timestamptz[], $10::jsonb[], $11::text[])
              AS t(s, p, pr, st, r, fk, fn, ck, at, md, ac)
         {PROCESS_MERGE}"
    ))
    .bind(&c.source)
    .bind(&c.process_key)
    .bind(&c.provider)
    .bind(&c.status)
    .bind(&c.rank)
    .bind(&c.flow_key)
    .bind(&c.flow_name)
    .bind(&c.company_key)
    .bind(&c.at)
    .bind(&c.metadata)
    .bind(&c.api_confirmed)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

// --- signees --------------------------------------------------------------------------------

/// Contact details: the last event that gives one wins; signed once, signed for good, at the
/// earliest time given.
const SIGNEE_MERGE: &str = "ON CONFLICT (source, process_key, signee_key) DO UPDATE SET
    name = COALESCE(EXCLUDED.name, signees.name),
    ssn = COALESCE(EXCLUDED.ssn, signees.ssn),
    email = COALESCE(EXCLUDED.email, signees.email),
    phone = COALESCE(EXCLUDED.phone, signees.phone),
    address = COALESCE(EXCLUDED.address, signees.address),
    postal_code = COALESCE(EXCLUDED.postal_code, signees.postal_code),
    city = COALESCE(EXCLUDED.city, signees.city),
    delivery_method = COALESCE(EXCLUDED.delivery_method, signees.delivery_method),
    signed = signees.signed OR EXCLUDED.signed,
    signed_at = LEAST(signees.signed_at, EXCLUDED.signed_at),
    created_at = LEAST(signees.created_at, EXCLUDED.created_at),
    updated_at = GREATEST(signees.updated_at, EXCLUDED.updated_at)";

/// Every signee of every event, sorted by (source, process, signee).
#[derive(Debug, Default, PartialEq)]
struct SigneeColumns<'a> {
    source: Vec<&'a str>,
    process_key: Vec<&'a str>,
    key: Vec<&'a str>,
    name: Vec<Option<&'a str>>,
    ssn: Vec<Option<&'a str>>,
    email: Vec<Option<&'a str>>,
    phone: Vec<Option<&'a str>>,
    address: Vec<Option<&'a str>>,
    postal_code: Vec<Option<&'a str>>,
    city: Vec<Option<&'a str>>,
    delivery_method: Vec<Option<&'a str>>,
    signed: Vec<bool>,
    signed_at: Vec<Option<DateTime<Utc>>>,
    at: Vec<DateTime<Utc>>,
}

impl<'a> SigneeColumns<'a> {
    fn of(applied: &[Applied<'a>]) -> Self {
        let mut c = Self::default();
        for (a, _, s) in by_process(applied, |e| &e.signees, |s: &Signee| &s.key) {
            c.source.push(a.raw.source);
            c.process_key.push(&a.event.process_key);
            c.key.push(&s.key);
            c.name.push(s.name.as_deref());
            c.ssn.push(s.ssn.as_deref());
            c.email.push(s.email.as_deref());
            c.phone.push(s.phone.as_deref());
            c.address.push(s.address.as_deref());
            c.postal_code.push(s.postal_code.as_deref());
            c.city.push(s.city.as_deref());
            c.delivery_method.push(s.delivery_method.as_deref());
            c.signed.push(s.signed);
            c.signed_at.push(s.signed_at);
            c.at.push(a.at);
        }
        c
    }

    fn is_empty(&self) -> bool {
        self.source.is_empty()
    }
}

async fn upsert_signees(
    tx: &mut Transaction<'_, Postgres>,
    c: &SigneeColumns<'_>,
) -> Result<(), RecordError> {
    sqlx::query(&format!(
        "INSERT INTO signees
            (source, process_key, signee_key, name, ssn, email, phone, address, postal_code,
             city, delivery_method, signed, signed_at, created_at, updated_at)
         SELECT s, p, k, n, ssn, e, ph, ad, pc, c, dm, sg, sa, at, at
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
                     $12::bool[], $13::timestamptz[], $14::timestamptz[])
              AS t(s, p, k, n, ssn, e, ph, ad, pc, c, dm, sg, sa, at)
         {SIGNEE_MERGE}"
    ))
    .bind(&c.source)
    .bind(&c.process_key)
    .bind(&c.key)
    .bind(&c.name)
    .bind(&c.ssn)
    .bind(&c.email)
    .bind(&c.phone)
    .bind(&c.address)
    .bind(&c.postal_code)
    .bind(&c.city)
    .bind(&c.delivery_method)
    .bind(&c.signed)
    .bind(&c.signed_at)
    .bind(&c.at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

// --- activity -------------------------------------------------------------------------------

/// An entry reported by several events (each event of a process repeats the signatures so far)
/// is the entry as the event with the smallest id (byte order) reports it, and the earliest time
/// any of them gives; the first event recorded would make it depend on arrival order. Rows only
/// change when that changes something.
const ACTIVITY_MERGE: &str = r#"ON CONFLICT (source, process_key, entry_key) DO UPDATE SET
    created_at = LEAST(activity.created_at, EXCLUDED.created_at),
    (flow_key, signee_key, status, description, file_name, created_by, event_id, position) = (
        SELECT * FROM (VALUES
            (EXCLUDED.flow_key, EXCLUDED.signee_key, EXCLUDED.status, EXCLUDED.description,
             EXCLUDED.file_name, EXCLUDED.created_by, EXCLUDED.event_id, EXCLUDED.position),
            (activity.flow_key, activity.signee_key, activity.status, activity.description,
             activity.file_name, activity.created_by, activity.event_id, activity.position)
        ) AS reported (flow_key, signee_key, status, description, file_name, created_by, event_id,
                       position)
        ORDER BY event_id COLLATE "C" LIMIT 1)
    WHERE EXCLUDED.created_at < activity.created_at
       OR EXCLUDED.event_id < activity.event_id COLLATE "C""#;

/// Every activity entry of every event, sorted by (source, process, entry); an entry without
/// a time of its own takes its event's.
#[derive(Debug, Default, PartialEq)]
struct ActivityColumns<'a> {
    source: Vec<&'a str>,
    process_key: Vec<&'a str>,
    key: Vec<&'a str>,
    flow_key: Vec<Option<&'a str>>,
    signee_key: Vec<Option<&'a str>>,
    status: Vec<&'a str>,
    description: Vec<&'a str>,
    file_name: Vec<Option<&'a str>>,
    created_at: Vec<DateTime<Utc>>,
    created_by: Vec<&'a str>,
    event_id: Vec<&'a str>,
    /// The entry's place in its delivery's log: the order of entries with one time.
    position: Vec<i32>,
}

impl<'a> ActivityColumns<'a> {
    fn of(applied: &[Applied<'a>]) -> Self {
        let mut c = Self::default();
        for (a, i, x) in by_process(applied, |e| &e.activity, |x: &ActivityEntry| &x.key) {
            c.source.push(a.raw.source);
            c.process_key.push(&a.event.process_key);
            c.key.push(&x.key);
            c.flow_key.push(a.event.flow_key.as_deref());
            c.signee_key.push(x.signee_key.as_deref());
            c.status.push(&x.status);
            c.description.push(&x.description);
            c.file_name.push(x.file_name.as_deref());
            c.created_at.push(x.created_at.unwrap_or(a.at));
            c.created_by.push(&x.created_by);
            c.event_id.push(&a.raw.event_id);
            c.position
                .push(i32::try_from(a.first_entry + i).unwrap_or(i32::MAX));
        }
        c
    }

    fn is_empty(&self) -> bool {
        self.source.is_empty()
    }
}

async fn upsert_activity(
    tx: &mut Transaction<'_, Postgres>,
    c: &ActivityColumns<'_>,
) -> Result<(), RecordError> {
    sqlx::query(&format!(
        "INSERT INTO activity
            (source, process_key, entry_key, flow_key, signee_key, status, description,
             file_name, created_at, created_by, event_id, position)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::text[], $7::text[], $8::text[], $9::timestamptz[],
                              $10::text[], $11::text[], $12::int4[])
         {ACTIVITY_MERGE}"
    ))
    .bind(&c.source)
    .bind(&c.process_key)
    .bind(&c.key)
    .bind(&c.flow_key)
    .bind(&c.signee_key)
    .bind(&c.status)
    .bind(&c.description)
    .bind(&c.file_name)
    .bind(&c.created_at)
    .bind(&c.created_by)
    .bind(&c.event_id)
    .bind(&c.position)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

// --- documents ------------------------------------------------------------------------------

/// A document reported by several events is the document as the event with the smallest id
/// reports it (its key names the same content; a URL or description may differ).
const DOCUMENT_MERGE: &str = r#"ON CONFLICT (source, process_key, kind, file_name, content_key)
    DO UPDATE SET
    sha256 = COALESCE(EXCLUDED.sha256, documents.sha256),
    content_type = EXCLUDED.content_type,
    size = EXCLUDED.size,
    url = EXCLUDED.url,
    reference_id = EXCLUDED.reference_id,
    attachment_type = EXCLUDED.attachment_type,
    signee_key = EXCLUDED.signee_key,
    description = EXCLUDED.description,
    fetched_from = COALESCE(EXCLUDED.fetched_from, documents.fetched_from),
    fetched_at = COALESCE(EXCLUDED.fetched_at, documents.fetched_at),
    event_id = EXCLUDED.event_id
    WHERE EXCLUDED.event_id < documents.event_id COLLATE "C""#;

/// A `documents` row: stored content (by sha256) or a reference to the provider's copy.
#[derive(Debug, PartialEq)]
struct DocumentRow<'a> {
    source: &'a str,
    process_key: &'a str,
    kind: &'a str,
    file_name: &'a str,
    /// The sha256 of stored content, else `ref:<reference id>`, else `url:<url>`.
    content_key: String,
    sha256: Option<&'a str>,
    content_type: Option<&'a str>,
    size: Option<i64>,
    url: Option<&'a str>,
    reference_id: Option<&'a str>,
    attachment_type: Option<i32>,
    signee_key: Option<&'a str>,
    description: Option<&'a str>,
    /// Downloaded content's provenance: the API path and when.
    fetched_from: Option<&'a str>,
    fetched_at: Option<DateTime<Utc>>,
    event_id: &'a str,
}

impl<'a> DocumentRow<'a> {
    fn new(applied: &Applied<'a>, document: &'a Document, sha256: &'a Option<String>) -> Self {
        let size = document
            .content
            .as_ref()
            .map(|c| c.len() as i64)
            .or(document.declared_size);
        let content_key = sha256
            .clone()
            .or_else(|| document.reference_id.as_ref().map(|id| format!("ref:{id}")))
            .or_else(|| document.url.as_ref().map(|url| format!("url:{url}")))
            .unwrap_or_default();
        Self {
            source: applied.raw.source,
            process_key: &applied.event.process_key,
            kind: document.kind.as_str(),
            file_name: document.file_name.as_deref().unwrap_or(""),
            content_key,
            sha256: sha256.as_deref(),
            content_type: document.content_type.as_deref(),
            size,
            url: document.url.as_deref(),
            reference_id: document.reference_id.as_deref(),
            attachment_type: document.attachment_type.and_then(|t| i32::try_from(t).ok()),
            signee_key: document.signee_key.as_deref(),
            description: document.description.as_deref(),
            fetched_from: document.fetched_at.and(document.fetch.as_deref()),
            fetched_at: document.fetched_at,
            event_id: &applied.raw.event_id,
        }
    }

    /// The unique key, for lock order.
    fn key(&self) -> (&str, &str, &str, &str, &str) {
        (
            self.source,
            self.process_key,
            self.kind,
            self.file_name,
            &self.content_key,
        )
    }
}

/// Every document of every event, sorted by key, once each: one event may list a document
/// twice, and one statement may not update a row twice.
#[derive(Debug, Default, PartialEq)]
struct DocumentColumns<'a> {
    rows: Vec<DocumentRow<'a>>,
}

impl<'a> DocumentColumns<'a> {
    fn of(applied: &[Applied<'a>]) -> Self {
        let mut rows: Vec<DocumentRow<'a>> = applied
            .iter()
            .flat_map(|a| {
                a.event
                    .documents
                    .iter()
                    .zip(a.document_ids)
                    .map(move |(d, id)| DocumentRow::new(a, d, id))
            })
            .collect();
        rows.sort_by(|x, y| x.key().cmp(&y.key()));
        rows.dedup_by(|x, y| x.key() == y.key());
        Self { rows }
    }

    fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn column<T>(&self, f: impl Fn(&DocumentRow<'a>) -> T) -> Vec<T> {
        self.rows.iter().map(f).collect()
    }
}

async fn upsert_documents(
    tx: &mut Transaction<'_, Postgres>,
    c: &DocumentColumns<'_>,
) -> Result<(), RecordError> {
    sqlx::query(&format!(
        "INSERT INTO documents
            (source, process_key, kind, file_name, content_key, sha256, content_type, size,
             url, reference_id, attachment_type, signee_key, description, fetched_from,
             fetched_at, event_id)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::text[], $7::text[], $8::int8[], $9::text[], $10::text[],
                              $11::int4[], $12::text[], $13::text[], $14::text[],
                              $15::timestamptz[], $16::text[])
         {DOCUMENT_MERGE}"
    ))
    .bind(c.column(|d| d.source))
    .bind(c.column(|d| d.process_key))
    .bind(c.column(|d| d.kind))
    .bind(c.column(|d| d.file_name))
    .bind(
        c.rows
            .iter()
            .map(|d| d.content_key.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(c.column(|d| d.sha256))
    .bind(c.column(|d| d.content_type))
    .bind(c.column(|d| d.size))
    .bind(c.column(|d| d.url))
    .bind(c.column(|d| d.reference_id))
    .bind(c.column(|d| d.attachment_type))
    .bind(c.column(|d| d.signee_key))
    .bind(c.column(|d| d.description))
    .bind(c.column(|d| d.fetched_from))
    .bind(c.column(|d| d.fetched_at))
    .bind(c.column(|d| d.event_id))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;
    use countersign_providers::ProviderKind;
    use countersign_providers::event::{DocumentKind, ProcessStatus};

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, hour, 0, 0).unwrap()
    }

    fn raw<'a>(source: &'a str, event_id: &'a str) -> RawEvent<'a> {
        RawEvent {
            source,
            provider: ProviderKind::from_name("taktikal").unwrap(),
            event_id: event_id.into(),
            event_type: "AllSigned",
            received_at: at(12),
            body: b"{}",
            body_sha256: [0; 32],
            headers: serde_json::Value::Null,
            signature_id: None,
            content_sha256: [0; 32],
            counts_as_delivery: true,
            api_confirmed: false,
        }
    }

    fn event(process_key: &str) -> SigningEvent {
        SigningEvent {
            process_key: process_key.to_owned(),
            status: None,
            occurred_at: None,
            flow_key: Some("flow".to_owned()),
            flow_name: None,
            company_key: None,
            signees: Vec::new(),
            documents: Vec::new(),
            activity: Vec::new(),
            metadata: serde_json::Map::new(),
        }
    }

    fn signee(key: &str) -> Signee {
        Signee {
            key: key.to_owned(),
            ..Signee::default()
        }
    }

    fn entry(key: &str, created_at: Option<DateTime<Utc>>) -> ActivityEntry {
        ActivityEntry {
            key: key.to_owned(),
            signee_key: None,
            status: "Signed".to_owned(),
            description: "signed".to_owned(),
            file_name: None,
            created_at,
            created_by: "provider".to_owned(),
        }
    }

    #[test]
    fn a_process_without_a_status_is_unknown_and_takes_its_time_from_the_event_or_receipt() {
        let (r1, r2) = (raw("acme", "e1"), raw("acme", "e2"));
        let silent = event("p1");
        let signed = SigningEvent {
            status: Some(ProcessStatus::AllSigned),
            occurred_at: Some(at(9)),
            ..event("p2")
        };
        let applied = [
            Applied::new(&r1, std::slice::from_ref(&silent), 0, &[]),
            Applied::new(&r2, std::slice::from_ref(&signed), 0, &[]),
        ];
        let c = ProcessColumns::of(&applied);
        assert_eq!(c.process_key, ["p1", "p2"]);
        assert_eq!(c.provider, ["taktikal", "taktikal"]);
        assert_eq!(c.status, ["unknown", ProcessStatus::AllSigned.as_str()]);
        assert_eq!(c.rank, [0, ProcessStatus::AllSigned.rank()]);
        assert_eq!(c.at, [at(12), at(9)], "received, then the event's own time");
        assert_eq!(c.flow_key, [Some("flow"), Some("flow")]);
    }

    #[test]
    fn signees_and_activity_are_sorted_by_key_across_events_for_lock_order() {
        let (r1, r2) = (raw("b-source", "e1"), raw("a-source", "e2"));
        let first = SigningEvent {
            signees: vec![signee("s2"), signee("s1")],
            activity: vec![entry("x2", None), entry("x1", Some(at(8)))],
            ..event("p")
        };
        let second = SigningEvent {
            signees: vec![signee("s9")],
            ..event("p")
        };
        let applied = [
            Applied::new(&r1, std::slice::from_ref(&first), 0, &[]),
            Applied::new(&r2, std::slice::from_ref(&second), 0, &[]),
        ];
        let s = SigneeColumns::of(&applied);
        assert_eq!(s.source, ["a-source", "b-source", "b-source"]);
        assert_eq!(s.key, ["s9", "s1", "s2"]);
        let a = ActivityColumns::of(&applied);
        assert_eq!(a.key, ["x1", "x2"]);
        assert_eq!(
            a.created_at,
            [at(8), at(12)],
            "an entry without a time takes its event's (here the receipt's)"
        );
        assert_eq!(a.event_id, ["e1", "e1"]);
        assert_eq!(a.position, [1, 0], "each entry's place in its event's log");
        assert!(
            ActivityColumns::of(&applied[1..]).is_empty(),
            "no entries: no statement"
        );
    }

    #[test]
    fn an_entrys_position_counts_across_the_events_of_its_delivery() {
        // A Legalesign batch: one delivery, an event per change, one entry each, one time.
        let r = raw("uk", "batch");
        let events = [
            SigningEvent {
                activity: vec![entry("created", Some(at(5)))],
                ..event("doc-1")
            },
            SigningEvent {
                activity: vec![entry("signed:sig-1", Some(at(7)))],
                ..event("doc-1")
            },
            SigningEvent {
                activity: vec![entry("completed", Some(at(7)))],
                ..event("doc-1")
            },
        ];
        let layers: Vec<Vec<Applied<'_>>> = (0..events.len())
            .map(|e| vec![Applied::new(&r, &events, e, &[])])
            .collect();
        let positions: Vec<i32> = layers
            .iter()
            .flat_map(|layer| ActivityColumns::of(layer).position)
            .collect();
        assert_eq!(
            positions,
            [0, 1, 2],
            "the signature before the completion listed after it at the same time"
        );
    }

    #[test]
    fn documents_are_keyed_by_content_then_reference_then_url_and_listed_once() {
        let r = raw("acme", "e1");
        let stored = Document {
            content: Some(b"%PDF".to_vec()),
            reference_id: Some("ref-1".to_owned()),
            file_name: Some("signed.pdf".to_owned()),
            ..Document::new(DocumentKind::Signed)
        };
        let referenced = Document {
            reference_id: Some("ref-2".to_owned()),
            url: Some("https://provider.example/doc".to_owned()),
            declared_size: Some(7),
            ..Document::new(DocumentKind::Reference)
        };
        let linked = Document {
            url: Some("https://provider.example/other".to_owned()),
            ..Document::new(DocumentKind::Reference)
        };
        let e = SigningEvent {
            // The stored one twice: one statement may not update a row twice.
            documents: vec![stored.clone(), referenced, linked, stored],
            ..event("p")
        };
        let ids = [Some("ab12".to_owned()), None, None, Some("ab12".to_owned())];
        let applied = [Applied::new(&r, std::slice::from_ref(&e), 0, &ids)];
        let c = DocumentColumns::of(&applied);
        let keys: Vec<&str> = c.rows.iter().map(|d| d.content_key.as_str()).collect();
        assert_eq!(
            keys,
            ["ref:ref-2", "url:https://provider.example/other", "ab12"],
            "sorted by (kind, file name, content key); the stored content once"
        );
        assert_eq!(c.column(|d| d.size), [Some(7), None, Some(4)]);
        assert_eq!(c.column(|d| d.sha256), [None, None, Some("ab12")]);
        assert_eq!(c.column(|d| d.event_id), ["e1", "e1", "e1"]);
    }
}
