//! Clerk evidence and project boundaries.
//!
//! A file is *Clerk evidence* when it names a `CLERK_` variable, imports or depends on a Clerk SDK
//! (`@clerk/*`, `clerk-backend-api` / `clerk_backend_api`, `github.com/clerk/clerk-sdk-go`), or holds a
//! publishable key that decodes. A *project* is the folder of the nearest manifest (`package.json`,
//! `go.mod`, `pyproject.toml`, `requirements*.txt`, `Pipfile`, `setup.py`, `setup.cfg`, `Cargo.toml`,
//! `composer.json`, `Gemfile`, `deno.json`) and everything below it; files with no manifest above them
//! belong to the repository root.

use std::sync::LazyLock;

use regex::Regex;

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("static regex")
}

static MARKER: LazyLock<Regex> =
    LazyLock::new(|| re(r"@clerk/|github\.com/clerk/|clerk_backend_api|clerk-backend-api|CLERK_"));

/// Whether the text holds Clerk evidence.
pub(crate) fn has_marker(text: &str) -> bool {
    MARKER.is_match(text)
}

/// Whether a file name is a project manifest.
pub(crate) fn is_manifest(name: &str) -> bool {
    matches!(
        name,
        "package.json"
            | "go.mod"
            | "pyproject.toml"
            | "Pipfile"
            | "setup.py"
            | "setup.cfg"
            | "Cargo.toml"
            | "composer.json"
            | "Gemfile"
            | "deno.json"
            | "deno.jsonc"
    ) || (name.starts_with("requirements") && name.ends_with(".txt"))
}

/// Web frameworks a manifest depends on, used when a handler file's own imports do not tell.
pub(crate) fn manifest_frameworks(name: &str, text: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    let text = super::text::head(text, 256 * 1024);
    if name == "package.json" || name == "deno.json" || name == "deno.jsonc" {
        let has = |dep: &str| text.contains(&format!("\"{dep}\""));
        let has_prefix = |prefix: &str| text.contains(&format!("\"{prefix}"));
        if has("next") {
            out.push("next");
        }
        if has("express") || has("@clerk/express") {
            out.push(super::webhooks::EXPRESS);
        }
        if has("fastify") || has("@clerk/fastify") {
            out.push(super::webhooks::FASTIFY);
        }
        if has("hono") {
            out.push(super::webhooks::HONO);
        }
        if has_prefix("@react-router/") || has("@clerk/react-router") {
            out.push(super::webhooks::REACT_ROUTER);
        }
        if has_prefix("@remix-run/") || has("@clerk/remix") {
            out.push(super::webhooks::REMIX);
        }
        if has("convex") {
            out.push(super::webhooks::CONVEX);
        }
    } else if name == "go.mod" {
        if text.contains("github.com/go-chi/chi") {
            out.push(super::webhooks::CHI);
        }
        if text.contains("github.com/gin-gonic/gin") {
            out.push(super::webhooks::GIN);
        }
        if text.contains("github.com/labstack/echo") {
            out.push(super::webhooks::ECHO);
        }
    } else if is_manifest(name) {
        let lower = text.to_ascii_lowercase();
        let dep = |d: &str| has_dep_token(&lower, d);
        if dep("fastapi") {
            out.push(super::webhooks::FASTAPI);
        }
        if dep("flask") {
            out.push(super::webhooks::FLASK);
        }
        if dep("django") {
            out.push(super::webhooks::DJANGO);
        }
    }
    out
}

/// Whether `d` appears as a whole package name (not `flask-cors` for `flask`).
fn has_dep_token(text: &str, d: &str) -> bool {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    text.match_indices(d).any(|(i, _)| {
        let before_ok = text[..i].chars().next_back().is_none_or(|c| !is_name(c));
        let after_ok =
            text[i + d.len()..].chars().next().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        before_ok && after_ok
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers() {
        assert!(has_marker("import { auth } from '@clerk/nextjs/server'"));
        assert!(has_marker("NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY="));
        assert!(has_marker("clerk-backend-api==1.0"));
        assert!(!has_marker("clerk-repo-artifact/v1 stripe"));
    }

    #[test]
    fn frameworks_from_manifests() {
        assert_eq!(manifest_frameworks("package.json", r#"{"dependencies":{"express":"4"}}"#), vec!["express"]);
        assert_eq!(manifest_frameworks("requirements.txt", "Flask==3.0\nsvix\n"), vec!["flask"]);
        assert_eq!(manifest_frameworks("pyproject.toml", "dependencies = [\"fastapi>=0.1\"]"), vec!["fastapi"]);
        assert!(manifest_frameworks("requirements.txt", "flask-cors\n").is_empty());
        assert_eq!(manifest_frameworks("go.mod", "require github.com/gin-gonic/gin v1"), vec!["go-gin"]);
    }
}
