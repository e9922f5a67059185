//! A real ingester on port 0 against the real RabbitMQ, isolated by a unique AMQP prefix, plus
//! typed helpers to sign events, post them and read what reached the queue. Dropping a
//! [`TestApp`] stops the ingester and deletes its exchange and queues.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use countersign::config::Config;
use countersign::topology::Topology;
use countersign_ingester::Application;
use lapin::message::BasicGetMessage;
use lapin::options::BasicGetOptions;
use lapin::types::ShortString;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "acme-webhook-signature-key";
pub const OLD_KEY: &str = "acme-old-api-key";
/// Body limit of the `big` source.
pub const BIG_LIMIT: usize = 40 * 1024 * 1024;

pub use countersign_testkit::{
    TcpProxy, amqp_url, delete_topology, taktikal_event as signed_event_with,
    taktikal_example as example_event, unique_prefix,
};

pub fn signed_event() -> (String, Vec<u8>) {
    signed_event_with(KEY, SystemTime::now())
}

/// Options that differ between tests.
pub struct Options {
    pub amqp_url: String,
    pub max_body_bytes: usize,
    pub confirm_timeout: &'static str,
    pub spool: SpoolSetting,
    /// More `[ingester]` lines.
    pub ingester_extra: &'static str,
    /// More lines of the `acme` source.
    pub acme_extra: &'static str,
}

/// The ingester's `[ingester.spool]` in a test.
pub enum SpoolSetting {
    /// `enabled = false`: a broker outage is a 503.
    Off,
    /// On, in a directory of the test's own (deleted with the [`TestApp`]).
    Temporary,
    /// On, in this directory, with at most this many bytes.
    At(std::path::PathBuf, u64),
}

impl Default for Options {
    fn default() -> Self {
        Self {
            amqp_url: amqp_url(),
            max_body_bytes: 1024 * 1024,
            confirm_timeout: "5s",
            spool: SpoolSetting::Temporary,
            ingester_extra: "",
            acme_extra: "",
        }
    }
}

/// The `[ingester.spool]` table for `setting`, and the temporary directory to keep alive.
fn spool_table(setting: &SpoolSetting) -> (String, Option<tempfile::TempDir>) {
    match setting {
        SpoolSetting::Off => ("enabled = false".to_owned(), None),
        SpoolSetting::Temporary => {
            let dir = tempfile::tempdir().expect("a temporary directory");
            (format!("dir = {:?}", dir.path()), Some(dir))
        }
        SpoolSetting::At(dir, max_bytes) => {
            (format!("dir = {dir:?}\nmax_bytes = {max_bytes}"), None)
        }
    }
}

pub fn config_text(prefix: &str, options: &Options, spool: &str) -> String {
    format!(
        r#"
        [amqp]
        prefix = "{prefix}"
        retry_delays = ["1s", "5s"]

        [ingester]
        listen = "127.0.0.1:0"
        admin_listen = "127.0.0.1:0"
        max_body_bytes = {max}
        confirm_timeout = "{confirm}"
        retry_after = "7s"
        shutdown_timeout = "20s"
        {ingester_extra}

        [ingester.spool]
        {spool}

        [[sources]]
        name = "acme"
        provider = "taktikal"
        secrets = ["env:ACME_OLD_KEY", "env:ACME_KEY"]
        allow_shared_secrets = true
        {acme_extra}

        [[sources]]
        name = "big"
        provider = "taktikal"
        secrets = ["env:ACME_KEY"]
        max_body_bytes = {BIG_LIMIT}
        allow_shared_secrets = true
        "#,
        max = options.max_body_bytes,
        confirm = options.confirm_timeout,
        ingester_extra = options.ingester_extra,
        acme_extra = options.acme_extra,
    )
}

pub fn env_for(amqp_url: &str) -> impl Fn(&str) -> Option<String> {
    let map = HashMap::from([
        ("ACME_KEY".to_owned(), KEY.to_owned()),
        ("ACME_OLD_KEY".to_owned(), OLD_KEY.to_owned()),
        ("AMQP_URL".to_owned(), amqp_url.to_owned()),
    ]);
    move |name| map.get(name).cloned()
}

pub struct TestApp {
    /// The configuration the ingester runs with (for the operator commands).
    pub config: Config,
    pub address: String,
    pub admin_address: String,
    pub topology: Topology,
    pub http: reqwest::Client,
    /// A channel straight to the broker, for inspecting queues.
    pub channel: Channel,
    _connection: Connection,
    shutdown: CancellationToken,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    _spool_dir: Option<tempfile::TempDir>,
}

impl TestApp {
    /// An ingester connected to the real broker, ready to accept.
    pub async fn spawn() -> Self {
        let app = Self::spawn_with(Options::default()).await;
        app.wait_broker().await;
        app
    }

    /// An ingester with `options`; not waiting for the broker (it may be unreachable on purpose).
    pub async fn spawn_with(options: Options) -> Self {
        let prefix = unique_prefix();
        let (spool, spool_dir) = spool_table(&options.spool);
        let config = Config::from_toml(
            &config_text(&prefix, &options, &spool),
            countersign::config::Role::Ingester,
            &env_for(&options.amqp_url),
        )
        .expect("test config");
        let topology = Topology::from_config(&config.amqp);

        // Declared here too, so that queues can be inspected even while the ingester cannot
        // reach the broker.
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("RabbitMQ must run on AMQP_URL for these tests");
        let channel = connection.create_channel().await.unwrap();
        topology.declare(&channel).await.expect("declare topology");

        let app = Application::build(config.clone())
            .await
            .expect("ingester builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let admin_address = format!("http://127.0.0.1:{}", app.admin_port());
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Self {
            config,
            address,
            admin_address,
            topology,
            http: reqwest::Client::new(),
            channel,
            _connection: connection,
            shutdown,
            server: Some(server),
            _spool_dir: spool_dir,
        }
    }

    pub async fn post(&self, source: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(format!("{}/webhooks/{source}", self.address))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn ready(&self) -> bool {
        let response = self
            .http
            .get(format!("{}/readyz", self.admin_address))
            .send()
            .await
            .expect("admin port answers");
        response.status() == 200
    }

    /// Waits (up to 20 s) until `/readyz` says the broker is connected (with the spool on, the
    /// ingester is ready before: webhooks would be spooled first).
    pub async fn wait_broker(&self) {
        for _ in 0..200 {
            let body: serde_json::Value = self
                .http
                .get(format!("{}/readyz", self.admin_address))
                .send()
                .await
                .expect("admin port answers")
                .json()
                .await
                .expect("JSON");
            if body["broker"] == true {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the broker never connected");
    }

    /// Waits (up to 20 s) until `/readyz` says `want`.
    pub async fn wait_ready(&self, want: bool) {
        for _ in 0..200 {
            if self.ready().await == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("/readyz never became {want}");
    }

    /// Ready messages in `<prefix>.persist`.
    pub async fn persisted_count(&self) -> u32 {
        countersign::amqp::queue_length(&self.channel, self.topology.persist_queue())
            .await
            .expect("persist queue exists")
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.admin_address))
            .send()
            .await
            .expect("admin port answers")
            .text()
            .await
            .expect("metrics text")
    }

    /// Replaces the work queue by a classic one that holds a single message and refuses the
    /// next: the broker then nacks the publish.
    pub async fn make_persist_queue_hold_one(&self) {
        countersign_testkit::make_persist_queue_hold_one(&self.channel, &self.topology).await;
    }

    /// Takes every message out of `<prefix>.persist`.
    pub async fn drain_persisted(&self) -> Vec<BasicGetMessage> {
        let mut messages = Vec::new();
        while let Some(message) = self
            .channel
            .basic_get(
                ShortString::from(self.topology.persist_queue()),
                BasicGetOptions { no_ack: true },
            )
            .await
            .expect("basic.get")
        {
            messages.push(message);
        }
        messages
    }

    /// Takes every message out of `<prefix>.persist` and returns their `message_id`s.
    pub async fn drain_persisted_ids(&self) -> Vec<String> {
        self.drain_persisted()
            .await
            .iter()
            .map(|m| {
                m.delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .expect("message_id")
                    .to_string()
            })
            .collect()
    }

    /// Stops the ingester gracefully and waits for it.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.server.take() {
            Some(server) => server.await.expect("server task"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        delete_topology(self.topology.clone());
    }
}

/// A header's text value on a received message.
pub fn header<'a>(message: &'a BasicGetMessage, name: &str) -> Option<&'a str> {
    countersign::message::header_text(&message.delivery.properties, name)
}
