//! What the five webhook checks (CLERK-WEBHOOK-001..005) share: reading the webhook fact, naming a
//! handler and an endpoint in evidence, and the identity of a handler.
//!
//! Matching a handler to the endpoints that deliver to it is [`WebhookFacts::delivering_to`]: enabled
//! endpoints whose URL path matches the handler's route (trailing slashes ignored, `:param` and `*rest`
//! segments of the route honoured); when the route is unknown any enabled endpoint counts.

use serde_json::{Value, json};

use super::{CheckInput, Verdict};
use crate::audit::artifact::{CommittedSecret, CommittedSecretKind, RepoArtifact, SecretSource, WebhookHandler};
use crate::audit::facts::{Fact, WebhookEndpoint, WebhookFacts, normalize_path};

/// How many endpoints a finding's evidence lists at most.
pub const MAX_LISTED: usize = 10;

/// The webhook fact, or the verdict a check that needs it gives when it could not be had.
pub fn webhook_facts<'a>(input: &CheckInput<'a>) -> Result<&'a WebhookFacts, Verdict> {
    match &input.facts.webhooks {
        Fact::Known(facts) => Ok(facts),
        Fact::Unavailable(reason) | Fact::NotApplicable(reason) => {
            Err(Verdict::Error(format!("webhook configuration unavailable: {reason}")))
        }
    }
}

/// The handler's route as identity and in sentences: normalised, or `*` when unknown.
pub fn route_key(handler: &WebhookHandler) -> String {
    handler.route.as_deref().map(normalize_path).unwrap_or_else(|| "*".to_owned())
}

/// What makes a handler the same handler on the next scan: its file and route (not its line).
pub fn handler_identity(handler: &WebhookHandler) -> Vec<String> {
    vec![handler.file.clone(), route_key(handler)]
}

/// `file:line (route /x)` or `file:line (route unknown)`.
pub fn handler_label(handler: &WebhookHandler) -> String {
    match &handler.route {
        Some(route) => format!("{}:{} (route {})", handler.file, handler.line, normalize_path(route)),
        None => format!("{}:{} (route unknown)", handler.file, handler.line),
    }
}

/// The handler as structured evidence. Never a secret: a written secret shows only as `literal`.
pub fn handler_details(handler: &WebhookHandler) -> Value {
    let secret_source = match &handler.secret_source {
        Some(SecretSource::EnvVar { env_var }) => json!({ "env_var": env_var }),
        Some(SecretSource::LiteralFingerprint { .. }) => json!("literal"),
        Some(SecretSource::Unresolved { .. }) => json!("unresolved"),
        None => Value::Null,
    };
    json!({
        "file": handler.file,
        "line": handler.line,
        "route": handler.route,
        "framework": handler.framework,
        "verification": handler.verification,
        "secret_source": secret_source,
        "events": handler.events,
    })
}

/// An endpoint as structured evidence: id, URL, state and filter. Never its secret or fingerprint.
pub fn endpoint_details(endpoint: &WebhookEndpoint) -> Value {
    json!({
        "id": endpoint.id,
        "url": endpoint.url,
        "disabled": endpoint.disabled,
        "event_types": endpoint.event_types,
    })
}

/// At most [`MAX_LISTED`] endpoints as evidence.
pub fn endpoints_details<'a>(endpoints: impl IntoIterator<Item = &'a WebhookEndpoint>) -> Value {
    Value::Array(endpoints.into_iter().take(MAX_LISTED).map(endpoint_details).collect())
}

/// `a, b, c` or `a, b, c and 4 more`, for URLs in a sentence.
pub fn list_urls<'a>(endpoints: impl IntoIterator<Item = &'a WebhookEndpoint>) -> String {
    let urls: Vec<&str> = endpoints.into_iter().map(|e| e.url.as_str()).collect();
    let shown = urls.iter().take(3).copied().collect::<Vec<_>>().join(", ");
    if urls.len() > 3 { format!("{shown} and {} more", urls.len() - 3) } else { shown }
}

/// The handler's written secret's fingerprint, if its secret is a literal.
pub fn literal_fingerprint(handler: &WebhookHandler) -> Option<&str> {
    match &handler.secret_source {
        Some(SecretSource::LiteralFingerprint { literal_fingerprint }) => Some(literal_fingerprint),
        _ => None,
    }
}

/// A `whsec_` value the repo holds for a handler: written in its code (`committed` is `None`), or
/// assigned in a committed env file to the environment variable the handler reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenSecret<'a> {
    pub fingerprint: &'a str,
    pub committed: Option<&'a CommittedSecret>,
}

/// Every `whsec_` value the repo holds for `handler` (see [`WrittenSecret`]).
pub fn written_secrets<'a>(artifact: &'a RepoArtifact, handler: &'a WebhookHandler) -> Vec<WrittenSecret<'a>> {
    match &handler.secret_source {
        Some(SecretSource::LiteralFingerprint { literal_fingerprint }) => {
            vec![WrittenSecret { fingerprint: literal_fingerprint, committed: None }]
        }
        Some(SecretSource::EnvVar { env_var }) => artifact
            .committed_secrets
            .iter()
            .filter(|c| c.kind == CommittedSecretKind::WebhookSecret && c.variable == *env_var)
            .map(|c| WrittenSecret { fingerprint: &c.fingerprint, committed: Some(c) })
            .collect(),
        _ => Vec::new(),
    }
}

/// Handlers deduplicated by identity (the same file and route reported twice is one handler).
pub fn distinct_handlers(handlers: &[WebhookHandler]) -> Vec<&WebhookHandler> {
    let mut seen = std::collections::BTreeSet::new();
    handlers.iter().filter(|handler| seen.insert(handler_identity(handler))).collect()
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Builders for the webhook checks' tests.
    use crate::audit::artifact::{RepoArtifact, SecretSource, Verification, WebhookHandler};
    use crate::audit::checks::fixtures;
    use crate::audit::facts::{ClerkFacts, Fact, InstanceEnvironment, WebhookEndpoint, WebhookFacts, endpoint_path};

    pub const ROUTE: &str = "/api/webhooks/clerk";

    pub fn handler() -> WebhookHandler {
        WebhookHandler {
            file: "app/api/webhooks/clerk/route.ts".into(),
            line: 12,
            framework: "nextjs-app-router".into(),
            route: Some(ROUTE.into()),
            verification: Verification::ClerkVerifyWebhook,
            secret_source: Some(SecretSource::EnvVar { env_var: "CLERK_WEBHOOK_SIGNING_SECRET".into() }),
            events: vec!["user.created".into(), "user.deleted".into()],
            registration: None,
            reserialized_body: false,
            acks_failed_verification: false,
        }
    }

    /// `artifact` with a committed `.env` line assigning a `whsec_` value of `fingerprint` to `variable`.
    pub fn with_committed(mut artifact: RepoArtifact, variable: &str, fingerprint: &str) -> RepoArtifact {
        artifact.committed_secrets.push(crate::audit::artifact::CommittedSecret {
            file: ".env".into(),
            line: 3,
            variable: variable.into(),
            kind: crate::audit::artifact::CommittedSecretKind::WebhookSecret,
            fingerprint: fingerprint.into(),
        });
        artifact
    }

    pub fn with_literal(mut handler: WebhookHandler, fingerprint: &str) -> WebhookHandler {
        handler.secret_source = Some(SecretSource::LiteralFingerprint { literal_fingerprint: fingerprint.into() });
        handler
    }

    pub fn artifact(handlers: Vec<WebhookHandler>) -> RepoArtifact {
        let mut artifact = fixtures::artifact(vec![]);
        artifact.webhook_handlers = handlers;
        artifact
    }

    pub fn endpoint(index: usize, path: &str, disabled: bool) -> WebhookEndpoint {
        let url = format!("https://acme.com{path}");
        WebhookEndpoint {
            id: format!("ep_{index}"),
            path: endpoint_path(&url),
            url,
            disabled,
            event_types: None,
            secret_fingerprint: None,
        }
    }

    pub fn facts(webhooks: Fact<WebhookFacts>) -> ClerkFacts {
        let mut facts = fixtures::facts(InstanceEnvironment::Production);
        facts.webhooks = webhooks;
        facts
    }

    pub fn app(endpoints: Vec<WebhookEndpoint>) -> Fact<WebhookFacts> {
        Fact::Known(WebhookFacts { svix_app: true, endpoints })
    }

    pub fn no_app() -> Fact<WebhookFacts> {
        Fact::Known(WebhookFacts { svix_app: false, endpoints: vec![] })
    }
}
