//! Issue 30: Zoho Sign's API behind a source — access tokens obtained with a refresh token (and
//! renewed when the API refuses one), a completed request's documents downloaded, final states
//! confirmed (its signature has no time limit), a lost completion reconciled — against
//! simulators answering in the shapes of `providers/tests/fixtures/zoho_sign/`.

use crate::helpers::{Options, Stack, ZS_API_GRANT, ZS_SECRET, header};
use crate::second_witness::json;
use crate::simulator::{Answer, Simulator};
use countersign_providers::zoho_sign;

fn request(id: &str, status: &str) -> serde_json::Value {
    let mut answer = json("zoho_sign", "GetDocument.json");
    answer["requests"]["request_id"] = id.into();
    answer["requests"]["request_status"] = status.into();
    answer["requests"]["created_time"] = chrono::Utc::now().timestamp_millis().into();
    answer
}

fn answer(value: &serde_json::Value) -> Answer {
    Answer::ok("application/json", &serde_json::to_vec(value).unwrap())
}

/// Zoho's token endpoint's answer to a refresh grant.
fn token(access_token: &str) -> Answer {
    answer(&serde_json::json!({"access_token": access_token,
        "api_domain": "https://www.zohoapis.com", "token_type": "Bearer", "expires_in": 3600}))
}

#[tokio::test(flavor = "multi_thread")]
async fn zoho_sign_completed_requests_are_confirmed_downloaded_and_a_lost_one_reconciled() {
    let pdf = |id: &str| format!("%PDF-1.7 Zoho Sign {id}").into_bytes();
    let accounts = Simulator::start(
        "/oauth/v2",
        vec![("/token", vec![token("1000.first"), token("1000.second")])],
    )
    .await;
    let list = serde_json::json!({"code": 0, "message": "Document list retrieved successfully",
        "status": "success",
        "requests": [request("zs-lost", "completed")["requests"], request("zs-done", "completed")["requests"]],
        "page_context": {"row_count": 100, "start_index": 1, "has_more_rows": false,
            "sort_column": "created_time", "sort_order": "DESC"}});
    let api = Simulator::start(
        "/api/v1",
        vec![
            // The first token is refused: a new one is obtained and the request sent again.
            (
                "/requests/zs-done",
                vec![
                    Answer::status(401),
                    answer(&request("zs-done", "completed")),
                ],
            ),
            (
                "/requests/zs-done/pdf",
                vec![Answer::ok("application/pdf", &pdf("zs-done"))],
            ),
            // A captured "completed" notification for a request since recalled.
            (
                "/requests/zs-recalled",
                vec![answer(&request("zs-recalled", "recalled"))],
            ),
            (
                "/requests/zs-lost",
                vec![answer(&request("zs-lost", "completed"))],
            ),
            (
                "/requests/zs-lost/pdf",
                vec![Answer::ok("application/pdf", &pdf("zs-lost"))],
            ),
            ("/requests", vec![answer(&list)]),
        ],
    )
    .await;
    let stack = Stack::start_with(Options {
        apis: vec![("zs", api.base_url.clone())],
        token_urls: vec![("zs", format!("{}/token", accounts.base_url))],
        ..Options::default()
    })
    .await;
    // One after the other: two events in one batch would ask the API at once, both with the
    // token about to be refused (the worker cannot know before the answer). `zs-recalled` is
    // parked, not recorded (below).
    for id in ["zs-done", "zs-recalled"] {
        let body = serde_json::to_vec(&serde_json::json!({
            "requests": {"request_id": id, "request_name": "Lease", "request_status": "completed",
                "actions": [], "document_ids": [{"document_id": "9", "document_name": "lease.pdf"}]},
            "notifications": {"operation_type": "RequestCompleted",
                "performed_at": chrono::Utc::now().timestamp_millis(),
                "activity": "Document has been completed"},
        }))
        .unwrap();
        let signature = zoho_sign::sign(ZS_SECRET.as_bytes(), &body);
        assert_eq!(
            stack
                .post_to("zs", &body, &[(zoho_sign::SIGNATURE_HEADER, &signature)])
                .await,
            200
        );
        if id == "zs-done" {
            stack.wait_for_events(1).await;
        }
    }
    assert_eq!(stack.signed_document("zs-done").await, pdf("zs-done"));
    let (_, view) = stack.get_json("/signing/activity/zs-done?source=zs").await;
    assert_eq!(view[0]["verified"], "signature+api");
    assert_eq!(view[0]["documents"][0]["fileName"], "lease.pdf");

    // The refresh grant, as Zoho's token endpoint takes it.
    let grants = accounts.seen();
    let (client_id, rest) = ZS_API_GRANT.split_once(':').unwrap();
    let (client_secret, refresh_token) = rest.split_once(':').unwrap();
    let form: Vec<(String, String)> = form_pairs(&grants[0].body);
    assert_eq!(grants[0].method, "POST");
    assert_eq!(
        form,
        [
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("refresh_token", refresh_token)
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    // The refused token was used once; every later request carries the new one, and no API
    // request carries the grant's secrets.
    let seen = api.seen();
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some("Zoho-oauthtoken 1000.first")
    );
    assert!(
        seen[1..]
            .iter()
            .all(|s| s.authorization.as_deref() == Some("Zoho-oauthtoken 1000.second")),
        "{seen:?}"
    );
    assert!(seen.iter().all(|s| {
        let text = format!("{:?} {}", s.headers, s.path);
        !text.contains(client_secret) && !text.contains(refresh_token)
    }));
    assert_eq!(grants.len(), 2, "one grant, and one more after the 401");

    let parked = stack.parked_one().await;
    assert_eq!(header(&parked, "x-dead-kind"), Some("contradicted"));
    assert_eq!(
        header(&parked, "x-dead-reason"),
        Some("the webhook claims completed for zs-recalled; zoho_sign's API reports canceled")
    );

    stack.reconciles("zs", 1, 2).await;
    assert_eq!(stack.signed_document("zs-lost").await, pdf("zs-lost"));
    assert!(api.seen().iter().any(|s| {
        s.path
            .starts_with("/api/v1/requests?data=%7B%22page_context%22")
    }));
    assert_eq!(stack.queue_len(stack.topology.dead_queue()).await, 0);
}

fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    let url = reqwest::Url::parse(&format!("http://form/?{}", String::from_utf8_lossy(body)));
    url.unwrap().query_pairs().into_owned().collect()
}

/// A worker configuration with one Zoho Sign source whose API is `api` and token endpoint
/// `token_url`; its fetcher.
fn fetcher(api: &str, token_url: &str) -> countersign_worker::fetch::Fetcher {
    fetcher_within(api, token_url, "5s")
}

/// The same, with API requests (the token's included) bounded by `timeout`.
fn fetcher_within(api: &str, token_url: &str, timeout: &str) -> countersign_worker::fetch::Fetcher {
    use countersign::config::{Config, Role};
    let text = format!(
        "[[sources]]\nname = 'zs'\nprovider = 'zoho_sign'\nsecrets = ['env:S']\n\
         api = {{ base_url = '{api}', credentials = 'env:G', token_url = '{token_url}', timeout = '{timeout}' }}\n"
    );
    let env = |name: &str| match name {
        "S" => Some("s".to_owned()),
        "G" => Some(ZS_API_GRANT.to_owned()),
        _ => None,
    };
    let config = Config::from_toml(&text, Role::Worker, &env).unwrap();
    countersign_worker::fetch::Fetcher::from_config(&config).unwrap()
}

#[tokio::test]
async fn a_slow_failing_or_truncated_token_endpoint_fails_the_request_and_a_later_one_succeeds() {
    let slow = std::time::Duration::from_secs(3);
    let accounts = Simulator::start(
        "/oauth/v2",
        vec![(
            "/token",
            vec![
                Answer::status(503).with_header("retry-after", "30"),
                token("1000.late").truncated(),
                token("1000.late").after(slow),
                token("1000.good"),
            ],
        )],
    )
    .await;
    let api = Simulator::start(
        "/api/v1",
        vec![("/requests/1", vec![answer(&request("1", "completed"))])],
    )
    .await;
    let token_url = format!("{}/token", accounts.base_url);
    let fetcher = fetcher_within(&api.base_url, &token_url, "1s");
    for expected in [
        "HTTP 503 Service Unavailable (error: simulated), no access_token",
        "the response body broke off",
        "timed out",
    ] {
        let error = fetcher
            .get("zs", "/requests/1")
            .await
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(
            error.ends_with(expected),
            "{error:?} should end with {expected:?}"
        );
        assert!(error.starts_with("zs's API: "), "{error}");
    }
    assert!(api.seen().is_empty(), "no API request without a token");
    // The endpoint is back: the next request gets a token and its answer.
    let answered = fetcher.get("zs", "/requests/1").await.unwrap().unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&answered).unwrap()["requests"]["request_id"],
        "1"
    );
    assert_eq!(
        api.seen()[0].authorization.as_deref(),
        Some("Zoho-oauthtoken 1000.good")
    );
}

#[tokio::test]
async fn a_refused_grant_or_a_redirected_token_endpoint_fails_the_request_without_secrets() {
    let elsewhere = Simulator::start("/oauth/v2", vec![("/token", vec![token("stolen")])]).await;
    let accounts = Simulator::start(
        "/oauth/v2",
        vec![
            // Zoho refuses a grant with 200 and an error code.
            (
                "/token",
                vec![answer(&serde_json::json!({"error": "invalid_code"}))],
            ),
            (
                "/moved",
                vec![
                    Answer::status(307)
                        .with_header("location", &format!("{}/token", elsewhere.base_url)),
                ],
            ),
        ],
    )
    .await;
    let api = Simulator::start("/api/v1", vec![]).await;
    let (_, rest) = ZS_API_GRANT.split_once(':').unwrap();
    let (client_secret, refresh_token) = rest.split_once(':').unwrap();
    for (token_path, expected) in [
        (
            "token",
            "HTTP 200 OK (error: invalid_code), no access_token",
        ),
        (
            "moved",
            "HTTP 307 Temporary Redirect (error: simulated), no access_token",
        ),
    ] {
        let token_url = format!("{}/{token_path}", accounts.base_url);
        let error = fetcher(&api.base_url, &token_url)
            .get("zs", "/requests/1")
            .await
            .unwrap()
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            format!("zs's API: access token from {token_url}: {expected}")
        );
        assert!(!error.contains(client_secret) && !error.contains(refresh_token));
    }
    assert!(api.seen().is_empty(), "no API request without a token");
    assert!(
        elsewhere.seen().is_empty(),
        "the grant never follows a redirect"
    );
}
