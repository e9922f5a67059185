//! Configuration: one TOML file, then the environment.
//!
//! The file's path comes from `COUNTERSIGN_CONFIG` (default `./countersign.toml`); `AMQP_URL` and
//! `DATABASE_URL` from the environment override the file. Secrets are never inline: each is a
//! reference, `env:NAME` or `file:/path`, resolved once at start. Every problem is reported as one
//! line naming the field (`sources[acme].secrets[1]: ...`) before anything starts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use countersign_providers::{ProviderKind, Setting, SourceLimits, Sources};
use secrecy::SecretString;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What a source's configuration resolves into is the providers' vocabulary: re-exported here,
/// where configuration is read.
pub use countersign_providers::settings::{
    ApiConfig, ConfigError, DEFAULT_API_TIMEOUT, DEFAULT_MAX_DOCUMENT_BYTES, IpNet,
    MAX_KEY_FILE_BYTES, ReconcileConfig, Secret, SourceConfig, read_small_file,
};

/// Default path of the configuration file, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "./countersign.toml";
/// Default broker address: the local RabbitMQ of a development machine.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Room for a spooled record's routing key, properties and headers beside its body.
pub const SPOOL_RECORD_HEADROOM: u64 = 1024 * 1024;

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub amqp: AmqpConfig,
    pub ingester: IngesterConfig,
    pub worker: WorkerConfig,
    /// `DATABASE_URL`, or `[database] url` in the file; only the worker needs it.
    pub database_url: Option<SecretString>,
    pub sources: Vec<SourceConfig>,
}

#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// `AMQP_URL`, or `[amqp] url`, or [`DEFAULT_AMQP_URL`]. Holds a password: never logged.
    pub url: SecretString,
    /// Names are `<prefix>.events`, `<prefix>.persist`, ...; tests use a unique prefix.
    pub prefix: String,
    /// Delays of the retry queues, shortest first: one queue `<prefix>.retry.<delay>` each.
    pub retry_delays: Vec<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngesterConfig {
    /// Webhooks only; an ingress exposes this port.
    pub listen: SocketAddr,
    /// `/healthz`, `/readyz`, `/metrics`; never exposed to providers.
    pub admin_listen: SocketAddr,
    /// Largest accepted body; a source may override it. Embedded base64 PDFs make bodies of tens
    /// of MiB realistic, and RabbitMQ 3.10 accepts messages up to 128 MiB.
    pub max_body_bytes: usize,
    /// How long to wait for the broker's confirm before replying 503.
    #[serde(with = "humantime_serde")]
    pub confirm_timeout: Duration,
    /// The `Retry-After` sent with a 503.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// On SIGTERM, how long in-flight requests may take to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// How many signatures the replay memory holds at most (about 100 bytes each).
    pub replay_memory_entries: usize,
    /// Body bytes held by all requests together; past it a request gets 503 + `Retry-After`
    /// (a handful of requests holding huge bodies cannot exhaust memory). Bytes connections have
    /// read that no request has taken yet (unfinished request heads) count too: past it, they
    /// are not read until room is given back. At least the largest `max_body_bytes`.
    pub max_body_bytes_in_flight: usize,
    /// From a request's first byte to its reply, on every request of a connection: a client that
    /// sends slowly or stops half-way is cut off after this (slow-loris). Longer than
    /// `confirm_timeout`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// A new connection must send its first request's headers within this (else 408).
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// How long an idle kept-alive connection stays open.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Open webhook connections at most; 0 (the default) means the process's file-descriptor
    /// limit (raised to its hard limit at start) less 1,024 kept for the broker, the admin port
    /// and logs. Past it, new connections wait in the listen backlog.
    pub max_connections: usize,
    /// Reverse proxies (addresses or networks) whose `X-Forwarded-For` is believed: behind one
    /// (an ingress), the TCP peer is the proxy, and the client's address — what a source's
    /// `allow_ips` checks — is the rightmost `X-Forwarded-For` entry that is not itself one of
    /// these. From any other peer the header is ignored (anyone can send it). Empty (the
    /// default): the TCP peer is the client.
    pub trusted_proxies: Vec<IpNet>,
    /// Where a webhook the broker cannot take right now is kept until it can.
    pub spool: SpoolConfig,
}

/// `[ingester.spool]`: the local durable spool. When a publish is not confirmed (broker down,
/// blocked, nack, confirm timeout), the verified message is appended here and fsync'd before the
/// 200; a drainer publishes it once the broker is back. A 200 then means "confirmed by RabbitMQ,
/// or on this ingester's disk": `dir` must be a persistent volume.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Off: a broker outage is a 503, as without a spool.
    pub enabled: bool,
    /// One ingester per directory (it is locked). Created if missing.
    pub dir: PathBuf,
    /// Bytes on disk at most (records with their headers); past it, 503 as without a spool.
    pub max_bytes: u64,
    /// Age of the oldest message not yet drained at most; past it new webhooks get 503 (the
    /// broker has been away too long for this disk to stand in for it). Nothing is dropped.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: PathBuf::from("./data/spool"),
            max_bytes: 1024 * 1024 * 1024,
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

impl Default for IngesterConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            admin_listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
            max_body_bytes: 64 * 1024 * 1024,
            confirm_timeout: Duration::from_secs(10),
            retry_after: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            replay_memory_entries: 500_000,
            max_body_bytes_in_flight: 256 * 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(5),
            max_connections: 0,
            trusted_proxies: Vec::new(),
            spool: SpoolConfig::default(),
        }
    }
}

/// `worker.batch_wait`'s default. At a steady few thousand events a second, messages that
/// arrive a millisecond apart otherwise commit one or two at a time: measured with `bench
/// sustained` at 2,000 events/s, 5 ms took PostgreSQL from 325 to 201–214 core-µs per event and
/// the worker from 195 to 154–167, the end-to-end median unchanged (7.0–7.6 → 7.3–8.1 ms); at
/// 200 events/s it adds 5.7 ms to the median and still saves 38 % of PostgreSQL's CPU.
pub const DEFAULT_BATCH_WAIT: Duration = Duration::from_millis(5);

/// Batches the worker records at once: enough to hold every prefetched message, but at most half
/// the database pool (a batch holds its transaction's connection and may take a second one for
/// the documents' rows; two batches each waiting for the other's second connection would stall
/// until the pool's timeout).
pub fn batches_in_flight(prefetch: u16, batch_size: u16, pool_size: u32) -> usize {
    let wanted = usize::from(prefetch).div_ceil(usize::from(batch_size.max(1)));
    let allowed = usize::try_from(pool_size / 2).unwrap_or(usize::MAX).max(1);
    wanted.clamp(1, allowed)
}

/// The worker's settings, with its API tokens resolved.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Read API + `/healthz`, `/readyz`, `/metrics`.
    pub listen: SocketAddr,
    /// Where documents are stored (`documents = "file:<directory>"` or `"s3://<bucket>[/<prefix>]"`).
    pub documents: DocumentsLocation,
    /// Messages delivered to the worker before it acks: how many are in hand at once.
    pub prefetch: u16,
    /// At most this many messages are recorded in one transaction.
    pub batch_size: u16,
    /// How long a batch may wait to fill once its first message is in hand; zero takes what is
    /// already delivered and never holds a message back for company.
    pub batch_wait: Duration,
    /// Connections to PostgreSQL.
    pub database_pool_size: u32,
    /// How long to wait for a database connection before counting the attempt as failed.
    pub database_timeout: Duration,
    /// Bearer tokens that may use the read API; none means the API is open (bind it privately).
    pub api_tokens: Vec<Secret>,
    /// Where those tokens are (`env:NAME`, `file:/path`), as written, in both binaries: what a
    /// command shows a person instead of a token.
    pub api_token_references: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileWorker {
    listen: SocketAddr,
    documents: String,
    prefetch: u16,
    batch_size: u16,
    #[serde(with = "humantime_serde")]
    batch_wait: Duration,
    database_pool_size: u32,
    #[serde(with = "humantime_serde")]
    database_timeout: Duration,
    api_tokens: Vec<String>,
}

impl Default for FileWorker {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8081)),
            documents: "file:./data/documents".to_owned(),
            prefetch: 256,
            batch_size: 64,
            batch_wait: DEFAULT_BATCH_WAIT,
            database_pool_size: 32,
            database_timeout: Duration::from_secs(5),
            api_tokens: Vec::new(),
        }
    }
}

impl FileWorker {
    fn resolve(self, role: Role, env: EnvLookup<'_>) -> Result<WorkerConfig, ConfigError> {
        let documents = DocumentsLocation::parse(&self.documents)
            .map_err(|message| ConfigError::new("worker.documents", message))?;
        if self.prefetch == 0 {
            return Err(ConfigError::new("worker.prefetch", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(ConfigError::new("worker.batch_size", "must be at least 1"));
        }
        if self.batch_wait > Duration::from_secs(10) {
            return Err(ConfigError::new(
                "worker.batch_wait",
                "must be at most 10s: every message of a batch waits for it before it is acked",
            ));
        }
        if self.database_pool_size == 0 {
            return Err(ConfigError::new(
                "worker.database_pool_size",
                "must be at least 1",
            ));
        }
        let api_tokens = match role {
            Role::Worker => self
                .api_tokens
                .iter()
                .enumerate()
                .map(|(i, reference)| {
                    resolve_secret(&format!("worker.api_tokens[{i}]"), reference, env)
                })
                .collect::<Result<Vec<_>, _>>()?,
            Role::Ingester => Vec::new(),
        };
        Ok(WorkerConfig {
            listen: self.listen,
            documents,
            prefetch: self.prefetch,
            batch_size: self.batch_size,
            batch_wait: self.batch_wait,
            database_pool_size: self.database_pool_size,
            database_timeout: self.database_timeout,
            api_tokens,
            api_token_references: self.api_tokens,
        })
    }
}

/// The document store: a local directory, or an S3 bucket (AWS S3 or an S3-compatible server:
/// MinIO, Ceph, GCS's interoperability endpoint), with the usual `AWS_*` environment variables
/// for region, credentials and endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentsLocation {
    Directory(PathBuf),
    /// `s3://<bucket>[/<prefix>]`, as written.
    S3 {
        url: String,
    },
}

impl DocumentsLocation {
    pub fn parse(text: &str) -> Result<Self, String> {
        const EXPECTED: &str = "must be file:<directory> (file:///absolute/path or file:relative/path) or s3://<bucket>[/<prefix>]";
        if let Some(rest) = text.strip_prefix("s3://") {
            let bucket = rest.split('/').next().unwrap_or_default();
            if bucket.is_empty() {
                return Err(format!("{EXPECTED}: no bucket in {text:?}"));
            }
            return Ok(Self::S3 {
                url: text.to_owned(),
            });
        }
        let path = text
            .strip_prefix("file://")
            .or_else(|| text.strip_prefix("file:"))
            .filter(|path| !path.is_empty())
            .ok_or_else(|| format!("{EXPECTED}, not {text:?}"))?;
        Ok(Self::Directory(PathBuf::from(path)))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    amqp: FileAmqp,
    #[serde(default)]
    ingester: IngesterConfig,
    #[serde(default)]
    worker: FileWorker,
    #[serde(default)]
    database: FileDatabase,
    #[serde(default)]
    sources: Vec<FileSource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileAmqp {
    url: Option<String>,
    prefix: String,
    retry_delays: Vec<humantime_serde::Serde<Duration>>,
}

impl Default for FileAmqp {
    fn default() -> Self {
        Self {
            url: None,
            prefix: "countersign".to_owned(),
            retry_delays: [5, 30, 120, 600, 3600]
                .into_iter()
                .map(|s| Duration::from_secs(s).into())
                .collect(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileDatabase {
    url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSource {
    name: String,
    provider: String,
    #[serde(default)]
    secrets: Vec<String>,
    max_body_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    max_signature_age: Option<Duration>,
    jwks: Option<PathBuf>,
    certificate: Option<PathBuf>,
    #[serde(default)]
    allow_ips: Vec<String>,
    api: Option<FileApi>,
    reconcile: Option<FileReconcile>,
    /// A secret that is also another source's is refused (a signature made for one would be
    /// accepted by the other) unless both sources say it is intended.
    #[serde(default)]
    allow_shared_secrets: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileReconcile {
    enabled: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    min_age: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    look_back: Option<Duration>,
    scope: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileApi {
    base_url: String,
    credentials: String,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    max_document_bytes: Option<usize>,
    token_url: Option<String>,
}

/// Which binary reads the configuration: each resolves only its own secrets, so that an ingester
/// never needs the worker's tokens and the worker never holds the providers' keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Ingester,
    Worker,
}

/// Where environment variables come from: the process, or a map in tests.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Config {
    /// Reads the file named by `COUNTERSIGN_CONFIG` (or [`DEFAULT_CONFIG_PATH`]) and the process
    /// environment.
    pub fn load(role: Role) -> Result<Self, ConfigError> {
        let path = std::env::var_os("COUNTERSIGN_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
        Self::load_path(&path, role)
    }

    /// Reads `path` and the process environment (a binary's `--config`).
    pub fn load_path(path: &Path, role: Role) -> Result<Self, ConfigError> {
        Self::load_file(path, role, &process_env)
    }

    /// The worker's database, or the configuration error that says how to give one.
    /// The configured sources with their verifiers (keys and certificates loaded): what the
    /// ingester serves. An error names the source whose provider is unknown or whose
    /// provider-specific settings are missing or unusable.
    pub fn build_sources(&self) -> Result<Sources, ConfigError> {
        Sources::new(
            &self.sources,
            SourceLimits {
                max_body_bytes: self.ingester.max_body_bytes,
                replay_memory_entries: self.ingester.replay_memory_entries,
            },
        )
    }

    pub fn require_database_url(&self) -> Result<&SecretString, ConfigError> {
        self.database_url.as_ref().ok_or_else(|| {
            ConfigError::new(
                "DATABASE_URL",
                "not set (nor [database] url); for example postgres://postgres@127.0.0.1:5432/countersign",
            )
        })
    }

    /// Reads one file, resolving references with `env`.
    pub fn load_file(path: &Path, role: Role, env: EnvLookup<'_>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                path.display().to_string(),
                format!("cannot read the configuration file ({e}); set COUNTERSIGN_CONFIG"),
            )
        })?;
        Self::from_toml(&text, role, env).map_err(|e| e.within(&path.display().to_string()))
    }

    /// Parses and validates TOML text, resolving references with `env`.
    pub fn from_toml(text: &str, role: Role, env: EnvLookup<'_>) -> Result<Self, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| {
            let location = match e.span() {
                Some(span) => format!("line {}", 1 + text[..span.start].matches('\n').count()),
                None => "file".to_owned(),
            };
            ConfigError::new(location, e.message().to_owned())
        })?;
        file.resolve(role, env)
    }
}

impl FileConfig {
    fn resolve(self, role: Role, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        let amqp = self.amqp.resolve(env)?;
        let largest_body = self
            .sources
            .iter()
            .filter_map(|s| s.max_body_bytes)
            .chain([self.ingester.max_body_bytes])
            .max()
            .unwrap_or_default();
        check_ingester(&self.ingester, largest_body)?;
        let mut sources: Vec<SourceConfig> = Vec::with_capacity(self.sources.len());
        // Each secret's digest → (source, whether it allows sharing), for the check below.
        let mut secret_owners: HashMap<[u8; 32], (String, bool)> = HashMap::new();
        for (index, raw) in self.sources.into_iter().enumerate() {
            let source = raw.resolve(index, &sources, &mut secret_owners, role, env)?;
            sources.push(source);
        }
        Ok(Config {
            amqp,
            ingester: self.ingester,
            worker: self.worker.resolve(role, env)?,
            database_url: env("DATABASE_URL")
                .or(self.database.url)
                .map(SecretString::from),
            sources,
        })
    }
}

impl FileAmqp {
    /// `[amqp]`, with `AMQP_URL` from the environment over the file's `url`.
    fn resolve(self, env: EnvLookup<'_>) -> Result<AmqpConfig, ConfigError> {
        let retry_delays: Vec<Duration> = self.retry_delays.iter().map(|d| **d).collect();
        let url = env("AMQP_URL")
            .or(self.url)
            .unwrap_or_else(|| DEFAULT_AMQP_URL.to_owned());
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            return Err(ConfigError::new(
                "AMQP_URL",
                "must start with amqp:// or amqps://",
            ));
        }
        check_name("amqp.prefix", &self.prefix, &['.', '-', '_'])?;
        let problem = if retry_delays.is_empty() {
            Some("needs at least one delay")
        } else if retry_delays.iter().any(|d| d.as_millis() == 0) {
            Some("delays must be at least 1ms")
        } else if !retry_delays.is_sorted() {
            Some("delays must grow: list them shortest first")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(ConfigError::new("amqp.retry_delays", problem));
        }
        Ok(AmqpConfig {
            url: SecretString::from(url),
            prefix: self.prefix,
            retry_delays,
        })
    }
}

/// `[ingester]`'s limits and timeouts, against each other and the largest body a source takes.
fn check_ingester(ingester: &IngesterConfig, largest_body: usize) -> Result<(), ConfigError> {
    let positive = [
        ("ingester.max_body_bytes", ingester.max_body_bytes == 0),
        (
            "ingester.confirm_timeout",
            ingester.confirm_timeout.is_zero(),
        ),
        ("ingester.header_timeout", ingester.header_timeout.is_zero()),
        ("ingester.keep_alive", ingester.keep_alive.is_zero()),
    ];
    for (name, zero) in positive {
        if zero {
            return Err(ConfigError::new(name, "must be greater than zero"));
        }
    }
    if ingester.request_timeout <= ingester.confirm_timeout {
        return Err(ConfigError::new(
            "ingester.request_timeout",
            "must be longer than ingester.confirm_timeout (a request waits for the confirm)",
        ));
    }
    if ingester.max_body_bytes_in_flight < largest_body {
        return Err(ConfigError::new(
            "ingester.max_body_bytes_in_flight",
            format!(
                "must be at least the largest max_body_bytes ({largest_body}): such a body could never be accepted"
            ),
        ));
    }
    check_spool(&ingester.spool, largest_body)?;
    if ingester.listen == ingester.admin_listen && ingester.listen.port() != 0 {
        return Err(ConfigError::new(
            "ingester.admin_listen",
            "must differ from ingester.listen: the admin port is never exposed to providers",
        ));
    }
    Ok(())
}

/// `[ingester.spool]`, when enabled: a directory, room for the largest body, an age limit.
fn check_spool(spool: &SpoolConfig, largest_body: usize) -> Result<(), ConfigError> {
    if !spool.enabled {
        return Ok(());
    }
    if spool.dir.as_os_str().is_empty() {
        return Err(ConfigError::new(
            "ingester.spool.dir",
            "must name a directory (or set ingester.spool.enabled = false)",
        ));
    }
    let needed = largest_body as u64 + SPOOL_RECORD_HEADROOM;
    if spool.max_bytes < needed {
        return Err(ConfigError::new(
            "ingester.spool.max_bytes",
            format!(
                "must be at least the largest max_body_bytes plus 1 MiB for headers ({needed}): such a body could never be spooled"
            ),
        ));
    }
    if spool.max_age.is_zero() {
        return Err(ConfigError::new(
            "ingester.spool.max_age",
            "must be greater than zero",
        ));
    }
    Ok(())
}

impl FileSource {
    /// The `index`th `[[sources]]` entry, its secrets resolved (the ingester's only) and its
    /// settings checked against its provider's; `earlier` are the entries before it, and
    /// `secret_owners` the secrets they hold.
    fn resolve(
        self,
        index: usize,
        earlier: &[SourceConfig],
        secret_owners: &mut HashMap<[u8; 32], (String, bool)>,
        role: Role,
        env: EnvLookup<'_>,
    ) -> Result<SourceConfig, ConfigError> {
        let location = format!(
            "sources[{}]",
            if self.name.is_empty() {
                index.to_string()
            } else {
                self.name.clone()
            }
        );
        check_name(&format!("{location}.name"), &self.name, &['-', '_'])?;
        if earlier.iter().any(|s| s.name == self.name) {
            return Err(ConfigError::new(
                format!("{location}.name"),
                "another source has the same name",
            ));
        }
        if self.max_body_bytes == Some(0) {
            return Err(ConfigError::new(
                format!("{location}.max_body_bytes"),
                "must be greater than zero",
            ));
        }
        self.check_settings(&location)?;
        let secrets = match role {
            Role::Ingester => self.resolve_secrets(&location, env, secret_owners)?,
            Role::Worker => Vec::new(),
        };
        let allow_ips = self
            .allow_ips
            .iter()
            .enumerate()
            .map(|(i, net)| {
                IpNet::parse(net).ok_or_else(|| {
                    ConfigError::new(
                        format!("{location}.allow_ips[{i}]"),
                        format!("{net:?} is not an address or network"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(SourceConfig {
            name: self.name,
            provider: self.provider,
            secrets,
            max_body_bytes: self.max_body_bytes,
            max_signature_age: self.max_signature_age,
            jwks: self.jwks,
            certificate: self.certificate,
            allow_ips,
            api: self
                .api
                .map(|api| api.resolve(&format!("{location}.api"), role, env))
                .transpose()?,
            reconcile: self
                .reconcile
                .map(|r| r.resolve(&format!("{location}.reconcile")))
                .transpose()?
                .unwrap_or_default(),
        })
    }

    /// The source's secrets, resolved; a secret another source holds is refused unless both
    /// allow sharing (a request signed for one would be accepted by the other).
    fn resolve_secrets(
        &self,
        location: &str,
        env: EnvLookup<'_>,
        secret_owners: &mut HashMap<[u8; 32], (String, bool)>,
    ) -> Result<Vec<Secret>, ConfigError> {
        let secrets = self
            .secrets
            .iter()
            .enumerate()
            .map(|(i, reference)| {
                resolve_secret(&format!("{location}.secrets[{i}]"), reference, env)
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (i, secret) in secrets.iter().enumerate() {
            let digest: [u8; 32] = Sha256::digest(secret.expose()).into();
            match secret_owners.get(&digest) {
                Some((other, _)) if *other == self.name => {}
                Some((other, allowed)) if !(*allowed && self.allow_shared_secrets) => {
                    return Err(ConfigError::new(
                        format!("{location}.secrets[{i}]"),
                        format!(
                            "{} holds the same secret as source {other}: a request signed for \
                             one would be accepted by the other; give each source its own \
                             secret, or set allow_shared_secrets = true on both",
                            secret.label()
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    secret_owners.insert(digest, (self.name.clone(), self.allow_shared_secrets));
                }
            }
        }
        Ok(secrets)
    }

    /// Refuses the provider-specific keys this source's provider does not read (an unknown
    /// provider is refused here too, with the registered names).
    fn check_settings(&self, location: &str) -> Result<(), ConfigError> {
        let provider = ProviderKind::named(&self.provider)
            .map_err(|message| ConfigError::new(format!("{location}.provider"), message))?;
        for setting in Setting::ALL {
            let set = match setting {
                Setting::Secrets => !self.secrets.is_empty(),
                Setting::MaxSignatureAge => self.max_signature_age.is_some(),
                Setting::Jwks => self.jwks.is_some(),
                Setting::Certificate => self.certificate.is_some(),
                Setting::Api => self.api.is_some(),
                Setting::Reconcile => self.reconcile.is_some(),
            };
            if set && !provider.settings().contains(&setting) {
                let key = setting.key();
                let why = match setting {
                    Setting::Api => " (Countersign has no API client for it)",
                    Setting::Reconcile => " (Countersign cannot reconcile it)",
                    _ => "",
                };
                return Err(ConfigError::new(
                    format!("{location}.{key}"),
                    format!("{provider} does not use {key}{why}"),
                ));
            }
        }
        Ok(())
    }
}

impl FileReconcile {
    fn resolve(self, location: &str) -> Result<ReconcileConfig, ConfigError> {
        let defaults = ReconcileConfig::default();
        let config = ReconcileConfig {
            enabled: self.enabled.unwrap_or(defaults.enabled),
            interval: self.interval.unwrap_or(defaults.interval),
            min_age: self.min_age.unwrap_or(defaults.min_age),
            look_back: self.look_back.unwrap_or(defaults.look_back),
            scope: self.scope.filter(|s| !s.trim().is_empty()),
        };
        if config.interval < Duration::from_secs(1) {
            return Err(ConfigError::new(
                format!("{location}.interval"),
                "must be at least 1s",
            ));
        }
        if config.look_back.is_zero() {
            return Err(ConfigError::new(
                format!("{location}.look_back"),
                "must be greater than zero",
            ));
        }
        Ok(config)
    }
}

impl FileApi {
    fn resolve(
        self,
        location: &str,
        role: Role,
        env: EnvLookup<'_>,
    ) -> Result<ApiConfig, ConfigError> {
        let base_url = self.base_url.trim_end_matches('/').to_owned();
        for (key, url) in [
            ("base_url", Some(&self.base_url)),
            ("token_url", self.token_url.as_ref()),
        ] {
            let Some(url) = url else { continue };
            if !(url.starts_with("https://") || url.starts_with("http://"))
                || url.trim_end_matches('/').len() <= "https://".len()
            {
                return Err(ConfigError::new(
                    format!("{location}.{key}"),
                    format!("{url:?} is not an http(s) URL"),
                ));
            }
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::new(
                format!("{location}.timeout"),
                "must be greater than zero",
            ));
        }
        if self.max_document_bytes == Some(0) {
            return Err(ConfigError::new(
                format!("{location}.max_document_bytes"),
                "must be greater than zero",
            ));
        }
        let credentials = match role {
            Role::Worker => Some(resolve_secret(
                &format!("{location}.credentials"),
                &self.credentials,
                env,
            )?),
            Role::Ingester => None,
        };
        Ok(ApiConfig {
            base_url,
            credentials,
            timeout: self.timeout.unwrap_or(DEFAULT_API_TIMEOUT),
            max_document_bytes: self
                .max_document_bytes
                .unwrap_or(DEFAULT_MAX_DOCUMENT_BYTES),
            token_url: self.token_url,
        })
    }
}

/// Names end up in queue names, routing keys and URLs: keep them to a safe alphabet.
fn check_name(location: &str, name: &str, extra: &[char]) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > 64 {
        return Err(ConfigError::new(location, "must be 1 to 64 characters"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || extra.contains(c)))
    {
        let allowed: String = extra.iter().map(|c| format!(" '{c}'")).collect();
        return Err(ConfigError::new(
            location,
            format!("'{bad}' is not allowed: use letters, digits and{allowed}"),
        ));
    }
    Ok(())
}

/// Resolves `env:NAME` or `file:/path`. A file's one trailing newline is dropped (`echo` adds
/// one; Kubernetes Secrets have none).
fn resolve_secret(
    location: &str,
    reference: &str,
    env: EnvLookup<'_>,
) -> Result<Secret, ConfigError> {
    let value = if let Some(name) = reference.strip_prefix("env:") {
        env(name).ok_or_else(|| {
            ConfigError::new(
                location,
                format!("{reference}: environment variable {name} is not set"),
            )
        })?
    } else if let Some(path) = reference.strip_prefix("file:") {
        let mut text = read_small_file(std::path::Path::new(path))
            .map_err(|e| ConfigError::new(location, format!("{reference}: {e}")))?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        text
    } else {
        return Err(ConfigError::new(
            location,
            "a secret is a reference, env:NAME or file:/path, never the value itself",
        ));
    };
    if value.is_empty() {
        return Err(ConfigError::new(location, format!("{reference} is empty")));
    }
    Ok(Secret::new(reference, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_providers::Setting;
    use secrecy::ExposeSecret as _;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn document_locations_are_a_directory_or_an_s3_bucket() {
        for (text, expected) in [
            (
                "file:./data/documents",
                DocumentsLocation::Directory("./data/documents".into()),
            ),
            (
                "file:///var/lib/docs",
                DocumentsLocation::Directory("/var/lib/docs".into()),
            ),
            (
                "s3://bucket",
                DocumentsLocation::S3 {
                    url: "s3://bucket".into(),
                },
            ),
            (
                "s3://bucket/countersign/documents",
                DocumentsLocation::S3 {
                    url: "s3://bucket/countersign/documents".into(),
                },
            ),
        ] {
            assert_eq!(DocumentsLocation::parse(text).unwrap(), expected, "{text}");
        }
        for text in [
            "",
            "file:",
            "s3://",
            "s3:///prefix",
            "gs://bucket",
            "/var/lib/docs",
        ] {
            let error = DocumentsLocation::parse(text).unwrap_err();
            assert!(error.contains("s3://<bucket>"), "{text}: {error}");
        }
    }

    const GOOD: &str = r#"
        [amqp]
        prefix = "cs-test"

        [ingester]
        max_body_bytes = 1048576
        confirm_timeout = "2s"

        [[sources]]
        name = "acme"
        provider = "taktikal"
        secrets = ["env:ACME_KEY", "env:ACME_OLD"]
        max_signature_age = "1h"
    "#;

    #[test]
    fn a_good_file_resolves_secrets_and_environment_overrides() {
        let env = env_of(&[
            ("ACME_KEY", "k1"),
            ("ACME_OLD", "k0"),
            ("AMQP_URL", "amqp://u:p@broker:5672/%2f"),
        ]);
        let config = Config::from_toml(GOOD, Role::Ingester, &env).expect("valid");
        assert_eq!(config.amqp.prefix, "cs-test");
        assert_eq!(
            config.amqp.url.expose_secret(),
            "amqp://u:p@broker:5672/%2f"
        );
        assert_eq!(config.ingester.confirm_timeout, Duration::from_secs(2));
        assert_eq!(config.ingester.retry_after, Duration::from_secs(30));
        let source = &config.sources[0];
        assert_eq!(source.provider, "taktikal");
        assert_eq!(source.secrets[1].expose(), b"k0");
        assert_eq!(source.secrets[1].label(), "env:ACME_OLD");
        assert_eq!(source.max_signature_age, Some(Duration::from_secs(3600)));
        assert!(!format!("{config:?}").contains("k1"), "secrets never print");
    }

    #[test]
    fn file_secrets_lose_one_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("cs-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, "from-file\n").unwrap();
        let text = format!(
            "[[sources]]\nname = \"a\"\nprovider = \"taktikal\"\nsecrets = [\"file:{}\"]\n",
            path.display()
        );
        let config = Config::from_toml(&text, Role::Ingester, &env_of(&[])).expect("valid");
        assert_eq!(config.sources[0].secrets[0].expose(), b"from-file");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_source_api_is_read_by_the_worker_only_and_checked() {
        let text = "[[sources]]\nname = 'uk'\nprovider = 'legalesign_event'\nsecrets = ['env:T']\n\
                    api = { base_url = 'https://eu-api.legalesign.com/api/v1/', credentials = 'env:LS' }\n";
        let env = env_of(&[("T", "token"), ("LS", "user:secret"), ("READ_TOKEN", "r")]);
        let worker = Config::from_toml(text, Role::Worker, &env).expect("valid");
        let api = worker.sources[0].api.as_ref().expect("an API");
        assert_eq!(
            api.base_url, "https://eu-api.legalesign.com/api/v1",
            "no trailing slash"
        );
        assert_eq!(api.credentials.as_ref().unwrap().expose(), b"user:secret");
        assert_eq!(api.timeout, DEFAULT_API_TIMEOUT);
        assert_eq!(api.max_document_bytes, DEFAULT_MAX_DOCUMENT_BYTES);
        assert_eq!(api.token_url, None);
        assert_eq!(worker.sources[0].reconcile, ReconcileConfig::default());
        assert!(
            !format!("{worker:?}").contains("user:secret"),
            "credentials never print"
        );
        let ingester = Config::from_toml(text, Role::Ingester, &env_of(&[("T", "token")]))
            .expect("the ingester needs no API credentials");
        assert!(
            ingester.sources[0]
                .api
                .as_ref()
                .unwrap()
                .credentials
                .is_none()
        );

        for (api, expected) in [
            (
                "{ base_url = 'ftp://x', credentials = 'env:LS' }",
                "sources[uk].api.base_url: \"ftp://x\" is not an http(s) URL",
            ),
            (
                "{ base_url = 'https://x', credentials = 'env:LS', token_url = 'accounts.zoho.eu' }",
                "sources[uk].api.token_url: \"accounts.zoho.eu\" is not an http(s) URL",
            ),
            (
                "{ base_url = 'https://x', credentials = 'env:LS', timeout = '0s' }",
                "sources[uk].api.timeout: must be greater than zero",
            ),
            (
                "{ base_url = 'https://x', credentials = 'env:NOPE' }",
                "sources[uk].api.credentials: env:NOPE: environment variable NOPE is not set",
            ),
            ("{ base_url = 'https://x' }", "line"),
            (
                "{ base_url = 'https://x', credentials = 'env:LS' }\nreconcile = { interval = '0s' }",
                "sources[uk].reconcile.interval: must be at least 1s",
            ),
            (
                "{ base_url = 'https://x', credentials = 'env:LS' }\nreconcile = { look_back = '0s' }",
                "sources[uk].reconcile.look_back: must be greater than zero",
            ),
        ] {
            let text = format!(
                "[[sources]]\nname = 'uk'\nprovider = 'legalesign_event'\nsecrets = ['env:T']\napi = {api}\n"
            );
            let message = Config::from_toml(&text, Role::Worker, &env)
                .expect_err("refused")
                .to_string();
            assert!(
                message.starts_with(expected),
                "{message:?} should start with {expected:?}"
            );
            assert!(!message.contains('\n'), "one line: {message:?}");
        }
    }

    fn error_of(text: &str, env: &[(&str, &str)]) -> String {
        Config::from_toml(text, Role::Ingester, &env_of(env))
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn each_binary_resolves_only_its_own_secrets() {
        let text = format!("{GOOD}\n[worker]\napi_tokens = [\"env:READ_TOKEN\"]\n");
        let ingester = Config::from_toml(
            &text,
            Role::Ingester,
            &env_of(&[("ACME_KEY", "k"), ("ACME_OLD", "o")]),
        )
        .expect("no worker token needed");
        assert!(ingester.worker.api_tokens.is_empty());
        let worker = Config::from_toml(&text, Role::Worker, &env_of(&[("READ_TOKEN", "t")]))
            .expect("no provider key needed");
        assert!(worker.sources[0].secrets.is_empty());
        assert_eq!(worker.worker.api_tokens[0].expose(), b"t");
        let error = Config::from_toml(&text, Role::Worker, &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("worker.api_tokens[0]: env:READ_TOKEN"),
            "{error}"
        );
    }

    #[test]
    fn errors_are_one_line_naming_the_field() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case<'_>] = &[
            (
                GOOD,
                &[("ACME_KEY", "k")],
                "sources[acme].secrets[1]: env:ACME_OLD: environment variable ACME_OLD is not set",
            ),
            (
                "[[sources]]\nname='a'\nprovider='taktikal'\nsecrets=['inline-key']",
                &[],
                "sources[a].secrets[0]: a secret is a reference",
            ),
            (
                "[[sources]]\nname='a b'\nprovider='taktikal'\nsecrets=['env:K']",
                &[("K", "k")],
                "sources[a b].name: ' ' is not allowed",
            ),
            (
                "[ingester]\nlisten_port = 1",
                &[],
                "line 2: unknown field `listen_port`",
            ),
            (
                "[amqp]\nretry_delays = ['30s', '5s']",
                &[],
                "amqp.retry_delays: delays must grow",
            ),
            (
                "[[sources]]\nname='a'\nprovider='taktikal'\nsecrets=['env:K']\n[[sources]]\nname='a'\nprovider='taktikal'\nsecrets=['env:K']",
                &[("K", "k")],
                "sources[a].name: another source has the same name",
            ),
            (
                "[[sources]]\nname='a'\nprovider='taktikal'\nsecrets=['file:/nonexistent/key']",
                &[],
                "sources[a].secrets[0]: file:/nonexistent/key: cannot read",
            ),
            (
                "",
                &[("AMQP_URL", "http://x")],
                "AMQP_URL: must start with amqp://",
            ),
            (
                "[worker]\nbatch_size = 0",
                &[],
                "worker.batch_size: must be at least 1",
            ),
            (
                "[worker]\nbatch_wait = '1m'",
                &[],
                "worker.batch_wait: must be at most 10s",
            ),
        ];
        for (text, env, expected) in cases {
            let message = error_of(text, env);
            assert!(
                message.starts_with(expected),
                "{message:?} should start with {expected:?}"
            );
            assert!(!message.contains('\n'), "one line: {message:?}");
        }
    }

    fn sources_error(text: &str) -> String {
        let env = |name: &str| (name == "K").then(|| "k".to_owned());
        match Config::from_toml(text, Role::Ingester, &env) {
            Err(error) => error.to_string(),
            Ok(config) => config
                .build_sources()
                .expect_err("the sources are refused")
                .to_string(),
        }
    }

    #[test]
    fn a_source_with_an_unknown_provider_or_without_what_its_provider_needs_is_one_line() {
        let cases = [
            (
                "[[sources]]\nname='a'\nprovider='nosuch'",
                "sources[a].provider: unknown provider \"nosuch\" (one of: taktikal, universign, legalesign, legalesign_event, standard_webhooks, yousign, documenso, docuseal, zoho_sign, boldsign, pandadoc, dropbox_sign, adobe_sign, docusign)",
            ),
            (
                "[[sources]]\nname='a'\nprovider='taktikal'\nsecrets=[]",
                "sources[a]: taktikal needs at least one secret",
            ),
            (
                "[[sources]]\nname='a'\nprovider='universign'",
                "sources[a]: universign needs jwks",
            ),
            (
                "[[sources]]\nname='a'\nprovider='legalesign'",
                "sources[a]: legalesign needs certificate",
            ),
            (
                "[[sources]]\nname='a'\nprovider='legalesign_event'",
                "sources[a]: legalesign_event needs at least one secret",
            ),
            (
                "[[sources]]\nname='a'\nprovider='standard_webhooks'",
                "sources[a]: standard_webhooks needs at least one secret",
            ),
            (
                "[[sources]]\nname='a'\nprovider='standard_webhooks'\nsecrets=['env:K']",
                "sources[a]: secret env:K is not a signing secret",
            ),
            (
                "[[sources]]\nname='a'\nprovider='yousign'",
                "sources[a]: yousign needs at least one secret",
            ),
            (
                "[[sources]]\nname='a'\nprovider='documenso'",
                "sources[a]: documenso needs at least one secret",
            ),
            (
                "[[sources]]\nname='a'\nprovider='docuseal'",
                "sources[a]: docuseal needs at least one secret",
            ),
            (
                "[[sources]]\nname='a'\nprovider='zoho_sign'",
                "sources[a]: zoho_sign needs at least one secret",
            ),
            (
                "[[sources]]\nname='a'\nprovider='boldsign'",
                "sources[a]: boldsign needs at least one secret",
            ),
            (
                "[[sources]]\nname='a'\nprovider='pandadoc'",
                "sources[a]: pandadoc needs at least one secret",
            ),
            (
                "[[sources]]\nname='a'\nprovider='dropbox_sign'",
                "sources[a]: dropbox_sign needs at least one secret",
            ),
            (
                "[[sources]]\nname='a'\nprovider='adobe_sign'\nsecrets=['env:K']",
                "sources[a]: adobe_sign needs allow_ips",
            ),
            (
                "[[sources]]\nname='a'\nprovider='docusign'",
                "sources[a]: docusign needs at least one secret",
            ),
        ];
        for (text, expected) in cases {
            let message = sources_error(text);
            assert!(
                message.starts_with(expected),
                "{message:?} should start with {expected:?}"
            );
            assert!(!message.contains('\n'), "one line: {message:?}");
        }
    }

    /// A source's provider-specific key, as the configuration file sets it (after the source's
    /// `[[sources]]` line).
    fn setting_text(setting: Setting) -> &'static str {
        match setting {
            Setting::Secrets => "secrets = ['env:K']",
            Setting::MaxSignatureAge => "max_signature_age = '1h'",
            Setting::Jwks => "jwks = '/etc/countersign/jwks.json'",
            Setting::Certificate => "certificate = '/etc/countersign/provider.pem'",
            Setting::Api => {
                "[sources.api]\nbase_url = 'https://api.example'\ncredentials = 'env:K'"
            }
            Setting::Reconcile => "[sources.reconcile]\nenabled = false",
        }
    }

    #[test]
    fn a_setting_its_provider_does_not_read_is_refused_by_name_for_every_provider() {
        let env = |name: &str| (name == "K").then(|| "k".repeat(32));
        let mut refused = 0;
        for provider in countersign_providers::REGISTRY {
            let name = provider.name();
            // Every key it reads, together: accepted (what it reads is checked when its
            // sources are built).
            let mut own = format!("[[sources]]\nname = 'a'\nprovider = '{name}'\n");
            let (tables, keys): (Vec<Setting>, Vec<Setting>) = provider
                .settings()
                .iter()
                .partition(|s| matches!(s, Setting::Api | Setting::Reconcile));
            for setting in keys.iter().chain(&tables) {
                own.push_str(setting_text(*setting));
                own.push('\n');
            }
            for role in [Role::Ingester, Role::Worker] {
                if let Err(error) = Config::from_toml(&own, role, &env) {
                    panic!("{name} with its own settings ({role:?}): {error}");
                }
            }
            // Any other: refused, naming the key and the provider.
            for setting in Setting::ALL {
                if provider.settings().contains(&setting) {
                    continue;
                }
                let text = format!(
                    "[[sources]]\nname = 'a'\nprovider = '{name}'\n{}\n",
                    setting_text(setting)
                );
                for role in [Role::Ingester, Role::Worker] {
                    let error = Config::from_toml(&text, role, &env)
                        .expect_err("a setting the provider does not read")
                        .to_string();
                    let key = setting.key();
                    assert!(
                        error.starts_with(&format!("sources[a].{key}: {name} does not use {key}")),
                        "{name} with {key} ({role:?}): {error}"
                    );
                }
                refused += 1;
            }
        }
        // 14 providers, 6 keys: most providers read three or four (38 refused today).
        assert!(refused >= 30, "{refused} combinations refused");
    }

    /// The configuration reference, `docs/configuration.md`.
    fn configuration_page() -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
        )
        .expect("docs/configuration.md")
    }

    /// The configuration page's table of which provider reads which key is what the providers
    /// declare.
    #[test]
    fn the_example_configuration_parses_binds_loopback_and_shows_every_provider() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../countersign.example.toml"),
        )
        .expect("countersign.example.toml");
        let env = |name: &str| {
            if name.ends_with("_URL") {
                return None;
            }
            Some(if name.contains("STANDARD_WEBHOOKS") {
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned()
            } else {
                format!("{name}-0123456789abcdef0123456789abcdef")
            })
        };
        // As it is: a copied example serves nothing beyond loopback, and the read API asks for a
        // token.
        for role in [Role::Ingester, Role::Worker] {
            let config = Config::from_toml(&text, role, &env).expect("the example parses");
            assert!(config.ingester.listen.ip().is_loopback());
            assert!(config.ingester.admin_listen.ip().is_loopback());
            assert!(config.worker.listen.ip().is_loopback());
            if role == Role::Worker {
                assert_eq!(config.worker.api_tokens.len(), 1);
            }
        }
        // Every provider's block, uncommented, parses too, and names each provider.
        let (head, every) = text
            .split_once("## Every provider")
            .expect("the example's provider section");
        let uncommented: Vec<&str> = every
            .lines()
            .skip(1)
            .map(|line| line.strip_prefix("# ").unwrap_or(line))
            .collect();
        let full = format!("{head}\n{}", uncommented.join("\n"));
        for role in [Role::Ingester, Role::Worker] {
            let config = Config::from_toml(&full, role, &env)
                .unwrap_or_else(|e| panic!("every provider's block parses: {e}"));
            let mut named: Vec<&str> = config.sources.iter().map(|s| s.provider.as_str()).collect();
            named.sort_unstable();
            named.dedup();
            let mut registered: Vec<&str> = countersign_providers::REGISTRY
                .iter()
                .map(|p| p.name())
                .collect();
            registered.sort_unstable();
            assert_eq!(named, registered);
            let keys = [
                "enabled",
                "interval",
                "min_age",
                "look_back",
                "scope",
                "token_url",
            ];
            for key in keys {
                assert!(
                    text.contains(&format!("{key} = ")),
                    "the example shows {key}"
                );
            }
        }
    }

    /// Docs are claims: every default the reference states for an `ingester.` or `worker.` key
    /// is the default — a file that sets the key to the documented value reads as the same
    /// configuration as one that leaves it out.
    #[test]
    fn every_documented_default_of_the_binaries_is_the_default() {
        let page = configuration_page();
        let reference = page.split("## Every key").nth(1).expect("\"Every key\"");
        let source = "[[sources]]\nname = \"a\"\nprovider = \"taktikal\"\nsecrets = [\"env:K\"]\n";
        let env = env_of(&[("K", "a-secret-of-enough-length")]);
        let mut checked = Vec::new();
        for line in reference.lines().take_while(|l| !l.starts_with("## ")) {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let (Some(key), Some(default)) = (cells.first(), cells.get(1)) else {
                continue;
            };
            let key = key.trim_matches('`');
            let Some(value) = default.strip_prefix('`').and_then(|d| d.split('`').next()) else {
                continue;
            };
            let role = match key.split('.').next() {
                Some("ingester") => Role::Ingester,
                Some("worker") => Role::Worker,
                _ => continue,
            };
            let (table, field) = key.rsplit_once('.').expect("a dotted key");
            // A number, boolean or array as it is; anything else (addresses, durations, paths)
            // is a string.
            let literal = if toml::from_str::<toml::Table>(&format!("v = {value}")).is_ok() {
                value.to_owned()
            } else {
                format!("{value:?}")
            };
            let set = format!("[{table}]\n{field} = {literal}\n{source}");
            let with = Config::from_toml(&set, role, &env)
                .unwrap_or_else(|e| panic!("{key} = {literal}: {e}"));
            let without = Config::from_toml(source, role, &env).expect("valid");
            assert_eq!(
                format!("{with:?}"),
                format!("{without:?}"),
                "docs/configuration.md says {key} defaults to {value}"
            );
            checked.push(key.to_owned());
        }
        assert!(
            checked.iter().any(|k| k == "worker.batch_wait") && checked.len() >= 15,
            "{checked:?}"
        );
    }

    /// Docs are claims (issue 31): every key the parser accepts is in the configuration
    /// reference (`docs/configuration.md`, "Every key"), and every key the reference names is
    /// accepted. The parser's keys are what its
    /// own refusal of an unknown key lists.
    #[test]
    fn the_configuration_reference_names_exactly_the_keys_the_parser_accepts() {
        let page = configuration_page();
        let reference = page
            .split("## Every key")
            .nth(1)
            .expect("an \"Every key\" section");
        let mut documented: Vec<(String, String)> = reference
            .lines()
            .take_while(|l| !l.starts_with("## "))
            .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
            .filter(|key| key.contains('.') || key.starts_with('['))
            .map(|key| {
                if let Some((table, field)) = key.split_once(' ') {
                    let table = table.trim_matches(['[', ']']);
                    (table.to_owned(), field.to_owned())
                } else {
                    let (table, field) = key.rsplit_once('.').unwrap();
                    (table.to_owned(), field.to_owned())
                }
            })
            .collect();
        documented.sort();
        let source = "[[sources]]\nname = 'a'\nprovider = 'taktikal'\n";
        let mut accepted: Vec<(String, String)> = Vec::new();
        for (table, text) in [
            ("amqp", "[amqp]\nzz_unknown = 1\n".to_owned()),
            ("ingester", "[ingester]\nzz_unknown = 1\n".to_owned()),
            (
                "ingester.spool",
                "[ingester.spool]\nzz_unknown = 1\n".to_owned(),
            ),
            ("worker", "[worker]\nzz_unknown = 1\n".to_owned()),
            ("database", "[database]\nzz_unknown = 1\n".to_owned()),
            ("sources", format!("{source}zz_unknown = 1\n")),
            (
                "sources.api",
                format!("{source}[sources.api]\nzz_unknown = 1\n"),
            ),
            (
                "sources.reconcile",
                format!("{source}[sources.reconcile]\nzz_unknown = 1\n"),
            ),
        ] {
            let error = Config::from_toml(&text, Role::Ingester, &|_| None)
                .expect_err("an unknown key")
                .to_string();
            // serde lists one expected key as "expected `url`", several as "expected one of …".
            let listed = error
                .split("expected one of ")
                .nth(1)
                .or_else(|| error.split("expected ").nth(1))
                .unwrap_or_else(|| panic!("{table}: {error}"));
            accepted.extend(
                listed
                    .split(", ")
                    .map(|k| (table.to_owned(), k.trim_matches('`').to_owned())),
            );
        }
        // A sub-table (`ingester.spool`, `sources.api`) is documented by its keys.
        let tables = ["ingester.spool", "sources.api", "sources.reconcile"];
        accepted.retain(|(table, key)| !tables.contains(&format!("{table}.{key}").as_str()));
        accepted.sort();
        assert!(accepted.len() >= 45, "{accepted:?}");
        let undocumented: Vec<_> = accepted
            .iter()
            .filter(|k| !documented.contains(k))
            .collect();
        let unknown: Vec<_> = documented
            .iter()
            .filter(|k| !accepted.contains(k))
            .collect();
        assert!(
            undocumented.is_empty(),
            "accepted, not in docs/configuration.md: {undocumented:?}"
        );
        assert!(
            unknown.is_empty(),
            "in docs/configuration.md, not accepted: {unknown:?}"
        );
    }

    #[test]
    fn the_configuration_page_says_which_provider_reads_which_key() {
        let readme = configuration_page();
        let rows: HashMap<String, Vec<String>> = readme
            .lines()
            .skip_while(|line| *line != "| provider | reads |")
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
                let keys = cells[1]
                    .split(", ")
                    .map(|k| k.trim_matches('`').to_owned())
                    .collect();
                (cells[0].trim_matches('`').to_owned(), keys)
            })
            .collect();
        assert_eq!(
            rows.len(),
            countersign_providers::REGISTRY.len(),
            "one row per provider: {rows:?}"
        );
        for provider in countersign_providers::REGISTRY {
            let declared: Vec<String> = provider
                .settings()
                .iter()
                .map(|s| s.key().to_owned())
                .collect();
            assert_eq!(
                rows.get(provider.name()),
                Some(&declared),
                "docs/configuration.md row of {}",
                provider.name()
            );
        }
    }
}
