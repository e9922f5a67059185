//! Issue 16: reconciliation with a provider's API (a simulator serving Taktikal's documented
//! ActivityLog): what the webhooks missed becomes events, once.

use std::time::Duration;

use crate::helpers::{Options, Stack, TK_API_CREDENTIALS, UniversignStack, taktikal, wait_until};
use crate::simulator::{Answer, Simulator};

pub fn activity_log() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../providers/tests/fixtures/taktikal/activity_log_api.json"
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

/// A Taktikal API whose user activity lists the documented ActivityLog (a process this
/// deployment has never seen).
async fn user_activity_api() -> Simulator {
    Simulator::start(
        "/api",
        vec![
            (
                "/signing/activity/user/",
                vec![Answer::ok("application/json", &activity_log())],
            ),
            // The discovered completion is confirmed with the process's own log.
            (
                "/signing/activity/spa2f3e",
                vec![Answer::ok("application/json", &activity_log())],
            ),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_never_seen_is_discovered_through_the_user_activity() {
    let api = user_activity_api().await;
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

#[tokio::test(flavor = "multi_thread")]
async fn a_legalesign_document_signed_without_its_callback_is_found_and_its_pdf_downloaded() {
    use crate::helpers::UK_TOKEN;

    let pdf = b"%PDF-1.7 signed, callback lost".to_vec();
    let listing = br#"{"meta":{"limit":100,"next":null,"offset":0,"previous":null,"total_count":2},
        "objects":[{"uuid":"5b6f0c8e-0d1a-4c3e-9a53-2f1e6b7a8c90","name":"Supply agreement","group":"/api/v1/group/g/",
                    "resource_uri":"/api/v1/document/5b6f0c8e-0d1a-4c3e-9a53-2f1e6b7a8c90/","status":30,"tag":""},
                   {"uuid":"doc-with-callback","name":"NDA","group":"/api/v1/group/g/",
                    "resource_uri":"/api/v1/document/doc-with-callback/","status":30}]}"#;
    let (lost, lost_stated) =
        crate::downloads::legalesign_document("5b6f0c8e-0d1a-4c3e-9a53-2f1e6b7a8c90", &pdf);
    let (arrived, arrived_stated) =
        crate::downloads::legalesign_document("doc-with-callback", b"%PDF-1.7 nda");
    let api = Simulator::start(
        "/api/v1",
        vec![
            ("/document/", vec![Answer::ok("application/json", listing)]),
            (
                "/pdf/5b6f0c8e-0d1a-4c3e-9a53-2f1e6b7a8c90/",
                vec![Answer::ok("application/pdf", &pdf)],
            ),
            (&lost, lost_stated),
            (
                "/pdf/doc-with-callback/",
                vec![Answer::ok("application/pdf", b"%PDF-1.7 nda")],
            ),
            (&arrived, arrived_stated),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (_, certificate) = countersign_testkit::self_signed_certificate(dir.path());
    let stack = Stack::start_with(Options {
        legalesign_certificate: Some(certificate),
        legalesign_api: Some(api.base_url.clone()),
        legalesign_reconcile: true,
        ..Options::default()
    })
    .await;
    // One document's signed callback arrived; the other's never did.
    let callback = b"resource_uri=%2Fapi%2Fv1%2Fdocument%2Fdoc-with-callback%2F&group=%2Fapi%2Fv1%2Fgroup%2Fg%2F&name=NDA&uuid=doc-with-callback";
    assert_eq!(
        stack
            .post_to(
                &format!("uk-events/{UK_TOKEN}"),
                callback,
                &[("content-type", "application/x-www-form-urlencoded")]
            )
            .await,
        200
    );
    wait_until("the lost signing is recorded with its PDF", Duration::from_secs(60), || async {
        stack
            .count("SELECT count(*) FROM documents WHERE process_key = '5b6f0c8e-0d1a-4c3e-9a53-2f1e6b7a8c90' AND kind = 'signed' AND sha256 IS NOT NULL")
            .await
            == 1
    })
    .await;
    assert_eq!(
        stack
            .signed_document("5b6f0c8e-0d1a-4c3e-9a53-2f1e6b7a8c90")
            .await,
        pdf
    );
    let (_, view) = stack
        .get_json("/signing/activity/5b6f0c8e-0d1a-4c3e-9a53-2f1e6b7a8c90?source=uk-events")
        .await;
    assert_eq!(view[0]["status"], "completed");
    // Later runs add nothing, and the document whose callback came is left alone.
    let asked = api.seen().len();
    wait_until("two more runs", Duration::from_secs(30), || async {
        api.seen()
            .iter()
            .skip(asked)
            .filter(|s| s.path.starts_with("/api/v1/document/?"))
            .count()
            >= 2
    })
    .await;
    assert_eq!(
        stack
            .count("SELECT count(*) FROM webhook_events WHERE event_id LIKE 'reconcile:%'")
            .await,
        1
    );
    assert_eq!(stack.count("SELECT count(*) FROM webhook_events").await, 2);
    let discovery = api
        .seen()
        .into_iter()
        .find(|s| s.path.starts_with("/api/v1/document/?"))
        .unwrap();
    assert!(
        discovery.path.contains("group=%2Fapi%2Fv1%2Fgroup%2Fg%2F")
            && discovery.path.contains("status=30"),
        "{}",
        discovery.path
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_universign_transaction_completed_without_its_webhook_is_completed_with_its_documents() {
    let pdf = b"%PDF-1.7 deal, signed".to_vec();
    let transaction = br#"{"object":"transaction","id":"tx_R1","state":"completed","documents":[{"object":"document","id":"doc_R","name":"Deal"}]}"#;
    let api = Simulator::start(
        "",
        vec![
            (
                "/v1/transactions/tx_R1",
                vec![
                    Answer::status(503),
                    Answer::ok("application/json", transaction),
                ],
            ),
            (
                "/v1/transactions/tx_R1/archive/documents/doc_R/download",
                vec![Answer::ok("application/pdf", &pdf)],
            ),
        ],
    )
    .await;
    let universign = UniversignStack::start(&api.base_url, true).await;
    let stack = &universign.stack;
    // Only the start came as a webhook.
    assert_eq!(
        universign
            .post_lifecycle("evt_r1", "started", "tx_R1")
            .await,
        200
    );
    wait_until("the transaction is completed with its document", Duration::from_secs(60), || async {
        stack
            .count("SELECT count(*) FROM documents WHERE process_key = 'tx_R1' AND kind = 'signed' AND sha256 IS NOT NULL")
            .await
            == 1
    })
    .await;
    assert_eq!(stack.signed_document("tx_R1").await, pdf);
    let (_, view) = stack.get_json("/signing/activity/tx_R1?source=fr").await;
    assert_eq!(view[0]["status"], "completed");
    // Later runs: the transaction is final now, so nothing is asked and nothing published.
    let runs = || async {
        let text = stack.metrics_text().await;
        text.lines()
            .find(|l| {
                l.starts_with("countersign_worker_reconcile_runs_total")
                    && l.contains("source=\"fr\"")
                    && l.contains("outcome=\"done\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = runs().await;
    wait_until("two more runs", Duration::from_secs(30), || async {
        runs().await >= before + 2
    })
    .await;
    assert_eq!(
        stack
            .count("SELECT count(*) FROM webhook_events WHERE event_id LIKE 'reconcile:%'")
            .await,
        1,
        "found once"
    );
    assert_eq!(stack.queue_len(stack.topology.dead_queue()).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_another_replica_holds_is_skipped_then_reconciled_once_released() {
    use countersign_worker::reconcile::{RunReport, lock_key};

    let api = user_activity_api().await;
    // No worker of the stack's own: this test's reconciler is the only one.
    let stack = Stack::start_with(Options {
        taktikal_api: Some(api.base_url.clone()),
        start_worker: false,
        ..Options::default()
    })
    .await;
    let (reconciler, _) = stack.reconciler("acme");
    assert_eq!(reconciler.sources(), ["acme"]);

    // Another replica holds acme's lock: this one skips, asking nothing.
    let mut other = stack.db.acquire().await.unwrap();
    let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(lock_key("acme"))
        .fetch_one(&mut *other)
        .await
        .unwrap();
    assert!(held);
    assert_eq!(reconciler.run_once(0).await.unwrap(), RunReport::default());
    assert!(api.seen().is_empty(), "a skipped run asks nothing");

    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(lock_key("acme"))
        .execute(&mut *other)
        .await
        .unwrap();
    let report = reconciler.run_once(0).await.unwrap();
    assert_eq!(report, RunReport { ran: true, gaps: 1 });
    assert_eq!(
        stack.queue_len(stack.topology.persist_queue()).await,
        1,
        "published with its origin"
    );
}
