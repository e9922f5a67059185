//! `bench publishers` (issue 32): what one confirmed publish costs the publisher and RabbitMQ
//! together, both on core 0 as in the ingest phase of `bench tiers`, for two ways of publishing
//! the ingester's message with 64 in flight on one channel:
//!
//! - **lapin**, as the ingester publishes: 64 tasks on one current-thread runtime (one actix
//!   worker's), each awaiting its own confirm; lapin's own thread does the socket's reads and
//!   writes, so every publish and every confirm crosses between threads.
//! - **in-thread**: the runtime's thread writes and reads the socket itself; whatever publishes
//!   are ready go out in one `write`, and one `read` takes whatever confirms have arrived.
//!
//! The second is an experiment, not a client: plain TCP, PLAIN login, no heartbeats, nothing
//! recovered. It answers whether writing an in-thread publisher for the ingester would pay: what
//! it saves the publisher, and whether RabbitMQ's share moves when the frames come coalesced.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amq_protocol::frame::{
    AMQPContentHeader, AMQPFrame, ProtocolVersion, WriteContext, gen_frame, parse_frame,
};
use amq_protocol::protocol::{AMQPClass, BasicProperties, basic, channel, confirm, connection};
use amq_protocol::types::FieldTable;
use amq_protocol::uri::AMQPUri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ceilings::Message;
use crate::events::EventFactory;
use crate::tiers::{CpuClock, Group, Phase, Pinned};

/// The one channel the in-thread publisher opens.
const CHANNEL: u16 = 1;
/// AMQP's `basic` class, whose content headers carry the properties.
const BASIC_CLASS: u16 = 60;

/// How the bench publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    Lapin,
    InThread,
}

impl Way {
    pub fn label(self) -> &'static str {
        match self {
            Way::Lapin => "lapin (as the ingester)",
            Way::InThread => "in-thread",
        }
    }
}

/// What a run publishes, and where.
#[derive(Clone)]
pub struct Target {
    pub amqp_url: String,
    pub exchange: String,
    pub message: Message,
    pub factory: Arc<EventFactory>,
}

/// Publishes `way` for `duration` with this process and RabbitMQ on core 0; the phase's CPU is
/// RabbitMQ's and this process's (counted as [`Group::Ingester`]: the publisher stands where
/// the ingester stood).
pub fn measure(
    way: Way,
    target: &Target,
    in_flight: usize,
    duration: Duration,
) -> anyhow::Result<Phase> {
    let mut pinned = Pinned::new();
    pinned.pin_group(Group::RabbitMq, "0")?;
    let me = std::process::id();
    // The publisher's thread (and lapin's, which it starts) inherits core 0.
    pinned.pin(me, "0")?;
    let target = target.clone();
    let clock = CpuClock::start(&[Group::RabbitMq], &[(Group::Ingester, me)]);
    let started = Instant::now();
    let published = std::thread::Builder::new()
        .name("publisher".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                match way {
                    Way::Lapin => with_lapin(&target, in_flight, duration).await,
                    Way::InThread => in_thread(&target, in_flight, duration).await,
                }
            })
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("the publisher thread panicked"))??;
    let wall = started.elapsed();
    Ok(Phase {
        name: format!("publish, {}", way.label()),
        events: published,
        wall,
        cpu: clock.read(),
    })
}

async fn with_lapin(target: &Target, in_flight: usize, duration: Duration) -> anyhow::Result<u64> {
    let connection =
        lapin::Connection::connect(&target.amqp_url, lapin::ConnectionProperties::default())
            .await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(Default::default()).await?;
    let latencies = crate::ceilings::broker(
        std::slice::from_ref(&channel),
        &target.exchange,
        in_flight,
        duration,
        target.factory.clone(),
        &target.message,
    )
    .await?;
    let _ = connection.close(200, "done".into()).await;
    Ok(latencies.count())
}

async fn in_thread(target: &Target, in_flight: usize, duration: Duration) -> anyhow::Result<u64> {
    let mut publisher = InThread::connect(&target.amqp_url).await?;
    let started = Instant::now();
    let mut next_tag = 1u64;
    let mut waiting = BTreeSet::new();
    let mut confirmed = 0u64;
    while started.elapsed() < duration {
        while waiting.len() < in_flight {
            let (id, body) = target.factory.mint();
            let (routing_key, properties) = target.message.next(id);
            publisher.publish(&target.exchange, routing_key.as_str(), properties, &body)?;
            waiting.insert(next_tag);
            next_tag += 1;
        }
        publisher.flush().await?;
        confirmed += publisher.confirms(&mut waiting).await?;
    }
    while !waiting.is_empty() {
        confirmed += publisher.confirms(&mut waiting).await?;
    }
    Ok(confirmed)
}

/// A confirm-mode channel on a socket this thread reads and writes itself.
struct InThread {
    stream: tokio::net::TcpStream,
    inbox: Vec<u8>,
    out: Vec<u8>,
    frame_max: usize,
}

impl InThread {
    async fn connect(url: &str) -> anyhow::Result<Self> {
        let uri: AMQPUri = url.parse().map_err(|e: String| anyhow::anyhow!(e))?;
        let stream =
            tokio::net::TcpStream::connect((uri.authority.host.as_str(), uri.authority.port))
                .await?;
        stream.set_nodelay(true)?;
        let mut me = Self {
            stream,
            inbox: Vec::with_capacity(64 * 1024),
            out: Vec::with_capacity(64 * 1024),
            frame_max: 4096,
        };
        me.queue(&AMQPFrame::ProtocolHeader(ProtocolVersion::amqp_0_9_1()))?;
        me.flush().await?;
        me.method_reply(0).await?; // connection.start
        let user = &uri.authority.userinfo;
        me.method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: FieldTable::default(),
                mechanism: "PLAIN".into(),
                response: format!("\0{}\0{}", user.username, user.password).into(),
                locale: "en_US".into(),
            })),
        )?;
        me.flush().await?;
        let AMQPClass::Connection(connection::AMQPMethod::Tune(tune)) = me.method_reply(0).await?
        else {
            anyhow::bail!("the broker did not tune the connection");
        };
        me.frame_max = match tune.frame_max {
            0 => 128 * 1024,
            n => n as usize,
        };
        me.method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: tune.channel_max,
                frame_max: tune.frame_max,
                heartbeat: 0,
            })),
        )?;
        me.method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: uri.vhost.as_str().into(),
            })),
        )?;
        me.method(
            CHANNEL,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        )?;
        me.method(
            CHANNEL,
            AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
                nowait: false,
            })),
        )?;
        me.flush().await?;
        for channel in [0, CHANNEL, CHANNEL] {
            me.method_reply(channel).await?; // open-ok, open-ok, select-ok
        }
        Ok(me)
    }

    fn queue(&mut self, frame: &AMQPFrame) -> anyhow::Result<()> {
        let out = std::mem::take(&mut self.out);
        let written = gen_frame(frame)(WriteContext::from(out))
            .map_err(|e| anyhow::anyhow!("cannot write a frame: {e:?}"))?;
        self.out = written.write;
        Ok(())
    }

    fn method(&mut self, channel: u16, method: AMQPClass) -> anyhow::Result<()> {
        self.queue(&AMQPFrame::Method(channel, method))
    }

    fn publish(
        &mut self,
        exchange: &str,
        routing_key: &str,
        properties: BasicProperties,
        body: &[u8],
    ) -> anyhow::Result<()> {
        self.method(
            CHANNEL,
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: exchange.into(),
                routing_key: routing_key.into(),
                mandatory: true,
                immediate: false,
            })),
        )?;
        self.queue(&AMQPFrame::Header(
            CHANNEL,
            AMQPContentHeader {
                class_id: BASIC_CLASS,
                body_size: body.len() as u64,
                properties,
            },
        ))?;
        // A frame's own header and end take 8 bytes of frame_max.
        for chunk in body.chunks(self.frame_max - 8) {
            self.queue(&AMQPFrame::Body(CHANNEL, chunk.to_vec()))?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        self.stream.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    /// The next frame, reading from the socket only when no whole frame is waiting.
    async fn frame(&mut self) -> anyhow::Result<AMQPFrame> {
        loop {
            match parse_frame(self.inbox.as_slice()) {
                Ok((rest, frame)) => {
                    let used = self.inbox.len() - rest.len();
                    self.inbox.drain(..used);
                    return Ok(frame);
                }
                Err(e) if e.is_incomplete() => {
                    let read = self.stream.read_buf(&mut self.inbox).await?;
                    anyhow::ensure!(read > 0, "the broker closed the connection");
                }
                Err(e) => anyhow::bail!("cannot read a frame: {e:?}"),
            }
        }
    }

    async fn method_reply(&mut self, channel: u16) -> anyhow::Result<AMQPClass> {
        match self.frame().await? {
            AMQPFrame::Method(on, method) if on == channel => match method {
                AMQPClass::Connection(connection::AMQPMethod::Close(close)) => {
                    anyhow::bail!("the broker closed the connection: {}", close.reply_text)
                }
                AMQPClass::Channel(channel::AMQPMethod::Close(close)) => {
                    anyhow::bail!("the broker closed the channel: {}", close.reply_text)
                }
                method => Ok(method),
            },
            other => anyhow::bail!("unexpected frame {other:?}"),
        }
    }

    /// Whether the inbox holds a whole frame: type, channel, size (7 bytes), payload, end.
    fn whole_frame_waiting(&self) -> bool {
        self.inbox.get(3..7).is_some_and(|size| {
            let size = u32::from_be_bytes(size.try_into().expect("4 bytes")) as usize;
            self.inbox.len() >= 8 + size
        })
    }

    /// Reads at least one frame, then every whole frame already read; removes the confirmed
    /// delivery tags from `waiting` and returns how many. A nack or a returned message ends
    /// the run: neither happens to a healthy broker's routable publishes.
    async fn confirms(&mut self, waiting: &mut BTreeSet<u64>) -> anyhow::Result<u64> {
        let before = waiting.len();
        loop {
            match self.method_reply(CHANNEL).await? {
                AMQPClass::Basic(basic::AMQPMethod::Ack(ack)) if ack.multiple => {
                    *waiting = waiting.split_off(&(ack.delivery_tag + 1));
                }
                AMQPClass::Basic(basic::AMQPMethod::Ack(ack)) => {
                    waiting.remove(&ack.delivery_tag);
                }
                other => anyhow::bail!("the broker did not confirm: {other:?}"),
            }
            if !self.whole_frame_waiting() {
                return Ok((before - waiting.len()) as u64);
            }
        }
    }
}

/// The runs as a Markdown table: core-µs per confirmed publish of the publisher and RabbitMQ.
pub fn table(phases: &[(usize, Phase)]) -> String {
    let mut md = String::from(
        "| run | publisher | confirmed | per second | publisher | RabbitMQ | together | core 0 busy |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (run, phase) in phases {
        let publisher = phase.per_event(Group::Ingester).unwrap_or(f64::NAN);
        let broker = phase.per_event(Group::RabbitMq).unwrap_or(f64::NAN);
        let busy =
            phase.busy(Group::Ingester).unwrap_or(0.0) + phase.busy(Group::RabbitMq).unwrap_or(0.0);
        md.push_str(&format!(
            "| {run} | {} | {} | {:.0} | {publisher:.0} µs | {broker:.0} µs | {:.0} µs | {:.0} % |\n",
            phase.name.trim_start_matches("publish, "),
            phase.events,
            phase.events as f64 / phase.wall.as_secs_f64(),
            publisher + broker,
            busy * 100.0,
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign::topology::Topology;
    use countersign_testkit::{TopologyGuard, amqp_url, confirm_channel, unique_prefix};

    #[tokio::test]
    async fn every_publish_the_in_thread_publisher_counts_as_confirmed_is_in_the_queue() {
        let topology = Topology::new(&unique_prefix(), &[Duration::from_secs(60)]);
        let _guard = TopologyGuard(topology.clone());
        let (connection, channel) = confirm_channel().await;
        topology.declare_on(&connection).await.unwrap();
        let target = Target {
            amqp_url: amqp_url(),
            exchange: topology.exchange().to_owned(),
            message: Message::Bare,
            factory: Arc::new(EventFactory::new("a test key", 2048)),
        };
        let confirmed = in_thread(&target, 8, Duration::from_millis(300))
            .await
            .unwrap();
        assert!(confirmed >= 8, "{confirmed}");
        let queued = countersign::amqp::queue_length(&channel, topology.persist_queue())
            .await
            .unwrap();
        assert_eq!(u64::from(queued), confirmed);
    }

    #[tokio::test]
    async fn a_publish_the_broker_refuses_ends_the_run_with_its_reason() {
        let target = Target {
            amqp_url: amqp_url(),
            exchange: format!("{}.missing", unique_prefix()),
            message: Message::Bare,
            factory: Arc::new(EventFactory::new("a test key", 64)),
        };
        let error = in_thread(&target, 1, Duration::from_millis(100))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("NOT_FOUND"), "{error}");
    }
}
