//! `countersign status`: is the system healthy? One look at everything an operator checks first —
//! the ingester's and the worker's readiness and versions, the spool and its quarantine, the
//! queues (depth, consumers, rates), what is parked and why, reconciliation per source, the last
//! event per source — from the admin and API ports, RabbitMQ's management API and (where
//! `DATABASE_URL` is known) PostgreSQL. Plain text for a person, `--json` for scripts; exit 0
//! when healthy, 1 when not (the problems are listed), 2 for a bad configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use countersign::config::Config;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration (queue prefix, ports, broker); without it, development mode's.
    #[arg(long, env = "COUNTERSIGN_CONFIG")]
    config: Option<PathBuf>,
    /// The ingester's admin address (default: from ingester.admin_listen).
    #[arg(long)]
    ingester_admin: Option<String>,
    /// The worker's address (default: from worker.listen).
    #[arg(long)]
    worker: Option<String>,
    /// RabbitMQ's management API; its user and password are the AMQP URL's.
    #[arg(
        long,
        env = "RABBITMQ_MANAGEMENT_URL",
        default_value = "http://127.0.0.1:15672"
    )]
    management: String,
    /// The queue prefix (default: the configuration's amqp.prefix).
    #[arg(long)]
    prefix: Option<String>,
    /// One JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
}

/// How long any one question may take.
const TIMEOUT: Duration = Duration::from_secs(5);

#[allow(clippy::print_stdout)]
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = match crate::dev::config_or_dev(args.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("countersign status: invalid configuration: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    let report = gather(&args, &config).await;
    if args.json {
        println!("{report}");
    } else {
        print!("{}", text_of(&report));
    }
    Ok(if report["healthy"] == true {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn gather(args: &Args, config: &Config) -> Value {
    let http = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .expect("an HTTP client");
    let prefix = args.prefix.clone().unwrap_or(config.amqp.prefix.clone());
    let ingester = args
        .ingester_admin
        .clone()
        .unwrap_or_else(|| crate::send::http_base(config.ingester.admin_listen));
    let worker = args
        .worker
        .clone()
        .unwrap_or_else(|| crate::send::http_base(config.worker.listen));
    let mut problems = Vec::new();

    let ingester = service(&http, &ingester, &mut problems, "ingester").await;
    let worker = service(&http, &worker, &mut problems, "worker").await;
    let queues = queues(&http, args, config, &prefix, &mut problems).await;
    let reconciliation = reconciliation(&worker, &mut problems);
    let spool = ingester_spool(&ingester, &mut problems);
    let last_events = last_events(config).await;
    json!({
        "healthy": problems.is_empty(),
        "problems": problems,
        "ingester": ingester,
        "worker": worker,
        "spool": spool,
        "queues": queues["queues"],
        "dead_letters": queues["dead_letters"],
        "reconciliation": reconciliation,
        "last_event": last_events,
    })
}

/// `/healthz` (version), `/readyz` and `/metrics` of one service at `base`.
async fn service(
    http: &reqwest::Client,
    base: &str,
    problems: &mut Vec<String>,
    name: &str,
) -> Value {
    let base = base.trim_end_matches('/');
    let get_json = |path: &str| {
        let url = format!("{base}{path}");
        async move {
            let response = http.get(&url).send().await.ok()?;
            response.json::<Value>().await.ok()
        }
    };
    let Some(health) = get_json("/healthz").await else {
        problems.push(format!("{name}: no answer at {base}/healthz"));
        return json!({ "url": base, "up": false });
    };
    let ready = get_json("/readyz").await.unwrap_or(Value::Null);
    if ready["ready"] != true && ready["status"] != "ready" && !ready_by_parts(&ready) {
        problems.push(format!("{name}: not ready ({})", compact(&ready)));
    }
    let metrics = match http.get(format!("{base}/metrics")).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    json!({
        "url": base,
        "up": true,
        "version": health["version"],
        "ready": ready,
        "metrics": samples(&metrics),
    })
}

/// The worker's `/readyz` says `{"broker": "ok", "database": "ok"}`.
fn ready_by_parts(ready: &Value) -> bool {
    ready
        .as_object()
        .is_some_and(|o| !o.is_empty() && o.values().all(|v| v == "ok" || v == true))
}

fn compact(value: &Value) -> String {
    let text = value.to_string();
    text.chars().take(200).collect()
}

/// Every sample of a Prometheus text: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter(|l| !l.contains("_bucket{"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of the samples of metric `name` whose labels include every one of `labels`.
fn sum(metrics: &Value, name: &str, labels: &[&str]) -> f64 {
    metrics
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(series, _)| {
            series.split('{').next() == Some(name) && labels.iter().all(|l| series.contains(l))
        })
        .filter_map(|(_, v)| v.as_f64())
        .sum()
}

fn ingester_spool(ingester: &Value, problems: &mut Vec<String>) -> Value {
    let spool = &ingester["ready"]["spool"];
    let quarantined = sum(
        &ingester["metrics"],
        "countersign_ingester_spool_quarantined",
        &[],
    );
    let messages = spool["messages"].as_u64().unwrap_or(0);
    if messages > 0 {
        problems.push(format!(
            "spool: {messages} webhook(s) wait for RabbitMQ (oldest {} s)",
            spool["oldest_age_seconds"]
        ));
    }
    if quarantined > 0.0 {
        problems.push(format!(
            "spool: {quarantined} message(s) in quarantine (countersign-ingester spool quarantine list)"
        ));
    }
    json!({
        "messages": messages,
        "bytes": spool["bytes"],
        "oldest_age_seconds": spool["oldest_age_seconds"],
        "quarantined": quarantined,
    })
}

/// The prefix's queues from the management API, and the first parked messages' reasons.
async fn queues(
    http: &reqwest::Client,
    args: &Args,
    config: &Config,
    prefix: &str,
    problems: &mut Vec<String>,
) -> Value {
    let management = Management::of(http, args, config);
    let (api, vhost) = (management.api.as_str(), management.vhost.as_str());
    let listed = http
        .get(format!("{api}/api/queues/{vhost}"))
        .basic_auth(&management.user, Some(&management.password))
        .send()
        .await;
    let list: Vec<Value> = match listed {
        Ok(response) if response.status().is_success() => response.json().await.unwrap_or_default(),
        Ok(response) => {
            problems.push(format!(
                "RabbitMQ management API {api}: HTTP {}",
                response.status()
            ));
            return json!({ "queues": [], "dead_letters": null });
        }
        Err(_) => {
            problems.push(format!("RabbitMQ management API {api}: no answer"));
            return json!({ "queues": [], "dead_letters": null });
        }
    };
    let own = format!("{prefix}.");
    let queues: Vec<Value> = list
        .iter()
        .filter(|q| q["name"].as_str().is_some_and(|n| n.starts_with(&own)))
        .map(|q| {
            json!({
                "name": q["name"],
                "messages": q["messages"].as_u64().unwrap_or(0),
                "consumers": q["consumers"].as_u64().unwrap_or(0),
                "in_per_second": q["message_stats"]["publish_details"]["rate"].as_f64().unwrap_or(0.0),
                "out_per_second": q["message_stats"]["deliver_get_details"]["rate"].as_f64().unwrap_or(0.0),
            })
        })
        .collect();
    let persist = format!("{prefix}.persist");
    let dead = format!("{prefix}.dead");
    let find = |name: &str| queues.iter().find(|q| q["name"] == name);
    match find(&persist) {
        None => problems.push(format!(
            "{persist}: no such queue (has a worker ever started?)"
        )),
        Some(q) if q["consumers"] == 0 => {
            problems.push(format!("{persist}: no consumer (no worker records events)"));
        }
        Some(_) => {}
    }
    let parked = find(&dead).map_or(0, |q| q["messages"].as_u64().unwrap_or(0));
    let mut reasons = Vec::new();
    if parked > 0 {
        problems.push(format!(
            "{dead}: {parked} parked message(s) (docs/operations.md#an-event-was-parked-find-it-fix-the-cause-replay-it)"
        ));
        reasons = first_parked(&management, &dead).await;
    }
    json!({
        "queues": queues,
        "dead_letters": { "count": parked, "first": reasons },
    })
}

/// RabbitMQ's management API, as the AMQP URL's user, in its virtual host.
struct Management {
    http: reqwest::Client,
    api: String,
    vhost: String,
    user: String,
    password: String,
}

impl Management {
    fn of(http: &reqwest::Client, args: &Args, config: &Config) -> Self {
        let amqp = reqwest::Url::parse(config.amqp.url.expose_secret()).ok();
        Self {
            http: http.clone(),
            api: args.management.trim_end_matches('/').to_owned(),
            user: amqp
                .as_ref()
                .map_or("guest".to_owned(), |u| u.username().to_owned()),
            password: amqp
                .as_ref()
                .and_then(|u| u.password().map(str::to_owned))
                .unwrap_or_else(|| "guest".to_owned()),
            vhost: amqp
                .as_ref()
                .map(|u| u.path().trim_start_matches('/').to_owned())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "%2f".to_owned()),
        }
    }
}

/// The first parked messages' kind, source, time and reason: a look, requeued (the parking lot's
/// delivery limit is a million looks).
async fn first_parked(management: &Management, dead: &str) -> Vec<Value> {
    let Management {
        http,
        api,
        vhost,
        user,
        password,
    } = management;
    let got = http
        .post(format!("{api}/api/queues/{vhost}/{dead}/get"))
        .basic_auth(user, Some(password))
        .json(
            &json!({"count": 3, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 1}),
        )
        .send()
        .await;
    let Ok(response) = got else {
        return Vec::new();
    };
    let messages: Vec<Value> = response.json().await.unwrap_or_default();
    messages
        .iter()
        .map(|message| {
            let headers = &message["properties"]["headers"];
            json!({
                "kind": headers["x-dead-kind"],
                "source": headers["x-source"],
                "at": headers["x-dead-at"],
                "reason": headers["x-dead-reason"].as_str().map(|r| r.chars().take(300).collect::<String>()),
            })
        })
        .collect()
}

/// `countersign_worker_reconcile_runs_total` per source and outcome.
fn reconciliation(worker: &Value, problems: &mut Vec<String>) -> Value {
    let mut by_source: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for (series, value) in worker["metrics"].as_object().into_iter().flatten() {
        let Some(labels) = series.strip_prefix("countersign_worker_reconcile_runs_total{") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|l| l.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('}').trim_end_matches('"').to_owned())
        };
        if let (Some(source), Some(outcome)) = (label("source"), label("outcome")) {
            *by_source
                .entry(source)
                .or_default()
                .entry(outcome)
                .or_default() += value.as_f64().unwrap_or(0.0);
        }
    }
    for (source, outcomes) in &by_source {
        let failed = outcomes.get("failed").copied().unwrap_or(0.0);
        let done = outcomes.get("done").copied().unwrap_or(0.0);
        if failed > 0.0 && done == 0.0 {
            problems.push(format!(
                "reconciliation of {source}: {failed} run(s) failed, none succeeded since the worker started"
            ));
        }
    }
    json!(by_source)
}

/// The newest `received_at` of each source in the archive: the sources from the
/// `(source, received_at)` index ([`countersign_worker::db::sources_of`]) and each source's
/// newest time read from its end — a few index probes per source, where `GROUP BY source`
/// reads the whole archive (97 ms against 0.5 ms at 400,000 events in 5 sources, growing with
/// it).
static LAST_EVENTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} SELECT s.source,
                (SELECT max(e.received_at) FROM webhook_events e WHERE e.source = s.source)
         FROM sources s WHERE s.source IS NOT NULL ORDER BY s.source",
        countersign_worker::db::sources_of("webhook_events")
    )
});

/// The last event received per source, where `DATABASE_URL` (or `[database] url`) is known.
async fn last_events(config: &Config) -> Value {
    let Some(url) = config.database_url.as_ref() else {
        return Value::Null;
    };
    let connect = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(TIMEOUT)
        .connect(url.expose_secret());
    let Ok(Ok(pool)) = tokio::time::timeout(TIMEOUT, connect).await else {
        return Value::Null;
    };
    let rows: Vec<(String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(LAST_EVENTS.as_str())
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
    pool.close().await;
    rows.into_iter()
        .map(|(source, at)| {
            (
                source,
                Value::String(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The report for a person.
fn text_of(report: &Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let problems = report["problems"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(
        out,
        "Countersign: {}",
        if problems.is_empty() {
            "healthy".to_owned()
        } else {
            format!("NOT HEALTHY ({} problem(s))", problems.len())
        }
    );
    for name in ["ingester", "worker"] {
        let service = &report[name];
        let state = if service["up"] != true {
            "down".to_owned()
        } else {
            format!(
                "up, version {}, ready {}",
                service["version"].as_str().unwrap_or("?"),
                compact(&service["ready"])
            )
        };
        let _ = writeln!(
            out,
            "{name:<10}{}  {state}",
            service["url"].as_str().unwrap_or("")
        );
    }
    let spool = &report["spool"];
    let _ = writeln!(
        out,
        "spool     {} message(s), {} byte(s), oldest {} s; quarantine {}",
        spool["messages"], spool["bytes"], spool["oldest_age_seconds"], spool["quarantined"]
    );
    for queue in report["queues"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "queue     {}: {} message(s), {} consumer(s), in {:.1}/s, out {:.1}/s",
            queue["name"].as_str().unwrap_or(""),
            queue["messages"],
            queue["consumers"],
            queue["in_per_second"].as_f64().unwrap_or(0.0),
            queue["out_per_second"].as_f64().unwrap_or(0.0)
        );
    }
    for parked in report["dead_letters"]["first"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let _ = writeln!(
            out,
            "parked    {} {} at {}: {}",
            parked["kind"].as_str().unwrap_or("?"),
            parked["source"].as_str().unwrap_or("?"),
            parked["at"].as_str().unwrap_or("?"),
            parked["reason"].as_str().unwrap_or("")
        );
    }
    for (source, outcomes) in report["reconciliation"].as_object().into_iter().flatten() {
        let _ = writeln!(out, "reconcile {source}: {}", compact(outcomes));
    }
    for (source, at) in report["last_event"].as_object().into_iter().flatten() {
        let _ = writeln!(out, "last      {source}: {}", at.as_str().unwrap_or(""));
    }
    for problem in problems {
        let _ = writeln!(out, "problem   {}", problem.as_str().unwrap_or(""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walk over the sources gives what `GROUP BY source` gives: every source, its newest
    /// time, in order — also for sources of one event and sources around the others.
    #[tokio::test]
    async fn the_last_event_of_each_source_is_what_grouping_the_archive_gives() {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&countersign_testkit::database_url())
            .await
            .expect("PostgreSQL on DATABASE_URL");
        let schema = format!("status_{}", uuid::Uuid::new_v4().simple());
        for statement in [
            format!("CREATE SCHEMA {schema}"),
            format!("SET search_path TO {schema}"),
            "CREATE TABLE webhook_events (source TEXT COLLATE \"C\" NOT NULL, received_at TIMESTAMPTZ NOT NULL)".to_owned(),
            "CREATE INDEX webhook_events_by_time ON webhook_events (source, received_at)".to_owned(),
        ] {
            sqlx::query(&statement).execute(&pool).await.unwrap();
        }
        let empty: Vec<(String, chrono::DateTime<chrono::Utc>)> =
            sqlx::query_as(LAST_EVENTS.as_str())
                .fetch_all(&pool)
                .await
                .unwrap();
        assert!(empty.is_empty());
        sqlx::query(
            "INSERT INTO webhook_events
             SELECT s, now() - (n * interval '1 minute') - (length(s) * interval '1 hour')
             FROM unnest(ARRAY['Zeta', 'acme', 'acme-2', 'b', 'zz']) AS s, generate_series(1, 50) AS n
             WHERE s <> 'b' OR n = 7",
        )
        .execute(&pool)
        .await
        .unwrap();
        let walked: Vec<(String, chrono::DateTime<chrono::Utc>)> =
            sqlx::query_as(LAST_EVENTS.as_str())
                .fetch_all(&pool)
                .await
                .unwrap();
        let grouped: Vec<(String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
            "SELECT source, max(received_at) FROM webhook_events GROUP BY source ORDER BY source",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(walked.len(), 5);
        assert_eq!(walked, grouped);
    }
}
