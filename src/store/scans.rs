//! `scans`, `check_results`, `findings`: the scan's row, and the one transaction that stores its results,
//! findings and the outbox row of its event. The scan row is also the idempotency guard: a scan that reached
//! a terminal status is never processed again, and the terminal transaction takes the row lock, so of two
//! workers racing on one scan exactly one commits.
//!
//! The statements of a job's path are prepared once per pooled connection (`prepare_cached`), so each costs
//! one round trip instead of two, and a scan's check results and findings are each stored by one statement
//! (`unnest` over arrays), whatever their number.

use chrono::{DateTime, Utc};
use deadpool_postgres::Client;
use tokio_postgres::types::Json;
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

macro_rules! insert_scan {
    () => {
        "INSERT INTO scans (id, project_id, instance_name, key_ref, repo_scan_id, status, attempts, requested_at)
         VALUES ($1, $2, $3, $4, $5, 'running', 1, $6)"
    };
}

const BEGIN_SCAN: &str = concat!(
    insert_scan!(),
    " ON CONFLICT (id) DO UPDATE
       SET attempts = scans.attempts + CASE WHEN scans.status = 'running' THEN 1 ELSE 0 END
     RETURNING status, attempts"
);

const ENSURE_SCAN: &str = concat!(insert_scan!(), " ON CONFLICT (id) DO NOTHING");

/// Registers an attempt at `job`'s scan.
pub async fn begin(client: &Client, job: &ScanJob) -> Result<ScanStart, JobError> {
    let statement = client.prepare_cached(BEGIN_SCAN).await?;
    let row = client
        .query_one(
            &statement,
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
            ENSURE_SCAN,
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
async fn lock_running(tx: &deadpool_postgres::Transaction<'_>, scan_id: Uuid) -> Result<bool, JobError> {
    let statement = tx.prepare_cached("SELECT status FROM scans WHERE id = $1 FOR UPDATE").await?;
    let row = tx.query_opt(&statement, &[&scan_id]).await?;
    Ok(row.is_some_and(|row| row.get::<_, String>("status") == "running"))
}

/// Makes the rest of the transaction run prepared statements with their generic plans. The first-seen read
/// takes its fingerprints as an array: a custom plan, estimated from the array's actual length, always looks
/// cheaper than the generic one (estimated for ten), so without this the server plans that query again on
/// every execution: 0.23 ms of the 1.1 ms its statements took per scan (pg_stat_statements, instant
/// benchmark). The other statements of the transaction already ran generic plans after their first five
/// executions. `SET LOCAL`, not a connection option: it ends with the transaction, so it reaches no other
/// statement of the connection.
async fn generic_plans(tx: &deadpool_postgres::Transaction<'_>) -> Result<(), JobError> {
    tx.batch_execute("SET LOCAL plan_cache_mode = force_generic_plan").await?;
    Ok(())
}

/// What earlier completed scans of the same project and instance say of `fingerprints` (read under the row
/// lock).
async fn history(
    tx: &deadpool_postgres::Transaction<'_>,
    job: &ScanJob,
    fingerprints: &[&str],
) -> Result<ScanHistory, JobError> {
    let project = job.project_id.as_str();
    let instance = job.instance_name.as_str();
    // A finding keeps the time it was first seen in any completed scan of the project and instance:
    // `finding_first_seen` answers with one index lookup. Findings stored without a row there (written by
    // another tool, not by a scan's transaction) are looked up in `findings`; `coalesce` evaluates that
    // fallback only when the first lookup found nothing.
    let first_seen = async {
        let statement = tx
            .prepare_cached(
                "SELECT wanted.fp AS fingerprint, coalesce(
                        (SELECT t.first_seen_at FROM finding_first_seen t
                          WHERE t.project_id = $1 AND t.instance_name = $2 AND t.fingerprint = wanted.fp),
                        (SELECT min(f.first_seen_at)
                           FROM findings f JOIN scans s ON s.id = f.scan_id
                          WHERE f.fingerprint = wanted.fp AND s.project_id = $1 AND s.instance_name = $2
                            AND s.status = 'completed')) AS first_seen_at
                   FROM unnest($3::text[]) AS wanted (fp)",
            )
            .await?;
        Ok::<_, JobError>(
            tx.query(&statement, &[&project, &instance, &fingerprints])
                .await?
                .into_iter()
                .filter_map(|row| Some((row.get("fingerprint"), row.get::<_, Option<DateTime<Utc>>>("first_seen_at")?)))
                .collect(),
        )
    };
    // What the previous completed scan reported (its resolved rows are not findings of that scan).
    let previous = async {
        let statement = tx
            .prepare_cached(
                "SELECT check_id, severity, pillar, title, evidence, why, fix, fingerprint, first_seen_at, lifecycle
                   FROM findings
                  WHERE lifecycle <> 'resolved' AND scan_id = (
                    SELECT id FROM scans
                     WHERE project_id = $1 AND instance_name = $2 AND status = 'completed' AND id <> $3
                     ORDER BY finished_at DESC LIMIT 1)",
            )
            .await?;
        Ok::<_, JobError>(
            tx.query(&statement, &[&project, &instance, &job.scan_id])
                .await?
                .iter()
                .filter_map(finding_of_row)
                .map(|finding| (finding.fingerprint.clone(), finding))
                .collect(),
        )
    };
    // Both reads go out together (one round trip).
    let (first_seen, previous) = tokio::try_join!(first_seen, previous)?;
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
///
/// Statements that do not need each other's answers are sent together (tokio-postgres pipelines the
/// queries of one connection that are in flight at once, and the server runs them in order): the row lock
/// with the history reads, then every write. Four round trips in all, whatever the number of findings.
pub async fn complete(
    client: &mut Client,
    record: CompletedRecord<'_>,
    event: impl FnOnce(&ScanHistory, DateTime<Utc>) -> OutboxRow,
) -> Result<Committed, JobError> {
    let job = record.job;
    let tx = client.transaction().await?;
    let fingerprints: Vec<&str> = record.evaluation.findings.iter().map(|f| f.fingerprint.as_str()).collect();
    // The reads queue behind the lock, so they see what the scan that held it last committed.
    let (_, running, history) =
        tokio::try_join!(generic_plans(&tx), lock_running(&tx, job.scan_id), history(&tx, job, &fingerprints))?;
    if !running {
        return Ok(Committed::AlreadyFinished);
    }
    let now = Utc::now();
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
    let rows: Vec<FindingRow<'_>> = current.chain(gone).collect();
    let outbox_row = event(&history, now);
    tokio::try_join!(
        mark_completed(&tx, &record, now),
        insert_check_results(&tx, job.scan_id, record.evaluation),
        insert_findings(&tx, job.scan_id, &rows),
        remember_first_seen(&tx, job, &rows),
        outbox::insert(&tx, job.scan_id, &outbox_row),
    )?;
    tx.commit().await?;
    Ok(Committed::Stored)
}

/// A finding as stored: the finding, when it was first seen, and its lifecycle.
type FindingRow<'a> = (&'a Finding, DateTime<Utc>, Lifecycle);

async fn mark_completed(
    tx: &deadpool_postgres::Transaction<'_>,
    record: &CompletedRecord<'_>,
    now: DateTime<Utc>,
) -> Result<(), JobError> {
    let duration_ms = (now - record.started_at).num_milliseconds();
    let statement = tx
        .prepare_cached(
            "UPDATE scans SET status = 'completed', finished_at = $2, duration_ms = $3, instance_summary = $4,
                              calls = $5, error_code = NULL, error_message = NULL
              WHERE id = $1",
        )
        .await?;
    tx.execute(&statement, &[&record.job.scan_id, &now, &duration_ms, &Json(record.instance), &Json(record.calls)])
        .await?;
    Ok(())
}

/// Every check result in one statement.
async fn insert_check_results(
    tx: &deadpool_postgres::Transaction<'_>,
    scan_id: Uuid,
    evaluation: &Evaluation,
) -> Result<(), JobError> {
    let results = &evaluation.results;
    let check_ids: Vec<&str> = results.iter().map(|r| r.check_id.as_str()).collect();
    let statuses: Vec<&str> = results.iter().map(|r| r.status.as_str()).collect();
    let reasons: Vec<Option<&str>> = results.iter().map(|r| r.reason.as_deref()).collect();
    let statement = tx
        .prepare_cached(
            "INSERT INTO check_results (scan_id, check_id, status, reason)
             SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[])",
        )
        .await?;
    tx.execute(&statement, &[&scan_id, &check_ids, &statuses, &reasons]).await?;
    Ok(())
}

/// Every finding (current and resolved) in one statement, one array per column.
async fn insert_findings(
    tx: &deadpool_postgres::Transaction<'_>,
    scan_id: Uuid,
    rows: &[FindingRow<'_>],
) -> Result<(), JobError> {
    if rows.is_empty() {
        return Ok(());
    }
    let fingerprints: Vec<&str> = rows.iter().map(|(f, _, _)| f.fingerprint.as_str()).collect();
    let check_ids: Vec<&str> = rows.iter().map(|(f, _, _)| f.check_id.as_str()).collect();
    let severities: Vec<&str> = rows.iter().map(|(f, _, _)| f.severity.as_str()).collect();
    let pillars: Vec<&str> = rows.iter().map(|(f, _, _)| f.pillar.as_str()).collect();
    let titles: Vec<&str> = rows.iter().map(|(f, _, _)| f.title.as_str()).collect();
    let evidence: Vec<Json<_>> = rows.iter().map(|(f, _, _)| Json(&f.evidence)).collect();
    let whys: Vec<&str> = rows.iter().map(|(f, _, _)| f.why.as_str()).collect();
    let fixes: Vec<&str> = rows.iter().map(|(f, _, _)| f.fix.as_str()).collect();
    let first_seen: Vec<DateTime<Utc>> = rows.iter().map(|(_, at, _)| *at).collect();
    let lifecycles: Vec<&str> = rows.iter().map(|(_, _, lifecycle)| lifecycle.as_str()).collect();
    let statement = tx
        .prepare_cached(
            "INSERT INTO findings
                    (scan_id, fingerprint, check_id, severity, pillar, title, evidence, why, fix, first_seen_at,
                     lifecycle)
             SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[],
                                      $8::text[], $9::text[], $10::timestamptz[], $11::text[])",
        )
        .await?;
    tx.execute(
        &statement,
        &[
            &scan_id,
            &fingerprints,
            &check_ids,
            &severities,
            &pillars,
            &titles,
            &evidence,
            &whys,
            &fixes,
            &first_seen,
            &lifecycles,
        ],
    )
    .await?;
    Ok(())
}

/// Records when the current findings were first seen; a fingerprint already recorded keeps its time.
async fn remember_first_seen(
    tx: &deadpool_postgres::Transaction<'_>,
    job: &ScanJob,
    rows: &[FindingRow<'_>],
) -> Result<(), JobError> {
    // Sorted: two scans of the same instance committing at once take the key locks in the same order, so
    // neither waits for the other in a cycle.
    let mut current: Vec<(&str, DateTime<Utc>)> = rows
        .iter()
        .filter(|(_, _, lifecycle)| *lifecycle != Lifecycle::Resolved)
        .map(|(finding, at, _)| (finding.fingerprint.as_str(), *at))
        .collect();
    if current.is_empty() {
        return Ok(());
    }
    current.sort_unstable();
    current.dedup_by_key(|(fingerprint, _)| *fingerprint);
    let (fingerprints, first_seen): (Vec<&str>, Vec<DateTime<Utc>>) = current.into_iter().unzip();
    let statement = tx
        .prepare_cached(
            "INSERT INTO finding_first_seen (project_id, instance_name, fingerprint, first_seen_at)
             SELECT $1, $2, * FROM unnest($3::text[], $4::timestamptz[])
             ON CONFLICT (project_id, instance_name, fingerprint) DO NOTHING",
        )
        .await?;
    tx.execute(&statement, &[&job.project_id.as_str(), &job.instance_name.as_str(), &fingerprints, &first_seen])
        .await?;
    Ok(())
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
