//! Clerk webhook handlers in TypeScript/JavaScript, Python and Go.
//!
//! Each source file is cut into *candidates*: a file-system routed module (Next.js app/pages routers,
//! Remix/React Router, SvelteKit, Astro, Nuxt: the whole file), a router call with an inline handler
//! (`app.post('/x', async (req, res) => ...)`, `@app.post("/x")` + `def`, `http.HandleFunc("/x",
//! func(...) {...})`, Convex `http.route({ path, handler: httpAction(...) })`), or a named function
//! (top-level `function`/arrow constant, `def`/`class`, `func`). A candidate's *region* is its own span
//! plus the file's top-level code (imports, module constants); when a file has one candidate the region
//! is the whole file. Comments are blanked out before the code is read (a commented-out
//! `verifyWebhook(req)` verifies nothing, an event named in a comment is not handled), but still count as
//! Clerk evidence. Only files whose text or path says `webhook` or `svix`, or that name a Clerk event,
//! are cut into candidates (every rule below needs one of these); router calls and module-level
//! assignments are collected from other files too.
//!
//! **Which candidates are reported.** A file-system routed module, a router call's inline body, a named
//! function some router call points at (`r.POST("/x", clerkWebhook)`, Django `path("x/", views.hook)`,
//! linked by name: same file, then same folder, then same project, then unique in the repo), or else a
//! handler-shaped named function (`(req, res)`, `request`, `http.ResponseWriter`, `*gin.Context`...)
//! that no other candidate calls, reported with a null route. It must show
//! - Clerk evidence: the word `clerk` in its span, its file path or its route; Clerk's `WebhookEvent`
//!   (or `UserJSON`...) type from an `@clerk/*` import; Clerk's `verifyWebhook`; or Clerk event
//!   literals together with svix verification or `svix-*` headers (Clerk delivers through Svix);
//! - and a webhook signal: a signature verification, Clerk event literals (`"user.created"`...), the
//!   `WebhookEvent` type, reading `svix-*` headers, or a route/path naming both `clerk` and `webhook`.
//!
//! A named function another candidate calls is a callee, not a handler: a verify-like callee
//! (`verifyClerkWebhook(req)`, `validateRequest(req)`) that verifies lends its verification and secret
//! to an unverified caller, and the Clerk events a callee handles (`handleClerkEvent(evt)`) are added to
//! the caller's (one level deep).
//!
//! **Verification** is what the code does, not what it should do:
//! - `clerk-verifyWebhook`: a call to `verifyWebhook` imported from any `@clerk/*` package. Its secret is
//!   the `signingSecret` option, else the `CLERK_WEBHOOK_SIGNING_SECRET` env var it reads by default.
//! - `svix`: `new Webhook(secret)` from `svix` (JS), `Webhook(secret)` from `svix.webhooks` (Python),
//!   `svix.NewWebhook(secret)` (Go), with a `.verify(...)` / `.Verify(...)` call.
//! - `standardwebhooks`: the same with the `standardwebhooks` libraries.
//! - `none`: the handler reads Clerk events without any of these.
//!
//! A handler that verifies `JSON.stringify(req.body)` (a re-serialised body) is recorded as `svix`: it
//! does check a signature with the secret, so a forged event is still refused; the re-serialised bytes
//! may differ from what Svix signed, which makes genuine deliveries fail (a reliability bug, not a
//! missing verification), so it is not `none` and CLERK-WEBHOOK-002 does not apply.
//!
//! **Secret source**: the env var the secret expression reads (`process.env.X`, `import.meta.env.X`,
//! `env.X`, `$env/static/private`, Nuxt `useRuntimeConfig().x` -> `NUXT_X`, `os.environ["X"]`,
//! `os.getenv("X")`, `os.Getenv("X")`...), followed through local constants and, by name, through
//! module-level assignments elsewhere in the same project (Django `settings.X`); `literal_fingerprint`
//! when a `whsec_` string is the secret; else an env var with a webhook-like name (`*WEBHOOK*`,
//! `*SIGNING*`, `*SVIX*`) that the region reads, when there is exactly one; else null. Never the secret
//! itself. A `whsec_` value written in an env file is not linked to the handler reading that env var
//! (the v1 artifact has no place for it): `secret_source` stays the env var name.
//!
//! **Routes** come from file-system conventions (see [`super::routes`]) or the literal path of the
//! router call, joined with literal prefixes (`APIRouter(prefix=)`, `Blueprint(url_prefix=)`, gin
//! `Group`, chi `Route`, `app.use('/x', router)`, `include_router(r, prefix=)`, Django `include()`,
//! Fastify `register(p, { prefix })`, Hono `app.route('/x', sub)`). Dynamic segments are written
//! `:name`, catch-alls `*name`. Null when unknown.

pub(crate) mod ast;
pub mod go;
pub mod js;
pub mod py;

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use regex::Regex;

use crate::artifact::Verification;

use super::keys::fingerprint;
use super::text::{Brackets, LazyLines, split_args};

pub(crate) const NEXT_APP: &str = "nextjs-app-router";
pub(crate) const NEXT_PAGES: &str = "nextjs-pages-router";
pub(crate) const EXPRESS: &str = "express";
pub(crate) const FASTIFY: &str = "fastify";
pub(crate) const NESTJS: &str = "nestjs";
pub(crate) const HONO: &str = "hono";
pub(crate) const REMIX: &str = "remix";
pub(crate) const REACT_ROUTER: &str = "react-router";
pub(crate) const SVELTEKIT: &str = "sveltekit";
pub(crate) const ASTRO: &str = "astro";
pub(crate) const NUXT: &str = "nuxt";
pub(crate) const CONVEX: &str = "convex";
pub(crate) const FASTAPI: &str = "fastapi";
pub(crate) const FLASK: &str = "flask";
pub(crate) const DJANGO: &str = "django";
pub(crate) const GO_NET_HTTP: &str = "go-net-http";
pub(crate) const CHI: &str = "go-chi";
pub(crate) const GIN: &str = "go-gin";
pub(crate) const ECHO: &str = "go-echo";

/// The env var `verifyWebhook` reads when no `signingSecret` is passed.
pub(crate) const CLERK_DEFAULT_SECRET_ENV: &str = "CLERK_WEBHOOK_SIGNING_SECRET";

pub(super) fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("static regex")
}

static EVENTS: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"["'`]((?:user|session|email|sms|organization|organizationMembership|organizationInvitation|organizationDomain|role|permission|waitlistEntry|subscription|subscriptionItem|paymentAttempt)\.[a-z][A-Za-z]*)["'`]"#,
    )
});
static CLERK_WORD: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)clerk"));
static SVIX_HEADERS: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)svix[-_](?:id|signature|timestamp)"));
static CLERK_TYPES: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b(?:WebhookEvent|UserJSON|DeletedObjectJSON|OrganizationJSON|SessionJSON)\b"));
static CALLS: LazyLock<Regex> = LazyLock::new(|| re(r"\b([A-Za-z_$][\w$]*)\s*\("));
static WHSEC: LazyLock<Regex> = LazyLock::new(|| re(r"whsec_[A-Za-z0-9+/=]+"));
static ENV_READ: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r#"process\.env\.([A-Za-z_]\w*)"#,
        r#"|process\.env\[\s*["'`]([A-Za-z_]\w*)["'`]\s*\]"#,
        r#"|import\.meta\.env\.([A-Za-z_]\w*)"#,
        r#"|Deno\.env\.get\(\s*["']([A-Za-z_]\w*)["']"#,
        r#"|Bun\.env\.([A-Za-z_]\w*)"#,
        r#"|\benv\(\s*\w*\s*\)\.([A-Za-z_]\w*)"#,
        r#"|\benv\.([A-Z_][A-Z0-9_]*)\b"#,
        r#"|os\.environ\[\s*["']([A-Za-z_]\w*)["']\s*\]"#,
        r#"|\benviron\.get\(\s*["']([A-Za-z_]\w*)["']"#,
        r#"|\bgetenv\(\s*["']([A-Za-z_]\w*)["']"#,
        r#"|os\.Getenv\(\s*"([A-Za-z_]\w*)""#,
        r#"|os\.LookupEnv\(\s*"([A-Za-z_]\w*)""#,
        r#"|\bconfig\(\s*["']([A-Z_][A-Z0-9_]*)["']"#,
        r#"|\benv(?:\.str)?\(\s*["']([A-Z_][A-Z0-9_]*)["']"#,
        // Config loaders and config services reading an env-style name: `mustGet("X")`,
        // `config.getOrThrow<string>('X')`, `viper.GetString("X")`.
        r#"|\b(?:mustGet|mustGetenv|MustGetenv|mustEnv|requireEnv|getEnv|GetEnv|getenvOrDie|GetString|getOrThrow|get)(?:<[^>()]*>)?\(\s*["']([A-Z][A-Z0-9]*_[A-Z0-9_]*)["']"#,
    ))
});
static RUNTIME_CONFIG: LazyLock<Regex> = LazyLock::new(|| re(r"useRuntimeConfig\([^)]*\)\.([A-Za-z_]\w*)"));
static SIGNING_SECRET_OPT: LazyLock<Regex> = LazyLock::new(|| re(r"signingSecret\s*(?::\s*([^,}\n]+))?"));
static WEBHOOKISH_NAME: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)webhook|whsec|signing|svix"));

/// Where a handler's secret comes from, before repo-wide resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecretExpr {
    Env(String),
    /// `sha256:<hex>` of a `whsec_` literal.
    Literal(String),
    /// A name to look up among module-level assignments elsewhere in the repo.
    Ident(String),
    Unknown,
}

/// Which file-system routing convention a module follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FsKind {
    NextApp,
    NextPages,
    Remix,
    SvelteKit,
    Astro,
    Nuxt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnitKind {
    Fs(FsKind),
    /// The body of a router call: its route comes from the registration pointing at it.
    Inline,
    /// A named function: routed by registrations naming it, else reported without a route.
    Named,
}

/// A handler candidate with everything read from its own file.
#[derive(Debug, Clone)]
pub(crate) struct UnitDraft {
    pub line: u32,
    pub name: Option<String>,
    pub kind: UnitKind,
    pub framework: Option<&'static str>,
    pub verification: Verification,
    pub secret: SecretExpr,
    /// An env var with a webhook-like name, or a `whsec_` literal, read in the region.
    pub fallback_secret: Option<SecretExpr>,
    pub events: BTreeSet<String>,
    pub clerk_word: bool,
    pub clerk_type: bool,
    pub svix_headers: bool,
    pub handler_like: bool,
    /// Functions called in the candidate's own span.
    pub calls: Vec<String>,
    /// Byte span the candidate reads as its own (the whole file when it is the file's only one).
    pub span: (usize, usize),
    /// From the parse tree: the check runs over a re-serialised body.
    pub reserialized: bool,
    /// From the parse tree: the failed-check branch answers 2xx.
    pub acks_failure: bool,
}

/// A router call: a literal path served by an inline body or a named function.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    /// The router variable (`app`, `router`, `r`), for same-file mounts.
    pub obj: String,
    /// The literal path with same-file prefixes; `None` when not literal.
    pub path: Option<String>,
    pub framework: Option<&'static str>,
    pub target: RegTarget,
    /// Line of the router call.
    pub line: u32,
}

#[derive(Debug, Clone)]
pub(crate) enum RegTarget {
    /// Index into the file's units.
    Inline(usize),
    Named(String),
}

/// A literal prefix applied to another router: `app.use('/api', router)`.
#[derive(Debug, Clone)]
pub(crate) struct Mount {
    pub prefix: String,
    pub target: MountTarget,
}

#[derive(Debug, Clone)]
pub(crate) enum MountTarget {
    /// A module as written in an import (`./routes/webhooks`, `app.api.webhooks`).
    Module(String),
    /// A router variable of the same file.
    Local(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    Js,
    Py,
    Go,
}

/// What one source file contributes to handler detection.
#[derive(Debug, Clone, Default)]
pub(crate) struct CodeFacts {
    pub lang: Option<Lang>,
    pub units: Vec<UnitDraft>,
    pub registrations: Vec<Registration>,
    pub mounts: Vec<Mount>,
    /// Module-level `NAME = <env read | whsec literal>` assignments, for repo-wide resolution.
    pub assigns: Vec<(String, SecretExpr)>,
    /// React Router `routes.ts`: (path, route module file relative to the config's folder).
    pub rr_routes: Vec<(String, String)>,
    /// NestJS `app.setGlobalPrefix('api')`: applies to every controller of the project.
    pub global_prefix: Option<String>,
    /// From the parse tree: constructor parameters fed to a verifier, calls passing values, Go router
    /// parameters and the group prefixes passed to them (see [`ast`]).
    pub ctor_params: Vec<(String, usize, String)>,
    pub calls: Vec<ast::Call>,
    pub param_routes: Vec<ast::ParamRoute>,
    pub group_args: Vec<ast::GroupArg>,
    /// Imports of the names this file registers as handlers: (local name, module as written), so a
    /// registration resolves to the function in the imported module rather than to a namesake.
    pub imports: Vec<(String, String)>,
}

/// The imports (local name, module) of the names `registrations` register.
pub(crate) fn registered_imports<'a>(
    registrations: &[Registration],
    imports: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<(String, String)> {
    imports
        .filter(|(local, _)| registrations.iter().any(|r| matches!(&r.target, RegTarget::Named(n) if n == local)))
        .map(|(l, m)| (l.to_owned(), m.to_owned()))
        .collect()
}

pub(crate) fn lang_of(path: &str) -> Option<Lang> {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name.ends_with(".d.ts") {
        return None;
    }
    let ext = name.rsplit_once('.').map(|(_, e)| e)?;
    match ext {
        "ts" | "tsx" | "js" | "jsx" | "mjs" | "cjs" | "mts" | "cts" => Some(Lang::Js),
        "py" => Some(Lang::Py),
        "go" => Some(Lang::Go),
        _ => None,
    }
}

/// Analyses one source file: the parse tree where the file can hold what it adds, then the
/// line-level pass of the language, then the tree's facts joined to the candidates.
pub(crate) fn analyze(path: &str, text: &str, lines: &LazyLines<'_>) -> Option<CodeFacts> {
    let lang = lang_of(path)?;
    let tree = tree_facts(path, text, lang);
    let mut facts = match lang {
        Lang::Js => js::analyze(path, text, lines, tree.as_ref()),
        Lang::Py => py::analyze(path, text, lines),
        Lang::Go => go::analyze(path, text, lines),
    };
    if lang == Lang::Js && text.contains("setGlobalPrefix") {
        facts.global_prefix = GLOBAL_PREFIX.captures(text).and_then(|c| c.get(1)).map(|m| join_route("", m.as_str()));
    }
    if let Some(t) = tree {
        join_tree_facts(&mut facts, t);
    }
    let empty = facts.units.is_empty()
        && facts.registrations.is_empty()
        && facts.mounts.is_empty()
        && facts.assigns.is_empty()
        && facts.rr_routes.is_empty()
        && facts.global_prefix.is_none()
        && facts.ctor_params.is_empty()
        && facts.calls.is_empty()
        && facts.param_routes.is_empty()
        && facts.group_args.is_empty();
    (!empty).then_some(CodeFacts { lang: Some(lang), ..facts })
}

static GLOBAL_PREFIX: LazyLock<Regex> = LazyLock::new(|| re(r#"setGlobalPrefix\(\s*["'`]([^"'`]*)["'`]"#));
/// Files that can hold a secret handed through a constructor or a config field.
static SECRET_HINT: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)webhook_?secret|signing_?secret|whsec_|BaseSettings|\.Group\(|\.Mount\("));

/// Parses the file when it can contribute: a handler candidate (`webhook`, `svix`, a Clerk event),
/// a settings class, a Go router group, a webhook secret handed around. Other files (components,
/// pages, utilities) are never parsed: the cost stays with the few files that matter.
fn tree_facts(path: &str, text: &str, lang: Lang) -> Option<ast::AstFacts> {
    let grammar = crate::syntax::Grammar::of(path)?;
    if minified(path, text) {
        return None;
    }
    if !(interest(text, path).units || SECRET_HINT.is_match(text) || (lang == Lang::Js && text.contains("@Controller")))
    {
        return None;
    }
    let tree = crate::syntax::parse(grammar, text)?;
    Some(ast::facts(grammar, &tree, text))
}

/// Longest line a hand-written source file is taken to have; a file with a longer one is generated or
/// minified and is left to the line-level pass (its own caps bound that work).
const MAX_SOURCE_LINE: usize = 4096;

/// A minified bundle (`*.min.js`, or any line longer than [`MAX_SOURCE_LINE`]): never parsed.
pub(crate) fn minified(path: &str, text: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.contains(".min.") || text.len() > MAX_SOURCE_LINE && text.split('\n').any(|l| l.len() > MAX_SOURCE_LINE)
}

/// Marks candidates with the verification sites inside them and keeps the cross-file facts.
fn join_tree_facts(facts: &mut CodeFacts, t: ast::AstFacts) {
    for u in &mut facts.units {
        let (us, ue) = u.span;
        for site in &t.verify_sites {
            // The site's function lies in the candidate, or the candidate (an inline body) in it.
            let overlaps = (us <= site.start && site.end <= ue) || (site.start <= us && ue <= site.end);
            if overlaps {
                u.reserialized |= site.reserialized;
                u.acks_failure |= site.acks_failure;
            }
        }
    }
    for (name, v) in t.assigns {
        if !facts.assigns.iter().any(|(n, _)| *n == name) {
            facts.assigns.push((name, v));
        }
    }
    facts.ctor_params = t.ctor_params;
    facts.calls = t.calls;
    facts.param_routes = t.param_routes;
    facts.group_args = t.group_args;
}

/// The signature-verification libraries a file imports, by local name.
#[derive(Debug, Default)]
pub(crate) struct Verifiers {
    /// Local names of Clerk's `verifyWebhook`.
    pub clerk: Vec<String>,
    /// Constructors of svix's `Webhook` (`Webhook`, `svix.Webhook`, Go `svix.NewWebhook`).
    pub svix: Vec<String>,
    pub standard: Vec<String>,
    /// Whether the file imports anything from a Clerk SDK.
    pub clerk_import: bool,
}

/// A handler candidate found by a language front end.
#[derive(Debug, Clone)]
pub(crate) struct Cand {
    pub start: usize,
    pub end: usize,
    pub line: u32,
    pub name: Option<String>,
    pub kind: UnitKind,
    pub framework: Option<&'static str>,
    pub handler_like: bool,
}

/// Everything the shared evaluation needs about a file.
pub(crate) struct FileCtx<'a> {
    pub path: &'a str,
    /// The file with comments blanked out: what the code does.
    pub text: &'a str,
    /// The file as written: comments still count as Clerk evidence.
    pub raw: &'a str,
    pub lang: Lang,
    pub brackets: &'a Brackets,
    pub verifiers: &'a Verifiers,
    /// In-file `name -> right-hand side` assignments.
    pub locals: &'a HashMap<String, String>,
    /// In-file names bound straight to env vars (`$env/static/private` imports, destructured
    /// `process.env`, Nuxt runtime config).
    pub local_env: &'a HashMap<String, SecretExpr>,
}

/// Turns candidates into units: reads events, verification, secret and evidence from each region.
pub(crate) fn evaluate(ctx: &FileCtx<'_>, cands: &[Cand]) -> Vec<UnitDraft> {
    let n = ctx.text.len();
    // Shared region: everything outside all candidate spans (only when there are several).
    let shared: Vec<(usize, usize)> = if cands.len() <= 1 {
        Vec::new()
    } else {
        let mut spans: Vec<(usize, usize)> = cands.iter().map(|c| (c.start, c.end.min(n))).collect();
        spans.sort_unstable();
        let mut out = Vec::new();
        let mut pos = 0;
        for (s, e) in spans {
            if s > pos {
                out.push((pos, s));
            }
            pos = pos.max(e);
        }
        if pos < n {
            out.push((pos, n));
        }
        out
    };
    let path_clerk = CLERK_WORD.is_match(ctx.path);
    // The shared region is the same for every candidate: read it once.
    let shared_features = features(ctx, &shared);
    cands
        .iter()
        .map(|c| {
            let own = if cands.len() <= 1 { (0, n) } else { (c.start.min(n), c.end.min(n)) };
            let own_text = slice(ctx.text, own);
            let own_raw = slice(ctx.raw, own);
            let f = features(ctx, &[own]).or(&shared_features);
            let (verification, secret) = verification_of(ctx, &f);
            let fallback_secret = if f.webhook_env.len() == 1 {
                f.webhook_env.iter().next().cloned().map(SecretExpr::Env)
            } else {
                f.whsec.clone().map(SecretExpr::Literal)
            };
            UnitDraft {
                line: c.line,
                name: c.name.clone(),
                kind: c.kind,
                framework: c.framework,
                verification,
                secret,
                fallback_secret,
                events: f.events,
                clerk_word: path_clerk || CLERK_WORD.is_match(own_raw),
                clerk_type: ctx.verifiers.clerk_import && CLERK_TYPES.is_match(own_text),
                svix_headers: SVIX_HEADERS.is_match(own_text),
                handler_like: c.handler_like,
                calls: called_names(own_text, ctx.verifiers),
                span: own,
                reserialized: false,
                acks_failure: false,
            }
        })
        .collect()
}

/// What a set of byte ranges of a file holds, for verification, secret and events.
#[derive(Debug, Default, Clone)]
struct Features {
    events: BTreeSet<String>,
    /// `(` of the first call to Clerk's `verifyWebhook`.
    clerk_call: Option<usize>,
    /// A `.verify(` / `.Verify(` call.
    verify_call: bool,
    /// `(` of the first svix / standardwebhooks constructor call.
    svix_ctor: Option<usize>,
    standard_ctor: Option<usize>,
    /// Env vars with a webhook-like name that are read.
    webhook_env: BTreeSet<String>,
    /// Fingerprint of the first `whsec_` literal.
    whsec: Option<String>,
}

impl Features {
    /// Own features first, the shared region's where the own region has none.
    fn or(mut self, shared: &Features) -> Features {
        self.events.extend(shared.events.iter().cloned());
        self.clerk_call = self.clerk_call.or(shared.clerk_call);
        self.verify_call |= shared.verify_call;
        self.svix_ctor = self.svix_ctor.or(shared.svix_ctor);
        self.standard_ctor = self.standard_ctor.or(shared.standard_ctor);
        self.webhook_env.extend(shared.webhook_env.iter().cloned());
        self.whsec = self.whsec.take().or_else(|| shared.whsec.clone());
        self
    }
}

fn features(ctx: &FileCtx<'_>, ranges: &[(usize, usize)]) -> Features {
    let mut f = Features::default();
    let first_call = |names: &[String], need_new: bool| {
        ranges
            .iter()
            .find_map(|&r| names.iter().find_map(|name| find_calls(ctx.text, r, name, need_new).first().copied()))
    };
    f.clerk_call = first_call(&ctx.verifiers.clerk, false);
    let need_new = ctx.lang == Lang::Js;
    f.svix_ctor = first_call(&ctx.verifiers.svix, need_new);
    f.standard_ctor = first_call(&ctx.verifiers.standard, need_new);
    let verify_name = if ctx.lang == Lang::Go { "Verify" } else { "verify" };
    let b = ctx.text.as_bytes();
    for &r in ranges {
        let text = slice(ctx.text, r);
        for cap in EVENTS.captures_iter(text) {
            if let Some(m) = cap.get(1) {
                f.events.insert(m.as_str().to_owned());
            }
        }
        let has_ctor_libs = !ctx.verifiers.svix.is_empty() || !ctx.verifiers.standard.is_empty();
        if !f.verify_call && has_ctor_libs {
            f.verify_call = text.match_indices(verify_name).any(|(i, _)| {
                let at = r.0 + i;
                at > 0 && b[at - 1] == b'.' && ctx.text[at + verify_name.len()..].trim_start().starts_with('(')
            });
        }
        for cap in ENV_READ.captures_iter(text) {
            if let Some(m) = cap.iter().skip(1).flatten().next()
                && WEBHOOKISH_NAME.is_match(m.as_str())
            {
                f.webhook_env.insert(m.as_str().to_owned());
            }
        }
        if f.whsec.is_none() {
            f.whsec = WHSEC.find(text).map(|m| fingerprint(m.as_str()));
        }
    }
    f
}

fn slice(text: &str, (s, e): (usize, usize)) -> &str {
    text.get(s..e).unwrap_or("")
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// Offsets of the `(` of every call to `name` inside `range`. With `need_new`, only `new name(`.
pub(crate) fn find_calls(text: &str, range: (usize, usize), name: &str, need_new: bool) -> Vec<usize> {
    let hay = slice(text, range);
    let b = text.as_bytes();
    let mut out = Vec::new();
    for (i, _) in hay.match_indices(name) {
        let at = range.0 + i;
        // `obj.verifyWebhook(` is someone else's method; qualified names carry their own dots.
        if at > 0 && (is_ident_byte(b[at - 1]) || b[at - 1] == b'.') {
            continue;
        }
        let mut j = at + name.len();
        if j < b.len() && is_ident_byte(b[j]) {
            continue;
        }
        // TypeScript type arguments: `verifyWebhook<T>(`.
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if j < b.len()
            && b[j] == b'<'
            && let Some(k) = text[j..].find('>')
        {
            j += k + 1;
        }
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if j >= b.len() || b[j] != b'(' {
            continue;
        }
        if need_new && !text[..at].trim_end().ends_with("new") {
            continue;
        }
        out.push(j);
    }
    out
}

/// The argument text of the call whose `(` is at `paren`.
fn call_args<'t>(ctx: &FileCtx<'t>, paren: usize) -> &'t str {
    let end = ctx
        .brackets
        .close_of(paren)
        .unwrap_or_else(|| ctx.text[paren..].find('\n').map_or(ctx.text.len(), |p| paren + p));
    ctx.text.get(paren + 1..end).unwrap_or("")
}

fn first_arg(args: &str) -> &str {
    split_args(args).first().map_or("", |&(s, e)| args[s..e].trim())
}

fn verification_of(ctx: &FileCtx<'_>, f: &Features) -> (Verification, SecretExpr) {
    if let Some(paren) = f.clerk_call {
        let args = call_args(ctx, paren);
        let secret = match SIGNING_SECRET_OPT.captures(args) {
            Some(c) => match c.get(1) {
                Some(expr) => resolve(ctx, expr.as_str(), 0),
                None => resolve(ctx, "signingSecret", 0),
            },
            None => SecretExpr::Env(CLERK_DEFAULT_SECRET_ENV.to_owned()),
        };
        return (Verification::ClerkVerifyWebhook, secret);
    }
    if !f.verify_call {
        return (Verification::None, SecretExpr::Unknown);
    }
    for (kind, ctor, imported) in [
        (Verification::Svix, f.svix_ctor, !ctx.verifiers.svix.is_empty()),
        (Verification::Standardwebhooks, f.standard_ctor, !ctx.verifiers.standard.is_empty()),
    ] {
        if let Some(paren) = ctor {
            return (kind, resolve(ctx, first_arg(call_args(ctx, paren)), 0));
        }
        if imported {
            // Verified with an instance built elsewhere: the secret is not visible here.
            return (kind, SecretExpr::Unknown);
        }
    }
    (Verification::None, SecretExpr::Unknown)
}

/// Whether a function name suggests it verifies a webhook (`verifyClerkWebhook`, `validateRequest`).
pub(crate) fn verify_like(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ["verify", "webhook", "svix", "signature", "validate"].iter().any(|w| lower.contains(w))
}

/// Functions called in a candidate's own span (not keywords, not the verification libraries).
fn called_names(own: &str, verifiers: &Verifiers) -> Vec<String> {
    const KEYWORDS: &[&str] = &[
        "if", "for", "while", "switch", "catch", "function", "return", "typeof", "await", "async", "new", "super",
        "elif", "print", "func", "defer", "go", "make", "len", "append", "verify", "Verify",
    ];
    let mut out: Vec<String> = Vec::new();
    for cap in CALLS.captures_iter(own) {
        let Some(m) = cap.get(1) else { continue };
        let name = m.as_str();
        if KEYWORDS.contains(&name) || out.iter().any(|o| o == name) {
            continue;
        }
        if verifiers.clerk.iter().chain(&verifiers.svix).chain(&verifiers.standard).any(|v| v == name) {
            continue;
        }
        out.push(name.to_owned());
        if out.len() >= 256 {
            break;
        }
    }
    out
}

/// Nuxt maps runtime config key `clerkWebhookSecret` to env var `NUXT_CLERK_WEBHOOK_SECRET`.
pub(crate) fn nuxt_env(key: &str) -> String {
    let mut out = String::from("NUXT_");
    for (i, c) in key.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Classifies a secret expression without following names.
pub(crate) fn classify(expr: &str) -> SecretExpr {
    classify_at(expr, 0)
}

fn classify_at(expr: &str, depth: usize) -> SecretExpr {
    // Secret expressions are short; a minified line is not one. Bounded size and depth: no stack
    // overflow on `a || b || c || ...` repeated thousands of times.
    if depth > 8 {
        return SecretExpr::Unknown;
    }
    let mut e = super::text::head(expr, 512).trim().trim_end_matches([';', ',']).trim();
    for suffix in [" as string", "!"] {
        e = e.strip_suffix(suffix).unwrap_or(e).trim();
    }
    for wrapper in ["String(", "str(", "Buffer.from(", "[]byte("] {
        if let Some(inner) = e.strip_prefix(wrapper).and_then(|s| s.strip_suffix(')')) {
            e = inner.trim();
        }
    }
    if let Some(m) = WHSEC.find(e) {
        let quoted = e.starts_with(['"', '\'', '`']) || e.starts_with("r\"") || e.starts_with("b\"");
        if quoted || !ENV_READ.is_match(e) {
            return SecretExpr::Literal(fingerprint(m.as_str()));
        }
    }
    if let Some(cap) = ENV_READ.captures(e)
        && let Some(m) = cap.iter().skip(1).flatten().next()
    {
        return SecretExpr::Env(m.as_str().to_owned());
    }
    if let Some(cap) = RUNTIME_CONFIG.captures(e)
        && let Some(m) = cap.get(1)
    {
        return SecretExpr::Env(nuxt_env(m.as_str()));
    }
    // `a ?? b`, `a || b`, `a or b`: the first side that tells.
    for op in ["??", "||", " or "] {
        if let Some((l, r)) = e.split_once(op) {
            let left = classify_at(l, depth + 1);
            if left != SecretExpr::Unknown {
                return left;
            }
            return classify_at(r, depth + 1);
        }
    }
    let ident = |s: &str| !s.is_empty() && s.bytes().all(is_ident_byte) && !s.as_bytes()[0].is_ascii_digit();
    if ident(e) {
        return SecretExpr::Ident(e.to_owned());
    }
    SecretExpr::Unknown
}

/// Classifies a secret expression, following same-file names (a few hops).
pub(crate) fn resolve(ctx: &FileCtx<'_>, expr: &str, depth: usize) -> SecretExpr {
    let mut e = expr.trim();
    // Secret wrappers give the value they hold: pydantic `SecretStr.get_secret_value()`.
    for unwrap in [".get_secret_value()", ".reveal()"] {
        e = e.strip_suffix(unwrap).unwrap_or(e);
    }
    // `obj.field`: Nuxt runtime config object, else look the field up by name.
    if let Some((obj, field)) = e.split_once('.') {
        let simple = |s: &str| !s.is_empty() && s.bytes().all(is_ident_byte);
        if simple(obj) && simple(field) && !ENV_READ.is_match(e) {
            if ctx.locals.get(obj).is_some_and(|rhs| rhs.contains("useRuntimeConfig")) {
                return SecretExpr::Env(nuxt_env(field));
            }
            return match ctx.local_env.get(field) {
                Some(v) => v.clone(),
                None => SecretExpr::Ident(field.to_owned()),
            };
        }
    }
    match classify(e) {
        SecretExpr::Ident(name) => {
            if let Some(v) = ctx.local_env.get(&name) {
                return v.clone();
            }
            if depth < 4
                && let Some(rhs) = ctx.locals.get(&name)
                && rhs.trim() != name
            {
                return match resolve(ctx, rhs, depth + 1) {
                    SecretExpr::Unknown => SecretExpr::Ident(name),
                    other => other,
                };
            }
            SecretExpr::Ident(name)
        }
        other => other,
    }
}

/// Module-level assignments that read an env var or hold a `whsec_` literal, for other files.
pub(crate) fn global_assigns(
    locals: &HashMap<String, String>,
    local_env: &HashMap<String, SecretExpr>,
) -> Vec<(String, SecretExpr)> {
    let mut out: Vec<(String, SecretExpr)> = Vec::new();
    for (name, rhs) in locals {
        // Only right-hand sides that can read an env var or hold a `whsec_` are worth classifying.
        let hint = ["env", "Env", "whsec_", "config(", "useRuntimeConfig"].iter().any(|h| rhs.contains(h));
        if !hint {
            continue;
        }
        if let v @ (SecretExpr::Env(_) | SecretExpr::Literal(_)) = classify(rhs) {
            out.push((name.clone(), v));
        }
    }
    for (name, v) in local_env {
        if matches!(v, SecretExpr::Env(_) | SecretExpr::Literal(_)) {
            out.push((name.clone(), v.clone()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// What a file needs to be read for (cheap prefilters).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Interest {
    /// Handler candidates: the file (or its path) says `webhook` or `svix`, or names a Clerk event.
    /// Every way a candidate can qualify needs one of these (verification calls, `WebhookEvent`,
    /// `svix-*` headers, event literals, a `webhook` path), so a component that merely imports
    /// `@clerk/*` is not analysed.
    pub units: bool,
    /// Module-level assignments other files may read a secret through (`CLERK_WEBHOOK_SECRET = ...`).
    pub assigns: bool,
}

pub(crate) fn interest(text: &str, path: &str) -> Interest {
    static SIGNAL: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)webhook|svix"));
    static ASSIGN_HINT: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)clerk|whsec_|signing"));
    let units = SIGNAL.is_match(path) || SIGNAL.is_match(text) || EVENTS.is_match(text);
    Interest { units, assigns: units || ASSIGN_HINT.is_match(text) }
}

/// Joins a route prefix and a path: `/api` + `/webhooks` -> `/api/webhooks`.
pub(crate) fn join_route(prefix: &str, path: &str) -> String {
    let p = prefix.trim_end_matches('/');
    let rest = path.trim_start_matches('/');
    let joined =
        if rest.is_empty() { if p.is_empty() { "/".to_owned() } else { p.to_owned() } } else { format!("{p}/{rest}") };
    if joined.starts_with('/') { joined } else { format!("/{joined}") }
}

/// A string literal's content: `'x'`, `"x"`, `` `x` `` (no interpolation), Python `r"x"`/`f"x"` without
/// braces.
pub(crate) fn string_literal(arg: &str) -> Option<String> {
    let a = arg.trim();
    let a = a.strip_prefix(['r', 'u']).filter(|s| s.starts_with(['"', '\''])).unwrap_or(a);
    let q = a.chars().next()?;
    if !matches!(q, '"' | '\'' | '`') || a.len() < 2 || !a.ends_with(q) {
        return None;
    }
    let inner = &a[1..a.len() - 1];
    if inner.contains(q) || (q == '`' && inner.contains("${")) {
        return None;
    }
    Some(inner.to_owned())
}

/// The name a handler argument refers to: `handler`, `views.hook` -> `hook`,
/// `http.HandlerFunc(hook)` -> `hook`, `Hook.as_view()` -> `Hook`, `makeHandler(cfg)` -> `makeHandler`.
pub(crate) fn target_name(arg: &str) -> Option<String> {
    let mut a = arg.trim();
    for wrapper in ["http.HandlerFunc(", "csrf_exempt(", "require_POST(", "gin.WrapF(", "gin.WrapH("] {
        if let Some(inner) = a.strip_prefix(wrapper).and_then(|s| s.strip_suffix(')')) {
            a = inner.trim();
        }
    }
    let a = a.strip_suffix(".as_view()").unwrap_or(a);
    let a = match a.find('(') {
        Some(i) if a.ends_with(')') => &a[..i],
        Some(_) => return None,
        None => a,
    };
    let last = a.rsplit('.').next()?.trim();
    let ok = !last.is_empty() && last.bytes().all(is_ident_byte) && !last.as_bytes()[0].is_ascii_digit();
    ok.then(|| last.to_owned())
}

/// Whether an argument is an inline function body.
pub(crate) fn is_inline_fn(arg: &str) -> bool {
    let a = arg.trim_start();
    a.contains("=>")
        || a.starts_with("function")
        || a.starts_with("async")
        || a.starts_with("func(")
        || a.starts_with("func (")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_secret_expressions() {
        assert_eq!(classify("process.env.CLERK_WEBHOOK_SECRET"), SecretExpr::Env("CLERK_WEBHOOK_SECRET".into()));
        assert_eq!(classify("process.env['X_Y']!"), SecretExpr::Env("X_Y".into()));
        assert_eq!(classify("import.meta.env.WH"), SecretExpr::Env("WH".into()));
        assert_eq!(
            classify("c.env.CLERK_WEBHOOK_SIGNING_SECRET"),
            SecretExpr::Env("CLERK_WEBHOOK_SIGNING_SECRET".into())
        );
        assert_eq!(classify("os.environ[\"A\"]"), SecretExpr::Env("A".into()));
        assert_eq!(classify("os.environ.get('A', '')"), SecretExpr::Env("A".into()));
        assert_eq!(classify("os.Getenv(\"A\")"), SecretExpr::Env("A".into()));
        assert_eq!(
            classify("useRuntimeConfig(event).clerkWebhookSecret"),
            SecretExpr::Env("NUXT_CLERK_WEBHOOK_SECRET".into())
        );
        assert_eq!(classify("\"whsec_abc\""), SecretExpr::Literal(fingerprint("whsec_abc")));
        assert_eq!(classify("process.env.A || \"whsec_abc\""), SecretExpr::Env("A".into()));
        assert_eq!(classify("SECRET"), SecretExpr::Ident("SECRET".into()));
        assert_eq!(classify("getSecret()"), SecretExpr::Unknown);
    }

    #[test]
    fn classify_is_bounded() {
        let long = "f() || ".repeat(100_000);
        assert_eq!(classify(&long), SecretExpr::Unknown);
        let deep = format!("{}process.env.X", "f() ?? ".repeat(5));
        assert_eq!(classify(&deep), SecretExpr::Env("X".into()));
    }

    #[test]
    fn routes_and_targets() {
        assert_eq!(join_route("/api/", "/webhooks"), "/api/webhooks");
        assert_eq!(join_route("", "webhooks/clerk/"), "/webhooks/clerk/");
        assert_eq!(join_route("/webhooks", "/"), "/webhooks");
        assert_eq!(target_name("views.clerk_webhook").as_deref(), Some("clerk_webhook"));
        assert_eq!(target_name("http.HandlerFunc(handleClerk)").as_deref(), Some("handleClerk"));
        assert_eq!(target_name("ClerkWebhookView.as_view()").as_deref(), Some("ClerkWebhookView"));
        assert_eq!(target_name("async (req) => {}"), None);
        assert_eq!(string_literal("'/x'").as_deref(), Some("/x"));
        assert_eq!(string_literal("r\"^x/$\"").as_deref(), Some("^x/$"));
        assert_eq!(string_literal("`/x/${a}`"), None);
        assert_eq!(nuxt_env("clerkWebhookSecret"), "NUXT_CLERK_WEBHOOK_SECRET");
    }

    #[test]
    fn minified_bundles_are_not_parsed() {
        let handler =
            "import { Webhook } from 'svix';\nexport function h(req, res) { new Webhook(s).verify(req.body, h) }\n";
        assert!(tree_facts("src/webhooks.ts", handler, Lang::Js).is_some_and(|t| t.verify_sites.len() == 1));
        assert!(tree_facts("public/webhooks.min.js", handler, Lang::Js).is_none());
        let bundle = handler.replace('\n', ";").repeat(200);
        assert!(bundle.len() > MAX_SOURCE_LINE && minified("dist/app.js", &bundle));
        assert!(tree_facts("dist/app.js", &bundle, Lang::Js).is_none());
        assert!(!minified("src/webhooks.ts", &handler.repeat(200)), "many ordinary lines");
    }

    #[test]
    fn finds_calls() {
        let t = "const a = verifyWebhook(req); x.verifyWebhook(1); new Webhook(s); Webhook(t)";
        assert_eq!(find_calls(t, (0, t.len()), "verifyWebhook", false).len(), 1);
        assert_eq!(find_calls(t, (0, t.len()), "Webhook", true).len(), 1);
        assert_eq!(find_calls(t, (0, t.len()), "Webhook", false).len(), 2);
    }
}
