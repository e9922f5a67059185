//! Documents in S3: the worker binary with `documents = "s3://<bucket>/<prefix>"` against a real
//! S3-compatible server (moto's, which the test command installs), configured by the usual
//! `AWS_*` variables. The signed PDF of an event is stored in the bucket under the prefix and
//! served back byte for byte by the read API.

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use countersign_testkit::{KillOnDrop, free_port};
use sha2::{Digest, Sha256};

use crate::helpers::{Options, READ_TOKEN, Stack, taktikal_with, wait_until};

/// moto's S3 server on a free port, stopped when dropped.
async fn s3_server() -> (KillOnDrop, String) {
    let port = free_port();
    let server = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(KillOnDrop)
        .expect("moto_server runs (the test command installs moto[server] from PyPI)");
    let endpoint = format!("http://127.0.0.1:{port}");
    wait_until("the S3 server answers", Duration::from_secs(30), || async {
        reqwest::get(&endpoint).await.is_ok()
    })
    .await;
    (server, endpoint)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_stores_and_serves_documents_through_s3() {
    let (_s3, endpoint) = s3_server().await;
    let http = reqwest::Client::new();
    let bucket = "countersign-documents";
    let created = http
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "bucket created");

    let stack = Stack::start_with(Options {
        start_worker: false,
        api_tokens: true,
        ..Options::default()
    })
    .await;
    let api_port = free_port();
    let config_text: String = stack
        .config_text
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("documents = ") {
                format!("documents = \"s3://{bucket}/signed/pdfs\"")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        .replacen(
            "[worker]\n        listen = \"127.0.0.1:0\"",
            &format!("[worker]\n        listen = \"127.0.0.1:{api_port}\""),
            1,
        );
    assert!(config_text.contains(&format!("127.0.0.1:{api_port}")));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("countersign.toml");
    std::fs::write(&config, &config_text).unwrap();
    let _worker = Command::new(env!("CARGO_BIN_EXE_countersign-worker"))
        .env("COUNTERSIGN_CONFIG", &config)
        .env("AMQP_URL", countersign_testkit::amqp_url())
        .env("DATABASE_URL", &stack.database.url)
        .env("READ_TOKEN", READ_TOKEN)
        .env("AWS_ENDPOINT", &endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "countersign-test")
        .env("AWS_SECRET_ACCESS_KEY", "countersign-test-secret")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(KillOnDrop)
        .expect("worker binary starts");

    let pdf: Vec<u8> = b"%PDF-1.7\n"
        .iter()
        .copied()
        .chain((0..300_000u32).map(|i| (i * 13 % 251) as u8))
        .collect();
    let sha256 = format!("{:x}", Sha256::digest(&pdf));
    let (_, event) = taktikal_with("sp-s3", 2, |e| {
        e["EventData"]["SignedDocument"] = base64::engine::general_purpose::STANDARD
            .encode(&pdf)
            .into();
    });
    assert_eq!(stack.post(&event).await, 200);
    stack.wait_for_events(1).await;

    let listing = http
        .get(format!("{endpoint}/{bucket}?list-type=2"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let key = format!("signed/pdfs/{}/{sha256}", &sha256[..2]);
    assert!(listing.contains(&format!("<Key>{key}</Key>")), "{listing}");

    let served = http
        .get(format!("http://127.0.0.1:{api_port}/documents/{sha256}"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.bytes().await.unwrap().as_ref(), pdf.as_slice());
    let missing = http
        .get(format!(
            "http://127.0.0.1:{api_port}/documents/{}",
            "0".repeat(64)
        ))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}
