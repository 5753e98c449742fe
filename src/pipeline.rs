//! Processes one job: decode -> credential -> decrypt -> fetch -> artifact -> evaluate -> persist.
//! Returns a [`JobOutcome`]; the consumer maps it to ack / retry / dead-letter and never looks inside.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use deadpool_postgres::Pool;
use tokio::sync::Notify;
use tracing::{Instrument, error, info, info_span, warn};

use crate::checks::{CheckInput, CheckSettings};
use crate::decrypt::{Kms, load_credential};
use crate::error::{FailureReason, JobError};
use crate::evaluate::evaluate;
use crate::events::InstanceSummary;
use crate::fetch::dns::DnsLookup;
use crate::fetch::http::HttpLayer;
use crate::fetch::{FETCH_DEADLINE, gather};
use crate::job::{self, PoisonReason, ScanJob};
use crate::persist::{self, Committed, CompletedScan, EventTarget, ScanStart};

/// What became of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Results and the completed event are committed.
    Completed,
    /// The scan had already finished (redelivery or a concurrent copy): nothing was done.
    AlreadyFinished,
    /// A permanent failure was committed with its failed event.
    Failed(FailureReason),
    /// The message can never be processed: dead-letter it with this reason.
    Poison(PoisonReason),
    /// A transient failure: try again later, no earlier than `delay` when given.
    RetryLater { reason: FailureReason, detail: String, delay: Option<Duration> },
    /// Attempts ran out: the failed event is committed (when the database allowed); dead-letter it.
    GaveUp { reason: FailureReason, detail: String },
}

/// Everything a job needs, shared by all jobs of the process.
pub struct Pipeline {
    pub pool: Pool,
    pub kms: Kms,
    pub http: HttpLayer,
    pub dns: DnsLookup,
    pub checks: CheckSettings,
    pub events: EventTarget,
    pub max_job_bytes: usize,
    pub max_attempts: u32,
    /// Woken after each commit so the outbox relay publishes at once.
    pub relay_wake: Arc<Notify>,
    /// The worker's Prometheus metrics (jobs are counted by the consumer).
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// What the consumer knows of a delivery besides its body.
#[derive(Debug, Clone, Default)]
pub struct DeliveryInfo {
    /// The worker's attempt count from the message header (1 on the first delivery).
    pub attempt: u32,
    pub traceparent: Option<String>,
}

impl Pipeline {
    /// Processes one job. Never panics on input.
    pub async fn process(&self, body: &[u8], delivery: &DeliveryInfo) -> JobOutcome {
        let job = match job::decode(body, self.max_job_bytes) {
            Ok(job) => job,
            Err(reason) => {
                warn!(reason = reason.code(), detail = %reason, "poison message");
                return JobOutcome::Poison(reason);
            }
        };
        let span = info_span!(
            "job",
            scan_id = %job.scan_id,
            project_id = %job.project_id,
            instance = %job.instance_name,
            trace_id = tracing::field::Empty,
        );
        crate::telemetry::continue_trace(&span, delivery.traceparent.as_deref());
        self.process_job(&job, delivery).instrument(span).await
    }

    async fn process_job(&self, job: &ScanJob, delivery: &DeliveryInfo) -> JobOutcome {
        let started_at = Utc::now();
        let result = self.run(job, delivery, started_at).await;
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(JobError::Permanent { reason, detail }) => {
                warn!(reason = reason.code(), detail = %detail, "scan failed permanently");
                match self.record_failure(job, delivery, started_at, reason, &detail).await {
                    Ok(Committed::Stored) => JobOutcome::Failed(reason),
                    Ok(Committed::AlreadyFinished) => JobOutcome::AlreadyFinished,
                    Err(error) => self.retry_or_give_up(job, delivery, started_at, error).await,
                }
            }
            Err(error) => self.retry_or_give_up(job, delivery, started_at, error).await,
        };
        info!(outcome = ?outcome_label(&outcome), "job done");
        outcome
    }

    /// A transient failure: retry later, unless the attempts ran out.
    async fn retry_or_give_up(
        &self,
        job: &ScanJob,
        delivery: &DeliveryInfo,
        started_at: chrono::DateTime<Utc>,
        error: JobError,
    ) -> JobOutcome {
        let (reason, detail, delay) = match error {
            JobError::Transient { reason, detail, retry_after } => (reason, detail, retry_after),
            JobError::Permanent { reason, detail } => (reason, detail, None),
        };
        if delivery.attempt >= self.max_attempts {
            error!(reason = reason.code(), detail = %detail, attempts = delivery.attempt, "attempts exhausted");
            if let Err(store_error) = self.record_failure(job, delivery, started_at, reason, &detail).await {
                error!(error = %store_error, "could not store the failure; dead-lettering anyway");
            }
            return JobOutcome::GaveUp { reason, detail };
        }
        warn!(reason = reason.code(), detail = %detail, attempt = delivery.attempt, "transient failure; will retry");
        JobOutcome::RetryLater { reason, detail, delay }
    }

    /// Bounds database work from the client side. `statement_timeout` and `tcp_user_timeout` do not help
    /// when the server (or something in between) keeps the connection open without answering: without this
    /// bound such a job would hang, holding its slot, forever. Twice the database timeout, so the server's
    /// own timeouts answer first when they can.
    async fn bounded<T>(&self, work: impl std::future::Future<Output = Result<T, JobError>>) -> Result<T, JobError> {
        let limit = self.pool.timeouts().wait.unwrap_or(Duration::from_secs(10)) * 2;
        tokio::time::timeout(limit, work)
            .await
            .map_err(|_| JobError::transient(FailureReason::Internal, "database: no answer in time"))?
    }

    async fn record_failure(
        &self,
        job: &ScanJob,
        delivery: &DeliveryInfo,
        started_at: chrono::DateTime<Utc>,
        reason: FailureReason,
        detail: &str,
    ) -> Result<Committed, JobError> {
        let mut client = self.pool.get().await?;
        // The scan row may not exist yet if the failure came before it was registered.
        self.bounded(persist::ensure_scan(&client, job)).await?;
        let span = info_span!("persist", status = "failed");
        let traceparent = crate::telemetry::traceparent(&span).or_else(|| delivery.traceparent.clone());
        let committed = self
            .bounded(
                persist::fail_scan(&mut client, job, started_at, reason, detail, &self.events, traceparent)
                    .instrument(span),
            )
            .await?;
        self.relay_wake.notify_one();
        Ok(committed)
    }

    async fn run(
        &self,
        job: &ScanJob,
        delivery: &DeliveryInfo,
        started_at: chrono::DateTime<Utc>,
    ) -> Result<JobOutcome, JobError> {
        let mut client = self.pool.get().await?;
        if self.bounded(persist::begin_scan(&client, job)).await? == ScanStart::Finished {
            info!("scan already finished; acknowledging the duplicate");
            return Ok(JobOutcome::AlreadyFinished);
        }
        let credential = self.bounded(load_credential(&client, job.key_ref, &job.project_id)).await?;
        // Loaded before the fetch: a `whsec_` written in the repo is what allows reading a signing secret.
        let artifact =
            self.bounded(persist::load_artifact(&client, &job.project_id, job.repo_scan_id.as_deref())).await?;
        // The key lives only inside this block: decrypted, used for the Backend API calls, dropped.
        let (facts, calls) = {
            let key = self.kms.decrypt(&credential).await?;
            let mut calls = self.http.session(format!("{}/{}", job.project_id, job.instance_name), &key);
            let facts =
                tokio::time::timeout(FETCH_DEADLINE, gather(&mut calls, &self.dns, artifact.as_ref())).await.map_err(
                    |_| JobError::transient(FailureReason::ClerkUnavailable, "fetching Clerk facts took too long"),
                )??;
            (facts, calls.tallies())
        };
        let input = CheckInput { facts: &facts, artifact: artifact.as_ref(), settings: &self.checks };
        let evaluation = evaluate(&input, job.project_id.as_str(), job.instance_name.as_str());
        let instance = InstanceSummary {
            kind: facts.instance.environment.as_str().to_owned(),
            user_count: facts.user_count,
            domain: facts.primary_domain.as_ref().map(|d| d.name.clone()),
        };
        let span = info_span!("persist", status = "completed");
        let traceparent = crate::telemetry::traceparent(&span).or_else(|| delivery.traceparent.clone());
        let committed = self
            .bounded(
                persist::complete_scan(
                    &mut client,
                    CompletedScan {
                        job,
                        started_at,
                        evaluation: &evaluation,
                        instance,
                        calls,
                        target: &self.events,
                        traceparent,
                    },
                )
                .instrument(span),
            )
            .await?;
        self.relay_wake.notify_one();
        Ok(match committed {
            Committed::Stored => JobOutcome::Completed,
            Committed::AlreadyFinished => JobOutcome::AlreadyFinished,
        })
    }
}

/// A short label of an outcome, for logs and metrics.
pub fn outcome_label(outcome: &JobOutcome) -> &'static str {
    match outcome {
        JobOutcome::Completed => "completed",
        JobOutcome::AlreadyFinished => "duplicate",
        JobOutcome::Failed(_) => "failed",
        JobOutcome::Poison(_) => "poison",
        JobOutcome::RetryLater { .. } => "retried",
        JobOutcome::GaveUp { .. } => "dead_lettered",
    }
}
