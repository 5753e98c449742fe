//! Go: net/http (`http.HandleFunc`, `mux.HandleFunc("POST /x", ...)`), chi (`r.Post`, `r.Route`), gin
//! (`r.POST`, `Group`) and echo (`e.POST`, `Group`).

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use super::{
    CHI, Cand, CodeFacts, ECHO, FileCtx, GIN, GO_NET_HTTP, Lang, RegTarget, Registration, SecretExpr, UnitKind,
    Verifiers, evaluate, global_assigns, interest, is_inline_fn, join_route, re, string_literal, target_name,
};
use crate::text::{Brackets, LazyLines, Syntax, split_args};

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

pub(crate) fn analyze(path: &str, raw: &str, lazy: &LazyLines<'_>) -> CodeFacts {
    let interest = interest(raw, path);
    let interesting = interest.units;
    if !interest.assigns && !ROUTERISH.is_match(raw) {
        return CodeFacts::default();
    }
    let lines = lazy.get();
    let brackets = Brackets::new(raw, Syntax::Go);
    let masked = brackets.masked(raw);
    let text = masked.as_str();
    let mut facts = CodeFacts::default();
    let imports = imports(text);
    let mut verifiers = Verifiers::default();
    for (name, path) in &imports {
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
    let framework = if imports.iter().any(|(_, p)| p.contains("github.com/go-chi/chi")) {
        CHI
    } else if imports.iter().any(|(_, p)| p.contains("github.com/gin-gonic/gin")) {
        GIN
    } else if imports.iter().any(|(_, p)| p.contains("github.com/labstack/echo")) {
        ECHO
    } else {
        GO_NET_HTTP
    };
    let mut locals: HashMap<String, String> = HashMap::new();
    if interest.assigns {
        for c in SHORT_ASSIGN.captures_iter(text).chain(VAR_ASSIGN.captures_iter(text)) {
            if let (Some(n), Some(v)) = (c.get(1), c.get(2)) {
                locals.entry(n.as_str().to_owned()).or_insert_with(|| v.as_str().trim().to_owned());
            }
        }
    }
    let local_env: HashMap<String, SecretExpr> = HashMap::new();
    let ctx = FileCtx {
        path,
        text,
        raw,
        lang: Lang::Go,
        brackets: &brackets,
        verifiers: &verifiers,
        locals: &locals,
        local_env: &local_env,
    };

    // gin groups: `api := r.Group("/api")`; chi sub-routers: `r.Route("/webhooks", func(r chi.Router) {...})`.
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
        if let Some(close) = brackets.close_of(paren) {
            route_spans.push((paren, close, p.as_str().to_owned()));
        }
    }

    let mut cands: Vec<Cand> = Vec::new();
    let mut regs: Vec<Registration> = Vec::new();
    for c in REG.captures_iter(text).take(2000) {
        let (Some(whole), Some(obj), Some(method)) = (c.get(0), c.get(1), c.get(2)) else { continue };
        let paren = whole.end() - 1;
        let Some(close) = brackets.close_of(paren) else { continue };
        let args = text.get(paren + 1..close).unwrap_or("");
        let parts: Vec<&str> = split_args(args).into_iter().map(|(s, e)| args[s..e].trim()).collect();
        let (path_arg, target) = match method.as_str() {
            "Method" | "MethodFunc" => {
                if parts.len() < 3 || !(parts[0].contains("POST") || parts[0].contains("MethodPost")) {
                    continue;
                }
                (parts[1], parts[2])
            }
            _ => {
                if parts.len() < 2 {
                    continue;
                }
                (parts[0], parts[parts.len() - 1])
            }
        };
        let Some(mut pattern) = string_literal(path_arg) else { continue };
        // Go 1.22 patterns: `"POST /webhooks"`, `"example.com/webhooks"`.
        if let Some((m, rest)) = pattern.split_once(' ') {
            if m != "POST" {
                continue;
            }
            pattern = rest.trim().to_owned();
        }
        let Some(slash) = pattern.find('/') else { continue };
        let pattern = pattern[slash..].to_owned();
        let mut prefix = groups.get(obj.as_str()).cloned().unwrap_or_default();
        let mut spans: Vec<&(usize, usize, String)> =
            route_spans.iter().filter(|(s, e, _)| *s < whole.start() && whole.start() < *e).collect();
        spans.sort_by_key(|s| s.0);
        for (_, _, p) in spans {
            prefix = join_route(&prefix, p);
        }
        let route = join_route(&prefix, &pattern);
        let fw = match method.as_str() {
            "POST" | "Any" if framework == ECHO => Some(ECHO),
            "POST" | "Any" => Some(GIN),
            "Post" | "Method" | "MethodFunc" => Some(CHI),
            _ => Some(framework),
        };
        let line = lines.line_of(whole.start());
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
            regs.push(Registration {
                obj: obj.as_str().to_owned(),
                path: Some(route),
                framework: fw,
                target: RegTarget::Inline(idx),
                line,
            });
        } else if let Some(name) = target_name(target) {
            regs.push(Registration {
                obj: obj.as_str().to_owned(),
                path: Some(route),
                framework: fw,
                target: RegTarget::Named(name),
                line,
            });
        }
    }

    if interesting {
        for c in FUNC.captures_iter(text) {
            let (Some(whole), Some(name)) = (c.get(0), c.get(1)) else { continue };
            let Some(end) = func_body_end(text, &brackets, whole.end() - 1) else { continue };
            if cands.iter().any(|d| d.kind == UnitKind::Inline && d.start >= whole.start() && d.end <= end) {
                continue;
            }
            let sig_end = text[whole.start()..end].find('{').map_or(end, |i| whole.start() + i);
            let sig = text.get(whole.start()..sig_end).unwrap_or("");
            cands.push(Cand {
                start: whole.start(),
                end,
                line: lines.line_of(whole.start()),
                name: Some(name.as_str().to_owned()),
                kind: UnitKind::Named,
                framework: Some(framework),
                handler_like: HANDLER_SIG.is_match(sig),
            });
        }
        facts.units = evaluate(&ctx, &cands);
        facts.registrations = regs;
    } else {
        facts.registrations = regs.into_iter().filter(|r| matches!(r.target, RegTarget::Named(_))).collect();
    }
    if interest.assigns {
        facts.assigns = global_assigns(&locals, &local_env);
    }
    facts
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
