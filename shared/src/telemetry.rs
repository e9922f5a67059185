//! Structured logs and the shutdown signal, the same for both binaries.
//!
//! `RUST_LOG` filters (default `info`, without actix-http's line per malformed request); `LOG_FORMAT=json` writes one JSON object per line for a
//! log collector, anything else the human-readable format. Lines are written to stderr in batches
//! by a background thread ([`crate::log_buffer`]), so a request never waits on a `write(2)` for
//! its log line nor wakes another thread per line; a full buffer holds loggers back rather than
//! drop lines (the log is an audit trail), and what waits is written when the returned guard is
//! dropped at the end of `main`. What goes into fields is the callers' responsibility: ids,
//! sources, outcomes — never a secret, a payload or a personal datum.

use tracing_subscriber::EnvFilter;

use crate::log_buffer::{LogBuffer, LogGuard};

/// Installs the global subscriber; call once, first thing in `main`, and keep the guard alive
/// until `main` returns.
#[must_use = "dropping the guard stops the log writer"]
pub fn init(binary: &str) -> LogGuard {
    // actix-http logs an ERROR line for every malformed HTTP request (answered 400 by it): any
    // client could fill the log with them, so they are off unless RUST_LOG asks for them.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "info,{}=info,actix_http::h1::dispatcher=off",
            binary.replace('-', "_")
        ))
    });
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let (writer, guard) = LogBuffer::spawn(std::io::stderr());
    // Colours only for a person at a terminal: a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    guard
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

/// Makes metrics and registers each in one registry as it is made (names must be unique): a
/// binary's metrics are then one line each.
pub struct Metrics<'r>(pub &'r prometheus::Registry);

impl Metrics<'_> {
    fn register<C: prometheus::core::Collector + Clone + 'static>(&self, collector: C) -> C {
        self.0
            .register(Box::new(collector.clone()))
            .expect("unique metric names");
        collector
    }

    pub fn int_counter(&self, name: &str, help: &str) -> prometheus::IntCounter {
        self.register(prometheus::IntCounter::new(name, help).expect("valid metric"))
    }

    pub fn int_counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::IntCounterVec {
        self.register(
            prometheus::IntCounterVec::new(prometheus::Opts::new(name, help), labels)
                .expect("valid metric"),
        )
    }

    pub fn int_gauge(&self, name: &str, help: &str) -> prometheus::IntGauge {
        self.register(prometheus::IntGauge::new(name, help).expect("valid metric"))
    }

    pub fn int_gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::IntGaugeVec {
        self.register(
            prometheus::IntGaugeVec::new(prometheus::Opts::new(name, help), labels)
                .expect("valid metric"),
        )
    }

    pub fn gauge(&self, name: &str, help: &str) -> prometheus::Gauge {
        self.register(prometheus::Gauge::new(name, help).expect("valid metric"))
    }

    pub fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> prometheus::Histogram {
        self.register(
            prometheus::Histogram::with_opts(
                prometheus::HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            )
            .expect("valid metric"),
        )
    }

    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
        labels: &[&str],
    ) -> prometheus::HistogramVec {
        self.register(
            prometheus::HistogramVec::new(
                prometheus::HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
            .expect("valid metric"),
        )
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

/// An error and its causes as one line, `what: why: because`, leaving out a cause whose text the
/// line already holds: sqlx's and I/O errors repeat their source in their own text, which `{:#}`
/// would print two or three times (`… does not exist: … does not exist: … does not exist`).
pub fn error_line<'a>(
    chain: impl IntoIterator<Item = &'a (dyn std::error::Error + 'static)>,
) -> String {
    let mut line = String::new();
    for cause in chain {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// A value from a payload (an event id, a provider's message), written to a log line with every
/// byte that is not printable ASCII escaped (`\n`, `\u{1b}`, `\u{202e}`): a newline cannot forge
/// a log line, an escape sequence cannot reach an operator's terminal, and the text log and the
/// JSON log show the same text. A value that is empty or holds a space, `=` or `"` is quoted as
/// logfmt quotes (`"evt 1 outcome=accepted"`, `"` as `\"`), so that in the text log, which writes
/// `name=value` unquoted, it cannot pose as further fields. Longer values are cut at 200
/// characters (`…` marks the cut).
pub struct Escaped<'a>(pub &'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        const MAX_CHARS: usize = 200;
        let quoted = self.0.is_empty() || self.0.contains([' ', '=', '"']);
        if quoted {
            f.write_char('"')?;
        }
        for (i, c) in self.0.chars().enumerate() {
            if i == MAX_CHARS {
                f.write_char('…')?;
                break;
            }
            match c {
                '"' => f.write_str("\\\"")?,
                ' '..='~' if c != '\\' => f.write_char(c)?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                other => write!(f, "\\u{{{:x}}}", u32::from(other))?,
            }
        }
        if quoted {
            f.write_char('"')?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_line_names_each_cause_once() {
        use super::error_line;
        #[derive(Debug)]
        struct Layer(String, Option<Box<Layer>>);
        impl std::fmt::Display for Layer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::error::Error for Layer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|l| l as _)
            }
        }
        let root = "database \"x\" does not exist";
        let error = Layer(
            format!("while executing migrations: {root}"),
            Some(Box::new(Layer(root.to_owned(), None))),
        );
        let mut chain: Vec<&(dyn std::error::Error + 'static)> = vec![&error];
        chain.extend(
            error
                .1
                .as_deref()
                .map(|l| l as &(dyn std::error::Error + 'static)),
        );
        assert_eq!(
            error_line(chain),
            "while executing migrations: database \"x\" does not exist"
        );
        let other = Layer(
            "connect".to_owned(),
            Some(Box::new(Layer("refused".to_owned(), None))),
        );
        let chain: Vec<&(dyn std::error::Error + 'static)> =
            vec![&other, other.1.as_deref().unwrap()];
        assert_eq!(error_line(chain), "connect: refused");
    }

    use super::Escaped;

    #[test]
    fn escaped_values_are_one_printable_line() {
        let forged = "evt-1\n2026-11-23T00:00:00Z  INFO forged\x1b[31mred\u{202e}\\";
        let shown = Escaped(forged).to_string();
        assert_eq!(
            shown,
            "\"evt-1\\n2026-11-23T00:00:00Z  INFO forged\\u{1b}[31mred\\u{202e}\\\\\""
        );
        assert!(shown.bytes().all(|b| (0x20..0x7f).contains(&b)));
        assert_eq!(Escaped("0f3c-ab").to_string(), "0f3c-ab");
        let long = "x".repeat(500);
        assert_eq!(Escaped(&long).to_string().chars().count(), 201);
        // Fields cannot be spoofed in the text log: the value stays one quoted field.
        assert_eq!(
            Escaped("evt outcome=accepted source=\"forged\"").to_string(),
            "\"evt outcome=accepted source=\\\"forged\\\"\""
        );
        assert_eq!(Escaped("").to_string(), "\"\"");
    }
}
