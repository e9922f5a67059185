//! `bench tiers` (issue 32): the cost of one event in each tier, each tier on its own core —
//! CPU time per process group read from `/proc`, in core-µs per event, not events/s.
//!
//! Layout, as the issue measured it: for the ingest, the ingester and RabbitMQ on core 0, the
//! load generator (this process) on core 1; for the drain, the worker and RabbitMQ on core 0,
//! PostgreSQL (and this process, which only polls) on core 1. RabbitMQ and PostgreSQL are the
//! machine's services: their affinity is set for the run and given back afterwards, also on
//! an error.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::events::EventFactory;
use crate::load::Until;

/// A process group. The ingester's and the worker's CPU is read by their pid; the machine's
/// services by what `/proc/<pid>/comm` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Ingester,
    Worker,
    RabbitMq,
    PostgreSql,
}

impl Group {
    /// The service's `comm` (15 characters at most); none for the binaries under test.
    fn comm(self) -> Option<&'static str> {
        match self {
            Group::Ingester | Group::Worker => None,
            Group::RabbitMq => Some("beam.smp"),
            Group::PostgreSql => Some("postgres"),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Group::Ingester => "ingester",
            Group::Worker => "worker",
            Group::RabbitMq => "RabbitMQ",
            Group::PostgreSql => "PostgreSQL",
        }
    }

    /// Every process of the group now: the service the bench talks to (the process listening
    /// on its port, for PostgreSQL with the backends it forked) — not another RabbitMQ or
    /// PostgreSQL on the machine, such as a container's — else every process of its name.
    fn pids(self) -> Vec<u32> {
        let Some(comm) = self.comm() else {
            return Vec::new();
        };
        let port = SERVICE_PORTS.get().map(|ports| match self {
            Group::RabbitMq => ports.0,
            _ => ports.1,
        });
        let listening = port
            .and_then(listener)
            .filter(|pid| comm_of(*pid).as_deref() == Some(comm));
        match (listening, self) {
            (Some(pid), Group::PostgreSql) => std::iter::once(pid)
                .chain(all_pids().filter(|child| parent_of(*child) == Some(pid)))
                .collect(),
            (Some(pid), _) => vec![pid],
            (None, _) => all_pids()
                .filter(|pid| comm_of(*pid).as_deref() == Some(comm))
                .collect(),
        }
    }

    /// CPU time (user + system) of the group's processes, in clock ticks.
    fn ticks(self) -> u64 {
        self.pids().into_iter().map(ticks_of).sum()
    }
}

/// The TCP ports of the RabbitMQ and the PostgreSQL the bench talks to, once known.
static SERVICE_PORTS: std::sync::OnceLock<(u16, u16)> = std::sync::OnceLock::new();

/// Counts only the services listening on the ports of `amqp_url` and `database_url`.
pub fn services_at(amqp_url: &str, database_url: &str) {
    let _ = SERVICE_PORTS.set((port_of(amqp_url, 5672), port_of(database_url, 5432)));
}

/// The port of a `scheme://user:pass@host:port/...` URL.
fn port_of(url: &str, default: u16) -> u16 {
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host_port = authority.split('/').next().unwrap_or("");
    let host_port = host_port.rsplit('@').next().unwrap_or("");
    host_port
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(default)
}

fn all_pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
}

fn comm_of(pid: u32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end().to_owned())
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The process with a socket listening on TCP `port` in this network namespace.
fn listener(port: u16) -> Option<u32> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let local = u16::from_str_radix(fields.get(1)?.rsplit(':').next()?, 16).ok()?;
                    // State 0A: LISTEN; field 9: the socket's inode.
                    (local == port && *fields.get(3)? == "0A")
                        .then(|| fields.get(9).map(|i| (*i).to_owned()))?
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    all_pids().find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .any(|target| wanted.iter().any(|w| target.as_os_str() == w.as_str()))
    })
}

/// utime + stime of `/proc/<pid>/stat` (fields 14 and 15, after the parenthesised name).
fn ticks_of(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Affinity set with `taskset` on every thread of the processes it pinned, each given back its
/// earlier list when this is dropped — also on SIGINT or SIGTERM, which drop the run (see
/// `tiers_run` in `main.rs`).
pub struct Pinned {
    earlier: Vec<(u32, String)>,
}

impl Pinned {
    pub fn new() -> Self {
        Self {
            earlier: Vec::new(),
        }
    }

    /// Pins every thread of `pid` to `cpus` (`"0"`, `"1"`).
    pub fn pin(&mut self, pid: u32, cpus: &str) -> anyhow::Result<()> {
        if !self.earlier.iter().any(|(p, _)| *p == pid) {
            let output = Command::new("taskset")
                .args(["-c", "-p", &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .output()?;
            let text = String::from_utf8_lossy(&output.stdout);
            let list = text.rsplit(':').next().unwrap_or("").trim().to_owned();
            anyhow::ensure!(!list.is_empty(), "taskset cannot read pid {pid}: {text}");
            self.earlier.push((pid, list));
        }
        let status = Command::new("taskset")
            .args(["-a", "-c", "-p", cpus, &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "taskset could not pin pid {pid}");
        Ok(())
    }

    pub fn pin_group(&mut self, group: Group, cpus: &str) -> anyhow::Result<()> {
        let pids = group.pids();
        anyhow::ensure!(!pids.is_empty(), "no {} process to pin", group.label());
        for pid in pids {
            // A PostgreSQL backend may have exited since the list was read.
            if let Err(error) = self.pin(pid, cpus)
                && std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                return Err(error);
            }
        }
        Ok(())
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        for (pid, list) in &self.earlier {
            let _ = Command::new("taskset")
                .args(["-a", "-c", "-p", list, &pid.to_string()])
                .stdout(std::process::Stdio::null())
                // A PostgreSQL backend may have exited since it was pinned.
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// One measured phase: what it was, events, wall time, and CPU seconds per group.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: String,
    pub events: u64,
    pub wall: Duration,
    pub cpu: Vec<(Group, f64)>,
}

impl Phase {
    /// Core-µs per event of `group`.
    pub fn per_event(&self, group: Group) -> Option<f64> {
        let (_, seconds) = self.cpu.iter().find(|(g, _)| *g == group)?;
        Some(seconds * 1e6 / self.events.max(1) as f64)
    }

    /// Share of one core the group kept busy.
    pub fn busy(&self, group: Group) -> Option<f64> {
        let (_, seconds) = self.cpu.iter().find(|(g, _)| *g == group)?;
        Some(seconds / self.wall.as_secs_f64())
    }
}

/// CPU time of the machine's services (by name) and of the binaries under test (by pid) from
/// when it was started; a binary started later counts whole, its start included.
pub struct CpuClock {
    services: Vec<(Group, u64)>,
    processes: Vec<(Group, u32, u64)>,
}

impl CpuClock {
    pub fn start(services: &[Group], processes: &[(Group, u32)]) -> Self {
        Self {
            services: services.iter().map(|g| (*g, g.ticks())).collect(),
            processes: processes
                .iter()
                .map(|&(g, pid)| (g, pid, ticks_of(pid)))
                .collect(),
        }
    }

    /// Counts `pid`, started after the clock, from its start.
    pub fn started(&mut self, group: Group, pid: u32) {
        self.processes.push((group, pid, 0));
    }

    /// CPU seconds of each group since the start.
    pub fn read(&self) -> Vec<(Group, f64)> {
        let hz = ticks_per_second();
        self.services
            .iter()
            .map(|&(g, t)| (g, g.ticks().saturating_sub(t)))
            .chain(
                self.processes
                    .iter()
                    .map(|&(g, pid, t)| (g, ticks_of(pid).saturating_sub(t))),
            )
            .map(|(g, ticks)| (g, ticks as f64 / hz))
            .collect()
    }
}

/// Ingest: `connections` connections for `duration`; the ingester and RabbitMQ on core 0, this
/// process (the load) on core 1.
pub async fn ingest(
    setup: &crate::Setup,
    connections: usize,
    duration: Duration,
    factory: &Arc<EventFactory>,
) -> anyhow::Result<Phase> {
    let mut pinned = Pinned::new();
    let me = std::process::id();
    // A child inherits its parent's affinity: the ingester starts on core 0.
    pinned.pin(me, "0")?;
    let ingester = setup.ingester();
    pinned.pin(me, "1")?;
    let ingester = ingester?;
    pinned.pin_group(Group::RabbitMq, "0")?;
    pinned.pin_group(Group::PostgreSql, "1")?;
    crate::warm_up(setup, &ingester, factory).await?;
    let clock = CpuClock::start(&[Group::RabbitMq], &[(Group::Ingester, ingester.pid())]);
    let started = Instant::now();
    let result = crate::load::drive(
        ([127, 0, 0, 1], ingester.port).into(),
        "/webhooks/bench",
        connections,
        Until::Elapsed(duration),
        factory.clone(),
    )
    .await?;
    let wall = started.elapsed();
    let cpu = clock.read();
    let queued = setup.queued().await?;
    setup.purge().await?;
    anyhow::ensure!(
        queued >= result.ok(),
        "{} answered 200 but {queued} queued",
        result.ok()
    );
    ingester.stop()?;
    Ok(Phase {
        name: "ingest".to_owned(),
        events: result.ok(),
        wall,
        cpu,
    })
}

/// RabbitMQ alone: on core 0, with this process publishing on core 1 over 4 confirm channels,
/// 64 in flight, for `duration` — `message` as the ingester sends it, or bare. The broker's
/// own cost per confirmed publish: the floor under the ingest's RabbitMQ share.
pub async fn broker(
    setup: &crate::Setup,
    message: crate::Publish,
    duration: Duration,
    factory: &Arc<EventFactory>,
) -> anyhow::Result<Phase> {
    let mut pinned = Pinned::new();
    pinned.pin_group(Group::RabbitMq, "0")?;
    pinned.pin(std::process::id(), "1")?;
    let clock = CpuClock::start(&[Group::RabbitMq], &[]);
    let started = Instant::now();
    let published = setup
        .broker_ceiling(4, 64, duration, factory, message)
        .await?;
    let wall = started.elapsed();
    Ok(Phase {
        name: format!("broker alone, {}", message.label()),
        events: published.count(),
        wall,
        cpu: clock.read(),
    })
}

/// Drain: `n` events queued beforehand, then a worker records them all; the worker and RabbitMQ
/// on core 0, PostgreSQL (its backends are forked by its postmaster and inherit) on core 1.
/// The worker's CPU includes its start (migrating the bench's new database).
pub async fn drain(
    setup: &crate::Setup,
    n: usize,
    factory: &Arc<EventFactory>,
) -> anyhow::Result<Phase> {
    crate::prefill(setup, n, factory).await?;
    let mut pinned = Pinned::new();
    pinned.pin_group(Group::RabbitMq, "0")?;
    pinned.pin_group(Group::PostgreSql, "1")?;
    let me = std::process::id();
    pinned.pin(me, "0")?;
    let mut clock = CpuClock::start(&[Group::RabbitMq, Group::PostgreSql], &[]);
    let started = Instant::now();
    let worker = setup.worker();
    pinned.pin(me, "1")?;
    let worker = worker?;
    clock.started(Group::Worker, worker.pid());
    crate::wait_persisted(&worker, n, started, Duration::from_secs(600)).await?;
    let wall = started.elapsed();
    let cpu = clock.read();
    worker.stop()?;
    Ok(Phase {
        name: "drain".to_owned(),
        events: n as u64,
        wall,
        cpu,
    })
}

/// The tier table, in Markdown: core-µs per event and the share of its core each group kept
/// busy, for each measured phase (its run, its phase).
pub fn table(phases: &[(String, Phase)]) -> String {
    let mut out = String::from(
        "| run | phase | events | events/s | ingester | worker | RabbitMQ | PostgreSQL | core 0 busy | core 1 busy |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let cell = |phase: &Phase, group: Group| {
        phase
            .per_event(group)
            .map_or("—".to_owned(), |us| format!("{us:.0} µs"))
    };
    let busy = |phase: &Phase, groups: &[Group]| -> f64 {
        groups.iter().filter_map(|g| phase.busy(*g)).sum::<f64>() * 100.0
    };
    for (run, phase) in phases {
        let (core0, core1) = if phase.name.starts_with("ingest") {
            (
                format!("{:.0} %", busy(phase, &[Group::Ingester, Group::RabbitMq])),
                "— (the load)".to_owned(),
            )
        } else if phase.name.starts_with("broker") {
            (
                format!("{:.0} %", busy(phase, &[Group::RabbitMq])),
                "— (the publisher)".to_owned(),
            )
        } else if phase.name.starts_with("drain") {
            (
                format!("{:.0} %", busy(phase, &[Group::Worker, Group::RabbitMq])),
                format!("{:.0} %", busy(phase, &[Group::PostgreSql])),
            )
        } else {
            ("— (not pinned)".to_owned(), "—".to_owned())
        };
        out.push_str(&format!(
            "| {run} | {} | {} | {:.0} | {} | {} | {} | {} | {core0} | {core1} |\n",
            phase.name,
            phase.events,
            phase.events as f64 / phase.wall.as_secs_f64(),
            cell(phase, Group::Ingester),
            cell(phase, Group::Worker),
            cell(phase, Group::RabbitMq),
            cell(phase, Group::PostgreSql),
        ));
    }
    out
}

/// The phases as JSON for `bench/plot_tiers.py`: core-µs per event of each group.
pub fn json(phases: &[(String, Phase)]) -> serde_json::Value {
    let groups = [
        Group::Ingester,
        Group::Worker,
        Group::RabbitMq,
        Group::PostgreSql,
    ];
    serde_json::Value::Array(
        phases
            .iter()
            .map(|(run, phase)| {
                let per_event: serde_json::Map<String, serde_json::Value> = groups
                    .iter()
                    .filter_map(|g| Some((g.label().to_owned(), phase.per_event(*g)?.into())))
                    .collect();
                serde_json::json!({
                    "run": run,
                    "phase": phase.name,
                    "events": phase.events,
                    "wall_s": phase.wall.as_secs_f64(),
                    "core_us_per_event": per_event,
                })
            })
            .collect(),
    )
}

/// What `bench tiers` measures besides its runs of the 2 KiB mix.
pub struct Settings {
    /// Each ingest's length.
    pub duration: Duration,
    /// Events of each drain.
    pub events: usize,
    /// The size of the "all signed" event with a PDF inside, measured once (0: not measured).
    pub pdf_bytes: usize,
    /// The sustained run's offered rate (0: not measured) and length.
    pub sustained_rate: f64,
    pub sustained_for: Duration,
}

/// The page `bench tiers` writes: how it was measured, on which commit, and the table.
pub fn report(phases: &[(String, Phase)], settings: &Settings) -> String {
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();
    let pdf = if settings.pdf_bytes > 0 {
        format!(
            " The `PDF` rows are the same with events of {} KiB (the signed PDF inside, base64; \
             {} events drained).",
            settings.pdf_bytes / 1024,
            pdf_events(settings.events)
        )
    } else {
        String::new()
    };
    let sustained = if settings.sustained_rate > 0.0 {
        format!(
            " The `sustained` row is the ingester and the worker together, nothing pinned, \
             {:.0} events/s offered for {} s, from the load's start until the last accepted \
             event was committed.",
            settings.sustained_rate,
            settings.sustained_for.as_secs()
        )
    } else {
        String::new()
    };
    format!(
        "# Cost per event, tier by tier\n\n\
         `cargo run --release -p bench -- tiers` on commit `{commit}`, this machine (2 cores). \
         CPU time (user + system, `/proc/<pid>/stat`) of each process group during the phase, \
         per event: the ingest is {secs} s of signed 2 KiB Taktikal \"all signed\" events (a 1 KiB \
         signed PDF inside) over 64 connections with the ingester and RabbitMQ pinned to core 0 \
         and the load generator to core 1 (per webhook answered 200); the drain is {events} such \
         events queued beforehand and recorded by one worker, the worker and RabbitMQ on core 0, \
         PostgreSQL on core 1. Tables emptied before each drain.{pdf}{sustained} The `broker \
         alone` rows are RabbitMQ on core 0 with the bench publishing on core 1 (4 confirm \
         channels, 64 in flight, {secs} s), the ingester's message or a bare one (delivery mode \
         and message id). Plot: [tiers.png](tiers.png). Where PostgreSQL's time \
         goes, statement by statement, and what changed it: [postgresql.md](postgresql.md); the \
         ingest's: [ingest.md](ingest.md); instructions per accepted webhook (callgrind): \
         [callgrind/results.md](callgrind/results.md).\n\n{}\n{}",
        table(phases),
        verdicts(phases),
        commit = commit.trim(),
        secs = settings.duration.as_secs(),
        events = settings.events,
    )
}

/// The 2 KiB mix's figures against issue 32's targets, in words: each a range over the runs.
pub fn verdicts(phases: &[(String, Phase)]) -> String {
    let mix = |name: &str| -> Vec<(&String, &Phase)> {
        phases
            .iter()
            .filter(|(run, p)| p.name == name && run.parse::<usize>().is_ok())
            .map(|(run, p)| (run, p))
            .collect()
    };
    let sum = |p: &Phase, groups: &[Group]| groups.iter().filter_map(|g| p.per_event(*g)).sum();
    let range = |values: &[f64]| {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(0.0, f64::max);
        (min, max)
    };
    let verdict = |max: f64, target: f64| if max <= target { "met" } else { "**not met**" };
    let ingest: Vec<f64> = mix("ingest")
        .iter()
        .map(|(_, p)| sum(p, &[Group::Ingester, Group::RabbitMq]))
        .collect();
    let database: Vec<f64> = mix("drain")
        .iter()
        .map(|(_, p)| sum(p, &[Group::PostgreSql]))
        .collect();
    let sides: Vec<(f64, f64)> = mix("drain")
        .iter()
        .filter_map(|(run, drain)| {
            let (_, ingest) = mix("ingest").into_iter().find(|(r, _)| r == run)?;
            Some((
                sum(drain, &[Group::Worker, Group::RabbitMq]),
                sum(ingest, &[Group::Ingester, Group::RabbitMq]),
            ))
        })
        .collect();
    if ingest.is_empty() || database.is_empty() {
        return String::new();
    }
    let floor: Vec<String> = phases
        .iter()
        .filter(|(_, p)| p.name.starts_with("broker"))
        .filter_map(|(_, p)| {
            let what = p.name.strip_prefix("broker alone, ")?;
            Some(format!("{:.0} µs ({what})", p.per_event(Group::RabbitMq)?))
        })
        .collect();
    let floor = if floor.is_empty() {
        String::new()
    } else {
        format!(
            " RabbitMQ alone, from a publisher that does nothing else: {} per confirmed \
             publish — the floor under the ingest's RabbitMQ share.",
            floor.join(", ")
        )
    };
    let (i_min, i_max) = range(&ingest);
    let (d_min, d_max) = range(&database);
    let met = sides
        .iter()
        .filter(|(drain, ingest)| drain <= ingest)
        .count();
    format!(
        "Against issue 32's targets, the 2 KiB mix over {runs} runs: ingest (ingester + RabbitMQ) \
         {i_min:.0}–{i_max:.0} core-µs per webhook, target ≤ 90: {}; PostgreSQL {d_min:.0}–{d_max:.0} \
         core-µs per event, target ≤ 150: {}; worker + RabbitMQ at most ingester + RabbitMQ in \
         {met} of {runs} runs.{floor}\n",
        verdict(i_max, 90.0),
        verdict(d_max, 150.0),
        runs = sides.len(),
    )
}

/// Events of the PDF drain: a tenth of the mix's, each being about 64 times larger.
pub fn pdf_events(events: usize) -> usize {
    (events / 10).max(1)
}

/// The heading of the tier table's section in `bench/results.md`.
pub const RESULTS_HEADING: &str = "## Cost per event, tier by tier";

/// `md`'s section under `heading` (to the next `## ` heading or the end), heading included.
pub fn section_of<'a>(md: &'a str, heading: &str) -> Option<&'a str> {
    let start = md.find(&format!("{heading}\n"))?;
    let rest = &md[start + heading.len()..];
    let end = rest
        .find("\n## ")
        .map_or(md.len(), |i| start + heading.len() + i + 1);
    Some(&md[start..end])
}

/// `md` with its section under `heading` replaced by `section` (which starts with the heading),
/// or with `section` appended.
pub fn with_section(md: &str, heading: &str, section: &str) -> String {
    let section = format!("{}\n", section.trim_end());
    match section_of(md, heading) {
        Some(old) => md.replacen(old, &section, 1),
        None if md.is_empty() => section,
        None => format!("{}\n\n{section}", md.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_describes_only_the_rows_it_measured() {
        let mut settings = Settings {
            duration: Duration::from_secs(15),
            events: 20_000,
            pdf_bytes: 128 * 1024,
            sustained_rate: 2000.0,
            sustained_for: Duration::from_secs(20),
        };
        let full = report(&[], &settings);
        assert!(full.contains("events of 128 KiB"), "{full}");
        assert!(full.contains("2000 events/s offered"), "{full}");
        settings.pdf_bytes = 0;
        settings.sustained_rate = 0.0;
        let bare = report(&[], &settings);
        assert!(!bare.contains("`PDF` rows"), "{bare}");
        assert!(!bare.contains("`sustained` row"), "{bare}");
        assert!(bare.contains("`broker alone` rows"), "{bare}");
    }

    #[test]
    fn a_services_port_is_read_from_its_url() {
        assert_eq!(port_of("amqp://guest:guest@127.0.0.1:5682/%2f", 5672), 5682);
        assert_eq!(
            port_of("postgres://postgres@127.0.0.1:5432/test", 5432),
            5432
        );
        assert_eq!(port_of("amqp://localhost/%2f", 5672), 5672);
        assert_eq!(port_of("postgres://u:p@[::1]:6543/db", 5432), 6543);
    }

    #[test]
    fn the_service_listening_on_a_port_is_found() {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        assert_eq!(listener(port), Some(std::process::id()));
        drop(socket);
        assert_eq!(listener(port), None);
    }

    #[test]
    fn a_section_is_replaced_in_place_or_appended() {
        let md = "# Results\n\n## A\na\n\n## Cost per event, tier by tier\nold\n\n## B\nb\n";
        let new = with_section(md, RESULTS_HEADING, "## Cost per event, tier by tier\nnew");
        assert_eq!(
            new,
            "# Results\n\n## A\na\n\n## Cost per event, tier by tier\nnew\n## B\nb\n"
        );
        let appended = with_section(
            "# Results\n",
            RESULTS_HEADING,
            "## Cost per event, tier by tier\nx",
        );
        assert_eq!(
            appended,
            "# Results\n\n## Cost per event, tier by tier\nx\n"
        );
        assert_eq!(
            section_of(&appended, RESULTS_HEADING),
            Some("## Cost per event, tier by tier\nx\n")
        );
    }
}
