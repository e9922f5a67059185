//! Dropbox Sign (formerly HelloSign): `provider = "dropbox_sign"`.
//!
//! What the provider signs, what this module verifies and relies on, the provider's API as the
//! worker uses it, and where each fact comes from: `docs/providers/dropbox_sign.md` (one page per provider).

use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use hmac::Mac;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::event::{
    ActivityEntry, Document, DocumentKind, ParseError, ProcessStatus, Signee, SigningEvent,
};
use crate::settings::{Secret, Setting, SourceConfig};
use crate::support::{
    check_freshness, decode_hex, gap_of, hex, hmac_sha256, json_id, matching_secret,
    max_signature_age, path_segment, unix_seconds,
};
use crate::{Headers, Provider, Rejection, Reply, Request, Sample, SignatureUse, Verified, Verify};

/// The body Dropbox Sign requires in the reply.
pub const HELLO: &str = "Hello API Event Received";
/// How old `event_time` may be unless the source says otherwise: Dropbox Sign retries for about
/// three days with the original event.
pub const DEFAULT_MAX_SIGNATURE_AGE: Duration = Duration::from_secs(96 * 3600);
/// The body limit unless the source sets one: callbacks carry no files (they are fetched by
/// URL), and what the hash does not cover should not be large.
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// The test event of the account's callback settings.
pub const CALLBACK_TEST: &str = "callback_test";

/// The multipart boundary of samples.
const SAMPLE_BOUNDARY: &str = "countersign-sample-boundary";
const SAMPLE_CONTENT_TYPE: &str = "multipart/form-data; boundary=countersign-sample-boundary";

/// Dropbox Sign in the provider registry.
pub struct DropboxSign;

/// Verifies Dropbox Sign callbacks for one source.
pub struct Verifier {
    secrets: Vec<Secret>,
    max_age: Duration,
    signers: SignerMemory,
}

/// Requests and signers remembered per source for `SignerMemory`, oldest forgotten first.
pub const SIGNER_MEMORY_ENTRIES: usize = 100_000;

/// What one captured hash may mint: for each signature request it names, at most as many
/// signers as that request had in the first content seen under the hash. Genuine simultaneous
/// events (several signers of one request signing in the same second share a hash) pass; a
/// captured hash re-sent with other signers of the same request does not, past that count.
struct SignerMemory {
    inner: std::sync::Mutex<SignerEntries>,
}

#[derive(Default)]
struct SignerEntries {
    /// Digest of `hash:request` → (signers the first content listed, signers seen).
    by_key: std::collections::HashMap<[u8; 32], (usize, Vec<[u8; 32]>)>,
    order: std::collections::VecDeque<([u8; 32], std::time::SystemTime)>,
}

impl SignerMemory {
    fn new() -> Self {
        Self {
            inner: std::sync::Mutex::default(),
        }
    }

    /// Whether `signer` may be one more signer under `key` (remembered until `keep_until`).
    fn admit(
        &self,
        key: [u8; 32],
        signer: [u8; 32],
        signers_listed: usize,
        keep_until: std::time::SystemTime,
        now: std::time::SystemTime,
    ) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((front, until)) = inner.order.front().copied() {
            if until > now && inner.order.len() < SIGNER_MEMORY_ENTRIES {
                break;
            }
            inner.order.pop_front();
            inner.by_key.remove(&front);
        }
        if let Some((cap, seen)) = inner.by_key.get_mut(&key) {
            if seen.contains(&signer) {
                return true;
            }
            if seen.len() >= *cap {
                return false;
            }
            seen.push(signer);
            return true;
        }
        inner
            .by_key
            .insert(key, (signers_listed.max(1), vec![signer]));
        inner.order.push_back((key, keep_until));
        true
    }
}

/// `200 text/plain Hello API Event Received`.
pub fn hello() -> Reply {
    Reply {
        status: 200,
        content_type: "text/plain",
        body: Cow::Borrowed(HELLO),
        headers: Vec::new(),
    }
}

/// The longest multipart boundary RFC 2046 allows.
const MAX_BOUNDARY: usize = 70;

/// The event's JSON: the `json` field of a multipart or URL-encoded form, or the body itself
/// when it is a JSON object. `None` when there is no such field, or more than one.
pub fn event_json(body: &[u8]) -> Option<Cow<'_, [u8]>> {
    let start = body
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))?;
    if body[start] == b'{' {
        return Some(Cow::Borrowed(body));
    }
    if body.starts_with(b"--") {
        return multipart_field(body, b"json").map(Cow::Borrowed);
    }
    let mut found = None;
    for (name, value) in form_urlencoded::parse(body) {
        if name == "json" {
            if found.is_some() {
                return None;
            }
            found = Some(value.into_owned().into_bytes());
        }
    }
    found.map(Cow::Owned)
}

/// The content of the one part named `name` of a multipart body whose first line is its
/// delimiter (`--<boundary>`).
fn multipart_field<'a>(body: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let line_end = body.iter().position(|&b| b == b'\n')?;
    let first = body[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&body[..line_end]);
    if first.len() < 3 || first.len() > 2 + MAX_BOUNDARY {
        return None;
    }
    let mut delimiter = b"\r\n".to_vec();
    delimiter.extend_from_slice(first);
    let mut rest = &body[line_end + 1..];
    let mut found = None;
    loop {
        // A part: its headers, a blank line, its content up to the next delimiter.
        let at = find(rest, &delimiter)?;
        let part = &rest[..at];
        let (headers, content) = match find(part, b"\r\n\r\n") {
            Some(i) => (&part[..i], &part[i + 4..]),
            None => return None,
        };
        if names_field(headers, name) {
            if found.is_some() {
                return None;
            }
            found = Some(content);
        }
        rest = &rest[at + delimiter.len()..];
        if rest.starts_with(b"--") {
            return found;
        }
        rest = rest.strip_prefix(b"\r\n")?;
    }
}

/// Whether part headers say `Content-Disposition: form-data; name="<name>"`.
fn names_field(headers: &[u8], name: &[u8]) -> bool {
    headers.split(|&b| b == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false;
        };
        if !line[..colon].eq_ignore_ascii_case(b"content-disposition") {
            return false;
        }
        line[colon + 1..].split(|&b| b == b';').any(|param| {
            let param = param.trim_ascii();
            param.strip_prefix(b"name=").map(|v| {
                v.strip_prefix(b"\"")
                    .and_then(|v| v.strip_suffix(b"\""))
                    .unwrap_or(v)
            }) == Some(name)
        })
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[derive(Deserialize)]
struct Callback {
    event: Option<Event>,
    signature_request: Option<SignatureRequest>,
    account_guid: Option<String>,
    template: Option<Template>,
}

#[derive(Deserialize)]
struct Event {
    event_time: Option<serde_json::Value>,
    event_type: Option<String>,
    event_hash: Option<String>,
    event_metadata: Option<EventMetadata>,
}

#[derive(Deserialize)]
struct EventMetadata {
    related_signature_id: Option<String>,
    reported_for_account_id: Option<String>,
}

#[derive(Deserialize)]
struct SignatureRequest {
    /// A test-mode request: not legally binding.
    test_mode: Option<bool>,
    signature_request_id: Option<String>,
    title: Option<String>,
    is_declined: Option<bool>,
    metadata: Option<serde_json::Value>,
    files_url: Option<String>,
    #[serde(default)]
    signatures: Vec<Signature>,
}

#[derive(Deserialize)]
struct Signature {
    signature_id: Option<String>,
    signer_email_address: Option<String>,
    signer_name: Option<String>,
    status_code: Option<String>,
    signed_at: Option<i64>,
}

#[derive(Deserialize)]
struct Template {
    template_id: Option<String>,
}

fn callback(body: &[u8]) -> Option<Callback> {
    callback_of(&event_json(body)?)
}

/// The callback in an event's JSON (already out of its form).
fn callback_of(json: &[u8]) -> Option<Callback> {
    if !crate::support::is_json_object(json) {
        return None;
    }
    serde_json::from_slice(json).ok()
}

/// What identifies an event: its signed part and what it is about.
struct Identity {
    time: String,
    event_type: String,
    hash: String,
    subject: String,
    related: String,
}

impl Identity {
    fn of(callback: &Callback) -> Option<Self> {
        let event = callback.event.as_ref()?;
        let metadata = event.event_metadata.as_ref();
        let subject = callback
            .signature_request
            .as_ref()
            .and_then(|r| r.signature_request_id.clone())
            .or_else(|| {
                callback
                    .template
                    .as_ref()
                    .and_then(|t| t.template_id.clone())
            })
            .or_else(|| metadata.and_then(|m| m.reported_for_account_id.clone()))
            .or_else(|| callback.account_guid.clone())
            .unwrap_or_else(|| "-".to_owned());
        Some(Self {
            time: event.event_time.as_ref().and_then(json_id)?,
            event_type: event.event_type.clone().filter(|t| !t.is_empty())?,
            hash: event.event_hash.clone()?,
            subject,
            related: metadata
                .and_then(|m| m.related_signature_id.clone())
                .unwrap_or_else(|| "-".to_owned()),
        })
    }

    fn event_id(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.time, self.event_type, self.subject, self.related
        )
    }

    /// The signature's use: the hash, and the request and signer it speaks of.
    fn signature_id(&self) -> String {
        format!(
            "{}:{}:{}",
            self.hash.to_ascii_lowercase(),
            self.subject,
            self.related
        )
    }
}

impl Verifier {
    pub fn from_config(source: &SourceConfig) -> Result<Self, String> {
        Ok(Self {
            secrets: crate::support::required_secrets(source, "the account's API key")?,
            max_age: max_signature_age(source, DEFAULT_MAX_SIGNATURE_AGE)?,
            signers: SignerMemory::new(),
        })
    }
}

/// The `boundary` parameter of a `multipart/form-data` content type (quoted or not).
fn content_type_boundary(content_type: &str) -> Option<&str> {
    let mut params = content_type.split(';');
    let kind = params.next()?.trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|param| {
        let (name, value) = param.trim().split_once('=')?;
        name.trim().eq_ignore_ascii_case("boundary").then(|| {
            let value = value.trim();
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value)
        })
    })
}

/// A multipart body is read by the boundary its `Content-Type` declares (RFC 7578), and this
/// reader (the ingester's and the worker's alike) takes the body's first line as the delimiter:
/// the two must be the same, or another parser would read another `json` part than the one
/// verified. A form that says multipart and is not, or the reverse, is refused as well.
fn check_multipart_boundary(request: &Request<'_>) -> Result<(), Rejection> {
    const MISMATCH: Rejection = Rejection::Unacceptable {
        status: 400,
        reason: "the multipart body's delimiter is not the Content-Type's boundary",
    };
    let declared =
        crate::support::header_text(request, "content-type").and_then(content_type_boundary);
    let multipart_body = request.body.starts_with(b"--");
    match declared {
        None if !multipart_body => Ok(()),
        Some(boundary) if multipart_body => {
            let line_end = request
                .body
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(request.body.len());
            let first = &request.body[2..line_end];
            let first = first.strip_suffix(b"\r").unwrap_or(first);
            if first == boundary.as_bytes() {
                Ok(())
            } else {
                Err(MISMATCH)
            }
        }
        _ => Err(MISMATCH),
    }
}

impl Verify for Verifier {
    fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        check_multipart_boundary(request)?;
        let json = event_json(request.body).ok_or(Rejection::Unsigned)?;
        let callback = callback_of(&json).ok_or(Rejection::Unsigned)?;
        let identity = Identity::of(&callback).ok_or(Rejection::Unsigned)?;
        let seconds = unix_seconds(&identity.time).ok_or(Rejection::BadSignature)?;
        let hash = decode_hex(&identity.hash)
            .filter(|h| h.len() == 32)
            .ok_or(Rejection::BadSignature)?;
        let key = matching_secret(
            &self.secrets,
            &[identity.time.as_bytes(), identity.event_type.as_bytes()],
            &[hash],
        )
        .ok_or(Rejection::BadSignature)?;
        check_freshness(seconds, request.received_at, self.max_age)?;
        if identity.event_type == CALLBACK_TEST {
            return Err(Rejection::Handshake(hello()));
        }
        // Fresh, so near now: no overflow.
        let valid_until = UNIX_EPOCH
            .checked_add(Duration::from_secs(seconds))
            .and_then(|t| t.checked_add(self.max_age))
            .ok_or(Rejection::Stale)?;
        self.check_signer(&callback, &identity, valid_until, request.received_at)?;
        Ok(Verified {
            event_id: Some(identity.event_id()),
            key_label: self.secrets[key].label().to_owned(),
            signature_use: Some(SignatureUse {
                id: identity.signature_id().into_bytes(),
                valid_until,
                // What content_digest would find again: the form is read once.
                content_digest: Some(Sha256::digest(&json).into()),
            }),
            signature_headers: Vec::new(),
            event_type: Cow::Owned(identity.event_type),
        })
    }
}

impl Verifier {
    /// The event's signer must be one of its request's signatures, and a hash may speak of no
    /// more signers of a request than that request lists (see [`SignerMemory`]). Neither is
    /// signed, so this bounds what a captured hash can mint; it cannot prove the event.
    fn check_signer(
        &self,
        callback: &Callback,
        identity: &Identity,
        keep_until: std::time::SystemTime,
        now: std::time::SystemTime,
    ) -> Result<(), Rejection> {
        let Some(request) = &callback.signature_request else {
            return Ok(());
        };
        let related = callback
            .event
            .as_ref()
            .and_then(|e| e.event_metadata.as_ref())
            .and_then(|m| m.related_signature_id.as_deref());
        if let Some(related) = related
            && !request
                .signatures
                .iter()
                .any(|s| s.signature_id.as_deref() == Some(related))
        {
            return Err(Rejection::Unacceptable {
                status: 400,
                reason: "related_signature_id is not one of the signature request's signatures",
            });
        }
        let key: [u8; 32] = Sha256::new()
            .chain_update(identity.hash.to_ascii_lowercase().as_bytes())
            .chain_update([0])
            .chain_update(identity.subject.as_bytes())
            .finalize()
            .into();
        let signer: [u8; 32] = Sha256::digest(identity.related.as_bytes()).into();
        if self
            .signers
            .admit(key, signer, request.signatures.len(), keep_until, now)
        {
            Ok(())
        } else {
            Err(Rejection::Replayed)
        }
    }
}

/// `event_hash` for `event_time` + `event_type` with an API key. For tests and samples.
pub fn event_hash(api_key: &[u8], event_time: &str, event_type: &str) -> String {
    hex(
        &hmac_sha256(api_key, &[event_time.as_bytes(), event_type.as_bytes()])
            .finalize()
            .into_bytes(),
    )
}

/// A `multipart/form-data` body with the event JSON as its `json` field, and its content type.
pub fn multipart(json: &[u8], boundary: &str) -> (Vec<u8>, String) {
    let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"json\"\r\n\r\n")
        .into_bytes();
    body.extend_from_slice(json);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (body, format!("multipart/form-data; boundary={boundary}"))
}

fn status_of(event_type: &str, declined: bool) -> Option<ProcessStatus> {
    if declined {
        return Some(ProcessStatus::Canceled);
    }
    match event_type {
        "signature_request_sent" => Some(ProcessStatus::Created),
        "signature_request_signed" => Some(ProcessStatus::InProgress),
        "signature_request_all_signed" => Some(ProcessStatus::AllSigned),
        "signature_request_downloadable" => Some(ProcessStatus::Completed),
        "signature_request_declined" | "signature_request_canceled" => {
            Some(ProcessStatus::Canceled)
        }
        "signature_request_expired" => Some(ProcessStatus::Expired),
        _ => None,
    }
}

/// One event per callback about a signature request; account and template callbacks project
/// nothing (they are archived).
pub fn parse(body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
    let callback = callback(body).ok_or_else(|| {
        ParseError(
            "not a Dropbox Sign callback: a JSON object, alone or in a json form field, expected"
                .to_owned(),
        )
    })?;
    let Some(identity) = Identity::of(&callback) else {
        return Ok(Vec::new());
    };
    let Some(request) = callback.signature_request else {
        return Ok(Vec::new());
    };
    let Some(process_key) = request.signature_request_id.filter(|id| !id.is_empty()) else {
        return Ok(Vec::new());
    };
    let occurred_at = unix_seconds(&identity.time)
        .and_then(|s| i64::try_from(s).ok())
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0));
    let signees = signatures_of(request.signatures);
    let documents = match &*identity.event_type {
        "signature_request_all_signed" | "signature_request_downloadable" => {
            // The merged PDF of the request's documents: `GET /signature_request/files/{id}`
            // with `file_type=pdf` (Dropbox Sign's OpenAPI description, operation
            // signatureRequestFiles; 409 while the files are being prepared), downloaded by the
            // worker when the source has an API configured; a reference otherwise.
            let mut document = Document::new(DocumentKind::Signed);
            document.url = request.files_url.filter(|url| !url.is_empty());
            document.reference_id = Some(process_key.clone());
            document.content_type = Some("application/pdf".to_owned());
            document.description = Some("signed files (Dropbox Sign API, with the API key)".into());
            document.fetch = Some(files_path(&process_key));
            vec![document]
        }
        _ => Vec::new(),
    };
    let mut metadata = serde_json::Map::new();
    if let Some(meta) = request
        .metadata
        .filter(|m| m.as_object().is_some_and(|o| !o.is_empty()))
    {
        metadata.insert("metadata".to_owned(), meta);
    }
    let related = (identity.related != "-").then(|| identity.related.clone());
    Ok(vec![SigningEvent {
        status: status_of(&identity.event_type, request.is_declined == Some(true)),
        occurred_at,
        flow_key: None,
        flow_name: request.title.filter(|t| !t.is_empty()),
        company_key: None,
        signees,
        documents,
        activity: vec![ActivityEntry {
            key: format!(
                "{}:{}:{}",
                identity.event_type, identity.related, identity.time
            ),
            signee_key: related,
            status: identity.event_type.clone(),
            description: identity.event_type,
            file_name: None,
            created_at: occurred_at,
            created_by: "dropbox_sign".to_owned(),
        }],
        metadata,
        process_key,
    }])
}

/// The request's signatures as signees (one without an id is left out).
fn signatures_of(signatures: Vec<Signature>) -> Vec<Signee> {
    signatures
        .into_iter()
        .filter_map(|s| {
            let key = s.signature_id.filter(|id| !id.is_empty())?;
            let signed = s.status_code.as_deref() == Some("signed");
            Some(Signee {
                key,
                name: s.signer_name.filter(|n| !n.is_empty()),
                email: s.signer_email_address.filter(|e| !e.is_empty()),
                signed,
                signed_at: s
                    .signed_at
                    .filter(|_| signed)
                    .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0)),
                ..Signee::default()
            })
        })
        .collect()
}

/// Where Dropbox Sign's API serves a request's files as one merged PDF, relative to its base URL
/// (`https://api.hellosign.com/v3`).
fn files_path(request_id: &str) -> String {
    format!(
        "/signature_request/files/{}?file_type=pdf",
        path_segment(request_id)
    )
}

/// Where Dropbox Sign's API tells a request's state.
fn request_path(request_id: &str) -> String {
    format!("/signature_request/{}", path_segment(request_id))
}

/// A signature request as the API describes it (`GET /signature_request/{id}`'s
/// `signature_request`, each of `GET /signature_request/list`'s `signature_requests`): what its
/// state and a reconciled callback need, serialized back in the callback's own field names.
#[derive(Deserialize, serde::Serialize)]
struct ApiRequest {
    signature_request_id: Option<String>,
    title: Option<String>,
    test_mode: Option<bool>,
    is_complete: Option<bool>,
    is_declined: Option<bool>,
    expires_at: Option<i64>,
    created_at: Option<i64>,
    metadata: Option<serde_json::Value>,
    files_url: Option<String>,
    #[serde(default)]
    signatures: Vec<ApiSignature>,
}

#[derive(Deserialize, serde::Serialize)]
struct ApiSignature {
    signature_id: Option<String>,
    signer_email_address: Option<String>,
    signer_name: Option<String>,
    status_code: Option<String>,
    signed_at: Option<i64>,
}

impl ApiRequest {
    /// Complete → all signed; declined → canceled; past `expires_at` and not complete →
    /// expired; some signer signed → in progress; else created.
    fn state(&self, now: i64) -> ProcessStatus {
        if self.is_complete == Some(true) {
            ProcessStatus::AllSigned
        } else if self.is_declined == Some(true) {
            ProcessStatus::Canceled
        } else if self.expires_at.is_some_and(|at| at <= now) {
            ProcessStatus::Expired
        } else if self
            .signatures
            .iter()
            .any(|s| s.status_code.as_deref() == Some("signed"))
        {
            ProcessStatus::InProgress
        } else {
            ProcessStatus::Created
        }
    }
}

/// `GET /signature_request/{id}`'s answer, or one page of `GET /signature_request/list`.
#[derive(Deserialize)]
struct ApiAnswer {
    signature_request: Option<ApiRequest>,
    signature_requests: Option<Vec<ApiRequest>>,
    list_info: Option<ListInfo>,
}

#[derive(Deserialize)]
struct ListInfo {
    page: Option<u32>,
    num_pages: Option<u32>,
}

fn api_answer(body: &[u8]) -> Result<ApiAnswer, String> {
    serde_json::from_slice(body).map_err(|e| format!("not a Dropbox Sign API answer ({e})"))
}

/// The state in an answer of `GET /signature_request/{id}` ([`ApiRequest::state`]); `410 Gone`
/// (the request deleted, as a canceled one is) → canceled. Other statuses are no state
/// (`Ok(None)`: asked again later).
fn api_state(status: u16, body: &[u8], now: i64) -> Result<Option<ProcessStatus>, String> {
    match status {
        200 => {}
        410 => return Ok(Some(ProcessStatus::Canceled)),
        _ => return Ok(None),
    }
    let request = api_answer(body)?
        .signature_request
        .ok_or("GET /signature_request: no signature_request in the answer")?;
    Ok(Some(request.state(now)))
}

/// The `event_hash` of a callback made by reconciliation from the API's answer: never a valid
/// hash (the ingester refuses it), and no signature to remember.
pub const RECONCILED_HASH: &str = "reconciliation";

/// Dropbox Sign's reconciliation: each request not in a final state is asked with `GET
/// /signature_request/{id}`, and requests created within `look_back` are listed with `GET
/// /signature_request/list` (search `created:[from TO to]`, 100 a page; `[sources.reconcile]
/// scope` is the list's `account_id`, e.g. `all` for a team). A request complete, declined or
/// expired there whose callback the archive lacks — or any request never seen — becomes the
/// callback Dropbox Sign would have sent, built from the API's answer (test-mode requests are
/// left out).
pub struct DropboxSignReconcile;

/// The entries a webhook records for a final state: any of them means it was recorded.
fn recorded_as(state: ProcessStatus) -> &'static [&'static str] {
    match state {
        ProcessStatus::AllSigned | ProcessStatus::Completed => &[
            "signature_request_all_signed:",
            "signature_request_downloadable:",
        ],
        ProcessStatus::Canceled => &["signature_request_declined:", "signature_request_canceled:"],
        ProcessStatus::Expired => &["signature_request_expired:"],
        ProcessStatus::Created | ProcessStatus::InProgress => &[],
    }
}

impl crate::Reconcile for DropboxSignReconcile {
    fn process_path(&self, process_key: &str) -> String {
        request_path(process_key)
    }

    fn discovery_path(
        &self,
        scope: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Option<String> {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("page", "1")
            .append_pair("page_size", "100");
        query.append_pair(
            "query",
            &format!(
                "created:[{} TO {}]",
                from.format("%Y-%m-%d"),
                to.format("%Y-%m-%d")
            ),
        );
        if let Some(account) = scope {
            query.append_pair("account_id", account);
        }
        Some(format!("/signature_request/list?{}", query.finish()))
    }

    fn next_path(&self, path: &str, answer: &[u8]) -> Option<String> {
        let info = api_answer(answer).ok()?.list_info?;
        let page = info.page?;
        if page >= info.num_pages? {
            return None;
        }
        let rest = path.strip_prefix("/signature_request/list?page=")?;
        let (_, after) = rest.split_once('&')?;
        Some(format!("/signature_request/list?page={}&{after}", page + 1))
    }

    fn processes(&self, answer: &[u8]) -> Result<Vec<String>, String> {
        let answer = api_answer(answer)?;
        Ok(answer
            .signature_request
            .into_iter()
            .chain(answer.signature_requests.into_iter().flatten())
            .filter_map(|r| r.signature_request_id.filter(|id| !id.is_empty()))
            .collect())
    }

    fn gaps(
        &self,
        answer: &[u8],
        known: &std::collections::HashMap<String, std::collections::HashSet<String>>,
    ) -> Result<Vec<crate::Gap>, String> {
        let answer = api_answer(answer)?;
        let now = Utc::now().timestamp();
        let mut gaps = Vec::new();
        for request in answer
            .signature_request
            .into_iter()
            .chain(answer.signature_requests.into_iter().flatten())
        {
            let Some(id) = request
                .signature_request_id
                .clone()
                .filter(|i| !i.is_empty())
            else {
                continue;
            };
            if request.test_mode == Some(true) {
                continue;
            }
            let state = request.state(now);
            let event_type = match state {
                ProcessStatus::AllSigned | ProcessStatus::Completed => {
                    "signature_request_all_signed"
                }
                ProcessStatus::Canceled => "signature_request_declined",
                ProcessStatus::Expired => "signature_request_expired",
                ProcessStatus::Created | ProcessStatus::InProgress => "signature_request_sent",
            };
            let Some(unknown_process) = gap_of(known, &id, recorded_as(state)) else {
                continue;
            };
            // The callback's time: the last signature, or the request's creation (the same
            // answer makes the same bytes).
            let time = request
                .signatures
                .iter()
                .filter_map(|s| s.signed_at)
                .chain(request.created_at)
                .max()
                .unwrap_or(0);
            let body = serde_json::to_vec(&serde_json::json!({
                "event": {
                    "event_time": time.to_string(),
                    "event_type": event_type,
                    "event_hash": RECONCILED_HASH,
                    "event_metadata": {"related_signature_id": null},
                },
                "signature_request": request,
            }))
            .map_err(|e| e.to_string())?;
            gaps.push(crate::Gap {
                process_key: id,
                unknown_process,
                missing: vec![event_type.to_owned()],
                body,
                event_type,
            });
        }
        Ok(gaps)
    }
}

impl Provider for DropboxSign {
    fn name(&self) -> &'static str {
        "dropbox_sign"
    }

    fn settings(&self) -> &'static [Setting] {
        &[
            Setting::Secrets,
            Setting::MaxSignatureAge,
            Setting::Api,
            Setting::Reconcile,
        ]
    }

    /// HTTP Basic with the API key as the user name and no password (the OpenAPI description's
    /// `api_key` scheme: `type: http`, `scheme: basic`).
    fn api_authorization(&self, credentials: &[u8]) -> Option<String> {
        use base64::Engine as _;
        let key = String::from_utf8_lossy(credentials);
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{}:", key.trim()))
        ))
    }

    fn verifier(&self, source: &SourceConfig) -> Result<Box<dyn Verify>, String> {
        Ok(Box::new(Verifier::from_config(source)?))
    }

    fn parse(&self, body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
        parse(body)
    }

    fn signs_body(&self) -> bool {
        false
    }

    /// `signature_request.test_mode`: a request sent in test mode (not legally binding).
    fn is_test_event(&self, body: &[u8]) -> bool {
        event_json(body)
            .and_then(|json| callback_of(&json))
            .and_then(|callback| callback.signature_request)
            .is_some_and(|request| request.test_mode == Some(true))
    }

    /// One captured hash serves every signer of its request, and covers none of the event.
    fn proves_content(&self) -> bool {
        false
    }

    fn default_max_body_bytes(&self) -> Option<usize> {
        Some(DEFAULT_MAX_BODY_BYTES)
    }

    /// None for a callback reconciliation made ([`RECONCILED_HASH`]): it carries no signature.
    fn signature_id(&self, body: &[u8]) -> Option<String> {
        callback(body)
            .as_ref()
            .and_then(Identity::of)
            .filter(|identity| identity.hash != RECONCILED_HASH)
            .map(|identity| identity.signature_id())
    }

    fn reconcile(&self) -> Option<&'static dyn crate::Reconcile> {
        Some(&DropboxSignReconcile)
    }

    /// The event's JSON, whatever form carried it.
    fn content_digest(&self, body: &[u8]) -> [u8; 32] {
        match event_json(body) {
            Some(json) => Sha256::digest(&json).into(),
            None => Sha256::digest(body).into(),
        }
    }

    /// Every delivery has its own multipart boundary.
    fn resends_reencoded(&self) -> bool {
        true
    }

    fn accepted_reply(&self, _request: &dyn Headers) -> Reply {
        hello()
    }

    /// `GET /signature_request/{id}` (operation signatureRequestGet).
    fn state_path(&self, process_key: &str) -> Option<String> {
        Some(request_path(process_key))
    }

    fn api_state(
        &self,
        status: u16,
        body: &[u8],
        now: i64,
    ) -> Result<Option<ProcessStatus>, String> {
        api_state(status, body, now)
    }

    fn sample(&self, source: &SourceConfig, _private_key: Option<&str>) -> Result<Sample, String> {
        let secret = crate::support::first_secret(source)?;
        let time = Utc::now().timestamp().to_string();
        let kind = "signature_request_all_signed";
        let request_id = crate::support::sample_id();
        let json = serde_json::to_vec(&serde_json::json!({
            "event": {"event_time": time, "event_type": kind,
                "event_hash": event_hash(secret.expose(), &time, kind),
                "event_metadata": {"related_signature_id": null, "reported_for_account_id": "sample-account"}},
            "signature_request": {"signature_request_id": request_id, "title": "Sample agreement",
                "is_complete": true, "is_declined": false,
                "signatures": [{"signature_id": "sample-signature", "signer_email_address": "signer@example.com",
                    "signer_name": "Sample Signer", "status_code": "signed", "signed_at": Utc::now().timestamp()}]},
        }))
        .expect("JSON");
        let (body, _) = multipart(&json, SAMPLE_BOUNDARY);
        Ok(Sample {
            path_token: None,
            query: None,
            headers: Vec::new(),
            body,
            content_type: SAMPLE_CONTENT_TYPE,
            process_key: request_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoHeaders;
    use crate::testing::{Pairs, flips, source, text_flips};
    use std::time::SystemTime;

    /// The API key of Dropbox Sign's SDK tests, and their fixtures' event (`hellosign-openapi`,
    /// `test_fixtures/EventCallbackHelper_AccountCallbacks.json`, "signature_request").
    const API_KEY: &str = "324e3b0840f065eb51f3fd63231d0d33daa35d4ed10d27718839e81737065782";
    const TIME: &str = "1348177752";
    const HASH: &str = "08d45a6b7677492b78be030cef18cfeaece8fe67e163cc8e526ee638ad483756";
    /// The same key's `account_confirmed` at 1669926463, from the SDKs' README examples.
    const README_HASH: &str = "ff8b03439122f9160500c3fb855bdee5a9ccba5fff27d3b258745d8f3074832f";

    fn event(hash: &str, time: &str, event_type: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "account_guid": "63522885f9261e2b04eea043933ee7313eb674fd",
            "event": {"event_time": time, "event_type": event_type, "event_hash": hash,
                "event_metadata": {"related_signature_id": "ad4d8a769b555fa5ef38691465d426682bf2c992",
                    "reported_for_account_id": "63522885f9261e2b04eea043933ee7313eb674fd"}},
            "signature_request": {"signature_request_id": "fa5c8a0b0f492d768749333ad6fcc214c111e967",
                "title": "Purchase order", "is_complete": false, "is_declined": false,
                "metadata": {"order": "PO-1"},
                "files_url": "https://api.hellosign.com/v3/signature_request/files/fa5c8a0b0f492d768749333ad6fcc214c111e967",
                "signatures": [{"signature_id": "ad4d8a769b555fa5ef38691465d426682bf2c992",
                    "signer_email_address": "jack@example.com", "signer_name": "Jack",
                    "status_code": "awaiting_signature", "signed_at": null}]}}))
        .unwrap()
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    /// A multipart body is sent with the content type its first line declares, as a sender does.
    fn verify_at(keys: &[&str], body: &[u8], received: SystemTime) -> Result<Verified, Rejection> {
        let content_type = body.starts_with(b"--").then(|| {
            let line = body.split(|&b| b == b'\r').next().unwrap();
            format!(
                "multipart/form-data; boundary={}",
                String::from_utf8_lossy(&line[2..])
            )
        });
        let headers = Pairs(
            content_type
                .map(|c| ("content-type", c))
                .into_iter()
                .collect(),
        );
        Verifier::from_config(&source("dropbox_sign", keys))
            .unwrap()
            .verify(&Request {
                body,
                headers: &headers,
                received_at: received,
                path_token: None,
                query: None,
            })
    }

    fn verify(keys: &[&str], body: &[u8]) -> Result<Verified, Rejection> {
        verify_at(keys, body, at(1_348_177_752 + 60))
    }

    #[test]
    fn a_test_mode_request_is_a_test_event_and_still_verifies() {
        let body = |test_mode: &str| {
            String::from_utf8(event(HASH, TIME, "signature_request_sent"))
                .unwrap()
                .replace(
                    "\"title\":",
                    &format!("\"test_mode\":{test_mode},\"title\":"),
                )
                .into_bytes()
        };
        assert!(DropboxSign.is_test_event(&body("true")));
        for live in ["false", "null"] {
            assert!(!DropboxSign.is_test_event(&body(live)), "{live}");
            assert!(verify(&[API_KEY], &body(live)).is_ok(), "{live}");
        }
        assert!(verify(&[API_KEY], &body("true")).is_ok());
        assert!(!DropboxSign.is_test_event(&event(HASH, TIME, "signature_request_sent")));
        let (multipart, _) = multipart(&body("true"), "b");
        assert!(
            DropboxSign.is_test_event(&multipart),
            "in a multipart form too"
        );
    }

    #[test]
    fn the_sdk_vectors_verify() {
        assert_eq!(
            event_hash(API_KEY.as_bytes(), TIME, "signature_request_sent"),
            HASH
        );
        assert_eq!(
            event_hash(API_KEY.as_bytes(), "1669926463", "account_confirmed"),
            README_HASH
        );
        let json = event(HASH, TIME, "signature_request_sent");
        let (multipart_body, _) = multipart(&json, "----sdkvector");
        for body in [json.clone(), multipart_body] {
            let verified = verify(&[API_KEY], &body).expect("genuine");
            assert_eq!(verified.event_type, "signature_request_sent");
            assert_eq!(
                verified.event_id.as_deref(),
                Some(
                    "1348177752:signature_request_sent:fa5c8a0b0f492d768749333ad6fcc214c111e967:ad4d8a769b555fa5ef38691465d426682bf2c992"
                )
            );
            assert_eq!(verified.key_label, "env:KEY0");
            assert!(verified.signature_use.is_some());
        }
        // The SDKs' own negative: the key reversed.
        let reversed: String = API_KEY.chars().rev().collect();
        assert_eq!(
            verify(&[&reversed], &json).unwrap_err(),
            Rejection::BadSignature
        );
    }

    /// An event of `event_type` at `TIME` about request `sr-2` with `signers`, by `related`.
    fn signer_event(event_type: &str, signers: &[&str], related: Option<&str>) -> Vec<u8> {
        let signatures: Vec<serde_json::Value> = signers
            .iter()
            .map(|id| serde_json::json!({"signature_id": id, "status_code": "signed"}))
            .collect();
        let mut metadata = serde_json::json!({});
        if let Some(related) = related {
            metadata["related_signature_id"] = related.into();
        }
        serde_json::to_vec(&serde_json::json!({
            "event": {"event_time": TIME, "event_type": event_type,
                "event_hash": event_hash(API_KEY.as_bytes(), TIME, event_type),
                "event_metadata": metadata},
            "signature_request": {"signature_request_id": "sr-2", "is_declined": true,
                "signatures": signatures}
        }))
        .unwrap()
    }

    /// Issue 26 (F3): one captured `event_hash` with `related_signature_id` changed
    /// (`'signer-1 '`, `'SIGNER-1'`, `'x'`, absent) minted four "declined" events about a real
    /// request. Now the signer must be one of the request's signatures, and a hash speaks of at
    /// most as many signers of a request as that request listed when first seen; two signers
    /// signing in the same second (one hash, hashed as the SDKs hash) still both pass.
    #[test]
    fn a_captured_hash_cannot_mint_signers() {
        let verifier = Verifier::from_config(&source("dropbox_sign", &[API_KEY])).unwrap();
        let verify = |body: &[u8]| {
            verifier.verify(&Request {
                body,
                headers: &NoHeaders,
                received_at: at(1_348_177_752 + 60),
                path_token: None,
                query: None,
            })
        };
        let kind = "signature_request_declined";
        assert!(verify(&signer_event(kind, &["signer-1"], Some("signer-1"))).is_ok());
        for related in ["signer-1 ", "SIGNER-1", "x"] {
            assert!(
                matches!(
                    verify(&signer_event(kind, &["signer-1"], Some(related))),
                    Err(Rejection::Unacceptable { status: 400, .. })
                ),
                "{related:?}"
            );
        }
        assert_eq!(
            verify(&signer_event(kind, &["signer-1"], None)).unwrap_err(),
            Rejection::Replayed,
            "absent: a second signer of a one-signer request"
        );
        // Listing more signers in a forged body does not raise the count.
        assert_eq!(
            verify(&signer_event(kind, &["signer-1", "x"], Some("x"))).unwrap_err(),
            Rejection::Replayed
        );

        // Two signers of one request, one hash: both genuine events pass, and again (retries).
        let verifier = Verifier::from_config(&source("dropbox_sign", &[API_KEY])).unwrap();
        let signed = "signature_request_signed";
        for _ in 0..2 {
            for signer in ["signer-a", "signer-b"] {
                let body = signer_event(signed, &["signer-a", "signer-b"], Some(signer));
                verifier
                    .verify(&Request {
                        body: &body,
                        headers: &NoHeaders,
                        received_at: at(1_348_177_752 + 60),
                        path_token: None,
                        query: None,
                    })
                    .unwrap_or_else(|e| panic!("{signer}: {e:?}"));
            }
        }
        let third = signer_event(
            signed,
            &["signer-a", "signer-b", "signer-c"],
            Some("signer-c"),
        );
        assert_eq!(
            verifier
                .verify(&Request {
                    body: &third,
                    headers: &NoHeaders,
                    received_at: at(1_348_177_752 + 60),
                    path_token: None,
                    query: None,
                })
                .unwrap_err(),
            Rejection::Replayed,
            "a third signer under the hash of a two-signer request"
        );
    }

    /// Issue 26 (F9): a body whose first-line delimiter is not the Content-Type's boundary was
    /// read as part A here and part B by standard parsers. Now the two must agree.
    #[test]
    fn the_multipart_delimiter_must_be_the_content_type_boundary() {
        let json = event(HASH, TIME, "signature_request_sent");
        let (body, content_type) = multipart(&json, "boundary-A");
        let with = |content_type: &str, body: &[u8]| {
            Verifier::from_config(&source("dropbox_sign", &[API_KEY]))
                .unwrap()
                .verify(&Request {
                    body,
                    headers: &Pairs(vec![("content-type", content_type.to_owned())]),
                    received_at: at(1_348_177_752 + 60),
                    path_token: None,
                    query: None,
                })
        };
        assert!(with(&content_type, &body).is_ok(), "{content_type}");
        assert!(with("multipart/form-data; boundary=\"boundary-A\"", &body).is_ok());
        for refused in [
            "multipart/form-data; boundary=boundary-B",
            "multipart/form-data",
            "application/json",
        ] {
            assert!(
                matches!(
                    with(refused, &body),
                    Err(Rejection::Unacceptable { status: 400, .. })
                ),
                "{refused}"
            );
        }
        // Says multipart, is JSON.
        assert!(matches!(
            with(&content_type, &json),
            Err(Rejection::Unacceptable { status: 400, .. })
        ));
        assert!(with("application/json", &json).is_ok());
    }

    #[test]
    fn one_flipped_bit_in_key_hash_or_time_is_refused() {
        for (i, key) in text_flips(API_KEY, 0..API_KEY.len()) {
            assert_eq!(
                verify(&[&key], &event(HASH, TIME, "signature_request_sent")).unwrap_err(),
                Rejection::BadSignature,
                "key byte {i}"
            );
        }
        for (i, hash) in text_flips(HASH, 0..HASH.len()) {
            assert_eq!(
                verify(&[API_KEY], &event(&hash, TIME, "signature_request_sent")).unwrap_err(),
                Rejection::BadSignature,
                "hash byte {i}"
            );
        }
        for (i, time) in text_flips(TIME, 0..TIME.len()) {
            assert_eq!(
                verify(&[API_KEY], &event(HASH, &time, "signature_request_sent")).unwrap_err(),
                Rejection::BadSignature,
                "time byte {i}"
            );
        }
        for (i, kind) in text_flips("signature_request_sent", 0..22) {
            assert_eq!(
                verify(&[API_KEY], &event(HASH, TIME, &kind)).unwrap_err(),
                Rejection::BadSignature,
                "type byte {i}"
            );
        }
    }

    #[test]
    fn the_body_is_not_covered_so_a_signature_is_held_to_its_content() {
        let genuine = event(HASH, TIME, "signature_request_sent");
        let first = verify(&[API_KEY], &genuine).unwrap();
        // Any change outside the hash still verifies: the defence is the replay memory, which
        // sees the same signature id with another content digest.
        let changed = String::from_utf8(genuine.clone())
            .unwrap()
            .replace("awaiting_signature", "signed");
        let second = verify(&[API_KEY], changed.as_bytes()).unwrap();
        let id = |v: &Verified| v.signature_use.as_ref().unwrap().id.clone();
        assert_eq!(id(&first), id(&second));
        let provider = DropboxSign;
        let use_of = |v: &Verified| v.signature_use.as_ref().unwrap().content_digest;
        assert_eq!(use_of(&first), Some(provider.content_digest(&genuine)));
        let (enveloped, _) = multipart(&genuine, "boundary-zero");
        let enveloped_use = verify(&[API_KEY], &enveloped).unwrap();
        assert_eq!(
            use_of(&enveloped_use),
            Some(provider.content_digest(&enveloped))
        );
        assert_eq!(
            use_of(&enveloped_use),
            use_of(&first),
            "one content, two envelopes"
        );
        assert_ne!(
            provider.content_digest(&genuine),
            provider.content_digest(changed.as_bytes())
        );
        // Two deliveries of one event in different multipart envelopes: one content.
        let (a, _) = multipart(&genuine, "boundary-one");
        let (b, _) = multipart(&genuine, "boundary-two");
        assert_ne!(a, b);
        assert_eq!(provider.content_digest(&a), provider.content_digest(&b));
        assert_eq!(
            provider.content_digest(&a),
            provider.content_digest(&genuine)
        );
        assert_eq!(
            provider.signature_id(&a).unwrap().into_bytes(),
            id(&first),
            "the worker finds the same signature"
        );
        // Another request under the same hash is another use (documented limitation).
        let other = String::from_utf8(genuine)
            .unwrap()
            .replace("fa5c8a0b", "00000000");
        assert_ne!(
            id(&verify(&[API_KEY], other.as_bytes()).unwrap()),
            id(&first)
        );
    }

    #[test]
    fn stale_test_and_malformed_callbacks() {
        let genuine = event(HASH, TIME, "signature_request_sent");
        assert_eq!(
            verify_at(&[API_KEY], &genuine, at(1_348_177_752 + 96 * 3600 + 1)).unwrap_err(),
            Rejection::Stale
        );
        assert!(verify_at(&[API_KEY], &genuine, at(1_348_177_752 + 96 * 3600)).is_ok());
        let test = event(
            &event_hash(API_KEY.as_bytes(), TIME, CALLBACK_TEST),
            TIME,
            CALLBACK_TEST,
        );
        assert_eq!(
            verify(&[API_KEY], &test).unwrap_err(),
            Rejection::Handshake(hello())
        );
        let forged_test = event(HASH, TIME, CALLBACK_TEST);
        assert_eq!(
            verify(&[API_KEY], &forged_test).unwrap_err(),
            Rejection::BadSignature
        );
        for body in [
            &b""[..],
            b"[]",
            b"{}",
            br#"{"event":{"event_time":"1","event_type":"x"}}"#,
            b"json=%7B%7D&json=%7B%7D",
            b"--b\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\n{}\r\n--b--\r\n",
        ] {
            assert_eq!(
                verify(&[API_KEY], body).unwrap_err(),
                Rejection::Unsigned,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        let odd_time = event(HASH, "+1348177752", "signature_request_sent");
        assert_eq!(
            verify(&[API_KEY], &odd_time).unwrap_err(),
            Rejection::BadSignature
        );
        assert!(Verifier::from_config(&source("dropbox_sign", &[])).is_err());
    }

    #[test]
    fn every_form_of_the_json_field_is_read_alike() {
        let json = event(HASH, TIME, "signature_request_sent");
        let (multipart_body, _) = multipart(&json, "XyZ");
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("json", std::str::from_utf8(&json).unwrap())
            .finish();
        for body in [&json[..], &multipart_body, form.as_bytes()] {
            assert_eq!(event_json(body).as_deref(), Some(&json[..]));
        }
        // Two json parts, or a part without its blank line: refused, not guessed.
        let twice = "--b\r\nContent-Disposition: form-data; name=\"json\"\r\n\r\n{}\r\n--b\r\nContent-Disposition: form-data; name=json\r\n\r\n{}\r\n--b--\r\n";
        assert_eq!(event_json(twice.as_bytes()), None);
        assert_eq!(
            event_json(b"--b\r\nContent-Disposition: form-data; name=\"json\"\r\n{}\r\n--b--"),
            None
        );
        let long = format!("--{}\r\n", "b".repeat(71));
        assert_eq!(event_json(long.as_bytes()), None);
        for (_, body) in flips(&multipart_body, 0..multipart_body.len()) {
            let _ = event_json(&body);
        }
    }

    #[test]
    fn signature_request_callbacks_are_normalized() {
        let (body, _) = multipart(&event(HASH, TIME, "signature_request_sent"), "b1");
        let events = parse(&body).unwrap();
        let first = &events[0];
        assert_eq!(
            first.process_key,
            "fa5c8a0b0f492d768749333ad6fcc214c111e967"
        );
        assert_eq!(first.status, Some(ProcessStatus::Created));
        assert_eq!(first.flow_name.as_deref(), Some("Purchase order"));
        assert_eq!(
            first.signees[0].key,
            "ad4d8a769b555fa5ef38691465d426682bf2c992"
        );
        assert_eq!(first.signees[0].name.as_deref(), Some("Jack"));
        assert!(!first.signees[0].signed);
        assert_eq!(first.metadata["metadata"]["order"], "PO-1");
        assert_eq!(
            first.activity[0].signee_key.as_deref(),
            Some("ad4d8a769b555fa5ef38691465d426682bf2c992")
        );
        for (kind, expected, documents) in [
            (
                "signature_request_signed",
                Some(ProcessStatus::InProgress),
                0,
            ),
            (
                "signature_request_all_signed",
                Some(ProcessStatus::AllSigned),
                1,
            ),
            (
                "signature_request_downloadable",
                Some(ProcessStatus::Completed),
                1,
            ),
            (
                "signature_request_declined",
                Some(ProcessStatus::Canceled),
                0,
            ),
            (
                "signature_request_canceled",
                Some(ProcessStatus::Canceled),
                0,
            ),
            ("signature_request_expired", Some(ProcessStatus::Expired), 0),
            ("signature_request_viewed", None, 0),
        ] {
            let events = parse(&event(HASH, TIME, kind)).unwrap();
            assert_eq!(events[0].status, expected, "{kind}");
            assert_eq!(events[0].documents.len(), documents, "{kind}");
        }
        let account = br#"{"event":{"event_time":"1348177752","event_type":"account_confirmed","event_hash":"6dc5b7aad93cf54915e0089d6c31d61b3833f66f51459171c69f8fa211308848"}}"#;
        assert!(parse(account).unwrap().is_empty());
        assert!(parse(b"[]").is_err());
    }

    #[test]
    fn a_completion_announces_the_merged_pdf_at_the_files_endpoint_of_its_own_request() {
        let mut callback: serde_json::Value =
            serde_json::from_slice(&event("h", "1348177752", "signature_request_all_signed"))
                .unwrap();
        callback["signature_request"] = serde_json::json!({
            "signature_request_id": "fa5c8a0b0f492d768749333ad6fcc214c111e967",
            "files_url": "https://elsewhere.example/steal?k=1",
            "signatures": []
        });
        let events = parse(&serde_json::to_vec(&callback).unwrap()).unwrap();
        let document = &events[0].documents[0];
        assert_eq!(document.kind, DocumentKind::Signed);
        assert_eq!(
            document.fetch.as_deref(),
            Some("/signature_request/files/fa5c8a0b0f492d768749333ad6fcc214c111e967?file_type=pdf"),
            "from the request id, never from the unsigned files_url"
        );
        assert_eq!(
            files_path("a/b?c"),
            "/signature_request/files/a%2Fb%3Fc?file_type=pdf"
        );
        // Other events announce nothing to download.
        callback["event"]["event_type"] = "signature_request_signed".into();
        let events = parse(&serde_json::to_vec(&callback).unwrap()).unwrap();
        assert!(events[0].documents.is_empty());
    }

    #[test]
    fn the_api_key_is_the_basic_user_name_without_a_password() {
        let authorization = DropboxSign.api_authorization(b" key-1\n").unwrap();
        // base64("key-1:")
        assert_eq!(authorization, "Basic a2V5LTE6");
    }

    #[test]
    fn the_apis_answer_is_the_requests_state() {
        let fixture = |name: &str| {
            std::fs::read(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures/dropbox_sign")
                    .join(name),
            )
            .unwrap()
        };
        let complete = fixture("SignatureRequestGetResponse.json");
        assert_eq!(
            DropboxSign.api_state(200, &complete, 0),
            Ok(Some(ProcessStatus::AllSigned))
        );
        assert_eq!(
            DropboxSign
                .state_path("fa5c8a0b0f492d768749333ad6fcc214c111e967")
                .as_deref(),
            Some("/signature_request/fa5c8a0b0f492d768749333ad6fcc214c111e967")
        );
        let mut answer: serde_json::Value = serde_json::from_slice(&complete).unwrap();
        answer["signature_request"]["is_complete"] = false.into();
        let open = serde_json::to_vec(&answer).unwrap();
        assert_eq!(
            DropboxSign.api_state(200, &open, 0),
            Ok(Some(ProcessStatus::InProgress)),
            "John signed, the request is not complete"
        );
        answer["signature_request"]["expires_at"] = 1_000.into();
        let expiring = serde_json::to_vec(&answer).unwrap();
        assert_eq!(
            DropboxSign.api_state(200, &expiring, 999),
            Ok(Some(ProcessStatus::InProgress))
        );
        assert_eq!(
            DropboxSign.api_state(200, &expiring, 1_000),
            Ok(Some(ProcessStatus::Expired))
        );
        answer["signature_request"]["is_declined"] = true.into();
        assert_eq!(
            DropboxSign.api_state(200, &serde_json::to_vec(&answer).unwrap(), 0),
            Ok(Some(ProcessStatus::Canceled))
        );
        assert_eq!(
            DropboxSign.api_state(410, &fixture("Error410Response.json"), 0),
            Ok(Some(ProcessStatus::Canceled))
        );
        assert_eq!(DropboxSign.api_state(404, b"{}", 0), Ok(None));
        assert!(DropboxSign.api_state(200, b"{}", 0).is_err());
    }

    #[test]
    fn reconciliation_lists_by_creation_date_page_by_page_and_fills_only_gaps() {
        use crate::Reconcile;
        use std::collections::{HashMap, HashSet};
        let from = DateTime::<Utc>::from_timestamp(1_764_547_200, 0).unwrap(); // 2025-12-01
        let to = from + chrono::TimeDelta::days(7);
        let path = DropboxSignReconcile
            .discovery_path(Some("all"), from, to)
            .unwrap();
        assert_eq!(
            path,
            "/signature_request/list?page=1&page_size=100&query=created%3A%5B2025-12-01+TO+2025-12-08%5D&account_id=all"
        );
        let list = crate::testing::fixture("dropbox_sign", "SignatureRequestListResponse.json");
        assert_eq!(DropboxSignReconcile.next_path(&path, &list), None, "1 of 1");
        let mut more: serde_json::Value = serde_json::from_slice(&list).unwrap();
        more["list_info"]["num_pages"] = 3.into();
        assert_eq!(
            DropboxSignReconcile
                .next_path(&path, &serde_json::to_vec(&more).unwrap())
                .unwrap(),
            path.replace("page=1&", "page=2&")
        );
        assert_eq!(
            DropboxSignReconcile.processes(&list).unwrap(),
            ["d10338cad145e1cb68afc828", "fa5c8a0b0f492d768749333a"]
        );
        // Never seen: both become callbacks the parser reads, the complete one announcing its PDF.
        let gaps = DropboxSignReconcile.gaps(&list, &HashMap::new()).unwrap();
        assert_eq!(gaps.len(), 2);
        assert!(gaps.iter().all(|g| g.unknown_process));
        assert_eq!(gaps[1].event_type, "signature_request_all_signed");
        let events = parse(&gaps[1].body).unwrap();
        assert_eq!(events[0].status, Some(ProcessStatus::AllSigned));
        assert_eq!(
            events[0].documents[0].fetch.as_deref(),
            Some("/signature_request/files/fa5c8a0b0f492d768749333a?file_type=pdf")
        );
        assert_eq!(DropboxSign.signature_id(&gaps[1].body), None);
        assert_eq!(
            gaps,
            DropboxSignReconcile.gaps(&list, &HashMap::new()).unwrap(),
            "the same answer, the same bytes"
        );
        // Recorded: the open request as it is, the complete one with its all-signed entry.
        let recorded = |keys: &[&str]| keys.iter().map(|k| (*k).to_owned()).collect::<HashSet<_>>();
        let known = HashMap::from([
            (
                "d10338cad145e1cb68afc828".to_owned(),
                recorded(&["signature_request_sent:-:1"]),
            ),
            (
                "fa5c8a0b0f492d768749333a".to_owned(),
                recorded(&["signature_request_downloadable:-:9"]),
            ),
        ]);
        assert!(DropboxSignReconcile.gaps(&list, &known).unwrap().is_empty());
        // Known but its completion missing: one gap, not an unknown process.
        let mut known = known;
        known.insert(
            "fa5c8a0b0f492d768749333a".to_owned(),
            recorded(&["signature_request_signed:x:1"]),
        );
        let gaps = DropboxSignReconcile.gaps(&list, &known).unwrap();
        assert_eq!(gaps.len(), 1);
        assert!(!gaps[0].unknown_process);
        // A test-mode request is never reconciled into a real one.
        more["signature_requests"][1]["test_mode"] = true.into();
        let gaps = DropboxSignReconcile
            .gaps(&serde_json::to_vec(&more).unwrap(), &HashMap::new())
            .unwrap();
        assert_eq!(gaps.len(), 1);
    }

    #[test]
    fn a_reconciled_callback_is_refused_by_the_verifier() {
        let list = crate::testing::fixture("dropbox_sign", "SignatureRequestListResponse.json");
        let gaps =
            crate::Reconcile::gaps(&DropboxSignReconcile, &list, &Default::default()).unwrap();
        assert_eq!(
            verify_at(&[API_KEY], &gaps[0].body, at(1_570_471_067 + 60)).unwrap_err(),
            Rejection::BadSignature,
            "posted to the ingester, a reconciled body is not a signed callback"
        );
    }
}
