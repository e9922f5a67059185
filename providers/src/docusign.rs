//! DocuSign Connect (JSON SIM, Connect 2.0): `provider = "docusign"`.
//!
//! What the provider signs, what this module verifies and relies on, the provider's API as the
//! worker uses it, and where each fact comes from: `docs/providers/docusign.md` (one page per provider).

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::Mac;
use serde::Deserialize;

use crate::event::{
    ActivityEntry, Document, DocumentKind, ParseError, ProcessStatus, Signee, SigningEvent,
};
use crate::settings::{Secret, Setting, SourceConfig};
use crate::support::{
    answered_status, date_range_query, gap_of, hmac_sha256, is_json_object, matching_secret,
    path_segment, rfc3339,
};
use crate::{Provider, Rejection, Request, Sample, Verified, Verify};

/// The first signature header; the n-th is `x-docusign-signature-<n>`.
pub const SIGNATURE_HEADER: &str = "x-docusign-signature-1";
/// How many signature headers DocuSign may send (one per active key).
pub const MAX_SIGNATURE_HEADERS: usize = 100;
const SIGNATURE_HEADER_PREFIX: &str = "x-docusign-signature-";

/// DocuSign Connect in the provider registry.
pub struct DocuSign;

/// Verifies DocuSign Connect messages for one source.
pub struct Verifier {
    secrets: Vec<Secret>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    event: Option<String>,
    generated_date_time: Option<String>,
    data: Option<HeadData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HeadData {
    envelope_id: Option<String>,
    recipient_id: Option<serde_json::Value>,
}

/// `(event, event id)` of a Connect message.
fn identify(body: &[u8]) -> Option<(String, String)> {
    if !is_json_object(body) {
        return None;
    }
    let head: Head = serde_json::from_slice(body).ok()?;
    let event = head.event.filter(|e| !e.is_empty())?;
    let data = head.data?;
    let envelope = data.envelope_id.filter(|e| !e.is_empty())?;
    let recipient = data
        .recipient_id
        .as_ref()
        .and_then(crate::support::json_id)
        .unwrap_or_else(|| "-".to_owned());
    let generated = head.generated_date_time.unwrap_or_else(|| "-".to_owned());
    let id = format!("{envelope}:{event}:{recipient}:{generated}");
    Some((event, id))
}

impl Verifier {
    pub fn from_config(source: &SourceConfig) -> Result<Self, String> {
        Ok(Self {
            secrets: crate::support::required_secrets(source, "a Connect HMAC key")?,
        })
    }
}

impl Verify for Verifier {
    fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        let mut signatures = Vec::new();
        let mut forwarded = Vec::new();
        for (n, name) in SIGNATURE_HEADERS.iter().enumerate() {
            let Some(value) = request.headers.get(name) else {
                // Numbered from 1 without gaps.
                if n == 0 {
                    return Err(Rejection::Unsigned);
                }
                break;
            };
            let text = std::str::from_utf8(value).unwrap_or_default().trim();
            if let Some(signature) = BASE64.decode(text).ok().filter(|s| s.len() == 32) {
                signatures.push(signature);
            }
            forwarded.push((*name, text.to_owned()));
        }
        let key = matching_secret(&self.secrets, &[request.body], &signatures)
            .ok_or(Rejection::BadSignature)?;
        let (event, event_id) = identify(request.body).ok_or(Rejection::Unacceptable {
            status: 400,
            reason: "body is not a DocuSign Connect JSON SIM message (event and data.envelopeId expected)",
        })?;
        Ok(Verified {
            event_id: Some(event_id),
            event_type: Cow::Owned(event),
            key_label: self.secrets[key].label().to_owned(),
            signature_use: None,
            signature_headers: forwarded,
        })
    }
}

/// `x-docusign-signature-1` … `-100`, as the `&'static str`s messages carry.
static SIGNATURE_HEADERS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    (1..=MAX_SIGNATURE_HEADERS)
        .map(|n| -> &'static str {
            Box::leak(format!("{SIGNATURE_HEADER_PREFIX}{n}").into_boxed_str())
        })
        .collect()
});

/// The base64 HMAC of `body` with a Connect key: one `X-DocuSign-Signature-N`. For tests and
/// samples.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    BASE64.encode(hmac_sha256(key, &[body]).finalize().into_bytes())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Message {
    event: Option<String>,
    generated_date_time: Option<String>,
    data: Option<Data>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    envelope_id: Option<String>,
    recipient_id: Option<serde_json::Value>,
    envelope_summary: Option<EnvelopeSummary>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeSummary {
    status: Option<String>,
    email_subject: Option<String>,
    recipients: Option<Recipients>,
    #[serde(default)]
    envelope_documents: Vec<EnvelopeDocument>,
}

#[derive(Deserialize)]
struct Recipients {
    #[serde(default)]
    signers: Vec<Signer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Signer {
    recipient_id: Option<serde_json::Value>,
    name: Option<String>,
    email: Option<String>,
    status: Option<String>,
    signed_date_time: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeDocument {
    document_id: Option<serde_json::Value>,
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(rename = "PDFBytes")]
    pdf_bytes: Option<String>,
}

fn status_of(event: &str, envelope_status: Option<&str>) -> Option<ProcessStatus> {
    match envelope_status {
        Some("completed") => return Some(ProcessStatus::Completed),
        Some("declined" | "voided") => return Some(ProcessStatus::Canceled),
        _ => {}
    }
    match event {
        "envelope-sent" | "envelope-created" => Some(ProcessStatus::Created),
        "recipient-completed" => Some(ProcessStatus::InProgress),
        "envelope-completed" => Some(ProcessStatus::Completed),
        "envelope-declined" | "envelope-voided" | "recipient-declined" => {
            Some(ProcessStatus::Canceled)
        }
        _ => None,
    }
}

/// One event per envelope or recipient message: the process is the envelope, its signers the
/// signees.
pub fn parse(body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
    let message: Message = crate::support::parse_object(body, "a DocuSign Connect message")?;
    let event = message.event.unwrap_or_default();
    let Some(data) = message.data else {
        return Ok(Vec::new());
    };
    let Some(process_key) = data.envelope_id.filter(|id| !id.is_empty()) else {
        return Ok(Vec::new());
    };
    let occurred_at: Option<DateTime<Utc>> =
        message.generated_date_time.as_deref().and_then(rfc3339);
    let recipient = data.recipient_id.as_ref().and_then(crate::support::json_id);
    let summary = data.envelope_summary;
    let envelope_status = summary.as_ref().and_then(|s| s.status.clone());
    let flow_name = summary
        .as_ref()
        .and_then(|s| s.email_subject.clone())
        .filter(|s| !s.is_empty());
    let status = status_of(&event, envelope_status.as_deref());
    let completed = status == Some(ProcessStatus::Completed);
    let (signees, mut documents) = match summary {
        Some(summary) => (
            signers_of(summary.recipients.map(|r| r.signers).unwrap_or_default()),
            pdfs_of(summary.envelope_documents, event == "envelope-completed")?,
        ),
        None => (Vec::new(), Vec::new()),
    };
    if completed && !documents.iter().any(|d| d.kind == DocumentKind::Signed) {
        documents.push(combined_pdf(&process_key));
    }
    let signee_key = recipient.clone();
    Ok(vec![SigningEvent {
        status,
        occurred_at,
        flow_key: None,
        flow_name,
        company_key: None,
        signees,
        documents,
        activity: vec![ActivityEntry {
            key: format!("{event}:{}", recipient.as_deref().unwrap_or("-")),
            signee_key,
            status: event.clone(),
            description: event,
            file_name: None,
            created_at: occurred_at,
            created_by: "docusign".to_owned(),
        }],
        metadata: serde_json::Map::new(),
        process_key,
    }])
}

/// A completed envelope's combined PDF, announced where the message carries no signed document:
/// `GET /envelopes/{envelopeId}/documents/combined` (operation Documents_GetDocument with the
/// special document id `combined`: every document and the certificate of completion in one PDF).
fn combined_pdf(envelope_id: &str) -> Document {
    let mut document = Document::new(DocumentKind::Signed);
    document.reference_id = Some(envelope_id.to_owned());
    document.content_type = Some("application/pdf".to_owned());
    document.description =
        Some("combined PDF with the certificate of completion (DocuSign eSignature API)".into());
    document.fetch = Some(format!(
        "/envelopes/{}/documents/combined",
        path_segment(envelope_id)
    ));
    document
}

/// The state in an answer of `GET /envelopes/{envelopeId}` (the `envelope` definition's
/// `status`): `completed` → completed; `signed` (every recipient signed, not yet completed) →
/// all signed; `declined`, `voided` (DocuSign voids an expired envelope) → canceled;
/// `timedout` → expired; `created`, `sent`, `delivered` → created. Other statuses
/// (`processing`, `correct`, `deleted`, …) and other HTTP statuses are no state (asked again).
fn api_state(status: u16, body: &[u8]) -> Result<Option<ProcessStatus>, String> {
    let Some(status) = answered_status(status, body, "GET /envelopes/{envelopeId}")? else {
        return Ok(None);
    };
    Ok(match status.to_ascii_lowercase().as_str() {
        "completed" => Some(ProcessStatus::Completed),
        "signed" => Some(ProcessStatus::AllSigned),
        "declined" | "voided" => Some(ProcessStatus::Canceled),
        "timedout" => Some(ProcessStatus::Expired),
        "created" | "sent" | "delivered" => Some(ProcessStatus::Created),
        _ => None,
    })
}

/// An envelope as the eSignature REST API describes it (`GET /envelopes/{envelopeId}`, each of
/// `GET /envelopes`'s `envelopes`): what a reconciled Connect message needs.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiEnvelope {
    envelope_id: Option<String>,
    status: Option<String>,
    email_subject: Option<String>,
    status_changed_date_time: Option<String>,
    recipients: Option<serde_json::Value>,
}

/// The envelopes of `GET /envelopes/{envelopeId}`'s answer (one) or of a page of `GET
/// /envelopes` (`envelopesInformation.envelopes`).
fn api_envelopes(answer: &[u8]) -> Result<Vec<ApiEnvelope>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(answer).map_err(|e| format!("not a DocuSign API answer ({e})"))?;
    let list = match value.get("envelopes") {
        Some(serde_json::Value::Array(list)) => list.clone(),
        Some(serde_json::Value::Null) | None if value.get("envelopeId").is_some() => vec![value],
        _ => Vec::new(),
    };
    list.into_iter()
        .map(|e| serde_json::from_value(e).map_err(|e| format!("not a DocuSign envelope ({e})")))
        .collect()
}

/// The numbers DocuSign sends as strings (`"endPosition": "99"`) or numbers.
fn position(value: Option<&serde_json::Value>) -> Option<u64> {
    match value? {
        serde_json::Value::String(text) => text.parse().ok(),
        other => other.as_u64(),
    }
}

/// Where a page of `GET /envelopes` starts.
const LIST_PATH: &str = "/envelopes?count=100&start_position=";

/// DocuSign's reconciliation: each envelope not in a final state is asked with `GET
/// /envelopes/{envelopeId}`, and envelopes whose status changed within `look_back` are listed
/// with `GET /envelopes?from_date=…&to_date=…` (operation `Envelopes_GetEnvelopes`, 100 a page).
/// An envelope completed, declined or voided there whose message the archive lacks — or any
/// envelope never seen — becomes the Connect message DocuSign would have sent, made from the
/// API's answer.
pub struct DocuSignReconcile;

impl crate::Reconcile for DocuSignReconcile {
    fn process_path(&self, process_key: &str) -> String {
        format!("/envelopes/{}", path_segment(process_key))
    }

    fn discovery_path(
        &self,
        _scope: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Option<String> {
        let dates = date_range_query(("from_date", from), ("to_date", to));
        Some(format!("{LIST_PATH}0&{dates}"))
    }

    fn next_path(&self, path: &str, answer: &[u8]) -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(answer).ok()?;
        let end = position(value.get("endPosition"))?;
        let total = position(value.get("totalSetSize"))?;
        if end + 1 >= total {
            return None;
        }
        let (_, dates) = path.strip_prefix(LIST_PATH)?.split_once('&')?;
        Some(format!("{LIST_PATH}{}&{dates}", end + 1))
    }

    fn processes(&self, answer: &[u8]) -> Result<Vec<String>, String> {
        Ok(api_envelopes(answer)?
            .into_iter()
            .filter_map(|e| e.envelope_id.filter(|id| !id.is_empty()))
            .collect())
    }

    fn gaps(
        &self,
        answer: &[u8],
        known: &std::collections::HashMap<String, std::collections::HashSet<String>>,
    ) -> Result<Vec<crate::Gap>, String> {
        let mut gaps = Vec::new();
        for envelope in api_envelopes(answer)? {
            let Some(id) = envelope.envelope_id.clone().filter(|i| !i.is_empty()) else {
                continue;
            };
            let status = envelope
                .status
                .clone()
                .unwrap_or_default()
                .to_ascii_lowercase();
            // The event a Connect message would have carried, and the entries that show it
            // was recorded (an envelope's entries are `<event>:<recipient>`).
            let (event, recorded): (&'static str, &[&str]) = match status.as_str() {
                "completed" => ("envelope-completed", &["envelope-completed:"]),
                "declined" => (
                    "envelope-declined",
                    &["envelope-declined:", "recipient-declined:"],
                ),
                "voided" => ("envelope-voided", &["envelope-voided:"]),
                "created" | "sent" | "delivered" | "signed" => ("envelope-sent", &[]),
                _ => continue,
            };
            let Some(unknown_process) = gap_of(known, &id, recorded) else {
                continue;
            };
            let mut summary = serde_json::json!({
                "envelopeId": id,
                "status": status,
                "emailSubject": envelope.email_subject,
            });
            if let Some(recipients) = envelope.recipients {
                summary["recipients"] = recipients;
            }
            let body = serde_json::to_vec(&serde_json::json!({
                "event": event,
                "apiVersion": "v2.1",
                "generatedDateTime": envelope.status_changed_date_time,
                "data": {"envelopeId": id, "envelopeSummary": summary},
            }))
            .map_err(|e| e.to_string())?;
            gaps.push(crate::Gap {
                process_key: id,
                unknown_process,
                missing: vec![format!("{event}:-")],
                body,
                event_type: event,
            });
        }
        Ok(gaps)
    }
}

/// The envelope's signers as signees (one without a recipient id is left out).
fn signers_of(signers: Vec<Signer>) -> Vec<Signee> {
    signers
        .into_iter()
        .filter_map(|signer| {
            let key = signer
                .recipient_id
                .as_ref()
                .and_then(crate::support::json_id)?;
            let signed = signer.status.as_deref() == Some("completed");
            Some(Signee {
                key,
                name: signer.name.filter(|n| !n.is_empty()),
                email: signer.email.filter(|e| !e.is_empty()),
                signed,
                signed_at: signer
                    .signed_date_time
                    .as_deref()
                    .filter(|_| signed)
                    .and_then(rfc3339),
                ..Signee::default()
            })
        })
        .collect()
}

/// The envelope's documents sent with their content (`PDFBytes`): the signed document itself
/// once the envelope is `completed`, else attachments.
fn pdfs_of(files: Vec<EnvelopeDocument>, completed: bool) -> Result<Vec<Document>, ParseError> {
    let mut documents = Vec::new();
    for file in files {
        let Some(encoded) = file.pdf_bytes.filter(|b| !b.is_empty()) else {
            continue;
        };
        let content = BASE64
            .decode(encoded.trim())
            .map_err(|e| ParseError(format!("envelopeDocuments[].PDFBytes is not base64: {e}")))?;
        let kind = match file.kind.as_deref() {
            Some("content") | None if completed => DocumentKind::Signed,
            _ => DocumentKind::Attachment,
        };
        let mut document = Document::new(kind);
        document.content = Some(content);
        document.content_type = Some("application/pdf".to_owned());
        document.file_name = file.name.filter(|n| !n.is_empty());
        document.reference_id = file.document_id.as_ref().and_then(crate::support::json_id);
        document.description = file.kind;
        documents.push(document);
    }
    Ok(documents)
}

impl Provider for DocuSign {
    fn name(&self) -> &'static str {
        "docusign"
    }

    fn settings(&self) -> &'static [Setting] {
        &[Setting::Secrets, Setting::Api, Setting::Reconcile]
    }

    /// An OAuth access token (`Authorization: Bearer …`), as every eSignature REST API call takes.
    fn api_authorization(&self, credentials: &[u8]) -> Option<String> {
        Some(crate::support::authorization("Bearer", credentials))
    }

    fn state_path(&self, process_key: &str) -> Option<String> {
        Some(format!("/envelopes/{}", path_segment(process_key)))
    }

    fn reconcile(&self) -> Option<&'static dyn crate::Reconcile> {
        Some(&DocuSignReconcile)
    }

    fn api_state(
        &self,
        status: u16,
        body: &[u8],
        _now: i64,
    ) -> Result<Option<ProcessStatus>, String> {
        api_state(status, body)
    }

    fn verifier(&self, source: &SourceConfig) -> Result<Box<dyn Verify>, String> {
        Ok(Box::new(Verifier::from_config(source)?))
    }

    fn parse(&self, body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
        parse(body)
    }

    /// `retryCount` is in the body; the id does not depend on it.
    fn resends_reencoded(&self) -> bool {
        true
    }

    fn sample(&self, source: &SourceConfig, _private_key: Option<&str>) -> Result<Sample, String> {
        let key = crate::support::first_secret(source)?;
        let envelope = uuid::Uuid::new_v4().to_string();
        let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let body = serde_json::to_vec(&serde_json::json!({
            "event": "envelope-completed", "apiVersion": "v2.1",
            "uri": format!("/restapi/v2.1/accounts/sample/envelopes/{envelope}"),
            "retryCount": 0, "configurationId": 10_000_001, "generatedDateTime": now,
            "data": {"accountId": "sample", "userId": "sample-user", "envelopeId": envelope,
                "envelopeSummary": {"status": "completed", "emailSubject": "Sample agreement",
                    "recipients": {"signers": [{"recipientId": "1", "name": "Sample Signer",
                        "email": "signer@example.com", "status": "completed", "signedDateTime": now}]}}},
        }))
        .expect("JSON");
        Ok(Sample {
            path_token: None,
            query: None,
            headers: vec![(SIGNATURE_HEADER, sign(key.expose(), &body))],
            body,
            content_type: "application/json",
            process_key: envelope,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Pairs, assert_every_flip_refused, source};
    use std::time::SystemTime;

    const KEY: &str = "docusign-connect-hmac-key";
    /// An envelope-completed message shaped as DocuSign's JSON SIM documentation shows it.
    const BODY: &[u8] = br#"{"event":"envelope-completed","apiVersion":"v2.1","uri":"/restapi/v2.1/accounts/a1b2c3d4/envelopes/93be49ab-afa0-4adf-933c-f752070d71ec","retryCount":0,"configurationId":10000001,"generatedDateTime":"2026-11-29T10:15:30.1234567Z","data":{"accountId":"a1b2c3d4","userId":"u9","envelopeId":"93be49ab-afa0-4adf-933c-f752070d71ec","envelopeSummary":{"status":"completed","emailSubject":"Please sign: NDA","recipients":{"signers":[{"recipientId":"1","recipientIdGuid":"5e9a","name":"Ana Lopez","email":"ana@example.com","status":"completed","signedDateTime":"2026-11-29T10:15:00.0000000Z"}]},"envelopeDocuments":[{"documentId":"1","name":"NDA.pdf","type":"content","PDFBytes":"JVBERi0xLjcgc2lnbmVk"},{"documentId":"certificate","name":"Summary","type":"summary","PDFBytes":"JVBERi0xLjcgY2VydA=="}]}}}"#;
    /// Base64 HMAC-SHA256 of BODY with KEY, computed independently (Python's `hmac`).
    const SIGNATURE: &str = "lxaLDTj9/NnUizTKiVf2XPjTgGKc54Tk8BjBzm7sl8o=";

    fn verify_with(
        keys: &[&str],
        headers: Vec<(&'static str, String)>,
        body: &[u8],
    ) -> Result<Verified, Rejection> {
        let headers = Pairs(headers);
        Verifier::from_config(&source("docusign", keys))
            .unwrap()
            .verify(&Request {
                body,
                headers: &headers,
                received_at: SystemTime::now(),
                path_token: None,
                query: None,
            })
    }

    fn verify(keys: &[&str], signature: &str, body: &[u8]) -> Result<Verified, Rejection> {
        verify_with(keys, vec![(SIGNATURE_HEADER, signature.to_owned())], body)
    }

    #[test]
    fn an_independently_computed_signature_verifies_and_every_flip_is_refused() {
        assert_eq!(sign(KEY.as_bytes(), BODY), SIGNATURE);
        let verified = verify(&[KEY], SIGNATURE, BODY).expect("genuine");
        assert_eq!(verified.event_type, "envelope-completed");
        assert_eq!(
            verified.event_id.as_deref(),
            Some(
                "93be49ab-afa0-4adf-933c-f752070d71ec:envelope-completed:-:2026-11-29T10:15:30.1234567Z"
            )
        );
        assert_eq!(
            verified.signature_headers,
            [(SIGNATURE_HEADER, SIGNATURE.to_owned())]
        );
        assert_every_flip_refused(KEY, SIGNATURE, 0..SIGNATURE.len(), BODY, |key, s, body| {
            verify(&[key], s, body)
        });
    }

    #[test]
    fn any_of_several_headers_and_keys_may_match() {
        let other = sign(b"another active key", BODY);
        let headers = vec![
            ("x-docusign-signature-1", other.clone()),
            ("x-docusign-signature-2", SIGNATURE.to_owned()),
        ];
        let verified =
            verify_with(&["old", KEY], headers, BODY).expect("second header, second key");
        assert_eq!(verified.key_label, "env:KEY1");
        assert_eq!(verified.signature_headers.len(), 2);
        // Only the first header's absence means unsigned; a gap ends the list.
        let gap = vec![
            ("x-docusign-signature-1", other),
            ("x-docusign-signature-3", SIGNATURE.to_owned()),
        ];
        assert_eq!(
            verify_with(&[KEY], gap, BODY).unwrap_err(),
            Rejection::BadSignature
        );
        let second_only = vec![("x-docusign-signature-2", SIGNATURE.to_owned())];
        assert_eq!(
            verify_with(&[KEY], second_only, BODY).unwrap_err(),
            Rejection::Unsigned
        );
        for bad in ["", "not base64", &SIGNATURE[..40]] {
            assert_eq!(
                verify(&[KEY], bad, BODY).unwrap_err(),
                Rejection::BadSignature,
                "{bad:?}"
            );
        }
        for body in [&b"[]"[..], b"{}", br#"{"event":"envelope-sent","data":{}}"#] {
            assert!(matches!(
                verify(&[KEY], &sign(KEY.as_bytes(), body), body).unwrap_err(),
                Rejection::Unacceptable { status: 400, .. }
            ));
        }
        assert!(Verifier::from_config(&source("docusign", &[])).is_err());
    }

    #[test]
    fn a_retry_with_another_retry_count_is_the_same_event() {
        let retry = String::from_utf8(BODY.to_vec())
            .unwrap()
            .replace("\"retryCount\":0", "\"retryCount\":1");
        let first = verify(&[KEY], SIGNATURE, BODY).unwrap();
        let second = verify(
            &[KEY],
            &sign(KEY.as_bytes(), retry.as_bytes()),
            retry.as_bytes(),
        )
        .unwrap();
        assert_eq!(first.event_id, second.event_id);
        assert!(DocuSign.resends_reencoded());
    }

    #[test]
    fn envelope_and_recipient_messages_are_normalized() {
        let events = parse(BODY).unwrap();
        let first = &events[0];
        assert_eq!(first.process_key, "93be49ab-afa0-4adf-933c-f752070d71ec");
        assert_eq!(first.status, Some(ProcessStatus::Completed));
        assert_eq!(first.flow_name.as_deref(), Some("Please sign: NDA"));
        assert_eq!(first.signees[0].key, "1");
        assert!(first.signees[0].signed && first.signees[0].signed_at.is_some());
        assert_eq!(first.documents.len(), 2);
        assert_eq!(first.documents[0].kind, DocumentKind::Signed);
        assert_eq!(
            first.documents[0].content.as_deref(),
            Some(&b"%PDF-1.7 signed"[..])
        );
        assert_eq!(
            first.documents[1].kind,
            DocumentKind::Attachment,
            "the certificate"
        );
        assert_eq!(first.activity[0].key, "envelope-completed:-");

        let recipient = br#"{"event":"recipient-completed","generatedDateTime":"2026-11-29T10:15:00Z","data":{"envelopeId":"e2","recipientId":"2","envelopeSummary":{"status":"sent","recipients":{"signers":[{"recipientId":"2","status":"completed","signedDateTime":"2026-11-29T10:15:00Z"}]}}}}"#;
        let events = parse(recipient).unwrap();
        assert_eq!(events[0].status, Some(ProcessStatus::InProgress));
        assert_eq!(events[0].activity[0].signee_key.as_deref(), Some("2"));
        for (event, expected) in [
            ("envelope-sent", Some(ProcessStatus::Created)),
            ("envelope-delivered", None),
            ("envelope-declined", Some(ProcessStatus::Canceled)),
            ("envelope-voided", Some(ProcessStatus::Canceled)),
        ] {
            let body = format!(r#"{{"event":"{event}","data":{{"envelopeId":"e3"}}}}"#);
            assert_eq!(
                parse(body.as_bytes()).unwrap()[0].status,
                expected,
                "{event}"
            );
        }
        let broken = br#"{"event":"envelope-completed","data":{"envelopeId":"e4","envelopeSummary":{"envelopeDocuments":[{"PDFBytes":"%%%"}]}}}"#;
        assert!(parse(broken).is_err());
        assert!(
            parse(br#"{"event":"template-created","data":{}}"#)
                .unwrap()
                .is_empty()
        );
    }

    /// DocuSign's Connect sample (`tests/fixtures/docusign/`) as an `event` about `envelope`,
    /// its envelope in `status`.
    fn connect_sample(event: &str, envelope: &str, status: &str) -> Vec<u8> {
        let mut message: serde_json::Value = serde_json::from_slice(&crate::testing::fixture(
            "docusign",
            "connect.schema-v2.json",
        ))
        .unwrap();
        message["event"] = event.into();
        message["generatedDateTime"] = "2026-11-29T10:15:30.1234567Z".into();
        message["data"]["envelopeId"] = envelope.into();
        message["data"]["envelopeSummary"]["envelopeId"] = envelope.into();
        message["data"]["envelopeSummary"]["status"] = status.into();
        serde_json::to_vec(&message).unwrap()
    }

    #[test]
    fn a_completed_envelope_without_its_pdf_announces_the_combined_pdf() {
        let events = parse(&connect_sample("envelope-completed", "e/1", "completed")).unwrap();
        let event = &events[0];
        assert_eq!(event.status, Some(ProcessStatus::Completed));
        let signed: Vec<_> = event
            .documents
            .iter()
            .filter(|d| d.kind == DocumentKind::Signed)
            .collect();
        assert_eq!(signed.len(), 1, "{:?}", event.documents);
        assert_eq!(
            signed[0].fetch.as_deref(),
            Some("/envelopes/e%2F1/documents/combined")
        );
        assert_eq!(signed[0].content, None);
        // With the PDF in the message, nothing is fetched.
        let with_pdf = parse(BODY).unwrap();
        assert!(with_pdf[0].documents.iter().all(|d| d.fetch.is_none()));
        // Not completed: nothing announced.
        let sent = parse(&connect_sample("envelope-sent", "e2", "sent")).unwrap();
        assert!(sent[0].documents.is_empty());
    }

    #[test]
    fn the_envelopes_status_is_its_state() {
        assert_eq!(
            DocuSign.api_authorization(b" token-1\n").as_deref(),
            Some("Bearer token-1")
        );
        assert_eq!(
            DocuSign.state_path("93be49ab-afa0").as_deref(),
            Some("/envelopes/93be49ab-afa0")
        );
        let sample: serde_json::Value = serde_json::from_slice(&crate::testing::fixture(
            "docusign",
            "connect.schema-v2.json",
        ))
        .unwrap();
        crate::testing::assert_api_states(
            &DocuSign,
            &sample["data"]["envelopeSummary"],
            &[
                ("completed", Some(ProcessStatus::Completed)),
                ("signed", Some(ProcessStatus::AllSigned)),
                ("declined", Some(ProcessStatus::Canceled)),
                ("voided", Some(ProcessStatus::Canceled)),
                ("timedout", Some(ProcessStatus::Expired)),
                ("sent", Some(ProcessStatus::Created)),
                ("delivered", Some(ProcessStatus::Created)),
                ("created", Some(ProcessStatus::Created)),
                ("processing", None),
            ],
        );
        let error = br#"{"errorCode":"ENVELOPE_DOES_NOT_EXIST","message":"The envelope specified either does not exist or you have no rights to it."}"#;
        assert_eq!(DocuSign.api_state(404, error, 0), Ok(None));
        assert!(DocuSign.api_state(200, error, 0).is_err(), "no status");
        assert!(DocuSign.api_state(200, b"[]", 0).is_err());
    }

    #[test]
    fn reconciliation_lists_status_changes_page_by_page_and_fills_only_gaps() {
        use crate::Reconcile;
        use std::collections::{HashMap, HashSet};
        let from = DateTime::<Utc>::from_timestamp(1_764_547_200, 0).unwrap();
        let path = DocuSignReconcile
            .discovery_path(None, from, from + chrono::TimeDelta::days(7))
            .unwrap();
        assert_eq!(
            path,
            "/envelopes?count=100&start_position=0&from_date=2025-12-01T00%3A00%3A00Z&to_date=2025-12-08T00%3A00%3A00Z"
        );
        let sample: serde_json::Value = serde_json::from_slice(&crate::testing::fixture(
            "docusign",
            "connect.schema-v2.json",
        ))
        .unwrap();
        let listed = |id: &str, status: &str| {
            let mut envelope = sample["data"]["envelopeSummary"].clone();
            envelope["envelopeId"] = id.into();
            envelope["status"] = status.into();
            envelope
        };
        let page = |end: &str, total: &str| {
            serde_json::to_vec(&serde_json::json!({
                "startPosition": "0", "endPosition": end, "totalSetSize": total,
                "envelopes": [listed("e-done", "completed"), listed("e-open", "delivered"),
                    listed("e-void", "voided"), listed("e-odd", "processing")]
            }))
            .unwrap()
        };
        assert_eq!(DocuSignReconcile.next_path(&path, &page("3", "4")), None);
        assert_eq!(
            DocuSignReconcile
                .next_path(&path, &page("99", "250"))
                .unwrap(),
            path.replace("start_position=0&", "start_position=100&")
        );
        let list = page("3", "4");
        assert_eq!(
            DocuSignReconcile.processes(&list).unwrap(),
            ["e-done", "e-open", "e-void", "e-odd"]
        );
        let gaps = DocuSignReconcile.gaps(&list, &HashMap::new()).unwrap();
        let kinds: Vec<_> = gaps.iter().map(|g| g.event_type).collect();
        assert_eq!(
            kinds,
            ["envelope-completed", "envelope-sent", "envelope-voided"]
        );
        let events = parse(&gaps[0].body).unwrap();
        assert_eq!(events[0].status, Some(ProcessStatus::Completed));
        assert_eq!(
            events[0].documents[0].fetch.as_deref(),
            Some("/envelopes/e-done/documents/combined")
        );
        assert_eq!(
            parse(&gaps[2].body).unwrap()[0].status,
            Some(ProcessStatus::Canceled)
        );
        let recorded = |keys: &[&str]| keys.iter().map(|k| (*k).to_owned()).collect::<HashSet<_>>();
        let known = HashMap::from([
            (
                "e-done".to_owned(),
                recorded(&["envelope-sent:-", "envelope-completed:-"]),
            ),
            ("e-open".to_owned(), recorded(&["envelope-sent:-"])),
            ("e-void".to_owned(), recorded(&["envelope-sent:-"])),
        ]);
        let gaps = DocuSignReconcile.gaps(&list, &known).unwrap();
        assert_eq!(gaps.len(), 1, "only the voiding is missing");
        assert_eq!(gaps[0].process_key, "e-void");
        assert!(!gaps[0].unknown_process);
        // One envelope's own answer reads the same way.
        let one = serde_json::to_vec(&listed("e-one", "completed")).unwrap();
        assert_eq!(DocuSignReconcile.processes(&one).unwrap(), ["e-one"]);
    }
}
