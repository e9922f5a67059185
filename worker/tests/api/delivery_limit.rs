//! The work queue's delivery limit is a policy, not a queue argument: an operator changes it on a
//! running broker without declaring anything again, and a work queue an earlier version declared
//! with `x-delivery-limit` is used as it is.

use std::time::Duration;

use countersign::amqp::{publish_confirmed, queue_length};
use countersign::topology::{
    Argument, PERSIST_DELIVERY_LIMIT, Topology, declare_queue, is_inequivalent,
};
use countersign_testkit::{TopologyGuard, apply_policies, confirm_channel, unique_prefix};
use lapin::options::{BasicGetOptions, BasicRejectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel};

async fn enqueue(channel: &Channel, queue: &str, body: &str) {
    publish_confirmed(
        channel,
        ShortString::from(""),
        ShortString::from(queue),
        body.as_bytes(),
        BasicProperties::default(),
        Duration::from_secs(10),
    )
    .await
    .expect("confirmed");
}

/// Takes the message at the head of `queue` and gives it back (reject, requeue) — what a worker
/// that crashes on it does — `times` times: how many of those takes found it.
async fn fail(channel: &Channel, queue: &str, body: &str, times: usize) -> usize {
    let mut found = 0;
    for _ in 0..times {
        let Some(message) = channel
            .basic_get(ShortString::from(queue), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
        else {
            break;
        };
        assert_eq!(message.delivery.data, body.as_bytes());
        found += 1;
        channel
            .basic_reject(
                message.delivery.delivery_tag,
                BasicRejectOptions { requeue: true },
            )
            .await
            .unwrap();
    }
    found
}

/// Waits (10 s at most) until `queue` holds `count` messages: dead-lettering is asynchronous.
async fn until_length(channel: &Channel, queue: &str, count: u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let length = queue_length(channel, queue).await.unwrap();
        if length == count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{queue} holds {length}, not {count}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Settled {
    Kept,
    Parked,
}

/// Where the one message in flight ended (10 s at most): back in `persist`, or in `dead` (which
/// held `parked` before). A rejected message is requeued or dead-lettered a moment after the
/// reject, so the counts are read until one of them says.
async fn settled_in(channel: &Channel, persist: &str, dead: &str, parked: u32) -> Settled {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if queue_length(channel, persist).await.unwrap() == 1 {
            return Settled::Kept;
        }
        if queue_length(channel, dead).await.unwrap() > parked {
            return Settled::Parked;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the message is in neither {persist} nor {dead}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_delivery_limit_is_the_policys_and_changes_on_a_running_broker() {
    let topology = Topology::new(&unique_prefix(), &[]);
    let _cleanup = TopologyGuard(topology.clone());
    let (_connection, channel) = confirm_channel().await;
    let persist = topology.persist_queue();
    let dead = topology.dead_queue();
    assert!(
        !topology
            .persist_spec()
            .arguments
            .contains_key("x-delivery-limit")
    );
    // The policy with a limit of 2, in place before the queue (as the definitions file puts it):
    // a message that fails three times is parked by RabbitMQ.
    apply_policies(&topology, Some(2)).await;
    topology.declare(&channel).await.unwrap();
    enqueue(&channel, persist, "poison").await;
    assert_eq!(fail(&channel, persist, "poison", 3).await, 3);
    until_length(&channel, dead, 1).await;
    assert_eq!(queue_length(&channel, persist).await.unwrap(), 0);

    // The operator raises it to the shipped value on the running broker, declaring nothing: a
    // message that fails three times now stays in the work queue. The queue applies a changed
    // policy a moment after the management API reports it, so a message parked meanwhile is
    // counted and the check made again with another one.
    apply_policies(&topology, None).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for n in 0.. {
        let body = format!("flaky {n}");
        let parked = queue_length(&channel, dead).await.unwrap();
        enqueue(&channel, persist, &body).await;
        fail(&channel, persist, &body, 3).await;
        if settled_in(&channel, persist, dead, parked).await == Settled::Kept {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the raised limit ({PERSIST_DELIVERY_LIMIT}) never took effect"
        );
    }
    // And the shipped limit still parks what fails more often than it allows (the survivor sent
    // again, so that its deliveries are counted from none).
    let parked_before = queue_length(&channel, dead).await.unwrap();
    let head = channel
        .basic_get(ShortString::from(persist), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the message that survived");
    let body = String::from_utf8(head.delivery.data.clone()).unwrap();
    enqueue(&channel, persist, &body).await;
    let limit = usize::try_from(PERSIST_DELIVERY_LIMIT).unwrap();
    assert_eq!(fail(&channel, persist, &body, limit + 5).await, limit + 1);
    until_length(&channel, dead, parked_before + 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_work_queue_an_earlier_version_declared_is_used_as_it_is() {
    let topology = Topology::new(&unique_prefix(), &[Duration::from_secs(5)]);
    let _cleanup = TopologyGuard(topology.clone());
    let (connection, channel) = confirm_channel().await;

    // As versions before the policy declared it: with x-delivery-limit 20.
    let mut earlier = topology.persist_spec();
    earlier.arguments.insert(
        "x-delivery-limit",
        Argument::Integer(PERSIST_DELIVERY_LIMIT),
    );
    declare_queue(&channel, &earlier).await.unwrap();
    enqueue(&channel, topology.persist_queue(), "waiting").await;

    // This version's declaration differs; the binaries' start-up keeps the queue and its message.
    let strict = connection.create_channel().await.unwrap();
    let refused = topology.declare(&strict).await.unwrap_err();
    assert!(is_inequivalent(&refused, "x-delivery-limit"), "{refused}");
    let declared = topology.declare_on(&connection).await.unwrap();
    assert!(declared.earlier_persist_queue);
    assert!(!declared.outdated_dead_queue);
    assert_eq!(
        queue_length(&channel, topology.persist_queue())
            .await
            .unwrap(),
        1
    );

    // A current queue is not reported.
    let fresh = Topology::new(&unique_prefix(), &[]);
    let _fresh_cleanup = TopologyGuard(fresh.clone());
    let declared = fresh.declare_on(&connection).await.unwrap();
    assert!(!declared.earlier_persist_queue);
}
