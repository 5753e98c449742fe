//! The repo artifact extractor: reads a checkout and produces the `clerk-repo-artifact/v1` document
//! (SPEC section 5) that the checks cross-reference with the live Clerk instance.
//!
//! Two phases:
//!
//! 1. **Per file**, in parallel ([`walk`]): key tokens with their variable, context and nearby evidence
//!    ([`keys`], [`context`]), Clerk evidence and manifests ([`evidence`]), and handler candidates,
//!    router registrations, mounts and module-level assignments ([`webhooks`]). No raw secret leaves this
//!    phase: secret keys and `whsec_` values are hashed where they are read.
//! 2. **Across files**, sequentially and in path order: project boundaries, key confidence, route
//!    prefixes from mounts, registrations linked to the functions they name, helper verification,
//!    secret names resolved through other modules, file-system routes. The output is sorted (keys by
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

pub mod artifact;
pub mod context;
pub mod evidence;
pub mod git;
pub mod keys;
pub mod routes;
pub(crate) mod text;
pub mod walk;
pub mod webhooks;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::artifact::{
    ARTIFACT_SCHEMA, Confidence, KeyKind, KeyReference, ReferenceContext, RepoArtifact, SecretSource, Verification,
    WebhookHandler,
};

use keys::KeyHit;
use text::LazyLines;
use webhooks::{CodeFacts, Lang, MountTarget, RegTarget, SecretExpr, UnitDraft, UnitKind};

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
    path: String,
    manifest: bool,
    frameworks: Vec<&'static str>,
    marker: bool,
    keys: Vec<(KeyHit, ReferenceContext)>,
    code: Option<CodeFacts>,
}

impl FileFacts {
    fn is_empty(&self) -> bool {
        !self.manifest && !self.marker && self.keys.is_empty() && self.code.is_none()
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
    FileFacts { path, manifest, frameworks, marker, keys, code }
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

fn dir_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

/// `a/b/c` -> `a/b/c`, `a/b`, `a`, `` (the root).
fn ancestors(dir: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(dir);
    std::iter::from_fn(move || {
        let cur = next?;
        next = if cur.is_empty() { None } else { Some(dir_of(cur)) };
        Some(cur)
    })
}

fn under(path: &str, dir: &str) -> bool {
    dir.is_empty() || path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/')
}

struct Repo {
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
    let webhook_handlers = webhook_handlers(&r);
    RepoArtifact { schema: ARTIFACT_SCHEMA.to_owned(), repo, commit, scanned_at, key_references, webhook_handlers }
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

/// Resolves a module as written in an import from `file` to a file of the repo.
fn resolve_module(r: &Repo, file: &str, spec: &str, lang: Lang) -> Option<usize> {
    let dir = dir_of(file);
    let exists = |p: &str| r.by_path.get(p).copied();
    match lang {
        Lang::Js => {
            let base = if spec.starts_with("./") || spec.starts_with("../") {
                normalize(&format!("{dir}/{spec}"))?
            } else if let Some(rest) = spec.strip_prefix("@/").or_else(|| spec.strip_prefix("~/")) {
                let project = r.project_of(file);
                let src = if project.is_empty() { "src".to_owned() } else { format!("{project}/src") };
                let candidates = [
                    format!("{src}/{rest}"),
                    if project.is_empty() { rest.to_owned() } else { format!("{project}/{rest}") },
                ];
                return candidates.iter().find_map(|b| js_file(b, &exists));
            } else {
                return None;
            };
            js_file(&base, &exists)
        }
        Lang::Py => {
            let dots = spec.len() - spec.trim_start_matches('.').len();
            let rest = spec.trim_start_matches('.').replace('.', "/");
            let bases: Vec<String> = if dots > 0 {
                let mut d = dir;
                for _ in 1..dots {
                    d = dir_of(d);
                }
                vec![d.to_owned()]
            } else {
                ancestors(dir).map(str::to_owned).collect()
            };
            for base in bases {
                let full = if base.is_empty() {
                    rest.clone()
                } else if rest.is_empty() {
                    base.clone()
                } else {
                    format!("{base}/{rest}")
                };
                let parent = dir_of(&full).to_owned();
                for cand in [
                    format!("{full}.py"),
                    format!("{full}/__init__.py"),
                    format!("{parent}.py"),
                    format!("{parent}/__init__.py"),
                ] {
                    if let Some(i) = exists(cand.trim_start_matches('/')) {
                        return Some(i);
                    }
                }
            }
            None
        }
        Lang::Go => None,
    }
}

fn js_file(base: &str, exists: &dyn Fn(&str) -> Option<usize>) -> Option<usize> {
    let stripped = base.strip_suffix(".js").unwrap_or(base);
    ["", ".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".mts", "/index.ts", "/index.tsx", "/index.js", "/index.mjs"]
        .iter()
        .find_map(|ext| exists(&format!("{base}{ext}")).or_else(|| exists(&format!("{stripped}{ext}"))))
}

/// Resolves `.` and `..` in a relative path; `None` if it leaves the tree.
fn normalize(path: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            s => out.push(s),
        }
    }
    Some(out.join("/"))
}

type UnitId = (usize, usize);
/// A route a unit serves and the framework of the router call that says so.
type RouteOf = (Option<String>, Option<&'static str>);

fn webhook_handlers(r: &Repo) -> Vec<WebhookHandler> {
    // Module-level assignments by name, for secrets read through another module.
    let mut assigns: HashMap<&str, Vec<(usize, &SecretExpr)>> = HashMap::new();
    // Named units by name, for registrations and helper calls.
    let mut named: HashMap<&str, Vec<UnitId>> = HashMap::new();
    for (fi, f) in r.files.iter().enumerate() {
        let Some(code) = &f.code else { continue };
        for (name, v) in &code.assigns {
            assigns.entry(name).or_default().push((fi, v));
        }
        for (ui, u) in code.units.iter().enumerate() {
            if let (UnitKind::Named, Some(n)) = (u.kind, &u.name) {
                named.entry(n).or_default().push((fi, ui));
            }
        }
    }

    // Prefixes from mounts: whole files mounted elsewhere, and router variables of the same file.
    let mut file_prefix: HashMap<usize, String> = HashMap::new();
    let mut local_prefix: HashMap<(usize, String), String> = HashMap::new();
    let mut mounts: Vec<(usize, usize, String)> = Vec::new(); // (mounting file, target file, prefix)
    for (fi, f) in r.files.iter().enumerate() {
        let Some(code) = &f.code else { continue };
        let lang = code.lang.unwrap_or(Lang::Js);
        for m in &code.mounts {
            match &m.target {
                MountTarget::Local(var) => {
                    local_prefix.entry((fi, var.clone())).or_insert_with(|| m.prefix.clone());
                }
                MountTarget::Module(spec) => {
                    if let Some(ti) = resolve_module(r, &f.path, spec, lang)
                        && ti != fi
                    {
                        mounts.push((fi, ti, m.prefix.clone()));
                    }
                }
            }
        }
    }
    mounts.sort();
    // Chains of mounts (a mounted router mounting another): a few rounds reach a fixed point.
    for _ in 0..4 {
        let mut changed = false;
        for (from, to, prefix) in &mounts {
            let base = file_prefix.get(from).cloned().unwrap_or_default();
            let full = webhooks::join_route(&base, prefix);
            if file_prefix.get(to) != Some(&full) && (!file_prefix.contains_key(to) || file_prefix.contains_key(from)) {
                file_prefix.insert(*to, full);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }

    // Which named unit a name refers to from a file: same file, same folder, same project, unique.
    let pick = |name: &str, from: usize, filter: &dyn Fn(&UnitDraft) -> bool| -> Option<UnitId> {
        let list: Vec<UnitId> = named
            .get(name)?
            .iter()
            .copied()
            .filter(|&(fi, ui)| r.code(fi).and_then(|c| c.units.get(ui)).is_some_and(filter))
            .collect();
        let from_path = &r.files[from].path;
        let project = r.project_of(from_path);
        list.iter()
            .find(|(fi, _)| *fi == from)
            .or_else(|| list.iter().find(|(fi, _)| dir_of(&r.files[*fi].path) == dir_of(from_path)))
            .or_else(|| list.iter().find(|(fi, _)| under(&r.files[*fi].path, project)))
            .or_else(|| if list.len() == 1 { list.first() } else { None })
            .copied()
    };

    // Routes of units from registrations.
    let mut unit_routes: HashMap<UnitId, Vec<RouteOf>> = HashMap::new();
    for (fi, f) in r.files.iter().enumerate() {
        let Some(code) = &f.code else { continue };
        for reg in &code.registrations {
            let route = reg.path.as_ref().map(|p| {
                let local =
                    local_prefix.get(&(fi, reg.obj.clone())).map_or(p.clone(), |lp| webhooks::join_route(lp, p));
                match file_prefix.get(&fi) {
                    Some(fp) => webhooks::join_route(fp, &local),
                    None => local,
                }
            });
            let target = match &reg.target {
                RegTarget::Inline(ui) => Some((fi, *ui)),
                RegTarget::Named(name) => pick(name, fi, &|_| true),
            };
            if let Some(id) = target {
                let routes = unit_routes.entry(id).or_default();
                if !routes.iter().any(|(rt, _)| *rt == route) {
                    routes.push((route, reg.framework));
                }
            }
        }
    }

    // React Router `routes.ts` overrides file-system routes.
    let mut rr_routes: HashMap<usize, String> = HashMap::new();
    for f in &r.files {
        let Some(code) = &f.code else { continue };
        for (route, module) in &code.rr_routes {
            let dir = dir_of(&f.path);
            let p = if dir.is_empty() { module.clone() } else { format!("{dir}/{module}") };
            if let Some(i) = normalize(&p).and_then(|p| r.by_path.get(&p).copied()) {
                rr_routes.entry(i).or_insert_with(|| webhooks::join_route("", route));
            }
        }
    }

    // Entry units (served by a route or handler-shaped) and the helpers they call.
    let is_entry = |id: UnitId, u: &UnitDraft| match u.kind {
        UnitKind::Fs(_) => true,
        UnitKind::Inline | UnitKind::Named => unit_routes.contains_key(&id),
    };
    // A named function another candidate calls is a callee (a helper, an event processor), not a
    // handler of its own; a verify-like callee that verifies lends its verification to the caller.
    let mut callees: HashSet<UnitId> = HashSet::new();
    let mut callees_of: HashMap<UnitId, Vec<UnitId>> = HashMap::new();
    let mut inherited: HashMap<UnitId, UnitId> = HashMap::new();
    for (fi, f) in r.files.iter().enumerate() {
        let Some(code) = &f.code else { continue };
        for (ui, u) in code.units.iter().enumerate() {
            let id = (fi, ui);
            if !is_entry(id, u) && !u.handler_like {
                continue;
            }
            for call in &u.calls {
                if let Some(h) = pick(call, fi, &|_| true)
                    && h != id
                {
                    callees.insert(h);
                    callees_of.entry(id).or_default().push(h);
                }
                if u.verification == Verification::None
                    && webhooks::verify_like(call)
                    && let Some(h) = pick(call, fi, &|h| h.verification != Verification::None)
                    && h != id
                {
                    inherited.entry(id).or_insert(h);
                }
            }
        }
    }

    let resolve_secret = |expr: &SecretExpr, fi: usize| -> Option<SecretSource> {
        match expr {
            SecretExpr::Env(v) => Some(SecretSource::EnvVar { env_var: v.clone() }),
            SecretExpr::Literal(fp) => Some(SecretSource::LiteralFingerprint { literal_fingerprint: fp.clone() }),
            SecretExpr::Ident(name) => {
                let list = assigns.get(name.as_str())?;
                let project = r.project_of(&r.files[fi].path);
                // Same file, else the same project; never another app of a monorepo.
                let (_, v) = list
                    .iter()
                    .find(|(i, _)| *i == fi)
                    .or_else(|| list.iter().find(|(i, _)| under(&r.files[*i].path, project)))?;
                match v {
                    SecretExpr::Env(e) => Some(SecretSource::EnvVar { env_var: e.clone() }),
                    SecretExpr::Literal(fp) => {
                        Some(SecretSource::LiteralFingerprint { literal_fingerprint: fp.clone() })
                    }
                    _ => None,
                }
            }
            SecretExpr::Unknown => None,
        }
    };

    let mut out = Vec::new();
    for (fi, f) in r.files.iter().enumerate() {
        let Some(code) = &f.code else { continue };
        let lang = code.lang.unwrap_or(Lang::Js);
        for (ui, u) in code.units.iter().enumerate() {
            let id = (fi, ui);
            let routes: Vec<RouteOf> = match u.kind {
                UnitKind::Fs(kind) => {
                    let project = r.project_of(&f.path);
                    let rel = if project.is_empty() { f.path.as_str() } else { &f.path[project.len() + 1..] };
                    let route = rr_routes.get(&fi).cloned().or_else(|| routes::fs_route(kind, rel));
                    vec![(route, u.framework)]
                }
                _ => match unit_routes.get(&id) {
                    Some(rs) => rs.clone(),
                    None if u.kind == UnitKind::Named && u.handler_like && !callees.contains(&id) => vec![(None, None)],
                    None => continue,
                },
            };
            let (verification, secret_expr, fallback, secret_file) = match inherited.get(&id) {
                Some(&(hfi, hui)) => match r.code(hfi).and_then(|c| c.units.get(hui)) {
                    Some(h) => (h.verification, &h.secret, &h.fallback_secret, hfi),
                    None => (u.verification, &u.secret, &u.fallback_secret, fi),
                },
                None => (u.verification, &u.secret, &u.fallback_secret, fi),
            };
            // Events handled by the functions it calls (one level: `handleClerkEvent(evt)`).
            let mut events = u.events.clone();
            for &(cfi, cui) in callees_of.get(&id).map_or(&[][..], Vec::as_slice) {
                if let Some(c) = r.code(cfi).and_then(|c| c.units.get(cui)) {
                    events.extend(c.events.iter().cloned());
                }
            }
            let secret_source = if verification == Verification::None {
                None
            } else {
                resolve_secret(secret_expr, secret_file)
                    .or_else(|| fallback.as_ref().and_then(|e| resolve_secret(e, secret_file)))
            };
            for (route, reg_fw) in routes {
                let route_lower = route.as_deref().unwrap_or("").to_ascii_lowercase();
                let path_lower = f.path.to_ascii_lowercase();
                let route_clerk = route_lower.contains("clerk");
                let named_clerk_webhook = (route_clerk || path_lower.contains("clerk"))
                    && (route_lower.contains("webhook") || path_lower.contains("webhook"));
                let clerk = u.clerk_word
                    || route_clerk
                    || u.clerk_type
                    || verification == Verification::ClerkVerifyWebhook
                    || (!events.is_empty() && (verification == Verification::Svix || u.svix_headers));
                let signal = verification != Verification::None
                    || !events.is_empty()
                    || u.clerk_type
                    || u.svix_headers
                    || named_clerk_webhook;
                if !(clerk && signal) {
                    continue;
                }
                let framework = u
                    .framework
                    .filter(|_| !matches!(u.kind, UnitKind::Named) || reg_fw.is_none())
                    .or(reg_fw)
                    .or_else(|| default_framework(r, &f.path, lang, u.kind))
                    .unwrap_or("unknown");
                out.push(WebhookHandler {
                    file: f.path.clone(),
                    line: u.line,
                    framework: framework.to_owned(),
                    route,
                    verification,
                    secret_source: secret_source.clone(),
                    events: events.iter().cloned().collect(),
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.file, a.line, &a.route, &a.framework).cmp(&(&b.file, b.line, &b.route, &b.framework)));
    out.dedup();
    out
}

/// The framework of a handler whose own file does not tell: the project's manifests, else the
/// language's most common one.
fn default_framework(r: &Repo, path: &str, lang: Lang, kind: UnitKind) -> Option<&'static str> {
    use webhooks::{
        CHI, CONVEX, DJANGO, EXPRESS, FASTAPI, FASTIFY, FLASK, GIN, GO_NET_HTTP, HONO, REACT_ROUTER, REMIX,
    };
    let fws: BTreeSet<&'static str> = r.frameworks_for(path).into_iter().collect();
    let order: &[&'static str] = match (lang, kind) {
        (Lang::Js, UnitKind::Fs(webhooks::FsKind::Remix)) => &[REACT_ROUTER, REMIX],
        (Lang::Js, _) => &[CONVEX, HONO, FASTIFY, EXPRESS],
        (Lang::Py, _) => &[FASTAPI, FLASK, DJANGO],
        (Lang::Go, _) => &[GIN, CHI],
    };
    order.iter().copied().find(|f| fws.contains(f)).or(match (lang, kind) {
        (Lang::Js, UnitKind::Fs(webhooks::FsKind::Remix)) => Some(REMIX),
        (Lang::Go, _) => Some(GO_NET_HTTP),
        _ => None,
    })
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
        assert_eq!(normalize("a/./b/../c").as_deref(), Some("a/c"));
        assert_eq!(normalize("../x"), None);
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
