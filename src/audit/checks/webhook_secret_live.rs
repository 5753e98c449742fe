//! CLERK-WEBHOOK-003: a `whsec_` secret written in the repo equals the signing secret of a live endpoint:
//! an enabled endpoint delivering to that handler (the only endpoints whose secret the worker reads, and
//! only because the repo holds such a value). The repo holds it when the handler's `literal_fingerprint`
//! is written in the code, or when a committed env file (`committed_secrets`) assigns a `whsec_` value to
//! the environment variable the handler reads. Compared as fingerprints; the
//! evidence names the handler and the endpoint, never a secret or fingerprint. One finding per handler and
//! endpoint.

use serde_json::json;

use super::webhook_common::{
    WrittenSecret, distinct_handlers, endpoint_details, handler_details, handler_label, route_key, webhook_facts,
    written_secrets,
};
use super::{CheckInput, CheckMeta, Evidence, FailureDraft, Severity, Verdict};

pub const META: CheckMeta = CheckMeta {
    id: "CLERK-WEBHOOK-003",
    severity: Severity::Blocker,
    title: "Live webhook signing secret written in the repo",
    why: "The whsec_ signing secret of a live Clerk webhook endpoint is written in the source code or in a \
          committed env file. Anyone who can read the repository, its history, a fork or a build log can sign forged webhook events that your \
          handler accepts as genuine: create or delete users, change roles, trigger emails.",
    fix: "Rotate the endpoint's signing secret in the Clerk dashboard (Configure > Webhooks > the endpoint > \
          Signing Secret > Rotate), keep the new value only in your deployment's secret store (e.g. \
          CLERK_WEBHOOK_SIGNING_SECRET), read it from the environment in the handler and delete the literal (or \
          remove the env file from the repository and add it to .gitignore). The old value stays in git \
          history, so rotating is required, not just deleting it.",
};

/// The reason when a handler's comparison needs secrets the worker did not read.
pub const SECRETS_NOT_READ: &str =
    "the signing secrets of some endpoints delivering to a handler with a written secret were not read";

pub fn evaluate(input: &CheckInput<'_>) -> Verdict {
    let artifact = match input.artifact.require() {
        Ok(artifact) => artifact,
        Err(verdict) => return verdict,
    };
    // Only handlers with a written secret, each with the fingerprints of the values the repo holds.
    let handlers: Vec<_> = distinct_handlers(&artifact.webhook_handlers)
        .into_iter()
        .map(|h| (h, written_secrets(artifact, h)))
        .filter(|(_, written)| !written.is_empty())
        .collect();
    if handlers.is_empty() {
        return Verdict::Pass;
    }
    let webhooks = match webhook_facts(input) {
        Ok(webhooks) => webhooks,
        Err(verdict) => return verdict,
    };
    let mut findings = Vec::new();
    let mut unread = false;
    for (handler, written) in handlers {
        for endpoint in webhooks.delivering_to(handler.route.as_deref()) {
            let Some(fingerprint) = endpoint.secret_fingerprint.as_deref() else {
                unread = true;
                continue;
            };
            let Some(found) = written.iter().find(|w| w.fingerprint == fingerprint) else { continue };
            findings.push(FailureDraft {
                evidence: Evidence {
                    repo: Some(format!("{} {}", handler_label(handler), where_written(found))),
                    clerk: Some(format!(
                        "it is the signing secret of the enabled webhook endpoint {} ({})",
                        endpoint.url, endpoint.id
                    )),
                    details: json!({
                        "handler": handler_details(handler),
                        "endpoint": endpoint_details(endpoint),
                        "committed": found.committed.map(|c| json!({ "file": c.file, "line": c.line, "variable": c.variable })),
                    }),
                },
                identity: vec![handler.file.clone(), route_key(handler), endpoint.id.clone()],
            });
        }
    }
    if !findings.is_empty() {
        Verdict::Fail(findings)
    } else if unread {
        Verdict::Error(SECRETS_NOT_READ.into())
    } else {
        Verdict::Pass
    }
}

/// How the evidence says where the secret is written (never the value or its fingerprint).
fn where_written(found: &WrittenSecret<'_>) -> String {
    match found.committed {
        None => "verifies Clerk webhooks with a whsec_ secret written in the code".to_owned(),
        Some(c) => format!(
            "verifies Clerk webhooks with {}, whose whsec_ value is committed in {}:{}",
            c.variable, c.file, c.line
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::artifact::ArtifactUnreadable;
    use crate::audit::checks::CheckSettings;
    use crate::audit::checks::fixtures::run_with_repo;
    use crate::audit::checks::fixtures::webhooks::*;
    use crate::audit::checks::{NO_REPO_SCAN, REPO_ARTIFACT_UNREADABLE, RepoEvidence};
    use crate::audit::facts::Fact;

    const LIVE: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const OTHER: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn read(
        mut endpoint: crate::audit::facts::WebhookEndpoint,
        fingerprint: &str,
    ) -> crate::audit::facts::WebhookEndpoint {
        endpoint.secret_fingerprint = Some(fingerprint.into());
        endpoint
    }

    #[test]
    fn meta_is_a_blocker() {
        assert_eq!(META.id, "CLERK-WEBHOOK-003");
        assert_eq!(META.severity, Severity::Blocker);
    }

    #[test]
    fn skipped_without_a_repo_scan() {
        assert_eq!(run_with_repo(evaluate, &facts(no_app()), None), Verdict::Skipped(NO_REPO_SCAN.into()));
    }

    #[test]
    fn passes_without_handlers_or_without_written_secrets() {
        let unavailable = facts(Fact::Unavailable("down".into()));
        assert_eq!(run_with_repo(evaluate, &unavailable, Some(&artifact(vec![]))), Verdict::Pass);
        assert_eq!(run_with_repo(evaluate, &unavailable, Some(&artifact(vec![handler()]))), Verdict::Pass);
    }

    #[test]
    fn error_when_webhooks_are_unavailable() {
        let verdict = run_with_repo(
            evaluate,
            &facts(Fact::Unavailable("Svix endpoint secret: timed out".into())),
            Some(&artifact(vec![with_literal(handler(), LIVE)])),
        );
        assert_eq!(
            verdict,
            Verdict::Error("webhook configuration unavailable: Svix endpoint secret: timed out".into())
        );
    }

    #[test]
    fn fails_when_the_written_secret_is_a_live_endpoints() {
        let webhooks = app(vec![read(endpoint(1, "/other", false), OTHER), read(endpoint(2, ROUTE, false), LIVE)]);
        let Verdict::Fail(findings) =
            run_with_repo(evaluate, &facts(webhooks), Some(&artifact(vec![with_literal(handler(), LIVE)])))
        else {
            panic!("expected a failure")
        };
        assert_eq!(findings.len(), 1);
        let finding = &findings[0];
        assert_eq!(finding.identity, vec!["app/api/webhooks/clerk/route.ts", ROUTE, "ep_2"]);
        assert_eq!(
            finding.evidence.repo.as_deref(),
            Some(
                "app/api/webhooks/clerk/route.ts:12 (route /api/webhooks/clerk) verifies Clerk webhooks with a whsec_ secret written in the code"
            )
        );
        assert_eq!(
            finding.evidence.clerk.as_deref(),
            Some("it is the signing secret of the enabled webhook endpoint https://acme.com/api/webhooks/clerk (ep_2)")
        );
        assert_eq!(finding.evidence.details["handler"]["secret_source"], "literal");
        assert_eq!(finding.evidence.details["endpoint"]["url"], "https://acme.com/api/webhooks/clerk");
        let text = serde_json::to_string(&finding.evidence).unwrap();
        assert!(!text.contains(LIVE), "no fingerprint in the evidence");
    }

    #[test]
    fn fails_when_the_variable_the_handler_reads_holds_a_live_secret_in_a_committed_env_file() {
        let webhooks = app(vec![read(endpoint(2, ROUTE, false), LIVE)]);
        let committed = with_committed(artifact(vec![handler()]), "CLERK_WEBHOOK_SIGNING_SECRET", LIVE);
        let Verdict::Fail(findings) = run_with_repo(evaluate, &facts(webhooks), Some(&committed)) else {
            panic!("expected a failure")
        };
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].identity, vec!["app/api/webhooks/clerk/route.ts", ROUTE, "ep_2"]);
        assert_eq!(
            findings[0].evidence.repo.as_deref(),
            Some(
                "app/api/webhooks/clerk/route.ts:12 (route /api/webhooks/clerk) verifies Clerk webhooks with CLERK_WEBHOOK_SIGNING_SECRET, whose whsec_ value is committed in .env:3"
            )
        );
        assert_eq!(
            findings[0].evidence.details["committed"],
            json!({ "file": ".env", "line": 3, "variable": "CLERK_WEBHOOK_SIGNING_SECRET" })
        );
        assert!(!serde_json::to_string(&findings[0].evidence).unwrap().contains(LIVE));
    }

    #[test]
    fn a_committed_secret_of_another_variable_or_not_live_passes() {
        let webhooks = app(vec![read(endpoint(2, ROUTE, false), LIVE)]);
        let other_variable = with_committed(artifact(vec![handler()]), "SVIX_SECRET", LIVE);
        assert_eq!(run_with_repo(evaluate, &facts(webhooks.clone()), Some(&other_variable)), Verdict::Pass);
        let other_value = with_committed(artifact(vec![handler()]), "CLERK_WEBHOOK_SIGNING_SECRET", OTHER);
        assert_eq!(run_with_repo(evaluate, &facts(webhooks), Some(&other_value)), Verdict::Pass);
    }

    #[test]
    fn passes_when_the_written_secret_matches_no_delivering_endpoint() {
        // Stale secret (that is CLERK-WEBHOOK-004), or no endpoint delivering to the handler at all.
        let webhooks = app(vec![read(endpoint(1, ROUTE, false), OTHER), endpoint(2, ROUTE, true)]);
        assert_eq!(
            run_with_repo(evaluate, &facts(webhooks), Some(&artifact(vec![with_literal(handler(), LIVE)]))),
            Verdict::Pass
        );
        assert_eq!(
            run_with_repo(evaluate, &facts(no_app()), Some(&artifact(vec![with_literal(handler(), LIVE)]))),
            Verdict::Pass
        );
    }

    #[test]
    fn error_when_a_delivering_endpoints_secret_was_not_read() {
        let webhooks = app(vec![read(endpoint(1, ROUTE, false), OTHER), endpoint(2, ROUTE, false)]);
        assert_eq!(
            run_with_repo(evaluate, &facts(webhooks), Some(&artifact(vec![with_literal(handler(), LIVE)]))),
            Verdict::Error(SECRETS_NOT_READ.into())
        );
    }

    #[test]
    fn error_when_the_stored_repo_scan_is_unreadable() {
        let facts = facts(no_app());
        let unreadable = RepoEvidence::Unreadable(ArtifactUnreadable::TooLarge(10));
        let verdict =
            evaluate(&CheckInput { facts: &facts, artifact: unreadable, settings: &CheckSettings::default() });
        assert_eq!(
            verdict,
            Verdict::Error(format!("{REPO_ARTIFACT_UNREADABLE}: the stored document is over the 10-byte cap"))
        );
    }
}
