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

    /// Every process of the group now.
    fn pids(self) -> Vec<u32> {
        let (Some(comm), Ok(entries)) = (self.comm(), std::fs::read_dir("/proc")) else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|name| name.trim_end() == comm)
            })
            .collect()
    }

    /// CPU time (user + system) of the group's processes, in clock ticks.
    fn ticks(self) -> u64 {
        self.pids().into_iter().map(ticks_of).sum()
    }
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
struct Pinned {
    earlier: Vec<(u32, String)>,
}

impl Pinned {
    fn new() -> Self {
        Self {
            earlier: Vec::new(),
        }
    }

    /// Pins every thread of `pid` to `cpus` (`"0"`, `"1"`).
    fn pin(&mut self, pid: u32, cpus: &str) -> anyhow::Result<()> {
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

    fn pin_group(&mut self, group: Group, cpus: &str) -> anyhow::Result<()> {
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

/// One measured phase: events, wall time, and CPU seconds per group.
#[derive(Debug, Clone)]
pub struct Phase {
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

/// CPU ticks of `groups` now, to subtract later.
fn snapshot(groups: &[Group]) -> Vec<(Group, u64)> {
    groups.iter().map(|g| (*g, g.ticks())).collect()
}

fn since(before: &[(Group, u64)], extra: &[(Group, u64)]) -> Vec<(Group, f64)> {
    let hz = ticks_per_second();
    before
        .iter()
        .map(|(g, t)| (*g, g.ticks().saturating_sub(*t) as f64 / hz))
        .chain(extra.iter().map(|(g, t)| (*g, *t as f64 / hz)))
        .collect()
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
    let own = ticks_of(ingester.pid());
    let before = snapshot(&[Group::RabbitMq]);
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
    let ingester_ticks = ticks_of(ingester.pid()).saturating_sub(own);
    let cpu = since(&before, &[(Group::Ingester, ingester_ticks)]);
    let queued = setup.queued().await?;
    setup.purge().await?;
    anyhow::ensure!(
        queued >= result.ok(),
        "{} answered 200 but {queued} queued",
        result.ok()
    );
    ingester.stop()?;
    Ok(Phase {
        events: result.ok(),
        wall,
        cpu,
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
    let before = snapshot(&[Group::RabbitMq, Group::PostgreSql]);
    let started = Instant::now();
    let worker = setup.worker();
    pinned.pin(me, "1")?;
    let worker = worker?;
    crate::wait_persisted(&worker, n, started, Duration::from_secs(600)).await?;
    let wall = started.elapsed();
    let cpu = since(&before, &[(Group::Worker, ticks_of(worker.pid()))]);
    worker.stop()?;
    Ok(Phase {
        events: n as u64,
        wall,
        cpu,
    })
}

/// The tier table, in Markdown: core-µs per event and the share of its core each group kept
/// busy, for each run of each phase.
pub fn table(runs: &[(Phase, Phase)]) -> String {
    let mut out = String::from(
        "| run | phase | events | events/s | ingester or worker | RabbitMQ | PostgreSQL | core 0 busy | core 1 busy |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let cell = |phase: &Phase, group: Group| {
        phase
            .per_event(group)
            .map_or("—".to_owned(), |us| format!("{us:.0} µs"))
    };
    for (i, (ingest, drain)) in runs.iter().enumerate() {
        for (name, phase, own, core1) in [
            ("ingest", ingest, Group::Ingester, None),
            ("drain", drain, Group::Worker, Some(Group::PostgreSql)),
        ] {
            let core0 = phase.busy(own).unwrap_or(0.0) + phase.busy(Group::RabbitMq).unwrap_or(0.0);
            let core1 = core1
                .and_then(|g| phase.busy(g))
                .map_or("— (the load)".to_owned(), |b| {
                    format!("{:.0} %", b * 100.0)
                });
            out.push_str(&format!(
                "| {} | {name} | {} | {:.0} | {} | {} | {} | {:.0} % | {core1} |\n",
                i + 1,
                phase.events,
                phase.events as f64 / phase.wall.as_secs_f64(),
                cell(phase, own),
                cell(phase, Group::RabbitMq),
                cell(phase, Group::PostgreSql),
                core0 * 100.0,
            ));
        }
    }
    out
}

/// The page `bench tiers` writes: how it was measured, on which commit, and the table.
pub fn report(runs: &[(Phase, Phase)], duration: Duration, events: usize) -> String {
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();
    format!(
        "# Cost per event, tier by tier\n\n\
         `cargo run --release -p bench -- tiers` on commit `{commit}`, this machine (2 cores). \
         CPU time (user + system, `/proc/<pid>/stat`) of each process group during the phase, \
         per event: the ingest is {secs} s of signed 2 KiB Taktikal events over 64 connections \
         with the ingester and RabbitMQ pinned to core 0 and the load generator to core 1 (per \
         webhook answered 200); the drain is {events} such events queued beforehand and recorded \
         by one worker, the worker and RabbitMQ on core 0, PostgreSQL on core 1. Tables \
         emptied before each drain.\n\n{}",
        table(runs),
        commit = commit.trim(),
        secs = duration.as_secs(),
    )
}
