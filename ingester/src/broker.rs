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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use countersign::message::Outbound;
use countersign::providers::VerifiedWebhook;
use countersign::topology::Topology;
use futures_util::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{Channel, Confirmation, Connection, ConnectionProperties, Event};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the connection's state is checked besides its events.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Why a message is not safe with the broker.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("no broker connection")]
    Disconnected,
    #[error("the broker has blocked publishing (resource alarm)")]
    Blocked,
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("the message was returned: no queue is bound to the exchange")]
    Unroutable,
    #[error("no confirm from the broker within {0:?}")]
    Timeout(Duration),
    #[error("the channel does not confirm publishes")]
    NotConfirmed,
    #[error("channel failed: {0}")]
    Channel(#[source] lapin::Error),
}

impl PublishError {
    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            PublishError::Disconnected => "disconnected",
            PublishError::Blocked => "blocked",
            PublishError::Nacked => "nacked",
            PublishError::Unroutable => "unroutable",
            PublishError::Timeout(_) => "confirm_timeout",
            PublishError::NotConfirmed => "not_confirmed",
            PublishError::Channel(_) => "channel_error",
        }
    }
}

pub struct Broker {
    channel: ArcSwapOption<Channel>,
    exchange: ShortString,
    topology: Topology,
    confirm_timeout: Duration,
    blocked: AtomicBool,
    /// Woken by a publish that saw the channel fail, so the watcher need not wait for its tick.
    suspect: tokio::sync::Notify,
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
            suspect: tokio::sync::Notify::new(),
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

    /// Publishes the webhook's body and waits for the broker's confirm.
    pub async fn publish(
        &self,
        webhook: &VerifiedWebhook,
        outbound: Outbound,
    ) -> Result<(), PublishError> {
        if self.blocked.load(Ordering::Relaxed) {
            return Err(PublishError::Blocked);
        }
        let channel = self.channel.load_full().ok_or(PublishError::Disconnected)?;
        let started = Instant::now();
        let confirmed = tokio::time::timeout(self.confirm_timeout, async {
            channel
                .basic_publish(
                    self.exchange.clone(),
                    outbound.routing_key,
                    BasicPublishOptions {
                        // Returned to us if no queue is bound: an unroutable message is not safe.
                        mandatory: true,
                        // Not supported by RabbitMQ; queues hold messages until consumed.
                        immediate: false,
                    },
                    webhook.body(),
                    outbound.properties,
                )
                .await?
                .await
        })
        .await;
        self.metrics
            .confirm_seconds
            .observe(started.elapsed().as_secs_f64());
        match confirmed {
            Err(_) => Err(PublishError::Timeout(self.confirm_timeout)),
            Ok(Err(error)) => {
                self.suspect.notify_one();
                Err(PublishError::Channel(error))
            }
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(Confirmation::Ack(Some(_)))) => Err(PublishError::Unroutable),
            Ok(Ok(Confirmation::Nack(_))) => Err(PublishError::Nacked),
            Ok(Ok(Confirmation::NotRequested)) => Err(PublishError::NotConfirmed),
        }
    }

    /// Keeps a connection open until `stop` is cancelled, then closes it. Run it as a task; stop
    /// it only after in-flight publishes have finished.
    pub async fn maintain(self: Arc<Self>, url: String, stop: CancellationToken) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let attempt = tokio::select! {
                () = stop.cancelled() => return,
                attempt = tokio::time::timeout(CONNECT_TIMEOUT, self.connect(&url)) => attempt,
            };
            match attempt {
                Ok(Ok((connection, channel))) => {
                    backoff = FIRST_BACKOFF;
                    self.watch(&connection, &channel, &stop).await;
                    self.channel.store(None);
                    self.blocked.store(false, Ordering::Relaxed);
                    self.metrics.broker_connected.set(0);
                    if stop.is_cancelled() {
                        // Graceful close; pending confirms were awaited by their requests.
                        let _ = channel.close(200, "shutdown".into()).await;
                        let _ = connection.close(200, "shutdown".into()).await;
                        tracing::info!("broker connection closed");
                        return;
                    }
                    tracing::warn!("broker connection lost; reconnecting");
                }
                Ok(Err(error)) => {
                    tracing::warn!(error = %error, retry_in = ?backoff, "cannot connect to the broker");
                }
                Err(_) => {
                    tracing::warn!(timeout = ?CONNECT_TIMEOUT, retry_in = ?backoff, "broker connection attempt timed out");
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn connect(&self, url: &str) -> Result<(Connection, Channel), lapin::Error> {
        let properties =
            ConnectionProperties::default().with_connection_name("countersign-ingester".into());
        let connection = Connection::connect(url, properties).await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions { nowait: false })
            .await?;
        self.topology.declare(&channel).await?;
        self.channel.store(Some(Arc::new(channel.clone())));
        self.metrics.broker_connected.set(1);
        tracing::info!(exchange = %self.exchange, "broker connected; topology declared");
        Ok((connection, channel))
    }

    /// Returns when the connection or channel is gone, or when `stop` is cancelled.
    async fn watch(&self, connection: &Connection, channel: &Channel, stop: &CancellationToken) {
        let mut events = connection.events_listener();
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
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
                _ = tick.tick() => if !alive() { return },
            }
        }
    }
}
