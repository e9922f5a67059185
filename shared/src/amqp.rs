//! Talking to RabbitMQ the same way in both binaries: connect with confirms and the topology
//! declared, and publish so that only the broker's plain `Ack` counts as success.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;

use crate::topology::Topology;

/// Why a message is not known to be safe with the broker.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("no broker connection")]
    Disconnected,
    #[error("the broker has blocked publishing (resource alarm)")]
    Blocked,
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("the message was returned: no queue is bound for it")]
    Unroutable,
    #[error("no confirm from the broker within {0:?}")]
    Timeout(Duration),
    #[error("the channel does not confirm publishes")]
    NotConfirmed,
    #[error("channel failed: {0}")]
    Channel(#[source] lapin::Error),
    /// Never sent: the broker would close the connection for it, every time.
    #[error(transparent)]
    FrameTooLarge(#[from] FrameTooLarge),
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
            PublishError::FrameTooLarge(_) => "frame_too_large",
        }
    }
}

/// The largest AMQP frame this client asks for, unless the URL's `frame_max` says otherwise.
/// lapin keeps a send and a receive buffer of 32 frames each per connection, zero-filled: at
/// RabbitMQ's default of 128 KiB that was 8 MiB of every binary's idle memory (measured with
/// massif); at 32 KiB it is 2 MiB. A body larger than a frame is sent in several.
pub const FRAME_MAX: u32 = 32 * 1024;

/// The `frame_max` a connection to `url` asks for: the URL's own, else [`FRAME_MAX`]. The broker
/// may lower it; [`lapin::Configuration::frame_max`] says what was negotiated.
pub fn requested_frame_max(url: &str) -> u32 {
    let first = addresses(url).into_iter().next().unwrap_or_default();
    first
        .parse::<lapin::uri::AMQPUri>()
        .ok()
        .and_then(|uri| uri.query.frame_max)
        .unwrap_or(FRAME_MAX)
}

/// Bytes of the content header frame that carries a message's `properties` (frame header,
/// class, weight, body size, the encoded properties, frame end). RabbitMQ closes the whole
/// connection (`FRAME_ERROR frame_too_large`) when it is larger than the negotiated `frame_max`
/// — and a client that sends the same message again triggers it again.
pub fn header_frame_len(properties: &BasicProperties) -> usize {
    // 7 (type, channel, size) + 2 (class) + 2 (weight) + 8 (body size) + properties + 1 (end).
    const OVERHEAD: usize = 20;
    properties_len(properties).unwrap_or_else(|| {
        // A header type the arithmetic below does not cover: the encoder says.
        cookie_factory::gen_simple(
            lapin::protocol::basic::gen_properties(properties),
            Vec::with_capacity(1024),
        )
        .map_or(usize::MAX - OVERHEAD, |bytes| bytes.len())
    }) + OVERHEAD
}

/// The encoded length of `properties` (flags, then each one set), computed rather than encoded
/// (this runs for every webhook); `None` where a header value is of a kind not counted here.
fn properties_len(properties: &BasicProperties) -> Option<usize> {
    let short = |s: &Option<ShortString>| s.as_ref().map_or(0, |s| 1 + s.as_str().len());
    let headers = match properties.headers() {
        Some(table) => 4 + table_len(table)?,
        None => 0,
    };
    Some(
        2 + short(properties.content_type())
            + short(properties.content_encoding())
            + headers
            + properties.delivery_mode().map_or(0, |_| 1)
            + properties.priority().map_or(0, |_| 1)
            + short(properties.correlation_id())
            + short(properties.reply_to())
            + short(properties.expiration())
            + short(properties.message_id())
            + properties.timestamp().map_or(0, |_| 8)
            + short(properties.kind())
            + short(properties.user_id())
            + short(properties.app_id())
            + short(properties.cluster_id()),
    )
}

/// The encoded length of a field table's entries (without its own 4-byte length).
fn table_len(table: &FieldTable) -> Option<usize> {
    use lapin::types::AMQPValue;
    let mut len = 0;
    for (name, value) in table.inner() {
        len += 1 + name.as_str().len() + 1;
        len += match value {
            AMQPValue::Boolean(_) | AMQPValue::ShortShortInt(_) | AMQPValue::ShortShortUInt(_) => 1,
            AMQPValue::ShortInt(_) | AMQPValue::ShortUInt(_) => 2,
            AMQPValue::LongInt(_) | AMQPValue::LongUInt(_) | AMQPValue::Float(_) => 4,
            AMQPValue::LongLongInt(_) | AMQPValue::Double(_) | AMQPValue::Timestamp(_) => 8,
            AMQPValue::ShortString(s) => 1 + s.as_str().len(),
            AMQPValue::LongString(s) => 4 + s.as_bytes().len(),
            AMQPValue::FieldTable(inner) => 4 + table_len(inner)?,
            AMQPValue::Void => 0,
            _ => return None,
        };
    }
    Some(len)
}

/// Why a message cannot go to a broker at all, however often it is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the message's header frame is {len} bytes; the broker takes at most {frame_max}")]
pub struct FrameTooLarge {
    pub len: usize,
    pub frame_max: u32,
}

/// `Ok` if a message with `properties` fits a connection whose negotiated frame size is
/// `frame_max` (0: no limit was negotiated).
pub fn check_header_frame(
    properties: &BasicProperties,
    frame_max: u32,
) -> Result<(), FrameTooLarge> {
    let len = header_frame_len(properties);
    if frame_max != 0 && len > frame_max as usize {
        return Err(FrameTooLarge { len, frame_max });
    }
    Ok(())
}

/// The brokers an `amqp.url` names, one URL each: `amqp://user:pass@h1:5672,h2:5672/%2f?x=1`
/// names `amqp://user:pass@h1:5672/%2f?x=1` and `amqp://user:pass@h2:5672/%2f?x=1` (the nodes of
/// one cluster: same credentials, virtual host and options). A URL with one host is itself.
pub fn addresses(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return vec![url.to_owned()];
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    hosts
        .split(',')
        .filter(|host| !host.is_empty())
        .map(|host| format!("{scheme}://{userinfo}{host}{tail}"))
        .collect()
}

/// `host:port` of a broker URL, for logs: no credentials, no options.
pub fn node_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

/// The nodes of one broker cluster, tried in turn: each new connection starts with the node after
/// the one the last connection used, so a client whose node died tries that node last, and
/// replicas started together spread over the nodes (the first try starts at a random node).
#[derive(Debug)]
pub struct Nodes {
    urls: Vec<String>,
    next: std::sync::atomic::AtomicUsize,
}

/// How long one node may take to accept a connection before the next is tried: a node that is
/// partitioned away drops packets rather than refusing them.
pub const NODE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Nodes {
    pub fn new(url: &str) -> Self {
        let urls = addresses(url);
        let start = (std::process::id() as usize)
            .wrapping_add(uuid::Uuid::new_v4().as_u128() as usize)
            % urls.len().max(1);
        Self {
            urls,
            next: std::sync::atomic::AtomicUsize::new(start),
        }
    }

    /// How many nodes the URL names.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// Connects to the first node that accepts, starting after the one used last; the
    /// node's `host:port` with the connection. Each node gets [`NODE_CONNECT_TIMEOUT`]; the
    /// error is the last node's.
    pub async fn connect(
        &self,
        name: &str,
        topology: &Topology,
    ) -> Result<(Connection, Channel, String), lapin::Error> {
        use std::sync::atomic::Ordering;
        let count = self.urls.len();
        let start = self.next.load(Ordering::Relaxed);
        let mut last = None;
        for offset in 0..count {
            let index = (start + offset) % count;
            let url = &self.urls[index];
            let attempt =
                tokio::time::timeout(NODE_CONNECT_TIMEOUT, connect_node(url, name, topology));
            match attempt.await {
                Ok(Ok((connection, channel))) => {
                    self.next.store(index + 1, Ordering::Relaxed);
                    return Ok((connection, channel, node_of(url).to_owned()));
                }
                Ok(Err(error)) => {
                    tracing::debug!(node = node_of(url), error = %error, "broker node refused");
                    last = Some(error);
                }
                Err(_) => {
                    tracing::debug!(node = node_of(url), "broker node did not answer in time");
                    last = Some(lapin::Error::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "{} did not answer within {NODE_CONNECT_TIMEOUT:?}",
                            node_of(url)
                        ),
                    )));
                }
            }
        }
        // The next attempt starts after the node tried first this time.
        self.next.store(start + 1, Ordering::Relaxed);
        Err(last.unwrap_or_else(|| {
            lapin::Error::from(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "amqp.url names no broker",
            ))
        }))
    }
}

/// `base` scaled by a random factor in [0.5, 1.5): replicas that lost the same node do not all
/// come back at the same instant.
pub fn jittered(base: Duration) -> Duration {
    let unit = (uuid::Uuid::new_v4().as_u128() % 1_000) as f64 / 1_000.0;
    base.mul_f64(0.5 + unit)
}

/// The wait after a failed attempt to connect; doubled after each further failure up to
/// [`MAX_BACKOFF`], and [`jittered`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between attempts to connect.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Keeps a link to one of `nodes` until `stop`, for both binaries: `open` makes one (through
/// `nodes`, each attempt starting after the node used last), and `hold` uses it until it is lost
/// or `stop` is cancelled — and on `stop` closes it. A lost link is replaced through the next
/// node at once where there are several (after a wait where there is one); a failed attempt
/// waits [`FIRST_BACKOFF`], doubling up to [`MAX_BACKOFF`], jittered, so that replicas do not
/// reconnect in step. Returns once `stop` is cancelled.
pub async fn keep_linked<L, Opening, Holding>(
    nodes: &Nodes,
    stop: &CancellationToken,
    mut open: impl FnMut() -> Opening,
    mut hold: impl FnMut(L) -> Holding,
) where
    Opening: std::future::Future<Output = Result<L, lapin::Error>>,
    Holding: std::future::Future<Output = ()>,
{
    let mut backoff = FIRST_BACKOFF;
    loop {
        let attempt = tokio::select! {
            () = stop.cancelled() => return,
            attempt = open() => attempt,
        };
        match attempt {
            Ok(link) => {
                backoff = FIRST_BACKOFF;
                hold(link).await;
                if stop.is_cancelled() {
                    return;
                }
                tracing::warn!("broker connection lost; reconnecting");
                if nodes.len() > 1 {
                    // Another node is there at once: no wait before trying it.
                    continue;
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, retry_in = ?backoff, "cannot connect to the broker");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(jittered(backoff)) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Connects to one of the nodes `url` names ([`Nodes`]), declares the topology and opens a
/// channel in confirm mode.
pub async fn connect(
    url: &str,
    name: &str,
    topology: &Topology,
) -> Result<(Connection, Channel), lapin::Error> {
    let (connection, channel, _) = Nodes::new(url).connect(name, topology).await?;
    Ok((connection, channel))
}

/// Connects to the one broker `url` names, declares the topology ([`Topology::declare_on`]: a
/// parking lot or work queue left by an earlier version is used as it is, with a log line) and
/// opens a channel
/// in confirm mode.
async fn connect_node(
    url: &str,
    name: &str,
    topology: &Topology,
) -> Result<(Connection, Channel), lapin::Error> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let connection = match url.parse::<lapin::uri::AMQPUri>() {
        Ok(mut uri) => {
            if uri.query.frame_max.is_none() {
                uri.query.frame_max = Some(FRAME_MAX);
            }
            Connection::connect_uri(uri, properties).await?
        }
        // lapin's own error for a URL it cannot read.
        Err(_) => Connection::connect(url, properties).await?,
    };
    let declared = topology.declare_on(&connection).await?;
    if declared.outdated_dead_queue {
        tracing::warn!(
            queue = topology.dead_queue(),
            "{}",
            crate::topology::OUTDATED_DEAD_QUEUE
        );
    }
    if declared.earlier_persist_queue {
        tracing::info!(
            queue = topology.persist_queue(),
            "{}",
            crate::topology::EARLIER_PERSIST_QUEUE
        );
    }
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions { nowait: false })
        .await?;
    Ok((connection, channel))
}

/// Publishes `payload` and waits (at most `timeout`) for the broker's confirm. `mandatory`, so a
/// message no queue takes comes back as [`PublishError::Unroutable`] instead of vanishing.
pub async fn publish_confirmed(
    channel: &Channel,
    exchange: ShortString,
    routing_key: ShortString,
    payload: &[u8],
    properties: BasicProperties,
    timeout: Duration,
) -> Result<(), PublishError> {
    publish_confirmed_gated(
        channel,
        exchange,
        routing_key,
        payload,
        properties,
        timeout,
        None,
    )
    .await
}

/// A body from this size on waits for its turn at a [`CopyGate`].
pub const LARGE_BODY: usize = 256 * 1024;

/// Large bodies are copied into frames one at a time.
///
/// lapin copies a published body into its frames (a `Vec<u8>` per frame) and holds that copy
/// until the frames are written to the socket; the caller keeps its own body until the confirm
/// (it is needed for a retry or the spool). Without a gate, n concurrent large publishes hold
/// 2 × n bodies. A connection writes one message's frames after another anyway, so letting
/// large bodies enter lapin one at a time costs no throughput and bounds the extra memory to one
/// body, whatever the concurrency. Small bodies never wait.
#[derive(Debug, Default)]
pub struct CopyGate(tokio::sync::Mutex<()>);

/// [`publish_confirmed`], a body of [`LARGE_BODY`] or more waiting at `gate` until the bodies
/// before it are on the wire. The wait counts against `timeout`.
pub async fn publish_confirmed_gated(
    channel: &Channel,
    exchange: ShortString,
    routing_key: ShortString,
    payload: &[u8],
    properties: BasicProperties,
    timeout: Duration,
    gate: Option<&CopyGate>,
) -> Result<(), PublishError> {
    let confirmed = tokio::time::timeout(timeout, async {
        let turn = match gate {
            Some(gate) if payload.len() >= LARGE_BODY => Some(gate.0.lock().await),
            _ => None,
        };
        let confirm = channel
            .basic_publish(
                exchange,
                routing_key,
                BasicPublishOptions {
                    // Returned to us if no queue is bound: an unroutable message is not safe.
                    mandatory: true,
                    // Not supported by RabbitMQ; queues hold messages until consumed.
                    immediate: false,
                },
                payload,
                properties,
            )
            // Resolves once the frames are written out: lapin's copy is gone.
            .await?;
        drop(turn);
        confirm.await
    })
    .await;
    match confirmed {
        Err(_) => Err(PublishError::Timeout(timeout)),
        Ok(Err(error)) => Err(PublishError::Channel(error)),
        Ok(Ok(Confirmation::Ack(None))) => Ok(()),
        Ok(Ok(Confirmation::Ack(Some(_)))) => Err(PublishError::Unroutable),
        Ok(Ok(Confirmation::Nack(_))) => Err(PublishError::Nacked),
        Ok(Ok(Confirmation::NotRequested)) => Err(PublishError::NotConfirmed),
    }
}

/// Messages ready in `queue` now (a passive declare: fails if the queue does not exist).
pub async fn queue_length(channel: &Channel, queue: &str) -> Result<u32, lapin::Error> {
    Ok(look_at(channel, queue).await?.message_count())
}

/// Consumers on `queue` now (a passive declare: fails if the queue does not exist).
pub async fn consumer_count(channel: &Channel, queue: &str) -> Result<u32, lapin::Error> {
    Ok(look_at(channel, queue).await?.consumer_count())
}

async fn look_at(channel: &Channel, queue: &str) -> Result<lapin::Queue, lapin::Error> {
    channel
        .queue_declare(
            ShortString::from(queue),
            QueueDeclareOptions {
                // Only look: never create, never change.
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_one_broker_or_the_nodes_of_a_cluster() {
        assert_eq!(
            addresses("amqp://guest:guest@127.0.0.1:5672/%2f"),
            ["amqp://guest:guest@127.0.0.1:5672/%2f"]
        );
        assert_eq!(
            addresses("amqps://u:p%40ss@a:5671,b:5671,c/%2f?heartbeat=10"),
            [
                "amqps://u:p%40ss@a:5671/%2f?heartbeat=10",
                "amqps://u:p%40ss@b:5671/%2f?heartbeat=10",
                "amqps://u:p%40ss@c/%2f?heartbeat=10",
            ]
        );
        assert_eq!(addresses("amqp://a,b"), ["amqp://a", "amqp://b"]);
        assert_eq!(
            addresses("amqp://a,,b?x=1"),
            ["amqp://a?x=1", "amqp://b?x=1"]
        );
        assert_eq!(
            node_of("amqp://user:secret@rabbitmq-2:5672/%2f?x=1"),
            "rabbitmq-2:5672"
        );
        assert_eq!(node_of("amqp://host"), "host");
        assert_eq!(
            requested_frame_max("amqp://a:1,b:2/%2f?frame_max=4096"),
            4096
        );
    }

    #[test]
    fn jitter_stays_within_half_and_one_and_a_half() {
        let base = Duration::from_millis(1000);
        for _ in 0..200 {
            let d = jittered(base);
            assert!(
                d >= Duration::from_millis(500) && d < Duration::from_millis(1500),
                "{d:?}"
            );
        }
    }

    #[tokio::test]
    async fn nodes_start_after_the_one_used_last_and_say_why_none_answered() {
        // Two closed ports: both tried, the error is the last one's.
        let closed = || {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let (a, b) = (closed(), closed());
        let nodes = Nodes::new(&format!("amqp://g:g@127.0.0.1:{a},127.0.0.1:{b}/%2f"));
        assert_eq!(nodes.len(), 2);
        let first = nodes.next.load(std::sync::atomic::Ordering::Relaxed) % 2;
        let error = nodes
            .connect("test", &Topology::new("unused", &[]))
            .await
            .unwrap_err();
        assert!(
            error.to_string().to_lowercase().contains("refused"),
            "{error}"
        );
        assert_eq!(
            nodes.next.load(std::sync::atomic::Ordering::Relaxed) % 2,
            (first + 1) % 2,
            "the next attempt starts with the other node"
        );
    }
    use lapin::types::{AMQPValue, DecimalValue, FieldArray, LongString};

    fn encoded_len(properties: &BasicProperties) -> usize {
        cookie_factory::gen_simple(
            lapin::protocol::basic::gen_properties(properties),
            Vec::new(),
        )
        .unwrap()
        .len()
            + 20
    }

    #[test]
    fn the_computed_header_frame_length_is_the_encoders() {
        let mut inner = FieldTable::default();
        inner.insert("n".into(), AMQPValue::LongLongInt(7));
        let mut headers = FieldTable::default();
        headers.insert(
            "x-provider".into(),
            AMQPValue::LongString(LongString::from("pandadoc")),
        );
        headers.insert(
            "x-long".into(),
            AMQPValue::LongString(LongString::from("v".repeat(5000))),
        );
        headers.insert("x-short".into(), AMQPValue::ShortString("s".into()));
        headers.insert("x-attempt".into(), AMQPValue::LongLongInt(3));
        headers.insert("b".into(), AMQPValue::Boolean(true));
        headers.insert("i8".into(), AMQPValue::ShortShortInt(-1));
        headers.insert("u8".into(), AMQPValue::ShortShortUInt(1));
        headers.insert("i16".into(), AMQPValue::ShortInt(-2));
        headers.insert("u16".into(), AMQPValue::ShortUInt(2));
        headers.insert("i32".into(), AMQPValue::LongInt(-3));
        headers.insert("u32".into(), AMQPValue::LongUInt(3));
        headers.insert("f".into(), AMQPValue::Float(1.5));
        headers.insert("d".into(), AMQPValue::Double(2.5));
        headers.insert("t".into(), AMQPValue::Timestamp(1_765_000_000));
        headers.insert("table".into(), AMQPValue::FieldTable(inner));
        headers.insert("void".into(), AMQPValue::Void);
        let every = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_content_encoding("gzip".into())
            .with_headers(headers.clone())
            .with_delivery_mode(2)
            .with_priority(1)
            .with_correlation_id("c".into())
            .with_reply_to("r".into())
            .with_expiration("1000".into())
            .with_message_id("evt-1".into())
            .with_timestamp(1_765_000_000)
            .with_type("k".into())
            .with_user_id("guest".into())
            .with_app_id("countersign-ingester".into())
            .with_cluster_id("c1".into());
        for properties in [
            BasicProperties::default(),
            BasicProperties::default().with_delivery_mode(2),
            BasicProperties::default().with_headers(FieldTable::default()),
            every.clone(),
        ] {
            assert_eq!(header_frame_len(&properties), encoded_len(&properties));
        }
        // Kinds not counted go through the encoder: the same answer.
        let mut rare = headers;
        rare.insert(
            "dec".into(),
            AMQPValue::DecimalValue(DecimalValue { scale: 2, value: 5 }),
        );
        rare.insert(
            "arr".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::Boolean(true)])),
        );
        let rare = every.with_headers(rare);
        assert!(properties_len(&rare).is_none());
        assert_eq!(header_frame_len(&rare), encoded_len(&rare));
    }
}
