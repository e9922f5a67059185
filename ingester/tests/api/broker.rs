//! With the spool off (`ingester.spool.enabled = false`): when the broker is away, refuses, or
//! cannot route, 503 with Retry-After, never 200. With the spool on, see `spool.rs`.

use std::net::SocketAddr;

use lapin::types::{FieldTable, ShortString};

use crate::helpers::{Options, SpoolSetting, TcpProxy, TestApp, signed_event};

fn broker_address() -> SocketAddr {
    countersign_testkit::socket_address(&crate::helpers::amqp_url())
}

async fn assert_unavailable(app: &TestApp, why: &str) {
    let (_, body) = signed_event();
    let response = app.post("acme", body).await;
    assert_eq!(response.status(), 503, "{why}");
    assert_eq!(response.headers()["retry-after"], "7", "{why}");
}

async fn without_spool() -> TestApp {
    let app = TestApp::spawn_with(Options {
        spool: SpoolSetting::Off,
        ..Options::default()
    })
    .await;
    app.wait_ready(true).await;
    app
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_down_then_back_without_a_restart() {
    let proxy = TcpProxy::reserve(broker_address()).await;
    let app = TestApp::spawn_with(Options {
        amqp_url: format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port()),
        spool: SpoolSetting::Off,
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
async fn an_unroutable_publish_is_503_not_200_until_the_binding_is_declared_again() {
    let app = without_spool().await;
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

    // The binding was deleted under a live connection (as deleting its Kubernetes resource
    // does): the unroutable publish makes the ingester declare the topology again (5 s after
    // its last declaration at most), and webhooks are queued again without a restart.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, body) = signed_event();
        let status = app.post("acme", body).await.status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(
            std::time::Instant::now() < deadline,
            "the binding was not declared again"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(app.persisted_count().await, 1, "exactly the 200 is queued");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nack_is_503_not_200() {
    let app = without_spool().await;
    app.make_persist_queue_hold_one().await;

    let (_, body) = signed_event();
    assert_eq!(app.post("acme", body).await.status(), 200, "room for one");
    assert_unavailable(&app, "queue full: the broker nacks").await;
    assert_eq!(app.persisted_count().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_confirm_within_the_timeout_is_503() {
    let proxy = TcpProxy::reserve(broker_address()).await;
    proxy.start();
    let app = TestApp::spawn_with(Options {
        amqp_url: format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port()),
        confirm_timeout: "1s",
        spool: SpoolSetting::Off,
        ..Options::default()
    })
    .await;
    app.wait_ready(true).await;

    // A partition: the connection stays open, nothing gets through, no confirm comes back.
    proxy.freeze(true);
    let started = std::time::Instant::now();
    assert_unavailable(&app, "no confirm within confirm_timeout").await;
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "waited for the confirm first"
    );

    proxy.freeze(false);
    let (id, body) = signed_event();
    assert_eq!(
        app.post("acme", body).await.status(),
        200,
        "the same connection serves again"
    );
    let ids: Vec<String> = app.drain_persisted_ids().await;
    // The timed-out publish may arrive after all: a 503 only means "not known to be safe", and
    // the provider's retry is de-duplicated downstream.
    assert!(ids.contains(&id), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_ask_for_small_frames_unless_the_url_says_otherwise() {
    // lapin holds 32 frames of buffer each way per connection: 128 KiB frames were 8 MiB of idle
    // memory.
    let prefix = countersign_testkit::unique_prefix();
    let topology = countersign::topology::Topology::new(&prefix, &[]);
    let url = crate::helpers::amqp_url();
    let (connection, channel) = countersign::amqp::connect(&url, "frames-test", &topology)
        .await
        .unwrap();
    assert_eq!(
        connection.configuration().frame_max(),
        countersign::amqp::FRAME_MAX
    );
    drop(channel);
    let _ = connection.close(200, "done".into()).await;

    let separator = if url.contains('?') { '&' } else { '?' };
    let (connection, channel) = countersign::amqp::connect(
        &format!("{url}{separator}frame_max=65536"),
        "frames-test",
        &topology,
    )
    .await
    .unwrap();
    assert_eq!(connection.configuration().frame_max(), 65536);
    drop(channel);
    let _ = connection.close(200, "done".into()).await;
    countersign_testkit::delete_topology(topology);
}

/// `header_frame_len` is the frame the broker receives: a message whose header frame is exactly
/// the negotiated `frame_max` is confirmed, a few bytes more and RabbitMQ closes the connection
/// (`FRAME_ERROR`) — which is why the ingester never sends one (431) and the spool quarantines
/// one it holds.
#[tokio::test(flavor = "multi_thread")]
async fn the_header_frame_bound_keeps_inside_the_brokers() {
    use lapin::types::{AMQPValue, FieldTable, LongString};
    let prefix = countersign_testkit::unique_prefix();
    let topology = countersign::topology::Topology::new(&prefix, &[]);
    let url = crate::helpers::amqp_url();
    let frame_max = countersign::amqp::FRAME_MAX;
    // Properties whose header frame is `len` bytes: one header padded to fit.
    let properties_of = |len: usize| {
        let with = |pad: usize| {
            let mut headers = FieldTable::default();
            headers.insert(
                "x-pad".into(),
                AMQPValue::LongString(LongString::from("p".repeat(pad))),
            );
            lapin::BasicProperties::default()
                .with_delivery_mode(2)
                .with_headers(headers)
        };
        let overhead = countersign::amqp::header_frame_len(&with(0));
        let properties = with(len - overhead);
        assert_eq!(countersign::amqp::header_frame_len(&properties), len);
        properties
    };
    // RabbitMQ 3.10 takes a frame up to `frame_max` + 8 (it bounds the payload, not the whole
    // frame; measured: 32,776 confirmed, 32,777 closed); the check keeps to AMQP's bound, the
    // whole frame, 8 bytes inside the broker's.
    for (len, accepted) in [(frame_max as usize, true), (frame_max as usize + 9, false)] {
        let (connection, channel) = countersign::amqp::connect(&url, "frame-bound", &topology)
            .await
            .unwrap();
        let properties = properties_of(len);
        assert_eq!(
            countersign::amqp::check_header_frame(&properties, frame_max).is_ok(),
            accepted
        );
        let published = countersign::amqp::publish_confirmed(
            &channel,
            topology.exchange().into(),
            "t.s.e".into(),
            b"{}",
            properties,
            std::time::Duration::from_secs(10),
        )
        .await;
        assert_eq!(
            published.is_ok(),
            accepted,
            "{len}-byte header frame: {published:?}"
        );
        if !accepted {
            for _ in 0..50 {
                if !connection.status().connected() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            assert!(
                !connection.status().connected(),
                "the broker closed the connection"
            );
        }
        let _ = connection.close(200, "done".into()).await;
    }
    countersign_testkit::delete_topology(topology);
}

/// The node the ingester's current connection goes through, from its metrics.
async fn connected_node(app: &TestApp, nodes: &[&TcpProxy]) -> Option<u16> {
    let metrics = app.metrics_text().await;
    let count = |port: u16| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("countersign_ingester_broker_connections_total")
                    && l.contains(&format!("node=\"127.0.0.1:{port}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let counts: Vec<(u16, u64)> = nodes.iter().map(|n| (n.port(), count(n.port()))).collect();
    counts.iter().find(|(_, c)| *c > 0).map(|(p, _)| *p)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_url_with_several_nodes_fails_over_to_another_when_its_node_goes() {
    // Two "nodes" in front of the one local broker: each a proxy the test can cut.
    let a = TcpProxy::reserve(broker_address()).await;
    let b = TcpProxy::reserve(broker_address()).await;
    a.start();
    b.start();
    let app = TestApp::spawn_with(Options {
        amqp_url: format!(
            "amqp://guest:guest@127.0.0.1:{},127.0.0.1:{}/%2f",
            a.port(),
            b.port()
        ),
        spool: SpoolSetting::Off,
        ..Options::default()
    })
    .await;
    app.wait_ready(true).await;
    let first = connected_node(&app, &[&a, &b])
        .await
        .expect("a connection counted by node");
    let (used, other) = if first == a.port() {
        (&a, &b)
    } else {
        (&b, &a)
    };

    let mut ok = 0;
    for _ in 0..5 {
        let (_, body) = signed_event();
        assert_eq!(app.post("acme", body).await.status(), 200);
        ok += 1;
    }

    // Its node goes; the other is there. Every request meanwhile is a 200 or a 503, and every
    // 200 is in the queue: nothing is answered 200 on a connection that died unconfirmed.
    used.stop().await;
    let mut unavailable = 0;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, body) = signed_event();
        match app.post("acme", body).await.status().as_u16() {
            200 => ok += 1,
            503 => unavailable += 1,
            other => panic!("status {other}"),
        }
        let metrics = app.metrics_text().await;
        let failed_over = metrics.lines().any(|l| {
            l.starts_with("countersign_ingester_broker_connections_total")
                && l.contains(&format!("node=\"127.0.0.1:{}\"", other.port()))
        });
        if failed_over && app.ready().await {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failover to the other node within 20 s"
        );
    }
    for _ in 0..5 {
        let (_, body) = signed_event();
        assert_eq!(
            app.post("acme", body).await.status(),
            200,
            "served through the other node, without a restart"
        );
        ok += 1;
    }
    assert_eq!(
        app.persisted_count().await,
        ok,
        "every 200 queued once ({unavailable} × 503)"
    );
}
