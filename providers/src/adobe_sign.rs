//! Adobe Acrobat Sign webhooks: `provider = "adobe_sign"`.
//!
//! What the provider signs, what this module verifies and relies on, the provider's API as the
//! worker uses it, and where each fact comes from: `docs/providers/adobe_sign.md` (one page per provider).

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::event::{
    ActivityEntry, Document, DocumentKind, ParseError, ProcessStatus, Signee, SigningEvent,
};
use crate::settings::{Secret, Setting, SourceConfig};
use crate::support::{gap_of, is_json_object, path_segment, rfc3339};
use crate::{Headers, Provider, Rejection, Reply, Request, Sample, Verified, Verify};

/// The header Acrobat Sign sends and expects back.
pub const CLIENT_ID_HEADER: &str = "x-adobesign-clientid";
/// The client id of webhooks created in Acrobat Sign's web application (Adobe's documentation).
pub const WEB_APPLICATION_CLIENT_ID: &str = "UB7E5BXCXY";
/// The default body limit: a completion with its signed documents is at most 10 MB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Adobe Acrobat Sign in the provider registry.
pub struct AdobeSign;

/// Checks Acrobat Sign requests for one source.
pub struct Verifier {
    client_ids: Vec<Secret>,
}

impl Verifier {
    pub fn from_config(source: &SourceConfig) -> Result<Self, String> {
        let client_ids = crate::support::required_secrets(
            source,
            "the client id of the application that created the webhook; UB7E5BXCXY for the web application's",
        )?;
        if source.allow_ips.is_empty() {
            return Err("adobe_sign needs allow_ips (Acrobat Sign's webhook IP ranges): its requests carry only a client id, which is not secret".to_owned());
        }
        Ok(Self { client_ids })
    }

    /// The index of the configured client id that `headers` carry.
    fn client(&self, headers: &dyn Headers) -> Result<usize, Rejection> {
        let presented = headers
            .get(CLIENT_ID_HEADER)
            .filter(|v| !v.is_empty())
            .ok_or(Rejection::Unsigned)?;
        let presented: [u8; 32] = Sha256::digest(presented).into();
        let mut matched = None;
        for (i, id) in self.client_ids.iter().enumerate() {
            let expected: [u8; 32] = Sha256::digest(id.expose()).into();
            if bool::from(expected.ct_eq(&presented)) && matched.is_none() {
                matched = Some(i);
            }
        }
        matched.ok_or(Rejection::BadSignature)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    webhook_notification_id: Option<String>,
    event: Option<String>,
}

impl Verify for Verifier {
    fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        let key = self.client(request.headers)?;
        let head = is_json_object(request.body)
            .then(|| serde_json::from_slice::<Head>(request.body).ok())
            .flatten()
            .filter(|h| {
                h.webhook_notification_id
                    .as_deref()
                    .is_some_and(|id| !id.is_empty())
            })
            .ok_or(Rejection::Unacceptable {
                status: 400,
                reason: "body is not an Acrobat Sign notification (webhookNotificationId expected)",
            })?;
        Ok(Verified {
            event_id: head.webhook_notification_id,
            event_type: head
                .event
                .filter(|e| !e.is_empty())
                .map_or(Cow::Borrowed("unknown"), Cow::Owned),
            key_label: self.client_ids[key].label().to_owned(),
            signature_use: None,
            signature_headers: vec![(
                CLIENT_ID_HEADER,
                String::from_utf8_lossy(self.client_ids[key].expose()).into_owned(),
            )],
        })
    }

    fn answer_get(&self, headers: &dyn Headers) -> Option<Result<Reply, Rejection>> {
        Some(self.client(headers).map(|_| echo(headers)))
    }
}

/// `200` with the request's client id echoed in the header and the JSON body.
fn echo(headers: &dyn Headers) -> Reply {
    let id = headers
        .get(CLIENT_ID_HEADER)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    Reply {
        status: 200,
        content_type: "application/json",
        body: Cow::Owned(serde_json::json!({ "xAdobeSignClientId": id }).to_string()),
        headers: vec![(CLIENT_ID_HEADER, id)],
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    event: Option<String>,
    event_date: Option<String>,
    participant_user_email: Option<String>,
    action_type: Option<String>,
    agreement: Option<Agreement>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Agreement {
    id: Option<String>,
    name: Option<String>,
    status: Option<String>,
    external_id: Option<ExternalId>,
    participant_sets_info: Option<ParticipantSetsInfo>,
    signed_document_info: Option<SignedDocumentInfo>,
}

#[derive(Deserialize)]
struct ExternalId {
    id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ParticipantSetsInfo {
    #[serde(default)]
    participant_sets: Vec<ParticipantSet>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ParticipantSet {
    #[serde(default)]
    member_infos: Vec<Member>,
    role: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
struct Member {
    id: Option<String>,
    email: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct SignedDocumentInfo {
    document: Option<String>,
}

fn status_of(event: &str, agreement_status: Option<&str>) -> Option<ProcessStatus> {
    match agreement_status {
        Some("SIGNED" | "APPROVED" | "ACCEPTED" | "DELIVERED" | "FORM_FILLED") => {
            return Some(ProcessStatus::Completed);
        }
        Some("CANCELLED" | "ABORTED") => return Some(ProcessStatus::Canceled),
        Some("EXPIRED") => return Some(ProcessStatus::Expired),
        _ => {}
    }
    match event {
        "AGREEMENT_CREATED" => Some(ProcessStatus::Created),
        "AGREEMENT_ACTION_COMPLETED" | "AGREEMENT_PARTICIPANT_COMPLETED" => {
            Some(ProcessStatus::InProgress)
        }
        "AGREEMENT_WORKFLOW_COMPLETED" => Some(ProcessStatus::Completed),
        "AGREEMENT_RECALLED"
        | "AGREEMENT_REJECTED"
        | "AGREEMENT_AUTO_CANCELLED_CONVERSION_PROBLEM" => Some(ProcessStatus::Canceled),
        "AGREEMENT_EXPIRED" => Some(ProcessStatus::Expired),
        _ => None,
    }
}

/// One event per agreement notification: the process is the agreement, the members of its
/// signer sets the signees. Library, bulk-signing and web-form events project nothing.
pub fn parse(body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
    let notification: Notification =
        crate::support::parse_object(body, "an Acrobat Sign notification")?;
    let event = notification.event.unwrap_or_default();
    let Some(agreement) = notification.agreement else {
        return Ok(Vec::new());
    };
    let Some(process_key) = agreement.id.filter(|id| !id.is_empty()) else {
        return Ok(Vec::new());
    };
    let occurred_at = notification.event_date.as_deref().and_then(rfc3339);
    let actor = notification
        .participant_user_email
        .filter(|e| !e.is_empty())
        .map(|e| e.to_lowercase());
    let signed_now = matches!(
        event.as_str(),
        "AGREEMENT_ACTION_COMPLETED" | "AGREEMENT_PARTICIPANT_COMPLETED"
    ) && notification
        .action_type
        .as_deref()
        .is_none_or(|a| matches!(a, "ESIGNED" | "SIGNED" | "DIGSIGNED" | "WRITTEN_SIGNED"));
    let sets = agreement
        .participant_sets_info
        .map(|i| i.participant_sets)
        .unwrap_or_default();
    let (signees, actor_key) = signees_of(sets, signed_now.then_some(actor).flatten(), occurred_at);
    let name = agreement.name.filter(|n| !n.is_empty());
    let status = status_of(&event, agreement.status.as_deref());
    let mut documents = signed_document(
        agreement.signed_document_info,
        name.as_deref(),
        &process_key,
    )?;
    if status == Some(ProcessStatus::Completed) && documents.is_empty() {
        documents.push(combined_document(&process_key, name.as_deref()));
    }
    let mut metadata = serde_json::Map::new();
    if let Some(id) = agreement
        .external_id
        .and_then(|e| e.id)
        .filter(|id| !id.is_empty())
    {
        metadata.insert("external_id".to_owned(), id.into());
    }
    Ok(vec![SigningEvent {
        status,
        occurred_at,
        flow_key: None,
        flow_name: name,
        company_key: None,
        signees,
        documents,
        activity: vec![ActivityEntry {
            key: format!(
                "{event}:{}:{}",
                actor_key.as_deref().unwrap_or("-"),
                notification.event_date.as_deref().unwrap_or("-")
            ),
            signee_key: actor_key,
            status: event.clone(),
            description: event,
            file_name: None,
            created_at: occurred_at,
            created_by: "adobe_sign".to_owned(),
        }],
        metadata,
        process_key,
    }])
}

/// No signed PDF in a completion's notification: the agreement's combined document, `GET
/// /agreements/{agreementId}/combinedDocument` ("a single combined PDF document for the
/// documents associated with an agreement"), downloaded when the source has an API.
fn combined_document(process_key: &str, name: Option<&str>) -> Document {
    let mut document = Document::new(DocumentKind::Signed);
    document.reference_id = Some(process_key.to_owned());
    document.content_type = Some("application/pdf".to_owned());
    document.file_name = Some(format!("{}.pdf", name.unwrap_or(process_key)));
    document.description = Some("combined document (Acrobat Sign API)".into());
    document.fetch = Some(format!(
        "/agreements/{}/combinedDocument",
        path_segment(process_key)
    ));
    document
}

/// The members of the signer sets, and the key of the one who signed now (`signer`: the
/// acting participant's email, lower-cased, when the event is a signature).
fn signees_of(
    sets: Vec<ParticipantSet>,
    signer: Option<String>,
    occurred_at: Option<chrono::DateTime<chrono::Utc>>,
) -> (Vec<Signee>, Option<String>) {
    let mut actor_key = None;
    let mut signees = Vec::new();
    for set in sets {
        if set.role.as_deref().is_some_and(|r| r != "SIGNER") {
            continue;
        }
        let set_done = matches!(set.status.as_deref(), Some("COMPLETED" | "SIGNED"));
        for member in set.member_infos {
            let email = member.email.filter(|e| !e.is_empty());
            let Some(key) = member
                .id
                .filter(|id| !id.is_empty())
                .or_else(|| email.clone())
            else {
                continue;
            };
            let acted = signer.is_some() && email.as_deref().map(str::to_lowercase) == signer;
            if acted {
                actor_key = Some(key.clone());
            }
            signees.push(Signee {
                key,
                name: member.name.filter(|n| !n.is_empty()),
                email,
                signed: set_done || acted,
                signed_at: if acted { occurred_at } else { None },
                ..Signee::default()
            });
        }
    }
    (signees, actor_key)
}

/// The signed PDF, where the notification carries it (`signedDocumentInfo.document`), named
/// after the agreement.
fn signed_document(
    info: Option<SignedDocumentInfo>,
    name: Option<&str>,
    process_key: &str,
) -> Result<Vec<Document>, ParseError> {
    let Some(encoded) = info.and_then(|i| i.document).filter(|d| !d.is_empty()) else {
        return Ok(Vec::new());
    };
    let content = BASE64
        .decode(encoded.trim())
        .map_err(|e| ParseError(format!("signedDocumentInfo.document is not base64: {e}")))?;
    let mut document = Document::new(DocumentKind::Signed);
    document.content = Some(content);
    document.content_type = Some("application/pdf".to_owned());
    document.file_name = Some(format!("{}.pdf", name.unwrap_or(process_key)));
    Ok(vec![document])
}

/// The state of an agreement's `status` (AgreementInfo's, or a UserAgreement's): signed,
/// approved, accepted, delivered or form-filled → completed; cancelled → canceled; expired →
/// expired; out for a participant, authoring, draft, prefill or waiting → created; anything else
/// (archived, unknown) → none.
fn agreement_state(status: &str) -> Option<ProcessStatus> {
    match status {
        "SIGNED" | "APPROVED" | "ACCEPTED" | "DELIVERED" | "FORM_FILLED" => {
            Some(ProcessStatus::Completed)
        }
        "CANCELLED" | "ABORTED" => Some(ProcessStatus::Canceled),
        "EXPIRED" => Some(ProcessStatus::Expired),
        "OUT_FOR_SIGNATURE"
        | "OUT_FOR_DELIVERY"
        | "OUT_FOR_ACCEPTANCE"
        | "OUT_FOR_FORM_FILLING"
        | "OUT_FOR_APPROVAL"
        | "AUTHORING"
        | "DRAFT"
        | "PREFILL"
        | "DOCUMENTS_NOT_YET_PROCESSED"
        | "WAITING_FOR_FAXIN"
        | "WAITING_FOR_VERIFICATION"
        | "WIDGET_WAITING_FOR_VERIFICATION" => Some(ProcessStatus::Created),
        _ => None,
    }
}

/// An agreement as `GET /agreements/{id}` (AgreementInfo) or `GET /agreements`
/// (UserAgreement) describes it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiAgreement {
    id: Option<String>,
    name: Option<String>,
    status: Option<String>,
    display_date: Option<String>,
    created_date: Option<String>,
}

/// The agreements of `GET /agreements/{id}`'s answer (one) or of a page of `GET /agreements`
/// (`userAgreementList`), and the page's `nextCursor`.
fn api_agreements(answer: &[u8]) -> Result<(Vec<ApiAgreement>, Option<String>), String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Page {
        user_agreement_list: Option<Vec<ApiAgreement>>,
        page: Option<PageInfo>,
        id: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct PageInfo {
        next_cursor: Option<String>,
    }
    let page: Page =
        serde_json::from_slice(answer).map_err(|e| format!("not an Acrobat Sign answer ({e})"))?;
    match (page.user_agreement_list, page.id) {
        (Some(list), _) => Ok((list, page.page.and_then(|p| p.next_cursor))),
        (None, Some(_)) => serde_json::from_slice(answer)
            .map(|a| (vec![a], None))
            .map_err(|e| format!("not an Acrobat Sign agreement ({e})")),
        (None, None) => Ok((Vec::new(), None)),
    }
}

/// The state in an answer of `GET /agreements/{agreementId}`; other HTTP statuses are no state.
fn api_state(status: u16, body: &[u8]) -> Result<Option<ProcessStatus>, String> {
    let Some(status) =
        crate::support::answered_status(status, body, "GET /agreements/{agreementId}")?
    else {
        return Ok(None);
    };
    Ok(agreement_state(&status))
}

const LIST_PATH: &str = "/agreements?pageSize=100";

/// Acrobat Sign's reconciliation: each agreement not in a final state is asked with `GET
/// /agreements/{id}`, and `GET /agreements` is paged by its cursor while its agreements'
/// `displayDate` reaches into `look_back` (it takes no time range). An agreement completed,
/// cancelled or expired there without that notification recorded — or any agreement never
/// seen — becomes the notification Acrobat Sign would have sent.
pub struct AdobeSignReconcile;

impl crate::Reconcile for AdobeSignReconcile {
    fn process_path(&self, process_key: &str) -> String {
        format!("/agreements/{}", path_segment(process_key))
    }

    fn discovery_path(
        &self,
        _scope: Option<&str>,
        _from: chrono::DateTime<chrono::Utc>,
        _to: chrono::DateTime<chrono::Utc>,
    ) -> Option<String> {
        Some(LIST_PATH.to_owned())
    }

    fn next_path_since(
        &self,
        _path: &str,
        answer: &[u8],
        from: chrono::DateTime<chrono::Utc>,
    ) -> Option<String> {
        let (agreements, cursor) = api_agreements(answer).ok()?;
        let oldest = agreements
            .iter()
            .filter_map(|a| a.display_date.as_deref().and_then(rfc3339))
            .min();
        if oldest.is_none_or(|oldest| oldest < from) {
            return None;
        }
        let cursor = form_urlencoded::byte_serialize(cursor?.as_bytes()).collect::<String>();
        Some(format!("{LIST_PATH}&cursor={cursor}"))
    }

    fn processes(&self, answer: &[u8]) -> Result<Vec<String>, String> {
        Ok(api_agreements(answer)?
            .0
            .into_iter()
            .filter_map(|a| a.id.filter(|id| !id.is_empty()))
            .collect())
    }

    fn gaps(
        &self,
        answer: &[u8],
        known: &std::collections::HashMap<String, std::collections::HashSet<String>>,
    ) -> Result<Vec<crate::Gap>, String> {
        let mut gaps = Vec::new();
        for agreement in api_agreements(answer)?.0 {
            let Some(id) = agreement.id.clone().filter(|id| !id.is_empty()) else {
                continue;
            };
            let status = agreement.status.clone().unwrap_or_default();
            let (event, recorded): (&'static str, &[&str]) = match agreement_state(&status) {
                Some(ProcessStatus::Completed) => (
                    "AGREEMENT_WORKFLOW_COMPLETED",
                    &["AGREEMENT_WORKFLOW_COMPLETED:"],
                ),
                Some(ProcessStatus::Canceled) => (
                    "AGREEMENT_RECALLED",
                    &["AGREEMENT_RECALLED:", "AGREEMENT_REJECTED:"],
                ),
                Some(ProcessStatus::Expired) => ("AGREEMENT_EXPIRED", &["AGREEMENT_EXPIRED:"]),
                Some(_) => ("AGREEMENT_CREATED", &[]),
                None => continue,
            };
            let Some(unknown_process) = gap_of(known, &id, recorded) else {
                continue;
            };
            let date = agreement
                .display_date
                .clone()
                .or_else(|| agreement.created_date.clone());
            // The notification Acrobat Sign would have sent, with what the API said (the same
            // answer, the same bytes).
            let body = serde_json::to_vec(&serde_json::json!({
                "webhookNotificationId": format!("reconcile:{id}:{status}"),
                "event": event,
                "eventDate": date,
                "agreement": {"id": id, "name": agreement.name, "status": status},
            }))
            .map_err(|e| e.to_string())?;
            gaps.push(crate::Gap::of_event(id, unknown_process, event, body));
        }
        Ok(gaps)
    }
}

impl Provider for AdobeSign {
    fn name(&self) -> &'static str {
        "adobe_sign"
    }

    fn settings(&self) -> &'static [Setting] {
        &[Setting::Secrets, Setting::Api, Setting::Reconcile]
    }

    /// An OAuth access token or integration key: `Bearer <token>` (written with its scheme, it
    /// is sent as it is).
    fn api_authorization(&self, credentials: &[u8]) -> Option<String> {
        Some(crate::support::authorization("Bearer", credentials))
    }

    /// An OAuth access token lives an hour: refreshed at `POST /oauth/v2/refresh` of the API's
    /// access point (form `grant_type=refresh_token`, `client_id`, `client_secret`,
    /// `refresh_token`; Acrobat Sign's "Managing OAuth Tokens").
    fn api_token_scheme(&self) -> Option<&'static str> {
        Some("Bearer")
    }

    fn state_path(&self, process_key: &str) -> Option<String> {
        Some(format!("/agreements/{}", path_segment(process_key)))
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
        Some(&AdobeSignReconcile)
    }

    /// A public client id and an address list: any body from an allowed address passes.
    fn proves_content(&self) -> bool {
        false
    }

    fn verifier(&self, source: &SourceConfig) -> Result<Box<dyn Verify>, String> {
        Ok(Box::new(Verifier::from_config(source)?))
    }

    /// The "secret" is the application's client id: public, and as short as Adobe makes it
    /// (`UB7E5BXCXY`); the address list is what keeps others out.
    fn min_secret_bytes(&self) -> usize {
        1
    }

    fn parse(&self, body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
        parse(body)
    }

    fn default_max_body_bytes(&self) -> Option<usize> {
        Some(DEFAULT_MAX_BODY_BYTES)
    }

    /// One notification id through every retry.
    fn resends_reencoded(&self) -> bool {
        true
    }

    fn accepted_reply(&self, request: &dyn Headers) -> Reply {
        echo(request)
    }

    fn sample(&self, source: &SourceConfig, _private_key: Option<&str>) -> Result<Sample, String> {
        let client_id = crate::support::first_secret(source)?;
        let agreement = format!("CBJCHBCAABAA{}", crate::support::sample_id());
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let body = serde_json::to_vec(&serde_json::json!({
            "webhookId": "sample-webhook", "webhookName": "Countersign sample",
            "webhookNotificationId": crate::support::sample_id(),
            "webhookUrlInfo": {"url": "http://localhost/webhooks/sample"},
            "webhookScope": "ACCOUNT", "event": "AGREEMENT_WORKFLOW_COMPLETED", "eventDate": now,
            "eventResourceType": "agreement",
            "agreement": {"id": agreement, "name": "Sample agreement", "status": "SIGNED",
                "participantSetsInfo": {"participantSets": [{"memberInfos": [{"id": "sample-member",
                    "email": "signer@example.com", "name": "Sample Signer"}], "order": 1, "role": "SIGNER",
                    "status": "COMPLETED"}]}},
        }))
        .expect("JSON");
        Ok(Sample {
            path_token: None,
            query: None,
            headers: vec![(
                CLIENT_ID_HEADER,
                String::from_utf8(client_id.expose().to_vec())
                    .map_err(|_| format!("client id {} is not text", client_id.label()))?,
            )],
            body,
            content_type: "application/json",
            process_key: agreement,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Pairs, source, text_flips};
    use std::time::SystemTime;

    const CLIENT_ID: &str = "CBJCHBCAABAAclientid42";
    const BODY: &[u8] = br#"{"webhookId":"3ce5b6ba-1c3a-4a7c-a0a4-aa7a4a3c1b9e","webhookName":"Agreements","webhookNotificationId":"f6a7c9e2-7b4a-4f3e-9f0e-5a0d1c2b3a4f","webhookUrlInfo":{"url":"https://countersign.example/webhooks/as"},"webhookScope":"ACCOUNT","webhookNotificationApplicableUsers":[{"id":"u1","email":"sender@example.com","role":"SENDER","payloadApplicable":"true"}],"event":"AGREEMENT_ACTION_COMPLETED","subEvent":"ESIGNED","eventDate":"2026-11-29T09:30:00Z","eventResourceType":"agreement","participantRole":"SIGNER","actionType":"ESIGNED","participantUserId":"u2","participantUserEmail":"Signer@Example.com","actingUserId":"u2","actingUserEmail":"signer@example.com","agreement":{"id":"CBJCHBCAABAAabc","name":"Supply contract","signatureType":"ESIGN","status":"OUT_FOR_SIGNATURE","externalId":{"id":"crm-9"},"participantSetsInfo":{"participantSets":[{"memberInfos":[{"id":"m1","email":"signer@example.com","name":"Sam Signer"}],"order":1,"role":"SIGNER","status":"WAITING_FOR_OTHERS"},{"memberInfos":[{"id":"m2","email":"second@example.com","name":"Sue Second"}],"order":2,"role":"SIGNER","status":"WAITING_FOR_MY_SIGNATURE"},{"memberInfos":[{"id":"m3","email":"cc@example.com"}],"order":3,"role":"CC","status":"NOT_YET_VISIBLE"}]}}}"#;

    fn source_with(ids: &[&str]) -> SourceConfig {
        let mut source = source("adobe_sign", ids);
        source.allow_ips = vec![crate::settings::IpNet::parse("192.0.2.0/24").unwrap()];
        source
    }

    fn verify(ids: &[&str], presented: Option<&str>, body: &[u8]) -> Result<Verified, Rejection> {
        let headers = Pairs(
            presented
                .map(|p| (CLIENT_ID_HEADER, p.to_owned()))
                .into_iter()
                .collect(),
        );
        Verifier::from_config(&source_with(ids))
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
    fn the_client_id_is_compared_and_echoed() {
        let verified = verify(&["other", CLIENT_ID], Some(CLIENT_ID), BODY).expect("known id");
        assert_eq!(verified.key_label, "env:KEY1");
        assert_eq!(
            verified.event_id.as_deref(),
            Some("f6a7c9e2-7b4a-4f3e-9f0e-5a0d1c2b3a4f")
        );
        assert_eq!(verified.event_type, "AGREEMENT_ACTION_COMPLETED");
        for (i, id) in text_flips(CLIENT_ID, 0..CLIENT_ID.len()) {
            assert_eq!(
                verify(&[CLIENT_ID], Some(&id), BODY).unwrap_err(),
                Rejection::BadSignature,
                "byte {i}"
            );
        }
        assert_eq!(
            verify(&[CLIENT_ID], None, BODY).unwrap_err(),
            Rejection::Unsigned
        );
        assert_eq!(
            verify(&[CLIENT_ID], Some(""), BODY).unwrap_err(),
            Rejection::Unsigned
        );
        for body in [&b"[]"[..], b"{}", br#"{"event":"AGREEMENT_CREATED"}"#] {
            assert!(matches!(
                verify(&[CLIENT_ID], Some(CLIENT_ID), body).unwrap_err(),
                Rejection::Unacceptable { status: 400, .. }
            ));
        }
        let headers = Pairs(vec![(CLIENT_ID_HEADER, CLIENT_ID.to_owned())]);
        let reply = AdobeSign.accepted_reply(&headers);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.headers, [(CLIENT_ID_HEADER, CLIENT_ID.to_owned())]);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&reply.body).unwrap()["xAdobeSignClientId"],
            CLIENT_ID
        );
    }

    #[test]
    fn the_verification_of_intent_is_answered_for_a_known_client_only() {
        let verifier = Verifier::from_config(&source_with(&[CLIENT_ID])).unwrap();
        let known = Pairs(vec![(CLIENT_ID_HEADER, CLIENT_ID.to_owned())]);
        let reply = verifier.answer_get(&known).unwrap().unwrap();
        assert_eq!(reply.headers, [(CLIENT_ID_HEADER, CLIENT_ID.to_owned())]);
        let unknown = Pairs(vec![(CLIENT_ID_HEADER, "someone-else".to_owned())]);
        assert_eq!(
            verifier.answer_get(&unknown).unwrap().unwrap_err(),
            Rejection::BadSignature
        );
        assert_eq!(
            verifier
                .answer_get(&Pairs(Vec::new()))
                .unwrap()
                .unwrap_err(),
            Rejection::Unsigned
        );
    }

    #[test]
    fn a_source_without_allowed_addresses_is_refused() {
        let refused = Verifier::from_config(&source("adobe_sign", &[CLIENT_ID]))
            .err()
            .unwrap();
        assert!(refused.contains("allow_ips"), "{refused}");
        assert!(Verifier::from_config(&source("adobe_sign", &[])).is_err());
    }

    #[test]
    fn agreement_notifications_are_normalized() {
        let events = parse(BODY).unwrap();
        let first = &events[0];
        assert_eq!(first.process_key, "CBJCHBCAABAAabc");
        assert_eq!(first.status, Some(ProcessStatus::InProgress));
        assert_eq!(first.flow_name.as_deref(), Some("Supply contract"));
        assert_eq!(first.metadata["external_id"], "crm-9");
        assert_eq!(first.signees.len(), 2, "the CC is not a signee");
        assert_eq!(first.signees[0].key, "m1");
        assert!(first.signees[0].signed && first.signees[0].signed_at.is_some());
        assert!(!first.signees[1].signed);
        assert_eq!(first.activity[0].signee_key.as_deref(), Some("m1"));

        let pdf = BASE64.encode(b"%PDF-1.7 signed");
        let completed = format!(
            r#"{{"webhookNotificationId":"n2","event":"AGREEMENT_WORKFLOW_COMPLETED","eventDate":"2026-11-29T10:00:00Z","agreement":{{"id":"A1","name":"Deal","status":"SIGNED","signedDocumentInfo":{{"document":"{pdf}"}}}}}}"#
        );
        let events = parse(completed.as_bytes()).unwrap();
        assert_eq!(events[0].status, Some(ProcessStatus::Completed));
        assert_eq!(events[0].documents[0].kind, DocumentKind::Signed);
        assert_eq!(
            events[0].documents[0].content.as_deref(),
            Some(&b"%PDF-1.7 signed"[..])
        );
        assert_eq!(
            events[0].documents[0].file_name.as_deref(),
            Some("Deal.pdf")
        );
        for (event, status, expected) in [
            (
                "AGREEMENT_CREATED",
                "OUT_FOR_SIGNATURE",
                Some(ProcessStatus::Created),
            ),
            (
                "AGREEMENT_RECALLED",
                "CANCELLED",
                Some(ProcessStatus::Canceled),
            ),
            (
                "AGREEMENT_REJECTED",
                "CANCELLED",
                Some(ProcessStatus::Canceled),
            ),
            ("AGREEMENT_EXPIRED", "EXPIRED", Some(ProcessStatus::Expired)),
            ("AGREEMENT_EMAIL_VIEWED", "OUT_FOR_SIGNATURE", None),
        ] {
            let body = format!(
                r#"{{"webhookNotificationId":"n","event":"{event}","agreement":{{"id":"A2","status":"{status}"}}}}"#
            );
            assert_eq!(
                parse(body.as_bytes()).unwrap()[0].status,
                expected,
                "{event}"
            );
        }
        let broken = br#"{"webhookNotificationId":"n","event":"AGREEMENT_WORKFLOW_COMPLETED","agreement":{"id":"A3","signedDocumentInfo":{"document":"not base64!"}}}"#;
        assert!(parse(broken).is_err());
        let library = br#"{"webhookNotificationId":"n","event":"LIBRARY_DOCUMENT_CREATED","libraryDocument":{"id":"L1"}}"#;
        assert!(parse(library).unwrap().is_empty());
    }

    #[test]
    fn the_agreements_status_is_its_state_and_reconciliation_pages_by_cursor() {
        use crate::Reconcile;
        let info: serde_json::Value =
            serde_json::from_slice(&crate::testing::fixture("adobe_sign", "AgreementInfo.json"))
                .unwrap();
        crate::testing::assert_api_states(
            &AdobeSign,
            &info,
            &[
                ("SIGNED", Some(ProcessStatus::Completed)),
                ("APPROVED", Some(ProcessStatus::Completed)),
                ("CANCELLED", Some(ProcessStatus::Canceled)),
                ("EXPIRED", Some(ProcessStatus::Expired)),
                ("OUT_FOR_SIGNATURE", Some(ProcessStatus::Created)),
                ("ARCHIVED", None),
            ],
        );
        assert_eq!(
            AdobeSign.api_authorization(b"3AAA-token\n").as_deref(),
            Some("Bearer 3AAA-token")
        );
        // A completion without its PDF announces the combined document.
        let body = br#"{"webhookNotificationId":"n1","event":"AGREEMENT_WORKFLOW_COMPLETED","eventDate":"2026-11-29T10:00:00Z","agreement":{"id":"CBJ/1","status":"SIGNED"}}"#;
        let events = parse(body).unwrap();
        assert_eq!(
            events[0].documents[0].fetch.as_deref(),
            Some("/agreements/CBJ%2F1/combinedDocument")
        );
        let page: serde_json::Value = serde_json::from_slice(&crate::testing::fixture(
            "adobe_sign",
            "UserAgreements.json",
        ))
        .unwrap();
        let answer = serde_json::to_vec(&page).unwrap();
        let path = AdobeSignReconcile
            .discovery_path(None, Default::default(), Default::default())
            .unwrap();
        let from = rfc3339("2026-11-28T00:00:00Z").unwrap();
        assert_eq!(
            AdobeSignReconcile.next_path_since(&path, &answer, from),
            Some("/agreements?pageSize=100&cursor=cursor-2".to_owned())
        );
        let later = rfc3339("2026-11-30T00:00:00Z").unwrap();
        assert_eq!(
            AdobeSignReconcile.next_path_since(&path, &answer, later),
            None,
            "the page reaches back before look_back"
        );
        assert_eq!(
            AdobeSignReconcile.processes(&answer).unwrap(),
            ["CBJCHBCAABAAagreement01"]
        );
        let gaps = AdobeSignReconcile
            .gaps(&answer, &Default::default())
            .unwrap();
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].event_type, "AGREEMENT_WORKFLOW_COMPLETED");
        let events = parse(&gaps[0].body).unwrap();
        assert_eq!(events[0].status, Some(ProcessStatus::Completed));
        let known = std::collections::HashMap::from([(
            "CBJCHBCAABAAagreement01".to_owned(),
            std::collections::HashSet::from([events[0].activity[0].key.clone()]),
        )]);
        assert!(AdobeSignReconcile.gaps(&answer, &known).unwrap().is_empty());
        // One agreement's own answer reads the same way.
        assert_eq!(
            AdobeSignReconcile
                .processes(&serde_json::to_vec(&info).unwrap())
                .unwrap(),
            ["CBJCHBCAABAAagreement01"]
        );
    }
}
