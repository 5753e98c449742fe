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
