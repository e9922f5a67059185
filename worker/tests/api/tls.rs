//! The worker over TLS: a PostgreSQL of the test's own (the machine's server binaries, a data
//! directory in a temporary folder, a free port) with `ssl = on` and a certificate signed by a
//! CA the test makes. `sslmode=verify-full` with that CA connects and migrates over TLS;
//! `require` connects without checking the certificate; another CA is refused at start-up with
//! a message that says what to check.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use countersign_testkit::KillOnDrop;
use countersign_worker::db::Db;

fn openssl(args: &[&str], dir: &Path) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA (`<name>.pem`, `<name>.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
        dir,
    );
}

/// The server's key and certificate (`server.key`, `server.pem`) for localhost and 127.0.0.1,
/// signed by the CA `ca`.
fn make_server_certificate(dir: &Path, ca: &str) {
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
        dir,
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
        dir,
    );
}

/// The newest PostgreSQL server binaries on this machine (Debian keeps them off the PATH).
fn server_binaries() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server binaries in /usr/lib/postgresql")
        .map(|e| e.unwrap().path().join("bin"))
        .filter(|p| p.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL version")
}

/// Runs a command as the `postgres` user (PostgreSQL refuses to run as root).
fn as_postgres(program: &Path) -> Command {
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
        .arg(program);
    command
}

struct TlsServer {
    port: u16,
    _process: KillOnDrop,
}

fn start_tls_server(dir: &Path) -> TlsServer {
    let bin = server_binaries();
    let data = dir.join("data");
    let chown = |path: &Path| {
        assert!(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(path)
                .status()
                .unwrap()
                .success()
        );
    };
    chown(dir);
    let status = as_postgres(&bin.join("initdb"))
        .args(["--auth=trust", "--username=postgres", "-D"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "initdb");
    // Only TLS connections from the network: a plain one is refused.
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
    )
    .unwrap();
    chown(&data);
    let port = countersign_testkit::free_port();
    let log = std::fs::File::create(dir.join("postgres.log")).unwrap();
    let process = as_postgres(&bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .args([
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "ssl=on",
        ])
        .arg("-c")
        .arg(format!(
            "ssl_cert_file={}",
            dir.join("server.pem").display()
        ))
        .arg("-c")
        .arg(format!("ssl_key_file={}", dir.join("server.key").display()))
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.display()))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map(KillOnDrop)
        .expect("postgres starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the TLS server did not start: {}",
            std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    TlsServer {
        port,
        _process: process,
    }
}

async fn ssl_in_use(url: &str) -> Result<bool, sqlx::Error> {
    let db = Db::connect_lazy(url, 1, Duration::from_secs(5))?;
    let ssl =
        sqlx::query_scalar::<_, bool>("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(db.pool())
            .await;
    db.pool().close().await;
    ssl
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_connects_with_verify_full_and_refuses_a_wrong_ca() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), "ca");
    make_ca(dir.path(), "other-ca");
    make_server_certificate(dir.path(), "ca");
    let server = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || start_tls_server(&dir)
    })
    .await
    .unwrap();
    let base = format!("postgres://postgres@localhost:{}/postgres", server.port);
    let ca = dir.path().join("ca.pem");

    let verified = format!("{base}?sslmode=verify-full&sslrootcert={}", ca.display());
    assert!(
        ssl_in_use(&verified)
            .await
            .expect("verify-full with the CA")
    );
    let db = Db::connect_lazy(&verified, 2, Duration::from_secs(5)).unwrap();
    db.migrate().await.expect("migrations over TLS");
    db.pool().close().await;

    let required = format!("{base}?sslmode=require");
    assert!(
        ssl_in_use(&required)
            .await
            .expect("require: TLS, certificate unchecked")
    );

    let plain = format!("{base}?sslmode=disable");
    assert!(
        ssl_in_use(&plain).await.is_err(),
        "the server refuses plain connections"
    );

    // Another CA: the worker binary stops at start with the reason, not a wait.
    let wrong = format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        dir.path().join("other-ca.pem").display()
    );
    let error = ssl_in_use(&wrong).await.unwrap_err();
    assert!(
        countersign_worker::db::is_certificate_error(&error),
        "{error}"
    );
    let config = dir.path().join("countersign.toml");
    std::fs::write(
        &config,
        format!(
            "[amqp]\nprefix = \"{}\"\n[worker]\nlisten = \"127.0.0.1:0\"\ndocuments = \"file:{}\"\n",
            countersign_testkit::unique_prefix(),
            dir.path().join("documents").display()
        ),
    )
    .unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_countersign-worker"))
            .env("COUNTERSIGN_CONFIG", &config)
            .env("DATABASE_URL", &wrong)
            .env("AMQP_URL", countersign_testkit::amqp_url())
            .env("RUST_LOG", "off")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("TLS certificate does not verify")
            && stderr.contains("sslrootcert")
            && stderr.contains("UnknownIssuer"),
        "{stderr}"
    );
}
