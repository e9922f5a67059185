//! The admin port: `/healthz` (the process answers), `/readyz` (a broker channel is open, so a
//! webhook can be accepted now), `/metrics` (Prometheus text). Kept off the webhook port so an
//! ingress exposes only `/webhooks/...`.

use std::sync::Arc;

use actix_web::{HttpResponse, web};

use crate::broker::Broker;
use crate::metrics::Metrics;

pub struct AdminState {
    pub broker: Arc<Broker>,
    pub metrics: Metrics,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(state: web::Data<AdminState>) -> HttpResponse {
    if state.broker.is_ready() {
        HttpResponse::Ok().json(serde_json::json!({ "ready": true }))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "ready": false, "reason": "no broker channel" }))
    }
}

async fn metrics(state: web::Data<AdminState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
