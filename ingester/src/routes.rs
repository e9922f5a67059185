//! `POST /webhooks/{source}`: read the body within the source's limit, verify it, publish it,
//! reply.
//!
//! | outcome | reply |
//! |---|---|
//! | confirmed by the broker | 200 |
//! | not confirmed (broker down, blocked, nack, confirm timeout, channel error), then fsync'd to the spool | 200 |
//! | unknown source | 404 |
//! | body over the limit | 413 |
//! | body bytes in flight over `max_body_bytes_in_flight` | 503 + `Retry-After` |
//! | signature missing, wrong, stale or replayed with another body | 401 |
//! | genuine, but a forwarded header over 1 KiB, 8 KiB of them, or a message the broker's frame cannot hold | 431 (nothing published or spooled) |
//! | a body the provider must stop sending (Taktikal: not JSON) | the provider's code (406) |
//! | not confirmed and the spool full, too old, failing or off | 503 + `Retry-After` |
//!
//! Error bodies are `{"error": "..."}` and never echo the payload or a secret.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use actix_web::http::StatusCode;
use actix_web::http::header::{
    CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use countersign::message::{Receipt, outbound};
use countersign_providers::{Headers, Origin, Rejection, Reply, Source, Sources};
use futures_util::StreamExt;

use crate::broker::{Broker, PublishError};
use crate::limits::{BodyBudget, BodyHold, ReadCredit};
use crate::log_limit::{LogLimit, Verdict};
use crate::metrics::{Metrics, UNKNOWN_SOURCE};
use crate::spool::{self, Spool, SpoolError};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What every webhook request needs, shared by all workers.
pub struct WebhookState {
    /// Replaced whole by a configuration reload; a request keeps the sources it started with.
    pub sources: arc_swap::ArcSwap<Sources>,
    pub broker: Arc<Broker>,
    pub metrics: Metrics,
    /// `Retry-After` value sent with a 503, in whole seconds.
    pub retry_after: HeaderValue,
    /// Body bytes held by all requests at once.
    pub budget: BodyBudget,
    /// The limit of a source that does not set its own (`ingester.max_body_bytes`).
    pub default_max_body_bytes: usize,
    /// Where a webhook the broker did not confirm is kept; `None` when the spool is off.
    pub spool: Option<Arc<Spool>>,
    /// Log lines of refused requests, a few a second per outcome.
    pub log_limit: LogLimit,
    /// `ingester.trusted_proxies`: peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<countersign::config::IpNet>,
}

/// How a webhook was made safe.
enum Kept {
    /// Confirmed by the broker.
    Confirmed,
    /// On this ingester's disk, to be drained into the broker.
    Spooled,
}

/// Why a request did not end in a 200.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("the request body could not be read")]
    Unreadable,
    #[error("too many request bodies in flight; retry later")]
    OverBudget,
    /// The broker would close its connection for this message: never sent, never spooled.
    #[error(transparent)]
    DoesNotFit(#[from] countersign::amqp::FrameTooLarge),
    #[error(transparent)]
    Unavailable(#[from] PublishError),
    #[error("{publish}; and not spooled: {spool}")]
    Unspooled {
        publish: PublishError,
        spool: SpoolError,
    },
}

impl Failure {
    fn label(&self) -> &'static str {
        match self {
            Failure::Rejected(r) => r.label(),
            Failure::Unreadable => "unreadable",
            Failure::OverBudget => "over_budget",
            Failure::DoesNotFit(_) => "frame_too_large",
            Failure::Unavailable(e) => e.label(),
            Failure::Unspooled { spool, .. } => spool.label(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Failure::Rejected(r) => {
                StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST)
            }
            Failure::Unreadable => StatusCode::BAD_REQUEST,
            Failure::DoesNotFit(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Failure::OverBudget | Failure::Unavailable(_) | Failure::Unspooled { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// What the caller is told; for broker trouble, not our internals.
    fn public_message(&self) -> String {
        match self {
            Failure::Unavailable(_) | Failure::Unspooled { .. } => {
                "temporarily unable to accept the event; retry later".to_owned()
            }
            other => other.to_string(),
        }
    }
}

struct ActixHeaders<'a>(&'a HeaderMap);

impl Headers for ActixHeaders<'_> {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(HeaderValue::as_bytes)
    }
}

pub async fn receive_webhook(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<WebhookState>,
) -> HttpResponse {
    // `/webhooks/{source}` or `/webhooks/{source}/{token}`, matched by hand (see startup), POST
    // only. The token is for sources authenticated by their URL (Legalesign's event callback).
    let (source, path_token) = source_of(request.path());
    if source.is_empty() || path_token.is_some_and(|t| t.is_empty() || t.contains('/')) {
        return not_found(request).await;
    }
    if request.method() == actix_web::http::Method::GET
        && let Some(response) = answer_get(&request, &state, source, path_token)
    {
        return response;
    }
    if request.method() != actix_web::http::Method::POST {
        return HttpResponse::MethodNotAllowed()
            .insert_header((actix_web::http::header::ALLOW, "POST"))
            .insert_header((REQUEST_ID, request_id(request.headers())))
            .json(serde_json::json!({ "error": "use POST" }));
    }
    let credit = request.conn_data::<Arc<ReadCredit>>().cloned();
    if let Some(credit) = &credit {
        credit.request_started();
    }
    let started = Instant::now();
    let received_at = SystemTime::now();
    let request_id = request_id(request.headers());
    state.metrics.in_flight.inc();

    let sources = state.sources.load_full();
    let source = sources.get(source);
    let label = source.as_ref().map_or(UNKNOWN_SOURCE, |s| s.name());
    let result = match source {
        Ok(source) => {
            let query = request.query_string();
            let origin = Origin {
                path_token,
                query: (!query.is_empty()).then_some(query),
                peer: client_address(&request, &state),
            };
            accept(
                &state,
                (&sources, source),
                &request,
                payload,
                origin,
                &request_id,
                received_at,
            )
            .await
        }
        Err(rejection) => Err(Failure::Rejected(rejection)),
    };

    let elapsed = started.elapsed();
    state.metrics.in_flight.dec();
    state
        .metrics
        .request_seconds
        .with_label_values(&[label])
        .observe(elapsed.as_secs_f64());
    let mut response = match result {
        Ok((event_id, kept, reply)) => {
            accepted(&state, label, &request_id, &event_id, kept, elapsed, reply)
        }
        Err(failure) => not_accepted(&state, label, &request_id, failure),
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// The reply to a webhook that was confirmed or spooled, counted and logged.
fn accepted(
    state: &WebhookState,
    label: &str,
    request_id: &str,
    event_id: &str,
    kept: Kept,
    elapsed: std::time::Duration,
    reply: Reply,
) -> HttpResponse {
    let outcome = match kept {
        Kept::Confirmed => "accepted",
        Kept::Spooled => "spooled",
    };
    state
        .metrics
        .requests
        .with_label_values(&[label, outcome])
        .inc();
    // The id comes from the payload (Taktikal's is not even signed): escaped.
    let event_id = countersign::telemetry::Escaped(event_id);
    tracing::info!(source = label, event_id = %event_id, request_id = %request_id, outcome, elapsed_ms = elapsed.as_millis() as u64, "webhook accepted");
    reply_response(reply)
}

/// The reply to a webhook that was not accepted (refused, or not kept: 503), counted and
/// logged within the log limit; a provider's endpoint check is answered as it asks.
fn not_accepted(
    state: &WebhookState,
    label: &str,
    request_id: &str,
    failure: Failure,
) -> HttpResponse {
    if let Failure::Rejected(Rejection::Handshake(reply)) = failure {
        state
            .metrics
            .requests
            .with_label_values(&[label, "handshake"])
            .inc();
        tracing::info!(source = label, request_id = %request_id, "endpoint check by the provider answered; nothing published");
        return reply_response(reply);
    }

    state
        .metrics
        .requests
        .with_label_values(&[label, failure.label()])
        .inc();
    let status = failure.status();
    let outcome = failure.label();
    if status.is_server_error() && !matches!(failure, Failure::OverBudget) {
        // A verified webhook lost to the broker and the spool: always logged.
        tracing::error!(source = label, request_id = %request_id, outcome, error = %failure, "webhook not accepted: the broker did not confirm it and it was not spooled");
    } else if let Verdict::Log { suppressed } = state.log_limit.check(outcome) {
        // What any client can cause: a few lines a second per outcome.
        if matches!(failure, Failure::OverBudget) {
            tracing::warn!(source = label, request_id = %request_id, outcome, suppressed, "webhook refused: body bytes in flight at ingester.max_body_bytes_in_flight");
        } else {
            tracing::warn!(source = label, request_id = %request_id, outcome, status = status.as_u16(), suppressed, "webhook refused");
        }
    }
    let mut builder = HttpResponse::build(status);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        builder.insert_header((RETRY_AFTER, state.retry_after.clone()));
    }
    builder.json(serde_json::json!({ "error": failure.public_message() }))
}

/// The client's address: the TCP peer, or behind `ingester.trusted_proxies` what they say.
fn client_address(request: &HttpRequest, state: &WebhookState) -> Option<std::net::IpAddr> {
    crate::forwarded::client_address(
        request.peer_addr().map(|a| a.ip()),
        request.headers(),
        &state.trusted_proxies,
    )
}

/// A `GET` to a source whose provider sends one (Adobe Acrobat Sign's verification of intent);
/// `None` for any other (405). Nothing is published.
fn answer_get(
    request: &HttpRequest,
    state: &WebhookState,
    source: &str,
    path_token: Option<&str>,
) -> Option<HttpResponse> {
    let sources = state.sources.load();
    let source = sources.get(source).ok()?;
    let origin = Origin {
        path_token,
        query: None,
        peer: client_address(request, state),
    };
    let answer = sources.answer_get(source, &ActixHeaders(request.headers()), origin)?;
    let request_id = request_id(request.headers());
    let label = source.name();
    let mut response = match answer {
        Ok(reply) => {
            state
                .metrics
                .requests
                .with_label_values(&[label, "handshake"])
                .inc();
            tracing::info!(source = label, request_id = %request_id, "verification of intent answered");
            reply_response(reply)
        }
        Err(rejection) => {
            state
                .metrics
                .requests
                .with_label_values(&[label, rejection.label()])
                .inc();
            let outcome = rejection.label();
            if let Verdict::Log { suppressed } = state.log_limit.check(outcome) {
                tracing::warn!(source = label, request_id = %request_id, outcome, suppressed, "verification of intent refused");
            }
            HttpResponse::build(
                StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::BAD_REQUEST),
            )
            .json(serde_json::json!({ "error": rejection.to_string() }))
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    Some(response)
}

/// The HTTP response for a provider's [`Reply`].
fn reply_response(reply: Reply) -> HttpResponse {
    let mut builder =
        HttpResponse::build(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK));
    builder.content_type(reply.content_type);
    for (name, value) in reply.headers {
        builder.insert_header((name, value));
    }
    builder.body(reply.body)
}

/// `(source, token)` of `/webhooks/{source}[/{token}]` (an empty source for any other path).
pub(crate) fn source_of(path: &str) -> (&str, Option<&str>) {
    let rest = path.strip_prefix("/webhooks/").unwrap_or_default();
    match rest.split_once('/') {
        Some((source, token)) => (source, Some(token)),
        None => (rest, None),
    }
}

/// Reads, verifies and publishes; returns the event id and the provider's reply once the broker
/// has confirmed or the spool has it on disk.
async fn accept(
    state: &WebhookState,
    (sources, source): (&Sources, &Source),
    request: &HttpRequest,
    payload: web::Payload,
    origin: Origin<'_>,
    request_id: &str,
    received_at: SystemTime,
) -> Result<(String, Kept, Reply), Failure> {
    // Held until the message is confirmed or spooled: the message's body is these bytes.
    let (body, _hold) = read_body(request, payload, source.max_body_bytes(), &state.budget).await?;
    let webhook = sources.verify(
        source,
        body,
        &ActixHeaders(request.headers()),
        origin,
        received_at,
    )?;
    let receipt = Receipt {
        request_id,
        received_at,
        content_type: request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    };
    let message = outbound(&webhook, &receipt);
    // Before the broker or the spool sees it: a message the broker's frame cannot hold would
    // close the connection each time it is sent, and stop the spool behind it.
    state.broker.check_fits(&message.properties)?;
    let kept = match state.broker.publish(&webhook, message).await {
        Ok(()) => Kept::Confirmed,
        Err(PublishError::FrameTooLarge(refused)) => return Err(refused.into()),
        Err(publish) => {
            let Some(spool) = &state.spool else {
                return Err(publish.into());
            };
            // The same message again (building it is deterministic): the first was consumed by
            // the publish, and cloning it up front would cost every request.
            let again = outbound(&webhook, &receipt);
            let message = spool::Message {
                routing_key: again.routing_key,
                properties: again.properties,
                body: webhook.body().clone(),
            };
            match spool.append(&message).await {
                Ok(()) => Kept::Spooled,
                Err(refused) => {
                    return Err(Failure::Unspooled {
                        publish,
                        spool: refused,
                    });
                }
            }
        }
    };
    let reply = webhook
        .provider()
        .accepted_reply(&ActixHeaders(request.headers()));
    Ok((webhook.event_id().to_owned(), kept, reply))
}

/// The whole body, or 413 as soon as it is known to exceed `limit` (from `Content-Length`, or
/// while streaming), or 503 when the bytes in flight would exceed the budget. Memory grows with
/// what has arrived (doubling, capped at the announced length), never from the announcement
/// alone, and every byte of capacity is counted against the budget before it is allocated.
async fn read_body(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    budget: &BodyBudget,
) -> Result<(Bytes, BodyHold), Failure> {
    const FIRST_ALLOCATION: usize = 16 * 1024;
    let announced = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|len| len > limit) {
        return Err(Rejection::TooLarge { limit }.into());
    }
    let ceiling = announced.unwrap_or(limit);
    // What this handler consumes, its connection may read again (see limits::ReadCredit).
    let credit = request.conn_data::<Arc<ReadCredit>>();
    let mut hold = budget.hold();
    let mut body: Vec<u8> = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| Failure::Unreadable)?;
        let needed = body.len() + chunk.len();
        if needed > limit {
            return Err(Rejection::TooLarge { limit }.into());
        }
        if needed > body.capacity() {
            let capacity = (body.capacity() * 2)
                .max(FIRST_ALLOCATION)
                .min(ceiling)
                .max(needed);
            if !hold.grow(capacity - body.capacity()) {
                return Err(Failure::OverBudget);
            }
            body.reserve_exact(capacity - body.len());
        }
        body.extend_from_slice(&chunk);
        // Counted by `hold` now: the connection gives these bytes back to the budget.
        if let Some(credit) = credit {
            credit.consumed(chunk.len());
        }
    }
    Ok((Bytes::from(body), hold))
}

/// `404 {"error": "not found"}` for any path but a webhook's, with its `X-Request-Id`.
pub async fn not_found(request: HttpRequest) -> HttpResponse {
    HttpResponse::NotFound()
        .insert_header((REQUEST_ID, request_id(request.headers())))
        .json(serde_json::json!({ "error": "not found" }))
}

/// The caller's `X-Request-Id` when it is a plain token, otherwise a new UUID.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}
