//! `scan_retries`: the retries handed to a broker delay queue, and the sweep that finds the ones the broker
//! did not return ([`crate::outbox::resend`] sends those again).
//!
//! A retry is *overdue* when its `due_at` is more than the grace period past. It was *returned* when an
//! attempt began on the scan since it was scheduled (`scans.attempts` moved past `begun_attempts`: the
//! delayed copy, or any other copy, reached the worker) or when the scan is no longer running. Only an overdue
//! retry that was not returned is sent again. No statement of a job's normal path reads or writes this table:
//! the row is written only when a job is delayed.

use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Transaction};
use uuid::Uuid;

/// A retry to record: the delayed copy of a job.
#[derive(Debug, Clone, Copy)]
pub struct ScheduledRetry<'a> {
    pub scan_id: Uuid,
    /// The attempt number the delayed copy carries.
    pub attempt: u32,
    /// How long the copy waits in the delay queue.
    pub delay: Duration,
    /// The job message as delivered.
    pub body: &'a [u8],
    pub traceparent: Option<&'a str>,
}

/// Records `retry`, replacing an earlier one of the same scan. `begun_attempts` is read from the scan row in
/// the same statement (0 when the scan has no row yet: the failure came before it was registered).
pub async fn schedule(client: &Client, retry: &ScheduledRetry<'_>) -> Result<(), tokio_postgres::Error> {
    let attempt = i32::try_from(retry.attempt).unwrap_or(i32::MAX);
    client
        .execute(
            "INSERT INTO scan_retries (scan_id, attempt, due_at, begun_attempts, body, traceparent)
             VALUES ($1, $2, now() + make_interval(secs => $3), COALESCE((SELECT attempts FROM scans WHERE id = $1), 0),
                     $4, $5)
             ON CONFLICT (scan_id) DO UPDATE
                SET attempt = EXCLUDED.attempt, due_at = EXCLUDED.due_at, begun_attempts = EXCLUDED.begun_attempts,
                    body = EXCLUDED.body, traceparent = EXCLUDED.traceparent, scheduled_at = now()",
            &[&retry.scan_id, &attempt, &retry.delay.as_secs_f64(), &retry.body, &retry.traceparent],
        )
        .await?;
    Ok(())
}

/// An overdue retry, as the sweep reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverdueRetry {
    pub scan_id: Uuid,
    pub attempt: u32,
    pub body: Vec<u8>,
    pub traceparent: Option<String>,
    /// No attempt began since the retry was scheduled and the scan is still running (or has no row): the
    /// broker did not return the delayed copy, so it must be sent again.
    pub lost: bool,
    /// How long past its due time.
    pub overdue: Duration,
}

/// Overdue retries claimed by one sweep: locked (`FOR UPDATE SKIP LOCKED`, so replicas never send one twice
/// at once) until [`OverdueBatch::finish`] deletes the ones settled, or until dropped (nothing changes).
pub struct OverdueBatch<'c> {
    tx: Transaction<'c>,
    pub retries: Vec<OverdueRetry>,
}

/// Claims up to `limit` retries due more than `grace` ago, the longest overdue first.
pub async fn claim_overdue(
    client: &mut Client,
    grace: Duration,
    limit: i64,
) -> Result<OverdueBatch<'_>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let grace_secs = grace.as_secs_f64();
    let params: [&(dyn ToSql + Sync); 2] = [&grace_secs, &limit];
    let rows = tx
        .query(
            "SELECT r.scan_id, r.attempt, r.body, r.traceparent,
                    (s.id IS NULL OR (s.status = 'running' AND s.attempts <= r.begun_attempts)) AS lost,
                    extract(epoch FROM now() - r.due_at)::float8 AS overdue_secs
               FROM scan_retries r LEFT JOIN scans s ON s.id = r.scan_id
              WHERE r.due_at < now() - make_interval(secs => $1)
              ORDER BY r.due_at LIMIT $2
                FOR UPDATE OF r SKIP LOCKED",
            &params,
        )
        .await?;
    let retries = rows
        .into_iter()
        .map(|row| OverdueRetry {
            scan_id: row.get("scan_id"),
            attempt: row.get::<_, i32>("attempt").max(1) as u32,
            body: row.get("body"),
            traceparent: row.get("traceparent"),
            lost: row.get("lost"),
            overdue: Duration::try_from_secs_f64(row.get::<_, f64>("overdue_secs")).unwrap_or_default(),
        })
        .collect();
    Ok(OverdueBatch { tx, retries })
}

impl OverdueBatch<'_> {
    /// Deletes the settled retries (returned, or sent again and confirmed) and commits; the others stay for
    /// the next sweep.
    pub async fn finish(self, settled: &[Uuid]) -> Result<(), tokio_postgres::Error> {
        if !settled.is_empty() {
            self.tx.execute("DELETE FROM scan_retries WHERE scan_id = ANY($1)", &[&settled]).await?;
        }
        self.tx.commit().await
    }
}
