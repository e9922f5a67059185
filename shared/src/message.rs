//! The AMQP message contract between the ingester and everything downstream: the header names,
//! the properties and the worker's bookkeeping, as code. What each means, and the provider's
//! forwarded headers, is written once, in `docs/amqp.md` (a test keeps the two in step).
use std::time::{SystemTime, UNIX_EPOCH};

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use sha2::{Digest, Sha256};

use countersign_providers::{VerifiedWebhook, hex};

pub const PROVIDER: &str = "x-provider";
pub const SOURCE: &str = "x-source";
pub const EVENT_TYPE: &str = "x-event-type";
pub const RECEIVED_AT: &str = "x-received-at";
pub const REQUEST_ID: &str = "x-request-id";
pub const VERIFIED_KEY: &str = "x-verified-key";
/// Where an event came from when not from a webhook: `reconciliation` (the worker asked the
/// provider's API).
pub const ORIGIN: &str = "x-origin";

/// `true` on a provider's test event (the sample its settings page sends): archived as such,
/// never projected as a real signing.
pub const TEST: &str = "x-test";

pub use countersign_providers::forwarded::{
    MAX_EVENT_TYPE, MAX_FORWARDED_BYTES, MAX_FORWARDED_VALUE, Oversized, check_forwarded,
};

/// The largest AMQP header frame a message built here can have when [`check_forwarded`] passed
/// and the configured names are what configuration allows (a source name of at most 64
/// characters, a secret label under 255 bytes): the forwarded 8 KiB,
/// the event type, the contract headers and the properties with room to spare. It is under the
/// 32 KiB frame the binaries ask for, so such a message always fits (checked by a test, and by
/// the fuzz targets on every input that verifies).
pub const MAX_HEADER_FRAME: usize = 12 * 1024;

/// The header that names the forwarded headers dropped to make a message fit
/// ([`drop_oversized`]).
pub const DROPPED_HEADERS: &str = "x-dropped-headers";

/// The contract's own headers: never dropped.
const CONTRACT_HEADERS: &[&str] = &[
    PROVIDER,
    SOURCE,
    EVENT_TYPE,
    RECEIVED_AT,
    REQUEST_ID,
    VERIFIED_KEY,
    ORIGIN,
];

/// `properties` without the forwarded headers longer than [`MAX_FORWARDED_VALUE`], and the
/// names of those dropped (recorded in [`DROPPED_HEADERS`]): what makes a message that came
/// from before the bounds (or from elsewhere) fit a broker's frame again.
pub fn drop_oversized(properties: &BasicProperties) -> (BasicProperties, Vec<String>) {
    let Some(headers) = properties.headers() else {
        return (properties.clone(), Vec::new());
    };
    let mut kept = FieldTable::default();
    let mut dropped = Vec::new();
    for (name, value) in headers.inner() {
        let len = match value {
            AMQPValue::LongString(text) => text.as_bytes().len(),
            _ => 0,
        };
        if len > MAX_FORWARDED_VALUE && !CONTRACT_HEADERS.contains(&name.as_str()) {
            dropped.push(name.as_str().to_owned());
        } else {
            kept.insert(name.clone(), value.clone());
        }
    }
    if !dropped.is_empty() {
        kept.insert(
            DROPPED_HEADERS.into(),
            AMQPValue::LongString(LongString::from(dropped.join(","))),
        );
    }
    (properties.clone().with_headers(kept), dropped)
}

/// `delivery_mode` of a message that survives a broker restart.
pub const PERSISTENT: u8 = 2;

/// How the ingester received a webhook.
#[derive(Debug, Clone, Copy)]
pub struct Receipt<'a> {
    pub request_id: &'a str,
    pub received_at: SystemTime,
    pub content_type: Option<&'a str>,
}

/// Routing key and properties of the message that carries a webhook.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub routing_key: ShortString,
    pub properties: BasicProperties,
}

/// What a message says about the event it carries, whoever publishes it: the ingester for a
/// verified webhook ([`outbound`]), the worker's reconciliation for what an API told it.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    pub provider: &'a str,
    pub source: &'a str,
    pub event_id: &'a str,
    pub event_type: &'a str,
    /// [`VERIFIED_KEY`]: what vouches for the event (a secret's label, `api:<source>`).
    pub key_label: &'a str,
    /// Further headers (the provider's signature headers, [`ORIGIN`]).
    pub headers: &'a [(&'static str, String)],
    pub app_id: &'static str,
}

/// Builds the message for a verified webhook; the payload is [`VerifiedWebhook::body`].
pub fn outbound(webhook: &VerifiedWebhook, receipt: &Receipt<'_>) -> Outbound {
    let headers: std::borrow::Cow<'_, [(&'static str, String)]> = if webhook.is_test() {
        let mut headers = webhook.signature_headers().to_vec();
        headers.push((TEST, "true".to_owned()));
        headers.into()
    } else {
        webhook.signature_headers().into()
    };
    message(
        &Envelope {
            provider: webhook.provider().name(),
            source: webhook.source(),
            event_id: webhook.event_id(),
            event_type: webhook.event_type(),
            key_label: webhook.key_label(),
            headers: &headers,
            app_id: "countersign-ingester",
        },
        receipt,
    )
}

/// Builds the routing key and properties of a message by the contract above.
pub fn message(envelope: &Envelope<'_>, receipt: &Receipt<'_>) -> Outbound {
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    let mut headers = FieldTable::default();
    headers.insert(PROVIDER.into(), text(envelope.provider));
    headers.insert(SOURCE.into(), text(envelope.source));
    headers.insert(EVENT_TYPE.into(), text(envelope.event_type));
    headers.insert(
        RECEIVED_AT.into(),
        text(&humantime::format_rfc3339_millis(receipt.received_at).to_string()),
    );
    headers.insert(REQUEST_ID.into(), text(receipt.request_id));
    headers.insert(VERIFIED_KEY.into(), text(envelope.key_label));
    for (name, value) in envelope.headers {
        headers.insert(ShortString::from(*name), text(value));
    }

    let message_id = ShortString::try_new(envelope.event_id)
        .unwrap_or_else(|_| ShortString::from(hex(&Sha256::digest(envelope.event_id.as_bytes()))));
    let timestamp = receipt
        .received_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_message_id(message_id)
        .with_timestamp(timestamp)
        .with_app_id(envelope.app_id.into())
        .with_headers(headers);
    if let Some(content_type) = receipt
        .content_type
        .and_then(|c| ShortString::try_new(c).ok())
    {
        properties = properties.with_content_type(content_type);
    }

    Outbound {
        routing_key: routing_key(envelope.provider, envelope.source, envelope.event_type),
        properties,
    }
}

/// `{provider}.{source}.{event_type}`; the event type keeps its own dots (Universign's
/// `transaction.lifecycle.completed`), anything outside `[A-Za-z0-9_.:-]` becomes `_`.
pub fn routing_key(provider: &str, source: &str, event_type: &str) -> ShortString {
    let event_type: String = event_type
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.:-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    ShortString::from(format!("{provider}.{source}.{event_type}"))
}

/// An integer AMQP value of any width (RabbitMQ and clients pick different ones).
pub fn integer(value: &AMQPValue) -> Option<i64> {
    Some(match value {
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => *n,
        AMQPValue::Timestamp(n) => i64::try_from(*n).ok()?,
        _ => return None,
    })
}

/// A header's text value, for readers of the contract (the worker, tests, tools).
pub fn header_text<'a>(properties: &'a BasicProperties, name: &str) -> Option<&'a str> {
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    }
}

// --- the worker's bookkeeping headers ------------------------------------------------------------

/// Header counting the retries a message has been through.
pub const ATTEMPT: &str = "x-attempt";
/// Header with the last transient error, on a retried message.
pub const LAST_ERROR: &str = "x-last-error";
/// Headers of a parked message: why, in a word ([`DeadKind::label`]) and in a sentence, and
/// when.
pub const DEAD_KIND: &str = "x-dead-kind";
pub const DEAD_REASON: &str = "x-dead-reason";
pub const DEAD_AT: &str = "x-dead-at";
/// Header marking a message sent back for processing: `dead` (from the parking lot) or
/// `archive` (re-published from the archive; it does not count as a delivery).
pub const REPLAY: &str = "x-replay";
/// When it was sent back (RFC 3339).
pub const REPLAYED_AT: &str = "x-replayed-at";

/// Headers RabbitMQ adds when it dead-letters (`x-death` and its summaries).
pub const BROKER_DEATH_HEADERS: [&str; 7] = [
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
];

/// Why a message is parked in `<prefix>.dead`; the label is the [`DEAD_KIND`] header and the
/// worker's metric's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadKind {
    MissingHeaders,
    UnknownProvider,
    Unparseable,
    SuspectedReplay,
    ConflictingBody,
    DatabaseRejected,
    RetriesExhausted,
    /// The provider's API contradicts the final state the webhook claims.
    Contradicted,
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
            DeadKind::Contradicted => "contradicted",
        }
    }
}

/// The headers of a message sent back for processing (`kind`: `dead` or `archive`): the
/// contract's and the provider's kept, the retry and parking bookkeeping and the broker's
/// dead-lettering record removed, the replay noted.
pub fn redriven_headers(headers: Option<&FieldTable>, kind: &str) -> FieldTable {
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    let mut kept = FieldTable::default();
    if let Some(headers) = headers {
        for (name, value) in headers.inner() {
            let dropped = [
                ATTEMPT,
                LAST_ERROR,
                DEAD_KIND,
                DEAD_REASON,
                DEAD_AT,
                REPLAY,
                REPLAYED_AT,
            ]
            .contains(&name.as_str())
                || BROKER_DEATH_HEADERS.contains(&name.as_str());
            if !dropped {
                kept.insert(name.clone(), value.clone());
            }
        }
    }
    kept.insert(REPLAY.into(), text(kind));
    kept.insert(
        REPLAYED_AT.into(),
        text(&humantime::format_rfc3339_millis(SystemTime::now()).to_string()),
    );
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_oversized_forwarded_headers_are_dropped_and_named() {
        let mut headers = FieldTable::default();
        let text = |s: String| AMQPValue::LongString(LongString::from(s));
        headers.insert(PROVIDER.into(), text("pandadoc".into()));
        headers.insert(EVENT_TYPE.into(), text("x".repeat(2000)));
        headers.insert("x-pandadoc-signature".into(), text("ab".repeat(32)));
        headers.insert(
            "x-pandadoc-webhook-event-id".into(),
            text("y".repeat(40_000)),
        );
        let properties = BasicProperties::default().with_headers(headers);
        let (trimmed, dropped) = drop_oversized(&properties);
        assert_eq!(dropped, ["x-pandadoc-webhook-event-id"]);
        let kept = trimmed.headers().as_ref().unwrap().inner();
        assert!(kept.contains_key("x-pandadoc-signature"));
        assert!(kept.contains_key(EVENT_TYPE), "contract headers stay");
        assert!(!kept.contains_key("x-pandadoc-webhook-event-id"));
        assert!(matches!(
            kept.get(DROPPED_HEADERS),
            Some(AMQPValue::LongString(s)) if s.as_bytes() == b"x-pandadoc-webhook-event-id"
        ));
        let (same, none) = drop_oversized(&trimmed);
        assert!(none.is_empty());
        assert_eq!(same.headers(), trimmed.headers());
    }

    #[test]
    fn the_largest_message_that_passes_the_bounds_fits_the_smallest_frame_we_ask_for() {
        // Forwarded headers at both bounds: 8 values of 1 KiB less their names.
        const NAMES: [&str; 8] = [
            "x-h-0", "x-h-1", "x-h-2", "x-h-3", "x-h-4", "x-h-5", "x-h-6", "x-h-7",
        ];
        let headers: Vec<(&'static str, String)> = NAMES
            .iter()
            .map(|name| (*name, "v".repeat(MAX_FORWARDED_BYTES / 8 - name.len())))
            .collect();
        let event_type = "t".repeat(MAX_EVENT_TYPE);
        assert_eq!(check_forwarded(&headers, &event_type), Ok(()));
        // A source name is at most 64 characters (configuration); a secret's label is its path.
        let long = "n".repeat(255);
        let outbound = message(
            &Envelope {
                provider: "standard_webhooks",
                source: &long[..64],
                event_id: &"i".repeat(10_000),
                event_type: &event_type,
                key_label: &long,
                headers: &headers,
                app_id: "countersign-ingester",
            },
            &Receipt {
                request_id: &"r".repeat(128),
                received_at: SystemTime::now(),
                content_type: Some(&"c".repeat(255)),
            },
        );
        let len = crate::amqp::header_frame_len(&outbound.properties);
        assert!(len <= MAX_HEADER_FRAME, "{len}");
        const _: () = assert!(MAX_HEADER_FRAME <= crate::amqp::FRAME_MAX as usize);
        // One byte more in any value, or in all of them, is refused.
        let mut over = headers.clone();
        over[0].1.push('v');
        assert!(matches!(
            check_forwarded(&over, "t"),
            Err(Oversized::Total { .. })
        ));
        assert!(matches!(
            check_forwarded(&[("x-h", "v".repeat(MAX_FORWARDED_VALUE + 1))], "t"),
            Err(Oversized::Value { name: "x-h", .. })
        ));
        assert!(matches!(
            check_forwarded(&[], &"t".repeat(MAX_EVENT_TYPE + 1)),
            Err(Oversized::EventType { .. })
        ));
    }

    #[test]
    fn routing_keys_keep_dots_and_replace_the_rest() {
        assert_eq!(
            routing_key("taktikal", "acme", "AllSigned").as_str(),
            "taktikal.acme.AllSigned"
        );
        assert_eq!(
            routing_key("universign", "fr", "transaction.lifecycle.completed").as_str(),
            "universign.fr.transaction.lifecycle.completed"
        );
        assert_eq!(routing_key("p", "s", "a b#*").as_str(), "p.s.a_b__");
    }
}
