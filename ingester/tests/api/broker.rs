//! When the broker is away, refuses, or cannot route: 503 with Retry-After, never 200.

use std::net::SocketAddr;

use lapin::types::{FieldTable, ShortString};

use crate::helpers::{Options, TcpProxy, TestApp, signed_event};

fn broker_address() -> SocketAddr {
    let url = crate::helpers::amqp_url();
    let host_port = url
        .split('@')
        .next_back()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let host_port = host_port.replace("localhost", "127.0.0.1");
    host_port.parse().expect("AMQP_URL names host:port")
}

async fn assert_unavailable(app: &TestApp, why: &str) {
    let (_, body) = signed_event();
    let response = app.post("acme", body).await;
    assert_eq!(response.status(), 503, "{why}");
    assert_eq!(response.headers()["retry-after"], "7", "{why}");
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_down_then_back_without_a_restart() {
    let proxy = TcpProxy::reserve(broker_address()).await;
    let app = TestApp::spawn_with(Options {
        amqp_url: format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port()),
        ..Options::default()
    })
    .await;

    // Started while the broker is unreachable: alive, not ready, 503.
    let health = app
        .http
        .get(format!("{}/healthz", app.admin_address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(!app.ready().await);
    assert_unavailable(&app, "broker never reached").await;

    proxy.start();
    app.wait_ready(true).await;
    let (_, body) = signed_event();
    assert_eq!(app.post("acme", body).await.status(), 200);
    assert_eq!(app.persisted_count().await, 1);

    // The broker goes away under a running ingester.
    proxy.stop().await;
    app.wait_ready(false).await;
    for _ in 0..3 {
        assert_unavailable(&app, "broker lost").await;
    }

    proxy.start();
    app.wait_ready(true).await;
    let (_, body) = signed_event();
    assert_eq!(
        app.post("acme", body).await.status(),
        200,
        "serves again without a restart"
    );
    assert_eq!(
        app.persisted_count().await,
        2,
        "exactly the two 200s are queued"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unroutable_publish_is_503_not_200() {
    let app = TestApp::spawn().await;
    app.channel
        .queue_unbind(
            ShortString::from(app.topology.persist_queue()),
            ShortString::from(app.topology.exchange()),
            "#".into(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_unavailable(&app, "mandatory publish returned: no queue bound").await;
    assert_eq!(app.persisted_count().await, 0);
}
