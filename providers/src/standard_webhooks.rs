//! Standard Webhooks (<https://www.standardwebhooks.com>), the scheme Svix and a growing number of
//!
//! What the provider signs, what this module verifies and relies on, the provider's API as the
//! worker uses it, and where each fact comes from: `docs/providers/standard_webhooks.md` (one page per provider).

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::Mac;
use secrecy::{ExposeSecret, SecretSlice};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::event::{ActivityEntry, ParseError, SigningEvent};
use crate::settings::{Setting, SourceConfig};
use crate::support::{
    check_freshness, hex, hmac_sha256, is_json_object, max_signature_age, unix_seconds,
};
use crate::{Provider, Rejection, Request, Sample, Verified, Verify};

/// The specification's tolerance: how old a timestamp may be unless the source says otherwise.
pub const DEFAULT_MAX_SIGNATURE_AGE: Duration = Duration::from_secs(5 * 60);

/// The secret's prefix in every sender's dashboard.
const SECRET_PREFIX: &str = "whsec_";

/// Header names: the specification's, then Svix's.
const ID: [&str; 2] = ["webhook-id", "svix-id"];
const TIMESTAMP: [&str; 2] = ["webhook-timestamp", "svix-timestamp"];
const SIGNATURE: [&str; 2] = ["webhook-signature", "svix-signature"];

/// Standard Webhooks in the provider registry.
pub struct StandardWebhooks;

/// One of a source's keys, decoded.
struct Key {
    label: String,
    key: SecretSlice<u8>,
}

/// Verifies Standard Webhooks requests for one source.
pub struct Verifier {
    keys: Vec<Key>,
    max_age: Duration,
}

/// The HMAC key of a `whsec_…` secret (the prefix is optional, as in the reference libraries).
pub fn decode_secret(secret: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(secret).ok()?.trim();
    let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
    BASE64.decode(encoded).ok().filter(|key| !key.is_empty())
}

impl Verifier {
    pub fn from_config(source: &SourceConfig) -> Result<Self, String> {
        if source.secrets.is_empty() {
            return Err(
                "standard_webhooks needs at least one secret (the sender's whsec_… signing secret)"
                    .to_owned(),
            );
        }
        let max_age = max_signature_age(source, DEFAULT_MAX_SIGNATURE_AGE)?;
        let keys = source
            .secrets
            .iter()
            .map(|secret| {
                let key = decode_secret(secret.expose()).ok_or_else(|| {
                    format!(
                        "secret {} is not a signing secret: whsec_ followed by base64",
                        secret.label()
                    )
                })?;
                Ok(Key {
                    label: secret.label().to_owned(),
                    key: SecretSlice::from(key),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { keys, max_age })
    }

    pub fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        let header = |names: [&str; 2]| -> Option<&str> {
            names
                .iter()
                .find_map(|name| request.headers.get(name))
                .and_then(|value| std::str::from_utf8(value).ok())
        };
        let (Some(id), Some(timestamp), Some(signatures)) =
            (header(ID), header(TIMESTAMP), header(SIGNATURE))
        else {
            return Err(Rejection::Unsigned);
        };
        if id.is_empty() {
            return Err(Rejection::Unsigned);
        }
        let seconds = unix_seconds(timestamp).ok_or(Rejection::BadSignature)?;

        let key = self
            .matching_key(id, timestamp, request.body, signatures)
            .ok_or(Rejection::BadSignature)?;

        check_freshness(seconds, request.received_at, self.max_age)?;
        // Genuine but not an event (a JSON object in the specification's shape): refused now,
        // as Yousign's and Zoho Sign's are, rather than accepted and then parked.
        if !is_json_object(request.body) || serde_json::from_slice::<Payload>(request.body).is_err()
        {
            return Err(Rejection::Unacceptable {
                status: 400,
                reason: "body is not a Standard Webhooks event (a JSON object with a string type)",
            });
        }

        Ok(Verified {
            event_id: Some(id.to_owned()),
            event_type: event_type(request.body),
            key_label: self.keys[key].label.clone(),
            signature_use: None,
            signature_headers: vec![
                (ID[0], id.to_owned()),
                (TIMESTAMP[0], timestamp.to_owned()),
                (SIGNATURE[0], signatures.to_owned()),
            ],
        })
    }

    /// The index of the first key that made one of the `v1` signatures (each compared in
    /// constant time).
    fn matching_key(&self, id: &str, timestamp: &str, body: &[u8], list: &str) -> Option<usize> {
        let candidates: Vec<Vec<u8>> = list
            .split(' ')
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|encoded| BASE64.decode(encoded).ok())
            .filter(|signature| signature.len() == 32)
            .collect();
        if candidates.is_empty() {
            return None;
        }
        self.keys.iter().position(|key| {
            let mac = hmac_sha256(
                key.key.expose_secret(),
                &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
            );
            candidates
                .iter()
                .any(|signature| mac.clone().verify_slice(signature).is_ok())
        })
    }
}

impl Verify for Verifier {
    fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        Verifier::verify(self, request)
    }
}

/// `v1,<base64>` of `id.timestamp.body` with a `whsec_…` secret: what a sender puts in
/// `webhook-signature`. For tests and samples.
pub fn sign(secret: &[u8], id: &str, timestamp: u64, body: &[u8]) -> Result<String, String> {
    let key = decode_secret(secret).ok_or("not a whsec_ secret")?;
    let mac = hmac_sha256(&key, &[format!("{id}.{timestamp}.").as_bytes(), body]);
    Ok(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "type")]
    event_type: Option<String>,
}

/// The payload's `type`, when it is a JSON object that has one.
fn event_type(body: &[u8]) -> Cow<'static, str> {
    is_json_object(body)
        .then(|| serde_json::from_slice::<Head>(body).ok())
        .flatten()
        .and_then(|head| head.event_type)
        .filter(|t| !t.is_empty())
        .map_or(Cow::Borrowed("unknown"), Cow::Owned)
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    event_type: Option<String>,
    timestamp: Option<String>,
    data: Option<serde_json::Value>,
}

/// A generic event: the process named by `data.id` or `data.object.id`, else by the event's own
/// digest; one activity entry named by `type`.
pub fn parse(body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
    if !is_json_object(body) {
        return Err(ParseError(
            "not a Standard Webhooks payload: JSON object expected".to_owned(),
        ));
    }
    let payload: Payload = serde_json::from_slice(body)
        .map_err(|e| ParseError(format!("not a Standard Webhooks payload: {e}")))?;
    let digest = hex(&Sha256::digest(body));
    let id_of = |value: Option<&serde_json::Value>| match value {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let data = payload.data.as_ref();
    let process_key = id_of(data.and_then(|d| d.get("id")))
        .or_else(|| id_of(data.and_then(|d| d.pointer("/object/id"))))
        .unwrap_or_else(|| format!("event:{}", &digest[..32]));
    let occurred_at = payload
        .timestamp
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let event_type = payload
        .event_type
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    Ok(vec![SigningEvent {
        process_key,
        status: None,
        occurred_at,
        flow_key: None,
        flow_name: None,
        company_key: None,
        signees: Vec::new(),
        documents: Vec::new(),
        activity: vec![ActivityEntry {
            // Two events of one type for one process are two entries; a redelivery is one.
            key: format!("{event_type}:{}", &digest[..16]),
            signee_key: None,
            status: event_type.clone(),
            description: event_type,
            file_name: None,
            created_at: occurred_at,
            created_by: "standard_webhooks".to_owned(),
        }],
        metadata: serde_json::Map::new(),
    }])
}

impl Provider for StandardWebhooks {
    fn name(&self) -> &'static str {
        "standard_webhooks"
    }

    fn settings(&self) -> &'static [Setting] {
        &[Setting::Secrets, Setting::MaxSignatureAge]
    }

    fn verifier(&self, source: &SourceConfig) -> Result<Box<dyn Verify>, String> {
        Ok(Box::new(Verifier::from_config(source)?))
    }

    fn parse(&self, body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
        parse(body)
    }

    fn sample(&self, source: &SourceConfig, _private_key: Option<&str>) -> Result<Sample, String> {
        let secret = crate::support::first_secret(source)?;
        let process_key = format!("obj_{}", crate::support::sample_id());
        let id = format!("msg_{}", crate::support::sample_id());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let body = serde_json::to_vec(&serde_json::json!({
            "type": "document.completed",
            "timestamp": Utc::now().to_rfc3339(),
            "data": {"id": process_key},
        }))
        .expect("JSON");
        let signature = sign(secret.expose(), &id, now, &body)?;
        Ok(Sample {
            path_token: None,
            query: None,
            body,
            content_type: "application/json",
            headers: vec![
                (ID[0], id),
                (TIMESTAMP[0], now.to_string()),
                (SIGNATURE[0], signature),
            ],
            process_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Pairs;

    // The specification's test vector.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const MSG_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TIMESTAMP_S: u64 = 1_649_367_553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIGNATURE_V1: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn source(secrets: &[&str]) -> SourceConfig {
        crate::testing::source("standard_webhooks", secrets)
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn verify_with(
        secrets: &[&str],
        id: &str,
        timestamp: &str,
        signature: &str,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, Rejection> {
        let headers = Pairs(vec![
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", timestamp.to_owned()),
            ("webhook-signature", signature.to_owned()),
        ]);
        Verifier::from_config(&source(secrets))
            .unwrap()
            .verify(&Request {
                body,
                headers: &headers,
                received_at: now,
                path_token: None,
                query: None,
            })
    }

    fn vector(now: SystemTime) -> Result<Verified, Rejection> {
        verify_with(
            &[SECRET],
            MSG_ID,
            &TIMESTAMP_S.to_string(),
            SIGNATURE_V1,
            BODY,
            now,
        )
    }

    /// Flips one bit of the `index`-th byte of an ASCII text, keeping it printable.
    fn flipped(text: &str, index: usize) -> String {
        let mut bytes = text.as_bytes().to_vec();
        bytes[index] ^= 0x01;
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn the_specification_vector_verifies_and_signs() {
        let verified = vector(at(TIMESTAMP_S + 10)).expect("the spec vector");
        assert_eq!(verified.event_id.as_deref(), Some(MSG_ID));
        assert_eq!(verified.key_label, "env:KEY0");
        assert_eq!(
            sign(SECRET.as_bytes(), MSG_ID, TIMESTAMP_S, BODY).unwrap(),
            SIGNATURE_V1
        );
    }

    #[test]
    fn one_flipped_bit_in_key_signature_timestamp_id_or_body_is_refused() {
        let now = at(TIMESTAMP_S + 10);
        let ts = TIMESTAMP_S.to_string();
        // The key: a bit of the base64 text after `whsec_` (still base64).
        let key = flipped(SECRET, SECRET_PREFIX.len() + 3);
        assert_eq!(
            verify_with(&[&key], MSG_ID, &ts, SIGNATURE_V1, BODY, now).unwrap_err(),
            Rejection::BadSignature
        );
        // The signature: every position of its base64.
        for i in 3..SIGNATURE_V1.len() - 1 {
            let signature = flipped(SIGNATURE_V1, i);
            assert!(
                verify_with(&[SECRET], MSG_ID, &ts, &signature, BODY, now).is_err(),
                "signature with byte {i} flipped"
            );
        }
        // The timestamp: 1649367553 → 1649367552, still fresh.
        let stamp = flipped(&ts, ts.len() - 1);
        assert_eq!(
            verify_with(&[SECRET], MSG_ID, &stamp, SIGNATURE_V1, BODY, now).unwrap_err(),
            Rejection::BadSignature
        );
        let id = flipped(MSG_ID, 5);
        assert_eq!(
            verify_with(&[SECRET], &id, &ts, SIGNATURE_V1, BODY, now).unwrap_err(),
            Rejection::BadSignature
        );
        for i in 0..BODY.len() {
            let mut body = BODY.to_vec();
            body[i] ^= 0x01;
            assert_eq!(
                verify_with(&[SECRET], MSG_ID, &ts, SIGNATURE_V1, &body, now).unwrap_err(),
                Rejection::BadSignature,
                "body with byte {i} flipped"
            );
        }
    }

    #[test]
    fn a_genuine_body_that_is_not_an_event_is_refused_with_400() {
        let now = at(TIMESTAMP_S + 10);
        let ts = TIMESTAMP_S.to_string();
        for body in [&b"not json"[..], b"[1,2]", b"{\"type\": 5}", b""] {
            let signature = sign(SECRET.as_bytes(), MSG_ID, TIMESTAMP_S, body).unwrap();
            assert!(
                matches!(
                    verify_with(&[SECRET], MSG_ID, &ts, &signature, body, now).unwrap_err(),
                    Rejection::Unacceptable { status: 400, .. }
                ),
                "{body:?}"
            );
        }
        // A forged one stays a 401: the body is read only once the signature holds.
        assert_eq!(
            verify_with(&[SECRET], MSG_ID, &ts, SIGNATURE_V1, b"not json", now).unwrap_err(),
            Rejection::BadSignature
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        assert_eq!(
            vector(at(TIMESTAMP_S + 5 * 60 + 1)).unwrap_err(),
            Rejection::Stale
        );
        assert!(vector(at(TIMESTAMP_S + 5 * 60)).is_ok());
        assert_eq!(
            vector(at(TIMESTAMP_S - 5 * 60 - 1)).unwrap_err(),
            Rejection::Stale
        );
        assert!(vector(at(TIMESTAMP_S - 5 * 60)).is_ok());
    }

    #[test]
    fn rotation_any_key_and_any_listed_signature_may_match() {
        let now = at(TIMESTAMP_S);
        let ts = TIMESTAMP_S.to_string();
        let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        // The old key first, the new one second: the second matches, and is reported.
        let verified = verify_with(&[other, SECRET], MSG_ID, &ts, SIGNATURE_V1, BODY, now)
            .expect("the second key");
        assert_eq!(verified.key_label, "env:KEY1");
        // The sender signs with both keys: a list, other versions ignored.
        let theirs = sign(other.as_bytes(), MSG_ID, TIMESTAMP_S, BODY).unwrap();
        let list = format!("v1a,AAAA {theirs} {SIGNATURE_V1}");
        assert!(verify_with(&[SECRET], MSG_ID, &ts, &list, BODY, now).is_ok());
        // A secret without its prefix is the same key.
        let bare = SECRET.trim_start_matches(SECRET_PREFIX);
        assert!(verify_with(&[bare], MSG_ID, &ts, SIGNATURE_V1, BODY, now).is_ok());
    }

    #[test]
    fn missing_or_malformed_headers_are_refused() {
        let now = at(TIMESTAMP_S);
        let ts = TIMESTAMP_S.to_string();
        assert_eq!(
            verify_with(&[SECRET], "", &ts, SIGNATURE_V1, BODY, now).unwrap_err(),
            Rejection::Unsigned
        );
        for stamp in [
            "",
            "+1649367553",
            " 1649367553",
            "1649367553.0",
            "99999999999999999999",
        ] {
            assert_eq!(
                verify_with(&[SECRET], MSG_ID, stamp, SIGNATURE_V1, BODY, now).unwrap_err(),
                Rejection::BadSignature,
                "timestamp {stamp:?}"
            );
        }
        for signature in [
            "",
            "v1,",
            "v2,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
            "tZ1I4/hD",
        ] {
            assert_eq!(
                verify_with(&[SECRET], MSG_ID, &ts, signature, BODY, now).unwrap_err(),
                Rejection::BadSignature,
                "signature {signature:?}"
            );
        }
        let none = Pairs(Vec::new());
        let refused = Verifier::from_config(&source(&[SECRET]))
            .unwrap()
            .verify(&Request {
                body: BODY,
                headers: &none,
                received_at: now,
                path_token: None,
                query: None,
            })
            .unwrap_err();
        assert_eq!(refused, Rejection::Unsigned);
    }

    #[test]
    fn svix_header_names_are_read_too() {
        let headers = Pairs(vec![
            ("svix-id", MSG_ID.to_owned()),
            ("svix-timestamp", TIMESTAMP_S.to_string()),
            ("svix-signature", SIGNATURE_V1.to_owned()),
        ]);
        let verified = Verifier::from_config(&source(&[SECRET]))
            .unwrap()
            .verify(&Request {
                body: BODY,
                headers: &headers,
                received_at: at(TIMESTAMP_S),
                path_token: None,
                query: None,
            })
            .expect("svix-* headers");
        assert_eq!(verified.event_id.as_deref(), Some(MSG_ID));
    }

    #[test]
    fn a_secret_that_is_not_base64_is_a_configuration_error() {
        let Err(refused) = Verifier::from_config(&source(&["whsec_not base64!"])) else {
            panic!("refused");
        };
        assert!(refused.contains("env:KEY0"), "{refused}");
        assert!(
            !refused.contains("not base64!"),
            "never the secret: {refused}"
        );
        assert!(Verifier::from_config(&source(&[])).is_err());
    }

    #[test]
    fn a_payload_is_one_activity_entry_of_the_process_it_names() {
        let body = br#"{"type":"envelope.completed","timestamp":"2026-11-29T10:00:00Z","data":{"id":"env_42","status":"completed"}}"#;
        let events = parse(body).unwrap();
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.process_key, "env_42");
        assert_eq!(event.status, None);
        assert_eq!(event.activity[0].status, "envelope.completed");
        assert_eq!(
            event.occurred_at.unwrap().to_rfc3339(),
            "2026-11-29T10:00:00+00:00"
        );
        // The same body again is the same entry; another event of the same type is another.
        assert_eq!(
            parse(body).unwrap()[0].activity[0].key,
            event.activity[0].key
        );
        let again = br#"{"type":"envelope.completed","timestamp":"2026-11-29T10:05:00Z","data":{"id":"env_42"}}"#;
        assert_ne!(
            parse(again).unwrap()[0].activity[0].key,
            event.activity[0].key
        );
        // `data.object.id`, and no id at all.
        let nested = br#"{"type":"t","data":{"object":{"id":"doc_1"}}}"#;
        assert_eq!(parse(nested).unwrap()[0].process_key, "doc_1");
        let bare = parse(br#"{"type":"t"}"#).unwrap();
        assert!(bare[0].process_key.starts_with("event:"));
        assert!(parse(b"[1]").is_err());
        assert!(parse(b"not json").is_err());
    }
}
