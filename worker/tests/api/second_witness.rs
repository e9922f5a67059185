//! Issue 30: DocuSign and PandaDoc sign their bodies but carry no freshness, so a captured
//! delivery verifies whenever it is sent again. With the source's API (a simulator answering in
//! the provider's own shapes, `providers/tests/fixtures/`), the signed PDF comes from the API and
//! every final state a webhook claims is confirmed there before it is recorded.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use sha2::Digest as _;

use crate::helpers::{
    DG_API_TOKEN, DG_SECRET, Options, PD_API_KEY, PD_SECRET, Stack, header, wait_until,
};
use crate::simulator::{Answer, Simulator};
use countersign_providers::{docusign, pandadoc};

pub fn fixture(provider: &str, name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../providers/tests/fixtures")
        .join(provider)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn json(provider: &str, name: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture(provider, name)).unwrap()
}

/// DocuSign's Connect sample as `event` about `envelope`, in `status`, generated at `at`.
fn connect(event: &str, envelope: &str, status: &str, at: chrono::DateTime<Utc>) -> Vec<u8> {
    let mut message = json("docusign", "connect.schema-v2.json");
    message["event"] = event.into();
    message["generatedDateTime"] = at.to_rfc3339_opts(SecondsFormat::Micros, true).into();
    message["data"]["envelopeId"] = envelope.into();
    message["data"]["envelopeSummary"]["envelopeId"] = envelope.into();
    message["data"]["envelopeSummary"]["status"] = status.into();
    serde_json::to_vec(&message).unwrap()
}

/// `GET /envelopes/{envelopeId}`'s answer: the sample's `envelope` object in `status`.
pub fn envelope(id: &str, status: &str) -> Answer {
    let mut envelope =
        json("docusign", "connect.schema-v2.json")["data"]["envelopeSummary"].clone();
    envelope["envelopeId"] = id.into();
    envelope["status"] = status.into();
    Answer::ok("application/json", &serde_json::to_vec(&envelope).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn docusign_a_completion_brings_the_combined_pdf_and_a_replayed_one_for_a_sent_envelope_is_parked()
 {
    let pdf = b"%PDF-1.7 DocuSign combined, with the certificate of completion".to_vec();
    let api = Simulator::start(
        "/restapi/v2.1/accounts/acc-1",
        vec![
            (
                "/envelopes/env-done",
                vec![envelope("env-done", "completed")],
            ),
            (
                "/envelopes/env-done/documents/combined",
                vec![Answer::ok("application/pdf", &pdf)],
            ),
            ("/envelopes/env-sent", vec![envelope("env-sent", "sent")]),
        ],
    )
    .await;
    let stack = Stack::start_with(Options {
        apis: vec![("dg", api.base_url.clone())],
        ..Options::default()
    })
    .await;
    let send = |body: Vec<u8>| {
        let stack = &stack;
        async move {
            let signature = docusign::sign(DG_SECRET.as_bytes(), &body);
            stack
                .send_to("dg", &body, &[(docusign::SIGNATURE_HEADER, &signature)])
                .await
                .status()
        }
    };

    // A genuine completion without PDFBytes: the combined PDF comes from the API.
    let done = connect("envelope-completed", "env-done", "completed", Utc::now());
    assert_eq!(send(done).await, 200);
    stack.wait_for_events(1).await;
    assert_eq!(stack.signed_document("env-done").await, pdf);
    let (_, view) = stack.get_json("/signing/activity/env-done?source=dg").await;
    assert_eq!(view[0]["status"], "completed");
    assert_eq!(view[0]["verified"], "signature+api");
    // Its provenance: which endpoint, when, and the content's sha256.
    let document = &view[0]["documents"][0];
    assert_eq!(document["kind"], "signed");
    assert_eq!(
        document["fetchedFrom"],
        "/envelopes/env-done/documents/combined"
    );
    let fetched_at = document["fetchedAt"].as_str().unwrap();
    assert!(
        fetched_at.ends_with('Z') && fetched_at.len() == 28,
        "{fetched_at}"
    );
    assert_eq!(
        document["id"],
        countersign_providers::hex(&sha2::Sha256::digest(&pdf))
    );
    let bearer = format!("Bearer {DG_API_TOKEN}");
    let seen = api.seen();
    assert!(
        seen.iter()
            .any(|s| s.path == "/restapi/v2.1/accounts/acc-1/envelopes/env-done/documents/combined"),
        "{seen:?}"
    );
    for request in &seen {
        assert_eq!(request.authorization.as_deref(), Some(bearer.as_str()));
    }

    // The attack: a delivery captured two hours ago (its signature is genuine: DocuSign signed
    // it then) claiming "completed" for an envelope the API says is only sent.
    let captured = connect(
        "envelope-completed",
        "env-sent",
        "completed",
        Utc::now() - chrono::TimeDelta::hours(2),
    );
    assert_eq!(send(captured).await, 200, "the signature verifies");
    let message = stack.parked_one().await;
    assert_eq!(header(&message, "x-dead-kind"), Some("contradicted"));
    let reason = header(&message, "x-dead-reason").unwrap();
    assert!(
        reason.starts_with(
            "the webhook claims completed for env-sent; docusign's API reports created, 1"
        ) && reason.ends_with(" minutes after the event"),
        "{reason}"
    );
    let (status, _) = stack.get_json("/signing/activity/env-sent?source=dg").await;
    assert_eq!(status, 404, "a contradicted claim is never recorded");
    assert_eq!(stack.count("SELECT count(*) FROM webhook_events").await, 1);
}

/// A PandaDoc notification about document `id` in `status`, modified at `at`.
fn notification(event: &str, id: &str, status: &str, at: chrono::DateTime<Utc>) -> Vec<u8> {
    let at = at.to_rfc3339_opts(SecondsFormat::Micros, true);
    serde_json::to_vec(&serde_json::json!([{"event": event, "data": {
        "id": id, "name": "Offer letter", "status": status,
        "date_created": "2026-11-30T09:12:45.120000Z", "date_modified": at,
        "recipients": [{"id": "r-1", "email": "mia@example.com", "first_name": "Mia",
            "last_name": "Berg", "recipient_type": "signer", "has_completed": true}],
        "metadata": {}
    }}]))
    .unwrap()
}

/// `GET /documents/{id}`'s answer (the SDK's DocumentStatusResponse) in `status`.
pub fn document_status(id: &str, status: &str) -> Answer {
    let mut answer = json("pandadoc", "DocumentStatusResponse.json");
    answer["id"] = id.into();
    answer["uuid"] = id.into();
    answer["status"] = status.into();
    Answer::ok("application/json", &serde_json::to_vec(&answer).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn pandadoc_a_ready_pdf_is_downloaded_and_a_replayed_completion_of_a_sent_document_is_parked()
{
    let pdf = b"%PDF-1.7 PandaDoc protected, signed".to_vec();
    let api = Simulator::start(
        "/public/v1",
        vec![
            (
                "/documents/pd-done",
                vec![document_status("pd-done", "document.completed")],
            ),
            (
                "/documents/pd-done/download-protected",
                vec![Answer::status(503), Answer::ok("application/pdf", &pdf)],
            ),
            (
                "/documents/pd-sent",
                vec![document_status("pd-sent", "document.sent")],
            ),
        ],
    )
    .await;
    let stack = Stack::start_with(Options {
        apis: vec![("pd", api.base_url.clone())],
        ..Options::default()
    })
    .await;
    let send = |body: Vec<u8>, delivery: &'static str| {
        let stack = &stack;
        async move {
            let signature = pandadoc::sign(PD_SECRET.as_bytes(), &body);
            stack
                .post_to(
                    &format!("pd?signature={signature}"),
                    &body,
                    &[(pandadoc::EVENT_ID_HEADER, delivery)],
                )
                .await
        }
    };
    let ready = notification(
        "document_completed_pdf_ready",
        "pd-done",
        "document.completed",
        Utc::now(),
    );
    assert_eq!(send(ready, "dlv-ready").await, 200);
    stack.wait_for_events(1).await;
    assert_eq!(stack.signed_document("pd-done").await, pdf);
    let (_, view) = stack.get_json("/signing/activity/pd-done?source=pd").await;
    assert_eq!(view[0]["status"], "completed");
    assert_eq!(view[0]["verified"], "signature+api");
    let key = format!("API-Key {PD_API_KEY}");
    let downloads: Vec<_> = api
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("/download-protected"))
        .collect();
    assert_eq!(downloads.len(), 2, "503, then the PDF: {downloads:?}");
    assert!(
        api.seen()
            .iter()
            .all(|s| s.authorization.as_deref() == Some(key.as_str()))
    );

    let captured = notification(
        "document_state_changed",
        "pd-sent",
        "document.completed",
        Utc::now() - chrono::TimeDelta::hours(3),
    );
    assert_eq!(
        send(captured, "dlv-old").await,
        200,
        "the signature verifies"
    );
    let message = stack.parked_one().await;
    assert_eq!(header(&message, "x-dead-kind"), Some("contradicted"));
    let reason = header(&message, "x-dead-reason").unwrap();
    assert!(
        reason.starts_with(
            "the webhook claims completed for pd-sent; pandadoc's API reports created, 1"
        ),
        "{reason}"
    );
    let (status, _) = stack.get_json("/signing/activity/pd-sent?source=pd").await;
    assert_eq!(status, 404, "a contradicted claim is never recorded");
}

/// Posts PandaDoc's signed `document_completed_pdf_ready` for completed document `id`: the status.
async fn post_pdf_ready(stack: &Stack, id: &str) -> u16 {
    let ready = notification(
        "document_completed_pdf_ready",
        id,
        "document.completed",
        Utc::now(),
    );
    let signature = pandadoc::sign(PD_SECRET.as_bytes(), &ready);
    stack
        .post_to(
            &format!("pd?signature={signature}"),
            &ready,
            &[(pandadoc::EVENT_ID_HEADER, id)],
        )
        .await
}

/// The AMQP headers archived with `source`'s one recorded event.
async fn archived_headers(stack: &Stack, source: &str) -> serde_json::Value {
    sqlx::query_scalar("SELECT headers FROM webhook_events WHERE source = $1")
        .bind(source)
        .fetch_one(&stack.db)
        .await
        .unwrap()
}

/// Issue 30 item 4: a provider's `Retry-After` is honoured. The API answers the download with 429
/// and `Retry-After: 3`; with retry delays of 1, 2 and 4 s the message skips to the 4 s queue
/// (the first that waits that long) and is recorded from there.
#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_sends_the_message_to_the_first_retry_queue_that_waits_that_long() {
    let pdf = b"%PDF-1.7 after the rate limit".to_vec();
    let api = Simulator::start(
        "/public/v1",
        vec![
            (
                "/documents/pd-ra",
                vec![document_status("pd-ra", "document.completed")],
            ),
            (
                "/documents/pd-ra/download-protected",
                vec![
                    Answer::status(429).with_header("retry-after", "3"),
                    Answer::ok("application/pdf", &pdf),
                ],
            ),
        ],
    )
    .await;
    let stack = Stack::start_with(Options {
        apis: vec![("pd", api.base_url.clone())],
        ..Options::default()
    })
    .await;
    assert_eq!(post_pdf_ready(&stack, "pd-ra").await, 200);
    let queues = stack.topology.retry_queues().to_vec();
    assert_eq!(queues.len(), 3);
    assert_eq!(queues[2].1, Duration::from_secs(4));
    wait_until(
        "the message waits in the 4 s queue",
        Duration::from_secs(10),
        || async { stack.queue_len(&queues[2].0).await == 1 },
    )
    .await;
    assert_eq!(stack.queue_len(&queues[0].0).await, 0);
    stack.wait_for_events(1).await;
    assert_eq!(stack.signed_document("pd-ra").await, pdf);
    let headers = archived_headers(&stack, "pd").await;
    assert_eq!(headers["x-attempt"], 3, "{headers}");
    let last_error = headers["x-last-error"].as_str().unwrap();
    assert!(
        last_error.contains("HTTP 429 Too Many Requests (Retry-After: 3)"),
        "{last_error}"
    );
}

/// Issue 30 item 4: the API client against an API that answers too slowly (past `api.timeout`,
/// 5 s here), breaks its answer off, then redirects to another host: each failure retries the
/// message alone, and the other host never sees the credentials.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_a_truncated_and_a_redirected_download_end_with_the_pdf_and_no_credentials_elsewhere()
 {
    let pdf = b"%PDF-1.7 served by the storage host".to_vec();
    // The other host: `localhost`, where the API is `127.0.0.1` (another host to an HTTP client).
    let storage = Simulator::start(
        "",
        vec![("/signed.pdf", vec![Answer::ok("application/pdf", &pdf)])],
    )
    .await;
    let elsewhere = storage.base_url.replace("127.0.0.1", "localhost");
    let api = Simulator::start(
        "/public/v1",
        vec![
            (
                "/documents/pd-rough",
                vec![document_status("pd-rough", "document.completed")],
            ),
            (
                "/documents/pd-rough/download-protected",
                vec![
                    Answer::ok("application/pdf", &pdf).after(Duration::from_secs(7)),
                    Answer::ok("application/pdf", &pdf).truncated(),
                    Answer::redirect(&format!("{elsewhere}/signed.pdf")),
                ],
            ),
        ],
    )
    .await;
    let stack = Stack::start_with(Options {
        apis: vec![("pd", api.base_url.clone())],
        ..Options::default()
    })
    .await;
    assert_eq!(post_pdf_ready(&stack, "pd-rough").await, 200);
    stack.wait_for_events(1).await;
    assert_eq!(stack.signed_document("pd-rough").await, pdf);
    let downloads = api
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("/download-protected"))
        .count();
    assert_eq!(downloads, 3, "timed out, broken off, redirected");
    let at_storage = storage.seen();
    assert_eq!(at_storage.len(), 1);
    assert_eq!(
        at_storage[0].authorization, None,
        "no credentials to another host"
    );
    let headers = archived_headers(&stack, "pd").await;
    assert_eq!(headers["x-attempt"], 2, "{headers}");
    assert_eq!(
        headers["x-last-error"],
        "pd's API: document download: GET /documents/pd-rough/download-protected: the response body broke off"
    );
    assert_eq!(stack.queue_len(stack.topology.dead_queue()).await, 0);
}
