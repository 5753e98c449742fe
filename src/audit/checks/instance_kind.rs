//! CLERK-INSTANCE-001: the connected instance is a development instance and nothing in the repo says it
//! serves production. When the repo does show production use, the blocker checks (CLERK-DEV-IN-PROD-001,
//! CLERK-DEV-KEY-001) report it instead.

use std::collections::BTreeSet;

use serde_json::json;

use super::{
    CheckInput, CheckMeta, Evidence, FailureDraft, NO_REPO_SCAN, REPO_ARTIFACT_UNREADABLE, RepoEvidence, Severity,
    Verdict,
};
use crate::audit::artifact::{KeyEnvironment, KeyKind, KeyReference, ReferenceContext};
use crate::audit::facts::InstanceEnvironment;

pub const META: CheckMeta = CheckMeta {
    id: "CLERK-INSTANCE-001",
    severity: Severity::Info,
    title: "Connected Clerk instance is a development instance",
    why: "PulseLight audits the instance whose secret key you connected, and this one is a development \
          instance. The production checks (MFA, email sender DNS) do not apply to it, so if your live app \
          signs users in through another Clerk instance, that instance is not being audited.",
    fix: "If your app is live, connect the secret key (sk_live_) of its production instance in PulseLight's \
          Clerk settings. If auditing this development instance is what you meant, no action is needed.",
};

/// A reference that says the repo is deployed to production: a `pk_live_` key outside an example (a
/// commented-out line or documentation shows a key, it does not deploy one), or any key in a production
/// context.
fn is_production_evidence(reference: &KeyReference) -> bool {
    (reference.kind == KeyKind::Publishable
        && reference.environment == KeyEnvironment::Live
        && reference.context != ReferenceContext::Example)
        || reference.context == ReferenceContext::Production
}

pub fn evaluate(input: &CheckInput<'_>) -> Verdict {
    if input.facts.instance.environment != InstanceEnvironment::Development {
        return Verdict::Pass;
    }
    let artifact = match input.artifact {
        RepoEvidence::Present(artifact) => artifact,
        // No repo scan: nothing says this instance serves production, which is exactly what this finding
        // tells the customer.
        RepoEvidence::Absent => return no_repo_scan(input),
        RepoEvidence::Unreadable(why) => return Verdict::Error(format!("{REPO_ARTIFACT_UNREADABLE}: {why}")),
    };
    if artifact.key_references.iter().any(is_production_evidence) {
        return Verdict::Pass;
    }

    let count = artifact.key_references.len();
    let contexts: BTreeSet<ReferenceContext> = artifact.key_references.iter().map(|r| r.context).collect();
    let repo = match count {
        0 => "references no Clerk key, so nothing shows this instance serving production".to_owned(),
        1 => "references 1 Clerk key, not a pk_live_* key and not in a production context".to_owned(),
        n => format!("references {n} Clerk keys, none a pk_live_* key or in a production context"),
    };
    let details = json!({
        "instance_id": input.facts.instance.id,
        "instance_environment": input.facts.instance.environment.as_str(),
        "repo": artifact.repo,
        "commit": artifact.commit,
        "key_references": count,
        "contexts": contexts,
    });
    Verdict::Fail(vec![FailureDraft {
        evidence: Evidence {
            repo: Some(repo),
            clerk: Some(format!("instance kind = '{}'", input.facts.instance.environment.as_str())),
            details,
        },
        identity: vec![],
    }])
}

/// The finding for a development instance whose project has no repo scan stored.
fn no_repo_scan(input: &CheckInput<'_>) -> Verdict {
    let details = json!({
        "instance_id": input.facts.instance.id,
        "instance_environment": input.facts.instance.environment.as_str(),
        "repo_scan": null,
    });
    Verdict::Fail(vec![FailureDraft {
        evidence: Evidence {
            repo: Some(NO_REPO_SCAN.into()),
            clerk: Some(format!("instance kind = '{}'", input.facts.instance.environment.as_str())),
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
    use crate::audit::checks::CheckSettings;
    use crate::audit::checks::fixtures::run_with_repo;
    use crate::audit::checks::fixtures::{artifact, facts, key};
    use crate::audit::checks::{REPO_ARTIFACT_UNREADABLE, RepoEvidence};
    use crate::audit::facts::InstanceEnvironment::*;

    #[test]
    fn meta_is_informational() {
        assert_eq!(META.id, "CLERK-INSTANCE-001");
        assert_eq!(META.severity, Severity::Info);
    }

    #[test]
    fn passes_on_a_non_development_instance_with_or_without_repo_scan() {
        let repo = artifact(vec![]);
        for environment in [Production, Staging, InstanceEnvironment::Other("preview".into())] {
            assert_eq!(run_with_repo(evaluate, &facts(environment.clone()), None), Verdict::Pass);
            assert_eq!(run_with_repo(evaluate, &facts(environment), Some(&repo)), Verdict::Pass);
        }
    }

    #[test]
    fn reported_on_development_without_repo_scan() {
        let Verdict::Fail(findings) = run_with_repo(evaluate, &facts(Development), None) else {
            panic!("expected the info finding");
        };
        assert_eq!(findings.len(), 1);
        assert!(findings[0].identity.is_empty());
        assert_eq!(findings[0].evidence.repo.as_deref(), Some("no repo scan stored for this project"));
        assert_eq!(findings[0].evidence.clerk.as_deref(), Some("instance kind = 'development'"));
        assert_eq!(
            findings[0].evidence.details,
            json!({"instance_id": "ins_test", "instance_environment": "development", "repo_scan": null})
        );
    }

    #[test]
    fn a_live_publishable_key_in_an_example_is_not_production_evidence() {
        let repo = artifact(vec![key(Publishable, Live, Ctx::Example)]);
        assert!(matches!(run_with_repo(evaluate, &facts(Development), Some(&repo)), Verdict::Fail(_)));
    }

    #[test]
    fn passes_on_development_when_the_repo_has_a_live_publishable_key() {
        let repo = artifact(vec![key(Publishable, Live, Ctx::Unknown)]);
        assert_eq!(run_with_repo(evaluate, &facts(Development), Some(&repo)), Verdict::Pass);
    }

    #[test]
    fn passes_on_development_when_a_key_is_in_a_production_context() {
        let repo = artifact(vec![key(Secret, Test, Ctx::Production)]);
        assert_eq!(run_with_repo(evaluate, &facts(Development), Some(&repo)), Verdict::Pass);
    }

    #[test]
    fn fails_on_development_without_production_evidence() {
        let repo = artifact(vec![
            key(Publishable, Test, Ctx::Development),
            key(Secret, Live, Ctx::Unknown),
            key(Publishable, Test, Ctx::Example),
        ]);
        let Verdict::Fail(findings) = run_with_repo(evaluate, &facts(Development), Some(&repo)) else {
            panic!("expected a failure");
        };
        assert_eq!(findings.len(), 1);
        let finding = &findings[0];
        assert!(finding.identity.is_empty());
        assert_eq!(finding.evidence.clerk.as_deref(), Some("instance kind = 'development'"));
        assert_eq!(
            finding.evidence.repo.as_deref(),
            Some("references 3 Clerk keys, none a pk_live_* key or in a production context")
        );
        assert_eq!(
            finding.evidence.details,
            json!({"instance_id": "ins_test", "instance_environment": "development",
                   "repo": "github.com/acme/web", "commit": "3f2a", "key_references": 3,
                   "contexts": ["development", "example", "unknown"]})
        );
    }

    #[test]
    fn fails_on_development_when_the_repo_references_no_key() {
        let repo = artifact(vec![]);
        let Verdict::Fail(findings) = run_with_repo(evaluate, &facts(Development), Some(&repo)) else {
            panic!("expected a failure");
        };
        assert_eq!(findings.len(), 1);
        assert!(findings[0].identity.is_empty());
        assert_eq!(
            findings[0].evidence.repo.as_deref(),
            Some("references no Clerk key, so nothing shows this instance serving production")
        );
        assert_eq!(findings[0].evidence.details["key_references"], json!(0));
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
