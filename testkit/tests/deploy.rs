//! The deployment files (docker compose, Kubernetes, Grafana) validated offline by
//! `deploy/validate.py`, as part of the one test command.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn deploy_files_validate_offline() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var("DEPLOY_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let output = Command::new(&python)
        .arg(root.join("deploy/validate.py"))
        .output()
        .unwrap_or_else(|e| panic!("{python} runs: {e}"));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "deploy/validate.py failed (needs: pip install pyyaml kubernetes-validate):\n{report}"
    );
    assert!(report.contains("deploy: ok"), "{report}");
}
