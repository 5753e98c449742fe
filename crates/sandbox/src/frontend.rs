//! The Frontend API stand-in of one instance (`https://clerk.<domain>`): `GET /v1/environment`, no auth.
//!
//! A development instance's Frontend API answers 401 `dev_browser_unauthenticated` unless a dev-browser
//! token is presented (`__clerk_db_jwt` query parameter), like the real one.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::respond::{self, Answer};
use super::scenario::{EnvironmentType, ScenarioSpec, SecondFactor};
use super::state::{HostKind, Rejection, RequestHead, Shared};

#[derive(Clone)]
struct FrontendState {
    shared: Arc<Shared>,
    instance: usize,
}

pub(crate) fn router(shared: Arc<Shared>, instance: usize) -> Router {
    Router::new().fallback(handle).with_state(FrontendState { shared, instance })
}

async fn handle(State(state): State<FrontendState>, head: RequestHead) -> Response {
    let FrontendState { shared, instance } = state;
    let seq = shared.next_seq();
    let RequestHead { method, uri, headers, .. } = &head;
    let (credential, _) = shared.classify_credential(headers);
    let plan = shared.plan_faults(instance, HostKind::FrontendApi, uri.path());
    let answer = match plan.rejection {
        Some(Rejection::Revoked) => respond::clerk_unauthenticated(),
        Some(Rejection::RateLimited { retry_after_secs }) => respond::clerk_rate_limited(retry_after_secs),
        Some(Rejection::ServerError) => respond::clerk_server_error(),
        Some(Rejection::MalformedBody) => respond::malformed_echo(headers),
        None => match (method.as_str(), uri.path()) {
            ("GET", "/v1/environment") => environment(&shared.instances[instance].spec, uri.query()),
            _ => respond::clerk_not_found(),
        },
    };
    shared.gate.pass(instance, || format!("{method} {}", uri.path())).await;
    shared.record(seq, HostKind::FrontendApi, &head, Some(instance), answer.status.as_u16(), credential);
    if !plan.latency.is_zero() {
        tokio::time::sleep(plan.latency).await;
    }
    answer.into_response(plan.slow_body)
}

fn environment(spec: &ScenarioSpec, query: Option<&str>) -> Answer {
    if spec.environment == EnvironmentType::Development {
        let has_dev_browser = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .any(|(name, value)| name == "__clerk_db_jwt" && !value.is_empty());
        if !has_dev_browser {
            return respond::clerk_answer(
                StatusCode::UNAUTHORIZED,
                "dev_browser_unauthenticated",
                "Browser unauthenticated",
                "Unable to authenticate this browser for your development instance. Check your Clerk cookies and \
                 try again. If the issue persists reach out to support@clerk.com.",
            );
        }
    }
    Answer::json(StatusCode::OK, environment_json(spec))
}

/// One `UserSettings.Attribute`.
fn attribute(
    enabled: bool,
    required: bool,
    first_factors: &[&str],
    second_factors: &[&str],
    verifications: &[&str],
) -> Value {
    json!({
        "enabled": enabled,
        "required": required,
        "used_for_first_factor": !first_factors.is_empty(),
        "first_factors": first_factors,
        "used_for_second_factor": !second_factors.is_empty(),
        "second_factors": second_factors,
        "verifications": verifications,
        "verify_at_sign_up": !verifications.is_empty(),
        "immutable": false,
    })
}

/// The union of two JSON objects (`json!` cannot build very large objects in one go).
fn merge(mut first: Value, second: Value) -> Value {
    if let (Some(first), Value::Object(second)) = (first.as_object_mut(), second) {
        first.extend(second);
    }
    first
}

fn off() -> Value {
    attribute(false, false, &[], &[], &[])
}

fn social(strategy: &str, name: &str) -> Value {
    json!({
        "enabled": true,
        "required": false,
        "authenticatable": true,
        "block_email_subaddresses": true,
        "strategy": strategy,
        "not_selectable": false,
        "deprecated": false,
        "name": name,
        "logo_url": format!("https://img.clerk.com/static/{}.png", strategy.trim_start_matches("oauth_")),
    })
}

/// The `Client.Environment` of an instance: complete, so that it validates against the reference schema
/// (which has `additionalProperties: false` and many required fields at every level).
pub(crate) fn environment_json(spec: &ScenarioSpec) -> Value {
    let has = |factor: SecondFactor| spec.second_factors.contains(&factor);
    let development = spec.environment == EnvironmentType::Development;
    let domain = &spec.primary_domain().name;
    let accounts =
        spec.primary_domain().accounts_portal_url.clone().unwrap_or_else(|| format!("https://accounts.{domain}"));
    let home = if development { "http://localhost:3000".to_owned() } else { format!("https://{domain}") };

    let authenticator_app = if has(SecondFactor::Totp) { attribute(true, false, &[], &["totp"], &[]) } else { off() };
    let backup_code =
        if has(SecondFactor::BackupCode) { attribute(true, false, &[], &["backup_code"], &[]) } else { off() };
    let phone_number = if has(SecondFactor::PhoneCode) {
        attribute(true, false, &[], &["phone_code"], &["phone_code"])
    } else {
        off()
    };
    let mut second_factors: Vec<&str> = Vec::new();
    if has(SecondFactor::Totp) {
        second_factors.push("totp");
    }
    if has(SecondFactor::PhoneCode) {
        second_factors.push("phone_code");
    }
    if has(SecondFactor::BackupCode) {
        second_factors.push("backup_code");
    }
    let id_suffix = &spec.instance_id[4..];

    let auth_config = json!({
            "object": "auth_config",
            "id": format!("aac_{id_suffix}"),
            "first_name": "on",
            "last_name": "on",
            "email_address": "required",
            "phone_number": if has(SecondFactor::PhoneCode) { "on" } else { "off" },
            "username": "off",
            "password": "required",
            "identification_requirements": [["email_address", "oauth_google"]],
            "identification_strategies": ["email_address", "oauth_google"],
            "first_factors": ["email_code", "oauth_google", "password", "reset_password_email_code"],
            "second_factors": second_factors,
            "email_address_verification_strategies": ["email_code"],
            "single_session_mode": true,
            "enhanced_email_deliverability": false,
            "test_mode": spec.protection.test_mode,
            "cookieless_dev": false,
            "url_based_session_syncing": development,
            "claimed_at": null,
            "reverification": true,
            "native_settings": {
                "object": "native_settings",
                "api_enabled": false,
                "trusted_device_sign_in_enabled": false,
                "trusted_device_enrollment_prompt_after_sign_in_enabled": false,
                "trusted_device_enrollment_prompt_after_sign_up_enabled": false,
            },
    });
    let display_config = json!({
            "object": "display_config",
            "id": format!("display_config_{id_suffix}"),
            "instance_environment_type": spec.environment.as_str(),
            "application_name": spec.application_name,
            "theme": {
                "buttons": { "font_color": "#ffffff", "font_family": "\"Inter\", sans-serif", "font_weight": "600" },
                "general": { "color": "#6c47ff", "padding": "1em", "box_shadow": "0 2px 8px rgba(0, 0, 0, 0.2)" },
                "accounts": { "background_color": "#ffffff" },
            },
            "preferred_sign_in_strategy": "password",
            "logo_image_url": "https://img.clerk.com/sandbox/logo.png",
            "favicon_image_url": null,
            "home_url": home,
            "sign_in_url": format!("{accounts}/sign-in"),
            "sign_up_url": format!("{accounts}/sign-up"),
            "user_profile_url": format!("{accounts}/user"),
            "waitlist_url": format!("{accounts}/waitlist"),
            "oauth_consent_url": format!("{accounts}/oauth-consent"),
            "after_sign_in_url": home,
            "after_sign_up_url": home,
            "after_sign_out_one_url": format!("{accounts}/sign-in/choose"),
            "after_sign_out_all_url": format!("{accounts}/sign-in"),
            "after_switch_session_url": home,
            "after_join_waitlist_url": home,
            "organization_profile_url": format!("{accounts}/organization"),
    });
    let display_config_rest = json!({
            "create_organization_url": format!("{accounts}/create-organization"),
            "after_leave_organization_url": home,
            "after_create_organization_url": home,
            "logo_link_url": home,
            "support_email": if development { Value::Null } else { json!(format!("support@{domain}")) },
            "branded": true,
            "experimental_force_oauth_first": false,
            "clerk_js_version": "5",
            "show_devmode_warning": development,
            "google_one_tap_client_id": null,
            "help_url": null,
            "privacy_policy_url": if development { Value::Null } else { json!(format!("https://{domain}/privacy")) },
            "terms_url": if development { Value::Null } else { json!(format!("https://{domain}/terms")) },
            "logo_url": null,
            "favicon_url": null,
            "logo_image": null,
            "favicon_image": null,
            "captcha_public_key": if development { Value::Null } else { json!("0x4AAAAAAAsandboxTurnstileKey") },
            "captcha_widget_type": if development { Value::Null } else { json!("smart") },
            "captcha_public_key_invisible": null,
            "captcha_provider": if development { Value::Null } else { json!("turnstile") },
            "captcha_oauth_bypass": ["oauth_google"],
            "captcha_heartbeat": false,
    });
    let user_settings = json!({
            "attributes": {
                "email_address": attribute(true, true, &["email_code"], &[], &["email_code"]),
                "phone_number": phone_number,
                "username": off(),
                "web3_wallet": off(),
                "first_name": attribute(true, false, &[], &[], &[]),
                "last_name": attribute(true, false, &[], &[], &[]),
                "password": attribute(true, true, &["password"], &[], &[]),
                "authenticator_app": authenticator_app,
                "ticket": attribute(true, false, &["ticket"], &[], &[]),
                "backup_code": backup_code,
                "passkey": off(),
            },
            "social": { "oauth_google": social("oauth_google", "Google") },
            "saml": { "enabled": false },
            "enterprise_sso": { "enabled": false, "self_serve_sso": false },
            "sign_in": { "second_factor": { "required": spec.second_factor_required } },
            "sign_up": {
                "captcha_enabled": spec.protection.captcha,
                "captcha_widget_type": "smart",
                "custom_action_required": false,
                "progressive": true,
                "mode": "public",
                "legal_consent_enabled": false,
            },
            "restrictions": {
                "allowlist": { "enabled": false },
                "blocklist": { "enabled": false },
                "allowlist_blocklist_disabled_on_sign_in": { "enabled": false },
                "block_email_subaddresses": { "enabled": false },
                "block_disposable_email_domains": { "enabled": !development },
            },
            "password_settings": {
                "disable_hibp": spec.protection.disable_hibp,
                "disable_password_reverification": false,
                "min_length": 8,
                "max_length": 72,
                "require_special_char": false,
                "require_numbers": false,
                "require_uppercase": false,
                "require_lowercase": false,
                "show_zxcvbn": false,
                "min_zxcvbn_strength": 0,
                "enforce_hibp_on_sign_in": false,
                "allowed_special_characters": "!\"#$%&'()*+,-./:;<=>?@[]^_`{|}~",
            },
            "username_settings": {
                "min_length": 4,
                "max_length": 64,
                "allow_extended_special_characters": false,
                "allow_numeric_usernames": true,
            },
            "actions": { "delete_self": true, "create_organization": true, "create_organizations_limit": null },
            "attack_protection": {
                "user_lockout": { "enabled": spec.protection.user_lockout, "max_attempts": 100, "duration_in_minutes": 60 },
                "pii": { "enabled": true },
                "email_link": { "require_same_client": true },
                "enumeration_protection": { "enabled": false },
            },
            "passkey_settings": { "allow_autofill": true, "show_sign_in_button": true, "satisfies_second_factor": true },
    });
    let display_config = merge(display_config, display_config_rest);
    json!({
        "auth_config": auth_config,
        "display_config": display_config,
        "user_settings": user_settings,
        "organization_settings": {
            "enabled": false,
            "max_allowed_memberships": 5,
            "actions": { "admin_delete": true },
            "domains": { "enabled": false, "enrollment_modes": [], "default_role": "org:member" },
            "slug": { "disabled": false },
            "creator_role": "org:admin",
        },
        "commerce_settings": {
            "billing": {
                "stripe_publishable_key": null,
                "free_trial_requires_payment_method": true,
                "organization": { "enabled": false, "has_paid_plans": false },
                "user": { "enabled": false, "has_paid_plans": false },
            },
        },
        "api_keys_settings": { "enabled": false, "user_api_keys_enabled": false, "orgs_api_keys_enabled": false },
        "fraud_settings": { "object": "fraud_settings", "native": { "device_attestation_mode": "disabled" } },
        "protect_config": { "loaders": [] },
        "maintenance_mode": false,
        "client_debug_mode": false,
        "partitioned_cookies": false,
    })
}
