//! Issue 16: reconciliation with a provider's API (a simulator serving Taktikal's documented
//! ActivityLog): what the webhooks missed becomes events, once.

use std::time::Duration;

use crate::helpers::{Options, Stack, TK_API_CREDENTIALS, taktikal, wait_until};
use crate::simulator::{Answer, Simulator};

fn activity_log() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/tests/fixtures/taktikal/activity_log_api.json"
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_whose_completion_webhook_never_came_is_completed_by_reconciliation_once() {
    // The API is down for the first runs, then answers with the documented example; its user
    // activity lists nothing else.
    let api = Simulator::start(
        "/api",
        vec![
            (
                "/signing/activity/spa2f3e",
                vec![
                    Answer::status(503),
                    Answer::status(502),
                    Answer::ok("application/json", &activity_log()),
                ],
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
    // Only the process's creation came as a webhook (event type 11: Created).
    let (_, created) = taktikal("spa2f3e", 11);
    assert_eq!(stack.post(&created).await, 200);
    stack.wait_for_events(1).await;

    wait_until(
        "reconciliation completes the process",
        Duration::from_secs(60),
        || async {
            stack
                .count("SELECT count(*) FROM signing_processes WHERE process_key = 'spa2f3e' AND status = 'completed'")
                .await
                == 1
        },
    )
    .await;
    let (status, view) = stack
        .get_json("/signing/activity/spa2f3e?source=acme")
        .await;
    assert_eq!(status, 200);
    let statuses: Vec<&str> = view[0]["activityLog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    for expected in [
        "SignupSent",
        "Started",
        "SMS:DELIVERED",
        "SigneeSigned",
        "Completed",
        "Confirmation:delivered",
    ] {
        assert!(statuses.contains(&expected), "{expected} in {statuses:?}");
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == "Created").count(),
        1,
        "the webhook's Created is not recorded twice: {statuses:?}"
    );
    let origin: serde_json::Value = sqlx::query_scalar(
        "SELECT headers FROM webhook_events WHERE event_id LIKE 'reconcile:spa2f3e:%'",
    )
    .fetch_one(&stack.db)
    .await
    .unwrap();
    assert_eq!(origin["x-origin"], "reconciliation");
    assert_eq!(origin["x-provider"], "taktikal");

    // Later runs find nothing more: one reconciliation event, whatever the number of runs.
    let asked = api.seen().len();
    wait_until("two more runs", Duration::from_secs(30), || async {
        api.seen().len() >= asked + 4
    })
    .await;
    assert_eq!(
        stack
            .count("SELECT count(*) FROM webhook_events WHERE event_id LIKE 'reconcile:%'")
            .await,
        1
    );
    assert_eq!(stack.count("SELECT count(*) FROM webhook_events").await, 2);
    assert_eq!(stack.queue_len(stack.topology.dead_queue()).await, 0);
    for request in api.seen() {
        assert_eq!(request.authorization.as_deref(), Some(TK_API_CREDENTIALS));
    }
    assert!(
        api.seen()
            .iter()
            .any(|r| r.path.starts_with("/api/signing/activity/user/?from=")),
        "the discovery asks by date range"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_never_seen_is_discovered_through_the_user_activity() {
    let api = Simulator::start(
        "/api",
        vec![(
            "/signing/activity/user/",
            vec![Answer::ok("application/json", &activity_log())],
        )],
    )
    .await;
    let stack = Stack::start_with(Options {
        taktikal_api: Some(api.base_url.clone()),
        ..Options::default()
    })
    .await;
    wait_until("the unseen process is recorded", Duration::from_secs(60), || async {
        stack
            .count("SELECT count(*) FROM signing_processes WHERE process_key = 'spa2f3e' AND status = 'completed'")
            .await
            == 1
    })
    .await;
    let signed: bool = sqlx::query_scalar(
        "SELECT signed FROM signees WHERE process_key = 'spa2f3e' AND signee_key = 'si4265c7a3263e'",
    )
    .fetch_one(&stack.db)
    .await
    .unwrap();
    assert!(signed);
    assert_eq!(
        stack
            .count("SELECT count(*) FROM activity WHERE process_key = 'spa2f3e'")
            .await,
        9
    );
}
