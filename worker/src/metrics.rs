//! Prometheus metrics of the worker, served at `/metrics` on its port.
//!
//! - `countersign_worker_consumed_total`: messages taken from `<prefix>.persist`.
//! - `countersign_worker_persisted_total{result}`: committed, `new` or `duplicate`.
//! - `countersign_worker_retried_total`: sent to a retry queue.
//! - `countersign_worker_dead_lettered_total{reason}`: parked in `<prefix>.dead`, by `x-dead-kind`.
//! - `countersign_worker_processing_seconds`: from delivery to ack.
//! - `countersign_worker_batch_messages`: messages recorded together in one transaction.
//! - `countersign_worker_broker_connections_total{node}`: connections opened, by broker node
//!   (`host:port`): past the first, each is a reconnection, to another node after a failover.
//! - `countersign_worker_broker_connected`: 1 while consuming.

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, Registry};

const BUCKETS: &[f64] = &[
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0, 2.0, 5.0, 10.0, 30.0,
];

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub consumed: IntCounter,
    pub persisted: IntCounterVec,
    pub retried: IntCounter,
    pub dead_lettered: IntCounterVec,
    pub processing_seconds: Histogram,
    pub batch_messages: Histogram,
    pub broker_connected: IntGauge,
    pub broker_connections: IntCounterVec,
    /// Reconciliation runs, by source and outcome (`done`, `failed`, `skipped` when another
    /// replica held the source).
    pub reconcile_runs: IntCounterVec,
    /// What reconciliation found the archive lacked, by source and kind (`unknown_process`,
    /// `missing_activity`).
    pub reconcile_gaps: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let m = countersign::telemetry::Metrics(&registry);
        Self {
            consumed: m.int_counter(
                "countersign_worker_consumed_total",
                "Messages taken from the persist queue.",
            ),
            persisted: m.int_counter_vec(
                "countersign_worker_persisted_total",
                "Messages committed to PostgreSQL, new or duplicate.",
                &["result"],
            ),
            retried: m.int_counter(
                "countersign_worker_retried_total",
                "Messages sent to a retry queue.",
            ),
            dead_lettered: m.int_counter_vec(
                "countersign_worker_dead_lettered_total",
                "Messages parked in the dead-letter queue, by reason.",
                &["reason"],
            ),
            processing_seconds: m.histogram(
                "countersign_worker_processing_seconds",
                "Time from delivery to settlement.",
                BUCKETS,
            ),
            batch_messages: m.histogram(
                "countersign_worker_batch_messages",
                "Messages taken together into one batch.",
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
            ),
            broker_connected: m.int_gauge(
                "countersign_worker_broker_connected",
                "1 while the worker consumes from the broker.",
            ),
            broker_connections: m.int_counter_vec(
                "countersign_worker_broker_connections_total",
                "Connections opened to the broker, by node (host:port): past the first, reconnections.",
                &["node"],
            ),
            reconcile_runs: m.int_counter_vec(
                "countersign_worker_reconcile_runs_total",
                "Reconciliation runs with a provider's API, by source and outcome.",
                &["source", "outcome"],
            ),
            reconcile_gaps: m.int_counter_vec(
                "countersign_worker_reconcile_gaps_total",
                "Processes whose events reconciliation found missing, by source and kind.",
                &["source", "kind"],
            ),
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        countersign::telemetry::render_metrics(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
