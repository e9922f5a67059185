//! Zoho Sign: `provider = "zoho_sign"`.
//!
//! What the provider signs, what this module verifies and relies on, the provider's API as the
//! worker uses it, and where each fact comes from: `docs/providers/zoho_sign.md` (one page per provider).

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
    gap_of, header_text, hmac_sha256, is_json_object, json_id, matching_secret, path_segment,
};
use crate::{Provider, Rejection, Request, Sample, Verified, Verify};

/// The signature's header.
pub const SIGNATURE_HEADER: &str = "x-zs-webhook-signature";

/// Zoho Sign in the provider registry.
pub struct ZohoSign;

/// Verifies Zoho Sign webhooks for one source.
pub struct Verifier {
    secrets: Vec<Secret>,
}

#[derive(Deserialize)]
struct Envelope {
    requests: Option<SignRequest>,
    notifications: Option<Notification>,
}

#[derive(Deserialize)]
struct SignRequest {
    request_id: Option<serde_json::Value>,
    request_name: Option<String>,
    request_status: Option<String>,
    #[serde(default)]
    actions: Vec<Action>,
    #[serde(default)]
    document_ids: Vec<DocumentId>,
}

#[derive(Deserialize)]
struct Action {
    action_id: Option<serde_json::Value>,
    recipient_name: Option<String>,
    recipient_email: Option<String>,
    recipient_phonenumber: Option<String>,
    action_status: Option<String>,
}

#[derive(Deserialize)]
struct DocumentId {
    document_name: Option<String>,
}

#[derive(Deserialize)]
struct Notification {
    operation_type: Option<String>,
    performed_at: Option<serde_json::Value>,
    action_id: Option<serde_json::Value>,
    activity: Option<String>,
}

/// A notification's parts: `(request id, operation type, action id or "-", performed_at)`.
struct Identity {
    request_id: String,
    operation: String,
    action_id: Option<String>,
    performed_at: String,
}

impl Identity {
    fn event_id(&self) -> String {
        format!("{}:{}", self.request_id, self.within_request())
    }

    /// What tells this notification from the request's others.
    fn within_request(&self) -> String {
        format!(
            "{}:{}:{}",
            self.operation,
            self.action_id.as_deref().unwrap_or("-"),
            self.performed_at
        )
    }
}

fn envelope(body: &[u8]) -> Option<Envelope> {
    if !is_json_object(body) {
        return None;
    }
    serde_json::from_slice(body).ok()
}

fn identify(envelope: &Envelope) -> Option<Identity> {
    let request = envelope.requests.as_ref()?;
    let notification = envelope.notifications.as_ref()?;
    Some(Identity {
        request_id: request.request_id.as_ref().and_then(json_id)?,
        operation: notification
            .operation_type
            .clone()
            .filter(|o| !o.is_empty())?,
        action_id: notification.action_id.as_ref().and_then(json_id),
        performed_at: notification
            .performed_at
            .as_ref()
            .and_then(json_id)
            .unwrap_or_else(|| "-".to_owned()),
    })
}

impl Verifier {
    pub fn from_config(source: &SourceConfig) -> Result<Self, String> {
        let secrets = crate::support::required_secrets(source, "the webhook's HMAC secret key")?;
        Ok(Self { secrets })
    }
}

impl Verify for Verifier {
    fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        let header = header_text(request, SIGNATURE_HEADER).ok_or(Rejection::Unsigned)?;
        let signature = BASE64
            .decode(header.trim())
            .ok()
            .filter(|s| s.len() == 32)
            .ok_or(Rejection::BadSignature)?;
        let key = matching_secret(&self.secrets, &[request.body], &[signature])
            .ok_or(Rejection::BadSignature)?;
        let identity = envelope(request.body)
            .as_ref()
            .and_then(identify)
            .ok_or(Rejection::Unacceptable {
                status: 400,
                reason: "body is not a Zoho Sign notification (requests.request_id and notifications.operation_type expected)",
            })?;
        Ok(Verified {
            event_id: Some(identity.event_id()),
            event_type: Cow::Owned(identity.operation),
            key_label: self.secrets[key].label().to_owned(),
            signature_use: None,
            signature_headers: vec![(SIGNATURE_HEADER, header.to_owned())],
        })
    }
}

/// The base64 HMAC of `body` with `secret`: what Zoho Sign puts in `X-ZS-WEBHOOK-SIGNATURE`.
/// For tests and samples.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    BASE64.encode(hmac_sha256(secret, &[body]).finalize().into_bytes())
}

/// `performed_at`: Unix milliseconds.
fn millis(value: &serde_json::Value) -> Option<DateTime<Utc>> {
    let ms = match value {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))?,
        serde_json::Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    DateTime::from_timestamp_millis(ms)
}

fn status_of(operation: &str, request_status: Option<&str>) -> Option<ProcessStatus> {
    match request_status {
        Some("completed") => return Some(ProcessStatus::Completed),
        Some("declined" | "recalled") => return Some(ProcessStatus::Canceled),
        Some("expired") => return Some(ProcessStatus::Expired),
        _ => {}
    }
    match operation {
        "RequestSubmitted" => Some(ProcessStatus::Created),
        "RequestSigningSuccess" | "RequestApproved" => Some(ProcessStatus::InProgress),
        "RequestCompleted" => Some(ProcessStatus::Completed),
        "RequestRejected" | "RequestRecalled" => Some(ProcessStatus::Canceled),
        "RequestExpired" => Some(ProcessStatus::Expired),
        _ => None,
    }
}

/// One event per notification: the process is the signature request, its actions the signees.
pub fn parse(body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
    let envelope = envelope(body).ok_or_else(|| {
        ParseError("not a Zoho Sign notification: JSON object expected".to_owned())
    })?;
    let Some(identity) = identify(&envelope) else {
        return Ok(Vec::new());
    };
    let (Some(request), Some(notification)) = (envelope.requests, envelope.notifications) else {
        return Ok(Vec::new());
    };
    let occurred_at = notification.performed_at.as_ref().and_then(millis);
    let signed_now = matches!(
        identity.operation.as_str(),
        "RequestSigningSuccess" | "RequestApproved"
    );
    let signees = request
        .actions
        .into_iter()
        .filter_map(|action| {
            let key = action.action_id.as_ref().and_then(json_id)?;
            let acted = signed_now && identity.action_id.as_deref() == Some(key.as_str());
            let signed = acted || action.action_status.as_deref() == Some("SIGNED");
            Some(Signee {
                name: action.recipient_name.filter(|n| !n.is_empty()),
                email: action.recipient_email.filter(|e| !e.is_empty()),
                phone: action.recipient_phonenumber.filter(|p| !p.is_empty()),
                signed,
                signed_at: if acted { occurred_at } else { None },
                key,
                ..Signee::default()
            })
        })
        .collect();
    let documents = if identity.operation == "RequestCompleted" {
        vec![completed_documents(
            &identity.request_id,
            request.document_ids,
        )]
    } else {
        Vec::new()
    };
    Ok(vec![SigningEvent {
        process_key: identity.request_id.clone(),
        status: status_of(&identity.operation, request.request_status.as_deref()),
        occurred_at,
        flow_key: None,
        flow_name: request.request_name.filter(|n| !n.is_empty()),
        company_key: None,
        signees,
        documents,
        activity: vec![ActivityEntry {
            key: identity.within_request(),
            signee_key: identity.action_id.clone(),
            status: identity.operation.clone(),
            description: notification
                .activity
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| identity.operation.clone()),
            file_name: None,
            created_at: occurred_at,
            created_by: "zoho_sign".to_owned(),
        }],
        metadata: serde_json::Map::new(),
    }])
}

/// A completed request's signed documents: `GET /requests/{id}/pdf` (one PDF, or a zip where
/// the request has several documents), downloaded when the source has an API; else a reference
/// to the request, naming its documents.
fn completed_documents(request_id: &str, documents: Vec<DocumentId>) -> Document {
    let names: Vec<String> = documents
        .into_iter()
        .filter_map(|d| d.document_name.filter(|n| !n.is_empty()))
        .collect();
    let mut document = Document::new(DocumentKind::Signed);
    document.reference_id = Some(request_id.to_owned());
    document.file_name = match names.as_slice() {
        [one] => crate::support::pdf_name(Some(one.clone())),
        _ => None,
    };
    document.description = Some(if names.len() > 1 {
        format!(
            "signed documents (Zoho Sign API; a zip): {}",
            names.join(", ")
        )
    } else {
        "signed document (Zoho Sign API)".to_owned()
    });
    document.fetch = Some(format!("/requests/{}/pdf", path_segment(request_id)));
    document
}

/// A request's state from its `request_status`.
fn request_state(status: &str) -> Option<ProcessStatus> {
    match status {
        "completed" => Some(ProcessStatus::Completed),
        "declined" | "recalled" => Some(ProcessStatus::Canceled),
        "expired" => Some(ProcessStatus::Expired),
        "draft" | "inprogress" | "onhold" | "expiring" => Some(ProcessStatus::Created),
        _ => None,
    }
}

/// The requests of `GET /requests/{id}` (`requests`, one) or of a page of `GET /requests`
/// (`requests`, a list), and whether more pages follow (`page_context.has_more_rows`).
fn api_requests(answer: &[u8]) -> Result<(Vec<serde_json::Value>, bool), String> {
    let value: serde_json::Value =
        serde_json::from_slice(answer).map_err(|e| format!("not a Zoho Sign answer ({e})"))?;
    let more = value
        .pointer("/page_context/has_more_rows")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    Ok(match value.get("requests") {
        Some(serde_json::Value::Array(requests)) => (requests.clone(), more),
        Some(request @ serde_json::Value::Object(_)) => (vec![request.clone()], false),
        _ => (Vec::new(), false),
    })
}

/// Zoho Sign's reconciliation: each request not in a final state is asked with `GET
/// /requests/{id}`, and `GET /requests` is read newest first (`created_time`, 100 a page) back to
/// `look_back` (the list takes no time range). A request completed, declined, recalled or expired
/// there without that notification recorded — or any request never seen — becomes the
/// notification Zoho Sign would have sent, its `requests` the API's.
pub struct ZohoSignReconcile;

const PAGE_ROWS: u64 = 100;

/// `GET /requests` from row `start_index` (counted from 1), newest first.
fn list_path(start_index: u64) -> String {
    let data = serde_json::json!({"page_context": {
        "row_count": PAGE_ROWS, "start_index": start_index,
        "sort_column": "created_time", "sort_order": "DESC"}});
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("data", &data.to_string())
        .finish();
    format!("/requests?{query}")
}

/// The `start_index` of a [`list_path`].
fn start_index_of(path: &str) -> Option<u64> {
    let (_, query) = path.split_once('?')?;
    let data = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "data")?
        .1;
    let data: serde_json::Value = serde_json::from_str(&data).ok()?;
    data.pointer("/page_context/start_index")?.as_u64()
}

/// A time the API states in Unix milliseconds (a number or its text).
fn api_millis(request: &serde_json::Value, field: &str) -> Option<DateTime<Utc>> {
    request.get(field).and_then(millis)
}

impl crate::Reconcile for ZohoSignReconcile {
    fn process_path(&self, process_key: &str) -> String {
        format!("/requests/{}", path_segment(process_key))
    }

    fn discovery_path(
        &self,
        _scope: Option<&str>,
        _from: DateTime<Utc>,
        _to: DateTime<Utc>,
    ) -> Option<String> {
        Some(list_path(1))
    }

    fn next_path(&self, path: &str, answer: &[u8]) -> Option<String> {
        let (_, more) = api_requests(answer).ok()?;
        if !more {
            return None;
        }
        Some(list_path(start_index_of(path)? + PAGE_ROWS))
    }

    fn next_path_since(&self, path: &str, answer: &[u8], from: DateTime<Utc>) -> Option<String> {
        let (requests, _) = api_requests(answer).ok()?;
        let reaches_back = requests
            .iter()
            .any(|r| api_millis(r, "created_time").is_some_and(|t| t < from));
        if reaches_back {
            return None;
        }
        self.next_path(path, answer)
    }

    fn processes(&self, answer: &[u8]) -> Result<Vec<String>, String> {
        Ok(api_requests(answer)?
            .0
            .iter()
            .filter_map(|r| r.get("request_id").and_then(json_id))
            .collect())
    }

    fn gaps(
        &self,
        answer: &[u8],
        known: &std::collections::HashMap<String, std::collections::HashSet<String>>,
    ) -> Result<Vec<crate::Gap>, String> {
        let mut gaps = Vec::new();
        for request in api_requests(answer)?.0 {
            let Some(id) = request.get("request_id").and_then(json_id) else {
                continue;
            };
            let status = request
                .get("request_status")
                .and_then(|s| s.as_str())
                .unwrap_or("");
            let operation: &'static str = match status {
                "completed" => "RequestCompleted",
                "declined" => "RequestRejected",
                "recalled" => "RequestRecalled",
                "expired" => "RequestExpired",
                "inprogress" | "onhold" | "expiring" => "RequestSubmitted",
                _ => continue,
            };
            let recorded: &[&str] = if operation == "RequestSubmitted" {
                &[]
            } else {
                &[operation]
            };
            let Some(unknown_process) = gap_of(known, &id, recorded) else {
                continue;
            };
            let at = ["action_time", "modified_time", "created_time"]
                .iter()
                .find_map(|field| request.get(*field).filter(|v| millis(v).is_some()))
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            let body = serde_json::to_vec(&serde_json::json!({
                "requests": request,
                "notifications": {"operation_type": operation, "performed_at": at,
                    "activity": format!("{status} (reconciled from Zoho Sign's API)")},
            }))
            .map_err(|e| e.to_string())?;
            gaps.push(crate::Gap::of_event(id, unknown_process, operation, body));
        }
        Ok(gaps)
    }
}

impl Provider for ZohoSign {
    fn name(&self) -> &'static str {
        "zoho_sign"
    }

    fn settings(&self) -> &'static [Setting] {
        &[Setting::Secrets, Setting::Api, Setting::Reconcile]
    }

    /// An access token: `Authorization: Zoho-oauthtoken <token>`.
    fn api_authorization(&self, credentials: &[u8]) -> Option<String> {
        Some(crate::support::authorization(
            "Zoho-oauthtoken",
            credentials,
        ))
    }

    /// Zoho's access tokens live an hour: with `token_url` (`https://accounts.zoho.<dc>/oauth/v2/token`)
    /// the worker obtains them from a refresh token.
    fn api_token_scheme(&self) -> Option<&'static str> {
        Some("Zoho-oauthtoken")
    }

    fn state_path(&self, process_key: &str) -> Option<String> {
        Some(crate::Reconcile::process_path(
            &ZohoSignReconcile,
            process_key,
        ))
    }

    /// `requests.request_status` of a 200 answer; any other status is no state.
    fn api_state(
        &self,
        status: u16,
        body: &[u8],
        _now: i64,
    ) -> Result<Option<ProcessStatus>, String> {
        if status != 200 {
            return Ok(None);
        }
        let answer: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| format!("GET /requests/{{id}}: not a state ({e})"))?;
        let status = answer
            .pointer("/requests/request_status")
            .and_then(serde_json::Value::as_str)
            .ok_or("GET /requests/{id}: the answer has no requests.request_status")?;
        Ok(request_state(status))
    }

    fn reconcile(&self) -> Option<&'static dyn crate::Reconcile> {
        Some(&ZohoSignReconcile)
    }

    fn verifier(&self, source: &SourceConfig) -> Result<Box<dyn Verify>, String> {
        Ok(Box::new(Verifier::from_config(source)?))
    }

    fn parse(&self, body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
        parse(body)
    }

    /// The id is built from the notification, not the bytes: a redelivery serialized anew is the
    /// same notification.
    fn resends_reencoded(&self) -> bool {
        true
    }

    fn sample(&self, source: &SourceConfig, _private_key: Option<&str>) -> Result<Sample, String> {
        let secret = crate::support::first_secret(source)?;
        let now = Utc::now().timestamp_millis();
        let request_id = now.unsigned_abs().to_string();
        let body = serde_json::to_vec(&serde_json::json!({
            "requests": {"request_id": request_id, "request_name": "Sample agreement",
                "request_status": "completed",
                "actions": [{"action_id": "1", "recipient_name": "Sample Signer",
                    "recipient_email": "signer@example.com", "action_type": "SIGN", "action_status": "SIGNED"}],
                "document_ids": [{"document_id": "2", "document_name": "Sample agreement.pdf"}]},
            "notifications": {"operation_type": "RequestCompleted", "performed_at": now,
                "activity": "Document has been completed"},
        }))
        .expect("JSON");
        Ok(Sample {
            path_token: None,
            query: None,
            headers: vec![(SIGNATURE_HEADER, sign(secret.expose(), &body))],
            body,
            content_type: "application/json",
            process_key: request_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Pairs, assert_every_flip_refused, source};
    use std::time::SystemTime;

    /// Zoho Sign's published example ("Securing Zoho Sign webhooks with HMAC authentication"):
    /// payload, secret and signature exactly as printed, the payload's doubled brace included.
    const PUBLISHED_BODY: &[u8] = br#"{{"requests":{"request_name":"Test Name"},"notifications":{"operation_type":"RequestSigningSuccess"}}"#;
    const PUBLISHED_SECRET: &str = "thisisthesamplekeyfortestingpurposes";
    const PUBLISHED_SIGNATURE: &str = "drbSrM4H816RYKpZiRBLddUa0yHaTrwjtY04sIZFZus=";

    const SECRET: &str = "zoho-sign-test-secret";
    /// A signer's signing, shaped as Zoho Sign sends it.
    const BODY: &[u8] = br#"{"requests":{"request_id":184612000000084001,"request_name":"Service agreement","request_status":"inprogress","actions":[{"action_id":184612000000084020,"recipient_name":"Jane Roe","recipient_email":"jane@example.com","action_type":"SIGN","action_status":"SIGNED"},{"action_id":184612000000084022,"recipient_name":"John Roe","recipient_email":"john@example.com","action_type":"SIGN","action_status":"UNOPENED"}],"document_ids":[{"document_id":184612000000084010,"document_name":"agreement.pdf"}]},"notifications":{"performed_by_email":"jane@example.com","performed_at":1790000000123,"activity":"Document has been signed","operation_type":"RequestSigningSuccess","action_id":184612000000084020,"performed_by_name":"Jane Roe","ip_address":"203.0.113.9"}}"#;

    fn verify(secrets: &[&str], signature: &str, body: &[u8]) -> Result<Verified, Rejection> {
        let headers = Pairs(vec![(SIGNATURE_HEADER, signature.to_owned())]);
        Verifier::from_config(&source("zoho_sign", secrets))
            .unwrap()
            .verify(&Request {
                body,
                headers: &headers,
                received_at: SystemTime::now(),
                path_token: None,
                query: None,
            })
    }

    #[test]
    fn the_published_example_verifies_and_every_flip_is_refused() {
        assert_eq!(
            sign(PUBLISHED_SECRET.as_bytes(), PUBLISHED_BODY),
            PUBLISHED_SIGNATURE
        );
        // Genuine, and then refused as what it is: the printed payload is not valid JSON.
        assert!(matches!(
            verify(&[PUBLISHED_SECRET], PUBLISHED_SIGNATURE, PUBLISHED_BODY).unwrap_err(),
            Rejection::Unacceptable { status: 400, .. }
        ));
        let signature = sign(SECRET.as_bytes(), BODY);
        assert_every_flip_refused(
            SECRET,
            &signature,
            0..signature.len(),
            BODY,
            |key, s, body| verify(&[key], s, body),
        );
    }

    #[test]
    fn a_notification_verifies_with_any_secret_and_says_what_it_is() {
        let signature = sign(SECRET.as_bytes(), BODY);
        let verified = verify(&["old", SECRET], &signature, BODY).expect("second secret");
        assert_eq!(verified.key_label, "env:KEY1");
        assert_eq!(verified.event_type, "RequestSigningSuccess");
        assert_eq!(
            verified.event_id.as_deref(),
            Some("184612000000084001:RequestSigningSuccess:184612000000084020:1790000000123")
        );
        assert_eq!(verified.signature_headers[0].1, signature);
        for bad in [
            "",
            "not base64!",
            &signature[..40],
            &format!("{signature}AA"),
        ] {
            assert_eq!(
                verify(&[SECRET], bad, BODY).unwrap_err(),
                Rejection::BadSignature,
                "{bad:?}"
            );
        }
        let unsigned = Verifier::from_config(&source("zoho_sign", &[SECRET]))
            .unwrap()
            .verify(&Request {
                body: BODY,
                headers: &crate::NoHeaders,
                received_at: SystemTime::now(),
                path_token: None,
                query: None,
            })
            .unwrap_err();
        assert_eq!(unsigned, Rejection::Unsigned);
        assert!(Verifier::from_config(&source("zoho_sign", &[])).is_err());
    }

    #[test]
    fn notifications_are_normalized() {
        let events = parse(BODY).unwrap();
        let event = &events[0];
        assert_eq!(event.process_key, "184612000000084001");
        assert_eq!(event.status, Some(ProcessStatus::InProgress));
        assert_eq!(event.flow_name.as_deref(), Some("Service agreement"));
        assert_eq!(event.signees.len(), 2);
        assert_eq!(event.signees[0].key, "184612000000084020");
        assert!(event.signees[0].signed);
        assert_eq!(
            event.signees[0].signed_at.unwrap().to_rfc3339(),
            "2026-09-21T14:13:20.123+00:00"
        );
        assert!(!event.signees[1].signed);
        assert_eq!(event.activity[0].description, "Document has been signed");
        assert_eq!(
            event.activity[0].signee_key.as_deref(),
            Some("184612000000084020")
        );
        assert!(event.documents.is_empty());

        let notification = |operation: &str, status: &str| {
            format!(
                r#"{{"requests":{{"request_id":"7","request_status":"{status}","actions":[],"document_ids":[{{"document_id":"8","document_name":"a.pdf"}}]}},"notifications":{{"operation_type":"{operation}","performed_at":1790000000000}}}}"#
            )
        };
        for (operation, status, expected) in [
            (
                "RequestSubmitted",
                "inprogress",
                Some(ProcessStatus::Created),
            ),
            ("RequestViewed", "inprogress", None),
            (
                "RequestCompleted",
                "completed",
                Some(ProcessStatus::Completed),
            ),
            ("RequestRejected", "declined", Some(ProcessStatus::Canceled)),
            ("RequestRecalled", "recalled", Some(ProcessStatus::Canceled)),
            ("RequestExpired", "expired", Some(ProcessStatus::Expired)),
        ] {
            let events = parse(notification(operation, status).as_bytes()).unwrap();
            assert_eq!(events[0].status, expected, "{operation}");
            assert_eq!(
                events[0].documents.len(),
                usize::from(operation == "RequestCompleted")
            );
        }
        let completed = parse(notification("RequestCompleted", "completed").as_bytes()).unwrap();
        let document = &completed[0].documents[0];
        assert_eq!(document.reference_id.as_deref(), Some("7"));
        assert_eq!(document.fetch.as_deref(), Some("/requests/7/pdf"));
        assert_eq!(document.file_name.as_deref(), Some("a.pdf"));
        assert!(parse(br#"{"requests":{}}"#).unwrap().is_empty());
        assert!(parse(b"[]").is_err());
    }

    #[test]
    fn the_requests_status_is_its_state_and_the_list_is_read_newest_first() {
        use crate::Reconcile;
        let answer: serde_json::Value =
            serde_json::from_slice(&crate::testing::fixture("zoho_sign", "GetDocument.json"))
                .unwrap();
        for (status, expected) in [
            ("completed", Some(ProcessStatus::Completed)),
            ("declined", Some(ProcessStatus::Canceled)),
            ("recalled", Some(ProcessStatus::Canceled)),
            ("expired", Some(ProcessStatus::Expired)),
            ("inprogress", Some(ProcessStatus::Created)),
            ("draft", Some(ProcessStatus::Created)),
            ("shredded", None),
        ] {
            let mut answer = answer.clone();
            answer["requests"]["request_status"] = status.into();
            let body = serde_json::to_vec(&answer).unwrap();
            assert_eq!(ZohoSign.api_state(200, &body, 0), Ok(expected), "{status}");
        }
        assert_eq!(ZohoSign.api_state(404, b"{}", 0), Ok(None));
        assert!(ZohoSign.api_state(200, br#"{"code":0}"#, 0).is_err());
        assert_eq!(
            ZohoSign.api_authorization(b"1000.abc\n").as_deref(),
            Some("Zoho-oauthtoken 1000.abc")
        );
        assert_eq!(
            ZohoSign
                .api_authorization(b"Zoho-oauthtoken 1000.abc")
                .as_deref(),
            Some("Zoho-oauthtoken 1000.abc")
        );
        assert_eq!(
            ZohoSign.state_path("184612000000084001").as_deref(),
            Some("/requests/184612000000084001")
        );

        let now = DateTime::<Utc>::from_timestamp(1_790_000_000, 0).unwrap();
        let first = ZohoSignReconcile.discovery_path(None, now, now).unwrap();
        assert_eq!(start_index_of(&first), Some(1));
        assert!(
            first.starts_with("/requests?data=%7B%22page_context%22"),
            "{first}"
        );
        let request = answer["requests"].clone();
        let page = |more: bool, created: i64| {
            let mut request = request.clone();
            request["created_time"] = created.into();
            serde_json::to_vec(&serde_json::json!({"code": 0, "requests": [request],
                "page_context": {"has_more_rows": more, "start_index": 1, "row_count": 100}}))
            .unwrap()
        };
        let recent = now.timestamp_millis();
        let second = ZohoSignReconcile
            .next_path_since(
                &first,
                &page(true, recent),
                now - chrono::TimeDelta::days(1),
            )
            .unwrap();
        assert_eq!(start_index_of(&second), Some(101));
        assert_eq!(
            ZohoSignReconcile.next_path_since(&first, &page(false, recent), now),
            None,
            "no more rows"
        );
        assert_eq!(
            ZohoSignReconcile.next_path_since(&first, &page(true, recent - 1), now),
            None,
            "reaches back before look_back"
        );
        assert_eq!(
            ZohoSignReconcile.processes(&page(false, recent)).unwrap(),
            ["184612000000084001"]
        );

        let gaps = ZohoSignReconcile
            .gaps(&page(false, recent), &Default::default())
            .unwrap();
        assert_eq!(gaps.len(), 1);
        assert!(gaps[0].unknown_process);
        assert_eq!(gaps[0].event_type, "RequestCompleted");
        let events = parse(&gaps[0].body).unwrap();
        assert_eq!(events[0].status, Some(ProcessStatus::Completed));
        assert_eq!(
            events[0].documents[0].fetch.as_deref(),
            Some("/requests/184612000000084001/pdf")
        );
        assert_eq!(
            events[0].occurred_at.unwrap().timestamp_millis(),
            1_790_000_300_000
        );
        // Recorded with the webhook's own entry: nothing more.
        let known = std::collections::HashMap::from([(
            "184612000000084001".to_owned(),
            std::collections::HashSet::from([events[0].activity[0].key.clone()]),
        )]);
        assert!(
            ZohoSignReconcile
                .gaps(&page(false, recent), &known)
                .unwrap()
                .is_empty()
        );
    }
}
