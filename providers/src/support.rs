//! What several providers' verifiers and parsers share: HMAC, hex, signed timestamps, JSON
//! shapes, and the settings every sample needs.

use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::event::ParseError;
use crate::provider::{FUTURE_SKEW, Rejection, Request};
use crate::settings::{Secret, SourceConfig};

/// Why a sample cannot be made without the provider's private key.
pub(crate) fn needs_private_key(source: &SourceConfig) -> String {
    format!(
        "source {} ({}) is signed with the provider's private key: pass --private-key \
         (a test key whose public half the source is configured with)",
        source.name, source.provider
    )
}

/// The source's secrets, or why a provider that needs at least one cannot do without: "`provider`
/// needs at least one secret (`what`)".
pub(crate) fn required_secrets(source: &SourceConfig, what: &str) -> Result<Vec<Secret>, String> {
    if source.secrets.is_empty() {
        return Err(format!(
            "{} needs at least one secret ({what})",
            source.provider
        ));
    }
    Ok(source.secrets.clone())
}

/// The secret a sample is signed with: the source's first.
pub(crate) fn first_secret(source: &SourceConfig) -> Result<&Secret, String> {
    source
        .secrets
        .first()
        .ok_or_else(|| format!("source {} has no secret to sign with", source.name))
}

/// A fresh random id for samples (32 hex digits).
pub(crate) fn sample_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// True if the body's first byte after JSON whitespace opens an object. serde reads a struct from
/// a JSON array too (positionally), so every provider whose webhooks are JSON objects checks this
/// before deserializing — the verifier and the parser alike, so that both read a body the same way.
pub(crate) fn is_json_object(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .is_some_and(|&b| b == b'{')
}

/// HMAC-SHA256 of the concatenation of `parts` with `key`, ready to compare
/// ([`Mac::verify_slice`] is constant-time) or to finalize.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// The index of the first secret whose HMAC-SHA256 of `parts` is one of `signatures` (each
/// compared in constant time).
pub(crate) fn matching_secret(
    secrets: &[Secret],
    parts: &[&[u8]],
    signatures: &[Vec<u8>],
) -> Option<usize> {
    if signatures.is_empty() {
        return None;
    }
    secrets.iter().position(|secret| {
        let mac = hmac_sha256(secret.expose(), parts);
        signatures
            .iter()
            .any(|signature| mac.clone().verify_slice(signature).is_ok())
    })
}

/// Lower- or upper-case hex, an even number of digits.
pub(crate) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A signed Unix-seconds timestamp as sent: digits only (the signed text is the header as sent,
/// and `+5` or ` 5` would parse).
pub(crate) fn unix_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `Err(Stale)` unless a signature made at `seconds` is at most `max_age` old and at most
/// [`FUTURE_SKEW`] ahead when received.
pub(crate) fn check_freshness(
    seconds: u64,
    received_at: SystemTime,
    max_age: Duration,
) -> Result<(), Rejection> {
    let sent_at = std::time::UNIX_EPOCH
        .checked_add(Duration::from_secs(seconds))
        .ok_or(Rejection::BadSignature)?;
    let too_old = received_at
        .duration_since(sent_at)
        .is_ok_and(|age| age > max_age);
    let too_new = sent_at
        .duration_since(received_at)
        .is_ok_and(|ahead| ahead > FUTURE_SKEW);
    if too_old || too_new {
        return Err(Rejection::Stale);
    }
    Ok(())
}

/// A source's `max_signature_age`, or `default`; zero is a configuration error.
pub(crate) fn max_signature_age(
    source: &SourceConfig,
    default: Duration,
) -> Result<Duration, String> {
    match source.max_signature_age {
        Some(age) if age.is_zero() => Err("max_signature_age must be greater than zero".to_owned()),
        Some(age) => Ok(age),
        None => Ok(default),
    }
}

/// The value of header `name` as text, if present and UTF-8.
pub(crate) fn header_text<'a>(request: &Request<'a>, name: &str) -> Option<&'a str> {
    request
        .headers
        .get(name)
        .and_then(|value| std::str::from_utf8(value).ok())
}

/// `body` as a JSON object of type `T`, or why not, naming `what` it should have been ("a
/// BoldSign event"): the parsers' first step.
pub(crate) fn parse_object<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, ParseError> {
    if !is_json_object(body) {
        return Err(ParseError(format!("not {what}: JSON object expected")));
    }
    serde_json::from_slice(body).map_err(|e| ParseError(format!("not {what}: {e}")))
}

/// `text` as one segment of a URL path: percent-encoded (a space as `%20`, never `+`).
pub(crate) fn path_segment(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The `status` field of a `200` answer of a provider's state API (`what` names the request in
/// an error); `None` for any other HTTP status (no state: asked again later).
pub(crate) fn answered_status(
    http: u16,
    body: &[u8],
    what: &str,
) -> Result<Option<String>, String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        status: Option<String>,
    }
    if http != 200 {
        return Ok(None);
    }
    let answer: Answer =
        serde_json::from_slice(body).map_err(|e| format!("{what}: not a state ({e})"))?;
    answer
        .status
        .map(Some)
        .ok_or_else(|| format!("{what}: the answer has no status"))
}

/// `<from_name>=<from>&<to_name>=<to>`, the times in RFC 3339 to the second, URL-encoded: the
/// date range of a provider's listing.
pub(crate) fn date_range_query(
    (from_name, from): (&str, chrono::DateTime<chrono::Utc>),
    (to_name, to): (&str, chrono::DateTime<chrono::Utc>),
) -> String {
    let format =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    form_urlencoded::Serializer::new(String::new())
        .append_pair(from_name, &format(from))
        .append_pair(to_name, &format(to))
        .finish()
}

/// Whether process `id`, as an API answer reports it, is a gap in the archive: `None` when the
/// archive has it with one of the `recorded` entry-key prefixes (or has it at all, when there are
/// none: its state is not final); else `Some(unknown_process)`.
pub(crate) fn gap_of<S: AsRef<str>>(
    known: &std::collections::HashMap<String, std::collections::HashSet<String>>,
    id: &str,
    recorded: &[S],
) -> Option<bool> {
    let keys = match known.get(id) {
        None => return Some(true),
        Some(keys) => keys,
    };
    let found = keys
        .iter()
        .any(|key| recorded.iter().any(|p| key.starts_with(p.as_ref())));
    (!recorded.is_empty() && !found).then_some(false)
}

/// An `Authorization` value made of API credentials: `<scheme> <credentials>`, or the
/// credentials as they are when they already start with `Bearer ` (an OAuth access token
/// written with its scheme) or with `<scheme> `. Surrounding white space is trimmed.
pub(crate) fn authorization(scheme: &str, credentials: &[u8]) -> String {
    let text = String::from_utf8_lossy(credentials);
    let text = text.trim();
    if text.starts_with("Bearer ")
        || text
            .strip_prefix(scheme)
            .is_some_and(|t| t.starts_with(' '))
    {
        text.to_owned()
    } else {
        format!("{scheme} {text}")
    }
}

/// A document's file name from the provider's name for it: `<name>.pdf` unless it already ends
/// so; `None` for a missing or empty name.
pub(crate) fn pdf_name(name: Option<String>) -> Option<String> {
    name.filter(|n| !n.is_empty()).map(|n| {
        if n.to_lowercase().ends_with(".pdf") {
            n
        } else {
            format!("{n}.pdf")
        }
    })
}

/// A JSON id as text: providers send ids as numbers (Documenso, DocuSeal) or strings.
pub(crate) fn json_id(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An RFC 3339 time (`2024-01-15T10:30:00.000Z`), in UTC.
pub(crate) fn rfc3339(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}
