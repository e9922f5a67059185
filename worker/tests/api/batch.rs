//! Many messages in one transaction give what one by one gives: the handler driven directly
//! (as the consumer drives it) against a database of the test's own.

use std::sync::Arc;
use std::time::Duration;

use countersign::config::DocumentsLocation;
use countersign::message::{self, DeadKind};
use countersign_worker::db::{Db, Recorded};
use countersign_worker::documents::ObjectDocuments;
use countersign_worker::handler::{Handler, Outcome, prepare};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use crate::helpers::{TestDatabase, taktikal, taktikal_with};

struct Bench {
    handler: Handler,
    db: Db,
    store: Arc<ObjectDocuments>,
    _database: TestDatabase,
    _documents: tempfile::TempDir,
}

impl Bench {
    async fn new() -> Self {
        let database = TestDatabase::create().await;
        let db = Db::connect_lazy(&database.url, 4, Duration::from_secs(10)).unwrap();
        db.migrate().await.unwrap();
        let documents = tempfile::tempdir().unwrap();
        let store = Arc::new(
            ObjectDocuments::open(&DocumentsLocation::Directory(documents.path().into())).unwrap(),
        );
        Self {
            handler: Handler::new(db.clone(), store.clone()),
            db,
            store,
            _database: database,
            _documents: documents,
        }
    }

    /// The messages recorded in one transaction, as the batch path alone does it (the handler
    /// would fall back to one by one if it failed, which would hide a batch that cannot work).
    async fn record_batch(&self, messages: &[(&[u8], &BasicProperties)]) -> Vec<Recorded> {
        let items: Vec<_> = messages
            .iter()
            .map(|(body, props)| prepare(body, props).expect("a valid message"))
            .collect();
        self.db
            .record_batch(&items, self.store.as_ref())
            .await
            .expect("one transaction records the batch")
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(self.db.pool())
            .await
            .unwrap()
    }

    /// Every projected row, with every column but the surrogate `id` (a sequence, which an
    /// upsert that updates still advances) and those in `without`, as comparable text.
    async fn projection(&self, without: &[&str]) -> Vec<String> {
        let mut rows = Vec::new();
        let mut removed = String::from("'id'");
        for column in without {
            removed.push_str(&format!(" - '{column}'"));
        }
        for table in ["signing_processes", "signees", "activity", "documents"] {
            let found: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT (to_jsonb(t) - {removed})::text FROM {table} t ORDER BY 1"
            ))
            .fetch_all(self.db.pool())
            .await
            .unwrap();
            rows.extend(found.into_iter().map(|r| format!("{table}: {r}")));
        }
        rows
    }
}

/// The properties an ingester gives a Taktikal event.
fn properties(event_id: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in [
        (message::SOURCE, "acme"),
        (message::PROVIDER, "taktikal"),
        (message::EVENT_TYPE, "Event"),
        (message::RECEIVED_AT, "2026-11-29T10:00:00.000Z"),
    ] {
        headers.insert(
            ShortString::from(name),
            AMQPValue::LongString(LongString::from(value)),
        );
    }
    BasicProperties::default()
        .with_message_id(ShortString::from(event_id))
        .with_headers(headers)
}

fn persisted(outcome: &Outcome) -> Option<Recorded> {
    match outcome {
        Outcome::Persisted(recorded) => Some(*recorded),
        _ => None,
    }
}

fn dead_kind(outcome: &Outcome) -> Option<DeadKind> {
    match outcome {
        Outcome::Dead { kind, .. } => Some(*kind),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_holding_poison_messages_parks_them_alone_and_commits_the_rest() {
    let bench = Bench::new().await;
    // Recorded before: the conflicting message below reuses its id with another body.
    let (known_id, known) = taktikal("sp-known", 2);
    let outcome = bench.handler.handle(&known, &properties(&known_id)).await;
    assert_eq!(persisted(&outcome), Some(Recorded::New));

    let (id_a, a) = taktikal("sp-batch-a", 2);
    let (id_b, b) = taktikal("sp-batch-b", 2);
    let (id_c, c) = taktikal("sp-batch-c", 1);
    let (_, other_body) = taktikal("sp-known", 1);
    // A value PostgreSQL refuses (a NUL in text) fails the batch's statement, not the parser.
    let (id_nul, nul) = taktikal_with("sp-batch-nul", 2, |event| {
        event["EventData"]["Signees"][0]["Name"] = "Jón\u{0}Jónsson".into();
    });
    let unparseable = b"{\"not\": \"taktikal\"}".to_vec();
    let props = [
        properties(&id_a),
        properties(&known_id),
        properties(&id_b),
        properties("unparseable-1"),
        properties(&id_nul),
        properties(&id_c),
    ];
    let bodies: [&[u8]; 6] = [&a, &other_body, &b, &unparseable, &nul, &c];
    let messages: Vec<(&[u8], &BasicProperties)> = bodies.iter().copied().zip(&props).collect();

    let outcomes = bench.handler.handle_batch(&messages).await;

    assert_eq!(outcomes.len(), 6, "one outcome per message");
    assert_eq!(persisted(&outcomes[0]), Some(Recorded::New));
    assert_eq!(dead_kind(&outcomes[1]), Some(DeadKind::ConflictingBody));
    assert_eq!(persisted(&outcomes[2]), Some(Recorded::New));
    assert_eq!(dead_kind(&outcomes[3]), Some(DeadKind::Unparseable));
    assert_eq!(dead_kind(&outcomes[4]), Some(DeadKind::DatabaseRejected));
    assert_eq!(persisted(&outcomes[5]), Some(Recorded::New));
    // The three good ones and the one recorded before; nothing of the poison.
    assert_eq!(bench.count("SELECT count(*) FROM webhook_events").await, 4);
    assert_eq!(
        bench
            .count("SELECT count(*) FROM signing_processes WHERE process_key LIKE 'sp-batch-%'")
            .await,
        3
    );
    assert_eq!(
        bench
            .count("SELECT count(*) FROM signing_processes WHERE process_key = 'sp-batch-nul'")
            .await,
        0
    );
    // The event the conflicting message named keeps its body and its one delivery.
    let (deliveries, body): (i32, Vec<u8>) =
        sqlx::query_as("SELECT deliveries, body FROM webhook_events WHERE event_id = $1")
            .bind(&known_id)
            .fetch_one(bench.db.pool())
            .await
            .unwrap();
    assert_eq!((deliveries, body), (1, known));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_pair_in_one_batch_is_one_row_counting_two_deliveries() {
    let bench = Bench::new().await;
    let (id, body) = taktikal("sp-pair", 2);
    let props = properties(&id);
    let (other_id, other) = taktikal("sp-pair-other", 2);
    let other_props = properties(&other_id);
    let messages: Vec<(&[u8], &BasicProperties)> =
        vec![(&body, &props), (&other, &other_props), (&body, &props)];

    let recorded = bench.record_batch(&messages).await;

    assert_eq!(
        recorded,
        [Recorded::New, Recorded::New, Recorded::Duplicate]
    );
    assert_eq!(bench.count("SELECT count(*) FROM webhook_events").await, 2);
    let deliveries: i32 =
        sqlx::query_scalar("SELECT deliveries FROM webhook_events WHERE event_id = $1")
            .bind(&id)
            .fetch_one(bench.db.pool())
            .await
            .unwrap();
    assert_eq!(deliveries, 2);

    // The same as one by one: the pair handled alone, twice, in a fresh database.
    let alone = Bench::new().await;
    for _ in 0..2 {
        alone.handler.handle(&body, &props).await;
    }
    alone.handler.handle(&other, &other_props).await;
    assert_eq!(bench.projection(&[]).await, alone.projection(&[]).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_events_of_one_process_in_either_order_give_the_rows_one_by_one_gives() {
    // A signature, then "all signed" with the signed PDF, then a late copy of the signature with
    // other signee data: each event touches the process, its signees, activity and documents.
    let (id_1, signed) = taktikal("sp-two", 1);
    let (id_2, all_signed) = taktikal("sp-two", 2);
    let (id_3, created) = taktikal_with("sp-two", 11, |event| {
        event["EventData"]["Signees"][0]["Email"] = "other@example.com".into();
    });
    let events = [
        (&id_1, &signed[..]),
        (&id_2, &all_signed[..]),
        (&id_3, &created[..]),
    ];
    let orders: [[usize; 3]; 3] = [[0, 1, 2], [2, 1, 0], [1, 2, 0]];

    let mut results = Vec::new();
    for order in orders {
        let props: Vec<BasicProperties> = order.iter().map(|&i| properties(events[i].0)).collect();
        let messages: Vec<(&[u8], &BasicProperties)> = order
            .iter()
            .zip(&props)
            .map(|(&i, p)| (events[i].1, p))
            .collect();

        let one_by_one = Bench::new().await;
        for (body, props) in &messages {
            let outcome = one_by_one.handler.handle(body, props).await;
            assert_eq!(persisted(&outcome), Some(Recorded::New));
        }
        let batched = Bench::new().await;
        let recorded = batched.record_batch(&messages).await;
        assert_eq!(recorded, [Recorded::New; 3]);

        let expected = one_by_one.projection(&[]).await;
        assert!(
            expected.iter().any(|r| r.starts_with("documents: ")),
            "the events project documents: {expected:#?}"
        );
        assert_eq!(batched.projection(&[]).await, expected, "order {order:?}");
        // Which event first told a fact (`event_id`) depends on the order, by design.
        results.push(batched.projection(&["event_id"]).await);
    }
    // The rest does not depend on the order at all.
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_plans_statements_for_the_tables_as_they_are_now() {
    // A plan cached while the tables were empty kept scanning them whole as they grew.
    let bench = Bench::new().await;
    let mode: String = sqlx::query_scalar("SHOW plan_cache_mode")
        .fetch_one(bench.db.pool())
        .await
        .unwrap();
    assert_eq!(mode, "force_custom_plan");
}
