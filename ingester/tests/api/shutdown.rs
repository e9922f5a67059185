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

use crate::helpers::{
    KEY, OLD_KEY, Options, amqp_url, config_text, delete_topology, env_for, signed_event,
    unique_prefix,
};

struct Cleanup(Topology);

impl Drop for Cleanup {
    fn drop(&mut self) {
        delete_topology(self.0.clone());
    }
}

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

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_loses_no_accepted_event() {
    let prefix = unique_prefix();
    let options = Options::default();
    let dir = tempfile::tempdir().unwrap();
    let spool = format!("dir = {:?}", dir.path().join("spool"));
    let text = config_text(&prefix, &options, &spool);
    let topology = Topology::from_config(
        &Config::from_toml(
            &text,
            countersign::config::Role::Ingester,
            &env_for(&options.amqp_url),
        )
        .unwrap()
        .amqp,
    );
    let _cleanup = Cleanup(topology.clone());
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
    let child = countersign_testkit::KillOnDrop(child);
    let url = format!("http://127.0.0.1:{port}/webhooks/acme");
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
