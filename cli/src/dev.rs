//! `countersign dev`: both services in one process, for a developer's machine.
//!
//! Explicit by design: the production binaries never fall back to a built-in configuration.
//! Here the configuration is [`config_text`] — one Taktikal source with a development key,
//! every port on 127.0.0.1 — and the only inputs are `AMQP_URL`, `DATABASE_URL` and the flags.
//! Start-up checks the broker and the database first, so that a missing one is one line saying
//! how to start it rather than a wait; it creates the database if it is missing (the worker
//! migrates it), starts both services, prints "ready" once both answer `/readyz`, and stops both
//! on Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use countersign::config::{Config, Role};
use secrecy::ExposeSecret as _;
use sqlx::ConnectOptions as _;
use tokio_util::sync::CancellationToken;

/// The development signature key of the built-in `acme` source (the same as docker compose's).
pub const DEV_TAKTIKAL_KEY: &str = "dev-signature-key";
/// The database `countersign dev` uses (and creates) unless `DATABASE_URL` says otherwise.
pub const DEV_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/countersign";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Webhook port (0: any free port).
    #[arg(long, default_value_t = 8080)]
    webhook_port: u16,
    /// Ingester admin port: /healthz, /readyz, /metrics.
    #[arg(long, default_value_t = 9090)]
    admin_port: u16,
    /// Worker port: the read API, /healthz, /readyz, /metrics.
    #[arg(long, default_value_t = 8081)]
    api_port: u16,
    /// Prefix of the exchange and queue names.
    #[arg(long, default_value = "countersign")]
    prefix: String,
    /// Where the worker stores documents.
    #[arg(long, default_value = "./data")]
    data: PathBuf,
}

impl Args {
    /// The flags' defaults, from their one declaration above.
    pub fn defaults() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            args: Args,
        }
        <Defaults as clap::Parser>::parse_from(["dev"]).args
    }
}

/// The built-in configuration; `countersign send` uses it too when given no `--config`.
pub fn config_text(args: &Args) -> String {
    let Args {
        webhook_port: webhook,
        admin_port: admin,
        api_port: api,
        prefix,
        data,
    } = args;
    format!(
        r#"
[amqp]
prefix = "{prefix}"

[ingester]
listen = "127.0.0.1:{webhook}"
admin_listen = "127.0.0.1:{admin}"

[ingester.spool]
dir = "{spool}"

[worker]
listen = "127.0.0.1:{api}"
documents = "file:{documents}"

[[sources]]
name = "acme"
provider = "taktikal"
secrets = ["env:ACME_TAKTIKAL_KEY"]
"#,
        documents = data.join("documents").display(),
        spool = data.join("spool").display(),
    )
}

/// The environment as development mode sees it: the process's, with development defaults.
pub fn dev_env(name: &str) -> Option<String> {
    std::env::var(name).ok().or_else(|| match name {
        "ACME_TAKTIKAL_KEY" => Some(DEV_TAKTIKAL_KEY.to_owned()),
        "DATABASE_URL" => Some(DEV_DATABASE_URL.to_owned()),
        _ => None,
    })
}

/// The configuration at `path`, as the ingester reads it; without one, development mode's
/// built-in configuration (what `send` and `status` talk to by default).
pub fn config_or_dev(
    path: Option<&std::path::Path>,
) -> Result<Config, countersign::config::ConfigError> {
    match path {
        Some(path) => Config::load_path(path, Role::Ingester),
        None => Config::from_toml(&config_text(&Args::defaults()), Role::Ingester, &dev_env),
    }
}

/// `host:port` of a URL, without its credentials: safe to print.
fn server_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    authority.rsplit('@').next().unwrap_or(authority)
}

#[allow(clippy::print_stdout)]
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let _log = countersign::telemetry::init("countersign");
    let text = config_text(&args);
    let load = |role| Config::from_toml(&text, role, &dev_env);
    let (ingester_config, worker_config) = match (load(Role::Ingester), load(Role::Worker)) {
        (Ok(i), Ok(w)) => (i, w),
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("countersign dev: invalid configuration: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    let amqp_url = ingester_config.amqp.url.expose_secret().to_owned();
    let database_url = worker_config
        .require_database_url()?
        .expose_secret()
        .to_owned();

    if let Err(code) = check_dependencies(&amqp_url, &database_url).await {
        return Ok(code);
    }

    let ingester = countersign_ingester::Application::build(ingester_config)
        .await
        .context("ingester")?;
    let worker = countersign_worker::Application::build(worker_config)
        .await
        .context("worker")?;
    let (webhook_port, admin_port, api_port) =
        (ingester.port(), ingester.admin_port(), worker.port());

    print_banner(
        &args,
        &amqp_url,
        &database_url,
        [webhook_port, admin_port, api_port],
    );

    let shutdown = CancellationToken::new();
    tokio::spawn(countersign::shutdown::cancel_on_signal(shutdown.clone()));
    let announce = async {
        if wait_ready(&[admin_port, api_port], &shutdown).await {
            println!("ready");
        }
    };
    // Either service stopping, for whatever reason, stops the other.
    let (ingester_result, worker_result, ()) = tokio::join!(
        async {
            let _stop_the_worker = shutdown.clone().drop_guard();
            ingester.run_until_stopped(shutdown.clone()).await
        },
        async {
            let _stop_the_ingester = shutdown.clone().drop_guard();
            worker.run_until_stopped(shutdown.clone()).await
        },
        announce,
    );
    ingester_result.context("ingester")?;
    worker_result.context("worker")?;
    println!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// RabbitMQ and PostgreSQL reachable (the development database created if missing); else the
/// reason and what to do on stderr, and the exit code.
async fn check_dependencies(amqp_url: &str, database_url: &str) -> Result<(), ExitCode> {
    if let Err(error) = check_broker(amqp_url).await {
        eprintln!(
            "countersign dev: RabbitMQ is not reachable at {} ({error}). Start it \
             (`rabbitmq-server -detached`, or `systemctl start rabbitmq-server`) or set AMQP_URL.",
            server_of(amqp_url)
        );
        return Err(ExitCode::FAILURE);
    }
    match prepare_database(database_url).await {
        Ok(Some(created)) => eprintln!("countersign dev: created the database {created}"),
        Ok(None) => {}
        Err(error) => {
            eprintln!(
                "countersign dev: PostgreSQL is not usable at {} ({}). Start it \
                 (`pg_ctlcluster <version> main start`, or `systemctl start postgresql`) or set DATABASE_URL.",
                server_of(database_url),
                countersign::telemetry::error_line(error.chain())
            );
            return Err(ExitCode::FAILURE);
        }
    }
    Ok(())
}

/// What is where, for the person who started it.
#[allow(clippy::print_stdout)]
fn print_banner(args: &Args, amqp_url: &str, database_url: &str, ports: [u16; 3]) {
    let [webhook_port, admin_port, api_port] = ports;
    println!("Countersign development mode: built-in configuration, not for production");
    // The development key is printed; a key of the caller's own (ACME_TAKTIKAL_KEY) is not.
    let key = match std::env::var("ACME_TAKTIKAL_KEY") {
        Ok(_) => "from ACME_TAKTIKAL_KEY".to_owned(),
        Err(_) => format!("{DEV_TAKTIKAL_KEY:?}"),
    };
    println!(
        "  webhooks  POST http://127.0.0.1:{webhook_port}/webhooks/acme  (Taktikal, signature key {key})"
    );
    println!(
        "  admin     http://127.0.0.1:{admin_port}/readyz  http://127.0.0.1:{admin_port}/metrics"
    );
    println!(
        "  read API  http://127.0.0.1:{api_port}/signing/activity/{{processKey}}  (no token: loopback only)"
    );
    println!(
        "  RabbitMQ  {} (queues {}.*)   PostgreSQL  {}",
        server_of(amqp_url),
        args.prefix,
        server_of(database_url)
    );
    println!("  documents {}", args.data.join("documents").display());
    let mut flags = String::new();
    if webhook_port != 8080 {
        flags.push_str(&format!(" --url http://127.0.0.1:{webhook_port}"));
    }
    if api_port != 8081 {
        flags.push_str(&format!(" --api-url http://127.0.0.1:{api_port}"));
    }
    println!(
        "Send a signed sample event:  cargo run --release --bin countersign -- send acme{flags}"
    );
}

/// Connects once, with a deadline: a broker that does not answer is an error, not a wait.
async fn check_broker(url: &str) -> anyhow::Result<()> {
    let connect = lapin::Connection::connect(url, lapin::ConnectionProperties::default());
    let connection = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {CONNECT_TIMEOUT:?}"))??;
    let _ = connection.close(200, "checked".into()).await;
    Ok(())
}

/// Connects to the database, creating it first if the server says it does not exist.
/// `Ok(Some(name))` when it was created.
async fn prepare_database(url: &str) -> anyhow::Result<Option<String>> {
    let options: sqlx::postgres::PgConnectOptions = url.parse().context("DATABASE_URL")?;
    let attempt = tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await;
    let error = match attempt {
        Err(_) => anyhow::bail!("no answer within {CONNECT_TIMEOUT:?}"),
        Ok(Ok(connection)) => {
            let _ = sqlx::Connection::close(connection).await;
            return Ok(None);
        }
        Ok(Err(error)) => error,
    };
    let missing = error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "3D000");
    if !missing {
        return Err(error.into());
    }
    let name = options
        .get_database()
        .context("DATABASE_URL names no database")?
        .to_owned();
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .context("connecting to the maintenance database `postgres` to create it")?;
    let create = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    match sqlx::query(&create).execute(&mut admin).await {
        Ok(_) => {}
        // Created meanwhile by someone else: as good.
        Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42P04") => {}
        Err(e) => return Err(e).with_context(|| format!("creating the database {name}")),
    }
    let _ = sqlx::Connection::close(admin).await;
    Ok(Some(name))
}

/// Waits until every port answers `/readyz` with 200; false if shut down first.
async fn wait_ready(ports: &[u16], shutdown: &CancellationToken) -> bool {
    let client = reqwest::Client::new();
    for port in ports {
        let url = format!("http://127.0.0.1:{port}/readyz");
        loop {
            let ok = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                break;
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_servers_carry_no_credentials() {
        assert_eq!(
            server_of("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "127.0.0.1:5672"
        );
        assert_eq!(
            server_of("postgres://u:p@db.example:5432/countersign?sslmode=require"),
            "db.example:5432"
        );
        assert_eq!(server_of("postgres://localhost/x"), "localhost");
    }

    #[test]
    fn the_built_in_configuration_is_valid_for_both_roles() {
        let text = config_text(&Args::defaults());
        for role in [Role::Ingester, Role::Worker] {
            let config = Config::from_toml(&text, role, &|name| match name {
                "ACME_TAKTIKAL_KEY" => Some(DEV_TAKTIKAL_KEY.to_owned()),
                _ => None,
            })
            .unwrap();
            assert_eq!(config.sources[0].name, "acme");
            assert!(config.ingester.listen.ip().is_loopback());
            assert!(config.worker.listen.ip().is_loopback());
        }
    }
}
