//! A Taktikal signature does not cover the body: a second body under a recorded signature is
//! parked, whichever ingester replica let it through.

use std::time::Duration;

use crate::helpers::{Stack, header, taktikal, wait_until};

/// Publishes `body` as an AllSigned Taktikal event of `acme`, as an ingester replica that does
/// not remember the signature would.
async fn publish_as_another_replica(stack: &Stack, body: &[u8], event_id: &str) {
    let headers = [
        ("x-source", "acme"),
        ("x-provider", "taktikal"),
        ("x-event-type", "AllSigned"),
    ];
    stack.publish_raw(body, event_id, &headers).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_body_under_a_recorded_signature_is_parked_as_a_suspected_replay() {
    let stack = Stack::start().await;
    let (id, genuine) = taktikal("sp-genuine", 2);
    assert_eq!(stack.post(&genuine).await, 200);
    stack.wait_for_events(1).await;

    // The same EventSignature on another event. This ingester would refuse it (its memory has
    // the signature); another replica, restarted, might not: publish it as that replica would.
    let mut forged: serde_json::Value = serde_json::from_slice(&genuine).unwrap();
    forged["Id"] = "forged-event".into();
    forged["EventData"]["ProcessKey"] = "sp-forged".into();
    let forged = serde_json::to_vec(&forged).unwrap();
    assert_eq!(
        stack.post(&forged).await,
        401,
        "this replica remembers the signature"
    );
    publish_as_another_replica(&stack, &forged, "forged-event").await;

    wait_until("the replay is parked", Duration::from_secs(30), || async {
        stack.queue_len(stack.topology.dead_queue()).await == 1
    })
    .await;
    let parked = stack.drain(stack.topology.dead_queue()).await;
    assert_eq!(header(&parked[0], "x-dead-kind"), Some("suspected_replay"));
    assert!(
        header(&parked[0], "x-dead-reason").unwrap().contains(&id),
        "names the first event"
    );

    assert_eq!(stack.count("SELECT count(*) FROM webhook_events").await, 1);
    assert_eq!(
        stack
            .count("SELECT count(*) FROM webhook_events WHERE event_id = 'forged-event'")
            .await,
        0
    );
    assert_eq!(
        stack
            .count("SELECT count(*) FROM signing_processes WHERE process_key = 'sp-forged'")
            .await,
        0
    );
    let (body, deliveries): (Vec<u8>, i32) =
        sqlx::query_as("SELECT body, deliveries FROM webhook_events")
            .fetch_one(&stack.db)
            .await
            .unwrap();
    assert_eq!(
        (body, deliveries),
        (genuine, 1),
        "the first record is untouched"
    );
}

/// Issue 12: after a suspected replay was parked, its attachment stayed in the store and
/// `GET /documents/{sha256}` served it (an "XML" with a `<script>`). A parked event stores
/// nothing now, and what is served is never rendered by a browser.
#[tokio::test(flavor = "multi_thread")]
async fn a_parked_replay_leaves_no_document_to_download() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let stack = Stack::start().await;
    let (_, genuine) = taktikal("sp-genuine-doc", 2);
    assert_eq!(stack.post(&genuine).await, 200);
    stack.wait_for_events(1).await;

    let script = b"<?xml version=\"1.0\"?><html xmlns=\"http://www.w3.org/1999/xhtml\"><script>alert(1)</script></html>";
    let script_sha256 = format!("{:x}", sha2::Sha256::digest(script));
    let mut forged: serde_json::Value = serde_json::from_slice(&genuine).unwrap();
    forged["Id"] = "forged-with-document".into();
    forged["EventData"]["SignedDocument"] = base64::engine::general_purpose::STANDARD
        .encode(script)
        .into();
    let forged = serde_json::to_vec(&forged).unwrap();
    publish_as_another_replica(&stack, &forged, "forged-with-document").await;
    wait_until("the replay is parked", Duration::from_secs(30), || async {
        stack.queue_len(stack.topology.dead_queue()).await == 1
    })
    .await;
    assert_eq!(
        stack
            .count(&format!(
                "SELECT count(*) FROM stored_documents WHERE sha256 = '{script_sha256}'"
            ))
            .await,
        0,
        "nothing stored for a parked event"
    );
    let response = stack
        .http
        .get(format!("{}/documents/{script_sha256}", stack.worker))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    // The genuine event's document is served as a download, never rendered.
    let genuine_sha256: String = sqlx::query_scalar(
        "SELECT sha256 FROM documents WHERE process_key = 'sp-genuine-doc' AND sha256 IS NOT NULL LIMIT 1",
    )
    .fetch_one(&stack.db)
    .await
    .unwrap();
    let response = stack
        .http
        .get(format!("{}/documents/{genuine_sha256}", stack.worker))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment"),
    );
}
