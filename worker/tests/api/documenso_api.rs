//! Issue 30: Documenso authenticates its webhooks with a bearer secret that proves nothing about
//! the body. With the source's API (a simulator answering with Documenso's own document shape,
//! `providers/tests/fixtures/documenso/`), the signed PDF comes from the API, every final state
//! is confirmed there (a claim it contradicts is parked), and reconciliation finds a completion
//! whose webhook never came.

use crate::helpers::{DM_API_KEY, DM_SECRET, Options, Stack, header};
use crate::second_witness::json;
use crate::simulator::{Answer, Simulator};
use countersign_providers::documenso;

/// Documenso's document (its sample's payload) as document `id` in `status`, updated now.
fn document(id: u64, status: &str) -> serde_json::Value {
    let mut document = json("documenso", "document_completed.json")["payload"].clone();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    document["id"] = id.into();
    document["status"] = status.into();
    document["documentDataId"] = format!("real-document-data-{id}").into();
    document["createdAt"] = now.clone().into();
    document["updatedAt"] = now.clone().into();
    document["completedAt"] = if status == "COMPLETED" {
        now.into()
    } else {
        serde_json::Value::Null
    };
    document
}

fn answer(value: &serde_json::Value) -> Answer {
    Answer::ok("application/json", &serde_json::to_vec(value).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn documenso_claims_are_confirmed_pdfs_downloaded_and_a_lost_completion_reconciled() {
    let pdf = |id: u64| format!("%PDF-1.7 Documenso document {id}, signed").into_bytes();
    let list = serde_json::json!({
        "data": [document(503, "COMPLETED"), document(501, "COMPLETED")],
        "count": 2, "currentPage": 1, "perPage": 100, "totalPages": 1
    });
    let api = Simulator::start(
        "/api/v2",
        vec![
            ("/document/501", vec![answer(&document(501, "COMPLETED"))]),
            (
                "/document/501/download",
                vec![Answer::ok("application/pdf", &pdf(501))],
            ),
            // The claim of a completion; the API says the document was rejected.
            ("/document/502", vec![answer(&document(502, "REJECTED"))]),
            // Completed, its webhook never came: found by reconciliation.
            ("/document/503", vec![answer(&document(503, "COMPLETED"))]),
            (
                "/document/503/download",
                vec![Answer::ok("application/pdf", &pdf(503))],
            ),
            ("/document", vec![answer(&list)]),
        ],
    )
    .await;
    let stack = Stack::start_with(Options {
        apis: vec![("dm", api.base_url.clone())],
        ..Options::default()
    })
    .await;
    for id in [501, 502] {
        let body = serde_json::to_vec(&serde_json::json!({
            "event": "DOCUMENT_COMPLETED",
            "payload": document(id, "COMPLETED"),
            "createdAt": chrono::Utc::now().to_rfc3339(),
            "webhookEndpoint": "https://countersign.example/webhooks/dm"
        }))
        .unwrap();
        assert_eq!(
            stack
                .post_to("dm", &body, &[(documenso::SECRET_HEADER, DM_SECRET)])
                .await,
            200
        );
    }
    stack.wait_for_events(1).await;
    assert_eq!(stack.signed_document("501").await, pdf(501));
    let (_, view) = stack.get_json("/signing/activity/501?source=dm").await;
    assert_eq!(view[0]["status"], "completed");
    assert_eq!(view[0]["verified"], "signature+api");
    assert_eq!(view[0].get("unconfirmed"), None, "confirmed by the API");
    assert_eq!(
        view[0]["documents"][0]["fetchedFrom"],
        "/document/501/download?version=signed"
    );
    for request in api.seen() {
        assert_eq!(request.authorization.as_deref(), Some(DM_API_KEY));
    }

    let parked = [stack.parked_one().await];
    assert_eq!(header(&parked[0], "x-dead-kind"), Some("contradicted"));
    assert_eq!(
        header(&parked[0], "x-dead-reason"),
        Some("the webhook claims completed for 502; documenso's API reports canceled")
    );
    let (status, _) = stack.get_json("/signing/activity/502?source=dm").await;
    assert_eq!(status, 404);

    stack.reconciles("dm", 1, 2).await;
    assert_eq!(stack.signed_document("503").await, pdf(503));
    let (_, view) = stack.get_json("/signing/activity/503?source=dm").await;
    assert_eq!(view[0]["verified"], "signature+api");
    assert_eq!(stack.queue_len(stack.topology.dead_queue()).await, 0);
}
