//! CLERK-SECRET-PUBLIC-001: a secret key is assigned to a variable whose prefix makes the framework ship it
//! to the browser (`NEXT_PUBLIC_`, `VITE_`, `EXPO_PUBLIC_`, `PUBLIC_`, `REACT_APP_`, `GATSBY_`,
//! `NUXT_PUBLIC_`). It does not depend on the connected instance.
//!
//! One finding per file and variable (not the line, which shifts between commits).

use std::collections::BTreeMap;

use serde_json::json;

use super::{CheckInput, CheckMeta, Evidence, FailureDraft, Severity, Verdict};
use crate::audit::artifact::{Confidence, KeyKind, KeyReference, ReferenceContext};

/// Variable prefixes that bundlers inline into client-side code.
pub const BROWSER_PREFIXES: &[&str] =
    &["NEXT_PUBLIC_", "VITE_", "EXPO_PUBLIC_", "PUBLIC_", "REACT_APP_", "GATSBY_", "NUXT_PUBLIC_"];

pub const META: CheckMeta = CheckMeta {
    id: "CLERK-SECRET-PUBLIC-001",
    severity: Severity::Blocker,
    title: "Secret key in a browser-exposed variable",
    why: "Build tools inline every variable with a public prefix (NEXT_PUBLIC_, VITE_, EXPO_PUBLIC_, PUBLIC_, \
          REACT_APP_, GATSBY_, NUXT_PUBLIC_) into the JavaScript sent to every visitor. A Clerk secret key \
          there is readable by anyone who opens the site, and gives full Backend API access to the instance: \
          every user, session and setting.",
    fix: "Rename the variable without the public prefix (Clerk's SDKs read CLERK_SECRET_KEY on the server) and \
          use it only in server code. Then roll the key in the Clerk dashboard (API keys > Roll key): any \
          build that shipped it has published it.",
};

/// The browser-exposing prefix of a variable name, if it has one.
pub fn browser_prefix(variable: &str) -> Option<&'static str> {
    BROWSER_PREFIXES.iter().copied().find(|prefix| variable.starts_with(prefix))
}

/// A Clerk secret key (low-confidence `sk_` values may be Stripe's) outside documentation examples.
fn is_exposed_secret(reference: &KeyReference) -> Option<&'static str> {
    if reference.kind != KeyKind::Secret
        || reference.confidence == Some(Confidence::Low)
        || reference.context == ReferenceContext::Example
    {
        return None;
    }
    browser_prefix(reference.variable.as_deref()?)
}

pub fn evaluate(input: &CheckInput<'_>) -> Verdict {
    let artifact = match input.artifact.require() {
        Ok(artifact) => artifact,
        Err(verdict) => return verdict,
    };
    let mut groups: BTreeMap<[String; 2], (Vec<&KeyReference>, &'static str)> = BTreeMap::new();
    for reference in &artifact.key_references {
        let Some(prefix) = is_exposed_secret(reference) else { continue };
        let identity = [reference.file.clone(), reference.variable.clone().unwrap_or_default()];
        groups.entry(identity).or_insert_with(|| (Vec::new(), prefix)).0.push(reference);
    }
    if groups.is_empty() {
        return Verdict::Pass;
    }
    let findings = groups
        .into_iter()
        .map(|([file, variable], (mut references, prefix))| {
            references.sort_by_key(|r| r.line);
            let lines: Vec<u32> = references.iter().map(|r| r.line).collect();
            let place = format!("{file}:{}", lines.iter().map(u32::to_string).collect::<Vec<_>>().join(", "));
            let environment = if references.iter().any(|r| r.environment == crate::audit::artifact::KeyEnvironment::Live) {
                "sk_live_*"
            } else {
                "sk_test_*"
            };
            let repo = format!("assigns {environment} (secret key) to {variable} at {place}: the {prefix} prefix ships it to the browser");
            let details = json!({
                "file": file,
                "lines": lines,
                "variable": variable,
                "prefix": prefix,
                "context": references[0].context,
            });
            FailureDraft { evidence: Evidence { repo: Some(repo), clerk: None, details }, identity: vec![file, variable] }
        })
        .collect();
    Verdict::Fail(findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::artifact::ArtifactUnreadable;
    use crate::audit::artifact::{KeyEnvironment::*, KeyKind::*, ReferenceContext as Ctx, RepoArtifact};
    use crate::audit::checks::fixtures::{artifact, facts, key};
    use crate::audit::checks::{CheckSettings, NO_REPO_SCAN, REPO_ARTIFACT_UNREADABLE, RepoEvidence};
    use crate::audit::facts::InstanceEnvironment::*;

    fn run(artifact: Option<&RepoArtifact>) -> Verdict {
        let facts = facts(Production);
        evaluate(&CheckInput { facts: &facts, artifact: artifact.into(), settings: &CheckSettings::default() })
    }

    fn secret(variable: &str, context: Ctx, confidence: Option<Confidence>) -> KeyReference {
        let mut reference = key(Secret, Live, context);
        reference.variable = Some(variable.into());
        reference.confidence = confidence;
        reference
    }

    #[test]
    fn meta_is_a_blocker() {
        assert_eq!(META.id, "CLERK-SECRET-PUBLIC-001");
        assert_eq!(META.severity, Severity::Blocker);
    }

    #[test]
    fn skipped_without_repo_scan() {
        assert_eq!(run(None), Verdict::Skipped(NO_REPO_SCAN.into()));
    }

    #[test]
    fn error_when_the_stored_repo_scan_is_unreadable() {
        let facts = facts(Production);
        let artifact = RepoEvidence::Unreadable(ArtifactUnreadable::Malformed);
        let verdict = evaluate(&CheckInput { facts: &facts, artifact, settings: &CheckSettings::default() });
        assert_eq!(
            verdict,
            Verdict::Error(format!("{REPO_ARTIFACT_UNREADABLE}: it does not follow the artifact schema"))
        );
    }

    #[test]
    fn passes_for_server_variables_publishable_keys_examples_and_stripe_lookalikes() {
        let repo = artifact(vec![
            secret("CLERK_SECRET_KEY", Ctx::Production, Some(Confidence::High)),
            key(Publishable, Live, Ctx::Production), // NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY: meant to be public
            secret("NEXT_PUBLIC_CLERK_SECRET_KEY", Ctx::Example, Some(Confidence::High)),
            secret("VITE_STRIPE_SECRET", Ctx::Production, Some(Confidence::Low)),
        ]);
        assert_eq!(run(Some(&repo)), Verdict::Pass);
    }

    #[test]
    fn every_prefix_is_browser_exposed() {
        for prefix in BROWSER_PREFIXES {
            assert_eq!(browser_prefix(&format!("{prefix}CLERK_SECRET_KEY")), Some(*prefix));
        }
        assert_eq!(browser_prefix("CLERK_SECRET_KEY"), None);
        assert_eq!(browser_prefix("MY_NEXT_PUBLIC_KEY"), None);
    }

    #[test]
    fn fails_per_file_and_variable() {
        let mut test_key = secret("VITE_CLERK_SECRET_KEY", Ctx::Development, None);
        test_key.environment = Test;
        test_key.file = ".env".into();
        let repo =
            artifact(vec![secret("NEXT_PUBLIC_CLERK_SECRET_KEY", Ctx::Production, Some(Confidence::High)), test_key]);
        let Verdict::Fail(findings) = run(Some(&repo)) else { panic!("expected a failure") };
        let identities: Vec<_> = findings.iter().map(|f| f.identity.clone()).collect();
        assert_eq!(
            identities,
            vec![vec![".env", "VITE_CLERK_SECRET_KEY"], vec![".env.production", "NEXT_PUBLIC_CLERK_SECRET_KEY"]]
        );
        assert_eq!(
            findings[1].evidence.repo.as_deref(),
            Some(
                "assigns sk_live_* (secret key) to NEXT_PUBLIC_CLERK_SECRET_KEY at .env.production:3: \
                 the NEXT_PUBLIC_ prefix ships it to the browser"
            )
        );
        assert_eq!(findings[0].evidence.details["prefix"], "VITE_");
    }
}
