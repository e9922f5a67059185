//! Every provider through the whole stack: ingester, broker, worker, projection, activity API.

use std::time::{SystemTime, UNIX_EPOCH};

use countersign::providers::universign;

use crate::helpers::{Options, Stack};

fn openssl_key() -> String {
    let output = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl generates a key");
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn universign_events_through_the_whole_stack() {
    let pem = openssl_key();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, universign::jwks_of(&pem, "uk1").unwrap().to_string()).unwrap();
    let stack = Stack::start_with(Options {
        universign_jwks: Some(jwks),
        ..Options::default()
    })
    .await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let events = [
        serde_json::json!({"object": "event", "id": "evt_a", "type": "transaction.lifecycle.started", "createdAt": now - 20,
            "payload": {"object": {"object": "transaction", "id": "tx_77"}}}),
        serde_json::json!({"object": "event", "id": "evt_b", "type": "action.closed", "createdAt": now - 10,
            "payload": {"object": {"object": "action", "id": "act_1", "transaction_id": "tx_77", "participant_id": "pt_1"}}}),
        serde_json::json!({"object": "event", "id": "evt_c", "type": "transaction.lifecycle.completed", "createdAt": now,
            "payload": {"object": {"object": "transaction", "id": "tx_77"}}}),
    ];
    for event in &events {
        let body = serde_json::to_vec(event).unwrap();
        let signature = universign::sign_detached(&pem, "uk1", "PS256", &body).unwrap();
        assert_eq!(
            stack
                .post_to("fr", &body, &[("x-jws-signature", &signature)])
                .await,
            200
        );
    }
    let body = serde_json::to_vec(&events[0]).unwrap();
    let forged = universign::sign_detached(&openssl_key(), "uk1", "PS256", &body).unwrap();
    assert_eq!(
        stack
            .post_to("fr", &body, &[("x-jws-signature", &forged)])
            .await,
        401
    );
    stack.wait_for_events(3).await;

    let (status, view) = stack.get_json("/signing/activity/tx_77?source=fr").await;
    assert_eq!(status, 200);
    assert_eq!(view[0]["status"], "completed");
    let statuses: Vec<&str> = view[0]["activityLog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["Started", "ActionClosed", "Completed"]);
    assert_eq!(view[0]["activityLog"][1]["signeeKey"], "pt_1");
    let headers: serde_json::Value =
        sqlx::query_scalar("SELECT headers FROM webhook_events WHERE event_id = 'evt_c'")
            .fetch_one(&stack.db)
            .await
            .unwrap();
    assert_eq!(headers["x-provider"], "universign");
    assert_eq!(headers["x-verified-key"], "kid:uk1");
    assert!(
        headers["x-jws-signature"].as_str().unwrap().contains(".."),
        "the signature travels for re-verification"
    );
}
