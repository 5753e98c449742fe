//! Processes one job: decode -> load credential and artifact -> decrypt -> fetch -> evaluate -> persist
//! (result and event in one transaction). Returns a [`JobOutcome`]; the consumer maps it to ack / retry /
//! dead-letter and never looks inside.
//!
//! Each database step takes its own pooled connection and returns it at once: no connection is held across
//! the Clerk calls, so the pool size does not cap how many jobs wait on Clerk at the same time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use deadpool_postgres::Pool;
use tokio::sync::Notify;
use tracing::{Instrument, error, info, info_span, warn};

use crate::audit::artifact::StoredArtifact;
use crate::audit::checks::{CheckInput, CheckSettings, RepoEvidence};
use crate::audit::evaluate::{Evaluation, evaluate};
use crate::audit::facts::{CallTally, ClerkFacts};
use crate::credentials::Kms;
use crate::error::{FailureReason, JobError};
use crate::fetch::dns::DnsLookup;
use crate::fetch::http::{HttpLayer, ScanCalls};
use crate::fetch::{FETCH_DEADLINE, gather};
use crate::intake::broker;
use crate::intake::job::{self, ScanJob};
use crate::intake::{DeliveryInfo, JobOutcome, ProcessJob};
use crate::ops::metrics::{Metrics, Stage};
use crate::outbox::events::{self, CompletedScan, EventTarget, ScanRef};
use crate::store::retries::{self, ScheduledRetry};
use crate::store::scans::{self, Committed, CompletedRecord, ScanStart};
use crate::store::{artifacts, credentials};

/// How long recording a retry may take before the job goes to the delay queue without the record.
const RECORD_RETRY_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// The first retry's delay (`worker.retry_delay_secs`), doubled per attempt.
    pub retry_delay_secs: u64,
    /// When a database failure was last seen (a retry that could not be recorded; the supervisor's probe
    /// marks it too): the retry sweep holds off until the database has been reachable for its grace period.
    pub database_failures: Arc<crate::store::LastFailure>,
    /// Retries that could not be recorded, until the sweep can postpone the scans' earlier records.
    pub unrecorded_retries: Arc<retries::Unrecorded>,
    /// Woken after each commit so the outbox relay publishes at once.
    pub relay_wake: Arc<Notify>,
    /// The worker's Prometheus metrics (jobs are counted by the consumer).
    pub metrics: Arc<Metrics>,
}

impl ProcessJob for Pipeline {
    fn process<'a>(&'a self, body: &'a [u8], delivery: &'a DeliveryInfo) -> futures::future::BoxFuture<'a, JobOutcome> {
        Box::pin(Pipeline::process(self, body, delivery))
    }

    fn metrics(&self) -> Option<Arc<Metrics>> {
        Some(self.metrics.clone())
    }
}

/// What auditing one instance produced.
pub struct InstanceAudit {
    pub facts: ClerkFacts,
    /// The calls made, by allowlist row.
    pub calls: Vec<CallTally>,
    pub evaluation: Evaluation,
}

/// Fetches the instance's facts through `calls` (bounded by [`FETCH_DEADLINE`]) and runs every check: the
/// one audit path, shared by the worker and `clerk-audit audit`. `names` is the project and instance name
/// the findings' fingerprints are bound to.
pub async fn audit_instance(
    calls: &mut ScanCalls<'_>,
    dns: &DnsLookup,
    artifact: RepoEvidence<'_>,
    checks: &CheckSettings,
    names: (&str, &str),
) -> Result<InstanceAudit, JobError> {
    let started = Instant::now();
    let facts = tokio::time::timeout(FETCH_DEADLINE, gather(calls, dns, artifact.artifact()))
        .await
        .map_err(|_| JobError::transient(FailureReason::ClerkUnavailable, "fetching Clerk facts took too long"))??;
    calls.observe_stage(Stage::Clerk, started.elapsed());
    let started = Instant::now();
    let input = CheckInput { facts: &facts, artifact, settings: checks };
    let evaluation = evaluate(&input, names.0, names.1);
    calls.observe_stage(Stage::Evaluate, started.elapsed());
    Ok(InstanceAudit { calls: calls.tallies(), facts, evaluation })
}

fn scan_ref(job: &ScanJob) -> ScanRef<'_> {
    ScanRef { scan_id: job.scan_id, project_id: job.project_id.as_str(), instance_name: job.instance_name.as_str() }
}

impl Pipeline {
    /// Processes one job. Never panics on input.
    pub async fn process(&self, body: &[u8], delivery: &DeliveryInfo) -> JobOutcome {
        let started = Instant::now();
        let decoded = job::decode(body, self.max_job_bytes);
        self.metrics.stage(Stage::Decode, started.elapsed());
        let job = match decoded {
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
        crate::ops::telemetry::continue_trace(&span, delivery.traceparent.as_deref());
        self.process_job(&job, body, delivery).instrument(span).await
    }

    async fn process_job(&self, job: &ScanJob, body: &[u8], delivery: &DeliveryInfo) -> JobOutcome {
        let started_at = Utc::now();
        let result = self.run(job, delivery, started_at).await;
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(JobError::Permanent { reason, detail }) => {
                warn!(reason = reason.code(), detail = %detail, "scan failed permanently");
                match self.record_failure(job, delivery, started_at, reason, &detail).await {
                    Ok(Committed::Stored) => JobOutcome::Failed(reason),
                    Ok(Committed::AlreadyFinished) => JobOutcome::AlreadyFinished,
                    Err(error) => self.retry_or_give_up(job, body, delivery, started_at, error).await,
                }
            }
            Err(error) => self.retry_or_give_up(job, body, delivery, started_at, error).await,
        };
        info!(outcome = outcome.label(), "job done");
        outcome
    }

    /// A transient failure: retry later, unless the attempts ran out.
    async fn retry_or_give_up(
        &self,
        job: &ScanJob,
        body: &[u8],
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
        let delay = Duration::from_secs(broker::delay_for(self.retry_delay_secs, delivery.attempt, delay));
        self.record_retry(ScheduledRetry {
            scan_id: job.scan_id,
            attempt: delivery.attempt + 1,
            delay,
            body,
            traceparent: delivery.traceparent.as_deref(),
        })
        .await;
        JobOutcome::RetryLater { reason, detail, delay: Some(delay) }
    }

    /// Records a retry before the consumer copies the job to its delay queue, so that the sweep
    /// ([`crate::outbox::resend`]) sends the job again if the broker never returns it. Best effort: when the
    /// database is what failed, the job still goes to the delay queue, with the broker's guarantee alone.
    async fn record_retry(&self, retry: ScheduledRetry<'_>) {
        let recorded = tokio::time::timeout(RECORD_RETRY_TIMEOUT, async {
            let client = self.pool.get().await?;
            retries::schedule(&client, &retry).await?;
            Ok::<_, JobError>(())
        })
        .await
        .unwrap_or_else(|_| Err(JobError::transient(FailureReason::Internal, "database: no answer in time")));
        if let Err(error) = recorded {
            self.database_failures.mark();
            self.unrecorded_retries.keep(retry.scan_id, std::time::SystemTime::now() + retry.delay);
            warn!(error = %error, "could not record the retry; only the delay queue will bring the job back");
        }
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
        let span = info_span!("persist", status = "failed");
        let traceparent = crate::ops::telemetry::traceparent(&span).or_else(|| delivery.traceparent.clone());
        let committed = self
            .bounded(
                async {
                    let mut client = self.pool.get().await?;
                    // The scan row may not exist yet if the failure came before it was registered.
                    scans::ensure(&client, job).await?;
                    scans::fail(&mut client, job, started_at, reason, detail, |now| {
                        events::failed_event(&self.events, scan_ref(job), reason, traceparent.as_deref(), now)
                    })
                    .await
                }
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
        // One connection for the three statements, returned before the Clerk calls. They go out together (one
        // round trip: tokio-postgres pipelines a connection's queries in flight at once); the credential and
        // artifact answers are dropped unused when the scan had finished already.
        let (start, credential, artifact) = self
            .bounded(async {
                let started = Instant::now();
                let client = self.pool.get().await?;
                let credential = async {
                    let credential = credentials::load(&client, job.key_ref, &job.project_id).await;
                    self.metrics.stage(Stage::LoadCredential, started.elapsed());
                    credential
                };
                // Loaded before the fetch: a `whsec_` written in the repo is what allows reading a signing
                // secret.
                let artifact = async {
                    let artifact = artifacts::load(&client, &job.project_id, job.repo_scan_id.as_deref()).await;
                    self.metrics.stage(Stage::LoadArtifact, started.elapsed());
                    artifact
                };
                let (start, credential, artifact) = tokio::join!(scans::begin(&client, job), credential, artifact);
                Ok(match start? {
                    ScanStart::Finished => (ScanStart::Finished, None, StoredArtifact::Absent),
                    running => (running, Some(credential?), artifact?),
                })
            })
            .await?;
        let (ScanStart::Running { .. }, Some(credential)) = (start, credential) else {
            info!("scan already finished; acknowledging the duplicate");
            return Ok(JobOutcome::AlreadyFinished);
        };
        // The key lives only inside this block: decrypted, used for the Backend API calls, dropped.
        let InstanceAudit { facts, calls, evaluation } = {
            let started = Instant::now();
            let key = self.kms.decrypt(&credential).await?;
            self.metrics.stage(Stage::Decrypt, started.elapsed());
            let mut calls = self.http.session(format!("{}/{}", job.project_id, job.instance_name), &key);
            let names = (job.project_id.as_str(), job.instance_name.as_str());
            audit_instance(&mut calls, &self.dns, RepoEvidence::of(&artifact), &self.checks, names).await?
        };
        let instance = facts.summary();
        let span = info_span!("persist", status = "completed");
        let traceparent = crate::ops::telemetry::traceparent(&span).or_else(|| delivery.traceparent.clone());
        let record = CompletedRecord { job, started_at, evaluation: &evaluation, instance: &instance, calls: &calls };
        let published = CompletedScan {
            scan: scan_ref(job),
            evaluation: &evaluation,
            instance: &instance,
            calls: &calls,
            traceparent: traceparent.as_deref(),
        };
        let committed = self
            .bounded(
                async {
                    let started = Instant::now();
                    let mut client = self.pool.get().await?;
                    let committed = scans::complete(&mut client, record, |history, now| {
                        events::completed_event(&self.events, &published, history, now)
                    })
                    .await;
                    self.metrics.stage(Stage::Persist, started.elapsed());
                    committed
                }
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
