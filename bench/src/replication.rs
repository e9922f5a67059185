//! What replication costs: the ingester's accept rate and the worker's drain against one
//! RabbitMQ 4.0 node and against the three-node cluster of `deploy/cluster`, in one run, with
//! the same image and configuration (node 1 of the file alone is the single node), and each
//! node's CPU and memory as `docker stats` sees them meanwhile — the figures the production
//! broker is sized from.
//!
//! Each broker gets a child `bench replication-run` with `AMQP_URL` naming it, so that the
//! measurement is the same code as `bench all`'s (a queue prefix and a database of its own).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;

/// One broker's figures, as the child reports them.
#[derive(Debug, Serialize, Deserialize)]
pub struct Run {
    pub connections: usize,
    pub ingest_per_second: f64,
    pub ingest_p99_ms: f64,
    pub drained: usize,
    pub drain_per_second: f64,
}

/// The nodes' resource use while a run lasted: per node, the highest memory, and the mean and
/// highest CPU (100 % = one core).
#[derive(Debug, Default)]
struct Usage {
    memory_mib: Vec<f64>,
    cpu_mean: Vec<f64>,
    cpu_max: Vec<f64>,
}

pub async fn run(duration: Duration, events: usize, out: &Path) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut lines = Vec::new();
    for size in [1u8, 3] {
        eprintln!("replication: {size} node(s)");
        let cluster = Cluster::start_nodes(size).await?;
        let sampler = Sampler::start(cluster.containers()?);
        let child = tokio::task::spawn_blocking({
            let url = cluster.url();
            move || measure(&url, duration, events)
        })
        .await??;
        let usage = sampler.finish().await;
        lines.push((size, child, usage));
        drop(cluster);
    }
    let text = render(duration, events, &lines, started.elapsed());
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, text)?;
    eprintln!("replication: results in {}", out.display());
    Ok(())
}

/// `bench replication-run` against `amqp_url`: its one line of JSON.
fn measure(amqp_url: &str, duration: Duration, events: usize) -> anyhow::Result<Run> {
    let output = Command::new(std::env::current_exe()?)
        .args([
            "replication-run",
            "--duration",
            &humantime::format_duration(duration).to_string(),
            "--events",
            &events.to_string(),
        ])
        .env("AMQP_URL", amqp_url)
        .stderr(Stdio::inherit())
        .output()
        .context("bench replication-run")?;
    anyhow::ensure!(
        output.status.success(),
        "bench replication-run failed: {}",
        output.status
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().last().context("no result line")?;
    Ok(serde_json::from_str(line)?)
}

/// `docker stats` of `containers`, one sample after another, until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Usage>,
}

impl Sampler {
    fn start(containers: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::task::spawn_blocking(move || {
            let n = containers.len();
            let (mut memory, mut cpu_sum, mut cpu_max, mut samples) =
                (vec![0f64; n], vec![0f64; n], vec![0f64; n], 0u32);
            while !flag.load(Ordering::Relaxed) {
                let Ok(output) = Command::new("docker")
                    .args([
                        "stats",
                        "--no-stream",
                        "--format",
                        "{{.ID}}\t{{.CPUPerc}}\t{{.MemUsage}}",
                    ])
                    .args(&containers)
                    .output()
                else {
                    break;
                };
                let text = String::from_utf8_lossy(&output.stdout);
                let mut seen = 0;
                for line in text.lines() {
                    let mut fields = line.split('\t');
                    let (Some(id), Some(cpu), Some(mem)) =
                        (fields.next(), fields.next(), fields.next())
                    else {
                        continue;
                    };
                    let Some(i) = containers.iter().position(|c| c.starts_with(id)) else {
                        continue;
                    };
                    let cpu = cpu.trim_end_matches('%').parse::<f64>().unwrap_or(0.0);
                    cpu_sum[i] += cpu;
                    cpu_max[i] = cpu_max[i].max(cpu);
                    memory[i] = memory[i].max(mebibytes(mem.split('/').next().unwrap_or("")));
                    seen += 1;
                }
                if seen == n {
                    samples += 1;
                }
            }
            Usage {
                memory_mib: memory,
                cpu_mean: cpu_sum
                    .iter()
                    .map(|s| s / f64::from(samples.max(1)))
                    .collect(),
                cpu_max,
            }
        });
        Self { stop, task }
    }

    async fn finish(self) -> Usage {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

/// `123.4MiB`, `1.2GiB`, `512KiB` in MiB.
fn mebibytes(text: &str) -> f64 {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.trim().parse().unwrap_or(0.0);
    number
        * match unit {
            "B" => 1.0 / 1048576.0,
            "KiB" | "kB" => 1.0 / 1024.0,
            "GiB" | "GB" => 1024.0,
            _ => 1.0,
        }
}

fn render(duration: Duration, events: usize, lines: &[(u8, Run, Usage)], took: Duration) -> String {
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let mut text = format!(
        "# What replication costs\n\n\
         `cargo run --release -p bench -- replication` at commit {commit}, {} UTC ({:.0} s). \
         RabbitMQ 4.0.5 (the local base image), `deploy/cluster`'s configuration: one node \
         (node 1 of the file alone), then all three, quorum queues with a member on each. \
         Ingest: 2 KiB signed events from {} connections for {} s to one ingester given every \
         node in `amqp.url`; drain: {events} events pre-filled, one worker. Everything on one \
         2-core machine: the three nodes share its cores with the load, the binaries and \
         PostgreSQL, so the ratio is what counts, not the absolute rates. CPU 100 % = one core; \
         memory as `docker stats` reports it (the highest sample; the samples take about 2 s \
         each).\n\n\
         | nodes | ingest, events/s | ingest p99, ms | drain, events/s | per node: highest memory, MiB | per node: CPU mean / highest, % |\n\
         |---:|---:|---:|---:|---|---|\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        took.as_secs_f64(),
        lines.first().map_or(0, |l| l.1.connections),
        duration.as_secs(),
    );
    for (size, run, usage) in lines {
        let memory: Vec<String> = usage.memory_mib.iter().map(|m| format!("{m:.0}")).collect();
        let cpu: Vec<String> = usage
            .cpu_mean
            .iter()
            .zip(&usage.cpu_max)
            .map(|(mean, max)| format!("{mean:.0} / {max:.0}"))
            .collect();
        text.push_str(&format!(
            "| {size} | {:.0} | {:.1} | {:.0} | {} | {} |\n",
            run.ingest_per_second,
            run.ingest_p99_ms,
            run.drain_per_second,
            memory.join(", "),
            cpu.join(", ")
        ));
    }
    if let [(_, one, _), (_, three, _)] = lines {
        text.push_str(&format!(
            "\nThree nodes against one: ingest {:.0} %, drain {:.0} %.\n",
            100.0 * three.ingest_per_second / one.ingest_per_second.max(1.0),
            100.0 * three.drain_per_second / one.drain_per_second.max(1.0)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::mebibytes;

    #[test]
    fn docker_stats_sizes_read_as_mebibytes() {
        assert_eq!(mebibytes("123.5MiB"), 123.5);
        assert_eq!(mebibytes("1.5GiB "), 1536.0);
        assert_eq!(mebibytes("512KiB"), 0.5);
    }
}
