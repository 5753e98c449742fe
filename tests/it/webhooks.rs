//! Webhook cross-checks (CLERK-WEBHOOK-001..007): real jobs against each webhook scenario of the sandbox,
//! with an artifact holding a Clerk webhook handler at `/api/webhooks/clerk` (written here, or extracted
//! from a fixture repository of the extractor's corpus); and proof that the worker makes no Svix call
//! outside the allowlist.

use std::collections::BTreeMap;

use clerk_audit::audit::artifact::{ARTIFACT_SCHEMA, RepoArtifact, SecretSource, Verification, WebhookHandler};
use clerk_audit::credentials::secret::ClerkSecretKey;
use clerk_audit::fetch::allowlist::CallMethod;
use clerk_audit::fetch::http::{CallError, HttpLayer};
use clerk_audit::fetch::svix::{self, Portal};
use clerk_audit::retry::RetryPolicy;
use clerk_audit_sandbox::{
    Fault, FaultTarget, HostKind, PresentedCredential, Scenario, WEBHOOK_ROUTE, WEBHOOK_SECRET_MATCHING,
    WEBHOOK_SECRET_STALE,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::harness::{TestApp, check_statuses, finding_ids, project, spawn_app};

const HANDLER_FILE: &str = "app/api/webhooks/clerk/route.ts";
const WEBHOOK_CHECKS: [&str; 7] = [
    "CLERK-WEBHOOK-001",
    "CLERK-WEBHOOK-002",
    "CLERK-WEBHOOK-003",
    "CLERK-WEBHOOK-004",
    "CLERK-WEBHOOK-005",
    "CLERK-WEBHOOK-006",
    "CLERK-WEBHOOK-007",
];

/// `sha256:<hex>` of a `whsec_` literal, as the repo extractor writes it.
pub fn fingerprint(secret: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(secret.as_bytes())))
}

pub fn env_secret() -> Option<SecretSource> {
    Some(SecretSource::EnvVar { env_var: "CLERK_WEBHOOK_SIGNING_SECRET".into() })
}

pub fn literal(secret: &str) -> Option<SecretSource> {
    Some(SecretSource::LiteralFingerprint { literal_fingerprint: fingerprint(secret) })
}

/// A Next.js app-router handler at `/api/webhooks/clerk` handling `user.created` and `user.deleted`.
pub fn handler(verification: Verification, secret_source: Option<SecretSource>) -> WebhookHandler {
    WebhookHandler {
        file: HANDLER_FILE.into(),
        line: 12,
        framework: "nextjs-app-router".into(),
        route: Some(WEBHOOK_ROUTE.into()),
        verification,
        secret_source,
        events: vec!["user.created".into(), "user.deleted".into()],
        registration: None,
        reserialized_body: false,
        acks_failed_verification: false,
    }
}

pub fn artifact(handlers: Vec<WebhookHandler>) -> RepoArtifact {
    RepoArtifact {
        schema: ARTIFACT_SCHEMA.into(),
        repo: Some("github.com/acme/web".into()),
        commit: Some("3f2a9c1".into()),
        scanned_at: Some("2026-11-26T09:58:00Z".into()),
        committed_secrets: vec![],
        key_references: vec![],
        webhook_handlers: handlers,
    }
}

/// Runs one scan of `scenario` with `artifact` and answers the completed event.
async fn scan(app: &mut TestApp, scenario: Scenario, artifact: &RepoArtifact) -> Value {
    let project = project();
    let key_ref = app.connect_scenario(&project, scenario).await;
    app.store_artifact(&project, "rs_1", artifact).await;
    let instance = app.sandbox.instance(scenario).name.clone();
    let job = app.job(&project, &instance, key_ref);
    app.enqueue(&job).await;
    let (routing_key, event) = app.event_for(job.scan_id).await;
    assert_eq!(routing_key, "clerk.audit.completed", "{event:#}");
    event
}

/// Every check passes except the webhook checks named in `webhook`, which have the given statuses (the
/// webhook scenarios are production instances with required MFA and verified DNS).
fn assert_statuses(event: &Value, webhook: &[(&str, &str)]) {
    let mut expected: BTreeMap<String, String> =
        check_statuses(event).keys().map(|k| (k.clone(), "pass".to_owned())).collect();
    for id in WEBHOOK_CHECKS {
        assert!(expected.contains_key(id), "{id} ran: {event:#}");
    }
    for (id, status) in webhook {
        expected.insert((*id).to_owned(), (*status).to_owned());
    }
    assert_eq!(check_statuses(event), expected, "{event:#}");
}

fn check<'a>(event: &'a Value, check_id: &str) -> &'a Value {
    event["data"]["checks"].as_array().unwrap().iter().find(|c| c["check_id"] == check_id).unwrap()
}

fn finding<'a>(event: &'a Value, check_id: &str) -> &'a Value {
    event["data"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check_id"] == check_id)
        .unwrap_or_else(|| panic!("{check_id} finding in {event:#}"))
}

fn assert_finding_shape(finding: &Value, severity: &str, title: &str) {
    assert_eq!(finding["severity"], severity);
    assert_eq!(finding["pillar"], "secure");
    assert_eq!(finding["title"], title);
    for field in ["why", "fix", "first_seen_at"] {
        assert!(finding[field].as_str().is_some_and(|s| !s.is_empty()), "{field} in {finding:#}");
    }
    assert!(finding["fingerprint"].as_str().unwrap().starts_with("sha256:"));
}

/// The handler as the evidence names it.
fn assert_names_handler(finding: &Value, secret_source: Value, verification: &str) {
    assert_eq!(
        finding["evidence"]["details"]["handler"],
        json!({
            "file": HANDLER_FILE, "line": 12, "route": WEBHOOK_ROUTE, "framework": "nextjs-app-router",
            "verification": verification, "secret_source": secret_source,
            "events": ["user.created", "user.deleted"],
        }),
        "{finding:#}"
    );
}

fn calls_by_row(event: &Value) -> BTreeMap<u64, u64> {
    event["data"]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["row"].as_u64().unwrap(), c["count"].as_u64().unwrap()))
        .collect()
}

fn hook_url(app: &TestApp, scenario: Scenario, path: &str) -> String {
    format!("https://{}{path}", app.sandbox.instance(scenario).domain)
}

/// Every request the sandbox saw is one of the allowlist's, with the right credential: the secret key
/// only to the Backend API, the Svix token only to Svix, nothing to the Frontend API.
fn assert_only_allowlisted(app: &TestApp) {
    for request in app.sandbox.requests() {
        let segments: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
        let allowed = match request.host {
            HostKind::BackendApi => {
                request.credential == PresentedCredential::ClerkSecretKey
                    && matches!(
                        (request.method.as_str(), request.path.as_str()),
                        ("GET", "/v1/instance" | "/v1/users/count" | "/v1/domains") | ("POST", "/v1/webhooks/svix_url")
                    )
            }
            HostKind::SvixApi => {
                request.credential == PresentedCredential::SvixToken
                    && request.method == "GET"
                    && match segments.as_slice() {
                        ["api", "v1", "app", _, "endpoint"] => request
                            .query
                            .as_deref()
                            .unwrap_or_default()
                            .split('&')
                            .all(|pair| pair.starts_with("limit=") || pair.starts_with("iterator=")),
                        ["api", "v1", "app", _, "endpoint", _, "secret"] => request.query.is_none(),
                        _ => false,
                    }
            }
            HostKind::FrontendApi => {
                request.credential == PresentedCredential::None
                    && request.method == "GET"
                    && request.path == "/v1/environment"
            }
        };
        assert!(allowed, "a request outside the allowlist reached the sandbox: {request:?}");
    }
}

fn svix_requests(app: &TestApp, scenario: Scenario) -> Vec<clerk_audit_sandbox::RecordedRequest> {
    let name = app.sandbox.instance(scenario).name.clone();
    app.clerk_requests_for(&name).into_iter().filter(|r| r.host == HostKind::SvixApi).collect()
}

#[tokio::test]
async fn no_svix_app_means_the_handler_receives_nothing() {
    let mut app = spawn_app().await;
    let scenario = Scenario::WebhooksNoSvixApp;
    let event =
        scan(&mut app, scenario, &artifact(vec![handler(Verification::ClerkVerifyWebhook, env_secret())])).await;
    assert_statuses(&event, &[("CLERK-WEBHOOK-001", "fail")]);
    assert_eq!(finding_ids(&event), vec!["CLERK-WEBHOOK-001"]);
    let warning = finding(&event, "CLERK-WEBHOOK-001");
    assert_finding_shape(warning, "warning", "Webhook handler receives no Clerk events");
    assert_eq!(
        warning["evidence"]["repo"],
        format!("{HANDLER_FILE}:12 (route {WEBHOOK_ROUTE}) handles Clerk webhooks")
    );
    assert_eq!(warning["evidence"]["clerk"], "the instance has no webhook endpoints (no Svix app is set up for it)");
    assert_names_handler(warning, json!({"env_var": "CLERK_WEBHOOK_SIGNING_SECRET"}), "clerk-verifyWebhook");
    assert_eq!(warning["evidence"]["details"]["svix_app"], false);
    assert_eq!(warning["evidence"]["details"]["endpoint_count"], 0);
    assert_eq!(warning["evidence"]["details"]["endpoints"], json!([]));
    // Row 4 answered 400 (the fact "no webhooks"), so no Svix call at all.
    let rows = calls_by_row(&event);
    assert_eq!(rows.get(&4), Some(&1));
    assert!(!rows.contains_key(&6) && !rows.contains_key(&7), "{rows:?}");
    assert!(svix_requests(&app, scenario).is_empty());
    assert_eq!(
        event["data"]["calls"].as_array().unwrap().iter().find(|c| c["row"] == 4).unwrap()["outcomes"],
        json!({"400": 1})
    );
    assert_only_allowlisted(&app);
    app.stop().await;
}

#[tokio::test]
async fn an_app_without_endpoints_feeds_no_handler() {
    let mut app = spawn_app().await;
    let scenario = Scenario::WebhooksNoEndpoints;
    let event = scan(&mut app, scenario, &artifact(vec![handler(Verification::Svix, env_secret())])).await;
    assert_statuses(&event, &[("CLERK-WEBHOOK-001", "fail")]);
    let warning = finding(&event, "CLERK-WEBHOOK-001");
    assert_eq!(warning["evidence"]["clerk"], "the instance's webhook app has no endpoints");
    assert_eq!(warning["evidence"]["details"]["svix_app"], true);
    assert_names_handler(warning, json!({"env_var": "CLERK_WEBHOOK_SIGNING_SECRET"}), "svix");
    assert_eq!(calls_by_row(&event).get(&6), Some(&1));
    assert!(!calls_by_row(&event).contains_key(&7));
    assert_only_allowlisted(&app);
    app.stop().await;
}

#[tokio::test]
async fn all_disabled_endpoints_feed_no_handler() {
    let mut app = spawn_app().await;
    let scenario = Scenario::WebhooksAllDisabled;
    let event =
        scan(&mut app, scenario, &artifact(vec![handler(Verification::ClerkVerifyWebhook, env_secret())])).await;
    assert_statuses(&event, &[("CLERK-WEBHOOK-001", "fail")]);
    let warning = finding(&event, "CLERK-WEBHOOK-001");
    assert_eq!(warning["evidence"]["clerk"], "all 2 webhook endpoints of the instance are disabled");
    assert_eq!(warning["evidence"]["details"]["endpoint_count"], 2);
    assert_eq!(warning["evidence"]["details"]["enabled_endpoint_count"], 0);
    // Both endpoints sit at the handler's path (one on a staging host), both disabled.
    let endpoints = warning["evidence"]["details"]["endpoints"].as_array().unwrap();
    let urls: Vec<&str> = endpoints.iter().map(|e| e["url"].as_str().unwrap()).collect();
    let domain = &app.sandbox.instance(scenario).domain;
    assert_eq!(urls, [format!("https://{domain}{WEBHOOK_ROUTE}"), format!("https://staging.{domain}{WEBHOOK_ROUTE}")]);
    assert!(endpoints.iter().all(|e| e["disabled"] == true && e["id"].as_str().unwrap().starts_with("ep_")));
    assert!(endpoints.iter().all(|e| {
        e.as_object().unwrap().keys().all(|k| ["id", "url", "disabled", "event_types"].contains(&k.as_str()))
    }));
    assert_only_allowlisted(&app);
    app.stop().await;
}

#[tokio::test]
async fn endpoints_at_other_paths_feed_no_handler_and_the_fingerprint_ignores_the_line() {
    let mut app = spawn_app().await;
    let scenario = Scenario::WebhooksOtherPath;
    let project = project();
    let key_ref = app.connect_scenario(&project, scenario).await;
    let instance = app.sandbox.instance(scenario).name.clone();

    app.store_artifact(&project, "rs_1", &artifact(vec![handler(Verification::ClerkVerifyWebhook, env_secret())]))
        .await;
    let mut job = app.job(&project, &instance, key_ref);
    job.repo_scan_id = Some("rs_1".into());
    app.enqueue(&job).await;
    let (_, event) = app.event_for(job.scan_id).await;
    assert_statuses(&event, &[("CLERK-WEBHOOK-001", "fail")]);
    let warning = finding(&event, "CLERK-WEBHOOK-001");
    assert_eq!(
        warning["evidence"]["clerk"],
        format!(
            "no enabled webhook endpoint delivers to {WEBHOOK_ROUTE}; the endpoint at {} is disabled; enabled endpoints \
             deliver to {}, {}",
            hook_url(&app, scenario, WEBHOOK_ROUTE),
            hook_url(&app, scenario, "/api/webhooks/stripe"),
            hook_url(&app, scenario, "/webhooks/clerk-old"),
        )
    );
    let endpoints = warning["evidence"]["details"]["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 3);
    assert_eq!(endpoints[0]["disabled"], true);
    assert_eq!(endpoints[2]["event_types"], json!(["user.created"]));
    // 005 does not judge a handler nothing delivers to.
    assert_eq!(check(&event, "CLERK-WEBHOOK-005")["status"], "pass");
    // The stripe endpoint's URL carries userinfo and a query string (credentials of the receiver): shown
    // without them in the event, and stored without them.
    let tables = crate::harness::all_table_text(&app.pool).await;
    for secret in
        [clerk_audit_sandbox::ENDPOINT_USERINFO, "hook-pa55w0rd", clerk_audit_sandbox::ENDPOINT_QUERY, "qs-t0ken"]
    {
        assert!(!event.to_string().contains(secret), "{secret} in the event");
        assert!(!tables.contains(secret), "{secret} in the tables");
    }

    // The handler moved down the file: same problem, same fingerprint.
    let mut moved = handler(Verification::ClerkVerifyWebhook, env_secret());
    moved.line = 40;
    app.store_artifact(&project, "rs_2", &artifact(vec![moved])).await;
    let mut second = app.job(&project, &instance, key_ref);
    second.repo_scan_id = Some("rs_2".into());
    app.enqueue(&second).await;
    let (_, second_event) = app.event_for(second.scan_id).await;
    let again = finding(&second_event, "CLERK-WEBHOOK-001");
    assert_eq!(again["fingerprint"], warning["fingerprint"]);
    assert_eq!(again["first_seen_at"], warning["first_seen_at"]);
    assert_eq!(again["evidence"]["details"]["handler"]["line"], 40);
    assert_only_allowlisted(&app);
    app.stop().await;
}

#[tokio::test]
async fn a_matching_endpoint_feeds_the_handler_from_the_regional_host_override() {
    let mut app = spawn_app().await;
    let scenario = Scenario::WebhooksMatching;
    let event =
        scan(&mut app, scenario, &artifact(vec![handler(Verification::ClerkVerifyWebhook, env_secret())])).await;
    assert_statuses(&event, &[]);
    assert!(finding_ids(&event).is_empty());
    // The app is in the eu region; `svix.api_url` points every region at the sandbox's Svix listener.
    let requests = svix_requests(&app, scenario);
    assert_eq!(requests.len(), 1, "{requests:?}");
    let app_id = app.sandbox.instance(scenario).svix_app_id.clone().unwrap();
    assert_eq!(requests[0].path, format!("/api/v1/app/{app_id}/endpoint"));
    assert_eq!(requests[0].query.as_deref(), Some("limit=250"));
    assert_eq!(requests[0].credential, PresentedCredential::SvixToken);
    // No whsec_ in the repo: no secret is read.
    assert!(!calls_by_row(&event).contains_key(&7));
    assert_only_allowlisted(&app);
    app.stop().await;
}

#[tokio::test]
async fn a_handler_without_signature_verification_is_a_blocker() {
    let mut app = spawn_app().await;
    let scenario = Scenario::WebhooksMatching;
    let event = scan(&mut app, scenario, &artifact(vec![handler(Verification::None, None)])).await;
    assert_statuses(&event, &[("CLERK-WEBHOOK-002", "fail")]);
    assert_eq!(finding_ids(&event), vec!["CLERK-WEBHOOK-002"]);
    let blocker = finding(&event, "CLERK-WEBHOOK-002");
    assert_finding_shape(blocker, "blocker", "Webhook handler does not verify signatures");
    assert_eq!(
        blocker["evidence"]["repo"],
        format!("{HANDLER_FILE}:12 (route {WEBHOOK_ROUTE}) handles Clerk webhooks without verifying their signature")
    );
    let url = hook_url(&app, scenario, WEBHOOK_ROUTE);
    assert_eq!(blocker["evidence"]["clerk"], format!("enabled webhook endpoints deliver to it: {url}"));
    assert_names_handler(blocker, Value::Null, "none");
    let endpoints = blocker["evidence"]["details"]["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["url"], url);
    assert_eq!(endpoints[0]["disabled"], false);
    assert_eq!(endpoints[0]["event_types"], Value::Null);
    assert_only_allowlisted(&app);
    app.stop().await;
}

#[tokio::test]
async fn a_live_signing_secret_written_in_the_repo_is_a_blocker() {
    let mut app = spawn_app().await;
    let scenario = Scenario::WebhooksMatching;
    let event =
        scan(&mut app, scenario, &artifact(vec![handler(Verification::Svix, literal(WEBHOOK_SECRET_MATCHING))])).await;
    assert_statuses(&event, &[("CLERK-WEBHOOK-003", "fail")]);
    assert_eq!(finding_ids(&event), vec!["CLERK-WEBHOOK-003"]);
    let blocker = finding(&event, "CLERK-WEBHOOK-003");
    assert_finding_shape(blocker, "blocker", "Live webhook signing secret written in the repo");
    let url = hook_url(&app, scenario, WEBHOOK_ROUTE);
    let endpoint = &blocker["evidence"]["details"]["endpoint"];
    let endpoint_id = endpoint["id"].as_str().unwrap();
    assert!(
        endpoint_id.starts_with("ep_") && endpoint_id.ends_with("0001") && endpoint_id.len() == 30,
        "{endpoint_id}"
    );
    assert_eq!(*endpoint, json!({"id": endpoint_id, "url": url, "disabled": false, "event_types": null}));
    assert_eq!(
        blocker["evidence"]["repo"],
        format!(
            "{HANDLER_FILE}:12 (route {WEBHOOK_ROUTE}) verifies Clerk webhooks with a whsec_ secret written in the code"
        )
    );
    assert_eq!(
        blocker["evidence"]["clerk"],
        format!("it is the signing secret of the enabled webhook endpoint {url} ({endpoint_id})")
    );
    assert_names_handler(blocker, json!("literal"), "svix");
    // The secret was read once (`svix.endpoint_secret`), and nothing of it is in the event.
    assert_eq!(calls_by_row(&event).get(&7), Some(&1));
    let text = event.to_string();
    assert!(!text.contains(WEBHOOK_SECRET_MATCHING) && !text.contains(&WEBHOOK_SECRET_MATCHING[6..]));
    assert!(!text.contains(&fingerprint(WEBHOOK_SECRET_MATCHING)), "no fingerprint of a live secret in the event");
    let app_id = app.sandbox.instance(scenario).svix_app_id.clone().unwrap();
    let paths: Vec<String> = svix_requests(&app, scenario).into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [format!("/api/v1/app/{app_id}/endpoint"), format!("/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret")]
    );
    assert_only_allowlisted(&app);
    app.stop().await;
}

#[tokio::test]
async fn a_stale_signing_secret_written_in_the_repo_warns() {
    let mut app = spawn_app().await;
    let scenario = Scenario::WebhooksMatching;
    let event = scan(
        &mut app,
        scenario,
        &artifact(vec![handler(Verification::ClerkVerifyWebhook, literal(WEBHOOK_SECRET_STALE))]),
    )
    .await;
    assert_statuses(&event, &[("CLERK-WEBHOOK-004", "fail")]);
    assert_eq!(finding_ids(&event), vec!["CLERK-WEBHOOK-004"]);
    let warning = finding(&event, "CLERK-WEBHOOK-004");
    assert_finding_shape(warning, "warning", "Webhook handler verifies with a stale signing secret");
    let url = hook_url(&app, scenario, WEBHOOK_ROUTE);
    assert_eq!(
        warning["evidence"]["clerk"],
        format!("no enabled webhook endpoint delivering to it signs with that secret: {url}")
    );
    assert_eq!(warning["evidence"]["details"]["endpoints"][0]["url"], url);
    assert_names_handler(warning, json!("literal"), "clerk-verifyWebhook");
    assert_eq!(calls_by_row(&event).get(&7), Some(&1));
    assert_only_allowlisted(&app);
    app.stop().await;
}

#[tokio::test]
async fn an_endpoint_filtering_out_a_handled_event_warns() {
    let mut app = spawn_app().await;
    let scenario = Scenario::WebhooksFilterMissingEvent;
    let event =
        scan(&mut app, scenario, &artifact(vec![handler(Verification::ClerkVerifyWebhook, env_secret())])).await;
    assert_statuses(&event, &[("CLERK-WEBHOOK-005", "fail")]);
    assert_eq!(finding_ids(&event), vec!["CLERK-WEBHOOK-005"]);
    let warning = finding(&event, "CLERK-WEBHOOK-005");
    assert_finding_shape(warning, "warning", "Webhook endpoint filters out events the handler processes");
    let url = hook_url(&app, scenario, WEBHOOK_ROUTE);
    assert_eq!(
        warning["evidence"]["repo"],
        format!("{HANDLER_FILE}:12 (route {WEBHOOK_ROUTE}) handles user.created, user.deleted")
    );
    assert_eq!(
        warning["evidence"]["clerk"],
        format!("user.deleted never delivered to it: {url} receives only user.created")
    );
    assert_eq!(warning["evidence"]["details"]["missing_event_types"], json!(["user.deleted"]));
    assert_eq!(warning["evidence"]["details"]["endpoints"][0]["event_types"], json!(["user.created"]));
    assert_names_handler(warning, json!({"env_var": "CLERK_WEBHOOK_SIGNING_SECRET"}), "clerk-verifyWebhook");
    assert_only_allowlisted(&app);
    app.stop().await;
}

#[tokio::test]
async fn an_endpoint_filter_covering_the_handled_events_passes() {
    let mut app = spawn_app().await;
    let event = scan(
        &mut app,
        Scenario::WebhooksFilterCovering,
        &artifact(vec![handler(Verification::ClerkVerifyWebhook, env_secret())]),
    )
    .await;
    assert_statuses(&event, &[]);
    assert!(finding_ids(&event).is_empty());
    assert_only_allowlisted(&app);
    app.stop().await;
}

#[tokio::test]
async fn every_page_of_endpoints_is_read() {
    let mut app = spawn_app().await;
    let scenario = Scenario::WebhooksPaginated;
    // The only enabled endpoint at the handler's path is the 260th: on the second page.
    let event =
        scan(&mut app, scenario, &artifact(vec![handler(Verification::ClerkVerifyWebhook, env_secret())])).await;
    assert_statuses(&event, &[]);
    assert_eq!(calls_by_row(&event).get(&6), Some(&2));
    let requests = svix_requests(&app, scenario);
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].query.as_deref(), Some("limit=250"));
    let second = requests[1].query.as_deref().unwrap();
    assert!(second.starts_with("limit=250&iterator=ep_") && second.ends_with("0250"), "{second}");
    assert_only_allowlisted(&app);
    app.stop().await;
}

#[tokio::test]
async fn an_unreachable_svix_makes_the_webhook_checks_error_not_pass() {
    let mut app = spawn_app().await;
    let scenario = Scenario::WebhooksMatching;
    let instance = app.sandbox.instance(scenario).name.clone();
    app.sandbox.set_fault_on(&instance, FaultTarget::SvixApi, Fault::ServerError { times: 0 });
    let event =
        scan(&mut app, scenario, &artifact(vec![handler(Verification::Svix, literal(WEBHOOK_SECRET_MATCHING))])).await;
    // 002 needs only the artifact; the rest need the endpoints.
    assert_statuses(
        &event,
        &[
            ("CLERK-WEBHOOK-001", "error"),
            ("CLERK-WEBHOOK-003", "error"),
            ("CLERK-WEBHOOK-004", "error"),
            ("CLERK-WEBHOOK-005", "error"),
        ],
    );
    let reason = check(&event, "CLERK-WEBHOOK-001")["reason"].as_str().unwrap();
    assert_eq!(reason, "webhook configuration unavailable: Svix endpoint list: answered HTTP 500");
    assert!(finding_ids(&event).is_empty());
    // Retried inside the job, bounded; never a secret read.
    let rows = calls_by_row(&event);
    assert_eq!(rows.get(&6), Some(&3));
    assert!(!rows.contains_key(&7));
    app.stop().await;
}

/// No Svix call outside `svix.list_endpoints` and `svix.endpoint_secret` can be made, even with a valid token for a real app: `send` refuses
/// before connecting, and the sandbox sees nothing but the allowed call.
#[tokio::test]
async fn no_svix_call_outside_the_allowlist_reaches_svix() {
    let app = spawn_app().await;
    let scenario = Scenario::WebhooksMatching;
    let instance = app.sandbox.instance(scenario).clone();
    let http = HttpLayer::new(
        &app.settings.http,
        app.settings.clerk.backend_api_url.clone(),
        &app.settings.clerk.api_version,
        app.settings.clerk.rate_limit_per_10s,
        RetryPolicy::immediate(1),
    )
    .unwrap()
    .with_svix_api_url(&app.settings.svix.api_url)
    .unwrap();
    let key = ClerkSecretKey::from_plaintext(instance.secret_key.as_bytes().to_vec()).unwrap();
    let mut calls = http.session("test/webhooks-matching".into(), &key);
    let Portal::Access(access) = svix::portal(&calls).await.unwrap() else {
        panic!("the matching scenario has a Svix app")
    };
    let app_id = access.app_id.clone();
    assert_eq!(Some(&app_id), instance.svix_app_id.as_ref());
    calls.set_svix(svix::api_base(calls.svix_api_override(), access.region.as_deref()), access.token);
    app.sandbox.clear_requests();

    let endpoint_id = {
        let mut url = calls.svix_url(&format!("/api/v1/app/{app_id}/endpoint")).unwrap();
        url.set_query(Some("limit=1"));
        let page: Value = calls.send(CallMethod::Get, url).await.expect("the allowed call is answered").json().unwrap();
        page["data"][0]["id"].as_str().unwrap().to_owned()
    };
    let svix = |path: String| calls.svix_url(&path).unwrap();
    let mut with_order = svix(format!("/api/v1/app/{app_id}/endpoint"));
    with_order.set_query(Some("order=descending"));
    let refused = [
        (CallMethod::Post, svix(format!("/api/v1/app/{app_id}/endpoint"))),
        (CallMethod::Get, svix(format!("/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret/rotate"))),
        (CallMethod::Post, svix(format!("/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret/rotate"))),
        (CallMethod::Get, svix(format!("/api/v1/app/{app_id}/endpoint/{endpoint_id}"))),
        (CallMethod::Get, svix(format!("/api/v1/app/{app_id}/msg"))),
        (CallMethod::Get, svix("/api/v1/app".into())),
        (CallMethod::Get, with_order),
        (CallMethod::Get, calls.backend_url(&format!("/api/v1/app/{app_id}/endpoint"))),
        (CallMethod::Get, calls.backend_url(&format!("/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret"))),
    ];
    for (method, url) in refused {
        let shown = format!("{} {url}", method.as_str());
        match calls.send(method, url).await {
            Err(CallError::NotAllowed(_)) => {}
            other => panic!("{shown} was not refused: {other:?}"),
        }
    }
    let seen = app.sandbox.requests();
    assert_eq!(seen.len(), 1, "only the allowed call reached the sandbox: {seen:?}");
    assert_eq!(seen[0].path, format!("/api/v1/app/{app_id}/endpoint"));
    assert_only_allowlisted(&app);
    app.stop().await;
}

/// The artifact the repo extractor writes for a fixture repository of its corpus.
fn extracted(fixture: &str) -> RepoArtifact {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/repo-scan/tests/fixtures/repos").join(fixture);
    clerk_repo_scan::scan(&dir, &clerk_repo_scan::ScanOptions::default()).unwrap()
}

#[tokio::test]
async fn a_signature_checked_over_a_reserialized_body_warns() {
    let mut app = spawn_app().await;
    let scenario = Scenario::WebhooksMatching;
    // Express: `app.use(express.json())`, the handler in src/controllers/webhooks.js verifies
    // `JSON.stringify(req.body)` and is registered in src/routes/index.js under `app.use('/api', ...)`.
    let artifact = extracted("express-cross-file");
    let event = scan(&mut app, scenario, &artifact).await;
    assert_statuses(&event, &[("CLERK-WEBHOOK-006", "fail")]);
    assert_eq!(finding_ids(&event), vec!["CLERK-WEBHOOK-006"]);
    let warning = finding(&event, "CLERK-WEBHOOK-006");
    assert_finding_shape(warning, "warning", "Webhook signature checked over a re-serialised body");
    assert_eq!(
        warning["evidence"]["repo"],
        format!(
            "src/controllers/webhooks.js:3 (route {WEBHOOK_ROUTE}) verifies the Svix signature over a re-serialised body, not the raw request bytes"
        )
    );
    assert_eq!(warning["evidence"]["details"]["handler"]["framework"], "express");
    assert_eq!(warning["evidence"]["details"]["handler"]["secret_source"], json!({"env_var": "CLERK_WEBHOOK_SECRET"}));
    assert_only_allowlisted(&app);
    app.stop().await;
}

#[tokio::test]
async fn a_failed_verification_answered_2xx_is_a_blocker() {
    let mut app = spawn_app().await;
    let scenario = Scenario::WebhooksMatching;
    // Hono: the sub-app in src/routes/webhooks.ts answers `c.json({ received: true }, 200)` from the
    // catch around `wh.verify(...)`, and is mounted with `app.route('/api/webhooks', ...)`.
    let artifact = extracted("hono-cross-file");
    let event = scan(&mut app, scenario, &artifact).await;
    assert_statuses(&event, &[("CLERK-WEBHOOK-007", "fail")]);
    assert_eq!(finding_ids(&event), vec!["CLERK-WEBHOOK-007"]);
    let blocker = finding(&event, "CLERK-WEBHOOK-007");
    assert_finding_shape(blocker, "blocker", "Failed webhook verification still answered 2xx");
    assert_eq!(
        blocker["evidence"]["repo"],
        format!("src/routes/webhooks.ts:9 (route {WEBHOOK_ROUTE}) answers 2xx when signature verification fails")
    );
    assert_eq!(blocker["evidence"]["details"]["handler"]["framework"], "hono");
    assert_only_allowlisted(&app);
    app.stop().await;
}

#[tokio::test]
async fn a_handler_refusing_failed_verification_over_the_raw_body_passes_both() {
    let mut app = spawn_app().await;
    let event =
        scan(&mut app, Scenario::WebhooksMatching, &artifact(vec![handler(Verification::Svix, env_secret())])).await;
    assert_statuses(&event, &[]);
    assert_eq!(check(&event, "CLERK-WEBHOOK-006")["status"], "pass");
    assert_eq!(check(&event, "CLERK-WEBHOOK-007")["status"], "pass");
    assert!(finding_ids(&event).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_live_signing_secret_committed_in_an_env_file_is_a_blocker() {
    let mut app = spawn_app().await;
    let scenario = Scenario::WebhooksMatching;
    // The handler reads CLERK_WEBHOOK_SIGNING_SECRET; a committed `.env` assigns it the live endpoint's value.
    let mut repo = artifact(vec![handler(Verification::Svix, env_secret())]);
    repo.committed_secrets.push(clerk_audit::audit::artifact::CommittedSecret {
        file: ".env".into(),
        line: 4,
        variable: "CLERK_WEBHOOK_SIGNING_SECRET".into(),
        kind: clerk_audit::audit::artifact::CommittedSecretKind::WebhookSecret,
        fingerprint: fingerprint(WEBHOOK_SECRET_MATCHING),
    });
    let event = scan(&mut app, scenario, &repo).await;
    assert_statuses(&event, &[("CLERK-WEBHOOK-003", "fail")]);
    assert_eq!(finding_ids(&event), vec!["CLERK-WEBHOOK-003"]);
    let blocker = finding(&event, "CLERK-WEBHOOK-003");
    assert_eq!(
        blocker["evidence"]["repo"],
        format!(
            "{HANDLER_FILE}:12 (route {WEBHOOK_ROUTE}) verifies Clerk webhooks with CLERK_WEBHOOK_SIGNING_SECRET, whose whsec_ value is committed in .env:4"
        )
    );
    assert_eq!(
        blocker["evidence"]["details"]["committed"],
        json!({"file": ".env", "line": 4, "variable": "CLERK_WEBHOOK_SIGNING_SECRET"})
    );
    // The endpoint's secret was read once because of the committed value; nothing of it is in the event.
    assert_eq!(calls_by_row(&event).get(&7), Some(&1));
    let text = event.to_string();
    assert!(!text.contains(WEBHOOK_SECRET_MATCHING) && !text.contains(&fingerprint(WEBHOOK_SECRET_MATCHING)));
    assert_only_allowlisted(&app);
    app.stop().await;
}
