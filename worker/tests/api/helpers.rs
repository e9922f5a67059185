//! The whole stack in one test: an ingester and a worker on port 0, the real RabbitMQ under a
//! unique prefix, and a database of the test's own on the real PostgreSQL. Dropping a [`Stack`]
//! stops both, deletes the exchange and queues and drops the database.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use countersign::config::{Config, Role};
use countersign::topology::Topology;
use countersign_testkit::{
    amqp_url, database_url, delete_topology, sign_taktikal, taktikal_example, unique_prefix,
};
use lapin::message::BasicGetMessage;
use lapin::options::BasicGetOptions;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "acme-webhook-signature-key";
pub const READ_TOKEN: &str = "read-api-token";
pub const UK_TOKEN: &str = "legalesign-url-token-7f3a";
/// The signing secret of the Standard Webhooks source `sw`.
pub const SW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
/// The webhook secret of the Yousign source `ys`.
pub const YS_SECRET: &str = "yousign-webhook-secret";
/// The webhook secret of the Documenso source `dm`.
pub const DM_SECRET: &str = "documenso-webhook-secret";
/// The HMAC signing secret of the DocuSeal source `ds`.
pub const DS_SECRET: &str = "whsec_dGVzdC1kb2N1c2VhbC1zZWNyZXQtMjQ";
/// The HMAC secret key of the Zoho Sign source `zs`.
pub const ZS_SECRET: &str = "zoho-sign-webhook-secret";
/// The signing secret of the BoldSign source `bs`.
pub const BS_SECRET: &str = "boldsign-webhook-secret";
/// The shared key of the PandaDoc source `pd`.
pub const PD_SECRET: &str = "pandadoc-shared-key";
/// The Connect HMAC key of the DocuSign source `dg`.
pub const DG_SECRET: &str = "docusign-connect-key";
/// The API key of the Dropbox Sign source `dx`.
pub const DX_SECRET: &str = "324e3b0840f065eb51f3fd63231d0d33daa35d4ed10d27718839e81737065782";

/// Every stack's sources of providers that need only secrets: (source, provider, secret); the
/// secret is in the environment variable `<SOURCE>_SECRET`.
pub const SECRET_SOURCES: &[(&str, &str, &str)] = &[
    ("sw", "standard_webhooks", SW_SECRET),
    ("ys", "yousign", YS_SECRET),
    ("dm", "documenso", DM_SECRET),
    ("ds", "docuseal", DS_SECRET),
    ("zs", "zoho_sign", ZS_SECRET),
    ("bs", "boldsign", BS_SECRET),
    ("pd", "pandadoc", PD_SECRET),
    ("dx", "dropbox_sign", DX_SECRET),
    ("dg", "docusign", DG_SECRET),
];

/// The OAuth access token of the DocuSign source `dg`'s API.
pub const DG_API_TOKEN: &str = "eyJ0eXAiOiJNVCIsImFsZyI6IlJTMjU2In0.countersign-test";
/// The API key of the PandaDoc source `pd`'s API.
pub const PD_API_KEY: &str = "pandadoc-api-key-1";
/// The access token of the Adobe Acrobat Sign source `as`'s API.
pub const AS_API_TOKEN: &str = "3AAABLblqZhAcountersigntesttoken";
/// The API key of the BoldSign source `bs`'s API.
pub const BS_API_KEY: &str = "boldsign-api-key-1";
/// The API key of the DocuSeal source `ds`'s API.
pub const DS_API_KEY: &str = "docuseal-api-key-1";
/// The API key of the Yousign source `ys`'s API.
pub const YS_API_KEY: &str = "yousign-api-key-1";
/// The API key of the Documenso source `dm`'s API.
pub const DM_API_KEY: &str = "api_countersigntest0001";
/// The Zoho Sign source `zs`'s refresh grant: `<client_id>:<client_secret>:<refresh_token>`.
pub const ZS_API_GRANT: &str = "1000.ZSCLIENTID:zs-client-secret-1:1000.zsrefresh.token";

/// The API credentials of sources of [`SECRET_SOURCES`] given an API ([`Options::apis`]), in the
/// environment variable `<SOURCE>_API`. Dropbox Sign's API key is also its callbacks' key.
pub const API_CREDENTIALS: &[(&str, &str)] = &[
    ("dx", DX_SECRET),
    ("dg", DG_API_TOKEN),
    ("pd", PD_API_KEY),
    ("dm", DM_API_KEY),
    ("as", AS_API_TOKEN),
    ("bs", BS_API_KEY),
    ("ds", DS_API_KEY),
    ("ys", YS_API_KEY),
    ("zs", ZS_API_GRANT),
];

/// The client id of the Adobe Acrobat Sign sources `as` (from loopback) and `as-locked` (from an
/// address the tests never use).
pub const AS_CLIENT_ID: &str = "CBJCHBCAABAAcountersigntest";

fn secret_variable(source: &str) -> String {
    format!("{}_SECRET", source.to_uppercase())
}

/// A database of one test's own, dropped with it.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let name = format!("cs_{}", uuid::Uuid::new_v4().simple());
        let admin = PgPool::connect(&database_url())
            .await
            .expect("PostgreSQL must run on DATABASE_URL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let base = database_url();
        let (server, _) = base
            .rsplit_once('/')
            .expect("DATABASE_URL names a database");
        Self {
            url: format!("{server}/{name}"),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(admin) = PgPool::connect(&database_url()).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&admin)
                        .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

pub struct Options {
    pub retry_delays: &'static str,
    /// The worker's DATABASE_URL, when it must differ (a proxy); default the test database.
    pub worker_database_url: Option<String>,
    /// The worker's AMQP_URL, when it must differ (proxies, several nodes); default AMQP_URL.
    pub worker_amqp_url: Option<String>,
    /// The ingester's AMQP_URL, when it must differ; default AMQP_URL.
    pub ingester_amqp_url: Option<String>,
    /// The AMQP name prefix; default a fresh `test-…` one.
    pub prefix: Option<String>,
    pub api_tokens: bool,
    pub start_worker: bool,
    /// How many workers consume the queues side by side (each its own connection and pool),
    /// when `start_worker`; `worker` is the first one's address.
    pub workers: usize,
    /// Adds a Universign source `fr` trusting this JWKS file.
    pub universign_jwks: Option<std::path::PathBuf>,
    /// Adds Legalesign sources: `uk` ("all" callback, this certificate), `uk-events` (URL token
    /// `UK_TOKEN`) and `uk-locked` (the same, allowed only from 192.0.2.1).
    pub legalesign_certificate: Option<std::path::PathBuf>,
    /// With the Legalesign sources: `uk-events` downloads final PDFs from this API base URL with
    /// credentials [`LS_API_CREDENTIALS`].
    pub legalesign_api: Option<String>,
    /// With the Legalesign sources: `uk` ("all" callback) has this API base URL, with
    /// credentials [`LS_API_CREDENTIALS`], reconciling group `/api/v1/group/g/` (hourly: a test
    /// runs it).
    pub legalesign_all_api: Option<String>,
    /// With `legalesign_api`: `uk-events` reconciles every second in group `/api/v1/group/g/`.
    pub legalesign_reconcile: bool,
    /// `acme` (Taktikal) reconciles with this ActivityLog API base URL every second, with
    /// credentials [`TK_API_CREDENTIALS`].
    pub taktikal_api: Option<String>,
    /// With `universign_jwks`: `fr` downloads signed documents from this API base URL with the
    /// API key [`UV_API_KEY`].
    pub universign_api: Option<String>,
    /// Sources of [`SECRET_SOURCES`] given an API at a base URL, with the credentials of
    /// [`API_CREDENTIALS`]: (source, base URL).
    pub apis: Vec<(&'static str, String)>,
    /// With `apis`: sources that obtain their access tokens at a token URL (`[sources.api]
    /// token_url`): (source, token URL); their credentials are a refresh grant.
    pub token_urls: Vec<(&'static str, String)>,
    /// With `universign_api`: `fr` reconciles every second.
    pub universign_reconcile: bool,
}

/// A stack with the Universign source `fr` trusting a fresh key, its API at `api` (reconciling
/// every second if `reconcile`); and a way to post it transaction lifecycle events.
pub struct UniversignStack {
    pub stack: Stack,
    key: String,
    _dir: tempfile::TempDir,
}

impl UniversignStack {
    pub async fn start(api: &str, reconcile: bool) -> Self {
        let key = countersign_testkit::rsa_key_pem();
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks.json");
        std::fs::write(
            &jwks,
            countersign_providers::universign::jwks_of(&key, "uk1")
                .unwrap()
                .to_string(),
        )
        .unwrap();
        let stack = Stack::start_with(Options {
            universign_jwks: Some(jwks),
            universign_api: Some(api.to_owned()),
            universign_reconcile: reconcile,
            ..Options::default()
        })
        .await;
        Self {
            stack,
            key,
            _dir: dir,
        }
    }

    /// Posts a genuine `transaction.lifecycle.<stage>` event for `transaction`; the status.
    pub async fn post_lifecycle(&self, id: &str, stage: &str, transaction: &str) -> u16 {
        let now = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let body = serde_json::to_vec(&serde_json::json!({"object": "event", "id": id,
            "type": format!("transaction.lifecycle.{stage}"), "createdAt": now,
            "payload": {"object": {"object": "transaction", "id": transaction}}}))
        .unwrap();
        let signature =
            countersign_providers::universign::sign_detached(&self.key, "uk1", "PS256", &body)
                .unwrap();
        self.stack
            .post_to("fr", &body, &[("x-jws-signature", &signature)])
            .await
    }
}

/// The Universign API key of `fr` when it has an API.
pub const UV_API_KEY: &str = "uv-test-api-key";

/// The Taktikal API credentials of `acme` when it reconciles (sent as the header's value).
pub const TK_API_CREDENTIALS: &str = "Basic Y291bnRlcnNpZ246dGVzdA==";

/// The Legalesign API credentials (`username:secret`) of `uk-events` when it has an API.
pub const LS_API_CREDENTIALS: &str = "countersign-test:api-secret-3c9e";

impl Default for Options {
    fn default() -> Self {
        Self {
            retry_delays: r#"["1s", "2s", "4s"]"#,
            worker_database_url: None,
            worker_amqp_url: None,
            ingester_amqp_url: None,
            prefix: None,
            api_tokens: false,
            start_worker: true,
            workers: 1,
            universign_jwks: None,
            legalesign_certificate: None,
            legalesign_api: None,
            legalesign_all_api: None,
            apis: Vec::new(),
            token_urls: Vec::new(),
            legalesign_reconcile: false,
            taktikal_api: None,
            universign_api: None,
            universign_reconcile: false,
        }
    }
}

pub fn config_text(
    prefix: &str,
    documents: &std::path::Path,
    spool: &std::path::Path,
    options: &Options,
) -> String {
    let tokens = if options.api_tokens {
        r#"api_tokens = ["env:READ_TOKEN"]"#
    } else {
        ""
    };
    let mut universign = options
        .universign_jwks
        .as_ref()
        .map_or(String::new(), |jwks| {
            format!(
                "[[sources]]\nname = \"fr\"\nprovider = \"universign\"\njwks = \"{}\"\n{}\n",
                jwks.display(),
                options.universign_api.as_ref().map_or(String::new(), |base| format!(
                    "api = {{ base_url = \"{base}\", credentials = \"env:UV_API\", timeout = \"5s\" }}\n{}",
                    if options.universign_reconcile {
                        "reconcile = { interval = \"1s\", min_age = \"0s\" }"
                    } else {
                        "reconcile = { enabled = false }"
                    }
                ))
            )
        });
    if let Some(certificate) = &options.legalesign_certificate {
        universign.push_str(&format!(
            "[[sources]]\nname = \"uk\"\nprovider = \"legalesign\"\ncertificate = \"{}\"\n{}\n\
             [[sources]]\nname = \"uk-events\"\nprovider = \"legalesign_event\"\nsecrets = [\"env:UK_TOKEN\"]\nallow_shared_secrets = true\n{}\n\
             [[sources]]\nname = \"uk-locked\"\nprovider = \"legalesign_event\"\nsecrets = [\"env:UK_TOKEN\"]\nallow_shared_secrets = true\nallow_ips = [\"192.0.2.1\"]\n",
            certificate.display(),
            options.legalesign_all_api.as_ref().map_or(String::new(), |base| format!(
                "api = {{ base_url = \"{base}\", credentials = \"env:LS_API\", timeout = \"5s\" }}\n\
                 reconcile = {{ scope = \"/api/v1/group/g/\", min_age = \"0s\" }}"
            )),
            options.legalesign_api.as_ref().map_or(String::new(), |base| format!(
                "api = {{ base_url = \"{base}\", credentials = \"env:LS_API\", timeout = \"5s\" }}\n{}",
                if options.legalesign_reconcile {
                    "reconcile = { interval = \"1s\", min_age = \"0s\", scope = \"/api/v1/group/g/\" }"
                } else {
                    "reconcile = { enabled = false }"
                }
            ))
        ));
    }
    for (name, provider, _) in SECRET_SOURCES {
        universign.push_str(&format!(
            "[[sources]]\nname = \"{name}\"\nprovider = \"{provider}\"\nsecrets = [\"env:{}\"]\n",
            secret_variable(name)
        ));
        if let Some((_, base)) = options.apis.iter().find(|(source, _)| source == name) {
            let token_url = options
                .token_urls
                .iter()
                .find(|(source, _)| source == name)
                .map_or(String::new(), |(_, url)| format!(", token_url = \"{url}\""));
            universign.push_str(&format!(
                "api = {{ base_url = \"{base}\", credentials = \"env:{}_API\", timeout = \"5s\"{token_url} }}\n",
                name.to_uppercase()
            ));
        }
    }
    for (name, allowed) in [("as", "127.0.0.1/32"), ("as-locked", "192.0.2.1/32")] {
        universign.push_str(&format!(
            "[[sources]]\nname = \"{name}\"\nprovider = \"adobe_sign\"\nsecrets = [\"env:AS_CLIENT_ID\"]\nallow_shared_secrets = true\nallow_ips = [\"{allowed}\"]\n"
        ));
        if let Some((_, base)) = options.apis.iter().find(|(source, _)| *source == name) {
            universign.push_str(&format!(
                "api = {{ base_url = \"{base}\", credentials = \"env:AS_API\", timeout = \"5s\" }}\n"
            ));
        }
    }
    format!(
        r#"
        [amqp]
        prefix = "{prefix}"
        retry_delays = {retry}

        [ingester]
        listen = "127.0.0.1:0"
        admin_listen = "127.0.0.1:0"
        confirm_timeout = "5s"

        [ingester.spool]
        dir = "{spool}"

        [worker]
        listen = "127.0.0.1:0"
        documents = "file:{documents}"
        prefetch = 16
        database_timeout = "1s"
        {tokens}

        [[sources]]
        name = "acme"
        provider = "taktikal"
        secrets = ["env:ACME_KEY"]
        {taktikal_api}

        {universign}
        "#,
        taktikal_api = options.taktikal_api.as_ref().map_or(String::new(), |base| format!(
            "api = {{ base_url = \"{base}\", credentials = \"env:TK_API\", timeout = \"5s\" }}\n\
             reconcile = {{ interval = \"1s\", min_age = \"0s\" }}"
        )),
        retry = options.retry_delays,
        documents = documents.display(),
        spool = spool.display(),
    )
}

pub fn env_for(database_url: &str) -> impl Fn(&str) -> Option<String> {
    let mut map = HashMap::from([
        ("ACME_KEY".to_owned(), KEY.to_owned()),
        ("READ_TOKEN".to_owned(), READ_TOKEN.to_owned()),
        ("UK_TOKEN".to_owned(), UK_TOKEN.to_owned()),
        ("AMQP_URL".to_owned(), amqp_url()),
        ("DATABASE_URL".to_owned(), database_url.to_owned()),
    ]);
    for (name, _, secret) in SECRET_SOURCES {
        map.insert(secret_variable(name), (*secret).to_owned());
    }
    for (name, credentials) in API_CREDENTIALS {
        map.insert(
            format!("{}_API", name.to_uppercase()),
            (*credentials).to_owned(),
        );
    }
    map.insert("AS_CLIENT_ID".to_owned(), AS_CLIENT_ID.to_owned());
    map.insert("LS_API".to_owned(), LS_API_CREDENTIALS.to_owned());
    map.insert("TK_API".to_owned(), TK_API_CREDENTIALS.to_owned());
    map.insert("UV_API".to_owned(), UV_API_KEY.to_owned());
    move |name| map.get(name).cloned()
}

pub struct Stack {
    pub topology: Topology,
    pub db: PgPool,
    pub database: TestDatabase,
    _documents: tempfile::TempDir,
    _spool: tempfile::TempDir,
    pub config_text: String,
    pub ingester: String,
    pub worker: String,
    pub http: reqwest::Client,
    pub channel: Channel,
    _connection: Connection,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let prefix = options.prefix.clone().unwrap_or_else(unique_prefix);
        let database = TestDatabase::create().await;
        let documents = tempfile::tempdir().unwrap();
        let spool = tempfile::tempdir().unwrap();
        let text = config_text(&prefix, documents.path(), spool.path(), &options);
        let ingester_config = {
            let ingester_env = env_for(&database.url);
            let ingester_amqp = options.ingester_amqp_url.clone();
            Config::from_toml(&text, Role::Ingester, &|name: &str| match name {
                "AMQP_URL" if ingester_amqp.is_some() => ingester_amqp.clone(),
                _ => ingester_env(name),
            })
            .expect("test config")
        };
        let worker_url = options
            .worker_database_url
            .clone()
            .unwrap_or_else(|| database.url.clone());
        let worker_env = env_for(&worker_url);
        let worker_amqp = options.worker_amqp_url.clone();
        let worker_config = Config::from_toml(&text, Role::Worker, &|name: &str| match name {
            "AMQP_URL" if worker_amqp.is_some() => worker_amqp.clone(),
            _ => worker_env(name),
        })
        .expect("test config");
        let topology = Topology::from_config(&ingester_config.amqp);

        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("RabbitMQ must run on AMQP_URL");
        let channel = connection.create_channel().await.unwrap();
        channel.confirm_select(Default::default()).await.unwrap();
        topology.declare(&channel).await.unwrap();

        let shutdown = CancellationToken::new();
        let ingester = countersign_ingester::Application::build(ingester_config)
            .await
            .expect("ingester builds");
        let ingester_address = format!("http://127.0.0.1:{}", ingester.port());
        let mut tasks = vec![tokio::spawn(ingester.run_until_stopped(shutdown.clone()))];
        let worker = countersign_worker::Application::build(worker_config.clone())
            .await
            .expect("worker builds");
        let worker_address = format!("http://127.0.0.1:{}", worker.port());
        if options.start_worker {
            tasks.push(tokio::spawn(worker.run_until_stopped(shutdown.clone())));
            for _ in 1..options.workers {
                let other = countersign_worker::Application::build(worker_config.clone())
                    .await
                    .expect("worker builds");
                tasks.push(tokio::spawn(other.run_until_stopped(shutdown.clone())));
            }
        }

        let db = PgPool::connect(&database.url).await.unwrap();
        if !options.start_worker {
            // A worker started later (a binary) finds the schema; migrations are idempotent.
            countersign_worker::db::migrator()
                .await
                .expect("the embedded migrations")
                .run(&db)
                .await
                .expect("migrations");
        }
        let stack = Self {
            topology,
            db,
            database,
            _documents: documents,
            _spool: spool,
            config_text: text,
            ingester: ingester_address,
            worker: worker_address,
            http: reqwest::Client::new(),
            channel,
            _connection: connection,
            shutdown,
            tasks,
        };
        if options.start_worker {
            stack.wait_ready().await;
        }
        stack
    }

    pub async fn wait_ready(&self) {
        let url = format!("{}/readyz", self.worker);
        wait_until("the worker is ready", Duration::from_secs(30), || async {
            self.http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
    }

    /// Posts to the ingester's `acme` source; returns the status.
    pub async fn post(&self, body: &[u8]) -> u16 {
        self.http
            .post(format!("{}/webhooks/acme", self.ingester))
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .expect("ingester answers")
            .status()
            .as_u16()
    }

    /// Posts to any source with extra headers; returns the status.
    /// Waits until one message is in the parking lot and takes it.
    pub async fn parked_one(&self) -> BasicGetMessage {
        let dead = self.topology.dead_queue().to_owned();
        wait_until("a message is parked", Duration::from_secs(30), || async {
            self.queue_len(&dead).await == 1
        })
        .await;
        let mut parked = self.drain(&dead).await;
        assert_eq!(parked.len(), 1);
        parked.remove(0)
    }

    /// Runs `source`'s reconciliation once — it must publish `gaps`, recorded until the archive
    /// holds `events` events — then again: nothing more to find.
    pub async fn reconciles(&self, source: &str, gaps: usize, events: i64) {
        let (reconciler, index) = self.reconciler(source);
        assert_eq!(
            reconciler.run_once(index).await.unwrap().gaps,
            gaps,
            "first run"
        );
        self.wait_for_events(events).await;
        let persist = self.topology.persist_queue().to_owned();
        wait_until("the queue is drained", Duration::from_secs(30), || async {
            self.queue_len(&persist).await == 0
        })
        .await;
        assert_eq!(
            reconciler.run_once(index).await.unwrap().gaps,
            0,
            "second run"
        );
    }

    /// A reconciler of this stack's configuration, run by the test (`run_once`) rather than on
    /// its interval; and the index of `source`'s job in it.
    pub fn reconciler(&self, source: &str) -> (countersign_worker::reconcile::Reconciler, usize) {
        use countersign::config::{Config, Role};
        let config = Config::from_toml(
            &self.config_text,
            Role::Worker,
            &env_for(&self.database.url),
        )
        .unwrap();
        let db = countersign_worker::db::Db::connect_lazy(
            &self.database.url,
            4,
            std::time::Duration::from_secs(5),
        )
        .unwrap();
        let fetcher =
            std::sync::Arc::new(countersign_worker::fetch::Fetcher::from_config(&config).unwrap());
        let reconciler = countersign_worker::reconcile::Reconciler::new(
            &config,
            db,
            fetcher,
            countersign_worker::metrics::Metrics::new(),
        )
        .unwrap();
        let index = reconciler
            .sources()
            .iter()
            .position(|s| *s == source)
            .unwrap_or_else(|| panic!("{source} is not reconciled: {:?}", reconciler.sources()));
        (reconciler, index)
    }

    pub async fn post_to(&self, source: &str, body: &[u8], headers: &[(&str, &str)]) -> u16 {
        self.send_to(source, body, headers).await.status().as_u16()
    }

    /// Posts to any source with extra headers (`content-type` JSON unless one is given); returns
    /// the whole response.
    pub async fn send_to(
        &self,
        source: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/webhooks/{source}", self.ingester))
            .body(body.to_vec());
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("ingester answers")
    }

    /// Publishes as an ingester would, straight to the exchange (another replica, a bad message).
    pub async fn publish_raw(&self, body: &[u8], event_id: &str, headers: &[(&str, &str)]) {
        let mut table = FieldTable::default();
        for (name, value) in headers {
            table.insert(
                ShortString::from(*name),
                AMQPValue::LongString(LongString::from(*value)),
            );
        }
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(ShortString::from(event_id))
            .with_headers(table);
        countersign::amqp::publish_confirmed(
            &self.channel,
            ShortString::from(self.topology.exchange()),
            "taktikal.acme.AllSigned".into(),
            body,
            properties,
            Duration::from_secs(5),
        )
        .await
        .expect("published");
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.db)
            .await
            .expect(sql)
    }

    /// The Prometheus text of the worker's `/metrics`.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.worker))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn queue_len(&self, queue: &str) -> u32 {
        countersign::amqp::queue_length(&self.channel, queue)
            .await
            .expect("queue exists")
    }

    pub async fn drain(&self, queue: &str) -> Vec<BasicGetMessage> {
        let mut messages = Vec::new();
        while let Some(message) = self
            .channel
            .basic_get(ShortString::from(queue), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            messages.push(message);
        }
        messages
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.worker))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// Waits until `webhook_events` holds `n` rows.
    pub async fn wait_for_events(&self, n: i64) {
        wait_until(
            &format!("{n} events recorded"),
            Duration::from_secs(60),
            || async { self.count("SELECT count(*) FROM webhook_events").await >= n },
        )
        .await;
    }

    /// Waits until the most-delivered event of `source` has been delivered `n` times (a
    /// provider's retry recorded as a repeat), then checks nothing went to the dead letters.
    pub async fn wait_for_deliveries(&self, source: &str, n: i64) {
        let sql = format!(
            "SELECT coalesce(max(deliveries), 0)::bigint FROM webhook_events WHERE source = '{source}'"
        );
        wait_until(
            &format!("{source}: an event delivered {n} times"),
            Duration::from_secs(30),
            || async { self.count(&sql).await == n },
        )
        .await;
        assert_eq!(self.queue_len(self.topology.dead_queue()).await, 0);
    }

    /// The stored headers of every event of `source`, by event id.
    pub async fn stored_headers(&self, source: &str) -> HashMap<String, serde_json::Value> {
        sqlx::query_as("SELECT event_id, headers FROM webhook_events WHERE source = $1")
            .bind(source)
            .fetch_all(&self.db)
            .await
            .unwrap()
            .into_iter()
            .collect()
    }

    /// The signed document of `process_key`, as `GET /documents/{sha256}` serves it.
    pub async fn signed_document(&self, process_key: &str) -> Vec<u8> {
        let sha256: String = sqlx::query_scalar(
            "SELECT sha256 FROM documents WHERE process_key = $1 AND kind = 'signed'",
        )
        .bind(process_key)
        .fetch_one(&self.db)
        .await
        .expect("a signed document is recorded");
        let response = self
            .http
            .get(format!("{}/documents/{sha256}", self.worker))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap().to_vec()
    }

    /// Whether signee `key` of `source` is recorded as signed.
    pub async fn signed(&self, source: &str, key: &str) -> bool {
        sqlx::query_scalar("SELECT signed FROM signees WHERE source = $1 AND signee_key = $2")
            .bind(source)
            .bind(key)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// Stops the ingester and the worker gracefully.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        for task in self.tasks.drain(..) {
            task.await.expect("task").expect("graceful stop");
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
        delete_topology(self.topology.clone());
    }
}

/// Polls `condition` every 50 ms; panics with `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Taktikal event of `event_type` (its integer) for `process_key`, signed now. Returns
/// (event id, body).
pub fn taktikal(process_key: &str, event_type: u8) -> (String, Vec<u8>) {
    taktikal_with(process_key, event_type, |_| {})
}

/// Like [`taktikal`], with `edit` applied to the event before signing.
pub fn taktikal_with(
    process_key: &str,
    event_type: u8,
    edit: impl FnOnce(&mut serde_json::Value),
) -> (String, Vec<u8>) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut event = taktikal_example();
    event["Id"] = id.clone().into();
    event["EventData"]["ProcessKey"] = process_key.into();
    event["EventData"]["EventType"] = event_type.into();
    for signee in event["EventData"]["Signees"].as_array_mut().unwrap() {
        signee["ProcessKey"] = process_key.into();
        signee["Signed"] = (event_type != 11).into();
        signee["SignedAt"] = chrono::Utc::now()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            .into();
    }
    edit(&mut event);
    (id, sign_taktikal(event, KEY, SystemTime::now()))
}

pub fn header<'a>(message: &'a BasicGetMessage, name: &str) -> Option<&'a str> {
    countersign::message::header_text(&message.delivery.properties, name)
}
