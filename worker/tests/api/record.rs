//! What the worker records: the raw archive, the projection, the documents.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::helpers::{Stack, taktikal, taktikal_with};

/// Rows of the projection of one process, as comparable text.
async fn projection(stack: &Stack, process_key: &str) -> Vec<String> {
    let mut rows: Vec<String> = Vec::new();
    for sql in [
        "SELECT concat_ws('|', status, status_rank, flow_key, created_at, updated_at) FROM signing_processes WHERE process_key = $1",
        "SELECT concat_ws('|', signee_key, name, ssn, signed, signed_at, created_at, updated_at) FROM signees WHERE process_key = $1 ORDER BY signee_key",
        "SELECT concat_ws('|', entry_key, status, description, created_at) FROM activity WHERE process_key = $1 ORDER BY entry_key",
        "SELECT concat_ws('|', kind, file_name, content_key, size) FROM documents WHERE process_key = $1 ORDER BY kind, content_key",
    ] {
        let found: Vec<String> = sqlx::query_scalar(sql)
            .bind(process_key)
            .fetch_all(&stack.db)
            .await
            .unwrap();
        rows.extend(found);
    }
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_events_become_rows_and_the_signed_pdf_is_served() {
    let stack = Stack::start().await;
    let pdf: Vec<u8> = b"%PDF-1.7\n"
        .iter()
        .copied()
        .chain((0..200_000u32).map(|i| (i * 7 % 251) as u8))
        .collect();
    let pdf_sha256 = format!("{:x}", Sha256::digest(&pdf));

    let (_, created) = taktikal_with("sp-e2e", 11, |e| {
        e["EventData"]
            .as_object_mut()
            .unwrap()
            .remove("SignedDocument");
    });
    let (all_signed_id, all_signed) = taktikal_with("sp-e2e", 2, |e| {
        e["EventData"]["SignedDocument"] = base64::engine::general_purpose::STANDARD
            .encode(&pdf)
            .into();
    });
    assert_eq!(stack.post(&created).await, 200);
    assert_eq!(stack.post(&all_signed).await, 200);
    stack.wait_for_events(2).await;

    let (body, deliveries, event_type): (Vec<u8>, i32, String) = sqlx::query_as(
        "SELECT body, deliveries, event_type FROM webhook_events WHERE event_id = $1",
    )
    .bind(&all_signed_id)
    .fetch_one(&stack.db)
    .await
    .unwrap();
    assert_eq!(
        body, all_signed,
        "the archive holds the request body, byte for byte"
    );
    assert_eq!((deliveries, event_type.as_str()), (1, "AllSigned"));
    let headers: serde_json::Value =
        sqlx::query_scalar("SELECT headers FROM webhook_events WHERE event_id = $1")
            .bind(&all_signed_id)
            .fetch_one(&stack.db)
            .await
            .unwrap();
    assert_eq!(headers["x-provider"], "taktikal");
    assert_eq!(headers["x-verified-key"], "env:ACME_KEY");

    let status: String =
        sqlx::query_scalar("SELECT status FROM signing_processes WHERE process_key = 'sp-e2e'")
            .fetch_one(&stack.db)
            .await
            .unwrap();
    assert_eq!(status, "all_signed");
    assert_eq!(
        stack
            .count("SELECT count(*) FROM signees WHERE process_key = 'sp-e2e' AND signed")
            .await,
        1
    );
    let activity: Vec<String> = sqlx::query_scalar(
        "SELECT status FROM activity WHERE process_key = 'sp-e2e' ORDER BY status",
    )
    .fetch_all(&stack.db)
    .await
    .unwrap();
    assert_eq!(
        activity,
        ["Completed", "Created", "SigneeAdded", "SigneeSigned"]
    );

    let stored: String = sqlx::query_scalar(
        "SELECT sha256 FROM documents WHERE process_key = 'sp-e2e' AND kind = 'signed'",
    )
    .fetch_one(&stack.db)
    .await
    .unwrap();
    assert_eq!(
        stored, pdf_sha256,
        "stored under the sha256 of the decoded PDF"
    );
    let response = stack
        .http
        .get(format!("{}/documents/{pdf_sha256}", stack.worker))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/pdf");
    assert_eq!(response.bytes().await.unwrap().as_ref(), pdf.as_slice());
    let missing = stack
        .http
        .get(format!("{}/documents/{}", stack.worker, "0".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_event_three_times_is_one_row_counting_three_deliveries() {
    let stack = Stack::start().await;
    let (id, body) = taktikal("sp-thrice", 2);
    assert_eq!(stack.post(&body).await, 200);
    stack.wait_for_events(1).await;
    let first = projection(&stack, "sp-thrice").await;
    assert!(!first.is_empty());

    assert_eq!(stack.post(&body).await, 200);
    assert_eq!(stack.post(&body).await, 200);
    crate::helpers::wait_until(
        "three deliveries",
        std::time::Duration::from_secs(30),
        || async {
            stack
                .count("SELECT coalesce(max(deliveries), 0)::bigint FROM webhook_events")
                .await
                == 3
        },
    )
    .await;
    assert_eq!(stack.count("SELECT count(*) FROM webhook_events").await, 1);
    let (event_id,): (String,) = sqlx::query_as("SELECT event_id FROM webhook_events")
        .fetch_one(&stack.db)
        .await
        .unwrap();
    assert_eq!(event_id, id);
    assert_eq!(
        projection(&stack, "sp-thrice").await,
        first,
        "the projection is unchanged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_order_events_never_move_a_process_backwards() {
    let stack = Stack::start().await;
    let status = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT status FROM signing_processes WHERE process_key = 'sp-order'",
        )
        .fetch_one(&stack.db)
        .await
        .unwrap()
    };
    // AllSigned arrives before the SignedDocument that preceded it.
    let (_, all_signed) = taktikal("sp-order", 2);
    let (_, signed_document) = taktikal("sp-order", 1);
    let (_, created) = taktikal("sp-order", 11);
    assert_eq!(stack.post(&all_signed).await, 200);
    assert_eq!(stack.post(&signed_document).await, 200);
    assert_eq!(stack.post(&created).await, 200);
    stack.wait_for_events(3).await;
    assert_eq!(status().await, "all_signed");

    let (_, completed) = taktikal("sp-order", 10);
    assert_eq!(stack.post(&completed).await, 200);
    stack.wait_for_events(4).await;
    assert_eq!(status().await, "completed");

    let (_, late_signature) = taktikal("sp-order", 1);
    assert_eq!(stack.post(&late_signature).await, 200);
    stack.wait_for_events(5).await;
    assert_eq!(status().await, "completed");
    // Each fact is one activity entry, however many events told it.
    assert_eq!(
        stack.count("SELECT count(*) FROM activity WHERE process_key = 'sp-order' AND status = 'SigneeSigned'").await,
        1
    );
}
