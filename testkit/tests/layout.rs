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

/// The crates whose modules' graph is checked.
const CRATES: [&str; 7] = [
    "providers",
    "shared",
    "ingester",
    "worker",
    "cli",
    "testkit",
    "bench",
];

/// A crate's modules (the files and directories under `src/`, by name) and, for each, the
/// modules its code names outside comments and `#[cfg(test)]` (`crate::<module>`, `use
/// crate::{<module>, ...}`). What a module reaches through the crate root's `pub use` is not
/// followed: a provider naming `crate::Provider` depends on `provider.rs` unseen.
fn module_graph(krate: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let src = workspace_root().join(krate).join("src");
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(&src).expect("src") {
        let path = entry.expect("entry").path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            for inner in walk(&path) {
                files.push((name.clone(), inner));
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push((name, path));
        }
    }
    let modules: std::collections::BTreeSet<String> = files
        .iter()
        .map(|(m, _)| m.clone())
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let mut graph: std::collections::BTreeMap<String, Vec<String>> =
        std::collections::BTreeMap::new();
    for (module, path) in &files {
        let text = std::fs::read_to_string(path).expect("source");
        // Test modules sit at the end of a file: what they name is not the module's.
        let code: String = text
            .split("#[cfg(test)]\nmod ")
            .next()
            .unwrap_or_default()
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let named = graph.entry(module.clone()).or_default();
        for target in names_after(&code, "crate::") {
            if modules.contains(&target) && &target != module && !named.contains(&target) {
                named.push(target);
            }
        }
    }
    graph
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}

/// The first path segment after each `prefix` in `code`; after `prefix{`, each item of the
/// braces' top level.
fn names_after(code: &str, prefix: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        let rest = &code[at + prefix.len()..];
        if let Some(inner) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            for c in inner.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.push(ident(item.trim()));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            names.push(ident(item.trim()));
        } else {
            names.push(ident(rest));
        }
    }
    names
}

/// A circle in `graph`, if there is one: the modules around it.
fn circle(graph: &std::collections::BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &std::collections::BTreeMap<String, Vec<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    for node in graph.keys() {
        if let Some(found) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(found);
        }
    }
    None
}

/// No module of any crate depends, through others, on itself: each can be read, tested and
/// moved knowing only what it names.
#[test]
fn no_crate_has_an_import_circle_among_its_modules() {
    for krate in CRATES {
        let graph = module_graph(krate);
        assert!(!graph.is_empty(), "{krate}: no module found");
        if let Some(found) = circle(&graph) {
            panic!("{krate}: {}", found.join(" → "));
        }
    }
    // The graph is read from real code: the worker's consumer hands deliveries to its handler.
    let worker = module_graph("worker");
    assert!(
        worker["consumer"].contains(&"handler".to_owned()),
        "{worker:?}"
    );
}

/// The check finds circles: the worker's modules, as they were before its knot was untied,
/// had several (replay → consumer → replay among them).
#[test]
fn the_circle_check_finds_a_circle() {
    let knot: std::collections::BTreeMap<String, Vec<String>> = [
        ("consumer", vec!["handler", "replay"]),
        ("replay", vec!["consumer", "db"]),
        ("handler", vec!["db"]),
        ("db", vec![]),
    ]
    .into_iter()
    .map(|(m, to)| (m.to_owned(), to.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(
        circle(&knot).map(|c| c.join(" → ")).as_deref(),
        Some("consumer → replay → consumer")
    );
    assert_eq!(
        names_after(
            "use crate::{db::{Db, Recorded}, metrics};\nlet x = crate::handler::run();",
            "crate::"
        ),
        ["db", "metrics", "handler"]
    );
}

/// The longest a production function may be, in lines from `fn` to its closing brace.
const MAX_FUNCTION_LINES: usize = 80;

/// Every function of `code` (a file's text before its test module): (lines, name, first line).
fn function_lengths(code: &str) -> Vec<(usize, String, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let signature = [
            "pub(crate) ",
            "pub(super) ",
            "pub ",
            "const ",
            "async ",
            "unsafe ",
        ]
        .iter()
        .fold(trimmed, |rest, prefix| {
            rest.strip_prefix(prefix).unwrap_or(rest)
        });
        let signature = ["const ", "async ", "unsafe "]
            .iter()
            .fold(signature, |rest, prefix| {
                rest.strip_prefix(prefix).unwrap_or(rest)
            });
        if let Some(rest) = signature.strip_prefix("fn ")
            && !line.trim_end().ends_with(';')
        {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let close = " ".repeat(indent) + "}";
            let end = (i..lines.len())
                .find(|&j| {
                    lines[j].starts_with(&close)
                        && lines[j].len() - lines[j].trim_start().len() == indent
                })
                .unwrap_or(i);
            found.push((end - i + 1, name, i + 1));
            i = end;
        }
        i += 1;
    }
    found
}

/// No function of the product's crates (the providers, the shared crate, the ingester, the
/// worker, the CLI; tests aside) is over [`MAX_FUNCTION_LINES`]: each can be read whole.
#[test]
fn no_production_function_is_over_80_lines() {
    let mut long = Vec::new();
    let mut counted = 0;
    for krate in ["providers", "shared", "ingester", "worker", "cli"] {
        for path in walk(&workspace_root().join(krate).join("src")) {
            let text = std::fs::read_to_string(&path).expect("source");
            let code = text.split("#[cfg(test)]\nmod ").next().unwrap_or_default();
            for (lines, name, line) in function_lengths(code) {
                counted += 1;
                if lines > MAX_FUNCTION_LINES {
                    long.push(format!(
                        "{} lines: {name} ({}:{line})",
                        lines,
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(counted > 500, "{counted} functions found");
    assert!(
        long.is_empty(),
        "over {MAX_FUNCTION_LINES} lines:\n{}",
        long.join("\n")
    );
}

/// The measure counts what it should: a function's lines, a nested one's, not a declaration.
#[test]
fn function_lengths_are_counted_from_fn_to_its_closing_brace() {
    let code = "impl A {\n    pub async fn run(&self) {\n        let x = 1;\n        fn inner() {}\n    }\n}\nfn declared();\npub(crate) fn two() {\n}\n";
    assert_eq!(
        function_lengths(code),
        [(4, "run".to_owned(), 2), (2, "two".to_owned(), 8)]
    );
}
