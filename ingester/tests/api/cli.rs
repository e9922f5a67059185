//! The binary's start-up: a bad configuration is one clear line and a non-zero exit.

use std::process::Command;

use crate::helpers::{Options, config_text};

fn run_with_config(text: Option<&str>, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("countersign.toml");
    if let Some(text) = text {
        std::fs::write(&path, text).unwrap();
    }
    let mut command = Command::new(env!("CARGO_BIN_EXE_countersign-ingester"));
    command
        .env("COUNTERSIGN_CONFIG", &path)
        .env_remove("ACME_KEY")
        .env_remove("ACME_OLD_KEY");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("binary runs");
    (
        output.status.code(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn a_missing_secret_stops_the_binary_with_one_line() {
    let text = config_text("cli-test", &Options::default(), "enabled = false");
    let (code, stderr) = run_with_config(Some(&text), &[("ACME_OLD_KEY", "old")]);
    assert_eq!(code, Some(2));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("invalid configuration")
            && stderr.contains(
                "sources[acme].secrets[1]: env:ACME_KEY: environment variable ACME_KEY is not set"
            ),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_and_a_typo_are_one_line_each() {
    let (code, stderr) = run_with_config(None, &[]);
    assert_eq!(code, Some(2));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot read the configuration file")
            && stderr.contains("COUNTERSIGN_CONFIG"),
        "{stderr}"
    );

    let (code, stderr) = run_with_config(
        Some("[ingester]\nlisten = \"127.0.0.1:0\"\nmax_body = 5\n"),
        &[],
    );
    assert_eq!(code, Some(2));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("line 3: unknown field `max_body`"),
        "{stderr}"
    );
}

/// Each provider declares the keys it reads (`jwks`, `certificate`, `api`, ...); one it does not
/// read would be silently ignored, and is refused instead (every provider and key:
/// `countersign::config`'s unit tests).
#[test]
fn a_setting_the_provider_does_not_read_stops_the_binary_naming_the_key() {
    let text = "[[sources]]\nname = \"esign\"\nprovider = \"docusign\"\njwks = \"/etc/countersign/jwks.json\"\nsecrets = [\"env:ACME_KEY\"]\n";
    let (code, stderr) = run_with_config(
        Some(text),
        &[("ACME_KEY", "a-docusign-connect-key-32-bytes")],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("sources[esign].jwks: docusign does not use jwks"),
        "{stderr}"
    );
}

#[test]
fn a_key_file_that_cannot_be_read_is_a_configuration_error() {
    let text = "[[sources]]\nname = \"fr\"\nprovider = \"universign\"\njwks = \"/nonexistent/jwks.json\"\n";
    let (code, stderr) = run_with_config(Some(text), &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("invalid configuration") && stderr.contains("sources[fr]"),
        "{stderr}"
    );
    // The file is named, as in every other configuration error (issue 31, 9).
    assert!(
        stderr.contains("countersign.toml: sources[fr]: jwks /nonexistent/jwks.json"),
        "{stderr}"
    );
}

#[test]
fn help_and_version_need_no_configuration() {
    let run = |arg: &str| {
        Command::new(env!("CARGO_BIN_EXE_countersign-ingester"))
            .arg(arg)
            .env("COUNTERSIGN_CONFIG", "/nonexistent/countersign.toml")
            .output()
            .unwrap()
    };
    let help = run("--help");
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    for word in [
        "Usage: countersign-ingester",
        "run",
        "healthcheck",
        "--config",
    ] {
        assert!(text.contains(word), "{word} in {text}");
    }
    let version = run("--version");
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8(version.stdout).unwrap().trim(),
        format!("countersign-ingester {}", env!("CARGO_PKG_VERSION"))
    );
    let unknown = run("frobnicate");
    assert_eq!(unknown.status.code(), Some(2), "clap's usage error");
}

#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_answers_for_the_configured_admin_port() {
    let app = crate::helpers::TestApp::spawn().await;
    let port = app.admin_address.rsplit(':').next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("countersign.toml");
    let text = config_text("cli-health", &Options::default(), "enabled = false").replace(
        "admin_listen = \"127.0.0.1:0\"",
        &format!("admin_listen = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&path, &text).unwrap();
    let run = |path: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_countersign-ingester"))
            .arg("healthcheck")
            .env("COUNTERSIGN_CONFIG", path)
            .env("ACME_KEY", crate::helpers::KEY)
            .env("ACME_OLD_KEY", crate::helpers::OLD_KEY)
            .status()
            .unwrap()
    };
    assert!(run(&path).success(), "healthy while the ingester runs");
    drop(app);
    let down = text.replace(&format!("127.0.0.1:{port}"), "127.0.0.1:1");
    std::fs::write(&path, down).unwrap();
    assert!(!run(&path).success(), "unhealthy when nothing answers");
}
