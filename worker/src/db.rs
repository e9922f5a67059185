//! PostgreSQL: the raw archive and the projection, written in one transaction per message.
//!
//! Order inside the transaction: the signature check (a signature that does not cover the body
//! must never carry a second body), the raw delivery into `webhook_events` (a duplicate increments
//! `deliveries`), then the projection. The projection always runs — also for a duplicate — and is
//! idempotent: upserts whose merge rules (highest status rank, earliest creation, "signed" never
//! undone, activity keyed per fact) give the same rows however often an event is applied. That
//! is what makes redelivery and replay safe.

use std::time::Duration;

use chrono::{DateTime, Utc};
use countersign::event::SigningEvent;
use countersign::providers::ProviderKind;
use sha2::{Digest as _, Sha256};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use crate::documents::DocumentStore;
use crate::handler::hex;

/// Migrations embedded at build time; applied at start under PostgreSQL's advisory lock, so
/// several workers starting at once apply them once.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A delivery as the archive records it.
#[derive(Debug)]
pub struct RawEvent<'a> {
    pub source: &'a str,
    pub provider: ProviderKind,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub received_at: DateTime<Utc>,
    pub body: &'a [u8],
    pub body_sha256: [u8; 32],
    pub headers: serde_json::Value,
    /// For signatures that do not cover the body: their identity.
    pub signature_id: Option<String>,
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
    #[error(transparent)]
    Database(#[from] sqlx::Error),
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
        let options = url
            .parse::<sqlx::postgres::PgConnectOptions>()?
            .options([("client_min_messages", "warning")]);
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

    /// Records one delivery and projects its events, atomically. Document contents are written
    /// to `store` only once the delivery has passed every check that could park it (a signature
    /// carrying a second body, an event id with another body): a parked event leaves nothing
    /// behind that the API would serve.
    pub async fn record(
        &self,
        raw: &RawEvent<'_>,
        events: &[SigningEvent],
        store: &dyn DocumentStore,
    ) -> Result<Recorded, RecordError> {
        let mut tx = self.pool.begin().await?;

        if let Some(signature_id) = &raw.signature_id {
            sqlx::query(
                "INSERT INTO signature_uses (source, signature_id, body_sha256, event_id)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(raw.source)
            .bind(signature_id)
            .bind(&raw.body_sha256[..])
            .bind(raw.event_id)
            .execute(&mut *tx)
            .await?;
            let (first_sha256, first_event_id): (Vec<u8>, String) = sqlx::query_as(
                "SELECT body_sha256, event_id FROM signature_uses WHERE source = $1 AND signature_id = $2",
            )
            .bind(raw.source)
            .bind(signature_id)
            .fetch_one(&mut *tx)
            .await?;
            if first_sha256 != raw.body_sha256 {
                return Err(RecordError::SuspectedReplay { first_event_id });
            }
        }

        let (inserted, sha256): (bool, Vec<u8>) = sqlx::query_as(
            "INSERT INTO webhook_events (source, provider, event_id, event_type, received_at, body, body_sha256, headers)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (source, event_id) DO UPDATE
                SET deliveries = webhook_events.deliveries + $9,
                    last_delivered_at = CASE WHEN $9 > 0 THEN now() ELSE webhook_events.last_delivered_at END
             RETURNING (xmax = 0), body_sha256",
        )
        .bind(raw.source)
        .bind(raw.provider.name())
        .bind(raw.event_id)
        .bind(raw.event_type)
        .bind(raw.received_at)
        .bind(raw.body)
        .bind(&raw.body_sha256[..])
        .bind(&raw.headers)
        .bind(i32::from(raw.counts_as_delivery))
        .fetch_one(&mut *tx)
        .await?;
        // Where the id is the signed content's digest (Legalesign's batches), the same id is the
        // same event, whatever the unsigned encoding around it: a duplicate, not a conflict.
        if sha256 != raw.body_sha256 && !raw.provider.event_id_is_content() {
            return Err(RecordError::ConflictingBody);
        }

        let document_ids = self.store_documents(events, store).await?;
        for (event, ids) in events.iter().zip(&document_ids) {
            project(&mut tx, raw, event, ids).await?;
        }
        tx.commit().await?;
        Ok(if inserted {
            Recorded::New
        } else {
            Recorded::Duplicate
        })
    }
}

impl Db {
    /// Writes the contents of `events`' documents to the store and records them in
    /// `stored_documents`; returns `ids[i][j]`, the sha256 of `events[i].documents[j]`'s content.
    /// `stored_documents` is written apart from the event's transaction: it is content-addressed,
    /// so a row whose event then fails to commit is harmless (the API serves only contents that a
    /// committed document row references), and the same document in many events (a logo attached
    /// to every process) does not make their transactions wait on one row lock.
    async fn store_documents(
        &self,
        events: &[SigningEvent],
        store: &dyn DocumentStore,
    ) -> Result<Vec<Vec<Option<String>>>, RecordError> {
        let mut ids = Vec::with_capacity(events.len());
        for event in events {
            let mut event_ids = Vec::with_capacity(event.documents.len());
            for document in &event.documents {
                let Some(content) = &document.content else {
                    event_ids.push(None);
                    continue;
                };
                let sha256 = hex(&Sha256::digest(content));
                store
                    .put(&sha256, content)
                    .await
                    .map_err(|e| RecordError::DocumentStore(e.to_string()))?;
                sqlx::query(
                    "INSERT INTO stored_documents (sha256, size, content_type) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind(&sha256)
                .bind(content.len() as i64)
                .bind(
                    document
                        .content_type
                        .as_deref()
                        .unwrap_or("application/octet-stream"),
                )
                .execute(&self.pool)
                .await?;
                event_ids.push(Some(sha256));
            }
            ids.push(event_ids);
        }
        Ok(ids)
    }
}

/// Applies one event to the projection. Idempotent; see the module docs for the merge rules.
async fn project(
    tx: &mut Transaction<'_, Postgres>,
    raw: &RawEvent<'_>,
    event: &SigningEvent,
    document_ids: &[Option<String>],
) -> Result<(), sqlx::Error> {
    let at = event.occurred_at.unwrap_or(raw.received_at);
    let (status, rank) = event
        .status
        .map_or(("unknown", 0), |s| (s.as_str(), s.rank()));
    sqlx::query(
        "INSERT INTO signing_processes
            (source, process_key, provider, status, status_rank, flow_key, flow_name, company_key,
             created_at, updated_at, status_changed_at, metadata)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $9, $10)
         ON CONFLICT (source, process_key) DO UPDATE SET
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
            metadata = signing_processes.metadata || EXCLUDED.metadata",
    )
    .bind(raw.source)
    .bind(&event.process_key)
    .bind(raw.provider.name())
    .bind(status)
    .bind(rank)
    .bind(&event.flow_key)
    .bind(&event.flow_name)
    .bind(&event.company_key)
    .bind(at)
    .bind(serde_json::Value::Object(event.metadata.clone()))
    .execute(&mut **tx)
    .await?;

    for signee in &event.signees {
        sqlx::query(
            "INSERT INTO signees
                (source, process_key, signee_key, name, ssn, email, phone, address, postal_code, city,
                 delivery_method, signed, signed_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)
             ON CONFLICT (source, process_key, signee_key) DO UPDATE SET
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
                updated_at = GREATEST(signees.updated_at, EXCLUDED.updated_at)",
        )
        .bind(raw.source)
        .bind(&event.process_key)
        .bind(&signee.key)
        .bind(&signee.name)
        .bind(&signee.ssn)
        .bind(&signee.email)
        .bind(&signee.phone)
        .bind(&signee.address)
        .bind(&signee.postal_code)
        .bind(&signee.city)
        .bind(&signee.delivery_method)
        .bind(signee.signed)
        .bind(signee.signed_at)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    }

    for entry in &event.activity {
        sqlx::query(
            "INSERT INTO activity
                (source, process_key, entry_key, flow_key, signee_key, status, description, file_name,
                 created_at, created_by, event_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (source, process_key, entry_key) DO UPDATE SET
                created_at = LEAST(activity.created_at, EXCLUDED.created_at)",
        )
        .bind(raw.source)
        .bind(&event.process_key)
        .bind(&entry.key)
        .bind(&event.flow_key)
        .bind(&entry.signee_key)
        .bind(&entry.status)
        .bind(&entry.description)
        .bind(&entry.file_name)
        .bind(entry.created_at.unwrap_or(at))
        .bind(&entry.created_by)
        .bind(raw.event_id)
        .execute(&mut **tx)
        .await?;
    }

    for (document, sha256) in event.documents.iter().zip(document_ids) {
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
        sqlx::query(
            "INSERT INTO documents
                (source, process_key, kind, file_name, content_key, sha256, content_type, size, url,
                 reference_id, attachment_type, signee_key, description, event_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (source, process_key, kind, file_name, content_key) DO NOTHING",
        )
        .bind(raw.source)
        .bind(&event.process_key)
        .bind(document.kind.as_str())
        .bind(document.file_name.as_deref().unwrap_or(""))
        .bind(content_key)
        .bind(sha256)
        .bind(&document.content_type)
        .bind(size)
        .bind(&document.url)
        .bind(&document.reference_id)
        .bind(document.attachment_type.and_then(|t| i32::try_from(t).ok()))
        .bind(&document.signee_key)
        .bind(&document.description)
        .bind(raw.event_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
