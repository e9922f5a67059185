//! The webhook port's HTTP server, assembled from actix-server and actix-http rather than
//! `actix_web::HttpServer`, for what that one cannot do:
//!
//! - every connection is wrapped in a [`DeadlineStream`] (a deadline on every request, not only
//!   the first one's headers);
//! - `Expect: 100-continue` is answered with 413 when the announced length is over the source's
//!   limit, before the client is told to send the body;
//! - the number of open connections is bounded below the file-descriptor limit.
//!
//! HTTP/1.1 only: providers send webhooks over HTTP/1.1, and a TLS-terminating ingress in front
//! speaks HTTP/1.1 to its backends.

use std::net::TcpListener;
use std::time::Duration;

use actix_http::body::BoxBody;
use actix_http::{HttpService, Request, Response, StatusCode};
use actix_server::Server;
use actix_service::{ServiceFactoryExt as _, fn_service, map_config};
use actix_web::dev::AppConfig;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::{App, HttpMessage as _, web};
use prometheus::IntGauge;

use crate::limits::DeadlineStream;
use crate::routes::{self, WebhookState, receive_webhook};

/// `SO_SNDBUF` of a webhook connection (the kernel doubles it for its bookkeeping).
pub const SEND_BUFFER_BYTES: usize = 32 * 1024;

/// How the webhook server is bounded.
pub struct Limits {
    pub header_timeout: Duration,
    pub keep_alive: Duration,
    pub request_timeout: Duration,
    /// Connections at most, all workers together.
    pub max_connections: usize,
    pub shutdown_secs: u64,
}

/// Starts the webhook server on `listener` (it begins accepting once the returned server is
/// polled or spawned).
pub fn webhook_server(
    listener: TcpListener,
    state: web::Data<WebhookState>,
    limits: &Limits,
    open_connections: IntGauge,
) -> std::io::Result<Server> {
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    let per_worker = limits.max_connections.div_ceil(workers).max(1);
    let (header_timeout, keep_alive, request_timeout) = (
        limits.header_timeout,
        limits.keep_alive,
        limits.request_timeout,
    );
    let builder = Server::build();
    // On stop, kept-alive connections close at once instead of at their keep-alive's end.
    let stopping = builder.graceful_shutdown_signal();
    Ok(builder
        .workers(workers)
        .max_concurrent_connections(per_worker)
        .disable_signals()
        .shutdown_timeout(limits.shutdown_secs)
        .listen("webhooks", listener, move || {
            let state = state.clone();
            let expect_state = state.clone();
            let open = open_connections.clone();
            let budget = state.budget.clone();
            let app = App::new()
                .app_data(state)
                // A scope with a default service instead of a `{source}` pattern: the pattern is
                // matched with a regex on every request (3 % of the ingester's CPU in a profile).
                .service(web::scope("/webhooks").default_service(web::to(receive_webhook)))
                .default_service(web::to(routes::not_found));
            let stopping = stopping.clone();
            let http = HttpService::build()
                .graceful_shutdown_signal(move || {
                    let stopping = stopping.clone();
                    async move { stopping.notified().await }
                })
                .client_request_timeout(header_timeout)
                // As actix-web's HttpServer: a reply that ends a connection early (a 413 before the
                // body) is flushed and the socket closed gracefully within 1 s, instead of reset
                // under a client still sending — which would then never read its 413.
                .client_disconnect_timeout(Duration::from_secs(1))
                .keep_alive(keep_alive)
                // Each request's handler tells its connection what it consumed (ReadCredit).
                .on_connect_ext(|io: &DeadlineStream<actix_rt::net::TcpStream>, data| {
                    data.insert(io.credit());
                })
                .expect(fn_service(move |request: Request| {
                    let refused = over_announced_limit(&request, &expect_state);
                    async move {
                        match refused {
                            Some(response) => Err(response),
                            None => Ok(request),
                        }
                    }
                }))
                .h1(map_config(app, |()| AppConfig::default()));
            fn_service(move |stream: actix_rt::net::TcpStream| {
                let peer = stream.peer_addr().ok();
                let _ = stream.set_nodelay(true);
                // Replies are small (a JSON line); a send buffer autotuned to 4 MiB would let a
                // client that never reads them have thousands of pipelined requests answered
                // before the connection's backlog stops reading (see DeadlineStream).
                let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER_BYTES);
                let wrapped = DeadlineStream::new(stream, request_timeout, open.clone(), &budget);
                async move { Ok::<_, actix_http::error::DispatchError>((wrapped, peer)) }
            })
            .and_then(http)
        })?
        .run())
}

/// For `Expect: 100-continue`: 413 when `Content-Length` is over the source's limit (the
/// ingester's default limit for an unknown source, which gets its 404 once the body is sent).
fn over_announced_limit(request: &Request, state: &WebhookState) -> Option<Response<BoxBody>> {
    let announced = request
        .headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse::<u64>()
        .ok()?;
    let (source, _) = routes::source_of(request.path());
    let sources = state.sources.load();
    let limit = sources
        .get(source)
        .map_or(state.default_max_body_bytes, |s| s.max_body_bytes());
    if announced <= limit as u64 {
        return None;
    }
    // Counted and logged as a 413 read from the body is.
    let label = sources
        .get(source)
        .map_or(crate::metrics::UNKNOWN_SOURCE, |s| s.name());
    let request_id = routes::request_id(request.headers());
    let outcome = countersign_providers::Rejection::TooLarge { limit }.label();
    state
        .metrics
        .requests
        .with_label_values(&[label, outcome])
        .inc();
    if let crate::log_limit::Verdict::Log { suppressed } = state.log_limit.check(outcome) {
        tracing::warn!(source = label, request_id = %request_id, outcome, status = 413, announced, suppressed, "webhook refused before its body (Expect: 100-continue)");
    }
    let body = serde_json::json!({ "error": format!("body larger than {limit} bytes") });
    let mut response = Response::with_body(StatusCode::PAYLOAD_TOO_LARGE, body.to_string());
    response
        .head_mut()
        .set_connection_type(actix_http::ConnectionType::Close);
    response.headers_mut().insert(
        actix_web::http::header::CONTENT_TYPE,
        actix_web::http::header::HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("x-request-id"),
            value,
        );
    }
    Some(response.map_into_boxed_body())
}
