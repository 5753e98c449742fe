//! TypeScript / JavaScript: Next.js (app and pages routers), Remix / React Router, SvelteKit, Astro,
//! Nuxt (file-system routed modules), Express, Fastify, Hono (router calls) and Convex (`http.route`).

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use super::ast::{AstFacts, NestRoute};
use super::{
    ASTRO, CONVEX, Cand, CodeFacts, EXPRESS, FASTIFY, FileCtx, FsKind, HONO, Lang, Mount, MountTarget, NESTJS,
    NEXT_APP, NEXT_PAGES, NUXT, REACT_ROUTER, REMIX, RegTarget, Registration, SVELTEKIT, SecretExpr, UnitKind,
    Verifiers, evaluate, global_assigns, interest, is_inline_fn, nuxt_env, re, string_literal, target_name,
};
use crate::text::{Brackets, LazyLines, LineIndex, Syntax, split_args};

static ROUTERISH: LazyLock<Regex> = LazyLock::new(|| re(r"\.\s*(?:post|all|use|route|on|register)\s*\(|\broute\s*\("));
static EXPORT_POST: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?m)^[ \t]*export\s+(?:async\s+)?(?:function\s*\*?\s*(POST|ALL|post|all)\b|(?:const|let|var)\s+(POST|ALL|post|all)\b)|export\s*\{[^}]*\bas\s+(POST)\b",
    )
});
static EXPORT_ACTION: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?m)^[ \t]*export\s+(?:async\s+)?(?:function\s+action\b|(?:const|let|var)\s+action\b)"));
static EXPORT_DEFAULT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?m)^[ \t]*export\s+default\b(?:\s+(?:async\s+)?function\s*\*?\s*([A-Za-z_$][\w$]*)|\s+([A-Za-z_$][\w$]*)\s*;?[ \t]*$)?",
    )
});
static REG_CALL: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?:\b([A-Za-z_$][\w$]*)|\))\s*\.\s*(post|all|use|route|on|register)\s*\("));
static NAMED_FN: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?m)^[ \t]*(?:export\s+(?:default\s+)?)?(?:async\s+)?function\s*\*?\s*([A-Za-z_$][\w$]*)\s*(?:<[^>\n]*>)?\s*\(",
    )
});
static NAMED_CONST: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?m)^[ \t]*(?:export\s+)?(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*(?::[^=\n]+)?=\s*(?:async\s+)?(?:(function)\b|(\()|([A-Za-z_$][\w$]*)\s*=>|(httpAction|internalAction|defineEventHandler|eventHandler|createHandler)\s*(?:<[^>\n]*>)?\s*\()",
    )
});
static HANDLER_PARAMS: LazyLock<Regex> = LazyLock::new(|| re(r"\b(?:req|request|reply|res|ctx|c|event|context)\b"));
static IMPORT_NAMED: LazyLock<Regex> =
    LazyLock::new(|| re(r#"import\s+(?:type\s+)?(?:([A-Za-z_$][\w$]*)\s*,\s*)?\{([^}]*)\}\s*from\s*["']([^"']+)["']"#));
static IMPORT_DEFAULT: LazyLock<Regex> =
    LazyLock::new(|| re(r#"import\s+(?:type\s+)?([A-Za-z_$][\w$]*)\s+from\s*["']([^"']+)["']"#));
static IMPORT_NS: LazyLock<Regex> =
    LazyLock::new(|| re(r#"import\s*\*\s*as\s+([A-Za-z_$][\w$]*)\s+from\s*["']([^"']+)["']"#));
static REQUIRE_NAMED: LazyLock<Regex> =
    LazyLock::new(|| re(r#"(?:const|let|var)\s*\{([^}]*)\}\s*=\s*require\(\s*["']([^"']+)["']\s*\)"#));
static REQUIRE_DEFAULT: LazyLock<Regex> =
    LazyLock::new(|| re(r#"(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*=\s*require\(\s*["']([^"']+)["']\s*\)"#));
static LOCAL_ASSIGN: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?m)(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*(?::[^=\n]+)?=\s*([^;\n]+)"));
static ENV_IMPORT: LazyLock<Regex> =
    LazyLock::new(|| re(r#"import\s*\{([^}]*)\}\s*from\s*["']\$env/static/(?:private|public)["']"#));
static DESTRUCTURE_ENV: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?:const|let|var)\s*\{([^}]*)\}\s*=\s*(process\.env|useRuntimeConfig\()"));
static RR_ROUTE: LazyLock<Regex> = LazyLock::new(|| re(r#"\broute\(\s*["']([^"']*)["']\s*,\s*["']([^"']+)["']"#));

#[derive(Debug, Clone)]
struct Import {
    local: String,
    /// `None` for default and namespace imports.
    imported: Option<String>,
    source: String,
}

/// `a, b as c, type d` / `a: c` (require destructuring) -> (local, imported).
fn named_list(list: &str) -> Vec<(String, String)> {
    list.split(',')
        .filter_map(|item| {
            let item = item.trim().trim_start_matches("type ").trim();
            if item.is_empty() {
                return None;
            }
            let (imported, local) = if let Some((a, b)) = item.split_once(" as ") {
                (a.trim(), b.trim())
            } else if let Some((a, b)) = item.split_once(':') {
                (a.trim(), b.trim())
            } else {
                (item, item)
            };
            Some((local.to_owned(), imported.to_owned()))
        })
        .collect()
}

fn imports(text: &str) -> Vec<Import> {
    let mut out = Vec::new();
    for c in IMPORT_NAMED.captures_iter(text) {
        let source = c.get(3).map_or("", |m| m.as_str()).to_owned();
        if let Some(d) = c.get(1) {
            out.push(Import { local: d.as_str().to_owned(), imported: None, source: source.clone() });
        }
        for (local, imported) in named_list(c.get(2).map_or("", |m| m.as_str())) {
            out.push(Import { local, imported: Some(imported), source: source.clone() });
        }
    }
    for c in IMPORT_DEFAULT
        .captures_iter(text)
        .chain(IMPORT_NS.captures_iter(text))
        .chain(REQUIRE_DEFAULT.captures_iter(text))
    {
        if let (Some(l), Some(s)) = (c.get(1), c.get(2)) {
            out.push(Import { local: l.as_str().to_owned(), imported: None, source: s.as_str().to_owned() });
        }
    }
    for c in REQUIRE_NAMED.captures_iter(text) {
        let source = c.get(2).map_or("", |m| m.as_str()).to_owned();
        for (local, imported) in named_list(c.get(1).map_or("", |m| m.as_str())) {
            out.push(Import { local, imported: Some(imported), source: source.clone() });
        }
    }
    out
}

fn verifiers(imports: &[Import]) -> Verifiers {
    let mut v = Verifiers::default();
    for i in imports {
        let src = i.source.as_str();
        if src.starts_with("@clerk/") {
            v.clerk_import = true;
            if i.imported.as_deref() == Some("verifyWebhook") {
                v.clerk.push(i.local.clone());
            }
        }
        let target = if src == "svix" || src.starts_with("svix/") {
            Some(&mut v.svix)
        } else if src == "standardwebhooks" || src.starts_with("standardwebhooks/") {
            Some(&mut v.standard)
        } else {
            None
        };
        if let Some(list) = target {
            match i.imported.as_deref() {
                Some("Webhook") => list.push(i.local.clone()),
                None => list.push(format!("{}.Webhook", i.local)),
                _ => {}
            }
        }
    }
    v
}

fn framework_from_imports(imports: &[Import], text: &str) -> Option<&'static str> {
    let has = |f: &dyn Fn(&str) -> bool| imports.iter().any(|i| f(&i.source));
    if has(&|s| s == "convex/server" || s.ends_with("_generated/server")) && text.contains("httpRouter") {
        return Some(CONVEX);
    }
    if has(&|s| s == "hono" || s.starts_with("hono/")) {
        return Some(HONO);
    }
    if has(&|s| s == "fastify" || s == "@clerk/fastify") {
        return Some(FASTIFY);
    }
    if has(&|s| s == "express" || s == "@clerk/express") {
        return Some(EXPRESS);
    }
    None
}

fn segments(path: &str) -> Vec<&str> {
    path.split('/').collect()
}

fn follows(segs: &[&str], a: &str, b: &str) -> bool {
    segs.windows(2).any(|w| w[0] == a && w[1] == b)
}

/// A file-system routed module: its kind, the line of its POST handler and its framework.
fn fs_module(
    path: &str,
    text: &str,
    lines: &LineIndex,
    imports: &[Import],
) -> Option<(FsKind, u32, Option<&'static str>)> {
    let segs = segments(path);
    let name = *segs.last()?;
    let dirs = &segs[..segs.len() - 1];
    let line_of = |m: regex::Match<'_>| lines.line_of(m.start() + (m.as_str().len() - m.as_str().trim_start().len()));
    let post = |upper_only: bool| {
        EXPORT_POST.captures_iter(text).find_map(|c| {
            let name = c.get(1).or(c.get(2)).or(c.get(3))?;
            (!upper_only || name.as_str() == "POST").then(|| c.get(0)).flatten()
        })
    };
    if name.starts_with("+server.") {
        return post(true).map(|m| (FsKind::SvelteKit, line_of(m), Some(SVELTEKIT)));
    }
    let in_remix_routes = follows(dirs, "app", "routes");
    if name.starts_with("route.") && dirs.contains(&"app") && !in_remix_routes {
        return post(true).map(|m| (FsKind::NextApp, line_of(m), Some(NEXT_APP)));
    }
    if in_remix_routes {
        let m = EXPORT_ACTION.find(text)?;
        let rr = imports.iter().any(|i| {
            i.source == "react-router" || i.source.starts_with("@react-router/") || i.source.contains("/+types/")
        });
        let remix = imports.iter().any(|i| i.source.starts_with("@remix-run/") || i.source == "@clerk/remix");
        // Neither import tells: the project's package.json decides (see `default_framework`).
        let fw = match (rr, remix) {
            (true, false) => Some(REACT_ROUTER),
            (_, true) => Some(REMIX),
            (false, false) => None,
        };
        return Some((FsKind::Remix, line_of(m), fw));
    }
    if follows(dirs, "server", "api") || follows(dirs, "server", "routes") {
        let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
        let method = stem.rsplit_once('.').map(|(_, m)| m);
        if matches!(method, Some("get" | "put" | "patch" | "delete" | "head" | "options")) {
            return None;
        }
        if !(text.contains("defineEventHandler") || text.contains("eventHandler")) {
            return None;
        }
        let m = EXPORT_DEFAULT.find(text)?;
        return Some((FsKind::Nuxt, line_of(m), Some(NUXT)));
    }
    if let Some(i) = dirs.iter().position(|d| *d == "pages") {
        if let Some(m) = post(false) {
            return Some((FsKind::Astro, line_of(m), Some(ASTRO)));
        }
        if dirs.get(i + 1) == Some(&"api") {
            let c = EXPORT_DEFAULT.captures(text)?;
            let whole = c.get(0)?;
            // `export default handler;` -> the line where `handler` is defined.
            let line = c.get(2).and_then(|n| def_line(text, lines, n.as_str())).unwrap_or_else(|| line_of(whole));
            return Some((FsKind::NextPages, line, Some(NEXT_PAGES)));
        }
    }
    None
}

fn def_line(text: &str, lines: &LineIndex, name: &str) -> Option<u32> {
    NAMED_FN
        .captures_iter(text)
        .chain(NAMED_CONST.captures_iter(text))
        .find(|c| c.get(1).is_some_and(|m| m.as_str() == name))
        .and_then(|c| c.get(1))
        .map(|m| lines.line_of(m.start()))
}

/// What one JS/TS file yields once, for every stage to read: the comment-masked text with its brackets
/// and lines, the imports (and the verifiers they name) and the in-file assignments.
struct JsFile<'a> {
    path: &'a str,
    raw: &'a str,
    lines: &'a LineIndex,
    brackets: Brackets,
    masked: String,
    imports: Vec<Import>,
    verifiers: Verifiers,
    locals: HashMap<String, String>,
    local_env: HashMap<String, SecretExpr>,
}

impl<'a> JsFile<'a> {
    /// Masks comments, matches brackets and reads imports once; assignments only when the file may
    /// hold module-level secrets (`with_assigns`).
    fn read(path: &'a str, raw: &'a str, lines: &'a LineIndex, with_assigns: bool) -> Self {
        let brackets = Brackets::new(raw, Syntax::Js);
        let masked = brackets.masked(raw);
        let imports = imports(&masked);
        let verifiers = verifiers(&imports);
        let (locals, local_env) = if with_assigns { locals(&masked) } else { Default::default() };
        JsFile { path, raw, lines, brackets, masked, imports, verifiers, locals, local_env }
    }

    fn text(&self) -> &str {
        &self.masked
    }

    fn ctx(&self) -> FileCtx<'_> {
        FileCtx {
            path: self.path,
            text: &self.masked,
            raw: self.raw,
            lang: Lang::Js,
            brackets: &self.brackets,
            verifiers: &self.verifiers,
            locals: &self.locals,
            local_env: &self.local_env,
        }
    }

    /// The module a local name was imported from.
    fn import_of(&self, local: &str) -> Option<String> {
        self.imports.iter().find(|i| i.local == local).map(|i| i.source.clone())
    }

    /// A route path argument: a `/...` string literal, directly or through an in-file constant.
    fn path_arg(&self, arg: &str) -> Option<String> {
        let lit = string_literal(arg).or_else(|| self.locals.get(arg).and_then(|rhs| string_literal(rhs)))?;
        lit.starts_with('/').then_some(lit)
    }

    /// A mounted router named by `expr`: the module it was imported from, else the local name.
    fn mount_target(&self, expr: &str) -> Option<MountTarget> {
        let name = target_name(expr)?;
        let head = expr.split(['.', '(']).next().unwrap_or("").trim();
        Some(match self.import_of(head) {
            Some(src) => MountTarget::Module(src),
            None => MountTarget::Local(name),
        })
    }
}

/// What the stages find in one file before the candidates are pruned.
#[derive(Default)]
struct Found {
    cands: Vec<Cand>,
    /// Registrations, each with the index of its inline candidate (to renumber after pruning).
    regs: Vec<(Registration, Option<usize>)>,
    mounts: Vec<Mount>,
}

/// One `obj.method(args)` router call: its position and its trimmed arguments.
struct RouterCall<'t> {
    obj: String,
    method: &'t str,
    start: usize,
    close: usize,
    line: u32,
    parts: Vec<&'t str>,
}

impl Found {
    /// Registers `target` for a router call: an inline function becomes a candidate of its own, a name
    /// a registration to resolve later.
    fn push_target(
        &mut self,
        lines: &LineIndex,
        call: &RouterCall<'_>,
        path: Option<String>,
        target: &str,
        fw: Option<&'static str>,
    ) {
        let (obj, line) = (call.obj.clone(), call.line);
        if is_inline_fn(target) {
            let idx = self.cands.len();
            self.cands.push(Cand {
                start: lines.line_start(call.start),
                end: call.close + 1,
                line,
                name: None,
                kind: UnitKind::Inline,
                framework: fw,
                handler_like: true,
            });
            self.regs
                .push((Registration { obj, path, framework: fw, target: RegTarget::Inline(idx), line }, Some(idx)));
        } else if let Some(name) = target_name(target) {
            self.regs.push((Registration { obj, path, framework: fw, target: RegTarget::Named(name), line }, None));
        }
    }
}

/// The handlers, registrations, mounts and module-level secrets of one JS/TS file. A file that can hold
/// none is dropped before masking; otherwise the file context is read once and each stage reads it: a
/// file-system routed module is one handler, other files are read for router calls and functions.
pub(crate) fn analyze(path: &str, raw: &str, lazy: &LazyLines<'_>, tree: Option<&AstFacts>) -> CodeFacts {
    let interest = interest(raw, path);
    let interesting = interest.units;
    let routes_config = is_routes_config(path, raw);
    let nest = tree.map_or(&[][..], |t| t.nest_routes.as_slice());
    if !interest.assigns && !routes_config && nest.is_empty() && !ROUTERISH.is_match(raw) {
        return CodeFacts::default();
    }
    let file = JsFile::read(path, raw, lazy.get(), interest.assigns);
    let mut facts = CodeFacts::default();
    if routes_config {
        facts.rr_routes = react_router_routes(file.text());
    }
    if interesting && let Some(cand) = fs_routed_cand(&file) {
        facts.units = evaluate(&file.ctx(), &[cand]);
        facts.assigns = global_assigns(&file.locals, &file.local_env);
        return facts;
    }

    let mut found = Found::default();
    find_router_calls(&file, framework_from_imports(&file.imports, file.text()), &mut found);
    if interesting {
        named_cands(file.text(), file.lines, &file.brackets, &mut found.cands);
        nest_controller_cands(nest, &mut found);
    }
    let (kept, remap) = keep_outermost_cands(found.cands);
    facts.mounts = found.mounts;
    if interesting {
        facts.units = evaluate(&file.ctx(), &kept);
    }
    if interest.assigns {
        facts.assigns = global_assigns(&file.locals, &file.local_env);
    }
    facts.registrations = renumber_registrations(found.regs, &remap, interesting);
    facts.imports = super::registered_imports(
        &facts.registrations,
        file.imports.iter().map(|i| (i.local.as_str(), i.source.as_str())),
    );
    facts
}

/// React Router's `routes.ts` maps paths to route modules: read it even when it names no webhook.
fn is_routes_config(path: &str, raw: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    matches!(name, "routes.ts" | "routes.js" | "routes.mts") && raw.contains("@react-router/dev/routes")
}

/// `route("path", "module")` entries of a React Router config, so route modules get their paths.
fn react_router_routes(text: &str) -> Vec<(String, String)> {
    RR_ROUTE
        .captures_iter(text)
        .filter_map(|c| Some((c.get(1)?.as_str().to_owned(), c.get(2)?.as_str().to_owned())))
        .collect()
}

/// A file-system routed module is one handler spanning the whole file: its route comes from its path,
/// so no router calls are read.
fn fs_routed_cand(file: &JsFile<'_>) -> Option<Cand> {
    let (kind, line, framework) = fs_module(file.path, file.text(), file.lines, &file.imports)?;
    Some(Cand {
        start: 0,
        end: file.text().len(),
        line,
        name: None,
        kind: UnitKind::Fs(kind),
        framework,
        handler_like: true,
    })
}

/// Router calls (`app.post`, `app.use`, `fastify.route`, `http.route`, `fastify.register`, ...) give
/// the registrations and mounts that tie handlers to paths; bounded in number and span.
fn find_router_calls(file: &JsFile<'_>, framework: Option<&'static str>, found: &mut Found) {
    let text = file.text();
    for c in REG_CALL.captures_iter(text).take(MAX_ROUTER_CALLS) {
        let (Some(whole), Some(method)) = (c.get(0), c.get(2)) else { continue };
        let paren = whole.end() - 1;
        let Some(close) = file.brackets.close_of(paren) else { continue };
        if close - paren > MAX_CALL_SPAN {
            continue; // a bundle wrapped in one call, not a route
        }
        let args = text.get(paren + 1..close).unwrap_or("");
        let call = RouterCall {
            obj: c.get(1).map_or("", |m| m.as_str()).to_owned(),
            method: method.as_str(),
            start: whole.start(),
            close,
            line: file.lines.line_of(whole.start()),
            parts: split_args(args).into_iter().map(|(s, e)| args[s..e].trim()).collect(),
        };
        router_call(file, framework, &call, found);
    }
}

/// One router call by method: a route (`post`, `all`, Hono `on`), a mount or middleware (`use`,
/// `route` with a path), a route object (`route({...})`) or a plugin with a prefix (`register`).
fn router_call(file: &JsFile<'_>, framework: Option<&'static str>, call: &RouterCall<'_>, found: &mut Found) {
    let parts = &call.parts;
    match call.method {
        "post" | "all" => {
            if parts.len() < 2 || call.obj == "axios" || call.obj == "http" && framework.is_none() {
                return;
            }
            let Some(path) = file.path_arg(parts[0]) else { return };
            found.push_target(file.lines, call, Some(path), parts[parts.len() - 1], framework);
        }
        "on" => {
            if parts.len() < 3 || !parts[0].contains("POST") {
                return;
            }
            let Some(path) = file.path_arg(parts[1]) else { return };
            found.push_target(file.lines, call, Some(path), parts[parts.len() - 1], framework.or(Some(HONO)));
        }
        "use" | "route" if parts.len() >= 2 && file.path_arg(parts[0]).is_some() => {
            mount_call(file, framework, call, found);
        }
        "route" if parts.first().is_some_and(|p| p.starts_with('{')) => {
            route_object(file, framework, call, found);
        }
        "register" if parts.len() >= 2 => {
            let Some(prefix) = PREFIX_FIELD.captures(parts[1]).and_then(|c| c.get(1)).map(|m| m.as_str().to_owned())
            else {
                return;
            };
            if let Some(target) = file.mount_target(parts[0]) {
                found.mounts.push(Mount { prefix, target });
            }
        }
        _ => {}
    }
}

/// `app.use("/x", router)` / `app.route("/x", sub)` mounts a router under a prefix; `app.use("/x",
/// (req, res) => ...)` is a handler for every method.
fn mount_call(file: &JsFile<'_>, framework: Option<&'static str>, call: &RouterCall<'_>, found: &mut Found) {
    let prefix = file.path_arg(call.parts[0]).unwrap_or_default();
    let last = call.parts[call.parts.len() - 1];
    if is_inline_fn(last) {
        if call.method == "use" {
            found.push_target(file.lines, call, Some(prefix), last, framework);
        }
        return;
    }
    if let Some(target) = file.mount_target(last) {
        found.mounts.push(Mount { prefix, target });
    }
}

/// Fastify / Convex: `route({ method, url | path, handler })` registers the handler when it takes POST.
fn route_object(file: &JsFile<'_>, framework: Option<&'static str>, call: &RouterCall<'_>, found: &mut Found) {
    let obj_text = call.parts[0].trim_start_matches('{').trim_end_matches('}');
    let mut path = None;
    let mut method_ok = true;
    let mut handler = None;
    for (s, e) in split_args(obj_text) {
        let field = obj_text[s..e].trim();
        let Some((k, v)) = field.split_once(':') else { continue };
        let v = v.trim();
        match k.trim().trim_matches(['"', '\'']) {
            "path" | "url" => path = string_literal(v).filter(|p| p.starts_with('/')),
            "method" => method_ok = v.to_ascii_uppercase().contains("POST"),
            "handler" => handler = Some(v),
            _ => {}
        }
    }
    let (Some(handler), true) = (handler, method_ok) else { return };
    let fw = if framework == Some(CONVEX) || file.text().contains("httpAction") {
        Some(CONVEX)
    } else {
        framework.or(Some(FASTIFY))
    };
    let inline = handler.contains("httpAction(") || is_inline_fn(handler);
    let target = if inline { "() => {}" } else { handler };
    found.push_target(file.lines, call, path, target, fw);
}

/// NestJS: each `@Post()` method of a `@Controller()` class (read from the parse tree) is a routed body.
fn nest_controller_cands(nest: &[NestRoute], found: &mut Found) {
    for n in nest {
        let idx = found.cands.len();
        found.cands.push(Cand {
            start: n.start,
            end: n.end,
            line: n.line,
            name: Some(n.name.clone()),
            kind: UnitKind::Inline,
            framework: Some(NESTJS),
            handler_like: true,
        });
        let reg = Registration {
            obj: String::new(),
            path: Some(n.route.clone()),
            framework: Some(NESTJS),
            target: RegTarget::Inline(idx),
            line: n.decorator_line,
        };
        found.regs.push((reg, Some(idx)));
    }
}

/// One body must not count twice: keep innermost inline bodies, drop named functions that hold (or sit
/// in) an inline body, and named functions nested in other named functions. Returns the kept candidates
/// and, per old index, its new index.
fn keep_outermost_cands(cands: Vec<Cand>) -> (Vec<Cand>, Vec<Option<usize>>) {
    let inline_spans: Vec<(usize, usize)> =
        cands.iter().filter(|c| c.kind == UnitKind::Inline).map(|c| (c.start, c.end)).collect();
    let keep: Vec<bool> = cands
        .iter()
        .map(|c| match c.kind {
            UnitKind::Named => {
                !inline_spans.iter().any(|&(s, e)| c.start <= s && e <= c.end)
                    && !inline_spans.iter().any(|&(s, e)| s <= c.start && c.end <= e)
            }
            _ => true,
        })
        .collect();
    let named_spans: Vec<(usize, usize)> = cands
        .iter()
        .zip(&keep)
        .filter(|(c, k)| **k && c.kind == UnitKind::Named)
        .map(|(c, _)| (c.start, c.end))
        .collect();
    let mut remap = vec![None; cands.len()];
    let mut kept = Vec::new();
    for (i, c) in cands.into_iter().enumerate() {
        let nested = c.kind == UnitKind::Named
            && named_spans.iter().any(|&(s, e)| s <= c.start && c.end <= e && (s, e) != (c.start, c.end));
        if keep[i] && !nested {
            remap[i] = Some(kept.len());
            kept.push(c);
        }
    }
    (kept, remap)
}

/// Inline registrations point at candidates by index: renumber them to the kept candidates and drop
/// those whose body was pruned (or not evaluated, when the file holds no units).
fn renumber_registrations(
    regs: Vec<(Registration, Option<usize>)>,
    remap: &[Option<usize>],
    interesting: bool,
) -> Vec<Registration> {
    let mut out = Vec::new();
    for (mut reg, idx) in regs {
        if let Some(i) = idx {
            match remap.get(i).copied().flatten() {
                Some(j) if interesting => reg.target = RegTarget::Inline(j),
                _ => continue,
            }
        }
        out.push(reg);
    }
    out
}

/// Router calls read per file, and the longest call read: bounded work on minified bundles.
const MAX_ROUTER_CALLS: usize = 2000;
const MAX_CALL_SPAN: usize = 256 * 1024;

static PREFIX_FIELD: LazyLock<Regex> = LazyLock::new(|| re(r#"prefix\s*:\s*["'`](/[^"'`]*)["'`]"#));

fn named_cands(text: &str, lines: &LineIndex, brackets: &Brackets, cands: &mut Vec<Cand>) {
    for c in NAMED_FN.captures_iter(text) {
        let (Some(whole), Some(name)) = (c.get(0), c.get(1)) else { continue };
        let paren = whole.end() - 1;
        let Some(params_end) = brackets.close_of(paren) else { continue };
        let end = match brackets.next_open(params_end + 1) {
            Some((open, close)) if text.as_bytes().get(open) == Some(&b'{') && gap_ok(text, params_end + 1, open) => {
                close + 1
            }
            _ => continue,
        };
        let params = text.get(paren..params_end).unwrap_or("");
        cands.push(Cand {
            start: lines.line_start(name.start()),
            end,
            line: lines.line_of(name.start()),
            name: Some(name.as_str().to_owned()),
            kind: UnitKind::Named,
            framework: None,
            handler_like: HANDLER_PARAMS.is_match(params),
        });
    }
    for c in NAMED_CONST.captures_iter(text) {
        let (Some(whole), Some(name)) = (c.get(0), c.get(1)) else { continue };
        let after = whole.end();
        let (end, params, wrapped) = if c.get(2).is_some() {
            // `= function (...) {...}`
            let Some((open, close)) = brackets.next_open(after) else { continue };
            let Some((bopen, bclose)) = brackets.next_open(close + 1) else { continue };
            if text.as_bytes().get(bopen) != Some(&b'{') {
                continue;
            }
            (bclose + 1, text.get(open..close).unwrap_or(""), false)
        } else if c.get(3).is_some() {
            // `= (params) => body`
            let paren = after - 1;
            let Some(close) = brackets.close_of(paren) else { continue };
            let rest = text.get(close + 1..).unwrap_or("");
            let rest_head = crate::text::head(rest, 200);
            let Some(arrow) = rest_head.find("=>") else { continue };
            let body_from = close + 1 + arrow + 2;
            (body_end(text, brackets, body_from), text.get(paren..close).unwrap_or(""), false)
        } else if let Some(p) = c.get(4) {
            // `= param => body`
            (body_end(text, brackets, after), p.as_str(), false)
        } else {
            // `= httpAction(...)`, `= defineEventHandler(...)`
            let paren = after - 1;
            let Some(close) = brackets.close_of(paren) else { continue };
            (close + 1, "", true)
        };
        cands.push(Cand {
            start: lines.line_start(name.start()),
            end,
            line: lines.line_of(name.start()),
            name: Some(name.as_str().to_owned()),
            kind: UnitKind::Named,
            framework: None,
            handler_like: wrapped || HANDLER_PARAMS.is_match(params),
        });
    }
}

/// Between a parameter list and a body only a return type may stand (no statement).
fn gap_ok(text: &str, from: usize, to: usize) -> bool {
    let gap = text.get(from..to).unwrap_or("");
    let g = gap.trim();
    g.is_empty() || (g.starts_with(':') && !g.contains(';') && gap.len() < 200)
}

/// The end of an arrow function body starting after `=>` at `from`.
fn body_end(text: &str, brackets: &Brackets, from: usize) -> usize {
    let rest = text.get(from..).unwrap_or("");
    let skip = rest.len() - rest.trim_start().len();
    let at = from + skip;
    match text.as_bytes().get(at) {
        Some(b'{' | b'(') => brackets.close_of(at).map_or(text.len(), |c| c + 1),
        _ => text[at..].find('\n').map_or(text.len(), |p| at + p),
    }
}

type Locals = (HashMap<String, String>, HashMap<String, SecretExpr>);

fn locals(text: &str) -> Locals {
    let mut locals: HashMap<String, String> = HashMap::new();
    for c in LOCAL_ASSIGN.captures_iter(text) {
        if let (Some(n), Some(v)) = (c.get(1), c.get(2)) {
            locals.entry(n.as_str().to_owned()).or_insert_with(|| v.as_str().trim().to_owned());
        }
    }
    let mut env: HashMap<String, SecretExpr> = HashMap::new();
    for c in ENV_IMPORT.captures_iter(text) {
        for (local, imported) in named_list(c.get(1).map_or("", |m| m.as_str())) {
            env.insert(local, SecretExpr::Env(imported));
        }
    }
    for c in DESTRUCTURE_ENV.captures_iter(text) {
        let nuxt = c.get(2).is_some_and(|m| m.as_str().starts_with("useRuntimeConfig"));
        for (local, imported) in named_list(c.get(1).map_or("", |m| m.as_str())) {
            let imported = imported.split('=').next().unwrap_or("").trim().to_owned();
            let local = local.split('=').next().unwrap_or("").trim().to_owned();
            let v = if nuxt { nuxt_env(&imported) } else { imported };
            env.insert(local, SecretExpr::Env(v));
        }
    }
    (locals, env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::Verification;

    fn run(path: &str, text: &str) -> CodeFacts {
        analyze(path, text, &LazyLines::new(text), None)
    }

    #[test]
    fn next_app_router_with_clerk_helper() {
        let src = "import { verifyWebhook } from '@clerk/nextjs/webhooks'\n\nexport async function POST(req: Request) {\n  const evt = await verifyWebhook(req)\n  if (evt.type === 'user.created') {}\n}\n";
        let f = run("app/api/webhooks/clerk/route.ts", src);
        assert_eq!(f.units.len(), 1);
        let u = &f.units[0];
        assert_eq!(u.line, 3);
        assert_eq!(u.verification, Verification::ClerkVerifyWebhook);
        assert_eq!(u.secret, SecretExpr::Env("CLERK_WEBHOOK_SIGNING_SECRET".into()));
        assert!(u.events.contains("user.created"));
    }

    #[test]
    fn express_inline_and_named() {
        let src = "import express from 'express'\nimport { Webhook } from 'svix'\nconst app = express()\nconst SECRET = process.env.CLERK_WEBHOOK_SECRET\napp.post('/webhooks/clerk', express.raw({ type: 'application/json' }), (req, res) => {\n  const wh = new Webhook(SECRET)\n  const evt = wh.verify(req.body, req.headers)\n})\napp.post('/other', otherHandler)\n";
        let f = run("server.ts", src);
        assert_eq!(f.units.len(), 1);
        assert_eq!(f.units[0].verification, Verification::Svix);
        assert_eq!(f.units[0].secret, SecretExpr::Env("CLERK_WEBHOOK_SECRET".into()));
        assert_eq!(f.registrations.len(), 2);
        assert_eq!(f.registrations[0].path.as_deref(), Some("/webhooks/clerk"));
        assert_eq!(f.registrations[0].framework, Some(EXPRESS));
    }

    #[test]
    fn convex_route_object() {
        let src = "import { httpRouter } from 'convex/server'\nimport { httpAction } from './_generated/server'\nconst http = httpRouter()\nhttp.route({\n  path: '/clerk-users-webhook',\n  method: 'POST',\n  handler: handleClerkWebhook,\n})\nexport default http\n";
        let f = run("convex/http.ts", src);
        assert_eq!(f.registrations.len(), 1);
        assert_eq!(f.registrations[0].framework, Some(CONVEX));
        assert!(matches!(&f.registrations[0].target, RegTarget::Named(n) if n == "handleClerkWebhook"));
    }
}
