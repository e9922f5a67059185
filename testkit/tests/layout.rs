//! The code's layout, checked: what each crate may depend on.

use std::path::PathBuf;
use std::process::Command;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit sits in the workspace")
        .to_owned()
}

/// The crates `package` is built with (normal dependencies, not its tests').
fn dependencies(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "tree",
            "--offline",
            "--locked",
            "-p",
            package,
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A provider does no I/O and knows no broker: the providers' crate cannot even name a runtime,
/// a broker client, a database, an HTTP server or metrics.
#[test]
fn the_providers_crate_depends_on_no_runtime_broker_database_server_or_metrics() {
    let names = dependencies("countersign-providers");
    assert!(
        names.iter().any(|n| n == "countersign-providers"),
        "the tree names the crate itself: {names:?}"
    );
    assert!(
        names.iter().any(|n| n == "hmac"),
        "and what it verifies with: {names:?}"
    );
    let forbidden = [
        "tokio",
        "lapin",
        "sqlx",
        "actix",
        "prometheus",
        "reqwest",
        "hyper",
        "mio",
        "tracing",
        "countersign",
    ];
    let found: Vec<&String> = names
        .iter()
        .filter(|name| {
            forbidden
                .iter()
                .any(|f| name.as_str() == *f || name.starts_with(&format!("{f}-")))
        })
        .filter(|name| name.as_str() != "countersign-providers")
        .collect();
    assert!(
        found.is_empty(),
        "countersign-providers depends on {found:?}"
    );
}

/// The check above can fail: the shared crate, which holds the broker contract, does depend on
/// lapin and tokio.
#[test]
fn the_dependency_check_sees_a_runtime_where_there_is_one() {
    let names = dependencies("countersign");
    for expected in ["lapin", "tokio", "countersign-providers"] {
        assert!(
            names.iter().any(|n| n == expected),
            "countersign depends on {expected}: {names:?}"
        );
    }
}
