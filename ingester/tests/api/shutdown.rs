//! SIGTERM to the real binary under load: every request that got a 200 has its message queued,
//! and the process exits 0.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use countersign::config::Config;
use countersign::topology::Topology;
use lapin::options::BasicGetOptions;
use lapin::types::ShortString;
use lapin::{Connection, ConnectionProperties};

use countersign_testkit::TopologyGuard;

use crate::helpers::{
    KEY, OLD_KEY, Options, amqp_url, config_text, env_for, signed_event, unique_prefix,
};

/// Collects the child's JSON log; returns the webhook port from the "ingester listening" line.
fn webhook_port(stderr: std::process::ChildStderr, log: Arc<Mutex<Vec<String>>>) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            log.lock().unwrap().push(line.clone());
            if !sent
                && let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line)
                && entry["message"] == "ingester listening"
            {
                let _ = tx.send(entry["port"].as_u64().unwrap() as u16);
                sent = true;
            }
            // Keep draining so the child never blocks on a full pipe.
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the ingester logs its port")
}

/// The ingester binary on the test's configuration (its spool in a directory of its own), with
/// its JSON log collected.
struct Running {
    child: countersign_testkit::KillOnDrop,
    port: u16,
    url: String,
    log: Arc<Mutex<Vec<String>>>,
    topology: Topology,
    _cleanup: TopologyGuard,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Started with `ingester.shutdown_timeout` = `shutdown_timeout`.
    fn start(shutdown_timeout: &str) -> Self {
        let prefix = unique_prefix();
        let options = Options::default();
        let dir = tempfile::tempdir().unwrap();
        let spool = format!("dir = {:?}", dir.path().join("spool"));
        let text = config_text(&prefix, &options, &spool).replace(
            "shutdown_timeout = \"20s\"",
            &format!("shutdown_timeout = \"{shutdown_timeout}\""),
        );
        let config = Config::from_toml(
            &text,
            countersign::config::Role::Ingester,
            &env_for(&options.amqp_url),
        )
        .unwrap();
        assert_eq!(
            config.ingester.shutdown_timeout,
            humantime::parse_duration(shutdown_timeout).unwrap()
        );
        let topology = Topology::from_config(&config.amqp);
        let config_path = dir.path().join("countersign.toml");
        std::fs::write(&config_path, text).unwrap();

        let mut child = Command::new(env!("CARGO_BIN_EXE_countersign-ingester"))
            .env("COUNTERSIGN_CONFIG", &config_path)
            .env("ACME_KEY", KEY)
            .env("ACME_OLD_KEY", OLD_KEY)
            .env("AMQP_URL", amqp_url())
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("binary starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let port = webhook_port(child.stderr.take().unwrap(), log.clone());
        Self {
            child: countersign_testkit::KillOnDrop(child),
            port,
            url: format!("http://127.0.0.1:{port}/webhooks/acme"),
            log,
            _cleanup: TopologyGuard(topology.clone()),
            topology,
            _dir: dir,
        }
    }

    /// Posts signed events until `count` of them got a 200 logged with `outcome` (20 s at most).
    async fn post_until(&self, http: &reqwest::Client, outcome: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let logged = |log: &[String]| {
            log.iter()
                .filter(|l| l.contains(&format!("\"outcome\":\"{outcome}\"")))
                .count()
        };
        let before = logged(&self.log.lock().unwrap());
        while logged(&self.log.lock().unwrap()) < before + count {
            assert!(
                Instant::now() < deadline,
                "not {count} × {outcome} within 20 s: {:#?}",
                self.log.lock().unwrap()
            );
            let (_, body) = signed_event();
            let _ = http.post(&self.url).body(body).send().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_loses_no_accepted_event() {
    let running = Running::start("20s");
    let (child, url, topology) = (running.child, running.url, running.topology.clone());
    let http = reqwest::Client::new();

    // Wait until the broker link is up (the first 200).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut accepted = HashSet::new();
    while accepted.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the ingester never accepted an event"
        );
        let (id, body) = signed_event();
        if http
            .post(&url)
            .body(body)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            accepted.insert(id);
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let ok = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..16 {
        let (http, url, ok) = (http.clone(), url.clone(), ok.clone());
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut others = 0usize;
            let stop_at = Instant::now() + Duration::from_secs(30);
            while Instant::now() < stop_at {
                let (id, body) = signed_event();
                match http.post(&url).body(body).send().await {
                    Ok(r) if r.status() == 200 => {
                        mine.push(id);
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => others += 1,
                    // Connection refused or reset: the server is gone.
                    Err(_) => break,
                }
            }
            (mine, others)
        }));
    }
    while ok.load(Ordering::Relaxed) < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.terminate();

    for worker in workers {
        let (mine, _others) = worker.await.unwrap();
        accepted.extend(mine);
    }
    let exit = child.wait().await;
    assert!(exit.success(), "graceful exit, got {exit:?}");
    assert!(accepted.len() > 300);

    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut queued = HashSet::new();
    while let Some(message) = channel
        .basic_get(
            ShortString::from(topology.persist_queue()),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    {
        queued.insert(
            message
                .delivery
                .properties
                .message_id()
                .as_ref()
                .unwrap()
                .to_string(),
        );
    }
    let missing: Vec<_> = accepted.difference(&queued).collect();
    assert!(
        missing.is_empty(),
        "{} of {} accepted events are not queued",
        missing.len(),
        accepted.len()
    );
}

/// Issue 28 (M2): the webhook stop, the spool's drain and the drainer's last batch share one
/// deadline, `shutdown_timeout` after SIGTERM, so a process manager's grace period of
/// `shutdown_timeout` + 5 s (what the manifests derive) never ends in a SIGKILL. Each phase here
/// takes all the time it is given: a request that never finishes its body, a spool the broker
/// keeps refusing (the work queue holds one message and rejects the rest) while the broker stays
/// connected. Each phase used to have its own `shutdown_timeout`: twice that and more.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_within_the_shutdown_deadline_when_every_phase_would_take_all_of_it() {
    use tokio::io::AsyncWriteExt as _;

    let shutdown = Duration::from_secs(6);
    let grace = shutdown + Duration::from_secs(5);
    let mut running = Running::start("6s");
    let http = reqwest::Client::new();

    // Connected (a first 200 confirmed), then the work queue takes one more message and refuses
    // (nacks) the rest: spooled, still 200, and the broker stays connected.
    running.post_until(&http, "accepted", 1).await;
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    countersign_testkit::make_persist_queue_hold_one(&channel, &running.topology).await;
    running.post_until(&http, "spooled", 5).await;
    // A request that never finishes: its body announced, never sent.
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", running.port))
        .await
        .unwrap();
    slow.write_all(
        b"POST /webhooks/acme HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    running.child.terminate();
    let waited = Instant::now();
    let status = loop {
        if let Some(status) = running.child.0.try_wait().unwrap() {
            break Some(status);
        }
        if waited.elapsed() > grace {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let lines = running.log.lock().unwrap().clone();
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running {grace:?} after SIGTERM (shutdown_timeout {shutdown:?} + 5 s): {lines:#?}"
        )
    });
    assert!(status.success(), "{status:?}: {lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("stopping with messages in the spool")),
        "the spool was not empty at the deadline: {lines:#?}"
    );
    drop(slow);
}
