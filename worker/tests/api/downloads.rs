//! Issue 16: documents that webhooks only announce, downloaded from the provider's API (a
//! simulator) before the event is recorded, through the same retry path as everything else.

use std::time::Duration;

use crate::helpers::{
    LS_API_CREDENTIALS, Options, Stack, UK_TOKEN, UniversignStack, header, wait_until,
};
use crate::simulator::{Answer, Simulator};
use countersign_providers::dropbox_sign;

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// `GET /document/{uuid}/`'s answer (Legalesign's OpenAPI example of a document, signed now)
/// stating `content`'s sha256 as its `hash_value`, on its route.
pub fn legalesign_document(uuid: &str, content: &[u8]) -> (String, Vec<Answer>) {
    use sha2::Digest as _;
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../providers/tests/fixtures/legalesign/DocumentResponse.json");
    let mut document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
    document["uuid"] = uuid.into();
    document["resource_uri"] = format!("/api/v1/document/{uuid}/").into();
    document["status"] = 30.into();
    document["hash_value"] = countersign_providers::hex(&sha2::Sha256::digest(content)).into();
    (
        format!("/document/{uuid}/"),
        vec![Answer::ok(
            "application/json",
            &serde_json::to_vec(&document).unwrap(),
        )],
    )
}

fn signed_callback(uuid: &str) -> Vec<u8> {
    format!(
        "resource_uri=%2Fapi%2Fv1%2Fdocument%2F{uuid}%2F&group=%2Fapi%2Fv1%2Fgroup%2Fg%2F&name=Lease&uuid={uuid}&tag=t"
    )
    .into_bytes()
}

async fn legalesign_stack(api: &Simulator) -> (Stack, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (_, certificate) = countersign_testkit::self_signed_certificate(dir.path());
    let stack = Stack::start_with(Options {
        legalesign_certificate: Some(certificate),
        legalesign_api: Some(api.base_url.clone()),
        ..Options::default()
    })
    .await;
    (stack, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_legalesign_signed_callback_brings_the_final_pdf_from_the_api_even_after_failures() {
    let pdf = b"%PDF-1.7 final, signed by all".to_vec();
    // The API is down twice (503, then "being de-archived"), then serves the PDF.
    let (document, stated) = legalesign_document("doc-dl-1", &pdf);
    let api = Simulator::start(
        "/api/v1",
        vec![
            (
                "/pdf/doc-dl-1/",
                vec![
                    Answer::status(503),
                    Answer::status(201),
                    Answer::ok("application/pdf", &pdf),
                ],
            ),
            // Its hash_value, against which the download is checked.
            (&document, stated),
        ],
    )
    .await;
    let (stack, _dir) = legalesign_stack(&api).await;
    assert_eq!(
        stack
            .post_to(
                &format!("uk-events/{UK_TOKEN}"),
                &signed_callback("doc-dl-1"),
                &[FORM]
            )
            .await,
        200
    );
    stack.wait_for_events(1).await;

    assert_eq!(stack.signed_document("doc-dl-1").await, pdf);
    let (_, view) = stack
        .get_json("/signing/activity/doc-dl-1?source=uk-events")
        .await;
    assert_eq!(view[0]["status"], "completed");
    let seen = api.seen();
    let downloads: Vec<_> = seen.iter().filter(|s| s.path.contains("/pdf/")).collect();
    assert_eq!(
        downloads.len(),
        3,
        "two failures, then the download: {seen:?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|s| s.path == "/api/v1/document/doc-dl-1/")
            .count(),
        4,
        "the document's state confirmed before each of the three attempts (the callback's token \
         proves nothing about its body), its hash_value once after the download"
    );
    assert_eq!(view[0]["verified"], "signature+api");
    assert_eq!(view[0].get("unconfirmed"), None);
    for request in &seen {
        assert!(request.path.ends_with("/doc-dl-1/"), "{}", request.path);
        assert_eq!(
            request.authorization.as_deref(),
            Some(format!("ApiKey {LS_API_CREDENTIALS}").as_str())
        );
    }
    // Nothing duplicated: one event, one delivery, one signed document.
    assert_eq!(stack.count("SELECT count(*) FROM webhook_events").await, 1);
    assert_eq!(
        stack
            .count("SELECT max(deliveries)::bigint FROM webhook_events")
            .await,
        1
    );
    assert_eq!(
        stack
            .count("SELECT count(*) FROM documents WHERE kind = 'signed'")
            .await,
        1
    );
    assert_eq!(stack.queue_len(stack.topology.dead_queue()).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_that_keeps_failing_parks_its_message_with_the_reason_and_blocks_nothing() {
    let pdf = b"%PDF-1.7 the other one".to_vec();
    let (fine, fine_stated) = legalesign_document("doc-fine", &pdf);
    // A third one's PDF is not what its hash_value says (altered, or a wrong document served).
    let (tampered, tampered_stated) = legalesign_document("doc-tampered", b"%PDF-1.7 as signed");
    // Signed, as its state says; its PDF is not served.
    let (missing, missing_stated) = legalesign_document("doc-missing", b"");
    // A "signed" callback for a document Legalesign's API says was rejected (status 50): the
    // callback's URL token proves nothing about its body.
    let (rejected, mut rejected_state) = legalesign_document("doc-rejected", b"");
    let mut document: serde_json::Value = serde_json::from_slice(&rejected_state[0].body).unwrap();
    document["status"] = 50.into();
    rejected_state[0].body = serde_json::to_vec(&document).unwrap();
    let api = Simulator::start(
        "/api/v1",
        vec![
            ("/pdf/doc-missing/", vec![Answer::status(404)]),
            (&missing, missing_stated),
            (&rejected, rejected_state),
            ("/pdf/doc-fine/", vec![Answer::ok("application/pdf", &pdf)]),
            (&fine, fine_stated),
            (
                "/pdf/doc-tampered/",
                vec![Answer::ok("application/pdf", b"%PDF-1.7 altered")],
            ),
            (&tampered, tampered_stated),
        ],
    )
    .await;
    let (stack, _dir) = legalesign_stack(&api).await;
    for uuid in ["doc-missing", "doc-fine", "doc-tampered", "doc-rejected"] {
        assert_eq!(
            stack
                .post_to(
                    &format!("uk-events/{UK_TOKEN}"),
                    &signed_callback(uuid),
                    &[FORM]
                )
                .await,
            200
        );
    }
    // The other document is recorded while the first one waits for its retries.
    wait_until("doc-fine is recorded", Duration::from_secs(30), || async {
        stack
            .count("SELECT count(*) FROM documents WHERE process_key = 'doc-fine'")
            .await
            == 1
    })
    .await;
    assert_eq!(stack.signed_document("doc-fine").await, pdf);
    // 1 s + 2 s + 4 s of retries, then the parking lot, with the reason.
    wait_until(
        "three messages are parked",
        Duration::from_secs(60),
        || async { stack.queue_len(stack.topology.dead_queue()).await == 3 },
    )
    .await;
    let mut parked = stack.drain(stack.topology.dead_queue()).await;
    let contradicted = parked
        .iter()
        .position(|m| header(m, "x-dead-kind") == Some("contradicted"))
        .expect("the rejected document's claim");
    assert_eq!(
        header(&parked.remove(contradicted), "x-dead-reason"),
        Some(
            "the webhook claims completed for doc-rejected; legalesign_event's API reports canceled"
        )
    );
    let reasons: Vec<String> = parked
        .iter()
        .map(|m| {
            assert_eq!(header(m, "x-dead-kind"), Some("retries_exhausted"));
            header(m, "x-dead-reason").unwrap_or_default().to_owned()
        })
        .collect();
    let missing = reasons.iter().find(|r| r.contains("doc-missing")).unwrap();
    assert!(
        missing.contains("document download") && missing.contains("HTTP 404"),
        "{missing}"
    );
    let tampered = reasons.iter().find(|r| r.contains("doc-tampered")).unwrap();
    assert!(
        tampered.contains("the content's sha256")
            && tampered.contains("is not the")
            && tampered.contains("/document/doc-tampered/"),
        "{tampered}"
    );
    assert_eq!(
        stack
            .count("SELECT count(*) FROM documents WHERE process_key = 'doc-tampered'")
            .await,
        0,
        "a PDF that is not the one signed is never recorded"
    );
    let parked = reasons.join("\n");
    assert!(
        !parked.contains(LS_API_CREDENTIALS),
        "no credentials in the reason"
    );
    assert_eq!(stack.count("SELECT count(*) FROM webhook_events").await, 1);
    assert_eq!(
        api.seen()
            .iter()
            .filter(|s| s.path.ends_with("/pdf/doc-missing/"))
            .count(),
        4,
        "the first attempt and three retries"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_universign_completed_transaction_brings_its_signed_documents_from_the_api() {
    let contract = b"%PDF-1.7 contract, signed".to_vec();
    let annex = b"%PDF-1.7 annex, signed".to_vec();
    let transaction = br#"{"object":"transaction","id":"tx_DL1","state":"completed","documents":[{"object":"document","id":"doc_A","name":"Contract"},{"object":"document","id":"doc_B","name":"Annex"}]}"#;
    let api = Simulator::start(
        "",
        vec![
            // The listing fails once (the API is briefly away), then answers.
            (
                "/v1/transactions/tx_DL1",
                vec![
                    Answer::status(500),
                    Answer::ok("application/json", transaction),
                ],
            ),
            (
                "/v1/transactions/tx_DL1/archive/documents/doc_A/download",
                vec![Answer::ok("application/pdf", &contract)],
            ),
            (
                "/v1/transactions/tx_DL1/archive/documents/doc_B/download",
                vec![Answer::ok("application/pdf", &annex)],
            ),
            // A transaction completed more than 60 days ago: archived, its documents in the
            // archives (its webhook replayed from Countersign's archive, say).
            (
                "/v1/transactions/tx_OLD",
                vec![Answer::ok(
                    "application/json",
                    br#"{"object":"transaction","id":"tx_OLD","state":"archived","documents":[{"object":"document","id":"doc_O","name":"Lease"}]}"#,
                )],
            ),
            (
                "/v1/archives/tx_OLD/documents/doc_O/download",
                vec![Answer::ok("application/pdf", b"%PDF-1.7 lease, archived")],
            ),
            // "Completed", says a (genuinely signed, replayed) event; cancelled, says the API.
            (
                "/v1/transactions/tx_CAN",
                vec![Answer::ok(
                    "application/json",
                    br#"{"object":"transaction","id":"tx_CAN","state":"cancelled","documents":[]}"#,
                )],
            ),
        ],
    )
    .await;
    let universign = UniversignStack::start(&api.base_url, false).await;
    let stack = &universign.stack;
    assert_eq!(
        universign
            .post_lifecycle("evt_dl", "completed", "tx_DL1")
            .await,
        200
    );
    wait_until("both signed documents are stored", Duration::from_secs(30), || async {
        stack
            .count("SELECT count(*) FROM documents WHERE process_key = 'tx_DL1' AND kind = 'signed'")
            .await
            == 2
    })
    .await;
    let stored: Vec<(String, String)> = sqlx::query_as(
        "SELECT file_name, sha256 FROM documents WHERE process_key = 'tx_DL1' ORDER BY file_name",
    )
    .fetch_all(&stack.db)
    .await
    .unwrap();
    assert_eq!(stored[0].0, "Annex.pdf");
    assert_eq!(stored[1].0, "Contract.pdf");
    for ((_, sha256), expected) in stored.iter().zip([&annex, &contract]) {
        let served = stack
            .http
            .get(format!("{}/documents/{sha256}", stack.worker))
            .send()
            .await
            .unwrap();
        assert_eq!(served.bytes().await.unwrap().as_ref(), expected.as_slice());
    }
    for request in api.seen() {
        assert_eq!(
            request.authorization.as_deref(),
            Some(format!("Bearer {}", crate::helpers::UV_API_KEY).as_str())
        );
    }
    assert_eq!(stack.count("SELECT count(*) FROM webhook_events").await, 1);
    assert_eq!(
        universign
            .post_lifecycle("evt_old", "completed", "tx_OLD")
            .await,
        200
    );
    stack.wait_for_events(2).await;
    assert_eq!(
        stack.signed_document("tx_OLD").await,
        b"%PDF-1.7 lease, archived"
    );
    assert_eq!(
        universign
            .post_lifecycle("evt_can", "completed", "tx_CAN")
            .await,
        200
    );
    let parked = stack.parked_one().await;
    assert_eq!(header(&parked, "x-dead-kind"), Some("contradicted"));
    assert_eq!(
        header(&parked, "x-dead-reason"),
        Some("the webhook claims completed for tx_CAN; universign's API reports canceled")
    );
}

/// Dropbox Sign's callback (the SDK's example, `providers/tests/fixtures/dropbox_sign/`) made the
/// `signature_request_all_signed` of request `id`, hashed now with the source's API key.
fn dropbox_all_signed(id: &str, files_url: &str) -> Vec<u8> {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../providers/tests/fixtures/dropbox_sign/EventCallbackAccountSignatureRequestSent.json",
    );
    let mut callback: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
    let kind = "signature_request_all_signed";
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    callback["event"]["event_type"] = kind.into();
    callback["event"]["event_hash"] =
        dropbox_sign::event_hash(crate::helpers::DX_SECRET.as_bytes(), &time, kind).into();
    callback["event"]["event_time"] = time.into();
    // The request's own event: no signer is its subject.
    callback["event"]["event_metadata"]["related_signature_id"] = serde_json::Value::Null;
    callback["signature_request"]["signature_request_id"] = id.into();
    callback["signature_request"]["is_complete"] = true.into();
    callback["signature_request"]["files_url"] = files_url.into();
    serde_json::to_vec(&callback).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropbox_sign_completion_brings_the_merged_pdf_from_the_api_never_from_the_bodys_url() {
    use base64::Engine as _;
    let pdf = b"%PDF-1.7 merged by Dropbox Sign, signed by all".to_vec();
    let preparing = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../providers/tests/fixtures/dropbox_sign/Error409Response.json"),
    )
    .unwrap();
    // The request is complete; its files are being prepared (409, Dropbox Sign's error body),
    // then served.
    let api = Simulator::start(
        "/v3",
        vec![
            (
                "/signature_request/dx-dl-1",
                vec![dropbox_state("dx-dl-1", |_| {})],
            ),
            (
                "/signature_request/files/dx-dl-1",
                vec![
                    Answer {
                        body: preparing,
                        ..Answer::status(409)
                    },
                    Answer::ok("application/pdf", &pdf),
                ],
            ),
        ],
    )
    .await;
    // The body's files_url is not signed: whoever forged it would get the API key sent there.
    let elsewhere = Simulator::start("/steal", vec![]).await;
    let stack = Stack::start_with(Options {
        apis: vec![("dx", api.base_url.clone())],
        ..Options::default()
    })
    .await;
    let json = dropbox_all_signed("dx-dl-1", &format!("{}/files", elsewhere.base_url));
    let (body, content_type) = dropbox_sign::multipart(&json, "b-dl");
    let response = stack
        .send_to("dx", &body, &[("content-type", &content_type)])
        .await;
    assert_eq!(response.status(), 200);
    stack.wait_for_events(1).await;

    assert_eq!(stack.signed_document("dx-dl-1").await, pdf);
    let seen: Vec<_> = api
        .seen()
        .into_iter()
        .filter(|s| s.path.contains("/files/"))
        .collect();
    assert_eq!(seen.len(), 2, "409 while preparing, then the PDF: {seen:?}");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:", crate::helpers::DX_SECRET))
    );
    for request in &seen {
        assert_eq!(
            request.path,
            "/v3/signature_request/files/dx-dl-1?file_type=pdf"
        );
        assert_eq!(request.authorization.as_deref(), Some(basic.as_str()));
    }
    assert!(elsewhere.seen().is_empty(), "{:?}", elsewhere.seen());
    assert_eq!(
        stack
            .count("SELECT count(*) FROM documents WHERE kind = 'signed' AND source = 'dx' AND sha256 IS NOT NULL")
            .await,
        1
    );
    let (_, view) = stack.get_json("/signing/activity/dx-dl-1?source=dx").await;
    assert_eq!(view[0]["status"], "all_signed");
    assert_eq!(view[0]["verified"], "signature+api");
    assert_eq!(view[0].get("unconfirmed"), None);
    assert_eq!(stack.queue_len(stack.topology.dead_queue()).await, 0);
}

/// `GET /signature_request/{id}`'s answer (the OpenAPI description's example, a complete
/// request) for request `id`, changed by `change`.
pub fn dropbox_state(id: &str, change: impl FnOnce(&mut serde_json::Value)) -> Answer {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../providers/tests/fixtures/dropbox_sign/SignatureRequestGetResponse.json");
    let mut answer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
    answer["signature_request"]["signature_request_id"] = id.into();
    change(&mut answer);
    Answer::ok("application/json", &serde_json::to_vec(&answer).unwrap())
}

/// Dropbox Sign's hash covers only the event's time and type: a captured completion's hash
/// carried by a body about another request (inside the window) verifies. With the source's API,
/// the claim is checked before anything is recorded.
#[tokio::test(flavor = "multi_thread")]
async fn dropbox_sign_claims_are_confirmed_with_the_api_and_a_contradicted_one_is_parked() {
    let pdf = b"%PDF-1.7 dx-lag".to_vec();
    let api = Simulator::start(
        "/v3",
        vec![
            // The API lags the webhook once (still in progress), then reports it complete.
            (
                "/signature_request/dx-lag",
                vec![
                    dropbox_state("dx-lag", |a| {
                        a["signature_request"]["is_complete"] = false.into();
                    }),
                    dropbox_state("dx-lag", |_| {}),
                ],
            ),
            (
                "/signature_request/files/dx-lag",
                vec![Answer::ok("application/pdf", &pdf)],
            ),
            // The webhook claims all signed; the API says the request was declined.
            (
                "/signature_request/dx-forged",
                vec![dropbox_state("dx-forged", |a| {
                    a["signature_request"]["is_complete"] = false.into();
                    a["signature_request"]["is_declined"] = true.into();
                })],
            ),
        ],
    )
    .await;
    let stack = Stack::start_with(Options {
        apis: vec![("dx", api.base_url.clone())],
        ..Options::default()
    })
    .await;
    for (id, boundary) in [("dx-lag", "b-lag"), ("dx-forged", "b-forged")] {
        let json = dropbox_all_signed(id, "https://api.hellosign.com/v3/signature_request/files/x");
        let (body, content_type) = dropbox_sign::multipart(&json, boundary);
        let response = stack
            .send_to("dx", &body, &[("content-type", &content_type)])
            .await;
        assert_eq!(response.status(), 200);
    }

    // The contradicted claim: parked at once with the claim and the API's answer, never recorded.
    wait_until(
        "the forged claim is parked",
        Duration::from_secs(30),
        || async { stack.queue_len(stack.topology.dead_queue()).await == 1 },
    )
    .await;
    let parked = stack.drain(stack.topology.dead_queue()).await;
    assert_eq!(parked.len(), 1);
    assert_eq!(header(&parked[0], "x-dead-kind"), Some("contradicted"));
    assert_eq!(
        header(&parked[0], "x-dead-reason"),
        Some("the webhook claims all_signed for dx-forged; dropbox_sign's API reports canceled")
    );
    let (status, _) = stack
        .get_json("/signing/activity/dx-forged?source=dx")
        .await;
    assert_eq!(status, 404, "a contradicted claim is never recorded");

    // The lagging one: retried, then recorded as confirmed.
    stack.wait_for_events(1).await;
    let (_, view) = stack.get_json("/signing/activity/dx-lag?source=dx").await;
    assert_eq!(view[0]["status"], "all_signed");
    assert_eq!(view[0]["verified"], "signature+api");
    let asked = api
        .seen()
        .iter()
        .filter(|s| s.path == "/v3/signature_request/dx-lag")
        .count();
    assert_eq!(asked, 2, "asked again after the API lagged");
}
