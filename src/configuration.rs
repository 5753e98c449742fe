//! Configuration: `config/default.toml`, then `config/<environment>.toml`, then environment variables
//! `CLERK_AUDIT_<SECTION>__<KEY>`. Parsed into typed [`Settings`] and validated at start, so a bad value
//! fails with a message naming the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use secrecy::SecretString;
use serde::Deserialize;

use crate::audit::checks::CheckSettings;

/// The environment variable that selects the per-environment file (`local` by default).
pub const ENVIRONMENT_VAR: &str = "CLERK_AUDIT_ENVIRONMENT";
/// The environment variable naming the configuration folder (`./config` by default).
pub const CONFIG_DIR_VAR: &str = "CLERK_AUDIT_CONFIG_DIR";
/// Prefix of the per-key overrides.
pub const ENV_PREFIX: &str = "CLERK_AUDIT";

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub worker: WorkerSettings,
    pub amqp: AmqpSettings,
    pub database: DatabaseSettings,
    pub kms: KmsSettings,
    pub clerk: ClerkSettings,
    pub svix: SvixSettings,
    pub http: HttpSettings,
    pub dns: DnsSettings,
    pub checks: CheckSettings,
    pub ops: OpsSettings,
    pub telemetry: TelemetrySettings,
    pub events: EventSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    pub concurrency: u16,
    pub max_job_bytes: usize,
    pub max_attempts: u32,
    pub retry_delay_secs: u64,
    /// How long past its due time a delayed job may stay away before it is sent again.
    pub retry_sweep_grace_secs: u64,
    pub drain_grace_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSettings {
    /// Holds credentials: never printed.
    pub url: SecretString,
    pub jobs_exchange: String,
    pub jobs_routing_key: String,
    pub jobs_queue: String,
    pub retry_queue: String,
    pub dead_letter_exchange: String,
    pub dead_letter_queue: String,
    pub delivery_limit: u32,
    pub findings_exchange: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Holds credentials: never printed.
    pub url: SecretString,
    pub pool_size: usize,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsSettings {
    pub endpoint_url: String,
    pub region: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClerkSettings {
    pub backend_api_url: url::Url,
    pub api_version: String,
    pub rate_limit_per_10s: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SvixSettings {
    pub api_url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub allow_loopback: bool,
    /// Plain-HTTP endpoints speak HTTP/2 from the first byte (h2c, "prior knowledge"), as the sandbox does.
    /// Tests and benchmarks only (requires `allow_loopback`): production's HTTPS endpoints negotiate HTTP/2
    /// by ALPN, and this switch would also force it on hosts that offer only HTTP/1.1.
    pub cleartext_http2: bool,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub max_body_bytes: usize,
    pub max_attempts: u32,
    pub max_retry_after_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSettings {
    pub nameserver: String,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsSettings {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    /// OTLP/HTTP collector address for traces; empty: traces are not exported.
    pub otlp_endpoint: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSettings {
    pub source: String,
    /// Hours a published outbox row is kept before it is deleted; 0 keeps every row.
    pub outbox_retention_hours: u32,
}

impl EventSettings {
    /// How long a published outbox row is kept; `None` keeps rows forever.
    pub fn outbox_retention(&self) -> Option<Duration> {
        (self.outbox_retention_hours > 0).then(|| Duration::from_secs(u64::from(self.outbox_retention_hours) * 3600))
    }
}

/// The base configuration, built into the binary so `clerk-audit audit` runs without a configuration folder.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// What the one-shot `clerk-audit audit` needs: the fetch and the checks, no broker, database or KMS.
/// Read from the built-in defaults and the same `CLERK_AUDIT_<SECTION>__<KEY>` environment overrides as
/// the worker (e.g. `CLERK_AUDIT_CLERK__BACKEND_API_URL`, `CLERK_AUDIT_HTTP__ALLOW_LOOPBACK=true`); the
/// other sections are ignored, so their secrets are never required.
#[derive(Debug, Clone, Deserialize)]
pub struct AuditSettings {
    pub clerk: ClerkSettings,
    pub svix: SvixSettings,
    pub http: HttpSettings,
    pub dns: DnsSettings,
    pub checks: CheckSettings,
}

impl AuditSettings {
    pub fn load() -> Result<Self, ConfigError> {
        let settings: AuditSettings = config::Config::builder()
            .add_source(config::File::from_str(DEFAULT_TOML, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX).prefix_separator("_").separator("__").try_parsing(true),
            )
            .build()?
            .try_deserialize()?;
        validate_fetch(&settings.clerk, &settings.svix, &settings.http, &settings.dns)?;
        Ok(settings)
    }
}

/// The checks of the fetch settings, shared by the worker's and the one-shot's configuration.
fn validate_fetch(
    clerk: &ClerkSettings,
    svix: &SvixSettings,
    http: &HttpSettings,
    dns: &DnsSettings,
) -> Result<(), ConfigError> {
    if http.max_attempts == 0 {
        return Err(invalid("http.max_attempts", "must be at least 1"));
    }
    if http.cleartext_http2 && !http.allow_loopback {
        return Err(invalid("http.cleartext_http2", "only with http.allow_loopback (tests and benchmarks)"));
    }
    if clerk.rate_limit_per_10s == 0 {
        return Err(invalid("clerk.rate_limit_per_10s", "must be at least 1"));
    }
    let backend = &clerk.backend_api_url;
    if backend.scheme() != "https" && !(http.allow_loopback && backend.scheme() == "http") {
        return Err(invalid(
            "clerk.backend_api_url",
            "must be https (plain http only with http.allow_loopback for tests)",
        ));
    }
    if !svix.api_url.is_empty() {
        let url = url::Url::parse(&svix.api_url).map_err(|e| invalid("svix.api_url", e.to_string()))?;
        if url.scheme() != "https" && !(http.allow_loopback && url.scheme() == "http") {
            return Err(invalid("svix.api_url", "must be https (plain http only with http.allow_loopback for tests)"));
        }
    }
    if !dns.nameserver.is_empty() {
        dns.nameserver
            .parse::<SocketAddr>()
            .map_err(|e| invalid("dns.nameserver", format!("expected ip:port: {e}")))?;
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration key {key} (env {env}): {problem}")]
    Invalid { key: &'static str, env: String, problem: String },
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    let env = format!("{ENV_PREFIX}_{}", key.to_uppercase().replacen('.', "__", 1));
    ConfigError::Invalid { key, env, problem: problem.into() }
}

impl Settings {
    /// Reads the configuration the way the binary does: folder from `CLERK_AUDIT_CONFIG_DIR` (else
    /// `./config`), environment from `CLERK_AUDIT_ENVIRONMENT` (else `local`), then env overrides.
    pub fn load() -> Result<Self, ConfigError> {
        let dir = std::env::var_os(CONFIG_DIR_VAR).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("config"));
        let environment = std::env::var(ENVIRONMENT_VAR).unwrap_or_else(|_| "local".to_owned());
        Self::load_from(&dir, &environment)
    }

    pub fn load_from(dir: &Path, environment: &str) -> Result<Self, ConfigError> {
        let builder = config::Config::builder()
            .add_source(config::File::from(dir.join("default.toml")).required(true))
            .add_source(config::File::from(dir.join(format!("{environment}.toml"))).required(false))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX).prefix_separator("_").separator("__").try_parsing(true),
            );
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        settings.validate_for_environment(environment)?;
        Ok(settings)
    }

    /// Rules tied to the environment name: production never allows loopback (the test-only allowance
    /// would accept plain http and 127.0.0.0/8, so a hostile DNS answer could reach the worker's host).
    pub fn validate_for_environment(&self, environment: &str) -> Result<(), ConfigError> {
        if environment.eq_ignore_ascii_case("production") && self.http.allow_loopback {
            return Err(invalid("http.allow_loopback", "must be false in the production environment"));
        }
        Ok(())
    }

    /// Checks what types alone cannot say.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.worker.concurrency == 0 {
            return Err(invalid("worker.concurrency", "must be at least 1"));
        }
        if self.worker.max_attempts == 0 {
            return Err(invalid("worker.max_attempts", "must be at least 1"));
        }
        if self.worker.retry_sweep_grace_secs == 0 {
            return Err(invalid("worker.retry_sweep_grace_secs", "must be at least 1"));
        }
        if self.worker.max_job_bytes == 0 {
            return Err(invalid("worker.max_job_bytes", "must be at least 1"));
        }
        if self.database.pool_size == 0 {
            return Err(invalid("database.pool_size", "must be at least 1"));
        }
        validate_fetch(&self.clerk, &self.svix, &self.http, &self.dns)?;
        if !self.kms.endpoint_url.is_empty() {
            url::Url::parse(&self.kms.endpoint_url).map_err(|e| invalid("kms.endpoint_url", e.to_string()))?;
        }
        if self.kms.region.is_empty() {
            return Err(invalid("kms.region", "must not be empty"));
        }
        if !self.telemetry.otlp_endpoint.is_empty() {
            otlp_traces_url(&self.telemetry.otlp_endpoint)
                .map_err(|e| invalid("telemetry.otlp_endpoint", e.to_string()))?;
        }
        Ok(())
    }

    pub fn drain_grace(&self) -> Duration {
        Duration::from_secs(self.worker.drain_grace_secs)
    }

    /// How long past due a delayed job may be missing before the sweep sends it again.
    pub fn retry_sweep_grace(&self) -> Duration {
        Duration::from_secs(self.worker.retry_sweep_grace_secs)
    }

    /// How often the sweep looks: a quarter of the grace, between 1 and 30 seconds.
    pub fn retry_sweep_interval(&self) -> Duration {
        (self.retry_sweep_grace() / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
    }
}

/// The OTLP/HTTP traces URL for a configured endpoint: a bare collector address gets `/v1/traces`.
pub fn otlp_traces_url(endpoint: &str) -> anyhow::Result<String> {
    let url =
        url::Url::parse(endpoint).with_context(|| format!("telemetry.otlp_endpoint {endpoint:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        anyhow::bail!("telemetry.otlp_endpoint must be http(s), got {}", url.scheme());
    }
    Ok(if url.path() == "/" || url.path().is_empty() {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    } else {
        endpoint.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
    }

    #[test]
    fn outbox_retention_is_hours_and_zero_keeps_every_row() {
        let settings = Settings::load_from(&config_dir(), "local").expect("local config loads");
        assert_eq!(settings.events.outbox_retention(), Some(Duration::from_secs(7 * 24 * 3600)));
        let keep = EventSettings { outbox_retention_hours: 0, ..settings.events.clone() };
        assert_eq!(keep.outbox_retention(), None);
    }

    #[test]
    fn local_configuration_loads() {
        let settings = Settings::load_from(&config_dir(), "local").expect("local config loads");
        assert_eq!(settings.amqp.jobs_queue, "clerk-audit.jobs");
        assert_eq!(settings.checks.mfa_user_threshold, 100);
        assert_eq!(settings.clerk.api_version, "2026-05-12");
    }

    #[test]
    fn production_without_secrets_names_the_missing_key() {
        let err = Settings::load_from(&config_dir(), "production").unwrap_err().to_string();
        assert!(err.contains("url"), "{err}");
    }

    #[test]
    fn invalid_value_names_key_and_env_var() {
        let mut settings = Settings::load_from(&config_dir(), "local").unwrap();
        settings.worker.concurrency = 0;
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("worker.concurrency") && err.contains("CLERK_AUDIT_WORKER__CONCURRENCY"), "{err}");
    }

    #[test]
    fn production_refuses_allow_loopback() {
        let mut settings = Settings::load_from(&config_dir(), "local").unwrap();
        settings.http.allow_loopback = true;
        settings.validate_for_environment("local").unwrap();
        let err = settings.validate_for_environment("production").unwrap_err().to_string();
        assert!(err.contains("http.allow_loopback") && err.contains("CLERK_AUDIT_HTTP__ALLOW_LOOPBACK"), "{err}");
        settings.http.allow_loopback = false;
        settings.validate_for_environment("production").unwrap();
    }

    #[test]
    fn cleartext_http2_needs_the_loopback_allowance() {
        let mut settings = Settings::load_from(&config_dir(), "local").unwrap();
        assert!(!settings.http.cleartext_http2, "off by default");
        settings.http.cleartext_http2 = true;
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("http.cleartext_http2") && err.contains("CLERK_AUDIT_HTTP__CLEARTEXT_HTTP2"), "{err}");
        settings.http.allow_loopback = true;
        settings.validate().unwrap();
    }

    #[test]
    fn the_audit_settings_load_from_the_built_in_defaults() {
        let settings = AuditSettings::load().expect("built-in defaults load");
        assert_eq!(settings.clerk.api_version, "2026-05-12");
        assert_eq!(settings.checks.mfa_user_threshold, 100);
        assert!(!settings.http.allow_loopback);
    }

    #[test]
    fn production_refuses_plain_http_backend() {
        let mut settings = Settings::load_from(&config_dir(), "local").unwrap();
        settings.clerk.backend_api_url = "http://api.clerk.com".parse().unwrap();
        assert!(settings.validate().unwrap_err().to_string().contains("clerk.backend_api_url"));
        settings.http.allow_loopback = true;
        settings.validate().unwrap();
    }
}
