//! `results.json` (for the plot) and `results.md` (for people), with the date, the commit and the
//! machine of the run.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::load::Point;

#[derive(Debug, Serialize)]
pub struct Results {
    pub date: String,
    pub commit: String,
    pub machine: String,
    pub duration_s: f64,
    /// (ingester, broker ceiling, HTTP ceiling) by connections, 2 KiB events.
    pub curve: Vec<(Point, Point, Point)>,
    /// The broker ceiling at 64 in flight over several confirm channels: (channels, point).
    pub broker_channels: Option<(usize, Point)>,
    /// The broker ceiling at 64 in flight, over one channel, with bare messages (delivery mode
    /// and message id, no headers).
    pub broker_bare: Option<Point>,
    /// (size, ingester, broker ceiling, ingester peak RSS).
    pub large: Vec<(usize, Point, Point, u64)>,
    pub ingester_idle_rss: u64,
    pub worker_idle_rss: u64,
    pub worker_peak_rss: u64,
    pub worker_rate: f64,
    /// Events/s: the worker's own statements alone on PostgreSQL (no broker, parsing, files).
    pub projection_rate: f64,
    pub postgres_rate: f64,
    /// Rows/s, 64 per statement, as many connections as the worker's batches in flight.
    pub postgres_batch_rate: f64,
    /// The same rows by `COPY` into a staging table and one merge per 64.
    pub postgres_copy_rate: f64,
    /// 2 KiB, 64 connections, the broker unreachable: every 200 fsync'd to the spool.
    pub spooling: Option<Point>,
    /// Ingester and worker together at a steady offered rate.
    pub sustained: Option<crate::sustained::Sustained>,
}

fn command(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or_else(String::new, |kib| {
            format!(", {:.0} GiB", kib as f64 / 1024.0 / 1024.0)
        });
    let rabbit = command("rabbitmqctl", &["-q", "eval", "rabbit_misc:version()."]).replace('"', "");
    let postgres = command("psql", &["--version"]);
    format!(
        "{} cores, {cpu}{memory}; RabbitMQ {rabbit}; {postgres}; load generator, ingester, broker and database on the same machine",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1024.0 / 1024.0)
}

fn ratio(value: f64, ceiling: f64) -> String {
    format!("{:.0} %", 100.0 * value / ceiling.max(1e-9))
}

impl Results {
    pub fn new(duration: Duration) -> Self {
        let dirty = if command("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty()
        {
            ""
        } else {
            " (with uncommitted changes)"
        };
        Self {
            date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            commit: format!(
                "{}{dirty}",
                command("git", &["rev-parse", "--short=12", "HEAD"])
            ),
            machine: machine(),
            duration_s: duration.as_secs_f64(),
            curve: Vec::new(),
            broker_channels: None,
            broker_bare: None,
            large: Vec::new(),
            ingester_idle_rss: 0,
            worker_idle_rss: 0,
            worker_peak_rss: 0,
            worker_rate: 0.0,
            projection_rate: 0.0,
            postgres_rate: 0.0,
            postgres_batch_rate: 0.0,
            postgres_copy_rate: 0.0,
            spooling: None,
            sustained: None,
        }
    }

    pub fn write(&self, out: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(out)?;
        std::fs::write(
            out.join("results.json"),
            serde_json::to_string_pretty(self)?,
        )?;
        // `bench tiers` writes its own section; a new `bench all` keeps it.
        let earlier = std::fs::read_to_string(out.join("results.md")).unwrap_or_default();
        let mut md = self.markdown();
        if let Some(tiers) = crate::tiers::section_of(&earlier, crate::tiers::RESULTS_HEADING) {
            md = crate::tiers::with_section(&md, crate::tiers::RESULTS_HEADING, tiers);
        }
        std::fs::write(out.join("results.md"), md)?;
        Ok(())
    }

    fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Countersign benchmarks\n");
        let _ = writeln!(
            md,
            "- date: {}\n- commit: {}\n- machine: {}",
            self.date, self.commit, self.machine
        );
        let _ = writeln!(
            md,
            "- each timed run lasts {:.0} s; made by `bench/run.sh` (`cargo run --release -p bench -- all`); plot: `throughput.png`\n- against the three-node RabbitMQ cluster beside one node (what replication costs, and the nodes' memory and CPU): `replication.md` (`cargo run --release -p bench -- replication`)\n",
            self.duration_s
        );

        let _ = writeln!(
            md,
            "## Summary\n\n| figure | value | ceiling | ratio | target |\n|---|---|---|---|---|"
        );
        if let Some((ingest, broker, http)) =
            self.curve.iter().find(|(p, _, _)| p.connections == 64)
        {
            let _ = writeln!(
                md,
                "| ingest, 2 KiB, 64 connections | {:.0} req/s | broker publish+confirm of the same messages {:.0} msg/s | {} | ≥ 75 % |",
                ingest.per_second,
                broker.per_second,
                ratio(ingest.per_second, broker.per_second)
            );
            if let Some((channels, several)) = &self.broker_channels {
                let _ = writeln!(
                    md,
                    "| broker publish+confirm, 64 in flight over {channels} channels | {:.0} msg/s, p99 {:.2} ms | over 1 channel {:.0} msg/s, p99 {:.2} ms | {} | — |",
                    several.per_second,
                    several.p99_ms,
                    broker.per_second,
                    broker.p99_ms,
                    ratio(several.per_second, broker.per_second)
                );
            }
            if let Some(bare) = &self.broker_bare {
                let _ = writeln!(
                    md,
                    "| broker publish+confirm, 64 in flight, bare messages (delivery mode and id, no headers) | {:.0} msg/s, p99 {:.2} ms | the contract's message {:.0} msg/s | {} | — |",
                    bare.per_second,
                    bare.p99_ms,
                    broker.per_second,
                    ratio(bare.per_second, broker.per_second)
                );
            }
            let _ = writeln!(
                md,
                "| ingest, 2 KiB, 64 connections | {:.0} req/s | HTTP (actix, read body, 200) {:.0} req/s | {} | — |",
                ingest.per_second,
                http.per_second,
                ratio(ingest.per_second, http.per_second)
            );
            let _ = writeln!(
                md,
                "| p99 latency, 2 KiB, 64 connections | {:.2} ms | broker p99 {:.2} ms | — | ≤ 10 ms |",
                ingest.p99_ms, broker.p99_ms
            );
            if let Some(spooled) = &self.spooling {
                let _ = writeln!(
                    md,
                    "| ingest while spooling (broker unreachable), 2 KiB, 64 connections | {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms; statuses {}; 200s in the queue after the drain: {} | the same with the broker: {:.0} req/s | {} | — |",
                    spooled.per_second,
                    spooled.p50_ms,
                    spooled.p99_ms,
                    spooled.statuses_text(),
                    spooled.accounted(),
                    ingest.per_second,
                    ratio(spooled.per_second, ingest.per_second)
                );
            }
        }
        for (size, ingest, _, peak) in &self.large {
            if *size >= 20 * 1024 * 1024 {
                let limit = 2 * *size as u64 + 40 * 1024 * 1024;
                let _ = writeln!(
                    md,
                    "| ingester peak RSS, {} events, {} connection(s) | {} | 2 × body + 40 MiB = {} | {} | ≤ 100 % |",
                    mib(*size as u64),
                    ingest.connections,
                    mib(*peak),
                    mib(limit),
                    ratio(*peak as f64, limit as f64)
                );
                let _ = writeln!(
                    md,
                    "| ingest, {} events, {} connections | {:.1} req/s, p99 {:.0} ms | — | — | — |",
                    mib(*size as u64),
                    ingest.connections,
                    ingest.per_second,
                    ingest.p99_ms
                );
            }
        }
        let ingest_64 = self
            .curve
            .iter()
            .find(|(p, _, _)| p.connections == 64)
            .map_or(0.0, |(p, _, _)| p.per_second);
        let _ = writeln!(
            md,
            "| worker drain, 2 KiB events, full projection | {:.0} events/s | PostgreSQL alone with the worker's statements (no broker, parsing or document files) {:.0} events/s | {} | ≥ ingester ({:.0}/s) |",
            self.worker_rate,
            self.projection_rate,
            ratio(self.worker_rate, self.projection_rate),
            ingest_64
        );
        let _ = writeln!(
            md,
            "| PostgreSQL alone with the worker's statements, full projection | {:.0} events/s | the ingester at 64 connections {:.0} req/s | {} | — |",
            self.projection_rate,
            ingest_64,
            ratio(self.projection_rate, ingest_64)
        );
        let _ = writeln!(
            md,
            "| PostgreSQL, 64 archive rows per statement (`INSERT … SELECT FROM unnest(…)`) | {:.0} rows/s | — | — | — |",
            self.postgres_batch_rate,
        );
        let _ = writeln!(
            md,
            "| PostgreSQL, 64 archive rows per transaction: COPY into a staging table + one merge | {:.0} rows/s | `INSERT … SELECT FROM unnest(…)` {:.0} rows/s | {} | — |",
            self.postgres_copy_rate,
            self.postgres_batch_rate,
            ratio(self.postgres_copy_rate, self.postgres_batch_rate),
        );
        let _ = writeln!(
            md,
            "| PostgreSQL single-row inserts | {:.0} rows/s | — | — | — |",
            self.postgres_rate,
        );
        let _ = writeln!(
            md,
            "| idle RSS | ingester {}, worker {} | — | — | — |",
            mib(self.ingester_idle_rss),
            mib(self.worker_idle_rss)
        );
        let _ = writeln!(
            md,
            "| worker peak RSS while draining | {} | — | — | — |\n",
            mib(self.worker_peak_rss)
        );

        if let Some(run) = &self.sustained {
            let _ = writeln!(
                md,
                "## Sustained: ingester and worker together\n\n{:.0} events/s offered (80 % of the 64-connection ingest rate) for {:.0} s over 64 connections, 2 KiB events with the full projection; sending them all took {:.0} s. HTTP latency counts from when a request was due, so a load that falls behind its schedule shows it. End-to-end: from when a request was due to the start of the transaction that committed its row. Queue depth over time: `sustained.png`.\n",
                run.offered_per_second, run.duration_s, run.load_s
            );
            let max_depth = run.depth.iter().map(|(_, n)| *n).max().unwrap_or(0);
            let last_loaded = run
                .depth
                .iter()
                .rev()
                .find(|(t, _)| *t <= run.load_s)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            let _ = writeln!(
                md,
                "| accepted req/s | HTTP p50 | HTTP p99 | statuses | end-to-end p50 | end-to-end p99 | end-to-end max | queue depth at the end of the load | max depth | drained after the load | accepted but not found |\n|---|---|---|---|---|---|---|---|---|---|---|\n| {:.0} | {:.2} ms | {:.2} ms | {} | {:.1} ms | {:.1} ms | {:.1} ms | {} | {} | {} | {} |\n",
                run.ingest.per_second,
                run.ingest.p50_ms,
                run.ingest.p99_ms,
                run.ingest.statuses_text(),
                run.end_to_end_p50_ms,
                run.end_to_end_p99_ms,
                run.end_to_end_max_ms,
                last_loaded,
                max_depth,
                run.drained_after_s
                    .map_or("not within 10 min".to_owned(), |s| format!("{s:.1} s")),
                run.missing,
            );
        }

        let _ = writeln!(
            md,
            "## Ingest, 2 KiB events, by connections\n\nLatency in ms, from sending the request to the end of the response. \"200s queued\" compares the 200 responses with the messages found in `<prefix>.persist` after the run.\n"
        );
        let _ = writeln!(
            md,
            "| connections | ingester req/s | p50 | p90 | p99 | p99.9 | max | statuses | 200s queued | broker msg/s | broker p99 | HTTP req/s | HTTP p99 | ingester / broker | ingester / HTTP |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for (ingest, broker, http) in &self.curve {
            let _ = writeln!(
                md,
                "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} | {:.0} | {:.2} | {:.0} | {:.2} | {} | {} |",
                ingest.connections,
                ingest.per_second,
                ingest.p50_ms,
                ingest.p90_ms,
                ingest.p99_ms,
                ingest.p999_ms,
                ingest.max_ms,
                ingest.statuses_text(),
                ingest.accounted(),
                broker.per_second,
                broker.p99_ms,
                http.per_second,
                http.p99_ms,
                ratio(ingest.per_second, broker.per_second),
                ratio(ingest.per_second, http.per_second)
            );
        }

        let _ = writeln!(
            md,
            "\n## Large events\n\nEvents carrying a base64 PDF; each size on a fresh ingester, whose peak RSS (VmHWM) is the size's.\n\n| body | connections | ingester req/s | p50 | p99 | max | statuses | 200s queued | broker msg/s | broker p99 | ingester peak RSS |\n|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for (size, ingest, broker, peak) in &self.large {
            let _ = writeln!(
                md,
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {:.1} | {:.1} | {} |",
                mib(*size as u64),
                ingest.connections,
                ingest.per_second,
                ingest.p50_ms,
                ingest.p99_ms,
                ingest.max_ms,
                ingest.statuses_text(),
                ingest.accounted(),
                broker.per_second,
                broker.p99_ms,
                mib(*peak)
            );
        }
        md
    }
}
