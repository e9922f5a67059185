//! Issue 30: reconciliation for the providers with a listing API — Dropbox Sign, DocuSign,
//! PandaDoc. The simulator lists, in the provider's own shape, a process whose webhooks never
//! came: the first run publishes what the archive lacks (recorded, confirmed with the API, its
//! PDF downloaded), the second finds nothing.

use crate::downloads::dropbox_state;
use crate::helpers::{Options, Stack};
use crate::second_witness::{document_status, envelope, json};
use crate::simulator::{Answer, Simulator};

/// What every reconciled source must show after the two runs: `process` recorded from
/// reconciliation, confirmed with the API, with the downloaded `pdf`; nothing parked.
async fn assert_reconciled(stack: &Stack, source: &str, process: &str, status: &str, pdf: &[u8]) {
    assert_eq!(stack.signed_document(process).await, pdf);
    let (_, view) = stack
        .get_json(&format!("/signing/activity/{process}?source={source}"))
        .await;
    assert_eq!(view[0]["status"], status);
    assert_eq!(view[0]["verified"], "signature+api");
    assert_eq!(
        stack
            .count(&format!(
                "SELECT count(*) FROM webhook_events WHERE source = '{source}' AND event_id LIKE 'reconcile:%' AND headers->>'x-origin' = 'reconciliation'"
            ))
            .await,
        2
    );
    assert_eq!(stack.queue_len(stack.topology.dead_queue()).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn dropbox_sign_requests_listed_without_their_callbacks_are_reconciled_once() {
    let pdf = b"%PDF-1.7 Dropbox Sign, reconciled".to_vec();
    // The OpenAPI description's list example: an open request and a complete one, both unseen.
    let list = crate::second_witness::fixture("dropbox_sign", "SignatureRequestListResponse.json");
    let complete = "fa5c8a0b0f492d768749333a";
    let api = Simulator::start(
        "/v3",
        vec![
            (
                "/signature_request/list",
                vec![Answer::ok("application/json", &list)],
            ),
            (
                "/signature_request/fa5c8a0b0f492d768749333a",
                vec![dropbox_state(complete, |_| {})],
            ),
            (
                "/signature_request/files/fa5c8a0b0f492d768749333a",
                vec![Answer::ok("application/pdf", &pdf)],
            ),
        ],
    )
    .await;
    let stack = Stack::start_with(Options {
        apis: vec![("dx", api.base_url.clone())],
        ..Options::default()
    })
    .await;
    stack.reconciles("dx", 2, 2).await;
    assert_reconciled(&stack, "dx", complete, "all_signed", &pdf).await;
    let (_, open) = stack
        .get_json("/signing/activity/d10338cad145e1cb68afc828?source=dx")
        .await;
    assert_eq!(open[0]["status"], "created");
    assert_eq!(open[0]["verified"], "signature");
    let listed = api
        .seen()
        .into_iter()
        .filter(|s| s.path.starts_with("/v3/signature_request/list?"))
        .collect::<Vec<_>>();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed[0]
            .path
            .contains("page=1&page_size=100&query=created%3A%5B"),
        "{}",
        listed[0].path
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn docusign_envelopes_listed_without_their_messages_are_reconciled_once() {
    let pdf = b"%PDF-1.7 DocuSign combined, reconciled".to_vec();
    let listed = |id: &str, status: &str| {
        let mut envelope =
            json("docusign", "connect.schema-v2.json")["data"]["envelopeSummary"].clone();
        envelope["envelopeId"] = id.into();
        envelope["status"] = status.into();
        envelope["statusChangedDateTime"] = "2026-12-01T09:30:00.0000000Z".into();
        envelope
    };
    // `envelopesInformation`, as `GET /envelopes` answers (positions are strings there).
    let list = serde_json::json!({
        "resultSetSize": "2", "totalSetSize": "2", "startPosition": "0", "endPosition": "1",
        "envelopes": [listed("env-rc-done", "completed"), listed("env-rc-open", "sent")]
    });
    let api = Simulator::start(
        "/restapi/v2.1/accounts/acc-1",
        vec![
            (
                "/envelopes",
                vec![Answer::ok(
                    "application/json",
                    &serde_json::to_vec(&list).unwrap(),
                )],
            ),
            (
                "/envelopes/env-rc-done",
                vec![envelope("env-rc-done", "completed")],
            ),
            // Still open: asked again by the second run, nothing to add.
            (
                "/envelopes/env-rc-open",
                vec![envelope("env-rc-open", "sent")],
            ),
            (
                "/envelopes/env-rc-done/documents/combined",
                vec![Answer::ok("application/pdf", &pdf)],
            ),
        ],
    )
    .await;
    let stack = Stack::start_with(Options {
        apis: vec![("dg", api.base_url.clone())],
        ..Options::default()
    })
    .await;
    stack.reconciles("dg", 2, 2).await;
    assert_reconciled(&stack, "dg", "env-rc-done", "completed", &pdf).await;
    let (_, open) = stack
        .get_json("/signing/activity/env-rc-open?source=dg")
        .await;
    assert_eq!(open[0]["status"], "created");
}

#[tokio::test(flavor = "multi_thread")]
async fn pandadoc_documents_listed_without_their_notifications_are_reconciled_once() {
    let pdf = b"%PDF-1.7 PandaDoc protected, reconciled".to_vec();
    let listed = |id: &str, status: &str| {
        let mut document = json("pandadoc", "DocumentStatusResponse.json");
        document["id"] = id.into();
        document["uuid"] = id.into();
        document["status"] = status.into();
        document
    };
    let list = serde_json::json!({
        "results": [listed("pd-rc-done", "document.completed"), listed("pd-rc-open", "document.sent")]
    });
    let api = Simulator::start(
        "/public/v1",
        vec![
            (
                "/documents",
                vec![Answer::ok(
                    "application/json",
                    &serde_json::to_vec(&list).unwrap(),
                )],
            ),
            (
                "/documents/pd-rc-done",
                vec![document_status("pd-rc-done", "document.completed")],
            ),
            (
                "/documents/pd-rc-open",
                vec![document_status("pd-rc-open", "document.sent")],
            ),
            (
                "/documents/pd-rc-done/download-protected",
                vec![Answer::ok("application/pdf", &pdf)],
            ),
        ],
    )
    .await;
    let stack = Stack::start_with(Options {
        apis: vec![("pd", api.base_url.clone())],
        ..Options::default()
    })
    .await;
    stack.reconciles("pd", 2, 2).await;
    assert_reconciled(&stack, "pd", "pd-rc-done", "completed", &pdf).await;
    let (_, open) = stack
        .get_json("/signing/activity/pd-rc-open?source=pd")
        .await;
    assert_eq!(open[0]["status"], "created");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_legalesign_all_source_reconciles_rejected_and_removed_documents_not_only_signed_ones() {
    let document = |uuid: &str, status: i64| {
        let mut d = json("legalesign", "DocumentResponse.json");
        d["uuid"] = uuid.into();
        d["resource_uri"] = format!("/api/v1/document/{uuid}/").into();
        d["group"] = "/api/v1/group/g/".into();
        d["status"] = status.into();
        d["modified"] = "2026-12-07T09:30:00".into();
        d
    };
    let list = serde_json::json!({
        "meta": {"limit": 100, "offset": 0, "total_count": 3, "next": null, "previous": null},
        "objects": [document("d-signed", 30), document("d-rejected", 50), document("d-removed", 40)]});
    let api = Simulator::start(
        "/api/v1",
        vec![(
            "/document/",
            vec![Answer::ok(
                "application/json",
                &serde_json::to_vec(&list).unwrap(),
            )],
        )],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (key, certificate) = countersign_testkit::self_signed_certificate(dir.path());
    let stack = Stack::start_with(Options {
        legalesign_certificate: Some(certificate),
        legalesign_all_api: Some(api.base_url.clone()),
        ..Options::default()
    })
    .await;
    // The "all" callback told of d-signed's signing; the rejection and the removal never came.
    let data = r#"[{"timestamp": "2026-12-07T09:30:00", "name": "status", "value": "30", "resource_uri": "/api/v1/document/d-signed/"}]"#;
    let batch = countersign_providers::legalesign::signed_form(&key, data).unwrap();
    assert_eq!(
        stack
            .post_to(
                "uk",
                batch.as_bytes(),
                &[("content-type", "application/x-www-form-urlencoded")]
            )
            .await,
        200
    );
    stack.wait_for_events(1).await;

    stack.reconciles("uk", 2, 3).await;
    for (uuid, status) in [
        ("d-signed", "completed"),
        ("d-rejected", "canceled"),
        ("d-removed", "canceled"),
    ] {
        let (_, view) = stack
            .get_json(&format!("/signing/activity/{uuid}?source=uk"))
            .await;
        assert_eq!(view[0]["status"], status, "{uuid}");
    }
    let listed = api.seen();
    assert!(
        listed.iter().all(|s| s.path.starts_with(
            "/api/v1/document/?cache=1&group=%2Fapi%2Fv1%2Fgroup%2Fg%2F&modified_gt="
        ) && s.authorization.as_deref()
            == Some(format!("ApiKey {}", crate::helpers::LS_API_CREDENTIALS).as_str())),
        "{listed:?}"
    );
    assert_eq!(stack.queue_len(stack.topology.dead_queue()).await, 0);
}
