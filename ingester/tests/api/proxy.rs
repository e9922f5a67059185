//! Behind a reverse proxy (nginx, as ingress-nginx is in production): a source's `allow_ips`
//! sees the client through `X-Forwarded-For` only when the TCP peer is one of
//! `ingester.trusted_proxies`. Loopback addresses stand for the three parties: the proxy
//! connects from 127.0.0.2 (`proxy_bind`), the allowed client is 127.0.0.3, anyone else
//! 127.0.0.1 or 127.0.0.4.

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::{Options, TestApp, signed_event};

/// nginx in front of `upstream`, as a child process of its own prefix directory.
struct Nginx {
    /// Killed with the test.
    _child: countersign_testkit::KillOnDrop,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// The ingester's `acme` endpoint through nginx.
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/webhooks/acme", self.port)
    }

    fn start(upstream: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // nginx's workers may run as another user (root starts them as nobody): its temporary
        // directories must be theirs to write.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let port = countersign_testkit::free_port();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let config = format!(
            r#"
# One process (no workers that could outlive it when the test kills it).
master_process off;
daemon off;
pid {pid};
error_log {error_log} info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_bind 127.0.0.2;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"#,
            pid = path("nginx.pid"),
            error_log = path("error.log"),
            tmp = dir.path().display(),
        );
        std::fs::write(dir.path().join("nginx.conf"), config).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is installed (the test command installs Debian's nginx)");
        let child = countersign_testkit::KillOnDrop(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self {
                    _child: child,
                    port,
                    _dir: dir,
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "nginx did not listen: {}",
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        );
    }
}

/// An ingester whose `acme` source allows 127.0.0.3 only, with `ingester` among its
/// `[ingester]` lines, connected to the broker, and nginx in front of it.
async fn behind_nginx(ingester: &'static str) -> (TestApp, Nginx) {
    let app = TestApp::spawn_with(Options {
        ingester_extra: ingester,
        acme_extra: r#"allow_ips = ["127.0.0.3/32"]"#,
        ..Options::default()
    })
    .await;
    app.wait_broker().await;
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let nginx = Nginx::start(port);
    (app, nginx)
}

/// Posts a fresh signed event to `url` from `from`, with `forwarded_for` if any; the status.
async fn post_from(from: &str, url: &str, forwarded_for: Option<&str>) -> u16 {
    let http = reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .build()
        .unwrap();
    let (_, body) = signed_event();
    let mut request = http
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(value) = forwarded_for {
        request = request.header("x-forwarded-for", value);
    }
    request
        .send()
        .await
        .expect("request sent")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_ips_sees_the_client_through_a_trusted_proxy_and_never_a_forged_header() {
    let (app, nginx) = behind_nginx(r#"trusted_proxies = ["127.0.0.2"]"#).await;
    let (through_proxy, direct) = (nginx.url(), format!("{}/webhooks/acme", app.address));

    // The allowed client, through the proxy: nginx appends its address to X-Forwarded-For.
    assert_eq!(post_from("127.0.0.3", &through_proxy, None).await, 200);
    // Another client through the proxy, claiming to be the allowed one: nginx appends the
    // real address after the claim, and that is the one that counts.
    assert_eq!(
        post_from("127.0.0.4", &through_proxy, Some("127.0.0.3")).await,
        403
    );
    // Straight to the ingester from a peer that is not a trusted proxy, with a forged header.
    assert_eq!(
        post_from("127.0.0.1", &direct, Some("127.0.0.3")).await,
        403
    );
    // Straight from the allowed address: the peer is the client.
    assert_eq!(post_from("127.0.0.3", &direct, None).await, 200);
    assert_eq!(app.persisted_count().await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_trusted_proxies_the_header_is_never_read() {
    let (app, nginx) = behind_nginx("").await;
    let (through_proxy, direct) = (nginx.url(), format!("{}/webhooks/acme", app.address));
    // Through the proxy the peer is the proxy, which allow_ips does not list.
    assert_eq!(post_from("127.0.0.3", &through_proxy, None).await, 403);
    assert_eq!(
        post_from("127.0.0.1", &direct, Some("127.0.0.3")).await,
        403
    );
    assert_eq!(app.persisted_count().await, 0);
}
