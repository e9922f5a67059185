//! Reconciliation: the worker asks a provider's API what happened, and whatever the archive
//! lacks becomes an event through the same path as a webhook.
//!
//! One job per source whose provider Countersign can reconcile ([`Provider::reconcile`]) and
//! that has `[sources.api]` (unless `[sources.reconcile] enabled = false`). Every `interval`, a run
//! takes a PostgreSQL advisory lock for the source (another replica holding it skips the run),
//! asks the API about the source's processes not in a final state whose last change is older
//! than `min_age` (and within `look_back`), and what happened over `look_back` (to find processes
//! never seen). Each gap — entries the archive lacks — is published to the exchange with
//! confirms, `x-origin: reconciliation`, an event id made of the process and the missing entries'
//! keys; the worker records it like any message, so the projection has one writer and stays
//! idempotent. A run whose API requests fail publishes nothing from them and tries again next
//! time. Logs carry ids and counts only.
//!
//! [`Provider::reconcile`]: countersign_providers::Provider::reconcile

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use countersign::amqp::publish_confirmed;
use countersign::config::{Config, ReconcileConfig};
use countersign::message;
use countersign::topology::Topology;
use countersign_providers::{Gap, ProviderKind, Reconcile};
use lapin::types::ShortString;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::db::Db;
use crate::fetch::Fetcher;
use crate::metrics::Metrics;

/// How long a run waits for the broker to confirm a gap's message.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many further pages of a listing are read in one run.
const MAX_PAGES_PER_RUN: usize = 100;
/// At most this many processes are asked about in one run.
const MAX_PROCESSES_PER_RUN: i64 = 1000;

/// One source's reconciliation.
struct Job {
    source: String,
    provider: ProviderKind,
    reconcile: &'static dyn Reconcile,
    config: ReconcileConfig,
}

/// The reconciliation jobs of a worker.
pub struct Reconciler {
    jobs: Vec<Job>,
    db: Db,
    fetcher: Arc<Fetcher>,
    topology: Topology,
    amqp_url: String,
    metrics: Metrics,
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// False when another replica held the source's lock.
    pub ran: bool,
    pub gaps: usize,
}

impl Reconciler {
    pub fn new(
        config: &Config,
        db: Db,
        fetcher: Arc<Fetcher>,
        metrics: Metrics,
    ) -> Result<Self, String> {
        let mut jobs = Vec::new();
        for source in &config.sources {
            if !source.reconcile.enabled || !fetcher.has_api(&source.name) {
                continue;
            }
            let provider = ProviderKind::named(&source.provider)
                .map_err(|e| format!("sources[{}].provider: {e}", source.name))?;
            let Some(reconcile) = provider.reconcile() else {
                continue;
            };
            jobs.push(Job {
                source: source.name.clone(),
                provider,
                reconcile,
                config: source.reconcile.clone(),
            });
        }
        Ok(Self {
            jobs,
            db,
            fetcher,
            topology: Topology::from_config(&config.amqp),
            amqp_url: secrecy::ExposeSecret::expose_secret(&config.amqp.url).to_owned(),
            metrics,
        })
    }

    /// The sources reconciled.
    pub fn sources(&self) -> Vec<&str> {
        self.jobs.iter().map(|j| j.source.as_str()).collect()
    }

    /// Runs every job every `interval` until `shutdown`; the first run comes one interval after
    /// the start.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tasks = Vec::new();
        for index in 0..self.jobs.len() {
            let this = self.clone();
            let shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let interval = this.jobs[index].config.interval;
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(interval) => {}
                    }
                    let _ = this.run_once(index).await;
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    }

    /// One run of job `index` (the `index`-th reconciled source), logged and counted.
    pub async fn run_once(&self, index: usize) -> Result<RunReport, String> {
        let job = &self.jobs[index];
        let result = self.run_job(job).await;
        let outcome = match &result {
            Ok(RunReport { ran: false, .. }) => "skipped",
            Ok(_) => "done",
            Err(_) => "failed",
        };
        self.metrics
            .reconcile_runs
            .with_label_values(&[&job.source, outcome])
            .inc();
        match &result {
            Ok(report) if report.ran => {
                tracing::info!(
                    source = job.source,
                    gaps = report.gaps,
                    "reconciliation run done"
                )
            }
            Ok(_) => tracing::debug!(
                source = job.source,
                "reconciliation skipped: another worker holds the source"
            ),
            Err(error) => tracing::warn!(
                source = job.source,
                error = %countersign::telemetry::Escaped(error),
                "reconciliation run failed; the next run tries again"
            ),
        }
        result
    }

    async fn run_job(&self, job: &Job) -> Result<RunReport, String> {
        let mut connection = self
            .db
            .pool()
            .acquire()
            .await
            .map_err(|e| format!("database: {e}"))?;
        let lock_key = lock_key(&job.source);
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(lock_key)
            .fetch_one(&mut *connection)
            .await
            .map_err(|e| format!("database: {e}"))?;
        if !locked {
            return Ok(RunReport::default());
        }
        let result = self.reconcile(job).await;
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(lock_key)
            .execute(&mut *connection)
            .await;
        result.map(|gaps| RunReport { ran: true, gaps })
    }

    /// Asks the API and publishes the gaps; the number published.
    async fn reconcile(&self, job: &Job) -> Result<usize, String> {
        let pending: Vec<String> = sqlx::query_scalar(
            "SELECT process_key FROM signing_processes
             WHERE source = $1 AND status NOT IN ('completed', 'canceled', 'expired')
               AND updated_at < now() - make_interval(secs => $2)
               AND updated_at > now() - make_interval(secs => $3)
             ORDER BY updated_at
             LIMIT $4",
        )
        .bind(&job.source)
        .bind(job.config.min_age.as_secs_f64())
        .bind(job.config.look_back.as_secs_f64())
        .bind(MAX_PROCESSES_PER_RUN)
        .fetch_all(self.db.pool())
        .await
        .map_err(|e| format!("database: {e}"))?;
        let mut paths: Vec<String> = pending
            .iter()
            .map(|key| job.reconcile.process_path(key))
            .collect();
        let now = chrono::Utc::now();
        let look_back = chrono::Duration::from_std(job.config.look_back)
            .unwrap_or_else(|_| chrono::Duration::days(7));
        let from = now - look_back;
        if let Some(path) = job
            .reconcile
            .discovery_path(job.config.scope.as_deref(), from, now)
        {
            paths.push(path);
        }
        let mut gaps: Vec<Gap> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut failures = Vec::new();
        let mut pages = 0;
        while let Some(path) = paths.pop() {
            let answer = match self.fetcher.get(&job.source, &path).await {
                Some(Ok(answer)) => answer,
                Some(Err(error)) => {
                    failures.push(error.to_string());
                    continue;
                }
                None => return Err("no API configured".to_owned()),
            };
            if let Some(next) = job.reconcile.next_path_since(&path, &answer, from) {
                pages += 1;
                if pages < MAX_PAGES_PER_RUN {
                    paths.push(next);
                }
            }
            let processes = job.reconcile.processes(&answer)?;
            let known = self.known(&job.source, &processes).await?;
            for gap in job.reconcile.gaps(&answer, &known)? {
                // A process asked about and also listed by the discovery: one gap.
                if seen.insert(gap.process_key.clone()) {
                    gaps.push(gap);
                }
            }
        }
        if !gaps.is_empty() {
            self.publish(job, &gaps).await?;
        }
        match failures.first() {
            Some(first) => Err(format!(
                "{} of the API requests failed (first: {first}); {} gaps published",
                failures.len(),
                gaps.len()
            )),
            None => Ok(gaps.len()),
        }
    }

    /// The entry keys recorded for each of `processes` the archive has.
    async fn known(
        &self,
        source: &str,
        processes: &[String],
    ) -> Result<HashMap<String, HashSet<String>>, String> {
        let existing: Vec<String> = sqlx::query_scalar(
            "SELECT process_key FROM signing_processes WHERE source = $1 AND process_key = ANY($2)",
        )
        .bind(source)
        .bind(processes)
        .fetch_all(self.db.pool())
        .await
        .map_err(|e| format!("database: {e}"))?;
        let mut known: HashMap<String, HashSet<String>> = existing
            .into_iter()
            .map(|key| (key, HashSet::new()))
            .collect();
        let entries: Vec<(String, String)> = sqlx::query_as(
            "SELECT process_key, entry_key FROM activity WHERE source = $1 AND process_key = ANY($2)",
        )
        .bind(source)
        .bind(processes)
        .fetch_all(self.db.pool())
        .await
        .map_err(|e| format!("database: {e}"))?;
        for (process, entry) in entries {
            known.entry(process).or_default().insert(entry);
        }
        Ok(known)
    }

    /// Publishes each gap with confirms, as an ingester publishes a webhook.
    async fn publish(&self, job: &Job, gaps: &[Gap]) -> Result<(), String> {
        let (connection, channel) = countersign::amqp::connect(
            &self.amqp_url,
            "countersign-worker-reconcile",
            &self.topology,
        )
        .await
        .map_err(|e| format!("broker: {e}"))?;
        let result = async {
            for gap in gaps {
                let kind = if gap.unknown_process {
                    "unknown_process"
                } else {
                    "missing_activity"
                };
                let event_id = event_id(gap);
                let request_id = format!("reconcile-{}", uuid::Uuid::new_v4().simple());
                let outbound = message::message(
                    &message::Envelope {
                        provider: job.provider.name(),
                        source: &job.source,
                        event_id: &event_id,
                        event_type: gap.event_type,
                        key_label: &format!("api:{}", job.source),
                        headers: &[(message::ORIGIN, "reconciliation".to_owned())],
                        app_id: "countersign-worker-reconcile",
                    },
                    &message::Receipt {
                        request_id: &request_id,
                        received_at: std::time::SystemTime::now(),
                        content_type: Some("application/json"),
                    },
                );
                publish_confirmed(
                    &channel,
                    ShortString::from(self.topology.exchange()),
                    outbound.routing_key,
                    &gap.body,
                    outbound.properties,
                    CONFIRM_TIMEOUT,
                )
                .await
                .map_err(|e| format!("broker: {e}"))?;
                self.metrics
                    .reconcile_gaps
                    .with_label_values(&[&job.source, kind])
                    .inc();
                tracing::info!(
                    source = job.source,
                    process_key = %countersign::telemetry::Escaped(&gap.process_key),
                    event_id = %countersign::telemetry::Escaped(&event_id),
                    kind,
                    missing = gap.missing.len(),
                    "reconciliation found a gap; published"
                );
            }
            Ok(())
        }
        .await;
        let _ = channel.close(200, "done".into()).await;
        let _ = connection.close(200, "done".into()).await;
        result
    }
}

/// The advisory lock of a source's reconciliation: the first 8 bytes of a digest of its name.
pub fn lock_key(source: &str) -> i64 {
    let digest = Sha256::new()
        .chain_update(b"countersign-reconcile\0")
        .chain_update(source.as_bytes())
        .finalize();
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// `reconcile:<process>:<digest of the missing keys>`: the same gap found twice is one event.
fn event_id(gap: &Gap) -> String {
    let mut digest = Sha256::new();
    for key in &gap.missing {
        digest.update(key.as_bytes());
        digest.update([0u8]);
    }
    let digest = digest.finalize();
    format!(
        "reconcile:{}:{}",
        gap.process_key,
        countersign_providers::hex(&digest[..8])
    )
}
