//! Secrets written as values in env files of the checkout: `whsec_` webhook signing secrets and
//! `sk_live_` secret keys (the `committed_secrets` of the artifact).
//!
//! An env file is `.env`, `.env.<anything>` (`.env.production`, `.env.local`), `<name>.env`, or
//! `.dev.vars` (Cloudflare). The walk honours `.gitignore`, so a file read here is one the repository
//! keeps. A line `NAME=value` (optionally `export NAME=`, quoted value) whose value is such a secret is
//! recorded with the variable name and `sha256:<hex>` of the value; placeholders (`whsec_xxxxxxxx`,
//! `sk_live_your_key_here`) and commented lines are not. Stripe uses the same prefixes: a value whose
//! variable names Stripe is not recorded, and an `sk_live_` value is kept only when the key rule of
//! [`crate::keys`] judged it Clerk's with high or medium confidence (the assembly drops the others).

use std::sync::LazyLock;

use regex::Regex;

use crate::artifact::{CommittedSecret, CommittedSecretKind};
use crate::keys::{fingerprint, is_placeholder};

static ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*[=:]\s*["']?((?:whsec_[A-Za-z0-9+/=]{16,})|(?:sk_live_[A-Za-z0-9]{16,}))["']?\s*(?:#.*)?$"#,
    )
    .expect("static regex")
});

/// Whether a file name is an env file.
pub(crate) fn is_env_file(name: &str) -> bool {
    name == ".env" || name.starts_with(".env.") || name.ends_with(".env") || name == ".dev.vars"
}

/// The committed secrets of one file (empty unless it is an env file).
pub(crate) fn find(path: &str, text: &str) -> Vec<CommittedSecret> {
    let name = path.rsplit('/').next().unwrap_or(path);
    if !is_env_file(name) || !(text.contains("whsec_") || text.contains("sk_live_")) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(c) = ASSIGNMENT.captures(line) else { continue };
        let (Some(var), Some(value)) = (c.get(1), c.get(2)) else { continue };
        let value = value.as_str();
        let (kind, payload) = match value.strip_prefix("whsec_") {
            Some(p) => (CommittedSecretKind::WebhookSecret, p),
            None => (CommittedSecretKind::LiveSecretKey, value.trim_start_matches("sk_live_")),
        };
        if is_placeholder(payload) || var.as_str().to_ascii_lowercase().contains("stripe") {
            continue;
        }
        out.push(CommittedSecret {
            file: path.to_owned(),
            line: u32::try_from(i + 1).unwrap_or(u32::MAX),
            variable: var.as_str().to_owned(),
            kind,
            fingerprint: fingerprint(value),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values_in_env_files_only() {
        let text = "PORT=3000\nCLERK_WEBHOOK_SECRET=\"whsec_c2VjcmV0U2lnbmluZ0tleUZvclRlc3Rz\"\n# X=whsec_c2VjcmV0U2lnbmluZ0tleUZvclRlc3Rz\nexport CLERK_SECRET_KEY=sk_live_A1b2C3d4E5f6G7h8I9j0K1l2\nW=whsec_xxxxxxxxxxxxxxxxxxxxxxxx\n";
        let found = find("apps/api/.env.production", text);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].line, found[0].variable.as_str()), (2, "CLERK_WEBHOOK_SECRET"));
        assert_eq!(found[0].kind, CommittedSecretKind::WebhookSecret);
        assert_eq!(found[0].fingerprint, fingerprint("whsec_c2VjcmV0U2lnbmluZ0tleUZvclRlc3Rz"));
        assert!(!found[0].fingerprint.contains("whsec_"));
        assert_eq!(
            (found[1].kind, found[1].variable.as_str()),
            (CommittedSecretKind::LiveSecretKey, "CLERK_SECRET_KEY")
        );
        assert!(find("src/config.ts", text).is_empty());
        assert!(is_env_file("prod.env") && is_env_file(".dev.vars") && !is_env_file("env.ts"));
    }
}
