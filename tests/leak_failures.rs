//! Every failure path at TRACE (every crate included): a KMS error, 401, 429, 5xx, a timeout, a malformed
//! answer (decoder error) that quotes the credential, a refused internal address, a DNS answer pointing
//! outside the customer's domain, and a panicking job handler. Zero occurrences, in the logs, the events,
//! the tables and the errors, of a secret key, a Svix token or `svix_url`, a `whsec_` value, or an internal
//! address. Its own test binary, because the log capture is a process-wide tracing subscriber.

#[path = "it/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clerk_audit::audit::artifact::{ARTIFACT_SCHEMA, RepoArtifact, SecretSource, Verification, WebhookHandler};
use clerk_audit::configuration::{HttpSettings, LogFormat};
use clerk_audit::credentials::secret::ClerkSecretKey;
use clerk_audit::fetch::allowlist::CallMethod;
use clerk_audit::fetch::http::{HttpLayer, NameResolver};
use clerk_audit::intake::{DeliveryInfo, JobOutcome, ProcessJob};
use clerk_audit::retry::RetryPolicy;
use clerk_audit_sandbox::{Fault, FaultTarget, Scenario, WEBHOOK_ROUTE, WEBHOOK_SECRET_MATCHING};
use futures::future::BoxFuture;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use regex::Regex;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use harness::{TestApp, project, spawn_app_with};

/// Internal addresses the refused-address and DNS cases use: none may be shown anywhere.
const INTERNAL: [&str; 5] = ["169.254.169.254", "10.20.30.40", "fd00:ec2::254", "10.9.8.7", "db.corp.internal"];

fn fingerprint(secret: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(secret.as_bytes())))
}

/// A handler whose `whsec_` is written in the code, so the worker wants endpoint secrets.
fn webhook_artifact() -> RepoArtifact {
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
            route: Some(WEBHOOK_ROUTE.into()),
            verification: Verification::Svix,
            secret_source: Some(SecretSource::LiteralFingerprint {
                literal_fingerprint: fingerprint(WEBHOOK_SECRET_MATCHING),
            }),
            events: vec!["user.created".into()],
            registration: None,
            reserialized_body: false,
            acks_failed_verification: false,
        }],
    }
}

/// One scan case: a name, the scenario, the faults, the artifact stored, the routing key expected.
type Case<'a> = (&'static str, Scenario, Vec<(FaultTarget, Fault)>, Option<&'a RepoArtifact>, &'static str);

/// Scans `scenario` with `faults` active and answers the event's routing key and text.
async fn scan_with(
    app: &mut TestApp,
    scenario: Scenario,
    faults: &[(FaultTarget, Fault)],
    artifact: Option<&RepoArtifact>,
) -> (String, String) {
    let project = project();
    let instance = app.sandbox.instance(scenario).name.clone();
    app.sandbox.clear_faults();
    for (target, fault) in faults {
        app.sandbox.set_fault_on(&instance, *target, fault.clone());
    }
    let key_ref = app.connect_scenario(&project, scenario).await;
    let mut job = app.job(&project, &instance, key_ref);
    if let Some(artifact) = artifact {
        app.store_artifact(&project, "rs_1", artifact).await;
        job.repo_scan_id = Some("rs_1".into());
    }
    app.enqueue(&job).await;
    let (routing_key, event) = app.event_for(job.scan_id).await;
    app.sandbox.clear_faults();
    (routing_key, event.to_string())
}

/// A KMS error: the ciphertext copied to another project no longer matches its encryption context.
async fn kms_error(app: &mut TestApp) -> String {
    let owner = project();
    let other = project();
    let instance = app.sandbox.instance(Scenario::Development).name.clone();
    let key_ref = app.connect_scenario(&owner, Scenario::Development).await;
    let stolen_ref = Uuid::new_v4();
    app.pool
        .get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO clerk_credentials (id, project_id, instance_name, ciphertext, kms_key_id)
             SELECT $1, $2, instance_name, ciphertext, kms_key_id FROM clerk_credentials WHERE id = $3",
            &[&stolen_ref, &other.as_str(), &key_ref],
        )
        .await
        .unwrap();
    let job = app.job(&other, &instance, stolen_ref);
    app.enqueue(&job).await;
    let (routing_key, event) = app.event_for(job.scan_id).await;
    assert_eq!(routing_key, "clerk.audit.failed");
    assert_eq!(event["data"]["reason"], "credential_undecryptable");
    event.to_string()
}

/// Answers names from a table: every one an internal address.
struct InternalNames(BTreeMap<&'static str, Vec<IpAddr>>);

impl NameResolver for InternalNames {
    fn lookup(&self, host: String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        let answer = self.0.get(host.trim_end_matches('.')).cloned();
        Box::pin(async move { answer.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such name")) })
    }
}

/// Refused addresses, through the real HTTP layer in production configuration (`allow_loopback = false`):
/// the Backend API and the Svix API named by hosts that resolve to internal addresses. Answers the errors'
/// `Display` and `Debug` text.
async fn refused_addresses(secret_key: &str) -> String {
    let settings = HttpSettings {
        allow_loopback: false,
        cleartext_http2: false,
        connect_timeout_ms: 2_000,
        request_timeout_ms: 5_000,
        max_body_bytes: 1_048_576,
        max_attempts: 2,
        max_retry_after_secs: 1,
    };
    let ip = |text: &str| text.parse::<IpAddr>().unwrap();
    let resolver = InternalNames(BTreeMap::from([
        ("clerk-backend.acme-corp.example", vec![ip("10.20.30.40"), ip("169.254.169.254")]),
        ("svix.acme-corp.example", vec![ip("fd00:ec2::254"), ip("10.9.8.7")]),
    ]));
    let http = HttpLayer::new(
        &settings,
        "https://clerk-backend.acme-corp.example".parse().unwrap(),
        "2026-05-12",
        100,
        RetryPolicy::immediate(2),
    )
    .unwrap()
    .with_name_resolver(Arc::new(resolver))
    .unwrap();
    let key = ClerkSecretKey::from_plaintext(secret_key.as_bytes().to_vec()).unwrap();
    let mut calls = http.session("leak/refused".into(), &key);
    let mut shown = String::new();
    let error = calls.send(CallMethod::Get, calls.backend_url("/v1/instance")).await.unwrap_err();
    shown.push_str(&format!("{error} {error:?}\n"));
    calls.set_svix(
        "https://svix.acme-corp.example".parse().unwrap(),
        SecretString::from("appsk_RefusedAddressToken0123456789".to_owned()),
    );
    let url = calls.svix_url("/api/v1/app/app_1/endpoint").unwrap();
    let error = calls.send(CallMethod::Get, url).await.unwrap_err();
    shown.push_str(&format!("{error} {error:?}\n"));
    assert!(shown.contains("non-public address"), "{shown}");
    shown
}

/// A job handler with a bug: it decrypts the credential, calls the Backend API with the key, and panics
/// while the key is in scope. The consumer must catch it and log no secret.
struct PanicsWithTheKey {
    app_settings: clerk_audit::configuration::Settings,
    kms: clerk_audit::credentials::Kms,
    pool: deadpool_postgres::Pool,
    credential: (Uuid, clerk_audit::intake::job::ProjectId),
}

impl ProcessJob for PanicsWithTheKey {
    fn process<'a>(&'a self, _body: &'a [u8], _delivery: &'a DeliveryInfo) -> BoxFuture<'a, JobOutcome> {
        Box::pin(async move {
            let client = self.pool.get().await.unwrap();
            let (key_ref, project) = &self.credential;
            let stored = clerk_audit::store::credentials::load(&client, *key_ref, project).await.unwrap();
            let key = self.kms.decrypt(&stored).await.unwrap();
            let settings = &self.app_settings;
            let http = HttpLayer::new(
                &settings.http,
                settings.clerk.backend_api_url.clone(),
                &settings.clerk.api_version,
                settings.clerk.rate_limit_per_10s,
                RetryPolicy::immediate(1),
            )
            .unwrap();
            let calls = http.session("leak/panic".into(), &key);
            let answer = calls.send(CallMethod::Get, calls.backend_url("/v1/instance")).await;
            assert!(answer.is_ok(), "the sandbox answered");
            panic!("a bug in the job handler while the secret key is in scope");
        })
    }
}

async fn panicking_handler(app: &TestApp, capture: &harness::LogCapture) {
    let project = project();
    let key_ref = app.connect_scenario(&project, Scenario::ProductionLax).await;
    let mut settings = app.settings.clone();
    settings.amqp.jobs_queue = format!("{}.panics", app.settings.amqp.jobs_queue);
    let channel = app.broker.create_channel().await.unwrap();
    channel
        .queue_declare(
            settings.amqp.jobs_queue.as_str().into(),
            QueueDeclareOptions { auto_delete: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .basic_publish(
            "".into(),
            settings.amqp.jobs_queue.as_str().into(),
            BasicPublishOptions::default(),
            b"{}",
            Default::default(),
        )
        .await
        .unwrap();
    let handler = PanicsWithTheKey {
        app_settings: app.settings.clone(),
        kms: app.kms.clone(),
        pool: app.pool.clone(),
        credential: (key_ref, project),
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let consumer = {
        let publisher = app.broker.create_channel().await.unwrap();
        let channel = app.broker.create_channel().await.unwrap();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            clerk_audit::intake::consumer::consume(channel, publisher, Arc::new(handler), &settings, shutdown).await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !String::from_utf8_lossy(&capture.contents()).contains("job handler panicked") {
        assert!(Instant::now() < deadline, "the panic was never caught and logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    let _ = consumer.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_internal_address_on_any_failure_path() {
    let capture = harness::LogCapture::default();
    // SAFETY: set before any thread of this test binary reads the environment.
    unsafe { std::env::set_var("RUST_LOG", "trace") };
    let subscriber = clerk_audit::ops::telemetry::subscriber(LogFormat::Json, "trace", capture.clone());
    tracing::subscriber::set_global_default(subscriber).expect("first subscriber");

    // Short request timeout, so an answer held back by the sandbox times out.
    let mut app = spawn_app_with(|settings| settings.http.request_timeout_ms = 500).await;
    let webhooks = webhook_artifact();
    let mut events = vec![kms_error(&mut app).await];

    use FaultTarget::{BackendApi, FrontendApi, SvixApi};
    let cases: Vec<Case<'_>> = vec![
        ("401", Scenario::ProductionRequiredMfa, vec![(BackendApi, Fault::Revoked)], None, "clerk.audit.failed"),
        (
            "429 then 200",
            Scenario::ProductionOptionalMfa,
            vec![(BackendApi, Fault::RateLimited { retry_after_secs: 1, times: 1 })],
            None,
            "clerk.audit.completed",
        ),
        (
            "429 on the Frontend API",
            Scenario::ProductionOptionalMfa,
            vec![(FrontendApi, Fault::RateLimited { retry_after_secs: 1, times: 1000 })],
            None,
            "clerk.audit.completed",
        ),
        (
            "5xx then 200",
            Scenario::ProductionLax,
            vec![(BackendApi, Fault::ServerError { times: 1 })],
            None,
            "clerk.audit.completed",
        ),
        (
            "5xx on the Frontend API",
            Scenario::ProductionLax,
            vec![(FrontendApi, Fault::ServerError { times: 1000 })],
            None,
            "clerk.audit.completed",
        ),
        (
            "timeout on the Frontend API",
            Scenario::ProductionOptionalMfa,
            vec![(FrontendApi, Fault::Latency { ms: 2_000 })],
            None,
            "clerk.audit.completed",
        ),
        (
            "malformed Backend API answer",
            Scenario::ProductionLax,
            vec![(BackendApi, Fault::MalformedBody)],
            None,
            "clerk.audit.failed",
        ),
        (
            "malformed Frontend API answer",
            Scenario::ProductionLax,
            vec![(FrontendApi, Fault::MalformedBody)],
            None,
            "clerk.audit.completed",
        ),
        (
            "DNS answer outside the customer's domain",
            Scenario::ProductionRequiredMfa,
            vec![(
                BackendApi,
                Fault::DnsWrongTarget { host: "clkmail.acme-required-mfa.example".into(), target: INTERNAL[4].into() },
            )],
            None,
            "clerk.audit.completed",
        ),
        (
            "Svix 401",
            Scenario::WebhooksMatching,
            vec![(SvixApi, Fault::Revoked)],
            Some(&webhooks),
            "clerk.audit.completed",
        ),
        (
            "Svix 429",
            Scenario::WebhooksMatching,
            vec![(SvixApi, Fault::RateLimited { retry_after_secs: 1, times: 1000 })],
            Some(&webhooks),
            "clerk.audit.completed",
        ),
        (
            "Svix 5xx",
            Scenario::WebhooksMatching,
            vec![(SvixApi, Fault::ServerError { times: 1000 })],
            Some(&webhooks),
            "clerk.audit.completed",
        ),
        (
            "Svix timeout",
            Scenario::WebhooksMatching,
            vec![(SvixApi, Fault::Latency { ms: 2_000 })],
            Some(&webhooks),
            "clerk.audit.completed",
        ),
        (
            "malformed Svix answer",
            Scenario::WebhooksMatching,
            vec![(SvixApi, Fault::MalformedBody)],
            Some(&webhooks),
            "clerk.audit.completed",
        ),
        // No fault: the endpoint secret is read (a `whsec_` value passes through the worker).
        ("secret read", Scenario::WebhooksMatching, vec![], Some(&webhooks), "clerk.audit.completed"),
    ];
    for (name, scenario, faults, artifact, expected) in cases {
        let (routing_key, event) = scan_with(&mut app, scenario, &faults, artifact).await;
        assert_eq!(routing_key, expected, "{name}: {event}");
        events.push(event);
    }
    let refused = refused_addresses(&app.sandbox.instance(Scenario::ProductionLax).secret_key).await;
    panicking_handler(&app, &capture).await;

    let logs = String::from_utf8_lossy(&capture.contents()).into_owned();
    assert!(logs.lines().count() > 100, "TRACE logging captured ({} lines)", logs.lines().count());
    for expected in ["svix.endpoint_secret", "429", "500", "timed out", "job handler panicked"] {
        assert!(logs.to_lowercase().contains(expected), "the logs show the path: {expected}");
    }
    let tables = harness::all_table_text(&app.pool).await;

    let mut secrets: Vec<String> = app.sandbox.instances().iter().map(|i| i.secret_key.clone()).collect();
    // The part after the prefix, in case something trimmed it.
    secrets.extend(app.sandbox.instances().iter().map(|i| i.secret_key[8..].to_owned()));
    secrets.extend([WEBHOOK_SECRET_MATCHING.to_owned(), WEBHOOK_SECRET_MATCHING[6..].to_owned()]);
    secrets.push("RefusedAddressToken0123456789".into());
    // The refused addresses are the worker's internal network: never anywhere.
    secrets.extend(INTERNAL[..4].iter().map(|a| (*a).to_owned()));
    let patterns = [
        Regex::new(r"whsec_[A-Za-z0-9+/]{16,}").unwrap(),
        Regex::new(r"appsk_[A-Za-z0-9]{8,}").unwrap(),
        Regex::new(r"app\.svix\.com|#key=|eyJhcHBJZCI6").unwrap(),
        Regex::new(r"Bearer (sk|appsk)_").unwrap(),
    ];
    let places = [("a log line", &logs), ("a table", &tables), ("a refusal", &refused)];
    // The foreign CNAME target comes from the customer's own DNS: it must not reach what the customer sees
    // (events, tables, refusals). The worker's logs may hold it: the DNS library's TRACE output prints whole
    // answers, and the operator may need it.
    for (place, text) in
        [("a table", &tables), ("a refusal", &refused)].into_iter().chain(events.iter().map(|e| ("an event", e)))
    {
        assert!(!text.contains(INTERNAL[4]), "{place} names a host outside the customer's domain");
    }
    assert!(events.iter().any(|e| e.contains("outside the customer's domain")), "the DNS case hid the target");
    for (place, text) in places.into_iter().chain(events.iter().map(|e| ("an event", e))) {
        for secret in &secrets {
            if let Some(at) = text.find(secret.as_str()) {
                let start = at.saturating_sub(160);
                panic!("{place} holds a secret or internal address: ...{}...", &text[start..(at + 40).min(text.len())]);
            }
        }
        for pattern in &patterns {
            if let Some(found) = pattern.find(text) {
                let start = found.start().saturating_sub(160);
                panic!("{place} holds a secret-like value: ...{}...", &text[start..found.end()]);
            }
        }
    }
    app.stop().await;
}
