//! `countersign-ingester`: receives e-signature webhooks, verifies them, and hands them to
//! RabbitMQ before it says 200.
//!
//! # Layout
//!
//! - [`cli`]: the command line; [`commands`]: what its operator commands do.
//! - [`startup`]: builds the two HTTP servers and the broker link from the configuration; runs
//!   them until shutdown.
//! - [`server`]: the webhook port's HTTP server, bounded by [`limits`].
//! - [`limits`]: body bytes in flight, a deadline per request, the connection limit;
//!   [`log_limit`]: a few log lines a second per kind of refused request.
//! - [`routes`]: `POST /webhooks/{source}` — read, verify, publish, reply; [`forwarded`]: the
//!   client's address behind `ingester.trusted_proxies`.
//! - [`broker`]: the connection to RabbitMQ, kept alive and reconnected; publish with confirm.
//! - [`spool`]: the local durable spool for webhooks the broker cannot take now, and its
//!   drainer.
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics` on the admin port.
//! - [`metrics`]: the Prometheus metrics.
//!
//! Verification lives in `countersign-providers`, the message contract in the shared
//! `countersign` crate.

pub mod admin;
pub mod broker;
pub mod cli;
pub mod commands;
pub mod forwarded;
pub mod limits;
pub mod log_limit;
pub mod metrics;
pub mod reload;
pub mod routes;
pub mod server;
pub mod spool;
pub mod startup;

pub use startup::Application;
