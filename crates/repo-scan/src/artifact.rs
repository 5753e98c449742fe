//! The repo-scan artifact (`clerk-repo-artifact/v1`): what the platform's repo scanner
//! found in the customer's code. The extractor in [`crate`] produces it; the checks read it.
//!
//! The artifact never holds a raw secret: secret keys and `whsec_` values appear only as
//! `sha256:<hex>` fingerprints.
//!
//! Additions made after the first release of v1 are optional and omitted from the JSON when empty, so a
//! reader of the first v1 documents reads these and a document without them still parses:
//! [`WebhookHandler::registration`], [`WebhookHandler::reserialized_body`],
//! [`WebhookHandler::acks_failed_verification`], [`SecretSource::Unresolved`] and
//! [`RepoArtifact::committed_secrets`].

use serde::{Deserialize, Serialize};

/// The schema tag every artifact carries.
pub const ARTIFACT_SCHEMA: &str = "clerk-repo-artifact/v1";

/// One repo scan's findings about Clerk usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoArtifact {
    pub schema: String,
    pub repo: Option<String>,
    pub commit: Option<String>,
    pub scanned_at: Option<String>,
    #[serde(default)]
    pub key_references: Vec<KeyReference>,
    #[serde(default)]
    pub webhook_handlers: Vec<WebhookHandler>,
    /// Webhook signing secrets (`whsec_`) and live secret keys (`sk_live_`) written as values in env
    /// files present in the checkout (not ignored by `.gitignore`, so committed). Fingerprints only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub committed_secrets: Vec<CommittedSecret>,
}

/// A secret value written in a committed env file (`.env`, `.env.production`, `config.env`...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedSecret {
    pub file: String,
    pub line: u32,
    /// The variable the value is assigned to (`CLERK_WEBHOOK_SECRET`).
    pub variable: String,
    pub kind: CommittedSecretKind,
    /// `sha256:<hex>` of the value; the value itself is never stored.
    pub fingerprint: String,
}

/// What a committed secret value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommittedSecretKind {
    /// A webhook signing secret (`whsec_...`).
    WebhookSecret,
    /// A live secret key (`sk_live_...`).
    LiveSecretKey,
}

/// Which kind of Clerk key a reference is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    Publishable,
    Secret,
}

/// `live` (`pk_live_`/`sk_live_`) or `test` (`pk_test_`/`sk_test_`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyEnvironment {
    Live,
    Test,
}

/// Where a reference lives, judged from the file and the section of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReferenceContext {
    Production,
    Development,
    Test,
    Example,
    Unknown,
}

/// How sure the extractor is that a secret key is Clerk's (Stripe uses the same prefixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    High,
    Medium,
    Low,
}

/// One place in the repo where a Clerk key is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyReference {
    pub kind: KeyKind,
    pub environment: KeyEnvironment,
    pub file: String,
    pub line: u32,
    #[serde(default)]
    pub variable: Option<String>,
    pub context: ReferenceContext,
    /// Publishable keys only: the Frontend API host the key decodes to. Untrusted: compared, never fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontend_api_host: Option<String>,
    /// Secret keys only: `sha256:<hex>` of the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// A publishable key whose payload does not decode to `host$`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub malformed: bool,
    /// Secret keys only: how sure the extractor is that the key is Clerk's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<Confidence>,
}

/// How a webhook handler verifies what it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verification {
    #[serde(rename = "clerk-verifyWebhook")]
    ClerkVerifyWebhook,
    Svix,
    Standardwebhooks,
    None,
}

/// Where a handler's signing secret comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SecretSource {
    EnvVar {
        env_var: String,
    },
    LiteralFingerprint {
        literal_fingerprint: String,
    },
    /// The handler verifies, but the secret could not be followed to an env var or a literal within the
    /// extractor's bounds (a parameter nobody passes a known value to, a function's return value...).
    /// `unresolved` names the last expression followed (an identifier, never a value). Written instead
    /// of a guess.
    Unresolved {
        unresolved: String,
    },
}

/// Where a handler is registered with its router, when that is not the handler itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceLocation {
    pub file: String,
    pub line: u32,
}

/// One Clerk webhook handler found in the code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookHandler {
    pub file: String,
    pub line: u32,
    pub framework: String,
    /// The HTTP path the handler serves; `None` when it could not be told.
    #[serde(default)]
    pub route: Option<String>,
    pub verification: Verification,
    #[serde(default)]
    pub secret_source: Option<SecretSource>,
    #[serde(default)]
    pub events: Vec<String>,
    /// The router call that serves the handler (`app.post('/x', handler)` in another file, Django
    /// `path()`, a Go group's `POST`). Omitted for file-system routes and unrouted handlers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<SourceLocation>,
    /// The signature is checked over a re-serialised body (`JSON.stringify(req.body)`, `json.dumps(...)`,
    /// `json.Marshal(...)`) rather than the raw bytes Svix signed, so genuine deliveries fail whenever
    /// the re-serialisation differs (key order, spacing, unicode escapes).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reserialized_body: bool,
    /// When verification fails the handler still answers 2xx (a catch block or failed-verify branch
    /// returning 200/204), so a forged event is acknowledged and a genuine one is never retried.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub acks_failed_verification: bool,
}

impl RepoArtifact {
    /// Parses a stored artifact, refusing any schema other than v1.
    pub fn from_json(value: serde_json::Value) -> Result<Self, ArtifactError> {
        let artifact: RepoArtifact =
            serde_json::from_value(value).map_err(|e| ArtifactError::Malformed(e.to_string()))?;
        if artifact.schema != ARTIFACT_SCHEMA {
            return Err(ArtifactError::UnknownSchema(artifact.schema));
        }
        Ok(artifact)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("repo artifact does not follow {ARTIFACT_SCHEMA}: {0}")]
    Malformed(String),
    #[error("repo artifact has unknown schema {0:?}")]
    UnknownSchema(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_example() {
        let value = serde_json::json!({
          "schema": "clerk-repo-artifact/v1",
          "repo": "github.com/acme/web", "commit": "3f2a", "scanned_at": "2026-11-26T09:58:00Z",
          "key_references": [
            {"kind": "publishable", "environment": "live", "file": ".env.production", "line": 3,
             "variable": "NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY", "context": "production",
             "frontend_api_host": "clerk.acme.com"},
            {"kind": "secret", "environment": "live", "file": "scripts/seed.ts", "line": 9,
             "variable": null, "context": "unknown", "fingerprint": "sha256:00"}
          ],
          "webhook_handlers": [
            {"file": "app/api/webhooks/clerk/route.ts", "line": 12, "framework": "nextjs-app-router",
             "route": "/api/webhooks/clerk", "verification": "clerk-verifyWebhook",
             "secret_source": {"env_var": "CLERK_WEBHOOK_SIGNING_SECRET"},
             "events": ["user.created", "user.deleted"]}
          ]
        });
        let artifact = RepoArtifact::from_json(value.clone()).unwrap();
        assert_eq!(artifact.key_references.len(), 2);
        assert_eq!(artifact.webhook_handlers[0].verification, Verification::ClerkVerifyWebhook);
        assert_eq!(
            artifact.webhook_handlers[0].secret_source,
            Some(SecretSource::EnvVar { env_var: "CLERK_WEBHOOK_SIGNING_SECRET".into() })
        );
        // Round trip keeps the shape.
        assert_eq!(serde_json::to_value(&artifact).unwrap(), value);
    }

    #[test]
    fn later_additions_round_trip_and_stay_optional() {
        let value = serde_json::json!({
          "schema": "clerk-repo-artifact/v1", "repo": null, "commit": null, "scanned_at": null,
          "key_references": [],
          "webhook_handlers": [
            {"file": "src/controllers/webhooks.js", "line": 4, "framework": "express", "route": "/api/webhooks",
             "verification": "svix", "secret_source": {"unresolved": "secret"}, "events": [],
             "registration": {"file": "src/server.js", "line": 9},
             "reserialized_body": true, "acks_failed_verification": true}
          ],
          "committed_secrets": [
            {"file": ".env", "line": 2, "variable": "CLERK_WEBHOOK_SECRET", "kind": "webhook-secret",
             "fingerprint": "sha256:00"}
          ]
        });
        let artifact = RepoArtifact::from_json(value.clone()).unwrap();
        let h = &artifact.webhook_handlers[0];
        assert_eq!(h.secret_source, Some(SecretSource::Unresolved { unresolved: "secret".into() }));
        assert_eq!(h.registration, Some(SourceLocation { file: "src/server.js".into(), line: 9 }));
        assert!(h.reserialized_body && h.acks_failed_verification);
        assert_eq!(artifact.committed_secrets[0].kind, CommittedSecretKind::WebhookSecret);
        assert_eq!(serde_json::to_value(&artifact).unwrap(), value);
    }

    #[test]
    fn refuses_other_schemas() {
        let value =
            serde_json::json!({"schema": "clerk-repo-artifact/v2", "repo": null, "commit": null, "scanned_at": null});
        assert!(matches!(RepoArtifact::from_json(value), Err(ArtifactError::UnknownSchema(_))));
    }
}
