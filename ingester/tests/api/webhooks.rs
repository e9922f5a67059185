//! What a provider sees: status codes, and what reaches `<prefix>.persist`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use countersign::message;
use serde_json::json;

use crate::helpers::{
    BIG_LIMIT, KEY, OLD_KEY, TestApp, example_event, header, signed_event, signed_event_with,
};

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_event_is_published_byte_for_byte_with_the_contract_headers() {
    let app = TestApp::spawn().await;
    let (id, body) = signed_event();

    let response = app.post("acme", body.clone()).await;
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({"status": "accepted"})
    );

    let messages = app.drain_persisted().await;
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(
        message.delivery.data, body,
        "the body is the request body, byte for byte"
    );
    let properties = &message.delivery.properties;
    assert_eq!(*properties.delivery_mode(), Some(2));
    assert_eq!(
        properties.message_id().as_ref().map(|m| m.as_str()),
        Some(id.as_str())
    );
    assert_eq!(
        properties.content_type().as_ref().map(|c| c.as_str()),
        Some("application/json")
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let timestamp = properties.timestamp().expect("timestamp");
    assert!(
        now - 60 <= timestamp && timestamp <= now,
        "timestamp {timestamp} is the receive time"
    );
    assert_eq!(
        message.delivery.routing_key.as_str(),
        "taktikal.acme.AllSigned"
    );
    assert_eq!(message.delivery.exchange.as_str(), app.topology.exchange());

    assert_eq!(header(message, message::PROVIDER), Some("taktikal"));
    assert_eq!(header(message, message::SOURCE), Some("acme"));
    assert_eq!(header(message, message::EVENT_TYPE), Some("AllSigned"));
    assert_eq!(
        header(message, message::REQUEST_ID),
        Some(request_id.as_str())
    );
    assert_eq!(header(message, message::VERIFIED_KEY), Some("env:ACME_KEY"));
    let received_at =
        humantime::parse_rfc3339(header(message, message::RECEIVED_AT).expect("x-received-at"))
            .expect("RFC 3339");
    assert!(SystemTime::now().duration_since(received_at).unwrap() < Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_message_records_which_key_matched_and_keeps_the_callers_request_id() {
    let app = TestApp::spawn().await;
    let (_, body) = signed_event_with(OLD_KEY, SystemTime::now());
    let response = app
        .http
        .post(format!("{}/webhooks/acme", app.address))
        .header("x-request-id", "provider-trace-42")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "provider-trace-42");
    let messages = app.drain_persisted().await;
    assert_eq!(
        header(&messages[0], message::VERIFIED_KEY),
        Some("env:ACME_OLD_KEY")
    );
    assert_eq!(
        header(&messages[0], message::REQUEST_ID),
        Some("provider-trace-42")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_stale_and_unsigned_events_get_401_and_nothing_is_published() {
    let app = TestApp::spawn().await;

    let (_, forged) = signed_event_with("not-the-key", SystemTime::now());
    let (_, stale) = signed_event_with(KEY, SystemTime::now() - Duration::from_secs(25 * 3600));
    let (_, future) = signed_event_with(KEY, SystemTime::now() + Duration::from_secs(3600));
    let mut unsigned = example_event();
    unsigned.as_object_mut().unwrap().remove("EventSignature");
    let (_, good) = signed_event();
    let mut flipped: serde_json::Value = serde_json::from_slice(&good).unwrap();
    let signature = flipped["EventSignature"]["Signature"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut bytes = signature.into_bytes();
    bytes[3] ^= 0x01;
    flipped["EventSignature"]["Signature"] = String::from_utf8(bytes).unwrap().into();

    for (name, body) in [
        ("forged", forged),
        ("stale", stale),
        ("signed in the future", future),
        ("unsigned", serde_json::to_vec(&unsigned).unwrap()),
        (
            "one bit flipped in the signature",
            serde_json::to_vec(&flipped).unwrap(),
        ),
    ] {
        let response = app.post("acme", body).await;
        assert_eq!(response.status(), 401, "{name}");
        let error = response.json::<serde_json::Value>().await.unwrap();
        assert!(error["error"].is_string(), "{name}: JSON error body");
        assert!(!error.to_string().contains(KEY), "never echoes a secret");
    }
    assert_eq!(app.persisted_count().await, 0, "nothing published");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signature_that_comes_back_with_another_body_is_refused() {
    let app = TestApp::spawn().await;
    let (_, original) = signed_event();
    let mut other: serde_json::Value = serde_json::from_slice(&original).unwrap();
    other["EventData"]["EventType"] = 5.into();
    other["EventData"]["ProcessKey"] = "sp-someone-elses-process".into();
    let other = serde_json::to_vec(&other).unwrap();

    assert_eq!(app.post("acme", original.clone()).await.status(), 200);
    assert_eq!(
        app.post("acme", original.clone()).await.status(),
        200,
        "a provider retry: same signature, same body"
    );
    let response = app.post("acme", other).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["error"],
        "signature already used with another body"
    );

    let messages = app.drain_persisted().await;
    assert_eq!(messages.len(), 2);
    assert!(
        messages.iter().all(|m| m.delivery.data == original),
        "only the original body was published"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_source_is_404_and_a_body_that_is_not_json_is_406() {
    let app = TestApp::spawn().await;
    let (_, body) = signed_event();
    let response = app.post("nobody", body).await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({"error": "unknown source"})
    );

    let response = app.post("acme/extra", "{}").await;
    assert_eq!(response.status(), 404, "one path segment only");
    let response = app
        .http
        .get(format!("{}/webhooks/acme", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");

    // Any body that is not a JSON object — arrays included, which a struct parser would accept.
    for body in [
        "<xml>not a taktikal event</xml>",
        "",
        "[]",
        "[1,2]",
        " [{\"EventSignature\": {}}]",
        "[null, null, null]",
        "null",
        "true",
        "42",
        "\"text\"",
        "{\"Id\": 1} and more",
    ] {
        let response = app.post("acme", body).await;
        assert_eq!(
            response.status(),
            406,
            "Taktikal's code for: stop retrying ({body:?})"
        );
    }
    assert_eq!(app.persisted_count().await, 0);
}

/// A signed event padded with JSON whitespace to exactly `size` bytes.
fn signed_event_of_size(size: usize) -> Vec<u8> {
    let (_, mut body) = signed_event();
    assert!(body.len() <= size);
    body.resize(size, b' ');
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_up_to_the_limit_pass_and_one_byte_more_is_413() {
    let app = TestApp::spawn().await;
    let limit = 1024 * 1024;
    assert_eq!(
        app.post("acme", signed_event_of_size(limit)).await.status(),
        200
    );
    let response = app.post("acme", signed_event_of_size(limit + 1)).await;
    assert_eq!(response.status(), 413);
    assert_eq!(
        app.persisted_count().await,
        1,
        "only the body within the limit was published"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_30_mib_event_passes_under_a_raised_limit() {
    let app = TestApp::spawn().await;
    let (id, small) = signed_event();
    let mut event: serde_json::Value = serde_json::from_slice(&small).unwrap();
    // 30 MiB of base64 "document".
    event["EventData"]["SignedDocument"] = "A".repeat(30 * 1024 * 1024).into();
    let body = serde_json::to_vec(&event).unwrap();
    assert!(body.len() > 30 * 1024 * 1024 && body.len() < BIG_LIMIT);

    assert_eq!(
        app.post("acme", body.clone()).await.status(),
        413,
        "over the default limit"
    );
    assert_eq!(
        app.post("big", body.clone()).await.status(),
        200,
        "within the source's own limit"
    );
    let messages = app.drain_persisted().await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].delivery.data.len(), body.len());
    assert!(messages[0].delivery.data == body);
    assert_eq!(
        messages[0]
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str()),
        Some(id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_concurrent_requests_all_get_200_and_all_are_queued() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let (id, body) = signed_event();
            (id, app.post("acme", body).await.status())
        }));
    }
    let mut sent = Vec::new();
    for task in tasks {
        let (id, status) = task.await.unwrap();
        assert_eq!(status, 200);
        sent.push(id);
    }
    let mut queued: Vec<String> = app.drain_persisted_ids().await;
    sent.sort();
    queued.sort();
    assert_eq!(queued, sent, "every 200 has its message, once");
}

/// Issue 31 (6): every answer carries `X-Request-Id` — the 405, a 404 for any path, and the 413
/// answered before `100 Continue`, which is also counted and logged like any 413.
#[tokio::test(flavor = "multi_thread")]
async fn every_refusal_carries_a_request_id_and_an_early_413_is_counted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = TestApp::spawn().await;
    let get = app
        .http
        .get(format!("{}/webhooks/acme", app.address))
        .header("x-request-id", "caller-405")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["x-request-id"], "caller-405");
    for path in ["/webhooks/acme/extra/more", "/elsewhere", "/"] {
        let response = app
            .http
            .post(format!("{}{path}", app.address))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let id = response.headers()["x-request-id"].to_str().unwrap();
        assert_eq!(id.len(), 36, "a new UUID for {path}: {id}");
    }

    let counted = |text: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("countersign_ingester_requests_total")
                    && l.contains("source=\"acme\"")
                    && l.contains("outcome=\"too_large\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = counted(&app.metrics_text().await);
    let address = app.address.trim_start_matches("http://");
    for _ in 0..3 {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream
            .write_all(
                b"POST /webhooks/acme HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\
                  X-Request-Id: caller-413\r\nExpect: 100-continue\r\n\r\n",
            )
            .await
            .unwrap();
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            stream.read_to_end(&mut reply),
        )
        .await;
        let reply = String::from_utf8_lossy(&reply).to_lowercase();
        assert!(reply.starts_with("http/1.1 413"), "{reply}");
        assert!(reply.contains("x-request-id: caller-413"), "{reply}");
    }
    assert_eq!(counted(&app.metrics_text().await), before + 3);
}
