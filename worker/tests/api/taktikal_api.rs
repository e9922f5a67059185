//! Issue 30: Taktikal's ActivityLog as the second witness — a final state a webhook claims is
//! recorded only once the process's log (`GET /signing/activity/{ProcessKey}`, the documented
//! example of `providers/tests/fixtures/taktikal/activity_log_api.json`) records it; a claim the
//! log contradicts is parked.

use crate::helpers::{Options, Stack, TK_API_CREDENTIALS, header, taktikal};
use crate::reconcile::activity_log;
use crate::simulator::{Answer, Simulator};

/// The documented example's log for `process_key`, with `statuses` in place of its signing and
/// completion.
fn log_with(process_key: &str, statuses: &[&str]) -> Vec<u8> {
    let mut answer: serde_json::Value = serde_json::from_slice(&activity_log()).unwrap();
    answer[0]["processKey"] = process_key.into();
    let log = answer[0]["activityLog"].as_array_mut().unwrap();
    log.retain(|e| !["SigneeSigned", "Completed"].contains(&e["status"].as_str().unwrap()));
    for status in statuses {
        log.push(
            serde_json::json!({"processKey": process_key, "status": status,
            "description": status, "createdAt": "2019-11-08T11:06:01.6070000Z",
            "createdBy": "Taktikal.Core"}),
        );
    }
    for entry in log.iter_mut() {
        entry["processKey"] = process_key.into();
    }
    serde_json::to_vec(&answer).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn taktikal_final_states_are_confirmed_with_the_activity_log_and_a_contradicted_one_parked() {
    let api = Simulator::start(
        "/api",
        vec![
            (
                "/signing/activity/spa2f3e",
                vec![Answer::ok("application/json", &activity_log())],
            ),
            // A captured "all signed" for a process its owner has since canceled.
            (
                "/signing/activity/sp-canceled",
                vec![Answer::ok(
                    "application/json",
                    &log_with("sp-canceled", &["Canceled"]),
                )],
            ),
            (
                "/signing/activity/user/",
                vec![Answer::ok("application/json", b"[]")],
            ),
        ],
    )
    .await;
    let stack = Stack::start_with(Options {
        taktikal_api: Some(api.base_url.clone()),
        ..Options::default()
    })
    .await;
    let (_, completed) = taktikal("spa2f3e", 10);
    assert_eq!(stack.post(&completed).await, 200);
    let (_, all_signed) = taktikal("sp-canceled", 2);
    assert_eq!(stack.post(&all_signed).await, 200);

    let parked = stack.parked_one().await;
    assert_eq!(header(&parked, "x-dead-kind"), Some("contradicted"));
    assert_eq!(
        header(&parked, "x-dead-reason"),
        Some("the webhook claims all_signed for sp-canceled; taktikal's API reports canceled")
    );
    stack.wait_for_events(1).await;
    let (_, view) = stack
        .get_json("/signing/activity/spa2f3e?source=acme")
        .await;
    assert_eq!(view[0]["status"], "completed");
    assert_eq!(view[0]["verified"], "signature+api");
    assert!(
        api.seen()
            .iter()
            .any(|s| s.path == "/api/signing/activity/spa2f3e"
                && s.authorization.as_deref() == Some(TK_API_CREDENTIALS))
    );
    assert_eq!(
        stack
            .count("SELECT count(*) FROM signing_processes WHERE process_key = 'sp-canceled'")
            .await,
        0,
        "never recorded"
    );
}
