//! The worker's HTTP port: the read API in the shape of Taktikal's ActivityLog, documents, and
//! `/healthz`, `/readyz`, `/metrics`.
//!
//! - `GET /signing/activity/{processKey}[?source=S]` → `[{processKey, activityLog, signees, ...}]`
//! - `GET /signing/activity?source=S&StartDate=T&EndDate=T[&Take=N&Skip=N]` → the processes with
//!   activity in `[StartDate, EndDate)` (`from` / `to` are accepted too), newest first.
//! - `GET /documents/{sha256}` → the stored bytes, streamed.
//!
//! Each process also carries `source`, `status`, `verified`, `metadata` and `documents` besides
//! Taktikal's three fields: `verified` is `signature+api` where the provider's API confirmed the
//! final state before it was recorded, else `signature`; and `unconfirmed: true` where its
//! provider's credential does not prove what its events say (`Provider::proves_content`:
//! Dropbox Sign, Documenso, Adobe Acrobat Sign, Legalesign's event callback) and the API has not
//! confirmed it. A process's activity log is paged: `activityTake` entries (default and most
//! 1,000) after `activitySkip`, oldest first; `activityTotal` says how many there are.
//! Times are written as Taktikal writes them: `2019-11-08T11:03:49.0700000Z`. The API serves
//! personal data: when `worker.api_tokens` is set it requires `Authorization: Bearer <token>`
//! (compared in constant time); without tokens, keep the port private.

use std::sync::Arc;

use actix_web::http::header::{AUTHORIZATION, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use countersign::config::Secret;
use countersign_providers::ProviderKind;
use countersign_providers::event::ProcessStatus;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::consumer::Consumer;
use crate::db::Db;
use crate::documents::DocumentStore;
use crate::metrics::Metrics;

pub struct ApiState {
    pub db: Db,
    pub documents: Arc<dyn DocumentStore>,
    pub consumer: Arc<Consumer>,
    pub metrics: Metrics,
    pub tokens: Vec<Secret>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/signing/activity", web::get().to(activity_between))
        .route(
            "/signing/activity/{process_key}",
            web::get().to(activity_of),
        )
        .route("/documents/{id}", web::get().to(document));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

async fn readyz(state: web::Data<ApiState>) -> HttpResponse {
    let broker = state.consumer.is_consuming();
    let database = state.db.ping().await;
    let body =
        serde_json::json!({ "ready": broker && database, "broker": broker, "database": database });
    if broker && database {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

fn error(status: actix_web::http::StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": message }))
}

/// The answer to a read that PostgreSQL refused. Text it cannot hold (a NUL byte in a key, a
/// source or an id: SQLSTATE 22021) is the request's fault and names no row, so a 400 without
/// a log line — not a 503 and an ERROR line per hostile request; anything else is the database
/// being unavailable.
fn query_failed(what: &str, e: &sqlx::Error) -> HttpResponse {
    let code = e.as_database_error().and_then(|d| d.code());
    if code.as_deref() == Some(UNREPRESENTABLE_TEXT) {
        return error(
            actix_web::http::StatusCode::BAD_REQUEST,
            "the request holds text no record can hold (a NUL byte)",
        );
    }
    tracing::error!(error = %e, "{what} query failed");
    error(
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        "database unavailable",
    )
}

/// PostgreSQL's `character_not_in_repertoire`: a NUL byte in a `text` parameter.
const UNREPRESENTABLE_TEXT: &str = "22021";

/// `None` when the request may proceed, else the 401 to send.
fn unauthorized(request: &HttpRequest, tokens: &[Secret]) -> Option<HttpResponse> {
    if tokens.is_empty() {
        return None;
    }
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Every token is compared, so timing does not tell which (or whether one) came close.
    let matched = tokens.iter().fold(subtle::Choice::from(0), |any, t| {
        any | t.expose().ct_eq(presented.as_bytes())
    });
    if bool::from(matched) {
        None
    } else {
        Some(
            HttpResponse::Unauthorized()
                .insert_header(("WWW-Authenticate", "Bearer"))
                .json(serde_json::json!({ "error": "a valid bearer token is required" })),
        )
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessView {
    pub process_key: String,
    pub source: String,
    pub status: String,
    /// `signature+api` where the provider's API confirmed the process's final state before it
    /// was recorded, else `signature`.
    pub verified: &'static str,
    /// Present (true) where the provider's credential does not prove the events' content and
    /// the API has not confirmed the state.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unconfirmed: bool,
    /// Provider-specific facts (Taktikal's `Meta`).
    pub metadata: serde_json::Value,
    pub activity_log: Vec<ActivityView>,
    /// Entries in the whole activity log; `activityLog` holds one page of them.
    pub activity_total: i64,
    pub signees: Vec<SigneeView>,
    pub documents: Vec<DocumentView>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivityView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_key: Option<String>,
    pub process_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signee_key: Option<String>,
    pub status: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(serialize_with = "taktikal_time")]
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

from_row!(ActivityView {
    flow_key,
    process_key,
    signee_key,
    status,
    description,
    file_name,
    created_at,
    created_by
});

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SigneeView {
    pub process_key: String,
    pub signee_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub signed: bool,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "taktikal_time_opt"
    )]
    pub signed_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "taktikal_time")]
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    #[serde(serialize_with = "taktikal_time")]
    pub updated_at: DateTime<Utc>,
}

from_row!(SigneeView {
    process_key,
    signee_key,
    ssn,
    name,
    address,
    postal_code,
    city,
    phone,
    email,
    signed,
    signed_at,
    created_at,
    created_by,
    updated_at
});

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentView {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// The sha256 of a stored document: `GET /documents/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment_type: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signee_key: Option<String>,
    /// A downloaded document's provenance: the path under the source's `api.base_url` it was
    /// downloaded from, and when (with `id`, its sha256).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetched_from: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "taktikal_time_opt"
    )]
    pub fetched_at: Option<DateTime<Utc>>,
}

from_row!(DocumentView {
    kind,
    file_name,
    id,
    content_type,
    size,
    url,
    attachment_type,
    signee_key,
    fetched_from,
    fetched_at
});

/// Taktikal's time format: seven fractional digits, `Z`.
pub fn format_taktikal_time(time: &DateTime<Utc>) -> String {
    format!(
        "{}.{:07}Z",
        time.format("%Y-%m-%dT%H:%M:%S"),
        time.timestamp_subsec_nanos() / 100
    )
}

fn taktikal_time<S: serde::Serializer>(
    time: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_taktikal_time(time))
}

fn taktikal_time_opt<S: serde::Serializer>(
    time: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => taktikal_time(time, serializer),
        None => serializer.serialize_none(),
    }
}

/// The page of each process's activity log in a response (`activityTake`, `activitySkip`; not
/// a flattened struct: serde's `flatten` cannot read numbers from a query string).
#[derive(Debug, Clone, Copy)]
struct ActivityPage {
    take: Option<i64>,
    skip: Option<i64>,
}

impl ActivityPage {
    const MAX: i64 = 1000;

    fn limit_offset(self) -> (i64, i64) {
        (
            self.take.unwrap_or(Self::MAX).clamp(1, Self::MAX),
            self.skip.unwrap_or(0).max(0),
        )
    }
}

#[derive(Deserialize)]
struct SourceQuery {
    source: Option<String>,
    #[serde(rename = "activityTake", alias = "ActivityTake")]
    activity_take: Option<i64>,
    #[serde(rename = "activitySkip", alias = "ActivitySkip")]
    activity_skip: Option<i64>,
}

/// A process by source and key: one primary-key lookup.
const PROCESS_IN_SOURCE: &str =
    "SELECT source, process_key, status, metadata, provider, api_confirmed FROM signing_processes
     WHERE source = $1 AND process_key = $2";

/// A process by key in every source that has it, by source: the sources from the primary key
/// ([`crate::db::sources_of`]) and the key looked up in each — a few index probes per source,
/// where `WHERE process_key = $1` alone reads every process (30 ms against 0.5 ms at 200,000
/// processes in 5 sources, growing with the table; `bench/postgresql/plans-issue-32.txt`).
static PROCESS_IN_EVERY_SOURCE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} SELECT p.source, p.process_key, p.status, p.metadata, p.provider, p.api_confirmed
         FROM sources s JOIN signing_processes p ON p.source = s.source AND p.process_key = $1
         ORDER BY p.source",
        crate::db::sources_of("signing_processes")
    )
});

async fn activity_of(
    request: HttpRequest,
    process_key: web::Path<String>,
    query: web::Query<SourceQuery>,
    state: web::Data<ApiState>,
) -> HttpResponse {
    if let Some(denied) = unauthorized(&request, &state.tokens) {
        return denied;
    }
    let keys: Result<Vec<ProcessRow>, _> = match query.source.as_deref() {
        Some(source) => sqlx::query_as(PROCESS_IN_SOURCE).bind(source),
        None => sqlx::query_as(PROCESS_IN_EVERY_SOURCE.as_str()),
    }
    .bind(process_key.as_str())
    .fetch_all(state.db.pool())
    .await;
    let page = ActivityPage {
        take: query.activity_take,
        skip: query.activity_skip,
    };
    respond(&state, keys, page, true).await
}

#[derive(Deserialize)]
struct RangeQuery {
    source: Option<String>,
    #[serde(rename = "StartDate", alias = "from", alias = "startDate")]
    start: Option<DateTime<Utc>>,
    #[serde(rename = "EndDate", alias = "to", alias = "endDate")]
    end: Option<DateTime<Utc>>,
    #[serde(rename = "Take", alias = "take")]
    take: Option<i64>,
    #[serde(rename = "Skip", alias = "skip")]
    skip: Option<i64>,
    #[serde(rename = "activityTake", alias = "ActivityTake")]
    activity_take: Option<i64>,
    #[serde(rename = "activitySkip", alias = "ActivitySkip")]
    activity_skip: Option<i64>,
}

async fn activity_between(request: HttpRequest, state: web::Data<ApiState>) -> HttpResponse {
    if let Some(denied) = unauthorized(&request, &state.tokens) {
        return denied;
    }
    let query = match web::Query::<RangeQuery>::from_query(request.query_string()) {
        Ok(query) => query.into_inner(),
        Err(e) => {
            return error(
                actix_web::http::StatusCode::BAD_REQUEST,
                &format!("bad query: {e}"),
            );
        }
    };
    let take = query.take.unwrap_or(100).clamp(1, 1000);
    let skip = query.skip.unwrap_or(0).max(0);
    let keys: Result<Vec<ProcessRow>, _> = sqlx::query_as(
        "SELECT p.source, p.process_key, p.status, p.metadata, p.provider, p.api_confirmed
         FROM signing_processes p
         WHERE ($1::text IS NULL OR p.source = $1)
           AND EXISTS (SELECT 1 FROM activity a
                       WHERE a.source = p.source AND a.process_key = p.process_key
                         AND ($2::timestamptz IS NULL OR a.created_at >= $2)
                         AND ($3::timestamptz IS NULL OR a.created_at < $3))
         ORDER BY p.updated_at DESC, p.source, p.process_key
         LIMIT $4 OFFSET $5",
    )
    .bind(query.source.as_deref())
    .bind(query.start)
    .bind(query.end)
    .bind(take)
    .bind(skip)
    .fetch_all(state.db.pool())
    .await;
    let page = ActivityPage {
        take: query.activity_take,
        skip: query.activity_skip,
    };
    respond(&state, keys, page, false).await
}

/// Source, process key, status, metadata.
type ProcessRow = (
    String,
    String,
    String,
    serde_json::Value,
    String,
    Option<String>,
);

async fn respond(
    state: &ApiState,
    keys: Result<Vec<ProcessRow>, sqlx::Error>,
    page: ActivityPage,
    not_found_if_empty: bool,
) -> HttpResponse {
    let keys = match keys {
        Ok(keys) => keys,
        Err(e) => return query_failed("activity", &e),
    };
    if keys.is_empty() && not_found_if_empty {
        return error(
            actix_web::http::StatusCode::NOT_FOUND,
            "no such signing process",
        );
    }
    let mut views = Vec::with_capacity(keys.len());
    for row in keys {
        match load_process(&state.db, row, page).await {
            Ok(view) => views.push(view),
            Err(e) => return query_failed("activity", &e),
        }
    }
    HttpResponse::Ok().json(views)
}

async fn load_process(
    db: &Db,
    (source, process_key, status, metadata, provider, api_confirmed): ProcessRow,
    page: ActivityPage,
) -> Result<ProcessView, sqlx::Error> {
    let (limit, offset) = page.limit_offset();
    // Entries with one time in the order their delivery lists them (`position`); rows written
    // before `position` existed have 0 there and keep the order they were written in (`id`).
    let activity_log = sqlx::query_as::<_, ActivityView>(
        "SELECT flow_key, process_key, signee_key, status, description, file_name, created_at, created_by
         FROM activity WHERE source = $1 AND process_key = $2 ORDER BY created_at, position, id, entry_key
         LIMIT $3 OFFSET $4",
    )
    .bind(&source)
    .bind(&process_key)
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let activity_total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM activity WHERE source = $1 AND process_key = $2")
            .bind(&source)
            .bind(&process_key)
            .fetch_one(db.pool())
            .await?;
    let signees = sqlx::query_as::<_, SigneeView>(
        "SELECT s.process_key, s.signee_key, s.ssn, s.name, s.address, s.postal_code, s.city, s.phone, s.email,
                s.signed, s.signed_at, s.created_at, initcap(p.provider) AS created_by, s.updated_at
         FROM signees s JOIN signing_processes p USING (source, process_key)
         WHERE s.source = $1 AND s.process_key = $2 ORDER BY s.created_at, s.signee_key",
    )
    .bind(&source)
    .bind(&process_key)
    .fetch_all(db.pool())
    .await?;
    let documents = sqlx::query_as::<_, DocumentView>(
        "SELECT kind, NULLIF(file_name, '') AS file_name, sha256 AS id, content_type, size, url, attachment_type, signee_key,
                fetched_from, fetched_at
         FROM documents WHERE source = $1 AND process_key = $2 ORDER BY kind, file_name, content_key",
    )
    .bind(&source)
    .bind(&process_key)
    .fetch_all(db.pool())
    .await?;
    let confirmed = confirms(api_confirmed.as_deref(), &status);
    let unconfirmed =
        !confirmed && ProviderKind::from_name(&provider).is_some_and(|p| !p.proves_content());
    Ok(ProcessView {
        process_key,
        source,
        status,
        verified: if confirmed {
            "signature+api"
        } else {
            "signature"
        },
        unconfirmed,
        metadata,
        activity_log,
        activity_total,
        signees,
        documents,
    })
}

/// Whether the state the provider's API confirmed (`api_confirmed`) confirms `status`.
fn confirms(api_confirmed: Option<&str>, status: &str) -> bool {
    let parse = |text: &str| ProcessStatus::ALL.into_iter().find(|s| s.as_str() == text);
    match (api_confirmed.and_then(parse), parse(status)) {
        (Some(confirmed), Some(status)) => status.confirmed_by(confirmed),
        _ => false,
    }
}

async fn document(
    request: HttpRequest,
    id: web::Path<String>,
    state: web::Data<ApiState>,
) -> HttpResponse {
    if let Some(denied) = unauthorized(&request, &state.tokens) {
        return denied;
    }
    let not_found = || error(actix_web::http::StatusCode::NOT_FOUND, "no such document");
    let content_type: Option<String> =
        // Only contents that a committed document row references: an event that was parked, or
        // whose transaction failed, never makes its attachment downloadable.
        match sqlx::query_scalar(
            "SELECT s.content_type FROM stored_documents s
             WHERE s.sha256 = $1 AND EXISTS (SELECT 1 FROM documents d WHERE d.sha256 = s.sha256)",
        )
            .bind(id.as_str())
            .fetch_optional(state.db.pool())
            .await
        {
            Ok(found) => found,
            Err(e) => return query_failed("document", &e),
        };
    let Some(content_type) = content_type else {
        return not_found();
    };
    match state.documents.get(&id).await {
        // The content type is the provider's claim: a browser must not render it (an "XML"
        // attachment with a <script>), only save it.
        Ok(Some(content)) => HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, content_type))
            .insert_header((
                actix_web::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}\""),
            ))
            .insert_header((actix_web::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((
                actix_web::http::header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; sandbox",
            ))
            .no_chunking(content.size)
            .streaming(
                content
                    .stream
                    .map(|chunk| chunk.map_err(actix_web::error::ErrorInternalServerError)),
            ),
        Ok(None) => {
            tracing::error!(document = %id, "document recorded but missing from the store");
            not_found()
        }
        Err(e) => {
            tracing::error!(error = %e, "document store failed");
            error(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                "document store unavailable",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::confirms;

    #[test]
    fn verified_means_the_api_confirmed_the_state_the_process_is_in() {
        assert!(confirms(Some("all_signed"), "all_signed"));
        assert!(confirms(Some("all_signed"), "completed"));
        assert!(confirms(Some("canceled"), "canceled"));
        assert!(!confirms(Some("canceled"), "completed"));
        assert!(!confirms(None, "completed"));
        assert!(!confirms(Some("nonsense"), "completed"));
    }
}
