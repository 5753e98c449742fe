//! The consumer loop: takes deliveries from the jobs queue (prefetch = concurrency, a semaphore bounds
//! jobs in flight), runs the [`ProcessJob`] (the pipeline) for each, and maps the outcome to the broker:
//!
//! | outcome | broker action |
//! |---|---|
//! | completed, duplicate, failed (permanent, event stored) | ack |
//! | poison | copy to the dead-letter exchange with the reason headers, ack |
//! | retry later | copy to the delay queue with the attempt count + 1, ack |
//! | gave up (attempts exhausted) | copy to the dead-letter exchange with the reason headers, ack |
//!
//! A copy is acked only after the broker confirmed it; if the copy cannot be published the delivery is
//! rejected (dead-lettered by the broker) or requeued, never silently dropped. On shutdown the consumer is
//! cancelled, in-flight jobs get the grace period, and unfinished deliveries go back to the queue when
//! the channel closes.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::configuration::{AmqpSettings, Settings};
use crate::error::FailureReason;
use crate::intake::broker::{
    self, ATTEMPT_HEADER, DETAIL_HEADER, REASON_HEADER, publish_confirmed, text_value, with_headers,
};
use crate::intake::{DeliveryInfo, JobOutcome, ProcessJob};

const COPY_CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds a whole copy (declaring its delay queue, publishing, the confirm). A declaration the broker does not
/// answer (a quorum queue whose leader is being elected after a restart) would otherwise hold the delivery
/// unsettled and its slot taken for as long as the connection lives.
const COPY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ConsumeEnd {
    /// Shutdown was requested and in-flight jobs were given their grace period.
    Shutdown,
    /// The broker connection or channel failed: the caller reconnects.
    ConnectionLost(String),
}

/// Settles deliveries on the broker.
struct Settler {
    publisher: Channel,
    amqp: AmqpSettings,
    retry_delay_secs: u64,
    max_attempts: u32,
}

impl Settler {
    async fn settle(&self, delivery: &Delivery, attempt: u32, outcome: &JobOutcome) {
        let copied = tokio::time::timeout(COPY_TIMEOUT, self.copy(delivery, attempt, outcome)).await;
        match copied.unwrap_or(Err(broker::PublishError::Unconfirmed)) {
            Ok(()) => {
                if matches!(outcome, JobOutcome::Completed) && crate::test_hooks::hold_ack_of_completed_jobs() {
                    std::future::pending::<()>().await;
                }
                if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
                    warn!(error = %error, "ack failed; the broker will redeliver");
                }
            }
            Err(error) => {
                // The copy did not make it: keep the message. A poison or exhausted job is rejected so the
                // broker dead-letters it (without our headers); a retry goes back to the queue.
                let requeue = matches!(outcome, JobOutcome::RetryLater { .. });
                warn!(error = %error, requeue, "could not publish the copy; rejecting the delivery");
                let _ = delivery.acker.nack(BasicNackOptions { requeue, ..BasicNackOptions::default() }).await;
            }
        }
    }

    /// The copy an outcome needs before the delivery is acked (none for most).
    async fn copy(&self, delivery: &Delivery, attempt: u32, outcome: &JobOutcome) -> Result<(), broker::PublishError> {
        match outcome {
            JobOutcome::Completed | JobOutcome::AlreadyFinished | JobOutcome::Failed(_) => Ok(()),
            JobOutcome::Poison(reason) => self.dead_letter(delivery, reason.code(), &reason.to_string()).await,
            JobOutcome::GaveUp { reason, detail } => self.dead_letter(delivery, reason.code(), detail).await,
            // A handler that keeps failing without reaching its own attempt limit (a panic) stops here.
            JobOutcome::RetryLater { reason, detail, .. } if attempt >= self.max_attempts => {
                self.dead_letter(delivery, reason.code(), detail).await
            }
            JobOutcome::RetryLater { delay, .. } => {
                let secs = broker::delay_for(self.retry_delay_secs, attempt, *delay);
                self.delay(delivery, attempt + 1, secs).await
            }
        }
    }

    async fn dead_letter(&self, delivery: &Delivery, code: &str, detail: &str) -> Result<(), broker::PublishError> {
        let detail: String = detail.chars().take(500).collect();
        let properties = with_headers(
            &delivery.properties,
            &[(REASON_HEADER, text_value(code)), (DETAIL_HEADER, text_value(&detail))],
        );
        publish_confirmed(
            &self.publisher,
            &self.amqp.dead_letter_exchange,
            delivery.routing_key.as_str(),
            &delivery.data,
            properties,
            COPY_CONFIRM_TIMEOUT,
        )
        .await
    }

    async fn delay(&self, delivery: &Delivery, next_attempt: u32, secs: u64) -> Result<(), broker::PublishError> {
        // Declared on use: tiers other than the base one exist only once a job needed them.
        let queue = broker::declare_delay_queue(&self.publisher, &self.amqp, secs).await?;
        let properties =
            with_headers(&delivery.properties, &[(ATTEMPT_HEADER, AMQPValue::LongLongInt(i64::from(next_attempt)))]);
        info!(delay_secs = secs, next_attempt, "job delayed");
        publish_confirmed(&self.publisher, "", &queue, &delivery.data, properties, COPY_CONFIRM_TIMEOUT).await
    }
}

fn delivery_info(properties: &BasicProperties) -> DeliveryInfo {
    DeliveryInfo {
        attempt: broker::header_u32(properties, ATTEMPT_HEADER).unwrap_or(1).max(1),
        traceparent: broker::header_text(properties, "traceparent"),
    }
}

/// Consumes until `shutdown` fires or the channel fails.
pub async fn consume(
    channel: Channel,
    publisher: Channel,
    pipeline: Arc<dyn ProcessJob>,
    settings: &Settings,
    shutdown: CancellationToken,
) -> ConsumeEnd {
    let concurrency = settings.worker.concurrency;
    if let Err(error) = channel.basic_qos(concurrency, BasicQosOptions::default()).await {
        return ConsumeEnd::ConnectionLost(error.to_string());
    }
    let tag = format!("clerk-audit-{}", uuid::Uuid::new_v4());
    let mut consumer = match channel
        .basic_consume(
            settings.amqp.jobs_queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
    {
        Ok(consumer) => consumer,
        Err(error) => return ConsumeEnd::ConnectionLost(error.to_string()),
    };
    info!(queue = %settings.amqp.jobs_queue, concurrency, "consuming jobs");

    // Shared by the job tasks: cloning the settings' strings for every delivery was a handful of allocations
    // per job.
    let settler = Arc::new(Settler {
        publisher,
        amqp: settings.amqp.clone(),
        retry_delay_secs: settings.worker.retry_delay_secs,
        max_attempts: settings.worker.max_attempts,
    });
    let permits = Arc::new(Semaphore::new(usize::from(concurrency)));
    let mut in_flight = JoinSet::new();
    let end = loop {
        // Wait for a free slot first, so a delivery is only taken when it can start.
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break ConsumeEnd::Shutdown,
            permit = permits.clone().acquire_owned() => permit.expect("semaphore is never closed"),
        };
        let next = tokio::select! {
            _ = shutdown.cancelled() => break ConsumeEnd::Shutdown,
            next = consumer.next() => next,
        };
        // Reap finished tasks so the set does not grow.
        while let Some(joined) = in_flight.try_join_next() {
            log_join(joined);
        }
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(error)) => break ConsumeEnd::ConnectionLost(error.to_string()),
            None => break ConsumeEnd::ConnectionLost("the consumer was cancelled by the broker".into()),
        };
        let pipeline = pipeline.clone();
        let settler = settler.clone();
        in_flight.spawn(async move {
            let flight = pipeline.metrics().map(|metrics| metrics.job_started());
            let info = delivery_info(&delivery.properties);
            let outcome = match AssertUnwindSafe(pipeline.process(&delivery.data, &info)).catch_unwind().await {
                Ok(outcome) => outcome,
                Err(_) => {
                    error!("job handler panicked; the job will be retried");
                    JobOutcome::RetryLater {
                        reason: FailureReason::Internal,
                        detail: "handler panicked".into(),
                        delay: None,
                    }
                }
            };
            settler.settle(&delivery, info.attempt, &outcome).await;
            if let Some(flight) = flight {
                flight.finish(outcome.label(), outcome.reason_code());
            }
            drop(permit);
            outcome.label()
        });
    };

    // Stop taking jobs, then let the in-flight ones finish within the grace period.
    let _ = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await;
    let grace = settings.drain_grace();
    let drained = tokio::time::timeout(grace, async {
        while let Some(joined) = in_flight.join_next().await {
            log_join(joined);
        }
    })
    .await;
    if drained.is_err() {
        warn!(unfinished = in_flight.len(), "grace period over; unfinished jobs return to the queue");
        in_flight.abort_all();
    }
    // Closing the channel returns every unacknowledged delivery to the queue.
    let _ = channel.close(200, "clerk-audit stopping".into()).await;
    end
}

fn log_join(joined: Result<&'static str, tokio::task::JoinError>) {
    if let Err(error) = joined
        && !error.is_cancelled()
    {
        error!(error = %error, "job task failed");
    }
}
