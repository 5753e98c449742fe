//! The scan job (`clerk-scan-job/v1`, schema in `contracts/`): decoded and validated here, or refused as poison.
//!
//! A poison message is one no retry can fix (bad JSON, unknown schema major version, a missing field,
//! a malformed id, an oversized body). The consumer dead-letters it at once with [`PoisonReason`] in a
//! header; nothing here panics on input.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The schema family this worker reads; any `v1.x` minor version is accepted.
pub const JOB_SCHEMA_FAMILY: &str = "clerk-scan-job";
pub const JOB_SCHEMA: &str = "clerk-scan-job/v1";

/// A platform project id such as `prj_2abc`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProjectId(String);

/// A customer's name for their Clerk instance, such as `acme-prod`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceName(String);

fn validate_identifier(kind: &str, value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{kind} is empty"));
    }
    if value.len() > max {
        return Err(format!("{kind} is longer than {max} characters"));
    }
    if !value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
        return Err(format!("{kind} has a character other than letters, digits, '_', '-' and '.'"));
    }
    Ok(())
}

macro_rules! identifier_newtype {
    ($name:ident, $kind:literal, $max:expr) => {
        impl $name {
            pub fn parse(value: impl Into<String>) -> Result<Self, String> {
                let value = value.into();
                validate_identifier($kind, &value, $max)?;
                Ok(Self(value))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                Self::parse(value)
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

identifier_newtype!(ProjectId, "project_id", 128);
identifier_newtype!(InstanceName, "instance_name", 128);

/// A decoded, validated scan job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanJob {
    pub scan_id: Uuid,
    pub project_id: ProjectId,
    pub instance_name: InstanceName,
    pub key_ref: Uuid,
    pub requested_at: DateTime<Utc>,
    pub repo_scan_id: Option<String>,
}

/// Why a message was refused; its [`PoisonReason::code`] goes into the dead-letter header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoisonReason {
    #[error("body of {size} bytes is over the {limit}-byte limit")]
    Oversized { size: usize, limit: usize },
    #[error("body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("unsupported schema {0:?} (this worker reads {JOB_SCHEMA})")]
    UnknownSchema(String),
    #[error("missing field {0}")]
    MissingField(&'static str),
    #[error("invalid field {field}: {problem}")]
    InvalidField { field: &'static str, problem: String },
}

impl PoisonReason {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            PoisonReason::Oversized { .. } => "oversized",
            PoisonReason::MalformedJson(_) => "malformed_json",
            PoisonReason::UnknownSchema(_) => "unknown_schema",
            PoisonReason::MissingField(_) => "missing_field",
            PoisonReason::InvalidField { .. } => "invalid_field",
        }
    }
}

/// Decodes a job body. Unknown extra fields are ignored.
pub fn decode(body: &[u8], max_bytes: usize) -> Result<ScanJob, PoisonReason> {
    if body.len() > max_bytes {
        return Err(PoisonReason::Oversized { size: body.len(), limit: max_bytes });
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| PoisonReason::MalformedJson(e.to_string()))?;
    let object = value.as_object().ok_or_else(|| PoisonReason::MalformedJson("not a JSON object".into()))?;

    let text = |field: &'static str| -> Result<&str, PoisonReason> {
        match object.get(field) {
            None | Some(serde_json::Value::Null) => Err(PoisonReason::MissingField(field)),
            Some(serde_json::Value::String(s)) => Ok(s.as_str()),
            Some(_) => Err(PoisonReason::InvalidField { field, problem: "not a string".into() }),
        }
    };
    let invalid = |field: &'static str, problem: String| PoisonReason::InvalidField { field, problem };

    check_schema(text("schema")?)?;
    let scan_id = Uuid::parse_str(text("scan_id")?).map_err(|e| invalid("scan_id", e.to_string()))?;
    let project_id = ProjectId::parse(text("project_id")?).map_err(|e| invalid("project_id", e))?;
    let instance_name = InstanceName::parse(text("instance_name")?).map_err(|e| invalid("instance_name", e))?;
    let key_ref = Uuid::parse_str(text("key_ref")?).map_err(|e| invalid("key_ref", e.to_string()))?;
    let requested_at = DateTime::parse_from_rfc3339(text("requested_at")?)
        .map_err(|e| invalid("requested_at", e.to_string()))?
        .with_timezone(&Utc);
    let repo_scan_id = match object.get("repo_scan_id") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => {
            validate_identifier("repo_scan_id", s, 128).map_err(|e| invalid("repo_scan_id", e))?;
            Some(s.clone())
        }
        Some(_) => return Err(invalid("repo_scan_id", "not a string".into())),
    };
    Ok(ScanJob { scan_id, project_id, instance_name, key_ref, requested_at, repo_scan_id })
}

fn check_schema(schema: &str) -> Result<(), PoisonReason> {
    let unknown = || PoisonReason::UnknownSchema(schema.chars().take(64).collect());
    let version =
        schema.strip_prefix(JOB_SCHEMA_FAMILY).and_then(|rest| rest.strip_prefix("/v")).ok_or_else(unknown)?;
    let major = version.split('.').next().unwrap_or_default();
    if major != "1" {
        return Err(unknown());
    }
    Ok(())
}

impl ScanJob {
    /// The job as the orchestrator would send it (used by `enqueue` and tests).
    pub fn to_message(&self) -> serde_json::Value {
        let mut value = serde_json::json!({
            "schema": JOB_SCHEMA,
            "scan_id": self.scan_id,
            "project_id": self.project_id,
            "instance_name": self.instance_name,
            "key_ref": self.key_ref,
            "requested_at": self.requested_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        if let Some(repo_scan_id) = &self.repo_scan_id {
            value["repo_scan_id"] = repo_scan_id.clone().into();
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> serde_json::Value {
        json!({
          "schema": "clerk-scan-job/v1",
          "scan_id": "8f0c7c1e-1a7b-4c43-9d7e-2f1d3c1f9a10",
          "project_id": "prj_2abc",
          "instance_name": "acme-prod",
          "key_ref": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
          "requested_at": "2026-11-26T10:00:00Z"
        })
    }

    fn decode_value(value: serde_json::Value) -> Result<ScanJob, PoisonReason> {
        decode(value.to_string().as_bytes(), 65536)
    }

    #[test]
    fn decodes_the_spec_example_and_ignores_extra_fields() {
        let mut value = valid();
        value["something_new"] = json!({"nested": true});
        value["repo_scan_id"] = json!("rs_42");
        let job = decode_value(value).unwrap();
        assert_eq!(job.project_id.as_str(), "prj_2abc");
        assert_eq!(job.repo_scan_id.as_deref(), Some("rs_42"));
        assert_eq!(job.to_message()["scan_id"], "8f0c7c1e-1a7b-4c43-9d7e-2f1d3c1f9a10");
    }

    #[test]
    fn accepts_a_minor_version() {
        let mut value = valid();
        value["schema"] = json!("clerk-scan-job/v1.3");
        decode_value(value).unwrap();
    }

    #[test]
    fn refuses_unknown_major_version() {
        for schema in ["clerk-scan-job/v2", "clerk-scan-job/v10", "other/v1", "clerk-scan-job"] {
            let mut value = valid();
            value["schema"] = json!(schema);
            assert_eq!(decode_value(value).unwrap_err().code(), "unknown_schema", "{schema}");
        }
    }

    #[test]
    fn refuses_missing_fields() {
        for field in ["schema", "scan_id", "project_id", "instance_name", "key_ref", "requested_at"] {
            let mut value = valid();
            value.as_object_mut().unwrap().remove(field);
            assert_eq!(decode_value(value).unwrap_err(), PoisonReason::MissingField(field));
        }
    }

    #[test]
    fn refuses_malformed_ids() {
        for (field, bad) in [
            ("scan_id", json!("not-a-uuid")),
            ("key_ref", json!(12)),
            ("project_id", json!("prj 2")),
            ("requested_at", json!("yesterday")),
        ] {
            let mut value = valid();
            value[field] = bad;
            assert_eq!(decode_value(value).unwrap_err().code(), "invalid_field", "{field}");
        }
    }

    #[test]
    fn refuses_bad_json_and_oversized_bodies() {
        assert_eq!(decode(b"{not json", 100).unwrap_err().code(), "malformed_json");
        assert_eq!(decode(b"[1,2]", 100).unwrap_err().code(), "malformed_json");
        assert_eq!(decode(&[0xff; 10], 100).unwrap_err().code(), "malformed_json");
        assert_eq!(decode(&[b' '; 101], 100).unwrap_err().code(), "oversized");
    }
}
