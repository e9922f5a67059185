//! Issue 30: Yousign's API behind a source — a done request's documents downloaded, final states
//! confirmed (its signature has no time limit), a lost completion reconciled — against a
//! simulator answering in the `SignatureRequest` shape (`providers/tests/fixtures/yousign/`).

use crate::helpers::{Options, Stack, YS_API_KEY, YS_SECRET, header};
use crate::second_witness::json;
use crate::simulator::{Answer, Simulator};
use countersign_providers::yousign;

fn request(id: &str, status: &str) -> serde_json::Value {
    let mut request = json("yousign", "SignatureRequest.json");
    request["id"] = id.into();
    request["status"] = status.into();
    request
}

fn answer(value: &serde_json::Value) -> Answer {
    Answer::ok("application/json", &serde_json::to_vec(value).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn yousign_done_requests_are_confirmed_downloaded_and_a_lost_one_reconciled() {
    let pdf = |id: &str| format!("%PDF-1.7 Yousign {id}").into_bytes();
    let list = serde_json::json!({
        "meta": {"next_cursor": null},
        "data": [request("ys-lost", "done"), request("ys-done", "done")]
    });
    let api = Simulator::start(
        "/v3",
        vec![
            (
                "/signature_requests/ys-done",
                vec![answer(&request("ys-done", "done"))],
            ),
            (
                "/signature_requests/ys-done/documents/download",
                vec![Answer::ok("application/pdf", &pdf("ys-done"))],
            ),
            // A captured "done" event for a request the API says was canceled.
            (
                "/signature_requests/ys-canceled",
                vec![answer(&request("ys-canceled", "canceled"))],
            ),
            (
                "/signature_requests/ys-lost",
                vec![answer(&request("ys-lost", "done"))],
            ),
            (
                "/signature_requests/ys-lost/documents/download",
                vec![Answer::ok("application/pdf", &pdf("ys-lost"))],
            ),
            ("/signature_requests", vec![answer(&list)]),
        ],
    )
    .await;
    let stack = Stack::start_with(Options {
        apis: vec![("ys", api.base_url.clone())],
        ..Options::default()
    })
    .await;
    for id in ["ys-done", "ys-canceled"] {
        let body = serde_json::to_vec(&serde_json::json!({
            "event_id": format!("ev-{id}"), "event_name": "signature_request.done",
            "event_time": chrono::Utc::now().timestamp().to_string(),
            "subscription_id": "sub-1", "subscription_description": "countersign", "sandbox": false,
            "data": {"signature_request": {"id": id, "status": "done", "name": "Lease"}}
        }))
        .unwrap();
        let signature = yousign::sign(YS_SECRET.as_bytes(), &body);
        assert_eq!(
            stack
                .post_to("ys", &body, &[(yousign::SIGNATURE_HEADER, &signature)])
                .await,
            200
        );
    }
    stack.wait_for_events(1).await;
    assert_eq!(stack.signed_document("ys-done").await, pdf("ys-done"));
    let (_, view) = stack.get_json("/signing/activity/ys-done?source=ys").await;
    assert_eq!(view[0]["verified"], "signature+api");
    let bearer = format!("Bearer {YS_API_KEY}");
    assert!(
        api.seen()
            .iter()
            .all(|s| s.authorization.as_deref() == Some(bearer.as_str()))
    );
    assert!(
        api.seen().iter().any(
            |s| s.path == "/v3/signature_requests/ys-done/documents/download?version=completed"
        )
    );

    let parked = stack.parked_one().await;
    assert_eq!(header(&parked, "x-dead-kind"), Some("contradicted"));
    assert_eq!(
        header(&parked, "x-dead-reason"),
        Some("the webhook claims completed for ys-canceled; yousign's API reports canceled")
    );

    stack.reconciles("ys", 1, 2).await;
    assert_eq!(stack.signed_document("ys-lost").await, pdf("ys-lost"));
    assert_eq!(stack.queue_len(stack.topology.dead_queue()).await, 0);
}
