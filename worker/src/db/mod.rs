//! PostgreSQL: the raw archive and the projection, written in one transaction per batch of
//! messages (one message is a batch of one).
//!
//! - `record.rs`: a batch's plan ([`Item`]s in rounds and layers) and its one transaction.
//! - `archive.rs`: the signature check and `webhook_events`, a round at a time.
//! - `stored.rs`: documents' contents in the store and `stored_documents`.
//! - `projection.rs`: the normalized tables, one function per table with its merge rule.
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
use sqlx::postgres::{PgPool, PgPoolOptions};

mod archive;
mod migrations;
mod projection;
mod record;
mod stored;

pub use migrations::{MIGRATIONS, migrator};
pub use record::Item;

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
    /// The final state its events claim was confirmed with the provider's API before recording
    /// ([`crate::fetch::Fetcher::witness`]).
    pub api_confirmed: bool,
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

/// `WITH RECURSIVE sources (source) AS (…)`: the distinct sources of `table`, found by walking
/// an index that leads with `source` from one source to the next — one probe per source, where
/// `SELECT DISTINCT source` or `GROUP BY source` reads the whole table (PostgreSQL before 18 has
/// no skip scan). The last row is a NULL source: join on it or filter it out.
pub fn sources_of(table: &str) -> String {
    format!(
        "WITH RECURSIVE sources (source) AS (
             (SELECT source FROM {table} ORDER BY source LIMIT 1)
             UNION ALL
             SELECT (SELECT t.source FROM {table} t WHERE t.source > s.source
                     ORDER BY t.source LIMIT 1)
             FROM sources s WHERE s.source IS NOT NULL
         )"
    )
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

    /// Applies the embedded migrations under PostgreSQL's advisory lock, so that several workers
    /// starting at once apply them once.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        migrator().await?.run(&self.pool).await
    }

    /// True if the database answers now.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}
