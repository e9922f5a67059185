//! Docs are claims (issue 31): every metric the ingester and the worker register is named in the
//! docs (the README and `docs/`), and every metric the docs, the alert rules or the dashboards
//! name is one they register; every link between the docs reaches a file and a heading that
//! exist; every alert's runbook is a heading of the operations page; every `x-…` header the code
//! sets is in the AMQP contract's page, and every one that page names is one the code knows.

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

/// Every file under `dir` whose name ends with `ext`, sorted.
fn files_under(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path, ext));
        } else if path.to_string_lossy().ends_with(ext) {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The text of every file under `dir` whose name ends with `ext`.
fn texts(dir: &Path, ext: &str) -> String {
    files_under(dir, ext)
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap() + "\n")
        .collect()
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
    let docs: String = markdown_files()
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect();
    let documented = metric_names(&docs);
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "registered but not in the docs: {undocumented:?}"
    );
    let unknown: Vec<_> = documented.difference(&registered).collect();
    assert!(
        unknown.is_empty(),
        "in the docs but never registered: {unknown:?}"
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

/// The user's documentation: the README, everything under `docs/`, and the figures in `bench/`.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    files.extend(files_under(&root().join("docs"), ".md"));
    files.extend(files_under(&root().join("bench"), ".md"));
    files
}

/// The lines of a Markdown text outside its fenced code blocks.
fn prose_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut fenced = false;
    text.lines().filter(move |line| {
        let fence = line.trim_start().starts_with("```");
        if fence {
            fenced = !fenced;
        }
        !fence && !fenced
    })
}

/// The anchors GitHub gives a Markdown file's headings: lower case, punctuation (backticks,
/// apostrophes, dashes written as `—`) dropped, spaces as `-`, a repeated heading suffixed `-1`, `-2`.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    for line in prose_lines(text) {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        if !heading.trim_start_matches('#').starts_with(' ') {
            continue;
        }
        let slug: String = heading
            .trim_start_matches('#')
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut unique = slug.clone();
        let mut n = 0;
        while anchors.contains(&unique) {
            n += 1;
            unique = format!("{slug}-{n}");
        }
        anchors.insert(unique);
    }
    anchors
}

/// Every `](target)` of a Markdown link outside code, but web addresses.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in prose_lines(text) {
        for (start, _) in line.match_indices("](") {
            let rest = &line[start + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = &rest[..end];
            if !target.contains("://") && !target.starts_with("mailto:") {
                found.push(target.to_owned());
            }
        }
    }
    found
}

/// A link's target relative to `from` exists, and its `#anchor` is a heading there.
fn broken(from: &Path, target: &str) -> Option<String> {
    let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
    let file = if path.is_empty() {
        from.to_owned()
    } else {
        from.parent().unwrap().join(path)
    };
    if !file.exists() {
        return Some(format!("{target}: no file {}", file.display()));
    }
    if anchor.is_empty() {
        return None;
    }
    let text = std::fs::read_to_string(&file).ok()?;
    (!anchors(&text).contains(anchor)).then(|| format!("{target}: no heading #{anchor}"))
}

#[test]
fn every_link_between_the_docs_reaches_a_file_and_a_heading() {
    let mut checked = 0;
    let mut problems = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for target in links(&text) {
            checked += 1;
            if let Some(problem) = broken(&file, &target) {
                let name = file.strip_prefix(root()).unwrap_or(&file).display();
                problems.push(format!("{name}: {problem}"));
            }
        }
    }
    assert!(checked >= 40, "only {checked} links found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_anchors_are_githubs() {
    let text = "# Operations\n## Is it healthy? `countersign status`\n## The spool's quarantine\n\
                ```\n# not a heading\n```\n## An event was parked: find it — fix it\n## Tests\n## Tests\n";
    let expected = [
        "operations",
        "is-it-healthy-countersign-status",
        "the-spools-quarantine",
        "an-event-was-parked-find-it--fix-it",
        "tests",
        "tests-1",
    ];
    assert_eq!(
        anchors(text),
        expected.iter().map(|s| (*s).to_owned()).collect()
    );
}

/// Each alert's `runbook` annotation is `docs/operations.md#<heading>`, and the heading exists:
/// the alert a person is woken by leads to what to do.
#[test]
fn every_alert_links_to_a_runbook_section_that_exists() {
    let alerts = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
    let operations = root().join("docs/operations.md");
    let headings = anchors(&std::fs::read_to_string(&operations).unwrap());
    let mut alerts_seen = 0;
    let mut runbooks = 0;
    for line in alerts.lines().map(str::trim) {
        if line.starts_with("- alert:") {
            alerts_seen += 1;
        }
        if let Some(value) = line.strip_prefix("runbook:") {
            runbooks += 1;
            let value = value.trim().trim_matches('"');
            let anchor = value
                .strip_prefix("docs/operations.md#")
                .unwrap_or_else(|| panic!("runbook {value:?} is not docs/operations.md#…"));
            assert!(
                headings.contains(anchor),
                "runbook {value:?}: no such heading in docs/operations.md"
            );
        }
    }
    assert!(alerts_seen >= 11);
    assert_eq!(alerts_seen, runbooks, "an alert without a runbook");
}

/// The code of every `.rs` file under `dir`, each cut at its first `#[cfg(test)]` (unit tests
/// use made-up header names).
fn code_without_tests(dir: &Path) -> String {
    files_under(dir, ".rs")
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            text.split("#[cfg(test)]").next().unwrap().to_owned() + "\n"
        })
        .collect()
}

/// Every `x-…` name that follows `open` in `text` and is closed by `close`, in lower case.
fn header_names(text: &str, open: char, close: char) -> BTreeSet<String> {
    let text = text.to_lowercase();
    text.match_indices(&format!("{open}x-"))
        .map(|(start, _)| {
            text[start + 1..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
                .collect::<String>()
        })
        .filter(|name| name.len() > 2 && text.contains(&format!("{name}{close}")))
        .collect()
}

/// The headers: every `x-…` name in the code's string literals (the contract's, the worker's
/// bookkeeping, RabbitMQ's, queue arguments, providers' headers) is in the docs, and every one
/// the AMQP page names is one the code knows.
#[test]
fn the_amqp_contract_names_every_header_the_code_sets_and_no_other() {
    let code: String = ["shared/src", "worker/src", "ingester/src", "providers/src"]
        .iter()
        .map(|dir| code_without_tests(&root().join(dir)))
        .collect();
    let in_code = header_names(&code, '"', '"');
    let docs: String = markdown_files()
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap().to_lowercase())
        .collect();
    let missing: Vec<_> = in_code
        .iter()
        .filter(|name| !docs.contains(*name))
        .collect();
    assert!(
        missing.is_empty(),
        "in the code, not in the docs: {missing:?}"
    );
    let page = std::fs::read_to_string(root().join("docs/amqp.md")).unwrap();
    let in_page = header_names(&page, '`', '`');
    let code = code.to_lowercase();
    let unknown: Vec<_> = in_page
        .iter()
        .filter(|name| !code.contains(*name))
        .collect();
    assert!(
        unknown.is_empty(),
        "in docs/amqp.md, unknown to the code: {unknown:?}"
    );
    assert!(
        in_code.len() >= 20 && in_page.len() >= 20,
        "{in_code:?} {in_page:?}"
    );
}

/// Issue 31, first contact 3: a build of one package alone (`cargo build -p countersign-worker`)
/// resolves its dependencies' features for that package alone, unlike the README's build of the
/// binaries, and compiles crates again (measured after the README's build: `-p
/// countersign-worker` 7 crates, 57 s; `-p countersign-ingester` 95). So the docs never tell a
/// user to build or run the product one package at a time: they name binaries (`--bin`).
#[test]
fn no_doc_builds_the_product_one_package_at_a_time() {
    let mut offending = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines() {
            let builds = line.contains("cargo build") || line.contains("cargo run");
            let per_package = ["-p countersign", "--package countersign"]
                .iter()
                .any(|flag| line.contains(flag));
            // `--example definitions` regenerates a file in the repository: a developer's tool.
            if builds && per_package && !line.contains("--example") {
                let name = file.strip_prefix(root()).unwrap_or(&file).display();
                offending.push(format!("{name}: {}", line.trim()));
            }
        }
    }
    assert!(offending.is_empty(), "{}", offending.join("\n"));
}

/// Issue 31, first contact 1: `docker compose` (v2) is not on every machine — Debian and Ubuntu
/// package Compose v1, `docker-compose` — so where the README and the deploy page first say how
/// to start the stack, they give both spellings.
#[test]
fn the_compose_command_is_given_in_both_spellings() {
    for page in ["README.md", "docs/deploy.md"] {
        let text = std::fs::read_to_string(root().join(page)).unwrap();
        for spelling in ["docker compose up --build", "docker-compose up --build"] {
            assert!(text.contains(spelling), "{page} does not say {spelling:?}");
        }
    }
}
