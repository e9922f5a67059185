//! `countersign-worker`: turns the verified webhooks in `<prefix>.persist` into a durable record
//! in PostgreSQL, and serves it.
//!
//! # Layout
//!
//! - [`cli`]: the command line; [`commands`]: what its operator commands do (`replay dead`,
//!   `replay archive`, `upgrade dead-queue`); [`upgrade`]: re-declaring the parking lot with its
//!   delivery limit.
//! - [`startup`]: builds the HTTP server, database pool, document store and consumer; runs them
//!   until shutdown.
//! - [`consumer`]: consume with manual acks and bounded prefetch; settle each message (ack after
//!   commit, retry queues, dead-letter queue).
//! - [`handler`]: one message → parse, store documents, record, project → an outcome.
//! - [`db`]: the archive and the idempotent projection, in one transaction per batch;
//!   migrations.
//! - [`documents`]: the content-addressed document store; [`fetch`]: downloading the documents
//!   webhooks only announce, from the provider's API.
//! - [`http`]: bounded answers and redacted errors of providers' APIs.
//! - [`oauth`]: access tokens obtained with a refresh token (`[sources.api] token_url`).
//! - [`reconcile`]: asking the providers' APIs what the webhooks missed.
//! - [`api`]: the read API (activity log, documents) and health / readiness / metrics.
//! - [`metrics`]: the Prometheus metrics.
//! - [`replay`]: moving parked messages back, re-publishing archived events.

/// `sqlx::FromRow` for a struct read by column name, each field from the column of its name —
/// what sqlx's derive does, without its `macros` feature (which builds a second sqlx for the
/// build host: see `db::migrations`).
macro_rules! from_row {
    ($type:ident { $($field:ident),* $(,)? }) => {
        impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for $type {
            fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
                use sqlx::Row as _;
                Ok(Self {
                    $($field: row.try_get(stringify!($field))?),*
                })
            }
        }
    };
}

pub mod api;
pub mod cli;
pub mod commands;
pub mod consumer;
pub mod db;
pub mod documents;
pub mod fetch;
pub mod handler;
pub mod http;
pub mod metrics;
pub mod oauth;
pub mod reconcile;
pub mod replay;
pub mod startup;
pub mod upgrade;

pub use startup::Application;
