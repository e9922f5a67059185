//! One message in, one [`Outcome`] out: parse, store documents, record and project.
//!
//! The decision between "try again later" and "this will never succeed" is made here:
//! a database or document store that is unavailable is [`Outcome::Retry`]; a message without the
//! contract's headers, a body the provider's parser refuses, a signature replayed with another
//! body, or an event id already recorded with another body is [`Outcome::Dead`].
//! [`Handler::handle`] is the `process_one` step: tests drive it without a consumer loop.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use countersign::message;
use countersign::providers::ProviderKind;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use sha2::{Digest, Sha256};

use crate::db::{Db, RawEvent, RecordError, Recorded, is_transient};
use crate::documents::DocumentStore;

/// Why a message is parked in `<prefix>.dead`; the label is the `x-dead-kind` header and the
/// metric's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadKind {
    MissingHeaders,
    UnknownProvider,
    Unparseable,
    SuspectedReplay,
    ConflictingBody,
    DatabaseRejected,
    RetriesExhausted,
}

impl DeadKind {
    pub fn label(self) -> &'static str {
        match self {
            DeadKind::MissingHeaders => "missing_headers",
            DeadKind::UnknownProvider => "unknown_provider",
            DeadKind::Unparseable => "unparseable",
            DeadKind::SuspectedReplay => "suspected_replay",
            DeadKind::ConflictingBody => "conflicting_body",
            DeadKind::DatabaseRejected => "database_rejected",
            DeadKind::RetriesExhausted => "retries_exhausted",
        }
    }
}

#[derive(Debug)]
pub enum Outcome {
    /// Committed: ack.
    Persisted(Recorded),
    /// Not now: through a retry queue. The text is for operators (no payload in it).
    Retry(String),
    /// Never as it is: to the parking lot, with the reason in a header.
    Dead { kind: DeadKind, reason: String },
}

#[derive(Clone)]
pub struct Handler {
    db: Db,
    documents: Arc<dyn DocumentStore>,
}

impl Handler {
    pub fn new(db: Db, documents: Arc<dyn DocumentStore>) -> Self {
        Self { db, documents }
    }

    pub async fn handle(&self, body: &[u8], properties: &BasicProperties) -> Outcome {
        let dead = |kind, reason: String| Outcome::Dead { kind, reason };
        let Some(source) = message::header_text(properties, message::SOURCE) else {
            return dead(
                DeadKind::MissingHeaders,
                format!("no {} header", message::SOURCE),
            );
        };
        let Some(provider_name) = message::header_text(properties, message::PROVIDER) else {
            return dead(
                DeadKind::MissingHeaders,
                format!("no {} header", message::PROVIDER),
            );
        };
        let Some(provider) = ProviderKind::from_name(provider_name) else {
            return dead(
                DeadKind::UnknownProvider,
                format!("unknown provider {provider_name:?}"),
            );
        };
        let events = match provider.parse(body) {
            Ok(events) => events,
            Err(error) => return dead(DeadKind::Unparseable, error.0),
        };

        let body_sha256: [u8; 32] = Sha256::digest(body).into();
        let message_id = properties.message_id().as_ref().map(|m| m.to_string());
        let event_id = message_id.unwrap_or_else(|| hex(&body_sha256));
        let raw = RawEvent {
            source,
            provider,
            event_id: &event_id,
            event_type: message::header_text(properties, message::EVENT_TYPE).unwrap_or("Unknown"),
            received_at: received_at(properties),
            body,
            body_sha256,
            headers: properties
                .headers()
                .as_ref()
                .map_or(serde_json::json!({}), table_to_json),
            signature_id: provider.signature_id(body),
            counts_as_delivery: message::header_text(properties, crate::replay::REPLAY)
                != Some("archive"),
        };
        match self.db.record(&raw, &events, self.documents.as_ref()).await {
            Ok(recorded) => Outcome::Persisted(recorded),
            Err(error @ RecordError::SuspectedReplay { .. }) => {
                dead(DeadKind::SuspectedReplay, error.to_string())
            }
            Err(error @ RecordError::ConflictingBody) => {
                dead(DeadKind::ConflictingBody, error.to_string())
            }
            Err(error @ RecordError::DocumentStore(_)) => Outcome::Retry(error.to_string()),
            Err(RecordError::Database(error)) if is_transient(&error) => {
                Outcome::Retry(format!("database: {error}"))
            }
            Err(RecordError::Database(error)) => {
                dead(DeadKind::DatabaseRejected, format!("database: {error}"))
            }
        }
    }
}

/// `x-received-at`, else the `timestamp` property, else now.
fn received_at(properties: &BasicProperties) -> DateTime<Utc> {
    message::header_text(properties, message::RECEIVED_AT)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| {
            properties
                .timestamp()
                .and_then(|secs| DateTime::from_timestamp(i64::try_from(secs).ok()?, 0))
        })
        .unwrap_or_else(Utc::now)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// AMQP headers as JSON, for the archive's `headers` column.
pub fn table_to_json(table: &FieldTable) -> serde_json::Value {
    serde_json::Value::Object(
        table
            .inner()
            .iter()
            .map(|(k, v)| (k.to_string(), value_to_json(v)))
            .collect(),
    )
}

fn value_to_json(value: &AMQPValue) -> serde_json::Value {
    use serde_json::Value;
    if let Some(n) = message::integer(value) {
        return n.into();
    }
    match value {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::Float(n) => (*n).into(),
        AMQPValue::Double(n) => (*n).into(),
        AMQPValue::ShortString(s) => s.as_str().into(),
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into(),
        AMQPValue::FieldArray(items) => {
            Value::Array(items.as_slice().iter().map(value_to_json).collect())
        }
        AMQPValue::FieldTable(table) => table_to_json(table),
        AMQPValue::ByteArray(bytes) => hex(bytes.as_slice()).into(),
        AMQPValue::DecimalValue(d) => format!("{}e-{}", d.value, d.scale).into(),
        AMQPValue::Timestamp(n) => (*n).into(),
        // Integers were handled above.
        _ => Value::Null,
    }
}
