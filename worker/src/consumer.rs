//! The consumer: takes messages from `<prefix>.persist`, hands each to the [`Handler`], then
//! settles it — and never acks what is not safe somewhere else.
//!
//! - persisted (committed) → ack;
//! - retry → published, with confirm, to the next `<prefix>.retry.<delay>` queue with
//!   `x-attempt` incremented, then ack; after the last delay → `<prefix>.dead`;
//! - dead → published, with confirm, to `<prefix>.dead` with `x-dead-kind` and `x-dead-reason`,
//!   then ack;
//! - if that publish fails → nack with requeue: the message stays in `<prefix>.persist`.
//!
//! Acks go out as few frames as possible (`Acks`): once a batch is settled, one ack with
//! `multiple` covers every delivery up to the highest tag below which all are settled — never a
//! message still in a batch that has not committed. (One ack frame per message cost the broker a
//! quorum-queue command each: ~20 % of the drain rate on two cores.)
//!
//! Prefetch bounds how many messages are in hand. They are recorded in batches (up to
//! `worker.batch_size` messages in one transaction, see [`crate::db`]): a batch takes what
//! has been delivered, waiting at most `worker.batch_wait` for more (5 ms by default), so that
//! under steady load the messages of a few milliseconds share a commit, under a backlog many do
//! without waiting, and with `0s` a message is never held back. Several
//! batches are in flight at once ([`Settings::batches_in_flight`]). The broker link reconnects
//! with back-off like the ingester's. On shutdown the consumer stops taking
//! messages, finishes those in hand, and closes the channel (the broker requeues anything
//! prefetched but not started).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use countersign::amqp::{PublishError, publish_confirmed};
use countersign::message::{ATTEMPT, DEAD_AT, DEAD_KIND, DEAD_REASON, DeadKind, LAST_ERROR};
use countersign::topology::Topology;
use futures_util::future::join_all;
use futures_util::stream::{FusedStream, Stream};
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, Event};
use tokio_util::sync::CancellationToken;

use crate::db::Recorded;
use crate::handler::{Handler, Outcome};
use crate::metrics::Metrics;

/// The acks of one channel. Its deliveries carry consecutive tags from 1 (one consumer per
/// channel), and a batch hands its tags here only once each of its messages is settled
/// (committed, forwarded with a confirm, or nacked back), so one `multiple` ack up to the highest
/// tag below which every delivery is settled never covers a message in a batch still running. A
/// batch that finishes before an earlier one waits for it to be acked, which is at most one
/// batch's time; if the channel is lost meanwhile, the broker redelivers those messages and the
/// projection, idempotent, records them again as duplicates.
#[derive(Default)]
struct Acks {
    state: tokio::sync::Mutex<AckState>,
}

#[derive(Default)]
struct AckState {
    /// Every tag up to this one is acked (or was nacked).
    through: u64,
    /// Settled tags above `through`.
    settled: BTreeSet<u64>,
}

impl AckState {
    /// Adds settled tags; the tag to ack with `multiple`, if `through` moved.
    fn settle(&mut self, tags: impl IntoIterator<Item = u64>) -> Option<u64> {
        self.settled.extend(tags);
        let before = self.through;
        while self.settled.remove(&(self.through + 1)) {
            self.through += 1;
        }
        (self.through > before).then_some(self.through)
    }
}

impl Acks {
    async fn settled(
        &self,
        channel: &Channel,
        tags: impl IntoIterator<Item = u64>,
    ) -> Result<(), lapin::Error> {
        // Held while the ack is sent: acks leave in the order of their tags (an ack for a tag
        // an earlier `multiple` already covered would close the channel).
        let mut state = self.state.lock().await;
        match state.settle(tags) {
            Some(through) => {
                channel
                    .basic_ack(through, BasicAckOptions { multiple: true })
                    .await
            }
            None => Ok(()),
        }
    }
}

const CONSUME_TIMEOUT: Duration = Duration::from_secs(10);
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// How the consumer takes messages in hand and groups them.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Unacked messages in hand at most.
    pub prefetch: u16,
    /// Messages recorded in one transaction at most.
    pub batch_size: usize,
    /// How long a batch waits to fill once it holds a message (zero: what is already here).
    pub batch_wait: Duration,
    /// Batches recorded at once.
    pub batches_in_flight: usize,
}

impl Settings {
    /// [`countersign::config::batches_in_flight`] batches at once.
    pub fn new(prefetch: u16, batch_size: u16, batch_wait: Duration, pool_size: u32) -> Self {
        Self {
            prefetch,
            batch_size: usize::from(batch_size.max(1)),
            batch_wait,
            batches_in_flight: countersign::config::batches_in_flight(
                prefetch, batch_size, pool_size,
            ),
        }
    }
}

pub struct Consumer {
    topology: Topology,
    settings: Settings,
    handler: Handler,
    metrics: Metrics,
    consuming: AtomicBool,
    /// The frame size negotiated on the current connection: what a forwarded message's header
    /// frame must fit.
    frame_max: std::sync::atomic::AtomicU32,
}

impl Consumer {
    pub fn new(
        topology: Topology,
        settings: Settings,
        handler: Handler,
        metrics: Metrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            topology,
            settings,
            handler,
            metrics,
            consuming: AtomicBool::new(false),
            frame_max: std::sync::atomic::AtomicU32::new(countersign::amqp::FRAME_MAX),
        })
    }

    /// True while a consumer is registered on `<prefix>.persist`.
    pub fn is_consuming(&self) -> bool {
        self.consuming.load(Ordering::Relaxed)
    }

    /// Consumes until `shutdown`, reconnecting whenever the broker link is lost.
    pub async fn run(self: Arc<Self>, url: String, shutdown: CancellationToken) {
        let nodes = countersign::amqp::Nodes::new(&url);
        let (this, shutdown) = (&self, &shutdown);
        countersign::amqp::keep_linked(
            &nodes,
            shutdown,
            || this.open(&nodes),
            |(connection, channel, consumer, node)| async move {
                this.consuming.store(true, Ordering::Relaxed);
                this.metrics.broker_connected.set(1);
                this.metrics
                    .broker_connections
                    .with_label_values(&[node.as_str()])
                    .inc();
                tracing::info!(
                    %node,
                    queue = this.topology.persist_queue(),
                    prefetch = this.settings.prefetch,
                    batch_size = this.settings.batch_size,
                    batches_in_flight = this.settings.batches_in_flight,
                    "consuming"
                );
                this.consume(&connection, &channel, consumer, shutdown)
                    .await;
                this.consuming.store(false, Ordering::Relaxed);
                this.metrics.broker_connected.set(0);
                if shutdown.is_cancelled() {
                    let _ = channel.close(200, "shutdown".into()).await;
                    let _ = connection.close(200, "shutdown".into()).await;
                    tracing::info!("consumer stopped");
                }
            },
        )
        .await;
    }

    /// A connection to one of the nodes, and a consumer on `<prefix>.persist` (which has
    /// [`CONSUME_TIMEOUT`] to start, on top of the nodes' own connect timeouts).
    async fn open(
        &self,
        nodes: &countersign::amqp::Nodes,
    ) -> Result<(Connection, Channel, lapin::Consumer, String), lapin::Error> {
        let (connection, channel, node) =
            nodes.connect("countersign-worker", &self.topology).await?;
        let error =
            match tokio::time::timeout(CONSUME_TIMEOUT, self.start_consumer(&connection, &channel))
                .await
            {
                Ok(Ok(consumer)) => return Ok((connection, channel, consumer, node)),
                Ok(Err(error)) => error,
                Err(_) => lapin::Error::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{node} did not start the consumer within {CONSUME_TIMEOUT:?}"),
                )),
            };
        // The connection is closed, not just dropped: a consumer the broker registers after the
        // timeout would otherwise live on it, take up to `prefetch` messages and never ack them
        // (measured: 231 events held that way until the worker stopped, two nodes of three down).
        let _ = tokio::time::timeout(
            CONSUME_TIMEOUT,
            connection.close(200, "consumer did not start".into()),
        )
        .await;
        Err(error)
    }

    async fn start_consumer(
        &self,
        connection: &Connection,
        channel: &Channel,
    ) -> Result<lapin::Consumer, lapin::Error> {
        self.frame_max
            .store(connection.configuration().frame_max(), Ordering::Relaxed);
        // Per consumer, not per channel: at most `prefetch` unacked messages in hand.
        channel
            .basic_qos(self.settings.prefetch, BasicQosOptions { global: false })
            .await?;
        let consumer = channel
            .basic_consume(
                ShortString::from(self.topology.persist_queue()),
                ShortString::from(format!(
                    "countersign-worker-{}",
                    uuid::Uuid::new_v4().simple()
                )),
                BasicConsumeOptions {
                    // Manual acks: a message is acked only after its transaction commits.
                    no_ack: false,
                    // Several worker replicas share the queue.
                    exclusive: false,
                    no_local: false,
                    nowait: false,
                },
                FieldTable::default(),
            )
            .await?;
        Ok(consumer)
    }

    /// Returns on shutdown (after finishing what is in hand) or when the link is lost (dropping
    /// what is in hand: uncommitted work rolls back and the broker redelivers it).
    async fn consume(
        &self,
        connection: &Connection,
        channel: &Channel,
        consumer: lapin::Consumer,
        shutdown: &CancellationToken,
    ) {
        let deliveries = Box::pin(consumer.take_until(shutdown.cancelled()).fuse());
        let acks = &Acks::default();
        let work = batches(
            deliveries,
            self.settings.batch_size,
            self.settings.batch_wait,
        )
        .for_each_concurrent(self.settings.batches_in_flight, |batch| async move {
            let deliveries: Vec<Delivery> = batch
                .into_iter()
                .filter_map(|delivery| {
                    delivery
                        .map_err(|error| tracing::warn!(error = %error, "consumer stream error"))
                        .ok()
                })
                .collect();
            if !deliveries.is_empty() {
                self.process(channel, acks, deliveries).await;
            }
        });
        let mut events = connection.events_listener();
        let lost = async {
            let mut tick = tokio::time::interval(WATCH_INTERVAL);
            loop {
                tokio::select! {
                    event = events.next() => match event {
                        Some(Event::Error(error)) => {
                            tracing::warn!(error = %error, "broker connection error");
                            return;
                        }
                        None => return,
                        Some(_) => {}
                    },
                    _ = tick.tick() => {
                        if !connection.status().connected() || !channel.status().connected() {
                            return;
                        }
                    }
                }
            }
        };
        tokio::select! {
            () = work => {}
            () = lost, if !shutdown.is_cancelled() => {}
        }
    }

    /// Records a batch, then settles each of its messages by its own outcome, then acks what
    /// that allows.
    async fn process(&self, channel: &Channel, acks: &Acks, deliveries: Vec<Delivery>) {
        let started = Instant::now();
        self.metrics.consumed.inc_by(deliveries.len() as u64);
        self.metrics.batch_messages.observe(deliveries.len() as f64);
        let messages: Vec<(&[u8], &BasicProperties)> = deliveries
            .iter()
            .map(|d| (d.data.as_slice(), &d.properties))
            .collect();
        let outcomes = self.handler.handle_batch(&messages).await;
        join_all(
            deliveries
                .iter()
                .zip(outcomes)
                .map(|(delivery, outcome)| self.settle(channel, delivery, outcome, started)),
        )
        .await;
        if let Err(error) = acks
            .settled(channel, deliveries.iter().map(|d| d.delivery_tag))
            .await
        {
            // The channel is gone: the broker will redeliver; the projection is idempotent.
            tracing::warn!(error = %error, "could not ack deliveries");
        }
    }

    /// A committed message is settled; one to retry or park is settled once forwarded; one
    /// whose forward fails is left in the queue (nack, requeue). The ack is [`Acks`]'.
    async fn settle(
        &self,
        channel: &Channel,
        delivery: &Delivery,
        outcome: Outcome,
        started: Instant,
    ) {
        let settled = match outcome {
            Outcome::Persisted(recorded) => {
                let result = if recorded == Recorded::New {
                    "new"
                } else {
                    "duplicate"
                };
                self.metrics.persisted.with_label_values(&[result]).inc();
                tracing::debug!(result, "persisted");
                Ok(())
            }
            Outcome::Retry(reason) => self.retry(channel, delivery, &reason, Duration::ZERO).await,
            Outcome::RetryAfter { reason, at_least } => {
                self.retry(channel, delivery, &reason, at_least).await
            }
            Outcome::Dead { kind, reason } => self.park(channel, delivery, kind, &reason).await,
        };
        if let Err(error) = settled {
            tracing::error!(error = %error, "could not forward the message; leaving it in the queue");
            // Sent on the channel itself (not through the delivery's acker, which queues it
            // elsewhere) and awaited: it leaves before any ack that covers its tag.
            let nacked = channel
                .basic_nack(
                    delivery.delivery_tag,
                    BasicNackOptions {
                        multiple: false,
                        // Back to the queue: nothing is lost, and the delivery limit bounds the loop.
                        requeue: true,
                    },
                )
                .await;
            if let Err(error) = nacked {
                // The channel is gone: the broker will redeliver; the projection is idempotent.
                tracing::warn!(error = %error, "could not settle a delivery");
            }
        }
        self.metrics
            .processing_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    /// Through the next retry queue — or, to wait `at_least`, the first one left whose delay is
    /// that long, else the longest left (the attempts skipped are spent) — or, past the last,
    /// to the parking lot.
    async fn retry(
        &self,
        channel: &Channel,
        delivery: &Delivery,
        reason: &str,
        at_least: Duration,
    ) -> Result<(), PublishError> {
        let attempt = attempt_of(&delivery.properties);
        let Some(index) = retry_index(self.topology.retry_queues(), attempt as usize, at_least)
        else {
            let reason = format!("gave up after {attempt} retries; last error: {reason}");
            return self
                .park(channel, delivery, DeadKind::RetriesExhausted, &reason)
                .await;
        };
        let (queue, delay) = &self.topology.retry_queues()[index];
        let attempt = u32::try_from(index).unwrap_or(u32::MAX);
        let shown = countersign::telemetry::Escaped(reason);
        let (source, event_id, request_id) = identity(&delivery.properties);
        tracing::warn!(attempt = attempt + 1, retry_in = ?delay, error = %shown,
            source = %source, event_id = %event_id, request_id = %request_id,
            "transient failure; retrying later");
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        if headers.contains_key(DEAD_KIND) {
            // Moved back from the parking lot as it was (the management UI's "Move messages"):
            // its earlier parking and attempts no longer count.
            headers = countersign::message::redriven_headers(Some(&headers), "dead");
        }
        headers.insert(
            ATTEMPT.into(),
            AMQPValue::LongLongInt(i64::from(attempt) + 1),
        );
        headers.insert(LAST_ERROR.into(), text(&bounded(reason)));
        self.forward(channel, delivery, queue, headers).await?;
        self.metrics.retried.inc();
        Ok(())
    }

    async fn park(
        &self,
        channel: &Channel,
        delivery: &Delivery,
        kind: DeadKind,
        reason: &str,
    ) -> Result<(), PublishError> {
        // The reason may quote the payload (a parser's message): it goes to the header, which only
        // operators see next to the payload itself, never to the log.
        let (source, event_id, request_id) = identity(&delivery.properties);
        tracing::error!(
            kind = kind.label(),
            queue = self.topology.dead_queue(),
            source = %source,
            event_id = %event_id,
            request_id = %request_id,
            "message parked; see its x-dead-reason header"
        );
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(DEAD_KIND.into(), text(kind.label()));
        headers.insert(DEAD_REASON.into(), text(&bounded(reason)));
        headers.insert(
            DEAD_AT.into(),
            text(&chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
        self.forward(channel, delivery, self.topology.dead_queue(), headers)
            .await?;
        self.metrics
            .dead_lettered
            .with_label_values(&[kind.label()])
            .inc();
        Ok(())
    }

    /// Publishes the message, body and properties unchanged but for `headers`, to `queue`
    /// through the default exchange, and waits for the confirm.
    async fn forward(
        &self,
        channel: &Channel,
        delivery: &Delivery,
        queue: &str,
        headers: FieldTable,
    ) -> Result<(), PublishError> {
        let mut properties: BasicProperties = delivery.properties.clone().with_headers(headers);
        let frame_max = self.frame_max.load(Ordering::Relaxed);
        if countersign::amqp::check_header_frame(&properties, frame_max).is_err() {
            // A message that came with headers near the frame's size, and ours on top: sent as it
            // is, the broker would close the channel on it at every redelivery. Its oversized
            // forwarded headers go (named in x-dropped-headers); if it still cannot fit, the
            // publish is refused here, and the queue's delivery limit parks it in the end.
            let (trimmed, dropped) = countersign::message::drop_oversized(&properties);
            tracing::warn!(
                dropped = dropped.len(),
                queue,
                "forwarding a message whose headers exceed the broker's frame: oversized forwarded headers dropped"
            );
            properties = trimmed;
            countersign::amqp::check_header_frame(&properties, frame_max)?;
        }
        publish_confirmed(
            channel,
            ShortString::from(""),
            ShortString::from(queue),
            &delivery.data,
            properties,
            FORWARD_TIMEOUT,
        )
        .await
    }
}

/// The longest failure reason a forwarded message carries (`x-dead-reason`, `x-last-error`): a
/// parser's message may quote the payload, and a header must never make the message too large
/// for the broker's frame.
pub const MAX_REASON_BYTES: usize = 1024;

/// `reason`, cut at [`MAX_REASON_BYTES`] on a character boundary (`…` marks the cut).
fn bounded(reason: &str) -> std::borrow::Cow<'_, str> {
    if reason.len() <= MAX_REASON_BYTES {
        return std::borrow::Cow::Borrowed(reason);
    }
    let mut end = MAX_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…", &reason[..end]))
}

/// Groups a stream into batches of at most `size`: each batch starts with the next item, takes
/// what is ready at once, and waits up to `wait` after its first item for more.
fn batches<S>(stream: S, size: usize, wait: Duration) -> impl Stream<Item = Vec<S::Item>>
where
    S: Stream + FusedStream + Unpin,
{
    futures_util::stream::unfold(stream, move |mut stream| async move {
        let first = stream.next().await?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut batch = Vec::with_capacity(size.min(64));
        batch.push(first);
        while batch.len() < size {
            let next = match stream.next().now_or_never() {
                Some(next) => next,
                None if wait.is_zero() => break,
                None => tokio::time::timeout_at(deadline, stream.next())
                    .await
                    .ok()
                    .flatten(),
            };
            match next {
                Some(item) => batch.push(item),
                None => break,
            }
        }
        Some((batch, stream))
    })
}

fn text(value: &str) -> AMQPValue {
    let mut value = value.to_owned();
    if value.len() > 1000 {
        let mut cut = 1000;
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        value.truncate(cut);
    }
    AMQPValue::LongString(LongString::from(value))
}

/// The retry queue for a message that made `attempt` retries and must wait `at_least`: the next
/// one if it waits long enough, else the first after it that does, else the longest left; `None`
/// when none is left.
fn retry_index(queues: &[(String, Duration)], attempt: usize, at_least: Duration) -> Option<usize> {
    let left = attempt..queues.len();
    left.clone()
        .find(|&i| queues[i].1 >= at_least)
        .or_else(|| left.max_by_key(|&i| (queues[i].1, i)))
}

/// Retries already made, from `x-attempt` (any integer type; absent = 0). A message moved back
/// What names a message in a log line: its source, event id (`message_id`) and request id, as
/// the ingester set them (ids only, escaped; `-` where absent).
fn identity(
    properties: &lapin::BasicProperties,
) -> (
    countersign::telemetry::Escaped<'_>,
    countersign::telemetry::Escaped<'_>,
    countersign::telemetry::Escaped<'_>,
) {
    let header = |name| countersign::message::header_text(properties, name).unwrap_or("-");
    let event_id = properties
        .message_id()
        .as_ref()
        .map_or("-", |id| id.as_str());
    (
        countersign::telemetry::Escaped(header("x-source")),
        countersign::telemetry::Escaped(event_id),
        countersign::telemetry::Escaped(header("x-request-id")),
    )
}

/// from the parking lot as it was (still carrying `x-dead-kind`) starts again from 0.
pub fn attempt_of(properties: &BasicProperties) -> u32 {
    let headers = properties.headers().as_ref();
    if headers.is_some_and(|h| h.contains_key(DEAD_KIND)) {
        return 0;
    }
    let Some(value) = headers.and_then(|h| h.inner().get(ATTEMPT)) else {
        return 0;
    };
    let n = countersign::message::integer(value).unwrap_or(0);
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_after_skips_to_the_first_delay_that_waits_long_enough() {
        let queues: Vec<(String, Duration)> = [10, 60, 600, 3600]
            .iter()
            .map(|&s| (format!("retry.{s}s"), Duration::from_secs(s)))
            .collect();
        let secs = Duration::from_secs;
        assert_eq!(retry_index(&queues, 0, Duration::ZERO), Some(0));
        assert_eq!(retry_index(&queues, 2, Duration::ZERO), Some(2));
        assert_eq!(retry_index(&queues, 0, secs(10)), Some(0));
        assert_eq!(retry_index(&queues, 0, secs(120)), Some(2), "600 s ≥ 120 s");
        assert_eq!(retry_index(&queues, 3, secs(5)), Some(3));
        assert_eq!(
            retry_index(&queues, 1, secs(86_400)),
            Some(3),
            "bounded: the longest"
        );
        assert_eq!(retry_index(&queues, 4, secs(5)), None, "none left");
        // Delays need not grow: the longest left, not the last.
        let odd: Vec<(String, Duration)> = [(60, "a"), (3600, "b"), (10, "c")]
            .iter()
            .map(|&(s, n)| (n.to_owned(), Duration::from_secs(s)))
            .collect();
        assert_eq!(retry_index(&odd, 0, secs(7200)), Some(1));
        assert_eq!(retry_index(&odd, 2, secs(7200)), Some(2));
    }

    #[test]
    fn an_ack_covers_only_tags_below_which_every_delivery_is_settled() {
        let mut state = AckState::default();
        // Batch 2 (tags 4-6) settles before batch 1 (tags 1-3): nothing may be acked yet.
        assert_eq!(state.settle([4, 5, 6]), None);
        // Batch 1 settles, except that its messages come in any order.
        assert_eq!(state.settle([3, 1, 2]), Some(6));
        // Batch 4 before batch 3: held back; batch 3 then releases both.
        assert_eq!(state.settle([10, 11]), None);
        assert_eq!(state.settle([8]), None);
        assert_eq!(state.settle([7, 9]), Some(11));
        assert!(state.settled.is_empty());
        // Nothing new: no ack.
        assert_eq!(state.settle([]), None);
    }

    /// A stream fed by hand, and its sender.
    fn fed() -> (
        tokio::sync::mpsc::UnboundedSender<u32>,
        impl FusedStream<Item = u32> + Unpin,
    ) {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        });
        (sender, Box::pin(stream.fuse()))
    }

    #[tokio::test]
    async fn a_batch_takes_what_is_ready_up_to_its_size_and_never_waits_for_company() {
        let (sender, stream) = fed();
        let mut batches = Box::pin(batches(stream, 3, Duration::ZERO));
        for item in 1..=5 {
            sender.send(item).unwrap();
        }
        assert_eq!(batches.next().await, Some(vec![1, 2, 3]));
        assert_eq!(batches.next().await, Some(vec![4, 5]));
        // One message alone is a batch at once: nothing else is coming.
        sender.send(6).unwrap();
        assert_eq!(batches.next().await, Some(vec![6]));
        drop(sender);
        assert_eq!(batches.next().await, None);
    }

    #[tokio::test]
    async fn with_a_wait_a_batch_takes_what_arrives_in_time() {
        let (sender, stream) = fed();
        let mut batches = Box::pin(batches(stream, 2, Duration::from_secs(30)));
        sender.send(1).unwrap();
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            sender.send(2).unwrap();
            sender.send(3).unwrap();
            sender
        });
        // Full at two: it does not wait out the 30 s.
        assert_eq!(batches.next().await, Some(vec![1, 2]));
        let sender = late.await.unwrap();
        drop(sender);
        // The stream's end closes the last batch.
        assert_eq!(batches.next().await, Some(vec![3]));
        assert_eq!(batches.next().await, None);
    }

    #[test]
    fn batches_in_flight_hold_the_prefetch_within_half_the_pool() {
        let settings = |prefetch, batch, pool| {
            Settings::new(prefetch, batch, Duration::ZERO, pool).batches_in_flight
        };
        assert_eq!(settings(256, 64, 32), 4);
        assert_eq!(settings(100, 64, 32), 2);
        assert_eq!(settings(256, 1, 32), 16);
        assert_eq!(settings(256, 64, 1), 1);
        assert_eq!(settings(1, 64, 32), 1);
    }
}
