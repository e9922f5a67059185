//! PostgreSQL: the raw archive and the projection, written in one transaction per batch of
//! messages (`crate::batch`; one message is a batch of one).
//!
//! Order inside the transaction: the signature check (a signature that does not cover the body
//! must never carry a second body), the raw delivery into `webhook_events` (a duplicate increments
//! `deliveries`), then the projection. The projection always runs — also for a duplicate — and is
//! idempotent: upserts whose merge rules (below: highest status rank, earliest creation, "signed"
//! never undone, activity keyed per fact) give the same rows however often an event is applied.
//! That is what makes redelivery and replay safe.

use std::time::Duration;

use chrono::{DateTime, Utc};
use countersign_providers::ProviderKind;
use countersign_providers::event::{Document, SigningEvent};
use sqlx::postgres::{PgPool, PgPoolOptions};

/// Migrations embedded at build time; applied at start under PostgreSQL's advisory lock, so
/// several workers starting at once apply them once.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A delivery as the archive records it.
#[derive(Debug)]
pub struct RawEvent<'a> {
    pub source: &'a str,
    pub provider: ProviderKind,
    pub event_id: std::borrow::Cow<'a, str>,
    pub event_type: &'a str,
    pub received_at: DateTime<Utc>,
    pub body: &'a [u8],
    pub body_sha256: [u8; 32],
    pub headers: serde_json::Value,
    /// For signatures that do not cover the body: their identity, and the digest of the content
    /// they may carry ([`countersign_providers::Provider::content_digest`]).
    pub signature_id: Option<String>,
    pub content_sha256: [u8; 32],
    /// False for a replay from the archive: not a delivery by the provider.
    pub counts_as_delivery: bool,
}

/// Whether the raw event was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    New,
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(
        "suspected replay: this signature was first used by event {first_event_id} with another body"
    )]
    SuspectedReplay { first_event_id: String },
    #[error("event id already recorded with another body")]
    ConflictingBody,
    /// Writing a document's content failed (a full disk, the object store unreachable): retried.
    #[error("document store: {0}")]
    DocumentStore(String),
    /// A row that a concurrent transaction committed while this one ran, unseen by its
    /// snapshot: recorded alone, the message will see it.
    #[error("{0} changed under a concurrent transaction")]
    Unsettled(&'static str),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl RecordError {
    /// True when no message of a batch can succeed now (the database unreachable, restarting,
    /// out of resources): retry them all rather than one by one. A deadlock or serialization
    /// failure is not: one at a time resolves it.
    pub fn concerns_all(&self) -> bool {
        match self {
            RecordError::Database(error) => {
                let conflict = matches!(error, sqlx::Error::Database(db)
                    if db.code().is_some_and(|c| c == "40001" || c == "40P01"));
                is_transient(error) && !conflict
            }
            _ => false,
        }
    }
}

/// True for failures that may pass on a later attempt: the database unreachable, restarting,
/// overloaded, or a serialization conflict. Anything else is a fault in data or code.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08 connection exception, 53 insufficient resources, 57P admin shutdown / crash,
            // 58 system error, 40001 serialization failure, 40P01 deadlock.
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code.starts_with("58")
                || code == "40001"
                || code == "40P01"
        }),
        _ => false,
    }
}

/// True for a TLS failure that retrying cannot fix: the server's certificate does not verify
/// (a wrong `sslrootcert`, a host name the certificate does not name, an expired certificate).
/// Start-up stops on it with the reason instead of waiting for a database that will never do.
pub fn is_certificate_error(error: &sqlx::Error) -> bool {
    // rustls's verdict arrives as a TLS error, or wrapped in an I/O error during the handshake
    // ("invalid peer certificate: UnknownIssuer").
    match error {
        sqlx::Error::Tls(tls) => tls.to_string().contains("certificate"),
        sqlx::Error::Io(io) => io.to_string().contains("peer certificate"),
        _ => false,
    }
}

#[derive(Debug, Clone)]
pub struct Db {
    pool: PgPool,
}

impl Db {
    /// A pool that connects on first use: the worker starts while the database is down.
    pub fn connect_lazy(url: &str, size: u32, timeout: Duration) -> Result<Self, sqlx::Error> {
        // PostgreSQL's NOTICEs (such as `relation "_sqlx_migrations" already exists, skipping`
        // at every start) tell an operator nothing; warnings and errors still reach the log.
        let options = url.parse::<sqlx::postgres::PgConnectOptions>()?.options([
            ("client_min_messages", "warning"),
            // Every statement is planned for the table as it is now. A plan cached while
            // the tables were empty (a new deployment; or wherever autovacuum has not yet
            // analyzed them) scanned them whole for every key lookup, for as long as the
            // connection lived: 105 µs per signature lookup after 30,000 events, growing.
            // A batch's statements are planned once per batch, so planning costs little.
            ("plan_cache_mode", "force_custom_plan"),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(size)
            .acquire_timeout(timeout)
            .connect_lazy_with(options);
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        MIGRATOR.run(&self.pool).await
    }

    /// True if the database answers now.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

/// The merge rules, one `ON CONFLICT` clause per projection table (`EXCLUDED` is the event's
/// row). Whatever the order the events arrive in, and however many workers record them, the
/// rows come out the same (a test sends one event set through one worker and, reordered,
/// through three, and compares every table) — with two exceptions where events disagree about
/// a value: a `metadata` key and a signee's contact details take the value of the event
/// recorded last.
pub(crate) const PROCESS_MERGE: &str = "ON CONFLICT (source, process_key) DO UPDATE SET
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
    metadata = signing_processes.metadata || EXCLUDED.metadata";

pub(crate) const SIGNEE_MERGE: &str = "ON CONFLICT (source, process_key, signee_key) DO UPDATE SET
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

/// An entry reported by several events (each event of a process repeats the signatures so far)
/// is the entry as the event with the smallest id (byte order) reports it, and the earliest time
/// any of them gives; the first event recorded would make it depend on arrival order. Rows only
/// change when that changes something.
pub(crate) const ACTIVITY_MERGE: &str = r#"ON CONFLICT (source, process_key, entry_key) DO UPDATE SET
    created_at = LEAST(activity.created_at, EXCLUDED.created_at),
    (flow_key, signee_key, status, description, file_name, created_by, event_id) = (
        SELECT * FROM (VALUES
            (EXCLUDED.flow_key, EXCLUDED.signee_key, EXCLUDED.status, EXCLUDED.description,
             EXCLUDED.file_name, EXCLUDED.created_by, EXCLUDED.event_id),
            (activity.flow_key, activity.signee_key, activity.status, activity.description,
             activity.file_name, activity.created_by, activity.event_id)
        ) AS reported (flow_key, signee_key, status, description, file_name, created_by, event_id)
        ORDER BY event_id COLLATE "C" LIMIT 1)
    WHERE EXCLUDED.created_at < activity.created_at
       OR EXCLUDED.event_id < activity.event_id COLLATE "C""#;

/// A document reported by several events is the document as the event with the smallest id
/// reports it (its key names the same content; a URL or description may differ).
pub(crate) const DOCUMENT_MERGE: &str = r#"ON CONFLICT (source, process_key, kind, file_name, content_key)
    DO UPDATE SET
    sha256 = COALESCE(EXCLUDED.sha256, documents.sha256),
    content_type = EXCLUDED.content_type,
    size = EXCLUDED.size,
    url = EXCLUDED.url,
    reference_id = EXCLUDED.reference_id,
    attachment_type = EXCLUDED.attachment_type,
    signee_key = EXCLUDED.signee_key,
    description = EXCLUDED.description,
    event_id = EXCLUDED.event_id
    WHERE EXCLUDED.event_id < documents.event_id COLLATE "C""#;

/// A `documents` row: stored content (by sha256) or a reference to the provider's copy.
pub(crate) struct DocumentRow<'a> {
    pub source: &'a str,
    pub process_key: &'a str,
    pub kind: &'a str,
    pub file_name: &'a str,
    pub content_key: String,
    pub sha256: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub size: Option<i64>,
    pub url: Option<&'a str>,
    pub reference_id: Option<&'a str>,
    pub attachment_type: Option<i32>,
    pub signee_key: Option<&'a str>,
    pub description: Option<&'a str>,
    pub event_id: &'a str,
}

impl<'a> DocumentRow<'a> {
    pub fn new(
        raw: &'a RawEvent<'a>,
        event: &'a SigningEvent,
        document: &'a Document,
        sha256: &'a Option<String>,
    ) -> Self {
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
            source: raw.source,
            process_key: &event.process_key,
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
            event_id: &raw.event_id,
        }
    }

    /// The unique key, for lock order.
    pub fn key(&self) -> (&str, &str, &str, &str, &str) {
        (
            self.source,
            self.process_key,
            self.kind,
            self.file_name,
            &self.content_key,
        )
    }
}
