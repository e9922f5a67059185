//! Builds the ingester from its configuration and runs it until a shutdown signal.
//!
//! Two HTTP servers share one [`Broker`]: the webhook port and the admin port. Both bind before
//! [`Application::build`] returns, so tests can bind port 0 and read the ports back. The broker
//! connection is made in the background: the ingester starts, and reports not ready, while
//! RabbitMQ is down.
//!
//! Shutdown order: stop accepting, let in-flight requests finish (their publishes, confirms and
//! spool writes included), drain the spool while the broker takes it, stop the spool's drainer
//! and writer, then close the broker connection, then return. One deadline,
//! `ingester.shutdown_timeout` after the signal, bounds all of it but the last step, which has
//! [`CLOSE_MARGIN`]: a process manager's grace period of `shutdown_timeout` + 5 s (plus a
//! preStop hook's time) is never cut short.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::http::header::HeaderValue;
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use countersign::config::Config;
use countersign::topology::Topology;
use countersign_providers::Sources;
use secrecy::ExposeSecret as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::broker::Broker;
use crate::limits::{self, BodyBudget};
use crate::metrics::Metrics;
use crate::routes::WebhookState;
use crate::server;
use crate::spool::Spool;

/// After the shutdown deadline: closing the broker connection, at most.
pub const CLOSE_MARGIN: std::time::Duration = std::time::Duration::from_secs(3);

pub struct Application {
    webhook_state: web::Data<WebhookState>,
    reload_metrics: Metrics,
    loaded: crate::reload::Loaded,
    webhooks: Server,
    admin: Server,
    port: u16,
    admin_port: u16,
    broker: Arc<Broker>,
    broker_stop: CancellationToken,
    broker_task: JoinHandle<()>,
    spool: Option<Arc<Spool>>,
    shutdown_timeout: std::time::Duration,
    drain_stop: CancellationToken,
    drain_task: Option<JoinHandle<()>>,
}

impl Application {
    /// Binds both ports and starts connecting to the broker. Must run inside a Tokio runtime.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let sources = config.build_sources()?;
        Self::build_with(config, sources).await
    }

    /// [`Application::build`] with the sources already made from `config` (so that a bad key
    /// file is reported as a configuration error before anything starts).
    pub async fn build_with(config: Config, sources: Sources) -> anyhow::Result<Self> {
        let metrics = Metrics::new();
        metrics.sources.export_expiries(&sources.expiries());
        let loaded = crate::reload::Loaded::of(&config);
        let topology = Topology::from_config(&config.amqp);
        let broker = Broker::new(topology, config.ingester.confirm_timeout, metrics.clone());
        let broker_stop = CancellationToken::new();
        let broker_task = tokio::spawn(broker.clone().maintain(
            config.amqp.url.expose_secret().to_owned(),
            broker_stop.clone(),
        ));

        if sources.is_empty() {
            tracing::warn!("no [[sources]] configured: every webhook will get 404");
        }
        let spool = open_spool(&config, &metrics)?;
        let drain_stop = CancellationToken::new();
        let drain_task = spool
            .as_ref()
            .map(|s| tokio::spawn(s.clone().drain(broker.clone(), drain_stop.clone())));
        let shutdown_secs = config.ingester.shutdown_timeout.as_secs().max(1);

        let webhooks = open_webhooks(&config, sources, &broker, &metrics, &spool, shutdown_secs)?;

        let (admin, admin_port) = admin_server(
            &config,
            AdminState {
                broker: broker.clone(),
                metrics,
                spool: spool.clone(),
            },
            shutdown_secs,
        )?;

        tracing::info!(
            port = webhooks.port,
            admin_port,
            max_connections = webhooks.max_connections,
            fd_limit = webhooks.fd_limit,
            "ingester listening"
        );
        Ok(Self {
            webhook_state: webhooks.state,
            reload_metrics: webhooks.metrics,
            loaded,
            webhooks: webhooks.server,
            admin,
            port: webhooks.port,
            admin_port,
            broker,
            broker_stop,
            broker_task,
            spool,
            shutdown_timeout: config.ingester.shutdown_timeout,
            drain_stop,
            drain_task,
        })
    }

    /// What reloads this ingester's sources from the configuration file at `path`
    /// ([`crate::reload`]): call its `reload`, or `watch` it.
    pub fn reloader(&self, path: std::path::PathBuf) -> Arc<crate::reload::Reloader> {
        Arc::new(crate::reload::Reloader::new(
            path,
            &self.loaded,
            self.webhook_state.clone(),
            self.reload_metrics.clone(),
        ))
    }

    /// The webhook port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin port actually bound.
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The shared broker link, for readiness checks.
    pub fn broker(&self) -> Arc<Broker> {
        self.broker.clone()
    }

    /// Serves until `shutdown` is cancelled, then shuts down gracefully.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let webhooks_handle = self.webhooks.handle();
        let admin_handle = self.admin.handle();
        let mut webhooks = tokio::spawn(self.webhooks);
        let admin = tokio::spawn(self.admin);

        let early_exit = tokio::select! {
            () = shutdown.cancelled() => None,
            result = &mut webhooks => Some(result),
        };
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        tracing::info!(
            within_s = self.shutdown_timeout.as_secs_f64(),
            "shutting down: refusing new connections, finishing in-flight requests"
        );
        // Both servers wait for their requests at most shutdown_timeout (rounded down to whole
        // seconds), from now: by the deadline. A request still running then is cut off before
        // its reply: its sender had no 200 and sends again.
        tokio::join!(webhooks_handle.stop(true), admin_handle.stop(true));
        // While the broker takes them, spooled messages are drained before the exit (a pod
        // scaled away may not come back soon); what is left stays on disk for the next start.
        if let Some(spool) = &self.spool {
            drain_before_exit(spool, &self.broker, deadline).await;
        }
        self.drain_stop.cancel();
        if let Some(mut task) = self.drain_task {
            // A batch under way finishes if its confirms come by the deadline. Cut off, its
            // records stay in the spool and are published again at the next start: the worker
            // keeps one row per message id.
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                tracing::warn!(
                    "shutdown deadline: the spool's drainer stopped with a batch unconfirmed; it is published again at the next start"
                );
            }
        }
        if let Some(spool) = self.spool {
            tokio::task::spawn_blocking(move || spool.close())
                .await
                .context("spool writer")?;
        }
        self.broker_stop.cancel();
        let mut broker_task = self.broker_task;
        if tokio::time::timeout(CLOSE_MARGIN, &mut broker_task)
            .await
            .is_err()
        {
            broker_task.abort();
            tracing::warn!("the broker connection did not close in time; dropped");
        }
        admin
            .await
            .context("admin server task")?
            .context("admin server")?;
        match early_exit {
            Some(result) => {
                result
                    .context("webhook server task")?
                    .context("webhook server")?;
                anyhow::bail!("the webhook server stopped by itself")
            }
            None => webhooks
                .await
                .context("webhook server task")?
                .context("webhook server")?,
        }
        tracing::info!("ingester stopped");
        Ok(())
    }
}

/// Waits while the broker takes the spool's messages, until it is empty or `deadline`; what is
/// left is said, and stays on disk for the next start.
async fn drain_before_exit(spool: &Spool, broker: &Broker, deadline: tokio::time::Instant) {
    while spool.status().messages > 0 && broker.is_ready() && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let left = spool.status().messages;
    if left > 0 {
        tracing::warn!(
            messages = left,
            dir = %spool.dir().display(),
            "stopping with messages in the spool: they are drained at the next start on this directory"
        );
    }
}

/// The webhook port's server, with what bounds it.
struct Webhooks {
    state: web::Data<WebhookState>,
    metrics: Metrics,
    server: Server,
    port: u16,
    max_connections: usize,
    fd_limit: u64,
}

/// Binds `ingester.listen` and builds the webhook server over `sources`.
fn open_webhooks(
    config: &Config,
    sources: Sources,
    broker: &Arc<Broker>,
    metrics: &Metrics,
    spool: &Option<Arc<Spool>>,
    shutdown_secs: u64,
) -> anyhow::Result<Webhooks> {
    let retry_after = HeaderValue::from(config.ingester.retry_after.as_secs().max(1));
    let listener = TcpListener::bind(config.ingester.listen).with_context(|| {
        format!(
            "cannot listen on {} (ingester.listen)",
            config.ingester.listen
        )
    })?;
    let port = listener.local_addr()?.port();
    let budget = BodyBudget::new(
        config.ingester.max_body_bytes_in_flight,
        sources.largest_body_limit(),
        metrics.body_bytes_in_flight.clone(),
    );
    let webhook_state = web::Data::new(WebhookState {
        sources: arc_swap::ArcSwap::from_pointee(sources),
        broker: broker.clone(),
        metrics: metrics.clone(),
        retry_after,
        budget,
        default_max_body_bytes: config.ingester.max_body_bytes,
        spool: spool.clone(),
        log_limit: crate::log_limit::LogLimit::new(),
        trusted_proxies: config.ingester.trusted_proxies.clone(),
    });
    let fd_limit = limits::raise_fd_limit();
    let max_connections = limits::connection_limit(config.ingester.max_connections, fd_limit);
    let webhooks = server::webhook_server(
        listener,
        webhook_state.clone(),
        &server::Limits {
            header_timeout: config.ingester.header_timeout,
            keep_alive: config.ingester.keep_alive,
            request_timeout: config.ingester.request_timeout,
            max_connections,
            shutdown_secs,
        },
        metrics.connections_open.clone(),
    )?;
    Ok(Webhooks {
        state: webhook_state,
        metrics: metrics.clone(),
        server: webhooks,
        port,
        max_connections,
        fd_limit,
    })
}

/// The spool, where `ingester.spool.enabled` (the default): opened and locked, what it holds
/// from before this start counted.
fn open_spool(config: &Config, metrics: &Metrics) -> anyhow::Result<Option<Arc<Spool>>> {
    let settings = &config.ingester.spool;
    if !settings.enabled {
        tracing::warn!("spool off (ingester.spool.enabled = false): a broker outage answers 503");
        return Ok(None);
    }
    let spool = Arc::new(Spool::open(settings, metrics.clone())?);
    tracing::info!(
        dir = %spool.dir().display(),
        max_bytes = settings.max_bytes,
        max_age = ?settings.max_age,
        "spool open: a webhook the broker cannot confirm is kept on this disk"
    );
    Ok(Some(spool))
}

/// The admin port's server (`/healthz`, `/readyz`, `/metrics`, bound to
/// `ingester.admin_listen`), and the port it bound.
fn admin_server(
    config: &Config,
    state: AdminState,
    shutdown_secs: u64,
) -> anyhow::Result<(Server, u16)> {
    let listener = TcpListener::bind(config.ingester.admin_listen).with_context(|| {
        format!(
            "cannot listen on {} (ingester.admin_listen)",
            config.ingester.admin_listen
        )
    })?;
    let port = listener.local_addr()?.port();
    let state = web::Data::new(state);
    let server =
        HttpServer::new(move || App::new().app_data(state.clone()).configure(admin::routes))
            .listen(listener)?
            .workers(1)
            .disable_signals()
            .shutdown_timeout(shutdown_secs)
            .run();
    Ok((server, port))
}
