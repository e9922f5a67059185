//! Test support for Countersign's crates: isolation on the real broker and database, genuine
//! provider events, and a TCP proxy that can be stopped or frozen to play an outage.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use countersign::config::DEFAULT_AMQP_URL;
use countersign::topology::Topology;
use countersign_providers::taktikal;
use lapin::{Connection, ConnectionProperties};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// The broker of the tests: `AMQP_URL`, or the local one.
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned())
}

/// The database server of the tests: `DATABASE_URL`, or the local one.
/// `docker compose` where the plugin exists, else Debian's `docker-compose` (v1).
pub fn compose_program() -> Vec<String> {
    let plugin = std::process::Command::new("docker")
        .args(["compose", "version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if plugin {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

/// `down -v` for a test's compose project: `command` is its compose command up to the
/// subcommand. Containers, networks and volumes go, whatever state they are in.
pub fn compose_down(mut command: std::process::Command) {
    let _ = command
        .args(["down", "-v", "--remove-orphans", "--timeout", "5"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// The RabbitMQ management API of the broker on `AMQP_URL` (`RABBITMQ_MANAGEMENT_URL`).
pub fn management_url() -> String {
    std::env::var("RABBITMQ_MANAGEMENT_URL").unwrap_or_else(|_| "http://127.0.0.1:15672".to_owned())
}

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// `host:port` of a `scheme://user:pass@host:port/...` URL, with `localhost` as 127.0.0.1.
pub fn socket_address(url: &str) -> SocketAddr {
    let rest = url.split("://").nth(1).expect("a URL");
    let authority = rest.split('/').next().unwrap();
    let host_port = authority
        .rsplit('@')
        .next()
        .unwrap()
        .replace("localhost", "127.0.0.1");
    host_port.parse().expect("the URL names host:port")
}

/// `url` with its `host:port` replaced by 127.0.0.1:`port` (to go through a [`TcpProxy`]).
pub fn via_port(url: &str, port: u16) -> String {
    let original = socket_address(url);
    let authority = url.split("://").nth(1).unwrap().split('/').next().unwrap();
    let host_port = authority.rsplit('@').next().unwrap();
    debug_assert!(host_port.ends_with(&original.port().to_string()));
    url.replacen(host_port, &format!("127.0.0.1:{port}"), 1)
}

/// A TCP port on 127.0.0.1 that nothing listens on now (for a server the test starts).
pub fn free_port() -> u16 {
    (0..1000)
        .find_map(|_| {
            let port = port_below_ephemeral_range();
            std::net::TcpListener::bind(("127.0.0.1", port))
                .ok()
                .map(|_| port)
        })
        .expect("a free port on 127.0.0.1 below the ephemeral range")
}

/// A port in 20000–31999: below Linux's ephemeral range (32768–60999), so no port-0 listener or
/// outgoing connection of another test takes it between its reservation and its use.
fn port_below_ephemeral_range() -> u16 {
    20_000 + (uuid::Uuid::new_v4().as_u128() % 12_000) as u16
}

/// A fresh name prefix for one test's exchange and queues.
pub fn unique_prefix() -> String {
    format!("test-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

fn fixture(relative: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../providers/tests/fixtures")
        .join(relative);
    serde_json::from_slice(&std::fs::read(&path).expect("fixture")).expect("fixture is JSON")
}

/// The current-format example event from Taktikal's documentation.
pub fn taktikal_example() -> serde_json::Value {
    fixture("taktikal/all_signed.json")
}

/// The example ActivityLog from Taktikal's documentation.
pub fn taktikal_activity_example() -> serde_json::Value {
    fixture("taktikal/activity_log.json")
}

/// Signs `event` as Taktikal would, now-ish (`signed_at`), with a new Guid; returns the body.
pub fn sign_taktikal(event: serde_json::Value, key: &str, signed_at: SystemTime) -> Vec<u8> {
    let guid = uuid::Uuid::new_v4().to_string();
    let event =
        taktikal::with_signature(event, key.as_bytes(), taktikal::ticks_of(signed_at), &guid);
    serde_json::to_vec(&event).unwrap()
}

/// A genuine Taktikal event: the example with a new `Id`, signed with `key` at `signed_at`.
/// Returns (id, body).
pub fn taktikal_event(key: &str, signed_at: SystemTime) -> (String, Vec<u8>) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut event = taktikal_example();
    event["Id"] = id.clone().into();
    (id, sign_taktikal(event, key, signed_at))
}

/// A new 2048-bit RSA private key (PKCS#8 PEM), made by `openssl` (fast, unlike generating one
/// in a debug build).
pub fn rsa_key_pem() -> String {
    let output = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl runs");
    assert!(output.status.success(), "openssl genpkey");
    String::from_utf8(output.stdout).expect("PEM")
}

/// A key (PKCS#8 PEM) and a self-signed X.509 certificate written to `dir/certificate.pem`.
pub fn self_signed_certificate(dir: &std::path::Path) -> (String, PathBuf) {
    let certificate = dir.join("certificate.pem");
    let key = dir.join("key.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=countersign-test",
            "-days",
            "2",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&certificate)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl req -x509");
    (std::fs::read_to_string(key).expect("key"), certificate)
}

/// Replaces `topology`'s work queue by a classic one that holds a single message and refuses the
/// next: the broker then nacks the publish. (A quorum queue applies the limit a little late.)
pub async fn make_persist_queue_hold_one(channel: &lapin::Channel, topology: &Topology) {
    use lapin::options::{QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions};
    use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
    let persist = ShortString::from(topology.persist_queue());
    channel
        .queue_delete(persist.clone(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let mut arguments = FieldTable::default();
    arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(1));
    arguments.insert(
        "x-overflow".into(),
        AMQPValue::LongString(LongString::from("reject-publish")),
    );
    channel
        .queue_declare(
            persist.clone(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            persist,
            ShortString::from(topology.exchange()),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
}

/// Deletes a test's topology ([`delete_topology`]) when dropped, also when the test fails.
pub struct TopologyGuard(pub Topology);

impl Drop for TopologyGuard {
    fn drop(&mut self) {
        delete_topology(self.0.clone());
    }
}

/// A connection to the tests' broker (`AMQP_URL`) and a channel on it in confirm mode.
pub async fn confirm_channel() -> (Connection, lapin::Channel) {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("RabbitMQ on AMQP_URL");
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions { nowait: false })
        .await
        .unwrap();
    (connection, channel)
}

/// A call to the management API of the broker the tests use, as `guest`.
fn management(method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .request(method, format!("{}/api/{path}", management_url()))
        .basic_auth("guest", Some("guest"))
        .timeout(Duration::from_secs(10))
}

/// Applies the topology's policies ([`Topology::policies`]) through the management API, as the
/// definitions file and the Kubernetes Policy resource apply them; `delivery_limit`, if given,
/// replaces the shipped `delivery-limit`. Waits (10 s at most) until the work queue, if it
/// exists, reports the policy in force.
pub async fn apply_policies(topology: &Topology, delivery_limit: Option<i64>) {
    let definitions = topology.definitions();
    for policy in definitions["policies"].as_array().expect("a list") {
        let mut body = policy.clone();
        if let Some(limit) = delivery_limit {
            body["definition"]["delivery-limit"] = limit.into();
        }
        let name = policy["name"].as_str().unwrap();
        let response = management(reqwest::Method::PUT, &format!("policies/%2F/{name}"))
            .json(&body)
            .send()
            .await
            .expect("the management API answers");
        assert!(
            response.status().is_success(),
            "policy {name}: {}",
            response.status()
        );
        let wanted = body["definition"].clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let queue = management(
                reqwest::Method::GET,
                &format!("queues/%2F/{}", topology.persist_queue()),
            )
            .send()
            .await
            .expect("the management API answers");
            if queue.status() == reqwest::StatusCode::NOT_FOUND {
                break;
            }
            let queue: serde_json::Value = queue.json().await.expect("JSON");
            if queue["effective_policy_definition"] == wanted {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "policy {name} not in force on {}: {queue}",
                topology.persist_queue()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Deletes a test's exchange and queues (the upgrade's holding queue too), and its policies if
/// any were applied, from any context (also while unwinding from a panic).
pub fn delete_topology(topology: Topology) {
    let url = amqp_url();
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            if let Ok(connection) = Connection::connect(&url, ConnectionProperties::default()).await
                && let Ok(channel) = connection.create_channel().await
            {
                let _ = topology.delete(&channel).await;
                // And what `countersign-worker upgrade dead-queue` may have left.
                if let Ok(channel) = connection.create_channel().await {
                    let _ = channel
                        .queue_delete(
                            topology.dead_holding_queue().as_str().into(),
                            lapin::options::QueueDeleteOptions::default(),
                        )
                        .await;
                }
                let _ = connection.close(200, "test done".into()).await;
            }
            for policy in topology.policies() {
                let path = format!("policies/%2F/{}", policy.name);
                let _ = management(reqwest::Method::DELETE, &path).send().await;
            }
        });
    })
    .join();
}

/// A message taken from a queue: its `message_id`, headers (text values) and body.
#[derive(Debug, Clone)]
pub struct Taken {
    pub message_id: String,
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// Takes every message out of the topology's `<prefix>.persist` queue, from any context (its
/// own thread and runtime, so that synchronous tests can call it): at least `expected` (waiting
/// up to 10 s for them — a quorum queue may show a confirmed message a moment after the
/// confirm), then whatever else arrives within half a second, so that extras are seen too.
pub fn take_persisted(topology: &Topology, expected: usize) -> Vec<Taken> {
    let url = amqp_url();
    let queue = topology.persist_queue().to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let open = || async {
                let connection = Connection::connect(&url, ConnectionProperties::default())
                    .await
                    .expect("RabbitMQ on AMQP_URL");
                let channel = connection.create_channel().await.unwrap();
                (connection, channel)
            };
            let (mut connection, mut channel) = open().await;
            let mut taken = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let mut settle: Option<tokio::time::Instant> = None;
            loop {
                let got = channel
                    .basic_get(
                        queue.as_str().into(),
                        lapin::options::BasicGetOptions { no_ack: true },
                    )
                    .await;
                // A quorum queue whose Raft member is (re)starting answers INTERNAL_ERROR
                // "noproc" and closes the connection (seen once on RabbitMQ 3.10 under the
                // attack suite's load): nothing was delivered, so ask again on a new
                // connection until the deadline.
                let got = match got {
                    Ok(got) => got,
                    Err(error) if tokio::time::Instant::now() < deadline => {
                        eprintln!("basic.get: {error}; asking again on a new connection");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        (connection, channel) = open().await;
                        continue;
                    }
                    Err(error) => panic!("basic.get: {error:?}"),
                };
                let Some(message) = got else {
                    let now = tokio::time::Instant::now();
                    if taken.len() >= expected {
                        let until = *settle.get_or_insert(now + Duration::from_millis(500));
                        if now >= until {
                            break;
                        }
                    } else if now >= deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let properties = &message.delivery.properties;
                let headers = properties
                    .headers()
                    .as_ref()
                    .map(|h| {
                        h.inner()
                            .keys()
                            .filter_map(|name| {
                                let value =
                                    countersign::message::header_text(properties, name.as_str())?;
                                Some((name.as_str().to_owned(), value.to_owned()))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                taken.push(Taken {
                    message_id: properties
                        .message_id()
                        .as_ref()
                        .map(|m| m.as_str().to_owned())
                        .unwrap_or_default(),
                    headers,
                    body: message.delivery.data.clone(),
                });
            }
            let _ = connection.close(200, "test done".into()).await;
            taken
        })
    })
    .join()
    .expect("queue reader")
}

/// A TCP proxy in front of a server (broker, database) that a test can stop (dropping every
/// connection, like a server that dies), start again on the same port, or freeze (holding every
/// byte while the connections stay open, like a network partition).
pub struct TcpProxy {
    listen: SocketAddr,
    target: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    frozen: Arc<AtomicBool>,
}

impl TcpProxy {
    /// Picks a free port; nothing listens on it until [`TcpProxy::start`]. The port is below
    /// Linux's ephemeral range (32768–60999), so that no other test's port-0 listener or
    /// outgoing connection can take it while the proxy is stopped (one did: "proxy port free
    /// again: address in use").
    pub async fn reserve(target: SocketAddr) -> Self {
        let mut listen = None;
        for _ in 0..1000 {
            let port = port_below_ephemeral_range();
            if let Ok(probe) = TcpListener::bind(("127.0.0.1", port)).await {
                listen = probe.local_addr().ok();
                break;
            }
        }
        let listen = listen.expect("a free port below the ephemeral range");
        Self {
            listen,
            target,
            tasks: Arc::default(),
            frozen: Arc::default(),
        }
    }

    pub fn port(&self) -> u16 {
        self.listen.port()
    }

    /// Holds (true) or releases (false) the bytes in both directions.
    pub fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }

    pub fn start(&self) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.listen).expect("proxy port free again");
        let listener = socket.listen(128).unwrap();
        let target = self.target;
        let tasks = self.tasks.clone();
        let frozen = self.frozen.clone();
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let frozen = frozen.clone();
                let forward = tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(target).await {
                        let (client_read, client_write) = inbound.into_split();
                        let (server_read, server_write) = outbound.into_split();
                        tokio::join!(
                            pump(client_read, server_write, frozen.clone()),
                            pump(server_read, client_write, frozen)
                        );
                    }
                });
                tasks.lock().unwrap().push(forward);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Closes the port and every proxied connection.
    pub async fn stop(&self) {
        let tasks: Vec<_> = self.tasks.lock().unwrap().drain(..).collect();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// A child process (a binary under test) that is killed when dropped — also when the test
/// panics: an orphaned ingester or worker would keep re-declaring the test's queues.
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    /// Sends SIGTERM: the graceful shutdown path.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGTERM delivered");
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reaped");
    }

    /// Waits for the process to exit, without blocking the async runtime.
    pub async fn wait(mut self) -> std::process::ExitStatus {
        tokio::task::spawn_blocking(move || self.0.wait().expect("wait"))
            .await
            .expect("wait task")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the workspace root")
}

/// `cargo` as a person's shell runs it, in the workspace root: without the test harness's
/// `CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ... which would make build scripts that watch them
/// (ring's) rebuild everything above them.
pub fn cargo_command() -> std::process::Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = std::process::Command::new(cargo);
    command.current_dir(workspace_root());
    without_cargo_env(
        &mut command,
        &["CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_TERM_COLOR"],
    );
    command
}

/// Removes from `command`'s environment every `CARGO_*` variable the test harness set but those
/// in `keep`: what a person's shell would not have.
pub fn without_cargo_env(command: &mut std::process::Command, keep: &[&str]) {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_") && !keep.contains(&&*name) {
            command.env_remove(&*name);
        }
    }
}

/// The release build of the production binaries (`countersign-ingester`, `countersign-worker`),
/// built once per test process (cargo's lock serializes concurrent test binaries; the test
/// command builds them beforehand, so this is usually a no-op check).
/// `COUNTERSIGN_RELEASE_DIR` points at other builds instead (to replay the attack suite against
/// an older commit).
pub fn release_binary(name: &str) -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let directory = BUILT.get_or_init(|| {
        if let Some(directory) = std::env::var_os("COUNTERSIGN_RELEASE_DIR") {
            return PathBuf::from(directory);
        }
        let status = cargo_command()
            .args([
                "build",
                "--release",
                "--locked",
                // The test command's exact build (same binaries, same features): a no-op here.
                "--bin",
                "countersign",
                "--bin",
                "countersign-ingester",
                "--bin",
                "countersign-worker",
            ])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "release build of the binaries");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| workspace_root().join("target"), PathBuf::from);
        target.join("release")
    });
    directory.join(name)
}
