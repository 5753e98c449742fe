//! CLERK-WEBHOOK-002: a Clerk webhook handler in the repo verifies no signature (`verification: none`).
//! Needs only the artifact; the endpoints delivering to the handler are named when they are known. One
//! finding per handler, identified by its file and route.

use serde_json::{Value, json};

use super::webhook_common::{
    distinct_handlers, endpoints_details, handler_details, handler_identity, handler_label, list_urls,
};
use super::{CheckInput, CheckMeta, Evidence, FailureDraft, Severity, Verdict};
use crate::audit::artifact::Verification;
use crate::audit::facts::{Fact, WebhookEndpoint};

pub const META: CheckMeta = CheckMeta {
    id: "CLERK-WEBHOOK-002",
    severity: Severity::Blocker,
    title: "Webhook handler does not verify signatures",
    why: "The handler acts on Clerk events without checking their Svix signature, so anyone who finds its URL \
          can post forged events: create or delete users in your database, change their roles or trigger \
          emails. Replayed genuine deliveries are accepted too.",
    fix: "Verify every request before using it: call verifyWebhook(req) from @clerk/nextjs/webhooks (or \
          @clerk/backend/webhooks), or the svix library's new Webhook(secret).verify(rawBody, headers), with the \
          endpoint's signing secret read from the environment (CLERK_WEBHOOK_SIGNING_SECRET), and answer 400 \
          when verification fails.",
};

pub fn evaluate(input: &CheckInput<'_>) -> Verdict {
    let artifact = match input.artifact.require() {
        Ok(artifact) => artifact,
        Err(verdict) => return verdict,
    };
    let findings: Vec<FailureDraft> = distinct_handlers(&artifact.webhook_handlers)
        .into_iter()
        .filter(|handler| handler.verification == Verification::None)
        .map(|handler| {
            let (clerk, endpoints) = match &input.facts.webhooks {
                Fact::Known(webhooks) => {
                    let delivering: Vec<&WebhookEndpoint> = webhooks.delivering_to(handler.route.as_deref()).collect();
                    let sentence = if delivering.is_empty() {
                        "no enabled webhook endpoint delivers to it at the moment".to_owned()
                    } else {
                        format!("enabled webhook endpoints deliver to it: {}", list_urls(delivering.iter().copied()))
                    };
                    (Some(sentence), endpoints_details(delivering))
                }
                _ => (None, Value::Null),
            };
            FailureDraft {
                evidence: Evidence {
                    repo: Some(format!(
                        "{} handles Clerk webhooks without verifying their signature",
                        handler_label(handler)
                    )),
                    clerk,
                    details: json!({ "handler": handler_details(handler), "endpoints": endpoints }),
                },
                identity: handler_identity(handler),
            }
        })
        .collect();
    if findings.is_empty() { Verdict::Pass } else { Verdict::Fail(findings) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::artifact::ArtifactUnreadable;
    use crate::audit::checks::CheckSettings;
    use crate::audit::checks::fixtures::run_with_repo;
    use crate::audit::checks::fixtures::webhooks::*;
    use crate::audit::checks::{NO_REPO_SCAN, REPO_ARTIFACT_UNREADABLE, RepoEvidence};

    fn unverified() -> crate::audit::artifact::WebhookHandler {
        let mut handler = handler();
        handler.verification = Verification::None;
        handler.secret_source = None;
        handler
    }

    #[test]
    fn meta_is_a_blocker() {
        assert_eq!(META.id, "CLERK-WEBHOOK-002");
        assert_eq!(META.severity, Severity::Blocker);
    }

    #[test]
    fn skipped_without_a_repo_scan() {
        assert_eq!(run_with_repo(evaluate, &facts(no_app()), None), Verdict::Skipped(NO_REPO_SCAN.into()));
    }

    #[test]
    fn passes_without_handlers_or_when_every_handler_verifies() {
        assert_eq!(run_with_repo(evaluate, &facts(no_app()), Some(&artifact(vec![]))), Verdict::Pass);
        let mut svix = handler();
        svix.verification = Verification::Svix;
        let mut standard = handler();
        standard.verification = Verification::Standardwebhooks;
        assert_eq!(
            run_with_repo(evaluate, &facts(no_app()), Some(&artifact(vec![handler(), svix, standard]))),
            Verdict::Pass
        );
    }

    #[test]
    fn fails_naming_the_handler_and_the_endpoint_delivering_to_it() {
        let webhooks = app(vec![endpoint(1, ROUTE, false), endpoint(2, "/other", false)]);
        let Verdict::Fail(findings) =
            run_with_repo(evaluate, &facts(webhooks), Some(&artifact(vec![unverified(), handler()])))
        else {
            panic!("expected a failure")
        };
        assert_eq!(findings.len(), 1);
        let finding = &findings[0];
        assert_eq!(finding.identity, vec!["app/api/webhooks/clerk/route.ts", ROUTE]);
        assert_eq!(
            finding.evidence.repo.as_deref(),
            Some(
                "app/api/webhooks/clerk/route.ts:12 (route /api/webhooks/clerk) handles Clerk webhooks without verifying their signature"
            )
        );
        assert_eq!(
            finding.evidence.clerk.as_deref(),
            Some("enabled webhook endpoints deliver to it: https://acme.com/api/webhooks/clerk")
        );
        assert_eq!(finding.evidence.details["handler"]["verification"], "none");
        assert_eq!(finding.evidence.details["handler"]["secret_source"], Value::Null);
        assert_eq!(
            finding.evidence.details["endpoints"],
            json!([{"id": "ep_1", "url": "https://acme.com/api/webhooks/clerk", "disabled": false, "event_types": null}])
        );
    }

    #[test]
    fn fails_without_any_endpoint_and_even_when_webhooks_are_unavailable() {
        let Verdict::Fail(findings) = run_with_repo(evaluate, &facts(no_app()), Some(&artifact(vec![unverified()])))
        else {
            panic!()
        };
        assert_eq!(
            findings[0].evidence.clerk.as_deref(),
            Some("no enabled webhook endpoint delivers to it at the moment")
        );
        let Verdict::Fail(findings) =
            run_with_repo(evaluate, &facts(Fact::Unavailable("down".into())), Some(&artifact(vec![unverified()])))
        else {
            panic!()
        };
        assert_eq!(findings[0].evidence.clerk, None);
        assert_eq!(findings[0].evidence.details["endpoints"], Value::Null);
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
