//! Legalesign (UK), API v1 callbacks. Two kinds, two providers:
//!
//! What the provider signs, what this module verifies and relies on, the provider's API as the
//! worker uses it, and where each fact comes from: `docs/providers/legalesign.md` (one page per provider).

use std::borrow::Cow;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, NaiveDateTime, Utc};
use rsa::RsaPublicKey;
use rsa::signature::Verifier as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::event::{
    ActivityEntry, Document, DocumentKind, ParseError, ProcessStatus, Signee, SigningEvent,
};
use crate::settings::{Secret, Setting, SourceConfig};
use crate::support::hex;
use crate::{Provider, Rejection, Request, Sample, Verified, Verify};

/// Reads the RSA public key of an X.509 certificate (PEM).
pub fn load_certificate(path: &Path) -> Result<RsaPublicKey, String> {
    load_certificate_until(path).map(|(key, _)| key)
}

/// The RSA public key of an X.509 certificate (PEM), and the end of its validity (`notAfter`).
pub fn load_certificate_until(
    path: &Path,
) -> Result<(RsaPublicKey, std::time::SystemTime), String> {
    use rsa::pkcs8::DecodePublicKey as _;
    use x509_cert::der::{DecodePem as _, Encode as _};
    let pem = crate::settings::read_small_file(path)
        .map_err(|e| format!("certificate {}: {e}", path.display()))?;
    let certificate = x509_cert::Certificate::from_pem(pem.as_bytes()).map_err(|e| {
        format!(
            "certificate {}: not an X.509 PEM certificate ({e})",
            path.display()
        )
    })?;
    let spki = certificate
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| format!("certificate {}: {e}", path.display()))?;
    let key = RsaPublicKey::from_public_key_der(&spki)
        .map_err(|e| format!("certificate {}: not an RSA key ({e})", path.display()))?;
    let not_after = certificate
        .tbs_certificate
        .validity
        .not_after
        .to_system_time();
    Ok((key, not_after))
}

pub(crate) fn check_event_config(source: &SourceConfig) -> Result<(), String> {
    if source.secrets.is_empty() {
        return Err("legalesign_event needs at least one secret: the token of its URL, /webhooks/<source>/<token>".to_owned());
    }
    Ok(())
}

/// Verifies "all" callbacks against the configured certificate.
#[derive(Debug, Clone)]
pub struct AllVerifier {
    key: RsaPublicKey,
    label: String,
    not_after: std::time::SystemTime,
}

/// The largest Legalesign callback accepted unless a source sets its own `max_body_bytes`: a
/// six-minute batch of status changes is about 130 bytes per change, so 1 MiB is some 8,000.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// The fields an "upon event" callback may carry (Legalesign's documentation names
/// `resource_uri`, `group`, `name`, `uuid`, `tag`, and mentions the event, further tags and a
/// `json_signed` field).
const EVENT_FIELDS: &[&str] = &[
    "resource_uri",
    "group",
    "name",
    "uuid",
    "tag",
    "tag1",
    "tag2",
    "tag3",
    "event",
    "json_signed",
];

/// A form body's fields, URL-decoded, each named in `allowed` and present at most once: one
/// reading of the body for the verifier and the parser alike (a second `data` or `uuid` would
/// otherwise be read as the first by one and as the last by the other).
fn strict_form(body: &[u8], allowed: &[&str]) -> Result<Vec<(String, String)>, &'static str> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(body) {
        if !allowed.contains(&name.as_ref()) {
            return Err("unexpected form field in a Legalesign callback");
        }
        if fields.iter().any(|(n, _)| *n == name) {
            return Err("a form field appears twice in a Legalesign callback");
        }
        fields.push((name.into_owned(), value.into_owned()));
    }
    Ok(fields)
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find_map(|(n, v)| (n == name).then_some(v.as_str()))
}

/// An "all" callback: exactly `data` and `signed`, once each (`signed` may be missing: unsigned).
struct AllForm {
    data: String,
    signed: Option<String>,
}

fn all_form(body: &[u8]) -> Result<AllForm, &'static str> {
    let fields = strict_form(body, &["data", "signed"])?;
    let data = field(&fields, "data")
        .ok_or("a Legalesign callback has a data field")?
        .to_owned();
    Ok(AllForm {
        data,
        signed: field(&fields, "signed").map(str::to_owned),
    })
}

/// An "upon event" callback's fields; its `uuid` is a document id (letters, digits, `-`, `_`).
fn event_form(body: &[u8]) -> Result<Vec<(String, String)>, &'static str> {
    let fields = strict_form(body, EVENT_FIELDS)?;
    let uuid = field(&fields, "uuid").ok_or("a Legalesign event callback has a uuid field")?;
    if uuid.is_empty()
        || uuid.len() > 64
        || !uuid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("a Legalesign document uuid is letters, digits, - and _");
    }
    Ok(fields)
}

fn unacceptable(reason: &'static str) -> Rejection {
    Rejection::Unacceptable {
        status: 400,
        reason,
    }
}

impl AllVerifier {
    pub fn from_config(source: &SourceConfig) -> Result<Self, String> {
        let path = source
            .certificate
            .as_ref()
            .ok_or("legalesign needs certificate = \"/path/to/legalesign.pem\" (Legalesign's X.509 certificate)")?;
        let (key, not_after) = load_certificate_until(path)?;
        Ok(Self {
            key,
            label: format!("certificate:{}", path.display()),
            not_after,
        })
    }

    pub fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        let AllForm { data, signed } = all_form(request.body).map_err(unacceptable)?;
        let signed = signed.ok_or(Rejection::Unsigned)?;
        let signature = BASE64
            .decode(signed.trim().replace(['\n', '\r', ' '], ""))
            .map_err(|_| Rejection::BadSignature)?;
        let signature = rsa::pkcs1v15::Signature::try_from(signature.as_slice())
            .map_err(|_| Rejection::BadSignature)?;
        rsa::pkcs1v15::VerifyingKey::<sha1::Sha1>::new(self.key.clone())
            .verify(data.as_bytes(), &signature)
            .map_err(|_| Rejection::BadSignature)?;
        Ok(Verified {
            event_id: Some(hex(&Sha256::digest(data.as_bytes()))),
            event_type: Cow::Borrowed("all"),
            key_label: self.label.clone(),
            signature_use: None,
            signature_headers: Vec::new(),
        })
    }
}

/// Authenticates "upon event" callbacks by the token in their URL.
pub fn verify_event(request: &Request<'_>, secrets: &[Secret]) -> Result<Verified, Rejection> {
    let token = request.path_token.ok_or(Rejection::Unsigned)?;
    // Every secret is compared, so timing tells neither which one nor how close.
    let mut matched = None;
    for (i, secret) in secrets.iter().enumerate() {
        if bool::from(secret.expose().ct_eq(token.as_bytes())) && matched.is_none() {
            matched = Some(i);
        }
    }
    let key = matched.ok_or(Rejection::BadSignature)?;
    let fields = event_form(request.body).map_err(unacceptable)?;
    let uuid = field(&fields, "uuid").unwrap_or_default();
    Ok(Verified {
        event_id: Some(format!("{uuid}:signed")),
        event_type: Cow::Borrowed("document.signed"),
        key_label: secrets[key].label().to_owned(),
        signature_use: None,
        signature_headers: Vec::new(),
    })
}

#[derive(Deserialize)]
struct Change {
    timestamp: Option<String>,
    name: Option<String>,
    value: Option<serde_json::Value>,
    resource_uri: Option<String>,
}

/// `("document" | "signer", id)` of `/api/v1/<kind>/<id>/`.
fn resource(uri: &str) -> Option<(&str, &str)> {
    let mut parts = uri.trim_matches('/').split('/');
    let (Some("api"), Some(_version), Some(kind), Some(id)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    (!id.is_empty()).then_some((kind, id))
}

fn document_status(code: i64) -> (&'static str, Option<ProcessStatus>) {
    match code {
        10 => ("DocumentCreated", Some(ProcessStatus::Created)),
        20 => ("FieldsCompleted", Some(ProcessStatus::InProgress)),
        30 => ("Completed", Some(ProcessStatus::Completed)),
        40 => ("Removed", Some(ProcessStatus::Canceled)),
        50 => ("Rejected", Some(ProcessStatus::Canceled)),
        _ => ("DocumentStatus", None),
    }
}

fn signer_status(code: i64) -> &'static str {
    match code {
        4 => "SignerUnsent",
        5 => "SignerScheduled",
        10 => "SignerSent",
        15 => "SignerEmailOpened",
        20 => "SignerVisited",
        30 => "SignerFieldsCompleted",
        35 => "SignerFieldsCompletedExceptSignature",
        39 => "SignerWaitingForWitness",
        40 => "SigneeSigned",
        50 => "SignerDownloaded",
        60 => "SignerRejected",
        _ => "SignerStatus",
    }
}

/// Legalesign writes times without a zone; they are UTC.
fn utc(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
}

/// Parses an "all" callback: one event per status change. The callback does not say which
/// document a signer belongs to: a signer's changes go to the document changed at the same
/// time in the batch, else to the batch's only document, else to a process of their own
/// (`signer:<id>`).
pub fn parse(body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
    let AllForm { data, .. } = all_form(body).map_err(|e| ParseError(e.to_owned()))?;
    let changes: Vec<Change> = serde_json::from_str(&data)
        .map_err(|e| ParseError(format!("data is not a list of status changes: {e}")))?;
    let documents: Vec<(String, Option<String>)> = changes
        .iter()
        .filter_map(|c| {
            let (kind, id) = resource(c.resource_uri.as_deref()?)?;
            (kind == "document").then(|| (id.to_owned(), c.timestamp.clone()))
        })
        .collect();
    Ok(changes
        .iter()
        .filter_map(|change| change_event(change, &documents))
        .collect())
}

/// The event of one status change of the batch (`None` for a change of anything else);
/// `documents` are the batch's documents with the time of their change, to find a signer's.
fn change_event(change: &Change, documents: &[(String, Option<String>)]) -> Option<SigningEvent> {
    if change.name.as_deref() != Some("status") {
        return None;
    }
    let (kind, id) = change.resource_uri.as_deref().and_then(resource)?;
    let code = match &change.value {
        Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(-1),
        Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(-1),
        _ => -1,
    };
    let at = change.timestamp.as_deref().and_then(utc);
    let stamp = at.map_or(0, |t| t.timestamp());
    let (process_key, status, signees, entry) = match kind {
        "document" => {
            let (word, status) = document_status(code);
            let entry = ActivityEntry {
                key: format!("{word}:{code}"),
                signee_key: None,
                status: word.to_owned(),
                description: format!("Document status {code}. Document: {id}."),
                file_name: None,
                created_at: at,
                created_by: "Legalesign".to_owned(),
            };
            (id.to_owned(), status, Vec::new(), entry)
        }
        "signer" => {
            let process_key = documents
                .iter()
                .find(|(_, t)| t.is_some() && *t == change.timestamp)
                .or_else(|| (documents.len() == 1).then(|| &documents[0]))
                .map_or_else(|| format!("signer:{id}"), |(doc, _)| doc.clone());
            let word = signer_status(code);
            let entry = ActivityEntry {
                key: format!("{word}:{id}:{code}:{stamp}"),
                signee_key: Some(id.to_owned()),
                status: word.to_owned(),
                description: format!("Signer status {code}. Signer: {id}."),
                file_name: None,
                created_at: at,
                created_by: "Legalesign".to_owned(),
            };
            let signee = Signee {
                key: id.to_owned(),
                signed: code == 40,
                signed_at: if code == 40 { at } else { None },
                ..Signee::default()
            };
            (process_key, None, vec![signee], entry)
        }
        _ => return None,
    };
    Some(SigningEvent {
        process_key,
        status,
        occurred_at: at,
        flow_key: None,
        flow_name: None,
        company_key: None,
        signees,
        documents: Vec::new(),
        activity: vec![entry],
        metadata: serde_json::Map::new(),
    })
}

/// Parses an "upon event" callback: the document is signed and its final PDF exists.
pub fn parse_event(body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
    let mut fields = serde_json::Map::new();
    for (name, value) in event_form(body).map_err(|e| ParseError(e.to_owned()))? {
        fields.insert(name, value.into());
    }
    let uuid = fields
        .get("uuid")
        .and_then(|v| v.as_str())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ParseError("no uuid field".to_owned()))?
        .to_owned();
    let name = fields
        .get("name")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let entry = ActivityEntry {
        key: "FinalPdfCreated".to_owned(),
        signee_key: None,
        status: "FinalPdfCreated".to_owned(),
        description: format!("Document signed; final PDF created. Document: {uuid}."),
        file_name: name.clone(),
        created_at: None,
        created_by: "Legalesign".to_owned(),
    };
    // The final PDF: Legalesign's API serves it at /pdf/<uuid>/ (downloaded by the worker when
    // the source has an API configured).
    let mut signed = Document::new(DocumentKind::Signed);
    signed.reference_id = Some(uuid.clone());
    signed.content_type = Some("application/pdf".to_owned());
    signed.file_name = name.as_ref().map(|n| format!("{n}.pdf"));
    signed.fetch = Some(format!("/pdf/{uuid}/"));
    // Its `hash_value` ("SHA256 checksum of final doc, use this to validate your final PDF
    // download"): the download is checked against it.
    signed.digest_from = Some(format!("/document/{uuid}/"));
    Ok(vec![SigningEvent {
        process_key: uuid,
        status: Some(ProcessStatus::Completed),
        occurred_at: None,
        flow_key: fields
            .get("group")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        flow_name: name,
        company_key: None,
        signees: Vec::new(),
        documents: vec![signed],
        activity: vec![entry],
        metadata: fields,
    }])
}

/// One document of Legalesign's API (`GET /document/`, `GET /document/{uuid}/`).
#[derive(Deserialize)]
struct ApiDocument {
    uuid: Option<String>,
    name: Option<String>,
    group: Option<String>,
    resource_uri: Option<String>,
    status: Option<serde_json::Value>,
    tag: Option<String>,
    modified: Option<String>,
}

impl ApiDocument {
    /// The document's status code (`10` … `50`), a number or its text.
    fn status_code(&self) -> Option<i64> {
        match &self.status {
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct ApiList {
    meta: Option<ApiMeta>,
    objects: Vec<ApiDocument>,
}

#[derive(Deserialize)]
struct ApiMeta {
    limit: Option<u64>,
    offset: Option<u64>,
    total_count: Option<u64>,
}

/// The documents of an answer: a list (`{"meta", "objects"}`) or one document.
fn api_documents(answer: &[u8]) -> Result<Vec<ApiDocument>, String> {
    if let Ok(list) = serde_json::from_slice::<ApiList>(answer) {
        return Ok(list.objects);
    }
    serde_json::from_slice::<ApiDocument>(answer)
        .map(|d| vec![d])
        .map_err(|e| format!("not a Legalesign document list: {e}"))
}

/// Legalesign's signed status (a document's `30`).
const SIGNED: i64 = 30;

/// The final PDF's sha256 in a document (`GET /document/{docId}/`): `hash_value` as 64 hex
/// digits or the base64 of 32 bytes; `None` when it is absent, null, empty or Python's `None`
/// (Legalesign's own example of an unsigned document shows that).
fn stated_digest(answer: &[u8]) -> Result<Option<[u8; 32]>, String> {
    use base64::Engine as _;
    #[derive(Deserialize)]
    struct DocumentHash {
        hash_value: Option<String>,
    }
    let document: DocumentHash = serde_json::from_slice(answer)
        .map_err(|e| format!("GET /document/: not a document ({e})"))?;
    let Some(text) = document
        .hash_value
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && h != "None")
    else {
        return Ok(None);
    };
    let bytes = crate::support::decode_hex(&text)
        .filter(|b| b.len() == 32)
        .or_else(|| {
            base64::engine::general_purpose::STANDARD
                .decode(&text)
                .ok()
                .filter(|b| b.len() == 32)
        })
        .ok_or_else(|| format!("hash_value {text:?} is not a SHA256 (64 hex digits or base64)"))?;
    Ok(Some(bytes.try_into().expect("32 bytes")))
}

/// `GET /document/` for `group`'s documents modified since `from` (of `status` only, where
/// given), 100 a page from the first.
fn document_list(group: &str, status: Option<i64>, from: chrono::DateTime<chrono::Utc>) -> String {
    // cache=1: Legalesign's fast path for syncing ("combine your callback with an overnight
    // sync … use the /document/ endpoint and the special query parameter ?cache=1").
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("cache", "1").append_pair("group", group);
    if let Some(status) = status {
        query.append_pair("status", &status.to_string());
    }
    let query = query
        .append_pair(
            "modified_gt",
            &from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
        .append_pair("nosigners", "1")
        .append_pair("limit", "100")
        .append_pair("offset", "0")
        .finish();
    format!("/document/?{query}")
}

/// Legalesign's reconciliation, for "upon event" sources: its signed documents (`/document/?
/// status=30` in the configured group) whose signed callback the archive lacks become that
/// callback, which downloads the final PDF like a real one.
pub struct LegalesignReconcile;

impl crate::Reconcile for LegalesignReconcile {
    fn process_path(&self, process_key: &str) -> String {
        format!("/document/{}/", crate::support::path_segment(process_key))
    }

    fn discovery_path(
        &self,
        scope: Option<&str>,
        from: chrono::DateTime<chrono::Utc>,
        _to: chrono::DateTime<chrono::Utc>,
    ) -> Option<String> {
        Some(document_list(scope?, Some(SIGNED), from))
    }

    fn next_path(&self, path: &str, answer: &[u8]) -> Option<String> {
        let meta = serde_json::from_slice::<ApiList>(answer).ok()?.meta?;
        let (limit, offset, total) = (meta.limit?, meta.offset.unwrap_or(0), meta.total_count?);
        let next = offset.checked_add(limit)?;
        if limit == 0 || next >= total {
            return None;
        }
        let (route, query) = path.split_once('?')?;
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| {
                let v = if k == "offset" {
                    next.to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        Some(format!("{route}?{query}"))
    }

    fn processes(&self, answer: &[u8]) -> Result<Vec<String>, String> {
        Ok(api_documents(answer)?
            .into_iter()
            .filter_map(|d| d.uuid.filter(|u| !u.is_empty()))
            .collect())
    }

    fn gaps(
        &self,
        answer: &[u8],
        known: &std::collections::HashMap<String, std::collections::HashSet<String>>,
    ) -> Result<Vec<crate::Gap>, String> {
        let mut gaps = Vec::new();
        for document in api_documents(answer)? {
            let signed = document.status_code() == Some(SIGNED);
            let Some(uuid) = document.uuid.filter(|u| !u.is_empty()) else {
                continue;
            };
            let recorded = known
                .get(&uuid)
                .is_some_and(|keys| keys.contains("FinalPdfCreated"));
            if !signed || recorded {
                continue;
            }
            // The "upon event" callback Legalesign would have sent.
            let resource_uri = document
                .resource_uri
                .clone()
                .unwrap_or_else(|| format!("/api/v1/document/{uuid}/"));
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("resource_uri", &resource_uri);
            if let Some(group) = &document.group {
                form.append_pair("group", group);
            }
            if let Some(name) = &document.name {
                form.append_pair("name", name);
            }
            form.append_pair("uuid", &uuid);
            if let Some(tag) = document.tag.as_deref().filter(|t| !t.is_empty()) {
                form.append_pair("tag", tag);
            }
            gaps.push(crate::Gap {
                unknown_process: !known.contains_key(&uuid),
                process_key: uuid,
                missing: vec!["FinalPdfCreated".to_owned()],
                body: form.finish().into_bytes(),
                event_type: "signed",
            });
        }
        Ok(gaps)
    }
}

/// Legalesign's reconciliation for "all" callback sources: every document of the configured
/// group modified within `look_back` (`/document/`, any status), and each known document not in
/// a final state (`/document/{uuid}/`). A document whose current status the archive lacks — its
/// `<Word>:<code>` entry (`Completed:30`, `Removed:40`, `Rejected:50`, …), or the document at all
/// — becomes the status change the "all" callback would have sent: `data` of one change, no
/// `signed` (nothing verifies a reconciled message: the worker takes it from the API).
pub struct LegalesignAllReconcile;

impl crate::Reconcile for LegalesignAllReconcile {
    fn process_path(&self, process_key: &str) -> String {
        LegalesignReconcile.process_path(process_key)
    }

    fn discovery_path(
        &self,
        scope: Option<&str>,
        from: chrono::DateTime<chrono::Utc>,
        _to: chrono::DateTime<chrono::Utc>,
    ) -> Option<String> {
        Some(document_list(scope?, None, from))
    }

    fn next_path(&self, path: &str, answer: &[u8]) -> Option<String> {
        LegalesignReconcile.next_path(path, answer)
    }

    fn processes(&self, answer: &[u8]) -> Result<Vec<String>, String> {
        LegalesignReconcile.processes(answer)
    }

    fn gaps(
        &self,
        answer: &[u8],
        known: &std::collections::HashMap<String, std::collections::HashSet<String>>,
    ) -> Result<Vec<crate::Gap>, String> {
        let mut gaps = Vec::new();
        for document in api_documents(answer)? {
            let (Some(uuid), Some(code)) = (
                document.uuid.clone().filter(|u| !u.is_empty()),
                document.status_code(),
            ) else {
                continue;
            };
            let (word, Some(_)) = document_status(code) else {
                continue;
            };
            let entry = format!("{word}:{code}");
            let unknown_process = !known.contains_key(&uuid);
            if known.get(&uuid).is_some_and(|keys| keys.contains(&entry)) {
                continue;
            }
            let resource_uri = document
                .resource_uri
                .clone()
                .unwrap_or_else(|| format!("/api/v1/document/{uuid}/"));
            let data = serde_json::json!([{"resource_uri": resource_uri, "name": "status",
                "value": code.to_string(), "timestamp": document.modified}]);
            let body = form_urlencoded::Serializer::new(String::new())
                .append_pair("data", &data.to_string())
                .finish()
                .into_bytes();
            gaps.push(crate::Gap {
                process_key: uuid,
                unknown_process,
                missing: vec![entry],
                body,
                event_type: "status",
            });
        }
        Ok(gaps)
    }
}

/// Legalesign's "all" callback in the provider registry.
pub struct Legalesign;

/// Legalesign's "upon event" callback in the provider registry.
pub struct LegalesignEvent;

impl Verify for AllVerifier {
    fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        AllVerifier::verify(self, request)
    }

    /// The certificate's `notAfter` (Legalesign's: 2033).
    fn expires_at(&self) -> Option<std::time::SystemTime> {
        Some(self.not_after)
    }
}

/// An "upon event" source's verifier: its URL tokens.
struct EventVerifier {
    secrets: Vec<Secret>,
}

impl Verify for EventVerifier {
    fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        verify_event(request, &self.secrets)
    }
}

impl Provider for Legalesign {
    fn name(&self) -> &'static str {
        "legalesign"
    }

    fn settings(&self) -> &'static [Setting] {
        &[Setting::Certificate, Setting::Api, Setting::Reconcile]
    }

    /// As the "upon event" callback's: `Authorization: ApiKey <username>:<secret>`.
    fn api_authorization(&self, credentials: &[u8]) -> Option<String> {
        LegalesignEvent.api_authorization(credentials)
    }

    fn reconcile(&self) -> Option<&'static dyn crate::Reconcile> {
        Some(&LegalesignAllReconcile)
    }

    fn verifier(&self, source: &SourceConfig) -> Result<Box<dyn Verify>, String> {
        Ok(Box::new(AllVerifier::from_config(source)?))
    }

    fn parse(&self, body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
        parse(body)
    }

    fn default_max_body_bytes(&self) -> Option<usize> {
        Some(DEFAULT_MAX_BODY_BYTES)
    }

    /// The batch's id is the sha256 of the signed `data`.
    fn resends_reencoded(&self) -> bool {
        true
    }

    fn sample(&self, source: &SourceConfig, private_key: Option<&str>) -> Result<Sample, String> {
        let key = private_key.ok_or_else(|| crate::support::needs_private_key(source))?;
        let document = crate::support::sample_id();
        let signer = crate::support::sample_id();
        // Legalesign writes UTC times without a zone.
        let now = Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
        let data = serde_json::json!([
            {"timestamp": now, "name": "status", "value": "40", "resource_uri": format!("/api/v1/signer/{signer}/")},
            {"timestamp": now, "name": "status", "value": "30", "resource_uri": format!("/api/v1/document/{document}/")},
        ])
        .to_string();
        Ok(Sample {
            path_token: None,
            query: None,
            body: signed_form(key, &data)?.into_bytes(),
            content_type: FORM,
            headers: Vec::new(),
            process_key: document,
        })
    }
}

impl Provider for LegalesignEvent {
    fn name(&self) -> &'static str {
        "legalesign_event"
    }

    fn settings(&self) -> &'static [Setting] {
        &[Setting::Secrets, Setting::Api, Setting::Reconcile]
    }

    /// A URL token: whoever has seen the URL can send any body.
    fn proves_content(&self) -> bool {
        false
    }

    fn state_path(&self, process_key: &str) -> Option<String> {
        Some(format!(
            "/document/{}/",
            crate::support::path_segment(process_key)
        ))
    }

    /// `GET /document/{docId}/`'s `status` (DocumentStatusEnum): 30 signed → completed; 40
    /// removed, 50 rejected → canceled; 10 created, 20 fields completed → created.
    fn api_state(
        &self,
        status: u16,
        body: &[u8],
        _now: i64,
    ) -> Result<Option<ProcessStatus>, String> {
        #[derive(Deserialize)]
        struct DocumentStatus {
            status: Option<i64>,
        }
        if status != 200 {
            return Ok(None);
        }
        let document: DocumentStatus = serde_json::from_slice(body)
            .map_err(|e| format!("GET /document/: not a document ({e})"))?;
        Ok(match document.status {
            Some(30) => Some(ProcessStatus::Completed),
            Some(40 | 50) => Some(ProcessStatus::Canceled),
            Some(10 | 20) => Some(ProcessStatus::Created),
            _ => None,
        })
    }

    fn verifier(&self, source: &SourceConfig) -> Result<Box<dyn Verify>, String> {
        check_event_config(source)?;
        Ok(Box::new(EventVerifier {
            secrets: source.secrets.clone(),
        }))
    }

    fn parse(&self, body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
        parse_event(body)
    }

    /// Legalesign's API key scheme: `Authorization: ApiKey <username>:<secret>`, the credentials
    /// being `username:secret`.
    fn api_authorization(&self, credentials: &[u8]) -> Option<String> {
        Some(format!(
            "ApiKey {}",
            String::from_utf8_lossy(credentials).trim()
        ))
    }

    fn reconcile(&self) -> Option<&'static dyn crate::Reconcile> {
        Some(&LegalesignReconcile)
    }

    /// `GET /document/{docId}/`'s `hash_value`: the final PDF's SHA256, as hex (or base64);
    /// absent, null or empty before the document is final.
    fn stated_digest(&self, answer: &[u8]) -> Result<Option<[u8; 32]>, String> {
        stated_digest(answer)
    }

    fn default_max_body_bytes(&self) -> Option<usize> {
        Some(DEFAULT_MAX_BODY_BYTES)
    }

    fn takes_url_token(&self) -> bool {
        true
    }

    fn sample(&self, source: &SourceConfig, _private_key: Option<&str>) -> Result<Sample, String> {
        let token = crate::support::first_secret(source)?;
        let token = std::str::from_utf8(token.expose())
            .map_err(|_| "the URL token is not UTF-8".to_owned())?
            .to_owned();
        let document = crate::support::sample_id();
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("resource_uri", &format!("/api/v1/document/{document}/"))
            .append_pair("group", "/api/v1/group/sample/")
            .append_pair("name", "Sample agreement")
            .append_pair("uuid", &document)
            .append_pair("tag", "countersign-sample")
            .finish();
        Ok(Sample {
            path_token: Some(token),
            query: None,
            body: body.into_bytes(),
            content_type: FORM,
            headers: Vec::new(),
            process_key: document,
        })
    }
}

const FORM: &str = "application/x-www-form-urlencoded";

/// Signs `data` as Legalesign does (RSA PKCS#1 v1.5, SHA-1) with a PKCS#8 PEM private key and
/// returns the form body `data=...&signed=...`; for tests and tools.
pub fn signed_form(private_key_pem: &str, data: &str) -> Result<String, String> {
    use rsa::pkcs8::DecodePrivateKey as _;
    use rsa::signature::{SignatureEncoding as _, Signer as _};
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(private_key_pem).map_err(|e| e.to_string())?;
    let signature = rsa::pkcs1v15::SigningKey::<sha1::Sha1>::new(key).sign(data.as_bytes());
    Ok(form_urlencoded::Serializer::new(String::new())
        .append_pair("data", data)
        .append_pair("signed", &BASE64.encode(signature.to_vec()))
        .finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoHeaders;
    use std::path::PathBuf;
    use std::time::SystemTime;

    /// A key and a self-signed certificate made by `openssl` for this test.
    struct Pki {
        dir: PathBuf,
        key: String,
    }

    impl Pki {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!(
                "legalesign-{}-{}",
                std::process::id(),
                SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let status = std::process::Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    "/CN=legalesign-test",
                    "-days",
                    "2",
                    "-keyout",
                ])
                .arg(dir.join("key.pem"))
                .arg("-out")
                .arg(dir.join("cert.pem"))
                .stderr(std::process::Stdio::null())
                .status()
                .expect("openssl runs");
            assert!(status.success());
            let key = std::fs::read_to_string(dir.join("key.pem")).unwrap();
            Self { dir, key }
        }

        fn source(&self) -> SourceConfig {
            SourceConfig {
                name: "uk".into(),
                provider: "legalesign".into(),
                secrets: Vec::new(),
                max_body_bytes: None,
                max_signature_age: None,
                jwks: None,
                certificate: Some(self.dir.join("cert.pem")),
                allow_ips: Vec::new(),
                api: None,
                reconcile: crate::settings::ReconcileConfig::default(),
            }
        }
    }

    impl Drop for Pki {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    const DATA: &str = r#"[{"timestamp": "2018-03-20T07:09:52", "name": "status", "value": "40", "resource_uri": "/api/v1/signer/sig-1/"}, {"timestamp": "2018-03-20T07:09:52", "name": "status", "value": "30", "resource_uri": "/api/v1/document/doc-1/"}]"#;

    fn verify(verifier: &AllVerifier, body: &str) -> Result<Verified, Rejection> {
        verifier.verify(&Request {
            body: body.as_bytes(),
            headers: &NoHeaders,
            received_at: SystemTime::now(),
            path_token: None,
            query: None,
        })
    }

    #[test]
    fn a_signed_batch_verifies_and_a_flipped_byte_fails() {
        let pki = Pki::new();
        let verifier = AllVerifier::from_config(&pki.source()).expect("certificate loads");
        let body = signed_form(&pki.key, DATA).unwrap();
        let ok = verify(&verifier, &body).expect("genuine");
        assert_eq!(ok.event_type, "all");
        assert_eq!(
            ok.event_id,
            Some(hex(&Sha256::digest(DATA.as_bytes()))),
            "the id is the content's"
        );

        let tampered_data = signed_form(&pki.key, DATA).unwrap().replacen("40", "41", 1);
        assert_eq!(
            verify(&verifier, &tampered_data).unwrap_err(),
            Rejection::BadSignature,
            "a byte of data"
        );

        let (data_part, signed_part) = body.split_once("&signed=").unwrap();
        let signed = form_urlencoded::parse(format!("signed={signed_part}").as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned();
        let mut raw = BASE64.decode(&signed).unwrap();
        raw[7] ^= 1;
        let tampered_signature = format!(
            "{data_part}&{}",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("signed", &BASE64.encode(raw))
                .finish()
        );
        assert_eq!(
            verify(&verifier, &tampered_signature).unwrap_err(),
            Rejection::BadSignature,
            "a byte of signed"
        );

        let unsigned = form_urlencoded::Serializer::new(String::new())
            .append_pair("data", DATA)
            .finish();
        assert_eq!(
            verify(&verifier, &unsigned).unwrap_err(),
            Rejection::Unsigned
        );
        assert_eq!(verify(&verifier, "hello").unwrap_err().status(), 400);

        let other = Pki::new();
        let foreign = signed_form(&other.key, DATA).unwrap();
        assert_eq!(
            verify(&verifier, &foreign).unwrap_err(),
            Rejection::BadSignature,
            "another key"
        );
    }

    #[test]
    fn an_all_source_reconciles_every_document_status_it_lacks() {
        use crate::Reconcile;
        let document: serde_json::Value = serde_json::from_slice(&crate::testing::fixture(
            "legalesign",
            "DocumentResponse.json",
        ))
        .unwrap();
        let with = |uuid: &str, status: i64| {
            let mut d = document.clone();
            d["uuid"] = uuid.into();
            d["resource_uri"] = format!("/api/v1/document/{uuid}/").into();
            d["status"] = status.into();
            d["modified"] = "2026-12-07T10:00:00".into();
            d
        };
        let list = serde_json::to_vec(&serde_json::json!({
            "meta": {"limit": 100, "offset": 0, "total_count": 5, "next": null, "previous": null},
            "objects": [with("d-sent", 10), with("d-signed", 30), with("d-removed", 40),
                        with("d-rejected", 50), with("d-odd", 99)]}))
        .unwrap();
        let from = chrono::DateTime::<Utc>::from_timestamp(1_796_000_000, 0).unwrap();
        let path = LegalesignAllReconcile
            .discovery_path(Some("/api/v1/group/g/"), from, from)
            .unwrap();
        assert!(!path.contains("status="), "every status: {path}");
        assert!(path.contains("group=%2Fapi%2Fv1%2Fgroup%2Fg%2F"), "{path}");
        assert_eq!(
            LegalesignAllReconcile.discovery_path(None, from, from),
            None
        );

        let known = std::collections::HashMap::from([(
            "d-signed".to_owned(),
            std::collections::HashSet::from(["Completed:30".to_owned()]),
        )]);
        let gaps = LegalesignAllReconcile.gaps(&list, &known).unwrap();
        let found: Vec<(&str, Option<ProcessStatus>)> = gaps
            .iter()
            .map(|g| {
                let events = parse(&g.body).expect("the \"all\" parser reads a gap");
                assert_eq!(events.len(), 1);
                assert_eq!(events[0].activity[0].key, g.missing[0]);
                (g.process_key.as_str(), events[0].status)
            })
            .collect();
        assert_eq!(
            found,
            [
                ("d-sent", Some(ProcessStatus::Created)),
                ("d-removed", Some(ProcessStatus::Canceled)),
                ("d-rejected", Some(ProcessStatus::Canceled)),
            ]
        );
        assert!(gaps.iter().all(|g| g.unknown_process));
        assert_eq!(
            Legalesign.api_authorization(b"u:s").as_deref(),
            Some("ApiKey u:s")
        );
    }

    #[test]
    fn a_batch_becomes_one_event_per_status_change() {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("data", DATA)
            .finish();
        let events = parse(body.as_bytes()).unwrap();
        assert_eq!(events.len(), 2);
        let signer = &events[0];
        assert_eq!(
            signer.process_key, "doc-1",
            "a signer's change goes to its batch's document"
        );
        assert!(signer.signees[0].signed);
        assert_eq!(signer.activity[0].status, "SigneeSigned");
        assert_eq!(
            signer.occurred_at.map(|t| t.to_rfc3339()).as_deref(),
            Some("2018-03-20T07:09:52+00:00"),
            "no zone means UTC"
        );
        let document = &events[1];
        assert_eq!(document.process_key, "doc-1");
        assert_eq!(document.status, Some(ProcessStatus::Completed));
        assert!(parse(b"data=not-json").is_err());
    }

    #[test]
    fn the_event_callback_is_authenticated_by_its_url_token() {
        let secrets = vec![Secret::new("env:TOKEN", "s3cret-token")];
        let body = b"resource_uri=%2Fapi%2Fv1%2Fdocument%2Fdoc-9%2F&group=%2Fapi%2Fv1%2Fgroup%2Fg%2F&name=NDA&uuid=doc-9&tag=t";
        let request = |token| Request {
            body,
            headers: &NoHeaders,
            received_at: SystemTime::now(),
            path_token: token,
            query: None,
        };
        let ok = verify_event(&request(Some("s3cret-token")), &secrets).expect("right token");
        assert_eq!(ok.event_id.as_deref(), Some("doc-9:signed"));
        assert_eq!(
            verify_event(&request(Some("s3cret-tokem")), &secrets).unwrap_err(),
            Rejection::BadSignature
        );
        assert_eq!(
            verify_event(&request(None), &secrets).unwrap_err(),
            Rejection::Unsigned
        );
        let event = parse_event(body).unwrap().remove(0);
        assert_eq!(event.process_key, "doc-9");
        assert_eq!(event.status, Some(ProcessStatus::Completed));
        assert_eq!(event.metadata["tag"], "t");
    }

    /// Issue 12: a captured batch plus a junk field verified (and was parked as a conflicting
    /// body); with two `data` fields the verifier checked the last while the archive began with
    /// the first. Unknown and repeated fields are refused, by the verifier and the parser alike.
    #[test]
    fn extra_and_repeated_fields_of_a_batch_are_refused() {
        let pki = Pki::new();
        let verifier = AllVerifier::from_config(&pki.source()).expect("certificate loads");
        let genuine = signed_form(&pki.key, DATA).unwrap();
        let forged_data = form_urlencoded::Serializer::new(String::new())
            .append_pair("data", "[]")
            .finish();
        for body in [
            format!("{genuine}&padding={}", "x".repeat(1000)),
            format!("{forged_data}&{genuine}"),
            format!("{genuine}&{forged_data}"),
            format!("{genuine}&signed=AAAA"),
        ] {
            let refused = verify(&verifier, &body).unwrap_err();
            assert_eq!(refused.status(), 400, "{refused}");
            assert!(parse(body.as_bytes()).is_err(), "the parser agrees");
        }
        assert!(verify(&verifier, &genuine).is_ok());
    }

    /// Issue 12: `uuid=A&name=x&uuid=B` was accepted as `A:signed` but recorded as process `B`,
    /// so the genuine callback for `A` was later parked. Repeated fields, unknown fields and ids
    /// that are not Legalesign's format (a newline forged a log line) are refused.
    #[test]
    fn the_event_callback_reads_each_field_once() {
        let secrets = vec![Secret::new("env:TOKEN", "s3cret-token")];
        let check = |body: &[u8]| {
            verify_event(
                &Request {
                    body,
                    headers: &NoHeaders,
                    received_at: SystemTime::now(),
                    path_token: Some("s3cret-token"),
                    query: None,
                },
                &secrets,
            )
        };
        for body in [
            &b"uuid=doc-A&name=x&uuid=doc-B"[..],
            b"uuid=doc-A&padding=x",
            b"uuid=doc-A%0A2026-01-01T00:00:00Z%20INFO%20forged",
            b"uuid=%1B%5B31mred",
            b"uuid=",
        ] {
            let refused = check(body).unwrap_err();
            assert_eq!(refused.status(), 400, "{}", String::from_utf8_lossy(body));
            assert!(parse_event(body).is_err());
        }
        let ok = check(b"uuid=doc-A&name=NDA&tag=t&event=signed").expect("known fields");
        assert_eq!(ok.event_id.as_deref(), Some("doc-A:signed"));
        assert_eq!(
            parse_event(b"uuid=doc-A&name=NDA").unwrap()[0].process_key,
            "doc-A"
        );
    }

    #[test]
    fn reconciliation_pages_the_signed_documents_and_makes_the_missing_callbacks() {
        use crate::Reconcile;
        let reconcile = LegalesignReconcile;
        let from = chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        assert_eq!(
            reconcile.discovery_path(None, from, from),
            None,
            "no group, no discovery"
        );
        let path = reconcile
            .discovery_path(Some("/api/v1/group/g/"), from, from)
            .unwrap();
        assert_eq!(
            path,
            "/document/?cache=1&group=%2Fapi%2Fv1%2Fgroup%2Fg%2F&status=30&modified_gt=2026-09-21T14%3A13%3A20Z&nosigners=1&limit=100&offset=0"
        );
        let page = |offset: u64| {
            format!(
                r#"{{"meta":{{"limit":100,"offset":{offset},"total_count":250}},"objects":[{{"uuid":"d1","status":30,"name":"A","group":"/api/v1/group/g/"}},{{"uuid":"d2","status":20}}]}}"#
            )
        };
        let next = reconcile.next_path(&path, page(0).as_bytes()).unwrap();
        assert!(next.ends_with("&offset=100"), "{next}");
        assert!(reconcile.next_path(&next, page(200).as_bytes()).is_none());
        assert_eq!(
            reconcile.processes(page(0).as_bytes()).unwrap(),
            ["d1", "d2"]
        );
        let known = std::collections::HashMap::new();
        let gaps = reconcile.gaps(page(0).as_bytes(), &known).unwrap();
        assert_eq!(gaps.len(), 1, "only the signed document");
        assert!(gaps[0].unknown_process);
        let events = parse_event(&gaps[0].body).expect("the callback's own parser reads it");
        assert_eq!(events[0].process_key, "d1");
        assert_eq!(events[0].documents[0].fetch.as_deref(), Some("/pdf/d1/"));
        let recorded = std::collections::HashMap::from([(
            "d1".to_owned(),
            std::collections::HashSet::from(["FinalPdfCreated".to_owned()]),
        )]);
        assert!(
            reconcile
                .gaps(page(0).as_bytes(), &recorded)
                .unwrap()
                .is_empty()
        );
        // One document, as /document/{uuid}/ answers.
        let one = br#"{"uuid":"d3","status":30}"#;
        assert_eq!(reconcile.gaps(one, &known).unwrap()[0].process_key, "d3");
    }

    #[test]
    fn the_documents_hash_value_is_its_final_pdfs_sha256() {
        use base64::Engine as _;
        let example: serde_json::Value = serde_json::from_slice(&crate::testing::fixture(
            "legalesign",
            "DocumentResponse.json",
        ))
        .unwrap();
        let with = |hash: serde_json::Value| {
            let mut document = example.clone();
            document["hash_value"] = hash;
            LegalesignEvent.stated_digest(&serde_json::to_vec(&document).unwrap())
        };
        // The OpenAPI example (an unsigned document) states none.
        assert_eq!(
            LegalesignEvent.stated_digest(&serde_json::to_vec(&example).unwrap()),
            Ok(None)
        );
        assert_eq!(with(serde_json::Value::Null), Ok(None));
        assert_eq!(with("".into()), Ok(None));
        let digest = [0xabu8; 32];
        assert_eq!(with(crate::hex(&digest).into()), Ok(Some(digest)));
        assert_eq!(
            with(crate::hex(&digest).to_uppercase().into()),
            Ok(Some(digest))
        );
        let base64 = base64::engine::general_purpose::STANDARD.encode(digest);
        assert_eq!(with(base64.into()), Ok(Some(digest)));
        assert!(with("abcd".into()).is_err(), "too short to be a SHA256");
        assert!(LegalesignEvent.stated_digest(b"[]").is_err());
        // The signed callback names where its hash_value is.
        let events = LegalesignEvent
            .parse(b"resource_uri=%2Fapi%2Fv1%2Fdocument%2Fd1%2F&group=%2Fapi%2Fv1%2Fgroup%2Fg%2F&name=NDA&uuid=d1")
            .unwrap();
        assert_eq!(
            events[0].documents[0].digest_from.as_deref(),
            Some("/document/d1/")
        );
    }

    #[test]
    fn the_documents_status_is_its_state() {
        let example: serde_json::Value = serde_json::from_slice(&crate::testing::fixture(
            "legalesign",
            "DocumentResponse.json",
        ))
        .unwrap();
        assert_eq!(
            LegalesignEvent.state_path("d 1").as_deref(),
            Some("/document/d%201/")
        );
        crate::testing::assert_api_states_in(
            &LegalesignEvent,
            &example,
            "status",
            &[
                (30.into(), Some(ProcessStatus::Completed)),
                (40.into(), Some(ProcessStatus::Canceled)),
                (50.into(), Some(ProcessStatus::Canceled)),
                (10.into(), Some(ProcessStatus::Created)),
                (20.into(), Some(ProcessStatus::Created)),
                (99.into(), None),
            ],
        );
        assert_eq!(LegalesignEvent.api_state(404, b"{}", 0), Ok(None));
        assert!(LegalesignEvent.api_state(200, b"[]", 0).is_err());
    }
}
