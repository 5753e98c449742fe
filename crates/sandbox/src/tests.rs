//! Tests of the sandbox over real HTTP (reqwest) and UDP: every kind of answer validates against the
//! reference schemas, faults behave, the DNS responder answers as configured, the log keeps no secret.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use serde_json::{Value, json};
use tokio::net::UdpSocket;

use super::openapi::{self, bapi, fapi, svix};
use super::*;

struct Harness {
    sandbox: Sandbox,
    client: reqwest::Client,
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn harness() -> Harness {
    let sandbox = start(SandboxConfig::default()).await.expect("sandbox starts");
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    Harness { sandbox, client }
}

fn join(root: &url::Url, path_and_query: &str) -> String {
    format!("{}{}", origin(root), path_and_query)
}

impl Harness {
    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request reaches the sandbox");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
        Reply { status, headers, body }
    }

    /// A Backend API call with the instance's secret key and `Clerk-API-Version`.
    async fn bapi(&self, method: &str, path: &str, key: Option<&str>) -> Reply {
        let url = join(&self.sandbox.backend_api_url(), path);
        let mut request = self.client.request(method.parse().unwrap(), url).header("Clerk-API-Version", "2026-05-12");
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        self.send(request).await
    }

    async fn fapi(&self, scenario: Scenario, path: &str) -> Reply {
        let url = join(&self.sandbox.instance(scenario).frontend_api_url, path);
        self.send(self.client.get(url)).await
    }

    async fn svix(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.client.get(join(&self.sandbox.svix_api_url(), path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    /// `POST /v1/webhooks/svix_url` and the decoded fragment: (app id, token, region).
    async fn svix_login(&self, scenario: Scenario) -> (String, String, String) {
        let reply = self.bapi("POST", "/v1/webhooks/svix_url", Some(scenario.secret_key())).await;
        assert_eq!(reply.status, 200, "{scenario}: {}", reply.body);
        decode_svix_url(reply.body["svix_url"].as_str().unwrap())
    }
}

fn decode_svix_url(svix_url: &str) -> (String, String, String) {
    let parsed = url::Url::parse(svix_url).expect("svix_url is a URL");
    assert_eq!(parsed.host_str(), Some("app.svix.com"));
    assert_eq!(parsed.path(), "/login");
    let fragment = parsed.fragment().expect("fragment");
    let encoded = fragment.strip_prefix("key=").expect("key=");
    let query = format!("k={encoded}");
    let (_, key) = url::form_urlencoded::parse(query.as_bytes()).next().unwrap();
    let json: Value =
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(key.as_bytes()).unwrap()).unwrap();
    (
        json["appId"].as_str().unwrap().to_owned(),
        json["token"].as_str().unwrap().to_owned(),
        json["region"].as_str().unwrap().to_owned(),
    )
}

fn assert_all(failures: Vec<String>) {
    assert!(failures.is_empty(), "{} failure(s):\n{}", failures.len(), failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_backend_answer_validates_for_every_scenario() {
    let h = harness().await;
    let mut failures = Vec::new();
    for instance in h.sandbox.instances() {
        let key = Some(instance.secret_key.as_str());
        for (method, path) in [
            ("GET", "/v1/instance"),
            ("GET", "/v1/users/count"),
            ("GET", "/v1/users/count?last_active_at_since=1700690400000"),
            ("GET", "/v1/domains"),
            ("POST", "/v1/webhooks/svix_url"),
        ] {
            let reply = h.bapi(method, path, key).await;
            let expected = if path.contains("svix_url") && instance.svix_app_id.is_none() { 400 } else { 200 };
            if reply.status != expected {
                failures.push(format!("{}: {method} {path}: status {} not {expected}", instance.name, reply.status));
            }
            let bare_path = path.split('?').next().unwrap();
            if let Err(e) = bapi().check_response(method, bare_path, reply.status, &reply.body, "ClerkErrors") {
                failures.push(format!("{}: {e}", instance.name));
            }
        }
    }
    assert_all(failures);
}

#[tokio::test]
async fn backend_answers_carry_each_scenarios_facts() {
    let h = harness().await;
    for instance in h.sandbox.instances() {
        let key = Some(instance.secret_key.as_str());
        let info = h.bapi("GET", "/v1/instance", key).await.body;
        assert_eq!(info["environment_type"], json!(instance.environment_type), "{}", instance.name);
        assert_eq!(info["id"], json!(instance.instance_id));
        let count = h.bapi("GET", "/v1/users/count", key).await.body;
        assert_eq!(count["total_count"], json!(instance.user_count));
        let active = h.bapi("GET", "/v1/users/count?last_active_at_since=1700690400000", key).await.body;
        assert!(active["total_count"].as_u64().unwrap() < instance.user_count);

        let domains = h.bapi("GET", "/v1/domains", key).await.body;
        let primary = domains["data"].as_array().unwrap().iter().find(|d| d["is_satellite"] == json!(false)).unwrap();
        assert_eq!(primary["frontend_api_url"], json!(origin(&instance.frontend_api_url)));
        assert_eq!(primary["name"], json!(instance.domain));
        if instance.environment_type == "development" {
            assert_eq!(primary["cname_targets"], Value::Null);
        } else {
            let hosts: Vec<&str> =
                primary["cname_targets"].as_array().unwrap().iter().map(|t| t["host"].as_str().unwrap()).collect();
            let domain = &instance.domain;
            assert_eq!(
                hosts,
                [
                    format!("clerk.{domain}"),
                    format!("accounts.{domain}"),
                    format!("clkmail.{domain}"),
                    format!("clk._domainkey.{domain}"),
                    format!("clk2._domainkey.{domain}")
                ]
            );
        }
    }
    let optional = h.sandbox.instance(Scenario::ProductionOptionalMfa);
    assert_eq!(optional.user_count, 1247);
    // The satellite domain comes first: a client must pick the primary by `is_satellite`.
    let domains = h.bapi("GET", "/v1/domains", Some(SECRET_KEY_PRODUCTION_REQUIRED_MFA)).await.body;
    assert_eq!(domains["data"][0]["is_satellite"], json!(true));
    assert_eq!(domains["total_count"], json!(2));
}

#[tokio::test]
async fn backend_error_answers_validate() {
    let h = harness().await;
    let mut failures = Vec::new();
    let mut check = |what: &str, method: &str, path: &str, reply: &Reply, status: u16, code: &str| {
        if reply.status != status {
            failures.push(format!("{what}: status {} not {status}", reply.status));
        }
        if reply.body["errors"][0]["code"] != json!(code) {
            failures.push(format!("{what}: code {} not {code}", reply.body["errors"][0]["code"]));
        }
        let result = if bapi().response_schema_exists(method, path) {
            bapi().check_response(method, path, reply.status, &reply.body, "ClerkErrors")
        } else {
            openapi::validate(&bapi().component("ClerkErrors"), &reply.body)
        };
        if let Err(e) = result {
            failures.push(format!("{what}: {e}"));
        }
    };

    let reply = h.bapi("GET", "/v1/instance", None).await;
    check("no auth", "GET", "/v1/instance", &reply, 401, "authentication_invalid");
    let reply = h
        .send(h.client.get(join(&h.sandbox.backend_api_url(), "/v1/instance")).header("Authorization", "Basic Zm9v"))
        .await;
    check("malformed auth", "GET", "/v1/instance", &reply, 401, "authorization_header_format_invalid");
    let reply = h.bapi("GET", "/v1/instance", Some("sk_live_unknownKey000000000000000000000000000")).await;
    check("unknown key", "GET", "/v1/instance", &reply, 401, "authentication_invalid");
    let reply = h.bapi("GET", "/v1/users", Some(SECRET_KEY_DEVELOPMENT)).await;
    check("not served (user data)", "GET", "/v1/users", &reply, 404, "resource_not_found");
    let reply = h.bapi("PATCH", "/v1/instance", Some(SECRET_KEY_DEVELOPMENT)).await;
    check("write", "PATCH", "/v1/instance", &reply, 404, "resource_not_found");
    let reply = h.bapi("GET", "/v1/nothing/here", Some(SECRET_KEY_DEVELOPMENT)).await;
    check("unknown path", "GET", "/v1/nothing/here", &reply, 404, "resource_not_found");
    let reply = h.bapi("GET", "/v1/users/count?last_active_at_since=yesterday", Some(SECRET_KEY_DEVELOPMENT)).await;
    check("bad query", "GET", "/v1/users/count", &reply, 422, "form_param_format_invalid");
    let reply = h.bapi("POST", "/v1/webhooks/svix_url", Some(SECRET_KEY_WEBHOOKS_NO_SVIX_APP)).await;
    check("no svix app", "POST", "/v1/webhooks/svix_url", &reply, 400, "svix_app_missing");

    let name = Scenario::ProductionOptionalMfa.as_str();
    let key = Some(SECRET_KEY_PRODUCTION_OPTIONAL_MFA);
    h.sandbox.set_fault(name, Fault::RateLimited { retry_after_secs: 1, times: 1 });
    let reply = h.bapi("GET", "/v1/domains", key).await;
    check("rate limited", "GET", "/v1/domains", &reply, 429, "too_many_requests");
    h.sandbox.set_fault(name, Fault::ServerError { times: 1 });
    let reply = h.bapi("GET", "/v1/users/count", key).await;
    check("server error", "GET", "/v1/users/count", &reply, 500, "internal_clerk_error");
    h.sandbox.set_fault(name, Fault::Revoked);
    let reply = h.bapi("POST", "/v1/webhooks/svix_url", key).await;
    check("revoked", "POST", "/v1/webhooks/svix_url", &reply, 401, "authentication_invalid");
    assert_all(failures);
}

#[tokio::test]
async fn every_frontend_answer_validates_for_every_scenario() {
    let h = harness().await;
    let mut failures = Vec::new();
    for instance in h.sandbox.instances() {
        let reply = h.fapi(instance.scenario, "/v1/environment").await;
        let expected = if instance.environment_type == "development" { 401 } else { 200 };
        if reply.status != expected {
            failures.push(format!("{}: status {} not {expected}", instance.name, reply.status));
        }
        if let Err(e) = fapi().check_response("GET", "/v1/environment", reply.status, &reply.body, "ClerkErrors") {
            failures.push(format!("{}: {e}", instance.name));
        }
        if reply.status == 200 {
            let display = &reply.body["display_config"];
            if display["instance_environment_type"] != json!(instance.environment_type) {
                failures.push(format!("{}: display_config.instance_environment_type", instance.name));
            }
        }
        let reply = h.fapi(instance.scenario, "/v1/client").await;
        if reply.status != 404 {
            failures.push(format!("{}: /v1/client answered {}", instance.name, reply.status));
        }
        if let Err(e) = fapi().check_response("GET", "/v1/client", reply.status, &reply.body, "ClerkErrors") {
            failures.push(format!("{}: {e}", instance.name));
        }
    }
    // With a dev-browser token, the development instance answers its environment too.
    let reply = h.fapi(Scenario::Development, "/v1/environment?__clerk_db_jwt=dvb_2SbxDevBrowser").await;
    assert_eq!(reply.status, 200);
    if let Err(e) = fapi().check_response("GET", "/v1/environment", 200, &reply.body, "ClerkErrors") {
        failures.push(format!("development with dev browser: {e}"));
    }
    let reply = h.fapi(Scenario::Development, "/v1/environment").await;
    assert_eq!(reply.body["errors"][0]["code"], json!("dev_browser_unauthenticated"));
    assert_all(failures);
}

/// The configured factors each MFA scenario promises.
#[tokio::test]
async fn frontend_environment_carries_each_scenarios_factors() {
    let h = harness().await;
    let second_factors = |environment: &Value| -> Vec<String> {
        let mut found: Vec<String> = environment["user_settings"]["attributes"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, attribute)| attribute["used_for_second_factor"] == json!(true))
            .map(|(name, _)| name.clone())
            .collect();
        found.sort();
        found
    };
    let required = |environment: &Value| environment["user_settings"]["sign_in"]["second_factor"]["required"].clone();

    let env = h.fapi(Scenario::ProductionOptionalMfa, "/v1/environment").await.body;
    assert_eq!(second_factors(&env), ["authenticator_app", "backup_code"]);
    assert_eq!(required(&env), json!(false));
    let env = h.fapi(Scenario::ProductionNoSecondFactor, "/v1/environment").await.body;
    assert!(second_factors(&env).is_empty());
    assert_eq!(required(&env), json!(false));
    assert_eq!(env["auth_config"]["second_factors"], json!([]));
    let env = h.fapi(Scenario::ProductionRequiredMfa, "/v1/environment").await.body;
    assert_eq!(second_factors(&env), ["authenticator_app", "phone_number"]);
    assert_eq!(required(&env), json!(true));
    let env = h.fapi(Scenario::ProductionMissingClkmail, "/v1/environment").await.body;
    assert_eq!(required(&env), json!(true));
}

#[tokio::test]
async fn protection_settings_follow_the_scenario() {
    let h = harness().await;
    let protection = |env: &Value| {
        let settings = &env["user_settings"];
        (
            env["auth_config"]["test_mode"].clone(),
            settings["password_settings"]["disable_hibp"].clone(),
            settings["attack_protection"]["user_lockout"]["enabled"].clone(),
            settings["sign_up"]["captcha_enabled"].clone(),
            settings["sign_up"]["mode"].clone(),
        )
    };
    let lax = h.fapi(Scenario::ProductionLax, "/v1/environment").await;
    assert_eq!(lax.status, 200);
    assert_eq!(protection(&lax.body), (json!(true), json!(true), json!(false), json!(false), json!("public")));
    assert_eq!(lax.body["user_settings"]["attributes"]["password"]["used_for_first_factor"], json!(true));
    let safe = h.fapi(Scenario::ProductionOptionalMfa, "/v1/environment").await.body;
    assert_eq!(protection(&safe), (json!(false), json!(false), json!(true), json!(true), json!("public")));

    let key = h.sandbox.instance(Scenario::ProductionLax).secret_key.clone();
    let instance = h.bapi("GET", "/v1/instance", Some(&key)).await.body;
    assert_eq!(
        instance["allowed_origins"],
        json!(["https://acme-lax.example", "http://localhost:3000", "http://acme-lax.example"])
    );
    let near_cap = h.sandbox.instance(Scenario::DevelopmentNearCap);
    let count = h.bapi("GET", "/v1/users/count", Some(&near_cap.secret_key)).await.body;
    assert_eq!(count["total_count"], json!(95));
    assert_eq!(near_cap.environment_type, "development");
}

#[tokio::test]
async fn every_svix_answer_validates_and_lists_all_pages() {
    let h = harness().await;
    let mut failures = Vec::new();
    let secret_schema =
        svix().json_schema(&svix().response_schema("GET", "/api/v1/app/a/endpoint/e/secret", 200).expect("listed"));
    for instance in h.sandbox.instances() {
        let Some(app_id) = &instance.svix_app_id else { continue };
        let (decoded_app, token, region) = h.svix_login(instance.scenario).await;
        assert_eq!(&decoded_app, app_id);
        assert!(region == "us" || region == "eu");
        let expected = instance.scenario.spec().svix.unwrap().endpoints;

        for limit in [None, Some(250), Some(7)] {
            let mut seen = Vec::new();
            let mut iterator: Option<String> = None;
            let mut pages = 0;
            loop {
                let mut path = format!("/api/v1/app/{app_id}/endpoint");
                let mut params = Vec::new();
                if let Some(limit) = limit {
                    params.push(format!("limit={limit}"));
                }
                if let Some(iterator) = &iterator {
                    params.push(format!("iterator={iterator}"));
                }
                if !params.is_empty() {
                    path = format!("{path}?{}", params.join("&"));
                }
                let reply = h.svix(&path, Some(&token)).await;
                pages += 1;
                if reply.status != 200 {
                    failures.push(format!("{}: list {path}: {}", instance.name, reply.status));
                    break;
                }
                let bare = path.split('?').next().unwrap();
                if let Err(e) = svix().check_response("GET", bare, 200, &reply.body, "HttpErrorOut") {
                    failures.push(format!("{}: {e}", instance.name));
                }
                for endpoint in reply.body["data"].as_array().unwrap() {
                    seen.push(endpoint["id"].as_str().unwrap().to_owned());
                }
                if reply.body["done"] == json!(true) {
                    break;
                }
                iterator = reply.body["iterator"].as_str().map(str::to_owned);
                assert!(pages < 100, "pagination does not end");
            }
            let expected_ids: Vec<String> = expected.iter().map(|e| e.id.clone()).collect();
            if seen != expected_ids {
                failures.push(format!(
                    "{}: limit {limit:?}: listed {} of {} endpoints",
                    instance.name,
                    seen.len(),
                    expected.len()
                ));
            }
            if instance.scenario == Scenario::WebhooksPaginated && pages < 2 {
                failures.push(format!("paginated scenario fit in one page at limit {limit:?}"));
            }
        }

        for endpoint in &expected {
            let reply = h.svix(&format!("/api/v1/app/{app_id}/endpoint/{}/secret", endpoint.id), Some(&token)).await;
            if reply.status != 200 || reply.body["key"] != json!(endpoint.secret) {
                failures.push(format!("{}: secret of {}: {} {}", instance.name, endpoint.id, reply.status, reply.body));
            }
            if let Err(e) = openapi::validate(&secret_schema, &reply.body) {
                failures.push(format!("{}: secret of {}: {e}", instance.name, endpoint.id));
            }
        }
    }
    assert_all(failures);
}

#[tokio::test]
async fn svix_webhook_scenarios_hold_what_the_checks_need() {
    let h = harness().await;
    let h = &h;
    let list = |scenario: Scenario| async move {
        let (app, token, _) = h.svix_login(scenario).await;
        h.svix(&format!("/api/v1/app/{app}/endpoint?limit=250"), Some(&token)).await.body
    };
    let matching = list(Scenario::WebhooksMatching).await;
    assert_eq!(matching["data"][0]["url"], json!("https://acme-webhooks-matching.example/api/webhooks/clerk"));
    assert_eq!(matching["data"][0]["disabled"], json!(false));
    assert!(matching["data"][0].get("filterTypes").is_none(), "unfiltered");
    assert!(matching["data"][0].get("eventTypes").is_none(), "unfiltered");
    let (app, token, region) = h.svix_login(Scenario::WebhooksMatching).await;
    assert_eq!(region, "eu");
    let id = matching["data"][0]["id"].as_str().unwrap();
    let secret = h.svix(&format!("/api/v1/app/{app}/endpoint/{id}/secret"), Some(&token)).await.body;
    assert_eq!(secret["key"], json!(WEBHOOK_SECRET_MATCHING));

    let filtered = list(Scenario::WebhooksFilterMissingEvent).await;
    // The live API's field name, not the trimmed schema's.
    assert_eq!(filtered["data"][0]["filterTypes"], json!(["user.created"]));
    assert!(filtered["data"][0].get("eventTypes").is_none());
    let disabled = list(Scenario::WebhooksAllDisabled).await;
    assert!(disabled["data"].as_array().unwrap().iter().all(|e| e["disabled"] == json!(true)));
    let empty = list(Scenario::WebhooksNoEndpoints).await;
    assert_eq!(empty["data"], json!([]));
    assert_eq!(empty["done"], json!(true));
    assert_eq!(empty["iterator"], Value::Null);

    // The only enabled endpoint at the handler's path is on the last page.
    let paginated = list(Scenario::WebhooksPaginated).await;
    let first_page = paginated["data"].as_array().unwrap();
    assert_eq!(first_page.len(), 250);
    assert_eq!(paginated["done"], json!(false));
    assert!(
        !first_page
            .iter()
            .any(|e| e["disabled"] == json!(false) && e["url"].as_str().unwrap().ends_with(WEBHOOK_ROUTE))
    );
}

#[tokio::test]
async fn svix_pages_back_with_prev_iterator_and_descending_order() {
    let h = harness().await;
    let (app, token, _) = h.svix_login(Scenario::WebhooksPaginated).await;
    let page = |query: String| {
        let h = &h;
        let token = token.clone();
        let app = app.clone();
        async move { h.svix(&format!("/api/v1/app/{app}/endpoint?{query}"), Some(&token)).await.body }
    };
    let first = page("limit=10".into()).await;
    let second = page(format!("limit=10&iterator={}", first["iterator"].as_str().unwrap())).await;
    assert_ne!(first["data"][0]["id"], second["data"][0]["id"]);
    let back = page(format!("limit=10&iterator={}", second["prevIterator"].as_str().unwrap())).await;
    assert_eq!(back["data"], first["data"]);
    let descending = page("limit=3&order=descending".into()).await;
    assert!(descending["data"][0]["id"].as_str().unwrap() > descending["data"][1]["id"].as_str().unwrap());
    assert_eq!(descending["data"][0]["url"], json!(format!("https://acme-webhooks-paginated.example{WEBHOOK_ROUTE}")));
}

#[tokio::test]
async fn svix_error_answers_validate() {
    let h = harness().await;
    let (app, token, _) = h.svix_login(Scenario::WebhooksMatching).await;
    let (other_app, other_token, _) = h.svix_login(Scenario::ProductionOptionalMfa).await;
    let list = format!("/api/v1/app/{app}/endpoint");
    let mut failures = Vec::new();
    let mut check = |what: &str, path: &str, reply: Reply, status: u16| {
        if reply.status != status {
            failures.push(format!("{what}: status {} not {status}: {}", reply.status, reply.body));
        }
        let bare = path.split('?').next().unwrap();
        if let Err(e) = svix().check_response("GET", bare, reply.status, &reply.body, "HttpErrorOut") {
            failures.push(format!("{what}: {e}"));
        }
    };
    check("no token", &list, h.svix(&list, None).await, 401);
    check("unknown token", &list, h.svix(&list, Some("appsk_notIssuedByTheSandbox")).await, 401);
    check("secret key as token", &list, h.svix(&list, Some(SECRET_KEY_WEBHOOKS_MATCHING)).await, 401);
    check("other app's token", &list, h.svix(&list, Some(&other_token)).await, 403);
    let missing = format!("/api/v1/app/{app}/endpoint/ep_2SbxWebhooksMatching00009999/secret");
    check("unknown endpoint", &missing, h.svix(&missing, Some(&token)).await, 404);
    let bad_limit = format!("{list}?limit=0");
    check("limit 0", &bad_limit, h.svix(&bad_limit, Some(&token)).await, 422);
    let bad_iterator = format!("{list}?iterator=nope");
    check("bad iterator", &bad_iterator, h.svix(&bad_iterator, Some(&token)).await, 422);

    h.sandbox.set_fault_on(
        Scenario::WebhooksMatching.as_str(),
        FaultTarget::SvixApi,
        Fault::RateLimited { retry_after_secs: 3, times: 1 },
    );
    let reply = h.svix(&list, Some(&token)).await;
    assert_eq!(reply.headers.get("retry-after").unwrap(), "3");
    check("rate limited", &list, reply, 429);
    h.sandbox.set_fault_on(Scenario::WebhooksMatching.as_str(), FaultTarget::SvixApi, Fault::ServerError { times: 1 });
    check("server error", &list, h.svix(&list, Some(&token)).await, 500);
    check("after faults", &list, h.svix(&list, Some(&token)).await, 200);
    // The other app's token still opens its own app.
    let own = format!("/api/v1/app/{other_app}/endpoint");
    check("own app", &own, h.svix(&own, Some(&other_token)).await, 200);
    assert_all(failures);
}

// ---------------------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_fault_on_one_path_leaves_the_other_paths_alone() {
    let h = harness().await;
    let name = Scenario::ProductionRequiredMfa.as_str();
    let key = Some(SECRET_KEY_PRODUCTION_REQUIRED_MFA);
    h.sandbox.set_fault_on_path(name, FaultTarget::BackendApi, "/v1/instance", Fault::ServerError { times: 1 });
    assert_eq!(h.bapi("GET", "/v1/domains", key).await.status, 200);
    assert_eq!(h.bapi("GET", "/v1/users/count", key).await.status, 200);
    assert_eq!(h.bapi("GET", "/v1/instance", key).await.status, 500);
    assert_eq!(h.bapi("GET", "/v1/instance", key).await.status, 200, "used up after `times`");
}

#[tokio::test]
async fn rate_limit_carries_retry_after_and_clears_after_times() {
    let h = harness().await;
    let name = Scenario::ProductionRequiredMfa.as_str();
    h.sandbox.set_fault(name, Fault::RateLimited { retry_after_secs: 7, times: 2 });
    for _ in 0..2 {
        let reply = h.bapi("GET", "/v1/instance", Some(SECRET_KEY_PRODUCTION_REQUIRED_MFA)).await;
        assert_eq!(reply.status, 429);
        assert_eq!(reply.headers.get("retry-after").unwrap(), "7");
        // Other instances are not affected.
        assert_eq!(h.bapi("GET", "/v1/instance", Some(SECRET_KEY_PRODUCTION_OPTIONAL_MFA)).await.status, 200);
    }
    assert_eq!(h.bapi("GET", "/v1/instance", Some(SECRET_KEY_PRODUCTION_REQUIRED_MFA)).await.status, 200);
    // The Frontend API was never affected by a backend fault.
    h.sandbox.set_fault(name, Fault::RateLimited { retry_after_secs: 7, times: 1 });
    assert_eq!(h.fapi(Scenario::ProductionRequiredMfa, "/v1/environment").await.status, 200);
}

#[tokio::test]
async fn server_error_clears_after_times_and_zero_means_until_cleared() {
    let h = harness().await;
    let name = Scenario::ProductionNoSecondFactor.as_str();
    let key = Some(SECRET_KEY_PRODUCTION_NO_SECOND_FACTOR);
    h.sandbox.set_fault(name, Fault::ServerError { times: 3 });
    for _ in 0..3 {
        assert_eq!(h.bapi("GET", "/v1/domains", key).await.status, 500);
    }
    assert_eq!(h.bapi("GET", "/v1/domains", key).await.status, 200);

    h.sandbox.set_fault(name, Fault::ServerError { times: 0 });
    for _ in 0..5 {
        assert_eq!(h.bapi("GET", "/v1/domains", key).await.status, 500);
    }
    h.sandbox.clear_faults();
    assert_eq!(h.bapi("GET", "/v1/domains", key).await.status, 200);
}

#[tokio::test]
async fn flaky_refuses_its_share_and_random_latency_still_answers() {
    let h = harness().await;
    let key = Some(SECRET_KEY_DEVELOPMENT);
    h.sandbox.set_fault_everywhere(
        FaultTarget::Any,
        Fault::Flaky { rate_limited_permille: 1000, server_error_permille: 0, retry_after_secs: 1 },
    );
    let reply = h.bapi("GET", "/v1/instance", key).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    assert_eq!(h.fapi(Scenario::ProductionOptionalMfa, "/v1/environment").await.status, 429);
    h.sandbox.clear_faults();
    h.sandbox.set_fault_everywhere(
        FaultTarget::Any,
        Fault::Flaky { rate_limited_permille: 0, server_error_permille: 1000, retry_after_secs: 1 },
    );
    assert_eq!(h.bapi("GET", "/v1/instance", key).await.status, 500);
    h.sandbox.clear_faults();
    h.sandbox.set_fault_everywhere(FaultTarget::Any, Fault::RandomLatency { min_ms: 1, max_ms: 5 });
    h.sandbox.set_fault_everywhere(
        FaultTarget::Any,
        Fault::Flaky { rate_limited_permille: 0, server_error_permille: 0, retry_after_secs: 1 },
    );
    assert_eq!(h.bapi("GET", "/v1/instance", key).await.status, 200);
    assert_eq!(
        serde_json::to_value(Fault::RandomLatency { min_ms: 20, max_ms: 150 }).unwrap(),
        json!({ "type": "random_latency", "min_ms": 20, "max_ms": 150 })
    );
}

#[tokio::test]
async fn recording_off_keeps_no_log() {
    let h = harness().await;
    h.sandbox.set_recording(false);
    assert_eq!(h.bapi("GET", "/v1/instance", Some(SECRET_KEY_DEVELOPMENT)).await.status, 200);
    assert!(h.sandbox.requests().is_empty());
    h.sandbox.set_recording(true);
    assert_eq!(h.bapi("GET", "/v1/instance", Some(SECRET_KEY_DEVELOPMENT)).await.status, 200);
    assert_eq!(h.sandbox.requests().len(), 1);
}

#[tokio::test]
async fn revoked_rejects_every_backend_call_until_cleared() {
    let h = harness().await;
    h.sandbox.set_fault(Scenario::ProductionOptionalMfa.as_str(), Fault::Revoked);
    let key = Some(SECRET_KEY_PRODUCTION_OPTIONAL_MFA);
    for (method, path) in
        [("GET", "/v1/instance"), ("GET", "/v1/users/count"), ("GET", "/v1/domains"), ("POST", "/v1/webhooks/svix_url")]
    {
        let reply = h.bapi(method, path, key).await;
        assert_eq!(reply.status, 401, "{path}");
        assert_eq!(reply.body["errors"][0]["code"], json!("authentication_invalid"));
    }
    assert_eq!(h.fapi(Scenario::ProductionOptionalMfa, "/v1/environment").await.status, 200);
    assert_eq!(h.bapi("GET", "/v1/instance", Some(SECRET_KEY_PRODUCTION_REQUIRED_MFA)).await.status, 200);
    h.sandbox.clear_faults();
    assert_eq!(h.bapi("GET", "/v1/instance", key).await.status, 200);
}

#[tokio::test]
async fn fault_targets_choose_the_host() {
    let h = harness().await;
    let name = Scenario::ProductionOptionalMfa.as_str();
    h.sandbox.set_fault_on(name, FaultTarget::FrontendApi, Fault::ServerError { times: 1 });
    assert_eq!(h.bapi("GET", "/v1/instance", Some(SECRET_KEY_PRODUCTION_OPTIONAL_MFA)).await.status, 200);
    let reply = h.fapi(Scenario::ProductionOptionalMfa, "/v1/environment").await;
    assert_eq!(reply.status, 500);
    fapi().check_response("GET", "/v1/environment", 500, &reply.body, "ClerkErrors").unwrap();
    assert_eq!(h.fapi(Scenario::ProductionOptionalMfa, "/v1/environment").await.status, 200);

    h.sandbox.set_fault_on(name, FaultTarget::Any, Fault::Revoked);
    assert_eq!(h.bapi("GET", "/v1/instance", Some(SECRET_KEY_PRODUCTION_OPTIONAL_MFA)).await.status, 401);
    assert_eq!(h.fapi(Scenario::ProductionOptionalMfa, "/v1/environment").await.status, 401);
}

#[tokio::test]
async fn malformed_body_answers_200_quoting_the_credential() {
    let h = harness().await;
    let name = Scenario::ProductionOptionalMfa.as_str();
    h.sandbox.set_fault_on(name, FaultTarget::BackendApi, Fault::MalformedBody);
    let reply = h.bapi("GET", "/v1/instance", Some(SECRET_KEY_PRODUCTION_OPTIONAL_MFA)).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.get("id").is_none(), "not an Instance: {}", reply.body);
    assert_eq!(reply.body["data"], json!(SECRET_KEY_PRODUCTION_OPTIONAL_MFA));
    assert!(reply.body.get(SECRET_KEY_PRODUCTION_OPTIONAL_MFA).is_some(), "the key is a map key too");
    assert_eq!(h.fapi(Scenario::ProductionOptionalMfa, "/v1/environment").await.status, 200, "other hosts answer");
    h.sandbox.clear_faults();
    assert_eq!(h.bapi("GET", "/v1/instance", Some(SECRET_KEY_PRODUCTION_OPTIONAL_MFA)).await.status, 200);
}

#[tokio::test]
async fn latency_delays_the_answer() {
    let h = harness().await;
    h.sandbox.set_fault(Scenario::Development.as_str(), Fault::Latency { ms: 300 });
    let started = Instant::now();
    let reply = h.bapi("GET", "/v1/instance", Some(SECRET_KEY_DEVELOPMENT)).await;
    assert_eq!(reply.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // With the development instance stalled for a minute, another instance still answers: it would not
    // within the bound below if the fault leaked to it.
    h.sandbox.set_fault(Scenario::Development.as_str(), Fault::Latency { ms: 60_000 });
    let other = h.bapi("GET", "/v1/instance", Some(SECRET_KEY_PRODUCTION_OPTIONAL_MFA));
    let reply = tokio::time::timeout(Duration::from_secs(30), other).await.expect("other instances are not delayed");
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn slow_body_sends_headers_at_once_and_the_body_late() {
    let h = harness().await;
    h.sandbox.set_fault(Scenario::ProductionOptionalMfa.as_str(), Fault::SlowBody { delay_ms: 2000 });
    let started = Instant::now();
    let response = h
        .client
        .get(join(&h.sandbox.backend_api_url(), "/v1/domains"))
        .bearer_auth(SECRET_KEY_PRODUCTION_OPTIONAL_MFA)
        .send()
        .await
        .unwrap();
    let headers_after = started.elapsed();
    assert_eq!(response.status(), 200);
    // Headers came before the body's delay had passed; the body only after it.
    assert!(headers_after < Duration::from_millis(2000), "headers took {headers_after:?}");
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(2000));
    bapi().check_response("GET", "/v1/domains", 200, &body, "ClerkErrors").unwrap();

    // A client with a total timeout shorter than the delay gives up.
    let impatient = reqwest::Client::builder().no_proxy().timeout(Duration::from_millis(300)).build().unwrap();
    let result = async {
        impatient
            .get(join(&h.sandbox.backend_api_url(), "/v1/domains"))
            .bearer_auth(SECRET_KEY_PRODUCTION_OPTIONAL_MFA)
            .send()
            .await?
            .bytes()
            .await
    }
    .await;
    assert!(result.unwrap_err().is_timeout());
}

// ---------------------------------------------------------------------------------------------------------
// Request log and admin surface
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn requests_are_recorded_in_order_without_credentials() {
    let h = harness().await;
    h.bapi("GET", "/v1/instance", Some(SECRET_KEY_PRODUCTION_OPTIONAL_MFA)).await;
    h.send(h.client.get(join(&h.sandbox.backend_api_url(), "/v1/domains")).bearer_auth(SECRET_KEY_DEVELOPMENT)).await;
    h.bapi("GET", &format!("/v1/users/count?leak={SECRET_KEY_PRODUCTION_REQUIRED_MFA}"), Some("sk_live_wrong")).await;
    let (app, token, _) = h.svix_login(Scenario::WebhooksMatching).await;
    let endpoint = format!("/api/v1/app/{app}/endpoint");
    h.svix(&endpoint, Some(&token)).await;
    h.svix(&format!("{endpoint}?iterator={token}"), Some(&token)).await;
    h.fapi(Scenario::ProductionOptionalMfa, "/v1/environment").await;
    h.send(
        h.client
            .get(join(&h.sandbox.instance(Scenario::ProductionOptionalMfa).frontend_api_url, "/v1/environment"))
            .bearer_auth(SECRET_KEY_PRODUCTION_OPTIONAL_MFA),
    )
    .await;
    // Admin requests are not recorded.
    h.client.get(join(&h.sandbox.backend_api_url(), "/__sandbox/requests")).send().await.unwrap();

    let log = h.sandbox.requests();
    type Row<'a> = (HostKind, &'a str, &'a str, Option<&'a str>, u16, PresentedCredential);
    let summary: Vec<Row<'_>> = log
        .iter()
        .map(|r| (r.host, r.method.as_str(), r.path.as_str(), r.instance.as_deref(), r.status, r.credential))
        .collect();
    use HostKind::*;
    use PresentedCredential::{ClerkSecretKey, SvixToken, UnknownBearer};
    assert_eq!(
        summary,
        vec![
            (BackendApi, "GET", "/v1/instance", Some("production-optional-mfa"), 200, ClerkSecretKey),
            (BackendApi, "GET", "/v1/domains", Some("development"), 200, ClerkSecretKey),
            (BackendApi, "GET", "/v1/users/count", None, 401, UnknownBearer),
            (BackendApi, "POST", "/v1/webhooks/svix_url", Some("webhooks-matching"), 200, ClerkSecretKey),
            (SvixApi, "GET", endpoint.as_str(), Some("webhooks-matching"), 200, SvixToken),
            (SvixApi, "GET", endpoint.as_str(), Some("webhooks-matching"), 422, SvixToken),
            (FrontendApi, "GET", "/v1/environment", Some("production-optional-mfa"), 200, PresentedCredential::None),
            (FrontendApi, "GET", "/v1/environment", Some("production-optional-mfa"), 200, ClerkSecretKey),
        ]
    );
    assert_eq!(log[0].clerk_api_version.as_deref(), Some("2026-05-12"));
    assert_eq!(log[1].clerk_api_version, Option::None);
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(log[2].query.as_deref(), Some("leak=[REDACTED]"));
    assert_eq!(log[5].query.as_deref(), Some("iterator=[REDACTED]"));

    let serialized = serde_json::to_string(&log).unwrap();
    for secret in Scenario::ALL.map(Scenario::secret_key) {
        assert!(!serialized.contains(secret), "log holds a secret key");
    }
    assert!(!serialized.contains(&token), "log holds a Svix token");
    assert!(!serialized.contains("whsec_"));

    h.sandbox.clear_requests();
    assert!(h.sandbox.requests().is_empty());
}

#[tokio::test]
async fn admin_surface_serves_instances_requests_and_faults() {
    let h = harness().await;
    let admin = |path: &str| join(&h.sandbox.backend_api_url(), path);
    let info: Value = h.client.get(admin("/__sandbox/instances")).send().await.unwrap().json().await.unwrap();
    assert_eq!(info, serde_json::to_value(h.sandbox.info()).unwrap());
    assert_eq!(info["instances"].as_array().unwrap().len(), Scenario::ALL.len());
    assert_eq!(info["backend_api_url"], json!(origin(&h.sandbox.backend_api_url())));
    assert_eq!(info["dns_addr"], json!(h.sandbox.dns_addr().to_string()));

    let fault = json!({ "instance": "production-optional-mfa", "fault": { "type": "rate_limited", "retry_after_secs": 2, "times": 1 } });
    let response = h.client.post(admin("/__sandbox/faults")).json(&fault).send().await.unwrap();
    assert_eq!(response.status(), 204);
    let reply = h.bapi("GET", "/v1/instance", Some(SECRET_KEY_PRODUCTION_OPTIONAL_MFA)).await;
    assert_eq!((reply.status, reply.headers.get("retry-after").unwrap().to_str().unwrap()), (429, "2"));

    let fault = json!({ "instance": "production-optional-mfa", "fault": { "type": "server_error", "times": 0 }, "target": "frontend_api" });
    assert_eq!(h.client.post(admin("/__sandbox/faults")).json(&fault).send().await.unwrap().status(), 204);
    assert_eq!(h.fapi(Scenario::ProductionOptionalMfa, "/v1/environment").await.status, 500);
    assert_eq!(h.client.delete(admin("/__sandbox/faults")).send().await.unwrap().status(), 204);
    assert_eq!(h.fapi(Scenario::ProductionOptionalMfa, "/v1/environment").await.status, 200);

    let unknown = json!({ "instance": "nope", "fault": { "type": "revoked" } });
    assert_eq!(h.client.post(admin("/__sandbox/faults")).json(&unknown).send().await.unwrap().status(), 404);
    let bad = json!({ "instance": "development", "fault": { "type": "explode" } });
    assert_eq!(h.client.post(admin("/__sandbox/faults")).json(&bad).send().await.unwrap().status(), 400);

    let log: Vec<RecordedRequest> =
        h.client.get(admin("/__sandbox/requests")).send().await.unwrap().json().await.unwrap();
    assert_eq!(log, h.sandbox.requests());
    assert_eq!(log.len(), 3, "429 on the backend, 500 then 200 on the frontend");
    assert_eq!(h.client.delete(admin("/__sandbox/requests")).send().await.unwrap().status(), 204);
    assert!(h.sandbox.requests().is_empty());
}

#[tokio::test]
async fn instances_are_described_for_demo_scripts() {
    let h = harness().await;
    for instance in h.sandbox.instances() {
        assert_eq!(instance.name, instance.scenario.as_str());
        assert_eq!(instance.secret_key, instance.scenario.secret_key());
        let (prefix, encoded) = instance.publishable_key.split_at(8);
        assert_eq!(prefix, if instance.environment_type == "production" { "pk_live_" } else { "pk_test_" });
        let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(
            decoded,
            format!(
                "{}$",
                instance.frontend_api_url.host_str().unwrap().to_owned()
                    + ":"
                    + &instance.frontend_api_url.port().unwrap().to_string()
            )
        );
        assert_eq!(instance.frontend_api_url.host_str(), Some("127.0.0.1"));
    }
    let line = serde_json::to_string(&h.sandbox.info()).unwrap();
    assert!(!line.contains('\n'));
    assert!(line.contains(&format!(
        "\"frontend_api_url\":\"{}\"",
        origin(&h.sandbox.instance(Scenario::Development).frontend_api_url)
    )));
    assert!(start(SandboxConfig { host: "0.0.0.0".parse().unwrap(), ..SandboxConfig::default() }).await.is_err());
    h.sandbox.shutdown().await;
}

// ---------------------------------------------------------------------------------------------------------
// DNS
// ---------------------------------------------------------------------------------------------------------

async fn dns_query(server: SocketAddr, name: &str, record_type: RecordType) -> Option<Message> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), record_type));
    socket.send_to(&query.to_vec().unwrap(), server).await.unwrap();
    let mut buffer = [0u8; 4096];
    match tokio::time::timeout(Duration::from_millis(400), socket.recv_from(&mut buffer)).await {
        Ok(Ok((length, _))) => {
            let reply = Message::from_vec(&buffer[..length]).unwrap();
            assert_eq!(reply.metadata.id, query.metadata.id);
            Some(reply)
        }
        _ => None,
    }
}

fn cname_of(reply: &Message) -> Option<String> {
    reply.answers.iter().find_map(|record| match &record.data {
        RData::CNAME(target) => Some(target.0.to_ascii().trim_end_matches('.').to_owned()),
        _ => None,
    })
}

#[tokio::test]
async fn dns_answers_each_scenarios_cname_targets() {
    let h = harness().await;
    let dns = h.sandbox.dns_addr();
    let mut failures = Vec::new();
    for instance in h.sandbox.instances() {
        let spec = instance.scenario.spec();
        for domain in &spec.domains {
            for target in domain.cname_targets.iter().flatten() {
                let reply = dns_query(dns, &format!("{}.", target.host), RecordType::CNAME).await.expect("answered");
                let missing =
                    instance.scenario == Scenario::ProductionMissingClkmail && target.host.starts_with("clkmail.");
                if missing {
                    if reply.metadata.response_code != ResponseCode::NXDomain || !reply.answers.is_empty() {
                        failures.push(format!("{}: {} should be NXDOMAIN", instance.name, target.host));
                    }
                    if reply.authorities.is_empty() {
                        failures.push(format!("{}: NXDOMAIN without SOA", target.host));
                    }
                } else if reply.metadata.response_code != ResponseCode::NoError
                    || cname_of(&reply).as_deref() != Some(&target.value)
                {
                    failures.push(format!(
                        "{}: {} -> {:?} {:?}",
                        instance.name,
                        target.host,
                        reply.metadata.response_code,
                        cname_of(&reply)
                    ));
                }
            }
        }
    }
    assert_all(failures);

    // Case and the question type do not matter for an alias.
    let reply = dns_query(dns, "CLKMAIL.Acme-Optional-Mfa.example.", RecordType::A).await.unwrap();
    assert_eq!(cname_of(&reply).as_deref(), Some("mail.2sbxproductionoptionalmfa00.clerk.services"));
    let reply = dns_query(dns, "unknown.example.", RecordType::CNAME).await.unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    let reply = dns_query(dns, "acme-optional-mfa.example.", RecordType::CNAME).await.unwrap();
    assert_eq!((reply.metadata.response_code, reply.answers.len()), (ResponseCode::NoError, 0), "apex: no data");

    let log = h.sandbox.dns_queries();
    assert!(log.iter().any(|q| q.name == "clkmail.acme-missing-clkmail.example" && q.outcome == DnsOutcome::NxDomain));
    assert!(log.iter().any(|q| q.name == "unknown.example" && q.instance.is_none()));
}

#[tokio::test]
async fn dns_faults_drop_fail_or_redirect() {
    let h = harness().await;
    let dns = h.sandbox.dns_addr();
    let name = Scenario::ProductionRequiredMfa.as_str();
    let clkmail = "clkmail.acme-required-mfa.example.";
    let dkim = "clk._domainkey.acme-required-mfa.example.";

    h.sandbox.set_fault(name, Fault::DnsNoAnswer { host: Some("clkmail.acme-required-mfa.example".into()) });
    assert!(dns_query(dns, clkmail, RecordType::CNAME).await.is_none(), "dropped: the client times out");
    assert!(dns_query(dns, dkim, RecordType::CNAME).await.is_some(), "other names still answered");
    h.sandbox.clear_faults();

    h.sandbox.set_fault(name, Fault::DnsServFail { host: None });
    assert_eq!(dns_query(dns, dkim, RecordType::CNAME).await.unwrap().metadata.response_code, ResponseCode::ServFail);
    assert_eq!(
        dns_query(dns, "clkmail.acme-optional-mfa.example.", RecordType::CNAME).await.unwrap().metadata.response_code,
        ResponseCode::NoError,
        "other instances unaffected"
    );
    h.sandbox.clear_faults();

    h.sandbox.set_fault(
        name,
        Fault::DnsWrongTarget { host: dkim.into(), target: "dkim1.someone-else.clerk.services".into() },
    );
    let reply = dns_query(dns, dkim, RecordType::CNAME).await.unwrap();
    assert_eq!(cname_of(&reply).as_deref(), Some("dkim1.someone-else.clerk.services"));
    h.sandbox.clear_faults();
    let reply = dns_query(dns, dkim, RecordType::CNAME).await.unwrap();
    assert_eq!(cname_of(&reply).as_deref(), Some("dkim1.2sbxproductionrequiredmfa00.clerk.services"));

    let outcomes: Vec<DnsOutcome> = h.sandbox.dns_queries().into_iter().map(|q| q.outcome).collect();
    assert_eq!(outcomes[0], DnsOutcome::Dropped);
    assert_eq!(outcomes[2], DnsOutcome::ServFail);
}

/// The worker's own resolver (hickory-resolver) understands the responder.
#[tokio::test]
async fn hickory_resolver_reads_the_answers() {
    use hickory_resolver::Resolver;
    use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;

    let h = harness().await;
    let dns = h.sandbox.dns_addr();
    let mut connection = ConnectionConfig::udp();
    connection.port = dns.port();
    let config =
        ResolverConfig::from_parts(None, vec![], vec![NameServerConfig::new(dns.ip(), true, vec![connection])]);
    let resolver = Resolver::builder_with_config(config, TokioRuntimeProvider::default()).build().unwrap();

    let lookup = resolver.lookup("clk2._domainkey.acme-optional-mfa.example.", RecordType::CNAME).await.unwrap();
    let targets: Vec<String> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::CNAME(name) => Some(name.0.to_ascii()),
            _ => None,
        })
        .collect();
    assert_eq!(targets, ["dkim2.2sbxproductionoptionalmfa00.clerk.services."]);

    let error = resolver.lookup("clkmail.acme-missing-clkmail.example.", RecordType::CNAME).await.unwrap_err();
    assert!(error.is_nx_domain(), "{error:?}");
}

#[test]
fn fault_json_shapes_are_stable() {
    assert_eq!(
        serde_json::to_value(Fault::RateLimited { retry_after_secs: 2, times: 3 }).unwrap(),
        json!({ "type": "rate_limited", "retry_after_secs": 2, "times": 3 })
    );
    assert_eq!(serde_json::to_value(Fault::Revoked).unwrap(), json!({ "type": "revoked" }));
    assert_eq!(
        serde_json::from_value::<Fault>(json!({ "type": "dns_no_answer", "host": null })).unwrap(),
        Fault::DnsNoAnswer { host: None }
    );
    assert_eq!(serde_json::to_value(FaultTarget::FrontendApi).unwrap(), json!("frontend_api"));
    assert_eq!(serde_json::from_value::<FaultTarget>(json!("svix")).unwrap(), FaultTarget::SvixApi);
    assert_eq!(serde_json::to_value(HostKind::BackendApi).unwrap(), json!("backend_api"));
}

/// A fixed backend port fixes the others (Svix `P + 1`, Frontend APIs `P + 2 + i`), and `run_cli` serves
/// until stopped. Ports are chosen free at the time; a collision with another process is retried.
#[tokio::test]
async fn fixed_ports_and_run_cli() {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut attempt = 0;
    let (sandbox, base) = loop {
        attempt += 1;
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port();
        drop(probe);
        if base > u16::MAX - 20 {
            continue;
        }
        let config = SandboxConfig { backend_port: base, ..SandboxConfig::default() };
        match start(config).await {
            Ok(sandbox) => break (sandbox, base),
            Err(error) if attempt < 5 => eprintln!("retrying: {error:#}"),
            Err(error) => panic!("{error:#}"),
        }
    };
    assert_eq!(sandbox.backend_api_url().port(), Some(base));
    assert_eq!(sandbox.svix_api_url().port(), Some(base + 1));
    for (index, instance) in sandbox.instances().iter().enumerate() {
        assert_eq!(instance.frontend_api_url.port(), Some(base + 2 + index as u16));
    }
    sandbox.shutdown().await;

    // The same ports are free again: run_cli binds them and serves the admin surface.
    let config = SandboxConfig { backend_port: base, ..SandboxConfig::default() };
    let cli = tokio::spawn(run_cli(config));
    let url = format!("http://127.0.0.1:{base}/__sandbox/instances");
    let mut info = None;
    for _ in 0..50 {
        if let Ok(response) = client.get(&url).send().await {
            info = Some(response.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let info = info.expect("run_cli serves");
    assert_eq!(info["svix_api_url"], json!(format!("http://127.0.0.1:{}", base + 1)));
    assert!(!cli.is_finished());
    cli.abort();
}
