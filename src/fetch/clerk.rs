//! The shapes of the Clerk answers the worker reads (Backend API and Frontend API, version 2026-05-12),
//! reduced to the fields it needs. Unknown fields are ignored; a missing required field is a decode error.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::audit::facts::{AuthSettings, CnameTarget, InstanceEnvironment, InstanceInfo, PrimaryDomain};

/// `GET /v1/instance` (schema `Instance`).
#[derive(Debug, Deserialize)]
pub struct InstanceResponse {
    pub id: String,
    pub environment_type: String,
    /// Absent: `None`; `null` (no origin set): `Some(empty)`.
    #[serde(default, deserialize_with = "present_list")]
    pub allowed_origins: Option<Vec<String>>,
}

/// A list field that may be `null`: present means `Some` (empty for `null`), so only a missing field is `None`.
fn present_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<String>>, D::Error> {
    Ok(Some(Option::<Vec<String>>::deserialize(deserializer)?.unwrap_or_default()))
}

impl From<InstanceResponse> for InstanceInfo {
    fn from(response: InstanceResponse) -> Self {
        InstanceInfo {
            id: response.id,
            environment: InstanceEnvironment::parse(&response.environment_type),
            allowed_origins: response.allowed_origins,
        }
    }
}

/// `GET /v1/users/count` (schema `TotalCount`).
#[derive(Debug, Deserialize)]
pub struct TotalCountResponse {
    pub total_count: u64,
}

/// `GET /v1/domains` (schema `Domains`).
#[derive(Debug, Deserialize)]
pub struct DomainsResponse {
    pub data: Vec<DomainResponse>,
}

#[derive(Debug, Deserialize)]
pub struct DomainResponse {
    pub name: String,
    pub is_satellite: bool,
    pub frontend_api_url: String,
    #[serde(default)]
    pub cname_targets: Option<Vec<CnameTargetResponse>>,
}

#[derive(Debug, Deserialize)]
pub struct CnameTargetResponse {
    pub host: String,
    pub value: String,
    pub required: bool,
}

impl DomainsResponse {
    /// The Frontend API host of every domain, satellites included (see [`crate::audit::facts::url_host`]).
    pub fn frontend_api_hosts(&self) -> Vec<String> {
        self.data.iter().filter_map(|domain| crate::audit::facts::url_host(&domain.frontend_api_url)).collect()
    }

    /// The primary domain: the one that is not a satellite.
    pub fn primary(self) -> Option<PrimaryDomain> {
        self.data.into_iter().find(|domain| !domain.is_satellite).map(|domain| PrimaryDomain {
            name: domain.name,
            frontend_api_url: domain.frontend_api_url,
            cname_targets: domain
                .cname_targets
                .unwrap_or_default()
                .into_iter()
                .map(|t| CnameTarget { host: t.host, value: t.value, required: t.required })
                .collect(),
        })
    }
}

/// Frontend API `GET /v1/environment` (schema `Client.Environment`), only `auth_config.test_mode` and
/// `user_settings`. The fields only some checks read are optional here, so that one missing field makes
/// only those checks `error`.
#[derive(Debug, Deserialize)]
pub struct EnvironmentResponse {
    #[serde(default)]
    pub auth_config: Option<AuthConfigResponse>,
    pub user_settings: UserSettingsResponse,
}

#[derive(Debug, Deserialize)]
pub struct AuthConfigResponse {
    #[serde(default)]
    pub test_mode: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct UserSettingsResponse {
    pub attributes: BTreeMap<String, AttributeResponse>,
    pub sign_in: SignInResponse,
    #[serde(default)]
    pub sign_up: Option<SignUpResponse>,
    #[serde(default)]
    pub password_settings: Option<PasswordSettingsResponse>,
    #[serde(default)]
    pub attack_protection: Option<AttackProtectionResponse>,
}

#[derive(Debug, Deserialize)]
pub struct AttributeResponse {
    pub used_for_second_factor: bool,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub used_for_first_factor: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct SignUpResponse {
    #[serde(default)]
    pub captcha_enabled: Option<bool>,
    #[serde(default)]
    pub mode: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PasswordSettingsResponse {
    #[serde(default)]
    pub disable_hibp: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct AttackProtectionResponse {
    #[serde(default)]
    pub user_lockout: Option<UserLockoutResponse>,
}

#[derive(Debug, Deserialize)]
pub struct UserLockoutResponse {
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct SignInResponse {
    pub second_factor: SecondFactorResponse,
}

#[derive(Debug, Deserialize)]
pub struct SecondFactorResponse {
    pub required: bool,
}

impl From<EnvironmentResponse> for AuthSettings {
    fn from(response: EnvironmentResponse) -> Self {
        let settings = response.user_settings;
        // Password sign-in: the attribute is enabled and used as a first factor. Both must be in the answer.
        let password_sign_in = settings
            .attributes
            .get("password")
            .and_then(|password| Some(password.enabled? && password.used_for_first_factor?));
        AuthSettings {
            test_mode: response.auth_config.and_then(|config| config.test_mode),
            password_sign_in,
            disable_hibp: settings.password_settings.and_then(|p| p.disable_hibp),
            user_lockout_enabled: settings.attack_protection.and_then(|a| a.user_lockout).and_then(|l| l.enabled),
            captcha_enabled: settings.sign_up.as_ref().and_then(|s| s.captcha_enabled),
            sign_up_mode: settings.sign_up.and_then(|s| s.mode),
            second_factor_required: settings.sign_in.second_factor.required,
            // BTreeMap iteration is sorted, so the list is too.
            second_factors_available: settings
                .attributes
                .into_iter()
                .filter(|(_, attribute)| attribute.used_for_second_factor)
                .map(|(name, _)| name)
                .collect(),
        }
    }
}

/// `ClerkErrors`: read only to log the error `code` (never the message, which may echo input).
#[derive(Debug, Deserialize)]
pub struct ClerkErrorsResponse {
    pub errors: Vec<ClerkErrorResponse>,
}

#[derive(Debug, Deserialize)]
pub struct ClerkErrorResponse {
    pub code: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn environment(value: serde_json::Value) -> AuthSettings {
        serde_json::from_value::<EnvironmentResponse>(value).expect("environment parses").into()
    }

    #[test]
    fn allowed_origins_distinguish_null_from_absent() {
        let parse = |value| InstanceInfo::from(serde_json::from_value::<InstanceResponse>(value).unwrap());
        let base = json!({"id": "ins_1", "environment_type": "production"});
        assert_eq!(parse(base.clone()).allowed_origins, None);
        let mut null = base.clone();
        null["allowed_origins"] = serde_json::Value::Null;
        assert_eq!(parse(null).allowed_origins, Some(vec![]));
        let mut listed = base;
        listed["allowed_origins"] = json!(["https://acme.com"]);
        assert_eq!(parse(listed).allowed_origins, Some(vec!["https://acme.com".to_owned()]));
    }

    #[test]
    fn environment_reads_the_protection_settings() {
        let settings = environment(json!({
            "auth_config": {"test_mode": true},
            "user_settings": {
                "attributes": {
                    "password": {"enabled": true, "used_for_first_factor": true, "used_for_second_factor": false},
                    "authenticator_app": {"enabled": true, "used_for_first_factor": false, "used_for_second_factor": true},
                },
                "sign_in": {"second_factor": {"required": false}},
                "sign_up": {"captcha_enabled": false, "mode": "public"},
                "password_settings": {"disable_hibp": true},
                "attack_protection": {"user_lockout": {"enabled": false, "max_attempts": 100, "duration_in_minutes": 60}},
            },
        }));
        assert_eq!(settings.test_mode, Some(true));
        assert_eq!(settings.password_sign_in, Some(true));
        assert_eq!(settings.disable_hibp, Some(true));
        assert_eq!(settings.user_lockout_enabled, Some(false));
        assert_eq!(settings.captcha_enabled, Some(false));
        assert_eq!(settings.sign_up_mode.as_deref(), Some("public"));
        assert_eq!(settings.second_factors_available, vec!["authenticator_app".to_owned()]);
    }

    #[test]
    fn absent_protection_fields_are_none() {
        let settings = environment(json!({
            "user_settings": {
                "attributes": {"password": {"used_for_second_factor": false}},
                "sign_in": {"second_factor": {"required": true}},
            },
        }));
        assert!(settings.second_factor_required);
        assert_eq!(
            (settings.test_mode, settings.password_sign_in, settings.disable_hibp, settings.user_lockout_enabled),
            (None, None, None, None)
        );
        assert_eq!((settings.captcha_enabled, settings.sign_up_mode), (None, None));
    }
}
