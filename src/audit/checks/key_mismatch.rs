//! CLERK-KEY-MISMATCH-001: the repo's production publishable key (`pk_live_`) decodes to a Frontend API host
//! that is none of the connected instance's: the audited instance is not the one the app uses.
//!
//! One finding per foreign host, listing every place a key for it is written. Development instances are
//! left to CLERK-DEV-IN-PROD-001, which reports any `pk_live_` next to a development instance.

use std::collections::BTreeMap;

use serde_json::json;

use super::{CheckInput, CheckMeta, Evidence, FailureDraft, Severity, Verdict};
use crate::audit::artifact::{KeyEnvironment, KeyKind, KeyReference, ReferenceContext};

pub const META: CheckMeta = CheckMeta {
    id: "CLERK-KEY-MISMATCH-001",
    severity: Severity::Warning,
    title: "The app's production key belongs to another Clerk instance",
    why: "The production publishable key in the repo points at a Frontend API host that is not the connected \
          instance's. The app signs users in against a different Clerk instance than the one audited, so \
          this audit (and any settings you fix here) does not describe production, and the other instance \
          goes unreviewed.",
    fix: "Connect the secret key of the instance whose publishable key the app ships (Clerk dashboard > API \
          keys of that instance), or, if the repo's key is the stale one, replace it with the connected \
          instance's pk_live_ key.",
};

/// A production publishable key that names a host, outside documentation examples.
fn live_host(reference: &KeyReference) -> Option<String> {
    if reference.kind != KeyKind::Publishable
        || reference.environment != KeyEnvironment::Live
        || reference.malformed
        || reference.context == ReferenceContext::Example
    {
        return None;
    }
    reference.frontend_api_host.as_ref().map(|host| host.to_ascii_lowercase())
}

pub fn evaluate(input: &CheckInput<'_>) -> Verdict {
    let artifact = match input.artifact.require() {
        Ok(artifact) => artifact,
        Err(verdict) => return verdict,
    };
    if !input.facts.is_production() {
        return Verdict::Pass;
    }
    let own = &input.facts.frontend_api_hosts;
    if own.is_empty() {
        return Verdict::Error("the instance's Frontend API host is unknown (no domain)".into());
    }
    let mut foreign: BTreeMap<String, Vec<&KeyReference>> = BTreeMap::new();
    for reference in &artifact.key_references {
        if let Some(host) = live_host(reference).filter(|host| !own.contains(host)) {
            foreign.entry(host).or_default().push(reference);
        }
    }
    if foreign.is_empty() {
        return Verdict::Pass;
    }
    let findings = foreign
        .into_iter()
        .map(|(host, mut references)| {
            references.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
            let first = references[0];
            let others = match references.len() - 1 {
                0 => String::new(),
                1 => " and 1 other place".into(),
                n => format!(" and {n} other places"),
            };
            let repo =
                format!("pk_live_* at {}:{}{others} decodes to Frontend API host {host}", first.file, first.line);
            let clerk = format!("connected instance's Frontend API host: {}", own.join(", "));
            let listed: Vec<_> = references
                .iter()
                .map(|r| json!({"file": r.file, "line": r.line, "variable": r.variable, "context": r.context}))
                .collect();
            let details = json!({
                "instance_id": input.facts.instance.id,
                "repo_frontend_api_host": host,
                "instance_frontend_api_hosts": own,
                "references": listed,
            });
            FailureDraft { evidence: Evidence { repo: Some(repo), clerk: Some(clerk), details }, identity: vec![host] }
        })
        .collect();
    Verdict::Fail(findings)
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

    fn production() -> ClerkFacts {
        let mut facts = facts(Production);
        facts.frontend_api_hosts = vec!["clerk.acme.com".into(), "clerk.acme.eu".into()];
        facts
    }

    fn live(host: &str, file: &str, context: Ctx) -> KeyReference {
        let mut reference = key(Publishable, Live, context);
        reference.frontend_api_host = Some(host.into());
        reference.file = file.into();
        reference
    }

    #[test]
    fn meta_is_a_warning() {
        assert_eq!(META.id, "CLERK-KEY-MISMATCH-001");
        assert_eq!(META.severity, Severity::Warning);
    }

    #[test]
    fn skipped_without_repo_scan() {
        assert_eq!(run_with_repo(evaluate, &production(), None), Verdict::Skipped(NO_REPO_SCAN.into()));
    }

    #[test]
    fn error_when_the_stored_repo_scan_is_unreadable() {
        let facts = production();
        let artifact = RepoEvidence::Unreadable(ArtifactUnreadable::Malformed);
        let verdict = evaluate(&CheckInput { facts: &facts, artifact, settings: &CheckSettings::default() });
        assert_eq!(
            verdict,
            Verdict::Error(format!("{REPO_ARTIFACT_UNREADABLE}: it does not follow the artifact schema"))
        );
    }

    #[test]
    fn passes_on_a_development_instance() {
        let repo = artifact(vec![live("clerk.other.com", ".env.production", Ctx::Production)]);
        assert_eq!(run_with_repo(evaluate, &facts(Development), Some(&repo)), Verdict::Pass);
    }

    #[test]
    fn error_when_the_instance_host_is_unknown() {
        let repo = artifact(vec![]);
        assert!(matches!(run_with_repo(evaluate, &facts(Production), Some(&repo)), Verdict::Error(_)));
    }

    #[test]
    fn passes_when_every_live_key_is_the_instance_s_own() {
        let mut malformed = key(Publishable, Live, Ctx::Production);
        malformed.malformed = true;
        let repo = artifact(vec![
            live("clerk.acme.com", ".env.production", Ctx::Production),
            live("CLERK.ACME.EU", "eu/.env.production", Ctx::Production),
            live("clerk.example.com", ".env.example", Ctx::Example),
            malformed,
            key(Publishable, Test, Ctx::Production),
        ]);
        assert_eq!(run_with_repo(evaluate, &production(), Some(&repo)), Verdict::Pass);
    }

    #[test]
    fn fails_once_per_foreign_host() {
        let repo = artifact(vec![
            live("clerk.other.com", "web/.env.production", Ctx::Production),
            live("clerk.other.com", ".env.production", Ctx::Production),
            live("clerk.acme.com", "app/.env.production", Ctx::Production),
        ]);
        let Verdict::Fail(findings) = run_with_repo(evaluate, &production(), Some(&repo)) else {
            panic!("expected a failure")
        };
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].identity, vec!["clerk.other.com"]);
        assert_eq!(
            findings[0].evidence.repo.as_deref(),
            Some("pk_live_* at .env.production:3 and 1 other place decodes to Frontend API host clerk.other.com")
        );
        assert_eq!(
            findings[0].evidence.clerk.as_deref(),
            Some("connected instance's Frontend API host: clerk.acme.com, clerk.acme.eu")
        );
    }
}
