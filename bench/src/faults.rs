//! `bench faults`: the fault suite. Each scenario breaks something real under load — RabbitMQ
//! stopped, the ingester killed with SIGKILL while it spools, the spool's disk full, PostgreSQL
//! stopped, the worker killed again and again, RabbitMQ restarted while the worker holds
//! unacknowledged messages — and then counts, in PostgreSQL, every event that got a 200.
//!
//! The suite runs its own RabbitMQ node and PostgreSQL cluster (other ports, data in a
//! directory of its own), so stopping and killing them disturbs nothing else on the machine;
//! the ingester and worker are the release binaries, as separate processes. Needs root for the
//! full-disk scenario (a tmpfs) and to run PostgreSQL as its own user.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::events::EventFactory;
use crate::procs::sibling;

const KEY: &str = "fault-suite-signature-key";

/// How big and long the scenarios are.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Scale {
    /// For CI: a few seconds per fault.
    Small,
    /// As the issue states them: 64 connections, 30 s outages.
    Full,
}

struct Plan {
    connections: usize,
    /// Offered events per second, over all connections.
    rate: u64,
    /// Load before and after a fault.
    margin: Duration,
    /// How long a stopped server stays stopped.
    outage: Duration,
    /// The worker-kill scenario: how long, and a SIGKILL how often.
    kill_for: Duration,
    kill_every: Duration,
    /// Events sent at once before RabbitMQ is restarted under the worker.
    burst: u64,
    /// The cluster scenarios: how long a killed node (or two) stays down, and a partition lasts.
    node_outage: Duration,
    partition: Duration,
    /// The most one scenario may take, waits for the cluster included: past it the scenario
    /// fails with what it was doing, and the suite goes on to the next (a hung call must not
    /// hold CI until its own deadline).
    limit: Duration,
}

impl Scale {
    fn plan(self) -> Plan {
        match self {
            Scale::Small => Plan {
                connections: 16,
                rate: 100,
                margin: Duration::from_secs(3),
                outage: Duration::from_secs(5),
                kill_for: Duration::from_secs(12),
                kill_every: Duration::from_secs(3),
                burst: 4_000,
                node_outage: Duration::from_secs(5),
                partition: Duration::from_secs(10),
                limit: Duration::from_secs(8 * 60),
            },
            Scale::Full => Plan {
                connections: 64,
                rate: 400,
                margin: Duration::from_secs(10),
                outage: Duration::from_secs(30),
                kill_for: Duration::from_secs(60),
                kill_every: Duration::from_secs(4),
                burst: 15_000,
                node_outage: Duration::from_secs(20),
                partition: Duration::from_secs(30),
                limit: Duration::from_secs(15 * 60),
            },
        }
    }
}

/// A single-node scenario: the rig it runs on, the plan, its line.
type Scenario = for<'a> fn(
    &'a mut Rig,
    &'a Plan,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = anyhow::Result<Line>> + 'a>,
>;

/// One line of the results.
#[derive(Debug, Default)]
struct Line {
    scenario: &'static str,
    /// The RabbitMQ version it ran on ("4.0.5 × 3" for the cluster).
    broker: String,
    offered: u64,
    accepted: u64,
    /// Replies other than 200, by status code ("error" for no reply: connection refused or cut).
    refused: BTreeMap<String, u64>,
    rows: u64,
    duplicates: u64,
    lost: u64,
    notes: String,
    /// The first few requests that got no reply, and why.
    no_reply: Vec<String>,
    /// What the scenario itself requires beyond 0 lost and 0 duplicates.
    failures: Vec<String>,
}

impl Line {
    fn non_200(&self) -> u64 {
        self.refused.values().sum()
    }
}

/// Which scenarios run: those whose name contains `only` (all without it), less those whose
/// name contains `skip`.
pub struct Select {
    pub only: Option<String>,
    pub skip: Option<String>,
}

impl Select {
    fn wants(&self, name: &str) -> bool {
        self.only.as_deref().is_none_or(|o| name.contains(o))
            && self.skip.as_deref().is_none_or(|s| !name.contains(s))
    }
}

pub async fn run(scale: Scale, out: &Path, select: Select) -> anyhow::Result<()> {
    let plan = scale.plan();
    let root = std::env::temp_dir().join(format!(
        "countersign-faults-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&root)?;
    let outcome = run_in(&root, scale, &plan, &select, out).await;
    if outcome.is_ok() {
        let _ = std::fs::remove_dir_all(&root);
    } else {
        // The binaries' logs of the failed scenario, for finding out why.
        eprintln!("faults: logs kept in {}", root.display());
    }
    outcome
}

#[allow(clippy::print_stdout)] // the closing "N passed, N failed" line
async fn run_in(
    root: &Path,
    scale: Scale,
    plan: &Plan,
    select: &Select,
    out: &Path,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut rabbit = Rabbit::new(root)?;
    let mut postgres = Postgres::new(root)?;
    eprintln!(
        "faults: starting a private RabbitMQ node and PostgreSQL cluster in {}",
        root.display()
    );
    rabbit.start().await?;
    postgres.start()?;

    let scenarios: [(&'static str, Scenario); 6] = [
        ("broker_outage", |rig, plan| {
            Box::pin(broker_outage(rig, plan))
        }),
        ("ingester_kill_while_spooling", |rig, plan| {
            Box::pin(ingester_kill_while_spooling(rig, plan))
        }),
        ("spool_disk_full", |rig, plan| {
            Box::pin(spool_disk_full(rig, plan))
        }),
        ("postgres_outage", |rig, plan| {
            Box::pin(postgres_outage(rig, plan))
        }),
        ("worker_kill_loop", |rig, plan| {
            Box::pin(worker_kill_loop(rig, plan))
        }),
        ("rabbitmq_restart_with_unacked", |rig, plan| {
            Box::pin(rabbitmq_restart_with_unacked(rig, plan))
        }),
    ];
    let mut lines = Vec::new();
    let single: Vec<_> = scenarios
        .into_iter()
        .filter(|(name, _)| select.wants(name))
        .collect();
    if !single.is_empty() {
        let version = rabbit.version();
        eprintln!("faults: the single-node scenarios on this machine's RabbitMQ {version}");
        for (name, scenario) in &single {
            let mut rig = Rig::new(root, name, &mut rabbit, &mut postgres).await?;
            let line = run_one(name, &version, *scenario, &mut rig, plan).await;
            drop(rig);
            lines.push(line);
            // A scenario that stopped a server leaves it running again for the next one.
            rabbit.ensure_running().await?;
            postgres.ensure_running()?;
        }
        // Production runs RabbitMQ 4.0: the same scenarios against it (the local base image,
        // one node of deploy/cluster), each with a database and spool of its own.
        eprintln!("faults: the single-node scenarios again, on RabbitMQ 4.0 in a container");
        match Rabbit::in_container(root).await {
            Ok(mut rabbit4) => {
                let version = rabbit4.version();
                for (name, scenario) in &single {
                    let rig_name = format!("{name}_rabbitmq4");
                    let mut rig = Rig::new(root, &rig_name, &mut rabbit4, &mut postgres).await?;
                    let line = run_one(name, &version, *scenario, &mut rig, plan).await;
                    drop(rig);
                    lines.push(line);
                    rabbit4.ensure_running().await?;
                    postgres.ensure_running()?;
                }
            }
            Err(error) => lines.push(Line {
                scenario: "rabbitmq4_single_node",
                broker: "4.0".to_owned(),
                failures: vec![format!("the RabbitMQ 4.0 node did not start: {error:#}")],
                ..Line::default()
            }),
        }
    }
    let cluster_scenarios = [
        ClusterFault::LeaderKill,
        ClusterFault::RollingRestart,
        ClusterFault::Partition,
        ClusterFault::TwoNodesDown,
        ClusterFault::WorkerKillLoop,
    ]
    .map(|fault| (fault.name(), fault));
    let wanted: Vec<_> = cluster_scenarios
        .into_iter()
        .filter(|(name, _)| select.wants(name))
        .collect();
    if !wanted.is_empty() {
        eprintln!("faults: starting a three-node RabbitMQ cluster (deploy/cluster)");
        let cluster = crate::cluster::Cluster::start().await;
        for (name, fault) in wanted {
            eprintln!("faults: {name} ...");
            let begun = Instant::now();
            let line = match &cluster {
                Ok(cluster) => {
                    let mut rig = Rig::new(root, name, &mut rabbit, &mut postgres).await?;
                    rig.amqp_url = cluster.url();
                    let line =
                        within(plan.limit, cluster_scenario(&mut rig, cluster, plan, fault)).await;
                    if line.as_ref().map_or(true, |l| !l.failures.is_empty()) {
                        cluster.save_logs(&root.join(format!("{name}.rabbitmq.log")));
                    }
                    rig.shut_down();
                    drop(rig);
                    // Whole again for the next scenario, whatever this one left.
                    for node in 1..=3 {
                        let _ = cluster.heal(node);
                        let _ = cluster.start_node(node);
                    }
                    let _ = cluster.wait_whole(Duration::from_secs(180)).await;
                    line
                }
                Err(error) => Err(anyhow::anyhow!("the cluster did not start: {error:#}")),
            };
            let mut line = line.unwrap_or_else(|error| Line {
                scenario: name,
                failures: vec![format!("the scenario could not run: {error:#}")],
                ..Line::default()
            });
            line.broker = match &cluster {
                Ok(cluster) => format!(
                    "{} × 3",
                    cluster
                        .rabbitmqctl(1, &["version"])
                        .map_or_else(|_| "?".to_owned(), |v| v.trim().to_owned())
                ),
                Err(_) => "4.0 × 3".to_owned(),
            };
            report_line(&line, begun);
            lines.push(line);
        }
    }
    rabbit.stop();
    postgres.stop();

    let report = render(scale, plan, &lines, started.elapsed());
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, &report)?;
    eprintln!("faults: results in {}", out.display());
    let failed: Vec<String> = lines
        .iter()
        .filter(|l| l.lost > 0 || l.duplicates > 0 || !l.failures.is_empty())
        .map(|l| format!("{} (RabbitMQ {})", l.scenario, l.broker))
        .collect();
    if failed.is_empty() {
        println!("{} passed, 0 failed", lines.len());
        Ok(())
    } else {
        println!(
            "{} passed, {} failed",
            lines.len() - failed.len(),
            failed.len()
        );
        bail!("fault scenarios failed: {}", failed.join(", "))
    }
}

/// One single-node scenario on a rig, its line whatever happened.
async fn run_one<'a>(
    name: &'static str,
    version: &str,
    scenario: Scenario,
    rig: &'a mut Rig<'_>,
    plan: &'a Plan,
) -> Line {
    eprintln!("faults: {name} (RabbitMQ {version}) ...");
    let begun = Instant::now();
    let line = within(plan.limit, scenario(rig, plan)).await;
    rig.shut_down();
    let mut line = line.unwrap_or_else(|error| Line {
        scenario: name,
        failures: vec![format!("the scenario could not run: {error:#}")],
        ..Line::default()
    });
    line.broker = version.to_owned();
    report_line(&line, begun);
    line
}

/// `scenario`, or an error once `limit` has passed.
async fn within(
    limit: Duration,
    scenario: impl std::future::Future<Output = anyhow::Result<Line>>,
) -> anyhow::Result<Line> {
    tokio::time::timeout(limit, scenario)
        .await
        .unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "did not finish within {} s (the binaries' logs are kept)",
                limit.as_secs()
            ))
        })
}

fn report_line(line: &Line, begun: Instant) {
    eprintln!(
        "faults: {} (RabbitMQ {}): offered {}, 200 {}, non-200 {:?}, rows {}, duplicates {}, lost {} ({:.0} s){}",
        line.scenario,
        line.broker,
        line.offered,
        line.accepted,
        line.refused,
        line.rows,
        line.duplicates,
        line.lost,
        begun.elapsed().as_secs_f64(),
        if line.failures.is_empty() {
            String::new()
        } else {
            format!(" FAILED: {}", line.failures.join("; "))
        }
    );
}

fn render(scale: Scale, plan: &Plan, lines: &[Line], took: Duration) -> String {
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "unknown".to_owned(), |s| s.trim().to_owned());
    let mut text = String::new();
    let _ = writeln!(text, "# Fault suite results\n");
    let _ = writeln!(
        text,
        "`./scripts/faults {}` at commit {commit}, {} ({:.0} s). Load: {} connections, {} events/s offered (2 KiB signed Taktikal events; 16 KiB in the full-disk scenario); outages {} s.\n",
        match scale {
            Scale::Small => "--scale small",
            Scale::Full => "--scale full",
        },
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        took.as_secs_f64(),
        plan.connections,
        plan.rate,
        plan.outage.as_secs(),
    );
    let _ = writeln!(
        text,
        "\"lost\" = events answered 200 and missing from `webhook_events` once everything has drained; \"duplicates\" = rows beyond one per event in `webhook_events`, `activity` (per entry) and `documents` (per content).\n"
    );
    let _ = writeln!(
        text,
        "| scenario | RabbitMQ | offered | 200 | non-200 | rows in PostgreSQL | duplicates | lost | notes |"
    );
    let _ = writeln!(text, "|---|---|---:|---:|---|---:|---:|---:|---|");
    for line in lines {
        let refused = if line.refused.is_empty() {
            "0".to_owned()
        } else {
            line.refused
                .iter()
                .map(|(code, n)| format!("{n} × {code}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut notes = line.notes.clone();
        if !line.no_reply.is_empty() {
            notes.push_str(&format!("; no reply: {}", line.no_reply.join(" / ")));
        }
        if !line.failures.is_empty() {
            notes.push_str(&format!(" **FAILED: {}**", line.failures.join("; ")));
        }
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            line.scenario,
            line.broker,
            line.offered,
            line.accepted,
            refused,
            line.rows,
            line.duplicates,
            line.lost,
            notes.trim()
        );
    }
    text
}

// --- the servers ------------------------------------------------------------------------------

/// A private RabbitMQ node: the machine's RabbitMQ with its own name, ports and data
/// directory, or production's RabbitMQ 4.0 in a container (`deploy/cluster`'s first node alone,
/// the local base image).
struct Rabbit {
    dir: PathBuf,
    port: u16,
    dist_port: u16,
    node: String,
    child: Option<Child>,
    /// The container's node, when this is RabbitMQ 4.0; `running` says whether it is started.
    container: Option<crate::cluster::Cluster>,
    running: bool,
}

impl Rabbit {
    fn new(root: &Path) -> anyhow::Result<Self> {
        let dir = root.join("rabbitmq");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("enabled_plugins"), "[].\n")?;
        let port = free_port();
        let node = format!("faults{port}@localhost");
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n"),
        )?;
        Ok(Self {
            dir,
            port,
            dist_port: free_port(),
            node,
            child: None,
            container: None,
            running: false,
        })
    }

    /// RabbitMQ 4.0 in a container: a cluster of one node, started and waited for.
    async fn in_container(root: &Path) -> anyhow::Result<Self> {
        let mut rabbit = Self::new(root)?;
        rabbit.container = Some(crate::cluster::Cluster::start_nodes(1).await?);
        rabbit.running = true;
        Ok(rabbit)
    }

    /// "3.10.x" or "4.0.x": what the table says the scenario ran on.
    fn version(&self) -> String {
        let text = match &self.container {
            Some(cluster) => cluster.rabbitmqctl(1, &["version"]).unwrap_or_default(),
            None => crate::procs::output_within(
                self.command("rabbitmqctl")
                    .args(["-q", "-n", &self.node, "version"]),
                Duration::from_secs(60),
            )
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default(),
        };
        let version = text.trim();
        if version.is_empty() { "?" } else { version }.to_owned()
    }

    fn url(&self) -> String {
        match &self.container {
            Some(cluster) => cluster.url(),
            None => format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port),
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(format!("/usr/lib/rabbitmq/bin/{program}"));
        command
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                self.dir.join("enabled_plugins"),
            )
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("HOME", &self.dir);
        command
    }

    async fn start(&mut self) -> anyhow::Result<()> {
        if let Some(cluster) = &self.container {
            cluster.start_node(1)?;
            cluster.wait_whole(Duration::from_secs(120)).await?;
            self.running = true;
            return Ok(());
        }
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("server.out"))?;
        let child = self
            .command("rabbitmq-server")
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting rabbitmq-server (is RabbitMQ installed?)")?;
        self.child = Some(child);
        let url = self.url();
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            // Each attempt bounded: a node that takes the TCP connection but never finishes
            // the AMQP handshake (booting, or stuck) would otherwise hold this forever.
            let attempt = tokio::time::timeout(
                Duration::from_secs(5),
                lapin::Connection::connect(&url, lapin::ConnectionProperties::default()),
            );
            if let Ok(Ok(_connection)) = attempt.await {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                bail!(
                    "the private RabbitMQ node exited ({status}) while starting: {}",
                    self.tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!(
            "the private RabbitMQ node did not start within 90 s: {}",
            self.tail()
        )
    }

    /// The last lines the node wrote to its console, for an error message.
    fn tail(&self) -> String {
        let path = self.dir.join("server.out");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(15).collect();
        format!(
            "{} ends with:\n{}",
            path.display(),
            lines.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    /// Stops the whole node (not just its app): SIGTERM to its process group (or `docker
    /// stop`), then waits.
    fn stop(&mut self) {
        if let Some(cluster) = &self.container {
            if self.running {
                let _ = cluster.stop(1);
                self.running = false;
            }
            return;
        }
        if let Some(mut child) = self.child.take() {
            signal_group(&child, "TERM");
            if !wait_for(&mut child, Duration::from_secs(60)) {
                signal_group(&child, "KILL");
                let _ = child.wait();
            }
        }
    }

    async fn ensure_running(&mut self) -> anyhow::Result<()> {
        let running = match self.container {
            Some(_) => self.running,
            None => self.child.is_some(),
        };
        if !running {
            self.start().await?;
        }
        Ok(())
    }

    /// Messages delivered to consumers and not yet acknowledged, over the queues of `prefix`
    /// (`rabbitmqctl list_queues` against this node).
    fn unacked(&self, prefix: &str) -> anyhow::Result<u64> {
        if let Some(cluster) = &self.container {
            let text =
                cluster.rabbitmqctl(1, &["list_queues", "name", "messages_unacknowledged"])?;
            return Ok(count_unacked(&text, prefix));
        }
        let mut command = self.command("rabbitmqctl");
        command.args([
            "-q",
            "-n",
            &self.node,
            "list_queues",
            "name",
            "messages_unacknowledged",
        ]);
        let output = crate::procs::output_within(&mut command, Duration::from_secs(60))?;
        if !output.status.success() {
            bail!(
                "rabbitmqctl: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(count_unacked(
            &String::from_utf8_lossy(&output.stdout),
            prefix,
        ))
    }
}

/// The sum of `list_queues name messages_unacknowledged` over the queues of `prefix`.
fn count_unacked(text: &str, prefix: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// A private PostgreSQL cluster (run as the `postgres` user when this runs as root).
struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    running: bool,
}

impl Postgres {
    fn new(root: &Path) -> anyhow::Result<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .context("PostgreSQL is not installed in /usr/lib/postgresql")?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("pg_ctl").exists())
            .max()
            .context("no pg_ctl under /usr/lib/postgresql")?;
        let dir = root.join("postgres");
        std::fs::create_dir_all(&dir)?;
        let as_postgres = is_root();
        if as_postgres {
            exec(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&dir),
            )?;
        }
        let postgres = Self {
            dir,
            bin,
            port: free_port(),
            as_postgres,
            running: false,
        };
        exec(
            postgres
                .pg("initdb")
                .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
                .arg(postgres.dir.join("data")),
        )?;
        Ok(postgres)
    }

    fn pg(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn start(&mut self) -> anyhow::Result<()> {
        exec(
            self.pg("pg_ctl")
                .arg("-D")
                .arg(self.dir.join("data"))
                .arg("-o")
                .arg(format!(
                    "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
                    self.port,
                    self.dir.display()
                ))
                .arg("-l")
                .arg(self.dir.join("server.log"))
                .args(["-w", "-t", "60", "start"]),
        )?;
        self.running = true;
        Ok(())
    }

    /// A fast shutdown: connections are cut, as when a database server goes away.
    fn stop(&mut self) {
        if self.running {
            let _ = exec(
                self.pg("pg_ctl")
                    .arg("-D")
                    .arg(self.dir.join("data"))
                    .args(["-m", "fast", "-w", "stop"]),
            );
            self.running = false;
        }
    }

    fn ensure_running(&mut self) -> anyhow::Result<()> {
        if !self.running {
            self.start()?;
        }
        Ok(())
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            signal_group(&child, "KILL");
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .pg("pg_ctl")
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-m", "immediate", "stop"])
                .output();
        }
    }
}

// --- one scenario's ingester, worker and database ----------------------------------------------

struct Rig<'a> {
    rabbit: &'a mut Rabbit,
    postgres: &'a mut Postgres,
    dir: PathBuf,
    config: PathBuf,
    port: u16,
    admin_port: u16,
    api_port: u16,
    database_url: String,
    prefix: String,
    ingester: Option<Child>,
    worker: Option<Child>,
    spool: PathBuf,
    mounted: bool,
    /// More `[worker]` settings (TOML lines) for a scenario.
    worker_settings: String,
    /// The binaries' AMQP_URL: the private node's, or the cluster's three nodes.
    amqp_url: String,
    /// Ingesters and workers beside the first pair.
    replicas: Vec<Replica>,
}

/// A further ingester or worker beside the rig's first pair (the cluster scenarios run two
/// ingesters and three workers), with ports, a spool and a configuration file of its own.
struct Replica {
    binary: &'static str,
    config: PathBuf,
    log: String,
    /// The ingester's webhook port (the worker's API port for a worker).
    port: u16,
    /// The port whose `/healthz` says it is up, and whose `/metrics` it serves.
    admin_port: u16,
    child: Option<Child>,
}

impl Replica {
    fn is_ingester(&self) -> bool {
        self.binary == "countersign-ingester"
    }
}

impl<'a> Rig<'a> {
    async fn new(
        root: &Path,
        name: &str,
        rabbit: &'a mut Rabbit,
        postgres: &'a mut Postgres,
    ) -> anyhow::Result<Self> {
        let dir = root.join(name);
        let spool = dir.join("spool");
        std::fs::create_dir_all(&spool)?;
        let database = format!("faults_{name}");
        let admin = sqlx::PgPool::connect(&postgres.url("postgres")).await?;
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&admin)
            .await?;
        admin.close().await;
        let mut rig = Self {
            amqp_url: rabbit.url(),
            database_url: postgres.url(&database),
            rabbit,
            postgres,
            config: dir.join("countersign.toml"),
            dir,
            port: free_port(),
            admin_port: free_port(),
            api_port: free_port(),
            prefix: format!("faults-{name}"),
            ingester: None,
            worker: None,
            spool,
            mounted: false,
            worker_settings: String::new(),
            replicas: Vec::new(),
        };
        rig.write_config()?;
        Ok(rig)
    }

    fn write_config(&mut self) -> anyhow::Result<()> {
        let text = self.config_text(self.port, self.admin_port, self.api_port, &self.spool);
        std::fs::write(&self.config, text)?;
        Ok(())
    }

    fn config_text(&self, port: u16, admin: u16, api: u16, spool: &Path) -> String {
        format!(
            r#"[amqp]
prefix = "{prefix}"
# Long enough together (~2.5 min) that a 30 s database outage is retried, not dead-lettered.
retry_delays = ["1s", "2s", "5s", "10s", "20s", "40s", "60s"]

[ingester]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"
confirm_timeout = "5s"
max_body_bytes = 1048576
max_body_bytes_in_flight = 67108864

[ingester.spool]
dir = "{spool}"
max_bytes = 1073741824

[worker]
listen = "127.0.0.1:{api}"
documents = "file:{documents}"
{worker_settings}

[[sources]]
name = "acme"
provider = "taktikal"
secrets = ["env:ACME_KEY"]
"#,
            prefix = self.prefix,
            spool = spool.display(),
            documents = self.dir.join("documents").display(),
            worker_settings = self.worker_settings,
        )
    }

    fn spawn(&self, binary: &str, log: &str) -> anyhow::Result<Child> {
        self.spawn_with(binary, &self.config, log)
    }

    fn spawn_with(&self, binary: &str, config: &Path, log: &str) -> anyhow::Result<Child> {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(log))?;
        Command::new(sibling(binary))
            .env("COUNTERSIGN_CONFIG", config)
            .env("AMQP_URL", &self.amqp_url)
            .env("DATABASE_URL", &self.database_url)
            .env("ACME_KEY", KEY)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {binary} (built by `cargo build --release`?)"))
    }

    async fn start_ingester(&mut self) -> anyhow::Result<()> {
        self.ingester = Some(self.spawn("countersign-ingester", "ingester.log")?);
        wait_http(self.admin_port, "/healthz").await
    }

    async fn start_worker(&mut self) -> anyhow::Result<()> {
        self.worker = Some(self.spawn("countersign-worker", "worker.log")?);
        wait_http(self.api_port, "/healthz").await
    }

    async fn start_both(&mut self) -> anyhow::Result<()> {
        self.start_ingester().await?;
        self.start_worker().await
    }

    /// Starts `ingesters` more ingesters (each its own spool) and `workers` more workers.
    async fn add_replicas(&mut self, ingesters: usize, workers: usize) -> anyhow::Result<()> {
        let binaries = std::iter::repeat_n("countersign-ingester", ingesters)
            .chain(std::iter::repeat_n("countersign-worker", workers));
        for binary in binaries {
            let n = self.replicas.len() + 2;
            let (port, admin_port) = (free_port(), free_port());
            let spool = self.dir.join(format!("spool-{n}"));
            std::fs::create_dir_all(&spool)?;
            let text = if binary == "countersign-ingester" {
                self.config_text(port, admin_port, self.api_port, &spool)
            } else {
                self.config_text(self.port, self.admin_port, admin_port, &spool)
            };
            let config = self.dir.join(format!("countersign-{n}.toml"));
            std::fs::write(&config, text)?;
            let role = binary.trim_start_matches("countersign-");
            self.replicas.push(Replica {
                binary,
                config,
                log: format!("{role}-{n}.log"),
                port,
                admin_port,
                child: None,
            });
            self.start_replica(self.replicas.len() - 1).await?;
        }
        Ok(())
    }

    async fn start_replica(&mut self, i: usize) -> anyhow::Result<()> {
        let replica = &self.replicas[i];
        let child = self.spawn_with(replica.binary, &replica.config, &replica.log)?;
        let port = replica.admin_port;
        self.replicas[i].child = Some(child);
        wait_http(port, "/healthz").await
    }

    /// The (webhook, admin) ports of every ingester, the first one's first.
    fn ingesters(&self) -> Vec<(u16, u16)> {
        let replicas = self.replicas.iter().filter(|r| r.is_ingester());
        std::iter::once((self.port, self.admin_port))
            .chain(replicas.map(|r| (r.port, r.admin_port)))
            .collect()
    }

    fn shut_down(&mut self) {
        let replicas = self.replicas.iter_mut().map(|r| r.child.take());
        let children: Vec<Child> = [self.ingester.take(), self.worker.take()]
            .into_iter()
            .chain(replicas)
            .flatten()
            .collect();
        for child in children {
            let mut child = child;
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            if !wait_for(&mut child, Duration::from_secs(40)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if self.mounted {
            let _ = Command::new("umount").arg(&self.spool).status();
            self.mounted = false;
        }
    }

    fn log_contains(&self, log: &str, text: &str) -> bool {
        std::fs::read_to_string(self.dir.join(log)).is_ok_and(|l| l.contains(text))
    }

    /// Waits until every accepted event is in `webhook_events` (or `patience` passes without
    /// progress), then counts rows, duplicates and losses into `line`.
    async fn settle(&self, load: &LoadOutcome, line: &mut Line) -> anyhow::Result<()> {
        let pool = sqlx::PgPool::connect(&self.database_url).await?;
        let accepted: Vec<String> = load.accepted.iter().cloned().collect();
        let patience = Duration::from_secs(90);
        let mut last = (0i64, Instant::now());
        let present = loop {
            let present: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM webhook_events WHERE source = 'acme' AND event_id = ANY($1)",
            )
            .bind(&accepted)
            .fetch_one(&pool)
            .await
            .unwrap_or(0);
            if present as usize >= accepted.len() {
                break present;
            }
            if present > last.0 {
                last = (present, Instant::now());
            } else if last.1.elapsed() > patience {
                break present;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events")
            .fetch_one(&pool)
            .await?;
        let duplicates: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) - count(DISTINCT (source, event_id)) FROM webhook_events)
                  + (SELECT count(*) - count(DISTINCT (source, process_key, entry_key)) FROM activity)
                  + (SELECT count(*) - count(DISTINCT (source, process_key, kind, content_key)) FROM documents)",
        )
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        line.offered = load.offered;
        line.accepted = load.accepted.len() as u64;
        line.refused = load.refused.clone();
        line.no_reply = load.no_reply.clone();
        line.rows = u64::try_from(rows).unwrap_or(0);
        line.duplicates = u64::try_from(duplicates).unwrap_or(0);
        line.lost = accepted.len() as u64 - u64::try_from(present).unwrap_or(0);
        Ok(())
    }
}

impl Drop for Rig<'_> {
    fn drop(&mut self) {
        self.shut_down();
    }
}

// --- load ---------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct LoadOutcome {
    offered: u64,
    accepted: HashSet<String>,
    refused: BTreeMap<String, u64>,
    /// The first few requests that got no reply: how long after sending, and why (reqwest's
    /// error with its causes), so that a stray `error` in CI can be told apart from a kill.
    no_reply: Vec<String>,
}

/// How many requests without a reply [`LoadOutcome`] describes.
const NO_REPLY_KEPT: usize = 5;

impl LoadOutcome {
    /// Counts one reply to the event `id`: a 200 is accepted, anything else refused by its code
    /// (`error` when no reply came).
    fn count(&mut self, id: String, reply: &reqwest::Result<reqwest::Response>, sent: Instant) {
        if let Err(error) = reply
            && self.no_reply.len() < NO_REPLY_KEPT
        {
            let mut why = error.to_string();
            let mut cause = std::error::Error::source(error);
            while let Some(inner) = cause {
                why.push_str(&format!(": {inner}"));
                cause = inner.source();
            }
            self.no_reply.push(format!(
                "{:.1} s after sending: {why}",
                sent.elapsed().as_secs_f64()
            ));
        }
        match reply {
            Ok(response) if response.status() == 200 => {
                self.accepted.insert(id);
            }
            Ok(response) => {
                *self
                    .refused
                    .entry(response.status().as_u16().to_string())
                    .or_default() += 1;
            }
            Err(_) => *self.refused.entry("error".to_owned()).or_default() += 1,
        }
    }
}

/// Paced load: `connections` clients together offering `rate` events/s to the ingester, until
/// `stop` is set. A request that gets no reply (the ingester killed, connection refused) counts
/// as `error`, and the client carries on.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<LoadOutcome>>,
}

impl Load {
    /// Connection `i` posts to the ingester on `ports[i % ports.len()]`.
    fn start(ports: &[u16], connections: usize, rate: u64, factory: Arc<EventFactory>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let client = load_client(connections);
        let period = Duration::from_secs_f64(connections as f64 / rate.max(1) as f64);
        let tasks = (0..connections)
            .map(|i| {
                let url = format!("http://127.0.0.1:{}/webhooks/acme", ports[i % ports.len()]);
                let (stop, client, factory) = (stop.clone(), client.clone(), factory.clone());
                tokio::spawn(async move {
                    // Spread the connections' ticks over one period.
                    tokio::time::sleep(period.mul_f64(i as f64 / connections as f64)).await;
                    let mut tick = tokio::time::interval(period);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let mut outcome = LoadOutcome::default();
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        let (id, body) = factory.mint();
                        outcome.offered += 1;
                        let sent = Instant::now();
                        let reply = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await;
                        outcome.count(id, &reply, sent);
                    }
                    outcome
                })
            })
            .collect();
        Self { stop, tasks }
    }

    async fn finish(self) -> LoadOutcome {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = LoadOutcome::default();
        for task in self.tasks {
            if let Ok(outcome) = task.await {
                total.offered += outcome.offered;
                total.accepted.extend(outcome.accepted);
                for (code, n) in outcome.refused {
                    *total.refused.entry(code).or_default() += n;
                }
                total.no_reply.extend(outcome.no_reply);
            }
        }
        total.no_reply.truncate(NO_REPLY_KEPT);
        total
    }
}

/// Sends `count` events as fast as `connections` clients can; returns what was accepted.
async fn burst(port: u16, connections: usize, count: u64) -> LoadOutcome {
    let factory = Arc::new(EventFactory::new(KEY, 2048));
    let client = load_client(connections);
    let url = format!("http://127.0.0.1:{port}/webhooks/acme");
    let next = Arc::new(AtomicU64::new(0));
    let outcome = Arc::new(Mutex::new(LoadOutcome::default()));
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (client, url, next, outcome, factory) = (
                client.clone(),
                url.clone(),
                next.clone(),
                outcome.clone(),
                factory.clone(),
            );
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let (id, body) = factory.mint();
                    let sent = Instant::now();
                    let reply = client.post(&url).body(body).send().await;
                    let mut outcome = outcome.lock().unwrap();
                    outcome.offered += 1;
                    outcome.count(id, &reply, sent);
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    Arc::try_unwrap(outcome)
        .map(|m| m.into_inner().unwrap())
        .unwrap_or_default()
}

/// The load's HTTP client. Its pooled connections are dropped after half the ingester's
/// keep-alive idle, as any client in front of a server should (nginx's upstream keepalive_timeout
/// under the server's, the Kubernetes configuration's 75 s above the ingress's 60 s): reusing a
/// connection just as the server closes it for idleness fails the request without a reply — the
/// client's race, which would show here as `error` and be taken for the ingester's.
fn load_client(connections: usize) -> reqwest::Client {
    // The rig's ingesters keep the default `keep_alive`.
    let keep_alive = countersign::config::IngesterConfig::default().keep_alive;
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(connections)
        .pool_idle_timeout(keep_alive / 2)
        .build()
        .expect("HTTP client")
}

fn factory() -> Arc<EventFactory> {
    Arc::new(EventFactory::new(KEY, 2048))
}

// --- the scenarios ------------------------------------------------------------------------------

/// RabbitMQ stopped for `outage` under load: the spool answers, then drains.
async fn broker_outage(rig: &mut Rig<'_>, plan: &Plan) -> anyhow::Result<Line> {
    rig.start_both().await?;
    let load = Load::start(&[rig.port], plan.connections, plan.rate, factory());
    tokio::time::sleep(plan.margin).await;
    let stopped = Instant::now();
    rig.rabbit.stop();
    tokio::time::sleep(plan.outage.saturating_sub(stopped.elapsed())).await;
    rig.rabbit.start().await?;
    let outage = stopped.elapsed();
    tokio::time::sleep(plan.margin).await;
    let load = load.finish().await;
    let mut line = Line {
        scenario: "broker_outage",
        notes: format!(
            "RabbitMQ node stopped {:.0} s (stop to accepting again)",
            outage.as_secs_f64()
        ),
        ..Line::default()
    };
    rig.settle(&load, &mut line).await?;
    if line.non_200() > 0 {
        line.failures
            .push("non-200 replies while the spool had room".to_owned());
    }
    if !rig.log_contains("ingester.log", "spooling started") {
        line.failures.push("the ingester never spooled".to_owned());
    }
    Ok(line)
}

/// RabbitMQ down, the ingester spooling under load is killed with SIGKILL and restarted on the
/// same spool; then RabbitMQ comes back.
async fn ingester_kill_while_spooling(rig: &mut Rig<'_>, plan: &Plan) -> anyhow::Result<Line> {
    rig.start_both().await?;
    rig.rabbit.stop();
    let load = Load::start(&[rig.port], plan.connections, plan.rate, factory());
    tokio::time::sleep(plan.margin).await;
    sigkill(&mut rig.ingester);
    rig.start_ingester().await?;
    tokio::time::sleep(plan.margin).await;
    let load = load.finish().await;
    rig.rabbit.start().await?;
    let mut line = Line {
        scenario: "ingester_kill_while_spooling",
        ..Line::default()
    };
    rig.settle(&load, &mut line).await?;
    let torn = rig.log_contains("ingester.log", "cutting a torn tail");
    let recovered = rig.log_contains(
        "ingester.log",
        "spool holds messages from before this start",
    );
    line.notes = format!(
        "SIGKILL mid-load with RabbitMQ down; restart found spooled messages: {}; a torn tail cut: {}",
        if recovered { "yes" } else { "no" },
        if torn {
            "yes"
        } else {
            "no (the kill fell between writes)"
        }
    );
    if !recovered {
        line.failures
            .push("the restarted ingester found nothing to drain".to_owned());
    }
    Ok(line)
}

/// The spool's file system fills up (a tmpfs smaller than `max_bytes`): 503, never a 200 that is
/// not on disk; once RabbitMQ is back, every 200 is drained and room comes back.
async fn spool_disk_full(rig: &mut Rig<'_>, plan: &Plan) -> anyhow::Result<Line> {
    if !is_root() {
        return Ok(Line {
            scenario: "spool_disk_full",
            notes: "skipped: mounting a tmpfs needs root".to_owned(),
            failures: vec!["not run".to_owned()],
            ..Line::default()
        });
    }
    exec(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(&rig.spool),
    )?;
    rig.mounted = true;
    rig.start_both().await?;
    rig.rabbit.stop();
    let big = Arc::new(EventFactory::new(KEY, 16 * 1024));
    let load = Load::start(&[rig.port], plan.connections, plan.rate, big);
    tokio::time::sleep(plan.margin * 2).await;
    let load = load.finish().await;
    rig.rabbit.start().await?;
    let mut line = Line {
        scenario: "spool_disk_full",
        notes: "spool on a 2 MiB tmpfs, max_bytes 1 GiB: the disk fills first (ENOSPC)".to_owned(),
        ..Line::default()
    };
    rig.settle(&load, &mut line).await?;
    if line.refused.get("503").copied().unwrap_or(0) == 0 {
        line.failures
            .push("no 503 when the disk was full".to_owned());
    }
    if line.accepted == 0 {
        line.failures
            .push("nothing was spooled before the disk filled".to_owned());
    }
    // Room again once drained: a new webhook is a 200.
    let after = burst(rig.port, 1, 1).await;
    if after.accepted.len() != 1 {
        line.failures
            .push(format!("after draining, not a 200: {:?}", after.refused));
    }
    Ok(line)
}

/// PostgreSQL stopped for `outage` under load: the worker retries, nothing is dead-lettered.
async fn postgres_outage(rig: &mut Rig<'_>, plan: &Plan) -> anyhow::Result<Line> {
    rig.start_both().await?;
    let load = Load::start(&[rig.port], plan.connections, plan.rate, factory());
    tokio::time::sleep(plan.margin).await;
    rig.postgres.stop();
    tokio::time::sleep(plan.outage).await;
    rig.postgres.start()?;
    tokio::time::sleep(plan.margin).await;
    let load = load.finish().await;
    let mut line = Line {
        scenario: "postgres_outage",
        notes: format!(
            "PostgreSQL stopped (fast shutdown) {} s",
            plan.outage.as_secs()
        ),
        ..Line::default()
    };
    rig.settle(&load, &mut line).await?;
    if line.non_200() > 0 {
        line.failures
            .push("non-200 replies: the ingester does not need PostgreSQL".to_owned());
    }
    Ok(line)
}

/// The worker killed with SIGKILL every few seconds under load, and restarted.
async fn worker_kill_loop(rig: &mut Rig<'_>, plan: &Plan) -> anyhow::Result<Line> {
    rig.start_both().await?;
    let load = Load::start(&[rig.port], plan.connections, plan.rate, factory());
    let started = Instant::now();
    let mut kills = 0;
    while started.elapsed() < plan.kill_for {
        tokio::time::sleep(plan.kill_every).await;
        sigkill(&mut rig.worker);
        kills += 1;
        rig.start_worker().await?;
    }
    let load = load.finish().await;
    let mut line = Line {
        scenario: "worker_kill_loop",
        notes: format!(
            "{kills} × SIGKILL, one every {} s",
            plan.kill_every.as_secs()
        ),
        ..Line::default()
    };
    rig.settle(&load, &mut line).await?;
    if line.non_200() > 0 {
        line.failures
            .push("non-200 replies: the ingester does not need the worker".to_owned());
    }
    Ok(line)
}

/// A burst sent, the worker draining it (messages in hand, unacknowledged), and the RabbitMQ
/// node restarted under it while the rest of the burst is still coming (and is spooled).
async fn rabbitmq_restart_with_unacked(rig: &mut Rig<'_>, plan: &Plan) -> anyhow::Result<Line> {
    // The worker records a small burst in batches within milliseconds: it holds each batch 2 s
    // (a prefetch of 256 never fills a batch of 1,024) so that messages are in its hands,
    // unacknowledged, when the node stops.
    rig.worker_settings = "batch_size = 1024\nbatch_wait = \"2s\"\n".to_owned();
    rig.write_config()?;
    rig.start_both().await?;
    let sender = tokio::spawn(burst(rig.port, plan.connections, plan.burst));
    let mut unacked = 0;
    let mut last_error = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match rig.rabbit.unacked(&rig.prefix) {
            Ok(n) if n > 0 => {
                unacked = n;
                break;
            }
            Ok(_) => {}
            Err(error) => last_error = Some(error),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rig.rabbit.stop();
    rig.rabbit.start().await?;
    let load = sender.await?;
    let mut line = Line {
        scenario: "rabbitmq_restart_with_unacked",
        notes: format!(
            "burst of {} events; node stopped and started with {unacked} unacknowledged in the worker's hands",
            plan.burst
        ),
        ..Line::default()
    };
    rig.settle(&load, &mut line).await?;
    if unacked == 0 {
        line.failures.push(format!(
            "no unacknowledged message seen before the restart{}",
            last_error.map_or(String::new(), |e| format!(" ({e:#})"))
        ));
    }
    if line.non_200() > 0 {
        line.failures
            .push("non-200 replies to the burst".to_owned());
    }
    Ok(line)
}

// --- the cluster scenarios --------------------------------------------------------------------

/// The longest time the ingester's confirm count did not grow while load ran (sampled every
/// 100 ms from its metrics): the failover time a publisher sees.
struct ConfirmGap {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Duration>,
}

impl ConfirmGap {
    fn start(admin_port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let client = reqwest::Client::new();
            let url = format!("http://127.0.0.1:{admin_port}/metrics");
            let (mut last, mut since, mut longest) = (0u64, Instant::now(), Duration::ZERO);
            while !flag.load(Ordering::Relaxed) {
                let count = metric(
                    &client,
                    &url,
                    "countersign_ingester_confirm_duration_seconds_count",
                )
                .await;
                if let Some(count) = count
                    && count > last
                {
                    longest = longest.max(since.elapsed());
                    (last, since) = (count, Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            longest.max(since.elapsed())
        });
        Self { stop, task }
    }

    async fn finish(self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

/// The value of an unlabelled metric line `name N` at `url`.
async fn metric(client: &reqwest::Client, url: &str, name: &str) -> Option<u64> {
    let text = client.get(url).send().await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
        .map(|v| v as u64)
}

/// The replicas the cluster scenarios run, as production does: two ingesters (each its own
/// spool; the load split between them) and three workers.
const CLUSTER_INGESTERS: usize = 2;
const CLUSTER_WORKERS: usize = 3;

/// Load on the cluster's ingesters and workers while `fault` is done; then every 200 looked
/// for. Requires no 503 (the spool has room) besides 0 lost, 0 duplicates.
async fn cluster_scenario(
    rig: &mut Rig<'_>,
    cluster: &crate::cluster::Cluster,
    plan: &Plan,
    fault: ClusterFault,
) -> anyhow::Result<Line> {
    rig.start_both().await?;
    rig.add_replicas(CLUSTER_INGESTERS - 1, CLUSTER_WORKERS - 1)
        .await?;
    let ingesters = rig.ingesters();
    let gaps: Vec<ConfirmGap> = ingesters
        .iter()
        .map(|&(_, admin)| ConfirmGap::start(admin))
        .collect();
    let ports: Vec<u16> = ingesters.iter().map(|&(port, _)| port).collect();
    let load = Load::start(&ports, plan.connections, plan.rate, factory());
    tokio::time::sleep(plan.margin).await;
    let persist = format!("{}.persist", rig.prefix);
    let notes = match fault {
        ClusterFault::WorkerKillLoop => kill_workers_in_turn(rig, plan).await,
        fault => fault.inflict(cluster, &persist, plan).await,
    };
    tokio::time::sleep(plan.margin).await;
    let load = load.finish().await;
    let mut gap = Duration::ZERO;
    for sampler in gaps {
        gap = gap.max(sampler.finish().await);
    }
    let client = reqwest::Client::new();
    let mut spooled = 0;
    for (_, port) in ingesters {
        spooled += metric(
            &client,
            &format!("http://127.0.0.1:{port}/metrics"),
            "countersign_ingester_spool_appended_total",
        )
        .await
        .unwrap_or(0);
    }
    let mut line = Line {
        scenario: fault.name(),
        notes: format!(
            "{}; longest gap without a publisher confirm {:.1} s (the worse of {CLUSTER_INGESTERS} ingesters); {spooled} spooled",
            notes.as_deref().unwrap_or("the fault failed"),
            gap.as_secs_f64()
        ),
        ..Line::default()
    };
    if let Err(error) = notes {
        line.failures.push(format!("{error:#}"));
    }
    rig.settle(&load, &mut line).await?;
    if line.non_200() > 0 {
        line.failures
            .push("non-200 replies while the spool had room".to_owned());
    }
    Ok(line)
}

/// One worker of three SIGKILLed every `kill_every` for `kill_for`, in turn, and started again
/// at once, while the other two run. The messages a killed worker held go back to the queue,
/// and RabbitMQ 4.0 counts each return toward `<prefix>.persist`'s delivery limit: a message
/// returned too often would be dead-lettered, and found missing.
async fn kill_workers_in_turn(rig: &mut Rig<'_>, plan: &Plan) -> anyhow::Result<String> {
    let workers: Vec<usize> = (0..rig.replicas.len())
        .filter(|&i| !rig.replicas[i].is_ingester())
        .collect();
    let started = Instant::now();
    let mut kills = 0;
    while started.elapsed() < plan.kill_for {
        tokio::time::sleep(plan.kill_every).await;
        // The first worker, then each replica in turn.
        match kills % (workers.len() + 1) {
            0 => {
                sigkill(&mut rig.worker);
                rig.start_worker().await?;
            }
            n => {
                sigkill(&mut rig.replicas[workers[n - 1]].child);
                rig.start_replica(workers[n - 1]).await?;
            }
        }
        kills += 1;
    }
    Ok(format!(
        "{kills} × SIGKILL of one worker of {CLUSTER_WORKERS} in turn, one every {} s",
        plan.kill_every.as_secs()
    ))
}

/// What a cluster scenario does to the nodes.
#[derive(Debug, Clone, Copy)]
enum ClusterFault {
    /// The leader of `<prefix>.persist` killed (`docker kill`), started again after `node_outage`.
    LeaderKill,
    /// Each node stopped gracefully and started again, one at a time, the cluster whole between.
    RollingRestart,
    /// The leader of `<prefix>.persist` cut off from the other two (its clients still reach it)
    /// for `partition`, then healed.
    Partition,
    /// Two nodes of three killed (no quorum: the ingester spools, the worker waits) for
    /// `node_outage`, then started again.
    TwoNodesDown,
    /// No node touched: one worker of three SIGKILLed in a loop while the others run.
    WorkerKillLoop,
}

impl ClusterFault {
    fn name(self) -> &'static str {
        match self {
            ClusterFault::LeaderKill => "cluster_leader_kill",
            ClusterFault::RollingRestart => "cluster_rolling_restart",
            ClusterFault::Partition => "cluster_partition",
            ClusterFault::TwoNodesDown => "cluster_two_nodes_down",
            ClusterFault::WorkerKillLoop => "cluster_worker_kill_loop",
        }
    }

    /// Does it to `cluster` and waits until it is whole again; the notes for the results.
    async fn inflict(
        self,
        cluster: &crate::cluster::Cluster,
        persist: &str,
        plan: &Plan,
    ) -> anyhow::Result<String> {
        // Self-healing measured here takes up to 25 s; past 120 s the nodes left out are
        // restarted, and the notes say so.
        let remedies = std::cell::RefCell::new(Vec::new());
        let whole = || async {
            let (took, remedy) = cluster.heal_or_restart(Duration::from_secs(120)).await?;
            remedies.borrow_mut().extend(remedy);
            anyhow::Ok(took)
        };
        let notes = match self {
            ClusterFault::LeaderKill => {
                let leader = cluster.leader(persist)?;
                cluster.kill(leader)?;
                tokio::time::sleep(plan.node_outage).await;
                cluster.start_node(leader)?;
                let took = whole().await?;
                format!(
                    "rabbitmq-{leader}, the leader of persist, killed; started after {} s; cluster whole {:.0} s later",
                    plan.node_outage.as_secs(),
                    took.as_secs_f64()
                )
            }
            ClusterFault::RollingRestart => {
                let mut took = Vec::new();
                for node in 1..=3 {
                    let begun = Instant::now();
                    cluster.stop(node)?;
                    cluster.start_node(node)?;
                    whole().await?;
                    took.push(format!("{:.0}", begun.elapsed().as_secs_f64()));
                }
                format!(
                    "nodes 1, 2, 3 stopped (SIGTERM) and started one at a time: {} s each until whole",
                    took.join(", ")
                )
            }
            ClusterFault::Partition => {
                let node = cluster.leader(persist)?;
                cluster.partition(node)?;
                tokio::time::sleep(plan.partition).await;
                let meanwhile = cluster.leader_seen_without(node, persist).map_or_else(
                    |error| {
                        let error = format!("{error:#}");
                        format!("unknown: {}", error.chars().take(200).collect::<String>())
                    },
                    |n| format!("rabbitmq-{n}"),
                );
                cluster.heal(node)?;
                let took = whole().await?;
                format!(
                    "rabbitmq-{node}, the leader of persist, cut off from the others {} s (leader meanwhile, as the other two see it: {}); whole {:.0} s after healing",
                    plan.partition.as_secs(),
                    meanwhile,
                    took.as_secs_f64()
                )
            }
            ClusterFault::TwoNodesDown => {
                let leader = cluster.leader(persist)?;
                let other = (1..=3).find(|&n| n != leader).expect("another node");
                cluster.kill(leader)?;
                cluster.kill(other)?;
                tokio::time::sleep(plan.node_outage).await;
                cluster.start_node(leader)?;
                cluster.start_node(other)?;
                let took = whole().await?;
                format!(
                    "rabbitmq-{leader} (leader of persist) and rabbitmq-{other} killed {} s; whole {:.0} s after their start",
                    plan.node_outage.as_secs(),
                    took.as_secs_f64()
                )
            }
            ClusterFault::WorkerKillLoop => bail!("{} touches no node", self.name()),
        };
        let remedies = remedies.into_inner();
        Ok(if remedies.is_empty() {
            notes
        } else {
            format!("{notes}; {}", remedies.join("; "))
        })
    }
}

// --- helpers ------------------------------------------------------------------------------------

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A server tool (`initdb`, `pg_ctl`, `mount`, …) run to its end; 120 s at most.
fn exec(command: &mut Command) -> anyhow::Result<()> {
    let output = crate::procs::output_within(command, Duration::from_secs(120))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// SIGKILL to a binary under test (a crash, as the scenarios mean it), and reaps it.
fn sigkill(process: &mut Option<Child>) {
    if let Some(mut child) = process.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn signal_group(child: &Child, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{}", child.id())])
        .status();
}

fn wait_for(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

async fn wait_http(port: u16, path: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if client
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("nothing answered 200 on port {port}{path} within 30 s")
}
