//! Replay: from the dead-letter queue (CLI and management UI) and from the archive.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use countersign_testkit::{
    TcpProxy, amqp_url, database_url, management_url, socket_address, via_port,
};

use crate::helpers::{Options, Stack, TestDatabase, taktikal, wait_until};

/// Runs `countersign-worker <args>` against the stack; returns (success, stdout, stderr).
fn worker_command(stack: &Stack, database_url: &str, args: &[&str]) -> (bool, String, String) {
    worker_command_as(&amqp_url(), stack, database_url, args)
}

/// [`worker_command`] on the broker at `amqp`.
fn worker_command_as(
    amqp: &str,
    stack: &Stack,
    database_url: &str,
    args: &[&str],
) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("countersign.toml");
    std::fs::write(&config, &stack.config_text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_countersign-worker"))
        .args(args)
        .env("COUNTERSIGN_CONFIG", &config)
        .env("AMQP_URL", amqp)
        .env("DATABASE_URL", database_url)
        .output()
        .expect("worker binary runs");
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// A stack whose worker reaches its database through a proxy the test controls, with three
/// events parked in `<prefix>.dead` by an outage that outlasted the retries.
async fn stack_with_parked_events() -> (Stack, TcpProxy, TestDatabase) {
    let database = TestDatabase::create().await;
    let proxy = TcpProxy::reserve(socket_address(&database_url())).await;
    proxy.start();
    let stack = Stack::start_with(Options {
        retry_delays: r#"["300ms"]"#,
        worker_database_url: Some(via_port(&database.url, proxy.port())),
        ..Options::default()
    })
    .await;
    proxy.stop().await;
    for i in 0..3 {
        let (_, body) = taktikal(&format!("sp-parked-{i}"), 2);
        assert_eq!(stack.post(&body).await, 200);
    }
    wait_until("three parked", Duration::from_secs(60), || async {
        stack.queue_len(stack.topology.dead_queue()).await == 3
    })
    .await;
    proxy.start();
    (stack, proxy, database)
}

async fn rows(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_dead_persists_parked_events_exactly_once_and_twice_changes_nothing() {
    let (stack, _proxy, database) = stack_with_parked_events().await;
    let db = sqlx::PgPool::connect(&database.url).await.unwrap();
    assert_eq!(rows(&db, "SELECT count(*) FROM webhook_events").await, 0);

    let (ok, stdout, stderr) = worker_command(&stack, &database.url, &["replay", "dead"]);
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout.trim(),
        format!(
            "moved 3 of 3 messages from {} to {}",
            stack.topology.dead_queue(),
            stack.topology.persist_queue()
        )
    );
    wait_until("all three persisted", Duration::from_secs(30), || async {
        rows(
            &db,
            "SELECT count(*) FROM signing_processes WHERE status = 'all_signed'",
        )
        .await
            == 3
    })
    .await;
    let headers: serde_json::Value =
        sqlx::query_scalar("SELECT headers FROM webhook_events LIMIT 1")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(headers["x-replay"], "dead");
    assert!(
        headers.get("x-attempt").is_none() && headers.get("x-dead-kind").is_none(),
        "bookkeeping reset: {headers}"
    );

    let (ok, stdout, _) = worker_command(&stack, &database.url, &["replay", "dead"]);
    assert!(ok);
    assert!(stdout.starts_with("moved 0 of 0 messages"), "{stdout}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rows(&db, "SELECT count(*) FROM webhook_events").await, 3);
    assert_eq!(
        rows(&db, "SELECT sum(deliveries) FROM webhook_events").await,
        3,
        "each recorded once"
    );
    assert_eq!(stack.queue_len(stack.topology.dead_queue()).await, 0);
    db.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_dead_respects_its_limit() {
    let (stack, _proxy, database) = stack_with_parked_events().await;
    let (ok, stdout, stderr) =
        worker_command(&stack, &database.url, &["replay", "dead", "--limit", "2"]);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("moved 2 of 3 messages"), "{stdout}");
    assert_eq!(stack.queue_len(stack.topology.dead_queue()).await, 1);
}

/// The projection rows of one process, as comparable text.
async fn projection(stack: &Stack, process_key: &str) -> Vec<String> {
    let sql = "SELECT concat_ws('|', p.status, p.updated_at, s.signee_key, s.signed, a.entry_key, a.created_at)
               FROM signing_processes p JOIN signees s USING (source, process_key) JOIN activity a USING (source, process_key)
               WHERE p.process_key = $1 ORDER BY a.entry_key";
    sqlx::query_scalar(sql)
        .bind(process_key)
        .fetch_all(&stack.db)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_archive_rebuilds_deleted_rows_in_its_range_and_leaves_the_rest() {
    let stack = Stack::start().await;
    let (_, a) = taktikal("sp-a", 2);
    assert_eq!(stack.post(&a).await, 200);
    stack.wait_for_events(1).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let since = chrono::Utc::now().to_rfc3339();
    for key in ["sp-b", "sp-c"] {
        let (_, body) = taktikal(key, 2);
        assert_eq!(stack.post(&body).await, 200);
    }
    stack.wait_for_events(3).await;
    let (b_before, c_before) = (
        projection(&stack, "sp-b").await,
        projection(&stack, "sp-c").await,
    );
    assert!(!b_before.is_empty());

    // Projection rows lost (a bad migration, a manual mistake): A before the range, B inside.
    sqlx::query("DELETE FROM signing_processes WHERE process_key IN ('sp-a', 'sp-b')")
        .execute(&stack.db)
        .await
        .unwrap();

    let (ok, stdout, stderr) = worker_command(
        &stack,
        &stack.database.url,
        &[
            "replay",
            "archive",
            "--source",
            "acme",
            "--since",
            &since,
            "--dry-run",
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "would replay 2 events of source acme");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        projection(&stack, "sp-b").await,
        Vec::<String>::new(),
        "a dry run publishes nothing"
    );

    let (ok, stdout, stderr) = worker_command(
        &stack,
        &stack.database.url,
        &["replay", "archive", "--source", "acme", "--since", &since],
    );
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout.trim(),
        format!(
            "replayed 2 events of source acme to {}",
            stack.topology.persist_queue()
        )
    );
    wait_until("B is re-derived", Duration::from_secs(30), || async {
        projection(&stack, "sp-b").await == b_before
    })
    .await;
    assert_eq!(projection(&stack, "sp-c").await, c_before, "C is unchanged");
    assert_eq!(
        stack
            .count("SELECT count(*) FROM signing_processes WHERE process_key = 'sp-a'")
            .await,
        0,
        "A is outside the range"
    );
    assert_eq!(
        stack
            .count("SELECT max(deliveries)::bigint FROM webhook_events")
            .await,
        1,
        "a replay is not a delivery"
    );

    let (ok, stdout, _) = worker_command(
        &stack,
        &stack.database.url,
        &["replay", "archive", "--source", "acme", "--process", "sp-a"],
    );
    assert!(ok);
    assert_eq!(
        stdout.trim(),
        format!(
            "replayed 1 events of source acme to {}",
            stack.topology.persist_queue()
        )
    );
    wait_until("A is re-derived", Duration::from_secs(30), || async {
        stack.count("SELECT count(*) FROM signing_processes WHERE process_key = 'sp-a' AND status = 'all_signed'").await == 1
    })
    .await;
    assert_eq!(
        stack.count("SELECT count(*) FROM webhook_events").await,
        3,
        "no new archive rows"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn management_ui_move_messages_in_a_real_browser_gets_parked_events_persisted() {
    let (stack, _proxy, database) = stack_with_parked_events().await;
    let db = sqlx::PgPool::connect(&database.url).await.unwrap();
    let e2e = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../e2e");
    assert!(
        e2e.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci --prefix e2e` (and install Debian's chromium)"
    );
    let screenshots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-screenshots");
    let output = tokio::task::spawn_blocking({
        let (dead, persist) = (
            stack.topology.dead_queue().to_owned(),
            stack.topology.persist_queue().to_owned(),
        );
        move || {
            Command::new("node")
                .arg(e2e.join("move-messages.mjs"))
                .args([&management_url(), "guest", "guest", &dead, &persist])
                .arg(&screenshots)
                .output()
                .expect("node runs")
        }
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "the browser could not move the messages:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    wait_until(
        "the moved events are persisted",
        Duration::from_secs(60),
        || async {
            rows(
                &db,
                "SELECT count(*) FROM signing_processes WHERE status = 'all_signed'",
            )
            .await
                == 3
        },
    )
    .await;
    assert_eq!(rows(&db, "SELECT count(*) FROM webhook_events").await, 3);
    assert_eq!(stack.queue_len(stack.topology.dead_queue()).await, 0);
    // The shovel moved them as they were; the worker accepted them with their parking headers.
    let headers: serde_json::Value =
        sqlx::query_scalar("SELECT headers FROM webhook_events LIMIT 1")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(headers["x-dead-kind"], "retries_exhausted", "{headers}");
    db.close().await;
}

/// A RabbitMQ user allowed only what `deploy/k8s/base/rabbitmq-user.yaml` allows production's:
/// configure and read `^<prefix>\.`, write those and the default exchange. Made and removed
/// through the management API.
struct LimitedUser {
    name: String,
    url: String,
}

impl LimitedUser {
    async fn create(prefix: &str) -> Self {
        let name = format!("{prefix}-user");
        let password = "a-password-of-the-test-only";
        let api = management_url();
        let http = reqwest::Client::new();
        let created = http
            .put(format!("{api}/api/users/{name}"))
            .basic_auth("guest", Some("guest"))
            .json(&serde_json::json!({ "password": password, "tags": "" }))
            .send()
            .await
            .unwrap();
        assert!(created.status().is_success(), "{created:?}");
        let own = format!("^{}\\.", prefix);
        let allowed = http
            .put(format!("{api}/api/permissions/%2F/{name}"))
            .basic_auth("guest", Some("guest"))
            .json(&serde_json::json!({
                "configure": own,
                "write": format!("^({}\\..*|amq\\.default)$", prefix),
                "read": own,
            }))
            .send()
            .await
            .unwrap();
        assert!(allowed.status().is_success(), "{allowed:?}");
        let base = amqp_url();
        let (_, rest) = base.split_once('@').expect("AMQP_URL has credentials");
        Self {
            url: format!("amqp://{name}:{password}@{rest}"),
            name,
        }
    }

    async fn delete(self) {
        let _ = reqwest::Client::new()
            .delete(format!("{}/api/users/{}", management_url(), self.name))
            .basic_auth("guest", Some("guest"))
            .send()
            .await;
    }
}

/// Issue 28 (L2): the binaries need nothing of RabbitMQ beyond their own names — configure and
/// read on `^<prefix>\.`, write on those and on the default exchange, through which the worker
/// retries, parks and replays — so production's user gets only that, not the operator's
/// administrator. With exactly that: an event is ingested and recorded, one whose database is away
/// is retried and parked, and `replay dead` brings it back.
#[tokio::test(flavor = "multi_thread")]
async fn a_rabbitmq_user_limited_to_its_prefix_ingests_records_retries_parks_and_replays() {
    let prefix = countersign_testkit::unique_prefix();
    let user = LimitedUser::create(&prefix).await;
    let database = TestDatabase::create().await;
    let proxy = TcpProxy::reserve(socket_address(&database_url())).await;
    proxy.start();
    let stack = Stack::start_with(Options {
        prefix: Some(prefix),
        ingester_amqp_url: Some(user.url.clone()),
        worker_amqp_url: Some(user.url.clone()),
        retry_delays: r#"["300ms"]"#,
        worker_database_url: Some(via_port(&database.url, proxy.port())),
        ..Options::default()
    })
    .await;
    let db = sqlx::PgPool::connect(&database.url).await.unwrap();

    let (_, body) = taktikal("sp-limited-0", 2);
    assert_eq!(stack.post(&body).await, 200);
    wait_until("recorded", Duration::from_secs(30), || async {
        rows(&db, "SELECT count(*) FROM webhook_events").await == 1
    })
    .await;

    proxy.stop().await;
    let (_, body) = taktikal("sp-limited-1", 2);
    assert_eq!(stack.post(&body).await, 200);
    wait_until("retried, then parked", Duration::from_secs(60), || async {
        stack.queue_len(stack.topology.dead_queue()).await == 1
    })
    .await;
    proxy.start();

    let (ok, stdout, stderr) =
        worker_command_as(&user.url, &stack, &database.url, &["replay", "dead"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.starts_with("moved 1 of 1 messages"), "{stdout}");
    wait_until(
        "the parked event recorded",
        Duration::from_secs(30),
        || async { rows(&db, "SELECT count(*) FROM webhook_events").await == 2 },
    )
    .await;
    db.close().await;
    drop(stack);
    user.delete().await;
}
