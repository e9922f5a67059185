//! The ingester's link to RabbitMQ: one connection, one confirm-mode channel, kept alive.
//!
//! [`Broker::maintain`] connects, enables publisher confirms, declares the topology, and then
//! watches the connection; when it is lost the channel is withdrawn (so requests get 503 at once
//! and `/readyz` turns false) and it reconnects with a growing back-off, forever, until shutdown.
//! The ingester therefore starts while the broker is down and recovers without a restart.
//!
//! [`Broker::publish`] takes no lock: every request publishes on the shared channel and awaits its
//! own confirm, so confirms pipeline and the broker batches them. Only an `Ack` without a returned
//! message is success; a `Nack`, a return (mandatory publish with no route), a channel error or no
//! confirm within the timeout is a [`PublishError`], which the route turns into a 503.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
pub use countersign::amqp::PublishError;
use countersign::amqp::{CopyGate, FrameTooLarge};
use countersign::message::Outbound;
use countersign::topology::Topology;
use countersign_providers::VerifiedWebhook;
use futures_util::StreamExt;
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Connection, Event};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How often the connection's state is checked besides its events.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// The least time between two declarations of the topology prompted by unroutable publishes.
const REDECLARE_INTERVAL: Duration = Duration::from_secs(5);

pub struct Broker {
    channel: ArcSwapOption<Channel>,
    exchange: ShortString,
    topology: Topology,
    confirm_timeout: Duration,
    blocked: AtomicBool,
    /// The frame size negotiated on the last connection (before the first: what is asked for).
    /// A message's header frame must fit in one frame, or the broker closes the connection.
    frame_max: AtomicU32,
    /// Large bodies enter the client's frames one at a time (each is then held twice only
    /// briefly, and one at a time).
    copies: CopyGate,
    /// Woken by a publish that saw the channel fail, so the watcher need not wait for its tick.
    suspect: tokio::sync::Notify,
    /// Woken by an unroutable publish: the binding (or a queue) is gone, say its Kubernetes
    /// resource was deleted, and the connection is fine, so nothing else would declare it again.
    unroutable: tokio::sync::Notify,
    metrics: Metrics,
}

impl Broker {
    pub fn new(topology: Topology, confirm_timeout: Duration, metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            channel: ArcSwapOption::empty(),
            exchange: ShortString::from(topology.exchange()),
            topology,
            confirm_timeout,
            blocked: AtomicBool::new(false),
            frame_max: AtomicU32::new(countersign::amqp::FRAME_MAX),
            copies: CopyGate::default(),
            suspect: tokio::sync::Notify::new(),
            unroutable: tokio::sync::Notify::new(),
            metrics,
        })
    }

    /// True while a confirm-mode channel is open and the broker accepts publishes.
    pub fn is_ready(&self) -> bool {
        !self.blocked.load(Ordering::Relaxed)
            && self
                .channel
                .load()
                .as_ref()
                .is_some_and(|c| c.status().connected())
    }

    /// The frame size negotiated with the broker (or asked for, before the first connection).
    pub fn frame_max(&self) -> u32 {
        self.frame_max.load(Ordering::Relaxed)
    }

    /// `Ok` if a message with `properties` fits the broker's frame: one that does not would
    /// close the connection every time it is sent, so it is neither published nor spooled.
    pub fn check_fits(&self, properties: &BasicProperties) -> Result<(), FrameTooLarge> {
        countersign::amqp::check_header_frame(properties, self.frame_max())
    }

    /// Publishes the webhook's body and waits for the broker's confirm.
    pub async fn publish(
        &self,
        webhook: &VerifiedWebhook,
        outbound: Outbound,
    ) -> Result<(), PublishError> {
        self.publish_raw(outbound.routing_key, webhook.body(), outbound.properties)
            .await
    }

    /// Publishes a message given as its parts (a spooled one) and waits for the broker's
    /// confirm.
    pub async fn publish_raw(
        &self,
        routing_key: ShortString,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        if self.blocked.load(Ordering::Relaxed) {
            return Err(PublishError::Blocked);
        }
        self.check_fits(&properties)?;
        let channel = self.channel.load_full().ok_or(PublishError::Disconnected)?;
        let started = Instant::now();
        let result = countersign::amqp::publish_confirmed_gated(
            &channel,
            self.exchange.clone(),
            routing_key,
            body,
            properties,
            self.confirm_timeout,
            Some(&self.copies),
        )
        .await;
        self.metrics
            .confirm_seconds
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Err(PublishError::Channel(_)) => self.suspect.notify_one(),
            Err(PublishError::Unroutable) => self.unroutable.notify_one(),
            _ => {}
        }
        result
    }

    /// Keeps a connection open until `stop` is cancelled, then closes it. Run it as a task; stop
    /// it only after in-flight publishes have finished.
    pub async fn maintain(self: Arc<Self>, url: String, stop: CancellationToken) {
        self.frame_max.store(
            countersign::amqp::requested_frame_max(&url),
            Ordering::Relaxed,
        );
        let nodes = countersign::amqp::Nodes::new(&url);
        let (this, stop) = (&self, &stop);
        countersign::amqp::keep_linked(
            &nodes,
            stop,
            || this.connect(&nodes),
            |(connection, channel)| async move {
                this.watch(&connection, &channel, stop).await;
                this.channel.store(None);
                this.blocked.store(false, Ordering::Relaxed);
                this.metrics.broker_connected.set(0);
                if stop.is_cancelled() {
                    // Graceful close; pending confirms were awaited by their requests.
                    let _ = channel.close(200, "shutdown".into()).await;
                    let _ = connection.close(200, "shutdown".into()).await;
                    tracing::info!("broker connection closed");
                }
            },
        )
        .await;
    }

    async fn connect(
        &self,
        nodes: &countersign::amqp::Nodes,
    ) -> Result<(Connection, Channel), lapin::Error> {
        let (connection, channel, node) = nodes
            .connect("countersign-ingester", &self.topology)
            .await?;
        let frame_max = connection.configuration().frame_max();
        self.frame_max.store(frame_max, Ordering::Relaxed);
        self.channel.store(Some(Arc::new(channel.clone())));
        self.metrics.broker_connected.set(1);
        self.metrics
            .broker_connections
            .with_label_values(&[node.as_str()])
            .inc();
        tracing::info!(%node, exchange = %self.exchange, frame_max, "broker connected; topology declared");
        Ok((connection, channel))
    }

    /// Returns when the connection or channel is gone, or when `stop` is cancelled.
    async fn watch(&self, connection: &Connection, channel: &Channel, stop: &CancellationToken) {
        let mut events = connection.events_listener();
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        let mut declared_at = Instant::now();
        let alive = || connection.status().connected() && channel.status().connected();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                event = events.next() => match event {
                    Some(Event::Error(error)) => {
                        tracing::warn!(error = %error, "broker connection error");
                        return;
                    }
                    Some(Event::ConnectionBlocked(reason)) => {
                        tracing::warn!(reason = %reason, "broker blocked publishing");
                        self.blocked.store(true, Ordering::Relaxed);
                    }
                    Some(Event::ConnectionUnblocked) => {
                        tracing::info!("broker unblocked publishing");
                        self.blocked.store(false, Ordering::Relaxed);
                    }
                    Some(_) => {}
                    None => return,
                },
                () = self.suspect.notified() => if !alive() { return },
                () = self.unroutable.notified() => {
                    // At most once per interval: each declaration waits out the rest of it.
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep_until((declared_at + REDECLARE_INTERVAL).into()) => {}
                    }
                    self.declare_again(connection).await;
                    declared_at = Instant::now();
                }
                _ = tick.tick() => if !alive() { return },
            }
        }
    }

    /// Declares the topology again on `connection`, after a publish no queue took: what was
    /// deleted while the connection stayed up (a Kubernetes Binding or Exchange resource deleted,
    /// a binding removed by hand) is there again, and the spool drains into it.
    async fn declare_again(&self, connection: &Connection) {
        match self.topology.declare_on(connection).await {
            Ok(_) => tracing::warn!(
                exchange = %self.exchange,
                "a publish was unroutable (no queue bound): declared the topology again"
            ),
            Err(error) => tracing::warn!(
                error = %error,
                "a publish was unroutable (no queue bound), and declaring the topology again failed"
            ),
        }
    }
}
