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

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

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
        let consumed = IntCounter::new(
            "countersign_worker_consumed_total",
            "Messages taken from the persist queue.",
        )
        .expect("valid metric");
        let persisted = IntCounterVec::new(
            Opts::new(
                "countersign_worker_persisted_total",
                "Messages committed to PostgreSQL, new or duplicate.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let retried = IntCounter::new(
            "countersign_worker_retried_total",
            "Messages sent to a retry queue.",
        )
        .expect("valid metric");
        let dead_lettered = IntCounterVec::new(
            Opts::new(
                "countersign_worker_dead_lettered_total",
                "Messages parked in the dead-letter queue, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let processing_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "countersign_worker_processing_seconds",
                "Time from delivery to settlement.",
            )
            .buckets(BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let batch_messages = Histogram::with_opts(
            HistogramOpts::new(
                "countersign_worker_batch_messages",
                "Messages taken together into one batch.",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )
        .expect("valid metric");
        let broker_connections = IntCounterVec::new(
            Opts::new(
                "countersign_worker_broker_connections_total",
                "Connections opened to the broker, by node (host:port): past the first, reconnections.",
            ),
            &["node"],
        )
        .expect("valid metric");
        let broker_connected = IntGauge::new(
            "countersign_worker_broker_connected",
            "1 while the worker consumes from the broker.",
        )
        .expect("valid metric");
        let reconcile_runs = IntCounterVec::new(
            Opts::new(
                "countersign_worker_reconcile_runs_total",
                "Reconciliation runs with a provider's API, by source and outcome.",
            ),
            &["source", "outcome"],
        )
        .expect("valid metric");
        let reconcile_gaps = IntCounterVec::new(
            Opts::new(
                "countersign_worker_reconcile_gaps_total",
                "Processes whose events reconciliation found missing, by source and kind.",
            ),
            &["source", "kind"],
        )
        .expect("valid metric");
        countersign::telemetry::register_all(
            &registry,
            vec![
                Box::new(consumed.clone()) as Box<dyn prometheus::core::Collector>,
                Box::new(persisted.clone()),
                Box::new(retried.clone()),
                Box::new(dead_lettered.clone()),
                Box::new(processing_seconds.clone()),
                Box::new(batch_messages.clone()),
                Box::new(broker_connected.clone()),
                Box::new(broker_connections.clone()),
                Box::new(reconcile_runs.clone()),
                Box::new(reconcile_gaps.clone()),
            ],
        );
        Self {
            registry,
            consumed,
            persisted,
            retried,
            dead_lettered,
            processing_seconds,
            batch_messages,
            broker_connected,
            broker_connections,
            reconcile_runs,
            reconcile_gaps,
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
