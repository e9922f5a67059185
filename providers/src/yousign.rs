//! Yousign (France), API v3 webhooks: `provider = "yousign"`.
//!
//! What the provider signs, what this module verifies and relies on, the provider's API as the
//! worker uses it, and where each fact comes from: `docs/providers/yousign.md` (one page per provider).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use hmac::Mac;
use serde::Deserialize;

use crate::event::{
    ActivityEntry, Document, DocumentKind, ParseError, ProcessStatus, Signee, SigningEvent,
};
use crate::settings::{Secret, Setting, SourceConfig};
use crate::support::{
    decode_hex, gap_of, hex, hmac_sha256, is_json_object, matching_secret, path_segment,
};
use crate::{Provider, Rejection, Request, Sample, Verified, Verify};

/// The signature's header, and the prefix of its value.
pub const SIGNATURE_HEADER: &str = "x-yousign-signature-256";
const PREFIX: &str = "sha256=";

/// Yousign in the provider registry.
pub struct Yousign;

/// Verifies Yousign webhooks for one source.
pub struct Verifier {
    secrets: Vec<Secret>,
}

#[derive(Deserialize)]
struct Head {
    event_id: Option<String>,
    event_name: Option<String>,
}

impl Verifier {
    pub fn from_config(source: &SourceConfig) -> Result<Self, String> {
        let secrets =
            crate::support::required_secrets(source, "the webhook subscription's secret")?;
        Ok(Self { secrets })
    }
}

impl Verify for Verifier {
    fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        let header = request
            .headers
            .get(SIGNATURE_HEADER)
            .ok_or(Rejection::Unsigned)?;
        let signature = std::str::from_utf8(header)
            .ok()
            .and_then(|value| value.trim().strip_prefix(PREFIX))
            .and_then(decode_hex)
            .filter(|signature| signature.len() == 32)
            .ok_or(Rejection::BadSignature)?;
        let key = matching_secret(&self.secrets, &[request.body], &[signature])
            .ok_or(Rejection::BadSignature)?;
        // Genuine: now what the event is. A body Yousign signed that is not an event is one it
        // must not send again.
        let head = is_json_object(request.body)
            .then(|| serde_json::from_slice::<Head>(request.body).ok())
            .flatten()
            .ok_or(Rejection::Unacceptable {
                status: 400,
                reason: "body is not a Yousign event (JSON object expected)",
            })?;
        Ok(Verified {
            event_id: head.event_id.filter(|id| !id.is_empty()),
            event_type: head
                .event_name
                .filter(|name| !name.is_empty())
                .map_or(Cow::Borrowed("unknown"), Cow::Owned),
            key_label: self.secrets[key].label().to_owned(),
            signature_use: None,
            signature_headers: vec![(
                SIGNATURE_HEADER,
                String::from_utf8_lossy(header).into_owned(),
            )],
        })
    }
}

/// `sha256=<hex>` of `body` with `secret`: what Yousign puts in `X-Yousign-Signature-256`. For
/// tests and samples.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mac = hmac_sha256(secret, &[body]);
    format!("{PREFIX}{}", hex(&mac.finalize().into_bytes()))
}

#[derive(Deserialize)]
struct Envelope {
    event_name: Option<String>,
    event_time: Option<serde_json::Value>,
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    signature_request: Option<SignatureRequest>,
    signer: Option<YousignSigner>,
}

#[derive(Deserialize)]
struct SignatureRequest {
    id: Option<String>,
    name: Option<String>,
    external_id: Option<String>,
}

#[derive(Deserialize)]
struct YousignSigner {
    id: Option<String>,
    status: Option<String>,
    info: Option<SignerInfo>,
}

#[derive(Deserialize)]
struct SignerInfo {
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    phone_number: Option<String>,
}

/// `event_time`: Unix seconds, as a string (as Yousign sends it) or a number.
fn event_time(value: &serde_json::Value) -> Option<DateTime<Utc>> {
    let seconds = match value {
        serde_json::Value::String(s) => s.trim().parse::<i64>().ok()?,
        serde_json::Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    DateTime::from_timestamp(seconds, 0)
}

/// The process status a Signature Request event puts the process in.
fn status_of(event_name: &str) -> Option<ProcessStatus> {
    match event_name {
        // Draft → ongoing: sent, nobody has signed yet.
        "signature_request.activated" => Some(ProcessStatus::Created),
        "signature_request.done" => Some(ProcessStatus::Completed),
        "signature_request.expired" => Some(ProcessStatus::Expired),
        "signature_request.canceled" | "signature_request.declined" => {
            Some(ProcessStatus::Canceled)
        }
        _ => None,
    }
}

/// One event per Signature Request (or Signer) event: the process is the Signature Request;
/// a Signer event adds or updates its signee. Events about other objects (eSeal, identity
/// verification) have no Signature Request and project nothing (they are archived).
pub fn parse(body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
    let envelope: Envelope = crate::support::parse_object(body, "a Yousign event")?;
    let event_name = envelope.event_name.unwrap_or_default();
    let Some(data) = envelope.data else {
        return Ok(Vec::new());
    };
    let Some(request) = data.signature_request else {
        return Ok(Vec::new());
    };
    let Some(process_key) = request.id.filter(|id| !id.is_empty()) else {
        return Ok(Vec::new());
    };
    let occurred_at = envelope.event_time.as_ref().and_then(event_time);
    let signer = data
        .signer
        .and_then(|s| s.id.clone().filter(|id| !id.is_empty()).map(|id| (id, s)));
    let signed = event_name == "signer.done";
    let signees = signer
        .iter()
        .map(|(id, s)| {
            let info = s.info.as_ref();
            let name = info
                .map(|i| {
                    [i.first_name.as_deref(), i.last_name.as_deref()]
                        .into_iter()
                        .flatten()
                        .filter(|part| !part.is_empty())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .filter(|name| !name.is_empty());
            Signee {
                key: id.clone(),
                name,
                email: info.and_then(|i| i.email.clone()),
                phone: info.and_then(|i| i.phone_number.clone()),
                signed: signed || s.status.as_deref() == Some("signed"),
                signed_at: if signed { occurred_at } else { None },
                ..Signee::default()
            }
        })
        .collect();
    let signee_key = signer.as_ref().map(|(id, _)| id.clone());
    let activity = ActivityEntry {
        key: match &signee_key {
            Some(id) => format!("{event_name}:{id}"),
            None => event_name.clone(),
        },
        signee_key,
        status: event_name.clone(),
        description: event_name.clone(),
        file_name: None,
        created_at: occurred_at,
        created_by: "yousign".to_owned(),
    };
    let mut metadata = serde_json::Map::new();
    if let Some(external_id) = request.external_id.filter(|id| !id.is_empty()) {
        metadata.insert("external_id".to_owned(), external_id.into());
    }
    let documents = if event_name == "signature_request.done" {
        vec![completed_documents(&process_key)]
    } else {
        Vec::new()
    };
    Ok(vec![SigningEvent {
        documents,
        process_key,
        status: status_of(&event_name),
        occurred_at,
        flow_key: None,
        flow_name: request.name.filter(|name| !name.is_empty()),
        company_key: None,
        signees,
        activity: vec![activity],
        metadata,
    }])
}

/// A done request's signed documents: `GET /signature_requests/{id}/documents/download` with
/// `version=completed` ("only available when the Signature Request status is done"), downloaded
/// when the source has an API: one PDF, or a zip where the request has several documents.
fn completed_documents(process_key: &str) -> Document {
    let mut document = Document::new(DocumentKind::Signed);
    document.reference_id = Some(process_key.to_owned());
    document.description = Some("completed documents (Yousign API; a zip for several)".into());
    document.fetch = Some(format!(
        "/signature_requests/{}/documents/download?version=completed",
        path_segment(process_key)
    ));
    document
}

/// A Signature Request's state from its `status` (`draft`, `ongoing`, `done`, `deleted`,
/// `expired`, `canceled`, `approval`, `rejected`, `declined`).
fn request_state(status: &str) -> Option<ProcessStatus> {
    match status {
        "done" => Some(ProcessStatus::Completed),
        "canceled" | "declined" | "rejected" | "deleted" => Some(ProcessStatus::Canceled),
        "expired" => Some(ProcessStatus::Expired),
        "draft" | "ongoing" | "approval" => Some(ProcessStatus::Created),
        _ => None,
    }
}

/// The requests of `GET /signature_requests/{id}` (one) or of a page of `GET
/// /signature_requests` (`data`, and `meta.next_cursor`).
fn api_requests(answer: &[u8]) -> Result<(Vec<serde_json::Value>, Option<String>), String> {
    let value: serde_json::Value =
        serde_json::from_slice(answer).map_err(|e| format!("not a Yousign answer ({e})"))?;
    Ok(match value.get("data") {
        Some(serde_json::Value::Array(data)) => (
            data.clone(),
            value
                .get("meta")
                .and_then(|m| m.get("next_cursor"))
                .and_then(serde_json::Value::as_str)
                .filter(|c| !c.is_empty())
                .map(str::to_owned),
        ),
        _ if value.get("id").is_some() => (vec![value], None),
        _ => (Vec::new(), None),
    })
}

/// Yousign's reconciliation: each request not in a final state is asked with `GET
/// /signature_requests/{id}`, and `GET /signature_requests?created_at[between]=…` is read page
/// by page (its cursor) over `look_back`. A request done, canceled, declined or expired there
/// without that event recorded — or any request never seen — becomes the event Yousign would
/// have sent, its `data.signature_request` the API's.
pub struct YousignReconcile;

const LIST_PATH: &str = "/signature_requests?limit=100";

impl crate::Reconcile for YousignReconcile {
    fn process_path(&self, process_key: &str) -> String {
        format!("/signature_requests/{}", path_segment(process_key))
    }

    fn discovery_path(
        &self,
        _scope: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Option<String> {
        let between = format!("{},{}", from.format("%Y-%m-%d"), to.format("%Y-%m-%d"));
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("created_at[between]", &between)
            .finish();
        Some(format!("{LIST_PATH}&{query}"))
    }

    fn next_path(&self, path: &str, answer: &[u8]) -> Option<String> {
        let cursor = api_requests(answer).ok()?.1?;
        let base = path.split("&after=").next()?;
        let cursor = form_urlencoded::byte_serialize(cursor.as_bytes()).collect::<String>();
        Some(format!("{base}&after={cursor}"))
    }

    fn processes(&self, answer: &[u8]) -> Result<Vec<String>, String> {
        Ok(api_requests(answer)?
            .0
            .iter()
            .filter_map(|r| r.get("id")?.as_str().map(str::to_owned))
            .collect())
    }

    fn gaps(
        &self,
        answer: &[u8],
        known: &std::collections::HashMap<String, std::collections::HashSet<String>>,
    ) -> Result<Vec<crate::Gap>, String> {
        let mut gaps = Vec::new();
        for request in api_requests(answer)?.0 {
            let Some(id) = request
                .get("id")
                .and_then(|i| i.as_str())
                .map(str::to_owned)
            else {
                continue;
            };
            let status = request.get("status").and_then(|s| s.as_str()).unwrap_or("");
            let event: &'static str = match status {
                "done" => "signature_request.done",
                "canceled" => "signature_request.canceled",
                "declined" => "signature_request.declined",
                "expired" => "signature_request.expired",
                "ongoing" | "approval" => "signature_request.activated",
                _ => continue,
            };
            let recorded: &[&str] = if event == "signature_request.activated" {
                &[]
            } else {
                &[event]
            };
            let Some(unknown_process) = gap_of(known, &id, recorded) else {
                continue;
            };
            let body = serde_json::to_vec(&serde_json::json!({
                "event_id": format!("reconcile:{id}:{status}"),
                "event_name": event,
                "data": {"signature_request": request},
            }))
            .map_err(|e| e.to_string())?;
            gaps.push(crate::Gap::of_event(id, unknown_process, event, body));
        }
        Ok(gaps)
    }
}

impl Provider for Yousign {
    fn name(&self) -> &'static str {
        "yousign"
    }

    fn settings(&self) -> &'static [Setting] {
        &[Setting::Secrets, Setting::Api, Setting::Reconcile]
    }

    /// The API key: `Authorization: Bearer <key>`.
    fn api_authorization(&self, credentials: &[u8]) -> Option<String> {
        Some(crate::support::authorization("Bearer", credentials))
    }

    fn state_path(&self, process_key: &str) -> Option<String> {
        Some(crate::Reconcile::process_path(
            &YousignReconcile,
            process_key,
        ))
    }

    fn api_state(
        &self,
        status: u16,
        body: &[u8],
        _now: i64,
    ) -> Result<Option<ProcessStatus>, String> {
        let Some(status) =
            crate::support::answered_status(status, body, "GET /signature_requests/{id}")?
        else {
            return Ok(None);
        };
        Ok(request_state(&status))
    }

    fn reconcile(&self) -> Option<&'static dyn crate::Reconcile> {
        Some(&YousignReconcile)
    }

    fn verifier(&self, source: &SourceConfig) -> Result<Box<dyn Verify>, String> {
        Ok(Box::new(Verifier::from_config(source)?))
    }

    fn parse(&self, body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
        parse(body)
    }

    fn sample(&self, source: &SourceConfig, _private_key: Option<&str>) -> Result<Sample, String> {
        let secret = crate::support::first_secret(source)?;
        let process_key = uuid::Uuid::new_v4().to_string();
        let body = serde_json::to_vec(&serde_json::json!({
            "event_id": uuid::Uuid::new_v4().to_string(),
            "event_name": "signature_request.done",
            "event_time": Utc::now().timestamp().to_string(),
            "subscription_id": uuid::Uuid::new_v4().to_string(),
            "subscription_description": "Countersign sample",
            "sandbox": true,
            "data": {"signature_request": {"id": process_key, "status": "done", "name": "Sample agreement"}},
        }))
        .expect("JSON");
        Ok(Sample {
            path_token: None,
            query: None,
            headers: vec![(SIGNATURE_HEADER, sign(secret.expose(), &body))],
            body,
            content_type: "application/json",
            process_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Headers;
    use crate::testing::assert_every_flip_refused;
    use std::time::SystemTime;

    const SECRET: &str = "yousign-test-secret";
    /// An event shaped as Yousign documents it (its documented envelope fields and values).
    const BODY: &[u8] = br#"{"event_id":"d09f0367-d80a-309c-a2ed-7083991fc564","event_name":"signature_request.done","event_time":"1348177752","subscription_id":"d09f0367-d80a-309c-a2ed-7083991fc564","subscription_description":"A great webhook","sandbox":false,"data":{"signature_request":{"id":"b061af63-b25d-4ae7-aaef-b46178617129","status":"done","name":"The name of your Signature Request"}}}"#;
    /// HMAC-SHA256 of BODY with SECRET, computed independently (Python's `hmac`).
    const SIGNATURE: &str =
        "sha256=362d1aa3e5b957aa18bd6cfd5263d00a48390f2c86b6f70379e5cf516c7a0e06";

    struct One(String);

    impl Headers for One {
        fn get(&self, name: &str) -> Option<&[u8]> {
            (name == SIGNATURE_HEADER).then_some(self.0.as_bytes())
        }
    }

    fn source(secrets: &[&str]) -> SourceConfig {
        crate::testing::source("yousign", secrets)
    }

    fn verify(secrets: &[&str], signature: &str, body: &[u8]) -> Result<Verified, Rejection> {
        let headers = One(signature.to_owned());
        Verifier::from_config(&source(secrets))
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
    fn an_independently_computed_signature_verifies() {
        assert_eq!(sign(SECRET.as_bytes(), BODY), SIGNATURE);
        let verified = verify(&[SECRET], SIGNATURE, BODY).expect("genuine");
        assert_eq!(
            verified.event_id.as_deref(),
            Some("d09f0367-d80a-309c-a2ed-7083991fc564")
        );
        assert_eq!(verified.event_type, "signature_request.done");
        assert_eq!(verified.key_label, "env:KEY0");
        // Upper-case hex is the same signature.
        let upper = format!("{PREFIX}{}", SIGNATURE[PREFIX.len()..].to_uppercase());
        assert!(verify(&[SECRET], &upper, BODY).is_ok());
    }

    #[test]
    fn one_flipped_bit_in_key_signature_or_body_is_refused() {
        assert_every_flip_refused(
            SECRET,
            SIGNATURE,
            PREFIX.len()..SIGNATURE.len(),
            BODY,
            |key, signature, body| verify(&[key], signature, body),
        );
    }

    #[test]
    fn rotation_missing_and_malformed_signatures() {
        let verified = verify(&["old-secret", SECRET], SIGNATURE, BODY).expect("second key");
        assert_eq!(verified.key_label, "env:KEY1");
        for bad in [
            "",
            "sha256=",
            "sha1=362d1aa3e5b957aa18bd6cfd5263d00a48390f2c86b6f70379e5cf516c7a0e06",
            "362d1aa3e5b957aa18bd6cfd5263d00a48390f2c86b6f70379e5cf516c7a0e06",
            "sha256=362d1aa3e5b957aa18bd6cfd5263d00a48390f2c86b6f70379e5cf516c7a0e0",
            "sha256=zz2d1aa3e5b957aa18bd6cfd5263d00a48390f2c86b6f70379e5cf516c7a0e06",
            "sha256=+62d1aa3e5b957aa18bd6cfd5263d00a48390f2c86b6f70379e5cf516c7a0e06",
        ] {
            assert_eq!(
                verify(&[SECRET], bad, BODY).unwrap_err(),
                Rejection::BadSignature,
                "{bad:?}"
            );
        }
        let none = Verifier::from_config(&source(&[SECRET]))
            .unwrap()
            .verify(&Request {
                body: BODY,
                headers: &crate::NoHeaders,
                received_at: SystemTime::now(),
                path_token: None,
                query: None,
            })
            .unwrap_err();
        assert_eq!(none, Rejection::Unsigned);
        assert!(Verifier::from_config(&source(&[])).is_err());
    }

    #[test]
    fn a_signed_body_that_is_not_an_event_is_refused_as_such() {
        for body in [&b"[1,2]"[..], b"not json"] {
            let signature = sign(SECRET.as_bytes(), body);
            assert!(matches!(
                verify(&[SECRET], &signature, body).unwrap_err(),
                Rejection::Unacceptable { status: 400, .. }
            ));
        }
    }

    #[test]
    fn signature_request_and_signer_events_are_normalized() {
        let done = parse(BODY).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].process_key, "b061af63-b25d-4ae7-aaef-b46178617129");
        assert_eq!(done[0].status, Some(ProcessStatus::Completed));
        assert_eq!(
            done[0].flow_name.as_deref(),
            Some("The name of your Signature Request")
        );
        assert_eq!(
            done[0].occurred_at.unwrap().to_rfc3339(),
            "2012-09-20T21:49:12+00:00"
        );
        assert_eq!(done[0].activity[0].key, "signature_request.done");

        let signer = br#"{"event_id":"e1","event_name":"signer.done","event_time":"1348177700","subscription_id":"s","subscription_description":"d","sandbox":false,
            "data":{"signature_request":{"id":"sr1","status":"ongoing","external_id":"contract-7"},
                    "signer":{"id":"si1","status":"signed","info":{"first_name":"John","last_name":"Doe","email":"john@example.com","phone_number":"+33700000000","locale":"fr"}}}}"#;
        let events = parse(signer).unwrap();
        let event = &events[0];
        assert_eq!(event.process_key, "sr1");
        assert_eq!(event.status, None);
        assert_eq!(event.signees[0].key, "si1");
        assert_eq!(event.signees[0].name.as_deref(), Some("John Doe"));
        assert_eq!(event.signees[0].email.as_deref(), Some("john@example.com"));
        assert!(event.signees[0].signed);
        assert!(event.signees[0].signed_at.is_some());
        assert_eq!(event.activity[0].key, "signer.done:si1");
        assert_eq!(event.activity[0].signee_key.as_deref(), Some("si1"));
        assert_eq!(event.metadata["external_id"], "contract-7");

        for (name, status) in [
            ("signature_request.activated", Some(ProcessStatus::Created)),
            ("signature_request.expired", Some(ProcessStatus::Expired)),
            ("signature_request.canceled", Some(ProcessStatus::Canceled)),
            ("signature_request.declined", Some(ProcessStatus::Canceled)),
            ("signature_request.reminder_executed", None),
        ] {
            let body = format!(
                r#"{{"event_id":"x","event_name":"{name}","event_time":"1","data":{{"signature_request":{{"id":"sr2"}}}}}}"#
            );
            assert_eq!(parse(body.as_bytes()).unwrap()[0].status, status, "{name}");
        }
        // Events about other objects are archived, not projected.
        let seal = br#"{"event_id":"x","event_name":"electronic_seal.done","event_time":"1","data":{"electronic_seal":{"id":"es1"}}}"#;
        assert!(parse(seal).unwrap().is_empty());
        assert!(parse(b"[]").is_err());
    }

    #[test]
    fn the_requests_status_is_its_state_and_the_list_is_read_by_cursor() {
        use crate::Reconcile;
        let request: serde_json::Value =
            serde_json::from_slice(&crate::testing::fixture("yousign", "SignatureRequest.json"))
                .unwrap();
        crate::testing::assert_api_states(
            &Yousign,
            &request,
            &[
                ("done", Some(ProcessStatus::Completed)),
                ("canceled", Some(ProcessStatus::Canceled)),
                ("declined", Some(ProcessStatus::Canceled)),
                ("expired", Some(ProcessStatus::Expired)),
                ("ongoing", Some(ProcessStatus::Created)),
                ("unknown", None),
            ],
        );
        assert_eq!(
            Yousign.api_authorization(b"key\n").as_deref(),
            Some("Bearer key")
        );
        let done = parse(BODY).unwrap();
        assert_eq!(
            done[0].documents[0].fetch.as_deref(),
            Some(
                "/signature_requests/b061af63-b25d-4ae7-aaef-b46178617129/documents/download?version=completed"
            )
        );
        let from = DateTime::<Utc>::from_timestamp(1_764_547_200, 0).unwrap();
        let path = YousignReconcile.discovery_path(None, from, from).unwrap();
        assert_eq!(
            path,
            "/signature_requests?limit=100&created_at%5Bbetween%5D=2025-12-01%2C2025-12-01"
        );
        let page = |cursor: serde_json::Value| {
            serde_json::to_vec(
                &serde_json::json!({"meta": {"next_cursor": cursor}, "data": [request]}),
            )
            .unwrap()
        };
        assert_eq!(
            YousignReconcile.next_path(&path, &page(serde_json::Value::Null)),
            None
        );
        let next = YousignReconcile
            .next_path(&path, &page("c/2".into()))
            .unwrap();
        assert_eq!(next, format!("{path}&after=c%2F2"));
        assert_eq!(
            YousignReconcile
                .next_path(&next, &page("c3".into()))
                .unwrap(),
            format!("{path}&after=c3")
        );
        let gaps = YousignReconcile
            .gaps(&page(serde_json::Value::Null), &Default::default())
            .unwrap();
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].event_type, "signature_request.done");
        assert_eq!(
            parse(&gaps[0].body).unwrap()[0].status,
            Some(ProcessStatus::Completed)
        );
    }
}
