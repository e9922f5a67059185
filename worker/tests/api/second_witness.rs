//! Issue 30: DocuSign and PandaDoc sign their bodies but carry no freshness, so a captured
//! delivery verifies whenever it is sent again. With the source's API (a simulator answering in
//! the provider's own shapes, `providers/tests/fixtures/`), the signed PDF comes from the API and
//! every final state a webhook claims is confirmed there before it is recorded.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};

use crate::helpers::{
    DG_API_TOKEN, DG_SECRET, Options, PD_API_KEY, PD_SECRET, Stack, header, wait_until,
};
use crate::simulator::{Answer, Simulator};
use countersign_providers::{docusign, pandadoc};

fn fixture(provider: &str, name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../providers/tests/fixtures")
        .join(provider)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(provider: &str, name: &str) -> serde_json::Value {
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
fn envelope(id: &str, status: &str) -> Answer {
    let mut envelope =
        json("docusign", "connect.schema-v2.json")["data"]["envelopeSummary"].clone();
    envelope["envelopeId"] = id.into();
    envelope["status"] = status.into();
    Answer::ok("application/json", &serde_json::to_vec(&envelope).unwrap())
}

/// Waits until one message is parked, and returns it.
async fn parked(stack: &Stack) -> lapin::message::BasicGetMessage {
    wait_until("the claim is parked", Duration::from_secs(30), || async {
        stack.queue_len(stack.topology.dead_queue()).await == 1
    })
    .await;
    let mut parked = stack.drain(stack.topology.dead_queue()).await;
    assert_eq!(parked.len(), 1);
    parked.remove(0)
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
    let message = parked(&stack).await;
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
fn document_status(id: &str, status: &str) -> Answer {
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
    let message = parked(&stack).await;
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
