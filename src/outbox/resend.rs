//! The retry sweep: sends again the delayed jobs the broker did not return.
//!
//! A transiently failed job is copied to a delay queue, a quorum queue whose messages expire and are
//! dead-lettered back to the jobs queue. A chaos run lost 51 delayed jobs across broker restarts, and
//! RabbitMQ's tracker has open bugs of the kind (messages of a quorum queue with a TTL that never expire; an
//! at-least-once dead-letter worker that does not come back; docs/delivery.md). So
//! the pipeline records each retry in `scan_retries` before the copy is published
//! ([`crate::store::retries`]), and every replica runs this sweep. A pass claims the retries more than
//! `worker.retry_sweep_grace_secs` past due; those that came back (an attempt began since) are deleted, the
//! others are published to the jobs queue (persistent, mandatory, confirmed; through the default exchange, as
//! the delay queues do, so the scans exchange's other consumers never see a retry) and deleted once confirmed.
//!
//! A copy the broker returns after all is a duplicate delivery, which the scan row settles: acked as already
//! finished, or, when both copies run at once, one of them commits.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel};
use tokio_util::sync::CancellationToken;
use tracing::warn;
use uuid::Uuid;

use crate::intake::broker::{ATTEMPT_HEADER, PublishError, confirmed, publish_mandatory, text_value, with_headers};
use crate::ops::metrics::Metrics;
use crate::store::LastFailure;
use crate::store::retries::{self, OverdueRetry, Unrecorded};

/// How many retries one pass claims.
const BATCH: i64 = 100;
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// What the worker logs (WARN) for each job it sends again: what the chaos run and the tests count.
pub const RESENT_LOG: &str = "the broker did not return a delayed job; sent it to the jobs queue again";
/// Header set on a job sent again by the sweep (its value: how many seconds past due it was).
pub const RESENT_HEADER: &str = "x-clerk-audit-resent-overdue-secs";

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("broker: {0}")]
    Broker(#[source] PublishError),
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepPass {
    /// Overdue retries the broker had returned: deleted.
    pub returned: usize,
    /// Overdue retries it had not: published to the jobs queue again and deleted.
    pub resent: usize,
}

impl SweepPass {
    fn claimed(&self) -> usize {
        self.returned + self.resent
    }
}

/// Where the sweep publishes and how long it waits for a delayed job before sending it again.
#[derive(Debug, Clone)]
pub struct SweepTarget {
    /// The jobs queue (published to through the default exchange).
    pub jobs_queue: String,
    pub grace: Duration,
    /// Database failures this process saw. A delayed job that came back during an outage and failed again
    /// before its attempt was registered went back to a delay queue while its record could not be updated: its
    /// record looks lost while the broker is doing its work. So no pass runs until the database has been
    /// reachable for the whole grace period (the chaos run's first long pass sent five such jobs twice).
    pub database_failures: Arc<LastFailure>,
    /// Retries this process could not record: each pass first moves those scans' earlier records to the later
    /// copies' due times, so that no replica takes a stale record for a lost one (the hold-off above only
    /// covers this process; the second long chaos run sent 17 jobs twice that way).
    pub unrecorded: Arc<Unrecorded>,
}

fn job_properties(retry: &OverdueRetry) -> BasicProperties {
    let base = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id(retry.scan_id.to_string().into());
    let mut headers = vec![
        (ATTEMPT_HEADER, AMQPValue::LongLongInt(i64::from(retry.attempt))),
        (RESENT_HEADER, AMQPValue::LongLongInt(retry.overdue.as_secs() as i64)),
    ];
    if let Some(traceparent) = retry.traceparent.as_deref() {
        headers.push(("traceparent", text_value(traceparent)));
    }
    with_headers(&base, &headers)
}

/// One pass: claims up to a batch of overdue retries, deletes the returned ones, sends the lost ones again.
/// A broker failure ends the publishing early; what was not confirmed stays for the next pass.
pub async fn sweep_once(pool: &Pool, channel: &Channel, target: &SweepTarget) -> Result<SweepPass, SweepError> {
    let unrecorded = target.unrecorded.take();
    if !unrecorded.is_empty() {
        let postponed = async { retries::postpone(&*pool.get().await?, &unrecorded).await.map_err(SweepError::from) };
        if let Err(error) = postponed.await {
            target.unrecorded.restore(unrecorded);
            return Err(error);
        }
    }
    if !target.database_failures.clear_for(target.grace) {
        return Ok(SweepPass::default());
    }
    let mut client = pool.get().await?;
    let batch = retries::claim_overdue(&mut client, target.grace, BATCH).await?;
    let mut settled: Vec<Uuid> = Vec::with_capacity(batch.retries.len());
    let mut pass = SweepPass::default();
    let mut pending = Vec::new();
    let mut broker_error = None;
    for retry in &batch.retries {
        if !retry.lost {
            settled.push(retry.scan_id);
            pass.returned += 1;
            continue;
        }
        match publish_mandatory(channel, "", &target.jobs_queue, &retry.body, job_properties(retry)).await {
            Ok(confirm) => pending.push((retry, confirm)),
            Err(error) => {
                // The channel is likely gone: the rest waits for the next pass.
                broker_error = Some(error);
                break;
            }
        }
    }
    for (retry, confirm) in pending {
        match confirmed(confirm, CONFIRM_TIMEOUT).await {
            Ok(()) => {
                warn!(
                    scan_id = %retry.scan_id,
                    attempt = retry.attempt,
                    overdue_secs = retry.overdue.as_secs(),
                    "{RESENT_LOG}"
                );
                settled.push(retry.scan_id);
                pass.resent += 1;
            }
            Err(error) => {
                warn!(scan_id = %retry.scan_id, error = %error, "could not send a delayed job again; will retry");
                broker_error.get_or_insert(error);
            }
        }
    }
    batch.finish(&settled).await?;
    match broker_error {
        Some(error) if pass.resent == 0 => Err(SweepError::Broker(error)),
        _ => Ok(pass),
    }
}

/// Sweeps every `interval` until `shutdown` fires or the broker channel is closed (the caller reconnects).
/// A database outage only delays the sweep.
pub async fn run(
    pool: Pool,
    channel: Channel,
    target: SweepTarget,
    interval: Duration,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(), SweepError> {
    loop {
        loop {
            match sweep_once(&pool, &channel, &target).await {
                Ok(pass) => {
                    metrics.retries_resent(pass.resent as u64);
                    if pass.claimed() < BATCH as usize {
                        break;
                    }
                }
                Err(error @ (SweepError::Database(_) | SweepError::Pool(_))) => {
                    target.database_failures.mark();
                    warn!(error = %error, "retry sweep: database unavailable");
                    break;
                }
                Err(SweepError::Broker(error)) => {
                    if !channel.status().connected() {
                        return Err(SweepError::Broker(error));
                    }
                    warn!(error = %error, "retry sweep: publish failed; will retry");
                    break;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::broker::{header_text, header_u32};

    #[test]
    fn a_job_sent_again_carries_its_attempt_its_trace_and_how_late_it_was() {
        let retry = OverdueRetry {
            scan_id: Uuid::from_u128(7),
            attempt: 3,
            body: b"{}".to_vec(),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            lost: true,
            overdue: Duration::from_millis(42_900),
        };
        let properties = job_properties(&retry);
        assert_eq!(header_u32(&properties, ATTEMPT_HEADER), Some(3));
        assert_eq!(header_u32(&properties, RESENT_HEADER), Some(42));
        assert_eq!(
            header_text(&properties, "traceparent").as_deref(),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        assert_eq!(properties.message_id().as_ref().map(|id| id.as_str()), Some(retry.scan_id.to_string().as_str()));
        assert_eq!(properties.content_type().as_ref().map(|t| t.as_str()), Some("application/json"));

        let untraced = OverdueRetry { traceparent: None, ..retry };
        assert_eq!(header_text(&job_properties(&untraced), "traceparent"), None);
    }
}
