//! CLERK-SECRET-LEAK-001: the repo holds the very `sk_live_` key the audit connected with (its SHA-256
//! fingerprint equals the connected key's).
//!
//! One problem per instance: every place the key is written is listed in a single finding, whose identity
//! is empty so that moving the key between files does not make it a new finding.

use serde_json::json;

use super::{CheckInput, CheckMeta, Evidence, FailureDraft, Severity, Verdict};
use crate::audit::artifact::{KeyEnvironment, KeyKind, KeyReference};

pub const META: CheckMeta = CheckMeta {
    id: "CLERK-SECRET-LEAK-001",
    severity: Severity::Blocker,
    title: "The connected production secret key is committed to the repo",
    why: "The sk_live_ key written in the repo is the one in use by this production instance right now. \
          Whoever can read the code, its history, a fork, a CI log or a leaked backup has full Backend API \
          access to the instance: they can read and change every user, create sessions and sign-in tokens \
          for any account, and change the instance's settings.",
    fix: "Roll the secret key now (Clerk dashboard > API keys > the key's menu > Roll key), deploy the new key \
          through your hosting provider's secret store, and remove the old value from the files listed (it \
          stays in git history, which is why rolling it comes first). Keep .env files with real keys out of \
          version control.",
};

/// A secret key reference that is the connected key.
fn is_connected_key(reference: &KeyReference, fingerprint: &str) -> bool {
    reference.kind == KeyKind::Secret
        && reference.environment == KeyEnvironment::Live
        && reference.fingerprint.as_deref() == Some(fingerprint)
}

pub fn evaluate(input: &CheckInput<'_>) -> Verdict {
    let artifact = match input.artifact.require() {
        Ok(artifact) => artifact,
        Err(verdict) => return verdict,
    };
    let Some(fingerprint) = input.facts.secret_key_fingerprint.as_deref() else {
        return Verdict::Error("the connected secret key's fingerprint is unknown".into());
    };
    let mut places: Vec<&KeyReference> =
        artifact.key_references.iter().filter(|r| is_connected_key(r, fingerprint)).collect();
    if places.is_empty() {
        return Verdict::Pass;
    }
    places.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    let listed: Vec<String> = places.iter().map(|r| format!("{}:{}", r.file, r.line)).collect();
    let repo = format!("writes the connected sk_live_* key at {}", listed.join(", "));
    let references: Vec<_> = places
        .iter()
        .map(|r| json!({"file": r.file, "line": r.line, "variable": r.variable, "context": r.context}))
        .collect();
    let details = json!({
        "instance_id": input.facts.instance.id,
        "references": references,
    });
    Verdict::Fail(vec![FailureDraft {
        evidence: Evidence {
            repo: Some(repo),
            clerk: Some("the same key authenticated this audit's Backend API calls".into()),
            details,
        },
        identity: vec![],
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::artifact::ArtifactUnreadable;
    use crate::audit::artifact::{KeyEnvironment::*, KeyKind::*, ReferenceContext as Ctx};
    use crate::audit::checks::fixtures::run_with_repo;
    use crate::audit::checks::fixtures::{artifact, facts, key};
    use crate::audit::checks::{CheckSettings, NO_REPO_SCAN, REPO_ARTIFACT_UNREADABLE, RepoEvidence};
    use crate::audit::facts::{ClerkFacts, InstanceEnvironment::*};

    const CONNECTED: &str = "sha256:c0ffee";

    fn connected() -> ClerkFacts {
        let mut facts = facts(Production);
        facts.secret_key_fingerprint = Some(CONNECTED.into());
        facts
    }

    fn secret(environment: KeyEnvironment, file: &str, line: u32, fingerprint: &str) -> KeyReference {
        let mut reference = key(Secret, environment, Ctx::Production);
        reference.file = file.into();
        reference.line = line;
        reference.variable = Some("CLERK_SECRET_KEY".into());
        reference.fingerprint = Some(fingerprint.into());
        reference
    }

    #[test]
    fn meta_is_a_blocker() {
        assert_eq!(META.id, "CLERK-SECRET-LEAK-001");
        assert_eq!(META.severity, Severity::Blocker);
    }

    #[test]
    fn skipped_without_repo_scan() {
        assert_eq!(run_with_repo(evaluate, &connected(), None), Verdict::Skipped(NO_REPO_SCAN.into()));
    }

    #[test]
    fn error_when_the_stored_repo_scan_is_unreadable() {
        let facts = connected();
        let artifact = RepoEvidence::Unreadable(ArtifactUnreadable::Malformed);
        let verdict = evaluate(&CheckInput { facts: &facts, artifact, settings: &CheckSettings::default() });
        assert_eq!(
            verdict,
            Verdict::Error(format!("{REPO_ARTIFACT_UNREADABLE}: it does not follow the artifact schema"))
        );
    }

    #[test]
    fn error_without_the_connected_fingerprint() {
        let repo = artifact(vec![]);
        let verdict = run_with_repo(evaluate, &facts(Production), Some(&repo));
        assert_eq!(verdict, Verdict::Error("the connected secret key's fingerprint is unknown".into()));
    }

    #[test]
    fn passes_when_no_reference_is_the_connected_key() {
        let repo = artifact(vec![
            secret(Live, ".env.production", 2, "sha256:other"),
            // The same fingerprint as a test key cannot be the connected sk_live_ key.
            secret(Test, ".env", 1, CONNECTED),
            key(Publishable, Live, Ctx::Production),
        ]);
        assert_eq!(run_with_repo(evaluate, &connected(), Some(&repo)), Verdict::Pass);
    }

    #[test]
    fn fails_once_listing_every_place() {
        let repo = artifact(vec![
            secret(Live, "deploy/prod.env", 7, CONNECTED),
            secret(Live, ".env.production", 2, CONNECTED),
            secret(Live, ".env.local", 1, "sha256:other"),
        ]);
        let Verdict::Fail(findings) = run_with_repo(evaluate, &connected(), Some(&repo)) else {
            panic!("expected a failure")
        };
        assert_eq!(findings.len(), 1);
        assert!(findings[0].identity.is_empty());
        assert_eq!(
            findings[0].evidence.repo.as_deref(),
            Some("writes the connected sk_live_* key at .env.production:2, deploy/prod.env:7")
        );
        assert_eq!(findings[0].evidence.details["references"][0]["file"], ".env.production");
        // The evidence never carries the fingerprint.
        assert!(!findings[0].evidence.details.to_string().contains("c0ffee"));
    }
}
