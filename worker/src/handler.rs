//! One message in, one [`Outcome`] out: parse, store documents, record and project.
//!
//! The decision between "try again later" and "this will never succeed" is made here:
//! a database or document store that is unavailable is [`Outcome::Retry`]; a message without the
//! contract's headers, a body the provider's parser refuses, a signature replayed with another
//! body, or an event id already recorded with another body is [`Outcome::Dead`].
//! [`Handler::handle`] takes one message to its outcome: tests drive it without a consumer loop.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use countersign::message::{self, DeadKind};
use countersign_providers::{ProviderKind, hex};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use sha2::{Digest, Sha256};

use crate::db::Item;
use std::time::Duration;

use crate::db::{Db, RawEvent, RecordError, Recorded, is_transient};
use crate::documents::DocumentStore;
use crate::fetch::{Fetcher, Witnessed};

#[derive(Debug)]
pub enum Outcome {
    /// Committed: ack.
    Persisted(Recorded),
    /// Not now: through a retry queue. The text is for operators (no payload in it).
    Retry(String),
    /// Not before `at_least` (a provider API's `Retry-After`): through the first retry queue
    /// whose delay is at least that long, or the longest left.
    RetryAfter { reason: String, at_least: Duration },
    /// Never as it is: to the parking lot, with the reason in a header.
    Dead { kind: DeadKind, reason: String },
}

impl Outcome {
    /// The retry of a message whose provider API could not answer now: after its `Retry-After`
    /// where it gave one.
    fn retry_for(error: crate::fetch::FetchError) -> Self {
        match error.retry_after {
            Some(at_least) => Outcome::RetryAfter {
                reason: error.to_string(),
                at_least,
            },
            None => Outcome::Retry(error.to_string()),
        }
    }
}

#[derive(Clone)]
pub struct Handler {
    db: Db,
    documents: Arc<dyn DocumentStore>,
    fetcher: Arc<Fetcher>,
}

impl Handler {
    pub fn new(db: Db, documents: Arc<dyn DocumentStore>) -> Self {
        Self {
            db,
            documents,
            fetcher: Arc::new(Fetcher::default()),
        }
    }

    /// Downloads announced documents with the sources' APIs before recording.
    pub fn with_fetcher(mut self, fetcher: Arc<Fetcher>) -> Self {
        self.fetcher = fetcher;
        self
    }

    /// One message: [`Handler::handle_batch`] with a batch of one.
    pub async fn handle(&self, body: &[u8], properties: &BasicProperties) -> Outcome {
        let mut outcomes = self.handle_batch(&[(body, properties)]).await;
        outcomes.pop().expect("one outcome per message")
    }

    /// Messages taken together: one outcome each, in order. The valid ones are recorded in one
    /// transaction; if that fails for any reason but the database being away, each is recorded
    /// alone, so that a poison message is parked or retried alone and the rest commit.
    pub async fn handle_batch(&self, messages: &[(&[u8], &BasicProperties)]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(messages.len());
        let mut items = Vec::with_capacity(messages.len());
        let mut positions = Vec::with_capacity(messages.len());
        for (position, (body, properties)) in messages.iter().enumerate() {
            match prepare(body, properties) {
                Ok(item) => {
                    items.push(item);
                    positions.push(position);
                    outcomes.push(None);
                }
                Err(outcome) => outcomes.push(Some(outcome)),
            }
        }
        self.witness_claims(&mut items, &mut positions, &mut outcomes)
            .await;
        self.download_announced(&mut items, &mut positions, &mut outcomes)
            .await;
        let store = self.documents.as_ref();
        let result = if items.is_empty() {
            Ok(Vec::new())
        } else {
            self.db.record_batch(&items, store).await
        };
        match result {
            Ok(recorded) => {
                for (&position, recorded) in positions.iter().zip(recorded) {
                    outcomes[position] = Some(Outcome::Persisted(recorded));
                }
            }
            Err(error) if error.concerns_all() => {
                let reason = match error {
                    RecordError::Database(error) => format!("database: {error}"),
                    error => error.to_string(),
                };
                for &position in &positions {
                    outcomes[position] = Some(Outcome::Retry(reason.clone()));
                }
            }
            Err(error) if items.len() == 1 => outcomes[positions[0]] = Some(outcome_of(error)),
            Err(error) => {
                tracing::info!(
                    messages = items.len(),
                    reason = %countersign::telemetry::Escaped(&error.to_string()),
                    "batch rolled back; recording its messages one by one"
                );
                for (item, &position) in items.iter().zip(&positions) {
                    let result = self
                        .db
                        .record_batch(std::slice::from_ref(item), store)
                        .await;
                    outcomes[position] = Some(match result {
                        Ok(recorded) => Outcome::Persisted(recorded[0]),
                        Err(error) => outcome_of(error),
                    });
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.expect("every message has an outcome"))
            .collect()
    }
}

impl Handler {
    /// Asks the provider's API, all at once, to confirm the final states the items' events claim
    /// (where the source has an API and the provider a state API): a confirmed item is recorded
    /// as such; a contradicted one is parked with the reason, never recorded; one whose API could
    /// not be asked is retried.
    async fn witness_claims(
        &self,
        items: &mut Vec<Item<'_>>,
        positions: &mut Vec<usize>,
        outcomes: &mut [Option<Outcome>],
    ) {
        let fetcher = self.fetcher.as_ref();
        let results = futures_util::future::join_all(
            items
                .iter()
                .enumerate()
                .filter(|(_, item)| fetcher.witnesses(item.raw.source, &item.events))
                .map(|(i, item)| async move {
                    (
                        i,
                        fetcher
                            .witness(item.raw.source, &item.events, item.raw.received_at)
                            .await,
                    )
                }),
        )
        .await;
        let mut settled = Vec::new();
        for (i, result) in results {
            let item = &mut items[i];
            let event_id = countersign::telemetry::Escaped(&item.raw.event_id).to_string();
            match result {
                Ok(Witnessed::Confirmed) => item.raw.api_confirmed = true,
                Ok(Witnessed::NotAsked) => {}
                Ok(Witnessed::Contradicted(reason)) => {
                    tracing::warn!(
                        source = item.raw.source,
                        event_id,
                        reason = %countersign::telemetry::Escaped(&reason),
                        "the provider's API contradicts the webhook; parking it"
                    );
                    let kind = DeadKind::Contradicted;
                    settled.push((i, Outcome::Dead { kind, reason }));
                }
                Err(error) => {
                    tracing::warn!(
                        source = item.raw.source,
                        event_id,
                        reason = %error,
                        "could not confirm the webhook's claim with the provider's API; the message will be retried"
                    );
                    settled.push((i, Outcome::retry_for(error)));
                }
            }
        }
        settle(items, positions, outcomes, settled);
    }

    /// Downloads, all at once, the documents the items' events announce; an item whose download
    /// fails leaves the batch with a retry outcome (the rest are recorded).
    async fn download_announced(
        &self,
        items: &mut Vec<Item<'_>>,
        positions: &mut Vec<usize>,
        outcomes: &mut [Option<Outcome>],
    ) {
        let fetcher = self.fetcher.as_ref();
        let results = futures_util::future::join_all(
            items
                .iter_mut()
                .enumerate()
                .filter(|(_, item)| fetcher.wants(item.raw.source, &item.events))
                .map(|(i, item)| async move {
                    (i, fetcher.fill(item.raw.source, &mut item.events).await)
                }),
        )
        .await;
        let mut failed = Vec::new();
        for (i, result) in results {
            if let Err(error) = result {
                tracing::warn!(
                    source = items[i].raw.source,
                    event_id = %countersign::telemetry::Escaped(&items[i].raw.event_id),
                    reason = %error,
                    "document download failed; the message will be retried"
                );
                failed.push((i, Outcome::retry_for(error)));
            }
        }
        settle(items, positions, outcomes, failed);
    }
}

/// Gives each of `settled` (an index into `items`, in increasing order) its outcome and takes it
/// out of the batch.
fn settle(
    items: &mut Vec<Item<'_>>,
    positions: &mut Vec<usize>,
    outcomes: &mut [Option<Outcome>],
    settled: Vec<(usize, Outcome)>,
) {
    for (i, outcome) in settled.into_iter().rev() {
        outcomes[positions[i]] = Some(outcome);
        items.remove(i);
        positions.remove(i);
    }
}

/// Headers, provider and body checked and parsed: an [`Item`] to record, or the outcome of a
/// message that can never be recorded as it is.
pub fn prepare<'a>(body: &'a [u8], properties: &'a BasicProperties) -> Result<Item<'a>, Outcome> {
    let dead = |kind, reason: String| Outcome::Dead { kind, reason };
    let Some(source) = message::header_text(properties, message::SOURCE) else {
        return Err(dead(
            DeadKind::MissingHeaders,
            format!("no {} header", message::SOURCE),
        ));
    };
    let Some(provider_name) = message::header_text(properties, message::PROVIDER) else {
        return Err(dead(
            DeadKind::MissingHeaders,
            format!("no {} header", message::PROVIDER),
        ));
    };
    let Some(provider) = ProviderKind::from_name(provider_name) else {
        return Err(dead(
            DeadKind::UnknownProvider,
            format!("unknown provider {provider_name:?}"),
        ));
    };
    // A provider's test event (its settings page's sample, a sandbox or test-mode request) is
    // archived with its `x-test` mark and never projected as a real signing.
    let events = if message::header_text(properties, message::TEST) == Some("true") {
        Vec::new()
    } else {
        provider
            .parse(body)
            .map_err(|error| dead(DeadKind::Unparseable, error.0))?
    };

    let body_sha256: [u8; 32] = Sha256::digest(body).into();
    let event_id = match properties.message_id() {
        Some(id) => Cow::Borrowed(id.as_str()),
        None => Cow::Owned(hex(&body_sha256)),
    };
    let signature_id = provider.signature_id(body);
    let content_sha256 = if signature_id.is_some() {
        provider.content_digest(body)
    } else {
        body_sha256
    };
    let raw = RawEvent {
        source,
        provider,
        event_id,
        event_type: message::header_text(properties, message::EVENT_TYPE).unwrap_or("Unknown"),
        received_at: received_at(properties),
        body,
        body_sha256,
        headers: properties
            .headers()
            .as_ref()
            .map_or(serde_json::json!({}), table_to_json),
        signature_id,
        content_sha256,
        counts_as_delivery: message::header_text(properties, countersign::message::REPLAY)
            != Some("archive"),
        api_confirmed: false,
    };
    Ok(Item { raw, events })
}

/// The outcome of a message whose recording failed.
fn outcome_of(error: RecordError) -> Outcome {
    let dead = |kind, reason: String| Outcome::Dead { kind, reason };
    match error {
        error @ RecordError::SuspectedReplay { .. } => {
            dead(DeadKind::SuspectedReplay, error.to_string())
        }
        error @ RecordError::ConflictingBody => dead(DeadKind::ConflictingBody, error.to_string()),
        error @ (RecordError::DocumentStore(_) | RecordError::Unsettled(_)) => {
            Outcome::Retry(error.to_string())
        }
        RecordError::Database(error) if is_transient(&error) => {
            Outcome::Retry(format!("database: {error}"))
        }
        RecordError::Database(error) => {
            dead(DeadKind::DatabaseRejected, format!("database: {error}"))
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
