//! No signing secret read from Svix, no Svix app-portal token and no `svix_url` may appear in a log line (at
//! TRACE, every crate included), an event, or a table. Its own test binary, because the log capture is a
//! process-wide tracing subscriber.

#[path = "it/harness.rs"]
mod harness;

use clerk_audit::audit::artifact::{ARTIFACT_SCHEMA, RepoArtifact, SecretSource, Verification, WebhookHandler};
use clerk_audit::configuration::LogFormat;
use clerk_audit::credentials::secret::ClerkSecretKey;
use clerk_audit::fetch::http::HttpLayer;
use clerk_audit::fetch::svix::{self, Portal};
use clerk_audit::retry::RetryPolicy;
use clerk_audit_sandbox::{Scenario, WEBHOOK_ROUTE, WEBHOOK_SECRET_MATCHING, WEBHOOK_SECRET_STALE};
use regex::Regex;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use harness::{TestApp, project, spawn_app};

fn fingerprint(secret: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(secret.as_bytes())))
}

/// A handler whose `whsec_` is written in the code, so the worker reads endpoint secrets (`svix.endpoint_secret`).
fn artifact_with_literal(route: Option<&str>, secret: &str) -> RepoArtifact {
    RepoArtifact {
        schema: ARTIFACT_SCHEMA.into(),
        repo: Some("github.com/acme/web".into()),
        commit: Some("3f2a9c1".into()),
        scanned_at: None,
        committed_secrets: vec![],
        key_references: vec![],
        webhook_handlers: vec![WebhookHandler {
            file: "app/api/webhooks/clerk/route.ts".into(),
            line: 12,
            framework: "nextjs-app-router".into(),
            route: route.map(str::to_owned),
            verification: Verification::Svix,
            secret_source: Some(SecretSource::LiteralFingerprint { literal_fingerprint: fingerprint(secret) }),
            events: vec!["user.created".into()],
            registration: None,
            reserialized_body: false,
            acks_failed_verification: false,
        }],
    }
}

async fn scan(app: &mut TestApp, scenario: Scenario, artifact: &RepoArtifact) -> String {
    let project = project();
    let key_ref = app.connect_scenario(&project, scenario).await;
    app.store_artifact(&project, "rs_1", artifact).await;
    let instance = app.sandbox.instance(scenario).name.clone();
    let job = app.job(&project, &instance, key_ref);
    app.enqueue(&job).await;
    let (routing_key, event) = app.event_for(job.scan_id).await;
    assert_eq!(routing_key, "clerk.audit.completed", "{event:#}");
    event.to_string()
}

/// A token and `svix_url` fragment exactly as the sandbox issues them, to prove the patterns below match.
async fn sample_portal_token(app: &TestApp) -> String {
    let http = HttpLayer::new(
        &app.settings.http,
        app.settings.clerk.backend_api_url.clone(),
        &app.settings.clerk.api_version,
        app.settings.clerk.rate_limit_per_10s,
        RetryPolicy::immediate(1),
    )
    .unwrap();
    let instance = app.sandbox.instance(Scenario::WebhooksMatching);
    let key = ClerkSecretKey::from_plaintext(instance.secret_key.as_bytes().to_vec()).unwrap();
    let calls = http.session("leak-test".into(), &key);
    let Portal::Access(access) = svix::portal(&calls).await.unwrap() else { panic!("a Svix app") };
    access.token.expose_secret().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svix_secrets_and_tokens_appear_in_no_log_event_or_table() {
    let capture = harness::LogCapture::default();
    // SAFETY: set before any thread of this test binary reads the environment.
    unsafe { std::env::set_var("RUST_LOG", "trace") };
    let subscriber = clerk_audit::ops::telemetry::subscriber(LogFormat::Json, "trace", capture.clone());
    tracing::subscriber::set_global_default(subscriber).expect("first subscriber");

    let mut app = spawn_app().await;
    let events = [
        // Row 7 on the endpoint whose secret is WEBHOOK_SECRET_MATCHING: CLERK-WEBHOOK-003.
        scan(
            &mut app,
            Scenario::WebhooksMatching,
            &artifact_with_literal(Some(WEBHOOK_ROUTE), WEBHOOK_SECRET_MATCHING),
        )
        .await,
        // The same endpoint compared with a stale literal: CLERK-WEBHOOK-004.
        scan(&mut app, Scenario::WebhooksMatching, &artifact_with_literal(Some(WEBHOOK_ROUTE), WEBHOOK_SECRET_STALE))
            .await,
        // Route unknown: the secrets of every enabled endpoint are read (two here).
        scan(&mut app, Scenario::WebhooksOtherPath, &artifact_with_literal(None, WEBHOOK_SECRET_STALE)).await,
    ];
    assert!(events[0].contains("CLERK-WEBHOOK-003") && events[1].contains("CLERK-WEBHOOK-004"));

    let logs = String::from_utf8_lossy(&capture.contents()).into_owned();
    assert!(logs.lines().count() > 100, "TRACE logging captured ({} lines)", logs.lines().count());
    assert!(logs.contains("clerk.svix_url"), "clerk.svix_url was logged");
    assert!(logs.contains("svix.endpoint_secret"), "svix.endpoint_secret was called and logged");

    let table_text = harness::all_table_text(&app.pool).await;
    assert!(table_text.contains("CLERK-WEBHOOK-003"), "the findings were stored");

    // The exact secrets, with and without prefix; any whsec_-looking value; any app-portal token; the
    // svix_url and its key (base64 of `{"appId":` starts `eyJhcHBJZCI6`).
    let secrets = [WEBHOOK_SECRET_MATCHING, &WEBHOOK_SECRET_MATCHING[6..]];
    let patterns = [
        Regex::new(r"whsec_[A-Za-z0-9+/]{16,}").unwrap(),
        Regex::new(r"appsk_[A-Za-z0-9]{8,}").unwrap(),
        Regex::new(r"app\.svix\.com|#key=|eyJhcHBJZCI6").unwrap(),
    ];
    let token = sample_portal_token(&app).await;
    assert!(patterns[1].is_match(&token), "the token pattern matches the sandbox's tokens");
    assert!(patterns[0].is_match(WEBHOOK_SECRET_MATCHING), "the secret pattern matches the sandbox's secrets");

    let places = [("a log line", &logs), ("a table", &table_text)];
    for (place, text) in places.iter().copied().chain(events.iter().map(|e| ("an event", e))) {
        for secret in secrets {
            assert!(!text.contains(secret), "{place} holds a Svix signing secret");
        }
        assert!(!text.contains(&token), "{place} holds an app-portal token");
        for pattern in &patterns {
            if let Some(found) = pattern.find(text) {
                let start = found.start().saturating_sub(120);
                panic!(
                    "{place} holds something like a Svix secret, token or svix_url: ...{}...",
                    &text[start..found.end().min(start + 200)]
                );
            }
        }
    }
    // The Authorization header value never shows up either.
    assert!(!logs.contains("Bearer appsk_"), "an Authorization header was logged");
    app.stop().await;
}
