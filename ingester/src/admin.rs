//! The admin port: `/healthz` (the process answers), `/readyz` (a webhook can be kept now: a
//! broker channel is open, or the spool has room), `/metrics` (Prometheus text). Kept off the webhook port so an
//! ingress exposes only `/webhooks/...`.

use std::sync::Arc;

use actix_web::{HttpResponse, web};

use crate::broker::Broker;
use crate::metrics::Metrics;
use crate::spool::Spool;

pub struct AdminState {
    pub broker: Arc<Broker>,
    pub metrics: Metrics,
    pub spool: Option<Arc<Spool>>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

/// Ready while a webhook would get a 200: the broker confirms, or the spool can keep it. The
/// body says which, and why not.
async fn readyz(state: web::Data<AdminState>) -> HttpResponse {
    let broker = state.broker.is_ready();
    let spool = state.spool.as_ref().map(|spool| {
        let status = spool.status();
        let room = spool.has_room();
        serde_json::json!({
            "room": room.is_ok(),
            "reason": room.err().map(|e| e.to_string()),
            "messages": status.messages,
            "bytes": status.bytes,
            "oldest_age_seconds": status.oldest_age.map(|a| a.as_secs()),
        })
    });
    let spool_room = spool.as_ref().is_some_and(|s| s["room"] == true);
    let ready = broker || spool_room;
    let reason = match (broker, &spool) {
        (true, _) => None,
        (false, Some(_)) if spool_room => Some("no broker channel: webhooks are spooled to disk"),
        (false, Some(_)) => Some("no broker channel, and the spool cannot take more"),
        (false, None) => Some("no broker channel (and the spool is off)"),
    };
    let body = serde_json::json!({
        "ready": ready,
        "broker": broker,
        "spool": spool,
        "reason": reason,
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(state: web::Data<AdminState>) -> HttpResponse {
    if let Some(spool) = &state.spool {
        spool.publish_gauges();
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
