//! The broker topology: one exchange, the work queue, the retry queues and the parking lot.
//!
//! ```text
//! <prefix>.events (topic) ──#──▶ <prefix>.persist (quorum) ──consume──▶ worker
//!                                   ▲        │ over x-delivery-limit
//!   <prefix>.retry.<delay> ─TTL─────┘        ▼
//!   (quorum, one per delay)           <prefix>.dead (quorum)
//! ```
//!
//! Described as data first ([`Topology::queues`], [`Topology::bindings`]) so that the same
//! description is declared by both binaries and written as RabbitMQ definitions; a test keeps the
//! two equal. Declaring is idempotent; a queue that exists with other arguments is an error the
//! broker reports (`PRECONDITION_FAILED`), and start-up says so.

use std::collections::BTreeMap;
use std::time::Duration;

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::config::AmqpConfig;

/// How often a message may be delivered from `<prefix>.persist` before RabbitMQ itself parks it
/// in `<prefix>.dead`: a safety net for a message that crashes the worker every time. Ordinary
/// failures take the retry queues long before this.
pub const PERSIST_DELIVERY_LIMIT: i64 = 20;

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

        let mut persist = dead_letter_to(&self.dead);
        persist.insert(
            "x-delivery-limit",
            Argument::Integer(PERSIST_DELIVERY_LIMIT),
        );
        let mut queues = vec![
            QueueSpec {
                name: self.persist.clone(),
                arguments: persist,
            },
            QueueSpec {
                name: self.dead.clone(),
                arguments: quorum(),
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

    pub fn bindings(&self) -> Vec<BindingSpec> {
        vec![BindingSpec {
            exchange: self.exchange.clone(),
            queue: self.persist.clone(),
            routing_key: "#".into(),
        }]
    }

    /// Declares the exchange, queues and bindings; safe to repeat.
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
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
            .await?;
        for queue in self.queues() {
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
                .await?;
        }
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
        let retry = &t.queues()[3];
        assert_eq!(retry.arguments["x-message-ttl"], Argument::Integer(120_000));
        assert_eq!(
            retry.arguments["x-dead-letter-routing-key"],
            Argument::Text("cs.persist".into())
        );
    }
}
