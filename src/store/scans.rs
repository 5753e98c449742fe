//! `scans`, `check_results`, `findings`: the scan's row, and the one transaction that stores its results,
//! findings and the outbox row of its event. The scan row is also the idempotency guard: a scan that reached
//! a terminal status is never processed again, and the terminal transaction takes the row lock, so of two
//! workers racing on one scan exactly one commits.

use chrono::{DateTime, Utc};
use tokio_postgres::types::Json;
use tokio_postgres::{Client, Transaction};
use uuid::Uuid;

use crate::audit::evaluate::{Evaluation, Finding, Lifecycle};
use crate::audit::facts::{CallTally, InstanceSummary};
use crate::audit::history::ScanHistory;
use crate::error::{FailureReason, JobError};
use crate::intake::job::ScanJob;
use crate::store::outbox::{self, OutboxRow};

/// Where a scan stands when a job starts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanStart {
    /// Not finished yet; this is attempt number `attempts` (1 for the first).
    Running { attempts: u32 },
    /// Completed or failed already: nothing to do.
    Finished,
}

/// What a terminal transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// This worker stored the result and its event.
    Stored,
    /// Another worker had finished the scan first; nothing was written.
    AlreadyFinished,
}

const INSERT_SCAN: &str =
    "INSERT INTO scans (id, project_id, instance_name, key_ref, repo_scan_id, status, attempts, requested_at)
     VALUES ($1, $2, $3, $4, $5, 'running', 1, $6)";

/// Registers an attempt at `job`'s scan.
pub async fn begin(client: &Client, job: &ScanJob) -> Result<ScanStart, JobError> {
    let row = client
        .query_one(
            &format!(
                "{INSERT_SCAN} ON CONFLICT (id) DO UPDATE
                   SET attempts = scans.attempts + CASE WHEN scans.status = 'running' THEN 1 ELSE 0 END
                 RETURNING status, attempts"
            ),
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

/// Makes sure the scan row exists without counting an attempt (a failure recorded before [`begin`] ran,
/// e.g. the database was down at first).
pub async fn ensure(client: &Client, job: &ScanJob) -> Result<(), JobError> {
    client
        .execute(
            &format!("{INSERT_SCAN} ON CONFLICT (id) DO NOTHING"),
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

/// Locks the scan row; answers whether it is still running.
async fn lock_running(tx: &Transaction<'_>, scan_id: Uuid) -> Result<bool, JobError> {
    let row = tx.query_opt("SELECT status FROM scans WHERE id = $1 FOR UPDATE", &[&scan_id]).await?;
    Ok(row.is_some_and(|row| row.get::<_, String>("status") == "running"))
}

/// What earlier completed scans of the same project and instance say of `fingerprints` (read under the row
/// lock).
async fn history(tx: &Transaction<'_>, job: &ScanJob, fingerprints: &[&str]) -> Result<ScanHistory, JobError> {
    let project = job.project_id.as_str();
    let instance = job.instance_name.as_str();
    // A finding keeps the time it was first seen in any completed scan of the project and instance.
    let first_seen = tx
        .query(
            "SELECT f.fingerprint, min(f.first_seen_at) AS first_seen_at
               FROM findings f JOIN scans s ON s.id = f.scan_id
              WHERE s.project_id = $1 AND s.instance_name = $2 AND s.status = 'completed'
                AND f.fingerprint = ANY($3)
              GROUP BY f.fingerprint",
            &[&project, &instance, &fingerprints],
        )
        .await?
        .into_iter()
        .map(|row| (row.get("fingerprint"), row.get("first_seen_at")))
        .collect();
    // What the previous completed scan reported (its resolved rows are not findings of that scan).
    let previous = tx
        .query(
            "SELECT check_id, severity, pillar, title, evidence, why, fix, fingerprint, first_seen_at, lifecycle
               FROM findings
              WHERE lifecycle <> 'resolved' AND scan_id = (
                SELECT id FROM scans
                 WHERE project_id = $1 AND instance_name = $2 AND status = 'completed' AND id <> $3
                 ORDER BY finished_at DESC LIMIT 1)",
            &[&project, &instance, &job.scan_id],
        )
        .await?
        .iter()
        .filter_map(finding_of_row)
        .map(|finding| (finding.fingerprint.clone(), finding))
        .collect();
    Ok(ScanHistory { first_seen, previous })
}

/// A stored finding; `None` for a row whose severity, evidence or lifecycle no longer parses.
pub(crate) fn finding_of_row(row: &tokio_postgres::Row) -> Option<Finding> {
    let first_seen_at: DateTime<Utc> = row.get("first_seen_at");
    Some(Finding {
        check_id: row.get("check_id"),
        severity: serde_json::from_value(serde_json::Value::String(row.get("severity"))).ok()?,
        pillar: row.get("pillar"),
        title: row.get("title"),
        evidence: serde_json::from_value(row.get("evidence")).ok()?,
        why: row.get("why"),
        fix: row.get("fix"),
        fingerprint: row.get("fingerprint"),
        // The events' time format (RFC 3339, milliseconds, `Z`).
        first_seen_at: Some(first_seen_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        lifecycle: Some(Lifecycle::parse(row.get("lifecycle"))?),
    })
}

/// Everything a completed scan stores besides its event.
pub struct CompletedRecord<'a> {
    pub job: &'a ScanJob,
    pub started_at: DateTime<Utc>,
    pub evaluation: &'a Evaluation,
    pub instance: &'a InstanceSummary,
    pub calls: &'a [CallTally],
}

/// Stores a completed scan, its results, findings and its event, in one transaction. `event` builds the
/// event from what earlier scans say (first-seen times, resolved findings), read in the same transaction.
pub async fn complete(
    client: &mut Client,
    record: CompletedRecord<'_>,
    event: impl FnOnce(&ScanHistory, DateTime<Utc>) -> OutboxRow,
) -> Result<Committed, JobError> {
    let job = record.job;
    let tx = client.transaction().await?;
    if !lock_running(&tx, job.scan_id).await? {
        return Ok(Committed::AlreadyFinished);
    }
    let now = Utc::now();
    let fingerprints: Vec<&str> = record.evaluation.findings.iter().map(|f| f.fingerprint.as_str()).collect();
    let history = history(&tx, job, &fingerprints).await?;

    let duration_ms = (now - record.started_at).num_milliseconds();
    tx.execute(
        "UPDATE scans SET status = 'completed', finished_at = $2, duration_ms = $3, instance_summary = $4,
                          calls = $5, error_code = NULL, error_message = NULL
          WHERE id = $1",
        &[&job.scan_id, &now, &duration_ms, &Json(record.instance), &Json(record.calls)],
    )
    .await?;
    for result in &record.evaluation.results {
        tx.execute(
            "INSERT INTO check_results (scan_id, check_id, status, reason) VALUES ($1, $2, $3, $4)",
            &[&job.scan_id, &result.check_id, &result.status.as_str(), &result.reason],
        )
        .await?;
    }
    let resolved = history.resolved_findings(fingerprints.iter().copied());
    let current = record.evaluation.findings.iter().map(|finding| {
        (finding, history.first_seen_at(&finding.fingerprint, now), history.lifecycle(&finding.fingerprint))
    });
    // The previous scan's findings that are gone are stored too, marked resolved, keeping their first-seen time.
    let gone = resolved.iter().map(|finding| {
        let first_seen = finding
            .first_seen_at
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map_or(now, |t| t.with_timezone(&Utc));
        (finding, first_seen, Lifecycle::Resolved)
    });
    for (finding, first_seen_at, lifecycle) in current.chain(gone) {
        tx.execute(
            "INSERT INTO findings
                    (scan_id, fingerprint, check_id, severity, pillar, title, evidence, why, fix, first_seen_at, lifecycle)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                &job.scan_id,
                &finding.fingerprint,
                &finding.check_id,
                &finding.severity.as_str(),
                &finding.pillar,
                &finding.title,
                &Json(&finding.evidence),
                &finding.why,
                &finding.fix,
                &first_seen_at,
                &lifecycle.as_str(),
            ],
        )
        .await?;
    }
    outbox::insert(&tx, job.scan_id, &event(&history, now)).await?;
    tx.commit().await?;
    Ok(Committed::Stored)
}

/// Stores a failed scan and its event, in one transaction.
pub async fn fail(
    client: &mut Client,
    job: &ScanJob,
    started_at: DateTime<Utc>,
    reason: FailureReason,
    detail: &str,
    event: impl FnOnce(DateTime<Utc>) -> OutboxRow,
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
    outbox::insert(&tx, job.scan_id, &event(now)).await?;
    tx.commit().await?;
    Ok(Committed::Stored)
}
