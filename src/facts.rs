//! What the worker learned about a Clerk instance, as plain data: the input of the checks.
//!
//! [`crate::fetch`] fills these from the allowlisted calls and DNS; the checks in [`crate::checks`] read
//! them without any I/O. A fact that could not be had is kept as [`Fact::Unavailable`] with the reason, so
//! a check that needs it reports `error` instead of passing.

use serde::{Deserialize, Serialize};

/// A fact the worker tried to learn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", content = "value", rename_all = "snake_case")]
pub enum Fact<T> {
    /// Learned.
    Known(T),
    /// Not looked up because it does not apply (a development instance's Frontend API settings).
    NotApplicable(String),
    /// Looked up and failed (address refused, timeout): a check that needs it is an `error`.
    Unavailable(String),
}

impl<T> Fact<T> {
    pub fn known(&self) -> Option<&T> {
        match self {
            Fact::Known(value) => Some(value),
            _ => None,
        }
    }
}

/// Clerk's `environment_type` of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceEnvironment {
    Development,
    Production,
    Staging,
    Other(String),
}

impl InstanceEnvironment {
    pub fn parse(raw: &str) -> Self {
        match raw {
            "development" => Self::Development,
            "production" => Self::Production,
            "staging" => Self::Staging,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Development => "development",
            Self::Production => "production",
            Self::Staging => "staging",
            Self::Other(other) => other,
        }
    }
}

/// From `GET /v1/instance`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceInfo {
    pub id: String,
    pub environment: InstanceEnvironment,
    pub allowed_origins: Vec<String>,
}

/// One CNAME record Clerk asks the customer to set (from `GET /v1/domains`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CnameTarget {
    pub host: String,
    pub value: String,
    pub required: bool,
}

/// The instance's primary domain (from `GET /v1/domains`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrimaryDomain {
    pub name: String,
    pub frontend_api_url: String,
    pub cname_targets: Vec<CnameTarget>,
}

/// The configured sign-in factors (from the Frontend API's `GET /v1/environment`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthSettings {
    /// `user_settings.sign_in.second_factor.required`.
    pub second_factor_required: bool,
    /// Attributes with `used_for_second_factor: true` (e.g. `authenticator_app`, `phone_number`), sorted.
    pub second_factors_available: Vec<String>,
}

/// What DNS says about one of the domain's CNAME targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum DnsObservation {
    /// The CNAME points at the expected target.
    Matches,
    /// The name has CNAME records, none of them the expected target.
    Mismatch { found: Vec<String> },
    /// The name has no CNAME record (NXDOMAIN or no data).
    Missing,
    /// The lookup itself failed (timeout, server failure): nothing can be said.
    LookupFailed { reason: String },
}

/// One CNAME target and what DNS answered for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecordStatus {
    pub host: String,
    pub expected: String,
    pub observation: DnsObservation,
}

/// Everything the checks may know about the connected instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClerkFacts {
    pub instance: InstanceInfo,
    pub user_count: u64,
    pub primary_domain: Option<PrimaryDomain>,
    pub auth_settings: Fact<AuthSettings>,
    pub email_dns: Fact<Vec<DnsRecordStatus>>,
}

impl ClerkFacts {
    pub fn is_production(&self) -> bool {
        self.instance.environment == InstanceEnvironment::Production
    }
}
