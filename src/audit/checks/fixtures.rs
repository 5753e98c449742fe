//! Builders for check inputs, shared by the checks' unit tests: [`facts`], [`artifact`] and [`key`] for every
//! check, [`webhooks`] for the webhook checks.
use crate::audit::artifact::*;
use crate::audit::checks::{CheckInput, CheckSettings, RepoEvidence, Verdict};
use crate::audit::facts::*;

pub fn facts(environment: InstanceEnvironment) -> ClerkFacts {
    ClerkFacts {
        instance: InstanceInfo { id: "ins_test".into(), environment, allowed_origins: Some(vec![]) },
        user_count: 0,
        primary_domain: None,
        frontend_api_hosts: vec![],
        secret_key_fingerprint: None,
        auth_settings: Fact::NotApplicable("development instance".into()),
        email_dns: Fact::NotApplicable("development instance".into()),
        webhooks: Fact::Known(WebhookFacts { svix_app: false, endpoints: vec![] }),
    }
}

pub fn artifact(key_references: Vec<KeyReference>) -> RepoArtifact {
    RepoArtifact {
        schema: ARTIFACT_SCHEMA.into(),
        repo: Some("github.com/acme/web".into()),
        commit: Some("3f2a".into()),
        scanned_at: None,
        key_references,
        webhook_handlers: vec![],
        committed_secrets: vec![],
    }
}

pub fn key(kind: KeyKind, environment: KeyEnvironment, context: ReferenceContext) -> KeyReference {
    KeyReference {
        kind,
        environment,
        file: ".env.production".into(),
        line: 3,
        variable: Some("NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY".into()),
        context,
        frontend_api_host: None,
        fingerprint: None,
        malformed: false,
        confidence: None,
    }
}

/// A production instance with this many users and these auth settings.
pub fn production_with_users(user_count: u64, auth_settings: Fact<AuthSettings>) -> ClerkFacts {
    let mut facts = facts(InstanceEnvironment::Production);
    facts.user_count = user_count;
    facts.auth_settings = auth_settings;
    facts
}

/// Auth settings with only the second-factor fields set.
pub fn mfa_settings(required: bool, available: &[&str]) -> Fact<AuthSettings> {
    Fact::Known(AuthSettings {
        second_factor_required: required,
        second_factors_available: available.iter().map(|s| s.to_string()).collect(),
        ..AuthSettings::default()
    })
}

/// Runs one check with default settings and no repo evidence.
pub fn run(evaluate: fn(&CheckInput<'_>) -> Verdict, facts: &ClerkFacts) -> Verdict {
    evaluate(&CheckInput { facts, artifact: RepoEvidence::Absent, settings: &CheckSettings::default() })
}

/// Runs one check with default settings and the repo artifact, if any.
pub fn run_with_repo(
    evaluate: fn(&CheckInput<'_>) -> Verdict,
    facts: &ClerkFacts,
    artifact: Option<&RepoArtifact>,
) -> Verdict {
    evaluate(&CheckInput { facts, artifact: artifact.into(), settings: &CheckSettings::default() })
}

pub mod webhooks {
    //! Builders for the webhook checks' tests: handlers, endpoints and the webhook fact.
    use crate::audit::artifact::{RepoArtifact, SecretSource, Verification, WebhookHandler};
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
        let mut artifact = super::artifact(vec![]);
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
        let mut facts = super::facts(InstanceEnvironment::Production);
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
