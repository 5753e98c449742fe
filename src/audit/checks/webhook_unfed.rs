//! CLERK-WEBHOOK-001: the repo has a Clerk webhook handler, but no enabled Clerk-side endpoint delivers to
//! it (no Svix app, no endpoints, all disabled, or no enabled endpoint whose URL path matches the handler's
//! route; with the route unknown, any enabled endpoint counts). One finding per handler, identified by its
//! file and route.

use serde_json::json;

use super::webhook_common::{
    distinct_handlers, endpoints_details, handler_details, handler_identity, handler_label, list_urls, route_key,
    webhook_facts,
};
use super::{CheckInput, CheckMeta, Evidence, FailureDraft, Severity, Verdict};
use crate::audit::artifact::WebhookHandler;
use crate::audit::facts::{WebhookEndpoint, WebhookFacts, route_matches};

pub const META: CheckMeta = CheckMeta {
    id: "CLERK-WEBHOOK-001",
    severity: Severity::Warning,
    title: "Webhook handler receives no Clerk events",
    why: "Your code has a handler for Clerk webhooks, but no enabled webhook endpoint of this Clerk instance \
          delivers to its path. Whatever the handler keeps in sync (user rows in your database, welcome emails, \
          clean-up on account deletion) silently stops happening: users who sign up, change or delete their \
          account in Clerk never reach your backend.",
    fix: "In the Clerk dashboard of this instance (Configure > Webhooks), add an endpoint (or re-enable the \
          existing one) whose URL is your production origin followed by the handler's route, subscribe it to the \
          events the handler processes, and put that endpoint's signing secret in the handler's environment \
          (e.g. CLERK_WEBHOOK_SIGNING_SECRET). If the handler is dead code, delete it.",
};

/// The Clerk-side sentence: why nothing reaches `handler`.
fn clerk_sentence(handler: &WebhookHandler, webhooks: &WebhookFacts) -> String {
    if !webhooks.svix_app {
        return "the instance has no webhook endpoints (no Svix app is set up for it)".into();
    }
    if webhooks.endpoints.is_empty() {
        return "the instance's webhook app has no endpoints".into();
    }
    let enabled: Vec<&WebhookEndpoint> = webhooks.endpoints.iter().filter(|e| !e.disabled).collect();
    if enabled.is_empty() {
        return format!("all {} webhook endpoints of the instance are disabled", webhooks.endpoints.len());
    }
    let route = route_key(handler);
    let disabled_here: Vec<&WebhookEndpoint> = webhooks
        .endpoints
        .iter()
        .filter(|e| e.disabled && e.path.as_deref().is_some_and(|path| route_matches(&route, path)))
        .collect();
    let mut sentence = format!("no enabled webhook endpoint delivers to {route}");
    if !disabled_here.is_empty() {
        sentence.push_str(&format!("; the endpoint at {} is disabled", list_urls(disabled_here)));
    }
    sentence.push_str(&format!("; enabled endpoints deliver to {}", list_urls(enabled)));
    sentence
}

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
    let findings: Vec<FailureDraft> = distinct_handlers(&artifact.webhook_handlers)
        .into_iter()
        .filter(|handler| webhooks.delivering_to(handler.route.as_deref()).next().is_none())
        .map(|handler| {
            let route = route_key(handler);
            // The endpoints worth showing: those at the handler's path first (disabled), then the enabled ones.
            let is_at_route = |e: &WebhookEndpoint| {
                handler.route.is_some() && e.path.as_deref().is_some_and(|path| route_matches(&route, path))
            };
            let at_route = webhooks.endpoints.iter().filter(|e| is_at_route(e));
            let others = webhooks.endpoints.iter().filter(|e| !e.disabled && !is_at_route(e));
            FailureDraft {
                evidence: Evidence {
                    repo: Some(format!("{} handles Clerk webhooks", handler_label(handler))),
                    clerk: Some(clerk_sentence(handler, webhooks)),
                    details: json!({
                        "handler": handler_details(handler),
                        "svix_app": webhooks.svix_app,
                        "endpoint_count": webhooks.endpoints.len(),
                        "enabled_endpoint_count": webhooks.endpoints.iter().filter(|e| !e.disabled).count(),
                        "endpoints": endpoints_details(at_route.chain(others)),
                    }),
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
    use crate::audit::facts::Fact;

    fn single_failure(verdict: Verdict) -> FailureDraft {
        let Verdict::Fail(mut findings) = verdict else { panic!("expected a failure, got {verdict:?}") };
        assert_eq!(findings.len(), 1);
        findings.remove(0)
    }

    #[test]
    fn meta_is_a_warning() {
        assert_eq!(META.id, "CLERK-WEBHOOK-001");
        assert_eq!(META.severity, Severity::Warning);
    }

    #[test]
    fn skipped_without_a_repo_scan() {
        assert_eq!(run_with_repo(evaluate, &facts(no_app()), None), Verdict::Skipped(NO_REPO_SCAN.into()));
    }

    #[test]
    fn passes_without_handlers_even_when_webhooks_are_unknown() {
        assert_eq!(run_with_repo(evaluate, &facts(no_app()), Some(&artifact(vec![]))), Verdict::Pass);
        assert_eq!(
            run_with_repo(evaluate, &facts(Fact::Unavailable("svix down".into())), Some(&artifact(vec![]))),
            Verdict::Pass
        );
    }

    #[test]
    fn error_when_the_webhook_configuration_is_unavailable() {
        let verdict = run_with_repo(
            evaluate,
            &facts(Fact::Unavailable("Svix endpoint list: timed out".into())),
            Some(&artifact(vec![handler()])),
        );
        assert_eq!(verdict, Verdict::Error("webhook configuration unavailable: Svix endpoint list: timed out".into()));
    }

    #[test]
    fn fails_without_a_svix_app() {
        let finding = single_failure(run_with_repo(evaluate, &facts(no_app()), Some(&artifact(vec![handler()]))));
        assert_eq!(finding.identity, vec!["app/api/webhooks/clerk/route.ts", ROUTE]);
        assert_eq!(
            finding.evidence.repo.as_deref(),
            Some("app/api/webhooks/clerk/route.ts:12 (route /api/webhooks/clerk) handles Clerk webhooks")
        );
        assert_eq!(
            finding.evidence.clerk.as_deref(),
            Some("the instance has no webhook endpoints (no Svix app is set up for it)")
        );
        assert_eq!(finding.evidence.details["handler"]["line"], 12);
        assert_eq!(
            finding.evidence.details["handler"]["secret_source"],
            json!({"env_var": "CLERK_WEBHOOK_SIGNING_SECRET"})
        );
        assert_eq!(finding.evidence.details["svix_app"], false);
        assert_eq!(finding.evidence.details["endpoints"], json!([]));
    }

    #[test]
    fn fails_without_endpoints() {
        let finding = single_failure(run_with_repo(evaluate, &facts(app(vec![])), Some(&artifact(vec![handler()]))));
        assert_eq!(finding.evidence.clerk.as_deref(), Some("the instance's webhook app has no endpoints"));
    }

    #[test]
    fn fails_when_every_endpoint_is_disabled() {
        let webhooks = app(vec![endpoint(1, ROUTE, true), endpoint(2, "/other", true)]);
        let finding = single_failure(run_with_repo(evaluate, &facts(webhooks), Some(&artifact(vec![handler()]))));
        assert_eq!(finding.evidence.clerk.as_deref(), Some("all 2 webhook endpoints of the instance are disabled"));
        assert_eq!(finding.evidence.details["endpoints"][0]["url"], "https://acme.com/api/webhooks/clerk");
        assert_eq!(finding.evidence.details["endpoints"][0]["disabled"], true);
    }

    #[test]
    fn fails_when_enabled_endpoints_go_elsewhere() {
        let webhooks = app(vec![
            endpoint(1, "/api/webhooks/stripe", false),
            endpoint(2, "/webhooks/clerk-old", false),
            endpoint(3, "/api/webhooks/clerk/", true),
        ]);
        let finding = single_failure(run_with_repo(evaluate, &facts(webhooks), Some(&artifact(vec![handler()]))));
        assert_eq!(
            finding.evidence.clerk.as_deref(),
            Some(
                "no enabled webhook endpoint delivers to /api/webhooks/clerk; the endpoint at \
                 https://acme.com/api/webhooks/clerk/ is disabled; enabled endpoints deliver to \
                 https://acme.com/api/webhooks/stripe, https://acme.com/webhooks/clerk-old"
            )
        );
        let ids: Vec<&str> = finding.evidence.details["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["ep_3", "ep_1", "ep_2"]);
        assert_eq!(finding.evidence.details["enabled_endpoint_count"], 2);
    }

    #[test]
    fn passes_when_an_enabled_endpoint_matches_the_route() {
        let webhooks =
            app(vec![endpoint(1, "/api/webhooks/stripe", false), endpoint(2, "/api/webhooks/clerk/", false)]);
        assert_eq!(run_with_repo(evaluate, &facts(webhooks), Some(&artifact(vec![handler()]))), Verdict::Pass);
    }

    #[test]
    fn an_unknown_route_is_fed_by_any_enabled_endpoint() {
        let mut unknown = handler();
        unknown.route = None;
        let webhooks = app(vec![endpoint(1, "/anything", false)]);
        assert_eq!(run_with_repo(evaluate, &facts(webhooks), Some(&artifact(vec![unknown.clone()]))), Verdict::Pass);
        let finding = single_failure(run_with_repo(
            evaluate,
            &facts(app(vec![endpoint(1, "/anything", true)])),
            Some(&artifact(vec![unknown])),
        ));
        assert_eq!(finding.identity, vec!["app/api/webhooks/clerk/route.ts", "*"]);
        assert!(finding.evidence.repo.unwrap().contains("(route unknown)"));
    }

    #[test]
    fn one_finding_per_unfed_handler() {
        let mut other = handler();
        other.file = "src/hooks.ts".into();
        other.route = Some("/hooks/clerk".into());
        let duplicate = handler();
        let webhooks = app(vec![endpoint(1, "/hooks/clerk", false)]);
        let finding = single_failure(run_with_repo(
            evaluate,
            &facts(webhooks),
            Some(&artifact(vec![handler(), other, duplicate])),
        ));
        assert_eq!(finding.identity, vec!["app/api/webhooks/clerk/route.ts", ROUTE]);
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
