//! `deploy/rabbitmq/definitions.json` declares exactly what the binaries declare.

use std::collections::BTreeMap;
use std::path::PathBuf;

use countersign::config::{Config, Role};
use countersign::topology::Topology;
use countersign_testkit::{TopologyGuard, amqp_url, apply_policies, management_url, unique_prefix};
use lapin::{Connection, ConnectionProperties};
use serde_json::Value;

fn definitions_file() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/rabbitmq/definitions.json");
    serde_json::from_slice(&std::fs::read(path).expect("deploy/rabbitmq/definitions.json"))
        .expect("valid JSON")
}

/// The file's entries by name, with the `countersign.` prefix replaced by `prefix.`.
fn by_name(file: &Value, kind: &str, key: &str, prefix: &str) -> BTreeMap<String, Value> {
    file[kind]
        .as_array()
        .unwrap_or_else(|| panic!("{kind} is a list"))
        .iter()
        .map(|entry| {
            let text = entry
                .to_string()
                .replace("\"countersign.", &format!("\"{prefix}."));
            let entry: Value = serde_json::from_str(&text).unwrap();
            (entry[key].as_str().unwrap().to_owned(), entry)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_definitions_file_equals_what_the_binaries_declare_on_a_real_broker() {
    let file = definitions_file();
    let defaults = Config::from_toml("", Role::Worker, &|_| None).unwrap();
    assert_eq!(
        file,
        Topology::from_config(&defaults.amqp).definitions(),
        "regenerate with: cargo run -q -p countersign --example definitions > deploy/rabbitmq/definitions.json"
    );

    // Declared by the same code the binaries run, under a test prefix, then read back from the
    // broker's management API and compared with the file.
    let prefix = unique_prefix();
    let topology = Topology::new(&prefix, &defaults.amqp.retry_delays);
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    topology.declare(&channel).await.unwrap();
    let cleanup = TopologyGuard(topology.clone());

    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        async move {
            let response = http
                .get(format!("{}/api/{path}", management_url()))
                .basic_auth("guest", Some("guest"))
                .send()
                .await
                .expect(
                    "the management plugin answers (rabbitmq-plugins enable rabbitmq_management)",
                );
            assert_eq!(response.status(), 200, "{path}");
            response.json::<Value>().await.unwrap()
        }
    };

    let queues = by_name(&file, "queues", "name", &prefix);
    assert_eq!(queues.len(), topology.queues().len());
    for (name, expected) in &queues {
        let actual = get(format!("queues/%2F/{name}")).await;
        for field in ["durable", "auto_delete", "arguments"] {
            assert_eq!(actual[field], expected[field], "queue {name}: {field}");
        }
    }
    // The file's policies (equal to the topology's, above), applied as the broker applies the
    // file at boot: in force on the work queue.
    apply_policies(&topology, None).await;
    let persist = get(format!("queues/%2F/{}", topology.persist_queue())).await;
    let policies = topology.definitions()["policies"].clone();
    assert_eq!(persist["policy"], policies[0]["name"]);
    assert_eq!(
        persist["effective_policy_definition"],
        policies[0]["definition"]
    );
    for (name, expected) in by_name(&file, "exchanges", "name", &prefix) {
        let actual = get(format!("exchanges/%2F/{name}")).await;
        for field in ["type", "durable", "auto_delete", "internal", "arguments"] {
            assert_eq!(actual[field], expected[field], "exchange {name}: {field}");
        }
        let bindings = get(format!("exchanges/%2F/{name}/bindings/source")).await;
        let actual: Vec<(String, String)> = bindings
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["destination"].as_str().unwrap().to_owned(),
                    b["routing_key"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = by_name(&file, "bindings", "destination", &prefix)
            .into_values()
            .filter(|b| b["source"] == name.as_str())
            .map(|b| {
                (
                    b["destination"].as_str().unwrap().to_owned(),
                    b["routing_key"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(actual, expected, "bindings of {name}");
    }
    drop(cleanup);
    let _ = connection.close(200, "done".into()).await;
}

#[test]
fn the_plugins_file_enables_the_management_ui_and_move_messages() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/rabbitmq/enabled_plugins");
    let text = std::fs::read_to_string(path).unwrap();
    let list = text
        .trim()
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix("]."))
        .expect("an Erlang list");
    let plugins: Vec<&str> = list.split(',').map(str::trim).collect();
    for plugin in [
        "rabbitmq_management",
        "rabbitmq_shovel",
        "rabbitmq_shovel_management",
    ] {
        assert!(plugins.contains(&plugin), "{plugin} in {plugins:?}");
    }
}
