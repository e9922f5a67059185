//! The broker topology: one exchange, the work queue, the retry queues and the parking lot.
//!
//! ```text
//! <prefix>.events (topic) ──#──▶ <prefix>.persist (quorum) ──consume──▶ worker
//!                                   ▲        │ over the policy's delivery-limit
//!   <prefix>.retry.<delay> ─TTL─────┘        ▼
//!   (quorum, one per delay)           <prefix>.dead (quorum, kept however often it is looked at)
//! ```
//!
//! Described as data first ([`Topology::queues`], [`Topology::bindings`]) so that the same
//! description is declared by both binaries and written as RabbitMQ definitions; a test keeps the
//! two equal. Declaring is idempotent; a queue that exists with other arguments is an error the
//! broker reports (`PRECONDITION_FAILED`), and start-up says so.
//!
//! A queue's arguments can never change (RabbitMQ refuses a declaration with others, and the
//! Messaging Topology Operator refuses to update a Queue's arguments), so they carry only what
//! the design rests on: the queue type, where a message goes when it fails, at-least-once
//! dead-lettering, a retry queue's delay (its name says it: other delays are other queues) and
//! the parking lot's "never drop". What an operator may want to change on a running system — how
//! often a message may crash the workers before RabbitMQ parks it — is a policy
//! ([`Topology::policies`]), applied from the definitions file, the Kubernetes `Policy` resource
//! or `rabbitmqctl set_policy`, and changed there without touching a queue.

use std::collections::BTreeMap;
use std::time::Duration;

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ExchangeKind};

use crate::config::AmqpConfig;

/// How often a message may be delivered from `<prefix>.persist` before RabbitMQ itself parks it
/// in `<prefix>.dead`: a safety net for a message that crashes the worker every time. Ordinary
/// failures take the retry queues long before this. The `delivery-limit` of the shipped policy
/// ([`Topology::policies`]), not a queue argument: an operator may change it on a running broker.
/// Without the policy RabbitMQ 4 applies 20 by itself; RabbitMQ 3.x applies no limit.
pub const PERSIST_DELIVERY_LIMIT: i64 = 20;

/// The priority of the shipped policy. RabbitMQ applies one policy to a queue — the matching one
/// of the greatest priority — so a policy of your own that matches `<prefix>.persist` with a
/// greater priority replaces this one: give it a `delivery-limit` too.
pub const POLICY_PRIORITY: i64 = 10;

/// Start-up's note for a work queue declared by an earlier version with `x-delivery-limit`.
pub const EARLIER_PERSIST_QUEUE: &str = "the work queue was declared by an earlier version with x-delivery-limit 20; it is used as it is. RabbitMQ applies the smaller of that argument and a policy's delivery-limit, so a policy can lower the limit on this queue but not raise it above 20";

/// How often a parked message may be delivered from `<prefix>.dead` before RabbitMQ drops it:
/// never, in practice. Operators look at parked messages with the management UI's *Get messages*
/// and "Nack message requeue true", and every look is a delivery. Without this argument
/// RabbitMQ 4 gives every quorum queue a limit of 20 and drops the message after its 21st look
/// (the parking lot has nowhere to dead-letter to). `-1` means "no limit" only from RabbitMQ 4.0
/// on: RabbitMQ 3.10 accepts it and drops the message after its first look. A million looks is
/// no limit for a person, and is kept by both.
pub const DEAD_DELIVERY_LIMIT: i64 = 1_000_000;

/// The start-up warning for a parking lot declared by an earlier version, without
/// [`DEAD_DELIVERY_LIMIT`], and what to do about it.
pub const OUTDATED_DEAD_QUEUE: &str = "the parking lot was declared by an earlier version without x-delivery-limit: on RabbitMQ 4 a parked message looked at 20 times with requeue is dropped. Stop the workers and run `countersign-worker upgrade dead-queue` (it moves the parked messages aside, declares the queue again and moves them back)";

/// A queue argument value, as both AMQP and the definitions file carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Argument {
    Text(String),
    Integer(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: String,
    pub arguments: BTreeMap<&'static str, Argument>,
}

/// A policy of the topology: what RabbitMQ applies to the queues whose names match `pattern`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySpec {
    pub name: String,
    /// A regular expression matching exactly the queues the policy is for.
    pub pattern: String,
    pub priority: i64,
    pub definition: BTreeMap<&'static str, Argument>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingSpec {
    pub exchange: String,
    pub queue: String,
    pub routing_key: String,
}

/// The names and arguments of everything Countersign declares under one prefix.
#[derive(Debug, Clone)]
pub struct Topology {
    exchange: String,
    persist: String,
    dead: String,
    retry: Vec<(String, Duration)>,
}

impl Topology {
    pub fn new(prefix: &str, retry_delays: &[Duration]) -> Self {
        Self {
            exchange: format!("{prefix}.events"),
            persist: format!("{prefix}.persist"),
            dead: format!("{prefix}.dead"),
            retry: retry_delays
                .iter()
                .map(|d| {
                    (
                        format!("{prefix}.retry.{}", humantime::format_duration(*d)),
                        *d,
                    )
                })
                .collect(),
        }
    }

    pub fn from_config(amqp: &AmqpConfig) -> Self {
        Self::new(&amqp.prefix, &amqp.retry_delays)
    }

    /// The topic exchange the ingester publishes to.
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// The work queue the worker consumes.
    pub fn persist_queue(&self) -> &str {
        &self.persist
    }

    /// The parking lot for what cannot succeed.
    pub fn dead_queue(&self) -> &str {
        &self.dead
    }

    /// Retry queues and their delays, shortest first.
    pub fn retry_queues(&self) -> &[(String, Duration)] {
        &self.retry
    }

    pub fn queues(&self) -> Vec<QueueSpec> {
        let quorum = || BTreeMap::from([("x-queue-type", Argument::Text("quorum".into()))]);
        // At-least-once dead-lettering (3.10+) keeps a message until the target queue confirms
        // it; it requires reject-publish overflow.
        let dead_letter_to = |target: &str| {
            let mut args = quorum();
            args.insert("x-dead-letter-exchange", Argument::Text(String::new()));
            args.insert(
                "x-dead-letter-routing-key",
                Argument::Text(target.to_owned()),
            );
            args.insert(
                "x-dead-letter-strategy",
                Argument::Text("at-least-once".into()),
            );
            args.insert("x-overflow", Argument::Text("reject-publish".into()));
            args
        };

        let mut queues = vec![
            QueueSpec {
                name: self.persist.clone(),
                arguments: dead_letter_to(&self.dead),
            },
            QueueSpec {
                name: self.dead.clone(),
                arguments: self.dead_arguments(),
            },
        ];
        for (name, delay) in &self.retry {
            let mut args = dead_letter_to(&self.persist);
            let ttl_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            args.insert("x-message-ttl", Argument::Integer(ttl_ms));
            queues.push(QueueSpec {
                name: name.clone(),
                arguments: args,
            });
        }
        queues
    }

    /// The work queue's declaration.
    pub fn persist_spec(&self) -> QueueSpec {
        self.queues().swap_remove(0)
    }

    /// The policies the topology relies on, named after the queue each is for. One today:
    /// `<prefix>.persist` — `delivery-limit` [`PERSIST_DELIVERY_LIMIT`].
    pub fn policies(&self) -> Vec<PolicySpec> {
        vec![PolicySpec {
            name: self.persist.clone(),
            pattern: format!("^{}$", regex_escape(&self.persist)),
            priority: POLICY_PRIORITY,
            definition: BTreeMap::from([(
                "delivery-limit",
                Argument::Integer(PERSIST_DELIVERY_LIMIT),
            )]),
        }]
    }

    /// The parking lot's arguments: a quorum queue that keeps what it holds however often it is
    /// looked at ([`DEAD_DELIVERY_LIMIT`]).
    fn dead_arguments(&self) -> BTreeMap<&'static str, Argument> {
        BTreeMap::from([
            ("x-queue-type", Argument::Text("quorum".into())),
            ("x-delivery-limit", Argument::Integer(DEAD_DELIVERY_LIMIT)),
        ])
    }

    /// Where `countersign-worker upgrade dead-queue` keeps the parked messages while it declares
    /// `<prefix>.dead` again.
    pub fn dead_holding_queue(&self) -> String {
        format!("{}.upgrade", self.dead)
    }

    /// The holding queue's declaration: the parking lot's own arguments.
    pub fn dead_holding_spec(&self) -> QueueSpec {
        QueueSpec {
            name: self.dead_holding_queue(),
            arguments: self.dead_arguments(),
        }
    }

    /// The parking lot's declaration.
    pub fn dead_spec(&self) -> QueueSpec {
        QueueSpec {
            name: self.dead.clone(),
            arguments: self.dead_arguments(),
        }
    }

    pub fn bindings(&self) -> Vec<BindingSpec> {
        vec![BindingSpec {
            exchange: self.exchange.clone(),
            queue: self.persist.clone(),
            routing_key: "#".into(),
        }]
    }

    /// Declares the exchange, queues and bindings; safe to repeat. Any difference from what
    /// exists is an error (`PRECONDITION_FAILED`), the parking lot's included.
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        self.declare_exchange(channel).await?;
        for queue in self.queues() {
            declare_queue(channel, &queue).await?;
        }
        self.declare_bindings(channel).await
    }

    /// [`Topology::declare`], but a parking lot declared by an earlier version without
    /// `x-delivery-limit` is used as it is (its messages stay where they are) and reported in
    /// [`Declared::outdated_dead_queue`]: a deployment upgraded in place keeps running, and the
    /// operator moves the parked messages with `countersign-worker upgrade dead-queue` when the
    /// workers are stopped. Likewise a work queue declared with the `x-delivery-limit` earlier
    /// versions gave it ([`Declared::earlier_persist_queue`]). Any other difference is an error.
    pub async fn declare_on(&self, connection: &Connection) -> Result<Declared, lapin::Error> {
        let channel = connection.create_channel().await?;
        self.declare_exchange(&channel).await?;
        let mut declared = Declared::default();
        for queue in self.queues() {
            if queue.name == self.dead {
                declared.outdated_dead_queue = !declare_or_keep(connection, &queue).await?;
            } else if queue.name == self.persist {
                declared.earlier_persist_queue = !declare_or_keep(connection, &queue).await?;
            } else {
                declare_queue(&channel, &queue).await?;
            }
        }
        self.declare_bindings(&channel).await?;
        let _ = channel.close(200, "declared".into()).await;
        Ok(declared)
    }

    async fn declare_exchange(&self, channel: &Channel) -> Result<(), lapin::Error> {
        channel
            .exchange_declare(
                ShortString::from(self.exchange.as_str()),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    // Survives a broker restart, like the queues behind it.
                    durable: true,
                    // Stays when no queue is bound: the ingester must get "unroutable", not 404.
                    auto_delete: false,
                    // Clients publish to it; nothing routes through it internally.
                    internal: false,
                    // Create it if missing, rather than failing.
                    passive: false,
                    // Wait for DeclareOk so that a mismatch fails start-up.
                    nowait: false,
                },
                FieldTable::default(),
            )
            .await
    }

    async fn declare_bindings(&self, channel: &Channel) -> Result<(), lapin::Error> {
        for binding in self.bindings() {
            channel
                .queue_bind(
                    ShortString::from(binding.queue.as_str()),
                    ShortString::from(binding.exchange.as_str()),
                    ShortString::from(binding.routing_key.as_str()),
                    QueueBindOptions { nowait: false },
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// The same topology as RabbitMQ definitions (the format of `rabbitmqctl export_definitions`
    /// and `load_definitions`), for a broker that starts from a file: `deploy/rabbitmq/`.
    pub fn definitions(&self) -> serde_json::Value {
        let arguments = |args: &BTreeMap<&'static str, Argument>| {
            serde_json::Value::Object(
                args.iter()
                    .map(|(k, v)| {
                        let value = match v {
                            Argument::Text(text) => serde_json::Value::from(text.as_str()),
                            Argument::Integer(n) => serde_json::Value::from(*n),
                        };
                        ((*k).to_owned(), value)
                    })
                    .collect(),
            )
        };
        serde_json::json!({
            "vhosts": [{ "name": "/" }],
            "exchanges": [{
                "name": self.exchange,
                "vhost": "/",
                "type": "topic",
                "durable": true,
                "auto_delete": false,
                "internal": false,
                "arguments": {}
            }],
            "queues": self.queues().iter().map(|q| serde_json::json!({
                "name": q.name,
                "vhost": "/",
                "durable": true,
                "auto_delete": false,
                "arguments": arguments(&q.arguments)
            })).collect::<Vec<_>>(),
            "policies": self.policies().iter().map(|p| serde_json::json!({
                "name": p.name,
                "vhost": "/",
                "pattern": p.pattern,
                "apply-to": "queues",
                "priority": p.priority,
                "definition": arguments(&p.definition)
            })).collect::<Vec<_>>(),
            "bindings": self.bindings().iter().map(|b| serde_json::json!({
                "source": b.exchange,
                "vhost": "/",
                "destination": b.queue,
                "destination_type": "queue",
                "routing_key": b.routing_key,
                "arguments": {}
            })).collect::<Vec<_>>(),
        })
    }

    /// Deletes everything [`Topology::declare`] made, messages included. For tests and teardown.
    pub async fn delete(&self, channel: &Channel) -> Result<(), lapin::Error> {
        for queue in self.queues() {
            channel
                .queue_delete(
                    ShortString::from(queue.name.as_str()),
                    QueueDeleteOptions::default(),
                )
                .await?;
        }
        channel
            .exchange_delete(
                ShortString::from(self.exchange.as_str()),
                ExchangeDeleteOptions::default(),
            )
            .await
    }
}

/// What [`Topology::declare_on`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Declared {
    /// `<prefix>.dead` exists without `x-delivery-limit` (declared by an earlier version) and was
    /// left as it is: see [`OUTDATED_DEAD_QUEUE`].
    pub outdated_dead_queue: bool,
    /// `<prefix>.persist` exists with the `x-delivery-limit` earlier versions declared and was
    /// left as it is: see [`EARLIER_PERSIST_QUEUE`].
    pub earlier_persist_queue: bool,
}

/// Declares `queue`, or keeps the queue of that name if it differs only in `x-delivery-limit`:
/// false when it was kept. On a channel of its own: a refused declaration closes its channel.
async fn declare_or_keep(connection: &Connection, queue: &QueueSpec) -> Result<bool, lapin::Error> {
    let probe = connection.create_channel().await?;
    match declare_queue(&probe, queue).await {
        Ok(()) => {
            let _ = probe.close(200, "declared".into()).await;
            Ok(true)
        }
        Err(error) if is_inequivalent(&error, "x-delivery-limit") => Ok(false),
        Err(error) => Err(error),
    }
}

/// `text` as a regular expression that matches exactly it (names are letters, digits, `.`, `-`
/// and `_`; anything else is escaped too).
fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if !(c.is_ascii_alphanumeric() || c == '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Declares one durable queue of the topology.
pub async fn declare_queue(channel: &Channel, queue: &QueueSpec) -> Result<(), lapin::Error> {
    channel
        .queue_declare(
            ShortString::from(queue.name.as_str()),
            QueueDeclareOptions {
                // Quorum queues are durable by nature; RabbitMQ requires saying so.
                durable: true,
                // Shared by every ingester and worker replica.
                exclusive: false,
                // Outlives its consumers: messages wait for the worker.
                auto_delete: false,
                passive: false,
                nowait: false,
            },
            field_table(&queue.arguments),
        )
        .await
        .map(|_| ())
}

/// `PRECONDITION_FAILED` because an existing queue has another value of `argument`.
pub fn is_inequivalent(error: &lapin::Error, argument: &str) -> bool {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => {
            matches!(
                amqp.kind(),
                lapin::protocol::AMQPErrorKind::Soft(
                    lapin::protocol::AMQPSoftError::PRECONDITIONFAILED
                )
            ) && amqp
                .get_message()
                .as_str()
                .contains(&format!("inequivalent arg '{argument}'"))
        }
        _ => false,
    }
}

fn field_table(arguments: &BTreeMap<&'static str, Argument>) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in arguments {
        let value = match value {
            Argument::Text(text) => AMQPValue::LongString(LongString::from(text.as_str())),
            Argument::Integer(n) => AMQPValue::LongLongInt(*n),
        };
        table.insert(ShortString::from(*key), value);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let t = Topology::new("cs", &[Duration::from_secs(5), Duration::from_secs(120)]);
        assert_eq!(t.exchange(), "cs.events");
        assert_eq!(t.persist_queue(), "cs.persist");
        assert_eq!(t.dead_queue(), "cs.dead");
        let names: Vec<_> = t.queues().into_iter().map(|q| q.name).collect();
        assert_eq!(
            names,
            ["cs.persist", "cs.dead", "cs.retry.5s", "cs.retry.2m"]
        );
        let dead = &t.queues()[1];
        assert_eq!(
            dead.arguments["x-delivery-limit"],
            Argument::Integer(DEAD_DELIVERY_LIMIT)
        );
        assert_eq!(t.dead_holding_queue(), "cs.dead.upgrade");
        assert!(!t.persist_spec().arguments.contains_key("x-delivery-limit"));
        assert_eq!(t.persist_spec(), t.queues()[0]);
        let retry = &t.queues()[3];
        assert_eq!(retry.arguments["x-message-ttl"], Argument::Integer(120_000));
        assert_eq!(
            retry.arguments["x-dead-letter-routing-key"],
            Argument::Text("cs.persist".into())
        );
    }

    #[test]
    fn the_delivery_limit_is_a_policy_for_the_work_queue_alone() {
        let t = Topology::new("cs-1.x_y", &[Duration::from_secs(5)]);
        let policies = t.policies();
        assert_eq!(policies.len(), 1);
        let policy = &policies[0];
        assert_eq!(policy.name, "cs-1.x_y.persist");
        assert_eq!(policy.pattern, r"^cs\-1\.x_y\.persist$");
        assert_eq!(
            policy.definition,
            BTreeMap::from([("delivery-limit", Argument::Integer(PERSIST_DELIVERY_LIMIT))])
        );
        let definitions = t.definitions();
        assert_eq!(definitions["policies"][0]["apply-to"], "queues");
        assert_eq!(
            definitions["policies"][0]["definition"]["delivery-limit"],
            20
        );
    }
}
