//! Go: net/http (`http.HandleFunc`, `mux.HandleFunc("POST /x", ...)`), chi (`r.Post`, `r.Route`), gin
//! (`r.POST`, `Group`) and echo (`e.POST`, `Group`).

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use super::{
    CHI, Cand, CodeFacts, ECHO, FileCtx, GIN, GO_NET_HTTP, Lang, RegTarget, Registration, SecretExpr, UnitKind,
    Verifiers, evaluate, global_assigns, interest, is_inline_fn, join_route, re, string_literal, target_name,
};
use crate::text::{Brackets, LazyLines, LineIndex, Syntax, split_args};

static ROUTERISH: LazyLock<Regex> =
    LazyLock::new(|| re(r"\.(?:HandleFunc|Handle|Post|POST|Any|Method|MethodFunc|Group|Route)\s*\("));
static IMPORT_BLOCK: LazyLock<Regex> = LazyLock::new(|| re(r"(?s)\bimport\s*\((.*?)\)"));
static IMPORT_ONE: LazyLock<Regex> = LazyLock::new(|| re(r#"(?m)^\s*import\s+([A-Za-z_.]\w*\s+)?"([^"]+)""#));
static IMPORT_SPEC: LazyLock<Regex> = LazyLock::new(|| re(r#"(?m)^\s*([A-Za-z_.]\w*\s+)?"([^"]+)""#));
static REG: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b([A-Za-z_]\w*)\s*\.\s*(HandleFunc|Handle|Post|POST|Any|Method|MethodFunc)\s*\("));
static GIN_GROUP: LazyLock<Regex> =
    LazyLock::new(|| re(r#"([A-Za-z_]\w*)\s*:?=\s*([A-Za-z_]\w*)\.Group\(\s*"([^"]*)""#));
static CHI_ROUTE: LazyLock<Regex> = LazyLock::new(|| re(r#"\b[A-Za-z_]\w*\.Route\(\s*"([^"]*)"\s*,"#));
static FUNC: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?m)^func\s+(?:\([^)]*\)\s*)?([A-Za-z_]\w*)\s*(?:\[[^\]\n]*\])?\s*\("));
static HANDLER_SIG: LazyLock<Regex> = LazyLock::new(|| {
    re(r"http\.ResponseWriter|\*gin\.Context|echo\.Context|http\.HandlerFunc|http\.Handler\b|gin\.HandlerFunc")
});
static SHORT_ASSIGN: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)([A-Za-z_]\w*)\s*:=\s*([^\n]+)"));
static VAR_ASSIGN: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?m)^[ \t]*(?:const|var)\s+([A-Za-z_]\w*)\s*(?:[\w.\[\]*]+\s*)?=\s*([^\n]+)"));

/// (package name as used in code, import path).
fn imports(text: &str) -> Vec<(String, String)> {
    let mut specs: Vec<(Option<String>, String)> = Vec::new();
    for c in IMPORT_BLOCK.captures_iter(text) {
        for s in IMPORT_SPEC.captures_iter(c.get(1).map_or("", |m| m.as_str())) {
            if let Some(p) = s.get(2) {
                specs.push((s.get(1).map(|a| a.as_str().trim().to_owned()), p.as_str().to_owned()));
            }
        }
    }
    for s in IMPORT_ONE.captures_iter(text) {
        if let Some(p) = s.get(2) {
            specs.push((s.get(1).map(|a| a.as_str().trim().to_owned()), p.as_str().to_owned()));
        }
    }
    specs
        .into_iter()
        .map(|(alias, path)| {
            let name = alias.unwrap_or_else(|| default_package_name(&path));
            (name, path)
        })
        .collect()
}

fn default_package_name(path: &str) -> String {
    if path.contains("svix-webhooks") {
        return "svix".into();
    }
    if path.contains("standard-webhooks") {
        return "standardwebhooks".into();
    }
    let mut parts = path.rsplit('/');
    let last = parts.next().unwrap_or(path);
    // `github.com/go-chi/chi/v5` is package `chi`.
    let last = if last.len() > 1 && last.starts_with('v') && last[1..].bytes().all(|b| b.is_ascii_digit()) {
        parts.next().unwrap_or(last)
    } else {
        last
    };
    last.trim_start_matches("go-").to_owned()
}

/// What one Go file yields once, for every stage to read: the comment-masked text with its brackets and
/// lines, the imports (and the verifiers and router framework they name) and the in-file assignments.
struct GoFile<'a> {
    path: &'a str,
    raw: &'a str,
    lines: &'a LineIndex,
    brackets: Brackets,
    masked: String,
    verifiers: Verifiers,
    framework: &'static str,
    locals: HashMap<String, String>,
    /// Go binds no names straight to env vars the way JS destructuring does: always empty.
    local_env: HashMap<String, SecretExpr>,
}

impl<'a> GoFile<'a> {
    /// Masks comments, matches brackets and reads imports once; assignments only when the file may
    /// hold module-level secrets (`with_assigns`).
    fn read(path: &'a str, raw: &'a str, lines: &'a LineIndex, with_assigns: bool) -> Self {
        let brackets = Brackets::new(raw, Syntax::Go);
        let masked = brackets.masked(raw);
        let imports = imports(&masked);
        let verifiers = verifiers(&imports);
        let framework = framework_of(&imports);
        let mut locals: HashMap<String, String> = HashMap::new();
        if with_assigns {
            for c in SHORT_ASSIGN.captures_iter(&masked).chain(VAR_ASSIGN.captures_iter(&masked)) {
                if let (Some(n), Some(v)) = (c.get(1), c.get(2)) {
                    locals.entry(n.as_str().to_owned()).or_insert_with(|| v.as_str().trim().to_owned());
                }
            }
        }
        GoFile { path, raw, lines, brackets, masked, verifiers, framework, locals, local_env: HashMap::new() }
    }

    fn text(&self) -> &str {
        &self.masked
    }

    fn ctx(&self) -> FileCtx<'_> {
        FileCtx {
            path: self.path,
            text: &self.masked,
            raw: self.raw,
            lang: Lang::Go,
            brackets: &self.brackets,
            verifiers: &self.verifiers,
            locals: &self.locals,
            local_env: &self.local_env,
        }
    }
}

/// Verifier constructors (`svix.NewWebhook`, ...) under the package names this file imports them as.
fn verifiers(imports: &[(String, String)]) -> Verifiers {
    let mut verifiers = Verifiers::default();
    for (name, path) in imports {
        if path.contains("github.com/clerk/") {
            verifiers.clerk_import = true;
        }
        if path.contains("svix-webhooks") {
            verifiers.svix.push(format!("{name}.NewWebhook"));
            verifiers.svix.push(format!("{name}.NewWebhookRaw"));
        } else if path.contains("standard-webhooks") {
            verifiers.standard.push(format!("{name}.NewWebhook"));
            verifiers.standard.push(format!("{name}.NewWebhookRaw"));
        }
    }
    verifiers
}

/// The router framework the imports name; net/http when none.
fn framework_of(imports: &[(String, String)]) -> &'static str {
    if imports.iter().any(|(_, p)| p.contains("github.com/go-chi/chi")) {
        CHI
    } else if imports.iter().any(|(_, p)| p.contains("github.com/gin-gonic/gin")) {
        GIN
    } else if imports.iter().any(|(_, p)| p.contains("github.com/labstack/echo")) {
        ECHO
    } else {
        GO_NET_HTTP
    }
}

/// Same-file route prefixes: gin / echo groups by variable, chi `Route` closures by span.
struct Prefixes {
    /// `api := r.Group("/api")`: variable -> prefix (groups of groups joined).
    groups: HashMap<String, String>,
    /// `r.Route("/webhooks", func(r chi.Router) {...})`: (open paren, close paren, prefix).
    route_spans: Vec<(usize, usize, String)>,
}

impl Prefixes {
    fn read(file: &GoFile<'_>) -> Self {
        let text = file.text();
        let mut groups: HashMap<String, String> = HashMap::new();
        for c in GIN_GROUP.captures_iter(text) {
            let (Some(var), Some(parent), Some(p)) = (c.get(1), c.get(2), c.get(3)) else { continue };
            let base = groups.get(parent.as_str()).cloned().unwrap_or_default();
            groups.insert(var.as_str().to_owned(), join_route(&base, p.as_str()));
        }
        let mut route_spans: Vec<(usize, usize, String)> = Vec::new();
        for c in CHI_ROUTE.captures_iter(text) {
            let (Some(whole), Some(p)) = (c.get(0), c.get(1)) else { continue };
            let Some(paren) = whole.as_str().find('(').map(|i| whole.start() + i) else { continue };
            if let Some(close) = file.brackets.close_of(paren) {
                route_spans.push((paren, close, p.as_str().to_owned()));
            }
        }
        Prefixes { groups, route_spans }
    }

    /// The prefix of a call on `obj` at byte `at`: its group, then the enclosing `Route` closures
    /// outermost first.
    fn at(&self, obj: &str, at: usize) -> String {
        let mut prefix = self.groups.get(obj).cloned().unwrap_or_default();
        let mut spans: Vec<&(usize, usize, String)> =
            self.route_spans.iter().filter(|(s, e, _)| *s < at && at < *e).collect();
        spans.sort_by_key(|s| s.0);
        for (_, _, p) in spans {
            prefix = join_route(&prefix, p);
        }
        prefix
    }
}

/// The handlers, registrations and module-level secrets of one Go file. A file that can hold none is
/// dropped before masking; otherwise the file context is read once and each stage reads it.
pub(crate) fn analyze(path: &str, raw: &str, lazy: &LazyLines<'_>) -> CodeFacts {
    let interest = interest(raw, path);
    let interesting = interest.units;
    if !interest.assigns && !ROUTERISH.is_match(raw) {
        return CodeFacts::default();
    }
    let file = GoFile::read(path, raw, lazy.get(), interest.assigns);
    let prefixes = Prefixes::read(&file);
    let mut cands: Vec<Cand> = Vec::new();
    let mut regs: Vec<Registration> = Vec::new();
    for c in REG.captures_iter(file.text()).take(2000) {
        let (Some(whole), Some(obj), Some(method)) = (c.get(0), c.get(1), c.get(2)) else { continue };
        router_call(&file, &prefixes, whole, obj.as_str(), method.as_str(), &mut cands, &mut regs);
    }

    let mut facts = CodeFacts::default();
    if interesting {
        func_cands(&file, &mut cands);
        facts.units = evaluate(&file.ctx(), &cands);
        facts.registrations = regs;
    } else {
        facts.registrations = regs.into_iter().filter(|r| matches!(r.target, RegTarget::Named(_))).collect();
    }
    if interest.assigns {
        facts.assigns = global_assigns(&file.locals, &file.local_env);
    }
    facts
}

/// The path and handler arguments of a POST route call: `Method("POST", path, h)` or `X(path, ..., h)`.
fn route_args<'p>(method: &str, parts: &[&'p str]) -> Option<(&'p str, &'p str)> {
    match method {
        "Method" | "MethodFunc" => {
            if parts.len() < 3 || !(parts[0].contains("POST") || parts[0].contains("MethodPost")) {
                return None;
            }
            Some((parts[1], parts[2]))
        }
        _ => (parts.len() >= 2).then(|| (parts[0], parts[parts.len() - 1])),
    }
}

/// The path of a route pattern: Go 1.22 patterns name a method (`"POST /webhooks"`, only POST kept) or
/// a host (`"example.com/webhooks"`, dropped).
fn pattern_path(mut pattern: String) -> Option<String> {
    if let Some((m, rest)) = pattern.split_once(' ') {
        if m != "POST" {
            return None;
        }
        pattern = rest.trim().to_owned();
    }
    let slash = pattern.find('/')?;
    Some(pattern[slash..].to_owned())
}

/// One router call (`HandleFunc`, `Post`, `POST`, `Method`, ...): a registration under the same-file
/// prefixes; an inline handler is a candidate of its own.
fn router_call(
    file: &GoFile<'_>,
    prefixes: &Prefixes,
    whole: regex::Match<'_>,
    obj: &str,
    method: &str,
    cands: &mut Vec<Cand>,
    regs: &mut Vec<Registration>,
) {
    let (text, lines) = (file.text(), file.lines);
    let paren = whole.end() - 1;
    let Some(close) = file.brackets.close_of(paren) else { return };
    let args = text.get(paren + 1..close).unwrap_or("");
    let parts: Vec<&str> = split_args(args).into_iter().map(|(s, e)| args[s..e].trim()).collect();
    let Some((path_arg, target)) = route_args(method, &parts) else { return };
    let Some(pattern) = string_literal(path_arg).and_then(pattern_path) else { return };
    let route = join_route(&prefixes.at(obj, whole.start()), &pattern);
    let fw = match method {
        "POST" | "Any" if file.framework == ECHO => Some(ECHO),
        "POST" | "Any" => Some(GIN),
        "Post" | "Method" | "MethodFunc" => Some(CHI),
        _ => Some(file.framework),
    };
    let line = lines.line_of(whole.start());
    let obj = obj.to_owned();
    if is_inline_fn(target) {
        let idx = cands.len();
        cands.push(Cand {
            start: lines.line_start(whole.start()),
            end: close + 1,
            line,
            name: None,
            kind: UnitKind::Inline,
            framework: fw,
            handler_like: true,
        });
        regs.push(Registration { obj, path: Some(route), framework: fw, target: RegTarget::Inline(idx), line });
    } else if let Some(name) = target_name(target) {
        regs.push(Registration { obj, path: Some(route), framework: fw, target: RegTarget::Named(name), line });
    }
}

/// Top-level functions and methods not holding an inline route: bodies that registrations by name
/// resolve to; a handler signature marks them handler-like.
fn func_cands(file: &GoFile<'_>, cands: &mut Vec<Cand>) {
    let text = file.text();
    for c in FUNC.captures_iter(text) {
        let (Some(whole), Some(name)) = (c.get(0), c.get(1)) else { continue };
        let Some(end) = func_body_end(text, &file.brackets, whole.end() - 1) else { continue };
        if cands.iter().any(|d| d.kind == UnitKind::Inline && d.start >= whole.start() && d.end <= end) {
            continue;
        }
        let sig_end = text[whole.start()..end].find('{').map_or(end, |i| whole.start() + i);
        let sig = text.get(whole.start()..sig_end).unwrap_or("");
        cands.push(Cand {
            start: whole.start(),
            end,
            line: file.lines.line_of(whole.start()),
            name: Some(name.as_str().to_owned()),
            kind: UnitKind::Named,
            framework: Some(file.framework),
            handler_like: HANDLER_SIG.is_match(sig),
        });
    }
}

/// The end of a function body: skip the parameter and result lists, then match the body's braces.
fn func_body_end(text: &str, brackets: &Brackets, params_open: usize) -> Option<usize> {
    let mut pos = brackets.close_of(params_open)? + 1;
    for _ in 0..8 {
        let (open, close) = brackets.next_open(pos)?;
        let gap = text.get(pos..open).unwrap_or("");
        if gap.contains('\n') && !gap.trim().is_empty() && !gap.trim_end().ends_with(['(', ',']) {
            // A declaration without a body on this line (e.g. an interface method): give up.
            if gap.lines().count() > 2 {
                return None;
            }
        }
        match text.as_bytes().get(open) {
            Some(b'{') if !(gap.trim_end().ends_with("interface") || gap.trim_end().ends_with("struct")) => {
                return Some(close + 1);
            }
            _ => pos = close + 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::Verification;

    #[test]
    fn net_http_with_svix() {
        let src = "package main\n\nimport (\n\t\"net/http\"\n\t\"os\"\n\n\tsvix \"github.com/svix/svix-webhooks/go\"\n)\n\nfunc main() {\n\thttp.HandleFunc(\"/webhooks/clerk\", handleClerkWebhook)\n}\n\nfunc handleClerkWebhook(w http.ResponseWriter, r *http.Request) {\n\twh, err := svix.NewWebhook(os.Getenv(\"CLERK_WEBHOOK_SECRET\"))\n\t_ = wh.Verify(payload, r.Header)\n\t// \"user.created\"\n}\n";
        let f = analyze("main.go", src, &LazyLines::new(src));
        assert_eq!(f.registrations.len(), 1);
        assert_eq!(f.registrations[0].path.as_deref(), Some("/webhooks/clerk"));
        let u = f.units.iter().find(|u| u.name.as_deref() == Some("handleClerkWebhook"));
        let u = u.expect("handler unit");
        assert_eq!(u.line, 14);
        assert_eq!(u.verification, Verification::Svix);
        assert_eq!(u.secret, SecretExpr::Env("CLERK_WEBHOOK_SECRET".into()));
    }

    #[test]
    fn gin_groups_and_chi_routes() {
        let src = "package main\nimport \"github.com/gin-gonic/gin\"\nfunc main() {\n\tr := gin.Default()\n\tapi := r.Group(\"/api\")\n\thooks := api.Group(\"/webhooks\")\n\thooks.POST(\"/clerk\", clerkWebhook)\n}\n";
        let f = analyze("main.go", src, &LazyLines::new(src));
        assert_eq!(f.registrations[0].path.as_deref(), Some("/api/webhooks/clerk"));
        let src = "package main\nimport \"github.com/go-chi/chi/v5\"\nfunc routes(r chi.Router) {\n\tr.Route(\"/webhooks\", func(r chi.Router) {\n\t\tr.Post(\"/clerk\", h.Clerk)\n\t})\n}\n";
        let f = analyze("routes.go", src, &LazyLines::new(src));
        assert_eq!(f.registrations[0].path.as_deref(), Some("/webhooks/clerk"));
        assert_eq!(default_package_name("github.com/go-chi/chi/v5"), "chi");
    }
}
