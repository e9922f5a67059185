//! Failures: the database away, a message that can never be parsed.

use std::time::Duration;

use countersign_testkit::{TcpProxy, database_url, socket_address, via_port};

use crate::helpers::{Options, Stack, TestDatabase, header, taktikal, wait_until};

#[tokio::test(flavor = "multi_thread")]
async fn database_outage_within_the_retry_budget_loses_nothing() {
    let database = TestDatabase::create().await;
    let proxy = TcpProxy::reserve(socket_address(&database_url())).await;
    proxy.start();
    let stack = Stack::start_with(Options {
        retry_delays: r#"["1s", "2s", "4s", "8s"]"#,
        worker_database_url: Some(via_port(&database.url, proxy.port())),
        ..Options::default()
    })
    .await;
    // The worker's database is `database`, reached through the proxy; the stack's own database
    // is unused by the worker here, so read through `database` directly.
    let db = sqlx::PgPool::connect(&database.url).await.unwrap();

    proxy.stop().await;
    for i in 0..5 {
        let (_, body) = taktikal(&format!("sp-outage-{i}"), 2);
        assert_eq!(
            stack.post(&body).await,
            200,
            "the ingester does not need the database"
        );
    }
    let metrics = || stack.metrics_text();
    wait_until(
        "messages are being retried",
        Duration::from_secs(30),
        || async {
            metrics()
                .await
                .lines()
                .any(|l| l.starts_with("countersign_worker_retried_total ") && !l.ends_with(" 0"))
        },
    )
    .await;
    let (status, ready) = stack.get_json("/readyz").await;
    assert_eq!(
        (status, &ready["database"]),
        (503, &serde_json::json!(false)),
        "readyz says what is missing"
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.start();
    wait_until("all five persisted", Duration::from_secs(60), || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM webhook_events")
            .fetch_one(&db)
            .await
            .unwrap()
            == 5
    })
    .await;
    assert_eq!(
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM signing_processes WHERE status = 'all_signed'"
        )
        .fetch_one(&db)
        .await
        .unwrap(),
        5
    );
    assert_eq!(
        stack.queue_len(stack.topology.dead_queue()).await,
        0,
        "nothing dead-lettered"
    );
    assert_eq!(stack.queue_len(stack.topology.persist_queue()).await, 0);
    db.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_the_last_retry_a_message_is_parked_not_lost() {
    let proxy = TcpProxy::reserve(socket_address(&database_url())).await;
    let database = TestDatabase::create().await;
    proxy.start();
    let stack = Stack::start_with(Options {
        retry_delays: r#"["500ms", "1s"]"#,
        worker_database_url: Some(via_port(&database.url, proxy.port())),
        ..Options::default()
    })
    .await;
    proxy.stop().await;

    let (id, body) = taktikal("sp-never", 2);
    assert_eq!(stack.post(&body).await, 200);
    wait_until("the message is parked", Duration::from_secs(60), || async {
        stack.queue_len(stack.topology.dead_queue()).await == 1
    })
    .await;
    let parked = stack.drain(stack.topology.dead_queue()).await;
    let message = &parked[0];
    assert_eq!(message.delivery.data, body, "body unchanged");
    assert_eq!(
        message
            .delivery
            .properties
            .message_id()
            .as_ref()
            .unwrap()
            .as_str(),
        id
    );
    assert_eq!(header(message, "x-dead-kind"), Some("retries_exhausted"));
    assert!(
        header(message, "x-dead-reason")
            .unwrap()
            .contains("gave up after 2 retries")
    );
    assert_eq!(
        header(message, "x-source"),
        Some("acme"),
        "the contract's headers are kept"
    );
    let attempts = message
        .delivery
        .properties
        .headers()
        .as_ref()
        .unwrap()
        .inner()
        .get("x-attempt")
        .cloned();
    assert_eq!(attempts, Some(lapin::types::AMQPValue::LongLongInt(2)));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unparseable_message_is_parked_with_its_reason_and_nothing_is_written() {
    let stack = Stack::start().await;
    stack
        .publish_raw(
            b"{\"EventData\": \"not an object\"}",
            "bad-1",
            &[("x-source", "acme"), ("x-provider", "taktikal")],
        )
        .await;
    stack
        .publish_raw(b"{}", "bad-2", &[("x-provider", "taktikal")])
        .await;
    wait_until("both are parked", Duration::from_secs(30), || async {
        stack.queue_len(stack.topology.dead_queue()).await == 2
    })
    .await;
    let mut parked = stack.drain(stack.topology.dead_queue()).await;
    parked.sort_by_key(|m| {
        m.delivery
            .properties
            .message_id()
            .as_ref()
            .unwrap()
            .to_string()
    });
    assert_eq!(header(&parked[0], "x-dead-kind"), Some("unparseable"));
    assert!(
        header(&parked[0], "x-dead-reason")
            .unwrap()
            .starts_with("not a Taktikal webhook")
    );
    assert_eq!(header(&parked[1], "x-dead-kind"), Some("missing_headers"));
    assert_eq!(
        header(&parked[1], "x-dead-reason"),
        Some("no x-source header")
    );
    for table in [
        "webhook_events",
        "signature_uses",
        "signing_processes",
        "signees",
        "activity",
        "documents",
    ] {
        assert_eq!(
            stack.count(&format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table} is empty"
        );
    }
}

/// A message that arrives with headers near the frame's size (from before the ingester bounded
/// them, or published by something else) would, with the worker's parking headers on top, make
/// the broker close the channel at every redelivery. The worker drops its oversized forwarded
/// headers (named in `x-dropped-headers`) and parks it; the reason itself is at most 1 KiB.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_too_large_to_forward_with_its_reason_is_parked_without_its_oversized_headers() {
    let stack = Stack::start().await;
    // The message fits a 32 KiB frame; with the parking headers on top it would not.
    let big = "A".repeat(32 * 1024 - 250);
    stack
        .publish_raw(
            b"{\"EventData\": \"not an object\"}",
            "bad-big",
            &[
                ("x-source", "acme"),
                ("x-provider", "taktikal"),
                ("x-pandadoc-webhook-event-id", &big),
            ],
        )
        .await;
    wait_until("it is parked", Duration::from_secs(30), || async {
        stack.queue_len(stack.topology.dead_queue()).await == 1
    })
    .await;
    let parked = stack.drain(stack.topology.dead_queue()).await;
    assert_eq!(header(&parked[0], "x-dead-kind"), Some("unparseable"));
    assert_eq!(
        header(&parked[0], "x-dropped-headers"),
        Some("x-pandadoc-webhook-event-id")
    );
    assert!(header(&parked[0], "x-pandadoc-webhook-event-id").is_none());
    assert!(header(&parked[0], "x-dead-reason").unwrap().len() <= 1024 + 3);
    assert_eq!(stack.queue_len(stack.topology.persist_queue()).await, 0);
}
