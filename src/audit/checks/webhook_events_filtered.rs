//! CLERK-WEBHOOK-005: the endpoint that delivers to a handler filters event types and leaves out one the
//! handler handles, so those events never arrive. An event counts as delivered when any enabled endpoint
//! delivering to the handler receives it (an endpoint without a filter receives every type). Handlers no
//! endpoint delivers to are CLERK-WEBHOOK-001's. One finding per handler, identified by its file and route.

use serde_json::json;

use super::webhook_common::{
    distinct_handlers, endpoints_details, handler_details, handler_identity, handler_label, list_urls, webhook_facts,
};
use super::{CheckInput, CheckMeta, Evidence, FailureDraft, Severity, Verdict};
use crate::audit::facts::WebhookEndpoint;

pub const META: CheckMeta = CheckMeta {
    id: "CLERK-WEBHOOK-005",
    severity: Severity::Warning,
    title: "Webhook endpoint filters out events the handler processes",
    why: "The webhook endpoint delivering to the handler is subscribed to some event types only, and leaves out \
          event types the handler has code for. Clerk never sends those events, so that code never runs: for \
          example users deleted in Clerk stay in your database, or profile changes are never copied.",
    fix: "In the Clerk dashboard (Configure > Webhooks > the endpoint > Subscribe to events), add the missing \
          event types to the endpoint (or subscribe it to every event), or remove the code paths the endpoint \
          is not meant to feed.",
};

pub fn evaluate(input: &CheckInput<'_>) -> Verdict {
    let artifact = match input.artifact.require() {
        Ok(artifact) => artifact,
        Err(verdict) => return verdict,
    };
    if artifact.webhook_handlers.is_empty() {
        return Verdict::Pass;
    }
    let webhooks = match webhook_facts(input) {
        Ok(webhooks) => webhooks,
        Err(verdict) => return verdict,
    };
    let mut findings = Vec::new();
    for handler in distinct_handlers(&artifact.webhook_handlers) {
        let delivering: Vec<&WebhookEndpoint> = webhooks.delivering_to(handler.route.as_deref()).collect();
        if delivering.is_empty() {
            continue;
        }
        let mut missing: Vec<&str> = Vec::new();
        for event in &handler.events {
            if !delivering.iter().any(|e| e.receives(event)) && !missing.contains(&event.as_str()) {
                missing.push(event);
            }
        }
        if missing.is_empty() {
            continue;
        }
        let filters: Vec<String> = delivering
            .iter()
            .map(|e| format!("{} receives only {}", e.url, e.event_types.as_deref().unwrap_or_default().join(", ")))
            .collect();
        findings.push(FailureDraft {
            evidence: Evidence {
                repo: Some(format!("{} handles {}", handler_label(handler), handler.events.join(", "))),
                clerk: Some(format!(
                    "{} never delivered to it: {}",
                    missing.join(", "),
                    if filters.len() <= 3 { filters.join("; ") } else { list_urls(delivering.iter().copied()) }
                )),
                details: json!({
                    "handler": handler_details(handler),
                    "endpoints": endpoints_details(delivering.iter().copied()),
                    "missing_event_types": missing,
                }),
            },
            identity: handler_identity(handler),
        });
    }
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
    use crate::audit::facts::Fact;

    fn filtered(mut endpoint: WebhookEndpoint, types: &[&str]) -> WebhookEndpoint {
        endpoint.event_types = Some(types.iter().map(|t| (*t).to_owned()).collect());
        endpoint
    }

    #[test]
    fn meta_is_a_warning() {
        assert_eq!(META.id, "CLERK-WEBHOOK-005");
        assert_eq!(META.severity, Severity::Warning);
    }

    #[test]
    fn skipped_without_a_repo_scan() {
        assert_eq!(run_with_repo(evaluate, &facts(no_app()), None), Verdict::Skipped(NO_REPO_SCAN.into()));
    }

    #[test]
    fn passes_without_handlers() {
        assert_eq!(
            run_with_repo(evaluate, &facts(Fact::Unavailable("down".into())), Some(&artifact(vec![]))),
            Verdict::Pass
        );
    }

    #[test]
    fn error_when_webhooks_are_unavailable() {
        let verdict =
            run_with_repo(evaluate, &facts(Fact::Unavailable("down".into())), Some(&artifact(vec![handler()])));
        assert_eq!(verdict, Verdict::Error("webhook configuration unavailable: down".into()));
    }

    #[test]
    fn fails_when_the_filter_leaves_out_a_handled_event() {
        let webhooks = app(vec![filtered(endpoint(1, ROUTE, false), &["user.created", "session.created"])]);
        let Verdict::Fail(findings) = run_with_repo(evaluate, &facts(webhooks), Some(&artifact(vec![handler()])))
        else {
            panic!("expected a failure")
        };
        assert_eq!(findings.len(), 1);
        let finding = &findings[0];
        assert_eq!(finding.identity, vec!["app/api/webhooks/clerk/route.ts", ROUTE]);
        assert_eq!(
            finding.evidence.repo.as_deref(),
            Some("app/api/webhooks/clerk/route.ts:12 (route /api/webhooks/clerk) handles user.created, user.deleted")
        );
        assert_eq!(
            finding.evidence.clerk.as_deref(),
            Some(
                "user.deleted never delivered to it: https://acme.com/api/webhooks/clerk receives only user.created, session.created"
            )
        );
        assert_eq!(finding.evidence.details["missing_event_types"], json!(["user.deleted"]));
        assert_eq!(finding.evidence.details["endpoints"][0]["event_types"], json!(["user.created", "session.created"]));
    }

    #[test]
    fn passes_when_the_filter_covers_the_handled_events() {
        let webhooks =
            app(vec![filtered(endpoint(1, ROUTE, false), &["user.created", "user.updated", "user.deleted"])]);
        assert_eq!(run_with_repo(evaluate, &facts(webhooks), Some(&artifact(vec![handler()]))), Verdict::Pass);
    }

    #[test]
    fn passes_when_another_delivering_endpoint_or_no_filter_covers_it() {
        let webhooks = app(vec![filtered(endpoint(1, ROUTE, false), &["user.created"]), endpoint(2, ROUTE, false)]);
        assert_eq!(run_with_repo(evaluate, &facts(webhooks), Some(&artifact(vec![handler()]))), Verdict::Pass);
        let webhooks = app(vec![
            filtered(endpoint(1, ROUTE, false), &["user.created"]),
            filtered(endpoint(2, ROUTE, false), &["user.deleted"]),
        ]);
        assert_eq!(run_with_repo(evaluate, &facts(webhooks), Some(&artifact(vec![handler()]))), Verdict::Pass);
    }

    #[test]
    fn disabled_or_elsewhere_endpoints_do_not_count() {
        // A covering endpoint that is disabled does not deliver; a handler nothing delivers to is 001's.
        let webhooks = app(vec![filtered(endpoint(1, ROUTE, false), &["user.created"]), endpoint(2, ROUTE, true)]);
        assert!(matches!(
            run_with_repo(evaluate, &facts(webhooks), Some(&artifact(vec![handler()]))),
            Verdict::Fail(_)
        ));
        let webhooks = app(vec![filtered(endpoint(1, "/other", false), &["user.created"])]);
        assert_eq!(run_with_repo(evaluate, &facts(webhooks), Some(&artifact(vec![handler()]))), Verdict::Pass);
    }

    #[test]
    fn passes_when_the_handler_names_no_events() {
        let mut silent = handler();
        silent.events.clear();
        let webhooks = app(vec![filtered(endpoint(1, ROUTE, false), &["user.created"])]);
        assert_eq!(run_with_repo(evaluate, &facts(webhooks), Some(&artifact(vec![silent]))), Verdict::Pass);
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
