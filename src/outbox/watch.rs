//! `clerk-audit events`: prints the findings events as they are published, for people and scripts.

use crate::configuration::Settings;
use crate::intake::broker;

/// Prints each event on the findings exchange as one JSON line.
pub async fn print_events(settings: &Settings, count: Option<usize>, idle_secs: u64) -> anyhow::Result<()> {
    use futures::StreamExt;
    use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    use std::io::Write;

    let connection = broker::connect(&settings.amqp, "clerk-audit events").await?;
    let channel = connection.create_channel().await?;
    broker::declare_topology(&channel, &settings.amqp, &settings.worker).await?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.name().clone(),
            settings.amqp.findings_exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut consumer = channel
        .basic_consume(queue.name().clone(), "events".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    // Tell a script that the queue is bound and events will be caught from now on.
    eprintln!("listening on {}", settings.amqp.findings_exchange);
    let mut seen = 0;
    while count.is_none_or(|count| seen < count) {
        let Ok(Some(delivery)) = tokio::time::timeout(std::time::Duration::from_secs(idle_secs), consumer.next()).await
        else {
            break;
        };
        let delivery = delivery?;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&delivery.data)?;
        stdout.write_all(b"\n")?;
        stdout.flush()?;
        delivery.acker.ack(BasicAckOptions::default()).await?;
        seen += 1;
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}
