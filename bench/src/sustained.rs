//! The sustained run: the ingester and the worker together, events offered at a fixed rate for a
//! while. Shows whether the worker keeps up: the depth of `<prefix>.persist` over time, and the
//! end-to-end latency from the moment a request was due to its row in `webhook_events`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::events::EventFactory;
use crate::load::Point;
use crate::load::{Latencies, paced};
use crate::tiers::{CpuClock, Group, Phase};
use crate::{Setup, persisted_total, wait_ready, warm_up};

/// How long the worker may take to commit what was accepted once the load stops.
const DRAIN_LIMIT: Duration = Duration::from_secs(600);
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Serialize)]
pub struct Sustained {
    pub offered_per_second: f64,
    pub duration_s: f64,
    /// How long sending took: longer than `duration_s` when the ingester fell behind the
    /// schedule (every offered event is still sent).
    pub load_s: f64,
    /// The HTTP side (latency from when each request was due).
    pub ingest: Point,
    /// From when a request was due to its row's `first_persisted_at` (the start of the
    /// transaction that committed it: a batch's commit follows within milliseconds).
    pub end_to_end_p50_ms: f64,
    pub end_to_end_p99_ms: f64,
    pub end_to_end_max_ms: f64,
    /// (seconds since the load started, messages ready in `<prefix>.persist`).
    pub depth: Vec<(f64, u32)>,
    /// Seconds after the load stopped until every accepted event was committed; `None` if that
    /// took longer than [`DRAIN_LIMIT`].
    pub drained_after_s: Option<f64>,
    /// Accepted (200) but never found as a row.
    pub missing: u64,
    /// CPU seconds of each tier from the load's start until every accepted event was
    /// committed, and that time (`bench tiers`).
    #[serde(skip)]
    pub cpu: Vec<(Group, f64)>,
    #[serde(skip)]
    pub busy: Duration,
}

impl Sustained {
    /// The run as a tier phase: every accepted event, from the load's start until the last was
    /// committed.
    pub fn phase(&self) -> Phase {
        Phase {
            name: "sustained".to_owned(),
            events: self.ingest.ok,
            wall: self.busy,
            cpu: self.cpu.clone(),
        }
    }
}

pub async fn run(
    setup: &Setup,
    per_second: f64,
    duration: Duration,
    connections: usize,
    factory: &Arc<EventFactory>,
) -> anyhow::Result<Sustained> {
    let ingester = setup.ingester()?;
    warm_up(setup, &ingester, factory).await?;
    let worker = setup.worker()?;
    wait_ready(worker.port).await?;

    let clock = CpuClock::start(
        &[Group::RabbitMq, Group::PostgreSql],
        &[
            (Group::Ingester, ingester.pid()),
            (Group::Worker, worker.pid()),
        ],
    );
    let sampling = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    let sampler = {
        let (channel, queue, sampling) = (
            setup.channel.clone(),
            setup.topology.persist_queue().to_owned(),
            sampling.clone(),
        );
        tokio::spawn(async move {
            let mut depth = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                if let Ok(n) = countersign::amqp::queue_length(&channel, &queue).await {
                    depth.push((started.elapsed().as_secs_f64(), n));
                }
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
            depth
        })
    };

    let sent = paced(
        ([127, 0, 0, 1], ingester.port).into(),
        "/webhooks/bench",
        connections,
        per_second,
        duration,
        factory.clone(),
    )
    .await?;
    let load_ended = Instant::now();

    // Until the worker has committed every accepted event.
    let client = reqwest::Client::new();
    let metrics = format!("http://127.0.0.1:{}/metrics", worker.port);
    let accepted = sent.accepted.len() as u64;
    let drained_after_s = loop {
        let persisted = match client.get(&metrics).send().await {
            Ok(response) => persisted_total(&response.text().await.unwrap_or_default()),
            Err(_) => 0,
        };
        if persisted >= accepted {
            break Some(load_ended.elapsed().as_secs_f64());
        }
        if load_ended.elapsed() > DRAIN_LIMIT {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (cpu, busy) = (clock.read(), started.elapsed());
    sampling.store(false, Ordering::Relaxed);
    let depth = sampler.await?;
    worker.stop()?;
    ingester.stop()?;
    setup.purge().await?;

    let pool = sqlx::PgPool::connect(&setup.database_url).await?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT event_id, (extract(epoch FROM first_persisted_at) * 1000000)::int8
         FROM webhook_events WHERE event_id = ANY($1)",
    )
    .bind(
        sent.accepted
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&pool)
    .await?;
    pool.close().await;
    let persisted: HashMap<&str, i64> = rows.iter().map(|(id, at)| (id.as_str(), *at)).collect();
    let mut end_to_end = Latencies::new();
    let mut missing = 0;
    for (id, due) in &sent.accepted {
        match persisted.get(id.as_str()) {
            Some(at) => {
                end_to_end.record(Duration::from_micros(u64::try_from(at - due).unwrap_or(0)))
            }
            None => missing += 1,
        }
    }
    Ok(Sustained {
        offered_per_second: per_second,
        duration_s: duration.as_secs_f64(),
        load_s: sent.load.latencies.elapsed.as_secs_f64(),
        ingest: Point::from_load(&sent.load, accepted),
        end_to_end_p50_ms: end_to_end.ms(0.5),
        end_to_end_p99_ms: end_to_end.ms(0.99),
        end_to_end_max_ms: end_to_end.max_ms(),
        depth,
        drained_after_s,
        missing,
        cpu,
        busy,
    })
}
