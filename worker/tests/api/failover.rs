//! A worker whose `amqp.url` names several nodes goes on consuming from another when its node
//! goes: everything recorded exactly once, without a restart.

use std::time::Duration;

use countersign_testkit::{TcpProxy, amqp_url, socket_address};

use crate::helpers::{Options, Stack, taktikal, wait_until};

/// Connections the worker opened through the proxy on `port`, from its metrics.
async fn connections_via(stack: &Stack, port: u16) -> u64 {
    stack
        .metrics_text()
        .await
        .lines()
        .find(|l| {
            l.starts_with("countersign_worker_broker_connections_total")
                && l.contains(&format!("node=\"127.0.0.1:{port}\""))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_fails_over_to_another_node_and_records_everything_once() {
    let broker = socket_address(&amqp_url());
    let a = TcpProxy::reserve(broker).await;
    let b = TcpProxy::reserve(broker).await;
    a.start();
    b.start();
    let stack = Stack::start_with(Options {
        worker_amqp_url: Some(format!(
            "amqp://guest:guest@127.0.0.1:{},127.0.0.1:{}/%2f",
            a.port(),
            b.port()
        )),
        ..Options::default()
    })
    .await;
    let (used, other) = if connections_via(&stack, a.port()).await > 0 {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert_eq!(connections_via(&stack, used.port()).await, 1);

    for i in 0..5 {
        let (_, body) = taktikal(&format!("sp-failover-{i}"), 2);
        assert_eq!(stack.post(&body).await, 200);
    }
    stack.wait_for_events(5).await;

    used.stop().await;
    for i in 5..10 {
        let (_, body) = taktikal(&format!("sp-failover-{i}"), 2);
        assert_eq!(stack.post(&body).await, 200);
    }
    wait_until(
        "consuming through the other node",
        Duration::from_secs(30),
        || async { connections_via(&stack, other.port()).await == 1 },
    )
    .await;
    stack.wait_for_events(10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stack.count("SELECT count(*) FROM webhook_events").await, 10);
    assert_eq!(
        stack
            .count("SELECT count(DISTINCT process_key) FROM signing_processes")
            .await,
        10,
        "each event recorded once"
    );
}
