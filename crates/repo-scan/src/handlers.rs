//! Stage two of the extractor for webhook handlers: the per-file facts joined across the repo (see
//! [`crate::webhooks`] for which code is a handler). Each stage is a method of [`Index`], run in order
//! by [`webhook_handlers`]: names, mount prefixes, Go router parameters, unit routes, React Router
//! routes, helpers, then one [`WebhookHandler`] per route served.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::artifact::{SecretSource, SourceLocation, Verification, WebhookHandler};
use crate::webhooks::{self, CodeFacts, Lang, MountTarget, RegTarget, SecretExpr, UnitDraft, UnitKind};
use crate::{FileFacts, Repo, ancestors, dir_of, routes, under};

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
pub(crate) fn normalize(path: &str) -> Option<String> {
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

/// A route a unit serves, the framework of the router call that says so, and where that call is.
#[derive(Debug, Clone, PartialEq)]
struct RouteOf {
    route: Option<String>,
    framework: Option<&'static str>,
    registration: Option<(usize, u32)>,
}

/// How many hops a secret is followed through constructor parameters to their callers.
const MAX_SECRET_HOPS: usize = 3;

/// The repo-wide index the handlers are resolved against, built in stages from the per-file facts.
struct Index<'r> {
    r: &'r Repo,
    /// Module-level assignments and configuration fields by name, for secrets read through another module.
    assigns: HashMap<&'r str, Vec<(usize, &'r SecretExpr)>>,
    /// Named units by name, for registrations and helper calls.
    named: HashMap<&'r str, Vec<UnitId>>,
    /// Functions whose parameter feeds a verifier constructor: file -> (function, parameter index, name).
    ctor_params: HashMap<usize, Vec<&'r (String, usize, String)>>,
    /// Calls with argument texts by callee name: (calling file, arguments).
    calls: HashMap<&'r str, Vec<(usize, &'r webhooks::ast::Call)>>,
    /// Route prefix of each file mounted elsewhere.
    file_prefix: HashMap<usize, String>,
    /// Prefix of a router variable within its file.
    local_prefix: HashMap<(usize, String), String>,
    /// Go: prefix of a registration made on a router parameter, by (file, line).
    param_prefix: HashMap<(usize, u32), String>,
    /// NestJS global prefix by project folder.
    global_prefix: HashMap<&'r str, String>,
    unit_routes: HashMap<UnitId, Vec<RouteOf>>,
    /// React Router `routes.ts` routes of route modules.
    rr_routes: HashMap<usize, String>,
    callees: HashSet<UnitId>,
    callees_of: HashMap<UnitId, Vec<UnitId>>,
    /// A verify-like helper a unit calls and takes its verification from.
    inherited: HashMap<UnitId, UnitId>,
}

pub(crate) fn webhook_handlers(r: &Repo) -> Vec<WebhookHandler> {
    let mut ix = Index::names(r);
    ix.mount_prefixes();
    ix.router_parameters();
    ix.unit_routes();
    ix.react_router_routes();
    ix.helpers();
    let mut out = ix.emit();
    out.sort_by(|a, b| (&a.file, a.line, &a.route, &a.framework).cmp(&(&b.file, b.line, &b.route, &b.framework)));
    out.dedup();
    out
}

impl<'r> Index<'r> {
    /// Stage 1: names defined across the repo (assignments, units, constructor parameters, calls).
    fn names(r: &'r Repo) -> Self {
        let mut ix = Index {
            r,
            assigns: HashMap::new(),
            named: HashMap::new(),
            ctor_params: HashMap::new(),
            calls: HashMap::new(),
            file_prefix: HashMap::new(),
            local_prefix: HashMap::new(),
            param_prefix: HashMap::new(),
            global_prefix: HashMap::new(),
            unit_routes: HashMap::new(),
            rr_routes: HashMap::new(),
            callees: HashSet::new(),
            callees_of: HashMap::new(),
            inherited: HashMap::new(),
        };
        for (fi, f) in r.files.iter().enumerate() {
            let Some(code) = &f.code else { continue };
            for (name, v) in &code.assigns {
                ix.assigns.entry(name).or_default().push((fi, v));
            }
            for (ui, u) in code.units.iter().enumerate() {
                if let (UnitKind::Named, Some(n)) = (u.kind, &u.name) {
                    ix.named.entry(n).or_default().push((fi, ui));
                }
            }
            if !code.ctor_params.is_empty() {
                ix.ctor_params.insert(fi, code.ctor_params.iter().collect());
            }
            for call in &code.calls {
                ix.calls.entry(&call.callee).or_default().push((fi, call));
            }
            if let Some(p) = &code.global_prefix {
                ix.global_prefix.entry(r.project_of(&f.path)).or_insert_with(|| p.clone());
            }
        }
        ix
    }

    fn code(&self, fi: usize) -> Option<&'r CodeFacts> {
        self.r.code(fi)
    }

    /// Stage 2: prefixes from mounts: whole files mounted elsewhere, and router variables of a file.
    fn mount_prefixes(&mut self) {
        let r = self.r;
        let mut mounts: Vec<(usize, usize, String)> = Vec::new(); // (mounting file, target file, prefix)
        for (fi, f) in r.files.iter().enumerate() {
            let Some(code) = &f.code else { continue };
            let lang = code.lang.unwrap_or(Lang::Js);
            for m in &code.mounts {
                match &m.target {
                    MountTarget::Local(var) => {
                        self.local_prefix.entry((fi, var.clone())).or_insert_with(|| m.prefix.clone());
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
        let file_prefix = &mut self.file_prefix;
        for _ in 0..4 {
            let mut changed = false;
            for (from, to, prefix) in &mounts {
                let base = file_prefix.get(from).cloned().unwrap_or_default();
                let full = webhooks::join_route(&base, prefix);
                if file_prefix.get(to) != Some(&full)
                    && (!file_prefix.contains_key(to) || file_prefix.contains_key(from))
                {
                    file_prefix.insert(*to, full);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// Stage 3 (Go): a registration on a router parameter takes the prefix of the group the callers
    /// pass (`routes.Register(r.Group("/api"))`), when every caller in the project passes the same one.
    fn router_parameters(&mut self) {
        let r = self.r;
        let mut passed: HashMap<(&str, usize), Vec<(usize, &str)>> = HashMap::new();
        for (fi, f) in r.files.iter().enumerate() {
            let Some(code) = &f.code else { continue };
            for g in &code.group_args {
                passed.entry((g.callee.as_str(), g.arg)).or_default().push((fi, g.prefix.as_str()));
            }
        }
        for (fi, f) in r.files.iter().enumerate() {
            let Some(code) = &f.code else { continue };
            let project = r.project_of(&f.path);
            for pr in &code.param_routes {
                let Some(list) = passed.get(&(pr.func_name.as_str(), pr.param)) else { continue };
                let prefixes: BTreeSet<&str> =
                    list.iter().filter(|(ci, _)| under(&r.files[*ci].path, project)).map(|(_, p)| *p).collect();
                if prefixes.len() == 1
                    && let Some(p) = prefixes.first()
                {
                    self.param_prefix.insert((fi, pr.line), (*p).to_owned());
                }
            }
        }
    }

    /// Which named unit a name refers to from a file: the file its import names, else the same file, the
    /// same folder, the only one of the project, the only one of the repo. Several namesakes that no
    /// import or folder tells apart give `None` (no guess).
    fn pick(&self, name: &str, from: usize, filter: &dyn Fn(&UnitDraft) -> bool) -> Option<UnitId> {
        let r = self.r;
        let list: Vec<UnitId> = self
            .named
            .get(name)?
            .iter()
            .copied()
            .filter(|&(fi, ui)| r.code(fi).and_then(|c| c.units.get(ui)).is_some_and(filter))
            .collect();
        let from_path = &r.files[from].path;
        let project = r.project_of(from_path);
        let imported = r.code(from).and_then(|c| {
            let lang = c.lang.unwrap_or(Lang::Js);
            let (_, module) = c.imports.iter().find(|(local, _)| local == name)?;
            resolve_module(r, from_path, module, lang)
        });
        fn only(found: Vec<&UnitId>) -> Option<&UnitId> {
            if let [one] = found[..] { Some(one) } else { None }
        }
        imported
            .and_then(|ti| list.iter().find(|(fi, _)| *fi == ti))
            .or_else(|| list.iter().find(|(fi, _)| *fi == from))
            .or_else(|| list.iter().find(|(fi, _)| dir_of(&r.files[*fi].path) == dir_of(from_path)))
            .or_else(|| only(list.iter().filter(|(fi, _)| under(&r.files[*fi].path, project)).collect()))
            .or_else(|| only(list.iter().collect()))
            .copied()
    }

    /// Stage 4: routes of units from registrations, with every prefix that applies.
    fn unit_routes(&mut self) {
        let r = self.r;
        let mut unit_routes: HashMap<UnitId, Vec<RouteOf>> = HashMap::new();
        for (fi, f) in r.files.iter().enumerate() {
            let Some(code) = &f.code else { continue };
            let project = r.project_of(&f.path);
            for reg in &code.registrations {
                let route = reg.path.as_ref().map(|p| {
                    let local = self
                        .local_prefix
                        .get(&(fi, reg.obj.clone()))
                        .map_or(p.clone(), |lp| webhooks::join_route(lp, p));
                    let local = match self.param_prefix.get(&(fi, reg.line)) {
                        Some(pp) => webhooks::join_route(pp, &local),
                        None => local,
                    };
                    let local = match self.global_prefix.get(project) {
                        Some(gp) if reg.framework == Some(webhooks::NESTJS) => webhooks::join_route(gp, &local),
                        _ => local,
                    };
                    match self.file_prefix.get(&fi) {
                        Some(fp) => webhooks::join_route(fp, &local),
                        None => local,
                    }
                });
                let target = match &reg.target {
                    RegTarget::Inline(ui) => Some((fi, *ui)),
                    RegTarget::Named(name) => self.pick(name, fi, &|_| true),
                };
                if let Some(id) = target {
                    let routes = unit_routes.entry(id).or_default();
                    if !routes.iter().any(|ro| ro.route == route) {
                        routes.push(RouteOf { route, framework: reg.framework, registration: Some((fi, reg.line)) });
                    }
                }
            }
        }
        self.unit_routes = unit_routes;
    }

    /// Stage 5: React Router `routes.ts` overrides file-system routes.
    fn react_router_routes(&mut self) {
        let r = self.r;
        for f in &r.files {
            let Some(code) = &f.code else { continue };
            for (route, module) in &code.rr_routes {
                let dir = dir_of(&f.path);
                let p = if dir.is_empty() { module.clone() } else { format!("{dir}/{module}") };
                if let Some(i) = normalize(&p).and_then(|p| r.by_path.get(&p).copied()) {
                    self.rr_routes.entry(i).or_insert_with(|| webhooks::join_route("", route));
                }
            }
        }
    }

    /// Stage 6: entry units (served by a route or handler-shaped) and the helpers they call. A named
    /// function another candidate calls is a callee (a helper, an event processor), not a handler of
    /// its own; a verify-like callee that verifies lends its verification to the caller.
    fn helpers(&mut self) {
        let r = self.r;
        for (fi, f) in r.files.iter().enumerate() {
            let Some(code) = &f.code else { continue };
            for (ui, u) in code.units.iter().enumerate() {
                let id = (fi, ui);
                let entry = match u.kind {
                    UnitKind::Fs(_) => true,
                    UnitKind::Inline | UnitKind::Named => self.unit_routes.contains_key(&id),
                };
                if !entry && !u.handler_like {
                    continue;
                }
                for call in &u.calls {
                    if let Some(h) = self.pick(call, fi, &|_| true)
                        && h != id
                    {
                        self.callees.insert(h);
                        self.callees_of.entry(id).or_default().push(h);
                    }
                    if u.verification == Verification::None
                        && webhooks::verify_like(call)
                        && let Some(h) = self.pick(call, fi, &|h| h.verification != Verification::None)
                        && h != id
                    {
                        self.inherited.entry(id).or_insert(h);
                    }
                }
            }
        }
    }

    /// Follows a secret expression of file `fi` to an env var or a literal: same-file names, module
    /// assignments and configuration fields of the project, then constructor parameters to the
    /// values their callers pass (bounded hops). `None` when it cannot be followed.
    fn resolve_secret(&self, expr: &SecretExpr, fi: usize, hops: usize) -> Option<SecretSource> {
        let r = self.r;
        match expr {
            SecretExpr::Env(v) => Some(SecretSource::EnvVar { env_var: v.clone() }),
            SecretExpr::Literal(fp) => Some(SecretSource::LiteralFingerprint { literal_fingerprint: fp.clone() }),
            SecretExpr::Ident(name) => {
                let project = r.project_of(&r.files[fi].path);
                // Same file, else the same project when every definition there agrees; never another
                // app of a monorepo.
                let found = self.assigns.get(name.as_str()).and_then(|list| {
                    list.iter().find(|(i, _)| *i == fi).or_else(|| {
                        let mut in_project = list.iter().filter(|(i, _)| under(&r.files[*i].path, project));
                        let first = in_project.next()?;
                        in_project.all(|(_, v)| *v == first.1).then_some(first)
                    })
                });
                match found.map(|(_, v)| *v) {
                    Some(SecretExpr::Env(e)) => Some(SecretSource::EnvVar { env_var: e.clone() }),
                    Some(SecretExpr::Literal(fp)) => {
                        Some(SecretSource::LiteralFingerprint { literal_fingerprint: fp.clone() })
                    }
                    _ => self.through_constructor(fi, Some(name), hops),
                }
            }
            SecretExpr::Unknown => self.through_constructor(fi, None, hops),
        }
    }

    /// The secret handed to a verifier through a constructor parameter of file `fi` (the named one,
    /// or the file's only one), followed to what the callers in the project pass. Callers must agree.
    fn through_constructor(&self, fi: usize, param: Option<&str>, hops: usize) -> Option<SecretSource> {
        if hops >= MAX_SECRET_HOPS {
            return None;
        }
        let r = self.r;
        let params = self.ctor_params.get(&fi)?;
        let chosen: Vec<&&(String, usize, String)> = match param {
            Some(p) => params.iter().filter(|(_, _, n)| n == p).collect(),
            None => params.iter().collect(),
        };
        let [(func, index, _)] = chosen.as_slice().iter().map(|c| &***c).collect::<Vec<_>>()[..] else {
            return None;
        };
        let project = r.project_of(&r.files[fi].path);
        self.passed_by_callers(func, *index, project, hops + 1)
    }

    /// What every caller in `project` passes as argument `index` of `func`, when they all agree. A
    /// caller forwarding a parameter of its own function (`func NewServer(s string) { NewHandler(s) }`)
    /// is followed to its own callers, one hop more. Any caller that cannot be followed within the
    /// bound makes the answer `None`: one resolved caller among unknown ones is not the answer.
    fn passed_by_callers(&self, func: &str, index: usize, project: &str, hops: usize) -> Option<SecretSource> {
        if hops > MAX_SECRET_HOPS {
            return None;
        }
        let r = self.r;
        let mut found: BTreeSet<SecretSourceKey> = BTreeSet::new();
        for (ci, call) in self.calls.get(func).map_or(&[][..], Vec::as_slice) {
            if !under(&r.files[*ci].path, project) {
                continue;
            }
            let arg = call.args.get(index)?;
            let expr = caller_expr(arg);
            let forwarded = match (&expr, &call.caller) {
                (SecretExpr::Ident(q), Some((outer, ps))) => ps.iter().position(|p| p == q).map(|k| (outer, k)),
                _ => None,
            };
            let source = match forwarded {
                Some((outer, k)) => self.passed_by_callers(outer, k, project, hops + 1),
                None => self.resolve_secret(&expr, *ci, hops),
            };
            found.insert(SecretSourceKey(source?));
        }
        if found.len() == 1 { found.pop_first().map(|k| k.0) } else { None }
    }

    /// The name a secret expression stopped at, for `unresolved`.
    fn unresolved_name(expr: &SecretExpr) -> String {
        match expr {
            SecretExpr::Ident(name) => name.clone(),
            _ => "expression".to_owned(),
        }
    }

    /// Stage 7: one handler per served route of every qualifying unit.
    fn emit(&self) -> Vec<WebhookHandler> {
        let r = self.r;
        let mut out = Vec::new();
        for (fi, f) in r.files.iter().enumerate() {
            let Some(code) = &f.code else { continue };
            for (ui, u) in code.units.iter().enumerate() {
                let Some(routes) = self.routes_of(fi, ui, u) else { continue };
                let facts = self.unit_facts(fi, ui, u);
                for ro in routes {
                    if !qualifies(f, u, &ro, &facts) {
                        continue;
                    }
                    let lang = code.lang.unwrap_or(Lang::Js);
                    let framework = u
                        .framework
                        .filter(|_| !matches!(u.kind, UnitKind::Named) || ro.framework.is_none())
                        .or(ro.framework)
                        .or_else(|| default_framework(r, &f.path, lang, u.kind))
                        .unwrap_or("unknown");
                    out.push(WebhookHandler {
                        file: f.path.clone(),
                        line: u.line,
                        framework: framework.to_owned(),
                        route: ro.route,
                        verification: facts.verification,
                        secret_source: facts.secret_source.clone(),
                        events: facts.events.iter().cloned().collect(),
                        registration: ro
                            .registration
                            .map(|(rf, line)| SourceLocation { file: r.files[rf].path.clone(), line }),
                        reserialized_body: facts.reserialized,
                        acks_failed_verification: facts.acks_failure,
                    });
                }
            }
        }
        out
    }

    /// The routes a unit serves; `None` when it is not a handler entry point.
    fn routes_of(&self, fi: usize, ui: usize, u: &UnitDraft) -> Option<Vec<RouteOf>> {
        let f = &self.r.files[fi];
        match u.kind {
            UnitKind::Fs(kind) => {
                let project = self.r.project_of(&f.path);
                let rel = if project.is_empty() { f.path.as_str() } else { &f.path[project.len() + 1..] };
                let route = self.rr_routes.get(&fi).cloned().or_else(|| routes::fs_route(kind, rel));
                Some(vec![RouteOf { route, framework: u.framework, registration: None }])
            }
            _ => match self.unit_routes.get(&(fi, ui)) {
                Some(rs) => Some(rs.clone()),
                None if u.kind == UnitKind::Named && u.handler_like && !self.callees.contains(&(fi, ui)) => {
                    Some(vec![RouteOf { route: None, framework: None, registration: None }])
                }
                None => None,
            },
        }
    }

    /// Verification, secret, events and failure facts of a unit, its verifying helper's included.
    fn unit_facts(&self, fi: usize, ui: usize, u: &'r UnitDraft) -> UnitFacts {
        let id = (fi, ui);
        let helper = self.inherited.get(&id).and_then(|&(hfi, hui)| Some((hfi, self.code(hfi)?.units.get(hui)?)));
        let (v, secret_file) = match helper {
            Some((hfi, h)) => (h, hfi),
            None => (u, fi),
        };
        // Events handled by the functions it calls (one level: `handleClerkEvent(evt)`).
        let mut events = u.events.clone();
        for &(cfi, cui) in self.callees_of.get(&id).map_or(&[][..], Vec::as_slice) {
            if let Some(c) = self.code(cfi).and_then(|c| c.units.get(cui)) {
                events.extend(c.events.iter().cloned());
            }
        }
        let secret_source = if v.verification == Verification::None {
            None
        } else {
            let own = self.resolve_secret(&v.secret, secret_file, 0);
            let fallback = || v.fallback_secret.as_ref().and_then(|e| self.resolve_secret(e, secret_file, 0));
            Some(
                own.or_else(fallback)
                    .unwrap_or_else(|| SecretSource::Unresolved { unresolved: Self::unresolved_name(&v.secret) }),
            )
        };
        UnitFacts {
            verification: v.verification,
            secret_source,
            events,
            reserialized: u.reserialized || v.reserialized,
            acks_failure: u.acks_failure || v.acks_failure,
        }
    }
}

struct UnitFacts {
    verification: Verification,
    secret_source: Option<SecretSource>,
    events: BTreeSet<String>,
    reserialized: bool,
    acks_failure: bool,
}

/// A unit is a Clerk webhook handler when it shows Clerk evidence and a webhook signal (see
/// [`webhooks`]).
fn qualifies(f: &FileFacts, u: &UnitDraft, ro: &RouteOf, facts: &UnitFacts) -> bool {
    let route_lower = ro.route.as_deref().unwrap_or("").to_ascii_lowercase();
    let path_lower = f.path.to_ascii_lowercase();
    let route_clerk = route_lower.contains("clerk");
    let named_clerk_webhook = (route_clerk || path_lower.contains("clerk"))
        && (route_lower.contains("webhook") || path_lower.contains("webhook"));
    let verification = facts.verification;
    let clerk = u.clerk_word
        || route_clerk
        || u.clerk_type
        || verification == Verification::ClerkVerifyWebhook
        || (!facts.events.is_empty() && (verification == Verification::Svix || u.svix_headers));
    let signal = verification != Verification::None
        || !facts.events.is_empty()
        || u.clerk_type
        || u.svix_headers
        || named_clerk_webhook;
    clerk && signal
}

/// What a caller passes, as a secret expression: `cfg.ClerkWebhookSecret` -> the field's name.
fn caller_expr(arg: &str) -> SecretExpr {
    let a = arg.trim().trim_start_matches('&');
    match webhooks::classify(a) {
        SecretExpr::Unknown => match a.rsplit_once('.') {
            Some((_, field)) if !field.is_empty() && field.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                SecretExpr::Ident(field.to_owned())
            }
            _ => SecretExpr::Unknown,
        },
        other => other,
    }
}

/// Orders secret sources so that callers agreeing on one source can be told from callers that differ.
#[derive(Debug, PartialEq, Eq)]
struct SecretSourceKey(SecretSource);

impl SecretSourceKey {
    fn key(&self) -> (u8, &str) {
        match &self.0 {
            SecretSource::EnvVar { env_var } => (0, env_var),
            SecretSource::LiteralFingerprint { literal_fingerprint } => (1, literal_fingerprint),
            SecretSource::Unresolved { unresolved } => (2, unresolved),
        }
    }
}

impl PartialOrd for SecretSourceKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SecretSourceKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// The framework of a handler whose own file does not tell: the project's manifests, else the
/// language's most common one.
fn default_framework(r: &Repo, path: &str, lang: Lang, kind: UnitKind) -> Option<&'static str> {
    use webhooks::{
        CHI, CONVEX, DJANGO, ECHO, EXPRESS, FASTAPI, FASTIFY, FLASK, GIN, GO_NET_HTTP, HONO, REACT_ROUTER, REMIX,
    };
    let fws: BTreeSet<&'static str> = r.frameworks_for(path).into_iter().collect();
    let order: &[&'static str] = match (lang, kind) {
        (Lang::Js, UnitKind::Fs(webhooks::FsKind::Remix)) => &[REACT_ROUTER, REMIX],
        (Lang::Js, _) => &[CONVEX, HONO, FASTIFY, EXPRESS],
        (Lang::Py, _) => &[FASTAPI, FLASK, DJANGO],
        (Lang::Go, _) => &[GIN, ECHO, CHI],
    };
    order.iter().copied().find(|f| fws.contains(f)).or(match (lang, kind) {
        (Lang::Js, UnitKind::Fs(webhooks::FsKind::Remix)) => Some(REMIX),
        (Lang::Go, _) => Some(GO_NET_HTTP),
        _ => None,
    })
}
