//! With the spool on (the default): a webhook the broker cannot confirm is fsync'd to the spool,
//! answered 200, and published once the broker takes it — byte for byte, headers included.
//! When the spool cannot take it, 503 as without a spool.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use countersign_ingester::spool::quarantine;
use countersign_ingester::spool::record::{self, Message};
use lapin::BasicProperties;
use lapin::options::BasicGetOptions;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use crate::helpers::{Options, SpoolSetting, TcpProxy, TestApp, header, signed_event};

fn broker_address() -> SocketAddr {
    countersign_testkit::socket_address(&crate::helpers::amqp_url())
}

fn via(proxy: &TcpProxy) -> String {
    format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port())
}

/// A metric's value from `/metrics` (0 when absent).
async fn metric(app: &TestApp, name: &str) -> f64 {
    app.metrics_text()
        .await
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn readyz(app: &TestApp) -> (u16, serde_json::Value) {
    let response = app
        .http
        .get(format!("{}/readyz", app.admin_address))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Waits (up to 30 s) until the work queue holds `count` messages.
async fn wait_persisted(app: &TestApp, count: u32) {
    for _ in 0..300 {
        if app.persisted_count().await >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.persisted_count().await, count);
}

/// Segment files left in a spool directory.
fn segments(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".seg"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_away_webhooks_get_200_from_the_spool_and_reach_the_queue_byte_for_byte() {
    let proxy = TcpProxy::reserve(broker_address()).await;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(Options {
        amqp_url: via(&proxy),
        spool: SpoolSetting::At(dir.path().to_owned(), 64 * 1024 * 1024),
        ..Options::default()
    })
    .await;

    // No broker, but room on disk: ready, and says why.
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["broker"], false, "{body}");
    assert_eq!(body["spool"]["room"], true, "{body}");

    let mut sent = Vec::new();
    for _ in 0..20 {
        let (id, body) = signed_event();
        let response = app.post("acme", body.clone()).await;
        assert_eq!(response.status(), 200);
        sent.push((id, body));
    }
    assert_eq!(
        metric(&app, "countersign_ingester_spool_messages").await,
        20.0
    );
    assert_eq!(
        metric(
            &app,
            "countersign_ingester_requests_total{outcome=\"spooled\",source=\"acme\"}"
        )
        .await,
        20.0
    );
    assert!(metric(&app, "countersign_ingester_spool_oldest_age_seconds").await >= 0.0);
    assert_eq!(
        app.persisted_count().await,
        0,
        "nothing reached the broker yet"
    );
    assert!(!segments(dir.path()).is_empty(), "on disk");

    proxy.start();
    wait_persisted(&app, 20).await;
    let messages = app.drain_persisted().await;
    for (id, body) in &sent {
        let message = messages
            .iter()
            .find(|m| {
                m.delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|s| s.as_str())
                    == Some(id)
            })
            .unwrap_or_else(|| panic!("{id} drained"));
        assert!(message.delivery.data == *body, "byte for byte");
        assert_eq!(header(message, "x-source"), Some("acme"));
        assert_eq!(header(message, "x-provider"), Some("taktikal"));
        assert_eq!(message.delivery.properties.delivery_mode(), &Some(2));
        assert_eq!(
            message.delivery.routing_key.as_str(),
            "taktikal.acme.AllSigned"
        );
    }
    // Counted once the broker's confirms are in, which may be a moment after the queue has
    // the messages.
    let mut drained = 0.0;
    for _ in 0..100 {
        drained = metric(&app, "countersign_ingester_spool_drained_total").await;
        if drained >= 20.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(drained, 20.0);
    // The drained segment is deleted (the drainer looks again within a second).
    for _ in 0..50 {
        if segments(dir.path()).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(segments(dir.path()), Vec::<String>::new());
    assert_eq!(
        metric(&app, "countersign_ingester_spool_messages").await,
        0.0
    );

    // With the broker back, webhooks go straight to it again.
    let (_, body) = signed_event();
    assert_eq!(app.post("acme", body).await.status(), 200);
    assert_eq!(app.persisted_count().await, 1);
    assert_eq!(
        metric(&app, "countersign_ingester_spool_appended_total").await,
        20.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_spool_answers_503_never_a_200_it_cannot_keep() {
    let proxy = TcpProxy::reserve(broker_address()).await;
    let dir = tempfile::tempdir().unwrap();
    // The least the configuration allows: the `big` source's 40 MiB limit plus 1 MiB.
    let max_bytes = 41 * 1024 * 1024;
    let app = TestApp::spawn_with(Options {
        amqp_url: via(&proxy),
        spool: SpoolSetting::At(dir.path().to_owned(), max_bytes),
        ..Options::default()
    })
    .await;

    let mut accepted = Vec::new();
    let mut refused = 0;
    for _ in 0..6 {
        let (id, small) = signed_event();
        let mut event: serde_json::Value = serde_json::from_slice(&small).unwrap();
        event["EventData"]["SignedDocument"] = "A".repeat(10 * 1024 * 1024).into();
        let response = app.post("big", serde_json::to_vec(&event).unwrap()).await;
        match response.status().as_u16() {
            200 => accepted.push(id),
            503 => {
                assert_eq!(response.headers()["retry-after"], "7");
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        (accepted.len(), refused),
        (4, 2),
        "4 × 10 MiB fit in 41 MiB"
    );
    assert_eq!(
        metric(
            &app,
            "countersign_ingester_requests_total{outcome=\"spool_full\",source=\"big\"}"
        )
        .await,
        2.0
    );
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 503, "no broker and no room: not ready");
    assert_eq!(body["spool"]["room"], false, "{body}");
    assert!(
        body["spool"]["reason"].as_str().unwrap().contains("full"),
        "{body}"
    );

    proxy.start();
    wait_persisted(&app, 4).await;
    let mut ids = app.drain_persisted_ids().await;
    ids.sort();
    accepted.sort();
    assert_eq!(ids, accepted, "every 200, and only those");
    app.wait_ready(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_torn_tail_is_cut_on_restart_and_the_complete_records_are_drained() {
    let proxy = TcpProxy::reserve(broker_address()).await;
    let dir = tempfile::tempdir().unwrap();
    let options = || Options {
        amqp_url: via(&proxy),
        spool: SpoolSetting::At(dir.path().to_owned(), 64 * 1024 * 1024),
        ..Options::default()
    };
    let mut first = TestApp::spawn_with(options()).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (id, body) = signed_event();
        assert_eq!(first.post("acme", body).await.status(), 200);
        ids.push(id);
    }
    first.stop().await.unwrap();
    drop(first);

    // What a crash in the middle of a write leaves: the start of a record, cut short.
    let names = segments(dir.path());
    assert_eq!(names.len(), 1, "{names:?}");
    let path = dir.path().join(&names[0]);
    let whole = std::fs::read(&path).unwrap();
    let record = whole.len() / 3;
    let mut torn = whole.clone();
    torn.extend_from_slice(&whole[..record / 2]);
    std::fs::write(&path, &torn).unwrap();

    let second = TestApp::spawn_with(options()).await;
    assert_eq!(
        std::fs::metadata(&path)
            .map(|m| m.len())
            .unwrap_or(whole.len() as u64),
        whole.len() as u64,
        "the torn record was cut (or the segment already drained)"
    );
    assert_eq!(
        metric(&second, "countersign_ingester_spool_messages").await,
        3.0
    );
    proxy.start();
    wait_persisted(&second, 3).await;
    let mut drained = second.drain_persisted_ids().await;
    drained.sort();
    ids.sort();
    assert_eq!(
        drained, ids,
        "the three complete records, nothing from the torn one"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nack_is_spooled_and_published_once_the_queue_has_room() {
    let app = TestApp::spawn().await;
    app.make_persist_queue_hold_one().await;

    let (first, body) = signed_event();
    assert_eq!(app.post("acme", body).await.status(), 200, "room for one");
    let (second, body) = signed_event();
    assert_eq!(
        app.post("acme", body).await.status(),
        200,
        "nacked, then spooled"
    );
    assert_eq!(
        metric(
            &app,
            "countersign_ingester_requests_total{outcome=\"spooled\",source=\"acme\"}"
        )
        .await,
        1.0
    );

    // A consumer takes the first: the drainer's retry is then confirmed.
    let mut seen = Vec::new();
    for _ in 0..100 {
        if let Some(message) = app
            .channel
            .basic_get(
                ShortString::from(app.topology.persist_queue()),
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
        {
            seen.push(
                message
                    .delivery
                    .properties
                    .message_id()
                    .clone()
                    .unwrap()
                    .to_string(),
            );
        }
        if seen.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, vec![first, second]);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_confirm_within_the_timeout_is_spooled_not_refused() {
    let proxy = TcpProxy::reserve(broker_address()).await;
    proxy.start();
    let app = TestApp::spawn_with(Options {
        amqp_url: via(&proxy),
        confirm_timeout: "1s",
        ..Options::default()
    })
    .await;
    app.wait_broker().await;

    // A partition: the connection stays open, nothing gets through.
    proxy.freeze(true);
    let (id, body) = signed_event();
    assert_eq!(app.post("acme", body).await.status(), 200);
    assert_eq!(
        metric(&app, "countersign_ingester_spool_messages").await,
        1.0
    );

    proxy.freeze(false);
    // Delivered once or twice (the timed-out publish may have arrived too); never lost.
    for _ in 0..300 {
        if metric(&app, "countersign_ingester_spool_messages").await == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids = app.drain_persisted_ids().await;
    assert!(ids.contains(&id), "{ids:?}");
    assert!(ids.iter().all(|i| *i == id) && ids.len() <= 2, "{ids:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_ingester_per_spool_directory() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options {
        spool: SpoolSetting::At(dir.path().to_owned(), 64 * 1024 * 1024),
        ..Options::default()
    };
    let _first = TestApp::spawn_with(options()).await;
    let prefix = crate::helpers::unique_prefix();
    let text = crate::helpers::config_text(
        &prefix,
        &options(),
        &format!("dir = {:?}\nmax_bytes = {}", dir.path(), 64 * 1024 * 1024),
    );
    let config = countersign::config::Config::from_toml(
        &text,
        countersign::config::Role::Ingester,
        &crate::helpers::env_for(&crate::helpers::amqp_url()),
    )
    .unwrap();
    let error = countersign_ingester::Application::build(config)
        .await
        .err()
        .expect("a second ingester on the same spool does not start");
    assert!(
        format!("{error:#}").contains("in use by another ingester"),
        "{error:#}"
    );
}

/// Writes `messages` as one spool segment of `dir`, as the ingester's writer would have.
fn plant_segment(dir: &Path, id: u64, messages: &[Message]) {
    let mut bytes = Vec::new();
    for message in messages {
        let encoded = record::encode(message, SystemTime::now()).unwrap();
        bytes.extend_from_slice(&encoded.head);
        bytes.extend_from_slice(&encoded.body);
    }
    std::fs::write(dir.join(format!("{id:020}.seg")), bytes).unwrap();
}

/// An ingester (on the real broker) whose spool directory `dir` holds `planted` as one segment.
async fn start_on_planted(dir: &Path, planted: &[Message]) -> TestApp {
    plant_segment(dir, 1, planted);
    TestApp::spawn_with(Options {
        spool: SpoolSetting::At(dir.to_owned(), 64 * 1024 * 1024),
        ..Options::default()
    })
    .await
}

/// A spooled message as the ingester makes one for a genuine Taktikal webhook.
fn spooled(id: &str, body: Vec<u8>, extra: &[(&str, String)]) -> Message {
    let mut headers = FieldTable::default();
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    headers.insert("x-provider".into(), text("taktikal"));
    headers.insert("x-source".into(), text("acme"));
    for (name, value) in extra {
        headers.insert((*name).into(), text(value));
    }
    Message {
        routing_key: "taktikal.acme.AllSigned".into(),
        properties: BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(id.into())
            .with_headers(headers),
        body: body.into(),
    }
}

/// Issue 26 (F1): a record whose header frame the broker cannot take was sent again and again,
/// the broker closing the connection each time, and no record behind it ever drained — not even
/// after a restart. Now, planted in a real spool file between genuine records, it is
/// quarantined at once (it can never fit), every other record drains in order, and the
/// operator's `requeue --drop-oversized-headers` re-drives it.
#[tokio::test(flavor = "multi_thread")]
async fn a_poison_record_in_the_spool_is_quarantined_and_the_rest_drains() {
    let dir = tempfile::tempdir().unwrap();
    let genuine: Vec<(String, Vec<u8>)> = (0..4).map(|_| signed_event()).collect();
    let (poison_id, poison_body) = signed_event();
    let mut planted: Vec<Message> = genuine[..2]
        .iter()
        .map(|(id, body)| spooled(id, body.clone(), &[]))
        .collect();
    planted.push(spooled(
        &poison_id,
        poison_body.clone(),
        &[("x-pandadoc-webhook-event-id", "A".repeat(40_000))],
    ));
    planted.extend(
        genuine[2..]
            .iter()
            .map(|(id, body)| spooled(id, body.clone(), &[])),
    );
    let app = start_on_planted(dir.path(), &planted).await;
    wait_persisted(&app, 4).await;
    let drained = app.drain_persisted_ids().await;
    let expected: Vec<String> = genuine.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(drained, expected, "every genuine record, in order");
    let mut quarantined = 0.0;
    for _ in 0..50 {
        quarantined = metric(&app, "countersign_ingester_spool_quarantined").await;
        if quarantined == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(quarantined, 1.0);
    assert_eq!(
        metric(&app, "countersign_ingester_spool_quarantined_total").await,
        1.0
    );
    assert_eq!(
        metric(&app, "countersign_ingester_spool_messages").await,
        0.0
    );
    let ids = quarantine::ids(dir.path()).unwrap();
    assert_eq!(ids.len(), 1);
    let entry = quarantine::read(dir.path(), &ids[0]).unwrap();
    assert!(
        entry.reason.starts_with("frame_too_large"),
        "{}",
        entry.reason
    );
    assert!(entry.message.body == poison_body, "kept byte for byte");

    // The operator's view, through the binary as docs/operations.md shows it.
    let config_dir = tempfile::tempdir().unwrap();
    let config_path = config_dir.path().join("countersign.toml");
    std::fs::write(
        &config_path,
        crate::helpers::config_text(
            &app.config.amqp.prefix,
            &Options::default(),
            &format!("dir = {:?}", dir.path()),
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_countersign-ingester"))
            .args(["--config", config_path.to_str().unwrap()])
            .args(args)
            .env("ACME_KEY", crate::helpers::KEY)
            .env("ACME_OLD_KEY", crate::helpers::OLD_KEY)
            .env("AMQP_URL", crate::helpers::amqp_url())
            .output()
            .unwrap()
    };
    let cli = |args: &[&str]| {
        let output = run(args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let listed = cli(&["spool", "quarantine", "list"]);
    assert!(
        listed.contains(&ids[0])
            && listed.contains(&poison_id)
            && listed.contains("frame_too_large"),
        "{listed}"
    );
    let shown = cli(&["spool", "quarantine", "show", &ids[0]]);
    assert!(
        shown.contains("x-pandadoc-webhook-event-id: (40000 bytes)"),
        "{shown}"
    );
    assert!(
        !shown.contains(&"A".repeat(200)),
        "no payload in the description"
    );
    assert_eq!(
        cli(&["spool", "quarantine", "show", &ids[0], "--body"]).into_bytes(),
        poison_body
    );

    // As it is, it still cannot fit: requeue refuses it, keeps it, and exits 1.
    let refused = run(&["spool", "quarantine", "requeue", "--all"]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stdout).contains("not requeued"),
        "{refused:?}"
    );
    assert_eq!(quarantine::ids(dir.path()).unwrap().len(), 1, "still there");
    // Without the oversized (unsigned) header it fits, and leaves the quarantine once confirmed.
    let requeued = cli(&[
        "spool",
        "quarantine",
        "requeue",
        &ids[0],
        "--drop-oversized-headers",
    ]);
    assert!(
        requeued.contains("requeued (confirmed by the broker)"),
        "{requeued}"
    );
    assert!(quarantine::ids(dir.path()).unwrap().is_empty());
    wait_persisted(&app, 1).await;
    let requeued = app.drain_persisted().await;
    assert!(requeued[0].delivery.data == poison_body);
    assert_eq!(
        header(&requeued[0], "x-dropped-headers"),
        Some("x-pandadoc-webhook-event-id")
    );
}

/// A record the broker takes into a frame but refuses on every publish, closing the channel
/// (here a message `expiration` that is not a number: `PRECONDITION_FAILED`), is published alone
/// after the first failure and quarantined after `POISON_TRIES` such refusals; the records
/// behind it drain.
#[tokio::test(flavor = "multi_thread")]
async fn a_record_that_closes_the_channel_every_time_is_quarantined_after_its_tries() {
    let dir = tempfile::tempdir().unwrap();
    let genuine: Vec<(String, Vec<u8>)> = (0..3).map(|_| signed_event()).collect();
    let (poison_id, poison_body) = signed_event();
    let mut poison = spooled(&poison_id, poison_body, &[]);
    poison.properties = poison.properties.with_expiration("not-a-number".into());
    let mut planted = vec![spooled(&genuine[0].0, genuine[0].1.clone(), &[]), poison];
    planted.extend(
        genuine[1..]
            .iter()
            .map(|(id, body)| spooled(id, body.clone(), &[])),
    );
    let app = start_on_planted(dir.path(), &planted).await;
    // The tries are spaced by the drainer's back-off (0.2 s doubling to 5 s): well within 60 s.
    for _ in 0..600 {
        if app.persisted_count().await >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut drained = app.drain_persisted_ids().await;
    // The first failure closes the channel under a batch whose confirms it then loses: what
    // the broker had may come again (at least once; the worker de-duplicates).
    drained.dedup();
    let expected: Vec<String> = genuine.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(drained, expected, "every genuine record, in order");
    let ids = quarantine::ids(dir.path()).unwrap();
    assert_eq!(ids.len(), 1);
    let entry = quarantine::read(dir.path(), &ids[0]).unwrap();
    assert_eq!(
        entry
            .message
            .properties
            .message_id()
            .as_ref()
            .unwrap()
            .as_str(),
        poison_id
    );
    assert_eq!(
        entry.tries,
        u64::from(quarantine::POISON_TRIES),
        "{}",
        entry.reason
    );
}

/// `countersign-ingester spool --dir <dir> drain --timeout <timeout>` with the test's
/// configuration and broker: its exit code, standard output and standard error.
fn drain_command(
    prefix: &str,
    dir: &Path,
    amqp_url: &str,
    timeout: &str,
) -> (Option<i32>, String, String) {
    let config = tempfile::NamedTempFile::new().unwrap();
    // The configuration names another directory: --dir is what counts.
    let text = crate::helpers::config_text(prefix, &Options::default(), "dir = \"/nonexistent\"");
    std::fs::write(config.path(), text).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_countersign-ingester"))
        .env("COUNTERSIGN_CONFIG", config.path())
        .env("AMQP_URL", amqp_url)
        .env("ACME_KEY", crate::helpers::KEY)
        .env("ACME_OLD_KEY", crate::helpers::OLD_KEY)
        .args(["spool", "--dir"])
        .arg(dir)
        .args(["drain", "--timeout", timeout])
        .output()
        .expect("the binary runs");
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// Issue 28 (H2): a spool no ingester will open again — the claim of a pod scaled away while
/// RabbitMQ was down — is emptied by `countersign-ingester spool --dir <dir> drain`: refused
/// while its ingester holds the directory, nothing lost while the broker stays away, then every
/// message in the queue exactly once and the directory empty.
#[tokio::test(flavor = "multi_thread")]
async fn a_stranded_spool_is_drained_by_the_drain_command_every_message_once() {
    let proxy = TcpProxy::reserve(broker_address()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut app = TestApp::spawn_with(Options {
        amqp_url: via(&proxy),
        spool: SpoolSetting::At(dir.path().to_owned(), 64 * 1024 * 1024),
        ..Options::default()
    })
    .await;
    let prefix = app.config.amqp.prefix.clone();
    let mut sent = Vec::new();
    for _ in 0..30 {
        let (id, body) = signed_event();
        assert_eq!(app.post("acme", body).await.status(), 200);
        sent.push(id);
    }

    let (code, out, err) = drain_command(&prefix, dir.path(), &crate::helpers::amqp_url(), "5s");
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("in use by another ingester"), "{err}");

    // The ingester goes away with its spool full (the broker is still away).
    app.stop().await.unwrap();
    assert!(!segments(dir.path()).is_empty());

    // Still no broker: the command gives up after its timeout and keeps everything.
    let (code, out, err) = drain_command(&prefix, dir.path(), &via(&proxy), "2s");
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("30 message(s) left"), "{out}");
    assert_eq!(app.persisted_count().await, 0);

    let (code, out, err) = drain_command(&prefix, dir.path(), &crate::helpers::amqp_url(), "60s");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(": 30 message(s)"), "{out}");
    assert!(out.contains("drained 30 message(s)"), "{out}");
    let mut drained = app.drain_persisted_ids().await;
    drained.sort();
    sent.sort();
    assert_eq!(drained, sent, "every message once");
    assert_eq!(segments(dir.path()), Vec::<String>::new());

    let (code, out, err) = drain_command(&prefix, dir.path(), &crate::helpers::amqp_url(), "5s");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(": 0 message(s)"), "{out}");

    // A mistyped directory is an error, not an empty spool made on the spot.
    let missing = dir.path().join("no-such-spool");
    let (code, _, err) = drain_command(&prefix, &missing, &crate::helpers::amqp_url(), "5s");
    assert_eq!(code, Some(1));
    assert!(err.contains("no spool directory at"), "{err}");
    assert!(!missing.exists());
}
