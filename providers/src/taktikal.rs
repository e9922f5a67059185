//! Taktikal (Iceland): the signature sits inside the JSON body.
//!
//! What the provider signs, what this module verifies and relies on, the provider's API as the
//! worker uses it, and where each fact comes from: `docs/providers/taktikal.md` (one page per provider).

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::Sha256;

use chrono::{DateTime, Utc};

use crate::event::{
    ActivityEntry, Document, DocumentKind, ParseError, ProcessStatus, Signee, SigningEvent,
};
use crate::settings::{Secret, Setting, SourceConfig};
use crate::support::{is_json_object, sample_id};
use crate::{Provider, Rejection, Request, Sample, SignatureUse, Verified, Verify};

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
        let not_an_object = Rejection::Unacceptable {
            status: STOP_RETRYING,
            reason: "body is not a Taktikal webhook (JSON object expected)",
        };
        // serde reads a struct from a JSON array too (`[]` would be an envelope with no fields,
        // hence "unsigned"): only an object is a Taktikal webhook.
        if !is_json_object(request.body) {
            return Err(not_an_object);
        }
        let envelope: Envelope<'_> =
            serde_json::from_slice(request.body).map_err(|_| not_an_object)?;
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
        let valid_until = signed_at
            .checked_add(self.max_age)
            .ok_or(Rejection::Stale)?;
        let latest = request
            .received_at
            .checked_add(crate::FUTURE_SKEW)
            .unwrap_or(request.received_at);
        if request.received_at > valid_until || signed_at > latest {
            return Err(Rejection::Stale);
        }

        Ok(Verified {
            key_label: secrets[key].label().to_owned(),
            event_id: envelope.id.as_ref().and_then(id_text),
            event_type: envelope
                .event_data
                .and_then(|d| d.event_type)
                .as_ref()
                .map_or(Cow::Borrowed("Unknown"), event_type_name),
            signature_use: Some(SignatureUse {
                id: signed.into_bytes(),
                valid_until,
                content_digest: None,
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

/// The signed identity of a body's signature (`TimeStamp + Guid`), for checking across replicas
/// that a signature never carries two bodies. `None` when the body has no usable signature.
pub fn signature_id(body: &[u8]) -> Option<String> {
    if !is_json_object(body) {
        return None;
    }
    let envelope: Envelope<'_> = serde_json::from_slice(body).ok()?;
    let fields = envelope.signature?;
    let digits = ticks_digits(fields.timestamp?.get())?;
    Some(format!("{digits}{}", fields.guid?))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Payload {
    #[serde(default)]
    event_data: Option<EventData>,
    #[serde(default)]
    event_signature: Option<serde_json::Value>,
    /// Only in an ActivityLog process (the reconciliation's messages).
    #[serde(default, rename = "activityLog")]
    activity_log: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct EventData {
    process_key: Option<String>,
    company_key: Option<String>,
    flow_key: Option<String>,
    flow_name: Option<String>,
    signees: Option<Vec<SigneeData>>,
    signed_document: Option<String>,
    signed_document_download_url: Option<String>,
    attachments: Option<Vec<AttachmentData>>,
    attachment_references: Option<Vec<ReferenceData>>,
    event_type: Option<serde_json::Value>,
    meta: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct SigneeData {
    key: Option<String>,
    name: Option<String>,
    ssn: Option<String>,
    phone_number: Option<String>,
    email: Option<String>,
    address: Option<String>,
    postal_code: Option<String>,
    city: Option<String>,
    signed: Option<bool>,
    signed_at: Option<String>,
    process_key: Option<String>,
    communication_delivery_type: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct AttachmentData {
    file_name: Option<String>,
    file_content: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ReferenceData {
    id: Option<String>,
    file_name: Option<String>,
    content_length: Option<i64>,
    content_type: Option<String>,
    url: Option<String>,
    description: Option<String>,
    attachment_type: Option<i64>,
    signee_key: Option<String>,
}

/// Who Taktikal's webhook entries are attributed to in the activity log.
const CREATED_BY: &str = "Taktikal";

/// Parses a Taktikal webhook body into one [`SigningEvent`]. Both payload generations are read:
/// embedded `Attachments[].FileContent` (older) and `AttachmentReferences[]` (current).
pub fn parse(body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
    if !is_json_object(body) {
        return Err(ParseError(
            "not a Taktikal webhook: JSON object expected".to_owned(),
        ));
    }
    let payload: Payload = serde_json::from_slice(body)
        .map_err(|e| ParseError(format!("not a Taktikal webhook: {e}")))?;
    if payload.event_data.is_none()
        && payload.event_signature.is_none()
        && payload.activity_log.is_some()
    {
        // Not a webhook (the ingester refuses any body without EventSignature): a process of the
        // ActivityLog API, as the worker's reconciliation publishes it.
        return parse_activity_process(body);
    }
    let data = payload
        .event_data
        .ok_or_else(|| ParseError("EventData is missing".to_owned()))?;
    let signees_in = data.signees.unwrap_or_default();
    let process_key = non_empty(data.process_key)
        .or_else(|| {
            signees_in
                .iter()
                .find_map(|s| non_empty(s.process_key.clone()))
        })
        .ok_or_else(|| ParseError("no ProcessKey in EventData or its Signees".to_owned()))?;
    let occurred_at = payload.event_signature.as_ref().and_then(signed_time);
    let event_type = data
        .event_type
        .as_ref()
        .map_or(Cow::Borrowed("Unknown"), event_type_name);

    let signees = signees_of(signees_in);

    let mut documents = Vec::new();
    if let Some(content) = non_empty(data.signed_document) {
        let mut document = Document::new(DocumentKind::Signed);
        document.content = Some(decode_base64("SignedDocument", &content)?);
        document.content_type = Some("application/pdf".to_owned());
        document.url = non_empty(data.signed_document_download_url);
        documents.push(document);
    }
    documents.extend(attachments_of(data.attachments.unwrap_or_default())?);
    documents.extend(
        data.attachment_references
            .unwrap_or_default()
            .into_iter()
            .map(reference_of),
    );

    let status = status_of(&event_type);
    let activity = activity_of(&event_type, &process_key, &signees, occurred_at);

    Ok(vec![SigningEvent {
        process_key,
        status,
        occurred_at,
        flow_key: non_empty(data.flow_key),
        flow_name: non_empty(data.flow_name),
        company_key: non_empty(data.company_key),
        signees,
        documents,
        activity,
        metadata: data.meta.unwrap_or_default(),
    }])
}

/// When the event happened: its signature's `TimeStamp` (.NET ticks, a number or a string).
fn signed_time(signature: &serde_json::Value) -> Option<DateTime<Utc>> {
    let ticks = match signature.get("TimeStamp")? {
        serde_json::Value::Number(n) => n.as_u64()?,
        serde_json::Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    let time = ticks_to_time(&ticks.to_string())?;
    // Checked: chrono's From<SystemTime> panics outside its range.
    let since = time.duration_since(UNIX_EPOCH).ok()?;
    DateTime::from_timestamp(i64::try_from(since.as_secs()).ok()?, since.subsec_nanos())
}

/// The event's signees (one without a key is left out).
fn signees_of(signees: Vec<SigneeData>) -> Vec<Signee> {
    signees
        .into_iter()
        .filter_map(|s| {
            Some(Signee {
                key: non_empty(s.key)?,
                name: non_empty(s.name),
                ssn: non_empty(s.ssn),
                email: non_empty(s.email),
                phone: non_empty(s.phone_number),
                address: non_empty(s.address),
                postal_code: non_empty(s.postal_code),
                city: non_empty(s.city),
                delivery_method: s.communication_delivery_type.and_then(|v| match v {
                    serde_json::Value::String(s) => non_empty(Some(s)),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }),
                signed: s.signed.unwrap_or(false),
                signed_at: s
                    .signed_at
                    .as_deref()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc)),
            })
        })
        .collect()
}

/// Attachments sent with their content (the older payloads), decoded; one without content is
/// left out.
fn attachments_of(attachments: Vec<AttachmentData>) -> Result<Vec<Document>, ParseError> {
    let mut documents = Vec::new();
    for (i, attachment) in attachments.into_iter().enumerate() {
        let Some(content) = non_empty(attachment.file_content) else {
            continue;
        };
        let mut document = Document::new(DocumentKind::Attachment);
        document.content = Some(decode_base64(
            &format!("Attachments[{i}].FileContent"),
            &content,
        )?);
        document.content_type = Some(content_type_of(attachment.file_name.as_deref()).to_owned());
        document.file_name = non_empty(attachment.file_name);
        documents.push(document);
    }
    Ok(documents)
}

/// A file Taktikal keeps and links to (the current payloads).
fn reference_of(reference: ReferenceData) -> Document {
    let mut document = Document::new(DocumentKind::Reference);
    document.reference_id = non_empty(reference.id);
    document.file_name = non_empty(reference.file_name);
    document.content_type = non_empty(reference.content_type);
    document.url = non_empty(reference.url);
    document.declared_size = reference.content_length;
    document.attachment_type = reference.attachment_type;
    document.signee_key = non_empty(reference.signee_key);
    document.description = non_empty(reference.description);
    document
}

/// The state an event type puts the process in.
fn status_of(event_type: &str) -> Option<ProcessStatus> {
    match event_type {
        "Created" => Some(ProcessStatus::Created),
        "SignedDocument" => Some(ProcessStatus::InProgress),
        "AllSigned" => Some(ProcessStatus::AllSigned),
        "Completed" => Some(ProcessStatus::Completed),
        "Canceled" => Some(ProcessStatus::Canceled),
        "Expired" => Some(ProcessStatus::Expired),
        _ => None,
    }
}

/// The ActivityLog entries an event stands for, worded as Taktikal words its own.
fn activity_of(
    event_type: &str,
    process_key: &str,
    signees: &[Signee],
    at: Option<DateTime<Utc>>,
) -> Vec<ActivityEntry> {
    let entry =
        |key: String, signee_key: Option<&str>, status: &str, description: String, created_at| {
            ActivityEntry {
                key,
                signee_key: signee_key.map(str::to_owned),
                status: status.to_owned(),
                description,
                file_name: None,
                created_at,
                created_by: CREATED_BY.to_owned(),
            }
        };
    let signed = || {
        signees.iter().filter(|s| s.signed).map(|s| {
            entry(
                format!("SigneeSigned:{}", s.key),
                Some(&s.key),
                "SigneeSigned",
                format!(
                    "Signee signed. ProcessKey: {process_key}. Signee key: {}",
                    s.key
                ),
                s.signed_at.or(at),
            )
        })
    };
    let process =
        |status: &str, description: String| entry(status.to_owned(), None, status, description, at);
    // Events that may recur (reminders, unknown types) get the event's time in their key.
    let recurring = |status: &str| format!("{status}:{}", at.map_or(0, |t| t.timestamp_micros()));

    match event_type {
        "Created" => std::iter::once(process(
            "Created",
            format!("Signing process created. ProcessKey: {process_key}."),
        ))
        .chain(signees.iter().map(|s| {
            entry(
                format!("SigneeAdded:{}", s.key),
                Some(&s.key),
                "SigneeAdded",
                format!(
                    "Signee added. Processkey: {process_key}. Signee key: {}.",
                    s.key
                ),
                at,
            )
        }))
        .collect(),
        "SignedDocument" => signed().collect(),
        "AllSigned" | "Completed" => signed()
            .chain(std::iter::once(process(
                "Completed",
                format!("Signing completed. ProcessKey: {process_key}."),
            )))
            .collect(),
        "Canceled" => vec![process(
            "Canceled",
            format!("Signing process canceled. ProcessKey: {process_key}."),
        )],
        "Expired" => vec![process(
            "Expired",
            format!("Signing process expired. ProcessKey: {process_key}."),
        )],
        other => vec![entry(
            recurring(other),
            None,
            other,
            format!("Webhook event {other}. ProcessKey: {process_key}."),
            at,
        )],
    }
}

/// One process of Taktikal's ActivityLog API (`GET /signing/activity/{ProcessKey}`, `GET
/// /signing/activity/user/`): its log and its signees.
#[derive(Deserialize, Serialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ActivityProcess {
    pub process_key: String,
    #[serde(default)]
    pub activity_log: Vec<LogEntry>,
    #[serde(default)]
    pub signees: Vec<serde_json::Value>,
}

/// One ActivityLog entry, as the API returns it (unknown fields are dropped).
#[derive(Deserialize, Serialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signee_key: Option<String>,
    pub status: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    pub created_at: String,
    #[serde(default)]
    pub created_by: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct LogSignee {
    signee_key: Option<String>,
    ssn: Option<String>,
    name: Option<String>,
    address: Option<String>,
    postal_code: Option<String>,
    city: Option<String>,
    phone: Option<String>,
    email: Option<String>,
}

/// The projection's key of an ActivityLog entry: the key the webhook events give the same fact
/// (`Created`, `SigneeAdded:<signee>`, `SigneeSigned:<signee>`, `Completed`, …), so that an entry
/// a webhook already recorded is not recorded twice; other entries by status, signee and time.
pub fn log_entry_key(entry: &LogEntry) -> String {
    let signee = entry.signee_key.as_deref().filter(|s| !s.is_empty());
    match (entry.status.as_str(), signee) {
        ("Created" | "Completed" | "Canceled" | "Expired", _) => entry.status.clone(),
        ("SigneeAdded" | "SigneeSigned", Some(signee)) => format!("{}:{signee}", entry.status),
        (status, signee) => format!(
            "{status}:{}:{}",
            signee.unwrap_or("-"),
            entry.created_at.trim()
        ),
    }
}

/// The state a process's ActivityLog puts it in: the furthest of its entries.
fn log_status(log: &[LogEntry]) -> Option<ProcessStatus> {
    let has = |status: &str| log.iter().any(|e| e.status == status);
    if has("Completed") {
        Some(ProcessStatus::Completed)
    } else if has("Canceled") {
        Some(ProcessStatus::Canceled)
    } else if has("Expired") {
        Some(ProcessStatus::Expired)
    } else if has("SigneeSigned") {
        Some(ProcessStatus::InProgress)
    } else if has("Created") || has("Started") {
        Some(ProcessStatus::Created)
    } else {
        None
    }
}

/// The state the provider's API reports for a process, from its ActivityLog: as
/// [`log_status`], and all signed when every signee the log added has signed (`SigneeAdded`,
/// `SigneeSigned`) without a completion yet.
fn witnessed_status(log: &[LogEntry]) -> Option<ProcessStatus> {
    let keys = |status: &str| -> std::collections::HashSet<&str> {
        log.iter()
            .filter(|e| e.status == status)
            .filter_map(|e| e.signee_key.as_deref().filter(|k| !k.is_empty()))
            .collect()
    };
    match log_status(log) {
        Some(ProcessStatus::InProgress) => {
            let added = keys("SigneeAdded");
            if !added.is_empty() && added.is_subset(&keys("SigneeSigned")) {
                Some(ProcessStatus::AllSigned)
            } else {
                Some(ProcessStatus::InProgress)
            }
        }
        other => other,
    }
}

/// Parses one ActivityLog process (the reconciliation's message) into one event.
pub fn parse_activity_process(body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
    let process: ActivityProcess = serde_json::from_slice(body).map_err(|e| {
        ParseError(format!(
            "not a Taktikal webhook or ActivityLog process: {e}"
        ))
    })?;
    let process_key = non_empty(Some(process.process_key))
        .ok_or_else(|| ParseError("ActivityLog process without processKey".to_owned()))?;
    let time = |text: &str| {
        DateTime::parse_from_rfc3339(text.trim())
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    let signed_at: std::collections::HashMap<&str, Option<DateTime<Utc>>> = process
        .activity_log
        .iter()
        .filter(|e| e.status == "SigneeSigned")
        .filter_map(|e| Some((e.signee_key.as_deref()?, time(&e.created_at))))
        .collect();
    let signees = process
        .signees
        .iter()
        .filter_map(|value| serde_json::from_value::<LogSignee>(value.clone()).ok())
        .filter_map(|s| {
            let key = non_empty(s.signee_key)?;
            let signed = signed_at.get(key.as_str()).copied();
            Some(Signee {
                signed: signed.is_some(),
                signed_at: signed.flatten(),
                key,
                name: non_empty(s.name),
                ssn: non_empty(s.ssn),
                email: non_empty(s.email),
                phone: non_empty(s.phone),
                address: non_empty(s.address),
                postal_code: non_empty(s.postal_code),
                city: non_empty(s.city),
                delivery_method: None,
            })
        })
        .collect();
    let status = log_status(&process.activity_log);
    let activity: Vec<ActivityEntry> = process
        .activity_log
        .iter()
        .map(|e| ActivityEntry {
            key: log_entry_key(e),
            signee_key: e.signee_key.clone().filter(|s| !s.is_empty()),
            status: e.status.clone(),
            description: e.description.clone(),
            file_name: e.file_name.clone(),
            created_at: time(&e.created_at),
            created_by: e.created_by.clone(),
        })
        .collect();
    Ok(vec![SigningEvent {
        status,
        occurred_at: activity.iter().filter_map(|a| a.created_at).max(),
        flow_key: process
            .activity_log
            .iter()
            .find_map(|e| e.flow_key.clone())
            .filter(|f| !f.is_empty()),
        flow_name: None,
        company_key: None,
        signees,
        documents: Vec::new(),
        activity,
        metadata: serde_json::Map::new(),
        process_key,
    }])
}

/// An ActivityLog answer: an array of processes.
fn activity_answer(answer: &[u8]) -> Result<Vec<ActivityProcess>, String> {
    serde_json::from_slice(answer).map_err(|e| format!("not an ActivityLog answer: {e}"))
}

/// Taktikal's reconciliation: the ActivityLog API by process and by date range.
pub struct TaktikalReconcile;

impl crate::Reconcile for TaktikalReconcile {
    fn process_path(&self, process_key: &str) -> String {
        format!(
            "/signing/activity/{}",
            crate::support::path_segment(process_key)
        )
    }

    fn discovery_path(
        &self,
        _scope: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Option<String> {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair(
                "from",
                &from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )
            .append_pair("to", &to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .finish();
        Some(format!("/signing/activity/user/?{query}"))
    }

    fn processes(&self, answer: &[u8]) -> Result<Vec<String>, String> {
        Ok(activity_answer(answer)?
            .into_iter()
            .map(|p| p.process_key)
            .filter(|k| !k.trim().is_empty())
            .collect())
    }

    fn gaps(
        &self,
        answer: &[u8],
        known: &std::collections::HashMap<String, std::collections::HashSet<String>>,
    ) -> Result<Vec<crate::Gap>, String> {
        let processes = activity_answer(answer)?;
        let mut gaps = Vec::new();
        for mut process in processes {
            if process.process_key.trim().is_empty() {
                continue;
            }
            let known_keys = known.get(&process.process_key);
            let unknown_process = known_keys.is_none();
            if let Some(known_keys) = known_keys {
                process
                    .activity_log
                    .retain(|entry| !known_keys.contains(&log_entry_key(entry)));
            }
            if process.activity_log.is_empty() {
                continue;
            }
            let mut missing: Vec<String> = process.activity_log.iter().map(log_entry_key).collect();
            missing.sort();
            // Re-serialized through serde_json's sorted maps: the same gap is the same bytes.
            let body =
                serde_json::to_vec(&serde_json::to_value(&process).map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            gaps.push(crate::Gap {
                process_key: process.process_key,
                unknown_process,
                missing,
                body,
                event_type: "ActivityLog",
            });
        }
        Ok(gaps)
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

fn decode_base64(field: &str, text: &str) -> Result<Vec<u8>, ParseError> {
    // Some serializers wrap base64 at 76 columns.
    let result = if text.contains(['\n', '\r']) {
        BASE64.decode(text.replace(['\n', '\r'], ""))
    } else {
        BASE64.decode(text)
    };
    result.map_err(|e| ParseError(format!("{field} is not valid base64: {e}")))
}

fn content_type_of(file_name: Option<&str>) -> &'static str {
    let extension = file_name
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase());
    match extension.as_deref() {
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        Some("zip") => "application/zip",
        Some("txt") => "text/plain",
        _ => "application/octet-stream",
    }
}

/// Taktikal in the provider registry.
pub struct Taktikal;

/// Taktikal's documented example event (an AllSigned with its PDF), for samples.
const EXAMPLE: &str = include_str!("../tests/fixtures/taktikal/all_signed.json");
const EXAMPLE_PROCESS: &str = "sp231f52f87d6f4caaa2e29ecac92d055b";

/// A source's verifier with the source's secrets.
struct SourceVerifier {
    verifier: Verifier,
    secrets: Vec<Secret>,
}

impl Verify for SourceVerifier {
    fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        self.verifier.verify(request, &self.secrets)
    }
}

impl Provider for Taktikal {
    fn name(&self) -> &'static str {
        "taktikal"
    }

    fn settings(&self) -> &'static [Setting] {
        &[
            Setting::Secrets,
            Setting::MaxSignatureAge,
            Setting::Api,
            Setting::Reconcile,
        ]
    }

    fn verifier(&self, source: &SourceConfig) -> Result<Box<dyn Verify>, String> {
        check_config(source)?;
        Ok(Box::new(SourceVerifier {
            verifier: Verifier::from_config(source),
            secrets: source.secrets.clone(),
        }))
    }

    fn parse(&self, body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
        parse(body)
    }

    /// The signature covers `TimeStamp + Guid` only.
    fn signs_body(&self) -> bool {
        false
    }

    fn signature_id(&self, body: &[u8]) -> Option<String> {
        signature_id(body)
    }

    /// Taktikal's API authentication is not publicly documented: the credentials are sent as
    /// the `Authorization` value exactly as configured (`Basic …`, `Bearer …`).
    fn api_authorization(&self, credentials: &[u8]) -> Option<String> {
        Some(String::from_utf8_lossy(credentials).trim().to_owned())
    }

    fn reconcile(&self) -> Option<&'static dyn crate::Reconcile> {
        Some(&TaktikalReconcile)
    }

    /// The process's ActivityLog, `GET /signing/activity/{ProcessKey}`: a claimed final state
    /// is confirmed against what the log records.
    fn state_path(&self, process_key: &str) -> Option<String> {
        Some(crate::Reconcile::process_path(
            &TaktikalReconcile,
            process_key,
        ))
    }

    /// The furthest state of the answer's process (`Completed`, `Canceled`, `Expired` entries;
    /// every added signee signed → all signed); any status but 200, or an empty answer, is no
    /// state.
    fn api_state(
        &self,
        status: u16,
        body: &[u8],
        _now: i64,
    ) -> Result<Option<ProcessStatus>, String> {
        if status != 200 {
            return Ok(None);
        }
        let processes = activity_answer(body)
            .map_err(|e| format!("GET /signing/activity/{{ProcessKey}}: {e}"))?;
        Ok(processes
            .first()
            .and_then(|p| witnessed_status(&p.activity_log)))
    }

    fn sample(&self, source: &SourceConfig, _private_key: Option<&str>) -> Result<Sample, String> {
        let key = crate::support::first_secret(source)?;
        let process_key = format!("sp{}", sample_id());
        let text = EXAMPLE.replace(EXAMPLE_PROCESS, &process_key);
        let mut event: serde_json::Value =
            serde_json::from_str(&text).expect("the example is JSON");
        event["Id"] = sample_id().into();
        let guid = uuid::Uuid::new_v4().to_string();
        let event = with_signature(event, key.expose(), ticks_of(SystemTime::now()), &guid);
        Ok(Sample {
            path_token: None,
            query: None,
            body: serde_json::to_vec(&event).expect("JSON"),
            content_type: "application/json",
            headers: Vec::new(),
            process_key,
        })
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
    use crate::NoHeaders;

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
            path_token: None,
            query: None,
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
        assert_eq!(ok.key_label, "env:KEY0");
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
        assert_eq!(ok.key_label, "env:KEY1");
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
        for b in [
            &b"not json"[..],
            b"",
            b"   ",
            b"[1,2]",
            b"[]",
            b"[null, null, null]",
            b" [{}]",
            b"null",
            b"true",
            b"42",
            b"\"text\"",
            b"{\"EventSignature\": 5}",
            b"{\"EventSignature\": {}} trailing",
        ] {
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

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/taktikal/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn parses_the_current_format() {
        let events = parse(&fixture("all_signed.json")).expect("parses");
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.process_key, "sp231f52f87d6f4caaa2e29ecac92d055b");
        assert_eq!(event.status, Some(ProcessStatus::AllSigned));
        assert_eq!(event.flow_key.as_deref(), Some("722989cac3fx"));
        assert_eq!(event.company_key.as_deref(), Some("fae93sfa4sh4"));
        assert_eq!(
            event
                .occurred_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                .as_deref(),
            Some("2019-09-02T11:59:16.154229Z")
        );
        let signee = &event.signees[0];
        assert_eq!(signee.key, "si7abef56540bd49f9a9b8a33969a9cf8c");
        assert_eq!(signee.name.as_deref(), Some("Test User"));
        assert_eq!(signee.city.as_deref(), Some("Reykjavík"));
        assert_eq!(signee.email, None, "empty strings are absent");
        assert!(signee.signed);
        assert!(signee.signed_at.is_some());

        let signed = &event.documents[0];
        assert_eq!(signed.kind, DocumentKind::Signed);
        assert!(signed.content.as_ref().unwrap().starts_with(b"%PDF-1.4"));
        let reference = &event.documents[1];
        assert_eq!(reference.kind, DocumentKind::Reference);
        assert_eq!(reference.reference_id.as_deref(), Some("at3357"));
        assert_eq!(reference.attachment_type, Some(20));
        assert_eq!(reference.declared_size, Some(90570));
        assert_eq!(reference.content, None);

        let statuses: Vec<_> = event
            .activity
            .iter()
            .map(|a| (a.key.as_str(), a.status.as_str()))
            .collect();
        assert_eq!(
            statuses,
            [
                (
                    "SigneeSigned:si7abef56540bd49f9a9b8a33969a9cf8c",
                    "SigneeSigned"
                ),
                ("Completed", "Completed")
            ]
        );
        assert_eq!(event.metadata["pdfUrl"], "");
        assert!(
            event.metadata["pdfFieldData"]
                .as_str()
                .unwrap()
                .contains("Nafn")
        );
    }

    #[test]
    fn parses_the_older_format_with_embedded_attachments() {
        let event = parse(&fixture("all_signed_v1.json"))
            .expect("parses")
            .remove(0);
        assert_eq!(event.process_key, "spae707", "taken from the signees");
        let names: Vec<_> = event
            .documents
            .iter()
            .map(|d| (d.kind, d.file_name.as_deref().unwrap_or("-")))
            .collect();
        assert_eq!(
            names,
            [
                (DocumentKind::Signed, "-"),
                (DocumentKind::Attachment, "auka_skjal.pdf"),
                (DocumentKind::Attachment, "auka_skjal_2.pdf"),
                (DocumentKind::Attachment, "mega skjal.pdf"),
                (DocumentKind::Reference, "logo_4x.png"),
                (DocumentKind::Reference, "large_file.zip"),
            ]
        );
        assert!(
            event.documents[1..4]
                .iter()
                .all(|d| d.content.as_ref().unwrap().starts_with(b"%PDF"))
        );
    }

    #[test]
    fn every_event_type_sets_its_status_and_activity() {
        let mut event: serde_json::Value =
            serde_json::from_slice(&fixture("all_signed.json")).unwrap();
        for (n, status, first_activity) in [
            (11, Some(ProcessStatus::Created), "Created"),
            (1, Some(ProcessStatus::InProgress), "SigneeSigned"),
            (2, Some(ProcessStatus::AllSigned), "SigneeSigned"),
            (10, Some(ProcessStatus::Completed), "SigneeSigned"),
            (5, Some(ProcessStatus::Canceled), "Canceled"),
            (6, Some(ProcessStatus::Expired), "Expired"),
            (7, None, "Reminder"),
        ] {
            event["EventData"]["EventType"] = n.into();
            let parsed = parse(&serde_json::to_vec(&event).unwrap())
                .unwrap()
                .remove(0);
            assert_eq!(parsed.status, status, "event type {n}");
            assert_eq!(parsed.activity[0].status, first_activity, "event type {n}");
        }
    }

    #[test]
    fn unparseable_bodies_say_why() {
        for (body, why) in [
            (&b"not json"[..], "not a Taktikal webhook"),
            (b"{\"Id\":\"x\"}", "EventData is missing"),
            (b"{\"EventData\":{\"EventType\":2}}", "no ProcessKey"),
            (
                b"{\"EventData\":{\"ProcessKey\":\"sp1\",\"SignedDocument\":\"%%%\"}}",
                "SignedDocument is not valid base64",
            ),
        ] {
            let error = parse(body).unwrap_err();
            assert!(error.0.contains(why), "{error} should say {why}");
        }
    }

    #[test]
    fn signature_id_is_timestamp_and_guid_as_sent() {
        assert_eq!(
            signature_id(&fixture("all_signed.json")).as_deref(),
            Some("6370302235615422902065b6c0-934f-4d18-81d3-46c29b913311")
        );
        assert_eq!(signature_id(b"{}"), None);
    }

    #[test]
    fn an_activity_log_process_is_read_and_its_gaps_found() {
        use crate::Reconcile;
        let answer = fixture("activity_log_api.json");
        let reconcile = TaktikalReconcile;
        assert_eq!(reconcile.processes(&answer).unwrap(), ["spa2f3e"]);

        // Never seen: every entry is missing, and the gap parses into the whole process.
        let known = std::collections::HashMap::new();
        let gaps = reconcile.gaps(&answer, &known).unwrap();
        assert_eq!(gaps.len(), 1);
        assert!(gaps[0].unknown_process);
        assert_eq!(gaps[0].missing.len(), 9);
        let events = parse(&gaps[0].body).expect("the parser reads the gap");
        let event = &events[0];
        assert_eq!(event.process_key, "spa2f3e");
        assert_eq!(event.status, Some(ProcessStatus::Completed));
        assert_eq!(event.flow_key.as_deref(), Some("3fc7848d338a"));
        assert_eq!(event.signees[0].key, "si4265c7a3263e");
        assert!(event.signees[0].signed);
        assert_eq!(
            event.signees[0].signed_at.unwrap().to_rfc3339(),
            "2019-11-08T11:06:01.560+00:00"
        );
        let keys: Vec<&str> = event.activity.iter().map(|a| a.key.as_str()).collect();
        assert!(keys.contains(&"Created"));
        assert!(keys.contains(&"SigneeSigned:si4265c7a3263e"));
        assert!(keys.contains(&"SignupSent:si4265c7a3263e:2019-11-08T11:03:49.4070000Z"));

        // What a Created webhook recorded is not missing; the same gap is the same bytes.
        let recorded: std::collections::HashSet<String> = ["Created", "SigneeAdded:si4265c7a3263e"]
            .map(str::to_owned)
            .into();
        let known = std::collections::HashMap::from([("spa2f3e".to_owned(), recorded)]);
        let gaps = reconcile.gaps(&answer, &known).unwrap();
        assert!(!gaps[0].unknown_process);
        assert_eq!(gaps[0].missing.len(), 7);
        assert!(!gaps[0].missing.contains(&"Created".to_owned()));
        assert_eq!(gaps, reconcile.gaps(&answer, &known).unwrap());
        // Everything recorded: no gap.
        let all: std::collections::HashSet<String> = parse(
            &reconcile
                .gaps(&answer, &std::collections::HashMap::new())
                .unwrap()[0]
                .body,
        )
        .unwrap()[0]
            .activity
            .iter()
            .map(|a| a.key.clone())
            .collect();
        let known = std::collections::HashMap::from([("spa2f3e".to_owned(), all)]);
        assert!(reconcile.gaps(&answer, &known).unwrap().is_empty());
        assert!(reconcile.gaps(b"{}", &known).is_err());
        assert_eq!(
            reconcile.process_path("sp a/b"),
            "/signing/activity/sp%20a%2Fb"
        );
    }

    #[test]
    fn the_activity_log_is_the_apis_state_of_a_process() {
        let answer: serde_json::Value =
            serde_json::from_slice(&fixture("activity_log_api.json")).unwrap();
        let state = |keep: &dyn Fn(&str) -> bool, extra: &[&str]| {
            let mut answer = answer.clone();
            let log = answer[0]["activityLog"].as_array_mut().unwrap();
            log.retain(|e| keep(e["status"].as_str().unwrap()));
            for status in extra {
                log.push(
                    serde_json::json!({"processKey": "spa2f3e", "status": status,
                    "description": status, "createdAt": "2019-11-09T10:00:00Z", "createdBy": "x"}),
                );
            }
            Taktikal.api_state(200, &serde_json::to_vec(&answer).unwrap(), 0)
        };
        assert_eq!(state(&|_| true, &[]), Ok(Some(ProcessStatus::Completed)));
        // The one added signee signed, no completion yet: all signed.
        assert_eq!(
            state(&|s| s != "Completed", &[]),
            Ok(Some(ProcessStatus::AllSigned))
        );
        // A second signee added who has not signed: in progress.
        let mut two = answer.clone();
        let log = two[0]["activityLog"].as_array_mut().unwrap();
        log.retain(|e| e["status"] != "Completed");
        log.push(serde_json::json!({"processKey": "spa2f3e", "signeeKey": "si-second",
            "status": "SigneeAdded", "description": "", "createdAt": "2019-11-08T11:03:49Z", "createdBy": "x"}));
        assert_eq!(
            Taktikal.api_state(200, &serde_json::to_vec(&two).unwrap(), 0),
            Ok(Some(ProcessStatus::InProgress))
        );
        assert_eq!(
            state(&|s| s != "Completed", &["Canceled"]),
            Ok(Some(ProcessStatus::Canceled))
        );
        assert_eq!(
            state(&|s| s == "Created" || s == "Started", &[]),
            Ok(Some(ProcessStatus::Created))
        );
        assert_eq!(Taktikal.api_state(404, b"", 0), Ok(None));
        assert_eq!(Taktikal.api_state(200, b"[]", 0), Ok(None));
        assert!(Taktikal.api_state(200, b"{}", 0).is_err());
        assert_eq!(
            Taktikal.state_path("spa2f3e").as_deref(),
            Some("/signing/activity/spa2f3e")
        );
    }

    #[test]
    fn a_webhook_body_without_its_signature_is_never_read_as_an_activity_log() {
        // The ingester refuses a body without EventSignature; a body with one is a webhook.
        let body = br#"{"processKey":"x","activityLog":[],"EventSignature":{"Signature":"s"}}"#;
        assert!(parse(body).is_err(), "EventData is missing");
    }
}
