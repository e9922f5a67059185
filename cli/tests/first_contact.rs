//! First contact, as a newcomer has it: the README's run command and its send command, run as
//! written (plus the flags that isolate a test: free ports, its own queue prefix, database and
//! data directory), give a 200 and the event in the read API with no other step; a missing
//! broker or database is one line that says how to start it.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use countersign_testkit::{KillOnDrop, cargo_command, unique_prefix};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The README's command whose line starts with `cargo run` and contains `needle`, as words
/// (the README's commands have no quoting), without its trailing comment.
fn readme_command(needle: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let line = readme
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("cargo run") && l.contains(needle))
        .unwrap_or_else(|| panic!("the README has a `cargo run … {needle}` command"));
    let line = line.split(" #").next().unwrap();
    line.split_whitespace().map(str::to_owned).collect()
}

fn command_of(words: &[String]) -> Command {
    let mut command = if words[0] == "cargo" {
        cargo_command()
    } else {
        let mut command = Command::new(&words[0]);
        command.current_dir(root());
        command
    };
    command.args(&words[1..]);
    command
}

/// A database name of the test's own, on the test server, that does not exist yet; dropped
/// (and the test's queues deleted) at the end.
struct Isolation {
    prefix: String,
    database: String,
    database_url: String,
}

impl Isolation {
    fn new() -> Self {
        let database = format!("cs_{}", uuid::Uuid::new_v4().simple());
        let base = countersign_testkit::database_url();
        let (server, _) = base.rsplit_once('/').unwrap();
        Self {
            prefix: unique_prefix(),
            database_url: format!("{server}/{database}"),
            database,
        }
    }
}

impl Drop for Isolation {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &countersign_testkit::database_url(),
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database),
            ])
            .status();
        let config = countersign::config::Config::from_toml(
            &format!("[amqp]\nprefix = \"{}\"\n", self.prefix),
            countersign::config::Role::Worker,
            &|_| None,
        )
        .unwrap();
        countersign_testkit::delete_topology(countersign::topology::Topology::from_config(
            &config.amqp,
        ));
    }
}

/// Lines of a child's stdout, read on a thread.
fn lines_of(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Waits for a line that satisfies `want`, keeping every line seen in `seen`.
fn wait_line(
    lines: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    timeout: Duration,
    log: &Path,
    want: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if want(&line) {
                    return line;
                }
            }
            Err(_) => panic!(
                "no such line within {timeout:?}; stdout:\n{}\nstderr:\n{}",
                seen.join("\n"),
                std::fs::read_to_string(log).unwrap_or_default()
            ),
        }
    }
}

fn url_in(line: &str) -> String {
    let start = line.find("http://").expect("a URL in the line");
    let url = line[start..].split_whitespace().next().unwrap();
    let (scheme_host, _) = url[7..].split_once('/').unwrap();
    format!("http://{scheme_host}")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_run_and_send_commands_give_a_200_and_the_event_in_the_read_api() {
    let isolation = Isolation::new();
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("dev.log");
    let mut run = readme_command(" -- dev");
    run.extend(
        [
            "--webhook-port",
            "0",
            "--admin-port",
            "0",
            "--api-port",
            "0",
            "--prefix",
            &isolation.prefix,
            "--data",
        ]
        .map(str::to_owned),
    );
    run.push(data.path().display().to_string());
    let mut child = command_of(&run);
    child
        .env("DATABASE_URL", &isolation.database_url)
        .env("AMQP_URL", countersign_testkit::amqp_url())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut dev = KillOnDrop(child.spawn().expect("cargo runs"));
    let lines = lines_of(dev.0.stdout.take().unwrap());
    let mut seen = Vec::new();
    // The first run on a fresh machine builds in release mode (the test command builds first).
    let build = Duration::from_secs(900);
    let webhooks = url_in(&wait_line(&lines, &mut seen, build, &log, |l| {
        l.trim_start().starts_with("webhooks")
    }));
    let api = url_in(&wait_line(
        &lines,
        &mut seen,
        Duration::from_secs(5),
        &log,
        |l| l.trim_start().starts_with("read API"),
    ));
    wait_line(&lines, &mut seen, Duration::from_secs(60), &log, |l| {
        l == "ready"
    });
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(
        stderr.contains(&format!("created the database {}", isolation.database)),
        "{stderr}"
    );

    let mut send = readme_command(" -- send");
    send.extend([
        "--url".to_owned(),
        webhooks,
        "--api-url".to_owned(),
        api.clone(),
    ]);
    let output = command_of(&send)
        .env_remove("COUNTERSIGN_CONFIG")
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("/webhooks/acme -> 200 {\"status\":\"accepted\"}"),
        "{stdout}"
    );
    let process_key = stdout
        .split_whitespace()
        .skip_while(|w| *w != "process")
        .nth(1)
        .expect("the send command names the process")
        .trim_end_matches(':')
        .to_owned();

    let http = reqwest::Client::new();
    let url = format!("{api}/signing/activity/{process_key}?source=acme");
    let deadline = Instant::now() + Duration::from_secs(30);
    let view = loop {
        let response = http.get(&url).send().await.unwrap();
        if response.status() == 200 {
            break response.json::<serde_json::Value>().await.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the event never reached the read API"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(view[0]["processKey"], process_key.as_str(), "{view}");
    assert_eq!(view[0]["status"], "all_signed", "{view}");

    // Ctrl-C's signal, SIGINT, to the product (cargo run replaced itself with it): both stop.
    let status = Command::new("kill")
        .args(["-INT", &dev.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_line(&lines, &mut seen, Duration::from_secs(40), &log, |l| {
        l == "stopped"
    });
    let exit = tokio::task::spawn_blocking(move || dev.0.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

fn dev_binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_countersign"));
    command.arg("dev").args([
        "--webhook-port",
        "0",
        "--admin-port",
        "0",
        "--api-port",
        "0",
    ]);
    command
}

/// Runs development mode with `env`; it must fail with exit 1 and one line, which is returned.
fn dev_fails_with(env: &[(&str, String)]) -> String {
    let mut command = dev_binary();
    command.env("AMQP_URL", countersign_testkit::amqp_url());
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.env("RUST_LOG", "off").output().unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

#[test]
fn a_missing_broker_or_database_is_one_line_that_says_how_to_start_it() {
    let closed = countersign_testkit::free_port();
    let broker = format!("amqp://guest:guest@127.0.0.1:{closed}/%2f");
    let stderr = dev_fails_with(&[("AMQP_URL", broker)]);
    assert!(
        stderr.contains(&format!("RabbitMQ is not reachable at 127.0.0.1:{closed}"))
            && stderr.contains("rabbitmq-server -detached")
            && !stderr.contains("guest:guest"),
        "{stderr}"
    );

    let database = format!("postgres://postgres:secret@127.0.0.1:{closed}/countersign");
    let stderr = dev_fails_with(&[("DATABASE_URL", database)]);
    assert!(
        stderr.contains(&format!("PostgreSQL is not usable at 127.0.0.1:{closed}"))
            && stderr.contains("pg_ctlcluster")
            && !stderr.contains("secret"),
        "{stderr}"
    );
}

#[test]
fn send_names_the_sources_it_knows_and_refuses_what_it_cannot_sign() {
    let output = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["send", "nobody"])
        .env_remove("COUNTERSIGN_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no source \"nobody\"") && stderr.contains("sources: acme"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let pem = countersign_testkit::rsa_key_pem();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(
        &jwks,
        countersign_providers::universign::jwks_of(&pem, "k1")
            .unwrap()
            .to_string(),
    )
    .unwrap();
    let config = dir.path().join("countersign.toml");
    std::fs::write(
        &config,
        format!(
            "[[sources]]\nname = \"fr\"\nprovider = \"universign\"\njwks = \"{}\"\n",
            jwks.display()
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["send", "fr", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--private-key"), "{stderr}");
}

/// Issue 31: `countersign status` says healthy for a running system — versions, queues with their
/// consumer, the last event per source — and not healthy, naming the parked message's kind and
/// exiting 1, once something is parked.
#[tokio::test(flavor = "multi_thread")]
async fn status_says_healthy_then_names_what_is_parked() {
    let isolation = Isolation::new();
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("dev.log");
    let mut dev = dev_binary();
    dev.args(["--prefix", &isolation.prefix, "--data"])
        .arg(data.path())
        .env("DATABASE_URL", &isolation.database_url)
        .env("AMQP_URL", countersign_testkit::amqp_url())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut dev = KillOnDrop(dev.spawn().expect("countersign dev starts"));
    let lines = lines_of(dev.0.stdout.take().unwrap());
    let mut seen = Vec::new();
    let long = Duration::from_secs(60);
    let webhooks = url_in(&wait_line(&lines, &mut seen, long, &log, |l| {
        l.trim_start().starts_with("webhooks")
    }));
    let admin = url_in(&wait_line(&lines, &mut seen, long, &log, |l| {
        l.trim_start().starts_with("admin")
    }));
    let api = url_in(&wait_line(&lines, &mut seen, long, &log, |l| {
        l.trim_start().starts_with("read API")
    }));
    wait_line(&lines, &mut seen, long, &log, |l| l == "ready");
    let sent = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["send", "acme", "--url", &webhooks, "--api-url", &api])
        .env_remove("COUNTERSIGN_CONFIG")
        .output()
        .unwrap();
    assert!(sent.status.success());

    let status = |json: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_countersign"));
        command
            .args(["status", "--ingester-admin", &admin, "--worker", &api])
            .args(["--prefix", &isolation.prefix])
            .env_remove("COUNTERSIGN_CONFIG")
            .env("AMQP_URL", countersign_testkit::amqp_url())
            .env("DATABASE_URL", &isolation.database_url);
        if json {
            command.arg("--json");
        }
        command.output().unwrap()
    };
    // The event reaches the archive; then everything is as it should be.
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let output = status(true);
        let report: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)));
        // RabbitMQ's management statistics lag a few seconds behind a new consumer.
        let settled = report["last_event"]["acme"].is_string() && report["healthy"] == true;
        if settled || Instant::now() > deadline {
            assert_eq!(output.status.code(), Some(0), "{report:#}");
            break report;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(report["healthy"], true, "{report:#}");
    assert_eq!(report["ingester"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(report["worker"]["version"], env!("CARGO_PKG_VERSION"));
    let persist = format!("{}.persist", isolation.prefix);
    let queue = report["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == persist.as_str())
        .unwrap_or_else(|| panic!("{report:#}"));
    assert!(queue["consumers"].as_u64().unwrap() >= 1, "{report:#}");
    assert!(report["last_event"]["acme"].is_string(), "{report:#}");

    // A parked message.
    let connection = lapin::Connection::connect(
        &countersign_testkit::amqp_url(),
        lapin::ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut headers = lapin::types::FieldTable::default();
    for (name, value) in [
        ("x-dead-kind", "unparseable"),
        ("x-source", "acme"),
        ("x-dead-reason", "not a Taktikal event"),
    ] {
        headers.insert(
            name.into(),
            lapin::types::AMQPValue::LongString(value.into()),
        );
    }
    channel
        .basic_publish(
            "".into(),
            format!("{}.dead", isolation.prefix).as_str().into(),
            lapin::options::BasicPublishOptions::default(),
            b"{}",
            lapin::BasicProperties::default().with_headers(headers),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let output = status(false);
        let text = String::from_utf8(output.stdout).unwrap();
        if output.status.code() == Some(1) || Instant::now() > deadline {
            assert_eq!(output.status.code(), Some(1), "{text}");
            break text;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(text.starts_with("Countersign: NOT HEALTHY"), "{text}");
    assert!(
        text.contains("parked    unparseable acme") && text.contains("not a Taktikal event"),
        "{text}"
    );
    connection.close(0, "done".into()).await.unwrap();
    let _ = Command::new("kill")
        .args(["-INT", &dev.0.id().to_string()])
        .status();
    let _ = tokio::task::spawn_blocking(move || dev.0.wait()).await;
}

/// The README's fenced blocks marked runnable (```` ```sh runnable ````), each as its lines.
fn runnable_blocks() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start().starts_with("```")) {
            (None, true) if line.trim() == "```sh runnable" => current = Some(Vec::new()),
            (Some(_), true) => blocks.push(current.take().unwrap()),
            (Some(block), false) => block.push(line.to_owned()),
            _ => {}
        }
    }
    blocks
}

/// `text` with `from` replaced by `to`, which must be there: a README that no longer says it
/// fails the test rather than running unisolated.
fn isolate(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "expected {from:?} in:\n{text}");
    text.replace(from, to)
}

/// A directory to run a block in, as a checkout looks to it: `target` is the workspace's build
/// directory, `cargo` (first on `PATH`) runs the real cargo in the workspace, and the example
/// configuration is the repository's with the test's own ports and queue prefix.
fn checkout_view(dir: &Path, ports: &[(&str, String)], prefix: &str) -> String {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    std::os::unix::fs::symlink(target, dir.join("target")).unwrap();
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    std::fs::write(
        bin.join("cargo"),
        format!(
            "#!/bin/sh\ncd '{}' && exec '{cargo}' \"$@\"\n",
            root().display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(bin.join("cargo"))
        .status()
        .unwrap();
    let mut example = std::fs::read_to_string(root().join("countersign.example.toml")).unwrap();
    for (from, to) in ports {
        example = isolate(&example, from, to);
    }
    example = isolate(
        &example,
        "prefix = \"countersign\"",
        &format!("prefix = \"{prefix}\""),
    );
    std::fs::write(dir.join("countersign.example.toml"), example).unwrap();
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap())
}

/// Issue 31: every command of a README block marked runnable is run, as written, in one shell —
/// with what isolates a test: its own ports (in the example configuration and the block), queue
/// prefix and database, and a directory of its own that looks like the checkout. The block's
/// last command posts a signed event; the `curl` it prints then reads the event back.
#[tokio::test(flavor = "multi_thread")]
async fn the_readmes_runnable_blocks_run_as_written() {
    let blocks = runnable_blocks();
    assert!(!blocks.is_empty(), "the README marks no block runnable");
    for block in blocks {
        let isolation = Isolation::new();
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(&str, String)> = ["127.0.0.1:8080", "127.0.0.1:9090", "127.0.0.1:8081"]
            .into_iter()
            .map(|from| {
                let port = countersign_testkit::free_port();
                (from, format!("127.0.0.1:{port}"))
            })
            .collect();
        let path = checkout_view(dir.path(), &ports, &isolation.prefix);
        let mut script = block.join("\n");
        for (from, to) in &ports {
            if script.contains(from) {
                script = script.replace(from, to);
            }
        }
        script = isolate(
            &script,
            "127.0.0.1:5432/countersign",
            &format!("127.0.0.1:5432/{}", isolation.database),
        );
        script = isolate(
            &script,
            "-U postgres countersign",
            &format!("-U postgres {}", isolation.database),
        );
        let (output, services) = run_block(&script, dir.path(), &path);
        read_back(&output, &script, dir.path()).await;
        drop(services);
    }
}

/// Runs `script` with `bash -e` in `dir`: its output, and a guard that stops what it left
/// running (its process group: SIGTERM, then SIGKILL).
fn run_block(script: &str, dir: &Path, path: &str) -> (String, StopOnDrop) {
    use std::os::unix::process::CommandExt as _;
    let mut command = Command::new("bash");
    command
        .args(["-e", "-c", script])
        .current_dir(dir)
        .env("PATH", path)
        .env("AMQP_URL", countersign_testkit::amqp_url())
        .env_remove("COUNTERSIGN_CONFIG")
        .env_remove("DATABASE_URL")
        // Files, not pipes: the services the block starts in the background keep its output
        // open after the shell has exited.
        .stdout(std::fs::File::create(dir.join("block.out")).unwrap())
        .stderr(std::fs::File::create(dir.join("block.log")).unwrap())
        .process_group(0);
    // The block's cargo shim builds in the workspace's own target directory.
    countersign_testkit::without_cargo_env(&mut command, &["CARGO_HOME", "CARGO_TERM_COLOR"]);
    let mut child = command.spawn().expect("bash runs");
    let group = child.id().to_string();
    let stop_group = move || {
        for signal in ["-TERM", "-KILL"] {
            let _ = Command::new("kill")
                .args([signal, "--", &format!("-{group}")])
                .status();
            std::thread::sleep(Duration::from_secs(2));
        }
    };
    let status = child.wait().unwrap();
    let stdout = std::fs::read_to_string(dir.join("block.out")).unwrap_or_default();
    let log = std::fs::read_to_string(dir.join("block.log")).unwrap_or_default();
    if !status.success() {
        stop_group();
        panic!("the block failed ({status:?}):\n{stdout}\n{log}");
    }
    (stdout, StopOnDrop(Box::new(stop_group)))
}

/// Runs the `curl` the block's `send` printed, with the token the block exported, until the
/// event is in the read API as an all-signed process.
async fn read_back(output: &str, script: &str, dir: &Path) {
    assert!(output.contains("/webhooks/acme -> 200"), "{output}");
    let curl = output
        .lines()
        .find_map(|l| Some(&l[l.find("curl -s")?..]))
        .unwrap_or_else(|| panic!("send printed no curl: {output}"));
    assert!(curl.contains("Authorization: Bearer"), "{curl}");
    let token = script
        .split_whitespace()
        .find_map(|w| w.strip_prefix("COUNTERSIGN_API_TOKEN="))
        .expect("the block exports COUNTERSIGN_API_TOKEN");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = Command::new("bash")
            .args(["-c", curl])
            .current_dir(dir)
            .env("COUNTERSIGN_API_TOKEN", token)
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&answer.stdout).into_owned();
        if body.contains("\"all_signed\"") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{curl} never showed the event: {body}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

struct StopOnDrop(Box<dyn Fn()>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        (self.0)()
    }
}
