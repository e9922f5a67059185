//! Issue 30: BoldSign's API behind a source — the completed document downloaded, final states
//! confirmed, a lost completion reconciled — against a simulator answering in the shapes of
//! BoldSign's SDK (`providers/tests/fixtures/boldsign/`). Its key travels in `X-API-KEY`, never
//! in `Authorization`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::helpers::{BS_API_KEY, BS_SECRET, Options, Stack, header, wait_until};
use crate::second_witness::json;
use crate::simulator::{Answer, Simulator};
use countersign_providers::boldsign;

fn properties(id: &str, status: &str) -> Answer {
    let mut document = json("boldsign", "DocumentProperties.json");
    document["documentId"] = id.into();
    document["status"] = status.into();
    Answer::ok("application/json", &serde_json::to_vec(&document).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn boldsign_completions_are_confirmed_downloaded_and_a_lost_one_reconciled() {
    let pdf = |id: &str| format!("%PDF-1.7 BoldSign {id}").into_bytes();
    // Another host (`localhost` beside the API's `127.0.0.1`) that a download is redirected to:
    // X-API-KEY is not a header an HTTP client strips, so such a redirect is not followed.
    let elsewhere = Simulator::start("", vec![]).await;
    let moved_to = format!(
        "{}/stolen.pdf",
        elsewhere.base_url.replace("127.0.0.1", "localhost")
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut list = json("boldsign", "DocumentRecords.json");
    let mut lost = list["result"][0].clone();
    lost["documentId"] = "bs-lost".into();
    lost["activityDate"] = now.into();
    let mut done = lost.clone();
    done["documentId"] = "bs-done".into();
    list["result"] = serde_json::json!([lost, done]);
    let api = Simulator::start(
        "",
        vec![
            (
                "/v1/document/properties?documentId=bs-done",
                vec![properties("bs-done", "Completed")],
            ),
            (
                "/v1/document/download?documentId=bs-done",
                vec![Answer::ok("application/pdf", &pdf("bs-done"))],
            ),
            (
                "/v1/document/properties?documentId=bs-revoked",
                vec![properties("bs-revoked", "Revoked")],
            ),
            (
                "/v1/document/properties?documentId=bs-lost",
                vec![properties("bs-lost", "Completed")],
            ),
            (
                "/v1/document/download?documentId=bs-lost",
                vec![Answer::ok("application/pdf", &pdf("bs-lost"))],
            ),
            (
                "/v1/document/properties?documentId=bs-moved",
                vec![properties("bs-moved", "Completed")],
            ),
            (
                "/v1/document/download?documentId=bs-moved",
                vec![Answer::redirect(&moved_to)],
            ),
            (
                "/v1/document/list",
                vec![Answer::ok(
                    "application/json",
                    &serde_json::to_vec(&list).unwrap(),
                )],
            ),
        ],
    )
    .await;
    let stack = Stack::start_with(Options {
        apis: vec![("bs", api.base_url.clone())],
        ..Options::default()
    })
    .await;
    for id in ["bs-done", "bs-revoked", "bs-moved"] {
        let body = serde_json::to_vec(&serde_json::json!({
            "event": {"id": format!("ev-{id}"), "created": now, "eventType": "Completed", "environment": "Live"},
            "data": {"object": "document", "documentId": id, "messageTitle": "Offer letter", "status": "Completed",
                "signerDetails": []}}))
        .unwrap();
        let signature = boldsign::sign(BS_SECRET.as_bytes(), now, &body);
        assert_eq!(
            stack
                .post_to(
                    "bs",
                    &body,
                    &[
                        (boldsign::SIGNATURE_HEADER, &signature),
                        (boldsign::EVENT_HEADER, "Completed")
                    ]
                )
                .await,
            200
        );
    }
    stack.wait_for_events(1).await;
    assert_eq!(stack.signed_document("bs-done").await, pdf("bs-done"));
    let (_, view) = stack.get_json("/signing/activity/bs-done?source=bs").await;
    assert_eq!(view[0]["verified"], "signature+api");
    for request in api.seen() {
        assert_eq!(
            request.authorization, None,
            "the key is not in Authorization"
        );
        assert_eq!(
            request.headers.get("x-api-key").map(String::as_str),
            Some(BS_API_KEY)
        );
    }

    // The revoked one at once; the redirected one after its retries (1 + 2 + 4 s).
    wait_until("both are parked", Duration::from_secs(30), || async {
        stack.queue_len(stack.topology.dead_queue()).await == 2
    })
    .await;
    let parked = stack.drain(stack.topology.dead_queue()).await;
    let reason = |kind: &str| {
        parked
            .iter()
            .find(|m| header(m, "x-dead-kind") == Some(kind))
            .and_then(|m| header(m, "x-dead-reason"))
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        reason("contradicted"),
        "the webhook claims completed for bs-revoked; boldsign's API reports canceled"
    );
    let moved = reason("retries_exhausted");
    assert!(
        moved.contains("/v1/document/download?documentId=bs-moved: HTTP 302"),
        "{moved}"
    );
    assert!(
        elsewhere.seen().is_empty(),
        "the key never went to another host"
    );

    let (reconciler, index) = stack.reconciler("bs");
    assert_eq!(reconciler.run_once(index).await.unwrap().gaps, 1);
    stack.wait_for_events(2).await;
    assert_eq!(stack.signed_document("bs-lost").await, pdf("bs-lost"));
    assert_eq!(stack.queue_len(stack.topology.dead_queue()).await, 0);
    assert_eq!(reconciler.run_once(index).await.unwrap().gaps, 0);
    let listed = api
        .seen()
        .into_iter()
        .find(|s| s.path.starts_with("/v1/document/list?"))
        .unwrap();
    assert!(
        listed
            .path
            .starts_with("/v1/document/list?PageSize=100&Page=1&StartDate="),
        "{}",
        listed.path
    );
}
