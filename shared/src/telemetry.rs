//! Structured logs and the shutdown signal, the same for both binaries.
//!
//! `RUST_LOG` filters (default `info`); `LOG_FORMAT=json` writes one JSON object per line for a
//! log collector, anything else the human-readable format. What goes into fields is the callers'
//! responsibility: ids, sources, outcomes — never a secret, a payload or a personal datum.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; call once, first thing in `main`.
pub fn init(binary: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{}=info", binary.replace('-', "_"))));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// Waits for SIGTERM (Kubernetes, `docker stop`) or Ctrl-C, then cancels `shutdown`: the start of
/// a graceful shutdown.
pub async fn cancel_on_signal(shutdown: tokio_util::sync::CancellationToken) {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
    }
    shutdown.cancel();
}

/// Renders a Prometheus registry in the text exposition format.
pub fn render_metrics(registry: &prometheus::Registry) -> String {
    use prometheus::Encoder as _;
    let mut buffer = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut buffer)
        .expect("text encoding cannot fail");
    String::from_utf8(buffer).expect("text format is UTF-8")
}

/// Registers every collector, whose names must be unique.
pub fn register_all(
    registry: &prometheus::Registry,
    collectors: Vec<Box<dyn prometheus::core::Collector>>,
) {
    for collector in collectors {
        registry.register(collector).expect("unique metric names");
    }
}
