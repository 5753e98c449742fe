//! Prometheus metrics of one worker, served as text at `/metrics` on the ops port.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `clerk_audit_jobs_total` | counter | `outcome` (completed, failed, dead_lettered, retried, poison, duplicate), `reason` |
//! | `clerk_audit_job_duration_seconds` | histogram | `outcome` |
//! | `clerk_audit_jobs_in_flight` | gauge | |
//! | `clerk_audit_stage_duration_seconds` | histogram | `stage` (see [`Stage`]) |
//! | `clerk_audit_outbound_calls_total` | counter | `row`, `name` (allowlist), `status` (HTTP status, `timeout`, `error`, DNS outcome) |
//! | `clerk_audit_kms_calls_total` | counter | `outcome` (ok, throttled, unavailable, refused, unreachable, error) |
//! | `clerk_audit_outbox_backlog` | gauge | unsent outbox rows (shared by all replicas: aggregate with `max`) |
//! | `clerk_audit_outbox_oldest_age_seconds` | gauge | age of the oldest unsent row, 0 when none |
//! | `clerk_audit_outbox_pruned_rows_total` | counter | sent outbox rows deleted after `events.outbox_retention_hours` |
//! | `clerk_audit_ready` | gauge | 1 while `/readyz` answers 200 |
//! | `clerk_audit_broker_reconnects_total` | counter | broker sessions that ended and were retried |
//! | `clerk_audit_retries_resent_total` | counter | delayed jobs the broker did not return in time, sent to the jobs queue again |
//! | `clerk_audit_build_info` | gauge (1) | `version`, `git_sha` |
//!
//! A [`Metrics`] value owns its registry, so every worker (and every in-process test worker) counts on
//! its own. Components that are built without one (the CLI's KMS client, unit tests) get a detached
//! [`Metrics::default`] that nobody scrapes.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The commit the binary was built from: `GIT_SHA` at build time (the Dockerfile passes it), else
/// `unknown`.
pub const GIT_SHA: &str = match option_env!("GIT_SHA") {
    Some(sha) if !sha.is_empty() => sha,
    _ => "unknown",
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    row: u8,
    name: &'static str,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    git_sha: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The stages of a scan, each timed in `clerk_audit_stage_duration_seconds{stage}` (what the benchmark's
/// per-stage breakdown reads). `clerk` is the whole fetch, wall time: the DNS lookups run inside it, in
/// parallel with the Frontend API and Svix calls, and are also timed on their own as `dns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Parsing and validating the job message.
    Decode,
    /// Registering the scan and reading its credential row.
    LoadCredential,
    /// Reading the stored repo artifact.
    LoadArtifact,
    /// The KMS `Decrypt` call.
    Decrypt,
    /// Every Clerk, Svix and DNS call of the scan (wall time).
    Clerk,
    /// The email sender records' CNAME lookups (wall time, inside `clerk`).
    Dns,
    /// Running the checks.
    Evaluate,
    /// The transaction storing the result and its event.
    Persist,
    /// From the relay claiming an event to its row marked sent (the batch's time, counted per event).
    Publish,
}

impl Stage {
    pub const ALL: [Stage; 9] = [
        Stage::Decode,
        Stage::LoadCredential,
        Stage::LoadArtifact,
        Stage::Decrypt,
        Stage::Clerk,
        Stage::Dns,
        Stage::Evaluate,
        Stage::Persist,
        Stage::Publish,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::LoadCredential => "load_credential",
            Stage::LoadArtifact => "load_artifact",
            Stage::Decrypt => "decrypt",
            Stage::Clerk => "clerk",
            Stage::Dns => "dns",
            Stage::Evaluate => "evaluate",
            Stage::Persist => "persist",
            Stage::Publish => "publish",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

/// Every metric of the worker, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    jobs: Family<JobLabels, Counter>,
    job_duration: Family<OutcomeLabel, Histogram>,
    in_flight: Gauge,
    /// One histogram per [`Stage`], in [`Stage::ALL`] order, created up front so that timing a stage
    /// takes no lock.
    stages: Vec<Histogram>,
    outbound_calls: Family<CallLabels, Counter>,
    kms_calls: Family<OutcomeLabel, Counter>,
    outbox_backlog: Gauge,
    outbox_oldest_age: FloatGauge,
    outbox_pruned: Counter,
    ready: Gauge,
    broker_reconnects: Counter,
    retries_resent: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("clerk_audit");
        let jobs = Family::<JobLabels, Counter>::default();
        registry.register("jobs", "Jobs finished, by outcome and failure reason", jobs.clone());
        // 50 ms .. ~100 s: a scan is a few dozen Clerk calls under a rate limit.
        let job_duration = Family::<OutcomeLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.05, 2.0, 12))
        });
        registry.register_with_unit(
            "job_duration",
            "Time from taking a job to settling it, by outcome",
            prometheus_client::registry::Unit::Seconds,
            job_duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("jobs_in_flight", "Jobs being processed now", in_flight.clone());
        // 100 us .. ~3 s.
        let stage_family = Family::<StageLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
        });
        let stages = Stage::ALL
            .iter()
            .map(|stage| stage_family.get_or_create(&StageLabel { stage: stage.label() }).clone())
            .collect();
        registry.register_with_unit(
            "stage_duration",
            "Time spent in each stage of a scan",
            prometheus_client::registry::Unit::Seconds,
            stage_family,
        );
        let outbound_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "outbound_calls",
            "Outbound call attempts (Clerk, Svix, DNS) by allowlist row and status",
            outbound_calls.clone(),
        );
        let kms_calls = Family::<OutcomeLabel, Counter>::default();
        registry.register("kms_calls", "KMS Decrypt attempts by outcome", kms_calls.clone());
        let outbox_backlog = Gauge::default();
        registry.register(
            "outbox_backlog",
            "Outbox rows not yet published (shared by all replicas)",
            outbox_backlog.clone(),
        );
        let outbox_oldest_age = FloatGauge::default();
        registry.register_with_unit(
            "outbox_oldest_age",
            "Age of the oldest unpublished outbox row (0 when none)",
            prometheus_client::registry::Unit::Seconds,
            outbox_oldest_age.clone(),
        );
        let outbox_pruned = Counter::default();
        registry.register(
            "outbox_pruned_rows",
            "Sent outbox rows deleted after the retention period (events.outbox_retention_hours)",
            outbox_pruned.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 while the worker is connected to the broker and the database and consuming",
            ready.clone(),
        );
        let broker_reconnects = Counter::default();
        registry.register(
            "broker_reconnects",
            "Broker sessions lost or refused, then retried",
            broker_reconnects.clone(),
        );
        let retries_resent = Counter::default();
        registry.register(
            "retries_resent",
            "Delayed jobs the broker did not return within worker.retry_sweep_grace_secs, sent to the jobs queue again",
            retries_resent.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION"), git_sha: GIT_SHA }).set(1);
        registry.register("build_info", "Version and commit of the running binary (always 1)", build_info);
        Self {
            registry,
            jobs,
            job_duration,
            in_flight,
            stages,
            outbound_calls,
            kms_calls,
            outbox_backlog,
            outbox_oldest_age,
            outbox_pruned,
            ready,
            broker_reconnects,
            retries_resent,
        }
    }

    /// Marks a job in flight until the guard drops (also when its task is aborted).
    pub fn job_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.inc();
        InFlight { metrics: self.clone(), started: Instant::now() }
    }

    /// Counts a finished job and its duration, by outcome label and reason code (empty for none).
    pub fn job_finished(&self, outcome: &'static str, reason: &'static str, elapsed: Duration) {
        self.jobs.get_or_create(&JobLabels { outcome, reason }).inc();
        self.job_duration.get_or_create(&OutcomeLabel { outcome }).observe(elapsed.as_secs_f64());
    }

    /// Times one stage of a scan.
    pub fn stage(&self, stage: Stage, elapsed: Duration) {
        self.stages[stage as usize].observe(elapsed.as_secs_f64());
    }

    /// Counts one outbound call attempt.
    pub fn outbound_call(&self, row: u8, name: &'static str, status: &str) {
        self.outbound_calls.get_or_create(&CallLabels { row, name, status: status.to_owned() }).inc();
    }

    /// Counts one KMS call attempt.
    pub fn kms_call(&self, outcome: &'static str) {
        self.kms_calls.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    pub fn broker_reconnect(&self) {
        self.broker_reconnects.inc();
    }

    /// Counts delayed jobs sent again by [`crate::outbox::resend`].
    pub fn retries_resent(&self, jobs: u64) {
        self.retries_resent.inc_by(jobs);
    }

    /// Sets the outbox gauges (from [`crate::store::outbox::backlog`]).
    pub fn set_outbox(&self, unsent: i64, oldest_age_secs: Option<f64>) {
        self.outbox_backlog.set(unsent);
        self.outbox_oldest_age.set(oldest_age_secs.unwrap_or(0.0).max(0.0));
    }

    /// Counts sent outbox rows deleted by [`crate::outbox::retention`].
    pub fn outbox_pruned(&self, rows: u64) {
        self.outbox_pruned.inc_by(rows);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// A job in flight; see [`Metrics::job_started`].
#[must_use = "the job counts as in flight until the guard drops"]
pub struct InFlight {
    metrics: Arc<Metrics>,
    started: Instant,
}

impl InFlight {
    /// Counts the job's outcome and duration (since [`Metrics::job_started`]).
    pub fn finish(self, outcome: &'static str, reason: &'static str) {
        self.metrics.job_finished(outcome, reason, self.started.elapsed());
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
    }
}

/// One sample of an encoded exposition: the value of `name` with exactly these labels (any order).
/// For tests and scripts reading `/metrics`.
pub fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, label_text) = match series.split_once('{') {
            Some((metric, rest)) => (metric, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        if metric != name {
            return None;
        }
        let mut found: Vec<(String, String)> = label_text
            .split(',')
            .filter(|pair| !pair.is_empty())
            .filter_map(|pair| pair.split_once('=').map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned())))
            .collect();
        let mut wanted: Vec<(String, String)> =
            labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        found.sort();
        wanted.sort();
        (found == wanted).then(|| value.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FailureReason;

    #[test]
    fn counts_jobs_calls_and_exposes_build_info() {
        let metrics = Arc::new(Metrics::new());
        let guard = metrics.job_started();
        assert!(metrics.encode().contains("clerk_audit_jobs_in_flight 1\n"));
        guard.finish("failed", FailureReason::CredentialRevoked.code());
        metrics.job_finished("completed", "", Duration::from_millis(120));
        metrics.outbound_call(2, "users.count", "200");
        metrics.outbound_call(2, "users.count", "200");
        metrics.kms_call("ok");
        metrics.set_outbox(3, Some(12.5));
        let text = metrics.encode();
        assert_eq!(sample(&text, "clerk_audit_jobs_in_flight", &[]), Some(0.0), "{text}");
        assert_eq!(
            sample(&text, "clerk_audit_jobs_total", &[("outcome", "failed"), ("reason", "credential_revoked")]),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "clerk_audit_jobs_total", &[("reason", ""), ("outcome", "completed")]),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "clerk_audit_job_duration_seconds_count", &[("outcome", "completed")]),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                "clerk_audit_outbound_calls_total",
                &[("row", "2"), ("name", "users.count"), ("status", "200")]
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(sample(&text, "clerk_audit_kms_calls_total", &[("outcome", "ok")]), Some(1.0), "{text}");
        assert_eq!(sample(&text, "clerk_audit_outbox_backlog", &[]), Some(3.0), "{text}");
        assert_eq!(sample(&text, "clerk_audit_outbox_oldest_age_seconds", &[]), Some(12.5), "{text}");
        assert_eq!(
            sample(&text, "clerk_audit_build_info", &[("version", env!("CARGO_PKG_VERSION")), ("git_sha", GIT_SHA)]),
            Some(1.0),
            "{text}"
        );
        assert!(text.contains("# TYPE clerk_audit_job_duration_seconds histogram"), "{text}");
    }

    #[test]
    fn times_each_stage_on_its_own_series() {
        let metrics = Metrics::new();
        metrics.stage(Stage::Decrypt, Duration::from_millis(3));
        metrics.stage(Stage::Decrypt, Duration::from_millis(5));
        metrics.stage(Stage::Publish, Duration::from_millis(1));
        let text = metrics.encode();
        let count = |stage: &str| sample(&text, "clerk_audit_stage_duration_seconds_count", &[("stage", stage)]);
        assert_eq!(count("decrypt"), Some(2.0), "{text}");
        assert_eq!(count("publish"), Some(1.0), "{text}");
        // Every stage is exposed from the start.
        for stage in Stage::ALL {
            let expected =
                if matches!(stage, Stage::Decrypt | Stage::Publish) { count(stage.label()) } else { Some(0.0) };
            assert_eq!(count(stage.label()), expected, "{}", stage.label());
        }
        let sum = sample(&text, "clerk_audit_stage_duration_seconds_sum", &[("stage", "decrypt")]).unwrap();
        assert!((sum - 0.008).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn aborted_job_leaves_flight() {
        let metrics = Arc::new(Metrics::new());
        drop(metrics.job_started());
        assert_eq!(sample(&metrics.encode(), "clerk_audit_jobs_in_flight", &[]), Some(0.0));
    }
}
