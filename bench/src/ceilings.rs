//! What the machine allows, measured in the same run: the broker's publish-with-confirm rate, a
//! do-nothing HTTP endpoint's rate, PostgreSQL's single-row insert rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use countersign::amqp::publish_confirmed;
use countersign::message::{Outbound, RECEIVED_AT, REQUEST_ID};
use lapin::types::{AMQPValue, LongString, ShortString};
use lapin::{BasicProperties, Channel};

use crate::events::EventFactory;
use crate::load::Latencies;

/// What the broker ceiling publishes.
#[derive(Debug, Clone)]
pub enum Message {
    /// The ingester's very message: its routing key, properties and headers (the template, from
    /// one event verified as the ingester verifies it), with a new id, request id and receive
    /// time each.
    Contract(Box<Outbound>),
    /// Delivery mode and message id only: what the contract's headers cost the broker.
    Bare,
}

impl Message {
    pub fn next(&self, id: String) -> (ShortString, BasicProperties) {
        match self {
            Message::Bare => (
                "taktikal.bench.AllSigned".into(),
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(ShortString::from(id)),
            ),
            Message::Contract(template) => {
                let now = std::time::SystemTime::now();
                let text = |s: String| AMQPValue::LongString(LongString::from(s));
                let mut headers = template.properties.headers().clone().unwrap_or_default();
                headers.insert(
                    RECEIVED_AT.into(),
                    text(humantime::format_rfc3339_millis(now).to_string()),
                );
                headers.insert(REQUEST_ID.into(), text(uuid::Uuid::new_v4().to_string()));
                let seconds = now
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                (
                    template.routing_key.clone(),
                    template
                        .properties
                        .clone()
                        .with_message_id(ShortString::from(id))
                        .with_timestamp(seconds)
                        .with_headers(headers),
                )
            }
        }
    }
}

/// `in_flight` publishers spread over `channels` (confirm mode, one connection), each publishing
/// and awaiting its confirm in turn: what the ingester does, without HTTP and verification.
pub async fn broker(
    channels: &[Channel],
    exchange: &str,
    in_flight: usize,
    duration: Duration,
    factory: Arc<EventFactory>,
    message: &Message,
) -> anyhow::Result<Latencies> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..in_flight {
        let channel = channels[i % channels.len()].clone();
        let (factory, exchange, message) = (factory.clone(), exchange.to_owned(), message.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::new();
            while started.elapsed() < duration {
                let (id, body) = factory.mint();
                let (routing_key, properties) = message.next(id);
                let begun = Instant::now();
                publish_confirmed(
                    &channel,
                    ShortString::from(exchange.as_str()),
                    routing_key,
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

/// A document store that keeps nothing: the projection ceiling measures PostgreSQL, not files.
pub struct NoDocumentFiles;

impl countersign_worker::documents::DocumentStore for NoDocumentFiles {
    fn put<'a>(
        &'a self,
        _sha256: &'a str,
        _content: &'a [u8],
    ) -> futures_util::future::BoxFuture<'a, std::io::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn get<'a>(
        &'a self,
        _sha256: &'a str,
    ) -> futures_util::future::BoxFuture<
        'a,
        std::io::Result<Option<countersign_worker::documents::StoredContent>>,
    > {
        Box::pin(async { Ok(None) })
    }
}

#[cfg(test)]
mod tests {
    use countersign::message::{Envelope, Receipt, message};

    use super::*;

    #[test]
    fn the_contract_ceiling_publishes_the_ingesters_message_with_a_new_id() {
        let template = message(
            &Envelope {
                provider: "taktikal",
                source: "bench",
                event_id: "first",
                event_type: "AllSigned",
                key_label: "secrets[0]",
                headers: &[],
                app_id: "countersign-ingester",
            },
            &Receipt {
                request_id: "request-1",
                received_at: std::time::UNIX_EPOCH,
                content_type: Some("application/json"),
            },
        );
        let (routing_key, properties) =
            Message::Contract(Box::new(template.clone())).next("second".to_owned());
        assert_eq!(routing_key, template.routing_key);
        assert_eq!(properties.message_id().as_ref().unwrap().as_str(), "second");
        assert_eq!(properties.app_id(), template.properties.app_id());
        assert_eq!(
            properties.content_type(),
            template.properties.content_type()
        );
        assert_eq!(properties.delivery_mode(), &Some(2));
        let (before, after) = (
            template.properties.headers().clone().unwrap(),
            properties.headers().clone().unwrap(),
        );
        let keys = |t: &lapin::types::FieldTable| {
            t.inner().keys().map(|k| k.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(keys(&before), keys(&after));
        for fresh in [REQUEST_ID, RECEIVED_AT] {
            assert_ne!(
                before.inner().get(fresh),
                after.inner().get(fresh),
                "{fresh}"
            );
        }
        assert!(properties.timestamp().unwrap() > 0);

        let (_, bare) = Message::Bare.next("third".to_owned());
        assert!(bare.headers().is_none());
        assert_eq!(bare.message_id().as_ref().unwrap().as_str(), "third");
    }
}
