//! The sandbox's scenarios: one Clerk instance each, with fixed credentials, users, domain, DNS records,
//! configured factors and webhook (Svix) setup.
//!
//! Everything here is a constant or derived deterministically from constants, so demo scripts and repo
//! fixtures can store secret keys, app ids and webhook secrets. Only the listener ports (and so the
//! `frontend_api_url` and publishable key) depend on where the sandbox was started.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A `whsec_` signing secret held by a live, enabled endpoint of the `webhooks-matching` scenario
/// (the one delivering to `/api/webhooks/clerk`). A repo fixture holding this literal should yield
/// CLERK-WEBHOOK-003. The worker only ever sees it through `GET .../endpoint/{id}/secret`.
pub const WEBHOOK_SECRET_MATCHING: &str = "whsec_U2FuZGJveE1hdGNoaW5nRW5kcG9pbnRLZXkwMQ==";

/// A `whsec_` secret that no endpoint of any scenario holds (a rotated-away secret). A repo fixture
/// holding this literal should yield CLERK-WEBHOOK-004.
pub const WEBHOOK_SECRET_STALE: &str = "whsec_U2FuZGJveFN0YWxlUm90YXRlZFNpZ25pbmdLZXkx";

/// The route the sandbox's "matching" endpoints deliver to, as a Next.js app-router handler would serve it.
pub const WEBHOOK_ROUTE: &str = "/api/webhooks/clerk";

/// Secret keys, one per scenario. `sk_test_` for the development instance, `sk_live_` for production ones.
pub const SECRET_KEY_DEVELOPMENT: &str = "sk_test_SandboxDevelopment0000000000000000000000";
pub const SECRET_KEY_PRODUCTION_OPTIONAL_MFA: &str = "sk_live_SandboxProductionOptionalMfa000000000000";
pub const SECRET_KEY_PRODUCTION_NO_SECOND_FACTOR: &str = "sk_live_SandboxProductionNoSecondFactor000000000";
pub const SECRET_KEY_PRODUCTION_REQUIRED_MFA: &str = "sk_live_SandboxProductionRequiredMfa000000000000";
pub const SECRET_KEY_PRODUCTION_MISSING_CLKMAIL: &str = "sk_live_SandboxProductionMissingClkmail000000000";
pub const SECRET_KEY_WEBHOOKS_NO_SVIX_APP: &str = "sk_live_SandboxWebhooksNoSvixApp0000000000000000";
pub const SECRET_KEY_WEBHOOKS_NO_ENDPOINTS: &str = "sk_live_SandboxWebhooksNoEndpoints00000000000000";
pub const SECRET_KEY_WEBHOOKS_ALL_DISABLED: &str = "sk_live_SandboxWebhooksAllDisabled00000000000000";
pub const SECRET_KEY_WEBHOOKS_OTHER_PATH: &str = "sk_live_SandboxWebhooksOtherPath0000000000000000";
pub const SECRET_KEY_WEBHOOKS_MATCHING: &str = "sk_live_SandboxWebhooksMatching00000000000000000";
pub const SECRET_KEY_WEBHOOKS_FILTER_MISSING_EVENT: &str = "sk_live_SandboxWebhooksFilterMissingEvent0000000";
pub const SECRET_KEY_WEBHOOKS_FILTER_COVERING: &str = "sk_live_SandboxWebhooksFilterCovering00000000000";
pub const SECRET_KEY_WEBHOOKS_PAGINATED: &str = "sk_live_SandboxWebhooksPaginated0000000000000000";
/// Unlike the others, shaped like a real key (no run of zeros), so that the repo extractor, which skips
/// placeholder-looking values, reports it when a repo fixture commits it (CLERK-SECRET-LEAK-001).
pub const SECRET_KEY_PRODUCTION_LAX: &str = "sk_live_SandboxProductionLaxQm7Kd2Rt9Wx4Pz8Lb3Nc";
pub const SECRET_KEY_DEVELOPMENT_NEAR_CAP: &str = "sk_test_SandboxDevelopmentNearCap000000000000000";

/// What a sandbox instance looks like. The serialized name (kebab-case) is also the instance's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Development instance, 7 users, dev domain without CNAME targets, Frontend API wants a dev-browser
    /// token (401 without `__clerk_db_jwt`), no Svix app.
    Development,
    /// Production, 1,247 users, TOTP + backup codes available as second factor, not required; email DNS
    /// verified; one enabled, unfiltered webhook endpoint at `/api/webhooks/clerk`.
    ProductionOptionalMfa,
    /// Production, 386 users, no attribute used for second factor; email DNS verified; no Svix app.
    ProductionNoSecondFactor,
    /// Production, 5,210 users, TOTP + SMS code available and required; email DNS verified; a satellite
    /// domain listed *before* the primary one; one enabled endpoint filtering `user.*` events.
    ProductionRequiredMfa,
    /// Like `production-required-mfa` (without satellite), but DNS has no `clkmail.<domain>` record.
    ProductionMissingClkmail,
    /// `POST /v1/webhooks/svix_url` answers 400 `svix_app_missing`.
    WebhooksNoSvixApp,
    /// A Svix app without endpoints.
    WebhooksNoEndpoints,
    /// Endpoints at the matching path, all disabled.
    WebhooksAllDisabled,
    /// Enabled endpoints, none at `/api/webhooks/clerk` (`/api/webhooks/stripe`, `/webhooks/clerk-old`).
    WebhooksOtherPath,
    /// One enabled, unfiltered endpoint at `/api/webhooks/clerk` whose secret is [`WEBHOOK_SECRET_MATCHING`];
    /// Svix region `eu`.
    WebhooksMatching,
    /// The matching endpoint filters event types to `user.created` only.
    WebhooksFilterMissingEvent,
    /// The matching endpoint filters event types to `user.created`, `user.updated`, `user.deleted`,
    /// `session.created`.
    WebhooksFilterCovering,
    /// 260 endpoints (more than one page even at Svix's maximum `limit` of 250): all disabled or at other
    /// paths, except the last one, enabled and matching.
    WebhooksPaginated,
    /// Production, 640 users, MFA required, no Svix app, but every protection off: test mode on, HIBP
    /// screening disabled, user lockout disabled, public sign-up without CAPTCHA, and `http://localhost:3000`
    /// and `http://acme-lax.example` among the allowed origins.
    ProductionLax,
    /// Development instance with 95 users (within 10% of Clerk's 100-user development cap), no Svix app.
    DevelopmentNearCap,
}

impl Scenario {
    pub const ALL: [Scenario; 15] = [
        Scenario::Development,
        Scenario::ProductionOptionalMfa,
        Scenario::ProductionNoSecondFactor,
        Scenario::ProductionRequiredMfa,
        Scenario::ProductionMissingClkmail,
        Scenario::WebhooksNoSvixApp,
        Scenario::WebhooksNoEndpoints,
        Scenario::WebhooksAllDisabled,
        Scenario::WebhooksOtherPath,
        Scenario::WebhooksMatching,
        Scenario::WebhooksFilterMissingEvent,
        Scenario::WebhooksFilterCovering,
        Scenario::WebhooksPaginated,
        Scenario::ProductionLax,
        Scenario::DevelopmentNearCap,
    ];

    /// The scenario's name, which is also its instance's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Development => "development",
            Scenario::ProductionOptionalMfa => "production-optional-mfa",
            Scenario::ProductionNoSecondFactor => "production-no-second-factor",
            Scenario::ProductionRequiredMfa => "production-required-mfa",
            Scenario::ProductionMissingClkmail => "production-missing-clkmail",
            Scenario::WebhooksNoSvixApp => "webhooks-no-svix-app",
            Scenario::WebhooksNoEndpoints => "webhooks-no-endpoints",
            Scenario::WebhooksAllDisabled => "webhooks-all-disabled",
            Scenario::WebhooksOtherPath => "webhooks-other-path",
            Scenario::WebhooksMatching => "webhooks-matching",
            Scenario::WebhooksFilterMissingEvent => "webhooks-filter-missing-event",
            Scenario::WebhooksFilterCovering => "webhooks-filter-covering",
            Scenario::WebhooksPaginated => "webhooks-paginated",
            Scenario::ProductionLax => "production-lax",
            Scenario::DevelopmentNearCap => "development-near-cap",
        }
    }

    /// The constant secret key of the scenario's instance.
    pub fn secret_key(self) -> &'static str {
        match self {
            Scenario::Development => SECRET_KEY_DEVELOPMENT,
            Scenario::ProductionOptionalMfa => SECRET_KEY_PRODUCTION_OPTIONAL_MFA,
            Scenario::ProductionNoSecondFactor => SECRET_KEY_PRODUCTION_NO_SECOND_FACTOR,
            Scenario::ProductionRequiredMfa => SECRET_KEY_PRODUCTION_REQUIRED_MFA,
            Scenario::ProductionMissingClkmail => SECRET_KEY_PRODUCTION_MISSING_CLKMAIL,
            Scenario::WebhooksNoSvixApp => SECRET_KEY_WEBHOOKS_NO_SVIX_APP,
            Scenario::WebhooksNoEndpoints => SECRET_KEY_WEBHOOKS_NO_ENDPOINTS,
            Scenario::WebhooksAllDisabled => SECRET_KEY_WEBHOOKS_ALL_DISABLED,
            Scenario::WebhooksOtherPath => SECRET_KEY_WEBHOOKS_OTHER_PATH,
            Scenario::WebhooksMatching => SECRET_KEY_WEBHOOKS_MATCHING,
            Scenario::WebhooksFilterMissingEvent => SECRET_KEY_WEBHOOKS_FILTER_MISSING_EVENT,
            Scenario::WebhooksFilterCovering => SECRET_KEY_WEBHOOKS_FILTER_COVERING,
            Scenario::WebhooksPaginated => SECRET_KEY_WEBHOOKS_PAGINATED,
            Scenario::ProductionLax => SECRET_KEY_PRODUCTION_LAX,
            Scenario::DevelopmentNearCap => SECRET_KEY_DEVELOPMENT_NEAR_CAP,
        }
    }

    /// The complete description of the scenario's instance.
    pub(crate) fn spec(self) -> ScenarioSpec {
        spec_of(self)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .into_iter()
            .find(|scenario| scenario.as_str() == s)
            .ok_or_else(|| format!("unknown sandbox scenario `{s}`"))
    }
}

/// Clerk's `environment_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnvironmentType {
    Development,
    Production,
}

impl EnvironmentType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EnvironmentType::Development => "development",
            EnvironmentType::Production => "production",
        }
    }
}

/// A factor that can be configured as a second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecondFactor {
    /// `authenticator_app`, strategy `totp`.
    Totp,
    /// `backup_code`, strategy `backup_code`.
    BackupCode,
    /// `phone_number`, strategy `phone_code`.
    PhoneCode,
}

/// One CNAME record Clerk asks the customer to set, and what the sandbox DNS answers for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CnameRecord {
    pub host: String,
    pub value: String,
    pub required: bool,
    /// Whether the sandbox DNS answers it (false: NXDOMAIN, as if the customer never set it).
    pub in_dns: bool,
}

/// A domain of the instance (`GET /v1/domains`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DomainSpec {
    pub id: String,
    pub name: String,
    pub is_satellite: bool,
    /// `None`: the instance's own Frontend API listener.
    pub frontend_api_url: Option<String>,
    pub accounts_portal_url: Option<String>,
    pub development_origin: String,
    /// `None` serializes as `null` (development instances).
    pub cname_targets: Option<Vec<CnameRecord>>,
}

/// One Svix endpoint of the instance's app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndpointSpec {
    pub id: String,
    pub url: String,
    pub description: String,
    pub disabled: bool,
    pub event_types: Option<Vec<String>>,
    pub secret: String,
    pub created_at: String,
}

/// The attack-protection settings the Frontend API environment reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Protection {
    /// `auth_config.test_mode`.
    pub test_mode: bool,
    /// `user_settings.password_settings.disable_hibp`.
    pub disable_hibp: bool,
    /// `user_settings.attack_protection.user_lockout.enabled`.
    pub user_lockout: bool,
    /// `user_settings.sign_up.captcha_enabled`.
    pub captcha: bool,
}

impl Protection {
    /// Clerk's defaults: development instances run in test mode without CAPTCHA; production ones have both
    /// the other way round; HIBP screening and lockout are on everywhere.
    pub(crate) fn defaults(environment: EnvironmentType) -> Self {
        let development = environment == EnvironmentType::Development;
        Protection { test_mode: development, disable_hibp: false, user_lockout: true, captcha: !development }
    }
}

/// The instance's Svix app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SvixAppSpec {
    pub app_id: String,
    pub region: &'static str,
    pub endpoints: Vec<EndpointSpec>,
}

/// Everything about one scenario's instance.
#[derive(Debug, Clone)]
pub(crate) struct ScenarioSpec {
    pub instance_id: String,
    pub environment: EnvironmentType,
    pub application_name: &'static str,
    pub users_total: u64,
    /// What `GET /v1/users/count?last_active_at_since=...` answers.
    pub users_active: u64,
    pub allowed_origins: Option<Vec<String>>,
    pub workspace_id: Option<&'static str>,
    /// Domains in the order `GET /v1/domains` lists them (the primary is the one with `is_satellite: false`).
    pub domains: Vec<DomainSpec>,
    pub second_factors: Vec<SecondFactor>,
    pub second_factor_required: bool,
    pub svix: Option<SvixAppSpec>,
    pub protection: Protection,
}

impl ScenarioSpec {
    pub(crate) fn primary_domain(&self) -> &DomainSpec {
        self.domains.iter().find(|domain| !domain.is_satellite).expect("every scenario has a primary domain")
    }
}

/// The code shared by the instance id (`ins_`), the Svix app id (`app_`) and endpoint ids (`ep_`):
/// 27 alphanumeric characters, as Clerk and Svix ids have.
fn id_code(scenario: Scenario) -> String {
    let camel: String = scenario
        .as_str()
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect();
    let mut code = format!("2Sbx{camel}");
    code.truncate(27);
    while code.len() < 27 {
        code.push('0');
    }
    code
}

/// `ep_` + 23 characters of the scenario code + a 4-digit index: 30 characters, sorted by index.
fn endpoint_id(scenario: Scenario, index: usize) -> String {
    let code = id_code(scenario);
    format!("ep_{}{:04}", &code[..23], index)
}

/// A deterministic `whsec_` secret for endpoints whose secret no test needs to know.
fn derived_secret(endpoint_id: &str) -> String {
    let digest = Sha256::digest(format!("clerk-audit-sandbox/{endpoint_id}").as_bytes());
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(&digest[..24]))
}

fn created_at(index: usize) -> String {
    let base = chrono::DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z").expect("constant date");
    let at = base + chrono::Duration::minutes(17 * index as i64);
    at.with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn endpoint(
    scenario: Scenario,
    index: usize,
    url: String,
    disabled: bool,
    event_types: Option<&[&str]>,
) -> EndpointSpec {
    let id = endpoint_id(scenario, index);
    EndpointSpec {
        secret: derived_secret(&id),
        description: format!("{} endpoint {}", scenario.as_str(), index),
        id,
        url,
        disabled,
        event_types: event_types.map(|types| types.iter().map(|t| (*t).to_owned()).collect()),
        created_at: created_at(index),
    }
}

/// The domain name of a production scenario: `acme-<scenario without "production-">.example`.
fn domain_name(scenario: Scenario) -> String {
    let slug = scenario.as_str();
    let short = slug.strip_prefix("production-").unwrap_or(slug);
    format!("acme-{short}.example")
}

/// Clerk's five CNAME targets for a production domain.
fn production_cname_targets(scenario: Scenario, domain: &str, missing_clkmail: bool) -> Vec<CnameRecord> {
    let id = id_code(scenario).to_ascii_lowercase();
    let record = |host: String, value: String, in_dns: bool| CnameRecord { host, value, required: true, in_dns };
    vec![
        record(format!("clerk.{domain}"), "frontend-api.clerk.services".into(), true),
        record(format!("accounts.{domain}"), "accounts.clerk.services".into(), true),
        record(format!("clkmail.{domain}"), format!("mail.{id}.clerk.services"), !missing_clkmail),
        record(format!("clk._domainkey.{domain}"), format!("dkim1.{id}.clerk.services"), true),
        record(format!("clk2._domainkey.{domain}"), format!("dkim2.{id}.clerk.services"), true),
    ]
}

fn production_domain(scenario: Scenario, missing_clkmail: bool) -> DomainSpec {
    let name = domain_name(scenario);
    DomainSpec {
        id: format!("dmn_{}", id_code(scenario)),
        cname_targets: Some(production_cname_targets(scenario, &name, missing_clkmail)),
        accounts_portal_url: Some(format!("https://accounts.{name}")),
        frontend_api_url: None,
        is_satellite: false,
        development_origin: String::new(),
        name,
    }
}

/// The common setup of the webhook scenarios: production, required MFA, verified DNS, so that only the
/// webhook checks differ between them.
fn webhook_scenario(scenario: Scenario, users: u64, svix: Option<SvixAppSpec>) -> ScenarioSpec {
    let domain = production_domain(scenario, false);
    ScenarioSpec {
        instance_id: format!("ins_{}", id_code(scenario)),
        environment: EnvironmentType::Production,
        application_name: "Acme Webhooks",
        users_total: users,
        users_active: users / 2,
        allowed_origins: Some(vec![format!("https://{}", domain.name)]),
        workspace_id: Some("org_2SbxAcmeWorkspace00000000000"),
        domains: vec![domain],
        second_factors: vec![SecondFactor::Totp, SecondFactor::BackupCode],
        second_factor_required: true,
        svix,
        protection: Protection::defaults(EnvironmentType::Production),
    }
}

fn app(scenario: Scenario, region: &'static str, endpoints: Vec<EndpointSpec>) -> Option<SvixAppSpec> {
    Some(SvixAppSpec { app_id: format!("app_{}", id_code(scenario)), region, endpoints })
}

/// The userinfo and query string of one `webhooks-other-path` endpoint URL: credentials of the receiver that
/// must never appear in evidence, tables or events.
pub const ENDPOINT_USERINFO: &str = "hook-user:hook-pa55w0rd";
pub const ENDPOINT_QUERY: &str = "token=qs-t0ken-of-the-receiver";

fn hook_url(scenario: Scenario, path: &str) -> String {
    format!("https://{}{}", domain_name(scenario), path)
}

fn spec_of(scenario: Scenario) -> ScenarioSpec {
    use Scenario::*;
    match scenario {
        Development => ScenarioSpec {
            instance_id: format!("ins_{}", id_code(scenario)),
            environment: EnvironmentType::Development,
            application_name: "Acme (dev)",
            users_total: 7,
            users_active: 3,
            allowed_origins: None,
            workspace_id: None,
            domains: vec![DomainSpec {
                id: format!("dmn_{}", id_code(scenario)),
                name: "sandbox-dev-12.clerk.accounts.dev".into(),
                is_satellite: false,
                frontend_api_url: None,
                accounts_portal_url: Some("https://sandbox-dev-12.accounts.dev".into()),
                development_origin: "http://localhost:3000".into(),
                cname_targets: None,
            }],
            second_factors: vec![SecondFactor::Totp],
            second_factor_required: false,
            svix: None,
            protection: Protection::defaults(EnvironmentType::Development),
        },
        ProductionOptionalMfa => {
            let domain = production_domain(scenario, false);
            ScenarioSpec {
                instance_id: format!("ins_{}", id_code(scenario)),
                environment: EnvironmentType::Production,
                application_name: "Acme",
                users_total: 1247,
                users_active: 912,
                allowed_origins: Some(vec![format!("https://{}", domain.name), format!("https://www.{}", domain.name)]),
                workspace_id: Some("org_2SbxAcmeWorkspace00000000000"),
                domains: vec![domain],
                second_factors: vec![SecondFactor::Totp, SecondFactor::BackupCode],
                second_factor_required: false,
                svix: app(scenario, "us", vec![endpoint(scenario, 1, hook_url(scenario, WEBHOOK_ROUTE), false, None)]),
                protection: Protection::defaults(EnvironmentType::Production),
            }
        }
        ProductionNoSecondFactor => {
            let domain = production_domain(scenario, false);
            ScenarioSpec {
                instance_id: format!("ins_{}", id_code(scenario)),
                environment: EnvironmentType::Production,
                application_name: "Acme Shop",
                users_total: 386,
                users_active: 120,
                allowed_origins: Some(vec![format!("https://{}", domain.name)]),
                workspace_id: None,
                domains: vec![domain],
                second_factors: vec![],
                second_factor_required: false,
                svix: None,
                protection: Protection::defaults(EnvironmentType::Production),
            }
        }
        ProductionRequiredMfa => {
            let primary = production_domain(scenario, false);
            let satellite_name = "acme-required-mfa-eu.example".to_owned();
            let satellite = DomainSpec {
                id: format!("dmn_{}", &id_code(scenario)[..26]) + "S",
                cname_targets: Some(vec![CnameRecord {
                    host: format!("clerk.{satellite_name}"),
                    value: "frontend-api.clerk.services".into(),
                    required: true,
                    in_dns: true,
                }]),
                frontend_api_url: Some(format!("https://clerk.{satellite_name}")),
                accounts_portal_url: None,
                is_satellite: true,
                development_origin: String::new(),
                name: satellite_name,
            };
            ScenarioSpec {
                instance_id: format!("ins_{}", id_code(scenario)),
                environment: EnvironmentType::Production,
                application_name: "Acme Bank",
                users_total: 5210,
                users_active: 4388,
                allowed_origins: Some(vec![format!("https://{}", primary.name)]),
                workspace_id: Some("org_2SbxAcmeWorkspace00000000000"),
                domains: vec![satellite, primary],
                second_factors: vec![SecondFactor::Totp, SecondFactor::PhoneCode],
                second_factor_required: true,
                svix: app(
                    scenario,
                    "us",
                    vec![endpoint(
                        scenario,
                        1,
                        hook_url(scenario, WEBHOOK_ROUTE),
                        false,
                        Some(&["user.created", "user.updated", "user.deleted"]),
                    )],
                ),
                protection: Protection::defaults(EnvironmentType::Production),
            }
        }
        ProductionMissingClkmail => {
            let domain = production_domain(scenario, true);
            ScenarioSpec {
                instance_id: format!("ins_{}", id_code(scenario)),
                environment: EnvironmentType::Production,
                application_name: "Acme Mail",
                users_total: 743,
                users_active: 401,
                allowed_origins: Some(vec![format!("https://{}", domain.name)]),
                workspace_id: None,
                domains: vec![domain],
                second_factors: vec![SecondFactor::Totp, SecondFactor::BackupCode],
                second_factor_required: true,
                svix: app(scenario, "us", vec![endpoint(scenario, 1, hook_url(scenario, WEBHOOK_ROUTE), false, None)]),
                protection: Protection::defaults(EnvironmentType::Production),
            }
        }
        WebhooksNoSvixApp => webhook_scenario(scenario, 214, None),
        WebhooksNoEndpoints => webhook_scenario(scenario, 215, app(scenario, "us", vec![])),
        WebhooksAllDisabled => webhook_scenario(
            scenario,
            216,
            app(
                scenario,
                "us",
                vec![
                    endpoint(scenario, 1, hook_url(scenario, WEBHOOK_ROUTE), true, None),
                    endpoint(
                        scenario,
                        2,
                        format!("https://staging.{}{}", domain_name(scenario), WEBHOOK_ROUTE),
                        true,
                        None,
                    ),
                ],
            ),
        ),
        WebhooksOtherPath => webhook_scenario(
            scenario,
            217,
            app(
                scenario,
                "us",
                vec![
                    // Receivers put credentials in userinfo and the query string; the worker must not show them.
                    endpoint(
                        scenario,
                        1,
                        format!(
                            "https://{ENDPOINT_USERINFO}@{}/api/webhooks/stripe?{ENDPOINT_QUERY}",
                            domain_name(scenario)
                        ),
                        false,
                        None,
                    ),
                    endpoint(scenario, 2, hook_url(scenario, "/webhooks/clerk-old"), false, Some(&["user.created"])),
                    // Same path as the handler, but disabled: must not count.
                    endpoint(scenario, 3, hook_url(scenario, WEBHOOK_ROUTE), true, None),
                ],
            ),
        ),
        WebhooksMatching => {
            let mut matching = endpoint(scenario, 1, hook_url(scenario, WEBHOOK_ROUTE), false, None);
            matching.secret = WEBHOOK_SECRET_MATCHING.to_owned();
            webhook_scenario(scenario, 218, app(scenario, "eu", vec![matching]))
        }
        WebhooksFilterMissingEvent => webhook_scenario(
            scenario,
            219,
            app(
                scenario,
                "us",
                vec![endpoint(scenario, 1, hook_url(scenario, WEBHOOK_ROUTE), false, Some(&["user.created"]))],
            ),
        ),
        WebhooksFilterCovering => webhook_scenario(
            scenario,
            220,
            app(
                scenario,
                "us",
                vec![endpoint(
                    scenario,
                    1,
                    hook_url(scenario, WEBHOOK_ROUTE),
                    false,
                    Some(&["user.created", "user.updated", "user.deleted", "session.created"]),
                )],
            ),
        ),
        WebhooksPaginated => {
            let count = 260;
            let endpoints = (1..=count)
                .map(|index| {
                    if index == count {
                        endpoint(scenario, index, hook_url(scenario, WEBHOOK_ROUTE), false, None)
                    } else if index % 2 == 0 {
                        endpoint(scenario, index, hook_url(scenario, WEBHOOK_ROUTE), true, None)
                    } else {
                        endpoint(
                            scenario,
                            index,
                            hook_url(scenario, &format!("/api/tenants/t{index}/hooks")),
                            false,
                            None,
                        )
                    }
                })
                .collect();
            webhook_scenario(scenario, 221, app(scenario, "us", endpoints))
        }
        ProductionLax => {
            let domain = production_domain(scenario, false);
            ScenarioSpec {
                instance_id: format!("ins_{}", id_code(scenario)),
                environment: EnvironmentType::Production,
                application_name: "Acme Lax",
                users_total: 640,
                users_active: 300,
                allowed_origins: Some(vec![
                    format!("https://{}", domain.name),
                    "http://localhost:3000".into(),
                    format!("http://{}", domain.name),
                ]),
                workspace_id: None,
                domains: vec![domain],
                second_factors: vec![SecondFactor::Totp, SecondFactor::BackupCode],
                second_factor_required: true,
                svix: None,
                protection: Protection { test_mode: true, disable_hibp: true, user_lockout: false, captcha: false },
            }
        }
        DevelopmentNearCap => ScenarioSpec {
            instance_id: format!("ins_{}", id_code(scenario)),
            environment: EnvironmentType::Development,
            application_name: "Acme (dev, busy)",
            users_total: 95,
            users_active: 80,
            allowed_origins: None,
            workspace_id: None,
            domains: vec![DomainSpec {
                id: format!("dmn_{}", id_code(scenario)),
                name: "sandbox-dev-95.clerk.accounts.dev".into(),
                is_satellite: false,
                frontend_api_url: None,
                accounts_portal_url: Some("https://sandbox-dev-95.accounts.dev".into()),
                development_origin: "http://localhost:3000".into(),
                cname_targets: None,
            }],
            second_factors: vec![SecondFactor::Totp],
            second_factor_required: false,
            svix: None,
            protection: Protection::defaults(EnvironmentType::Development),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_round_trip_and_keys_match_environment() {
        for scenario in Scenario::ALL {
            assert_eq!(scenario.as_str().parse::<Scenario>().unwrap(), scenario);
            let json = serde_json::to_string(&scenario).unwrap();
            assert_eq!(json, format!("\"{}\"", scenario.as_str()));
            let spec = scenario.spec();
            let prefix = match spec.environment {
                EnvironmentType::Development => "sk_test_",
                EnvironmentType::Production => "sk_live_",
            };
            assert!(scenario.secret_key().starts_with(prefix), "{scenario}");
            assert_eq!(scenario.secret_key().len(), 48, "{scenario}");
            assert_eq!(spec.instance_id.len(), 31, "{scenario}");
        }
    }

    #[test]
    fn ids_are_unique_and_well_formed() {
        let mut keys = std::collections::HashSet::new();
        let mut endpoint_ids = std::collections::HashSet::new();
        for scenario in Scenario::ALL {
            assert!(keys.insert(scenario.secret_key()));
            let spec = scenario.spec();
            if let Some(app) = spec.svix {
                assert_eq!(app.app_id.len(), 31);
                let mut previous = String::new();
                for endpoint in app.endpoints {
                    assert_eq!(endpoint.id.len(), 30, "{}", endpoint.id);
                    assert!(endpoint.id[3..].chars().all(|c| c.is_ascii_alphanumeric()));
                    assert!(endpoint.id > previous, "endpoint ids sort in creation order");
                    previous = endpoint.id.clone();
                    assert!(endpoint_ids.insert(endpoint.id));
                    assert!(endpoint.secret.starts_with("whsec_"));
                    assert_ne!(endpoint.secret, WEBHOOK_SECRET_STALE);
                }
            }
        }
    }
}
