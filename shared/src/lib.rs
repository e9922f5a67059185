//! `countersign` — everything the ingester and the worker agree on.
//!
//! # Layout
//!
//! - [`allocator`]: the C allocator's one setting, made first thing in each binary's `main`.
//! - [`amqp`]: connecting with confirms and the topology declared; publishing so that only the
//!   broker's plain `Ack` is success.
//! - [`config`]: the TOML file, environment overrides, secret references (`env:` / `file:`),
//!   validation with one clear line per error.
//! - [`providers`]: one module per e-signature provider. Each verifies a request over its raw bytes
//!   and says what the event is (id, type); [`providers::Sources`] is the configured set of
//!   endpoints and the only way to obtain a [`providers::VerifiedWebhook`].
//! - [`event`]: the normalized model (`SigningEvent`: process, signees, status, documents,
//!   activity) that every provider parses into.
//! - [`replay`]: memory of recently seen signatures, for schemes whose signature does not cover
//!   the body (Taktikal), so that a captured signature cannot carry another body.
//! - [`topology`]: exchange, queues, bindings and their arguments, declared by both binaries.
//! - [`message`]: the AMQP message contract — headers, properties, routing key.
//! - [`telemetry`]: structured logging set-up shared by both binaries.
//!
//! No actix and no sqlx here: this crate is the contract, not a server.

pub mod allocator;
pub mod amqp;
pub mod config;
pub mod event;
pub mod log_buffer;
pub mod message;
pub mod providers;
pub mod replay;
pub mod telemetry;
pub mod topology;
