//! Every provider through the whole stack: ingester, broker, worker, projection, activity API.

use sha2::Digest as _;
use std::time::{SystemTime, UNIX_EPOCH};

use countersign_providers::{
    adobe_sign, boldsign, documenso, docuseal, docusign, dropbox_sign, legalesign, pandadoc,
    standard_webhooks, universign, yousign, zoho_sign,
};

use crate::helpers::{
    AS_CLIENT_ID, BS_SECRET, DG_SECRET, DM_SECRET, DS_SECRET, DX_SECRET, Options, PD_SECRET,
    SW_SECRET, Stack, UK_TOKEN, YS_SECRET, ZS_SECRET,
};

#[tokio::test(flavor = "multi_thread")]
async fn universign_events_through_the_whole_stack() {
    let pem = countersign_testkit::rsa_key_pem();
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
    let forged =
        universign::sign_detached(&countersign_testkit::rsa_key_pem(), "uk1", "PS256", &body)
            .unwrap();
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
    let statuses = activity_statuses(&view[0]);
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

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

#[tokio::test(flavor = "multi_thread")]
async fn legalesign_batches_and_event_callbacks_through_the_whole_stack() {
    let dir = tempfile::tempdir().unwrap();
    let (key, certificate) = countersign_testkit::self_signed_certificate(dir.path());
    let stack = Stack::start_with(Options {
        legalesign_certificate: Some(certificate),
        ..Options::default()
    })
    .await;

    let data = r#"[{"timestamp": "2018-03-20T07:05:00", "name": "status", "value": "10", "resource_uri": "/api/v1/document/doc-1/"},
                   {"timestamp": "2018-03-20T07:09:52", "name": "status", "value": "40", "resource_uri": "/api/v1/signer/sig-1/"},
                   {"timestamp": "2018-03-20T07:09:52", "name": "status", "value": "30", "resource_uri": "/api/v1/document/doc-1/"}]"#;
    let batch = legalesign::signed_form(&key, data).unwrap();
    assert_eq!(stack.post_to("uk", batch.as_bytes(), &[FORM]).await, 200);
    let tampered = batch.replacen("sig-1", "sig-2", 1);
    assert_eq!(stack.post_to("uk", tampered.as_bytes(), &[FORM]).await, 401);
    stack.wait_for_events(1).await;

    let (status, view) = stack.get_json("/signing/activity/doc-1?source=uk").await;
    assert_eq!(status, 200);
    assert_eq!(view[0]["status"], "completed");
    let statuses = activity_statuses(&view[0]);
    assert_eq!(
        statuses,
        ["DocumentCreated", "SigneeSigned", "Completed"],
        "in the right document's log"
    );
    assert_eq!(view[0]["signees"][0]["signeeKey"], "sig-1");
    assert_eq!(
        view[0]["activityLog"][0]["createdAt"], "2018-03-20T07:05:00.0000000Z",
        "zone-less times are UTC"
    );

    // Legalesign re-sends the same batch: recognised, nothing new.
    let activity_before = stack.count("SELECT count(*) FROM activity").await;
    assert_eq!(stack.post_to("uk", batch.as_bytes(), &[FORM]).await, 200);
    crate::helpers::wait_until(
        "the repeat is recorded",
        std::time::Duration::from_secs(30),
        || async {
            stack
                .count("SELECT max(deliveries)::bigint FROM webhook_events")
                .await
                == 2
        },
    )
    .await;
    assert_eq!(stack.count("SELECT count(*) FROM webhook_events").await, 1);
    assert_eq!(
        stack.count("SELECT count(*) FROM activity").await,
        activity_before
    );

    // Issue 12: the same batch with its form encoding changed (what the signature does not
    // cover) was parked as a conflicting body. Its id is its signed content's digest: the same
    // event, a third delivery. A padded batch never gets that far.
    let reencoded = batch.replacen("status", "%73tatus", 1);
    assert_ne!(reencoded, batch);
    assert_eq!(
        stack.post_to("uk", reencoded.as_bytes(), &[FORM]).await,
        200
    );
    crate::helpers::wait_until(
        "the re-encoded repeat is recorded as a delivery",
        std::time::Duration::from_secs(30),
        || async {
            stack
                .count("SELECT max(deliveries)::bigint FROM webhook_events")
                .await
                == 3
        },
    )
    .await;
    assert_eq!(stack.queue_len(stack.topology.dead_queue()).await, 0);
    let padded = format!("{batch}&padding={}", "x".repeat(100_000));
    assert_eq!(stack.post_to("uk", padded.as_bytes(), &[FORM]).await, 400);

    // The "upon event" callback, authenticated by the token in its URL.
    let event = b"resource_uri=%2Fapi%2Fv1%2Fdocument%2Fdoc-9%2F&group=%2Fapi%2Fv1%2Fgroup%2Fg%2F&name=NDA&uuid=doc-9&tag=t";
    assert_eq!(
        stack
            .post_to(&format!("uk-events/{UK_TOKEN}"), event, &[FORM])
            .await,
        200
    );
    assert_eq!(
        stack
            .post_to("uk-events/not-the-token", event, &[FORM])
            .await,
        401
    );
    assert_eq!(
        stack.post_to("uk-events", event, &[FORM]).await,
        401,
        "no token"
    );
    assert_eq!(
        stack
            .post_to(&format!("acme/{UK_TOKEN}"), event, &[FORM])
            .await,
        404,
        "a token on a source that takes none"
    );
    assert_eq!(
        stack
            .post_to(&format!("uk-locked/{UK_TOKEN}"), event, &[FORM])
            .await,
        403,
        "not from an allowed address"
    );
    stack.wait_for_events(2).await;
    let (_, view) = stack
        .get_json("/signing/activity/doc-9?source=uk-events")
        .await;
    assert_eq!(view[0]["status"], "completed");
    assert_eq!(view[0]["activityLog"][0]["status"], "FinalPdfCreated");
}

#[tokio::test(flavor = "multi_thread")]
async fn standard_webhooks_events_through_the_whole_stack() {
    let stack = Stack::start().await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let post = |id: &'static str, at: u64, body: Vec<u8>, signed: Vec<u8>| {
        let stack = &stack;
        async move {
            let signature = standard_webhooks::sign(SW_SECRET.as_bytes(), id, at, &signed).unwrap();
            let at = at.to_string();
            stack
                .post_to(
                    "sw",
                    &body,
                    &[
                        ("webhook-id", id),
                        ("webhook-timestamp", &at),
                        ("webhook-signature", &signature),
                    ],
                )
                .await
        }
    };
    let sent = serde_json::to_vec(&serde_json::json!({"type": "envelope.sent",
        "timestamp": "2026-11-29T10:00:00Z", "data": {"id": "env_7", "object": "envelope"}}))
    .unwrap();
    let completed = serde_json::to_vec(&serde_json::json!({"type": "envelope.completed",
        "timestamp": "2026-11-29T10:05:00Z", "data": {"id": "env_7", "object": "envelope"}}))
    .unwrap();
    assert_eq!(post("msg_1", now, sent.clone(), sent.clone()).await, 200);
    assert_eq!(
        post("msg_2", now, completed.clone(), completed.clone()).await,
        200
    );
    // The sender's retry of msg_1: accepted, recorded as a repeat.
    assert_eq!(post("msg_1", now, sent.clone(), sent.clone()).await, 200);
    // Another body under msg_2's signature, and a signature older than the window.
    let mut forged = completed.clone();
    forged[10] ^= 0x01;
    assert_eq!(post("msg_2", now, forged, completed.clone()).await, 401);
    assert_eq!(
        post("msg_3", now - 301, sent.clone(), sent.clone()).await,
        401
    );
    stack.wait_for_events(2).await;
    crate::helpers::wait_until(
        "the retry is counted",
        std::time::Duration::from_secs(30),
        || async {
            stack
                .count("SELECT deliveries::bigint FROM webhook_events WHERE event_id = 'msg_1'")
                .await
                == 2
        },
    )
    .await;

    let (status, view) = stack.get_json("/signing/activity/env_7?source=sw").await;
    assert_eq!(status, 200);
    assert_eq!(
        activity_statuses(&view[0]),
        ["envelope.sent", "envelope.completed"]
    );
    assert_eq!(stack.count("SELECT count(*) FROM webhook_events").await, 2);
    let headers: serde_json::Value =
        sqlx::query_scalar("SELECT headers FROM webhook_events WHERE event_id = 'msg_2'")
            .fetch_one(&stack.db)
            .await
            .unwrap();
    assert_eq!(headers["x-provider"], "standard_webhooks");
    assert_eq!(headers["x-verified-key"], "env:SW_SECRET");
    assert_eq!(headers["webhook-id"], "msg_2");
    assert!(
        headers["webhook-signature"]
            .as_str()
            .unwrap()
            .starts_with("v1,"),
        "the signature travels for re-verification"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn yousign_events_through_the_whole_stack() {
    let stack = Stack::start().await;
    let event = |id: &str, name: &str, time: u64, signer: bool| {
        let mut data = serde_json::json!({"signature_request": {"id": "sr-42", "status": "ongoing",
            "name": "Lease", "external_id": "lease-7"}});
        if signer {
            data["signer"] = serde_json::json!({"id": "si-1", "status": "signed",
                "info": {"first_name": "Anne", "last_name": "Martin", "email": "anne@example.com",
                         "phone_number": "+33700000000", "locale": "fr"}});
        }
        serde_json::to_vec(&serde_json::json!({"event_id": id, "event_name": name,
            "event_time": time.to_string(), "subscription_id": "sub-1",
            "subscription_description": "countersign", "sandbox": true, "data": data}))
        .unwrap()
    };
    let events = [
        event("ev-1", "signature_request.activated", 1_790_000_000, false),
        event("ev-2", "signer.done", 1_790_000_100, true),
        event("ev-3", "signature_request.done", 1_790_000_200, false),
    ];
    for body in &events {
        let signature = yousign::sign(YS_SECRET.as_bytes(), body);
        assert_eq!(
            stack
                .post_to("ys", body, &[(yousign::SIGNATURE_HEADER, &signature)])
                .await,
            200
        );
    }
    // Yousign's retry of ev-2: the same bytes, recorded as a repeat.
    let retry = yousign::sign(YS_SECRET.as_bytes(), &events[1]);
    assert_eq!(
        stack
            .post_to("ys", &events[1], &[(yousign::SIGNATURE_HEADER, &retry)])
            .await,
        200
    );
    // Signed with another secret, and a body changed under a genuine signature.
    let forged = yousign::sign(b"not-the-secret", &events[0]);
    assert_eq!(
        stack
            .post_to("ys", &events[0], &[(yousign::SIGNATURE_HEADER, &forged)])
            .await,
        401
    );
    let mut changed = events[2].clone();
    changed[20] ^= 0x01;
    let genuine = yousign::sign(YS_SECRET.as_bytes(), &events[2]);
    assert_eq!(
        stack
            .post_to("ys", &changed, &[(yousign::SIGNATURE_HEADER, &genuine)])
            .await,
        401
    );
    stack.wait_for_events(3).await;
    stack.wait_for_deliveries("ys", 2).await;

    let (status, view) = stack.get_json("/signing/activity/sr-42?source=ys").await;
    assert_eq!(status, 200);
    assert_eq!(view[0]["status"], "completed");
    assert_eq!(
        activity_statuses(&view[0]),
        [
            "signature_request.activated",
            "signer.done",
            "signature_request.done"
        ]
    );
    assert_eq!(view[0]["activityLog"][1]["signeeKey"], "si-1");
    assert!(stack.signed("ys", "si-1").await);
    let headers = &stack.stored_headers("ys").await["ev-3"];
    assert_eq!(headers["x-provider"], "yousign");
    assert_eq!(headers["x-verified-key"], "env:YS_SECRET");
    assert!(
        headers[yousign::SIGNATURE_HEADER]
            .as_str()
            .unwrap()
            .starts_with("sha256="),
        "the signature travels for re-verification"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn zoho_sign_notifications_through_the_whole_stack() {
    let stack = Stack::start().await;
    let notification = |operation: &str, status: &str, action: u64, at: u64, signed: &[u64]| {
        let actions: Vec<_> = [(501_u64, "Ola Nordmann"), (502, "Kari Nordmann")]
            .iter()
            .map(|(id, name)| {
                serde_json::json!({"action_id": id, "recipient_name": name,
                    "recipient_email": format!("{id}@example.com"), "action_type": "SIGN",
                    "action_status": if signed.contains(id) { "SIGNED" } else { "UNOPENED" }})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "requests": {"request_id": 9_900_001_u64, "request_name": "Supplier contract",
                "request_status": status, "actions": actions,
                "document_ids": [{"document_id": 9_900_010_u64, "document_name": "contract.pdf"}]},
            "notifications": {"operation_type": operation, "performed_at": at, "action_id": action,
                "activity": format!("{operation} by {action}"), "performed_by_email": format!("{action}@example.com")}}))
        .unwrap()
    };
    let events = [
        notification("RequestSubmitted", "inprogress", 0, 1_790_000_000_000, &[]),
        notification(
            "RequestSigningSuccess",
            "inprogress",
            501,
            1_790_000_100_000,
            &[501],
        ),
        notification(
            "RequestSigningSuccess",
            "inprogress",
            502,
            1_790_000_200_000,
            &[501, 502],
        ),
        notification(
            "RequestCompleted",
            "completed",
            0,
            1_790_000_200_500,
            &[501, 502],
        ),
    ];
    let post = |body: &[u8], signature: String| {
        let stack = &stack;
        let body = body.to_vec();
        async move {
            stack
                .post_to("zs", &body, &[(zoho_sign::SIGNATURE_HEADER, &signature)])
                .await
        }
    };
    for body in &events {
        assert_eq!(
            post(body, zoho_sign::sign(ZS_SECRET.as_bytes(), body)).await,
            200
        );
    }
    // A redelivery of the completion, and a forged and a changed body.
    assert_eq!(
        post(
            &events[3],
            zoho_sign::sign(ZS_SECRET.as_bytes(), &events[3])
        )
        .await,
        200
    );
    assert_eq!(
        post(&events[0], zoho_sign::sign(b"guess", &events[0])).await,
        401
    );
    let mut changed = events[3].clone();
    changed[25] ^= 0x01;
    assert_eq!(
        post(&changed, zoho_sign::sign(ZS_SECRET.as_bytes(), &events[3])).await,
        401
    );
    stack.wait_for_events(4).await;
    stack.wait_for_deliveries("zs", 2).await;

    let (status, view) = stack.get_json("/signing/activity/9900001?source=zs").await;
    assert_eq!(status, 200);
    assert_eq!(view[0]["status"], "completed");
    assert_eq!(
        activity_statuses(&view[0]),
        [
            "RequestSubmitted",
            "RequestSigningSuccess",
            "RequestSigningSuccess",
            "RequestCompleted"
        ]
    );
    assert_eq!(view[0]["activityLog"][1]["signeeKey"], "501");
    assert!(stack.signed("zs", "501").await && stack.signed("zs", "502").await);
    let headers = stack.stored_headers("zs").await;
    let completed = &headers["9900001:RequestCompleted:0:1790000200500"];
    assert_eq!(completed["x-provider"], "zoho_sign");
    assert_eq!(completed["x-verified-key"], "env:ZS_SECRET");
    assert!(completed[zoho_sign::SIGNATURE_HEADER].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn boldsign_events_through_the_whole_stack() {
    let stack = Stack::start().await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let event = |id: &str, event_type: &str, status: &str, signer: &str, created: u64| {
        serde_json::to_vec(&serde_json::json!({
            "event": {"id": id, "created": created, "eventType": event_type, "clientId": null, "environment": "Live"},
            "context": {"eventType": event_type, "actor": {"userType": if event_type == "Sent" { "Sender" } else { "Signer" }, "id": "sg-1"}},
            "data": {"object": "document", "documentId": "doc-bs-1", "messageTitle": "Offer letter", "status": status,
                "signerDetails": [{"id": "sg-1", "signerName": "Lea Weber", "signerEmail": "lea@example.com",
                    "status": signer, "order": 1, "lastActivityDate": created}],
                "metaData": {"offer": "O-17"}}}))
        .unwrap()
    };
    let events = [
        event("ev-sent", "Sent", "InProgress", "NotCompleted", now - 30),
        event("ev-signed", "Signed", "InProgress", "Completed", now - 20),
        event("ev-done", "Completed", "Completed", "Completed", now - 10),
    ];
    let post = |body: Vec<u8>, header: String, event_type: &'static str| {
        let stack = &stack;
        async move {
            stack
                .post_to(
                    "bs",
                    &body,
                    &[
                        (boldsign::SIGNATURE_HEADER, &header),
                        (boldsign::EVENT_HEADER, event_type),
                    ],
                )
                .await
        }
    };
    for (body, event_type) in events.iter().zip(["Sent", "Signed", "Completed"]) {
        let header = boldsign::sign(BS_SECRET.as_bytes(), now, body);
        assert_eq!(post(body.clone(), header, event_type).await, 200);
    }
    // BoldSign's retry of the completion (a new t, the same event), a secret rolled with the
    // old one still valid (s1), a stale signature and a forged one.
    let retry = format!(
        "t={}, s0={}, s1={}",
        now + 1,
        boldsign::signature(b"the-new-secret", now + 1, &events[2]),
        boldsign::signature(BS_SECRET.as_bytes(), now + 1, &events[2])
    );
    assert_eq!(post(events[2].clone(), retry, "Completed").await, 200);
    let stale = boldsign::sign(BS_SECRET.as_bytes(), now - 301, &events[0]);
    assert_eq!(post(events[0].clone(), stale, "Sent").await, 401);
    let forged = boldsign::sign(b"not-the-secret", now, &events[0]);
    assert_eq!(post(events[0].clone(), forged, "Sent").await, 401);
    // The verification event at setup: 200, nothing published.
    let verification = br#"{"event":{"id":"ev-verify","eventType":"Verification"}}"#.to_vec();
    assert_eq!(
        post(verification, String::new(), boldsign::VERIFICATION).await,
        200
    );
    // A sandbox application's document (`environment: "Test"`): archived marked as a test,
    // never projected as a signing.
    let sandbox = String::from_utf8(event(
        "ev-sandbox",
        "Completed",
        "Completed",
        "Completed",
        now,
    ))
    .unwrap()
    .replace("\"Live\"", "\"Test\"")
    .replace("doc-bs-1", "doc-bs-sandbox")
    .into_bytes();
    let header = boldsign::sign(BS_SECRET.as_bytes(), now, &sandbox);
    assert_eq!(post(sandbox, header, "Completed").await, 200);
    stack.wait_for_events(4).await;
    stack.wait_for_deliveries("bs", 2).await;
    assert_eq!(
        stack.stored_headers("bs").await["ev-sandbox"]["x-test"],
        "true"
    );
    let (status, _) = stack
        .get_json("/signing/activity/doc-bs-sandbox?source=bs")
        .await;
    assert_eq!(status, 404, "a sandbox signing is not a signing process");
    assert_eq!(
        stack
            .count("SELECT count(*) FROM webhook_events WHERE event_id = 'ev-verify'")
            .await,
        0
    );

    let (status, view) = stack.get_json("/signing/activity/doc-bs-1?source=bs").await;
    assert_eq!(status, 200);
    assert_eq!(view[0]["status"], "completed");
    assert!(
        view[0].get("unconfirmed").is_none(),
        "BoldSign signs the whole body: {view}"
    );
    assert_eq!(activity_statuses(&view[0]), ["Sent", "Signed", "Completed"]);
    assert_eq!(view[0]["activityLog"][1]["signeeKey"], "sg-1");
    assert!(stack.signed("bs", "sg-1").await);
    let headers = &stack.stored_headers("bs").await["ev-done"];
    assert_eq!(headers["x-provider"], "boldsign");
    assert_eq!(headers["x-verified-key"], "env:BS_SECRET");
    assert!(
        headers[boldsign::SIGNATURE_HEADER]
            .as_str()
            .unwrap()
            .starts_with("t="),
        "the signature travels for re-verification"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pandadoc_notifications_through_the_whole_stack() {
    let stack = Stack::start().await;
    let document = |status: &str, modified: &str, completed: &[&str]| {
        let recipients: Vec<_> = [
            ("r-1", "Mia", "mia@example.com"),
            ("r-2", "Noah", "noah@example.com"),
        ]
        .iter()
        .map(|(id, first, email)| {
            serde_json::json!({"id": id, "first_name": first, "last_name": "Park", "email": email,
                    "recipient_type": "signer", "has_completed": completed.contains(id)})
        })
        .collect();
        serde_json::json!({"id": "pdoc-1", "name": "Service order", "status": status,
            "date_created": "2026-11-29T08:00:00.000000Z", "date_modified": modified,
            "recipients": recipients, "metadata": {"order": "SO-5"}})
    };
    let sent = serde_json::to_vec(&serde_json::json!([
        {"event": "document_state_changed", "data": document("document.sent", "2026-11-29T08:01:00.000000Z", &[])}
    ]))
    .unwrap();
    let mut signed = document("document.sent", "2026-11-29T08:05:00.000000Z", &["r-1"]);
    signed["action_by"] = serde_json::json!({"email": "mia@example.com"});
    signed["action_date"] = serde_json::json!("2026-11-29T08:05:00.000000Z");
    // One delivery, two notifications.
    let completed = serde_json::to_vec(&serde_json::json!([
        {"event": "recipient_completed", "data": signed},
        {"event": "document_state_changed", "data": document("document.completed", "2026-11-29T08:09:00.000000Z", &["r-1", "r-2"])}
    ]))
    .unwrap();
    let post = |body: Vec<u8>, signature: String, delivery: &'static str| {
        let stack = &stack;
        async move {
            stack
                .post_to(
                    &format!("pd?signature={signature}"),
                    &body,
                    &[(pandadoc::EVENT_ID_HEADER, delivery)],
                )
                .await
        }
    };
    let sign = |body: &[u8]| pandadoc::sign(PD_SECRET.as_bytes(), body);
    assert_eq!(post(sent.clone(), sign(&sent), "dlv-1").await, 200);
    assert_eq!(
        post(completed.clone(), sign(&completed), "dlv-2").await,
        200
    );
    // PandaDoc's retry of dlv-2; a forged signature; none at all.
    assert_eq!(
        post(completed.clone(), sign(&completed), "dlv-2").await,
        200
    );
    assert_eq!(
        post(sent.clone(), pandadoc::sign(b"guess", &sent), "dlv-3").await,
        401
    );
    assert_eq!(stack.post_to("pd", &sent, &[]).await, 401);
    stack.wait_for_events(2).await;
    stack.wait_for_deliveries("pd", 2).await;

    let (status, view) = stack.get_json("/signing/activity/pdoc-1?source=pd").await;
    assert_eq!(status, 200);
    assert_eq!(view[0]["status"], "completed");
    assert_eq!(
        activity_statuses(&view[0]),
        [
            "document_state_changed",
            "recipient_completed",
            "document_state_changed"
        ]
    );
    assert_eq!(view[0]["activityLog"][1]["signeeKey"], "r-1");
    assert!(stack.signed("pd", "r-1").await && stack.signed("pd", "r-2").await);
    // The event id is the signed body's digest; the unsigned delivery id is metadata.
    let completed_id: String = sha2::Sha256::digest(&completed)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let headers = &stack.stored_headers("pd").await[&completed_id];
    assert_eq!(headers[pandadoc::EVENT_ID_HEADER], "dlv-2");
    assert_eq!(headers["x-provider"], "pandadoc");
    assert_eq!(headers["x-verified-key"], "env:PD_SECRET");
    assert_eq!(headers[pandadoc::SIGNATURE_HEADER], sign(&completed));
}

#[tokio::test(flavor = "multi_thread")]
async fn dropbox_sign_callbacks_through_the_whole_stack() {
    let stack = Stack::start().await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let callback = |kind: &str, time: u64, related: Option<&str>, status: &str| {
        let time = time.to_string();
        serde_json::to_vec(&serde_json::json!({
            "event": {"event_time": time, "event_type": kind,
                "event_hash": dropbox_sign::event_hash(DX_SECRET.as_bytes(), &time, kind),
                "event_metadata": {"related_signature_id": related, "reported_for_account_id": "acc-1"}},
            "signature_request": {"signature_request_id": "dx-req-1", "title": "Consulting agreement",
                "is_complete": status == "signed", "is_declined": false,
                "files_url": "https://api.hellosign.com/v3/signature_request/files/dx-req-1",
                "signatures": [{"signature_id": "dx-sig-1", "signer_email_address": "eva@example.com",
                    "signer_name": "Eva Berg", "status_code": status,
                    "signed_at": if status == "signed" { serde_json::json!(time.parse::<u64>().unwrap()) } else { serde_json::Value::Null }}]}}))
        .unwrap()
    };
    let post = |json: Vec<u8>, boundary: &'static str| {
        let stack = &stack;
        async move {
            let (body, content_type) = dropbox_sign::multipart(&json, boundary);
            stack
                .send_to("dx", &body, &[("content-type", &content_type)])
                .await
        }
    };
    let events = [
        callback(
            "signature_request_sent",
            now - 30,
            None,
            "awaiting_signature",
        ),
        callback(
            "signature_request_signed",
            now - 20,
            Some("dx-sig-1"),
            "signed",
        ),
        callback("signature_request_all_signed", now - 10, None, "signed"),
    ];
    for (json, boundary) in events.iter().zip(["b-1", "b-2", "b-3"]) {
        let response = post(json.clone(), boundary).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/plain");
        assert_eq!(
            response.text().await.unwrap(),
            dropbox_sign::HELLO,
            "exactly"
        );
    }
    // Dropbox Sign's retry: the same event in another multipart envelope.
    assert_eq!(post(events[2].clone(), "b-retry").await.status(), 200);
    // The genuine hash of the completion with other content about the same request: refused.
    let tampered = String::from_utf8(events[2].clone())
        .unwrap()
        .replace("Consulting agreement", "Consulting agreement v2")
        .into_bytes();
    assert_eq!(post(tampered, "b-4").await.status(), 401);
    // A forged hash, a stale event, and the settings page's test callback (answered, not kept).
    let mut forged = events[0].clone();
    let at = forged.windows(4).position(|w| w == b"hash").unwrap() + 8;
    forged[at] ^= 0x01;
    assert_eq!(post(forged, "b-5").await.status(), 401);
    let stale = callback(
        "signature_request_viewed",
        now - 97 * 3600,
        None,
        "awaiting_signature",
    );
    assert_eq!(post(stale, "b-6").await.status(), 401);
    let test = callback(dropbox_sign::CALLBACK_TEST, now, None, "awaiting_signature");
    let response = post(test, "b-7").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), dropbox_sign::HELLO);
    stack.wait_for_events(3).await;
    stack.wait_for_deliveries("dx", 2).await;
    assert_eq!(stack.count("SELECT count(*) FROM webhook_events").await, 3);
    // A request sent in test mode: archived marked as a test, never projected.
    let test_mode = String::from_utf8(callback(
        "signature_request_sent",
        now - 5,
        None,
        "awaiting_signature",
    ))
    .unwrap()
    .replace("\"dx-req-1\"", "\"dx-req-test\", \"test_mode\": true")
    .into_bytes();
    assert_eq!(post(test_mode, "b-8").await.status(), 200);
    stack.wait_for_events(4).await;
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM webhook_events WHERE source = 'dx' AND headers->>'x-test' = 'true'"
            )
            .await,
        1
    );
    let (status, _) = stack
        .get_json("/signing/activity/dx-req-test?source=dx")
        .await;
    assert_eq!(status, 404, "a test-mode request is not a signing process");

    let (status, view) = stack.get_json("/signing/activity/dx-req-1?source=dx").await;
    assert_eq!(status, 200);
    assert_eq!(view[0]["status"], "all_signed");
    assert_eq!(
        view[0]["unconfirmed"], true,
        "the hash covers none of the event: unconfirmed until the API confirms it"
    );
    assert_eq!(
        activity_statuses(&view[0]),
        [
            "signature_request_sent",
            "signature_request_signed",
            "signature_request_all_signed"
        ]
    );
    assert_eq!(view[0]["activityLog"][1]["signeeKey"], "dx-sig-1");
    assert!(stack.signed("dx", "dx-sig-1").await);
    let uses = stack
        .count("SELECT count(*) FROM signature_uses WHERE source = 'dx'")
        .await;
    assert_eq!(
        uses, 4,
        "one use per signature (the test-mode request's too), the retry included"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn adobe_sign_verification_of_intent_and_notifications_through_the_whole_stack() {
    use base64::Engine as _;
    let stack = Stack::start().await;
    let get = |source: &'static str, client_id: Option<&'static str>| {
        let stack = &stack;
        async move {
            let mut request = stack
                .http
                .get(format!("{}/webhooks/{source}", stack.ingester));
            if let Some(id) = client_id {
                request = request.header(adobe_sign::CLIENT_ID_HEADER, id);
            }
            request.send().await.unwrap()
        }
    };
    // Verification of intent: the id echoed in a header and in the body; nothing published.
    let intent = get("as", Some(AS_CLIENT_ID)).await;
    assert_eq!(intent.status(), 200);
    assert_eq!(intent.headers()[adobe_sign::CLIENT_ID_HEADER], AS_CLIENT_ID);
    let body: serde_json::Value = intent.json().await.unwrap();
    assert_eq!(body["xAdobeSignClientId"], AS_CLIENT_ID);
    assert_eq!(get("as", Some("someone-else")).await.status(), 401);
    assert_eq!(get("as", None).await.status(), 401);
    assert_eq!(get("as-locked", Some(AS_CLIENT_ID)).await.status(), 403);
    assert_eq!(
        get("sw", Some(AS_CLIENT_ID)).await.status(),
        405,
        "only Adobe sources answer GET"
    );

    let pdf = b"%PDF-1.7 agreement signed by both".to_vec();
    let notification = |id: &str,
                        event: &str,
                        status: &str,
                        actor: Option<&str>,
                        at: &str,
                        signed: &[u8]| {
        let mut agreement = serde_json::json!({"id": "CBJCHBCAABAAagr1", "name": "Reseller agreement",
            "status": status, "externalId": {"id": "crm-77"},
            "participantSetsInfo": {"participantSets": [
                {"memberInfos": [{"id": "mem-1", "email": "ida@example.com", "name": "Ida Holm"}], "order": 1,
                 "role": "SIGNER", "status": if status == "SIGNED" { "COMPLETED" } else { "WAITING_FOR_OTHERS" }}]}});
        if !signed.is_empty() {
            agreement["signedDocumentInfo"] = serde_json::json!({"document": base64::engine::general_purpose::STANDARD.encode(signed)});
        }
        serde_json::to_vec(&serde_json::json!({"webhookId": "wh-1", "webhookNotificationId": id,
            "event": event, "eventDate": at, "eventResourceType": "agreement", "actionType": "ESIGNED",
            "participantUserEmail": actor, "agreement": agreement}))
        .unwrap()
    };
    let events = [
        notification(
            "n-1",
            "AGREEMENT_CREATED",
            "OUT_FOR_SIGNATURE",
            None,
            "2026-11-29T09:00:00Z",
            b"",
        ),
        notification(
            "n-2",
            "AGREEMENT_ACTION_COMPLETED",
            "OUT_FOR_SIGNATURE",
            Some("ida@example.com"),
            "2026-11-29T09:10:00Z",
            b"",
        ),
        notification(
            "n-3",
            "AGREEMENT_WORKFLOW_COMPLETED",
            "SIGNED",
            None,
            "2026-11-29T09:10:05Z",
            &pdf,
        ),
    ];
    for body in &events {
        let response = stack
            .send_to("as", body, &[(adobe_sign::CLIENT_ID_HEADER, AS_CLIENT_ID)])
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()[adobe_sign::CLIENT_ID_HEADER],
            AS_CLIENT_ID,
            "every notification's reply echoes the id"
        );
    }
    assert_eq!(
        stack
            .post_to("as", &events[0], &[(adobe_sign::CLIENT_ID_HEADER, "guess")])
            .await,
        401
    );
    assert_eq!(
        stack
            .post_to(
                "as-locked",
                &events[0],
                &[(adobe_sign::CLIENT_ID_HEADER, AS_CLIENT_ID)]
            )
            .await,
        403
    );
    stack.wait_for_events(3).await;

    let (status, view) = stack
        .get_json("/signing/activity/CBJCHBCAABAAagr1?source=as")
        .await;
    assert_eq!(status, 200);
    assert_eq!(view[0]["status"], "completed");
    assert_eq!(
        activity_statuses(&view[0]),
        [
            "AGREEMENT_CREATED",
            "AGREEMENT_ACTION_COMPLETED",
            "AGREEMENT_WORKFLOW_COMPLETED"
        ]
    );
    assert_eq!(view[0]["activityLog"][1]["signeeKey"], "mem-1");
    assert!(stack.signed("as", "mem-1").await);
    assert_eq!(stack.signed_document("CBJCHBCAABAAagr1").await, pdf);
}

#[tokio::test(flavor = "multi_thread")]
async fn docusign_connect_messages_through_the_whole_stack() {
    use base64::Engine as _;
    let stack = Stack::start().await;
    let pdf = b"%PDF-1.7 envelope signed".to_vec();
    let message = |event: &str,
                   retry: u32,
                   at: &str,
                   recipient: Option<&str>,
                   status: &str,
                   signed: bool| {
        let mut summary = serde_json::json!({"status": status, "emailSubject": "Please sign: lease",
            "recipients": {"signers": [{"recipientId": "1", "name": "Tom Ek", "email": "tom@example.com",
                "status": if signed { "completed" } else { "sent" },
                "signedDateTime": if signed { serde_json::json!("2026-11-29T11:05:00Z") } else { serde_json::Value::Null }}]}});
        if event == "envelope-completed" {
            summary["envelopeDocuments"] = serde_json::json!([{"documentId": "1", "name": "Lease.pdf",
                "type": "content", "PDFBytes": base64::engine::general_purpose::STANDARD.encode(&pdf)}]);
        }
        let mut data = serde_json::json!({"accountId": "acc", "userId": "usr", "envelopeId": "env-dg-1",
            "envelopeSummary": summary});
        if let Some(recipient) = recipient {
            data["recipientId"] = serde_json::json!(recipient);
        }
        serde_json::to_vec(&serde_json::json!({"event": event, "apiVersion": "v2.1",
            "uri": "/restapi/v2.1/accounts/acc/envelopes/env-dg-1", "retryCount": retry,
            "configurationId": 42, "generatedDateTime": at, "data": data}))
        .unwrap()
    };
    let events = [
        message(
            "envelope-sent",
            0,
            "2026-11-29T11:00:00.0000000Z",
            None,
            "sent",
            false,
        ),
        message(
            "recipient-completed",
            0,
            "2026-11-29T11:05:00.0000000Z",
            Some("1"),
            "sent",
            true,
        ),
        message(
            "envelope-completed",
            0,
            "2026-11-29T11:05:01.0000000Z",
            None,
            "completed",
            true,
        ),
    ];
    let post = |body: Vec<u8>, signatures: Vec<String>| {
        let stack = &stack;
        async move {
            let names = ["x-docusign-signature-1", "x-docusign-signature-2"];
            let headers: Vec<(&str, &str)> = names
                .iter()
                .zip(&signatures)
                .map(|(name, value)| (*name, value.as_str()))
                .collect();
            stack.post_to("dg", &body, &headers).await
        }
    };
    for body in &events {
        let signature = docusign::sign(DG_SECRET.as_bytes(), body);
        assert_eq!(post(body.clone(), vec![signature]).await, 200);
    }
    // DocuSign's retry of the completion, retryCount 1, signed by two active keys (ours second).
    let retry = message(
        "envelope-completed",
        1,
        "2026-11-29T11:05:01.0000000Z",
        None,
        "completed",
        true,
    );
    assert_ne!(retry, events[2]);
    let signatures = vec![
        docusign::sign(b"a key only DocuSign has now", &retry),
        docusign::sign(DG_SECRET.as_bytes(), &retry),
    ];
    assert_eq!(post(retry, signatures).await, 200);
    assert_eq!(
        post(
            events[0].clone(),
            vec![docusign::sign(b"forged", &events[0])]
        )
        .await,
        401
    );
    assert_eq!(stack.post_to("dg", &events[0], &[]).await, 401);
    stack.wait_for_events(3).await;
    stack.wait_for_deliveries("dg", 2).await;

    let (status, view) = stack.get_json("/signing/activity/env-dg-1?source=dg").await;
    assert_eq!(status, 200);
    assert_eq!(view[0]["status"], "completed");
    assert_eq!(
        activity_statuses(&view[0]),
        ["envelope-sent", "recipient-completed", "envelope-completed"]
    );
    assert_eq!(view[0]["activityLog"][1]["signeeKey"], "1");
    assert!(stack.signed("dg", "1").await);
    assert_eq!(stack.signed_document("env-dg-1").await, pdf);
    let headers = &stack.stored_headers("dg").await["env-dg-1:envelope-completed:-:2026-11-29T11:05:01.0000000Z"];
    assert_eq!(headers["x-provider"], "docusign");
    assert_eq!(headers["x-verified-key"], "env:DG_SECRET");
    assert!(headers[docusign::SIGNATURE_HEADER].is_string());
}

/// The `status` of each activity log entry of a process view, in order.
fn activity_statuses(process: &serde_json::Value) -> Vec<&str> {
    process["activityLog"]
        .as_array()
        .expect("an activity log")
        .iter()
        .map(|e| e["status"].as_str().expect("a status"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn documenso_events_through_the_whole_stack() {
    let stack = Stack::start().await;
    let event = |name: &str, status: &str, updated: &str, signed: bool, created: &str| {
        let signing = if signed { "SIGNED" } else { "NOT_SIGNED" };
        serde_json::to_vec(&serde_json::json!({"event": name,
            "payload": {"id": 4242, "externalId": "nda-9", "title": "NDA.pdf", "status": status,
                "documentDataId": "dd1", "createdAt": "2026-11-29T09:00:00.000Z", "updatedAt": updated,
                "recipients": [{"id": 77, "documentId": 4242, "email": "kim@example.com", "name": "Kim Lee",
                    "token": "signing-token-77", "role": "SIGNER", "signingStatus": signing,
                    "signedAt": if signed { serde_json::json!(updated) } else { serde_json::Value::Null }}]},
            "createdAt": created, "webhookEndpoint": "https://countersign.example/webhooks/dm"}))
        .unwrap()
    };
    let events = [
        event(
            "DOCUMENT_SENT",
            "PENDING",
            "2026-11-29T09:01:00.000Z",
            false,
            "2026-11-29T09:01:01.000Z",
        ),
        event(
            "DOCUMENT_SIGNED",
            "PENDING",
            "2026-11-29T09:05:00.000Z",
            true,
            "2026-11-29T09:05:01.000Z",
        ),
        event(
            "DOCUMENT_COMPLETED",
            "COMPLETED",
            "2026-11-29T09:05:02.000Z",
            true,
            "2026-11-29T09:05:03.000Z",
        ),
    ];
    for body in &events {
        assert_eq!(
            stack
                .post_to("dm", body, &[(documenso::SECRET_HEADER, DM_SECRET)])
                .await,
            200
        );
    }
    // Documenso's retry of the completion: a new createdAt, the same event.
    let retry = event(
        "DOCUMENT_COMPLETED",
        "COMPLETED",
        "2026-11-29T09:05:02.000Z",
        true,
        "2026-11-29T09:06:03.000Z",
    );
    assert_ne!(retry, events[2]);
    assert_eq!(
        stack
            .post_to("dm", &retry, &[(documenso::SECRET_HEADER, DM_SECRET)])
            .await,
        200
    );
    // Another secret, and none.
    assert_eq!(
        stack
            .post_to(
                "dm",
                &events[0],
                &[(documenso::SECRET_HEADER, "documenso-webhook-secreT")]
            )
            .await,
        401
    );
    assert_eq!(stack.post_to("dm", &events[0], &[]).await, 401);
    stack.wait_for_events(3).await;
    stack.wait_for_deliveries("dm", 2).await;

    let (status, view) = stack.get_json("/signing/activity/4242?source=dm").await;
    assert_eq!(status, 200);
    assert_eq!(view[0]["status"], "completed");
    assert_eq!(
        activity_statuses(&view[0]),
        ["DOCUMENT_SENT", "DOCUMENT_SIGNED", "DOCUMENT_COMPLETED"]
    );
    assert!(stack.signed("dm", "77").await);
    let headers = stack.stored_headers("dm").await;
    assert_eq!(headers.len(), 3);
    for headers in headers.values() {
        assert_eq!(headers["x-provider"], "documenso");
        assert_eq!(headers["x-verified-key"], "env:DM_SECRET");
        assert!(
            !headers.to_string().contains(DM_SECRET),
            "the secret is not archived: {headers}"
        );
        assert!(headers.get("x-test").is_none(), "a real event: {headers}");
    }

    // Issue 26: the settings page's "test webhook" (Documenso's sample: document 10, its fixed
    // documentDataId) is archived marked `x-test` and never becomes a signing process.
    let sample = serde_json::to_vec(&serde_json::json!({"event": "DOCUMENT_COMPLETED",
        "payload": {"id": 10, "externalId": null, "title": "documenso.pdf", "status": "COMPLETED",
            "documentDataId": "hs8qz1ktr9204jn7mg6c5dxy0", "createdAt": "2026-11-29T09:00:00.000Z",
            "updatedAt": "2026-11-29T09:00:00.000Z", "completedAt": "2026-11-29T09:00:00.000Z",
            "recipients": [{"id": 51, "documentId": 10, "email": "signer1@documenso.com",
                "name": "Signer 1", "role": "SIGNER", "signingStatus": "SIGNED",
                "signedAt": "2026-11-29T09:00:00.000Z"}]},
        "createdAt": "2026-11-29T09:00:01.000Z", "webhookEndpoint": "https://countersign.example/webhooks/dm"}))
    .unwrap();
    assert_eq!(
        stack
            .post_to("dm", &sample, &[(documenso::SECRET_HEADER, DM_SECRET)])
            .await,
        200
    );
    wait_until_archived(&stack, "dm", 4).await;
    let headers = stack.stored_headers("dm").await;
    let marked: Vec<_> = headers.values().filter(|h| h["x-test"] == "true").collect();
    assert_eq!(marked.len(), 1, "{headers:?}");
    let (status, _) = stack.get_json("/signing/activity/10?source=dm").await;
    assert_eq!(status, 404, "no signing process from a test event");
}

/// Waits until `source` has `rows` archived events.
async fn wait_until_archived(stack: &Stack, source: &str, rows: usize) {
    for _ in 0..300 {
        if stack.stored_headers(source).await.len() >= rows {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{source}: {rows} archived events");
}

#[tokio::test(flavor = "multi_thread")]
async fn docuseal_events_through_the_whole_stack() {
    let stack = Stack::start().await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let post = |body: Vec<u8>, signed_at: u64| {
        let stack = &stack;
        async move {
            let signature = docuseal::sign(DS_SECRET.as_bytes(), signed_at, &body);
            stack
                .post_to("ds", &body, &[(docuseal::SIGNATURE_HEADER, &signature)])
                .await
        }
    };
    let submission = |event_type: &str, status: &str, at: &str, expires: &str| {
        let completed = status == "completed";
        serde_json::to_vec(&serde_json::json!({"event_type": event_type, "timestamp": at,
            "data": {"id": 501, "status": status, "source": "api",
                "submitters": [{"id": 601, "submission_id": 501, "email": "ana@example.com", "name": "Ana Silva",
                    "status": if completed { "completed" } else { "sent" },
                    "completed_at": if completed { serde_json::json!(at) } else { serde_json::Value::Null }}],
                "template": {"id": 9, "name": "Lease"},
                "documents": [{"name": "lease", "url": format!("https://docuseal.example/file/lease.pdf?expires={expires}")}]}}))
        .unwrap()
    };
    let form_completed = serde_json::to_vec(&serde_json::json!({"event_type": "form.completed",
        "timestamp": "2026-11-29T10:04:00.000Z",
        "data": {"id": 601, "submission_id": 501, "email": "ana@example.com", "name": "Ana Silva",
            "status": "completed", "completed_at": "2026-11-29T10:03:59.000Z", "role": "Tenant",
            "documents": [{"name": "lease", "url": "https://docuseal.example/file/lease.pdf?expires=1"}],
            "template": {"id": 9, "name": "Lease"},
            "submission": {"id": 501, "status": "completed"}}}))
    .unwrap();
    let created = submission(
        "submission.created",
        "pending",
        "2026-11-29T10:00:00.000Z",
        "1",
    );
    let completed = submission(
        "submission.completed",
        "completed",
        "2026-11-29T10:05:00.000Z",
        "1",
    );
    assert_eq!(post(created.clone(), now).await, 200);
    assert_eq!(post(form_completed, now).await, 200);
    assert_eq!(post(completed.clone(), now).await, 200);
    // DocuSeal's retry of the completion: a fresh signature time and fresh link expiry.
    let retry = submission(
        "submission.completed",
        "completed",
        "2026-11-29T10:05:00.000Z",
        "2",
    );
    assert_eq!(post(retry, now + 1).await, 200);
    // Stale, and a body changed under a genuine signature.
    assert_eq!(post(created.clone(), now - 301).await, 401);
    let genuine = docuseal::sign(DS_SECRET.as_bytes(), now, &completed);
    let mut changed = completed.clone();
    changed[30] ^= 0x01;
    assert_eq!(
        stack
            .post_to("ds", &changed, &[(docuseal::SIGNATURE_HEADER, &genuine)])
            .await,
        401
    );
    stack.wait_for_events(3).await;
    stack.wait_for_deliveries("ds", 2).await;

    let (status, view) = stack.get_json("/signing/activity/501?source=ds").await;
    assert_eq!(status, 200);
    assert_eq!(view[0]["status"], "completed");
    assert_eq!(
        activity_statuses(&view[0]),
        [
            "submission.created",
            "form.completed",
            "submission.completed"
        ]
    );
    assert_eq!(view[0]["activityLog"][1]["signeeKey"], "601");
    assert!(stack.signed("ds", "601").await);
    let headers =
        &stack.stored_headers("ds").await["submission.completed:501:2026-11-29T10:05:00.000Z"];
    assert_eq!(headers["x-provider"], "docuseal");
    assert_eq!(headers["x-verified-key"], "env:DS_SECRET");
    assert!(
        headers[docuseal::SIGNATURE_HEADER]
            .as_str()
            .unwrap()
            .starts_with(&now.to_string()),
        "the signature travels for re-verification"
    );
}
