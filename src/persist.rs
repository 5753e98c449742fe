//! Persist: the scan's row, and the one transaction that stores its results, findings and the outbox row
//! of its event. The scan row is also the idempotency guard: a scan that reached a terminal status is
//! never processed again, and the terminal transaction takes the row lock, so of two workers racing on
//! one scan exactly one commits.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use tokio_postgres::Client;
use uuid::Uuid;

use crate::artifact::RepoArtifact;
use crate::error::{FailureReason, JobError};
use crate::evaluate::Evaluation;
use crate::events::{
    self, COMPLETED_ROUTING_KEY, COMPLETED_TYPE, CompletedData, FAILED_ROUTING_KEY, FAILED_TYPE, FailedData,
    InstanceSummary, PublishedFinding,
};
use crate::fetch::http::CallTally;
use crate::job::{ProjectId, ScanJob};

/// Where a scan stands when a job starts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanStart {
    /// Not finished yet; this is attempt number `attempts` (1 for the first).
    Running { attempts: u32 },
    /// Completed or failed already: nothing to do.
    Finished,
}

/// Registers an attempt at `job`'s scan.
pub async fn begin_scan(client: &Client, job: &ScanJob) -> Result<ScanStart, JobError> {
    let row = client
        .query_one(
            "INSERT INTO scans (id, project_id, instance_name, key_ref, repo_scan_id, status, attempts, requested_at)
             VALUES ($1, $2, $3, $4, $5, 'running', 1, $6)
             ON CONFLICT (id) DO UPDATE
               SET attempts = scans.attempts + CASE WHEN scans.status = 'running' THEN 1 ELSE 0 END
             RETURNING status, attempts",
            &[
                &job.scan_id,
                &job.project_id.as_str(),
                &job.instance_name.as_str(),
                &job.key_ref,
                &job.repo_scan_id,
                &job.requested_at,
            ],
        )
        .await?;
    let status: String = row.get("status");
    let attempts: i32 = row.get("attempts");
    Ok(if status == "running" { ScanStart::Running { attempts: attempts.max(1) as u32 } } else { ScanStart::Finished })
}

/// Makes sure the scan row exists without counting an attempt (a failure recorded before
/// [`begin_scan`] ran, e.g. the database was down at first).
pub async fn ensure_scan(client: &Client, job: &ScanJob) -> Result<(), JobError> {
    client
        .execute(
            "INSERT INTO scans (id, project_id, instance_name, key_ref, repo_scan_id, status, attempts, requested_at)
             VALUES ($1, $2, $3, $4, $5, 'running', 1, $6) ON CONFLICT (id) DO NOTHING",
            &[
                &job.scan_id,
                &job.project_id.as_str(),
                &job.instance_name.as_str(),
                &job.key_ref,
                &job.repo_scan_id,
                &job.requested_at,
            ],
        )
        .await?;
    Ok(())
}

/// Loads the repo artifact: the job's `repo_scan_id`, else the project's latest. A stored artifact that
/// does not parse is treated as absent (and logged), since a retry cannot fix it.
pub async fn load_artifact(
    client: &Client,
    project_id: &ProjectId,
    repo_scan_id: Option<&str>,
) -> Result<Option<RepoArtifact>, JobError> {
    let row = match repo_scan_id {
        Some(id) => {
            client
                .query_opt(
                    "SELECT artifact FROM repo_scan_artifacts WHERE project_id = $1 AND repo_scan_id = $2",
                    &[&project_id.as_str(), &id],
                )
                .await?
        }
        None => {
            client
                .query_opt(
                    "SELECT artifact FROM repo_scan_artifacts WHERE project_id = $1
                     ORDER BY created_at DESC, repo_scan_id DESC LIMIT 1",
                    &[&project_id.as_str()],
                )
                .await?
        }
    };
    let Some(row) = row else { return Ok(None) };
    match RepoArtifact::from_json(row.get("artifact")) {
        Ok(artifact) => Ok(Some(artifact)),
        Err(error) => {
            tracing::warn!(error = %error, "stored repo artifact ignored");
            Ok(None)
        }
    }
}

/// Stores an artifact, as the platform's repo scanner does.
pub async fn store_artifact(
    client: &Client,
    project_id: &ProjectId,
    repo_scan_id: &str,
    artifact: &RepoArtifact,
) -> Result<(), tokio_postgres::Error> {
    let value = serde_json::to_value(artifact).expect("artifact serializes");
    client
        .execute(
            "INSERT INTO repo_scan_artifacts (project_id, repo_scan_id, artifact) VALUES ($1, $2, $3)
             ON CONFLICT (project_id, repo_scan_id) DO UPDATE SET artifact = EXCLUDED.artifact, created_at = now()",
            &[&project_id.as_str(), &repo_scan_id, &value],
        )
        .await?;
    Ok(())
}

/// What a terminal transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// This worker stored the result and its event.
    Stored,
    /// Another worker had finished the scan first; nothing was written.
    AlreadyFinished,
}

/// Everything a completed scan stores.
pub struct CompletedScan<'a> {
    pub job: &'a ScanJob,
    pub started_at: DateTime<Utc>,
    pub evaluation: &'a Evaluation,
    pub instance: InstanceSummary,
    pub calls: Vec<CallTally>,
    pub target: &'a EventTarget,
    pub traceparent: Option<String>,
}

/// Where a scan's event goes and what it names as its source.
#[derive(Debug, Clone)]
pub struct EventTarget {
    pub source: String,
    pub exchange: String,
}

/// Locks the scan row; answers whether it is still running.
async fn lock_running(tx: &tokio_postgres::Transaction<'_>, scan_id: Uuid) -> Result<bool, JobError> {
    let row = tx.query_opt("SELECT status FROM scans WHERE id = $1 FOR UPDATE", &[&scan_id]).await?;
    Ok(row.is_some_and(|row| row.get::<_, String>("status") == "running"))
}

async fn insert_outbox(
    tx: &tokio_postgres::Transaction<'_>,
    scan_id: Uuid,
    exchange: &str,
    routing_key: &str,
    payload: &serde_json::Value,
) -> Result<(), JobError> {
    tx.execute(
        "INSERT INTO outbox (id, scan_id, exchange, routing_key, payload) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO NOTHING",
        &[&events::event_id(scan_id), &scan_id, &exchange, &routing_key, payload],
    )
    .await?;
    Ok(())
}

/// Stores a completed scan, its results, findings and the completed event, in one transaction.
pub async fn complete_scan(client: &mut Client, scan: CompletedScan<'_>) -> Result<Committed, JobError> {
    let job = scan.job;
    let tx = client.transaction().await?;
    if !lock_running(&tx, job.scan_id).await? {
        return Ok(Committed::AlreadyFinished);
    }
    let now = Utc::now();
    let project = job.project_id.as_str();
    let fingerprints: Vec<String> = scan.evaluation.findings.iter().map(|f| f.fingerprint.clone()).collect();

    // A finding keeps the time it was first seen in any completed scan of the project.
    let first_seen: BTreeMap<String, DateTime<Utc>> = tx
        .query(
            "SELECT f.fingerprint, min(f.first_seen_at) AS first_seen_at
               FROM findings f JOIN scans s ON s.id = f.scan_id
              WHERE s.project_id = $1 AND s.status = 'completed' AND f.fingerprint = ANY($2)
              GROUP BY f.fingerprint",
            &[&project, &fingerprints],
        )
        .await?
        .into_iter()
        .map(|row| (row.get("fingerprint"), row.get("first_seen_at")))
        .collect();

    // Findings of the previous completed scan that are gone now.
    let previous: BTreeSet<String> = tx
        .query(
            "SELECT fingerprint FROM findings WHERE scan_id = (
                SELECT id FROM scans WHERE project_id = $1 AND status = 'completed' AND id <> $2
                 ORDER BY finished_at DESC LIMIT 1)",
            &[&project, &job.scan_id],
        )
        .await?
        .into_iter()
        .map(|row| row.get("fingerprint"))
        .collect();
    let current: BTreeSet<&String> = fingerprints.iter().collect();
    let resolved: Vec<String> = previous.into_iter().filter(|f| !current.contains(f)).collect();

    let duration_ms = (now - scan.started_at).num_milliseconds();
    let summary = serde_json::to_value(&scan.instance).expect("summary serializes");
    let calls = serde_json::to_value(&scan.calls).expect("calls serialize");
    tx.execute(
        "UPDATE scans SET status = 'completed', finished_at = $2, duration_ms = $3, instance_summary = $4,
                          calls = $5, error_code = NULL, error_message = NULL
          WHERE id = $1",
        &[&job.scan_id, &now, &duration_ms, &summary, &calls],
    )
    .await?;
    for result in &scan.evaluation.results {
        tx.execute(
            "INSERT INTO check_results (scan_id, check_id, status, reason) VALUES ($1, $2, $3, $4)",
            &[&job.scan_id, &result.check_id, &result.status.as_str(), &result.reason],
        )
        .await?;
    }
    let mut published = Vec::with_capacity(scan.evaluation.findings.len());
    for finding in &scan.evaluation.findings {
        let first_seen_at = first_seen.get(&finding.fingerprint).copied().unwrap_or(now);
        let evidence = serde_json::to_value(&finding.evidence).expect("evidence serializes");
        tx.execute(
            "INSERT INTO findings (scan_id, fingerprint, check_id, severity, pillar, title, evidence, why, fix, first_seen_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &job.scan_id,
                &finding.fingerprint,
                &finding.check_id,
                &finding.severity.as_str(),
                &finding.pillar,
                &finding.title,
                &evidence,
                &finding.why,
                &finding.fix,
                &first_seen_at,
            ],
        )
        .await?;
        published.push(PublishedFinding {
            check_id: finding.check_id.clone(),
            severity: finding.severity,
            pillar: finding.pillar.clone(),
            title: finding.title.clone(),
            evidence: finding.evidence.clone(),
            why: finding.why.clone(),
            fix: finding.fix.clone(),
            fingerprint: finding.fingerprint.clone(),
            first_seen_at: events::format_time(first_seen_at),
        });
    }
    let data = CompletedData {
        scan_id: job.scan_id,
        project_id: project.to_owned(),
        instance_name: job.instance_name.as_str().to_owned(),
        instance: scan.instance,
        checks: scan.evaluation.results.clone(),
        findings: published,
        resolved,
        calls: scan.calls,
    };
    let mut event = events::envelope(&scan.target.source, COMPLETED_TYPE, job.scan_id, project, now, data);
    event.traceparent = scan.traceparent;
    let payload = serde_json::to_value(&event).expect("event serializes");
    insert_outbox(&tx, job.scan_id, &scan.target.exchange, COMPLETED_ROUTING_KEY, &payload).await?;
    tx.commit().await?;
    Ok(Committed::Stored)
}

/// Stores a failed scan and its failed event, in one transaction.
pub async fn fail_scan(
    client: &mut Client,
    job: &ScanJob,
    started_at: DateTime<Utc>,
    reason: FailureReason,
    detail: &str,
    target: &EventTarget,
    traceparent: Option<String>,
) -> Result<Committed, JobError> {
    let tx = client.transaction().await?;
    if !lock_running(&tx, job.scan_id).await? {
        return Ok(Committed::AlreadyFinished);
    }
    let now = Utc::now();
    let duration_ms = (now - started_at).num_milliseconds();
    tx.execute(
        "UPDATE scans SET status = 'failed', finished_at = $2, duration_ms = $3, error_code = $4, error_message = $5
          WHERE id = $1",
        &[&job.scan_id, &now, &duration_ms, &reason.code(), &detail],
    )
    .await?;
    let data = FailedData::new(job.scan_id, job.project_id.as_str(), job.instance_name.as_str(), reason);
    let mut event = events::envelope(&target.source, FAILED_TYPE, job.scan_id, job.project_id.as_str(), now, data);
    event.traceparent = traceparent;
    let payload = serde_json::to_value(&event).expect("event serializes");
    insert_outbox(&tx, job.scan_id, &target.exchange, FAILED_ROUTING_KEY, &payload).await?;
    tx.commit().await?;
    Ok(Committed::Stored)
}
