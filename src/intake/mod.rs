//! Intake: the jobs side of the broker. A delivery arrives ([`consumer`]), is handed to a [`ProcessJob`]
//! (the pipeline, which decodes it with [`job`]), and its [`JobOutcome`] is settled on the broker: ack, a
//! copy to a delay queue, or a copy to the dead-letter exchange. [`broker`] holds the AMQP connection, the
//! topology and the header helpers.

pub mod broker;
pub mod consumer;
pub mod job;

use std::sync::Arc;
use std::time::Duration;

use crate::error::FailureReason;
use crate::ops::metrics::Metrics;
use job::PoisonReason;

/// What became of a job: the whole contract between the pipeline and the consumer loop.
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

impl JobOutcome {
    /// A short label, for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            JobOutcome::Completed => "completed",
            JobOutcome::AlreadyFinished => "duplicate",
            JobOutcome::Failed(_) => "failed",
            JobOutcome::Poison(_) => "poison",
            JobOutcome::RetryLater { .. } => "retried",
            JobOutcome::GaveUp { .. } => "dead_lettered",
        }
    }

    /// The reason code, empty when the job went well.
    pub fn reason_code(&self) -> &'static str {
        match self {
            JobOutcome::Completed | JobOutcome::AlreadyFinished => "",
            JobOutcome::Failed(reason) => reason.code(),
            JobOutcome::RetryLater { reason, .. } | JobOutcome::GaveUp { reason, .. } => reason.code(),
            JobOutcome::Poison(reason) => reason.code(),
        }
    }
}

/// What the consumer knows of a delivery besides its body.
#[derive(Debug, Clone, Default)]
pub struct DeliveryInfo {
    /// The worker's attempt count from the message header (1 on the first delivery).
    pub attempt: u32,
    pub traceparent: Option<String>,
}

/// What the consumer runs for each delivery. The pipeline is the real one; tests substitute others (a
/// handler that panics, one that blocks) to prove the loop's own guarantees.
pub trait ProcessJob: Send + Sync + 'static {
    fn process<'a>(&'a self, body: &'a [u8], delivery: &'a DeliveryInfo) -> futures::future::BoxFuture<'a, JobOutcome>;

    /// Where the loop counts jobs (outcomes, durations, in flight); `None`: not counted.
    fn metrics(&self) -> Option<Arc<Metrics>> {
        None
    }
}
