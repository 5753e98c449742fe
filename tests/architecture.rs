//! The rules the module tree keeps, checked on the source text so a new arrow fails the build's tests:
//!
//! - `src/audit/` (facts, checks, evaluation) is pure: no broker, HTTP, database, AWS or socket crate;
//! - lapin only in `src/intake/` and `src/outbox/`; reqwest only in `src/fetch/http.rs`; SQL only in
//!   `src/store/`; the secret key type only in `src/credentials/` and `src/fetch/http.rs`, its plaintext
//!   (`expose_*`) never public;
//! - the top-level modules form an acyclic graph (printed by `module_graph_is_acyclic` with `--nocapture`);
//! - the product binary carries no sandbox: no subcommand, none of its strings, no dependency on its crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

/// One source file: its path relative to the crate root and its code with comments removed.
struct Source {
    path: String,
    code: String,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Drops `//` comments (doc comments included): rules are about code, and docs may name anything.
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.trim_start().starts_with("//") {
            true => "",
            false => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Cuts `#[cfg(test)] mod tests { ... }` blocks at the end of a file: test code may build what it likes.
fn without_test_module(code: &str) -> &str {
    match code.find("#[cfg(test)]\nmod tests") {
        Some(index) => &code[..index],
        None => code,
    }
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).expect("read source");
            Source {
                path: file.strip_prefix(root).expect("under the root").to_string_lossy().replace('\\', "/"),
                code: without_test_module(&strip_comments(&text)).to_owned(),
            }
        })
        .collect()
}

/// The first line matching `pattern` of each file not under one of `allowed` (path prefixes).
fn offenders(pattern: &str, allowed: &[&str]) -> Vec<String> {
    matches_where(pattern, |path| !allowed.iter().any(|prefix| path.starts_with(prefix)))
}

/// The first line matching `pattern` of each file whose path `scope` accepts.
fn matches_where(pattern: &str, scope: impl Fn(&str) -> bool) -> Vec<String> {
    let pattern = Regex::new(pattern).expect("pattern");
    sources()
        .into_iter()
        .filter(|s| scope(&s.path))
        .filter_map(|s| {
            let line = s.code.lines().position(|line| pattern.is_match(line))?;
            Some(format!("{}:{}", s.path, line + 1))
        })
        .collect()
}

#[test]
fn audit_is_pure() {
    let found = matches_where(
        r"\b(lapin|reqwest|tokio_postgres|deadpool_postgres|aws_sdk_kms|aws_config|hickory_resolver|tokio)::|std::(net|fs|process)\b",
        |path| path.starts_with("src/audit/"),
    );
    assert!(found.is_empty(), "I/O crates used inside src/audit/: {found:?}");
}

#[test]
fn lapin_only_in_intake_and_outbox() {
    let found = offenders(r"\blapin::", &["src/intake/", "src/outbox/"]);
    assert!(found.is_empty(), "lapin used outside intake/ and outbox/: {found:?}");
}

#[test]
fn reqwest_only_in_the_http_layer() {
    let found = offenders(r"\breqwest::", &["src/fetch/http.rs"]);
    assert!(found.is_empty(), "reqwest used outside src/fetch/http.rs: {found:?}");
}

#[test]
fn sql_only_in_the_store() {
    let found = offenders(
        r#"(?i)"\s*(SELECT\s|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|INDEX)|ALTER\s+TABLE|DROP\s+(TABLE|DATABASE))|\.(query|query_one|query_opt|simple_query|batch_execute)\("#,
        &["src/store/"],
    );
    assert!(found.is_empty(), "SQL outside src/store/: {found:?}");
}

#[test]
fn the_secret_key_type_stays_in_credentials_and_the_http_layer() {
    let found = offenders(r"\bClerkSecretKey\b", &["src/credentials/", "src/fetch/http.rs"]);
    assert!(found.is_empty(), "ClerkSecretKey named outside credentials/ and fetch/http.rs: {found:?}");
}

#[test]
fn the_secret_key_plaintext_is_exposed_inside_the_crate_only() {
    // `expose_*` methods hand out the plaintext: `pub(crate)` at most, never part of the library's API.
    let found = matches_where(r"\bpub\s+fn\s+expose_", |_| true);
    assert!(found.is_empty(), "a public expose_* method: {found:?}");
}

/// The top-level module of each `crate::<module>` path a file uses.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let reference = Regex::new(r"\bcrate::([a-z_]+)").expect("pattern");
    let grouped_use = Regex::new(r"use crate::\{([^}]*)\}").expect("pattern");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for source in sources() {
        let Some(rest) = source.path.strip_prefix("src/") else { continue };
        let module = rest.split(['/', '.']).next().unwrap_or_default().to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let edges = graph.entry(module.clone()).or_default();
        let mut targets: Vec<String> = reference.captures_iter(&source.code).map(|c| c[1].to_owned()).collect();
        for group in grouped_use.captures_iter(&source.code) {
            targets.extend(group[1].split(',').filter_map(|item| {
                let name = item.trim().split("::").next()?.trim();
                (!name.is_empty()).then(|| name.to_owned())
            }));
        }
        for target in targets {
            if target != module {
                edges.insert(target);
            }
        }
    }
    graph
}

/// A cycle through `graph`, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

#[test]
fn module_graph_is_acyclic() {
    let graph = module_graph();
    for (module, uses) in &graph {
        println!("{module} -> {}", uses.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    assert!(graph.contains_key("audit") && graph.contains_key("store"), "the graph sees the tree: {graph:?}");
    assert_eq!(find_cycle(&graph), None, "the top-level modules must not form a cycle");
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]
    .into();
    assert_eq!(find_cycle(&graph), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
}

#[test]
fn the_rules_catch_a_planted_arrow() {
    // The same matcher the rules use, on a line each rule must refuse.
    let planted = [
        (r"\blapin::", "use lapin::Channel;"),
        (r"\breqwest::", "let client = reqwest::Client::new();"),
        (r"\bClerkSecretKey\b", "fn f(key: ClerkSecretKey) {}"),
        (r#"(?i)"\s*(SELECT\s|INSERT\s+INTO)"#, r#"client.query("SELECT 1", &[])"#),
    ];
    for (pattern, line) in planted {
        assert!(Regex::new(pattern).unwrap().is_match(line), "{pattern} misses {line}");
    }
}

#[test]
fn the_product_binary_has_no_sandbox() {
    let binary = env!("CARGO_BIN_EXE_clerk-audit");
    let help = std::process::Command::new(binary).arg("--help").output().expect("run clerk-audit --help");
    let help = String::from_utf8_lossy(&help.stdout).to_lowercase();
    assert!(help.contains("worker"), "help lists the commands: {help}");
    assert!(!help.contains("sandbox") && !help.contains("kms "), "no sandbox or KMS helper command: {help}");
    let refused = std::process::Command::new(binary).arg("sandbox").output().expect("run clerk-audit sandbox");
    assert!(!refused.status.success(), "`clerk-audit sandbox` is not a command");

    let bytes = std::fs::read(binary).expect("read the binary");
    for needle in
        ["/__sandbox/", clerk_audit_sandbox::SECRET_KEY_DEVELOPMENT, clerk_audit_sandbox::WEBHOOK_SECRET_MATCHING]
    {
        assert!(
            !bytes.windows(needle.len()).any(|window| window == needle.as_bytes()),
            "the product binary contains the sandbox string {needle:?}"
        );
    }

    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let dependencies = manifest
        .split("\n[dependencies]\n")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("a [dependencies] table");
    assert!(!dependencies.contains("sandbox"), "the worker depends on the sandbox crate only for its tests");
}
