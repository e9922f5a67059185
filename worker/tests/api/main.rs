//! The worker against the real RabbitMQ (`AMQP_URL`) and PostgreSQL (`DATABASE_URL`), fed by a
//! real ingester.

mod failures;
mod helpers;
mod kill;
mod read_api;
mod record;
mod replay;
mod startup;
