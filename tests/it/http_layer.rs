//! The allowlisted HTTP layer against the sandbox: refusals happen before any connection, credentials go
//! only where their row says, and the transport limits hold.

use clerk_audit::configuration::HttpSettings;
use clerk_audit::credentials::secret::ClerkSecretKey;
use clerk_audit::fetch::allowlist::CallMethod;
use clerk_audit::fetch::dns::DnsLookup;
use clerk_audit::fetch::http::{CallError, HttpLayer};
use clerk_audit::retry::RetryPolicy;
use clerk_audit_sandbox::{self as sandbox, Fault, HostKind, PresentedCredential, Sandbox, SandboxConfig, Scenario};

fn settings(allow_loopback: bool) -> HttpSettings {
    HttpSettings {
        allow_loopback,
        cleartext_http2: false,
        connect_timeout_ms: 2_000,
        request_timeout_ms: 5_000,
        max_body_bytes: 1_048_576,
        max_attempts: 3,
        max_retry_after_secs: 3,
    }
}

fn layer(sandbox: &Sandbox, settings: &HttpSettings) -> HttpLayer {
    HttpLayer::new(settings, sandbox.backend_api_url(), "2026-05-12", 50, RetryPolicy::immediate(settings.max_attempts))
        .unwrap()
}

fn key(sandbox: &Sandbox, scenario: Scenario) -> ClerkSecretKey {
    ClerkSecretKey::from_plaintext(sandbox.instance(scenario).secret_key.clone().into_bytes()).unwrap()
}

#[tokio::test]
async fn requests_off_the_allowlist_are_refused_before_connecting() {
    let sandbox = sandbox::start(SandboxConfig::default()).await.unwrap();
    let http = layer(&sandbox, &settings(true));
    let key = key(&sandbox, Scenario::ProductionOptionalMfa);
    let calls = http.session("prj/x".into(), &key);
    let backend = sandbox.backend_api_url();
    for (method, url) in [
        (CallMethod::Get, backend.join("/v1/users").unwrap()),
        (CallMethod::Get, backend.join("/v1/users/user_123").unwrap()),
        (CallMethod::Post, backend.join("/v1/instance").unwrap()),
        (CallMethod::Get, backend.join("/v1/users/count?email_address=a@b.c").unwrap()),
        (CallMethod::Get, backend.join("/v1/sessions").unwrap()),
        (CallMethod::Get, sandbox.svix_api_url().join("/api/v1/app/app_1/endpoint").unwrap()),
        (CallMethod::Get, "https://example.com/v1/instance".parse().unwrap()),
    ] {
        let error = calls.send(method, url.clone()).await.expect_err("refused");
        assert!(matches!(error, CallError::NotAllowed(_)), "{url}: {error:?}");
    }
    assert!(sandbox.requests().is_empty(), "nothing reached the sandbox: {:?}", sandbox.requests());
    assert!(calls.tallies().is_empty(), "refused requests are not calls");
    sandbox.shutdown().await;
}

#[tokio::test]
async fn production_configuration_refuses_plain_http_and_loopback() {
    let sandbox = sandbox::start(SandboxConfig::default()).await.unwrap();
    let key = key(&sandbox, Scenario::ProductionOptionalMfa);
    let production = settings(false);
    // Plain http to loopback.
    let http = layer(&sandbox, &production);
    let calls = http.session("prj/x".into(), &key);
    let error = calls.send(CallMethod::Get, calls.backend_url("/v1/instance")).await.expect_err("refused");
    assert!(matches!(error, CallError::AddressRefused(_)), "{error:?}");
    // https to a name that resolves to loopback: refused by the resolver, before any TLS handshake.
    let port = sandbox.backend_api_url().port().unwrap();
    let by_name: url::Url = format!("https://localhost:{port}").parse().unwrap();
    let http = HttpLayer::new(&production, by_name, "2026-05-12", 50, RetryPolicy::immediate(1)).unwrap();
    let calls = http.session("prj/x".into(), &key);
    let error = calls.send(CallMethod::Get, calls.backend_url("/v1/instance")).await.expect_err("refused");
    assert!(matches!(error, CallError::AddressRefused(_)), "{error:?}");
    // And the metadata address, even with loopback allowed.
    let metadata: url::Url = "http://169.254.169.254".parse().unwrap();
    let http = HttpLayer::new(&settings(true), metadata, "2026-05-12", 50, RetryPolicy::immediate(1)).unwrap();
    let calls = http.session("prj/x".into(), &key);
    let error = calls.send(CallMethod::Get, calls.backend_url("/v1/instance")).await.expect_err("refused");
    assert!(matches!(error, CallError::AddressRefused(_)), "{error:?}");
    assert!(sandbox.requests().is_empty());
    sandbox.shutdown().await;
}

#[tokio::test]
async fn the_secret_key_goes_to_the_backend_api_only() {
    let sandbox = sandbox::start(SandboxConfig::default()).await.unwrap();
    let http = layer(&sandbox, &settings(true));
    let key = key(&sandbox, Scenario::ProductionOptionalMfa);
    let mut calls = http.session("prj/x".into(), &key);
    let dns = DnsLookup::from_settings(&clerk_audit::configuration::DnsSettings {
        nameserver: sandbox.dns_addr().to_string(),
        timeout_ms: 1_000,
    })
    .unwrap();
    let facts = clerk_audit::fetch::gather(&mut calls, &dns, None).await.expect("facts");
    assert!(facts.auth_settings.known().is_some());
    let requests = sandbox.requests();
    assert!(requests.iter().any(|r| r.host == HostKind::FrontendApi));
    for request in &requests {
        match request.host {
            HostKind::BackendApi => {
                assert_eq!(request.credential, PresentedCredential::ClerkSecretKey);
                assert_eq!(request.clerk_api_version.as_deref(), Some("2026-05-12"));
            }
            HostKind::SvixApi => assert_eq!(request.credential, PresentedCredential::SvixToken, "{request:?}"),
            HostKind::FrontendApi => assert_eq!(request.credential, PresentedCredential::None, "{request:?}"),
        }
        let write_allowed = request.host == HostKind::BackendApi && request.path == "/v1/webhooks/svix_url";
        assert!(request.method == "GET" || (write_allowed && request.method == "POST"), "{request:?}");
    }
    sandbox.shutdown().await;
}

#[tokio::test]
async fn rate_limit_retry_after_is_honoured_and_bodies_are_capped() {
    let sandbox = sandbox::start(SandboxConfig::default()).await.unwrap();
    let scenario = Scenario::ProductionRequiredMfa;
    let instance = sandbox.instance(scenario).name.clone();
    let key = key(&sandbox, scenario);

    sandbox.set_fault(&instance, Fault::RateLimited { retry_after_secs: 1, times: 1 });
    let http = layer(&sandbox, &settings(true));
    let calls = http.session("prj/x".into(), &key);
    let started = std::time::Instant::now();
    let response =
        calls.send(CallMethod::Get, calls.backend_url("/v1/instance")).await.expect("second attempt succeeds");
    assert_eq!(response.status, 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(900), "waited for Retry-After");
    let statuses: Vec<u16> = sandbox.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 200]);

    // A Retry-After beyond the in-job budget is not waited for: the job is delayed instead.
    sandbox.set_fault(&instance, Fault::RateLimited { retry_after_secs: 120, times: 1 });
    let error = calls.send(CallMethod::Get, calls.backend_url("/v1/instance")).await.expect_err("not waited");
    assert_eq!(error, CallError::Status { status: 429, retry_after: Some(std::time::Duration::from_secs(120)) });

    let mut tiny = settings(true);
    tiny.max_body_bytes = 64;
    let http = layer(&sandbox, &tiny);
    let calls = http.session("prj/x".into(), &key);
    let error = calls.send(CallMethod::Get, calls.backend_url("/v1/domains")).await.expect_err("capped");
    assert_eq!(error, CallError::BodyTooLarge(64));
    sandbox.shutdown().await;
}

/// The rounds of one scan's fetch as the sandbox's gate saw them: an ungated run first counts the calls
/// of each round, then a gated run holds every round until all its calls are in flight together. A fetch
/// that made any of them one after the other could not fill its group (the gate then gives up, and the
/// group is reported unfilled).
async fn gated_rounds(
    scenario: Scenario,
    artifact: Option<&clerk_audit::audit::artifact::RepoArtifact>,
    rounds: usize,
) -> Vec<sandbox::GateGroup> {
    let sandbox = sandbox::start(SandboxConfig::default()).await.unwrap();
    // Calls wait longer than the gate does, so a round that cannot fill shows as an unfilled group.
    let patient = HttpSettings { request_timeout_ms: 30_000, ..settings(true) };
    let http = layer(&sandbox, &patient).with_svix_api_url(sandbox.svix_api_url().as_ref()).unwrap();
    let key = key(&sandbox, scenario);
    let dns = DnsLookup::from_settings(&clerk_audit::configuration::DnsSettings {
        nameserver: sandbox.dns_addr().to_string(),
        timeout_ms: 20_000,
    })
    .unwrap();
    let mut calls = http.session("prj/x".into(), &key);
    clerk_audit::fetch::gather(&mut calls, &dns, artifact).await.expect("facts");
    let requests = sandbox.requests().len();
    let questions = sandbox.dns_queries().len();
    sandbox.clear_requests();
    // Round one is the four Backend API calls; the last round (when there are three) is
    // `svix.endpoint_secret` alone.
    let mut sizes = vec![4, requests + questions - 4 - (rounds - 2)];
    if rounds == 3 {
        sizes.push(1);
    }
    sandbox.set_gate(&sandbox.instance(scenario).name, sizes);
    let mut calls = http.session("prj/x".into(), &key);
    clerk_audit::fetch::gather(&mut calls, &dns, artifact).await.expect("facts");
    let report = sandbox.gate_report();
    sandbox.shutdown().await;
    report
}

fn sorted(members: &[String]) -> Vec<String> {
    let mut members: Vec<String> = members.iter().map(|m| m.split("/app_").next().unwrap_or(m).to_owned()).collect();
    members.sort();
    members
}

#[tokio::test]
async fn a_scan_fetches_in_two_rounds_of_calls_made_together() {
    let report = gated_rounds(Scenario::ProductionOptionalMfa, None, 2).await;
    assert_eq!(report.len(), 2, "{report:#?}");
    assert!(report.iter().all(|group| group.filled), "every round's calls were in flight together: {report:#?}");
    assert_eq!(
        sorted(&report[0].members),
        ["GET /v1/domains", "GET /v1/instance", "GET /v1/users/count", "POST /v1/webhooks/svix_url"],
    );
    let second = sorted(&report[1].members);
    assert!(second.contains(&"GET /v1/environment".to_owned()), "{second:?}");
    assert!(second.contains(&"GET /api/v1/app".to_owned()), "the Svix endpoint list: {second:?}");
    assert!(second.iter().any(|m| m.starts_with("DNS clkmail.")), "{second:?}");
    assert!(second.iter().any(|m| m.starts_with("DNS clk._domainkey.")), "{second:?}");
}

#[tokio::test]
async fn a_signing_secret_comparison_adds_one_round() {
    use super::webhooks::{artifact, handler, literal};
    use clerk_audit::audit::artifact::Verification;
    let artifact = artifact(vec![handler(Verification::Svix, literal(sandbox::WEBHOOK_SECRET_MATCHING))]);
    let report = gated_rounds(Scenario::WebhooksMatching, Some(&artifact), 3).await;
    assert_eq!(report.len(), 3, "{report:#?}");
    assert!(report.iter().all(|group| group.filled), "{report:#?}");
    assert_eq!(report[0].members.len(), 4, "{report:#?}");
    assert!(report[2].members[0].ends_with("/secret"), "{report:#?}");
}

#[tokio::test]
async fn cleartext_http2_sends_plain_http_calls_as_http2() {
    let sandbox = sandbox::start(SandboxConfig::default()).await.unwrap();
    let key = key(&sandbox, Scenario::ProductionOptionalMfa);
    for (cleartext_http2, version) in [(false, "HTTP/1.1"), (true, "HTTP/2.0")] {
        sandbox.clear_requests();
        let http = layer(&sandbox, &HttpSettings { cleartext_http2, ..settings(true) });
        let calls = http.session("prj/x".into(), &key);
        // Calls in flight at once: HTTP/1.1 needs a connection for each, HTTP/2 shares one.
        let answers = futures::future::join_all(
            ["/v1/instance", "/v1/domains", "/v1/users/count"]
                .map(|path| calls.send(CallMethod::Get, calls.backend_url(path))),
        )
        .await;
        for answer in answers {
            answer.expect("answered");
        }
        let versions: Vec<String> = sandbox.requests().into_iter().map(|r| r.http_version).collect();
        assert_eq!(versions, [version; 3], "cleartext_http2 = {cleartext_http2}");
    }
    sandbox.shutdown().await;
}
