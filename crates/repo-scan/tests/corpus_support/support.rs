//! Helpers for the repo-scan tests: temp trees, fixture copies, expected-artifact comparison.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use clerk_repo_scan::artifact::RepoArtifact;
use clerk_repo_scan::{self as repo_scan, ScanOptions};

pub const SCANNED_AT: &str = "2026-11-26T09:58:00Z";

/// A temporary folder removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("clerk-audit-repo-scan-{}-{n}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes a file (creating folders), relative to the temp root.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("create parent");
        }
        fs::write(&p, contents).expect("write file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/repos")
}

/// Names of the fixture repositories (folders under `tests/fixtures/repos`).
pub fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(fixtures_root())
        .expect("fixtures folder")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).expect("create dst");
    for entry in fs::read_dir(src).expect("read src") {
        let entry = entry.expect("entry");
        let to = dst.join(entry.file_name());
        let ft = entry.file_type().expect("file type");
        if ft.is_dir() {
            copy_tree(&entry.path(), &to);
        } else if ft.is_file() {
            fs::copy(entry.path(), &to).expect("copy file");
        }
    }
}

pub fn options() -> ScanOptions {
    ScanOptions { scanned_at: Some(SCANNED_AT.into()), ..ScanOptions::default() }
}

/// Scans a copy of a fixture in a temp folder (outside the project's git checkout).
pub fn scan_fixture(name: &str) -> RepoArtifact {
    let tmp = TempDir::new(name);
    let root = tmp.path().join(name);
    copy_tree(&fixtures_root().join(name), &root);
    repo_scan::scan(&root, &options()).expect("scan fixture")
}

/// Every raw key or `whsec_` token written in a fixture's files.
pub fn raw_tokens(dir: &Path) -> Vec<String> {
    let re = regex::Regex::new(r"(?:[ps]k_(?:live|test)_|whsec_)[A-Za-z0-9+/=]{8,}").expect("regex");
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("read dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(text) = fs::read_to_string(&p) {
                out.extend(re.find_iter(&text).map(|m| m.as_str().to_owned()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Compares a scan with `tests/fixtures/repos/<name>.expected.json`, field by field. With
/// `UPDATE_EXPECTED=1` the expected file is (re)written instead.
pub fn check_expected(name: &str, artifact: &RepoArtifact) {
    let path = fixtures_root().join(format!("{name}.expected.json"));
    let json = repo_scan::to_json(artifact);
    if std::env::var_os("UPDATE_EXPECTED").is_some() {
        fs::write(&path, format!("{json}\n")).expect("write expected");
        return;
    }
    let expected_text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let expected: serde_json::Value = serde_json::from_str(&expected_text).expect("expected json");
    let actual: serde_json::Value = serde_json::from_str(&json).expect("actual json");
    let mut diffs = Vec::new();
    diff("", &expected, &actual, &mut diffs);
    assert!(
        diffs.is_empty(),
        "{name}: artifact differs from {}:\n{}\n\nactual:\n{json}",
        path.display(),
        diffs.join("\n")
    );
    // Byte for byte too: the expected files are the deterministic output.
    assert_eq!(expected_text.trim_end(), json, "{name}: same fields but different bytes");
}

fn diff(at: &str, expected: &serde_json::Value, actual: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                match a.get(k) {
                    Some(av) => diff(&format!("{at}.{k}"), ev, av, out),
                    None => out.push(format!("{at}.{k}: missing (expected {ev})")),
                }
            }
            for k in a.keys().filter(|k| !e.contains_key(*k)) {
                out.push(format!("{at}.{k}: unexpected {}", a[k]));
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            for i in 0..e.len().max(a.len()) {
                match (e.get(i), a.get(i)) {
                    (Some(ev), Some(av)) => diff(&format!("{at}[{i}]"), ev, av, out),
                    (Some(ev), None) => out.push(format!("{at}[{i}]: missing {ev}")),
                    (None, Some(av)) => out.push(format!("{at}[{i}]: unexpected {av}")),
                    (None, None) => {}
                }
            }
        }
        (e, a) if e != a => out.push(format!("{at}: expected {e}, got {a}")),
        _ => {}
    }
}
