//! CLERK-WEBHOOK-007: a Clerk webhook handler answers 2xx when signature verification fails (a catch
//! block or failed-verify branch returning 200/204). Needs only the artifact
//! (`acks_failed_verification`). One finding per handler, identified by its file and route.

use serde_json::json;

use super::webhook_common::{distinct_handlers, handler_details, handler_identity, handler_label};
use super::{CheckInput, CheckMeta, Evidence, FailureDraft, Severity, Verdict};

pub const META: CheckMeta = CheckMeta {
    id: "CLERK-WEBHOOK-007",
    severity: Severity::Blocker,
    title: "Failed webhook verification still answered 2xx",
    why: "When the signature check fails the handler still answers success. A forged request gets the same \
          answer as a genuine one (and, where the handler goes on to process it, is acted on), while a genuine \
          delivery that failed verification (a rotated secret, a parsed body) is marked delivered, so Clerk \
          never retries it and the event is silently lost.",
    fix: "Answer 400 (or 401) from the failed-verification branch and stop there: res.status(400).send(...), \
          return new Response('invalid signature', { status: 400 }), raise HTTPException(status_code=400), \
          c.AbortWithStatus(http.StatusBadRequest), throw new BadRequestException() in NestJS. Log the failure \
          without the payload.",
};

pub fn evaluate(input: &CheckInput<'_>) -> Verdict {
    let artifact = match input.artifact.require() {
        Ok(artifact) => artifact,
        Err(verdict) => return verdict,
    };
    let findings: Vec<FailureDraft> = distinct_handlers(&artifact.webhook_handlers)
        .into_iter()
        .filter(|handler| handler.acks_failed_verification)
        .map(|handler| FailureDraft {
            evidence: Evidence {
                repo: Some(format!("{} answers 2xx when signature verification fails", handler_label(handler))),
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

    use crate::audit::checks::fixtures::run_with_repo;
    use crate::audit::checks::fixtures::webhooks::*;
    use crate::audit::checks::{CheckSettings, NO_REPO_SCAN, REPO_ARTIFACT_UNREADABLE, RepoEvidence};

    fn acking() -> crate::audit::artifact::WebhookHandler {
        let mut handler = handler();
        handler.acks_failed_verification = true;
        handler
    }

    #[test]
    fn meta_is_a_blocker() {
        assert_eq!(META.id, "CLERK-WEBHOOK-007");
        assert_eq!(META.severity, Severity::Blocker);
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
    fn passes_when_every_failed_verification_is_refused() {
        assert_eq!(run_with_repo(evaluate, &facts(no_app()), Some(&artifact(vec![]))), Verdict::Pass);
        assert_eq!(run_with_repo(evaluate, &facts(no_app()), Some(&artifact(vec![handler()]))), Verdict::Pass);
    }

    #[test]
    fn fails_naming_each_handler_that_acknowledges_a_failed_check() {
        let Verdict::Fail(findings) =
            run_with_repo(evaluate, &facts(no_app()), Some(&artifact(vec![acking(), handler()])))
        else {
            panic!("expected a failure")
        };
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].identity, vec!["app/api/webhooks/clerk/route.ts", ROUTE]);
        assert_eq!(
            findings[0].evidence.repo.as_deref(),
            Some(
                "app/api/webhooks/clerk/route.ts:12 (route /api/webhooks/clerk) answers 2xx when signature verification fails"
            )
        );
        assert_eq!(findings[0].evidence.details["handler"]["file"], "app/api/webhooks/clerk/route.ts");
    }
}
