//! CLERK-WEBHOOK-006: a Clerk webhook handler checks the signature over a re-serialised body
//! (`JSON.stringify(req.body)` after a JSON body parser, `json.dumps(...)`, `json.Marshal(...)`) instead
//! of the raw bytes Svix signed. Needs only the artifact (`reserialized_body`). One finding per handler,
//! identified by its file and route.

use serde_json::json;

use super::webhook_common::{distinct_handlers, handler_details, handler_identity, handler_label};
use super::{CheckInput, CheckMeta, Evidence, FailureDraft, Severity, Verdict};

pub const META: CheckMeta = CheckMeta {
    id: "CLERK-WEBHOOK-006",
    severity: Severity::Warning,
    title: "Webhook signature checked over a re-serialised body",
    why: "Svix signs the exact bytes it sends. Parsing the JSON and serialising it again changes those bytes \
          whenever key order, spacing, number formatting or unicode escaping differ, so genuine Clerk deliveries \
          fail verification at random: events are lost after Clerk's retries give up, and the failures look like \
          attacks.",
    fix: "Verify the raw request body: in Express mount express.raw({ type: 'application/json' }) on the webhook \
          route before any global express.json(), or use verifyWebhook(req) from @clerk/express/webhooks; in \
          Next.js pass await req.text(); in FastAPI/Starlette await request.body(); in Go the bytes read from \
          the request body. Parse the JSON only after verification succeeds.",
};

pub fn evaluate(input: &CheckInput<'_>) -> Verdict {
    let artifact = match input.artifact.require() {
        Ok(artifact) => artifact,
        Err(verdict) => return verdict,
    };
    let findings: Vec<FailureDraft> = distinct_handlers(&artifact.webhook_handlers)
        .into_iter()
        .filter(|handler| handler.reserialized_body)
        .map(|handler| FailureDraft {
            evidence: Evidence {
                repo: Some(format!(
                    "{} verifies the Svix signature over a re-serialised body, not the raw request bytes",
                    handler_label(handler)
                )),
                clerk: None,
                details: json!({ "handler": handler_details(handler) }),
            },
            identity: handler_identity(handler),
        })
        .collect();
    if findings.is_empty() { Verdict::Pass } else { Verdict::Fail(findings) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::artifact::ArtifactUnreadable;
    use crate::audit::artifact::Verification;
    use crate::audit::checks::fixtures::run_with_repo;
    use crate::audit::checks::fixtures::webhooks::*;
    use crate::audit::checks::{CheckSettings, NO_REPO_SCAN, REPO_ARTIFACT_UNREADABLE, RepoEvidence};

    fn reserialized() -> crate::audit::artifact::WebhookHandler {
        let mut handler = handler();
        handler.verification = Verification::Svix;
        handler.reserialized_body = true;
        handler
    }

    #[test]
    fn meta_is_a_warning() {
        assert_eq!(META.id, "CLERK-WEBHOOK-006");
        assert_eq!(META.severity, Severity::Warning);
    }

    #[test]
    fn skipped_without_a_repo_scan() {
        assert_eq!(run_with_repo(evaluate, &facts(no_app()), None), Verdict::Skipped(NO_REPO_SCAN.into()));
    }

    #[test]
    fn error_when_the_stored_repo_scan_is_unreadable() {
        let facts = facts(no_app());
        let artifact = RepoEvidence::Unreadable(ArtifactUnreadable::Malformed);
        let verdict = evaluate(&CheckInput { facts: &facts, artifact, settings: &CheckSettings::default() });
        assert_eq!(
            verdict,
            Verdict::Error(format!("{REPO_ARTIFACT_UNREADABLE}: it does not follow the artifact schema"))
        );
    }

    #[test]
    fn passes_when_no_handler_verifies_a_reserialised_body() {
        assert_eq!(run_with_repo(evaluate, &facts(no_app()), Some(&artifact(vec![]))), Verdict::Pass);
        assert_eq!(run_with_repo(evaluate, &facts(no_app()), Some(&artifact(vec![handler()]))), Verdict::Pass);
    }

    #[test]
    fn fails_naming_each_handler_that_does() {
        let Verdict::Fail(findings) =
            run_with_repo(evaluate, &facts(no_app()), Some(&artifact(vec![reserialized(), handler()])))
        else {
            panic!("expected a failure")
        };
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].identity, vec!["app/api/webhooks/clerk/route.ts", ROUTE]);
        assert_eq!(
            findings[0].evidence.repo.as_deref(),
            Some(
                "app/api/webhooks/clerk/route.ts:12 (route /api/webhooks/clerk) verifies the Svix signature over a re-serialised body, not the raw request bytes"
            )
        );
        assert_eq!(findings[0].evidence.details["handler"]["verification"], "svix");
    }
}
