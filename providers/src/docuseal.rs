//! DocuSeal (open source, self-hosted or docuseal.com/.eu): `provider = "docuseal"`.
//!
//! What the provider signs, what this module verifies and relies on, the provider's API as the
//! worker uses it, and where each fact comes from: `docs/providers/docuseal.md` (one page per provider).

use chrono::{DateTime, Utc};
use std::borrow::Cow;
use std::time::Duration;

use hmac::Mac;
use serde::Deserialize;

use crate::event::{
    ActivityEntry, Document, DocumentKind, ParseError, ProcessStatus, Signee, SigningEvent,
};
use crate::settings::{Secret, Setting, SourceConfig};
use crate::support::{
    check_freshness, decode_hex, gap_of, header_text, hex, hmac_sha256, is_json_object, json_id,
    matching_secret, max_signature_age, path_segment, rfc3339, unix_seconds,
};
use crate::{Provider, Rejection, Request, Sample, Verified, Verify};

/// The signature's header.
pub const SIGNATURE_HEADER: &str = "x-docuseal-signature";
/// DocuSeal's tolerance, the default `max_signature_age`.
pub const DEFAULT_MAX_SIGNATURE_AGE: Duration = Duration::from_secs(300);

/// DocuSeal in the provider registry.
pub struct DocuSeal;

/// Verifies DocuSeal webhooks for one source.
pub struct Verifier {
    secrets: Vec<Secret>,
    max_age: Duration,
}

#[derive(Deserialize)]
struct Head {
    event_type: Option<String>,
    timestamp: Option<String>,
    data: Option<IdOnly>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: Option<serde_json::Value>,
}

/// `(event_type, event id)` of a DocuSeal event body.
fn identify(body: &[u8]) -> Option<(String, String)> {
    if !is_json_object(body) {
        return None;
    }
    let head: Head = serde_json::from_slice(body).ok()?;
    let event_type = head.event_type.filter(|t| !t.is_empty())?;
    let id = head.data.and_then(|d| d.id).as_ref().and_then(json_id)?;
    let timestamp = head.timestamp.filter(|t| !t.is_empty())?;
    let event_id = format!("{event_type}:{id}:{timestamp}");
    Some((event_type, event_id))
}

impl Verifier {
    pub fn from_config(source: &SourceConfig) -> Result<Self, String> {
        let secrets =
            crate::support::required_secrets(source, "the webhook's HMAC signing secret, whsec_…")?;
        Ok(Self {
            secrets,
            max_age: max_signature_age(source, DEFAULT_MAX_SIGNATURE_AGE)?,
        })
    }
}

impl Verify for Verifier {
    fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        let header = header_text(request, SIGNATURE_HEADER).ok_or(Rejection::Unsigned)?;
        let (timestamp, signature) = header
            .trim()
            .split_once('.')
            .ok_or(Rejection::BadSignature)?;
        let seconds = unix_seconds(timestamp).ok_or(Rejection::BadSignature)?;
        let signature = decode_hex(signature)
            .filter(|s| s.len() == 32)
            .ok_or(Rejection::BadSignature)?;
        let key = matching_secret(
            &self.secrets,
            &[timestamp.as_bytes(), b".", request.body],
            &[signature],
        )
        .ok_or(Rejection::BadSignature)?;
        check_freshness(seconds, request.received_at, self.max_age)?;
        let (event_type, event_id) = identify(request.body).ok_or(Rejection::Unacceptable {
            status: 400,
            reason: "body is not a DocuSeal event (event_type, timestamp and data.id expected)",
        })?;
        Ok(Verified {
            event_id: Some(event_id),
            event_type: Cow::Owned(event_type),
            key_label: self.secrets[key].label().to_owned(),
            signature_use: None,
            signature_headers: vec![(SIGNATURE_HEADER, header.to_owned())],
        })
    }
}

/// `<t>.<hex>` of `body` at `t` with `secret`: what DocuSeal puts in `X-Docuseal-Signature`. For
/// tests and samples.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    let mac = hmac_sha256(secret, &[t.as_bytes(), b".", body]);
    format!("{t}.{}", hex(&mac.finalize().into_bytes()))
}

#[derive(Deserialize)]
struct Envelope {
    event_type: Option<String>,
    timestamp: Option<String>,
    data: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Submitter {
    id: Option<serde_json::Value>,
    submission_id: Option<serde_json::Value>,
    email: Option<String>,
    phone: Option<String>,
    name: Option<String>,
    status: Option<String>,
    completed_at: Option<String>,
    external_id: Option<String>,
    documents: Option<Vec<FileLink>>,
    template: Option<Template>,
    submission: Option<SubmissionRef>,
}

#[derive(Deserialize)]
struct SubmissionRef {
    id: Option<serde_json::Value>,
    status: Option<String>,
}

#[derive(Deserialize)]
struct Submission {
    id: Option<serde_json::Value>,
    status: Option<String>,
    submitters: Option<Vec<Submitter>>,
    documents: Option<Vec<FileLink>>,
    template: Option<Template>,
}

#[derive(Deserialize)]
struct Template {
    id: Option<serde_json::Value>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct FileLink {
    name: Option<String>,
    url: Option<String>,
}

fn signee(submitter: &Submitter) -> Option<Signee> {
    let key = submitter.id.as_ref().and_then(json_id)?;
    let signed = submitter.status.as_deref() == Some("completed");
    Some(Signee {
        key,
        name: submitter.name.clone().filter(|n| !n.is_empty()),
        email: submitter.email.clone().filter(|e| !e.is_empty()),
        phone: submitter.phone.clone().filter(|p| !p.is_empty()),
        signed,
        signed_at: if signed {
            submitter.completed_at.as_deref().and_then(rfc3339)
        } else {
            None
        },
        ..Signee::default()
    })
}

/// Links to the documents as they stood when the event was sent (they expire).
fn documents(links: Option<Vec<FileLink>>, signee_key: Option<&str>) -> Vec<Document> {
    links
        .unwrap_or_default()
        .into_iter()
        .filter_map(|link| {
            let url = link.url.filter(|u| !u.is_empty())?;
            let mut document = Document::new(DocumentKind::Reference);
            document.file_name = link.name.filter(|n| !n.is_empty());
            document.url = Some(url);
            document.signee_key = signee_key.map(str::to_owned);
            Some(document)
        })
        .collect()
}

fn status_of(event_type: &str, submission_status: Option<&str>) -> Option<ProcessStatus> {
    match (event_type, submission_status) {
        (_, Some("completed")) | ("submission.completed", _) => Some(ProcessStatus::Completed),
        ("submission.created", _) => Some(ProcessStatus::Created),
        ("submission.expired", _) | (_, Some("expired")) => Some(ProcessStatus::Expired),
        ("form.declined", _) | (_, Some("declined")) => Some(ProcessStatus::Canceled),
        ("form.completed", _) => Some(ProcessStatus::InProgress),
        _ => None,
    }
}

/// One event per `form.*` or `submission.*` event: the process is the submission.
pub fn parse(body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
    let envelope: Envelope = crate::support::parse_object(body, "a DocuSeal event")?;
    let event_type = envelope.event_type.unwrap_or_default();
    let occurred_at = envelope.timestamp.as_deref().and_then(rfc3339);
    let Some(data) = envelope.data else {
        return Ok(Vec::new());
    };
    let event = if event_type.starts_with("form.") {
        form_event(&event_type, data, occurred_at)?
    } else if event_type.starts_with("submission.") {
        submission_event(&event_type, data, occurred_at)?
    } else {
        None
    };
    Ok(event.into_iter().collect())
}

/// The activity entry of an event.
fn entry(
    event_type: &str,
    occurred_at: Option<DateTime<Utc>>,
    key: String,
    signee_key: Option<String>,
) -> ActivityEntry {
    ActivityEntry {
        key,
        signee_key,
        status: event_type.to_owned(),
        description: event_type.to_owned(),
        file_name: None,
        created_at: occurred_at,
        created_by: "docuseal".to_owned(),
    }
}

/// `form.*`: one submitter's step; `None` without a submission to attach it to.
fn form_event(
    event_type: &str,
    data: serde_json::Value,
    occurred_at: Option<DateTime<Utc>>,
) -> Result<Option<SigningEvent>, ParseError> {
    let submitter: Submitter = serde_json::from_value(data)
        .map_err(|e| ParseError(format!("not a DocuSeal submitter: {e}")))?;
    let submission = submitter.submission.as_ref();
    let Some(process_key) = submission
        .and_then(|s| s.id.as_ref())
        .or(submitter.submission_id.as_ref())
        .and_then(json_id)
    else {
        return Ok(None);
    };
    let signee = signee(&submitter);
    let signee_key = signee.as_ref().map(|s| s.key.clone());
    let mut metadata = serde_json::Map::new();
    if let (Some(key), Some(external_id)) = (&signee_key, &submitter.external_id) {
        metadata.insert(
            format!("submitter_external_id:{key}"),
            external_id.clone().into(),
        );
    }
    Ok(Some(SigningEvent {
        process_key,
        status: status_of(event_type, submission.and_then(|s| s.status.as_deref())),
        occurred_at,
        flow_key: submitter
            .template
            .as_ref()
            .and_then(|t| t.id.as_ref())
            .and_then(json_id),
        flow_name: submitter.template.as_ref().and_then(|t| t.name.clone()),
        company_key: None,
        documents: if event_type == "form.completed" {
            documents(submitter.documents, signee_key.as_deref())
        } else {
            Vec::new()
        },
        activity: vec![entry(
            event_type,
            occurred_at,
            match &signee_key {
                Some(key) => format!("{event_type}:{key}"),
                None => event_type.to_owned(),
            },
            signee_key,
        )],
        signees: signee.into_iter().collect(),
        metadata,
    }))
}

/// `submission.*`: the whole submission; `None` without its id.
fn submission_event(
    event_type: &str,
    data: serde_json::Value,
    occurred_at: Option<DateTime<Utc>>,
) -> Result<Option<SigningEvent>, ParseError> {
    let submission: Submission = serde_json::from_value(data)
        .map_err(|e| ParseError(format!("not a DocuSeal submission: {e}")))?;
    let Some(process_key) = submission.id.as_ref().and_then(json_id) else {
        return Ok(None);
    };
    Ok(Some(SigningEvent {
        process_key: process_key.clone(),
        status: status_of(event_type, submission.status.as_deref()),
        occurred_at,
        flow_key: submission
            .template
            .as_ref()
            .and_then(|t| t.id.as_ref())
            .and_then(json_id),
        flow_name: submission.template.as_ref().and_then(|t| t.name.clone()),
        company_key: None,
        signees: submission
            .submitters
            .iter()
            .flatten()
            .filter_map(signee)
            .collect(),
        documents: if event_type == "submission.completed" {
            // The links in the event expire; with an API, the signed documents are listed there
            // and downloaded (each link from the API's answer, never the event's).
            let mut listed = Document::new(DocumentKind::Signed);
            listed.reference_id = Some(process_key.clone());
            listed.description = Some("signed documents (DocuSeal API)".into());
            listed.fetch_listing = Some(format!(
                "/submissions/{}/documents",
                path_segment(&process_key)
            ));
            let mut all = documents(submission.documents, None);
            all.push(listed);
            all
        } else {
            Vec::new()
        },
        activity: vec![entry(event_type, occurred_at, event_type.to_owned(), None)],
        metadata: serde_json::Map::new(),
    }))
}

/// A submission's state from its `status` (`pending`, `completed`, `declined`, `expired`).
fn submission_state(status: &str) -> Option<ProcessStatus> {
    match status {
        "completed" => Some(ProcessStatus::Completed),
        "declined" => Some(ProcessStatus::Canceled),
        "expired" => Some(ProcessStatus::Expired),
        "pending" => Some(ProcessStatus::Created),
        _ => None,
    }
}

/// The signed documents of `GET /submissions/{id}/documents` (`{"id", "documents": [{"name",
/// "url"}]}`): each to be downloaded from its URL.
fn listed_documents(answer: &[u8]) -> Result<Vec<Document>, String> {
    #[derive(Deserialize)]
    struct Listing {
        #[serde(default)]
        documents: Vec<FileLink>,
    }
    let listing: Listing = serde_json::from_slice(answer)
        .map_err(|e| format!("not DocuSeal submission documents: {e}"))?;
    Ok(listing
        .documents
        .into_iter()
        .filter_map(|link| {
            let url = link
                .url
                .filter(|u| u.starts_with("https://") || u.starts_with("http://"))?;
            let mut document = Document::new(DocumentKind::Signed);
            document.content_type = Some("application/pdf".to_owned());
            document.file_name = crate::support::pdf_name(link.name);
            document.fetch = Some(url);
            Some(document)
        })
        .collect())
}

/// A submission as `GET /submissions/{id}` or `GET /submissions` describes it (as JSON, kept
/// whole for the event a gap becomes).
fn api_submissions(answer: &[u8]) -> Result<(Vec<serde_json::Value>, Option<i64>), String> {
    let value: serde_json::Value =
        serde_json::from_slice(answer).map_err(|e| format!("not a DocuSeal answer ({e})"))?;
    Ok(match value.get("data") {
        Some(serde_json::Value::Array(data)) => (
            data.clone(),
            value
                .get("pagination")
                .and_then(|p| p.get("next"))
                .and_then(serde_json::Value::as_i64),
        ),
        _ if value.get("id").is_some() => (vec![value], None),
        _ => (Vec::new(), None),
    })
}

/// `GET /submissions`, newest first, 100 a page; `after` follows.
const LIST_PATH: &str = "/submissions?limit=100";

/// DocuSeal's reconciliation: each submission not in a final state is asked with `GET
/// /submissions/{id}`, and `GET /submissions` is read newest first (`after` the page's last id)
/// while its submissions' `created_at` reaches into `look_back`. A submission completed or
/// expired there without that event recorded — or any submission never seen — becomes the
/// `submission.*` event DocuSeal would have sent, its data the API's submission.
pub struct DocuSealReconcile;

impl crate::Reconcile for DocuSealReconcile {
    fn process_path(&self, process_key: &str) -> String {
        format!("/submissions/{}", path_segment(process_key))
    }

    fn discovery_path(
        &self,
        _scope: Option<&str>,
        _from: DateTime<Utc>,
        _to: DateTime<Utc>,
    ) -> Option<String> {
        Some(LIST_PATH.to_owned())
    }

    fn next_path_since(&self, _path: &str, answer: &[u8], from: DateTime<Utc>) -> Option<String> {
        let (submissions, next) = api_submissions(answer).ok()?;
        let oldest = submissions
            .iter()
            .filter_map(|s| s.get("created_at")?.as_str().and_then(rfc3339))
            .min();
        if submissions.len() < 100 || oldest.is_none_or(|oldest| oldest < from) {
            return None;
        }
        Some(format!("{LIST_PATH}&after={}", next?))
    }

    fn processes(&self, answer: &[u8]) -> Result<Vec<String>, String> {
        Ok(api_submissions(answer)?
            .0
            .iter()
            .filter_map(|s| s.get("id").and_then(json_id))
            .collect())
    }

    fn gaps(
        &self,
        answer: &[u8],
        known: &std::collections::HashMap<String, std::collections::HashSet<String>>,
    ) -> Result<Vec<crate::Gap>, String> {
        let mut gaps = Vec::new();
        for submission in api_submissions(answer)?.0 {
            let Some(id) = submission.get("id").and_then(json_id) else {
                continue;
            };
            let status = submission
                .get("status")
                .and_then(|s| s.as_str())
                .unwrap_or("");
            let (event, recorded): (&'static str, &[&str]) = match submission_state(status) {
                Some(ProcessStatus::Completed) => {
                    ("submission.completed", &["submission.completed"])
                }
                Some(ProcessStatus::Expired) => ("submission.expired", &["submission.expired"]),
                Some(ProcessStatus::Created) => ("submission.created", &[]),
                _ => continue,
            };
            let Some(unknown_process) = gap_of(known, &id, recorded) else {
                continue;
            };
            let timestamp = submission
                .get("completed_at")
                .filter(|t| !t.is_null())
                .or_else(|| submission.get("updated_at"))
                .cloned();
            let body = serde_json::to_vec(&serde_json::json!({
                "event_type": event, "timestamp": timestamp, "data": submission,
            }))
            .map_err(|e| e.to_string())?;
            gaps.push(crate::Gap::of_event(id, unknown_process, event, body));
        }
        Ok(gaps)
    }
}

/// The state in an answer of `GET /submissions/{id}`; other HTTP statuses are no state.
fn api_state(status: u16, body: &[u8]) -> Result<Option<ProcessStatus>, String> {
    let Some(status) = crate::support::answered_status(status, body, "GET /submissions/{id}")?
    else {
        return Ok(None);
    };
    Ok(submission_state(&status))
}

impl Provider for DocuSeal {
    fn name(&self) -> &'static str {
        "docuseal"
    }

    fn settings(&self) -> &'static [Setting] {
        &[
            Setting::Secrets,
            Setting::MaxSignatureAge,
            Setting::Api,
            Setting::Reconcile,
        ]
    }

    /// The API key, in `X-Auth-Token` ([`Provider::api_header`]).
    fn api_authorization(&self, credentials: &[u8]) -> Option<String> {
        Some(String::from_utf8_lossy(credentials).trim().to_owned())
    }

    fn api_header(&self) -> &'static str {
        "x-auth-token"
    }

    fn listed_documents(&self, listing: &[u8]) -> Result<Vec<Document>, String> {
        listed_documents(listing)
    }

    fn state_path(&self, process_key: &str) -> Option<String> {
        Some(crate::Reconcile::process_path(
            &DocuSealReconcile,
            process_key,
        ))
    }

    fn api_state(
        &self,
        status: u16,
        body: &[u8],
        _now: i64,
    ) -> Result<Option<ProcessStatus>, String> {
        api_state(status, body)
    }

    fn reconcile(&self) -> Option<&'static dyn crate::Reconcile> {
        Some(&DocuSealReconcile)
    }

    fn verifier(&self, source: &SourceConfig) -> Result<Box<dyn Verify>, String> {
        Ok(Box::new(Verifier::from_config(source)?))
    }

    fn parse(&self, body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
        parse(body)
    }

    /// Every attempt serializes `data` afresh (new link expiry).
    fn resends_reencoded(&self) -> bool {
        true
    }

    fn sample(&self, source: &SourceConfig, _private_key: Option<&str>) -> Result<Sample, String> {
        let secret = crate::support::first_secret(source)?;
        let now = chrono::Utc::now();
        let at = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let id = now.timestamp_micros().unsigned_abs();
        let body = serde_json::to_vec(&serde_json::json!({
            "event_type": "submission.completed",
            "timestamp": at,
            "data": {
                "id": id, "status": "completed", "completed_at": at,
                "submitters": [{"id": id + 1, "submission_id": id, "email": "signer@example.com",
                    "name": "Sample Signer", "status": "completed", "completed_at": at, "role": "First Party"}],
                "template": {"id": 1, "name": "Sample agreement"},
                "documents": [{"name": "sample-agreement", "url": "https://docuseal.example/file/sample.pdf"}],
            },
        }))
        .expect("JSON");
        let seconds = now.timestamp().unsigned_abs();
        Ok(Sample {
            path_token: None,
            query: None,
            headers: vec![(SIGNATURE_HEADER, sign(secret.expose(), seconds, &body))],
            body,
            content_type: "application/json",
            process_key: id.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Pairs, assert_every_flip_refused, source};
    use std::time::{SystemTime, UNIX_EPOCH};

    /// A secret shaped as DocuSeal makes them (`whsec_` + base64 of 24 random bytes).
    const SECRET: &str = "whsec_q5Yb2iN2m1dE7Hk0vF3xLw8sT4pR6uJc";
    const T: u64 = 1_790_000_000;
    const BODY: &[u8] = br#"{"event_type":"form.completed","timestamp":"2026-09-21T14:13:20.000Z","data":{"id":2,"submission_id":1,"email":"john.doe@example.com","phone":null,"name":"John Doe","ua":"Mozilla/5.0","ip":"203.0.113.7","sent_at":"2026-09-21T14:00:00.000Z","opened_at":"2026-09-21T14:10:00.000Z","completed_at":"2026-09-21T14:13:19.000Z","declined_at":null,"created_at":"2026-09-21T13:59:00.000Z","updated_at":"2026-09-21T14:13:19.000Z","external_id":"emp-7","metadata":{},"status":"completed","role":"First Party","decline_reason":null,"values":[{"field":"Full Name","value":"John Doe"}],"documents":[{"name":"sample-document","url":"https://docuseal.com/file/hash/sample-document.pdf"}],"audit_log_url":null,"submission_url":"https://docuseal.com/e/xyz","template":{"id":6,"name":"Employment contract","external_id":null,"created_at":"2026-01-01T00:00:00.000Z","updated_at":"2026-01-01T00:00:00.000Z","folder_name":"Default"},"submission":{"id":1,"audit_log_url":null,"combined_document_url":null,"status":"pending","url":"https://docuseal.com/e/xyz","variables":{},"created_at":"2026-09-21T13:59:00.000Z"}}}"#;
    /// HMAC-SHA256 of `"1790000000." + BODY` with SECRET, computed independently (Python's
    /// `hmac`), in DocuSeal's header format.
    const SIGNATURE: &str =
        "1790000000.9f58bd77be62d6781a9d7460f2875beb052d569d7b037038fdf37e0deb098f8c";

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn verify_at(
        secrets: &[&str],
        header: &str,
        body: &[u8],
        received: SystemTime,
    ) -> Result<Verified, Rejection> {
        let headers = Pairs(vec![(SIGNATURE_HEADER, header.to_owned())]);
        Verifier::from_config(&source("docuseal", secrets))
            .unwrap()
            .verify(&Request {
                body,
                headers: &headers,
                received_at: received,
                path_token: None,
                query: None,
            })
    }

    fn verify(secrets: &[&str], header: &str, body: &[u8]) -> Result<Verified, Rejection> {
        verify_at(secrets, header, body, at(T + 10))
    }

    #[test]
    fn an_independently_computed_signature_verifies() {
        assert_eq!(sign(SECRET.as_bytes(), T, BODY), SIGNATURE);
        let verified = verify(&[SECRET], SIGNATURE, BODY).expect("genuine");
        assert_eq!(verified.event_type, "form.completed");
        assert_eq!(
            verified.event_id.as_deref(),
            Some("form.completed:2:2026-09-21T14:13:20.000Z")
        );
        assert_eq!(verified.key_label, "env:KEY0");
        assert_eq!(verified.signature_headers[0].1, SIGNATURE);
    }

    #[test]
    fn one_flipped_bit_in_key_signature_timestamp_or_body_is_refused() {
        assert_every_flip_refused(
            SECRET,
            SIGNATURE,
            0..SIGNATURE.len(),
            BODY,
            |key, header, body| verify(&[key], header, body),
        );
    }

    #[test]
    fn stale_future_rotated_and_malformed() {
        assert_eq!(
            verify_at(&[SECRET], SIGNATURE, BODY, at(T + 301)).unwrap_err(),
            Rejection::Stale
        );
        assert!(verify_at(&[SECRET], SIGNATURE, BODY, at(T + 300)).is_ok());
        assert_eq!(
            verify_at(&[SECRET], SIGNATURE, BODY, at(T - 301)).unwrap_err(),
            Rejection::Stale
        );
        let rotated = verify(&["whsec_old", SECRET], SIGNATURE, BODY).expect("second secret");
        assert_eq!(rotated.key_label, "env:KEY1");
        let digest = SIGNATURE.split_once('.').unwrap().1;
        for bad in [
            String::new(),
            digest.to_owned(),
            format!("+1790000000.{digest}"),
            format!(" .{digest}"),
            format!("1790000000.{}", &digest[..62]),
            format!("1790000000.sha256={digest}"),
            format!("99999999999999999999999.{digest}"),
        ] {
            let refused = verify(&[SECRET], &bad, BODY).unwrap_err();
            assert!(
                matches!(refused, Rejection::BadSignature | Rejection::Unsigned),
                "{bad:?}: {refused:?}"
            );
        }
        let none = Verifier::from_config(&source("docuseal", &[SECRET]))
            .unwrap()
            .verify(&Request {
                body: BODY,
                headers: &crate::NoHeaders,
                received_at: at(T),
                path_token: None,
                query: None,
            })
            .unwrap_err();
        assert_eq!(none, Rejection::Unsigned);
        let mut zero = source("docuseal", &[SECRET]);
        zero.max_signature_age = Some(Duration::ZERO);
        assert!(Verifier::from_config(&zero).is_err());
        let mut hour = source("docuseal", &[SECRET]);
        hour.max_signature_age = Some(Duration::from_secs(3600));
        let headers = Pairs(vec![(SIGNATURE_HEADER, SIGNATURE.to_owned())]);
        assert!(
            Verifier::from_config(&hour)
                .unwrap()
                .verify(&Request {
                    body: BODY,
                    headers: &headers,
                    received_at: at(T + 3000),
                    path_token: None,
                    query: None,
                })
                .is_ok()
        );
    }

    #[test]
    fn a_signed_body_that_is_not_an_event_is_refused_as_such() {
        for body in [
            &b"[1]"[..],
            b"{}",
            br#"{"event_type":"form.viewed","data":{"id":1}}"#,
        ] {
            assert!(matches!(
                verify(&[SECRET], &sign(SECRET.as_bytes(), T, body), body).unwrap_err(),
                Rejection::Unacceptable { status: 400, .. }
            ));
        }
    }

    #[test]
    fn form_and_submission_events_are_normalized() {
        let events = parse(BODY).unwrap();
        let event = &events[0];
        assert_eq!(event.process_key, "1");
        assert_eq!(event.status, Some(ProcessStatus::InProgress));
        assert_eq!(event.flow_key.as_deref(), Some("6"));
        assert_eq!(event.flow_name.as_deref(), Some("Employment contract"));
        assert_eq!(event.signees[0].key, "2");
        assert_eq!(event.signees[0].name.as_deref(), Some("John Doe"));
        assert!(event.signees[0].signed);
        assert_eq!(
            event.signees[0].signed_at.unwrap().to_rfc3339(),
            "2026-09-21T14:13:19+00:00"
        );
        assert_eq!(event.documents.len(), 1);
        assert_eq!(event.documents[0].kind, DocumentKind::Reference);
        assert_eq!(
            event.documents[0].file_name.as_deref(),
            Some("sample-document")
        );
        assert_eq!(event.documents[0].signee_key.as_deref(), Some("2"));
        assert_eq!(event.activity[0].key, "form.completed:2");
        assert_eq!(event.metadata["submitter_external_id:2"], "emp-7");

        let submission = |event_type: &str, status: &str| {
            format!(
                r#"{{"event_type":"{event_type}","timestamp":"2026-09-21T15:00:00.000Z","data":{{"id":1,"status":"{status}","submitters":[{{"id":2,"email":"a@example.com","status":"completed","completed_at":"2026-09-21T14:13:19.000Z"}},{{"id":3,"email":"b@example.com","status":"sent"}}],"template":{{"id":6,"name":"Employment contract"}},"documents":[{{"name":"signed","url":"https://docuseal.com/file/signed.pdf"}}]}}}}"#
            )
        };
        for (event_type, status, expected) in [
            (
                "submission.created",
                "pending",
                Some(ProcessStatus::Created),
            ),
            (
                "submission.completed",
                "completed",
                Some(ProcessStatus::Completed),
            ),
            (
                "submission.expired",
                "expired",
                Some(ProcessStatus::Expired),
            ),
            ("submission.archived", "pending", None),
        ] {
            let events = parse(submission(event_type, status).as_bytes()).unwrap();
            assert_eq!(events[0].status, expected, "{event_type}");
            assert_eq!(events[0].signees.len(), 2);
            assert!(events[0].signees[0].signed && !events[0].signees[1].signed);
            // A completion: the event's (expiring) link, and the API's listing of the signed
            // documents.
            assert_eq!(
                events[0].documents.len(),
                2 * usize::from(event_type == "submission.completed")
            );
            assert_eq!(events[0].activity[0].key, event_type);
        }
        let declined = br#"{"event_type":"form.declined","timestamp":"2026-09-21T15:00:00.000Z","data":{"id":3,"status":"declined","submission":{"id":1,"status":"declined"}}}"#;
        assert_eq!(
            parse(declined).unwrap()[0].status,
            Some(ProcessStatus::Canceled)
        );
        let template = br#"{"event_type":"template.created","timestamp":"2026-09-21T15:00:00.000Z","data":{"id":6}}"#;
        assert!(parse(template).unwrap().is_empty());
        assert!(parse(b"[]").is_err());
    }

    #[test]
    fn the_submissions_status_is_its_state_and_its_documents_are_listed_by_url() {
        use crate::Reconcile;
        let submission: serde_json::Value =
            serde_json::from_slice(&crate::testing::fixture("docuseal", "getSubmission.json"))
                .unwrap();
        crate::testing::assert_api_states(
            &DocuSeal,
            &submission,
            &[
                ("completed", Some(ProcessStatus::Completed)),
                ("declined", Some(ProcessStatus::Canceled)),
                ("expired", Some(ProcessStatus::Expired)),
                ("pending", Some(ProcessStatus::Created)),
                ("archived", None),
            ],
        );
        assert_eq!(DocuSeal.api_header(), "x-auth-token");
        let listed = DocuSeal
            .listed_documents(&crate::testing::fixture(
                "docuseal",
                "getSubmissionDocuments.json",
            ))
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            listed[0].fetch.as_deref(),
            Some("https://docuseal.com/file/hash/example.pdf")
        );
        assert_eq!(listed[0].file_name.as_deref(), Some("example.pdf"));
        // Paging: a short page is the last; a full one continues after its last id.
        let list = crate::testing::fixture("docuseal", "getSubmissions.json");
        let from = rfc3339("2023-01-01T00:00:00Z").unwrap();
        let path = DocuSealReconcile.discovery_path(None, from, from).unwrap();
        assert_eq!(DocuSealReconcile.next_path_since(&path, &list, from), None);
        let mut full: serde_json::Value = serde_json::from_slice(&list).unwrap();
        let one = full["data"][0].clone();
        full["data"] = serde_json::Value::Array(vec![one; 100]);
        full["pagination"]["next"] = 7.into();
        let full = serde_json::to_vec(&full).unwrap();
        assert_eq!(
            DocuSealReconcile
                .next_path_since(&path, &full, from)
                .as_deref(),
            Some("/submissions?limit=100&after=7")
        );
        let later = rfc3339("2024-01-01T00:00:00Z").unwrap();
        assert_eq!(DocuSealReconcile.next_path_since(&path, &full, later), None);
        let gaps = DocuSealReconcile.gaps(&list, &Default::default()).unwrap();
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].event_type, "submission.completed");
        let events = parse(&gaps[0].body).unwrap();
        assert_eq!(events[0].status, Some(ProcessStatus::Completed));
        assert!(
            events[0]
                .documents
                .iter()
                .any(|d| d.fetch_listing.as_deref() == Some("/submissions/1/documents"))
        );
        let known = std::collections::HashMap::from([(
            "1".to_owned(),
            std::collections::HashSet::from(["submission.completed".to_owned()]),
        )]);
        assert!(DocuSealReconcile.gaps(&list, &known).unwrap().is_empty());
    }
}
