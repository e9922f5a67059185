//! `docker compose up`, for real: the image built from `deploy/Dockerfile`, RabbitMQ booted from
//! `deploy/rabbitmq/`, PostgreSQL, the ingester and the worker, with the base images that
//! `deploy/local-bases/build.sh` made from Debian's packages substituted by
//! `deploy/local-bases/compose.override.yml` (this machine reaches no image registry; the test
//! command builds them and starts the engine). Signed events go in through the published port and
//! come back out of the worker's API (one of 20 MiB, over RabbitMQ 4's default message size
//! limit); the ingester and the worker are restarted under load and
//! nothing that got a 200 is missing; `down -v` at the end, also when the test fails.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use countersign_testkit::{compose_down, compose_program, free_port};

const DEV_KEY: &str = "dev-signature-key";
const DEV_TOKEN: &str = "dev-read-token";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One compose project of the test's own; `down -v` when dropped.
struct Project {
    program: Vec<String>,
    name: String,
    ports: [(&'static str, u16); 4],
}

impl Project {
    fn new() -> Self {
        Self {
            program: compose_program(),
            name: format!(
                "cs-test-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..10]
            ),
            ports: [
                ("COUNTERSIGN_WEBHOOK_PORT", free_port()),
                ("COUNTERSIGN_ADMIN_PORT", free_port()),
                ("COUNTERSIGN_API_PORT", free_port()),
                ("COUNTERSIGN_RABBITMQ_UI_PORT", free_port()),
            ],
        }
    }

    fn port(&self, name: &str) -> u16 {
        self.ports.iter().find(|(n, _)| *n == name).unwrap().1
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.program[0]);
        command
            .args(&self.program[1..])
            .args([
                "-f",
                "docker-compose.yml",
                "-f",
                "deploy/local-bases/compose.override.yml",
            ])
            .args(["-p", &self.name])
            .args(args)
            .current_dir(root())
            // The compose file's development defaults, whatever this shell has.
            .env_remove("ACME_TAKTIKAL_KEY")
            .env_remove("COUNTERSIGN_API_TOKEN")
            .env_remove("POSTGRES_PASSWORD");
        for (name, port) in &self.ports {
            command.env(name, port.to_string());
        }
        command
    }

    fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap_or_else(|e| {
            panic!(
                "{:?} runs (the test command installs it): {e}",
                self.program
            )
        })
    }

    fn run(&self, args: &[&str]) -> String {
        let output = self.output(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if !output.status.success() {
            // The containers say why (RabbitMQ's "BOOT FAILED ...", a migration error, ...).
            panic!("compose {args:?} failed:\n{text}\n{}", self.logs());
        }
        text
    }

    fn logs(&self) -> String {
        let output = self.output(&["logs", "--no-color", "--tail", "40"]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn psql(&self, sql: &str) -> String {
        self.run(&[
            "exec",
            "-T",
            "postgres",
            "psql",
            "-U",
            "countersign",
            "-d",
            "countersign",
            "-Atc",
            sql,
        ])
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        compose_down(self.command(&[]));
    }
}

/// Taktikal's example, with its own id and process key, signed now with the development key.
fn event(process_key: &str) -> (String, Vec<u8>) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let text = countersign_testkit::taktikal_example()
        .to_string()
        .replace("sp231f52f87d6f4caaa2e29ecac92d055b", process_key);
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["Id"] = id.clone().into();
    (
        id,
        countersign_testkit::sign_taktikal(value, DEV_KEY, SystemTime::now()),
    )
}

async fn post(http: &reqwest::Client, url: &str, body: Vec<u8>) -> Option<u16> {
    http.post(url)
        .header("content-type", "application/json")
        .body(body)
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

async fn wait_ready(project: &Project, http: &reqwest::Client, within: Duration) {
    let deadline = Instant::now() + within;
    for port in [
        project.port("COUNTERSIGN_ADMIN_PORT"),
        project.port("COUNTERSIGN_API_PORT"),
    ] {
        let url = format!("http://127.0.0.1:{port}/readyz");
        loop {
            let ready = http
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{url} not ready within {within:?}\n{}\n{}",
                project.run(&["ps"]),
                project.logs()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn recorded_ids(project: &Project) -> HashSet<String> {
    project
        .psql("SELECT event_id FROM webhook_events")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_compose_up_builds_boots_records_and_survives_restarts() {
    let project = Project::new();
    let started = Instant::now();
    let phase = |what: &str| eprintln!("compose: {what} at {:.0?}", started.elapsed());
    // The image, from deploy/Dockerfile (the first build on a machine compiles every crate).
    project.run(&["build"]);
    phase("built");
    project.run(&["up", "-d"]);
    let http = reqwest::Client::new();
    // RabbitMQ boots from deploy/rabbitmq/ (definitions imported file by file), PostgreSQL
    // initialises, the worker migrates: everything healthy, or the logs say why not.
    wait_ready(&project, &http, Duration::from_secs(300)).await;
    phase("healthy");
    let ps = project.run(&["ps"]);
    assert!(!ps.contains("unhealthy") && !ps.contains("Exit"), "{ps}");

    let webhooks = format!(
        "http://127.0.0.1:{}/webhooks/acme",
        project.port("COUNTERSIGN_WEBHOOK_PORT")
    );
    let api = format!("http://127.0.0.1:{}", project.port("COUNTERSIGN_API_PORT"));
    let mut first = Vec::new();
    for i in 0..10 {
        let key = format!("sp-compose-{i}-{}", project.name);
        let (_, body) = event(&key);
        assert_eq!(post(&http, &webhooks, body).await, Some(200), "event {i}");
        first.push(key);
    }
    for key in &first {
        let url = format!("{api}/signing/activity/{key}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let response = http.get(&url).bearer_auth(DEV_TOKEN).send().await.unwrap();
            if response.status() == 200 {
                let view: serde_json::Value = response.json().await.unwrap();
                assert_eq!(view[0]["status"], "all_signed", "{view}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{key} never reached the read API\n{}",
                project.logs()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    // Larger than RabbitMQ 4's default max_message_size (16 MiB): rabbitmq.conf raises it.
    let (big_id, mut big) = event(&format!("sp-compose-big-{}", project.name));
    big.resize(20 * 1024 * 1024, b' ');
    assert_eq!(
        post(&http, &webhooks, big).await,
        Some(200),
        "a 20 MiB event\n{}",
        project.logs()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !recorded_ids(&project).contains(&big_id) {
        assert!(
            Instant::now() < deadline,
            "the 20 MiB event was not recorded\n{}",
            project.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    phase("a 20 MiB event recorded");

    let unauthorized = http
        .get(format!("{api}/signing/activity/{}", first[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401, "the read API needs its token");

    // Restarts under load: every event that got a 200 must be recorded in the end.
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for sender in 0..4 {
        let (http, webhooks, stop) = (http.clone(), webhooks.clone(), stop.clone());
        senders.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut other = 0u32;
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let (id, body) = event(&format!("sp-load-{sender}-{n}"));
                match post(&http, &webhooks, body).await {
                    Some(200) => accepted.push(id),
                    _ => other += 1,
                }
                // A steady trickle (about 40 events/s in all), not a flood: the point is
                // events in flight at the moment of each restart.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (accepted, other)
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for service in ["ingester", "worker"] {
        let project_command = project.command(&["restart", service]);
        let output = tokio::task::spawn_blocking(move || {
            let mut command = project_command;
            command.output().unwrap()
        })
        .await
        .unwrap();
        assert!(output.status.success(), "restart {service}: {output:?}");
        wait_ready(&project, &http, Duration::from_secs(120)).await;
        phase(&format!("{service} restarted"));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut accepted = Vec::new();
    let mut refused = 0;
    for sender in senders {
        let (ids, other) = sender.await.unwrap();
        accepted.extend(ids);
        refused += other;
    }
    assert!(
        accepted.len() > 20,
        "load went on around the restarts ({} accepted, {refused} not)",
        accepted.len()
    );
    phase("load stopped");
    let deadline = Instant::now() + Duration::from_secs(120);
    let missing = loop {
        let recorded = recorded_ids(&project);
        let missing: Vec<&String> = accepted
            .iter()
            .filter(|id| !recorded.contains(*id))
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing.into_iter().cloned().collect::<Vec<_>>();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events missing after the restarts: {:?}\n{}",
        missing.len(),
        accepted.len(),
        &missing[..missing.len().min(5)],
        project.logs()
    );
    phase("all recorded");
    eprintln!(
        "compose: {} events acknowledged around the restarts ({refused} refused while a service was down), all recorded",
        accepted.len()
    );
}
