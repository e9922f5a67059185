//! `bench all`: every figure of `bench/results.md` from one run on this machine.
//!
//! Ingest throughput and latency by connections against two ceilings measured in the same run
//! (raw publish + confirm on the same broker, a do-nothing actix-web endpoint), large events and
//! the ingester's peak memory, the worker's drain rate against PostgreSQL's multi-row and
//! single-row insert rates, the two together at a steady offered rate (queue depth, end-to-end
//! latency), and idle memory. Every 200 is checked against the queue or the database, so a fast
//! but lossy run cannot pass as fast.

mod ceilings;
mod cluster;
mod events;
mod faults;
mod load;
mod procs;
mod publishers;
mod replication;
mod report;
mod sustained;
mod tiers;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use countersign::config::{Config, Role};
use countersign::message::{Outbound, Receipt, outbound};
use countersign::topology::Topology;
use countersign_providers::{NoHeaders, Origin, Sources};
use lapin::options::QueuePurgeOptions;
use lapin::types::ShortString;
use lapin::{Channel, Connection, ConnectionProperties};

use crate::events::EventFactory;
use crate::load::Point;
use crate::load::{Until, drive};
use crate::procs::{Process, sibling};
use crate::report::Results;

const KEY: &str = "bench-webhook-signature-key";
const CONNECTIONS: [usize; 5] = [1, 8, 32, 64, 128];
/// The sustained run: this share of the 64-connection ingest rate, for this long.
const SUSTAINED_SHARE: f64 = 0.8;
const SUSTAINED: Duration = Duration::from_secs(60);

#[derive(Parser)]
#[command(name = "bench", about = "Countersign's benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every benchmark and write results.md and results.json.
    All {
        /// Length of each timed run.
        #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Events pre-filled for the worker's drain.
        #[arg(long, default_value_t = 30000)]
        worker_events: usize,
        /// Where to write the results.
        #[arg(long, default_value = "bench")]
        out: PathBuf,
    },
    /// The fault suite: servers stopped and processes killed under load; 0 lost is the bar.
    Faults {
        /// `small` for CI (seconds per fault), `full` as the issue states it (30 s outages,
        /// 64 connections).
        #[arg(long, value_enum, default_value = "small")]
        scale: faults::Scale,
        /// Where to write the results (Markdown).
        #[arg(long, default_value = "target/faults/results.md")]
        out: PathBuf,
        /// Only the scenarios whose name contains this.
        #[arg(long)]
        only: Option<String>,
        /// Not the scenarios whose name contains this (`--skip cluster`: the single-node ones).
        #[arg(long)]
        skip: Option<String>,
    },
    /// Only the worker's drain of a pre-filled queue (2 KiB events) and PostgreSQL's ceilings.
    Drain {
        /// Events pre-filled for the worker's drain.
        #[arg(long, default_value_t = 20000)]
        events: usize,
        /// `worker.batch_size` (default: the configuration's default).
        #[arg(long)]
        batch_size: Option<u16>,
        /// `worker.prefetch` (default: the configuration's default).
        #[arg(long)]
        prefetch: Option<u16>,
    },
    /// The cost of one event in each tier, each tier on its own core (issue 32): CPU time per
    /// process group from /proc, core-µs per event, for the ingest and the drain. Pins
    /// RabbitMQ and PostgreSQL (this machine's services) with taskset for the run.
    Tiers {
        /// Length of each ingest run.
        #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Events of each drain.
        #[arg(long, default_value_t = 20000)]
        events: usize,
        /// Runs of both phases.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Bytes of the "all signed" event with a PDF, measured once after the runs (0: none).
        #[arg(long, default_value_t = 128 * 1024)]
        pdf_size: usize,
        /// Events per second offered in the sustained run, ingester and worker together (0:
        /// none).
        #[arg(long, default_value_t = 2000.0)]
        sustained_rate: f64,
        /// Length of the sustained run's load.
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        sustained_for: Duration,
        /// Where to write the table (Markdown, with the commit); the figures also go to the
        /// same path with `.json`, for `bench/plot_tiers.py`.
        #[arg(long, default_value = "bench/tiers.md")]
        out: PathBuf,
    },
    /// What one confirmed publish of the ingester's message costs the publisher and RabbitMQ,
    /// both on core 0: through lapin as the ingester publishes, and from a publisher that reads
    /// and writes its socket in its own thread (an experiment for issue 32). Pins RabbitMQ and
    /// this process with taskset for the run; prints a Markdown table.
    Publishers {
        /// Length of each measurement.
        #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Publishes awaiting their confirm at any time (the ingest's connections).
        #[arg(long, default_value_t = 64)]
        in_flight: usize,
        /// Runs of both publishers, alternated.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Only the sustained run: ingester and worker together at an offered rate. Prints the
    /// latencies and each tier's CPU per event (nothing pinned).
    Sustained {
        /// Events offered per second.
        #[arg(long)]
        rate: f64,
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// The worker's `batch_wait` (default: the configuration's default).
        #[arg(long, value_parser = humantime::parse_duration)]
        batch_wait: Option<Duration>,
    },
    /// Only the broker's publish+confirm ceiling, 2 KiB bodies: the contract's message over 1
    /// and over `--channels`, then each `--also` message over 1; twice.
    Broker {
        #[arg(long, default_value_t = 4)]
        channels: usize,
        /// Further messages to measure over one channel.
        #[arg(long = "also", value_enum, default_values_t = [Publish::Bare])]
        messages: Vec<Publish>,
        #[arg(long, default_value_t = 64)]
        in_flight: usize,
        #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
    /// What replication costs: ingest and drain against one RabbitMQ 4.0 node and against the
    /// three-node cluster (`deploy/cluster`, the local base image), with each node's CPU and
    /// memory. Needs Docker.
    Replication {
        /// Length of each ingest run.
        #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Events pre-filled for the worker's drain.
        #[arg(long, default_value_t = 20000)]
        events: usize,
        #[arg(long, default_value = "bench/replication.md")]
        out: PathBuf,
    },
    /// (internal) One broker's part of `replication`, against `AMQP_URL`: one line of JSON.
    ReplicationRun {
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Duration,
        #[arg(long)]
        events: usize,
    },
    /// (internal) The HTTP ceiling: read the body, reply 200.
    HttpSink,
    /// Load a running ingester (for profiling): signed events to `/webhooks/<source>`.
    Load {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value = "bench")]
        source: String,
        #[arg(long, default_value = "bench-webhook-signature-key")]
        key: String,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Body size in bytes.
        #[arg(long, default_value_t = 2048)]
        size: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::HttpSink => actix_web::rt::System::new().block_on(ceilings::http_sink()),
        Command::Load {
            port,
            source,
            key,
            connections,
            duration,
            size,
        } => runtime.block_on(async move {
            let factory = Arc::new(EventFactory::new(&key, size));
            let path = format!("/webhooks/{source}");
            let result = drive(
                ([127, 0, 0, 1], port).into(),
                &path,
                connections,
                Until::Elapsed(duration),
                factory,
            )
            .await?;
            let l = &result.latencies;
            eprintln!(
                "{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, statuses {:?}, errors {}",
                l.per_second(),
                l.ms(0.5),
                l.ms(0.99),
                l.max_ms(),
                result.statuses,
                result.errors
            );
            anyhow::Ok(())
        }),
        Command::Broker {
            channels,
            messages,
            in_flight,
            duration,
        } => runtime.block_on(async move {
            let setup = setup().await?;
            let small = Arc::new(EventFactory::new(KEY, 2 * 1024));
            for (n, message) in [(1, Publish::Contract), (channels, Publish::Contract)]
                .into_iter()
                .chain(messages.iter().map(|&m| (1, m)))
                .cycle()
                .take(2 * (2 + messages.len()))
            {
                let l = setup
                    .broker_ceiling(n, in_flight, duration, &small, message)
                    .await?;
                eprintln!(
                    "{message:?}, {n} channel(s), {in_flight} in flight: {:.0} msg/s, p50 {:.2} ms, p99 {:.2} ms",
                    l.per_second(),
                    l.ms(0.5),
                    l.ms(0.99)
                );
            }
            setup.teardown().await
        }),
        Command::All {
            duration,
            worker_events,
            out,
        } => runtime.block_on(all(duration, worker_events, out)),
        Command::Replication {
            duration,
            events,
            out,
        } => runtime.block_on(replication::run(duration, events, &out)),
        Command::ReplicationRun { duration, events } => {
            runtime.block_on(replication_run(duration, events))
        }
        Command::Drain {
            events,
            batch_size,
            prefetch,
        } => runtime.block_on(async move {
            let mut worker = String::new();
            if let Some(n) = batch_size {
                worker.push_str(&format!("batch_size = {n}\n"));
            }
            if let Some(n) = prefetch {
                worker.push_str(&format!("prefetch = {n}\n"));
            }
            let setup = setup_with(&worker).await?;
            let small = Arc::new(EventFactory::new(KEY, 2 * 1024));
            // A first start applies the migrations.
            let worker = setup.worker()?;
            wait_ready(worker.port).await?;
            worker.stop()?;
            let (rate, peak) = drain(&setup, events, &small).await?;
            let projection = projection_ceiling(&setup, events, &small).await?;
            let (ceiling, copy) = batch_ceiling(&setup, events).await?;
            eprintln!(
                "worker drain: {rate:.0} events/s, peak RSS {:.1} MiB; PostgreSQL alone with the worker's statements: {projection:.0} events/s; 64-row inserts: unnest {ceiling:.0} rows/s, COPY + merge {copy:.0} rows/s",
                peak as f64 / 1048576.0
            );
            setup.teardown().await
        }),
        Command::Tiers {
            duration,
            events,
            runs,
            pdf_size,
            sustained_rate,
            sustained_for,
            out,
        } => {
            let settings = tiers::Settings {
                duration,
                events,
                pdf_bytes: pdf_size,
                sustained_rate,
                sustained_for,
            };
            runtime.block_on(tiers_run(settings, runs, &out))
        }
        Command::Publishers {
            duration,
            in_flight,
            runs,
        } => publishers_run(&runtime, duration, in_flight, runs),
        Command::Sustained {
            rate,
            duration,
            batch_wait,
        } => runtime.block_on(async move {
            let worker = batch_wait.map_or(String::new(), |wait| {
                format!("batch_wait = \"{}ms\"", wait.as_millis())
            });
            let setup = setup_with(&worker).await?;
            let small = Arc::new(EventFactory::new(KEY, 2 * 1024));
            let run = sustained::run(&setup, rate, duration, 64, &small).await?;
            let max_depth = run.depth.iter().map(|(_, n)| *n).max().unwrap_or(0);
            eprintln!(
                "offered {rate:.0}/s: accepted {:.0}/s (HTTP p99 {:.2} ms, {}), end-to-end p50 {:.1} ms p99 {:.1} ms, max depth {max_depth}, drained after {:?} s, missing {}",
                run.ingest.per_second,
                run.ingest.p99_ms,
                run.ingest.statuses_text(),
                run.end_to_end_p50_ms,
                run.end_to_end_p99_ms,
                run.drained_after_s,
                run.missing
            );
            eprintln!("{}", tiers::table(&[("—".to_owned(), run.phase())]));
            setup.teardown().await
        }),
        Command::Faults {
            scale,
            out,
            only,
            skip,
        } => runtime.block_on(faults::run(scale, &out, faults::Select { only, skip })),
    }
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The bench's own connection: to the first node `amqp_url` names (the binaries take them all).
async fn connect_first(amqp_url: &str) -> anyhow::Result<Connection> {
    let first = countersign::amqp::addresses(amqp_url)
        .into_iter()
        .next()
        .unwrap_or_else(|| amqp_url.to_owned());
    Ok(Connection::connect(&first, ConnectionProperties::default()).await?)
}

struct Setup {
    /// The ingester's admin port (one ingester runs at a time).
    admin_port: u16,
    config_path: PathBuf,
    config: Config,
    topology: Topology,
    channel: Channel,
    connection: Connection,
    database_url: String,
    env: Vec<(&'static str, String)>,
    _dir: tempdir::TempDir,
}

mod tempdir {
    /// A directory removed on drop (no extra crate for one use).
    pub struct TempDir(pub std::path::PathBuf);
    impl TempDir {
        pub fn new(name: &str) -> Self {
            let path = std::env::temp_dir().join(name);
            std::fs::create_dir_all(&path).expect("temp dir");
            Self(path)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn setup() -> anyhow::Result<Setup> {
    setup_with("").await
}

/// A setup whose `[worker]` section also holds `worker` (TOML lines).
async fn setup_with(worker: &str) -> anyhow::Result<Setup> {
    let amqp_url = env("AMQP_URL", countersign::config::DEFAULT_AMQP_URL);
    let server_url = env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test");
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let database = format!("cs_bench_{run}");
    let admin = sqlx::PgPool::connect(&server_url).await?;
    sqlx::query(&format!("CREATE DATABASE {database}"))
        .execute(&admin)
        .await?;
    admin.close().await;
    let database_url = format!(
        "{}/{database}",
        server_url.rsplit_once('/').expect("a database URL").0
    );

    let dir = tempdir::TempDir::new(&format!("countersign-bench-{run}"));
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let text = format!(
        r#"
        [amqp]
        prefix = "bench-{run}"
        [ingester]
        listen = "127.0.0.1:0"
        admin_listen = "127.0.0.1:{admin_port}"
        confirm_timeout = "30s"
        [ingester.spool]
        dir = "{spool}"
        [worker]
        listen = "127.0.0.1:0"
        documents = "file:{docs}"
        {worker}
        [[sources]]
        name = "bench"
        provider = "taktikal"
        secrets = ["env:BENCH_KEY"]
        "#,
        docs = dir.0.join("documents").display(),
        spool = dir.0.join("spool").display(),
    );
    let config_path = dir.0.join("countersign.toml");
    std::fs::write(&config_path, &text)?;
    let lookup = |name: &str| match name {
        "BENCH_KEY" => Some(KEY.to_owned()),
        "AMQP_URL" => Some(amqp_url.clone()),
        "DATABASE_URL" => Some(database_url.clone()),
        _ => None,
    };
    let config = Config::from_toml(&text, Role::Ingester, &lookup)?;
    let topology = Topology::from_config(&config.amqp);
    let connection = connect_first(&amqp_url).await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(Default::default()).await?;
    topology.declare(&channel).await?;
    let env = vec![
        ("COUNTERSIGN_CONFIG", config_path.display().to_string()),
        ("BENCH_KEY", KEY.to_owned()),
        ("AMQP_URL", amqp_url.clone()),
        ("DATABASE_URL", database_url.clone()),
    ];
    Ok(Setup {
        admin_port,
        config_path,
        config,
        topology,
        channel,
        connection,
        database_url,
        env,
        _dir: dir,
    })
}

impl Setup {
    /// The broker's publish+confirm ceiling over `channels` new confirm-mode channels of the
    /// bench's connection; the queue is purged afterwards.
    async fn broker_ceiling(
        &self,
        channels: usize,
        in_flight: usize,
        duration: Duration,
        factory: &Arc<EventFactory>,
        message: Publish,
    ) -> anyhow::Result<load::Latencies> {
        let message = match message {
            Publish::Contract => {
                let sources = self.config.build_sources()?;
                ceilings::Message::Contract(Box::new(as_ingested(&sources, factory.mint().1)?.0))
            }
            Publish::Bare => ceilings::Message::Bare,
        };
        let mut on = Vec::with_capacity(channels);
        for _ in 0..channels {
            let channel = self.connection.create_channel().await?;
            channel.confirm_select(Default::default()).await?;
            on.push(channel);
        }
        let ceiling = ceilings::broker(
            &on,
            self.topology.exchange(),
            in_flight,
            duration,
            factory.clone(),
            &message,
        )
        .await?;
        self.purge().await?;
        for channel in on {
            let _ = channel.close(200, "done".into()).await;
        }
        Ok(ceiling)
    }

    async fn queued(&self) -> anyhow::Result<u64> {
        Ok(u64::from(
            countersign::amqp::queue_length(&self.channel, self.topology.persist_queue()).await?,
        ))
    }

    async fn purge(&self) -> anyhow::Result<()> {
        self.channel
            .queue_purge(
                ShortString::from(self.topology.persist_queue()),
                QueuePurgeOptions::default(),
            )
            .await?;
        Ok(())
    }

    fn ingester(&self) -> anyhow::Result<Process> {
        Process::spawn(
            &sibling("countersign-ingester"),
            &[],
            &self.env,
            "ingester listening",
        )
    }

    /// An ingester whose broker is `amqp_url` instead.
    fn ingester_with_broker(&self, amqp_url: &str) -> anyhow::Result<Process> {
        let mut env = self.env.clone();
        env.retain(|(name, _)| *name != "AMQP_URL");
        env.push(("AMQP_URL", amqp_url.to_owned()));
        Process::spawn(
            &sibling("countersign-ingester"),
            &[],
            &env,
            "ingester listening",
        )
    }

    /// Waits until the running ingester's `/readyz` says its broker is connected (with the spool
    /// on, it answers 200 before that).
    async fn broker_connected(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if readyz(self.admin_port)
                .await
                .is_some_and(|r| r["broker"] == true)
            {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the ingester never connected to the broker"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn worker(&self) -> anyhow::Result<Process> {
        Process::spawn(
            &sibling("countersign-worker"),
            &[],
            &self.env,
            "worker listening",
        )
    }

    /// A new connection and channel for the bench's own use, if the old one is closed.
    /// RabbitMQ 3.10's quorum-queue segment writer has crashed twice here after a large backlog
    /// was consumed (`truncate_segments … enoent`), closing the bench's connection with
    /// INTERNAL_ERROR; the node recovers, the bench's link must too.
    async fn relink(&mut self) -> anyhow::Result<()> {
        if self.connection.status().connected() && self.channel.status().connected() {
            return Ok(());
        }
        eprintln!("the bench's broker connection was closed; reconnecting");
        let url = env("AMQP_URL", countersign::config::DEFAULT_AMQP_URL);
        self.connection = connect_first(&url).await?;
        self.channel = self.connection.create_channel().await?;
        self.channel.confirm_select(Default::default()).await?;
        Ok(())
    }

    async fn teardown(self) -> anyhow::Result<()> {
        self.topology.delete(&self.channel).await?;
        let server_url = env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test");
        let admin = sqlx::PgPool::connect(&server_url).await?;
        let name = self.database_url.rsplit('/').next().unwrap_or_default();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&admin)
            .await?;
        let _ = &self.config_path;
        Ok(())
    }
}

/// Sends events until the ingester answers 200 (its broker link is up), then purges.
async fn warm_up(
    setup: &Setup,
    ingester: &Process,
    factory: &Arc<EventFactory>,
) -> anyhow::Result<()> {
    setup.broker_connected().await?;
    let address = ([127, 0, 0, 1], ingester.port).into();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let result = drive(
            address,
            "/webhooks/bench",
            8,
            Until::Requests(200),
            factory.clone(),
        )
        .await?;
        if result.ok() == 200 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the ingester never accepted events: {:?}",
            result.statuses
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    setup.purge().await
}

/// Runs the ingester under load and checks that every 200 is in the queue.
async fn ingest(
    setup: &Setup,
    ingester: &Process,
    connections: usize,
    until: Until,
    factory: &Arc<EventFactory>,
) -> anyhow::Result<Point> {
    setup.purge().await?;
    let result = drive(
        ([127, 0, 0, 1], ingester.port).into(),
        "/webhooks/bench",
        connections,
        until,
        factory.clone(),
    )
    .await?;
    let queued = setup.queued().await?;
    setup.purge().await?;
    Ok(Point::from_load(&result, queued))
}

/// Confirm channels of the broker ceiling's second measurement at 64 in flight.
const BROKER_CHANNELS: usize = 4;

/// What a broker ceiling publishes (see [`ceilings::Message`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Publish {
    /// The ingester's message: routing key, properties and headers by the contract.
    Contract,
    /// Delivery mode and message id only.
    Bare,
}

impl Publish {
    fn label(self) -> &'static str {
        match self {
            Publish::Contract => "the ingester's message",
            Publish::Bare => "bare",
        }
    }
}

/// `bench publishers`: each way of publishing `runs` times, alternated; the measurement blocks
/// this thread (it pins the process and joins the publisher's thread), outside the runtime.
fn publishers_run(
    runtime: &tokio::runtime::Runtime,
    duration: Duration,
    in_flight: usize,
    runs: usize,
) -> anyhow::Result<()> {
    let setup = runtime.block_on(setup())?;
    let factory = Arc::new(EventFactory::new(KEY, 2 * 1024));
    let sources = setup.config.build_sources()?;
    let message = ceilings::Message::Contract(Box::new(as_ingested(&sources, factory.mint().1)?.0));
    let target = publishers::Target {
        amqp_url: env("AMQP_URL", countersign::config::DEFAULT_AMQP_URL),
        exchange: setup.topology.exchange().to_owned(),
        message,
        factory,
    };
    let mut phases = Vec::new();
    for run in 1..=runs {
        for way in [publishers::Way::Lapin, publishers::Way::InThread] {
            let phase = publishers::measure(way, &target, in_flight, duration);
            runtime.block_on(setup.purge())?;
            phases.push((run, phase?));
        }
    }
    std::io::Write::write_all(
        &mut std::io::stdout(),
        publishers::table(&phases).as_bytes(),
    )?;
    runtime.block_on(setup.teardown())
}

/// `bench tiers`, stopped by SIGINT or SIGTERM: the run's future is dropped, so every guard's
/// `Drop` runs — RabbitMQ's and PostgreSQL's affinity is given back, the ingester or worker
/// killed — where exiting on the signal would leave the machine's services pinned to one core.
async fn tiers_run(
    settings: tiers::Settings,
    runs: usize,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        result = tiers_runs(&settings, runs, out) => result,
        _ = terminate.recv() => anyhow::bail!("stopped by SIGTERM; affinity given back"),
        _ = interrupt.recv() => anyhow::bail!("stopped by SIGINT; affinity given back"),
    }
}

/// Each run's ingest (64 connections) and drain, the PDF's, the sustained run; then the table,
/// to `out`, and its figures beside it as JSON.
async fn tiers_runs(
    settings: &tiers::Settings,
    runs: usize,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let mut setup = setup().await?;
    tiers::services_at(
        &env("AMQP_URL", countersign::config::DEFAULT_AMQP_URL),
        &setup.database_url,
    );
    let small = Arc::new(EventFactory::new(KEY, 2 * 1024));
    let mut measured: Vec<(String, tiers::Phase)> = Vec::new();
    let mut rounds: Vec<(String, Arc<EventFactory>, usize)> = (1..=runs)
        .map(|run| (run.to_string(), small.clone(), settings.events))
        .collect();
    if settings.pdf_bytes > 0 {
        let pdf = Arc::new(EventFactory::new(KEY, settings.pdf_bytes));
        rounds.push(("PDF".to_owned(), pdf, tiers::pdf_events(settings.events)));
    }
    for (run, factory, events) in rounds {
        let ingest = tiers::ingest(&setup, 64, settings.duration, &factory).await?;
        setup.relink().await?;
        let drain = tiers::drain(&setup, events, &factory).await?;
        setup.relink().await?;
        eprintln!("run {run}: ingest {ingest:?}; drain {drain:?}");
        empty_tables(&setup).await?;
        measured.push((run.clone(), ingest));
        measured.push((run, drain));
    }
    for message in [Publish::Contract, Publish::Bare] {
        let phase = tiers::broker(&setup, message, settings.duration, &small).await?;
        measured.push(("—".to_owned(), phase));
    }
    if settings.sustained_rate > 0.0 {
        let run = sustained::run(
            &setup,
            settings.sustained_rate,
            settings.sustained_for,
            64,
            &small,
        )
        .await?;
        anyhow::ensure!(run.missing == 0, "{} accepted events missing", run.missing);
        measured.push(("—".to_owned(), run.phase()));
        empty_tables(&setup).await?;
    }
    let report = tiers::report(&measured, settings);
    eprintln!("{report}");
    std::fs::write(out, &report)?;
    // The same, as the tier table's section of the results page beside it.
    let results = out.with_file_name("results.md");
    let section = report.replacen("# Cost per event, tier by tier", tiers::RESULTS_HEADING, 1);
    let earlier = std::fs::read_to_string(&results).unwrap_or_default();
    std::fs::write(
        &results,
        tiers::with_section(&earlier, tiers::RESULTS_HEADING, &section),
    )?;
    std::fs::write(
        out.with_extension("json"),
        serde_json::to_string_pretty(&tiers::json(&measured))?,
    )?;
    setup.teardown().await
}

/// Every table emptied: each phase starts on the same, empty tables, so runs compare.
async fn empty_tables(setup: &Setup) -> anyhow::Result<()> {
    let pool = sqlx::PgPool::connect(&setup.database_url).await?;
    sqlx::query(
        "TRUNCATE webhook_events, signature_uses, signing_processes, signees, activity, \
         documents, stored_documents",
    )
    .execute(&pool)
    .await?;
    pool.close().await;
    Ok(())
}

async fn all(duration: Duration, worker_events: usize, out: PathBuf) -> anyhow::Result<()> {
    let mut setup = setup().await?;
    let mut results = Results::new(duration);
    let small = Arc::new(EventFactory::new(KEY, 2 * 1024));

    // Idle memory, then the 2 KiB curve: ingester, broker ceiling, HTTP ceiling.
    let ingester = setup.ingester()?;
    warm_up(&setup, &ingester, &small).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    results.ingester_idle_rss = ingester.memory()?.rss;
    let sink = Process::spawn(&std::env::current_exe()?, &["http-sink"], &[], "")?;
    for connections in CONNECTIONS {
        eprintln!("2 KiB, {connections} connections");
        let point = ingest(
            &setup,
            &ingester,
            connections,
            Until::Elapsed(duration),
            &small,
        )
        .await?;
        let broker = setup
            .broker_ceiling(1, connections, duration, &small, Publish::Contract)
            .await?;
        if connections == 64 {
            // Whether one channel's confirm pipeline is the limit (it was not on 2 cores).
            let over = setup
                .broker_ceiling(
                    BROKER_CHANNELS,
                    connections,
                    duration,
                    &small,
                    Publish::Contract,
                )
                .await?;
            results.broker_channels = Some((
                BROKER_CHANNELS,
                Point::from_latencies(&over, connections, point_bytes(&small)),
            ));
            // What the contract's headers cost the broker.
            let bare = setup
                .broker_ceiling(1, connections, duration, &small, Publish::Bare)
                .await?;
            results.broker_bare = Some(Point::from_latencies(
                &bare,
                connections,
                point_bytes(&small),
            ));
        }
        let http = drive(
            ([127, 0, 0, 1], sink.port).into(),
            "/webhooks/bench",
            connections,
            Until::Elapsed(duration),
            small.clone(),
        )
        .await?;
        results.curve.push((
            point,
            Point::from_latencies(&broker, connections, point_bytes(&small)),
            Point::from_load(&http, http.ok()),
        ));
    }
    ingester.stop()?;

    // Large events, each on a fresh ingester so that its peak memory is theirs.
    for (size, connections, until) in [
        (1024 * 1024, 8, Until::Elapsed(duration)),
        (20 * 1024 * 1024, 1, Until::Requests(12)),
        (20 * 1024 * 1024, 2, Until::Requests(16)),
    ] {
        eprintln!("{} MiB, {connections} connections", size / (1024 * 1024));
        let factory = Arc::new(EventFactory::new(KEY, size));
        let ingester = setup.ingester()?;
        warm_up(&setup, &ingester, &small).await?;
        let point = ingest(&setup, &ingester, connections, until, &factory).await?;
        let peak = ingester.memory()?.peak;
        ingester.stop()?;
        let broker_duration = if size > 1024 * 1024 {
            duration / 2
        } else {
            duration
        };
        let broker = setup
            .broker_ceiling(1, connections, broker_duration, &factory, Publish::Contract)
            .await?;
        results.large.push((
            size,
            point,
            Point::from_latencies(&broker, connections, size),
            peak,
        ));
    }

    // The worker: idle memory, then the drain of a pre-filled queue, against PostgreSQL.
    eprintln!("worker, {worker_events} events");
    let worker = setup.worker()?;
    wait_ready(worker.port).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    results.worker_idle_rss = worker.memory()?.rss;
    worker.stop()?;
    let (rate, peak) = drain(&setup, worker_events, &small).await?;
    results.worker_rate = rate;
    results.worker_peak_rss = peak;
    results.projection_rate = projection_ceiling(&setup, worker_events, &small).await?;
    let inserts = ceilings::postgres(
        &setup.database_url,
        worker_events,
        setup.config.worker.database_pool_size as usize,
        2 * 1024,
        1,
        ceilings::Insert::Unnest,
    )
    .await?;
    results.postgres_rate = inserts.per_second();
    (results.postgres_batch_rate, results.postgres_copy_rate) =
        batch_ceiling(&setup, worker_events).await?;

    // Ingester and worker together, offered a steady share of the ingest maximum.
    let ingest_64 = results
        .curve
        .iter()
        .find(|(p, _, _)| p.connections == 64)
        .map_or(1000.0, |(p, _, _)| p.per_second);
    let offered = (ingest_64 * SUSTAINED_SHARE).max(100.0);
    eprintln!("sustained: {offered:.0} events/s for {SUSTAINED:?}, ingester and worker");
    results.sustained = Some(sustained::run(&setup, offered, SUSTAINED, 64, &small).await?);

    // Last, since it leaves the broker a large queue to purge: while RabbitMQ is unreachable,
    // every 200 is an fsync'd spool write.
    setup.relink().await?;
    eprintln!("2 KiB, 64 connections, broker unreachable (spooling)");
    results.spooling = Some(spooling(&setup, duration, &small).await?);

    drop(sink);
    results.write(&out)?;
    setup.relink().await?;
    setup.teardown().await?;
    eprintln!("wrote {}", out.join("results.md").display());
    Ok(())
}

/// `bench replication-run`: 64 connections' ingest, then the drain of `events`, against the
/// broker of `AMQP_URL`; prints the figures as one line of JSON.
#[allow(clippy::print_stdout)] // the result, for the parent
async fn replication_run(duration: Duration, events: usize) -> anyhow::Result<()> {
    const CONNECTIONS: usize = 64;
    let setup = setup().await?;
    let small = Arc::new(EventFactory::new(KEY, 2 * 1024));
    let ingester = setup.ingester()?;
    warm_up(&setup, &ingester, &small).await?;
    let point = ingest(
        &setup,
        &ingester,
        CONNECTIONS,
        Until::Elapsed(duration),
        &small,
    )
    .await?;
    ingester.stop()?;
    anyhow::ensure!(
        point.ok == point.queued,
        "{} answered 200, {} in the queue",
        point.ok,
        point.queued
    );
    // A first start applies the migrations.
    let worker = setup.worker()?;
    wait_ready(worker.port).await?;
    worker.stop()?;
    let (drain_rate, _) = drain(&setup, events, &small).await?;
    setup.teardown().await?;
    let run = replication::Run {
        connections: CONNECTIONS,
        ingest_per_second: point.per_second,
        ingest_p99_ms: point.p99_ms,
        drained: events,
        drain_per_second: drain_rate,
    };
    println!("{}", serde_json::to_string(&run)?);
    Ok(())
}

/// The ingester's accept rate while it spools: its broker is a gate that refuses connections
/// during the run; then the gate opens and every 200 must reach the queue.
async fn spooling(
    setup: &Setup,
    duration: Duration,
    factory: &Arc<EventFactory>,
) -> anyhow::Result<Point> {
    let amqp_url = env("AMQP_URL", countersign::config::DEFAULT_AMQP_URL);
    let broker: std::net::SocketAddr = {
        let authority = amqp_url.split("://").nth(1).unwrap_or_default();
        let host_port = authority.split('/').next().unwrap_or_default();
        let host_port = host_port.rsplit('@').next().unwrap_or_default();
        host_port.replace("localhost", "127.0.0.1").parse()?
    };
    let gate = gate::Gate::closed(broker).await?;
    let via_gate = amqp_url.replacen(&broker.to_string(), &format!("127.0.0.1:{}", gate.port), 1);
    let via_gate = via_gate.replacen(
        &format!("localhost:{}", broker.port()),
        &format!("127.0.0.1:{}", gate.port),
        1,
    );
    setup.purge().await?;
    let ingester = setup.ingester_with_broker(&via_gate)?;
    let result = drive(
        ([127, 0, 0, 1], ingester.port).into(),
        "/webhooks/bench",
        64,
        Until::Elapsed(duration),
        factory.clone(),
    )
    .await?;
    anyhow::ensure!(
        setup.queued().await? == 0,
        "messages reached the queue through a closed gate"
    );
    gate.open();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut queued = 0;
    while Instant::now() < deadline {
        queued = setup.queued().await?;
        if queued >= result.ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ingester.stop()?;
    setup.purge().await?;
    Ok(Point::from_load(&result, queued))
}

/// `/readyz` of an admin port, as JSON.
async fn readyz(port: u16) -> Option<serde_json::Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    stream
        .write_all(b"GET /readyz HTTP/1.0\r\n\r\n")
        .await
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.ok()?;
    serde_json::from_str(answer.split("\r\n\r\n").nth(1)?).ok()
}

mod gate {
    //! A TCP gate in front of the broker: closed, it accepts and drops every connection (a broker
    //! that is away); open, it forwards.

    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    pub struct Gate {
        pub port: u16,
        open: Arc<AtomicBool>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Gate {
        pub async fn closed(target: SocketAddr) -> anyhow::Result<Self> {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let port = listener.local_addr()?.port();
            let open = Arc::new(AtomicBool::new(false));
            let task = tokio::spawn({
                let open = open.clone();
                async move {
                    while let Ok((mut inbound, _)) = listener.accept().await {
                        if !open.load(Ordering::Relaxed) {
                            continue; // dropped: the client sees the connection closed
                        }
                        tokio::spawn(async move {
                            if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                                    .await;
                            }
                        });
                    }
                }
            });
            Ok(Self { port, open, task })
        }

        pub fn open(&self) {
            self.open.store(true, Ordering::Relaxed);
        }
    }

    impl Drop for Gate {
        fn drop(&mut self) {
            self.task.abort();
        }
    }
}

fn point_bytes(factory: &EventFactory) -> usize {
    factory.mint().1.len()
}

async fn wait_ready(port: u16) -> anyhow::Result<()> {
    let address = format!("127.0.0.1:{port}");
    for _ in 0..300 {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(&address).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            stream.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").await?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await?;
            if answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200") {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the worker never became ready")
}

/// Fills the queue with `n` events, starts a worker and times it until every event is a row:
/// (events/s, the worker's peak RSS). Progress is read from the worker's own commit counter
/// (`count(*)` every 20 ms took 1.3 s of the database's time from the worker in a 30,000-event
/// run); the rows are counted once at the end.
async fn drain(setup: &Setup, n: usize, factory: &Arc<EventFactory>) -> anyhow::Result<(f64, u64)> {
    prefill(setup, n, factory).await?;
    let started = Instant::now();
    let worker = setup.worker()?;
    wait_persisted(&worker, n, started, Duration::from_secs(300)).await?;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let peak = worker.memory()?.peak;
    worker.stop()?;
    let pool = sqlx::PgPool::connect(&setup.database_url).await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    anyhow::ensure!(rows as usize == n, "{n} events drained, but {rows} rows");
    Ok((rate, peak))
}

/// Waits until `worker`'s commit counter reaches `n`, polling its `/metrics` every 20 ms; fails
/// once `limit` has passed since `started`, or at once when the worker has exited.
async fn wait_persisted(
    worker: &Process,
    n: usize,
    started: Instant,
    limit: Duration,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let metrics = format!("http://127.0.0.1:{}/metrics", worker.port);
    loop {
        let persisted = match client.get(&metrics).send().await {
            Ok(response) => persisted_total(&response.text().await.unwrap_or_default()),
            Err(_) => 0,
        };
        if persisted >= n as u64 {
            return Ok(());
        }
        anyhow::ensure!(
            !worker.exited(),
            "the worker exited after recording {persisted} of {n} events"
        );
        anyhow::ensure!(
            started.elapsed() < limit,
            "the worker drained only {persisted} of {n} events in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// PostgreSQL's ceiling for the full projection: `n` events recorded by the worker's own
/// statements ([`countersign_worker::db::Db::record_batch`]) in batches of `worker.batch_size`,
/// as many batches at a time as the worker has in flight, on emptied tables — what the drain
/// would be if consuming from the broker, parsing, settling and writing document files cost
/// nothing. Events/s.
async fn projection_ceiling(
    setup: &Setup,
    n: usize,
    factory: &Arc<EventFactory>,
) -> anyhow::Result<f64> {
    use countersign_worker::handler::prepare;
    use futures_util::{StreamExt as _, TryStreamExt as _};

    let worker = &setup.config.worker;
    let sources = setup.config.build_sources()?;
    let messages = (0..n)
        .map(|_| as_ingested(&sources, factory.mint().1))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let items = messages
        .iter()
        .map(|(message, body)| {
            prepare(body, &message.properties).map_err(|o| anyhow::anyhow!("unrecordable: {o:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let db = countersign_worker::db::Db::connect_lazy(
        &setup.database_url,
        worker.database_pool_size,
        Duration::from_secs(30),
    )?;
    db.migrate().await?;
    sqlx::query(
        "TRUNCATE webhook_events, signature_uses, signing_processes, signees, activity, documents,
                  stored_documents",
    )
    .execute(db.pool())
    .await?;
    let in_flight = countersign::config::batches_in_flight(
        worker.prefetch,
        worker.batch_size,
        worker.database_pool_size,
    );
    let store = ceilings::NoDocumentFiles;
    let started = Instant::now();
    futures_util::stream::iter(items.chunks(usize::from(worker.batch_size)))
        .map(|batch| db.record_batch(batch, &store))
        .buffer_unordered(in_flight)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events")
        .fetch_one(db.pool())
        .await?;
    anyhow::ensure!(rows as usize == n, "{n} events recorded, but {rows} rows");
    db.pool().close().await;
    Ok(rate)
}

/// PostgreSQL's multi-row insert ceiling for the archive table: rows/s, 64 per statement, with as
/// many connections as the worker has batches in flight.
async fn batch_ceiling(setup: &Setup, rows: usize) -> anyhow::Result<(f64, f64)> {
    let worker = &setup.config.worker;
    let in_flight = countersign::config::batches_in_flight(
        worker.prefetch,
        worker.batch_size,
        worker.database_pool_size,
    );
    let mut rates = [0.0; 2];
    for (rate, insert) in rates
        .iter_mut()
        .zip([ceilings::Insert::Unnest, ceilings::Insert::CopyMerge])
    {
        let url = &setup.database_url;
        *rate = ceilings::postgres(url, rows, in_flight, 2 * 1024, 64, insert)
            .await?
            .per_second();
    }
    Ok((rates[0], rates[1]))
}

/// The sum of `countersign_worker_persisted_total` (new and duplicate) in a metrics page.
fn persisted_total(page: &str) -> u64 {
    page.lines()
        .filter(|line| line.starts_with("countersign_worker_persisted_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Fills `<prefix>.persist` with `n` events exactly as the ingester would publish them.
/// The message the ingester would publish for `body` (source `bench`): verified as it verifies,
/// built by the same contract.
fn as_ingested(sources: &Sources, body: bytes::Bytes) -> anyhow::Result<(Outbound, bytes::Bytes)> {
    let source = sources.get("bench").expect("configured");
    let received_at = std::time::SystemTime::now();
    let webhook = sources
        .verify(source, body, &NoHeaders, Origin::default(), received_at)
        .map_err(|r| anyhow::anyhow!("{r}"))?;
    let receipt = Receipt {
        request_id: "bench",
        received_at,
        content_type: Some("application/json"),
    };
    Ok((outbound(&webhook, &receipt), webhook.body().clone()))
}

async fn prefill(setup: &Setup, n: usize, factory: &Arc<EventFactory>) -> anyhow::Result<()> {
    let sources = Arc::new(setup.config.build_sources()?);
    let mut tasks = Vec::new();
    let per_task = n.div_ceil(64);
    for task in 0..64 {
        let (sources, factory, channel, exchange) = (
            sources.clone(),
            factory.clone(),
            setup.channel.clone(),
            setup.topology.exchange().to_owned(),
        );
        let count = per_task.min(n.saturating_sub(task * per_task));
        tasks.push(tokio::spawn(async move {
            for _ in 0..count {
                let (message, body) = as_ingested(&sources, factory.mint().1)?;
                countersign::amqp::publish_confirmed(
                    &channel,
                    ShortString::from(exchange.as_str()),
                    message.routing_key,
                    &body,
                    message.properties,
                    Duration::from_secs(30),
                )
                .await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    anyhow::ensure!(setup.queued().await? as usize == n, "prefill incomplete");
    Ok(())
}
