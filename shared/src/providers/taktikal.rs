//! Taktikal (Iceland): the signature sits inside the JSON body.
//!
//! `EventSignature.Signature = base64(HMAC-SHA256(key, TimeStamp + Guid))`, where `TimeStamp` is
//! .NET ticks written as decimal digits and `Guid` is the string exactly as sent. Newer payloads
//! add `SignedData`, the two already joined; it is checked against `TimeStamp + Guid`, never
//! trusted alone, or a captured signature could be paired with any timestamp.
//!
//! The HMAC does **not** cover `EventData`. Two defences: a freshness window on the ticks
//! (Taktikal re-sends with the original signature, so the default is 24 h), and the replay memory
//! in [`super::Sources`], which refuses a signature seen before with a different body.
//!
//! Only `Id`, `EventData.EventType` and `EventSignature` are read here; the document and personal
//! data are skipped, not copied.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::Sha256;

use super::{Rejection, Request, SignatureUse, Verified};
use crate::config::{Secret, SourceConfig};

/// How old a signature may be, unless the source says otherwise.
pub const DEFAULT_MAX_SIGNATURE_AGE: Duration = Duration::from_secs(24 * 3600);

/// .NET ticks (100 ns since 0001-01-01) at the Unix epoch.
const TICKS_AT_UNIX_EPOCH: u64 = 621_355_968_000_000_000;
const TICKS_PER_SECOND: u64 = 10_000_000;

/// Taktikal's "do not retry" status: a body that can never be accepted.
const STOP_RETRYING: u16 = 406;

pub(crate) fn check_config(source: &SourceConfig) -> Result<(), String> {
    if source.secrets.is_empty() {
        return Err("taktikal needs at least one secret (its webhookSignatureKey, or the apiKey of older tenants)".to_owned());
    }
    if source.max_signature_age.is_some_and(|age| age.is_zero()) {
        return Err("max_signature_age must be greater than zero".to_owned());
    }
    Ok(())
}

/// Verifies Taktikal webhooks for one source.
#[derive(Debug, Clone)]
pub struct Verifier {
    max_age: Duration,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "Id", default)]
    id: Option<serde_json::Value>,
    #[serde(rename = "EventData", default)]
    event_data: Option<EventDataHead>,
    #[serde(rename = "EventSignature", default, borrow)]
    signature: Option<SignatureFields<'a>>,
}

#[derive(Deserialize)]
struct EventDataHead {
    #[serde(rename = "EventType", default)]
    event_type: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct SignatureFields<'a> {
    /// Kept raw: ticks exceed 2^53 and must never pass through a float.
    #[serde(rename = "TimeStamp", default, borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(rename = "Guid", default, borrow)]
    guid: Option<Cow<'a, str>>,
    #[serde(rename = "Signature", default, borrow)]
    signature: Option<Cow<'a, str>>,
    #[serde(rename = "SignedData", default, borrow)]
    signed_data: Option<Cow<'a, str>>,
}

impl Verifier {
    pub fn from_config(source: &SourceConfig) -> Self {
        Self::new(
            source
                .max_signature_age
                .unwrap_or(DEFAULT_MAX_SIGNATURE_AGE),
        )
    }

    pub fn new(max_age: Duration) -> Self {
        Self { max_age }
    }

    /// Verifies the body against `secrets` (any may match).
    pub fn verify(&self, request: &Request<'_>, secrets: &[Secret]) -> Result<Verified, Rejection> {
        let envelope: Envelope<'_> =
            serde_json::from_slice(request.body).map_err(|_| Rejection::Unacceptable {
                status: STOP_RETRYING,
                reason: "body is not a Taktikal webhook (JSON object expected)",
            })?;
        let fields = envelope.signature.ok_or(Rejection::Unsigned)?;
        let (Some(timestamp), Some(guid), Some(signature)) =
            (fields.timestamp, fields.guid, fields.signature)
        else {
            return Err(Rejection::Unsigned);
        };
        let ticks_digits = ticks_digits(timestamp.get()).ok_or(Rejection::BadSignature)?;

        let mut signed = String::with_capacity(ticks_digits.len() + guid.len());
        signed.push_str(ticks_digits);
        signed.push_str(&guid);
        if let Some(signed_data) = fields.signed_data
            && signed_data != signed
        {
            return Err(Rejection::BadSignature);
        }

        let key =
            matching_key(signed.as_bytes(), &signature, secrets).ok_or(Rejection::BadSignature)?;

        let signed_at = ticks_to_time(ticks_digits).ok_or(Rejection::BadSignature)?;
        let valid_until = signed_at + self.max_age;
        if request.received_at > valid_until || signed_at > request.received_at + super::FUTURE_SKEW
        {
            return Err(Rejection::Stale);
        }

        Ok(Verified {
            event_id: envelope.id.as_ref().and_then(id_text),
            event_type: envelope
                .event_data
                .and_then(|d| d.event_type)
                .as_ref()
                .map_or(Cow::Borrowed("Unknown"), event_type_name),
            key,
            signature_use: Some(SignatureUse {
                id: signed.into_bytes(),
                valid_until,
            }),
            signature_headers: Vec::new(),
        })
    }
}

/// The ticks as sent: a JSON integer (or, leniently, a string of digits).
fn ticks_digits(raw: &str) -> Option<&str> {
    let digits = raw
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(raw);
    (!digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then_some(digits)
}

fn ticks_to_time(digits: &str) -> Option<SystemTime> {
    let ticks: u64 = digits.parse().ok()?;
    let since_epoch = ticks.checked_sub(TICKS_AT_UNIX_EPOCH)?;
    let nanos = u32::try_from((since_epoch % TICKS_PER_SECOND) * 100).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(since_epoch / TICKS_PER_SECOND, nanos))
}

/// Index of the first secret whose HMAC matches, compared in constant time.
fn matching_key(message: &[u8], signature_b64: &str, secrets: &[Secret]) -> Option<usize> {
    let signature = BASE64.decode(signature_b64.trim()).ok()?;
    if signature.len() != 32 {
        return None;
    }
    secrets.iter().position(|secret| {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.expose()).expect("HMAC takes any key length");
        mac.update(message);
        mac.verify_slice(&signature).is_ok()
    })
}

fn id_text(id: &serde_json::Value) -> Option<String> {
    match id {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `EventData.EventType` as a name: Taktikal sends the integer of its enum.
fn event_type_name(value: &serde_json::Value) -> Cow<'static, str> {
    match value {
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(1) => "SignedDocument".into(),
            Some(2) => "AllSigned".into(),
            Some(3) => "Auth".into(),
            Some(4) => "Signup".into(),
            Some(5) => "Canceled".into(),
            Some(6) => "Expired".into(),
            Some(7) => "Reminder".into(),
            Some(8) => "CompanyTermination".into(),
            Some(9) => "EmailVerification".into(),
            Some(10) => "Completed".into(),
            Some(11) => "Created".into(),
            _ => format!("EventType{n}").into(),
        },
        serde_json::Value::String(s)
            if !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            s.clone().into()
        }
        _ => "Unknown".into(),
    }
}

/// Taktikal's signature over `ticks + guid` with `key`: what Taktikal sends, and what the tests and
/// the load generator use to make genuine events.
pub fn sign(key: &[u8], ticks: u64, guid: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(ticks.to_string().as_bytes());
    mac.update(guid.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// `time` as .NET ticks.
pub fn ticks_of(time: SystemTime) -> u64 {
    let since = time.duration_since(UNIX_EPOCH).expect("after 1970");
    TICKS_AT_UNIX_EPOCH + since.as_secs() * TICKS_PER_SECOND + u64::from(since.subsec_nanos() / 100)
}

/// Replaces `EventSignature` in a Taktikal JSON body with a fresh one made with `key`, the way
/// Taktikal signs (current format, with `SignedData`). For tests and the load generator.
pub fn with_signature(
    mut event: serde_json::Value,
    key: &[u8],
    ticks: u64,
    guid: &str,
) -> serde_json::Value {
    event["EventSignature"] = serde_json::json!({
        "TimeStamp": ticks,
        "Guid": guid,
        "Signature": sign(key, ticks, guid),
        "SignedData": format!("{ticks}{guid}"),
    });
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::NoHeaders;

    const KEY: &str = "test-webhook-signature-key";
    const TICKS: u64 = 637_030_223_561_542_290;

    fn at(ticks: u64) -> SystemTime {
        ticks_to_time(&ticks.to_string()).unwrap()
    }

    fn secrets(keys: &[&str]) -> Vec<Secret> {
        keys.iter()
            .enumerate()
            .map(|(i, k)| Secret::new(format!("env:KEY{i}"), *k))
            .collect()
    }

    fn body(ticks: &str, guid: &str, signature: &str, signed_data: Option<&str>) -> Vec<u8> {
        let signed_data = signed_data.map_or(String::new(), |d| format!(r#","SignedData":"{d}""#));
        format!(
            r#"{{"Id":"3e9922f5fd7f4a9baa75a3fa90cb9caf","EventData":{{"EventType":2}},"EventSignature":{{"TimeStamp":{ticks},"Guid":"{guid}","Signature":"{signature}"{signed_data}}}}}"#
        )
        .into_bytes()
    }

    fn verify_at(body: &[u8], keys: &[&str], now: SystemTime) -> Result<Verified, Rejection> {
        let request = Request {
            body,
            headers: &NoHeaders,
            received_at: now,
        };
        Verifier::new(DEFAULT_MAX_SIGNATURE_AGE).verify(&request, &secrets(keys))
    }

    fn verify(body: &[u8], keys: &[&str]) -> Result<Verified, Rejection> {
        verify_at(body, keys, at(TICKS) + Duration::from_secs(60))
    }

    const HYPHENATED: &str = "2065b6c0-934f-4d18-81d3-46c29b913311";
    const SIG_HYPHENATED: &str = "MMKzRM/2RROr3/GwJL9zHMVnEzxxHpKoiKwdT7FqJVU=";
    const PLAIN: &str = "2065b6c0934f4d1881d346c29b913311";
    const SIG_PLAIN: &str = "NVO+7sk10QmnEp/gxMuCDVfkGYPbtqvVqtYhR3zapOY=";
    const SIG_ROUNDED: &str = "dHqmmvVILqwod07Kdbu8ULaqQvU/AYpCGs10O3BTsKM=";

    #[test]
    fn published_vectors() {
        assert_eq!(sign(KEY.as_bytes(), TICKS, HYPHENATED), SIG_HYPHENATED);
        assert_eq!(sign(KEY.as_bytes(), TICKS, PLAIN), SIG_PLAIN);
        assert_eq!(
            sign(KEY.as_bytes(), 637_030_223_561_542_300, HYPHENATED),
            SIG_ROUNDED
        );

        let ok = verify(
            &body("637030223561542290", HYPHENATED, SIG_HYPHENATED, None),
            &[KEY],
        )
        .expect("hyphenated verifies");
        assert_eq!(ok.key, 0);
        assert_eq!(ok.event_type, "AllSigned");
        assert_eq!(
            ok.event_id.as_deref(),
            Some("3e9922f5fd7f4a9baa75a3fa90cb9caf")
        );
        verify(&body("637030223561542290", PLAIN, SIG_PLAIN, None), &[KEY])
            .expect("32 hex digits verify as sent");
        // The signature made over the float-rounded timestamp must not verify for the true one.
        assert_eq!(
            verify(
                &body("637030223561542290", HYPHENATED, SIG_ROUNDED, None),
                &[KEY]
            )
            .unwrap_err(),
            Rejection::BadSignature
        );
    }

    #[test]
    fn ticks_convert_to_the_documented_instant() {
        let t = at(TICKS);
        assert_eq!(
            humantime::format_rfc3339_micros(t).to_string(),
            "2019-09-02T11:59:16.154229Z"
        );
        assert_eq!(ticks_of(t), TICKS);
    }

    #[test]
    fn signed_data_must_equal_timestamp_and_guid() {
        let good = format!("{TICKS}{HYPHENATED}");
        verify(
            &body(
                "637030223561542290",
                HYPHENATED,
                SIG_HYPHENATED,
                Some(&good),
            ),
            &[KEY],
        )
        .expect("matching SignedData");
        // A captured SignedData + Signature pair moved onto another timestamp.
        let moved = body(
            "637030223561542299",
            HYPHENATED,
            SIG_HYPHENATED,
            Some(&good),
        );
        assert_eq!(verify(&moved, &[KEY]).unwrap_err(), Rejection::BadSignature);
    }

    fn flip_bit(text: &str, index: usize) -> String {
        let mut bytes = text.as_bytes().to_vec();
        bytes[index] ^= 0x01;
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn one_flipped_bit_anywhere_fails() {
        let ticks = TICKS.to_string();
        for i in 0..KEY.len() {
            let key = flip_bit(KEY, i);
            assert_eq!(
                verify(&body(&ticks, HYPHENATED, SIG_HYPHENATED, None), &[&key]).unwrap_err(),
                Rejection::BadSignature,
                "key bit at {i}"
            );
        }
        for i in 0..HYPHENATED.len() {
            let guid = flip_bit(HYPHENATED, i);
            assert_eq!(
                verify(&body(&ticks, &guid, SIG_HYPHENATED, None), &[KEY]).unwrap_err(),
                Rejection::BadSignature,
                "guid bit at {i}"
            );
        }
        for i in 0..ticks.len() {
            // Flip the low bit of a digit: still a digit, another timestamp.
            let tampered = flip_bit(&ticks, i);
            assert_eq!(
                verify(&body(&tampered, HYPHENATED, SIG_HYPHENATED, None), &[KEY]).unwrap_err(),
                Rejection::BadSignature,
                "timestamp bit at {i}"
            );
        }
        let raw = BASE64.decode(SIG_HYPHENATED).unwrap();
        for bit in 0..raw.len() * 8 {
            let mut tampered = raw.clone();
            tampered[bit / 8] ^= 1 << (bit % 8);
            let sig = BASE64.encode(&tampered);
            assert_eq!(
                verify(&body(&ticks, HYPHENATED, &sig, None), &[KEY]).unwrap_err(),
                Rejection::BadSignature,
                "signature bit {bit}"
            );
        }
    }

    #[test]
    fn any_of_several_keys_matches_and_reports_which() {
        let ok = verify(
            &body(&TICKS.to_string(), HYPHENATED, SIG_HYPHENATED, None),
            &["old-api-key", KEY],
        )
        .unwrap();
        assert_eq!(ok.key, 1);
    }

    #[test]
    fn freshness_window() {
        let b = body(&TICKS.to_string(), HYPHENATED, SIG_HYPHENATED, None);
        let signed_at = at(TICKS);
        verify_at(&b, &[KEY], signed_at + DEFAULT_MAX_SIGNATURE_AGE)
            .expect("exactly 24 h old is accepted");
        assert_eq!(
            verify_at(
                &b,
                &[KEY],
                signed_at + DEFAULT_MAX_SIGNATURE_AGE + Duration::from_secs(1)
            )
            .unwrap_err(),
            Rejection::Stale
        );
        verify_at(&b, &[KEY], signed_at - Duration::from_secs(60))
            .expect("small clock skew is accepted");
        assert_eq!(
            verify_at(&b, &[KEY], signed_at - Duration::from_secs(3600)).unwrap_err(),
            Rejection::Stale,
            "signed an hour in the future"
        );
    }

    #[test]
    fn missing_or_malformed_signatures_are_unsigned_or_bad() {
        let unsigned = br#"{"Id":"x","EventData":{"EventType":2}}"#;
        assert_eq!(verify(unsigned, &[KEY]).unwrap_err(), Rejection::Unsigned);
        let no_guid = br#"{"EventSignature":{"TimeStamp":637030223561542290,"Signature":"MMKzRM/2RROr3/GwJL9zHMVnEzxxHpKoiKwdT7FqJVU="}}"#;
        assert_eq!(verify(no_guid, &[KEY]).unwrap_err(), Rejection::Unsigned);
        for ticks in [
            "6.370302235615423e17",
            "-637030223561542290",
            "637030223561542290.0",
            "\"\"",
            "{}",
        ] {
            assert_eq!(
                verify(&body(ticks, HYPHENATED, SIG_HYPHENATED, None), &[KEY]).unwrap_err(),
                Rejection::BadSignature,
                "timestamp {ticks}"
            );
        }
        assert_eq!(
            verify(&body("null", HYPHENATED, SIG_HYPHENATED, None), &[KEY]).unwrap_err(),
            Rejection::Unsigned,
            "a null timestamp is a missing one"
        );
        assert_eq!(
            verify(
                &body(&TICKS.to_string(), HYPHENATED, "not base64!", None),
                &[KEY]
            )
            .unwrap_err(),
            Rejection::BadSignature
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_refused_for_good() {
        for b in [&b"not json"[..], b"", b"[1,2]", b"{\"EventSignature\": 5}"] {
            assert_eq!(
                verify(b, &[KEY]).unwrap_err().status(),
                406,
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
    }

    #[test]
    fn ticks_given_as_a_string_of_digits_verify() {
        let b = body(&format!("\"{TICKS}\""), HYPHENATED, SIG_HYPHENATED, None);
        verify(&b, &[KEY]).expect("string ticks");
    }

    #[test]
    fn event_types_map_to_names() {
        for (n, name) in [
            (1, "SignedDocument"),
            (2, "AllSigned"),
            (5, "Canceled"),
            (6, "Expired"),
            (10, "Completed"),
            (11, "Created"),
            (42, "EventType42"),
        ] {
            assert_eq!(event_type_name(&serde_json::json!(n)), name);
        }
        assert_eq!(
            event_type_name(&serde_json::json!("AllSigned")),
            "AllSigned"
        );
        assert_eq!(event_type_name(&serde_json::json!("a.b#c")), "Unknown");
    }
}
