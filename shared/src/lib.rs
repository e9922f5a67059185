//! `countersign` — everything the ingester and the worker agree on.
//!
//! # Layout
//!
//! - [`allocator`]: the C allocator's one setting, made first thing in each binary's `main`.
//! - [`amqp`]: connecting with confirms and the topology declared; publishing so that only the
//!   broker's plain `Ack` is success.
//! - [`config`]: the TOML file, environment overrides, secret references (`env:` / `file:`),
//!   validation with one clear line per error.
//! - [`topology`]: exchange, queues, bindings and their arguments, declared by both binaries.
//! - [`message`]: the AMQP message contract — headers, properties, routing key.
//! - [`telemetry`]: structured logging and the metrics' registry, set up the same way in both
//!   binaries; [`shutdown`]: SIGTERM or Ctrl-C as a cancelled token.
//!
//! No actix and no sqlx here: this crate is the contract, not a server.

pub mod allocator;
pub mod amqp;
pub mod config;
pub mod log_buffer;
pub mod message;
pub mod shutdown;
pub mod telemetry;
pub mod topology;
