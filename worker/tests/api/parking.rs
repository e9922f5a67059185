//! The parking lot keeps what it holds: looked at with requeue as often as an operator likes, and
//! across the upgrade of a parking lot an earlier version declared (RabbitMQ 4 gives a quorum
//! queue without `x-delivery-limit` a limit of 20 and then drops the message).

use std::process::Command;
use std::time::Duration;

use countersign::amqp::{publish_confirmed, queue_length};
use countersign::topology::{
    DEAD_DELIVERY_LIMIT, QueueSpec, Topology, declare_queue, is_inequivalent,
};
use countersign_testkit::{
    TopologyGuard, amqp_url, confirm_channel, management_url, unique_prefix,
};
use lapin::options::{BasicConsumeOptions, BasicGetOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use serde_json::{Value, json};

/// A parked message as the worker parks one: its body and the parking headers.
async fn park(channel: &Channel, queue: &str, n: usize) {
    let mut headers = FieldTable::default();
    headers.insert(
        "x-dead-reason".into(),
        AMQPValue::LongString(LongString::from(format!("test reason {n}"))),
    );
    publish_confirmed(
        channel,
        ShortString::from(""),
        ShortString::from(queue),
        format!("parked body {n}").as_bytes(),
        BasicProperties::default()
            .with_message_id(ShortString::from(format!("event-{n}")))
            .with_headers(headers),
        Duration::from_secs(10),
    )
    .await
    .expect("parked");
}

/// One look with the management API's *Get messages*, "Nack message requeue true", as the
/// runbook tells operators to look: the messages seen.
async fn look(http: &reqwest::Client, queue: &str) -> Vec<Value> {
    let response = http
        .post(format!("{}/api/queues/%2F/{queue}/get", management_url()))
        .basic_auth("guest", Some("guest"))
        .json(&json!({"count": 10, "ackmode": "reject_requeue_true", "encoding": "auto"}))
        .send()
        .await
        .expect("the management API answers");
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn arguments(http: &reqwest::Client, queue: &str) -> Value {
    let response = http
        .get(format!("{}/api/queues/%2F/{queue}", management_url()))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{queue} exists");
    response.json::<Value>().await.unwrap()["arguments"].clone()
}

/// (message id, body, x-dead-reason) of every message in `queue`, taken out of it.
async fn take_all(channel: &Channel, queue: &str) -> Vec<(String, String, String)> {
    let mut taken = Vec::new();
    while let Some(message) = channel
        .basic_get(ShortString::from(queue), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let properties = &message.delivery.properties;
        let reason = properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-dead-reason").cloned())
            .and_then(|v| match v {
                AMQPValue::LongString(text) => Some(text.to_string()),
                _ => None,
            })
            .unwrap_or_default();
        taken.push((
            properties.message_id().as_ref().unwrap().to_string(),
            String::from_utf8(message.delivery.data.clone()).unwrap(),
            reason,
        ));
    }
    taken
}

fn parked(ids: std::ops::Range<usize>) -> Vec<(String, String, String)> {
    ids.map(|n| {
        (
            format!("event-{n}"),
            format!("parked body {n}"),
            format!("test reason {n}"),
        )
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parked_message_survives_a_hundred_looks_with_requeue() {
    let topology = Topology::new(&unique_prefix(), &[]);
    let _cleanup = TopologyGuard(topology.clone());
    let (_connection, channel) = confirm_channel().await;
    topology.declare(&channel).await.unwrap();
    park(&channel, topology.dead_queue(), 1).await;

    let http = reqwest::Client::new();
    assert_eq!(
        arguments(&http, topology.dead_queue()).await["x-delivery-limit"],
        json!(DEAD_DELIVERY_LIMIT)
    );
    for n in 1..=100 {
        let seen = look(&http, topology.dead_queue()).await;
        assert_eq!(seen.len(), 1, "look {n} sees the parked message");
        assert_eq!(seen[0]["payload"], "parked body 1");
    }
    assert_eq!(
        take_all(&channel, topology.dead_queue()).await,
        parked(1..2)
    );
}

/// Runs `countersign-worker upgrade dead-queue` for `prefix`: (success, stdout, stderr).
fn upgrade_command(prefix: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("countersign.toml");
    std::fs::write(&config, format!("[amqp]\nprefix = \"{prefix}\"\n")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_countersign-worker"))
        .args(["upgrade", "dead-queue"])
        .env("COUNTERSIGN_CONFIG", &config)
        .env("AMQP_URL", amqp_url())
        .env_remove("DATABASE_URL")
        .output()
        .expect("worker binary runs");
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_dead_queue_keeps_what_an_earlier_version_parked() {
    let prefix = unique_prefix();
    let topology = Topology::new(&prefix, &[Duration::from_secs(5)]);
    let _cleanup = TopologyGuard(topology.clone());
    let (connection, channel) = confirm_channel().await;
    let http = reqwest::Client::new();

    // The parking lot as versions before DEAD_DELIVERY_LIMIT declared it, with three messages.
    let earlier = QueueSpec {
        name: topology.dead_queue().to_owned(),
        arguments: [(
            "x-queue-type",
            countersign::topology::Argument::Text("quorum".into()),
        )]
        .into(),
    };
    declare_queue(&channel, &earlier).await.unwrap();
    for n in 0..3 {
        park(&channel, topology.dead_queue(), n).await;
    }

    // This version's strict declaration refuses it; the binaries' start-up uses it as it is.
    let strict = connection.create_channel().await.unwrap();
    let refused = topology.declare(&strict).await.unwrap_err();
    assert!(is_inequivalent(&refused, "x-delivery-limit"), "{refused}");
    let declared = topology.declare_on(&connection).await.unwrap();
    assert!(declared.outdated_dead_queue);
    assert_eq!(
        queue_length(&channel, topology.persist_queue())
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        queue_length(&channel, topology.dead_queue()).await.unwrap(),
        3
    );

    // A worker consuming: the command refuses and changes nothing.
    let consumer_channel = connection.create_channel().await.unwrap();
    let _consumer = consumer_channel
        .basic_consume(
            ShortString::from(topology.persist_queue()),
            ShortString::from("test-worker"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (ok, _, stderr) = upgrade_command(&prefix);
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "{} has 1 consumer(s): stop the workers",
            topology.persist_queue()
        )),
        "{stderr}"
    );
    assert_eq!(
        arguments(&http, topology.dead_queue())
            .await
            .get("x-delivery-limit"),
        None
    );
    consumer_channel.close(200, "stopped".into()).await.unwrap();

    let (ok, stdout, stderr) = upgrade_command(&prefix);
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout.trim(),
        format!(
            "{} declared again with x-delivery-limit {DEAD_DELIVERY_LIMIT}; 3 parked message(s) kept",
            topology.dead_queue()
        )
    );
    assert_eq!(
        arguments(&http, topology.dead_queue()).await["x-delivery-limit"],
        json!(DEAD_DELIVERY_LIMIT)
    );
    topology
        .declare(&strict_channel(&connection).await)
        .await
        .unwrap();
    assert!(
        !topology
            .declare_on(&connection)
            .await
            .unwrap()
            .outdated_dead_queue
    );

    // Again: nothing to do.
    let (ok, stdout, stderr) = upgrade_command(&prefix);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("nothing to do"), "{stdout}");

    // An upgrade interrupted after the new parking lot was declared: the command finishes it.
    let holding = topology.dead_holding_spec();
    declare_queue(&channel, &holding).await.unwrap();
    park(&channel, &holding.name, 3).await;
    let (ok, stdout, stderr) = upgrade_command(&prefix);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("; 1 parked message(s) kept"), "{stdout}");
    assert!(
        !queue_exists(&connection, &holding.name).await,
        "the holding queue is gone"
    );

    // Every message kept once, body and headers unchanged, oldest first.
    assert_eq!(
        take_all(&channel, topology.dead_queue()).await,
        parked(0..4)
    );
}

async fn strict_channel(connection: &Connection) -> Channel {
    connection.create_channel().await.unwrap()
}

async fn queue_exists(connection: &Connection, queue: &str) -> bool {
    let probe = connection.create_channel().await.unwrap();
    queue_length(&probe, queue).await.is_ok()
}
