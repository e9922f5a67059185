//! The read API: Taktikal's ActivityLog shape, time ranges, tokens.

use std::collections::BTreeSet;

use countersign_testkit::taktikal_activity_example;

use crate::helpers::{Options, READ_TOKEN, Stack, taktikal, taktikal_with};

fn keys(value: &serde_json::Value) -> BTreeSet<String> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
}

fn is_taktikal_time(text: &str) -> bool {
    // 2019-11-08T11:03:49.0700000Z
    text.len() == 28
        && text.ends_with('Z')
        && text.as_bytes()[19] == b'.'
        && chrono::DateTime::parse_from_rfc3339(text).is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_activity_api_answers_in_the_shape_of_taktikals_activity_log() {
    let stack = Stack::start().await;
    for event_type in [11, 1, 2] {
        let (_, body) = taktikal("spa2f3e", event_type);
        assert_eq!(stack.post(&body).await, 200);
    }
    stack.wait_for_events(3).await;

    let (status, ours) = stack.get_json("/signing/activity/spa2f3e").await;
    assert_eq!(status, 200);
    let example = taktikal_activity_example();
    let (ours, example) = (&ours[0], &example[0]);
    assert!(
        keys(example).is_subset(&keys(ours)),
        "top-level keys {:?} ⊇ {:?}",
        keys(ours),
        keys(example)
    );
    assert_eq!(ours["processKey"], "spa2f3e");
    assert_eq!(ours["status"], "all_signed");
    assert!(
        ours["metadata"]["pdfFieldData"]
            .as_str()
            .unwrap()
            .contains("Nafn"),
        "Taktikal's Meta is kept"
    );

    // Every entry kind we produce has exactly the keys of the same kind in the example.
    let entries = ours["activityLog"].as_array().unwrap();
    let statuses: Vec<&str> = entries
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["Created", "SigneeAdded", "SigneeSigned", "Completed"]
    );
    for entry in entries {
        let status = entry["status"].as_str().unwrap();
        let theirs = example["activityLog"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["status"] == status)
            .unwrap_or_else(|| panic!("the example has a {status} entry"));
        let mut expected = keys(theirs);
        // The example names a file on process entries; a webhook does not say which file.
        expected.remove("fileName");
        if status == "Completed" {
            // Taktikal files "Completed" under the last signee; for us it is the process's.
            expected.remove("signeeKey");
        }
        assert_eq!(keys(entry), expected, "{status} entry");
        assert!(
            is_taktikal_time(entry["createdAt"].as_str().unwrap()),
            "{}",
            entry["createdAt"]
        );
    }

    let signee = &ours["signees"][0];
    let mut expected = keys(&example["signees"][0]);
    // The documented event has no postal code and an empty e-mail.
    expected.remove("postalCode");
    expected.remove("email");
    let mut ours_keys = keys(signee);
    ours_keys.remove("signed");
    ours_keys.remove("signedAt");
    assert_eq!(ours_keys, expected);
    assert_eq!(signee["ssn"], "1234567890");
    assert!(is_taktikal_time(signee["updatedAt"].as_str().unwrap()));

    let (status, missing) = stack.get_json("/signing/activity/sp-nobody").await;
    assert_eq!(
        (status, missing["error"].as_str()),
        (404, Some("no such signing process"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn activity_by_time_range_and_source() {
    let stack = Stack::start().await;
    let (_, old) = taktikal_with("sp-old", 2, |e| {
        e["EventData"]["Signees"][0]["SignedAt"] = "2020-01-01T00:00:00Z".into();
    });
    let (_, new) = taktikal("sp-new", 11);
    assert_eq!(stack.post(&old).await, 200);
    assert_eq!(stack.post(&new).await, 200);
    stack.wait_for_events(2).await;

    let keys_of = |value: serde_json::Value| -> Vec<String> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["processKey"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, all) = stack.get_json("/signing/activity?source=acme").await;
    assert_eq!(status, 200);
    assert_eq!(keys_of(all).len(), 2);
    let (_, early) = stack.get_json("/signing/activity?source=acme&StartDate=2019-12-31T00:00:00Z&EndDate=2020-01-02T00:00:00Z").await;
    assert_eq!(keys_of(early), ["sp-old"]);
    let (_, none) = stack.get_json("/signing/activity?source=other").await;
    assert_eq!(keys_of(none), Vec::<String>::new());
    let (status, _) = stack
        .get_json("/signing/activity?StartDate=yesterday")
        .await;
    assert_eq!(status, 400);
}

/// A process key asked for without a source is looked up in every source that has processes
/// (the sources found by walking the primary key, not by reading every process): each source
/// holding the key answers, in source order, before and after the one webhooks came through.
#[tokio::test(flavor = "multi_thread")]
async fn a_process_key_without_a_source_is_found_in_every_source_that_has_it() {
    let stack = Stack::start().await;
    let (_, event) = taktikal("sp-shared", 11);
    assert_eq!(stack.post(&event).await, 200);
    stack.wait_for_events(1).await;
    // The same process in sources before and after `acme`, and a source without it between.
    for (source, key) in [
        ("a-before", "sp-shared"),
        ("m-between", "sp-elsewhere"),
        ("zz-after", "sp-shared"),
    ] {
        sqlx::query(
            "INSERT INTO signing_processes
             SELECT (jsonb_populate_record(NULL::signing_processes,
                     to_jsonb(p) || jsonb_build_object('source', $1::text, 'process_key', $2::text))).*
             FROM signing_processes p WHERE source = 'acme' AND process_key = 'sp-shared'",
        )
        .bind(source)
        .bind(key)
        .execute(&stack.db)
        .await
        .unwrap();
    }
    let sources_of = |value: &serde_json::Value| -> Vec<String> {
        value
            .as_array()
            .unwrap_or_else(|| panic!("a list: {value}"))
            .iter()
            .map(|p| p["source"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, every) = stack.get_json("/signing/activity/sp-shared").await;
    assert_eq!(status, 200);
    assert_eq!(sources_of(&every), ["a-before", "acme", "zz-after"]);
    assert_eq!(every[1]["status"], "created");
    let (_, one) = stack
        .get_json("/signing/activity/sp-shared?source=zz-after")
        .await;
    assert_eq!(sources_of(&one), ["zz-after"]);
    let (_, between) = stack.get_json("/signing/activity/sp-elsewhere").await;
    assert_eq!(sources_of(&between), ["m-between"]);
    let (status, _) = stack
        .get_json("/signing/activity/sp-shared?source=m-between")
        .await;
    assert_eq!(status, 404);
}

/// A NUL byte in a key, a source or a document id (PostgreSQL's text cannot hold one) was
/// answered 503 "database unavailable" with an ERROR line per request: it is the request's
/// fault, a 400, and the API goes on answering.
#[tokio::test(flavor = "multi_thread")]
async fn a_nul_byte_in_a_key_source_or_id_is_a_bad_request_not_an_unavailable_database() {
    let stack = Stack::start().await;
    let (_, event) = taktikal("sp-nul", 11);
    assert_eq!(stack.post(&event).await, 200);
    stack.wait_for_events(1).await;
    for path in [
        "/signing/activity/sp-nul%00",
        "/signing/activity/sp-nul?source=acme%00",
        "/signing/activity?source=%00",
        "/documents/%00",
    ] {
        let (status, body) = stack.get_json(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains("NUL"), "{body}");
    }
    let (status, found) = stack.get_json("/signing/activity/sp-nul").await;
    assert_eq!(
        (status, found[0]["processKey"].as_str()),
        (200, Some("sp-nul"))
    );
}

/// Issue 12: a 200,000-entry process gave a 62 MB response even with `Take=1000`. A process's
/// activity log comes a page at a time (1,000 at most), with the total.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_activity_log_comes_a_page_at_a_time() {
    let stack = Stack::start().await;
    let (_, event) = taktikal("sp-long", 11);
    assert_eq!(stack.post(&event).await, 200);
    stack.wait_for_events(1).await;
    let recorded = stack
        .count("SELECT count(*) FROM activity WHERE process_key = 'sp-long'")
        .await;
    sqlx::query(
        "INSERT INTO activity (source, process_key, entry_key, status, description, created_at, created_by, event_id)
         SELECT 'acme', 'sp-long', 'bulk-' || n, 'Reminder', 'entry ' || n,
                now() + n * interval '1 millisecond', 'Taktikal', 'bulk'
         FROM generate_series(1, 2500) AS n",
    )
    .execute(&stack.db)
    .await
    .unwrap();
    let total = recorded + 2500;

    let (status, first) = stack.get_json("/signing/activity/sp-long").await;
    assert_eq!(status, 200);
    assert_eq!(first[0]["activityLog"].as_array().unwrap().len(), 1000);
    assert_eq!(first[0]["activityTotal"], total);
    let (_, last) = stack
        .get_json("/signing/activity/sp-long?activitySkip=2000&activityTake=1000")
        .await;
    let last_page = last[0]["activityLog"].as_array().unwrap();
    assert_eq!(last_page.len() as i64, total - 2000);
    assert_eq!(last_page.last().unwrap()["description"], "entry 2500");
    let (_, small) = stack
        .get_json("/signing/activity?source=acme&Take=1&activityTake=5")
        .await;
    assert_eq!(small[0]["activityLog"].as_array().unwrap().len(), 5);
    let (_, clamped) = stack
        .get_json("/signing/activity/sp-long?activityTake=1000000")
        .await;
    assert_eq!(clamped[0]["activityLog"].as_array().unwrap().len(), 1000);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_tokens_configured_the_api_requires_one() {
    let mut stack = Stack::start_with(Options {
        api_tokens: true,
        ..Options::default()
    })
    .await;
    let (_, body) = taktikal("sp-private", 2);
    assert_eq!(stack.post(&body).await, 200);
    stack.wait_for_events(1).await;

    let url = format!("{}/signing/activity/sp-private", stack.worker);
    assert_eq!(stack.http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        stack
            .http
            .get(&url)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let ok = stack
        .http
        .get(&url)
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        stack
            .http
            .get(format!("{}/healthz", stack.worker))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "probes stay open"
    );

    stack.stop().await;
}
