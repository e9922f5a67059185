//! Structured logs for both binaries.
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
