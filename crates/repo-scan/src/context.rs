//! Where a key reference lives: `production`, `development`, `test`, `example` or `unknown`.
//!
//! Rules, first match wins:
//!
//! 1. **example**: `.env.example`, `.env.sample`, `.env.template`, `.env.dist`, any `*.example` /
//!    `*.sample` / `*.template` / `*.tmpl` file or name with an `example`/`sample`/`template` part,
//!    documentation (`*.md`, `*.mdx`, `*.rst`, `*.adoc`, `*.txt`, `README*`) and anything under `docs/`,
//!    `doc/`, `examples/`, `samples/`.
//! 2. **test**: `.env.test*`, `.env.ci`, `*.test.*`, `*.spec.*`, `*_test.go`, `test_*.py`, `*_test.py`,
//!    `conftest.py`, `cypress.env.json`, test runner setup/config files, anything under `test/`, `tests/`,
//!    `__tests__/`, `spec/`, `e2e/`, `cypress/`, `playwright/`, `__mocks__/`, `fixtures/`, `testdata/`.
//! 3. **dotenv files**: `.env.production`, `.env.production.local`, `.env.prod*`, `production.env` are
//!    production; `.env.development*`, `.env.dev*`, `.env.local` are development; `.env` and others unknown.
//! 4. **deploy configuration**, by section:
//!    - `vercel.json`, `fly.toml`, `render.yaml`, `railway.json`/`railway.toml`, `app.json`, `Procfile`:
//!      production (unless the name carries another environment, e.g. `fly.staging.toml`).
//!    - `netlify.toml`: `[context.production.*]`, `[build.*]` and everything outside `[context.*]` are
//!      production; `[context.dev.*]` development; other contexts (deploy previews, branch deploys) unknown.
//!    - `wrangler.toml`: top level production; `[env.<name>.*]` by the name.
//!    - `Dockerfile*` / `Containerfile`: production (`Dockerfile.dev` development, `Dockerfile.test`
//!      test); a build stage named like `dev`/`development`/`local`/`test` takes that context from its
//!      `FROM` line on.
//!    - `docker-compose*.yml` / `compose*.yaml`: by the name's suffix (`.prod` production, `.dev` /
//!      `.override` / `.local` development), else unknown.
//!    - GitHub Actions workflows: each job by its `environment:` (production, staging, ...), else by its
//!      id (`deploy-prod`, `test`); workflow-level lines are production when any job is.
//!    - Kubernetes manifests (YAML with `apiVersion:` and `kind:`): by an environment word in the path
//!      or the `namespace:`, else production.
//! 5. **hints**: a name part or folder called `production`/`prod`/`live` (production),
//!    `development`/`dev`/`local` (development), `staging`/`preview` (unknown): `config/production.json`.
//! 6. otherwise **unknown**.
//!
//! A key written only in a comment configures nothing: the extractor records it with context `example`
//! (see [`super::keys`]).

use crate::artifact::ReferenceContext as Ctx;

use super::text::{LineIndex, indent_of};

/// Per-line contexts of one file: `(first line, context)` runs.
pub(crate) struct ContextMap {
    runs: Vec<(usize, Ctx)>,
}

impl ContextMap {
    fn fixed(ctx: Ctx) -> Self {
        Self { runs: vec![(1, ctx)] }
    }

    pub(crate) fn at(&self, line: usize) -> Ctx {
        let mut ctx = Ctx::Unknown;
        for &(start, c) in &self.runs {
            if start <= line {
                ctx = c;
            } else {
                break;
            }
        }
        ctx
    }
}

fn lower_parts(path: &str) -> (Vec<String>, String) {
    let mut parts: Vec<String> = path.split('/').map(str::to_ascii_lowercase).collect();
    let name = parts.pop().unwrap_or_default();
    (parts, name)
}

/// Words of a file name: `fly.staging.toml` -> `fly`, `staging`, `toml`.
fn name_words(name: &str) -> impl Iterator<Item = &str> {
    name.split(['.', '-', '_']).filter(|w| !w.is_empty())
}

/// An environment word: production / development / unknown (staging, preview).
fn word_hint(word: &str) -> Option<Ctx> {
    match word {
        "production" | "prod" | "live" | "prd" => Some(Ctx::Production),
        "development" | "dev" | "local" | "develop" => Some(Ctx::Development),
        "staging" | "stage" | "preview" | "qa" | "uat" => Some(Ctx::Unknown),
        "test" | "testing" | "ci" => Some(Ctx::Test),
        _ => None,
    }
}

fn name_hint(name: &str) -> Option<Ctx> {
    name_words(name).find_map(word_hint)
}

fn dir_hint(dirs: &[String]) -> Option<Ctx> {
    dirs.iter().rev().find_map(|d| word_hint(d))
}

const EXAMPLE_DIRS: &[&str] = &["docs", "doc", "documentation", "examples", "example", "samples", "sample"];
const TEST_DIRS: &[&str] = &[
    "test",
    "tests",
    "__tests__",
    "spec",
    "specs",
    "e2e",
    "cypress",
    "playwright",
    "__mocks__",
    "fixtures",
    "testdata",
    "test-data",
    "testing",
    "__fixtures__",
];
const DOC_EXTS: &[&str] = &["md", "mdx", "markdown", "rst", "adoc", "txt"];

fn is_example(dirs: &[String], name: &str) -> bool {
    if dirs.iter().any(|d| EXAMPLE_DIRS.contains(&d.as_str())) {
        return true;
    }
    let ext = name.rsplit('.').next().unwrap_or("");
    if name.contains('.') && DOC_EXTS.contains(&ext) && !name.starts_with("requirements") {
        return true;
    }
    if name.starts_with("readme") {
        return true;
    }
    name_words(name).any(|w| matches!(w, "example" | "examples" | "sample" | "template" | "tmpl" | "dist"))
        && (name.starts_with(".env") || name.ends_with(".env") || !name.ends_with(".ts") && !name.ends_with(".js"))
}

fn is_test(dirs: &[String], name: &str) -> bool {
    if dirs.iter().any(|d| TEST_DIRS.contains(&d.as_str())) {
        return true;
    }
    if name.starts_with(".env.test") || name == ".env.ci" || name == "cypress.env.json" {
        return true;
    }
    let words: Vec<&str> = name.split('.').collect();
    if words.len() >= 3 && words[..words.len() - 1].iter().any(|w| matches!(*w, "test" | "spec")) {
        return true;
    }
    name.ends_with("_test.go")
        || (name.starts_with("test_") && name.ends_with(".py"))
        || name.ends_with("_test.py")
        || name == "conftest.py"
        || ["jest.setup.", "vitest.setup.", "jest.config.", "vitest.config.", "playwright.config.", "cypress.config."]
            .iter()
            .any(|p| name.starts_with(p))
}

fn dotenv_context(name: &str) -> Option<Ctx> {
    let is_dotenv = name == ".env" || name.starts_with(".env.") || name.ends_with(".env");
    if !is_dotenv {
        return None;
    }
    if name == ".env" {
        return Some(Ctx::Unknown);
    }
    if name == ".env.local" {
        return Some(Ctx::Development);
    }
    Some(name_words(name).find_map(word_hint).unwrap_or(Ctx::Unknown))
}

fn is_dockerfile(name: &str) -> bool {
    name == "dockerfile" || name.starts_with("dockerfile.") || name.ends_with(".dockerfile") || name == "containerfile"
}

fn is_compose(name: &str) -> bool {
    (name.starts_with("docker-compose") || name.starts_with("compose"))
        && (name.ends_with(".yml") || name.ends_with(".yaml"))
}

/// The contexts of a file, line by line. `text` is only read for sectioned formats.
pub(crate) fn contexts(path: &str, text: &str, lines: &LineIndex) -> ContextMap {
    let (dirs, name) = lower_parts(path);
    if is_example(&dirs, &name) {
        return ContextMap::fixed(Ctx::Example);
    }
    if is_test(&dirs, &name) {
        return ContextMap::fixed(Ctx::Test);
    }
    if let Some(ctx) = dotenv_context(&name) {
        return ContextMap::fixed(ctx);
    }
    if is_dockerfile(&name) {
        return dockerfile(&name, text, lines);
    }
    if is_compose(&name) {
        let ctx = name_words(&name).skip(1).find_map(|w| match w {
            "override" => Some(Ctx::Development),
            w => word_hint(w),
        });
        return ContextMap::fixed(ctx.unwrap_or(Ctx::Unknown));
    }
    let in_workflows = dirs.len() >= 2 && dirs[dirs.len() - 2] == ".github" && dirs[dirs.len() - 1] == "workflows";
    if in_workflows && (name.ends_with(".yml") || name.ends_with(".yaml")) {
        return github_workflow(&name, text, lines);
    }
    match name.as_str() {
        "vercel.json" | "render.yaml" | "railway.json" | "railway.toml" | "app.json" | "procfile" => {
            return ContextMap::fixed(dir_hint(&dirs).unwrap_or(Ctx::Production));
        }
        "netlify.toml" => return toml_sections(text, lines, netlify_table),
        "wrangler.toml" => return toml_sections(text, lines, wrangler_table),
        _ => {}
    }
    if name.starts_with("fly") && name.ends_with(".toml") {
        return ContextMap::fixed(name_hint(&name).or_else(|| dir_hint(&dirs)).unwrap_or(Ctx::Production));
    }
    if (name.ends_with(".yml") || name.ends_with(".yaml")) && is_k8s(text) {
        let ns = namespace_hint(text);
        return ContextMap::fixed(name_hint(&name).or(ns).or_else(|| dir_hint(&dirs)).unwrap_or(Ctx::Production));
    }
    ContextMap::fixed(name_hint(&name).or_else(|| dir_hint(&dirs)).unwrap_or(Ctx::Unknown))
}

fn dockerfile(name: &str, text: &str, lines: &LineIndex) -> ContextMap {
    let default = name_words(name).skip(1).find_map(word_hint).unwrap_or(Ctx::Production);
    let mut runs = vec![(1, default)];
    for l in 1..=lines.count() {
        let line = lines.line(text, l).trim();
        let upper = super::text::head(line, 5).to_ascii_uppercase();
        if !upper.starts_with("FROM ") {
            continue;
        }
        // `FROM image AS stage`
        let words: Vec<&str> = line.split_whitespace().collect();
        let stage = words
            .iter()
            .position(|w| w.eq_ignore_ascii_case("as"))
            .and_then(|i| words.get(i + 1))
            .map(|s| s.to_ascii_lowercase());
        let ctx = stage
            .as_deref()
            .and_then(|s| name_words(s).find_map(word_hint))
            .filter(|c| *c != Ctx::Production)
            .unwrap_or(default);
        runs.push((l, ctx));
    }
    ContextMap { runs }
}

fn toml_sections(text: &str, lines: &LineIndex, table: fn(&str) -> Ctx) -> ContextMap {
    let mut runs = vec![(1, Ctx::Production)];
    for l in 1..=lines.count() {
        let line = lines.line(text, l).trim();
        if line.starts_with('[') {
            let header = line.trim_start_matches('[').split(']').next().unwrap_or("").trim().to_ascii_lowercase();
            runs.push((l, table(&header)));
        }
    }
    ContextMap { runs }
}

fn netlify_table(header: &str) -> Ctx {
    let Some(rest) = header.strip_prefix("context.") else {
        return Ctx::Production;
    };
    let ctx_name = rest.split('.').next().unwrap_or("").trim_matches('"');
    match ctx_name {
        "production" => Ctx::Production,
        "dev" => Ctx::Development,
        _ => Ctx::Unknown,
    }
}

fn wrangler_table(header: &str) -> Ctx {
    let Some(rest) = header.strip_prefix("env.") else {
        return Ctx::Production;
    };
    let env = rest.split('.').next().unwrap_or("").trim_matches('"');
    name_words(env).find_map(word_hint).unwrap_or(Ctx::Unknown)
}

fn is_k8s(text: &str) -> bool {
    let head = super::text::head(text, 64 * 1024);
    let mut api = false;
    let mut kind = false;
    for line in head.lines() {
        api |= line.starts_with("apiVersion:");
        kind |= line.starts_with("kind:");
        if api && kind {
            return true;
        }
    }
    false
}

fn namespace_hint(text: &str) -> Option<Ctx> {
    let head = super::text::head(text, 64 * 1024);
    head.lines().find_map(|line| {
        let t = line.trim();
        let ns = t.strip_prefix("namespace:")?.trim().trim_matches(['"', '\'']).to_ascii_lowercase();
        name_words(&ns).find_map(word_hint)
    })
}

/// A GitHub Actions workflow: each job by its `environment:` or id; workflow-level lines production
/// when any job is production.
fn github_workflow(name: &str, text: &str, lines: &LineIndex) -> ContextMap {
    let n = lines.count();
    let mut jobs_line = None;
    for l in 1..=n {
        let line = lines.line(text, l);
        if line.starts_with("jobs:") {
            jobs_line = Some(l);
            break;
        }
    }
    let file_hint = name_hint(name);
    let Some(jobs_line) = jobs_line else {
        return ContextMap::fixed(file_hint.unwrap_or(Ctx::Unknown));
    };
    // Job headers: the first indented key under `jobs:` sets the job indent.
    let mut job_indent = None;
    let mut jobs: Vec<(usize, String)> = Vec::new();
    let mut end_of_jobs = n + 1;
    for l in jobs_line + 1..=n {
        let line = lines.line(text, l);
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let ind = indent_of(line);
        if ind == 0 {
            end_of_jobs = l;
            break;
        }
        let ji = *job_indent.get_or_insert(ind);
        if ind == ji && t.contains(':') {
            let id = t.split(':').next().unwrap_or("").trim().trim_matches(['"', '\'']).to_ascii_lowercase();
            jobs.push((l, id));
        }
    }
    let mut job_runs: Vec<(usize, Ctx)> = Vec::new();
    for (i, (start, id)) in jobs.iter().enumerate() {
        let end = jobs.get(i + 1).map_or(end_of_jobs, |j| j.0);
        let mut ctx = None;
        for l in start + 1..end {
            let t = lines.line(text, l).trim();
            let value = if let Some(v) = t.strip_prefix("environment:") {
                Some(v.trim())
            } else if ctx.is_none() && t.starts_with("name:") && l > start + 1 {
                // `environment:\n  name: production`
                let prev = lines.line(text, l - 1).trim();
                if prev == "environment:" { t.strip_prefix("name:").map(str::trim) } else { None }
            } else {
                None
            };
            if let Some(v) = value {
                let v = v.trim_matches(['"', '\'']).to_ascii_lowercase();
                if !v.is_empty() {
                    ctx = Some(name_words(&v).find_map(word_hint).unwrap_or(Ctx::Unknown));
                }
            }
        }
        let ctx = ctx
            .or_else(|| {
                name_words(id).find_map(|w| match w {
                    "lint" | "check" | "checks" | "unit" | "integration" => Some(Ctx::Test),
                    w => word_hint(w),
                })
            })
            .unwrap_or(Ctx::Unknown);
        job_runs.push((*start, ctx));
    }
    let any_prod = job_runs.iter().any(|r| r.1 == Ctx::Production);
    let top = if any_prod { Ctx::Production } else { file_hint.unwrap_or(Ctx::Unknown) };
    let mut runs = vec![(1, top)];
    runs.extend(job_runs);
    if end_of_jobs <= n {
        runs.push((end_of_jobs, top));
    }
    ContextMap { runs }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(path: &str, text: &str, line: usize) -> Ctx {
        let li = LineIndex::new(text);
        contexts(path, text, &li).at(line)
    }

    #[test]
    fn dotenv_and_docs() {
        assert_eq!(ctx(".env.production", "", 1), Ctx::Production);
        assert_eq!(ctx("apps/web/.env.production.local", "", 1), Ctx::Production);
        assert_eq!(ctx(".env.local", "", 1), Ctx::Development);
        assert_eq!(ctx(".env.development", "", 1), Ctx::Development);
        assert_eq!(ctx(".env", "", 1), Ctx::Unknown);
        assert_eq!(ctx(".env.example", "", 1), Ctx::Example);
        assert_eq!(ctx(".env.sample", "", 1), Ctx::Example);
        assert_eq!(ctx(".env.test", "", 1), Ctx::Test);
        assert_eq!(ctx("README.md", "", 1), Ctx::Example);
        assert_eq!(ctx("docs/setup.ts", "", 1), Ctx::Example);
        assert_eq!(ctx("src/lib/clerk.test.ts", "", 1), Ctx::Test);
        assert_eq!(ctx("src/lib/clerk.ts", "", 1), Ctx::Unknown);
        assert_eq!(ctx("config/production.json", "", 1), Ctx::Production);
    }

    #[test]
    fn netlify_sections() {
        let t = "[build]\ncommand = \"x\"\n[context.production.environment]\nA = \"1\"\n[context.deploy-preview.environment]\nB = \"2\"\n[context.dev.environment]\nC = \"3\"\n";
        assert_eq!(ctx("netlify.toml", t, 2), Ctx::Production);
        assert_eq!(ctx("netlify.toml", t, 4), Ctx::Production);
        assert_eq!(ctx("netlify.toml", t, 6), Ctx::Unknown);
        assert_eq!(ctx("netlify.toml", t, 8), Ctx::Development);
    }

    #[test]
    fn dockerfile_stages() {
        let t = "FROM node:20 AS development\nENV A=1\nFROM node:20 AS runner\nENV B=2\n";
        assert_eq!(ctx("Dockerfile", t, 2), Ctx::Development);
        assert_eq!(ctx("Dockerfile", t, 4), Ctx::Production);
        assert_eq!(ctx("Dockerfile.dev", "ENV A=1", 1), Ctx::Development);
    }

    #[test]
    fn workflow_jobs() {
        let t = "name: ci\nenv:\n  A: 1\njobs:\n  test:\n    runs-on: x\n    env:\n      B: 2\n  deploy:\n    environment: production\n    env:\n      C: 3\n";
        assert_eq!(ctx(".github/workflows/ci.yml", t, 3), Ctx::Production);
        assert_eq!(ctx(".github/workflows/ci.yml", t, 8), Ctx::Test);
        assert_eq!(ctx(".github/workflows/ci.yml", t, 12), Ctx::Production);
    }

    #[test]
    fn kubernetes_manifests() {
        let t = "apiVersion: v1\nkind: Secret\nmetadata:\n  namespace: staging\n";
        assert_eq!(ctx("deploy/secret.yaml", t, 1), Ctx::Unknown);
        let t = "apiVersion: apps/v1\nkind: Deployment\n";
        assert_eq!(ctx("k8s/deployment.yaml", t, 1), Ctx::Production);
        assert_eq!(ctx("k8s/overlays/dev/deployment.yaml", t, 1), Ctx::Development);
    }
}
