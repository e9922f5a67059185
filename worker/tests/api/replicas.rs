//! Several workers on one queue and one database: the projection must not depend on how many
//! workers there are or in which order the events arrive. The same event set goes through one
//! worker in the order it was made and through three workers in another order; every table must
//! then hold the same rows, and PostgreSQL must have detected no deadlock.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use countersign_testkit::sign_taktikal;
use sqlx::Connection as _;

use crate::helpers::{KEY, Options, Stack, wait_until};

/// Processes in the event set, each: Created, one SignedDocument per signee, then AllSigned
/// (with its signed PDF), Canceled or Expired.
const PROCESSES: usize = 48;
const SIGNEES: usize = 3;

/// Columns that differ between two runs by nature: surrogate keys (insertion order), the time a
/// row was written, and the ingester's receive time and headers.
const TABLES: [(&str, &[&str]); 7] = [
    (
        "webhook_events",
        &[
            "id",
            "received_at",
            "headers",
            "first_persisted_at",
            "last_delivered_at",
        ],
    ),
    ("signature_uses", &["first_seen_at"]),
    ("signing_processes", &[]),
    ("signees", &[]),
    ("activity", &["id"]),
    ("stored_documents", &["stored_at"]),
    ("documents", &["id"]),
];

/// The event set: signed bodies, in the order a provider would send them. Every time in them
/// (signing times, which Taktikal's events take as the time they happened) is fixed here, so
/// that two runs see the same bytes.
fn event_set() -> Vec<Vec<u8>> {
    let start = SystemTime::now() - Duration::from_secs(60);
    let mut events = Vec::new();
    for p in 0..PROCESSES {
        let process_key = format!("sp{p:04}");
        let signee_keys: Vec<String> = (0..SIGNEES).map(|s| format!("si{p:04}-{s}")).collect();
        let at = |step: usize| start + Duration::from_millis((step * 1000 + p) as u64);
        let event = |id: String, event_type: u8, signed: usize, step: usize| {
            let mut event = countersign_testkit::taktikal_example();
            event["Id"] = id.into();
            let data = &mut event["EventData"];
            data["ProcessKey"] = process_key.clone().into();
            data["EventType"] = event_type.into();
            data["FlowKey"] = format!("flow{}", p % 5).into();
            data["Meta"]["pdfUrl"] = format!("https://example.test/{process_key}.pdf").into();
            let template = data["Signees"][0].clone();
            data["Signees"] = signee_keys
                .iter()
                .enumerate()
                .map(|(s, key)| {
                    let mut signee = template.clone();
                    signee["Key"] = key.clone().into();
                    signee["ProcessKey"] = process_key.clone().into();
                    signee["Name"] = format!("Signee {s} of {process_key}").into();
                    signee["Signed"] = (s < signed).into();
                    signee["SignedAt"] = if s < signed {
                        chrono::DateTime::<chrono::Utc>::from(at(1 + s))
                            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                            .into()
                    } else {
                        serde_json::Value::Null
                    };
                    signee
                })
                .collect();
            if event_type == 2 {
                // A signed PDF of its own per process (two share one, as re-sent contracts do).
                let pdf = format!("%PDF-1.4 signed contract {}", p / 2);
                data["SignedDocument"] =
                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pdf).into();
            } else {
                data["SignedDocument"] = "".into();
                data["AttachmentReferences"] = serde_json::json!([]);
            }
            sign_taktikal(event, KEY, at(step))
        };
        events.push(event(format!("{process_key}-created"), 11, 0, 0));
        for s in 0..SIGNEES {
            events.push(event(format!("{process_key}-signed-{s}"), 1, s + 1, 1 + s));
        }
        let (final_type, signed) = match p % 4 {
            0 => (5, 1),       // canceled after one signature
            1 => (6, 2),       // expired after two
            _ => (2, SIGNEES), // all signed
        };
        events.push(event(
            format!("{process_key}-final"),
            final_type,
            signed,
            1 + SIGNEES,
        ));
        // Providers retry: some events arrive twice.
        if p % 3 == 0 {
            let again = events[events.len() - 2].clone();
            events.push(again);
        }
    }
    events
}

/// Posts every event (eight at a time), waits until the queue is drained into `webhook_events`,
/// stops the stack (its pools closed, so PostgreSQL has counted every deadlock), and returns the
/// tables' rows and the database's deadlock count.
async fn run(
    mut stack: Stack,
    workers: u32,
    events: &[Vec<u8>],
) -> (BTreeMap<&'static str, Vec<String>>, i64) {
    let persist = stack.topology.persist_queue().to_owned();
    wait_until(
        &format!("{workers} workers consume"),
        Duration::from_secs(30),
        || async {
            countersign::amqp::consumer_count(&stack.channel, &persist)
                .await
                .is_ok_and(|n| n == workers)
        },
    )
    .await;
    for chunk in events.chunks(8) {
        let statuses =
            futures_util::future::join_all(chunk.iter().map(|body| stack.post(body))).await;
        assert!(statuses.iter().all(|&s| s == 200), "posted: {statuses:?}");
    }
    let unique = events
        .iter()
        .collect::<std::collections::HashSet<_>>()
        .len() as i64;
    stack.wait_for_events(unique).await;
    wait_until(
        "every delivery acknowledged",
        Duration::from_secs(60),
        || async {
            stack.queue_len(&persist).await == 0
                && stack
                    .count("SELECT coalesce(sum(deliveries), 0)::bigint FROM webhook_events")
                    .await
                    == events.len() as i64
        },
    )
    .await;
    assert_eq!(stack.queue_len(stack.topology.dead_queue()).await, 0);
    stack.stop().await;

    let mut dump = BTreeMap::new();
    for (table, volatile) in TABLES {
        let mut rows: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT (to_jsonb(t) - $1::text[])::text FROM {table} t"
        ))
        .bind(volatile)
        .fetch_all(&stack.db)
        .await
        .unwrap();
        rows.sort();
        dump.insert(table, rows);
    }
    // A backend reports its deadlocks to the statistics when it goes idle or exits: once the
    // workers' connections are gone, the count is complete.
    stack.db.close().await;
    let mut connection = sqlx::PgConnection::connect(&stack.database.url)
        .await
        .unwrap();
    let mut deadlocks = None;
    for _ in 0..100 {
        let (others, count): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND pid <> pg_backend_pid()
                       AND backend_type = 'client backend'),
                    (SELECT deadlocks FROM pg_stat_database WHERE datname = current_database())",
        )
        .fetch_one(&mut connection)
        .await
        .unwrap();
        if others == 0 {
            deadlocks = Some(count);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadlocks = deadlocks.expect("the workers' connections to PostgreSQL closed within 10 s");
    (dump, deadlocks)
}

#[tokio::test]
async fn one_worker_and_three_workers_in_another_order_write_the_same_tables() {
    let events = event_set();
    let mut reordered = events.clone();
    // Another order: interleaved from both ends, so that late events (final, signed by the last
    // signee) often arrive before early ones (Created) and batches mix processes differently.
    reordered.clear();
    let (mut front, mut back) = (0, events.len());
    while front < back {
        back -= 1;
        reordered.push(events[back].clone());
        if front < back {
            reordered.push(events[front].clone());
            front += 1;
        }
    }

    let one = Stack::start().await;
    let (alone, deadlocks_alone) = run(one, 1, &events).await;
    let three = Stack::start_with(Options {
        workers: 3,
        ..Options::default()
    })
    .await;
    let (together, deadlocks_together) = run(three, 3, &reordered).await;

    assert_eq!(deadlocks_alone, 0, "deadlocks with one worker");
    assert_eq!(deadlocks_together, 0, "deadlocks with three workers");
    let mut differences = Vec::new();
    for (table, rows) in &alone {
        assert!(!rows.is_empty(), "{table} has rows");
        let other = &together[table];
        let only_one: Vec<&String> = rows.iter().filter(|r| !other.contains(r)).collect();
        let only_three: Vec<&String> = other.iter().filter(|r| !rows.contains(r)).collect();
        if !only_one.is_empty() || !only_three.is_empty() || rows.len() != other.len() {
            differences.push(format!(
                "{table}: {} rows with one worker, {} with three; only with one: {:?}; only with three: {:?}",
                rows.len(),
                other.len(),
                only_one.iter().take(2).collect::<Vec<_>>(),
                only_three.iter().take(2).collect::<Vec<_>>()
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    let processes = &alone["signing_processes"];
    assert_eq!(processes.len(), PROCESSES);
    let statuses: std::collections::BTreeSet<String> = processes
        .iter()
        .map(|row| serde_json::from_str::<serde_json::Value>(row).unwrap()["status"].to_string())
        .collect();
    assert!(statuses.len() >= 3, "final statuses: {statuses:?}");
}
