//! The HTTP load generator: N keep-alive HTTP/1.1 connections, each sending one request at a time
//! for a duration or up to a count, latency in an HDR histogram (microseconds).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

use crate::events::EventFactory;

/// When a run stops.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    Elapsed(Duration),
    Requests(u64),
}

#[derive(Debug)]
pub struct Latencies {
    pub histogram: Histogram<u64>,
    pub elapsed: Duration,
}

impl Latencies {
    pub fn new() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
            elapsed: Duration::ZERO,
        }
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    pub fn per_second(&self) -> f64 {
        self.count() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A quantile in milliseconds.
    pub fn ms(&self, quantile: f64) -> f64 {
        self.histogram.value_at_quantile(quantile) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.histogram.max() as f64 / 1000.0
    }

    pub fn record(&mut self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        self.histogram.saturating_record(micros);
    }

    pub fn merge(&mut self, other: &Latencies) {
        self.histogram.add(&other.histogram).expect("same bounds");
    }
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug)]
pub struct LoadResult {
    pub connections: usize,
    pub body_bytes: usize,
    pub latencies: Latencies,
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no HTTP answer (connection refused, reset).
    pub errors: u64,
}

impl LoadResult {
    pub fn ok(&self) -> u64 {
        self.statuses.get(&200).copied().unwrap_or(0)
    }
}

/// Drives `connections` connections at `address` + `path` with events from `factory`.
pub async fn drive(
    address: SocketAddr,
    path: &str,
    connections: usize,
    until: Until,
    factory: Arc<EventFactory>,
) -> anyhow::Result<LoadResult> {
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (factory, sent, path) = (factory.clone(), sent.clone(), path.to_owned());
        tasks.push(tokio::spawn(async move {
            connection(address, &path, until, started, &factory, &sent).await
        }));
    }
    let mut result = LoadResult {
        connections,
        body_bytes: factory.mint().1.len(),
        latencies: Latencies::new(),
        statuses: BTreeMap::new(),
        errors: 0,
    };
    for task in tasks {
        let (latencies, statuses, errors) = task.await??;
        result.latencies.merge(&latencies);
        for (status, n) in statuses {
            *result.statuses.entry(status).or_default() += n;
        }
        result.errors += errors;
    }
    result.latencies.elapsed = started.elapsed();
    Ok(result)
}

type ConnectionResult = (Latencies, BTreeMap<u16, u64>, u64);

async fn connection(
    address: SocketAddr,
    path: &str,
    until: Until,
    started: Instant,
    factory: &EventFactory,
    sent: &AtomicU64,
) -> anyhow::Result<ConnectionResult> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (mut sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(driver);
    let mut latencies = Latencies::new();
    let mut statuses = BTreeMap::new();
    let mut errors = 0;
    loop {
        match until {
            Until::Elapsed(duration) if started.elapsed() >= duration => break,
            Until::Requests(n) if sent.fetch_add(1, Ordering::Relaxed) >= n => break,
            _ => {}
        }
        let (_, body) = factory.mint();
        let begun = Instant::now();
        match send(&mut sender, address, path, body).await? {
            Some(status) => {
                latencies.record(begun.elapsed());
                *statuses.entry(status).or_default() += 1;
            }
            None => {
                errors += 1;
                break;
            }
        }
    }
    Ok((latencies, statuses, errors))
}

/// One request on a connection: its status, or `None` if the connection failed.
async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    address: SocketAddr,
    path: &str,
    body: Bytes,
) -> anyhow::Result<Option<u16>> {
    let request = hyper::Request::post(path)
        .header("host", address.to_string())
        .header("content-type", "application/json")
        .body(Full::new(body))?;
    if sender.ready().await.is_err() {
        return Ok(None);
    }
    match sender.send_request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let _: Bytes = response.into_body().collect().await?.to_bytes();
            Ok(Some(status))
        }
        Err(_) => Ok(None),
    }
}

/// What a paced run sent: the answers, and each accepted event's id with the time it was due
/// (microseconds since the Unix epoch), for the end-to-end latency.
#[derive(Debug)]
pub struct PacedResult {
    pub load: LoadResult,
    pub accepted: Vec<(String, i64)>,
}

/// Offers `per_second` events for `duration` over `connections` connections, on a schedule: the
/// i-th event is due at `i / per_second`, and its latency counts from then, so a slow answer that
/// delays the next request is not hidden (no coordinated omission).
pub async fn paced(
    address: SocketAddr,
    path: &str,
    connections: usize,
    per_second: f64,
    duration: Duration,
    factory: Arc<EventFactory>,
) -> anyhow::Result<PacedResult> {
    let total = (per_second * duration.as_secs_f64()) as u64;
    let interval = Duration::from_secs_f64(1.0 / per_second);
    let started = Instant::now();
    let epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (factory, next, path) = (factory.clone(), next.clone(), path.to_owned());
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            let (mut sender, driver) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(driver);
            let mut latencies = Latencies::new();
            let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
            let mut accepted = Vec::new();
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let due = interval * u32::try_from(i)?;
                tokio::time::sleep_until((started + due).into()).await;
                let (id, body) = factory.mint();
                match send(&mut sender, address, &path, body).await? {
                    Some(status) => {
                        latencies.record(started.elapsed().saturating_sub(due));
                        *statuses.entry(status).or_default() += 1;
                        if status == 200 {
                            accepted.push((id, i64::try_from((epoch + due).as_micros())?));
                        }
                    }
                    None => {
                        errors += 1;
                        break;
                    }
                }
            }
            anyhow::Ok((latencies, statuses, errors, accepted))
        }));
    }
    let mut load = LoadResult {
        connections,
        body_bytes: factory.mint().1.len(),
        latencies: Latencies::new(),
        statuses: BTreeMap::new(),
        errors: 0,
    };
    let mut accepted = Vec::new();
    for task in tasks {
        let (latencies, statuses, errors, ids) = task.await??;
        load.latencies.merge(&latencies);
        for (status, n) in statuses {
            *load.statuses.entry(status).or_default() += n;
        }
        load.errors += errors;
        accepted.extend(ids);
    }
    load.latencies.elapsed = started.elapsed();
    Ok(PacedResult { load, accepted })
}

/// One measured configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub connections: usize,
    pub body_bytes: usize,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: u64,
    /// Responses 200, and messages found in the queue after the run (equal unless lossy).
    pub ok: u64,
    pub queued: u64,
}

impl Point {
    pub fn from_load(result: &LoadResult, queued: u64) -> Self {
        let mut point =
            Self::from_latencies(&result.latencies, result.connections, result.body_bytes);
        point.statuses = result.statuses.clone();
        point.errors = result.errors;
        point.ok = result.ok();
        point.queued = queued;
        point
    }

    pub fn from_latencies(latencies: &Latencies, connections: usize, body_bytes: usize) -> Self {
        Self {
            connections,
            body_bytes,
            per_second: latencies.per_second(),
            p50_ms: latencies.ms(0.5),
            p90_ms: latencies.ms(0.9),
            p99_ms: latencies.ms(0.99),
            p999_ms: latencies.ms(0.999),
            max_ms: latencies.max_ms(),
            statuses: BTreeMap::new(),
            errors: 0,
            ok: latencies.count(),
            queued: latencies.count(),
        }
    }

    pub fn accounted(&self) -> &'static str {
        if self.ok == self.queued {
            "yes"
        } else {
            "**NO**"
        }
    }

    pub fn statuses_text(&self) -> String {
        let mut text: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}×{n}"))
            .collect();
        if self.errors > 0 {
            text.push(format!("errors×{}", self.errors));
        }
        text.join(" ")
    }
}
