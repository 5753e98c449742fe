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
    #[serde(default)]
    pub allowed_origins: Option<Vec<String>>,
}

impl From<InstanceResponse> for InstanceInfo {
    fn from(response: InstanceResponse) -> Self {
        InstanceInfo {
            id: response.id,
            environment: InstanceEnvironment::parse(&response.environment_type),
            allowed_origins: response.allowed_origins.unwrap_or_default(),
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

/// Frontend API `GET /v1/environment` (schema `Client.Environment`), only `user_settings`.
#[derive(Debug, Deserialize)]
pub struct EnvironmentResponse {
    pub user_settings: UserSettingsResponse,
}

#[derive(Debug, Deserialize)]
pub struct UserSettingsResponse {
    pub attributes: BTreeMap<String, AttributeResponse>,
    pub sign_in: SignInResponse,
}

#[derive(Debug, Deserialize)]
pub struct AttributeResponse {
    pub used_for_second_factor: bool,
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
        AuthSettings {
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
