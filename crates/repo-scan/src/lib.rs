//! The repo artifact extractor: reads a checkout and produces the `clerk-repo-artifact/v1` document
//! (`contracts/clerk-repo-artifact.v1.schema.json`) that the checks cross-reference with the live Clerk
//! instance.
//!
//! Two phases:
//!
//! 1. **Per file**, in parallel ([`walk`]): key tokens with their variable, context and nearby evidence
//!    ([`keys`], [`context`]), Clerk evidence and manifests ([`evidence`]), handler candidates, router
//!    registrations, mounts, imports of registered names and module-level assignments ([`webhooks`]),
//!    and for the files that can hold a handler, a router group or a secret, facts read from their
//!    tree-sitter parse tree (`syntax`, `webhooks::ast`: verification sites, controllers, settings
//!    fields, constructor parameters, Go router parameters and mounts), and `whsec_`/`sk_live_` values of
//!    committed env files (`committed`). No raw secret leaves this phase: secret keys and `whsec_` values
//!    are hashed where they are read.
//! 2. **Across files**, sequentially and in path order (`handlers`): project boundaries, key confidence,
//!    route prefixes from mounts and groups, registrations linked through imports to the functions they
//!    name, helper verification, secrets followed through other modules and constructor parameters
//!    (bounded hops; `unresolved` rather than a guess), file-system routes. The output is sorted (keys by
//!    file, line, kind, environment, variable, fingerprint/host; handlers by file, line, route), so the
//!    same tree always gives the same bytes.
//!
//! The rules for each part are documented in its module: [`keys`] (placeholders, publishable keys,
//! the Clerk-or-Stripe confidence rule, comments), [`context`] (production/development/test/example),
//! [`webhooks`] (which code is a Clerk webhook handler, verification, secret source), [`routes`]
//! (file-system routing), [`git`] (`repo` and `commit`), [`walk`] (what is read and skipped).
//!
//! Security: the artifact never holds a secret key, a `whsec_` value or a raw publishable key; only
//! `sha256:<hex>` fingerprints and decoded Frontend API hosts. Nothing is executed, no network is used.

#![warn(clippy::too_many_lines)]

pub mod artifact;
pub(crate) mod committed;
pub mod context;
pub mod evidence;
pub mod git;
pub(crate) mod handlers;
pub mod keys;
pub mod routes;
pub(crate) mod syntax;
pub(crate) mod text;
pub mod walk;
pub mod webhooks;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::artifact::{
    ARTIFACT_SCHEMA, CommittedSecret, CommittedSecretKind, Confidence, KeyKind, KeyReference, ReferenceContext,
    RepoArtifact,
};

use keys::KeyHit;
use text::LazyLines;
use webhooks::CodeFacts;

/// Knobs of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOptions {
    /// Files larger than this many bytes are skipped.
    pub max_file_size: u64,
    /// Honour `.gitignore` files inside the tree.
    pub respect_gitignore: bool,
    /// Worker threads for the walk; 0 picks a number from the machine.
    pub threads: usize,
    /// Folders deeper than this are not descended into.
    pub max_depth: Option<usize>,
    /// Overrides `repo` (else read from `.git`).
    pub repo: Option<String>,
    /// Overrides `commit` (else read from `.git`).
    pub commit: Option<String>,
    /// Written as `scanned_at`; the CLI passes the current time, tests a fixed value.
    pub scanned_at: Option<String>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            max_file_size: 1024 * 1024,
            respect_gitignore: true,
            threads: 0,
            max_depth: Some(64),
            repo: None,
            commit: None,
            scanned_at: None,
        }
    }
}

/// What a scan read and skipped (for the benchmark and logs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    pub files_seen: u64,
    pub files_scanned: u64,
    pub skipped_too_large: u64,
    pub skipped_binary: u64,
    pub skipped_unreadable: u64,
    pub bytes_read: u64,
}

impl ScanStats {
    fn add(&mut self, o: &ScanStats) {
        self.files_seen += o.files_seen;
        self.files_scanned += o.files_scanned;
        self.skipped_too_large += o.skipped_too_large;
        self.skipped_binary += o.skipped_binary;
        self.skipped_unreadable += o.skipped_unreadable;
        self.bytes_read += o.bytes_read;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RepoScanError {
    #[error("cannot read scan root {path}: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("scan root {0} is not a directory")]
    NotADirectory(PathBuf),
}

/// What phase 1 keeps of one file.
#[derive(Debug, Default)]
pub(crate) struct FileFacts {
    pub(crate) path: String,
    manifest: bool,
    frameworks: Vec<&'static str>,
    marker: bool,
    keys: Vec<(KeyHit, ReferenceContext)>,
    pub(crate) code: Option<CodeFacts>,
    committed: Vec<CommittedSecret>,
}

impl FileFacts {
    fn is_empty(&self) -> bool {
        !self.manifest && !self.marker && self.keys.is_empty() && self.code.is_none() && self.committed.is_empty()
    }
}

/// Phase 1 for one file.
fn process_file(path: String, text: &str) -> FileFacts {
    let name = path.rsplit('/').next().unwrap_or(&path);
    let manifest = evidence::is_manifest(name);
    let frameworks = if manifest { evidence::manifest_frameworks(name, text) } else { Vec::new() };
    let lines = LazyLines::new(text);
    let hits = keys::find(text, &lines);
    let marker = evidence::has_marker(text) || hits.iter().any(|h| h.host.is_some());
    let keys = if hits.is_empty() {
        Vec::new()
    } else {
        let map = context::contexts(&path, text, lines.get());
        hits.into_iter()
            .map(|h| {
                let ctx = if h.commented { ReferenceContext::Example } else { map.at(h.line as usize) };
                (h, ctx)
            })
            .collect()
    };
    let code = webhooks::analyze(&path, text, &lines);
    let committed = committed::find(&path, text);
    FileFacts { path, manifest, frameworks, marker, keys, code, committed }
}

/// Scans the checkout at `root`.
pub fn scan(root: &Path, options: &ScanOptions) -> Result<RepoArtifact, RepoScanError> {
    scan_with_stats(root, options).map(|(a, _)| a)
}

/// Scans the checkout at `root`, also reporting what was read and skipped.
pub fn scan_with_stats(root: &Path, options: &ScanOptions) -> Result<(RepoArtifact, ScanStats), RepoScanError> {
    let meta = std::fs::metadata(root).map_err(|source| RepoScanError::Root { path: root.to_path_buf(), source })?;
    if !meta.is_dir() {
        return Err(RepoScanError::NotADirectory(root.to_path_buf()));
    }
    let (files, stats) = walk::walk(root, options, &process_file);
    let git =
        if options.repo.is_none() || options.commit.is_none() { git::read(root) } else { git::GitInfo::default() };
    let artifact = assemble(
        files,
        options.repo.clone().or(git.repo),
        options.commit.clone().or(git.commit),
        options.scanned_at.clone(),
    );
    Ok((artifact, stats))
}

/// Deterministic pretty JSON of an artifact: the same artifact always gives the same bytes.
pub fn to_json(artifact: &RepoArtifact) -> String {
    // Serialising these plain structs cannot fail; fall back to an empty object rather than panic.
    serde_json::to_string_pretty(artifact).unwrap_or_else(|_| String::from("{}"))
}

pub(crate) fn dir_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

/// `a/b/c` -> `a/b/c`, `a/b`, `a`, `` (the root).
pub(crate) fn ancestors(dir: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(dir);
    std::iter::from_fn(move || {
        let cur = next?;
        next = if cur.is_empty() { None } else { Some(dir_of(cur)) };
        Some(cur)
    })
}

pub(crate) fn under(path: &str, dir: &str) -> bool {
    dir.is_empty() || path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/')
}

pub(crate) struct Repo {
    files: Vec<FileFacts>,
    /// Manifest folder -> frameworks its manifests depend on.
    frameworks: HashMap<String, Vec<&'static str>>,
    by_path: HashMap<String, usize>,
    project_dirs: HashSet<String>,
    marked_dirs: HashSet<String>,
    repo_marked: bool,
}

impl Repo {
    fn project_of<'p>(&self, path: &'p str) -> &'p str {
        ancestors(dir_of(path)).find(|d| self.project_dirs.contains(*d)).unwrap_or("")
    }

    /// Frameworks named by the manifests above a file, nearest first.
    fn frameworks_for(&self, path: &str) -> Vec<&'static str> {
        ancestors(dir_of(path)).filter_map(|d| self.frameworks.get(d)).flatten().copied().collect()
    }

    fn code(&self, i: usize) -> Option<&CodeFacts> {
        self.files.get(i).and_then(|f| f.code.as_ref())
    }
}

fn confidence(hit: &KeyHit, file_marked: bool, project_marked: bool, repo_marked: bool) -> Option<Confidence> {
    if hit.var_clerk {
        return Some(Confidence::High);
    }
    if hit.var_vendor {
        return None;
    }
    if hit.line_clerk {
        return Some(Confidence::High);
    }
    if hit.line_vendor {
        return None;
    }
    if hit.near_clerk {
        return Some(if hit.near_vendor { Confidence::Medium } else { Confidence::High });
    }
    if hit.near_vendor {
        return None;
    }
    if file_marked || project_marked {
        return Some(Confidence::Medium);
    }
    repo_marked.then_some(Confidence::Low)
}

fn assemble(
    files: Vec<FileFacts>,
    repo: Option<String>,
    commit: Option<String>,
    scanned_at: Option<String>,
) -> RepoArtifact {
    let mut files = files;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let by_path = files.iter().enumerate().map(|(i, f)| (f.path.clone(), i)).collect();
    let project_dirs: HashSet<String> =
        files.iter().filter(|f| f.manifest).map(|f| dir_of(&f.path).to_owned()).collect();
    let mut marked_dirs = HashSet::new();
    for f in files.iter().filter(|f| f.marker) {
        for d in ancestors(dir_of(&f.path)) {
            if !marked_dirs.insert(d.to_owned()) {
                break;
            }
        }
    }
    let repo_marked = !marked_dirs.is_empty();
    let mut frameworks: HashMap<String, Vec<&'static str>> = HashMap::new();
    for f in files.iter().filter(|f| f.manifest) {
        frameworks.entry(dir_of(&f.path).to_owned()).or_default().extend(f.frameworks.iter().copied());
    }
    let r = Repo { files, frameworks, by_path, project_dirs, marked_dirs, repo_marked };

    let key_references = key_references(&r);
    let webhook_handlers = handlers::webhook_handlers(&r);
    // A committed `sk_live_` is listed only when it is a Clerk key reference (the Clerk-or-Stripe rule).
    let committed_secrets = r
        .files
        .iter()
        .flat_map(|f| f.committed.iter())
        .filter(|c| {
            c.kind == CommittedSecretKind::WebhookSecret
                || key_references.iter().any(|k| {
                    k.file == c.file
                        && k.line == c.line
                        && k.kind == KeyKind::Secret
                        && matches!(k.confidence, Some(Confidence::High | Confidence::Medium))
                })
        })
        .cloned()
        .collect();
    RepoArtifact {
        schema: ARTIFACT_SCHEMA.to_owned(),
        repo,
        commit,
        scanned_at,
        key_references,
        webhook_handlers,
        committed_secrets,
    }
}

fn key_references(r: &Repo) -> Vec<KeyReference> {
    let mut out = Vec::new();
    for f in &r.files {
        let project = r.project_of(&f.path);
        let project_marked = r.marked_dirs.contains(project);
        for (hit, ctx) in &f.keys {
            let conf = confidence(hit, f.marker, project_marked, r.repo_marked);
            let (malformed, confidence) = match hit.kind {
                KeyKind::Publishable if hit.host.is_some() => (false, None),
                KeyKind::Publishable => match conf {
                    Some(Confidence::High | Confidence::Medium) => (true, None),
                    _ => continue,
                },
                KeyKind::Secret => match conf {
                    Some(c) => (false, Some(c)),
                    None => continue,
                },
            };
            out.push(KeyReference {
                kind: hit.kind,
                environment: hit.environment,
                file: f.path.clone(),
                line: hit.line,
                variable: hit.variable.clone(),
                context: *ctx,
                frontend_api_host: hit.host.clone(),
                fingerprint: hit.fingerprint.clone(),
                malformed,
                confidence,
            });
        }
    }
    let kind_rank = |k: KeyKind| match k {
        KeyKind::Publishable => 0,
        KeyKind::Secret => 1,
    };
    out.sort_by(|a, b| {
        (&a.file, a.line, kind_rank(a.kind), a.environment as u8, &a.variable, &a.fingerprint, &a.frontend_api_host)
            .cmp(&(
                &b.file,
                b.line,
                kind_rank(b.kind),
                b.environment as u8,
                &b.variable,
                &b.fingerprint,
                &b.frontend_api_host,
            ))
    });
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_and_paths() {
        assert_eq!(ancestors("a/b").collect::<Vec<_>>(), vec!["a/b", "a", ""]);
        assert_eq!(ancestors("").collect::<Vec<_>>(), vec![""]);
        assert!(under("apps/web/x.ts", "apps/web"));
        assert!(!under("apps/webx/x.ts", "apps/web"));
        assert_eq!(handlers::normalize("a/./b/../c").as_deref(), Some("a/c"));
        assert_eq!(handlers::normalize("../x"), None);
    }

    #[test]
    fn confidence_rule() {
        let base = KeyHit {
            kind: KeyKind::Secret,
            environment: crate::artifact::KeyEnvironment::Live,
            line: 1,
            variable: None,
            commented: false,
            host: None,
            fingerprint: None,
            var_clerk: false,
            var_vendor: false,
            line_clerk: false,
            line_vendor: false,
            near_clerk: false,
            near_vendor: false,
        };
        assert_eq!(
            confidence(&KeyHit { var_clerk: true, line_vendor: true, ..base.clone() }, false, false, false),
            Some(Confidence::High)
        );
        assert_eq!(confidence(&KeyHit { var_vendor: true, ..base.clone() }, true, true, true), None);
        assert_eq!(
            confidence(&KeyHit { near_clerk: true, near_vendor: true, ..base.clone() }, false, false, false),
            Some(Confidence::Medium)
        );
        assert_eq!(confidence(&base, false, true, true), Some(Confidence::Medium));
        assert_eq!(confidence(&base, false, false, true), Some(Confidence::Low));
        assert_eq!(confidence(&base, false, false, false), None);
    }
}
