//! The outbox relay. It sends unsent outbox rows to the broker with publisher confirms (persistent,
//! mandatory) and marks them sent only after the broker confirmed and did not return them. A pass publishes
//! its whole batch and then awaits the confirms, so a batch costs one broker round trip and one `UPDATE`.
//! Rows left unsent by a crash are sent after restart; a failed publish waits with backoff and is tried
//! again. Replicas share the outbox safely: rows are claimed with `FOR UPDATE SKIP LOCKED`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use lapin::types::{AMQPValue, LongString};
use lapin::{BasicProperties, Channel};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, warn};
use uuid::Uuid;

use crate::intake::broker::{PublishError, confirmed, publish_mandatory};
use crate::ops::metrics::{Metrics, Stage};
use crate::outbox::events::CONTENT_TYPE;
use crate::store;
use crate::store::outbox::PendingEvent;

/// How many rows one pass claims.
const BATCH: i64 = 50;
/// How often the relay looks for rows when nobody wakes it (rows of other replicas, retries).
const POLL_INTERVAL: Duration = Duration::from_millis(1000);
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("broker: {0}")]
    Broker(#[source] PublishError),
}

/// The envelope attributes the AMQP properties repeat: stored beside the payload (schema version 5), or, for
/// older rows, read from the stored text without building a tree of the whole event (the other fields are
/// skipped); an expression on the `jsonb` column would instead decompress the stored value once more.
#[derive(Debug, Default, serde::Deserialize)]
struct EnvelopeHead {
    #[serde(rename = "type")]
    event_type: Option<String>,
    traceparent: Option<String>,
}

impl EnvelopeHead {
    fn of(payload: &str) -> Self {
        serde_json::from_str(payload).unwrap_or_default()
    }

    /// The stored attributes; for a row stored before they had columns, the payload's.
    fn of_event(event: &PendingEvent) -> Self {
        match &event.event_type {
            Some(event_type) => Self { event_type: Some(event_type.clone()), traceparent: event.traceparent.clone() },
            None => Self::of(&event.payload),
        }
    }
}

fn event_properties(event: &PendingEvent, head: &EnvelopeHead) -> BasicProperties {
    let mut properties = BasicProperties::default()
        .with_content_type(CONTENT_TYPE.into())
        .with_message_id(event.id.to_string().into())
        .with_app_id("clerk-audit".into())
        .with_timestamp(chrono::Utc::now().timestamp().max(0) as u64);
    if let Some(event_type) = head.event_type.as_deref() {
        properties = properties.with_type(event_type.into());
    }
    if let Some(traceparent) = head.traceparent.as_deref() {
        let mut headers = lapin::types::FieldTable::default();
        headers.insert("traceparent".into(), AMQPValue::LongString(LongString::from(traceparent.as_bytes().to_vec())));
        properties = properties.with_headers(headers);
    }
    properties
}

/// Sends one batch of due rows; answers how many were sent. A broker failure ends the pass early (the
/// connection is likely gone) after recording it on the rows it concerned.
pub async fn relay_batch(pool: &Pool, channel: &Channel, metrics: &Metrics) -> Result<usize, RelayError> {
    let started = Instant::now();
    let mut client = pool.get().await?;
    let batch = store::outbox::claim_due(&mut client, BATCH).await?;
    let mut pending = Vec::with_capacity(batch.events.len());
    let mut failed: Vec<(Uuid, PublishError)> = Vec::new();
    for event in &batch.events {
        // A child of the span that stored the event (its `traceparent`), so the trace shows the publish.
        let span = tracing::info_span!("publish", event_id = %event.id, routing_key = %event.routing_key, trace_id = tracing::field::Empty);
        let head = EnvelopeHead::of_event(event);
        crate::ops::telemetry::continue_trace(&span, head.traceparent.as_deref());
        let properties = event_properties(event, &head);
        let published =
            publish_mandatory(channel, &event.exchange, &event.routing_key, event.payload.as_bytes(), properties)
                .instrument(span.clone())
                .await;
        match published {
            Ok(confirm) => pending.push((event.id, confirm, span)),
            Err(error) => {
                failed.push((event.id, error));
                // The channel is likely gone: the rest of the batch waits for the next pass.
                break;
            }
        }
    }
    let mut sent = Vec::with_capacity(pending.len());
    for (id, confirm, span) in pending {
        match confirmed(confirm, CONFIRM_TIMEOUT).instrument(span).await {
            Ok(()) => sent.push(id),
            Err(error) => failed.push((id, error)),
        }
    }
    if !sent.is_empty() && crate::test_hooks::crash_after_confirmed_publish() {
        std::process::abort();
    }
    batch.mark_sent(&sent).await?;
    if !sent.is_empty() {
        debug!(events = sent.len(), "events published");
    }
    let mut broker_error = None;
    for (id, error) in failed {
        warn!(event_id = %id, error = %error, "event not published; will retry");
        batch.mark_failed(id, &error.to_string()).await?;
        if matches!(error, PublishError::Broker(_)) && broker_error.is_none() {
            broker_error = Some(error);
        }
    }
    batch.commit().await?;
    let elapsed = started.elapsed();
    for _ in &sent {
        metrics.stage(Stage::Publish, elapsed);
    }
    match broker_error {
        Some(error) => Err(RelayError::Broker(error)),
        None => Ok(sent.len()),
    }
}

/// Runs the relay until `shutdown` fires or the broker channel is closed (the caller reconnects). A
/// database outage or a broker that blocks publishers (confirms time out) only delays the rows.
pub async fn run(
    pool: Pool,
    channel: Channel,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(), RelayError> {
    loop {
        loop {
            match relay_batch(&pool, &channel, &metrics).await {
                Ok(0) => break,
                Ok(_) => continue,
                Err(error @ (RelayError::Database(_) | RelayError::Pool(_))) => {
                    warn!(error = %error, "outbox relay: database unavailable");
                    break;
                }
                Err(RelayError::Broker(error)) => {
                    if !channel.status().connected() {
                        return Err(RelayError::Broker(error));
                    }
                    warn!(error = %error, "outbox relay: publish failed; will retry");
                    break;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::EnvelopeHead;
    use crate::store::outbox::PendingEvent;

    #[test]
    fn the_envelope_head_comes_from_the_columns_else_from_the_payload() {
        let mut event = PendingEvent {
            id: uuid::Uuid::nil(),
            exchange: "x".into(),
            routing_key: "k".into(),
            payload: r#"{"type": "from.payload", "traceparent": "00-payload"}"#.into(),
            event_type: Some("from.column".into()),
            traceparent: None,
        };
        let head = EnvelopeHead::of_event(&event);
        assert_eq!((head.event_type.as_deref(), head.traceparent), (Some("from.column"), None));
        event.traceparent = Some("00-column".into());
        let head = EnvelopeHead::of_event(&event);
        assert_eq!((head.event_type.as_deref(), head.traceparent.as_deref()), (Some("from.column"), Some("00-column")));
        // A row stored before the columns existed.
        event.event_type = None;
        let head = EnvelopeHead::of_event(&event);
        assert_eq!(
            (head.event_type.as_deref(), head.traceparent.as_deref()),
            (Some("from.payload"), Some("00-payload"))
        );
    }

    #[test]
    fn the_envelope_head_is_read_from_the_top_level_only() {
        let head = EnvelopeHead::of(
            r#"{"data": {"type": "nested", "traceparent": "nested"}, "id": "x", "type": "com.example.v1",
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}"#,
        );
        assert_eq!(head.event_type.as_deref(), Some("com.example.v1"));
        assert_eq!(head.traceparent.as_deref(), Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        let head = EnvelopeHead::of(r#"{"type": "com.example.v1", "data": {}}"#);
        assert_eq!((head.event_type.as_deref(), head.traceparent), (Some("com.example.v1"), None));
        // Not an object: no attributes, the body is still published as stored.
        let head = EnvelopeHead::of("[1, 2]");
        assert_eq!((head.event_type, head.traceparent), (None, None));
    }
}
