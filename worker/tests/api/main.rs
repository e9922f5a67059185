//! The worker against the real RabbitMQ (`AMQP_URL`) and PostgreSQL (`DATABASE_URL`), fed by a
//! real ingester.

mod adobe_sign_api;
mod batch;
mod boldsign_api;
mod definitions;
mod delivery_limit;
mod documenso_api;
mod docuseal_api;
mod downloads;
mod failover;
mod failures;
mod helpers;
mod kill;
mod object_storage;
mod parking;
mod providers;
mod read_api;
mod reconcile;
mod reconcile_apis;
mod record;
mod replay;
mod replay_tools;
mod replicas;
mod second_witness;
mod simulator;
mod startup;
mod taktikal_api;
mod tls;
mod yousign_api;
mod zoho_sign_api;
