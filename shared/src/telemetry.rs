//! Structured logs and the shutdown signal, the same for both binaries.
//!
//! `RUST_LOG` filters (default `info`); `LOG_FORMAT=json` writes one JSON object per line for a
//! log collector, anything else the human-readable format. Lines are written to stderr by a
//! background thread, so a request never waits on a `write(2)` for its log line; the buffer
//! blocks rather than drops when full (the log is an audit trail), and is flushed when the
//! returned guard is dropped at the end of `main`. What goes into fields is the callers'
//! responsibility: ids, sources, outcomes — never a secret, a payload or a personal datum.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; call once, first thing in `main`, and keep the guard alive
/// until `main` returns.
#[must_use = "dropping the guard stops the log writer"]
pub fn init(binary: &str) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{}=info", binary.replace('-', "_"))));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    guard
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

/// A container health check: `GET /healthz` on 127.0.0.1:`port`, true on a 200 within 2 s.
/// Lets the image do without curl.
pub fn probe_health(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let timeout = std::time::Duration::from_secs(2);
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&address, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    if stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok()
        && (head.starts_with(b"HTTP/1.0 200") || head.starts_with(b"HTTP/1.1 200"))
}
