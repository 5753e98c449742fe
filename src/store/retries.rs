//! `scan_retries`: the retries handed to a broker delay queue, and the sweep that finds the ones the broker
//! did not return ([`crate::outbox::resend`] sends those again).
//!
//! A retry is *overdue* when its `due_at` is more than the grace period past. It was *returned* when an
//! attempt began on the scan since it was scheduled (`scans.attempts` moved past `begun_attempts`: the
//! delayed copy, or any other copy, reached the worker) or when the scan is no longer running. Only an overdue
//! retry that was not returned is sent again. No statement of a job's normal path reads or writes this table:
//! the row is written only when a job is delayed.

use std::time::{Duration, SystemTime};

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

/// The most retries kept while they cannot be recorded (a long database outage under load); beyond it the
/// oldest are dropped, and their scans' records may be judged before the broker returns them (a duplicate).
const UNRECORDED_CAP: usize = 100_000;

/// Retries this process could not record (the database failed), kept in memory until it answers again. A
/// scan's earlier record is then stale: the job came back and went to a delay queue again, but the record
/// still shows the earlier due time and no attempt registered since, which looks lost. [`postpone`] moves
/// such records to the later copy's due time before any replica judges them.
#[derive(Debug, Default)]
pub struct Unrecorded {
    retries: std::sync::Mutex<std::collections::VecDeque<(Uuid, SystemTime)>>,
}

impl Unrecorded {
    /// Keeps a retry of `scan_id` whose delayed copy is due at `due`.
    pub fn keep(&self, scan_id: Uuid, due: SystemTime) {
        let mut retries = self.retries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if retries.len() >= UNRECORDED_CAP {
            retries.pop_front();
        }
        retries.push_back((scan_id, due));
    }

    /// Takes every kept retry.
    pub fn take(&self) -> Vec<(Uuid, SystemTime)> {
        std::mem::take(&mut *self.retries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())).into()
    }

    /// Puts back retries that could not be postponed yet.
    pub fn restore(&self, retries: Vec<(Uuid, SystemTime)>) {
        for (scan_id, due) in retries {
            self.keep(scan_id, due);
        }
    }
}

/// Moves the records of these scans to at least the given due times (never earlier); answers how many records
/// moved. A scan without a record is left alone.
pub async fn postpone(client: &Client, retries: &[(Uuid, SystemTime)]) -> Result<u64, tokio_postgres::Error> {
    // The latest due time per scan: an UPDATE ... FROM updates a row once, from any one matching source row.
    let mut latest: std::collections::HashMap<Uuid, SystemTime> = std::collections::HashMap::new();
    for (id, due) in retries {
        let entry = latest.entry(*id).or_insert(*due);
        *entry = (*entry).max(*due);
    }
    let now = SystemTime::now();
    let ids: Vec<Uuid> = latest.keys().copied().collect();
    // Seconds from now (negative: already due), so the database's clock places them.
    let in_secs: Vec<f64> = ids
        .iter()
        .map(|id| match latest[id].duration_since(now) {
            Ok(ahead) => ahead.as_secs_f64(),
            Err(behind) => -behind.duration().as_secs_f64(),
        })
        .collect();
    client
        .execute(
            "UPDATE scan_retries r SET due_at = greatest(r.due_at, now() + make_interval(secs => u.secs))
               FROM unnest($1::uuid[], $2::float8[]) AS u(id, secs)
              WHERE r.scan_id = u.id",
            &[&ids, &in_secs],
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unrecorded_retries_are_taken_once_and_put_back_when_they_could_not_be_postponed() {
        let unrecorded = Unrecorded::default();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let due = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        unrecorded.keep(a, due);
        unrecorded.keep(b, due);
        let taken = unrecorded.take();
        assert_eq!(taken, vec![(a, due), (b, due)]);
        assert!(unrecorded.take().is_empty());
        unrecorded.restore(taken.clone());
        assert_eq!(unrecorded.take(), taken);
    }

    #[test]
    fn past_the_cap_the_oldest_unrecorded_retry_is_dropped() {
        let unrecorded = Unrecorded::default();
        let due = SystemTime::UNIX_EPOCH;
        for n in 0..=UNRECORDED_CAP as u128 {
            unrecorded.keep(Uuid::from_u128(n), due);
        }
        let kept = unrecorded.take();
        assert_eq!(kept.len(), UNRECORDED_CAP);
        assert_eq!(kept.first(), Some(&(Uuid::from_u128(1), due)));
        assert_eq!(kept.last(), Some(&(Uuid::from_u128(UNRECORDED_CAP as u128), due)));
    }
}
