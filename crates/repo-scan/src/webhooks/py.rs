//! Python: FastAPI and Flask (route decorators, routers, blueprints) and Django (`urls.py` + views).

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use super::{
    Cand, CodeFacts, DJANGO, FASTAPI, FLASK, FileCtx, Lang, Mount, MountTarget, RegTarget, Registration, SecretExpr,
    UnitKind, Verifiers, evaluate, global_assigns, interest, join_route, re, string_literal, target_name,
};
use crate::text::{Brackets, LazyLines, LineIndex, Syntax, python_block_end, split_args};

static ROUTERISH: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"@\w[\w.]*\.(?:post|route|api_route)\s*\(|\bpath\s*\(|\bre_path\s*\(|include_router|register_blueprint|urlpatterns",
    )
});
static DECORATOR: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^[ \t]*@([A-Za-z_][\w.]*)\.(post|route|api_route)\s*\("));
static DEF: LazyLock<Regex> = LazyLock::new(|| re(r"^[ \t]*(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\("));
static TOP_DEF: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(([^)\n]*)"));
static TOP_CLASS: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^class\s+([A-Za-z_]\w*)\s*(?:\(([^)\n]*)\))?\s*:"));
static FROM_IMPORT: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^[ \t]*from\s+([.\w]+)\s+import\s+\(?([^)\n]+)"));
static IMPORT: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^[ \t]*import\s+([\w.]+)(?:\s+as\s+(\w+))?"));
static ROUTER_VAR: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?m)^[ \t]*([A-Za-z_]\w*)\s*=\s*(?:fastapi\.|flask\.)?(APIRouter|Blueprint)\s*\("));
static PREFIX_KW: LazyLock<Regex> = LazyLock::new(|| re(r#"\b(?:url_)?prefix\s*=\s*["']([^"']*)["']"#));
static METHODS_KW: LazyLock<Regex> = LazyLock::new(|| re(r"\bmethods\s*=\s*[\[(\{]([^\])\}]*)"));
static DJANGO_PATH: LazyLock<Regex> = LazyLock::new(|| re(r"\b(re_path|path|url)\s*\("));
static MOUNT_CALL: LazyLock<Regex> = LazyLock::new(|| re(r"\.(include_router|register_blueprint)\s*\("));
static LOCAL_ASSIGN: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?m)^[ \t]*([A-Za-z_]\w*)\s*(?::[^=\n]+)?=\s*([^=\n][^\n]*)"));

/// Python imports: local name -> dotted module or symbol path (`from a.b import c` -> `a.b.c`).
fn imports(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for c in FROM_IMPORT.captures_iter(text) {
        let module = c.get(1).map_or("", |m| m.as_str());
        for item in c.get(2).map_or("", |m| m.as_str()).split(',') {
            let item = item.trim().trim_end_matches('\\').trim();
            if item.is_empty() || item.starts_with('#') {
                continue;
            }
            let (name, local) = item.split_once(" as ").map_or((item, item), |(a, b)| (a.trim(), b.trim()));
            let full = if module.ends_with('.') { format!("{module}{name}") } else { format!("{module}.{name}") };
            out.push((local.to_owned(), full));
        }
    }
    for c in IMPORT.captures_iter(text) {
        let module = c.get(1).map_or("", |m| m.as_str());
        let local = c.get(2).map_or_else(|| module.split('.').next().unwrap_or(module), |m| m.as_str());
        out.push((local.to_owned(), module.to_owned()));
    }
    out
}

fn verifiers(imports: &[(String, String)]) -> Verifiers {
    let mut v = Verifiers::default();
    for (local, full) in imports {
        if full.starts_with("clerk_backend_api") || full.contains("clerk") {
            v.clerk_import = true;
        }
        match full.as_str() {
            "svix.webhooks.Webhook" | "svix.Webhook" => v.svix.push(local.clone()),
            "svix" | "svix.webhooks" => {
                v.svix.push(format!("{local}.Webhook"));
                v.svix.push(format!("{local}.webhooks.Webhook"));
            }
            "standardwebhooks.webhooks.Webhook" | "standardwebhooks.Webhook" => v.standard.push(local.clone()),
            "standardwebhooks" | "standardwebhooks.webhooks" => {
                v.standard.push(format!("{local}.Webhook"));
                v.standard.push(format!("{local}.webhooks.Webhook"));
            }
            _ => {}
        }
    }
    v
}

fn framework_of(imports: &[(String, String)]) -> Option<&'static str> {
    let has = |p: &str| imports.iter().any(|(_, m)| m == p || m.starts_with(&format!("{p}.")));
    if has("fastapi") {
        Some(FASTAPI)
    } else if has("flask") {
        Some(FLASK)
    } else if has("django") || has("rest_framework") {
        Some(DJANGO)
    } else {
        None
    }
}

/// What one Python file yields once, for every stage to read: the comment-masked text with its brackets
/// and lines, the imports (and the verifiers and framework they name) and the in-file assignments.
struct PyFile<'a> {
    path: &'a str,
    raw: &'a str,
    lines: &'a LineIndex,
    brackets: Brackets,
    masked: String,
    imports: Vec<(String, String)>,
    verifiers: Verifiers,
    framework: Option<&'static str>,
    locals: HashMap<String, String>,
    /// Python binds no names straight to env vars the way JS destructuring does: always empty.
    local_env: HashMap<String, SecretExpr>,
}

impl<'a> PyFile<'a> {
    /// Masks comments, matches brackets and reads imports once; assignments only when the file may
    /// hold module-level secrets (`with_assigns`).
    fn read(path: &'a str, raw: &'a str, lines: &'a LineIndex, with_assigns: bool) -> Self {
        let brackets = Brackets::new(raw, Syntax::Py);
        let masked = brackets.masked(raw);
        let imports = imports(&masked);
        let verifiers = verifiers(&imports);
        let framework = framework_of(&imports);
        let mut locals: HashMap<String, String> = HashMap::new();
        if with_assigns {
            for c in LOCAL_ASSIGN.captures_iter(&masked) {
                if let (Some(n), Some(v)) = (c.get(1), c.get(2)) {
                    locals.entry(n.as_str().to_owned()).or_insert_with(|| v.as_str().trim().to_owned());
                }
            }
        }
        PyFile { path, raw, lines, brackets, masked, imports, verifiers, framework, locals, local_env: HashMap::new() }
    }

    fn text(&self) -> &str {
        &self.masked
    }

    fn ctx(&self) -> FileCtx<'_> {
        FileCtx {
            path: self.path,
            text: &self.masked,
            raw: self.raw,
            lang: Lang::Py,
            brackets: &self.brackets,
            verifiers: &self.verifiers,
            locals: &self.locals,
            local_env: &self.local_env,
        }
    }

    /// The arguments of the call whose `(` is at `paren`.
    fn call_args(&self, paren: usize) -> &str {
        call_args(&self.masked, &self.brackets, paren)
    }
}

/// What the stages find in one file: candidates, registrations and mounts.
#[derive(Default)]
struct Found {
    cands: Vec<Cand>,
    regs: Vec<Registration>,
    mounts: Vec<Mount>,
}

/// The handlers, registrations, mounts and module-level secrets of one Python file. A file that can hold
/// none is dropped before masking; otherwise the file context is read once and each stage reads it.
pub(crate) fn analyze(path: &str, raw: &str, lazy: &LazyLines<'_>) -> CodeFacts {
    let interest = interest(raw, path);
    let interesting = interest.units;
    if !interest.assigns && !ROUTERISH.is_match(raw) {
        return CodeFacts::default();
    }
    let file = PyFile::read(path, raw, lazy.get(), interest.assigns);
    let mut found = Found::default();
    let prefixes = router_prefixes(&file);
    decorated_routes(&file, &prefixes, &mut found);
    if path.ends_with("urls.py") || file.text().contains("urlpatterns") {
        django_urls(&file, &mut found);
    }
    mount_calls(&file, &mut found);

    let mut facts = CodeFacts { mounts: found.mounts, ..CodeFacts::default() };
    if interesting {
        top_level_cands(&file, &mut found.cands);
        facts.units = evaluate(&file.ctx(), &found.cands);
        facts.registrations = found.regs;
    } else {
        facts.registrations = found.regs.into_iter().filter(|r| matches!(r.target, RegTarget::Named(_))).collect();
    }
    if interest.assigns {
        facts.assigns = global_assigns(&file.locals, &file.local_env);
    }
    facts.imports =
        super::registered_imports(&facts.registrations, file.imports.iter().map(|(l, m)| (l.as_str(), m.as_str())));
    facts
}

/// Router variables with a prefix (`router = APIRouter(prefix="/webhooks")`): their routes serve under it.
fn router_prefixes(file: &PyFile<'_>) -> HashMap<String, String> {
    let mut prefixes: HashMap<String, String> = HashMap::new();
    for c in ROUTER_VAR.captures_iter(file.text()) {
        let (Some(var), Some(whole)) = (c.get(1), c.get(0)) else { continue };
        let args = file.call_args(whole.end() - 1);
        if let Some(p) = PREFIX_KW.captures(args).and_then(|c| c.get(1)) {
            prefixes.insert(var.as_str().to_owned(), p.as_str().to_owned());
        }
    }
    prefixes
}

/// FastAPI / Flask route decorators taking POST: the decorated function is a routed body.
fn decorated_routes(file: &PyFile<'_>, prefixes: &HashMap<String, String>, found: &mut Found) {
    for c in DECORATOR.captures_iter(file.text()).take(2000) {
        let (Some(whole), Some(obj), Some(kind)) = (c.get(0), c.get(1), c.get(2)) else { continue };
        decorated_route(file, prefixes, whole, obj.as_str(), kind.as_str(), found);
    }
}

/// One `@obj.kind("/path", ...)` decorator: the first `def` after it (other decorators between) is the
/// handler, registered under the router's prefix.
fn decorated_route(
    file: &PyFile<'_>,
    prefixes: &HashMap<String, String>,
    whole: regex::Match<'_>,
    obj: &str,
    kind: &str,
    found: &mut Found,
) {
    let (text, lines) = (file.text(), file.lines);
    let paren = whole.end() - 1;
    let Some(close) = file.brackets.close_of(paren) else { return };
    let args = text.get(paren + 1..close).unwrap_or("");
    let parts: Vec<&str> = split_args(args).into_iter().map(|(s, e)| args[s..e].trim()).collect();
    let Some(route) = parts.first().and_then(|p| string_literal(p)) else { return };
    if kind != "post" {
        let posts = METHODS_KW
            .captures(args)
            .and_then(|m| m.get(1))
            .is_some_and(|m| m.as_str().to_ascii_uppercase().contains("POST"));
        if !posts {
            return;
        }
    }
    let from_line = lines.line_of(close) as usize + 1;
    let Some(def_line) = (from_line..=lines.count().min(from_line + 20)).find(|&l| DEF.is_match(lines.line(text, l)))
    else {
        return;
    };
    let name = DEF.captures(lines.line(text, def_line)).and_then(|c| c.get(1)).map(|m| m.as_str().to_owned());
    let end = python_block_end(text, lines, def_line);
    let obj_name = obj.rsplit('.').next().unwrap_or("").to_owned();
    let route = match prefixes.get(&obj_name) {
        Some(p) => join_route(p, &route),
        None => join_route("", &route),
    };
    let fw = match kind {
        "route" => Some(FLASK),
        "api_route" => Some(FASTAPI),
        _ => file.framework,
    };
    let idx = found.cands.len();
    found.cands.push(Cand {
        start: lines.line_start(whole.start()),
        end,
        line: u32::try_from(def_line).unwrap_or(u32::MAX),
        name,
        kind: UnitKind::Inline,
        framework: fw,
        handler_like: true,
    });
    found.regs.push(Registration {
        obj: obj_name,
        path: Some(route),
        framework: fw,
        target: RegTarget::Inline(idx),
        line: lines.line_of(whole.start()),
    });
}

/// Django URL confs: `path("x/", view)` registers a view, `path("api/", include("app.urls"))` mounts a
/// module's routes under a prefix.
fn django_urls(file: &PyFile<'_>, found: &mut Found) {
    for c in DJANGO_PATH.captures_iter(file.text()) {
        let (Some(whole), Some(func)) = (c.get(0), c.get(1)) else { continue };
        let args = file.call_args(whole.end() - 1);
        let parts: Vec<&str> = split_args(args).into_iter().map(|(s, e)| args[s..e].trim()).collect();
        if parts.len() < 2 {
            continue;
        }
        let Some(raw) = string_literal(parts[0]) else { continue };
        let route = if func.as_str() == "path" { Some(raw) } else { regex_route(&raw) };
        let target = parts[1];
        if let Some(inner) = target.strip_prefix("include(") {
            if let (Some(module), Some(prefix)) = (string_literal(first(inner.trim_end_matches(')'))), route) {
                found.mounts.push(Mount { prefix: join_route("", &prefix), target: MountTarget::Module(module) });
            }
            continue;
        }
        if let Some(name) = target_name(target) {
            found.regs.push(Registration {
                obj: String::new(),
                path: route.map(|r| join_route("", &r)),
                framework: Some(DJANGO),
                target: RegTarget::Named(name),
                line: file.lines.line_of(whole.start()),
            });
        }
    }
}

/// `app.include_router(router, prefix="/api")`, `app.register_blueprint(bp, url_prefix="/x")`: a
/// router (local or imported) served under a prefix.
fn mount_calls(file: &PyFile<'_>, found: &mut Found) {
    for c in MOUNT_CALL.captures_iter(file.text()) {
        let Some(whole) = c.get(0) else { continue };
        let args = file.call_args(whole.end() - 1);
        let Some(prefix) = PREFIX_KW.captures(args).and_then(|c| c.get(1)).map(|m| m.as_str().to_owned()) else {
            continue;
        };
        let target = first(args);
        let head = target.split('.').next().unwrap_or("");
        let mount_target = match file.imports.iter().find(|(l, _)| l == head) {
            Some((_, module)) => {
                let rest = &target[head.len()..];
                MountTarget::Module(format!("{module}{rest}"))
            }
            None => MountTarget::Local(target.to_owned()),
        };
        found.mounts.push(Mount { prefix, target: mount_target });
    }
}

/// Top-level functions and classes not taken by a decorator: the bodies that registrations by name
/// (Django views, imported handlers) resolve to; a request parameter or a `View` / `Endpoint` base
/// marks them handler-like.
fn top_level_cands(file: &PyFile<'_>, cands: &mut Vec<Cand>) {
    let (text, lines) = (file.text(), file.lines);
    let decorated: Vec<u32> = cands.iter().map(|c| c.line).collect();
    for c in TOP_DEF.captures_iter(text) {
        let (Some(name), whole) = (c.get(1), c.get(0)) else { continue };
        let Some(whole) = whole else { continue };
        let line = lines.line_of(whole.start());
        if decorated.contains(&line) {
            continue;
        }
        let end = python_block_end(text, lines, line as usize);
        let params = c.get(2).map_or("", |m| m.as_str());
        // Skip functions holding decorated routes (app factories).
        if cands.iter().any(|d| d.kind == UnitKind::Inline && d.start >= whole.start() && d.end <= end) {
            continue;
        }
        cands.push(Cand {
            start: whole.start(),
            end,
            line,
            name: Some(name.as_str().to_owned()),
            kind: UnitKind::Named,
            framework: file.framework,
            handler_like: params.contains("request") || params.starts_with("req"),
        });
    }
    for c in TOP_CLASS.captures_iter(text) {
        let (Some(whole), Some(name)) = (c.get(0), c.get(1)) else { continue };
        let bases = c.get(2).map_or("", |m| m.as_str());
        let line = lines.line_of(whole.start());
        let end = python_block_end(text, lines, line as usize);
        cands.push(Cand {
            start: whole.start(),
            end,
            line,
            name: Some(name.as_str().to_owned()),
            kind: UnitKind::Named,
            framework: file.framework,
            handler_like: bases.contains("View") || bases.contains("Endpoint"),
        });
    }
}

fn call_args<'t>(text: &'t str, brackets: &Brackets, paren: usize) -> &'t str {
    match brackets.close_of(paren) {
        Some(close) => text.get(paren + 1..close).unwrap_or(""),
        None => "",
    }
}

fn first(args: &str) -> &str {
    split_args(args).first().map_or("", |&(s, e)| args[s..e].trim())
}

/// A Django `re_path` pattern as a literal route when it is one (`^webhooks/clerk/$`).
fn regex_route(pattern: &str) -> Option<String> {
    let p = pattern.trim_start_matches('^').trim_end_matches('$');
    let literal = !p.contains(['(', '[', '\\', '?', '*', '+', '{', '|', '.']);
    literal.then(|| p.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::Verification;

    #[test]
    fn fastapi_decorated_route_with_prefix() {
        let src = "import os\nfrom fastapi import APIRouter, Request\nfrom svix.webhooks import Webhook\n\nrouter = APIRouter(prefix=\"/webhooks\")\n\n@router.post(\"/clerk\")\nasync def clerk_webhook(request: Request):\n    wh = Webhook(os.environ[\"CLERK_WEBHOOK_SECRET\"])\n    evt = wh.verify(await request.body(), dict(request.headers))\n    if evt[\"type\"] == \"user.created\":\n        pass\n";
        let f = analyze("app/webhooks.py", src, &LazyLines::new(src));
        assert_eq!(f.units.len(), 1);
        assert_eq!(f.units[0].line, 8);
        assert_eq!(f.units[0].verification, Verification::Svix);
        assert_eq!(f.units[0].secret, SecretExpr::Env("CLERK_WEBHOOK_SECRET".into()));
        assert_eq!(f.registrations[0].path.as_deref(), Some("/webhooks/clerk"));
    }

    #[test]
    fn django_urls() {
        let src = "from django.urls import path, include\nfrom . import views\nurlpatterns = [\n    path(\"webhooks/clerk/\", views.clerk_webhook, name=\"x\"),\n    path(\"api/\", include(\"billing.urls\")),\n]\n";
        let f = analyze("core/urls.py", src, &LazyLines::new(src));
        assert_eq!(f.registrations.len(), 1);
        assert_eq!(f.registrations[0].path.as_deref(), Some("/webhooks/clerk/"));
        assert_eq!(f.mounts.len(), 1);
        assert_eq!(regex_route("^webhooks/clerk/$").as_deref(), Some("webhooks/clerk/"));
    }
}
