//! Publish: the outbox relay. It sends unsent outbox rows to the broker with publisher confirms
//! (persistent, mandatory) and marks them sent only after the broker confirmed and did not return them.
//! Rows left unsent by a crash are sent after restart; a failed publish waits with backoff and is tried
//! again. Replicas share the outbox safely: rows are claimed with `FOR UPDATE SKIP LOCKED`.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use lapin::types::{AMQPValue, LongString};
use lapin::{BasicProperties, Channel};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, warn};
use uuid::Uuid;

use crate::broker::{PublishError, publish_confirmed};
use crate::events::CONTENT_TYPE;

/// How many rows one pass claims.
const BATCH: i64 = 50;
/// How often the relay looks for rows when nobody wakes it (rows of other replicas, retries).
const POLL_INTERVAL: Duration = Duration::from_millis(1000);
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(String),
    #[error("broker: {0}")]
    Broker(String),
}

impl From<tokio_postgres::Error> for RelayError {
    fn from(error: tokio_postgres::Error) -> Self {
        RelayError::Database(error.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for RelayError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        RelayError::Database(error.to_string())
    }
}

fn event_properties(id: Uuid, event_type: Option<&str>) -> BasicProperties {
    let mut properties = BasicProperties::default()
        .with_content_type(CONTENT_TYPE.into())
        .with_message_id(id.to_string().into())
        .with_app_id("clerk-audit".into())
        .with_timestamp(chrono::Utc::now().timestamp().max(0) as u64);
    if let Some(event_type) = event_type {
        properties = properties.with_type(event_type.into());
    }
    properties
}

/// Sends one batch of due rows; answers how many were sent. A broker failure ends the pass early (the
/// connection is likely gone) after recording it on the row.
pub async fn relay_batch(pool: &Pool, channel: &Channel) -> Result<usize, RelayError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let rows = tx
        .query(
            "SELECT id, exchange, routing_key, payload FROM outbox
              WHERE sent_at IS NULL AND next_attempt_at <= now()
              ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED",
            &[&BATCH],
        )
        .await?;
    let mut sent = 0;
    let mut broker_error = None;
    for row in rows {
        let id: Uuid = row.get("id");
        let exchange: String = row.get("exchange");
        let routing_key: String = row.get("routing_key");
        let payload: serde_json::Value = row.get("payload");
        let mut properties = event_properties(id, payload.get("type").and_then(|t| t.as_str()));
        if let Some(traceparent) = payload.get("traceparent").and_then(|t| t.as_str()) {
            let mut headers = lapin::types::FieldTable::default();
            headers
                .insert("traceparent".into(), AMQPValue::LongString(LongString::from(traceparent.as_bytes().to_vec())));
            properties = properties.with_headers(headers);
        }
        let body = serde_json::to_vec(&payload).expect("payload serializes");
        // A child of the span that stored the event (its `traceparent`), so the trace shows the publish.
        let span = tracing::info_span!("publish", event_id = %id, routing_key = %routing_key, trace_id = tracing::field::Empty);
        crate::telemetry::continue_trace(&span, payload.get("traceparent").and_then(|t| t.as_str()));
        match publish_confirmed(channel, &exchange, &routing_key, &body, properties, CONFIRM_TIMEOUT)
            .instrument(span)
            .await
        {
            Ok(()) => {
                tx.execute(
                    "UPDATE outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = $1",
                    &[&id],
                )
                .await?;
                sent += 1;
                debug!(event_id = %id, routing_key = %routing_key, "event published");
            }
            Err(error) => {
                warn!(event_id = %id, error = %error, "event not published; will retry");
                tx.execute(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $2,
                            next_attempt_at = now() + make_interval(secs => least(60, power(2, least(attempts, 6))))
                      WHERE id = $1",
                    &[&id, &error.to_string()],
                )
                .await?;
                if let PublishError::Broker(error) = error {
                    broker_error = Some(error.to_string());
                    break;
                }
            }
        }
    }
    tx.commit().await?;
    match broker_error {
        Some(error) => Err(RelayError::Broker(error)),
        None => Ok(sent),
    }
}

/// Rows not yet sent: the backlog ops watch.
pub async fn backlog(pool: &Pool) -> Result<(i64, Option<f64>), RelayError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT count(*) AS n, extract(epoch FROM now() - min(created_at))::float8 AS oldest
               FROM outbox WHERE sent_at IS NULL",
            &[],
        )
        .await?;
    Ok((row.get("n"), row.get("oldest")))
}

/// Runs the relay until `shutdown` fires or the broker channel is closed (the caller reconnects). A
/// database outage or a broker that blocks publishers (confirms time out) only delays the rows.
pub async fn run(
    pool: Pool,
    channel: Channel,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> Result<(), RelayError> {
    loop {
        loop {
            match relay_batch(&pool, &channel).await {
                Ok(0) => break,
                Ok(_) => continue,
                Err(RelayError::Database(error)) => {
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
