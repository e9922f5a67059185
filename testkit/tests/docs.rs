//! Docs are claims (issue 31): every metric the ingester and the worker register is named in the
//! README, and every metric the README, the alert rules or the dashboards name is one they
//! register.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `countersign_ingester_…` / `countersign_worker_…` name in `text`, a histogram's
/// `_bucket`, `_sum` and `_count` series read as the histogram.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for prefix in ["countersign_ingester_", "countersign_worker_"] {
        for (start, _) in text.match_indices(prefix) {
            let name: String = text[start..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let name = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name)
                .to_owned();
            names.insert(name);
        }
    }
    names
}

/// The text of every file under `dir` whose name ends with `ext`.
fn texts(dir: &Path, ext: &str) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.push_str(&texts(&path, ext));
        } else if path.to_string_lossy().ends_with(ext) {
            all.push_str(&std::fs::read_to_string(&path).unwrap());
            all.push('\n');
        }
    }
    all
}

/// The names the code registers: string literals in the two services' sources.
fn registered() -> BTreeSet<String> {
    let root = root();
    let code = ["ingester/src", "worker/src", "shared/src"]
        .iter()
        .map(|dir| texts(&root.join(dir), ".rs"))
        .collect::<String>();
    metric_names(&code)
        .into_iter()
        .filter(|name| code.contains(&format!("\"{name}\"")))
        .collect()
}

#[test]
fn every_registered_metric_is_documented_and_every_documented_one_exists() {
    let registered = registered();
    assert!(registered.len() >= 20, "{registered:?}");
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let documented = metric_names(&readme);
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "registered but not in the README: {undocumented:?}"
    );
    let unknown: Vec<_> = documented.difference(&registered).collect();
    assert!(
        unknown.is_empty(),
        "in the README but never registered: {unknown:?}"
    );
}

#[test]
fn the_alert_rules_and_dashboards_use_only_registered_metrics() {
    let registered = registered();
    for (dir, ext) in [
        ("deploy/prometheus", ".yml"),
        ("deploy/grafana", ".json"),
        ("deploy/k8s", ".yaml"),
    ] {
        let used = metric_names(&texts(&root().join(dir), ext));
        let unknown: Vec<_> = used.difference(&registered).collect();
        assert!(
            unknown.is_empty(),
            "{dir} uses metrics nothing registers: {unknown:?}"
        );
    }
    // RabbitMQ's own, in the alerts: names rabbitmq_prometheus exports (the list the dashboard
    // is checked against).
    let exported: BTreeSet<String> =
        std::fs::read_to_string(root().join("deploy/grafana/rabbitmq-metrics.txt"))
            .unwrap()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
    let alerts = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
    let mut checked = 0;
    for (start, _) in alerts.match_indices("rabbitmq_") {
        let name: String = alerts[start..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if name == "rabbitmq_prometheus" {
            continue; // the plugin, named in a comment
        }
        assert!(
            exported.contains(&name),
            "alerts.yml: {name} is not a metric RabbitMQ exports"
        );
        checked += 1;
    }
    assert!(checked >= 3, "the alerts read RabbitMQ's queue metrics");
}
