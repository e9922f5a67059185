//! Issue 30: DocuSeal's API behind a source, against a simulator answering with the examples of
//! DocuSeal's OpenAPI description (`providers/tests/fixtures/docuseal/`): the signed documents
//! listed by URL and downloaded from there without the key, final states confirmed, a lost
//! completion reconciled.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::helpers::{DS_API_KEY, DS_SECRET, Options, Stack, header};
use crate::second_witness::json;
use crate::simulator::{Answer, Simulator};
use countersign_providers::docuseal;

/// The OpenAPI example's submission as submission `id` in `status`, created now.
fn submission(id: u64, status: &str) -> serde_json::Value {
    let mut submission = json("docuseal", "getSubmission.json");
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    submission["id"] = id.into();
    submission["status"] = status.into();
    submission["created_at"] = now.clone().into();
    submission["completed_at"] = now.into();
    submission
}

fn answer(value: &serde_json::Value) -> Answer {
    Answer::ok("application/json", &serde_json::to_vec(value).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn docuseal_completions_bring_their_documents_from_the_listed_urls_and_are_reconciled() {
    let pdf = |id: u64| format!("%PDF-1.7 DocuSeal submission {id}").into_bytes();
    // The documents are served by URL from another host than the API, without the key.
    let files = Simulator::start(
        "",
        vec![
            (
                "/file/s41/contract.pdf",
                vec![Answer::ok("application/pdf", &pdf(41))],
            ),
            (
                "/file/s43/contract.pdf",
                vec![Answer::ok("application/pdf", &pdf(43))],
            ),
        ],
    )
    .await;
    let files_host = files.base_url.replace("127.0.0.1", "localhost");
    let listing = |id: u64| {
        let mut listing = json("docuseal", "getSubmissionDocuments.json");
        listing["id"] = id.into();
        listing["documents"][0]["name"] = "contract".into();
        listing["documents"][0]["url"] =
            format!("{files_host}/file/s{id}/contract.pdf?expires=1&signature=secret-part").into();
        answer(&listing)
    };
    let mut list = json("docuseal", "getSubmissions.json");
    list["data"] = serde_json::json!([submission(43, "completed"), submission(41, "completed")]);
    list["pagination"] = serde_json::json!({"count": 2, "next": 41, "prev": 43});
    let api = Simulator::start(
        "/api",
        vec![
            (
                "/submissions/41",
                vec![answer(&submission(41, "completed"))],
            ),
            ("/submissions/41/documents", vec![listing(41)]),
            // Claimed completed; the API says declined.
            ("/submissions/42", vec![answer(&submission(42, "declined"))]),
            (
                "/submissions/43",
                vec![answer(&submission(43, "completed"))],
            ),
            ("/submissions/43/documents", vec![listing(43)]),
            ("/submissions", vec![answer(&list)]),
        ],
    )
    .await;
    let stack = Stack::start_with(Options {
        apis: vec![("ds", api.base_url.clone())],
        ..Options::default()
    })
    .await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for id in [41, 42] {
        let body = serde_json::to_vec(&serde_json::json!({
            "event_type": "submission.completed",
            "timestamp": chrono::Utc::now().to_rfc3339(),
            "data": submission(id, "completed"),
        }))
        .unwrap();
        let signature = docuseal::sign(DS_SECRET.as_bytes(), now, &body);
        assert_eq!(
            stack
                .post_to("ds", &body, &[(docuseal::SIGNATURE_HEADER, &signature)])
                .await,
            200
        );
    }
    stack.wait_for_events(1).await;
    assert_eq!(stack.signed_document("41").await, pdf(41));
    let (_, view) = stack.get_json("/signing/activity/41?source=ds").await;
    assert_eq!(view[0]["verified"], "signature+api");
    let downloaded = view[0]["documents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["fetchedFrom"].is_string())
        .unwrap()
        .clone();
    assert_eq!(
        downloaded["fetchedFrom"],
        format!("{files_host}/file/s41/contract.pdf"),
        "the provenance without the link's signature"
    );
    for request in api.seen() {
        assert_eq!(
            request.headers.get("x-auth-token").map(String::as_str),
            Some(DS_API_KEY)
        );
    }
    for request in files.seen() {
        assert_eq!(
            request.headers.get("x-auth-token"),
            None,
            "no key to the file host"
        );
        assert_eq!(request.authorization, None);
    }

    let parked = [stack.parked_one().await];
    assert_eq!(header(&parked[0], "x-dead-kind"), Some("contradicted"));
    assert_eq!(
        header(&parked[0], "x-dead-reason"),
        Some("the webhook claims completed for 42; docuseal's API reports canceled")
    );

    stack.reconciles("ds", 1, 2).await;
    assert_eq!(stack.signed_document("43").await, pdf(43));
    assert_eq!(stack.queue_len(stack.topology.dead_queue()).await, 0);
}
