//! The findings events: CloudEvents 1.0, structured JSON, published to the `pulselight.findings` topic
//! exchange. Built here by pure functions of the scan's result; the store writes them to the outbox in the
//! transaction that stores the result, and the relay publishes them.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::audit::evaluate::{CheckResult, Evaluation, Finding};
use crate::audit::facts::{CallTally, InstanceSummary};
use crate::audit::history::ScanHistory;
use crate::error::FailureReason;
use crate::store::outbox::OutboxRow;

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
    /// Every finding, with `first_seen_at` and `lifecycle` (`new` or `persisting`).
    pub findings: Vec<Finding>,
    /// Fingerprints of the previous completed scan's findings that are gone now.
    pub resolved: Vec<String>,
    /// The same findings as the previous scan reported them, with `lifecycle` `resolved`.
    #[serde(default)]
    pub resolved_findings: Vec<Finding>,
    pub calls: Vec<CallTally>,
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

/// The scan an event is about.
#[derive(Debug, Clone, Copy)]
pub struct ScanRef<'a> {
    pub scan_id: Uuid,
    pub project_id: &'a str,
    pub instance_name: &'a str,
}

/// Where the events go and what they name as their source.
#[derive(Debug, Clone)]
pub struct EventTarget {
    pub source: String,
    pub exchange: String,
}

fn outbox_row<T: Serialize>(
    target: &EventTarget,
    routing_key: &'static str,
    event_type: &'static str,
    event: &CloudEvent<T>,
) -> OutboxRow {
    OutboxRow {
        id: event.id,
        exchange: target.exchange.clone(),
        routing_key,
        // Plain data types with string keys: serialization cannot fail.
        payload: serde_json::to_string(event).unwrap_or_default(),
        event_type,
        traceparent: event.traceparent.clone(),
    }
}

/// What a completed scan publishes.
#[derive(Debug, Clone)]
pub struct CompletedScan<'a> {
    pub scan: ScanRef<'a>,
    pub evaluation: &'a Evaluation,
    pub instance: &'a InstanceSummary,
    pub calls: &'a [CallTally],
    pub traceparent: Option<&'a str>,
}

/// `data` of a completed event: the evaluation, each finding with the time it was first seen and whether it
/// is new or persisting, and the previous scan's findings that are gone (resolved).
pub fn completed_data(scan: &CompletedScan<'_>, history: &ScanHistory, now: DateTime<Utc>) -> CompletedData {
    let findings = scan
        .evaluation
        .findings
        .iter()
        .map(|finding| Finding {
            first_seen_at: Some(format_time(history.first_seen_at(&finding.fingerprint, now))),
            lifecycle: Some(history.lifecycle(&finding.fingerprint)),
            ..finding.clone()
        })
        .collect();
    CompletedData {
        scan_id: scan.scan.scan_id,
        project_id: scan.scan.project_id.to_owned(),
        instance_name: scan.scan.instance_name.to_owned(),
        instance: scan.instance.clone(),
        checks: scan.evaluation.results.clone(),
        findings,
        resolved: history.resolved(scan.evaluation.findings.iter().map(|f| f.fingerprint.as_str())),
        resolved_findings: history.resolved_findings(scan.evaluation.findings.iter().map(|f| f.fingerprint.as_str())),
        calls: scan.calls.to_vec(),
    }
}

/// The completed event of a scan.
pub fn completed_event(
    target: &EventTarget,
    scan: &CompletedScan<'_>,
    history: &ScanHistory,
    now: DateTime<Utc>,
) -> OutboxRow {
    let data = completed_data(scan, history, now);
    let mut event = envelope(&target.source, COMPLETED_TYPE, scan.scan.scan_id, scan.scan.project_id, now, data);
    event.traceparent = scan.traceparent.map(str::to_owned);
    outbox_row(target, COMPLETED_ROUTING_KEY, COMPLETED_TYPE, &event)
}

/// The failed event of a scan.
pub fn failed_event(
    target: &EventTarget,
    scan: ScanRef<'_>,
    reason: FailureReason,
    traceparent: Option<&str>,
    now: DateTime<Utc>,
) -> OutboxRow {
    let data = FailedData::new(scan.scan_id, scan.project_id, scan.instance_name, reason);
    let mut event = envelope(&target.source, FAILED_TYPE, scan.scan_id, scan.project_id, now, data);
    event.traceparent = traceparent.map(str::to_owned);
    outbox_row(target, FAILED_ROUTING_KEY, FAILED_TYPE, &event)
}
