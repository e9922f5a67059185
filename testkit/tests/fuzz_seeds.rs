//! Writes the fuzz targets' seed corpora (`fuzz/corpus/<target>/`, and the configuration
//! loader's in `shared/fuzz/corpus/config/`) from the test fixtures,
//! signed with the fuzz configuration's test-only keys (`fuzz/keys/`), so that the fuzzer starts
//! from inputs that pass verification and reaches the parsers. Run by hand when the fixtures or
//! the formats change:
//!
//! ```text
//! cargo nextest run -p countersign-testkit --test fuzz_seeds --run-ignored only
//! ```

use std::path::Path;
use std::time::SystemTime;

use countersign_providers::{legalesign, universign};
use countersign_testkit::{sign_taktikal, workspace_root};

const TAKTIKAL_KEY: &str = "fuzz-taktikal-key";

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

#[test]
#[ignore = "writes fuzz/corpus; run by hand"]
fn write_fuzz_seeds() {
    let root = workspace_root();
    let corpus = root.join("fuzz/corpus");
    let key = std::fs::read_to_string(root.join("fuzz/keys/test-only-private-key.pem")).unwrap();

    let fixtures = root.join("providers/tests/fixtures/taktikal");
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let event: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            if !event.is_object() {
                continue; // the read API's example, not a webhook
            }
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            write(
                &corpus.join("taktikal"),
                &name,
                &sign_taktikal(event, TAKTIKAL_KEY, SystemTime::now()),
            );
        }
    }

    let data = r#"[{"timestamp": "2018-03-20T07:05:00", "name": "status", "value": "10", "resource_uri": "/api/v1/document/doc-1/"}, {"timestamp": "2018-03-20T07:09:52", "name": "status", "value": "40", "resource_uri": "/api/v1/signer/sig-1/"}, {"timestamp": "2018-03-20T07:09:52", "name": "status", "value": 30, "resource_uri": "/api/v1/document/doc-1/"}]"#;
    let batch = legalesign::signed_form(&key, data).unwrap();
    // The body after a NUL: the "all" verifier; the part before it is the event URL's token.
    write(
        &corpus.join("legalesign"),
        "batch",
        format!("\0{batch}").as_bytes(),
    );
    write(
        &corpus.join("legalesign"),
        "event",
        b"\0resource_uri=%2Fapi%2Fv1%2Fdocument%2Fdoc-9%2F&group=%2Fapi%2Fv1%2Fgroup%2Fg%2F&name=NDA&uuid=doc-9&tag=t",
    );

    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (name, event) in [
        (
            "completed",
            serde_json::json!({"object": "event", "id": "evt_1", "type": "transaction.lifecycle.completed", "createdAt": now,
                "payload": {"object": {"object": "transaction", "id": "tx_42", "state": "completed"}}}),
        ),
        (
            "action",
            serde_json::json!({"object": "event", "id": "evt_2", "type": "action.closed", "createdAt": "2026-11-23T10:00:00Z",
                "payload": {"object": {"object": "action", "id": "act_1", "transaction_id": "tx_42", "participant": {"email": "a@example.com"}}}}),
        ),
    ] {
        let body = serde_json::to_vec(&event).unwrap();
        for (variant, header) in [
            ("ps256", serde_json::json!({"alg": "PS256", "kid": "fuzz"})),
            (
                "unencoded",
                serde_json::json!({"alg": "RS256", "kid": "fuzz", "b64": false, "crit": ["b64"]}),
            ),
        ] {
            let signature = universign::sign_detached_with(&key, &header, &body).unwrap();
            let mut input = signature.into_bytes();
            input.push(0);
            input.extend_from_slice(&body);
            write(
                &corpus.join("universign"),
                &format!("{name}-{variant}"),
                &input,
            );
        }
    }

    write(
        &root.join("shared/fuzz/corpus/config"),
        "example.toml",
        &std::fs::read(root.join("countersign.example.toml")).unwrap(),
    );
}
