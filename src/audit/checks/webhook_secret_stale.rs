//! CLERK-WEBHOOK-004: a `whsec_` secret written in the repo matches no live endpoint: the enabled endpoints
//! delivering to the handler all sign with other secrets, so the code verifies against a stale secret and
//! every delivery fails. A handler no enabled endpoint delivers to cannot be judged here (nothing is
//! delivered; CLERK-WEBHOOK-001 reports it): when that is true of every handler with a written secret, the
//! check is skipped. One finding per handler, identified by its file and route.

use serde_json::json;

use super::webhook_common::{
    distinct_handlers, endpoints_details, handler_details, handler_identity, handler_label, list_urls,
    literal_fingerprint, webhook_facts,
};
use super::{CheckInput, CheckMeta, Evidence, FailureDraft, Severity, Verdict};
use crate::audit::facts::WebhookEndpoint;

pub const META: CheckMeta = CheckMeta {
    id: "CLERK-WEBHOOK-004",
    severity: Severity::Warning,
    title: "Webhook handler verifies with a stale signing secret",
    why: "The handler checks signatures against a whsec_ secret written in the code, but the endpoint \
          delivering to it signs with a different secret (it was rotated, or the literal belongs to another \
          instance). Every genuine delivery fails verification and is rejected, then retried until Svix gives \
          up: the data the handler keeps in sync silently drifts. The old secret also sits in the repository.",
    fix: "Read the signing secret from an environment variable (e.g. CLERK_WEBHOOK_SIGNING_SECRET) set to the \
          current secret of the endpoint (Clerk dashboard > Configure > Webhooks > the endpoint > Signing \
          Secret), and delete the literal from the code.",
};

/// The reason when no handler with a written secret has an endpoint delivering to it.
pub const NOTHING_DELIVERED: &str =
    "no enabled webhook endpoint delivers to a handler with a written secret (see CLERK-WEBHOOK-001)";

/// The reason when a handler's comparison needs secrets the worker did not read.
pub const SECRETS_NOT_READ: &str =
    "the signing secrets of some endpoints delivering to a handler with a written secret were not read";

pub fn evaluate(input: &CheckInput<'_>) -> Verdict {
    let artifact = match input.artifact.require() {
        Ok(artifact) => artifact,
        Err(verdict) => return verdict,
    };
    // Only handlers with a written secret, each with that secret's fingerprint.
    let handlers: Vec<_> = distinct_handlers(&artifact.webhook_handlers)
        .into_iter()
        .filter_map(|h| literal_fingerprint(h).map(|literal| (h, literal)))
        .collect();
    if handlers.is_empty() {
        return Verdict::Pass;
    }
    let webhooks = match webhook_facts(input) {
        Ok(webhooks) => webhooks,
        Err(verdict) => return verdict,
    };
    let mut findings = Vec::new();
    let (mut unread, mut judged) = (false, false);
    for (handler, literal) in handlers {
        let delivering: Vec<&WebhookEndpoint> = webhooks.delivering_to(handler.route.as_deref()).collect();
        if delivering.is_empty() {
            continue;
        }
        if delivering.iter().any(|e| e.secret_fingerprint.as_deref() == Some(literal)) {
            judged = true;
            continue;
        }
        if delivering.iter().any(|e| e.secret_fingerprint.is_none()) {
            unread = true;
            continue;
        }
        judged = true;
        findings.push(FailureDraft {
            evidence: Evidence {
                repo: Some(format!(
                    "{} verifies Clerk webhooks with a whsec_ secret written in the code",
                    handler_label(handler)
                )),
                clerk: Some(format!(
                    "no enabled webhook endpoint delivering to it signs with that secret: {}",
                    list_urls(delivering.iter().copied())
                )),
                details: json!({ "handler": handler_details(handler), "endpoints": endpoints_details(delivering) }),
            },
            identity: handler_identity(handler),
        });
    }
    if !findings.is_empty() {
        Verdict::Fail(findings)
    } else if unread {
        Verdict::Error(SECRETS_NOT_READ.into())
    } else if !judged {
        Verdict::Skipped(NOTHING_DELIVERED.into())
    } else {
        Verdict::Pass
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

    const STALE: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const CURRENT: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn read(mut endpoint: WebhookEndpoint, fingerprint: &str) -> WebhookEndpoint {
        endpoint.secret_fingerprint = Some(fingerprint.into());
        endpoint
    }

    #[test]
    fn meta_is_a_warning() {
        assert_eq!(META.id, "CLERK-WEBHOOK-004");
        assert_eq!(META.severity, Severity::Warning);
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
            &facts(Fact::Unavailable("x".into())),
            Some(&artifact(vec![with_literal(handler(), STALE)])),
        );
        assert_eq!(verdict, Verdict::Error("webhook configuration unavailable: x".into()));
    }

    #[test]
    fn fails_when_no_delivering_endpoint_has_the_written_secret() {
        let webhooks = app(vec![
            read(endpoint(1, ROUTE, false), CURRENT),
            read(endpoint(2, "/other", false), STALE), // elsewhere: does not deliver to this handler
            endpoint(3, ROUTE, true),
        ]);
        let Verdict::Fail(findings) =
            run_with_repo(evaluate, &facts(webhooks), Some(&artifact(vec![with_literal(handler(), STALE)])))
        else {
            panic!("expected a failure")
        };
        assert_eq!(findings.len(), 1);
        let finding = &findings[0];
        assert_eq!(finding.identity, vec!["app/api/webhooks/clerk/route.ts", ROUTE]);
        assert_eq!(
            finding.evidence.clerk.as_deref(),
            Some(
                "no enabled webhook endpoint delivering to it signs with that secret: https://acme.com/api/webhooks/clerk"
            )
        );
        assert_eq!(finding.evidence.details["endpoints"][0]["id"], "ep_1");
        assert_eq!(finding.evidence.details["endpoints"].as_array().unwrap().len(), 1);
        assert_eq!(finding.evidence.details["handler"]["file"], "app/api/webhooks/clerk/route.ts");
        let text = serde_json::to_string(&finding.evidence).unwrap();
        assert!(!text.contains(STALE) && !text.contains(CURRENT), "no fingerprint in the evidence");
    }

    #[test]
    fn passes_when_a_delivering_endpoint_has_the_written_secret() {
        let webhooks = app(vec![read(endpoint(1, ROUTE, false), CURRENT), read(endpoint(2, ROUTE, false), STALE)]);
        assert_eq!(
            run_with_repo(evaluate, &facts(webhooks), Some(&artifact(vec![with_literal(handler(), STALE)]))),
            Verdict::Pass
        );
    }

    #[test]
    fn skipped_when_nothing_delivers_to_the_handler() {
        assert_eq!(
            run_with_repo(evaluate, &facts(no_app()), Some(&artifact(vec![with_literal(handler(), STALE)]))),
            Verdict::Skipped(NOTHING_DELIVERED.into())
        );
        let webhooks = app(vec![read(endpoint(1, "/other", false), CURRENT)]);
        assert_eq!(
            run_with_repo(evaluate, &facts(webhooks), Some(&artifact(vec![with_literal(handler(), STALE)]))),
            Verdict::Skipped(NOTHING_DELIVERED.into())
        );
    }

    #[test]
    fn error_when_a_delivering_endpoints_secret_was_not_read() {
        let webhooks = app(vec![read(endpoint(1, ROUTE, false), CURRENT), endpoint(2, ROUTE, false)]);
        assert_eq!(
            run_with_repo(evaluate, &facts(webhooks), Some(&artifact(vec![with_literal(handler(), STALE)]))),
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
