//! The findings events (SPEC section 7): CloudEvents 1.0, structured JSON, published to the
//! `pulselight.findings` topic exchange.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::checks::{Evidence, Severity};
use crate::error::FailureReason;
use crate::evaluate::CheckResult;
use crate::fetch::http::CallTally;

pub const COMPLETED_ROUTING_KEY: &str = "clerk.audit.completed";
pub const FAILED_ROUTING_KEY: &str = "clerk.audit.failed";
pub const COMPLETED_TYPE: &str = "com.pulselight.clerk.audit.completed.v1";
pub const FAILED_TYPE: &str = "com.pulselight.clerk.audit.failed.v1";
/// AMQP content type of a structured-mode CloudEvent.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// A CloudEvents 1.0 envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent<T> {
    pub specversion: String,
    pub id: Uuid,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub subject: String,
    pub time: String,
    pub datacontenttype: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub traceparent: Option<String>,
    pub data: T,
}

/// The event id of a scan's terminal event: derived from the scan id, so a redelivered duplicate of the
/// job (or a re-sent outbox row) carries the same id.
pub fn event_id(scan_id: Uuid) -> Uuid {
    Uuid::new_v5(&scan_id, b"clerk.audit.result")
}

pub fn envelope<T>(
    source: &str,
    event_type: &str,
    scan_id: Uuid,
    project_id: &str,
    time: DateTime<Utc>,
    data: T,
) -> CloudEvent<T> {
    CloudEvent {
        specversion: "1.0".into(),
        id: event_id(scan_id),
        source: source.to_owned(),
        event_type: event_type.to_owned(),
        subject: project_id.to_owned(),
        time: time.to_rfc3339_opts(SecondsFormat::Millis, true),
        datacontenttype: "application/json".into(),
        traceparent: None,
        data,
    }
}

/// `data` of `clerk.audit.completed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletedData {
    pub scan_id: Uuid,
    pub project_id: String,
    pub instance_name: String,
    pub instance: InstanceSummary,
    pub checks: Vec<CheckResult>,
    pub findings: Vec<PublishedFinding>,
    /// Fingerprints of the previous completed scan's findings that are gone now.
    pub resolved: Vec<String>,
    pub calls: Vec<CallTally>,
}

/// What the completed event says of the instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceSummary {
    /// `development`, `production`, ...
    pub kind: String,
    pub user_count: u64,
    /// The primary domain's name, when there is one.
    pub domain: Option<String>,
}

/// A finding as published: SPEC section 6 fields plus `first_seen_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedFinding {
    pub check_id: String,
    pub severity: Severity,
    pub pillar: String,
    pub title: String,
    pub evidence: Evidence,
    pub why: String,
    pub fix: String,
    pub fingerprint: String,
    pub first_seen_at: String,
}

/// `data` of `clerk.audit.failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedData {
    pub scan_id: Uuid,
    pub project_id: String,
    pub instance_name: String,
    /// One of `credential_not_found`, `credential_revoked`, `credential_undecryptable`,
    /// `clerk_key_rejected`, `clerk_unavailable`, `internal`.
    pub reason: String,
    /// What the customer can do about it.
    pub message: String,
}

impl FailedData {
    pub fn new(scan_id: Uuid, project_id: &str, instance_name: &str, reason: FailureReason) -> Self {
        Self {
            scan_id,
            project_id: project_id.to_owned(),
            instance_name: instance_name.to_owned(),
            reason: reason.code().to_owned(),
            message: reason.customer_message().to_owned(),
        }
    }
}

pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}
