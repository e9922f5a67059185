//! Builds the worker from its configuration and runs it until a shutdown signal.
//!
//! Start-up does not wait for its dependencies: the HTTP port binds at once (so `/healthz`
//! answers and `/readyz` tells what is missing), migrations are applied as soon as PostgreSQL
//! answers (retried with back-off), and only then does the consumer start.
//!
//! Shutdown order: stop taking messages and finish those in hand (each acked only after its
//! commit), stop the HTTP server, close the database pool.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use countersign::config::Config;
use countersign::topology::Topology;
use secrecy::ExposeSecret as _;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState};
use crate::consumer::{Consumer, Settings};
use crate::db::Db;
use crate::documents::{DocumentStore, ObjectDocuments};
use crate::handler::Handler;
use crate::metrics::Metrics;
use crate::reconcile::Reconciler;

pub struct Application {
    http: Server,
    port: u16,
    db: Db,
    consumer: Arc<Consumer>,
    reconciler: Arc<Reconciler>,
    amqp_url: String,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let database_url = config.require_database_url()?;
        let db = Db::connect_lazy(
            database_url.expose_secret(),
            config.worker.database_pool_size,
            config.worker.database_timeout,
        )
        .context("DATABASE_URL")?;
        let documents: Arc<dyn DocumentStore> = Arc::new(
            ObjectDocuments::open(&config.worker.documents)
                .map_err(|e| anyhow::anyhow!("document store {e}"))?,
        );
        let metrics = Metrics::new();
        let metrics_for_reconcile = metrics.clone();
        let fetcher =
            Arc::new(crate::fetch::Fetcher::from_config(&config).map_err(anyhow::Error::msg)?);
        let handler = Handler::new(db.clone(), documents.clone()).with_fetcher(fetcher.clone());
        let consumer = Consumer::new(
            Topology::from_config(&config.amqp),
            Settings::new(
                config.worker.prefetch,
                config.worker.batch_size,
                config.worker.batch_wait,
                config.worker.database_pool_size,
            ),
            handler,
            metrics.clone(),
        );
        if config.worker.api_tokens.is_empty() {
            tracing::warn!(
                "worker.api_tokens is empty: the read API serves personal data to anyone who reaches its port"
            );
        }

        let listener = TcpListener::bind(config.worker.listen).with_context(|| {
            format!("cannot listen on {} (worker.listen)", config.worker.listen)
        })?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(ApiState {
            db: db.clone(),
            documents,
            consumer: consumer.clone(),
            metrics,
            tokens: config.worker.api_tokens.clone(),
        });
        let http =
            HttpServer::new(move || App::new().app_data(state.clone()).configure(api::routes))
                .listen(listener)?
                .disable_signals()
                .shutdown_timeout(10)
                .run();
        tracing::info!(port, "worker listening");
        let reconciler = Arc::new(
            Reconciler::new(&config, db.clone(), fetcher, metrics_for_reconcile)
                .map_err(anyhow::Error::msg)?,
        );
        if !reconciler.sources().is_empty() {
            tracing::info!(sources = ?reconciler.sources(), "reconciling with the providers' APIs");
        }
        Ok(Self {
            http,
            port,
            db,
            consumer,
            reconciler,
            amqp_url: config.amqp.url.expose_secret().to_owned(),
        })
    }

    /// The HTTP port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let handle = self.http.handle();
        let http = tokio::spawn(self.http);

        if migrate(&self.db, &shutdown).await? {
            let reconciler = tokio::spawn(self.reconciler.clone().run(shutdown.clone()));
            let consumer = tokio::spawn(self.consumer.clone().run(self.amqp_url, shutdown.clone()));
            consumer.await.context("consumer task")?;
            reconciler.await.context("reconciliation task")?;
        }
        handle.stop(true).await;
        http.await
            .context("HTTP server task")?
            .context("HTTP server")?;
        self.db.pool().close().await;
        tracing::info!("worker stopped");
        Ok(())
    }
}

/// Applies the migrations once the database answers. `Ok(false)` if shut down first.
async fn migrate(db: &Db, shutdown: &CancellationToken) -> anyhow::Result<bool> {
    let mut backoff = Duration::from_millis(200);
    loop {
        match db.migrate().await {
            Ok(()) => {
                tracing::info!("database migrated");
                return Ok(true);
            }
            Err(sqlx::migrate::MigrateError::Execute(error))
                if crate::db::is_certificate_error(&error) =>
            {
                return Err(error).context(
                    "the database's TLS certificate does not verify (check sslrootcert and the host name in DATABASE_URL)",
                );
            }
            Err(sqlx::migrate::MigrateError::Execute(error)) if crate::db::is_transient(&error) => {
                tracing::warn!(error = %error, retry_in = ?backoff, "database unavailable; migrations wait");
            }
            Err(sqlx::migrate::MigrateError::Execute(sqlx::Error::Database(error)))
                if error.code().as_deref() == Some("3D000") =>
            {
                // invalid_catalog_name: the database itself is missing.
                return Err(anyhow::anyhow!(
                    "{}: create it first (createdb, or CREATE DATABASE): the worker creates its tables, not the database",
                    error.message()
                ));
            }
            Err(error) => return Err(error).context("database migrations"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(false),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
