//! Documenso (open source, self-hosted or documenso.com): `provider = "documenso"`.
//!
//! What the provider signs, what this module verifies and relies on, the provider's API as the
//! worker uses it, and where each fact comes from: `docs/providers/documenso.md` (one page per provider).

use std::borrow::Cow;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::event::{
    ActivityEntry, Document as Pdf, DocumentKind, ParseError, ProcessStatus, Signee, SigningEvent,
};
use crate::settings::{Secret, Setting, SourceConfig};
use crate::support::{gap_of, header_text, hex, is_json_object, json_id, path_segment, rfc3339};
use crate::{Provider, Rejection, Request, Sample, Verified, Verify};

/// The header that carries the secret.
pub const SECRET_HEADER: &str = "x-documenso-secret";
/// The delivery id of newer versions.
pub const DELIVERY_HEADER: &str = "x-documenso-delivery-id";

/// Documenso in the provider registry.
pub struct Documenso;

/// Verifies Documenso webhooks for one source.
pub struct Verifier {
    secrets: Vec<Secret>,
}

#[derive(Deserialize)]
struct Head {
    event: Option<String>,
    payload: Option<serde_json::Value>,
}

/// The sha256 of `event` and `payload`, both as the sender meant them whatever the attempt.
fn event_digest(event: &str, payload: &serde_json::Value) -> String {
    // serde_json's map is ordered by key: the same payload always serializes the same way.
    let payload = serde_json::to_vec(payload).expect("a Value serializes");
    hex(&Sha256::new()
        .chain_update(event.as_bytes())
        .chain_update([0u8])
        .chain_update(&payload)
        .finalize())
}

fn head(body: &[u8]) -> Option<(String, serde_json::Value)> {
    if !is_json_object(body) {
        return None;
    }
    let head: Head = serde_json::from_slice(body).ok()?;
    let event = head.event.filter(|e| !e.is_empty())?;
    let payload = head.payload.filter(serde_json::Value::is_object)?;
    Some((event, payload))
}

impl Verifier {
    pub fn from_config(source: &SourceConfig) -> Result<Self, String> {
        let secrets = crate::support::required_secrets(source, "the webhook's secret")?;
        if source.secrets.iter().any(|s| s.expose().is_empty()) {
            return Err("documenso secrets must not be empty".to_owned());
        }
        Ok(Self { secrets })
    }
}

impl Verify for Verifier {
    fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        let presented = request
            .headers
            .get(SECRET_HEADER)
            .filter(|value| !value.is_empty())
            .ok_or(Rejection::Unsigned)?;
        // Digests are compared, so that neither the content nor the length of a secret shows in
        // the time taken.
        let presented: [u8; 32] = Sha256::digest(presented).into();
        let mut matched = None;
        for (i, secret) in self.secrets.iter().enumerate() {
            let expected: [u8; 32] = Sha256::digest(secret.expose()).into();
            if bool::from(expected.ct_eq(&presented)) && matched.is_none() {
                matched = Some(i);
            }
        }
        let key = matched.ok_or(Rejection::BadSignature)?;
        let (event, payload) = head(request.body).ok_or(Rejection::Unacceptable {
            status: 400,
            reason: "body is not a Documenso event (JSON object with event and payload expected)",
        })?;
        let mut forwarded = Vec::new();
        if let Some(delivery) = header_text(request, DELIVERY_HEADER).filter(|d| !d.is_empty()) {
            forwarded.push((DELIVERY_HEADER, delivery.to_owned()));
        }
        Ok(Verified {
            event_id: Some(event_digest(&event, &payload)),
            event_type: Cow::Owned(event),
            key_label: self.secrets[key].label().to_owned(),
            signature_use: None,
            // Never the secret itself: it would be archived.
            signature_headers: forwarded,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    id: Option<serde_json::Value>,
    external_id: Option<String>,
    title: Option<String>,
    status: Option<String>,
    updated_at: Option<String>,
    completed_at: Option<String>,
    recipients: Option<Vec<Recipient>>,
    /// The same list under its older name.
    #[serde(rename = "Recipient")]
    recipients_v1: Option<Vec<Recipient>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Recipient {
    id: Option<serde_json::Value>,
    email: Option<String>,
    name: Option<String>,
    signing_status: Option<String>,
    signed_at: Option<String>,
}

/// The process status an event puts the document in: the document's own `status` where it is
/// final, else what the event means.
fn status_of(event: &str, document_status: Option<&str>) -> Option<ProcessStatus> {
    match document_status {
        Some("COMPLETED") => return Some(ProcessStatus::Completed),
        Some("REJECTED") => return Some(ProcessStatus::Canceled),
        _ => {}
    }
    match event {
        "DOCUMENT_CREATED" | "DOCUMENT_SENT" => Some(ProcessStatus::Created),
        "DOCUMENT_SIGNED" | "DOCUMENT_RECIPIENT_COMPLETED" => Some(ProcessStatus::InProgress),
        "DOCUMENT_COMPLETED" => Some(ProcessStatus::Completed),
        "DOCUMENT_REJECTED" | "DOCUMENT_CANCELLED" => Some(ProcessStatus::Canceled),
        _ => None,
    }
}

/// `documentDataId` of the samples Documenso's "test webhook" sends (its
/// `generate-sample-data.ts`): fixed values that no real document has.
const SAMPLE_DOCUMENT_DATA_IDS: &[&str] =
    &["hs8qz1ktr9204jn7mg6c5dxy0", "cm6exvn93006hi02ru90a265a"];

/// Whether `body` is one of Documenso's test samples.
pub fn is_sample(body: &[u8]) -> bool {
    head(body).is_some_and(|(_, payload)| {
        payload["documentDataId"]
            .as_str()
            .is_some_and(|id| SAMPLE_DOCUMENT_DATA_IDS.contains(&id))
    })
}

/// One event per document event: the process is the document, its recipients the signees.
/// Events about templates or anything without a document id project nothing (they are
/// archived).
pub fn parse(body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
    let (event, payload) = head(body).ok_or_else(|| {
        ParseError("not a Documenso event: JSON object with event and payload expected".into())
    })?;
    if is_sample(body) {
        // The settings page's test: archived, never a signing ("document 10").
        return Ok(Vec::new());
    }
    if !event.starts_with("DOCUMENT_") {
        return Ok(Vec::new());
    }
    let digest = event_digest(&event, &payload);
    let document: Document = serde_json::from_value(payload)
        .map_err(|e| ParseError(format!("not a Documenso document: {e}")))?;
    let Some(process_key) = document.id.as_ref().and_then(json_id) else {
        return Ok(Vec::new());
    };
    let occurred_at = document
        .updated_at
        .as_deref()
        .or(document.completed_at.as_deref())
        .and_then(rfc3339);
    let signees = document
        .recipients
        .or(document.recipients_v1)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| {
            let key = r.id.as_ref().and_then(json_id)?;
            Some(Signee {
                key,
                name: r.name.filter(|n| !n.is_empty()),
                email: r.email.filter(|e| !e.is_empty()),
                signed: r.signing_status.as_deref() == Some("SIGNED"),
                signed_at: r.signed_at.as_deref().and_then(rfc3339),
                ..Signee::default()
            })
        })
        .collect();
    let mut metadata = serde_json::Map::new();
    if let Some(external_id) = document.external_id.filter(|id| !id.is_empty()) {
        metadata.insert("external_id".to_owned(), external_id.into());
    }
    let status = status_of(&event, document.status.as_deref());
    let documents = if status == Some(ProcessStatus::Completed) {
        vec![signed_pdf(&process_key, document.title.as_deref())]
    } else {
        Vec::new()
    };
    Ok(vec![SigningEvent {
        process_key,
        status,
        occurred_at,
        flow_key: None,
        flow_name: document.title.filter(|t| !t.is_empty()),
        company_key: None,
        signees,
        documents,
        activity: vec![ActivityEntry {
            // Two signings of one document are two entries; the attempts of one are one.
            key: format!("{event}:{}", &digest[..16]),
            signee_key: None,
            status: event.clone(),
            description: event,
            file_name: None,
            created_at: occurred_at,
            created_by: "documenso".to_owned(),
        }],
        metadata,
    }])
}

/// A completed document's signed PDF: `GET /document/{id}/download?version=signed` ("signed"
/// returns the completed document with signatures), downloaded when the source has an API.
fn signed_pdf(process_key: &str, title: Option<&str>) -> Pdf {
    let mut pdf = Pdf::new(DocumentKind::Signed);
    pdf.reference_id = Some(process_key.to_owned());
    pdf.content_type = Some("application/pdf".to_owned());
    pdf.file_name = title.filter(|t| !t.is_empty()).map(str::to_owned);
    pdf.description = Some("signed document (Documenso API)".into());
    pdf.fetch = Some(format!(
        "/document/{}/download?version=signed",
        path_segment(process_key)
    ));
    pdf
}

/// A document as the API describes it (`GET /document/{id}`, each of `GET /document`'s `data`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiDocument {
    id: Option<serde_json::Value>,
    status: Option<String>,
    created_at: Option<String>,
    deleted_at: Option<String>,
}

impl ApiDocument {
    /// `COMPLETED` → completed; `REJECTED`, or deleted before completion → canceled; `DRAFT`,
    /// `PENDING` → created.
    fn state(&self) -> Option<ProcessStatus> {
        match self.status.as_deref() {
            Some("COMPLETED") => Some(ProcessStatus::Completed),
            Some("REJECTED") => Some(ProcessStatus::Canceled),
            Some(_) if self.deleted_at.is_some() => Some(ProcessStatus::Canceled),
            Some("DRAFT" | "PENDING") => Some(ProcessStatus::Created),
            _ => None,
        }
    }
}

/// The documents of `GET /document/{id}`'s answer (one, as JSON values) or of a page of
/// `GET /document` (`data`).
fn api_documents(answer: &[u8]) -> Result<Vec<serde_json::Value>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(answer).map_err(|e| format!("not a Documenso API answer ({e})"))?;
    Ok(match value.get("data") {
        Some(serde_json::Value::Array(data)) => data.clone(),
        _ if value.get("id").is_some() => vec![value],
        _ => Vec::new(),
    })
}

fn api_document(value: &serde_json::Value) -> Result<ApiDocument, String> {
    serde_json::from_value(value.clone()).map_err(|e| format!("not a Documenso document ({e})"))
}

/// `GET /document`, newest first, 100 a page; the page number follows.
const LIST_PATH: &str = "/document?perPage=100&orderByColumn=createdAt&orderByDirection=desc&page=";

/// Documenso's reconciliation: each document not in a final state is asked with `GET
/// /document/{id}`, and `GET /document` is read newest first, page by page, back to
/// `look_back` (it takes no time range). A document completed or rejected there without that
/// event recorded — or any document never seen — becomes the event Documenso would have sent,
/// its payload the API's document.
pub struct DocumensoReconcile;

impl crate::Reconcile for DocumensoReconcile {
    fn process_path(&self, process_key: &str) -> String {
        format!("/document/{}", path_segment(process_key))
    }

    fn discovery_path(
        &self,
        _scope: Option<&str>,
        _from: chrono::DateTime<chrono::Utc>,
        _to: chrono::DateTime<chrono::Utc>,
    ) -> Option<String> {
        Some(format!("{LIST_PATH}1"))
    }

    fn next_path_since(
        &self,
        path: &str,
        answer: &[u8],
        from: chrono::DateTime<chrono::Utc>,
    ) -> Option<String> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Page {
            current_page: Option<f64>,
            total_pages: Option<f64>,
        }
        let page: Page = serde_json::from_slice(answer).ok()?;
        let (current, total) = (page.current_page?, page.total_pages?);
        let oldest = api_documents(answer)
            .ok()?
            .iter()
            .filter_map(|d| {
                api_document(d)
                    .ok()?
                    .created_at
                    .as_deref()
                    .and_then(rfc3339)
            })
            .min();
        if current >= total || oldest.is_none_or(|oldest| oldest < from) {
            return None;
        }
        let next = path.strip_prefix(LIST_PATH)?.parse::<u32>().ok()? + 1;
        Some(format!("{LIST_PATH}{next}"))
    }

    fn processes(&self, answer: &[u8]) -> Result<Vec<String>, String> {
        Ok(api_documents(answer)?
            .iter()
            .filter_map(|d| d.get("id").and_then(json_id))
            .collect())
    }

    fn gaps(
        &self,
        answer: &[u8],
        known: &std::collections::HashMap<String, std::collections::HashSet<String>>,
    ) -> Result<Vec<crate::Gap>, String> {
        let mut gaps = Vec::new();
        for value in api_documents(answer)? {
            let document = api_document(&value)?;
            let Some(id) = document.id.as_ref().and_then(json_id) else {
                continue;
            };
            let (event, recorded): (&'static str, &[&str]) = match document.state() {
                Some(ProcessStatus::Completed) => ("DOCUMENT_COMPLETED", &["DOCUMENT_COMPLETED:"]),
                Some(ProcessStatus::Canceled) => (
                    "DOCUMENT_REJECTED",
                    &["DOCUMENT_REJECTED:", "DOCUMENT_CANCELLED:"],
                ),
                Some(_) => ("DOCUMENT_SENT", &[]),
                None => continue,
            };
            let Some(unknown_process) = gap_of(known, &id, recorded) else {
                continue;
            };
            let body = serde_json::to_vec(&serde_json::json!({"event": event, "payload": value}))
                .map_err(|e| e.to_string())?;
            gaps.push(crate::Gap::of_event(id, unknown_process, event, body));
        }
        Ok(gaps)
    }
}

/// The state in an answer of `GET /document/{id}` ([`ApiDocument::state`]); other HTTP
/// statuses are no state.
fn api_state(status: u16, body: &[u8]) -> Result<Option<ProcessStatus>, String> {
    if status != 200 {
        return Ok(None);
    }
    let document: ApiDocument = serde_json::from_slice(body)
        .map_err(|e| format!("GET /document/{{id}}: not a document ({e})"))?;
    Ok(document.state())
}

impl Provider for Documenso {
    fn name(&self) -> &'static str {
        "documenso"
    }

    fn settings(&self) -> &'static [Setting] {
        &[Setting::Secrets, Setting::Api, Setting::Reconcile]
    }

    fn verifier(&self, source: &SourceConfig) -> Result<Box<dyn Verify>, String> {
        Ok(Box::new(Verifier::from_config(source)?))
    }

    fn parse(&self, body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
        parse(body)
    }

    /// The API key as the whole `Authorization` value (Documenso's SDKs send it so).
    fn api_authorization(&self, credentials: &[u8]) -> Option<String> {
        Some(String::from_utf8_lossy(credentials).trim().to_owned())
    }

    fn state_path(&self, process_key: &str) -> Option<String> {
        Some(format!("/document/{}", path_segment(process_key)))
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
        Some(&DocumensoReconcile)
    }

    fn is_test_event(&self, body: &[u8]) -> bool {
        is_sample(body)
    }

    /// A bearer secret: whoever has seen one delivery can send any body.
    fn proves_content(&self) -> bool {
        false
    }

    // `signs_body` stays true: there is no signature to replay, only a bearer secret, and a
    // secret cannot be held to one body (see the module documentation).

    /// Each attempt carries its own `createdAt`.
    fn resends_reencoded(&self) -> bool {
        true
    }

    fn sample(&self, source: &SourceConfig, _private_key: Option<&str>) -> Result<Sample, String> {
        let secret = crate::support::first_secret(source)?;
        let id = u64::from(rand_id());
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let body = serde_json::to_vec(&serde_json::json!({
            "event": "DOCUMENT_COMPLETED",
            "payload": {
                "id": id, "externalId": null, "title": "Sample agreement.pdf", "status": "COMPLETED",
                "createdAt": now, "updatedAt": now, "completedAt": now,
                "recipients": [{"id": id + 1, "documentId": id, "email": "signer@example.com",
                    "name": "Sample Signer", "role": "SIGNER", "signingStatus": "SIGNED", "signedAt": now}],
            },
            "createdAt": now,
            "webhookEndpoint": "http://localhost/webhooks/sample",
        }))
        .expect("JSON");
        Ok(Sample {
            path_token: None,
            query: None,
            headers: vec![(
                SECRET_HEADER,
                String::from_utf8(secret.expose().to_vec())
                    .map_err(|_| format!("secret {} is not text", secret.label()))?,
            )],
            body,
            content_type: "application/json",
            process_key: id.to_string(),
        })
    }
}

/// A random positive document id for samples (Documenso's ids are integers).
fn rand_id() -> u32 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3] & 0x7f]).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Pairs, source, text_flips};
    use std::time::SystemTime;

    const SECRET: &str = "documenso-test-secret";
    /// A DOCUMENT_COMPLETED event as Documenso's sample generator makes it.
    const BODY: &[u8] = br#"{"event":"DOCUMENT_COMPLETED","payload":{"id":10,"externalId":"contract-9","userId":1,"authOptions":null,"formValues":null,"visibility":"EVERYONE","title":"documenso.pdf","status":"COMPLETED","documentDataId":"hs8qz1ktr9204jn7mg6c5dxy0","createdAt":"2024-04-22T11:50:00.000Z","updatedAt":"2024-04-22T11:52:18.277Z","completedAt":"2024-04-22T11:52:18.277Z","deletedAt":null,"teamId":null,"templateId":null,"source":"DOCUMENT","recipients":[{"id":50,"documentId":10,"templateId":null,"email":"signer2@documenso.com","name":"Signer 2","token":"vbT8hi3jKQmrFP_LN1WcS","signedAt":"2024-04-22T11:52:18.277Z","signingOrder":1,"rejectionReason":null,"role":"VIEWER","readStatus":"OPENED","signingStatus":"SIGNED","sendStatus":"SENT"},{"id":51,"documentId":10,"templateId":null,"email":"signer1@documenso.com","name":"Signer 1","token":"HkrptwS42ZBXdRKj1TyUo","signedAt":"2024-04-22T11:52:18.277Z","signingOrder":2,"rejectionReason":null,"role":"SIGNER","readStatus":"OPENED","signingStatus":"SIGNED","sendStatus":"SENT"}]},"createdAt":"2024-04-22T11:52:18.277Z","webhookEndpoint":"https://example.com/webhooks/documenso"}"#;

    fn verify(
        secrets: &[&str],
        headers: Vec<(&'static str, String)>,
    ) -> Result<Verified, Rejection> {
        verify_body(secrets, headers, BODY)
    }

    fn verify_body(
        secrets: &[&str],
        headers: Vec<(&'static str, String)>,
        body: &[u8],
    ) -> Result<Verified, Rejection> {
        let headers = Pairs(headers);
        Verifier::from_config(&source("documenso", secrets))
            .unwrap()
            .verify(&Request {
                body,
                headers: &headers,
                received_at: SystemTime::now(),
                path_token: None,
                query: None,
            })
    }

    fn with_secret(secret: &str) -> Vec<(&'static str, String)> {
        vec![(SECRET_HEADER, secret.to_owned())]
    }

    #[test]
    fn the_configured_secret_is_accepted_and_any_other_refused() {
        let verified = verify(&[SECRET], with_secret(SECRET)).expect("genuine");
        assert_eq!(verified.event_type, "DOCUMENT_COMPLETED");
        assert_eq!(verified.key_label, "env:KEY0");
        assert!(
            verified.signature_headers.is_empty(),
            "the secret is never forwarded"
        );
        for (i, secret) in text_flips(SECRET, 0..SECRET.len()) {
            assert_eq!(
                verify(&[SECRET], with_secret(&secret)).unwrap_err(),
                Rejection::BadSignature,
                "byte {i}"
            );
        }
        for other in [
            &SECRET[1..],
            &format!("{SECRET}x"),
            " documenso-test-secret",
        ] {
            assert_eq!(
                verify(&[SECRET], with_secret(other)).unwrap_err(),
                Rejection::BadSignature,
                "{other:?}"
            );
        }
        assert_eq!(
            verify(&[SECRET], with_secret("")).unwrap_err(),
            Rejection::Unsigned
        );
        assert_eq!(
            verify(&[SECRET], Vec::new()).unwrap_err(),
            Rejection::Unsigned
        );
        let rotated = verify(&["old-secret", SECRET], with_secret(SECRET)).expect("second secret");
        assert_eq!(rotated.key_label, "env:KEY1");
        assert!(Verifier::from_config(&source("documenso", &[])).is_err());
        assert!(Verifier::from_config(&source("documenso", &[""])).is_err());
    }

    #[test]
    fn every_attempt_of_one_event_has_one_id_and_other_events_other_ids() {
        let first = verify(&[SECRET], with_secret(SECRET)).unwrap();
        // A retry: a new createdAt, keys in another order, the delivery id of newer versions.
        let retry = br#"{"createdAt":"2024-04-22T11:55:00.000Z","event":"DOCUMENT_COMPLETED","webhookEndpoint":"https://example.com/webhooks/documenso","payload":{"externalId":"contract-9","id":10,"userId":1,"authOptions":null,"formValues":null,"visibility":"EVERYONE","title":"documenso.pdf","status":"COMPLETED","documentDataId":"hs8qz1ktr9204jn7mg6c5dxy0","createdAt":"2024-04-22T11:50:00.000Z","updatedAt":"2024-04-22T11:52:18.277Z","completedAt":"2024-04-22T11:52:18.277Z","deletedAt":null,"teamId":null,"templateId":null,"source":"DOCUMENT","recipients":[{"id":50,"documentId":10,"templateId":null,"email":"signer2@documenso.com","name":"Signer 2","token":"vbT8hi3jKQmrFP_LN1WcS","signedAt":"2024-04-22T11:52:18.277Z","signingOrder":1,"rejectionReason":null,"role":"VIEWER","readStatus":"OPENED","signingStatus":"SIGNED","sendStatus":"SENT"},{"id":51,"documentId":10,"templateId":null,"email":"signer1@documenso.com","name":"Signer 1","token":"HkrptwS42ZBXdRKj1TyUo","signedAt":"2024-04-22T11:52:18.277Z","signingOrder":2,"rejectionReason":null,"role":"SIGNER","readStatus":"OPENED","signingStatus":"SIGNED","sendStatus":"SENT"}]}}"#;
        let mut headers = with_secret(SECRET);
        headers.push((DELIVERY_HEADER, "dlv_1".to_owned()));
        let second = verify_body(&[SECRET], headers, retry).unwrap();
        assert_eq!(first.event_id, second.event_id);
        assert_eq!(
            second.signature_headers,
            [(DELIVERY_HEADER, "dlv_1".to_owned())]
        );
        let other = String::from_utf8(BODY.to_vec())
            .unwrap()
            .replace("\"Signer 2\"", "\"Signer Two\"");
        let third = verify_body(&[SECRET], with_secret(SECRET), other.as_bytes()).unwrap();
        assert_ne!(first.event_id, third.event_id);
        for body in [&b"[1]"[..], b"{}", br#"{"event":"DOCUMENT_SENT"}"#, b"no"] {
            assert!(
                matches!(
                    verify_body(&[SECRET], with_secret(SECRET), body).unwrap_err(),
                    Rejection::Unacceptable { status: 400, .. }
                ),
                "{body:?}"
            );
        }
    }

    #[test]
    fn document_events_are_normalized() {
        // BODY is Documenso's own sample (what its "test webhook" sends): archived, never a
        // signing. The same event about a real document is normalized.
        assert!(is_sample(BODY) && Documenso.is_test_event(BODY));
        assert!(parse(BODY).unwrap().is_empty());
        let real = String::from_utf8(BODY.to_vec())
            .unwrap()
            .replace("hs8qz1ktr9204jn7mg6c5dxy0", "clx0real0document0data0id");
        assert!(!is_sample(real.as_bytes()));
        let events = parse(real.as_bytes()).unwrap();
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.process_key, "10");
        assert_eq!(event.status, Some(ProcessStatus::Completed));
        assert_eq!(event.flow_name.as_deref(), Some("documenso.pdf"));
        assert_eq!(event.metadata["external_id"], "contract-9");
        assert_eq!(event.signees.len(), 2);
        assert_eq!(event.signees[1].key, "51");
        assert_eq!(event.signees[1].name.as_deref(), Some("Signer 1"));
        assert_eq!(
            event.signees[1].email.as_deref(),
            Some("signer1@documenso.com")
        );
        assert!(event.signees[1].signed);
        assert_eq!(
            event.signees[1].signed_at.unwrap().to_rfc3339(),
            "2024-04-22T11:52:18.277+00:00"
        );
        assert!(event.activity[0].key.starts_with("DOCUMENT_COMPLETED:"));
        let debug = format!("{events:?}");
        assert!(
            !debug.contains("HkrptwS42ZBXdRKj1TyUo"),
            "signing tokens stay out"
        );

        let document = |event: &str, status: &str| {
            format!(
                r#"{{"event":"{event}","payload":{{"id":7,"status":"{status}","Recipient":[{{"id":3,"email":"a@example.com","signingStatus":"NOT_SIGNED"}}]}},"createdAt":"2024-01-01T00:00:00Z"}}"#
            )
        };
        for (event, status, expected) in [
            ("DOCUMENT_CREATED", "DRAFT", Some(ProcessStatus::Created)),
            ("DOCUMENT_SENT", "PENDING", Some(ProcessStatus::Created)),
            ("DOCUMENT_OPENED", "PENDING", None),
            (
                "DOCUMENT_SIGNED",
                "PENDING",
                Some(ProcessStatus::InProgress),
            ),
            (
                "DOCUMENT_SIGNED",
                "COMPLETED",
                Some(ProcessStatus::Completed),
            ),
            (
                "DOCUMENT_REJECTED",
                "PENDING",
                Some(ProcessStatus::Canceled),
            ),
            (
                "DOCUMENT_CANCELLED",
                "PENDING",
                Some(ProcessStatus::Canceled),
            ),
        ] {
            let events = parse(document(event, status).as_bytes()).unwrap();
            assert_eq!(events[0].status, expected, "{event} {status}");
            assert_eq!(events[0].signees[0].key, "3", "the older Recipient list");
            assert!(!events[0].signees[0].signed);
        }
        let template = br#"{"event":"TEMPLATE_CREATED","payload":{"id":4}}"#;
        assert!(parse(template).unwrap().is_empty());
        assert!(parse(b"[]").is_err());
    }

    #[test]
    fn the_apis_document_is_the_state_and_reconciliation_reads_back_to_look_back() {
        use crate::Reconcile;
        let sample: serde_json::Value = serde_json::from_slice(&crate::testing::fixture(
            "documenso",
            "document_completed.json",
        ))
        .unwrap();
        let document = sample["payload"].clone();
        crate::testing::assert_api_states(
            &Documenso,
            &document,
            &[
                ("COMPLETED", Some(ProcessStatus::Completed)),
                ("REJECTED", Some(ProcessStatus::Canceled)),
                ("PENDING", Some(ProcessStatus::Created)),
                ("DRAFT", Some(ProcessStatus::Created)),
                ("ARCHIVED", None),
            ],
        );
        let mut deleted = document.clone();
        deleted["status"] = "PENDING".into();
        deleted["deletedAt"] = "2024-04-23T00:00:00.000Z".into();
        assert_eq!(
            Documenso.api_state(200, &serde_json::to_vec(&deleted).unwrap(), 0),
            Ok(Some(ProcessStatus::Canceled))
        );
        assert_eq!(Documenso.api_state(404, b"{}", 0), Ok(None));
        assert_eq!(
            Documenso.api_authorization(b"api_x\n").as_deref(),
            Some("api_x")
        );
        // A completion announces its signed PDF.
        let events = parse(BODY.to_vec().as_slice()).unwrap();
        assert!(
            events.is_empty(),
            "the settings page's sample is no signing"
        );
        let mut real = sample.clone();
        real["payload"]["documentDataId"] = "real".into();
        let events = parse(&serde_json::to_vec(&real).unwrap()).unwrap();
        assert_eq!(
            events[0].documents[0].fetch.as_deref(),
            Some("/document/10/download?version=signed")
        );
        // Paging: newest first, stopping at look_back or the last page.
        let page = |current: u32, total: u32, created: &str| {
            let mut d = document.clone();
            d["createdAt"] = created.into();
            serde_json::to_vec(&serde_json::json!({
                "data": [d], "count": 1, "currentPage": current, "perPage": 100, "totalPages": total
            }))
            .unwrap()
        };
        let from = rfc3339("2024-04-20T00:00:00Z").unwrap();
        let path = DocumensoReconcile.discovery_path(None, from, from).unwrap();
        assert_eq!(
            DocumensoReconcile
                .next_path_since(&path, &page(1, 3, "2024-04-22T00:00:00Z"), from)
                .unwrap(),
            path.replace("page=1", "page=2")
        );
        assert_eq!(
            DocumensoReconcile.next_path_since(&path, &page(1, 3, "2024-04-19T00:00:00Z"), from),
            None,
            "the page reaches back before look_back"
        );
        assert_eq!(
            DocumensoReconcile.next_path_since(&path, &page(3, 3, "2024-04-22T00:00:00Z"), from),
            None
        );
    }
}
