//! The ingester's HTTP and AMQP contract, against the real RabbitMQ (`AMQP_URL`).

mod admin;
mod broker;
mod cli;
mod helpers;
mod proxy;
mod shutdown;
mod spool;
mod webhooks;
