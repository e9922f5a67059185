//! The deployment files (docker compose, Kubernetes, Grafana) validated offline by
//! `deploy/validate.py`, as part of the one test command — and the validator itself checked: each
//! mistake that once reached (or could reach) the manifests, injected into a copy of them, must
//! make it fail with a message that names it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the validator on `tree` (the repository itself, or a copy); (success, report).
fn validate(tree: &Path) -> (bool, String) {
    let python = std::env::var("DEPLOY_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let output = Command::new(&python)
        .arg(root().join("deploy/validate.py"))
        .env("COUNTERSIGN_DEPLOY_ROOT", tree)
        .output()
        .unwrap_or_else(|e| panic!("{python} runs: {e}"));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), report)
}

#[test]
fn deploy_files_validate_offline() {
    let (ok, report) = validate(&root());
    assert!(
        ok,
        "deploy/validate.py failed (needs: pip install pyyaml kubernetes-validate):\n{report}"
    );
    assert!(report.contains("deploy: ok"), "{report}");
    assert!(
        report.contains("rendered by kubectl kustomize"),
        "the real kustomize built base and production (the test command installs kubectl):\n{report}"
    );
}

/// What the validator reads, copied: deploy/, the compose file and its .env.example, the deploy
/// page, and the binaries' metric definitions.
fn copy_of_the_files(into: &Path) {
    let status = Command::new("cp")
        .args(["-r", "deploy", "docker-compose.yml", ".env.example"])
        .arg(into)
        .current_dir(root())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::create_dir_all(into.join("docs")).unwrap();
    std::fs::copy(root().join("docs/deploy.md"), into.join("docs/deploy.md")).unwrap();
    for metrics in ["ingester/src/metrics.rs", "worker/src/metrics.rs"] {
        let target = into.join(metrics);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(root().join(metrics), target).unwrap();
    }
}

/// (the mistake, file, text replaced — its first occurrence —, replacement, what the report says)
const MISTAKES: &[(&str, &str, &str, &str, &str)] = &[
    (
        "quorum queues declared before the cluster formed left on one node (no reconciliation)",
        "deploy/k8s/base/rabbitmq-cluster.yaml",
        "quorum_queue.continuous_membership_reconciliation.enabled = true",
        "# reconciliation off",
        "quorum_queue.continuous_membership_reconciliation.enabled is None",
    ),
    (
        "a cluster node whose name is not in the peer list",
        "deploy/cluster/docker-compose.yml",
        "hostname: rabbitmq-2",
        "hostname: rabbit-2",
        "rabbitmq-2's hostname is not rabbitmq-2",
    ),
    (
        "the operator's own RabbitMQ version instead of the tested one",
        "deploy/k8s/base/rabbitmq-cluster.yaml",
        "image: rabbitmq:4.0.5-management",
        "image: rabbitmq:4.3-management",
        "the tested version is 'rabbitmq:4.0.5-management'",
    ),
    (
        "a Queue with an unknown field",
        "deploy/k8s/base/rabbitmq-topology.yaml",
        "  deletionPolicy: retain\n",
        "  deletionPolicy: retain\n  maxLength: 1000\n",
        "unknown field 'maxLength'",
    ),
    (
        "a tunable (the work queue's delivery limit) as a Queue argument, which can never be updated",
        "deploy/k8s/base/rabbitmq-topology.yaml",
        "    x-dead-letter-routing-key: countersign.dead\n",
        "    x-dead-letter-routing-key: countersign.dead\n    x-delivery-limit: 20\n",
        "Queue/countersign-persist: x-delivery-limit is a tunable, and a Queue's arguments can never be updated: set it in a Policy (delivery-limit)",
    ),
    (
        "the Kubernetes policy not the one the definitions file applies",
        "deploy/k8s/base/rabbitmq-topology.yaml",
        "    delivery-limit: 20\n",
        "    delivery-limit: 5\n",
        "k8s topology differs from definitions.json",
    ),
    (
        "a ServiceMonitor interval of `15 sec`",
        "deploy/k8s/base/servicemonitor.yaml",
        "interval: 15s",
        "interval: 15 sec",
        "'15 sec' does not match",
    ),
    (
        "a cluster reference that names no cluster",
        "deploy/k8s/base/rabbitmq-topology.yaml",
        "name: countersign-rabbitmq\n",
        "name: countersign-rabbit\n",
        "rabbitmqClusterReference 'countersign-rabbit' names no RabbitmqCluster",
    ),
    (
        "a dashboard query of a RabbitMQ metric that does not exist",
        "deploy/grafana/countersign.json",
        "rabbitmq_queue_messages{",
        "rabbitmq_queue_depth{",
        "rabbitmq_queue_depth is not a metric RabbitMQ exports",
    ),
    (
        "a probe on a port no container opens",
        "deploy/k8s/base/ingester.yaml",
        "port: admin",
        "port: metrics",
        "port 'metrics' is not a port the container opens",
    ),
    (
        "the example Secret in the kustomization",
        "deploy/k8s/base/kustomization.yaml",
        "resources:\n",
        "resources:\n  - secret.example.yaml\n",
        "the example Secret is part of the rendered manifests",
    ),
    (
        "replicas on the Deployment its HPA scales",
        "deploy/k8s/overlays/production/kustomization.yaml",
        "replicas:\n",
        "replicas:\n  - name: countersign-ingester\n    count: 3\n",
        "sets replicas while an HPA owns its count",
    ),
    (
        "the ingester's spool on the container's own file system",
        "deploy/k8s/base/ingester.yaml",
        "            - name: spool\n              mountPath: /var/lib/countersign/spool\n",
        "",
        "the spool (/var/lib/countersign/spool) is on the container's own file system",
    ),
    (
        "the compose ingester's spool not on a named volume",
        "docker-compose.yml",
        "      - spool:/var/lib/countersign/spool\n",
        "",
        "the spool (/var/lib/countersign/spool) is not on a named volume",
    ),
    (
        "a Queue deleted with its resource",
        "deploy/k8s/base/rabbitmq-topology.yaml",
        "deletionPolicy: retain",
        "deletionPolicy: delete",
        "deletionPolicy must be retain",
    ),
    (
        "a Service that selects no pod",
        "deploy/k8s/base/worker.yaml",
        "  selector:\n    app.kubernetes.io/name: countersign-worker\n",
        "  selector:\n    app.kubernetes.io/name: countersign-wroker\n",
        "matches no pod template",
    ),
    (
        "an env var from a Secret key nobody documents",
        "deploy/k8s/base/worker.yaml",
        "key: database-url",
        "key: database-uri",
        "uses key 'database-uri', which secret.example.yaml does not document",
    ),
    (
        "RabbitMQ scraped without per-queue series",
        "deploy/k8s/base/servicemonitor.yaml",
        "path: /metrics/per-object",
        "path: /metrics",
        "scraped without per-object metrics",
    ),
    (
        "nothing scraping RabbitMQ",
        "deploy/k8s/base/servicemonitor.yaml",
        "- port: prometheus",
        "- port: metrics",
        "nothing scrapes RabbitmqCluster/countersign-rabbitmq",
    ),
    (
        "a RabbitMQ definitions file that needs another imported first (the vhost-order boot failure)",
        "deploy/compose/rabbitmq-users.json",
        "\"vhosts\"",
        "\"not-vhosts\"",
        "uses vhost '/' in permissions without declaring it",
    ),
    // Issue 28's review: what a real cluster would have done with these manifests.
    (
        "a grace period shorter than preStop + the shutdown deadline",
        "deploy/k8s/base/ingester.yaml",
        "terminationGracePeriodSeconds: 45",
        "terminationGracePeriodSeconds: 38",
        "terminationGracePeriodSeconds 38 is below preStop 5 s + ingester.shutdown_timeout 30 s + 5 s",
    ),
    (
        "a shutdown deadline raised past the grace period",
        "deploy/k8s/base/countersign.toml",
        "shutdown_timeout = \"30s\"",
        "shutdown_timeout = \"1m\"",
        "terminationGracePeriodSeconds 45 is below preStop 5 s + ingester.shutdown_timeout 60 s",
    ),
    (
        "compose's grace period shorter than the shutdown deadline",
        "docker-compose.yml",
        "stop_grace_period: 40s",
        "stop_grace_period: 30s",
        "stop_grace_period 30 s is below ingester.shutdown_timeout (30 s) + 5 s",
    ),
    (
        "the configuration mounted with subPath (never updated)",
        "deploy/k8s/base/ingester.yaml",
        "              mountPath: /etc/countersign/config\n",
        "              mountPath: /etc/countersign/countersign.toml\n              subPath: countersign.toml\n",
        "/etc/countersign/countersign.toml is a subPath mount of config",
    ),
    (
        "a spool claim without a storage class",
        "deploy/k8s/overlays/production/storage-patch.yaml",
        "        storageClassName: countersign-retain\n",
        "",
        "claim spool names no storageClassName",
    ),
    (
        "RabbitMQ's volumes without a storage class",
        "deploy/k8s/overlays/production/storage-patch.yaml",
        "    storageClassName: countersign-retain\n    storage: 20Gi",
        "    storage: 20Gi",
        "RabbitmqCluster/countersign-rabbitmq: persistence names no storageClassName",
    ),
    (
        "ingesters not spread over nodes and zones",
        "deploy/k8s/base/ingester.yaml",
        "      topologySpreadConstraints:\n        - maxSkew: 1\n          topologyKey: topology.kubernetes.io/zone\n          whenUnsatisfiable: ScheduleAnyway\n          labelSelector:\n            matchLabels:\n              app.kubernetes.io/name: countersign-ingester\n        - maxSkew: 1\n          topologyKey: kubernetes.io/hostname\n          whenUnsatisfiable: ScheduleAnyway\n          labelSelector:\n            matchLabels:\n              app.kubernetes.io/name: countersign-ingester\n",
        "",
        "StatefulSet/countersign-ingester: no topologySpreadConstraints selecting its own pods",
    ),
    (
        "the default prefetch with 64 MiB bodies in a 2Gi worker",
        "deploy/k8s/base/countersign.toml",
        "prefetch = 16",
        "prefetch = 256",
        "worker.prefetch x the largest body (16384 MiB) is over half the memory limit 2Gi",
    ),
    (
        "the ingester's keep-alive no longer than ingress-nginx's",
        "deploy/k8s/base/countersign.toml",
        "keep_alive = \"75s\"",
        "keep_alive = \"60s\"",
        "ingester.keep_alive 60 s is not above the ingress's upstream keep-alive (60 s)",
    ),
    (
        "an ingester without a startup probe",
        "deploy/k8s/base/ingester.yaml",
        "          startupProbe:\n            httpGet:\n              path: /healthz\n              port: admin\n            periodSeconds: 5\n            failureThreshold: 60\n",
        "",
        "container ingester has no startupProbe",
    ),
    (
        "a startup probe shorter than a full spool's recovery",
        "deploy/k8s/base/ingester.yaml",
        "failureThreshold: 60",
        "failureThreshold: 6",
        "the startupProbe allows 30 s, below the 120 s",
    ),
    (
        "alerts changed in one place and not the other",
        "deploy/k8s/base/prometheusrule.yaml",
        "for: 10m",
        "for: 15m",
        "its groups differ from deploy/prometheus/alerts.yml's",
    ),
    (
        "a ServiceMonitor kube-prometheus-stack does not select",
        "deploy/k8s/base/servicemonitor.yaml",
        "  labels:\n    release: kube-prometheus-stack\n",
        "",
        "must all carry the label release",
    ),
    (
        "a drain Job that runs without the ingesters' environment",
        "deploy/k8s/drain-spool-job.yaml",
        "              value: json",
        "              value: text",
        "its env differs from the ingester's",
    ),
    (
        "a drain Job that drains some other directory than its claim",
        "deploy/k8s/drain-spool-job.yaml",
        "\"--dir\", \"/spool\"",
        "\"--dir\", \"/var/lib/countersign/spool\"",
        "the command does not drain the mounted claim (/spool)",
    ),
    (
        "the worker given the whole Secret (the sources' signing keys too)",
        "deploy/k8s/base/worker.yaml",
        "            items:\n              - key: api-token\n                path: api-token\n",
        "",
        "mounts all of countersign-secrets (no items): the worker gets the other binary's secrets too",
    ),
    (
        "a source key the ingester's mount leaves out",
        "deploy/k8s/base/countersign.toml",
        "secrets = [\"file:/etc/countersign/secrets/acme-taktikal-key\"]",
        "secrets = [\"file:/etc/countersign/secrets/acme-taktikal-key\", \"file:/etc/countersign/secrets/acme-old-key\"]",
        "but its configuration reads ['acme-old-key', 'acme-taktikal-key']",
    ),
    (
        "URL tokens in the ingress's access log",
        "deploy/k8s/overlays/production/ingress.yaml",
        "    nginx.ingress.kubernetes.io/enable-access-log: \"false\"\n",
        "",
        "access logs on: /webhooks/{source}/{token} would write URL tokens into them",
    ),
    (
        "the binaries connecting as the operator's administrator",
        "deploy/k8s/base/ingester.yaml",
        "name: countersign-rabbitmq-app",
        "name: countersign-rabbitmq-default-user",
        "RABBITMQ_USERNAME comes from the operator's default user",
    ),
    (
        "the binaries' user allowed to write anywhere",
        "deploy/k8s/base/rabbitmq-user.yaml",
        "write: '^(countersign\\..*|amq\\.default)$'",
        "write: '.*'",
        "the Permission of user countersign-app must be",
    ),
];

#[test]
fn each_known_mistake_fails_validation() {
    // Four validators at a time (each mostly waits on kubectl and docker-compose).
    for chunk in MISTAKES.chunks(MISTAKES.len().div_ceil(4)) {
        std::thread::scope(|scope| {
            for (mistake, file, from, to, says) in chunk {
                scope.spawn(move || {
                    let dir = tempfile::tempdir().unwrap();
                    copy_of_the_files(dir.path());
                    let path = dir.path().join(file);
                    let text = std::fs::read_to_string(&path).unwrap();
                    assert!(text.contains(from), "{mistake}: {file} has {from:?}");
                    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
                    let (ok, report) = validate(dir.path());
                    assert!(!ok, "{mistake}: validation passed\n{report}");
                    assert!(
                        report.contains(says),
                        "{mistake}: {says:?} not in\n{report}"
                    );
                });
            }
        });
    }
    // And the untouched copy passes: the failures above come from the mistakes alone.
    let dir = tempfile::tempdir().unwrap();
    copy_of_the_files(dir.path());
    let (ok, report) = validate(dir.path());
    assert!(ok, "{report}");
}

/// `promtool test rules` on a directory holding alerts.yml (as given, or changed) and its tests.
fn promtool_tests(alerts: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alerts.yml"), alerts).unwrap();
    std::fs::copy(
        root().join("deploy/prometheus/alerts.test.yml"),
        dir.path().join("alerts.test.yml"),
    )
    .unwrap();
    let output = Command::new("promtool")
        .args(["test", "rules", "alerts.test.yml"])
        .current_dir(dir.path())
        .output()
        .expect("promtool runs (the test command installs Debian's prometheus)");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// The alerts fire when, and only when, their tests say (deploy/prometheus/alerts.test.yml): among
/// them the stranded spool — an ingester gone with spooled webhooks, a spool claim beyond the
/// StatefulSet's replicas — and not an ingester that restarted under the same name.
#[test]
fn the_alert_rules_pass_their_promtool_tests() {
    let alerts = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
    let check = Command::new("promtool")
        .args(["check", "rules"])
        .arg(root().join("deploy/prometheus/alerts.yml"))
        .output()
        .expect("promtool runs (the test command installs Debian's prometheus)");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let (ok, report) = promtool_tests(&alerts);
    assert!(ok, "{report}");
    assert!(report.contains("SUCCESS"), "{report}");

    // The tests can fail: without telling a restarted ingester from a gone one, the restarted
    // -2 is reported as stranded too.
    let careless = alerts.replacen(
        "unless on (job, namespace, pod)",
        "unless on (job, namespace, pod, instance)",
        1,
    );
    assert_ne!(careless, alerts);
    let (ok, report) = promtool_tests(&careless);
    assert!(!ok, "{report}");
    assert!(report.contains("countersign-ingester-2"), "{report}");
}

/// Every alert has its promtool tests: at least one evaluation where it fires and one where it
/// does not (issue 31).
#[test]
fn every_alert_is_tested_firing_and_not_firing() {
    let alerts = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(root().join("deploy/prometheus/alerts.test.yml")).unwrap();
    let names: Vec<&str> = alerts
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(names.len() >= 11, "{names:?}");
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    for name in names {
        let (mut fired, mut quiet) = (false, false);
        for (i, line) in lines.iter().enumerate() {
            if line.strip_prefix("alertname: ") != Some(name) {
                continue;
            }
            let next = lines[i + 1..]
                .iter()
                .find(|l| !l.is_empty() && !l.starts_with('#'));
            if next.is_some_and(|l| l.starts_with("exp_alerts:")) {
                fired = true;
            } else {
                quiet = true;
            }
        }
        assert!(
            fired && quiet,
            "{name}: tested firing {fired}, tested not firing {quiet}"
        );
    }
}

/// The AMQP page's `rabbitmqctl set_policy` line for a broker you run yourself sets exactly the
/// policy the definitions file and the Kubernetes Policy apply (run against this machine's node,
/// under a test prefix).
#[tokio::test(flavor = "multi_thread")]
async fn the_documented_policy_command_sets_the_shipped_policy() {
    let page = std::fs::read_to_string(root().join("docs/amqp.md")).unwrap();
    let line = page
        .lines()
        .find(|l| l.starts_with("rabbitmqctl set_policy"))
        .expect("docs/amqp.md gives the rabbitmqctl command");
    let topology = countersign::topology::Topology::new(&countersign_testkit::unique_prefix(), &[]);
    let shipped = topology.definitions()["policies"][0].clone();
    let name = shipped["name"].as_str().unwrap();
    let command = line
        .replacen(
            r"'^countersign\.persist$'",
            &format!("'{}'", shipped["pattern"].as_str().unwrap()),
            1,
        )
        .replacen("countersign.persist", name, 1);
    assert_ne!(command, line);
    let output = Command::new("sh")
        .args(["-c", &command])
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        output.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let url = format!(
        "{}/api/policies/%2F/{name}",
        countersign_testkit::management_url()
    );
    let http = reqwest::Client::new();
    let applied: serde_json::Value = http
        .get(&url)
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .expect("the management API answers")
        .json()
        .await
        .unwrap();
    let _ = http
        .delete(&url)
        .basic_auth("guest", Some("guest"))
        .send()
        .await;
    for field in [
        "name",
        "pattern",
        "apply-to",
        "priority",
        "definition",
        "vhost",
    ] {
        assert_eq!(applied[field], shipped[field], "{field}: {applied}");
    }
}
