//! BoldSign: `provider = "boldsign"`.
//!
//! What the provider signs, what this module verifies and relies on, the provider's API as the
//! worker uses it, and where each fact comes from: `docs/providers/boldsign.md` (one page per provider).

use std::borrow::Cow;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::Mac;
use serde::Deserialize;

use crate::event::{
    ActivityEntry, Document, DocumentKind, ParseError, ProcessStatus, Signee, SigningEvent,
};
use crate::settings::{Secret, Setting, SourceConfig};
use crate::support::{
    check_freshness, date_range_query, decode_hex, gap_of, header_text, hex, hmac_sha256,
    is_json_object, max_signature_age, path_segment, unix_seconds,
};
use crate::{Provider, Rejection, Reply, Request, Sample, Verified, Verify};

/// The signature's header.
pub const SIGNATURE_HEADER: &str = "x-boldsign-signature";
/// The event type's header.
pub const EVENT_HEADER: &str = "x-boldsign-event";
/// The event BoldSign sends to check a new webhook.
pub const VERIFICATION: &str = "Verification";
/// The tolerance of BoldSign's SDKs, the default `max_signature_age`.
pub const DEFAULT_MAX_SIGNATURE_AGE: Duration = Duration::from_secs(300);

/// BoldSign in the provider registry.
pub struct BoldSign;

/// Verifies BoldSign webhooks for one source.
pub struct Verifier {
    secrets: Vec<Secret>,
    max_age: Duration,
}

#[derive(Deserialize)]
struct Head {
    event: Option<EventHead>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventHead {
    id: Option<String>,
    created: Option<i64>,
    event_type: Option<String>,
    /// `Live`, or `Test` for a sandbox application's documents (not legally binding).
    environment: Option<String>,
}

/// Sandbox events: BoldSign's `environment: "Test"` (its sandbox applications; the `Verification`
/// sent at setup says `Test` too).
pub fn is_sandbox(body: &[u8]) -> bool {
    serde_json::from_slice::<Head>(body)
        .ok()
        .and_then(|head| head.event?.environment)
        .is_some_and(|environment| environment.eq_ignore_ascii_case("test"))
}

/// `t` and the listed signatures of an `X-BoldSign-Signature` value.
fn parse_header(value: &str) -> Option<(&str, Vec<Vec<u8>>)> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for pair in value.split(',') {
        let (name, value) = pair.trim().split_once('=')?;
        match name {
            "t" if timestamp.is_none() => timestamp = Some(value),
            "t" => return None,
            _ if name.starts_with('s') && name[1..].bytes().all(|b| b.is_ascii_digit()) => {
                if let Some(signature) = decode_hex(value).filter(|s| s.len() == 32) {
                    signatures.push(signature);
                }
            }
            _ => {}
        }
    }
    Some((timestamp?, signatures))
}

impl Verifier {
    pub fn from_config(source: &SourceConfig) -> Result<Self, String> {
        let secrets = crate::support::required_secrets(source, "the webhook's signing secret")?;
        Ok(Self {
            secrets,
            max_age: max_signature_age(source, DEFAULT_MAX_SIGNATURE_AGE)?,
        })
    }
}

impl Verify for Verifier {
    fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        // BoldSign's URL verification (documented: a POST of `{"event": {…, "eventType":
        // "Verification", …}}` at setup, before the endpoint's signing secret exists) must get a
        // 200 within 10 s: answered whatever it carries, and nothing is published, so a forged
        // one gains nothing.
        // The event's head, read once: for the verification check now, for the event after the
        // signature.
        let event = is_json_object(request.body)
            .then(|| serde_json::from_slice::<Head>(request.body).ok())
            .flatten()
            .and_then(|head| head.event);
        let event_type = event
            .as_ref()
            .and_then(|e| e.event_type.clone())
            .filter(|t| !t.is_empty());
        if header_text(request, EVENT_HEADER).map(str::trim) == Some(VERIFICATION)
            || event_type.as_deref() == Some(VERIFICATION)
        {
            return Err(Rejection::Handshake(Reply::accepted()));
        }
        let header = header_text(request, SIGNATURE_HEADER).ok_or(Rejection::Unsigned)?;
        let (timestamp, signatures) = parse_header(header).ok_or(Rejection::BadSignature)?;
        let seconds = unix_seconds(timestamp).ok_or(Rejection::BadSignature)?;
        let key = crate::support::matching_secret(
            &self.secrets,
            &[timestamp.as_bytes(), b".", request.body],
            &signatures,
        )
        .ok_or(Rejection::BadSignature)?;
        check_freshness(seconds, request.received_at, self.max_age)?;
        let event = event.ok_or(Rejection::Unacceptable {
            status: 400,
            reason: "body is not a BoldSign event (JSON object with event expected)",
        })?;
        Ok(Verified {
            event_id: event.id.filter(|id| !id.is_empty()),
            event_type: event_type.map_or(Cow::Borrowed("unknown"), Cow::Owned),
            key_label: self.secrets[key].label().to_owned(),
            signature_use: None,
            signature_headers: vec![(SIGNATURE_HEADER, header.to_owned())],
        })
    }
}

/// The hex HMAC of `<t>.<body>` with `secret` (an `s0` or `s1`). For tests and samples.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    hex(&hmac_sha256(secret, &[t.as_bytes(), b".", body])
        .finalize()
        .into_bytes())
}

/// `t=…, s0=…` for `body` at `timestamp` with `secret`. For tests and samples.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    format!("t={timestamp}, s0={}", signature(secret, timestamp, body))
}

#[derive(Deserialize)]
struct Envelope {
    event: Option<EventHead>,
    context: Option<Context>,
    data: Option<Data>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Context {
    actor: Option<Actor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Actor {
    user_type: Option<String>,
    id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    object: Option<String>,
    document_id: Option<String>,
    message_title: Option<String>,
    status: Option<String>,
    #[serde(default)]
    signer_details: Vec<Signer>,
    meta_data: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Signer {
    id: Option<String>,
    signer_name: Option<String>,
    signer_email: Option<String>,
    status: Option<String>,
    last_activity_date: Option<i64>,
}

fn status_of(event_type: &str, document_status: Option<&str>) -> Option<ProcessStatus> {
    if document_status == Some("Completed") {
        return Some(ProcessStatus::Completed);
    }
    match event_type {
        "Sent" => Some(ProcessStatus::Created),
        "Signed" => Some(ProcessStatus::InProgress),
        "Completed" => Some(ProcessStatus::Completed),
        "Declined" | "Revoked" => Some(ProcessStatus::Canceled),
        "Expired" => Some(ProcessStatus::Expired),
        _ => None,
    }
}

/// One event per document event: the process is the document, its signers the signees.
pub fn parse(body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
    let envelope: Envelope = crate::support::parse_object(body, "a BoldSign event")?;
    let (Some(event), Some(data)) = (envelope.event, envelope.data) else {
        return Ok(Vec::new());
    };
    if data.object.as_deref() != Some("document") {
        return Ok(Vec::new());
    }
    let Some(process_key) = data.document_id.filter(|id| !id.is_empty()) else {
        return Ok(Vec::new());
    };
    let event_type = event.event_type.unwrap_or_default();
    let occurred_at = event
        .created
        .and_then(|seconds| DateTime::<Utc>::from_timestamp(seconds, 0));
    let signees = data
        .signer_details
        .into_iter()
        .filter_map(|signer| {
            let key = signer
                .id
                .filter(|id| !id.is_empty())
                .or_else(|| signer.signer_email.clone().filter(|e| !e.is_empty()))?;
            let signed = signer.status.as_deref() == Some("Completed");
            Some(Signee {
                key,
                name: signer.signer_name.filter(|n| !n.is_empty()),
                email: signer.signer_email.filter(|e| !e.is_empty()),
                signed,
                signed_at: signer
                    .last_activity_date
                    .filter(|_| signed)
                    .and_then(|seconds| DateTime::<Utc>::from_timestamp(seconds, 0)),
                ..Signee::default()
            })
        })
        .collect();
    let actor = envelope
        .context
        .and_then(|c| c.actor)
        .filter(|a| a.user_type.as_deref() == Some("Signer"))
        .and_then(|a| a.id);
    let mut metadata = serde_json::Map::new();
    if let Some(meta) = data
        .meta_data
        .filter(|m| m.as_object().is_some_and(|o| !o.is_empty()))
    {
        metadata.insert("metadata".to_owned(), meta);
    }
    let status = status_of(&event_type, data.status.as_deref());
    let documents = if status == Some(ProcessStatus::Completed) {
        vec![completed_document(
            &process_key,
            data.message_title.as_deref(),
        )]
    } else {
        Vec::new()
    };
    Ok(vec![SigningEvent {
        process_key,
        status,
        occurred_at,
        flow_key: None,
        flow_name: data.message_title.filter(|t| !t.is_empty()),
        company_key: None,
        signees,
        documents,
        activity: vec![ActivityEntry {
            key: format!("{event_type}:{}", event.id.unwrap_or_default()),
            signee_key: actor,
            status: event_type.clone(),
            description: event_type,
            file_name: None,
            created_at: occurred_at,
            created_by: "boldsign".to_owned(),
        }],
        metadata,
    }])
}

/// The completed document: `GET /v1/document/download?documentId=…` (the SDK's
/// DownloadDocument), downloaded when the source has an API.
fn completed_document(process_key: &str, title: Option<&str>) -> Document {
    let mut document = Document::new(DocumentKind::Signed);
    document.reference_id = Some(process_key.to_owned());
    document.content_type = Some("application/pdf".to_owned());
    document.file_name = title.filter(|t| !t.is_empty()).map(str::to_owned);
    document.description = Some("completed document (BoldSign API)".into());
    document.fetch = Some(format!(
        "/v1/document/download?documentId={}",
        path_segment(process_key)
    ));
    document
}

/// A document's state from its BoldSign `status` (DocumentStatus: `InProgress`, `Completed`,
/// `Declined`, `Expired`, `Revoked`, `Draft`, `Scheduled`).
fn document_state(status: &str) -> Option<ProcessStatus> {
    match status {
        "Completed" => Some(ProcessStatus::Completed),
        "Declined" | "Revoked" => Some(ProcessStatus::Canceled),
        "Expired" => Some(ProcessStatus::Expired),
        "InProgress" | "Draft" | "Scheduled" => Some(ProcessStatus::Created),
        _ => None,
    }
}

/// The state in an answer of `GET /v1/document/properties` (DocumentProperties); other HTTP
/// statuses are no state.
fn api_state(status: u16, body: &[u8]) -> Result<Option<ProcessStatus>, String> {
    let Some(status) =
        crate::support::answered_status(status, body, "GET /v1/document/properties")?
    else {
        return Ok(None);
    };
    Ok(document_state(&status))
}

/// A document as the API describes it (DocumentProperties, or a DocumentRecords `result` item).
#[derive(Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiDocument {
    document_id: Option<String>,
    message_title: Option<String>,
    status: Option<String>,
    created_date: Option<i64>,
    activity_date: Option<i64>,
}

/// The documents of a properties answer (one) or of a page of `GET /v1/document/list`, and
/// whether more pages follow.
fn api_documents(answer: &[u8]) -> Result<(Vec<ApiDocument>, bool), String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Records {
        result: Option<Vec<ApiDocument>>,
        page_details: Option<PageDetails>,
        document_id: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct PageDetails {
        page: Option<u32>,
        total_pages: Option<u32>,
    }
    let records: Records =
        serde_json::from_slice(answer).map_err(|e| format!("not a BoldSign answer ({e})"))?;
    match (records.result, records.document_id) {
        (Some(result), _) => {
            let more = records
                .page_details
                .is_some_and(|p| p.page.unwrap_or(1) < p.total_pages.unwrap_or(0));
            Ok((result, more))
        }
        (None, Some(_)) => serde_json::from_slice(answer)
            .map(|d| (vec![d], false))
            .map_err(|e| format!("not a BoldSign document ({e})")),
        (None, None) => Ok((Vec::new(), false)),
    }
}

const LIST_PATH: &str = "/v1/document/list?PageSize=100&Page=";

/// BoldSign's reconciliation: each document not in a final state is asked with `GET
/// /v1/document/properties`, and `GET /v1/document/list` is read page by page over
/// `look_back` (`StartDate`, `EndDate`). A document completed, declined, revoked or expired
/// there without that event recorded — or any document never seen — becomes the event BoldSign
/// would have sent.
pub struct BoldSignReconcile;

impl crate::Reconcile for BoldSignReconcile {
    fn process_path(&self, process_key: &str) -> String {
        format!(
            "/v1/document/properties?documentId={}",
            path_segment(process_key)
        )
    }

    fn discovery_path(
        &self,
        _scope: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Option<String> {
        let dates = date_range_query(("StartDate", from), ("EndDate", to));
        Some(format!("{LIST_PATH}1&{dates}"))
    }

    fn next_path(&self, path: &str, answer: &[u8]) -> Option<String> {
        if !api_documents(answer).ok()?.1 {
            return None;
        }
        let (page, dates) = path.strip_prefix(LIST_PATH)?.split_once('&')?;
        let page: u32 = page.parse().ok()?;
        Some(format!("{LIST_PATH}{}&{dates}", page + 1))
    }

    fn processes(&self, answer: &[u8]) -> Result<Vec<String>, String> {
        Ok(api_documents(answer)?
            .0
            .into_iter()
            .filter_map(|d| d.document_id.filter(|id| !id.is_empty()))
            .collect())
    }

    fn gaps(
        &self,
        answer: &[u8],
        known: &std::collections::HashMap<String, std::collections::HashSet<String>>,
    ) -> Result<Vec<crate::Gap>, String> {
        let mut gaps = Vec::new();
        for document in api_documents(answer)?.0 {
            let Some(id) = document.document_id.clone().filter(|id| !id.is_empty()) else {
                continue;
            };
            let status = document.status.clone().unwrap_or_default();
            let (event, recorded): (&'static str, &[&str]) = match document_state(&status) {
                Some(ProcessStatus::Completed) => ("Completed", &["Completed:"]),
                Some(ProcessStatus::Canceled) if status == "Revoked" => ("Revoked", &["Revoked:"]),
                Some(ProcessStatus::Canceled) => ("Declined", &["Declined:"]),
                Some(ProcessStatus::Expired) => ("Expired", &["Expired:"]),
                Some(_) => ("Sent", &[]),
                None => continue,
            };
            let Some(unknown_process) = gap_of(known, &id, recorded) else {
                continue;
            };
            let created = document.activity_date.or(document.created_date);
            let body = serde_json::to_vec(&serde_json::json!({
                "event": {"id": format!("reconcile:{id}:{status}"), "created": created,
                    "eventType": event},
                "data": {"object": "document", "documentId": id,
                    "messageTitle": document.message_title, "status": status},
            }))
            .map_err(|e| e.to_string())?;
            gaps.push(crate::Gap::of_event(id, unknown_process, event, body));
        }
        Ok(gaps)
    }
}

impl Provider for BoldSign {
    fn name(&self) -> &'static str {
        "boldsign"
    }

    fn settings(&self) -> &'static [Setting] {
        &[
            Setting::Secrets,
            Setting::MaxSignatureAge,
            Setting::Api,
            Setting::Reconcile,
        ]
    }

    /// The API key, in `X-API-KEY` ([`Provider::api_header`]).
    fn api_authorization(&self, credentials: &[u8]) -> Option<String> {
        Some(String::from_utf8_lossy(credentials).trim().to_owned())
    }

    fn api_header(&self) -> &'static str {
        "x-api-key"
    }

    fn state_path(&self, process_key: &str) -> Option<String> {
        Some(crate::Reconcile::process_path(
            &BoldSignReconcile,
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
        Some(&BoldSignReconcile)
    }

    fn verifier(&self, source: &SourceConfig) -> Result<Box<dyn Verify>, String> {
        Ok(Box::new(Verifier::from_config(source)?))
    }

    fn parse(&self, body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
        parse(body)
    }

    fn is_test_event(&self, body: &[u8]) -> bool {
        is_sandbox(body)
    }

    fn sample(&self, source: &SourceConfig, _private_key: Option<&str>) -> Result<Sample, String> {
        let secret = crate::support::first_secret(source)?;
        let now = Utc::now().timestamp();
        let document_id = uuid::Uuid::new_v4().to_string();
        let body = serde_json::to_vec(&serde_json::json!({
            "event": {"id": uuid::Uuid::new_v4().to_string(), "created": now, "eventType": "Completed",
                "clientId": null, "environment": "Live"},
            "context": {"eventType": "Completed", "actor": {"userType": "Signer", "id": "signer-1"}},
            "data": {"object": "document", "documentId": document_id, "messageTitle": "Sample agreement",
                "status": "Completed",
                "signerDetails": [{"id": "signer-1", "signerName": "Sample Signer",
                    "signerEmail": "signer@example.com", "status": "Completed", "lastActivityDate": now}]},
        }))
        .expect("JSON");
        Ok(Sample {
            path_token: None,
            query: None,
            headers: vec![
                (
                    SIGNATURE_HEADER,
                    sign(secret.expose(), now.unsigned_abs(), &body),
                ),
                (EVENT_HEADER, "Completed".to_owned()),
            ],
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
    use std::time::{SystemTime, UNIX_EPOCH};

    const SECRET: &str = "boldsign-test-signing-secret";
    const T: u64 = 1_669_959_514;
    /// BoldSign's published "Document sent" sample (its documented fields and values).
    const BODY: &[u8] = br#"{"event":{"id":"afceddb1-2eed-4301-ae14-8b96a6b0393a","created":1669959514,"eventType":"Sent","clientId":"e4ca1621-bbc7-4c9a-9e81-81d107589690","environment":"Test"},"context":{"eventType":"Sent","actor":{"userType":"Sender","id":"626ef377-29f7-46f5-92c7-c97f90397eb1"},"previousState":null},"data":{"object":"document","documentId":"26b8695f-46d0-4cd4-ba1a-c5a0d595c849","messageTitle":"API Test Document","documentDescription":"This is document message sent from API","status":"InProgress","senderDetail":{"name":"Sender","emailAddress":"sender@email.com","userId":"3cb42cde-a514-4995-a83c-b423bb4bf163","teamId":"bf4b33cd-239e-4940-b4ad-5b34bf987f7a"},"signerDetails":[{"signerName":"signer","signerRole":"","signerEmail":"signer@email.com","id":"30e062d0-ae6a-4cc6-a78e-ae8cd232d8dd","status":"NotCompleted","enableAccessCode":true,"isAuthenticationFailed":false,"enableEmailOTP":false,"isDeliveryFailed":false,"isViewed":false,"order":1,"signerType":"none","isReassigned":false,"reassignMessage":null,"declineMessage":null,"lastActivityDate":1669959514}],"ccDetails":[],"onBehalfOf":null,"createdDate":1669959510,"expiryDate":1675143510,"enableSigningOrder":false,"disableEmails":false,"revokeMessage":null,"errorMessage":null,"labels":[],"isCombinedAudit":false,"brandId":null,"documentDownloadOption":"Combined","metaData":{"crm":"A-1"}}}"#;
    /// `t=T, s0=<hex HMAC-SHA256 of "T." + BODY>` with SECRET, computed independently (Python's
    /// `hmac`).
    const HEADER: &str =
        "t=1669959514, s0=bb2097f5ff9a82073b2b1640e21df0e0ce5772533dd4e9011741e94ea3bf3a77";

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn verify_at(
        secrets: &[&str],
        headers: Vec<(&'static str, String)>,
        body: &[u8],
        received: SystemTime,
    ) -> Result<Verified, Rejection> {
        let headers = Pairs(headers);
        Verifier::from_config(&source("boldsign", secrets))
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
        verify_at(
            secrets,
            vec![(SIGNATURE_HEADER, header.to_owned())],
            body,
            at(T + 5),
        )
    }

    #[test]
    fn sandbox_events_are_test_events() {
        assert!(BoldSign.is_test_event(BODY), "environment Test");
        let live = String::from_utf8_lossy(BODY).replace("\"Test\"", "\"Live\"");
        assert!(!BoldSign.is_test_event(live.as_bytes()));
        assert!(!BoldSign.is_test_event(br#"{"event":{"id":"x"}}"#));
        assert!(!BoldSign.is_test_event(b"not json"));
    }

    #[test]
    fn an_independently_computed_signature_verifies() {
        assert_eq!(sign(SECRET.as_bytes(), T, BODY), HEADER);
        let verified = verify(&[SECRET], HEADER, BODY).expect("genuine");
        assert_eq!(
            verified.event_id.as_deref(),
            Some("afceddb1-2eed-4301-ae14-8b96a6b0393a")
        );
        assert_eq!(verified.event_type, "Sent");
        assert_eq!(verified.key_label, "env:KEY0");
        assert_eq!(verified.signature_headers[0].1, HEADER);
    }

    #[test]
    fn one_flipped_bit_in_key_signature_timestamp_or_body_is_refused() {
        // `t`'s digits, then the signature (`s0` may become `s1`: both name a signature).
        for bytes in [2..12, 17..HEADER.len()] {
            assert_every_flip_refused(SECRET, HEADER, bytes, BODY, |key, header, body| {
                verify(&[key], header, body)
            });
        }
    }

    #[test]
    fn rolled_secrets_stale_times_and_malformed_headers() {
        let current = signature(b"new-secret", T, BODY);
        let old = signature(SECRET.as_bytes(), T, BODY);
        let both = format!("t={T}, s0={current}, s1={old}");
        assert_eq!(
            verify(&[SECRET], &both, BODY)
                .expect("s1 with the old secret")
                .key_label,
            "env:KEY0"
        );
        assert_eq!(
            verify(&["new-secret", SECRET], &both, BODY)
                .unwrap()
                .key_label,
            "env:KEY0"
        );
        let compact = format!("t={T},s0={old}");
        assert!(verify(&[SECRET], &compact, BODY).is_ok(), "without spaces");
        assert_eq!(
            verify_at(
                &[SECRET],
                vec![(SIGNATURE_HEADER, HEADER.to_owned())],
                BODY,
                at(T + 301)
            )
            .unwrap_err(),
            Rejection::Stale
        );
        assert_eq!(
            verify_at(
                &[SECRET],
                vec![(SIGNATURE_HEADER, HEADER.to_owned())],
                BODY,
                at(T - 301)
            )
            .unwrap_err(),
            Rejection::Stale
        );
        for bad in [
            String::new(),
            format!("s0={old}"),
            format!("t={T}"),
            format!("t={T}, t={T}, s0={old}"),
            format!("t=+{T}, s0={old}"),
            format!("t={T}, s0={}", &old[..62]),
            format!("t={T}; s0={old}"),
            format!("t={T}, v1={old}"),
        ] {
            assert_eq!(
                verify(&[SECRET], &bad, BODY).unwrap_err(),
                Rejection::BadSignature,
                "{bad:?}"
            );
        }
        assert_eq!(
            verify_at(&[SECRET], Vec::new(), BODY, at(T)).unwrap_err(),
            Rejection::Unsigned
        );
    }

    #[test]
    fn the_verification_event_is_answered_and_never_published() {
        let verification =
            br#"{"event":{"id":"v1","created":1669959514,"eventType":"Verification"}}"#;
        let answered = verify_at(
            &[SECRET],
            vec![(EVENT_HEADER, VERIFICATION.to_owned())],
            verification,
            at(T),
        )
        .unwrap_err();
        assert_eq!(answered, Rejection::Handshake(Reply::accepted()));
        assert_eq!(answered.status(), 200);
        // Signed but without the header: answered the same way.
        let signed = verify(
            &[SECRET],
            &sign(SECRET.as_bytes(), T, verification),
            verification,
        );
        assert_eq!(signed.unwrap_err(), Rejection::Handshake(Reply::accepted()));
        // Issue 26: as BoldSign documents it — neither the header nor a signature (the secret
        // does not exist yet when the URL is verified) — answered 200, nothing published.
        let documented = br#"{"event":{"id":"7c872a5b-xxxx-xxxx-xxxx-92530a83a8b9","created":1617180024,"eventType":"Verification","clientId":"17c97f7a-xxxx-xxxx-xxxx-fef97b6544a7","environment":"Test"}}"#;
        assert_eq!(
            verify_at(&[SECRET], Vec::new(), documented, at(T)).unwrap_err(),
            Rejection::Handshake(Reply::accepted())
        );
    }

    #[test]
    fn document_events_are_normalized() {
        let events = parse(BODY).unwrap();
        let event = &events[0];
        assert_eq!(event.process_key, "26b8695f-46d0-4cd4-ba1a-c5a0d595c849");
        assert_eq!(event.status, Some(ProcessStatus::Created));
        assert_eq!(event.flow_name.as_deref(), Some("API Test Document"));
        assert_eq!(event.signees[0].key, "30e062d0-ae6a-4cc6-a78e-ae8cd232d8dd");
        assert_eq!(event.signees[0].email.as_deref(), Some("signer@email.com"));
        assert!(!event.signees[0].signed);
        assert_eq!(
            event.activity[0].key,
            "Sent:afceddb1-2eed-4301-ae14-8b96a6b0393a"
        );
        assert_eq!(event.activity[0].signee_key, None, "the sender acted");
        assert_eq!(event.metadata["metadata"]["crm"], "A-1");

        let document = |event_type: &str, status: &str, signer: &str| {
            format!(
                r#"{{"event":{{"id":"e-{event_type}","created":1669960000,"eventType":"{event_type}"}},"context":{{"actor":{{"userType":"Signer","id":"s1"}}}},"data":{{"object":"document","documentId":"d1","status":"{status}","signerDetails":[{{"id":"s1","signerEmail":"a@example.com","status":"{signer}","lastActivityDate":1669960000}}]}}}}"#
            )
        };
        for (event_type, status, signer, expected) in [
            (
                "Signed",
                "InProgress",
                "Completed",
                Some(ProcessStatus::InProgress),
            ),
            (
                "Completed",
                "Completed",
                "Completed",
                Some(ProcessStatus::Completed),
            ),
            (
                "Declined",
                "Declined",
                "Declined",
                Some(ProcessStatus::Canceled),
            ),
            (
                "Revoked",
                "Revoked",
                "NotCompleted",
                Some(ProcessStatus::Canceled),
            ),
            (
                "Expired",
                "Expired",
                "NotCompleted",
                Some(ProcessStatus::Expired),
            ),
            ("Viewed", "InProgress", "NotCompleted", None),
        ] {
            let events = parse(document(event_type, status, signer).as_bytes()).unwrap();
            assert_eq!(events[0].status, expected, "{event_type}");
            assert_eq!(events[0].signees[0].signed, signer == "Completed");
            assert_eq!(events[0].activity[0].signee_key.as_deref(), Some("s1"));
        }
        let identity = br#"{"event":{"id":"x","eventType":"SenderIdentityCreated"},"data":{"object":"senderIdentity"}}"#;
        assert!(parse(identity).unwrap().is_empty());
        assert!(parse(b"[]").is_err());
    }

    #[test]
    fn the_documents_status_is_its_state_and_the_list_is_read_page_by_page() {
        use crate::Reconcile;
        let properties: serde_json::Value = serde_json::from_slice(&crate::testing::fixture(
            "boldsign",
            "DocumentProperties.json",
        ))
        .unwrap();
        crate::testing::assert_api_states(
            &BoldSign,
            &properties,
            &[
                ("Completed", Some(ProcessStatus::Completed)),
                ("Declined", Some(ProcessStatus::Canceled)),
                ("Revoked", Some(ProcessStatus::Canceled)),
                ("Expired", Some(ProcessStatus::Expired)),
                ("InProgress", Some(ProcessStatus::Created)),
                ("Scheduled", Some(ProcessStatus::Created)),
                ("Unknown", None),
            ],
        );
        assert_eq!(BoldSign.api_header(), "x-api-key");
        assert_eq!(
            BoldSign.api_authorization(b" k-1\n").as_deref(),
            Some("k-1")
        );
        assert_eq!(
            BoldSign.state_path("d 1").as_deref(),
            Some("/v1/document/properties?documentId=d%201")
        );
        let records = crate::testing::fixture("boldsign", "DocumentRecords.json");
        let from = DateTime::<Utc>::from_timestamp(1_764_547_200, 0).unwrap();
        let path = BoldSignReconcile.discovery_path(None, from, from).unwrap();
        assert_eq!(
            path,
            "/v1/document/list?PageSize=100&Page=1&StartDate=2025-12-01T00%3A00%3A00Z&EndDate=2025-12-01T00%3A00%3A00Z"
        );
        assert_eq!(BoldSignReconcile.next_path(&path, &records), None, "1 of 1");
        let mut more: serde_json::Value = serde_json::from_slice(&records).unwrap();
        more["pageDetails"]["totalPages"] = 2.into();
        assert_eq!(
            BoldSignReconcile
                .next_path(&path, &serde_json::to_vec(&more).unwrap())
                .unwrap(),
            path.replace("Page=1&", "Page=2&")
        );
        let gaps = BoldSignReconcile
            .gaps(&records, &Default::default())
            .unwrap();
        assert_eq!(gaps.len(), 1);
        let events = parse(&gaps[0].body).unwrap();
        assert_eq!(events[0].status, Some(ProcessStatus::Completed));
        assert_eq!(
            events[0].documents[0].fetch.as_deref(),
            Some("/v1/document/download?documentId=doc-bs-api-1")
        );
        let known = std::collections::HashMap::from([(
            "doc-bs-api-1".to_owned(),
            std::collections::HashSet::from([events[0].activity[0].key.clone()]),
        )]);
        assert!(BoldSignReconcile.gaps(&records, &known).unwrap().is_empty());
        assert_eq!(
            BoldSignReconcile
                .processes(&serde_json::to_vec(&properties).unwrap())
                .unwrap(),
            ["doc-bs-api-1"]
        );
    }
}
