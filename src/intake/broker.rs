//! RabbitMQ: connecting, declaring the topology, and publishing with confirms.
//!
//! Topology (names from configuration; `contracts/asyncapi.yaml` describes it):
//! - topic exchange `pulselight.scans` -> durable quorum queue `clerk-audit.jobs`
//!   (routing key `scan.clerk.requested`, dead-letter exchange `clerk-audit.dlx`, delivery limit);
//! - `clerk-audit.dlx` (topic) -> `clerk-audit.jobs.dead` (every routing key);
//! - `clerk-audit.jobs.retry`: a delay queue whose messages expire after the retry delay and
//!   dead-letter back into the jobs queue;
//! - topic exchange `pulselight.findings` for the events.

use std::time::Duration;

use lapin::PublisherConfirm;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use secrecy::ExposeSecret;

use crate::configuration::{AmqpSettings, WorkerSettings};

/// Header that carries why a message was dead-lettered by the worker.
pub const REASON_HEADER: &str = "x-clerk-audit-reason";
/// Header with a human-readable detail of that reason.
pub const DETAIL_HEADER: &str = "x-clerk-audit-detail";
/// Header counting the worker's attempts at a job (1 on the first delivery).
pub const ATTEMPT_HEADER: &str = "x-clerk-audit-attempt";

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("the message was returned as unroutable")]
    Returned,
    #[error("the broker did not confirm the message in time (publishers blocked?)")]
    Unconfirmed,
}

pub async fn connect(settings: &AmqpSettings, name: &str) -> lapin::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(settings.url.expose_secret(), properties).await
}

/// Opens a channel in confirm mode.
pub async fn confirm_channel(connection: &Connection) -> lapin::Result<Channel> {
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok(channel)
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() }
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() }
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}

/// Declares every exchange, queue and binding the worker uses. Idempotent.
pub async fn declare_topology(channel: &Channel, amqp: &AmqpSettings, worker: &WorkerSettings) -> lapin::Result<()> {
    // Every exchange of the worker is a durable topic exchange.
    for exchange in [&amqp.jobs_exchange, &amqp.dead_letter_exchange, &amqp.findings_exchange] {
        channel
            .exchange_declare(exchange.as_str().into(), ExchangeKind::Topic, durable_exchange(), FieldTable::default())
            .await?;
    }

    let mut jobs_args = FieldTable::default();
    jobs_args.insert("x-queue-type".into(), text("quorum"));
    jobs_args.insert("x-dead-letter-exchange".into(), text(&amqp.dead_letter_exchange));
    jobs_args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(i64::from(amqp.delivery_limit)));
    channel.queue_declare(amqp.jobs_queue.as_str().into(), durable_queue(), jobs_args).await?;
    channel
        .queue_bind(
            amqp.jobs_queue.as_str().into(),
            amqp.jobs_exchange.as_str().into(),
            amqp.jobs_routing_key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let mut dead_args = FieldTable::default();
    dead_args.insert("x-queue-type".into(), text("quorum"));
    channel.queue_declare(amqp.dead_letter_queue.as_str().into(), durable_queue(), dead_args).await?;
    channel
        .queue_bind(
            amqp.dead_letter_queue.as_str().into(),
            amqp.dead_letter_exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    declare_delay_queue(channel, amqp, worker.retry_delay_secs).await?;
    Ok(())
}

/// The longest a job waits in a delay queue.
pub const MAX_DELAY_SECS: u64 = 3600;

/// The delay tier for a retry: exponential in the attempt from `base_secs`, at least `at_least_secs` (a
/// long Retry-After), rounded up to `base * 2^k` so only a few delay queues ever exist.
pub fn delay_tier_secs(base_secs: u64, attempt: u32, at_least_secs: u64) -> u64 {
    let base = base_secs.max(1);
    let exponential = base.saturating_mul(1u64 << attempt.saturating_sub(1).min(16));
    let wanted = exponential.max(at_least_secs).min(MAX_DELAY_SECS.max(base));
    let mut tier = base;
    while tier < wanted {
        tier = tier.saturating_mul(2);
    }
    tier
}

/// The delay tier for a retry whose failure asked to wait at least `at_least` (a long Retry-After), in whole
/// seconds rounded up. A tier given back as `at_least` answers the same tier, so the pipeline can choose it
/// (and record it) and the consumer publish to it.
pub fn delay_for(base_secs: u64, attempt: u32, at_least: Option<Duration>) -> u64 {
    let at_least_secs = at_least.map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0)).unwrap_or(0);
    delay_tier_secs(base_secs, attempt, at_least_secs)
}

/// Name of the delay queue of a tier: `<retry_queue>.<secs>s`.
pub fn delay_queue_name(amqp: &AmqpSettings, secs: u64) -> String {
    format!("{}.{secs}s", amqp.retry_queue)
}

/// Declares a delay queue: no consumer; messages expire after `secs` and dead-letter straight back into
/// the jobs queue (through the default exchange, so other consumers of the scans exchange never see
/// retries). Idempotent; answers the queue name.
///
/// A quorum queue with at-least-once dead-lettering: a classic queue dead-letters at most once, so a job
/// whose delay ran out while the broker was stopping or recovering was dropped (the chaos run lost one
/// that way). At-least-once dead-lettering needs `reject-publish` overflow.
pub async fn declare_delay_queue(channel: &Channel, amqp: &AmqpSettings, secs: u64) -> lapin::Result<String> {
    let name = delay_queue_name(amqp, secs);
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("quorum"));
    args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    args.insert("x-overflow".into(), text("reject-publish"));
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt((secs * 1000) as i64));
    args.insert("x-dead-letter-exchange".into(), text(""));
    args.insert("x-dead-letter-routing-key".into(), text(&amqp.jobs_queue));
    channel.queue_declare(name.as_str().into(), durable_queue(), args).await?;
    Ok(name)
}

/// Resolves with the error when `connection` fails (`None` if its event stream ends first), so readiness can
/// drop the moment the connection fails rather than when a consumer notices.
pub fn connection_failed(connection: &Connection) -> impl std::future::Future<Output = Option<String>> + use<> {
    // Boxed as a `'static` stream: the listener owns its channel and outlives the borrow of `connection`.
    let mut events: futures::stream::BoxStream<'static, lapin::Event> = Box::pin(connection.events_listener());
    async move {
        use futures::StreamExt as _;
        while let Some(event) = events.next().await {
            if let lapin::Event::Error(error) = event {
                return Some(error.to_string());
            }
        }
        None
    }
}

/// Publishes persistently and mandatorily; the returned confirm resolves when the broker has taken
/// responsibility for the message (see [`confirmed`]). Publishing many before awaiting their confirms costs
/// one round trip for the lot instead of one each.
pub async fn publish_mandatory(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
    properties: BasicProperties,
) -> Result<PublisherConfirm, PublishError> {
    let properties = properties.with_delivery_mode(2);
    Ok(channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
            payload,
            properties,
        )
        .await?)
}

/// Waits for a publish's confirm. A nack or a return (unroutable) is an error, so the caller keeps the
/// message for another try.
pub async fn confirmed(confirm: PublisherConfirm, timeout: Duration) -> Result<(), PublishError> {
    let confirmation = tokio::time::timeout(timeout, confirm).await.map_err(|_| PublishError::Unconfirmed)??;
    if confirmation.is_nack() {
        return Err(PublishError::Nacked);
    }
    if confirmation.take_message().is_some() {
        return Err(PublishError::Returned);
    }
    Ok(())
}

/// Publishes persistently and mandatorily, and waits for the broker's confirm.
pub async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
    properties: BasicProperties,
    timeout: Duration,
) -> Result<(), PublishError> {
    let confirm = publish_mandatory(channel, exchange, routing_key, payload, properties).await?;
    confirmed(confirm, timeout).await
}

/// Reads a header as text.
pub fn header_text(properties: &BasicProperties, name: &str) -> Option<String> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(&ShortString::from(name))? {
        AMQPValue::LongString(value) => Some(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        AMQPValue::ShortString(value) => Some(value.as_str().to_owned()),
        _ => None,
    }
}

/// Reads a header as a number.
pub fn header_u32(properties: &BasicProperties, name: &str) -> Option<u32> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(&ShortString::from(name))? {
        AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some(*n),
        AMQPValue::ShortInt(n) => u32::try_from(*n).ok(),
        AMQPValue::ShortUInt(n) => Some(u32::from(*n)),
        _ => header_text(properties, name).and_then(|t| t.parse().ok()),
    }
}

/// A copy of `headers` with `extra` set.
pub fn with_headers(properties: &BasicProperties, extra: &[(&str, AMQPValue)]) -> BasicProperties {
    let mut headers = properties.headers().clone().unwrap_or_default();
    for (name, value) in extra {
        headers.insert((*name).into(), value.clone());
    }
    properties.clone().with_headers(headers)
}

pub fn text_value(value: &str) -> AMQPValue {
    text(value)
}

/// Publishes a job the way the orchestrator does (persistent JSON, confirmed).
pub async fn enqueue(
    settings: &crate::configuration::Settings,
    job: &crate::intake::job::ScanJob,
) -> anyhow::Result<()> {
    let connection = connect(&settings.amqp, "clerk-audit enqueue").await?;
    let setup = connection.create_channel().await?;
    declare_topology(&setup, &settings.amqp, &settings.worker).await?;
    let channel = confirm_channel(&connection).await?;
    let body = serde_json::to_vec(&job.to_message())?;
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id(job.scan_id.to_string().into());
    publish_confirmed(
        &channel,
        &settings.amqp.jobs_exchange,
        &settings.amqp.jobs_routing_key,
        &body,
        properties,
        std::time::Duration::from_secs(10),
    )
    .await?;
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_tiers_grow_with_attempts_and_honour_retry_after() {
        assert_eq!(delay_tier_secs(30, 1, 0), 30);
        assert_eq!(delay_tier_secs(30, 2, 0), 60);
        assert_eq!(delay_tier_secs(30, 3, 0), 120);
        // A Retry-After longer than the exponential delay wins, rounded up to a tier.
        assert_eq!(delay_tier_secs(30, 1, 45), 60);
        assert_eq!(delay_tier_secs(1, 1, 3), 4);
        // Capped near an hour.
        assert_eq!(delay_tier_secs(30, 40, 0), 3840);
        assert_eq!(delay_tier_secs(0, 1, 0), 1);
    }

    #[test]
    fn a_tier_given_back_as_the_least_delay_is_the_same_tier() {
        assert_eq!(delay_for(1, 1, Some(Duration::from_millis(4_001))), 8, "a fraction of a second rounds up");
        assert_eq!(delay_for(30, 2, None), 60);
        for base in [0, 1, 5, 30, 1000, 4000] {
            for attempt in 1..=20 {
                for at_least in [None, Some(Duration::from_millis(1500)), Some(Duration::from_secs(7_000))] {
                    let tier = delay_for(base, attempt, at_least);
                    assert_eq!(
                        delay_for(base, attempt, Some(Duration::from_secs(tier))),
                        tier,
                        "{base} {attempt} {at_least:?}"
                    );
                }
            }
        }
    }
}
