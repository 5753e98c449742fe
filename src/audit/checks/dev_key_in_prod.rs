//! CLERK-DEV-KEY-001: a development key (`pk_test_` / `sk_test_`) is set in a production context of the
//! repo. It does not depend on the connected instance.
//!
//! One finding per place a key is set, identified by file, variable and key kind (not the line, which
//! shifts between commits). References that share that identity (the same variable set twice in one file)
//! are one finding listing every line, so that no two findings of one scan share a fingerprint.

use std::collections::BTreeMap;

use serde_json::json;

use super::{CheckInput, CheckMeta, Evidence, FailureDraft, Severity, Verdict};
use crate::audit::artifact::{Confidence, KeyEnvironment, KeyKind, KeyReference, ReferenceContext};

pub const META: CheckMeta = CheckMeta {
    id: "CLERK-DEV-KEY-001",
    severity: Severity::Blocker,
    title: "Development Clerk key in production configuration",
    why: "A pk_test_/sk_test_ key belongs to a development instance, so production would sign real users in \
          against an instance where anyone can sign up with any email, no verification required, OAuth \
          uses Clerk's shared credentials, and users and request rates are capped. A secret key committed to \
          the repo also gives whoever reads the code full Backend API access to that instance.",
    fix: "Replace the key with the matching key of your production instance (Clerk dashboard > API keys, \
          with the production instance selected: pk_live_ for the publishable key, sk_live_ for the secret \
          key), set through your deployment's secret store rather than a committed file. If an sk_test_ \
          key was committed, roll it in the Clerk dashboard.",
};

/// A development key in a production context. Low-confidence secret keys are left out: `sk_test_` is also
/// Stripe's prefix.
fn is_dev_key_in_production(reference: &KeyReference) -> bool {
    reference.environment == KeyEnvironment::Test
        && reference.context == ReferenceContext::Production
        && !(reference.kind == KeyKind::Secret && reference.confidence == Some(Confidence::Low))
}

fn kind_str(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Publishable => "publishable",
        KeyKind::Secret => "secret",
    }
}

pub fn evaluate(input: &CheckInput<'_>) -> Verdict {
    let artifact = match input.artifact.require() {
        Ok(artifact) => artifact,
        Err(verdict) => return verdict,
    };

    // identity -> references, in a stable order.
    let mut groups: BTreeMap<[String; 3], Vec<&KeyReference>> = BTreeMap::new();
    for reference in artifact.key_references.iter().filter(|r| is_dev_key_in_production(r)) {
        let identity = [
            reference.file.clone(),
            reference.variable.clone().unwrap_or_default(),
            kind_str(reference.kind).to_owned(),
        ];
        groups.entry(identity).or_default().push(reference);
    }
    if groups.is_empty() {
        return Verdict::Pass;
    }

    let findings = groups
        .into_iter()
        .map(|(identity, mut references)| {
            references.sort_by_key(|r| r.line);
            let first = references[0];
            let lines: Vec<u32> = references.iter().map(|r| r.line).collect();
            let (prefix, label) = match first.kind {
                KeyKind::Publishable => ("pk_test_*", "development publishable key"),
                KeyKind::Secret => ("sk_test_*", "development secret key"),
            };
            let place = format!("{}:{}", first.file, lines.iter().map(u32::to_string).collect::<Vec<_>>().join(", "));
            let repo = match &first.variable {
                Some(variable) => {
                    format!("sets {prefix} ({label}) in {variable} at {place}, a production context")
                }
                None => format!("writes {prefix} ({label}) at {place}, a production context"),
            };
            let details = json!({
                "file": first.file,
                "lines": lines,
                "variable": first.variable,
                "kind": kind_str(first.kind),
                "environment": "test",
                "context": first.context,
            });
            FailureDraft { evidence: Evidence { repo: Some(repo), clerk: None, details }, identity: identity.into() }
        })
        .collect();
    Verdict::Fail(findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::artifact::ArtifactUnreadable;
    use crate::audit::artifact::{KeyEnvironment::*, KeyKind::*, ReferenceContext as Ctx, RepoArtifact};
    use crate::audit::checks::CheckSettings;
    use crate::audit::checks::fixtures::{artifact, facts, key};
    use crate::audit::checks::{NO_REPO_SCAN, REPO_ARTIFACT_UNREADABLE, RepoEvidence};
    use crate::audit::facts::InstanceEnvironment::*;

    fn run(artifact: Option<&RepoArtifact>) -> Verdict {
        let facts = facts(Production);
        evaluate(&CheckInput { facts: &facts, artifact: artifact.into(), settings: &CheckSettings::default() })
    }

    fn secret(environment: KeyEnvironment, context: Ctx, confidence: Option<Confidence>) -> KeyReference {
        let mut reference = key(Secret, environment, context);
        reference.file = "deploy/prod.env".into();
        reference.line = 5;
        reference.variable = Some("CLERK_SECRET_KEY".into());
        reference.fingerprint = Some("sha256:00ff".into());
        reference.confidence = confidence;
        reference
    }

    #[test]
    fn meta_is_the_blocker() {
        assert_eq!(META.id, "CLERK-DEV-KEY-001");
        assert_eq!(META.severity, Severity::Blocker);
    }

    #[test]
    fn skipped_without_repo_scan() {
        assert_eq!(run(None), Verdict::Skipped(NO_REPO_SCAN.into()));
    }

    #[test]
    fn passes_when_no_test_key_is_in_a_production_context() {
        let repo = artifact(vec![
            key(Publishable, Live, Ctx::Production),
            secret(Live, Ctx::Production, Some(Confidence::High)),
            key(Publishable, Test, Ctx::Development),
            key(Publishable, Test, Ctx::Example),
            key(Publishable, Test, Ctx::Unknown),
            secret(Test, Ctx::Test, None),
        ]);
        assert_eq!(run(Some(&repo)), Verdict::Pass);
    }

    #[test]
    fn passes_when_the_only_production_test_secret_has_low_confidence() {
        let repo = artifact(vec![secret(Test, Ctx::Production, Some(Confidence::Low))]);
        assert_eq!(run(Some(&repo)), Verdict::Pass);
    }

    #[test]
    fn fails_on_a_test_publishable_key_in_production() {
        let repo = artifact(vec![key(Publishable, Test, Ctx::Production)]);
        let Verdict::Fail(findings) = run(Some(&repo)) else { panic!("expected a failure") };
        assert_eq!(findings.len(), 1);
        let finding = &findings[0];
        assert_eq!(finding.identity, vec![".env.production", "NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY", "publishable"]);
        assert_eq!(
            finding.evidence.repo.as_deref(),
            Some(
                "sets pk_test_* (development publishable key) in NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY \
                 at .env.production:3, a production context"
            )
        );
        assert_eq!(finding.evidence.clerk, None);
        assert_eq!(
            finding.evidence.details,
            json!({"file": ".env.production", "lines": [3], "variable": "NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY",
                   "kind": "publishable", "environment": "test", "context": "production"})
        );
    }

    #[test]
    fn fails_once_per_reference_including_secret_keys_without_variable() {
        let mut unnamed = secret(Test, Ctx::Production, Some(Confidence::Medium));
        unnamed.file = "scripts/deploy.ts".into();
        unnamed.line = 9;
        unnamed.variable = None;
        let repo = artifact(vec![
            secret(Test, Ctx::Production, Some(Confidence::High)),
            key(Publishable, Test, Ctx::Production),
            unnamed,
            secret(Test, Ctx::Production, Some(Confidence::Low)),
        ]);
        let Verdict::Fail(findings) = run(Some(&repo)) else { panic!("expected a failure") };
        let identities: Vec<_> = findings.iter().map(|f| f.identity.clone()).collect();
        assert_eq!(
            identities,
            vec![
                vec![".env.production", "NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY", "publishable"],
                vec!["deploy/prod.env", "CLERK_SECRET_KEY", "secret"],
                vec!["scripts/deploy.ts", "", "secret"],
            ]
        );
        assert_eq!(
            findings[2].evidence.repo.as_deref(),
            Some("writes sk_test_* (development secret key) at scripts/deploy.ts:9, a production context")
        );
        // No sentence carries the fingerprint of a secret key.
        for finding in &findings {
            assert!(!finding.evidence.repo.as_deref().unwrap().contains("sha256"));
        }
    }

    #[test]
    fn one_finding_for_a_variable_set_twice_in_one_file() {
        let mut again = key(Publishable, Test, Ctx::Production);
        again.line = 12;
        let repo = artifact(vec![again, key(Publishable, Test, Ctx::Production)]);
        let Verdict::Fail(findings) = run(Some(&repo)) else { panic!("expected a failure") };
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].evidence.details["lines"], json!([3, 12]));
        assert!(findings[0].evidence.repo.as_deref().unwrap().contains(".env.production:3, 12"));
    }

    #[test]
    fn does_not_depend_on_the_instance() {
        let repo = artifact(vec![key(Publishable, Test, Ctx::Production)]);
        let production = run(Some(&repo));
        for environment in [Development, Staging] {
            let facts = facts(environment);
            let verdict = evaluate(&CheckInput {
                facts: &facts,
                artifact: RepoEvidence::Present(&repo),
                settings: &CheckSettings::default(),
            });
            assert_eq!(verdict, production);
        }
    }

    #[test]
    fn error_when_the_stored_repo_scan_is_unreadable() {
        let facts = facts(Production);
        let unreadable = RepoEvidence::Unreadable(ArtifactUnreadable::TooLarge(10));
        let verdict =
            evaluate(&CheckInput { facts: &facts, artifact: unreadable, settings: &CheckSettings::default() });
        assert_eq!(
            verdict,
            Verdict::Error(format!("{REPO_ARTIFACT_UNREADABLE}: the stored document is over the 10-byte cap"))
        );
    }
}
