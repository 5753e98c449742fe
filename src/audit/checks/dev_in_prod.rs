//! CLERK-DEV-IN-PROD-001: the repo uses a production publishable key (`pk_live_`) while the connected
//! instance is a development instance.
//!
//! One problem per instance: every `pk_live_` reference is listed in a single finding, whose identity is
//! empty so that adding or moving a reference does not make it a new finding.

use serde_json::json;

use super::{CheckInput, CheckMeta, Evidence, FailureDraft, Severity, Verdict};
use crate::audit::artifact::{KeyEnvironment, KeyKind, KeyReference, ReferenceContext};
use crate::audit::facts::InstanceEnvironment;

pub const META: CheckMeta = CheckMeta {
    id: "CLERK-DEV-IN-PROD-001",
    severity: Severity::Blocker,
    title: "Development instance handling production traffic",
    why: "The code ships a production publishable key (pk_live_*) while the connected Clerk instance is a \
          development instance. Development instances are built for local testing: anyone can sign up with \
          any email, no verification required, OAuth sign-in uses Clerk's shared credentials, sessions rely \
          on a development browser token passed in URLs, and users and request rates are capped. Real users \
          served by it are exposed to account takeover and lockouts.",
    fix: "Create a production instance in the Clerk dashboard (it can copy this instance's settings) and point \
          the production env vars at its pk_live_/sk_live_ keys. If production already runs on another Clerk \
          instance, connect that instance's secret key in PulseLight instead of this development one.",
};

/// A usable production publishable key: `pk_live_` that decodes to a Frontend API host, outside an example
/// (a commented-out line or documentation shows a key, it does not deploy one).
fn is_live_publishable(reference: &KeyReference) -> bool {
    reference.kind == KeyKind::Publishable
        && reference.environment == KeyEnvironment::Live
        && !reference.malformed
        && reference.context != ReferenceContext::Example
}

pub fn evaluate(input: &CheckInput<'_>) -> Verdict {
    let artifact = match input.artifact.require() {
        Ok(artifact) => artifact,
        Err(verdict) => return verdict,
    };
    if input.facts.instance.environment != InstanceEnvironment::Development {
        return Verdict::Pass;
    }
    let mut live: Vec<&KeyReference> = artifact.key_references.iter().filter(|r| is_live_publishable(r)).collect();
    if live.is_empty() {
        return Verdict::Pass;
    }
    live.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));

    let first = live[0];
    let others = match live.len() - 1 {
        0 => String::new(),
        1 => " and 1 other place".into(),
        n => format!(" and {n} other places"),
    };
    let repo = format!("references pk_live_* (production publishable key) in {}:{}{others}", first.file, first.line);
    let clerk = format!("instance kind = '{}'", input.facts.instance.environment.as_str());
    let references: Vec<_> = live
        .iter()
        .map(|r| {
            json!({
                "file": r.file,
                "line": r.line,
                "variable": r.variable,
                "context": r.context,
            })
        })
        .collect();
    let details = json!({
        "instance_id": input.facts.instance.id,
        "instance_environment": input.facts.instance.environment.as_str(),
        "references": references,
    });
    Verdict::Fail(vec![FailureDraft {
        evidence: Evidence { repo: Some(repo), clerk: Some(clerk), details },
        identity: vec![],
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::artifact::ArtifactUnreadable;
    use crate::audit::artifact::{KeyEnvironment::*, KeyKind::*};
    use crate::audit::checks::CheckSettings;
    use crate::audit::checks::fixtures::run_with_repo;
    use crate::audit::checks::fixtures::{artifact, facts, key};
    use crate::audit::checks::{NO_REPO_SCAN, REPO_ARTIFACT_UNREADABLE, RepoEvidence};
    use crate::audit::facts::InstanceEnvironment::*;

    #[test]
    fn meta_is_the_blocker() {
        assert_eq!(META.id, "CLERK-DEV-IN-PROD-001");
        assert_eq!(META.severity, Severity::Blocker);
    }

    #[test]
    fn skipped_without_repo_scan() {
        assert_eq!(run_with_repo(evaluate, &facts(Development), None), Verdict::Skipped(NO_REPO_SCAN.into()));
    }

    #[test]
    fn passes_on_a_production_instance_even_with_pk_live() {
        let repo = artifact(vec![key(Publishable, Live, ReferenceContext::Production)]);
        assert_eq!(run_with_repo(evaluate, &facts(Production), Some(&repo)), Verdict::Pass);
        assert_eq!(run_with_repo(evaluate, &facts(Staging), Some(&repo)), Verdict::Pass);
    }

    #[test]
    fn passes_on_development_without_live_publishable_key() {
        let mut malformed = key(Publishable, Live, ReferenceContext::Production);
        malformed.malformed = true;
        let repo = artifact(vec![
            key(Publishable, Test, ReferenceContext::Development),
            key(Secret, Live, ReferenceContext::Production),
            malformed,
        ]);
        assert_eq!(run_with_repo(evaluate, &facts(Development), Some(&repo)), Verdict::Pass);
    }

    #[test]
    fn passes_on_development_when_pk_live_appears_only_in_examples() {
        let mut documented = key(Publishable, Live, ReferenceContext::Example);
        documented.file = "README.md".into();
        let repo = artifact(vec![documented, key(Publishable, Test, ReferenceContext::Development)]);
        assert_eq!(run_with_repo(evaluate, &facts(Development), Some(&repo)), Verdict::Pass);
    }

    #[test]
    fn fails_once_listing_every_live_publishable_reference() {
        let mut second = key(Publishable, Live, ReferenceContext::Unknown);
        second.file = "app/config.ts".into();
        second.line = 7;
        second.variable = None;
        let mut malformed = key(Publishable, Live, ReferenceContext::Production);
        malformed.malformed = true;
        malformed.line = 9;
        let repo = artifact(vec![
            key(Publishable, Live, ReferenceContext::Production),
            key(Publishable, Test, ReferenceContext::Development),
            second,
            malformed,
        ]);
        let Verdict::Fail(findings) = run_with_repo(evaluate, &facts(Development), Some(&repo)) else {
            panic!("expected a failure");
        };
        assert_eq!(findings.len(), 1);
        let finding = &findings[0];
        assert!(finding.identity.is_empty());
        assert_eq!(
            finding.evidence.repo.as_deref(),
            Some("references pk_live_* (production publishable key) in .env.production:3 and 1 other place")
        );
        assert_eq!(finding.evidence.clerk.as_deref(), Some("instance kind = 'development'"));
        assert_eq!(
            finding.evidence.details,
            json!({
                "instance_id": "ins_test",
                "instance_environment": "development",
                "references": [
                    {"file": ".env.production", "line": 3,
                     "variable": "NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY", "context": "production"},
                    {"file": "app/config.ts", "line": 7, "variable": null, "context": "unknown"},
                ],
            })
        );
    }

    #[test]
    fn error_when_the_stored_repo_scan_is_unreadable() {
        let facts = facts(Development);
        let unreadable = RepoEvidence::Unreadable(ArtifactUnreadable::TooLarge(10));
        let verdict =
            evaluate(&CheckInput { facts: &facts, artifact: unreadable, settings: &CheckSettings::default() });
        assert_eq!(
            verdict,
            Verdict::Error(format!("{REPO_ARTIFACT_UNREADABLE}: the stored document is over the 10-byte cap"))
        );
    }
}
