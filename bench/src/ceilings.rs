//! What the machine allows, measured in the same run: the broker's publish-with-confirm rate, a
//! do-nothing HTTP endpoint's rate, PostgreSQL's single-row insert rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use countersign::amqp::publish_confirmed;
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel};

use crate::events::EventFactory;
use crate::load::Latencies;

/// `in_flight` publishers spread over `channels` (confirm mode, one connection), each publishing
/// and awaiting its confirm in turn: what the ingester does, without HTTP and verification.
pub async fn broker(
    channels: &[Channel],
    exchange: &str,
    in_flight: usize,
    duration: Duration,
    factory: Arc<EventFactory>,
) -> anyhow::Result<Latencies> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..in_flight {
        let channel = channels[i % channels.len()].clone();
        let (factory, exchange) = (factory.clone(), exchange.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::new();
            while started.elapsed() < duration {
                let (id, body) = factory.mint();
                let properties = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(ShortString::from(id));
                let begun = Instant::now();
                publish_confirmed(
                    &channel,
                    ShortString::from(exchange.as_str()),
                    "taktikal.bench.AllSigned".into(),
                    &body,
                    properties,
                    Duration::from_secs(30),
                )
                .await?;
                latencies.record(begun.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Latencies::new();
    for task in tasks {
        all.merge(&task.await??);
    }
    all.elapsed = started.elapsed();
    Ok(all)
}

/// A minimal actix-web endpoint that reads the whole body and replies 200: the HTTP ceiling.
/// Runs in its own process (`bench http-sink`), like the ingester.
pub async fn http_sink() -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    // The parent reads the port from this line.
    let port = listener.local_addr()?.port();
    std::io::Write::write_all(&mut std::io::stdout(), format!("port {port}\n").as_bytes())?;
    HttpServer::new(|| {
        App::new()
            .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
            .route(
                "/webhooks/{source}",
                web::post().to(|body: web::Bytes| async move {
                    HttpResponse::Ok()
                        .json(serde_json::json!({ "status": "accepted", "bytes": body.len() }))
                }),
            )
    })
    .listen(listener)?
    .run()
    .await?;
    Ok(())
}

/// `n` rows of `body_bytes` inserted with `concurrency` connections, `rows_per_statement` per
/// statement (one transaction each, `INSERT … SELECT FROM unnest(…)` as the worker's batches):
/// the archive table's ceiling, with 1 as a transaction per event and 64 as the worker's batch.
/// How the PostgreSQL ceiling writes its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// One `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING` per statement (the worker's
    /// way).
    Unnest,
    /// `COPY` into a session's temporary staging table, then one `INSERT … SELECT … ON CONFLICT
    /// DO NOTHING` from it, in one transaction.
    CopyMerge,
}

/// `n` archive-like rows (2 KiB body, text id with a unique index, jsonb headers) from
/// `concurrency` connections, `rows_per_statement` per statement.
pub async fn postgres(
    url: &str,
    n: usize,
    concurrency: usize,
    body_bytes: usize,
    rows_per_statement: usize,
    insert: Insert,
) -> anyhow::Result<Latencies> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(u32::try_from(concurrency)?)
        .after_connect(|connection, _| {
            Box::pin(async move {
                sqlx::query("CREATE TEMP TABLE bench_staging (event_id TEXT, body BYTEA, headers JSONB) ON COMMIT DELETE ROWS")
                    .execute(connection)
                    .await
                    .map(|_| ())
            })
        })
        .connect(url)
        .await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS bench_inserts (id BIGSERIAL PRIMARY KEY, event_id TEXT UNIQUE NOT NULL, body BYTEA NOT NULL, headers JSONB NOT NULL)")
        .execute(&pool)
        .await?;
    let body = Arc::new(vec![b'x'; body_bytes]);
    let headers = serde_json::json!({ "x-source": "bench", "x-provider": "taktikal" });
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (pool, body, headers) = (pool.clone(), body.clone(), headers.clone());
        let share = n / concurrency + usize::from(worker < n % concurrency);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::new();
            let mut left = share;
            while left > 0 {
                let rows = left.min(rows_per_statement.max(1));
                left -= rows;
                let begun = Instant::now();
                let ids: Vec<String> = (0..rows)
                    .map(|_| uuid::Uuid::new_v4().to_string())
                    .collect();
                match insert {
                    Insert::Unnest => {
                        sqlx::query(
                            "INSERT INTO bench_inserts (event_id, body, headers)
                             SELECT * FROM unnest($1::text[], $2::bytea[], $3::jsonb[])
                             ON CONFLICT (event_id) DO NOTHING",
                        )
                        .bind(ids)
                        .bind(vec![body.as_slice(); rows])
                        .bind(vec![headers.clone(); rows])
                        .execute(&pool)
                        .await?;
                    }
                    Insert::CopyMerge => copy_merge(&pool, &ids, &body, &headers).await?,
                }
                // One latency per row, so that the rate counts rows.
                for _ in 0..rows {
                    latencies.record(begun.elapsed());
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Latencies::new();
    for task in tasks {
        all.merge(&task.await??);
    }
    all.elapsed = started.elapsed();
    sqlx::query("DROP TABLE bench_inserts")
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(all)
}

/// One transaction: the rows `COPY`'d (text format) into the staging table, then merged.
async fn copy_merge(
    pool: &sqlx::PgPool,
    ids: &[String],
    body: &[u8],
    headers: &serde_json::Value,
) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let headers = headers.to_string();
    let mut text = String::with_capacity(ids.len() * (body.len() * 2 + 128));
    for id in ids {
        // bytea in hex, its backslash escaped for COPY's text format.
        text.push_str(id);
        text.push_str("\t\\\\x");
        for byte in body {
            let _ = write!(text, "{byte:02x}");
        }
        text.push('\t');
        text.push_str(&headers);
        text.push('\n');
    }
    let mut tx = pool.begin().await?;
    let mut copy = tx
        .copy_in_raw("COPY bench_staging (event_id, body, headers) FROM STDIN")
        .await?;
    copy.send(text.into_bytes()).await?;
    copy.finish().await?;
    sqlx::query(
        "INSERT INTO bench_inserts (event_id, body, headers)
         SELECT event_id, body, headers FROM bench_staging
         ON CONFLICT (event_id) DO NOTHING",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
