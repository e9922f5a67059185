//! The admin port: health, readiness, metrics.

use crate::helpers::{TestApp, signed_event};

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_by_source_and_outcome() {
    let mut app = TestApp::spawn().await;
    let (_, body) = signed_event();
    assert_eq!(app.post("acme", body).await.status(), 200);
    assert_eq!(app.post("acme", "{}").await.status(), 401);
    assert_eq!(app.post("ghost", "{}").await.status(), 404);

    assert_eq!(
        app.http
            .get(format!("{}/healthz", app.admin_address))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(app.ready().await);
    let metrics = app.metrics_text().await;
    for line in [
        r#"countersign_ingester_requests_total{outcome="accepted",source="acme"} 1"#,
        r#"countersign_ingester_requests_total{outcome="unsigned",source="acme"} 1"#,
        r#"countersign_ingester_requests_total{outcome="unknown_source",source="_unknown"} 1"#,
        "countersign_ingester_broker_connected 1",
        "countersign_ingester_confirm_duration_seconds_count 1",
        r#"countersign_ingester_request_duration_seconds_count{source="acme"} 2"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
    let webhook_port_metrics = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(
        webhook_port_metrics.status(),
        404,
        "metrics are not exposed on the webhook port"
    );

    app.stop().await.expect("graceful stop");
    assert!(
        app.http
            .get(format!("{}/healthz", app.admin_address))
            .send()
            .await
            .is_err(),
        "ports closed after stop"
    );
}

/// Issue 31 (alerts): a source's certificate end is a metric, for the expiry alert.
#[tokio::test(flavor = "multi_thread")]
async fn a_sources_certificate_end_is_exported() {
    let dir = tempfile::tempdir().unwrap();
    let (_, certificate) = countersign_testkit::self_signed_certificate(dir.path());
    let extra: &'static str = Box::leak(
        format!(
            "\n[[sources]]\nname = \"uk\"\nprovider = \"legalesign\"\ncertificate = \"{}\"\n",
            certificate.display()
        )
        .into_boxed_str(),
    );
    let app = TestApp::spawn_with(crate::helpers::Options {
        acme_extra: extra,
        ..crate::helpers::Options::default()
    })
    .await;
    let text = app.metrics_text().await;
    let value: i64 = text
        .lines()
        .find(|l| {
            l.starts_with("countersign_ingester_source_key_expiry_timestamp_seconds{source=\"uk\"}")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    // `openssl req -days 2`: valid for two days from now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now + 86_400..=now + 3 * 86_400).contains(&value),
        "{value} vs {now}"
    );
    assert!(
        !text.contains("countersign_ingester_source_key_expiry_timestamp_seconds{source=\"acme\"}"),
        "a shared secret states no end"
    );
}
