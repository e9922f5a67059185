//! Universign (France): a JSON event envelope signed as a detached JWS.
//!
//! What the provider signs, what this module verifies and relies on, the provider's API as the
//! worker uses it, and where each fact comes from: `docs/providers/universign.md` (one page per provider).

use std::borrow::Cow;
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use chrono::{DateTime, Utc};
use rsa::signature::Verifier as _;
use rsa::{BigUint, RsaPublicKey};
use serde::Deserialize;
use sha2::Sha256;

use crate::event::{
    ActivityEntry, Document, DocumentKind, ParseError, ProcessStatus, Signee, SigningEvent,
};
use crate::settings::{Setting, SourceConfig};
use crate::support::is_json_object;
use crate::{Provider, Rejection, Request, Sample, Verified, Verify};

/// The header carrying the detached JWS.
pub const SIGNATURE_HEADER: &str = "x-jws-signature";
/// How old an event may be, unless the source says otherwise.
pub const DEFAULT_MAX_SIGNATURE_AGE: Duration = Duration::from_secs(96 * 3600);

#[derive(Debug, Clone)]
struct Key {
    kid: Option<String>,
    key: RsaPublicKey,
}

/// Verifies Universign webhooks for one source.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: Vec<Key>,
    max_age: Duration,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    n: Option<String>,
    e: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
}

/// Reads the RSA signing keys of a JWKS document.
pub fn load_jwks(path: &Path) -> Result<Vec<(Option<String>, RsaPublicKey)>, String> {
    let text = crate::settings::read_small_file(path)
        .map_err(|e| format!("jwks {}: {e}", path.display()))?;
    let jwks: Jwks = serde_json::from_str(&text)
        .map_err(|e| format!("jwks {}: not a JWKS ({e})", path.display()))?;
    let mut keys = Vec::new();
    for (i, jwk) in jwks.keys.into_iter().enumerate() {
        if jwk.kty != "RSA" || jwk.usage.as_deref().is_some_and(|u| u != "sig") {
            continue;
        }
        let part = |value: Option<String>, name: &str| {
            value
                .and_then(|v| BASE64URL.decode(v.trim_end_matches('=')).ok())
                .map(|bytes| BigUint::from_bytes_be(&bytes))
                .ok_or_else(|| {
                    format!("jwks {}: keys[{i}].{name} is not base64url", path.display())
                })
        };
        let key = RsaPublicKey::new(part(jwk.n, "n")?, part(jwk.e, "e")?).map_err(|e| {
            format!(
                "jwks {}: keys[{i}] is not a usable RSA key ({e})",
                path.display()
            )
        })?;
        keys.push((jwk.kid, key));
    }
    if keys.is_empty() {
        return Err(format!("jwks {}: no RSA signing key", path.display()));
    }
    Ok(keys)
}

#[derive(Deserialize)]
struct Protected {
    alg: String,
    kid: Option<String>,
    b64: Option<bool>,
    crit: Option<Vec<String>>,
}

impl Protected {
    /// RFC 7515 §4.1.11 and RFC 7797 §6: `crit` lists extensions the recipient must understand,
    /// each present in the header; the only one understood here is `b64`, and `b64` must be
    /// listed in `crit` whenever it is present. An empty `crit` is invalid.
    fn critical_ok(&self) -> bool {
        let listed = self.crit.as_deref();
        let b64_listed = listed.is_some_and(|c| c.iter().any(|n| n == "b64"));
        if listed.is_some_and(|c| c.is_empty() || c.iter().any(|n| n != "b64")) {
            return false;
        }
        // A listed `b64` must be present, and a present `b64` must be listed.
        b64_listed == self.b64.is_some()
    }

    /// Whether the payload is base64url-encoded in the signing input (RFC 7797).
    fn encodes_payload(&self) -> bool {
        self.b64.unwrap_or(true)
    }
}

#[derive(Deserialize)]
struct Envelope {
    id: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    #[serde(rename = "createdAt")]
    created_at: Option<serde_json::Value>,
    payload: Option<serde_json::Value>,
}

/// `createdAt`, unix seconds or RFC 3339; `None` outside chrono's range (no arithmetic on a
/// time from a body may overflow).
fn created_at(value: &serde_json::Value) -> Option<DateTime<Utc>> {
    match value {
        serde_json::Value::Number(n) => n
            .as_i64()
            .and_then(|secs| DateTime::from_timestamp(secs, 0)),
        serde_json::Value::String(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        _ => None,
    }
}

impl Verifier {
    pub fn from_config(source: &SourceConfig) -> Result<Self, String> {
        let path = source.jwks.as_ref().ok_or(
            "universign needs jwks = \"/path/to/jwks.json\" (Universign's webhook signing keys)",
        )?;
        let keys = load_jwks(path)?
            .into_iter()
            .map(|(kid, key)| Key { kid, key })
            .collect();
        Ok(Self {
            keys,
            max_age: source
                .max_signature_age
                .unwrap_or(DEFAULT_MAX_SIGNATURE_AGE),
        })
    }

    /// The key whose signature `header` (a detached JWS, `protected..signature`) is over
    /// `body`; `BadSignature` for anything else (a malformed header, an unknown key id or
    /// algorithm, a critical header this verifier does not understand, a signature that does
    /// not verify).
    fn check_signature(&self, header: &str, body: &[u8]) -> Result<&Key, Rejection> {
        let mut parts = header.split('.');
        let (Some(protected_b64), Some(""), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Rejection::BadSignature);
        };
        let protected: Protected = BASE64URL
            .decode(protected_b64)
            .ok()
            .and_then(|json| serde_json::from_slice::<Protected>(&json).ok())
            .filter(Protected::critical_ok)
            .ok_or(Rejection::BadSignature)?;
        let key = match &protected.kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid.as_str())),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
        .ok_or(Rejection::BadSignature)?;
        let signature = BASE64URL
            .decode(signature_b64)
            .map_err(|_| Rejection::BadSignature)?;

        let mut input = Vec::with_capacity(protected_b64.len() + 1 + body.len() * 4 / 3 + 4);
        input.extend_from_slice(protected_b64.as_bytes());
        input.push(b'.');
        if protected.encodes_payload() {
            input.extend_from_slice(BASE64URL.encode(body).as_bytes());
        } else {
            input.extend_from_slice(body);
        }
        let valid = match protected.alg.as_str() {
            "RS256" => rsa::pkcs1v15::Signature::try_from(signature.as_slice()).is_ok_and(|s| {
                rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key.key.clone())
                    .verify(&input, &s)
                    .is_ok()
            }),
            "PS256" => rsa::pss::Signature::try_from(signature.as_slice()).is_ok_and(|s| {
                rsa::pss::VerifyingKey::<Sha256>::new(key.key.clone())
                    .verify(&input, &s)
                    .is_ok()
            }),
            _ => false,
        };
        if !valid {
            return Err(Rejection::BadSignature);
        }
        Ok(key)
    }

    pub fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        let header = request
            .headers
            .get(SIGNATURE_HEADER)
            .ok_or(Rejection::Unsigned)?;
        let header = std::str::from_utf8(header)
            .map_err(|_| Rejection::BadSignature)?
            .trim();
        let key = self.check_signature(header, request.body)?;

        let not_an_event = Rejection::Unacceptable {
            status: 400,
            reason: "body is not a Universign event (JSON object expected)",
        };
        if !is_json_object(request.body) {
            return Err(not_an_event);
        }
        let envelope: Envelope = serde_json::from_slice(request.body).map_err(|_| not_an_event)?;
        let created = envelope
            .created_at
            .as_ref()
            .and_then(created_at)
            .map(SystemTime::from)
            .ok_or(Rejection::Unacceptable {
                status: 400,
                reason: "Universign event without createdAt",
            })?;
        let valid_until = created.checked_add(self.max_age).ok_or(Rejection::Stale)?;
        let latest = request
            .received_at
            .checked_add(crate::FUTURE_SKEW)
            .unwrap_or(request.received_at);
        if request.received_at > valid_until || created > latest {
            return Err(Rejection::Stale);
        }
        Ok(Verified {
            event_id: envelope.id.filter(|id| !id.is_empty()),
            event_type: envelope
                .event_type
                .map_or(Cow::Borrowed("unknown"), Cow::Owned),
            key_label: format!("kid:{}", key.kid.as_deref().unwrap_or("-")),
            signature_use: None,
            signature_headers: vec![(SIGNATURE_HEADER, header.to_owned())],
        })
    }
}

/// Universign in the provider registry.
pub struct Universign;

impl Verify for Verifier {
    fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        Verifier::verify(self, request)
    }
}

impl Provider for Universign {
    fn name(&self) -> &'static str {
        "universign"
    }

    fn state_path(&self, process_key: &str) -> Option<String> {
        Some(crate::Reconcile::process_path(
            &UniversignReconcile,
            process_key,
        ))
    }

    /// `GET /v1/transactions/{id}`'s `state`: completed or archived → completed; cancelled →
    /// canceled; expired → expired; draft or started → created.
    fn api_state(
        &self,
        status: u16,
        body: &[u8],
        _now: i64,
    ) -> Result<Option<ProcessStatus>, String> {
        if status != 200 {
            return Ok(None);
        }
        let transaction: TransactionState = serde_json::from_slice(body)
            .map_err(|e| format!("GET /v1/transactions: not a transaction ({e})"))?;
        Ok(match transaction.state.as_deref() {
            Some("completed" | "archived") => Some(ProcessStatus::Completed),
            Some("cancelled") => Some(ProcessStatus::Canceled),
            Some("expired") => Some(ProcessStatus::Expired),
            Some("draft" | "started") => Some(ProcessStatus::Created),
            _ => None,
        })
    }

    fn settings(&self) -> &'static [Setting] {
        &[
            Setting::Jwks,
            Setting::MaxSignatureAge,
            Setting::Api,
            Setting::Reconcile,
        ]
    }

    fn verifier(&self, source: &SourceConfig) -> Result<Box<dyn Verify>, String> {
        Ok(Box::new(Verifier::from_config(source)?))
    }

    fn parse(&self, body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
        parse(body)
    }

    /// Universign's API key as a bearer token.
    fn api_authorization(&self, credentials: &[u8]) -> Option<String> {
        Some(format!(
            "Bearer {}",
            String::from_utf8_lossy(credentials).trim()
        ))
    }

    fn listed_documents(&self, listing: &[u8]) -> Result<Vec<Document>, String> {
        listed_documents(listing)
    }

    fn reconcile(&self) -> Option<&'static dyn crate::Reconcile> {
        Some(&UniversignReconcile)
    }

    fn sample(&self, source: &SourceConfig, private_key: Option<&str>) -> Result<Sample, String> {
        let key = private_key.ok_or_else(|| crate::support::needs_private_key(source))?;
        let jwks = source
            .jwks
            .as_ref()
            .ok_or_else(|| format!("source {} names no jwks", source.name))?;
        let kid = load_jwks(jwks)?
            .into_iter()
            .find_map(|(kid, _)| kid)
            .unwrap_or_default();
        let transaction = format!("tx_{}", crate::support::sample_id());
        let created_at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let body = serde_json::to_vec(&serde_json::json!({
            "object": "event",
            "id": format!("evt_{}", crate::support::sample_id()),
            "type": "transaction.lifecycle.completed",
            "createdAt": created_at,
            "payload": {"object": {"object": "transaction", "id": transaction}},
        }))
        .expect("JSON");
        let signature = sign_detached(key, &kid, "PS256", &body)?;
        Ok(Sample {
            path_token: None,
            query: None,
            body,
            content_type: "application/json",
            headers: vec![(SIGNATURE_HEADER, signature)],
            process_key: transaction,
        })
    }
}

#[derive(Deserialize)]
struct ListedTransaction {
    id: String,
    /// `archived` once Universign moved the transaction to its archives (60 days after
    /// completion): its documents are then served from `/v1/archives/…`.
    state: Option<String>,
    #[serde(default)]
    documents: Vec<ListedDocument>,
}

#[derive(Deserialize)]
struct ListedDocument {
    id: String,
    name: Option<String>,
}

/// The signed documents of a transaction (`GET /v1/transactions/{id}`), each downloaded from
/// `/v1/transactions/{id}/archive/documents/{document_id}/download` — or, for a transaction in
/// state `archived` (more than 60 days after completion), from
/// `/v1/archives/{id}/documents/{document_id}/download`.
pub fn listed_documents(listing: &[u8]) -> Result<Vec<Document>, String> {
    let transaction: ListedTransaction = serde_json::from_slice(listing)
        .map_err(|e| format!("not a Universign transaction: {e}"))?;
    Ok(transaction
        .documents
        .into_iter()
        .filter(|d| !d.id.is_empty())
        .map(|d| {
            let mut document = Document::new(DocumentKind::Signed);
            document.content_type = Some("application/pdf".to_owned());
            document.file_name = crate::support::pdf_name(d.name);
            let (transaction_id, document_id) = (
                crate::support::path_segment(&transaction.id),
                crate::support::path_segment(&d.id),
            );
            document.fetch = Some(if transaction.state.as_deref() == Some("archived") {
                format!("/v1/archives/{transaction_id}/documents/{document_id}/download")
            } else {
                format!(
                    "/v1/transactions/{transaction_id}/archive/documents/{document_id}/download"
                )
            });
            document.reference_id = Some(d.id);
            document
        })
        .collect())
}

/// Universign's reconciliation: each transaction not in a final state is asked about (`GET
/// /v1/transactions/{id}`); one that the API says is completed, cancelled or expired while the
/// archive lacks that entry becomes the lifecycle event Universign would have sent (and a
/// completed one's signed documents are then downloaded like a real one's). Universign's event
/// listing is not used (its API form is not confirmed here): transactions never seen are not
/// discovered.
pub struct UniversignReconcile;

#[derive(Deserialize)]
struct TransactionState {
    id: String,
    state: Option<String>,
}

impl crate::Reconcile for UniversignReconcile {
    fn process_path(&self, process_key: &str) -> String {
        format!(
            "/v1/transactions/{}",
            crate::support::path_segment(process_key)
        )
    }

    fn discovery_path(
        &self,
        _scope: Option<&str>,
        _from: DateTime<Utc>,
        _to: DateTime<Utc>,
    ) -> Option<String> {
        None
    }

    fn processes(&self, answer: &[u8]) -> Result<Vec<String>, String> {
        let transaction: TransactionState = serde_json::from_slice(answer)
            .map_err(|e| format!("not a Universign transaction: {e}"))?;
        Ok(vec![transaction.id])
    }

    fn gaps(
        &self,
        answer: &[u8],
        known: &std::collections::HashMap<String, std::collections::HashSet<String>>,
    ) -> Result<Vec<crate::Gap>, String> {
        let transaction: TransactionState = serde_json::from_slice(answer)
            .map_err(|e| format!("not a Universign transaction: {e}"))?;
        let (stage, entry) = match transaction.state.as_deref() {
            Some("completed" | "archived") => ("completed", "Completed"),
            Some("cancelled") => ("cancelled", "Canceled"),
            Some("expired") => ("expired", "Expired"),
            _ => return Ok(Vec::new()),
        };
        if transaction.id.is_empty()
            || known
                .get(&transaction.id)
                .is_some_and(|keys| keys.contains(entry))
        {
            return Ok(Vec::new());
        }
        // Deterministic: the same gap is the same bytes (no time of our own).
        let body = serde_json::to_vec(&serde_json::json!({
            "object": "event",
            "id": format!("reconcile:{}:{stage}", transaction.id),
            "type": format!("transaction.lifecycle.{stage}"),
            "payload": {"object": {"object": "transaction", "id": transaction.id}},
        }))
        .map_err(|e| e.to_string())?;
        Ok(vec![crate::Gap {
            unknown_process: !known.contains_key(&transaction.id),
            process_key: transaction.id,
            missing: vec![entry.to_owned()],
            body,
            event_type: "transaction.lifecycle",
        }])
    }
}

/// A detached JWS over `body` with an RSA private key (PKCS#8 PEM), as Universign sends it; for
/// tests and tools. `alg` is `RS256` or `PS256`.
pub fn sign_detached(
    private_key_pem: &str,
    kid: &str,
    alg: &str,
    body: &[u8],
) -> Result<String, String> {
    sign_detached_with(
        private_key_pem,
        &serde_json::json!({ "alg": alg, "kid": kid }),
        body,
    )
}

/// A detached JWS over `body` with the protected header given as it is (its `alg`, and
/// `"b64": false` for an unencoded payload); for tests of header handling.
pub fn sign_detached_with(
    private_key_pem: &str,
    header: &serde_json::Value,
    body: &[u8],
) -> Result<String, String> {
    use rsa::pkcs8::DecodePrivateKey as _;
    use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _, Signer as _};
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(private_key_pem).map_err(|e| e.to_string())?;
    let protected = BASE64URL.encode(header.to_string());
    let mut input = format!("{protected}.").into_bytes();
    if header["b64"] == serde_json::Value::Bool(false) {
        input.extend_from_slice(body);
    } else {
        input.extend_from_slice(BASE64URL.encode(body).as_bytes());
    }
    let signature = match header["alg"].as_str().unwrap_or_default() {
        "RS256" => rsa::pkcs1v15::SigningKey::<Sha256>::new(key)
            .sign(&input)
            .to_vec(),
        "PS256" => rsa::pss::BlindedSigningKey::<Sha256>::new(key)
            .sign_with_rng(&mut rsa::rand_core::OsRng, &input)
            .to_vec(),
        other => return Err(format!("unsupported alg {other}")),
    };
    Ok(format!("{protected}..{}", BASE64URL.encode(signature)))
}

/// The JWKS of a public key, as Universign publishes its own.
pub fn jwks_of(private_key_pem: &str, kid: &str) -> Result<serde_json::Value, String> {
    use rsa::pkcs8::DecodePrivateKey as _;
    use rsa::traits::PublicKeyParts as _;
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(private_key_pem).map_err(|e| e.to_string())?;
    Ok(serde_json::json!({ "keys": [{
        "kty": "RSA", "use": "sig", "kid": kid, "alg": "PS256",
        "n": BASE64URL.encode(key.n().to_bytes_be()),
        "e": BASE64URL.encode(key.e().to_bytes_be()),
    }]}))
}

/// Parses a Universign event into the normalized model.
pub fn parse(body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
    if !is_json_object(body) {
        return Err(ParseError(
            "not a Universign event: JSON object expected".to_owned(),
        ));
    }
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| ParseError(format!("not a Universign event: {e}")))?;
    let event_type = envelope
        .event_type
        .ok_or_else(|| ParseError("Universign event without type".to_owned()))?;
    let occurred_at = envelope.created_at.as_ref().and_then(created_at);
    let object = envelope
        .payload
        .as_ref()
        .and_then(|p| p.get("object"))
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    if let Some(stage) = event_type.strip_prefix("transaction.lifecycle.") {
        return lifecycle_event(&event_type, stage, &object, occurred_at).map(|e| vec![e]);
    }
    if let Some(stage) = event_type.strip_prefix("action.") {
        return Ok(action_event(stage, &object, occurred_at)
            .into_iter()
            .collect());
    }
    // apikey.*, registration.*, identity-validation.*, transaction.chat.*: archived only.
    Ok(Vec::new())
}

/// A non-empty string value.
fn text_of(value: Option<&serde_json::Value>) -> Option<String> {
    value
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// `transaction.lifecycle.<stage>`: the transaction's state, one activity entry, and on
/// completion the transaction's signed documents to list.
fn lifecycle_event(
    event_type: &str,
    stage: &str,
    object: &serde_json::Value,
    occurred_at: Option<DateTime<Utc>>,
) -> Result<SigningEvent, ParseError> {
    let process_key = text_of(object.get("id"))
        .ok_or_else(|| ParseError(format!("{event_type} without payload.object.id")))?;
    let (status, word) = match stage {
        "created" => (Some(ProcessStatus::Created), "Created"),
        "started" => (Some(ProcessStatus::Created), "Started"),
        "paused" => (None, "Paused"),
        "cancelled" => (Some(ProcessStatus::Canceled), "Canceled"),
        "expired" => (Some(ProcessStatus::Expired), "Expired"),
        "completed" => (Some(ProcessStatus::Completed), "Completed"),
        _ => (None, "Changed"),
    };
    let entry = ActivityEntry {
        key: if status.is_some() {
            word.to_owned()
        } else {
            format!("{word}:{}", occurred_at.map_or(0, |t| t.timestamp()))
        },
        signee_key: None,
        status: word.to_owned(),
        description: format!(
            "Transaction {}. Transaction: {process_key}.",
            word.to_lowercase()
        ),
        file_name: None,
        created_at: occurred_at,
        created_by: "Universign".to_owned(),
    };
    let mut completed = event(process_key, status, occurred_at, Vec::new(), vec![entry]);
    if stage == "completed" {
        // "All signed documents are ready to be retrieved": the transaction lists them.
        let mut signed = Document::new(DocumentKind::Signed);
        signed.reference_id = Some(completed.process_key.clone());
        signed.description = Some("the transaction's signed documents".to_owned());
        signed.fetch_listing = Some(format!(
            "/v1/transactions/{}",
            crate::support::path_segment(&completed.process_key)
        ));
        completed.documents.push(signed);
    }
    Ok(completed)
}

/// `action.<stage>`: one participant's action, as an activity entry and the participant; `None`
/// without a transaction to attach it to.
fn action_event(
    stage: &str,
    object: &serde_json::Value,
    occurred_at: Option<DateTime<Utc>>,
) -> Option<SigningEvent> {
    let transaction = text_of(object.get("transaction_id"))
        .or_else(|| text_of(object.get("transaction")))
        .or_else(|| text_of(object.get("transaction").and_then(|t| t.get("id"))));
    let Some(process_key) = transaction else {
        // No transaction to attach it to: archived, not projected.
        return None;
    };
    let signee_key = text_of(object.get("participant_id"))
        .or_else(|| text_of(object.get("participant").and_then(|p| p.get("id"))))
        .or_else(|| text_of(object.get("participant")))
        .or_else(|| text_of(object.get("id")))
        .unwrap_or_else(|| "unknown".to_owned());
    let email = text_of(object.get("email"))
        .or_else(|| text_of(object.get("participant").and_then(|p| p.get("email"))));
    let word: String = stage
        .split('.')
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
        })
        .collect();
    let status = format!("Action{word}");
    let mut description = format!(
        "Participant {signee_key}: action {}.",
        stage.replace('.', " ")
    );
    if let Some(reason) =
        text_of(object.get("reason")).or_else(|| text_of(object.get("stall_reason")))
    {
        description.push_str(&format!(" Reason: {reason}."));
    }
    let entry = ActivityEntry {
        key: format!(
            "{status}:{signee_key}:{}",
            occurred_at.map_or(0, |t| t.timestamp())
        ),
        signee_key: Some(signee_key.clone()),
        status,
        description,
        file_name: None,
        created_at: occurred_at,
        created_by: "Universign".to_owned(),
    };
    let signee = Signee {
        key: signee_key,
        email,
        ..Signee::default()
    };
    Some(event(
        process_key,
        None,
        occurred_at,
        vec![signee],
        vec![entry],
    ))
}

fn event(
    process_key: String,
    status: Option<ProcessStatus>,
    occurred_at: Option<DateTime<Utc>>,
    signees: Vec<Signee>,
    activity: Vec<ActivityEntry>,
) -> SigningEvent {
    SigningEvent {
        process_key,
        status,
        occurred_at,
        flow_key: None,
        flow_name: None,
        company_key: None,
        signees,
        documents: Vec::new(),
        activity,
        metadata: serde_json::Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Headers;
    use serde_json::json;
    use std::time::UNIX_EPOCH;

    /// An RSA key made for this test run by `openssl` (fast, unlike key generation in a debug build).
    fn test_key() -> String {
        let output = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .expect("openssl generates a key");
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap()
    }

    struct One<'a>(&'a str);

    impl Headers for One<'_> {
        fn get(&self, name: &str) -> Option<&[u8]> {
            (name == SIGNATURE_HEADER).then_some(self.0.as_bytes())
        }
    }

    fn verifier(pem: &str, kid: &str) -> (Verifier, tempfile_path::Guard) {
        let guard =
            tempfile_path::Guard::new(&serde_json::to_string(&jwks_of(pem, kid).unwrap()).unwrap());
        let source = SourceConfig {
            name: "fr".into(),
            provider: "universign".into(),
            secrets: Vec::new(),
            max_body_bytes: None,
            max_signature_age: None,
            jwks: Some(guard.0.clone()),
            certificate: None,
            allow_ips: Vec::new(),
            api: None,
            reconcile: crate::settings::ReconcileConfig::default(),
        };
        (Verifier::from_config(&source).expect("loads"), guard)
    }

    mod tempfile_path {
        pub struct Guard(pub std::path::PathBuf);
        impl Guard {
            pub fn new(content: &str) -> Self {
                let path = std::env::temp_dir().join(format!(
                    "jwks-{}-{}.json",
                    std::process::id(),
                    rand_suffix()
                ));
                std::fs::write(&path, content).unwrap();
                Self(path)
            }
        }
        fn rand_suffix() -> u128 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        }
        impl Drop for Guard {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    fn event(created_at: u64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "object": "event", "id": "evt_1", "type": "transaction.lifecycle.completed", "createdAt": created_at,
            "payload": { "object": { "object": "transaction", "id": "tx_42", "state": "completed" } }
        }))
        .unwrap()
    }

    fn now_secs() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn check(v: &Verifier, body: &[u8], header: &str) -> Result<Verified, Rejection> {
        v.verify(&Request {
            body,
            headers: &One(header),
            received_at: SystemTime::now(),
            path_token: None,
            query: None,
        })
    }

    #[test]
    fn detached_jws_verifies_and_tampering_fails() {
        let pem = test_key();
        let (v, _jwks) = verifier(&pem, "k1");
        let body = event(now_secs());
        for alg in ["PS256", "RS256"] {
            let header = sign_detached(&pem, "k1", alg, &body).unwrap();
            let ok = check(&v, &body, &header).unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(ok.event_id.as_deref(), Some("evt_1"));
            assert_eq!(ok.event_type, "transaction.lifecycle.completed");
            assert_eq!(ok.key_label, "kid:k1");
            assert_eq!(
                ok.signature_headers,
                vec![(SIGNATURE_HEADER, header.clone())]
            );

            let mut altered = body.clone();
            let at = altered.iter().position(|&b| b == b'4').unwrap();
            altered[at] = b'5';
            assert_eq!(
                check(&v, &altered, &header).unwrap_err(),
                Rejection::BadSignature,
                "{alg}: body"
            );

            let (protected, signature) = header.split_once("..").unwrap();
            let mut raw = BASE64URL.decode(signature).unwrap();
            raw[10] ^= 1;
            let flipped = format!("{protected}..{}", BASE64URL.encode(raw));
            assert_eq!(
                check(&v, &body, &flipped).unwrap_err(),
                Rejection::BadSignature,
                "{alg}: signature bit"
            );
        }
        assert_eq!(check(&v, &body, "").unwrap_err(), Rejection::BadSignature);
        assert_eq!(
            v.verify(&Request {
                body: &body,
                headers: &crate::NoHeaders,
                received_at: SystemTime::now(),
                path_token: None,
                query: None,
            })
            .unwrap_err(),
            Rejection::Unsigned
        );
    }

    #[test]
    fn wrong_kid_and_foreign_key_fail() {
        let pem = test_key();
        let other = test_key();
        let (v, _jwks) = verifier(&pem, "k1");
        let body = event(now_secs());
        let header = sign_detached(&pem, "k2", "PS256", &body).unwrap();
        assert_eq!(
            check(&v, &body, &header).unwrap_err(),
            Rejection::BadSignature,
            "unknown kid"
        );
        let header = sign_detached(&other, "k1", "PS256", &body).unwrap();
        assert_eq!(
            check(&v, &body, &header).unwrap_err(),
            Rejection::BadSignature,
            "another key under the known kid"
        );
    }

    #[test]
    fn stale_created_at_fails() {
        let pem = test_key();
        let (v, _jwks) = verifier(&pem, "k1");
        let old = event(now_secs() - 97 * 3600);
        let header = sign_detached(&pem, "k1", "PS256", &old).unwrap();
        assert_eq!(check(&v, &old, &header).unwrap_err(), Rejection::Stale);
        let recent = event(now_secs() - 95 * 3600);
        let header = sign_detached(&pem, "k1", "PS256", &recent).unwrap();
        check(&v, &recent, &header).expect("within 96 h");
    }

    #[test]
    fn lifecycle_and_action_events_are_normalized() {
        let completed = parse(&event(1_700_000_000)).unwrap().remove(0);
        assert_eq!(completed.process_key, "tx_42");
        assert_eq!(completed.status, Some(ProcessStatus::Completed));
        assert_eq!(completed.activity[0].status, "Completed");

        let closed = serde_json::json!({
            "object": "event", "id": "evt_2", "type": "action.closed", "createdAt": 1_700_000_100,
            "payload": { "object": { "object": "action", "id": "act_7", "transaction_id": "tx_42", "participant_id": "pt_9", "email": "a@example.com" } }
        });
        let closed = parse(&serde_json::to_vec(&closed).unwrap())
            .unwrap()
            .remove(0);
        assert_eq!(closed.process_key, "tx_42");
        assert_eq!(closed.status, None);
        assert_eq!(closed.activity[0].status, "ActionClosed");
        assert_eq!(closed.activity[0].signee_key.as_deref(), Some("pt_9"));
        assert_eq!(closed.signees[0].email.as_deref(), Some("a@example.com"));

        let other = serde_json::json!({ "object": "event", "id": "evt_3", "type": "apikey.created", "createdAt": 1, "payload": {} });
        assert!(
            parse(&serde_json::to_vec(&other).unwrap())
                .unwrap()
                .is_empty(),
            "archived, not projected"
        );
        assert!(parse(b"nope").is_err());
    }

    #[test]
    fn a_jwks_without_rsa_keys_is_a_config_error() {
        let guard =
            tempfile_path::Guard::new(r#"{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b"}]}"#);
        let error = load_jwks(&guard.0).unwrap_err();
        assert!(error.contains("no RSA signing key"), "{error}");
    }

    /// Issue 12: `crit` was not enforced (`crit: ["exp"]` accepted, `b64: false` accepted without
    /// `crit`). RFC 7515 §4.1.11 and RFC 7797 §6 now hold.
    #[test]
    fn critical_header_parameters_are_enforced() {
        let pem = test_key();
        let (v, _jwks) = verifier(&pem, "k1");
        let body = event(now_secs());
        let verdict = |header: serde_json::Value| {
            let signature = sign_detached_with(&pem, &header, &body).unwrap();
            check(&v, &body, &signature).map(|_| ())
        };

        assert_eq!(verdict(json!({"alg": "PS256", "kid": "k1"})), Ok(()));
        assert_eq!(
            verdict(json!({"alg": "PS256", "kid": "k1", "b64": false, "crit": ["b64"]})),
            Ok(()),
            "RFC 7797 unencoded payload, declared critical"
        );
        for refused in [
            json!({"alg": "PS256", "kid": "k1", "crit": ["exp"], "exp": 1}),
            json!({"alg": "PS256", "kid": "k1", "b64": false}),
            json!({"alg": "PS256", "kid": "k1", "b64": true}),
            json!({"alg": "PS256", "kid": "k1", "crit": []}),
            json!({"alg": "PS256", "kid": "k1", "crit": ["b64"]}),
            json!({"alg": "PS256", "kid": "k1", "b64": false, "crit": ["b64", "exp"]}),
            json!({"alg": "PS256", "kid": "k1", "crit": "b64", "b64": false}),
        ] {
            assert_eq!(
                verdict(refused.clone()),
                Err(Rejection::BadSignature),
                "{refused}"
            );
        }
    }

    /// Issue 12: a signed `createdAt` of u64::MAX panicked the request ("overflow when adding
    /// duration to instant"). Every time computed from a body is checked now.
    #[test]
    fn a_created_at_at_the_end_of_time_is_refused_without_a_panic() {
        let pem = test_key();
        let (v, _jwks) = verifier(&pem, "k1");
        for created_at in [u64::MAX, u64::MAX / 2, i64::MAX as u64] {
            let body = event(created_at);
            let signature = sign_detached(&pem, "k1", "PS256", &body).unwrap();
            assert!(check(&v, &body, &signature).is_err(), "{created_at}");
            assert!(parse(&body).is_ok(), "parsed without a time: {created_at}");
        }
    }

    /// Issue 12: serde reads a struct from a JSON array, so a signed `["evt_1", "type", ...]`
    /// was an event. Only an object is.
    #[test]
    fn a_signed_json_array_is_not_an_event() {
        let pem = test_key();
        let (v, _jwks) = verifier(&pem, "k1");
        let body = serde_json::to_vec(&serde_json::json!([
            "evt_1", "transaction.lifecycle.completed", now_secs(), {"object": {"id": "tx"}}
        ]))
        .unwrap();
        let signature = sign_detached(&pem, "k1", "PS256", &body).unwrap();
        assert_eq!(
            check(&v, &body, &signature).unwrap_err().status(),
            400,
            "refused, not parked later"
        );
        assert!(parse(&body).is_err());
    }

    #[test]
    fn a_completed_transaction_lists_its_signed_documents_for_the_worker() {
        let body = json!({"object": "event", "id": "evt_9", "type": "transaction.lifecycle.completed",
            "createdAt": 1_790_000_000, "payload": {"object": {"object": "transaction", "id": "tx_DwYGle91EQZA"}}});
        let events = parse(&serde_json::to_vec(&body).unwrap()).unwrap();
        let placeholder = &events[0].documents[0];
        assert_eq!(placeholder.kind, DocumentKind::Signed);
        assert_eq!(
            placeholder.fetch_listing.as_deref(),
            Some("/v1/transactions/tx_DwYGle91EQZA")
        );
        let listing = br#"{"object":"transaction","id":"tx_DwYGle91EQZA","state":"completed","documents":[{"object":"document","id":"doc_6Amd","name":"Contract"},{"object":"document","id":"doc_7Bne","name":"Annex.pdf"}]}"#;
        let documents = listed_documents(listing).unwrap();
        assert_eq!(documents.len(), 2);
        assert_eq!(
            documents[0].fetch.as_deref(),
            Some("/v1/transactions/tx_DwYGle91EQZA/archive/documents/doc_6Amd/download")
        );
        assert_eq!(documents[0].file_name.as_deref(), Some("Contract.pdf"));
        assert_eq!(documents[1].file_name.as_deref(), Some("Annex.pdf"));
        // Archived (more than 60 days after completion): served from the archives.
        let archived = String::from_utf8(listing.to_vec())
            .unwrap()
            .replace("\"completed\"", "\"archived\"");
        assert_eq!(
            listed_documents(archived.as_bytes()).unwrap()[0]
                .fetch
                .as_deref(),
            Some("/v1/archives/tx_DwYGle91EQZA/documents/doc_6Amd/download")
        );
        assert!(listed_documents(b"[]").is_err());
        let started = json!({"object": "event", "id": "evt_8", "type": "transaction.lifecycle.started",
            "createdAt": 1_790_000_000, "payload": {"object": {"id": "tx_1"}}});
        assert!(
            parse(&serde_json::to_vec(&started).unwrap()).unwrap()[0]
                .documents
                .is_empty()
        );
    }

    #[test]
    fn reconciliation_turns_a_final_state_the_archive_lacks_into_its_lifecycle_event() {
        use crate::Reconcile;
        let reconcile = UniversignReconcile;
        assert_eq!(reconcile.process_path("tx_1"), "/v1/transactions/tx_1");
        let completed =
            br#"{"object":"transaction","id":"tx_1","state":"completed","documents":[]}"#;
        let known = std::collections::HashMap::from([(
            "tx_1".to_owned(),
            std::collections::HashSet::from(["Started".to_owned()]),
        )]);
        let gaps = reconcile.gaps(completed, &known).unwrap();
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].missing, ["Completed"]);
        assert_eq!(
            gaps,
            reconcile.gaps(completed, &known).unwrap(),
            "the same bytes"
        );
        let events = parse(&gaps[0].body).expect("the event parser reads it");
        assert_eq!(events[0].status, Some(ProcessStatus::Completed));
        assert!(events[0].documents[0].fetch_listing.is_some());
        let done = std::collections::HashMap::from([(
            "tx_1".to_owned(),
            std::collections::HashSet::from(["Completed".to_owned()]),
        )]);
        assert!(reconcile.gaps(completed, &done).unwrap().is_empty());
        for (state, entry) in [("cancelled", "Canceled"), ("expired", "Expired")] {
            let answer = format!(r#"{{"id":"tx_1","state":"{state}"}}"#);
            assert_eq!(
                reconcile.gaps(answer.as_bytes(), &known).unwrap()[0].missing,
                [entry]
            );
        }
        let started = br#"{"id":"tx_1","state":"started"}"#;
        assert!(reconcile.gaps(started, &known).unwrap().is_empty());
        assert!(
            reconcile
                .discovery_path(None, chrono::Utc::now(), chrono::Utc::now())
                .is_none()
        );
    }

    #[test]
    fn the_transactions_state_is_its_state() {
        let transaction =
            serde_json::json!({"object": "transaction", "id": "tx_1", "documents": []});
        crate::testing::assert_api_states_in(
            &Universign,
            &transaction,
            "state",
            &[
                ("completed".into(), Some(ProcessStatus::Completed)),
                ("archived".into(), Some(ProcessStatus::Completed)),
                ("cancelled".into(), Some(ProcessStatus::Canceled)),
                ("expired".into(), Some(ProcessStatus::Expired)),
                ("started".into(), Some(ProcessStatus::Created)),
                ("draft".into(), Some(ProcessStatus::Created)),
                ("closed".into(), None),
            ],
        );
        assert_eq!(
            Universign.state_path("tx_1").as_deref(),
            Some("/v1/transactions/tx_1")
        );
        assert_eq!(Universign.api_state(503, b"", 0), Ok(None));
    }
}
