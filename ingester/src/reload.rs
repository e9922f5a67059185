//! Sources and secrets changed without a restart.
//!
//! `SIGHUP`, or a change seen by polling (every [`POLL`]) of the configuration file or of what it
//! references — a `file:` secret, a JWKS, a certificate: what a Kubernetes ConfigMap or Secret
//! update delivers — reloads `[[sources]]` as a whole: the new file is read and every source's
//! verifier built (keys and certificates loaded) before anything changes. A file that does not
//! load is refused with the reason in the log and
//! `countersign_ingester_config_reloads_total{outcome="refused"}`, and the previous sources keep
//! serving. An accepted one replaces the sources atomically: a request keeps the sources it
//! started with, connections are untouched, and a source that keeps its name and provider keeps
//! its memory of used signatures. Only `[[sources]]` are reloaded; a change of any other
//! section (ports, broker, spool, limits) is logged as needing a restart.

use std::hash::{Hash as _, Hasher as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use countersign::config::{Config, Role};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::routes::WebhookState;

/// How often the configuration and what it references are looked at for a change.
pub const POLL: Duration = Duration::from_secs(2);

/// Reloads a running ingester's sources from its configuration file.
pub struct Reloader {
    path: PathBuf,
    state: web::Data<WebhookState>,
    metrics: Metrics,
    /// What the sources were built from: the last fingerprint applied or refused.
    seen: std::sync::Mutex<u64>,
    /// The non-source sections as loaded at start (their Debug text: no secret prints).
    fixed: String,
}

impl Reloader {
    pub(crate) fn new(
        path: PathBuf,
        loaded: &Loaded,
        state: web::Data<WebhookState>,
        metrics: Metrics,
    ) -> Self {
        Self {
            seen: std::sync::Mutex::new(loaded.fingerprint),
            fixed: loaded.fixed.clone(),
            path,
            state,
            metrics,
        }
    }

    /// Reads the file again and, if it loads, serves its sources; the sources' names, or why
    /// the file was refused (the previous sources still serve).
    pub fn reload(&self) -> Result<Vec<String>, String> {
        let loaded = Config::load_path(&self.path, Role::Ingester).and_then(|config| {
            let sources = config
                .build_sources()
                .map_err(|e| e.within(&self.path.display().to_string()))?;
            Ok((config, sources))
        });
        let (config, mut sources) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => {
                let reason = error.to_string();
                self.count("refused");
                tracing::error!(error = %reason, "configuration reload refused; the previous sources keep serving");
                return Err(reason);
            }
        };
        *self.seen.lock().expect("not poisoned") = fingerprint(&config);
        if fixed_part(&config) != self.fixed {
            tracing::warn!(
                "configuration reload: only [[sources]] are reloaded; the other sections' changes need a restart"
            );
        }
        let old = self.state.sources.load_full();
        sources.keep_memories_of(&old);
        let names: Vec<String> = sources.names().into_iter().map(str::to_owned).collect();
        let before: Vec<&str> = old.names();
        let added: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| !before.contains(n))
            .collect();
        let removed: Vec<&str> = before
            .iter()
            .copied()
            .filter(|n| !names.iter().any(|m| m == n))
            .collect();
        self.metrics.sources.export_expiries(&sources.expiries());
        self.state.sources.store(Arc::new(sources));
        self.count("applied");
        tracing::info!(
            sources = names.join(","),
            added = added.join(","),
            removed = removed.join(","),
            "configuration reloaded"
        );
        Ok(names)
    }

    fn count(&self, outcome: &str) {
        self.metrics
            .sources
            .reloads
            .with_label_values(&[outcome])
            .inc();
    }

    /// Whether the file, or anything it references, differs from what was last loaded.
    fn changed(&self) -> bool {
        // A file that does not load now is a change (to refuse, once) unless it was refused as
        // it is: its text is the fingerprint then.
        let now = match Config::load_path(&self.path, Role::Ingester) {
            Ok(config) => fingerprint(&config),
            Err(_) => text_fingerprint(&self.path),
        };
        let mut seen = self.seen.lock().expect("not poisoned");
        if *seen == now {
            return false;
        }
        *seen = now;
        true
    }

    /// Reloads on `SIGHUP` and on a change seen by polling, until `shutdown`.
    pub fn watch(self: Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut hangup = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::hangup(),
            ) {
                Ok(signal) => Some(signal),
                Err(error) => {
                    tracing::warn!(%error, "no SIGHUP handler; the configuration is reloaded on a change only");
                    None
                }
            };
            loop {
                let signalled = async {
                    match hangup.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = signalled => {
                        tracing::info!("SIGHUP: reloading the configuration");
                        let _ = self.reload();
                    }
                    () = tokio::time::sleep(POLL) => {
                        let this = self.clone();
                        let changed = tokio::task::spawn_blocking(move || this.changed()).await.unwrap_or(false);
                        if changed {
                            tracing::info!("the configuration or a file it references changed: reloading");
                            let _ = self.reload();
                        }
                    }
                }
            }
        })
    }
}

/// What a reload compares with: the configuration the ingester started with.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    fingerprint: u64,
    fixed: String,
}

impl Loaded {
    pub(crate) fn of(config: &Config) -> Self {
        Self {
            fingerprint: fingerprint(config),
            fixed: fixed_part(config),
        }
    }
}

/// What the sources are built from: each source's settings, its secrets' values and the
/// contents of the files it names.
fn fingerprint(config: &Config) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    for source in &config.sources {
        format!("{source:?}").hash(&mut hasher);
        for secret in &source.secrets {
            secret.expose().hash(&mut hasher);
        }
        for path in [&source.jwks, &source.certificate].into_iter().flatten() {
            std::fs::read(path).unwrap_or_default().hash(&mut hasher);
        }
    }
    hasher.finish()
}

fn text_fingerprint(path: &std::path::Path) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    std::fs::read(path).unwrap_or_default().hash(&mut hasher);
    hasher.finish()
}

/// The sections a reload does not apply.
fn fixed_part(config: &Config) -> String {
    format!("{:?} {:?}", config.amqp, config.ingester)
}
