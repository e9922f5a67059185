//! PandaDoc: `provider = "pandadoc"`.
//!
//! What the provider signs, what this module verifies and relies on, the provider's API as the
//! worker uses it, and where each fact comes from: `docs/providers/pandadoc.md` (one page per provider).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use hmac::Mac;
use serde::Deserialize;

use crate::event::{
    ActivityEntry, Document, DocumentKind, ParseError, ProcessStatus, Signee, SigningEvent,
};
use crate::settings::{Secret, Setting, SourceConfig};
use crate::support::{
    answered_status, date_range_query, decode_hex, gap_of, header_text, hex, hmac_sha256, json_id,
    matching_secret, path_segment, rfc3339,
};
use crate::{Provider, Rejection, Request, Sample, Verified, Verify};

/// The query parameter that carries the signature.
pub const SIGNATURE_PARAMETER: &str = "signature";
/// The delivery's id.
pub const EVENT_ID_HEADER: &str = "x-pandadoc-webhook-event-id";
/// The name the query's signature travels under with the message.
pub const SIGNATURE_HEADER: &str = "x-pandadoc-signature";

/// PandaDoc in the provider registry.
pub struct PandaDoc;

/// Verifies PandaDoc webhooks for one source.
pub struct Verifier {
    secrets: Vec<Secret>,
}

#[derive(Deserialize)]
struct Notification {
    event: Option<String>,
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    id: Option<serde_json::Value>,
    name: Option<String>,
    status: Option<String>,
    date_modified: Option<String>,
    date_completed: Option<String>,
    #[serde(default)]
    recipients: Vec<Recipient>,
    metadata: Option<serde_json::Value>,
    action_by: Option<Person>,
    action_date: Option<String>,
}

#[derive(Deserialize)]
struct Recipient {
    id: Option<serde_json::Value>,
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    has_completed: Option<bool>,
}

#[derive(Deserialize)]
struct Person {
    email: Option<String>,
}

/// The notifications of a body: a JSON array of objects.
fn notifications(body: &[u8]) -> Option<Vec<Notification>> {
    let first = body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))?;
    if *first != b'[' {
        return None;
    }
    serde_json::from_slice(body).ok()
}

/// The `signature` parameter of a query string.
fn query_signature(query: &str) -> Option<&str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == SIGNATURE_PARAMETER)
        .map(|(_, value)| value)
}

impl Verifier {
    pub fn from_config(source: &SourceConfig) -> Result<Self, String> {
        Ok(Self {
            secrets: crate::support::required_secrets(source, "the webhook's shared key")?,
        })
    }
}

impl Verify for Verifier {
    fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        let given = request
            .query
            .and_then(query_signature)
            .ok_or(Rejection::Unsigned)?;
        let signature = decode_hex(given)
            .filter(|s| s.len() == 32)
            .ok_or(Rejection::BadSignature)?;
        let key = matching_secret(&self.secrets, &[request.body], &[signature])
            .ok_or(Rejection::BadSignature)?;
        let notifications = notifications(request.body)
            .filter(|n| !n.is_empty())
            .ok_or(Rejection::Unacceptable {
                status: 400,
                reason: "body is not PandaDoc notifications (JSON array of objects expected)",
            })?;
        let mut types: Vec<&str> = Vec::new();
        for event in notifications.iter().filter_map(|n| n.event.as_deref()) {
            if !types.contains(&event) {
                types.push(event);
            }
        }
        // The delivery id header is not signed: it travels as metadata only. The event's
        // identity is the signed body's digest, so one signed body is one message, whatever
        // id a replay claims.
        let mut forwarded = vec![(SIGNATURE_HEADER, given.to_owned())];
        if let Some(id) = header_text(request, EVENT_ID_HEADER)
            .map(str::trim)
            .filter(|id| !id.is_empty())
        {
            forwarded.push((EVENT_ID_HEADER, id.to_owned()));
        }
        Ok(Verified {
            event_id: None,
            event_type: if types.is_empty() {
                Cow::Borrowed("unknown")
            } else {
                Cow::Owned(types.join(","))
            },
            key_label: self.secrets[key].label().to_owned(),
            signature_use: None,
            signature_headers: forwarded,
        })
    }
}

/// The hex HMAC of `body` with `secret`: PandaDoc's `signature` parameter. For tests and samples.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    hex(&hmac_sha256(secret, &[body]).finalize().into_bytes())
}

fn status_of(event: &str, document_status: Option<&str>) -> Option<ProcessStatus> {
    match document_status {
        Some("document.completed" | "document.paid") => return Some(ProcessStatus::Completed),
        Some(
            "document.declined" | "document.rejected" | "document.cancelled" | "document.voided",
        ) => return Some(ProcessStatus::Canceled),
        Some("document.expired") => return Some(ProcessStatus::Expired),
        Some("document.draft" | "document.sent") => return Some(ProcessStatus::Created),
        _ => {}
    }
    match event {
        "recipient_completed" => Some(ProcessStatus::InProgress),
        "document_completed_pdf_ready" => Some(ProcessStatus::Completed),
        _ => None,
    }
}

/// The recipients as signees, and the key of the one who completed now (`signer`: the acting
/// recipient's email, lower-cased, on `recipient_completed`).
fn recipients_of(
    recipients: Vec<Recipient>,
    signer: Option<&str>,
    occurred_at: Option<DateTime<Utc>>,
) -> (Vec<Signee>, Option<String>) {
    let mut actor_key = None;
    let signees = recipients
        .into_iter()
        .filter_map(|r| {
            let key =
                r.id.as_ref()
                    .and_then(json_id)
                    .or_else(|| r.email.clone().filter(|e| !e.is_empty()))?;
            let acted =
                signer.is_some() && r.email.as_deref().map(str::to_lowercase).as_deref() == signer;
            if acted {
                actor_key = Some(key.clone());
            }
            let name = [r.first_name.as_deref(), r.last_name.as_deref()]
                .into_iter()
                .flatten()
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            let signed = r.has_completed.unwrap_or(false) || acted;
            Some(Signee {
                key,
                name: (!name.is_empty()).then_some(name),
                email: r.email.filter(|e| !e.is_empty()),
                signed,
                signed_at: if acted { occurred_at } else { None },
                ..Signee::default()
            })
        })
        .collect();
    (signees, actor_key)
}

fn one(notification: Notification) -> Option<SigningEvent> {
    let event = notification.event.filter(|e| !e.is_empty())?;
    let data = notification.data?;
    let process_key = data.id.as_ref().and_then(json_id)?;
    let when = data
        .action_date
        .as_deref()
        .or(data.date_modified.as_deref())
        .or(data.date_completed.as_deref());
    let occurred_at: Option<DateTime<Utc>> = when.and_then(rfc3339);
    let actor = data.action_by.and_then(|p| p.email);
    let signer = (event == "recipient_completed")
        .then(|| actor.as_deref().map(str::to_lowercase))
        .flatten();
    let (signees, actor_key) = recipients_of(data.recipients, signer.as_deref(), occurred_at);
    let documents = if event == "document_completed_pdf_ready" {
        let mut document = Document::new(DocumentKind::Signed);
        document.reference_id = Some(process_key.clone());
        document.file_name = data.name.clone().filter(|n| !n.is_empty());
        document.content_type = Some("application/pdf".to_owned());
        document.description =
            Some("completed PDF (PandaDoc's Download Protected Document)".into());
        document.fetch = Some(format!(
            "/documents/{}/download-protected",
            path_segment(&process_key)
        ));
        vec![document]
    } else {
        Vec::new()
    };
    let status_text = data.status.clone().unwrap_or_default();
    let mut metadata = serde_json::Map::new();
    if let Some(meta) = data
        .metadata
        .filter(|m| m.as_object().is_some_and(|o| !o.is_empty()))
    {
        metadata.insert("metadata".to_owned(), meta);
    }
    Some(SigningEvent {
        status: status_of(&event, data.status.as_deref()),
        occurred_at,
        flow_key: None,
        flow_name: data.name.filter(|n| !n.is_empty()),
        company_key: None,
        signees,
        documents,
        activity: vec![ActivityEntry {
            key: format!("{event}:{status_text}:{}", when.unwrap_or("-")),
            signee_key: actor_key,
            status: event.clone(),
            description: if status_text.is_empty() {
                event
            } else {
                format!("{event} ({status_text})")
            },
            file_name: None,
            created_at: occurred_at,
            created_by: "pandadoc".to_owned(),
        }],
        metadata,
        process_key,
    })
}

/// The state in an answer of `GET /documents/{id}` (Document Status, `status` one of the
/// DocumentStatusEnum): completed or paid → completed; declined, rejected, voided → canceled;
/// expired → expired; draft, uploaded, sent, viewed and the approval and payment steps →
/// created. `document.error`, unknown statuses and other HTTP statuses are no state.
fn api_state(status: u16, body: &[u8]) -> Result<Option<ProcessStatus>, String> {
    let Some(status) = answered_status(status, body, "GET /documents/{id}")? else {
        return Ok(None);
    };
    Ok(match status.as_str() {
        "document.completed" | "document.paid" => Some(ProcessStatus::Completed),
        "document.declined" | "document.rejected" | "document.voided" => {
            Some(ProcessStatus::Canceled)
        }
        "document.expired" => Some(ProcessStatus::Expired),
        "document.draft"
        | "document.uploaded"
        | "document.sent"
        | "document.viewed"
        | "document.waiting_approval"
        | "document.approved"
        | "document.waiting_pay"
        | "document.external_review" => Some(ProcessStatus::Created),
        _ => None,
    })
}

/// A document as the API describes it (`GET /documents/{id}`'s DocumentStatusResponse, each of
/// `GET /documents`'s `results`): what a reconciled notification needs.
#[derive(Deserialize, serde::Serialize)]
struct ApiDocument {
    id: Option<String>,
    name: Option<String>,
    status: Option<String>,
    date_created: Option<String>,
    date_modified: Option<String>,
    date_completed: Option<String>,
    expiration_date: Option<String>,
}

/// The documents of `GET /documents/{id}`'s answer (one) or of a page of `GET /documents`.
fn api_documents(answer: &[u8]) -> Result<Vec<ApiDocument>, String> {
    #[derive(Deserialize)]
    struct Page {
        results: Option<Vec<ApiDocument>>,
    }
    let page: Page =
        serde_json::from_slice(answer).map_err(|e| format!("not a PandaDoc answer ({e})"))?;
    match page.results {
        Some(results) => Ok(results),
        None => serde_json::from_slice::<ApiDocument>(answer)
            .map(|d| vec![d])
            .map_err(|e| format!("not a PandaDoc document ({e})")),
    }
}

/// Documents a page of `GET /documents` holds at most, as Countersign asks for them.
const PAGE_SIZE: usize = 100;

/// PandaDoc's reconciliation: each document not in a final state is asked with `GET
/// /documents/{id}`, and documents modified within `look_back` are listed with `GET
/// /documents?modified_from=…&modified_to=…` (100 a page). A document completed there without
/// its `document_completed_pdf_ready` (so without its PDF), declined, rejected, voided or expired
/// without that state recorded — or any document never seen — becomes the notification PandaDoc
/// would have sent, made from the API's answer.
pub struct PandaDocReconcile;

impl crate::Reconcile for PandaDocReconcile {
    fn process_path(&self, process_key: &str) -> String {
        format!("/documents/{}", path_segment(process_key))
    }

    fn discovery_path(
        &self,
        _scope: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Option<String> {
        let dates = date_range_query(("modified_from", from), ("modified_to", to));
        Some(format!("/documents?count={PAGE_SIZE}&page=1&{dates}"))
    }

    fn next_path(&self, path: &str, answer: &[u8]) -> Option<String> {
        if api_documents(answer).ok()?.len() < PAGE_SIZE {
            return None;
        }
        let prefix = format!("/documents?count={PAGE_SIZE}&page=");
        let (page, rest) = path.strip_prefix(&prefix)?.split_once('&')?;
        let page: u32 = page.parse().ok()?;
        Some(format!("{prefix}{}&{rest}", page + 1))
    }

    fn processes(&self, answer: &[u8]) -> Result<Vec<String>, String> {
        Ok(api_documents(answer)?
            .into_iter()
            .filter_map(|d| d.id.filter(|id| !id.is_empty()))
            .collect())
    }

    fn gaps(
        &self,
        answer: &[u8],
        known: &std::collections::HashMap<String, std::collections::HashSet<String>>,
    ) -> Result<Vec<crate::Gap>, String> {
        let mut gaps = Vec::new();
        for document in api_documents(answer)? {
            let Some(id) = document.id.clone().filter(|i| !i.is_empty()) else {
                continue;
            };
            let status = document.status.clone().unwrap_or_default();
            let state = status_of("", Some(&status));
            // A completed document is recorded once its PDF came; another final state once a
            // notification of it did (entries are `<event>:<status>:<time>`).
            let (event, recorded): (&'static str, Vec<String>) = match state {
                Some(ProcessStatus::Completed) => (
                    "document_completed_pdf_ready",
                    vec!["document_completed_pdf_ready:".to_owned()],
                ),
                Some(ProcessStatus::Canceled | ProcessStatus::Expired) => (
                    "document_state_changed",
                    vec![format!("document_state_changed:{status}:")],
                ),
                _ => ("document_state_changed", Vec::new()),
            };
            let Some(unknown_process) = gap_of(known, &id, &recorded) else {
                continue;
            };
            // As the notification's entry key would say.
            let when = document
                .date_modified
                .clone()
                .or_else(|| document.date_completed.clone())
                .unwrap_or_else(|| "-".to_owned());
            let body = serde_json::to_vec(&serde_json::json!([{"event": event, "data": document}]))
                .map_err(|e| e.to_string())?;
            gaps.push(crate::Gap {
                process_key: id,
                unknown_process,
                missing: vec![format!("{event}:{status}:{when}")],
                body,
                event_type: event,
            });
        }
        Ok(gaps)
    }
}

/// One event per notification about a document; others (templates) project nothing.
pub fn parse(body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
    let notifications = notifications(body).ok_or_else(|| {
        ParseError("not PandaDoc notifications: JSON array of objects expected".to_owned())
    })?;
    Ok(notifications.into_iter().filter_map(one).collect())
}

impl Provider for PandaDoc {
    fn name(&self) -> &'static str {
        "pandadoc"
    }

    fn settings(&self) -> &'static [Setting] {
        &[Setting::Secrets, Setting::Api, Setting::Reconcile]
    }

    /// `API-Key <key>` (the SDK's `apiKey` scheme), or the credentials as they are when they
    /// already name the `Bearer` scheme (an OAuth access token).
    fn api_authorization(&self, credentials: &[u8]) -> Option<String> {
        Some(crate::support::authorization("API-Key", credentials))
    }

    fn state_path(&self, process_key: &str) -> Option<String> {
        Some(format!("/documents/{}", path_segment(process_key)))
    }

    fn reconcile(&self) -> Option<&'static dyn crate::Reconcile> {
        Some(&PandaDocReconcile)
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

    /// The delivery id stays through retries, manual ones included, which may serialize anew.
    fn resends_reencoded(&self) -> bool {
        true
    }

    fn sample(&self, source: &SourceConfig, _private_key: Option<&str>) -> Result<Sample, String> {
        let secret = crate::support::first_secret(source)?;
        let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let document_id = crate::support::sample_id();
        let body = serde_json::to_vec(&serde_json::json!([{
            "event": "document_state_changed",
            "data": {"id": document_id, "name": "Sample agreement", "status": "document.completed",
                "date_created": now, "date_modified": now, "date_completed": now,
                "recipients": [{"id": "r1", "first_name": "Sample", "last_name": "Signer",
                    "email": "signer@example.com", "recipient_type": "signer", "has_completed": true}]},
        }]))
        .expect("JSON");
        Ok(Sample {
            path_token: None,
            query: Some(format!(
                "{SIGNATURE_PARAMETER}={}",
                sign(secret.expose(), &body)
            )),
            headers: vec![(EVENT_ID_HEADER, crate::support::sample_id())],
            body,
            content_type: "application/json",
            process_key: document_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Pairs, assert_every_flip_refused, source};
    use std::time::SystemTime;

    const SECRET: &str = "pandadoc-shared-key";
    /// A `recipient_completed` notification shaped as PandaDoc documents it.
    const BODY: &[u8] = br#"[{"event":"recipient_completed","data":{"id":"msFYActMfJHqNTKH8YSvF1","name":"Sample Document","status":"document.sent","date_created":"2026-09-21T14:00:00.000000Z","date_modified":"2026-09-21T14:10:00.000000Z","expiration_date":null,"metadata":{"deal":"D-42"},"recipients":[{"id":"5a7b6c","first_name":"Josh","last_name":"Ron","email":"josh@example.com","recipient_type":"signer","has_completed":true,"role":"Client","signing_order":1},{"id":"9d8e7f","first_name":"Ann","last_name":"Lee","email":"ann@example.com","recipient_type":"signer","has_completed":false,"role":"Manager","signing_order":2}],"action_by":{"id":"5a7b6c","email":"Josh@example.com","first_name":"Josh","last_name":"Ron"},"action_date":"2026-09-21T14:10:00.000000Z"}}]"#;

    fn verify_with(
        secrets: &[&str],
        query: Option<&str>,
        headers: Vec<(&'static str, String)>,
        body: &[u8],
    ) -> Result<Verified, Rejection> {
        let headers = Pairs(headers);
        Verifier::from_config(&source("pandadoc", secrets))
            .unwrap()
            .verify(&Request {
                body,
                headers: &headers,
                received_at: SystemTime::now(),
                path_token: None,
                query,
            })
    }

    fn verify(secrets: &[&str], signature: &str, body: &[u8]) -> Result<Verified, Rejection> {
        let query = format!("signature={signature}");
        verify_with(secrets, Some(&query), Vec::new(), body)
    }

    #[test]
    fn the_query_signature_verifies_and_every_flip_is_refused() {
        let signature = sign(SECRET.as_bytes(), BODY);
        let verified = verify(&[SECRET], &signature, BODY).expect("genuine");
        assert_eq!(verified.event_type, "recipient_completed");
        assert_eq!(
            verified.event_id, None,
            "the body's digest, without the header"
        );
        assert_eq!(
            verified.signature_headers,
            [(SIGNATURE_HEADER, signature.clone())]
        );
        assert_every_flip_refused(
            SECRET,
            &signature,
            0..signature.len(),
            BODY,
            |key, s, body| verify(&[key], s, body),
        );
        // Among other parameters, with the delivery id.
        let query = format!("workspace=w1&signature={signature}&x=1");
        let verified = verify_with(
            &["old", SECRET],
            Some(&query),
            vec![(EVENT_ID_HEADER, "evt-77".to_owned())],
            BODY,
        )
        .expect("second key");
        assert_eq!(
            verified.event_id, None,
            "the unsigned delivery id names nothing"
        );
        assert!(
            verified
                .signature_headers
                .contains(&(EVENT_ID_HEADER, "evt-77".to_owned())),
            "it travels as metadata"
        );
        assert_eq!(verified.key_label, "env:KEY1");
    }

    #[test]
    fn missing_malformed_and_non_notification_bodies() {
        let signature = sign(SECRET.as_bytes(), BODY);
        for query in [
            None,
            Some(""),
            Some("sig=abc"),
            Some(&*format!("signatures={signature}")),
        ] {
            assert_eq!(
                verify_with(&[SECRET], query, Vec::new(), BODY).unwrap_err(),
                Rejection::Unsigned,
                "{query:?}"
            );
        }
        for bad in ["", "zz", &signature[..62], &format!("{signature}00")] {
            assert_eq!(
                verify(&[SECRET], bad, BODY).unwrap_err(),
                Rejection::BadSignature,
                "{bad:?}"
            );
        }
        for body in [&b"{}"[..], b"[]", b"not json"] {
            assert!(matches!(
                verify(&[SECRET], &sign(SECRET.as_bytes(), body), body).unwrap_err(),
                Rejection::Unacceptable { status: 400, .. }
            ));
        }
        assert!(Verifier::from_config(&source("pandadoc", &[])).is_err());
    }

    #[test]
    fn notifications_are_normalized() {
        let events = parse(BODY).unwrap();
        let event = &events[0];
        assert_eq!(event.process_key, "msFYActMfJHqNTKH8YSvF1");
        assert_eq!(event.status, Some(ProcessStatus::Created));
        assert_eq!(event.flow_name.as_deref(), Some("Sample Document"));
        assert_eq!(event.signees.len(), 2);
        assert_eq!(event.signees[0].name.as_deref(), Some("Josh Ron"));
        assert!(event.signees[0].signed && event.signees[0].signed_at.is_some());
        assert!(!event.signees[1].signed);
        assert_eq!(event.activity[0].signee_key.as_deref(), Some("5a7b6c"));
        assert_eq!(
            event.activity[0].description,
            "recipient_completed (document.sent)"
        );
        assert_eq!(event.metadata["metadata"]["deal"], "D-42");

        let two = br#"[{"event":"document_state_changed","data":{"id":"d1","status":"document.completed","date_modified":"2026-09-21T15:00:00Z","recipients":[]}},
                      {"event":"document_completed_pdf_ready","data":{"id":"d1","name":"Offer","status":"document.completed","date_modified":"2026-09-21T15:00:05Z"}}]"#;
        let events = parse(two).unwrap();
        assert_eq!(events.len(), 2, "one delivery, two notifications");
        assert!(
            events
                .iter()
                .all(|e| e.status == Some(ProcessStatus::Completed))
        );
        assert_eq!(events[1].documents[0].reference_id.as_deref(), Some("d1"));
        for (status, expected) in [
            ("document.draft", Some(ProcessStatus::Created)),
            ("document.viewed", None),
            ("document.declined", Some(ProcessStatus::Canceled)),
            ("document.voided", Some(ProcessStatus::Canceled)),
            ("document.expired", Some(ProcessStatus::Expired)),
        ] {
            let body = format!(
                r#"[{{"event":"document_state_changed","data":{{"id":"d2","status":"{status}"}}}}]"#
            );
            assert_eq!(
                parse(body.as_bytes()).unwrap()[0].status,
                expected,
                "{status}"
            );
        }
        let template = br#"[{"event":"template_created","data":{"name":"t"}}]"#;
        assert!(parse(template).unwrap().is_empty());
        assert!(parse(b"{}").is_err());
    }

    #[test]
    fn a_ready_pdf_is_downloaded_from_download_protected() {
        let body = br#"[{"event":"document_completed_pdf_ready","data":{"id":"msFY/1","name":"Offer","status":"document.completed","date_modified":"2026-09-21T15:00:00Z","recipients":[]}}]"#;
        let events = parse(body).unwrap();
        let document = &events[0].documents[0];
        assert_eq!(document.kind, DocumentKind::Signed);
        assert_eq!(
            document.fetch.as_deref(),
            Some("/documents/msFY%2F1/download-protected")
        );
        assert_eq!(document.file_name.as_deref(), Some("Offer"));
    }

    #[test]
    fn the_document_status_is_its_state() {
        assert_eq!(
            PandaDoc.api_authorization(b"key-1\n").as_deref(),
            Some("API-Key key-1")
        );
        assert_eq!(
            PandaDoc.api_authorization(b"Bearer oauth-1").as_deref(),
            Some("Bearer oauth-1")
        );
        assert_eq!(
            PandaDoc.state_path("msFYActMfJHqNTKH8YSvF1").as_deref(),
            Some("/documents/msFYActMfJHqNTKH8YSvF1")
        );
        let fixture: serde_json::Value = serde_json::from_slice(&crate::testing::fixture(
            "pandadoc",
            "DocumentStatusResponse.json",
        ))
        .unwrap();
        crate::testing::assert_api_states(
            &PandaDoc,
            &fixture,
            &[
                ("document.completed", Some(ProcessStatus::Completed)),
                ("document.paid", Some(ProcessStatus::Completed)),
                ("document.declined", Some(ProcessStatus::Canceled)),
                ("document.rejected", Some(ProcessStatus::Canceled)),
                ("document.voided", Some(ProcessStatus::Canceled)),
                ("document.sent", Some(ProcessStatus::Created)),
                ("document.viewed", Some(ProcessStatus::Created)),
                ("document.waiting_pay", Some(ProcessStatus::Created)),
                ("document.draft", Some(ProcessStatus::Created)),
                ("document.error", None),
            ],
        );
        assert_eq!(PandaDoc.api_state(404, b"{}", 0), Ok(None));
        assert!(PandaDoc.api_state(200, b"{}", 0).is_err());
    }

    #[test]
    fn reconciliation_lists_modified_documents_page_by_page_and_fills_only_gaps() {
        use crate::Reconcile;
        use std::collections::{HashMap, HashSet};
        let from = DateTime::<Utc>::from_timestamp(1_764_547_200, 0).unwrap();
        let path = PandaDocReconcile
            .discovery_path(None, from, from + chrono::TimeDelta::days(7))
            .unwrap();
        assert_eq!(
            path,
            "/documents?count=100&page=1&modified_from=2025-12-01T00%3A00%3A00Z&modified_to=2025-12-08T00%3A00%3A00Z"
        );
        let fixture: serde_json::Value = serde_json::from_slice(&crate::testing::fixture(
            "pandadoc",
            "DocumentStatusResponse.json",
        ))
        .unwrap();
        let listed = |id: &str, status: &str| {
            let mut document = fixture.clone();
            document["id"] = id.into();
            document["status"] = status.into();
            document
        };
        let full: Vec<_> = (0..100)
            .map(|i| listed(&format!("d{i}"), "document.sent"))
            .collect();
        let full = serde_json::to_vec(&serde_json::json!({ "results": full })).unwrap();
        assert_eq!(
            PandaDocReconcile.next_path(&path, &full).unwrap(),
            path.replace("page=1&", "page=2&")
        );
        let list = serde_json::to_vec(&serde_json::json!({"results": [
            listed("p-done", "document.completed"), listed("p-open", "document.viewed"),
            listed("p-void", "document.voided")
        ]}))
        .unwrap();
        assert_eq!(PandaDocReconcile.next_path(&path, &list), None);
        let gaps = PandaDocReconcile.gaps(&list, &HashMap::new()).unwrap();
        let kinds: Vec<_> = gaps.iter().map(|g| g.event_type).collect();
        assert_eq!(
            kinds,
            [
                "document_completed_pdf_ready",
                "document_state_changed",
                "document_state_changed"
            ]
        );
        let events = parse(&gaps[0].body).unwrap();
        assert_eq!(events[0].status, Some(ProcessStatus::Completed));
        assert_eq!(
            events[0].documents[0].fetch.as_deref(),
            Some("/documents/p-done/download-protected")
        );
        // A completion recorded without its PDF is still a gap; with it, none.
        let recorded = |keys: &[&str]| keys.iter().map(|k| (*k).to_owned()).collect::<HashSet<_>>();
        let mut known = HashMap::from([
            (
                "p-done".to_owned(),
                recorded(&[
                    "document_state_changed:document.completed:2026-11-30T10:02:11.504000Z",
                ]),
            ),
            (
                "p-open".to_owned(),
                recorded(&["document_state_changed:document.sent:x"]),
            ),
            (
                "p-void".to_owned(),
                recorded(&["document_state_changed:document.voided:x"]),
            ),
        ]);
        let gaps = PandaDocReconcile.gaps(&list, &known).unwrap();
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].process_key, "p-done");
        known
            .get_mut("p-done")
            .unwrap()
            .insert("document_completed_pdf_ready:document.completed:x".to_owned());
        assert!(PandaDocReconcile.gaps(&list, &known).unwrap().is_empty());
        let one = serde_json::to_vec(&listed("p-one", "document.sent")).unwrap();
        assert_eq!(PandaDocReconcile.processes(&one).unwrap(), ["p-one"]);
    }
}
