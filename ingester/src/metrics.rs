//! Prometheus metrics of the ingester, served on the admin port at `/metrics`.
//!
//! - `countersign_ingester_requests_total{source, outcome}`: every webhook request, by how it
//!   ended (`accepted`, or a rejection or failure label such as `bad_signature`, `unroutable`).
//!   Unknown sources count under `source="_unknown"` so that probes cannot grow the label set.
//! - `countersign_ingester_request_duration_seconds{source}`: from first byte to reply.
//! - `countersign_ingester_confirm_duration_seconds`: publish until the broker's confirm.
//! - `countersign_ingester_broker_connections_total{node}`: connections opened, by broker node
//!   (`host:port`): past the first, each is a reconnection, to another node after a failover.
//! - `countersign_ingester_broker_connected`: 1 while a confirm-mode channel is open.
//! - `countersign_ingester_requests_in_flight`: webhook requests being handled now.
//! - `countersign_ingester_body_bytes_in_flight`: body bytes held against
//!   `max_body_bytes_in_flight` (requests refused for it count as `outcome="over_budget"`).
//! - `countersign_ingester_connections_open`: open webhook connections.
//! - `countersign_ingester_spool_messages`, `countersign_ingester_spool_bytes`,
//!   `countersign_ingester_spool_oldest_age_seconds`: what the spool holds now (bytes on disk).
//! - `countersign_ingester_spool_appended_total`, `countersign_ingester_spool_drained_total`:
//!   messages spooled and drained (`rate()` of the latter is the drain rate). Requests answered
//!   from the spool count as `outcome="spooled"`; refused by it, as `spool_full`,
//!   `spool_too_old` or `spool_failed`.
//! - `countersign_ingester_spool_sync_duration_seconds`: one group commit (write + fsync).
//! - `countersign_ingester_spool_quarantined`, `countersign_ingester_spool_quarantined_total`:
//!   spooled messages the broker refuses every time they are sent (a header frame it cannot
//!   take, a channel closed on each publish), moved aside so that the rest drains: held now
//!   (alert when above 0), and moved aside since start.
//! - `countersign_ingester_source_key_expiry_timestamp_seconds{source}`: when a source's key
//!   material stops being valid (a certificate's `notAfter`, Unix seconds), for the sources whose
//!   keys state one (Legalesign's "all" callback).
//! - `countersign_ingester_config_reloads_total{outcome}`: configuration reloads, `applied` or
//!   `refused` (the previous sources kept serving).

use prometheus::{
    Gauge, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
};

/// Latency buckets from 0.25 ms to 30 s: confirms are sub-millisecond on a healthy broker and
/// large bodies or a struggling broker take seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0,
    2.0, 5.0, 10.0, 30.0,
];

/// Label used for requests to a source that is not configured.
pub const UNKNOWN_SOURCE: &str = "_unknown";

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub confirm_seconds: Histogram,
    pub broker_connected: IntGauge,
    pub broker_connections: IntCounterVec,
    pub in_flight: IntGauge,
    pub body_bytes_in_flight: IntGauge,
    pub connections_open: IntGauge,
    pub spool_messages: IntGauge,
    pub spool_bytes: IntGauge,
    pub spool_oldest_age_seconds: Gauge,
    pub spool_appended: IntCounter,
    pub spool_drained: IntCounter,
    pub spool_sync_seconds: Histogram,
    pub spool_quarantined: IntGauge,
    pub spool_quarantined_total: IntCounter,
    pub sources: SourceMetrics,
}

/// What the configured sources' metrics say: reloads, and when key material ends.
#[derive(Clone)]
pub struct SourceMetrics {
    pub key_expiry: IntGaugeVec,
    pub reloads: IntCounterVec,
}

impl SourceMetrics {
    fn new(m: &countersign::telemetry::Metrics<'_>) -> Self {
        Self {
            reloads: m.int_counter_vec(
                "countersign_ingester_config_reloads_total",
                "Configuration reloads (SIGHUP, or a change of the file or what it references), by outcome: applied or refused.",
                &["outcome"],
            ),
            key_expiry: m.int_gauge_vec(
                "countersign_ingester_source_key_expiry_timestamp_seconds",
                "When a source's key material stops being valid (a certificate's notAfter), Unix seconds.",
                &["source"],
            ),
        }
    }

    /// Exports the ends of the sources' key material (replacing what was exported before).
    pub fn export_expiries(&self, expiries: &[(&str, std::time::SystemTime)]) {
        self.key_expiry.reset();
        for (source, until) in expiries {
            let seconds = until
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            self.key_expiry.with_label_values(&[source]).set(seconds);
        }
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let m = countersign::telemetry::Metrics(&registry);
        let b = LATENCY_BUCKETS;
        Self {
            requests: m.int_counter_vec(
                "countersign_ingester_requests_total",
                "Webhook requests by source and outcome.",
                &["source", "outcome"],
            ),
            request_seconds: m.histogram_vec(
                "countersign_ingester_request_duration_seconds",
                "Time from request to reply, by source.",
                b,
                &["source"],
            ),
            confirm_seconds: m.histogram(
                "countersign_ingester_confirm_duration_seconds",
                "Time from publish to the broker's confirm.",
                b,
            ),
            broker_connected: m.int_gauge(
                "countersign_ingester_broker_connected",
                "1 while a confirm-mode channel to the broker is open.",
            ),
            broker_connections: m.int_counter_vec(
                "countersign_ingester_broker_connections_total",
                "Connections opened to the broker, by node (host:port): past the first, reconnections.",
                &["node"],
            ),
            in_flight: m.int_gauge(
                "countersign_ingester_requests_in_flight",
                "Webhook requests being handled now.",
            ),
            body_bytes_in_flight: m.int_gauge(
                "countersign_ingester_body_bytes_in_flight",
                "Request body bytes held now, against ingester.max_body_bytes_in_flight.",
            ),
            connections_open: m.int_gauge(
                "countersign_ingester_connections_open",
                "Open connections on the webhook port.",
            ),
            spool_messages: m.int_gauge(
                "countersign_ingester_spool_messages",
                "Messages in the local spool not yet confirmed by the broker.",
            ),
            spool_bytes: m.int_gauge(
                "countersign_ingester_spool_bytes",
                "Bytes the local spool takes on disk, against ingester.spool.max_bytes.",
            ),
            spool_oldest_age_seconds: m.gauge(
                "countersign_ingester_spool_oldest_age_seconds",
                "Age of the oldest spooled message not yet drained (0 when empty).",
            ),
            spool_appended: m.int_counter(
                "countersign_ingester_spool_appended_total",
                "Messages written to the local spool (fsync'd).",
            ),
            spool_drained: m.int_counter(
                "countersign_ingester_spool_drained_total",
                "Spooled messages confirmed by the broker.",
            ),
            spool_sync_seconds: m.histogram(
                "countersign_ingester_spool_sync_duration_seconds",
                "One group commit to the spool: write and fsync.",
                b,
            ),
            sources: SourceMetrics::new(&m),
            spool_quarantined: m.int_gauge(
                "countersign_ingester_spool_quarantined",
                "Spooled messages in quarantine: refused by the broker every time, set aside for an \
                 operator (countersign-ingester spool quarantine list).",
            ),
            spool_quarantined_total: m.int_counter(
                "countersign_ingester_spool_quarantined_total",
                "Spooled messages moved to the quarantine since start.",
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
