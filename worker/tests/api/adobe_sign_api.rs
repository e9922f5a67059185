//! Issue 30: Acrobat Sign signs nothing (a public client id and an address list). With the
//! source's API (a simulator answering in the shapes of Adobe's SDK,
//! `providers/tests/fixtures/adobe_sign/`), a completion brings the combined PDF, every final
//! state is confirmed (a claim the API contradicts is parked), and reconciliation finds an
//! agreement signed without its notification.

use chrono::{SecondsFormat, Utc};

use crate::helpers::{AS_API_TOKEN, AS_CLIENT_ID, Options, Stack, header};
use crate::second_witness::json;
use crate::simulator::{Answer, Simulator};
use countersign_providers::adobe_sign;

/// `GET /agreements/{id}`'s answer: the SDK-shaped AgreementInfo as agreement `id` in `status`.
fn agreement(id: &str, status: &str) -> Answer {
    let mut info = json("adobe_sign", "AgreementInfo.json");
    info["id"] = id.into();
    info["status"] = status.into();
    Answer::ok("application/json", &serde_json::to_vec(&info).unwrap())
}

/// A notification of `event` about agreement `id` in `status`, dated `at`, without its PDF.
fn notification(id: &str, event: &str, status: &str, at: chrono::DateTime<Utc>) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "webhookId": "wh-1", "webhookNotificationId": format!("n-{id}"), "event": event,
        "eventDate": at.to_rfc3339_opts(SecondsFormat::Secs, true), "eventResourceType": "agreement",
        "agreement": {"id": id, "name": "Reseller agreement", "status": status}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn adobe_sign_claims_are_confirmed_the_combined_pdf_downloaded_and_a_lost_signing_reconciled()
{
    let pdf = |id: &str| format!("%PDF-1.7 Acrobat Sign combined document {id}").into_bytes();
    let mut list = json("adobe_sign", "UserAgreements.json");
    let mut listed = list["userAgreementList"][0].clone();
    listed["displayDate"] = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true).into();
    let mut lost = listed.clone();
    lost["id"] = "agr-lost".into();
    let mut known = listed;
    known["id"] = "agr-done".into();
    list["userAgreementList"] = serde_json::json!([lost, known]);
    list["page"] = serde_json::json!({});
    let api = Simulator::start(
        "/api/rest/v6",
        vec![
            (
                "/agreements/agr-done",
                vec![agreement("agr-done", "SIGNED")],
            ),
            (
                "/agreements/agr-done/combinedDocument",
                vec![Answer::ok("application/pdf", &pdf("agr-done"))],
            ),
            // A "completion" posted from an allowed address with the public client id; the
            // API says the agreement is still out for signature.
            (
                "/agreements/agr-forged",
                vec![agreement("agr-forged", "OUT_FOR_SIGNATURE")],
            ),
            (
                "/agreements/agr-lost",
                vec![agreement("agr-lost", "SIGNED")],
            ),
            (
                "/agreements/agr-lost/combinedDocument",
                vec![Answer::ok("application/pdf", &pdf("agr-lost"))],
            ),
            (
                "/agreements",
                vec![Answer::ok(
                    "application/json",
                    &serde_json::to_vec(&list).unwrap(),
                )],
            ),
        ],
    )
    .await;
    let stack = Stack::start_with(Options {
        apis: vec![("as", api.base_url.clone())],
        ..Options::default()
    })
    .await;
    let post = |body: Vec<u8>| {
        let stack = &stack;
        async move {
            stack
                .post_to("as", &body, &[(adobe_sign::CLIENT_ID_HEADER, AS_CLIENT_ID)])
                .await
        }
    };
    let done = notification(
        "agr-done",
        "AGREEMENT_WORKFLOW_COMPLETED",
        "SIGNED",
        Utc::now(),
    );
    assert_eq!(post(done).await, 200);
    let forged = notification(
        "agr-forged",
        "AGREEMENT_WORKFLOW_COMPLETED",
        "SIGNED",
        Utc::now() - chrono::TimeDelta::hours(1),
    );
    assert_eq!(post(forged).await, 200, "nothing in it can be checked");
    stack.wait_for_events(1).await;
    assert_eq!(stack.signed_document("agr-done").await, pdf("agr-done"));
    let (_, view) = stack.get_json("/signing/activity/agr-done?source=as").await;
    assert_eq!(view[0]["status"], "completed");
    assert_eq!(view[0]["verified"], "signature+api");
    assert_eq!(view[0].get("unconfirmed"), None);
    let bearer = format!("Bearer {AS_API_TOKEN}");
    assert!(
        api.seen()
            .iter()
            .all(|s| s.authorization.as_deref() == Some(bearer.as_str()))
    );

    let parked = [stack.parked_one().await];
    assert_eq!(header(&parked[0], "x-dead-kind"), Some("contradicted"));
    let reason = header(&parked[0], "x-dead-reason").unwrap();
    assert!(
        reason.starts_with(
            "the webhook claims completed for agr-forged; adobe_sign's API reports created, 6"
        ),
        "{reason}"
    );
    let (status, _) = stack
        .get_json("/signing/activity/agr-forged?source=as")
        .await;
    assert_eq!(status, 404);

    stack.reconciles("as", 1, 2).await;
    assert_eq!(stack.signed_document("agr-lost").await, pdf("agr-lost"));
    assert_eq!(stack.queue_len(stack.topology.dead_queue()).await, 0);
}
