//! `outbox`: events stored in the transaction of the result they report, published later by the relay
//! ([`crate::outbox::relay`]), which marks them sent once the broker confirms.

use deadpool_postgres::Pool;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, Transaction};
use uuid::Uuid;

use crate::error::JobError;

/// An event to store: its id (stable per scan), where it goes and its JSON payload.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: Uuid,
    pub exchange: String,
    pub routing_key: &'static str,
    /// The CloudEvent as JSON text, serialized once from the typed event: no `serde_json::Value` tree is
    /// built on the way in, and the relay publishes the stored text as it reads it.
    pub payload: String,
    /// The event's CloudEvent `type` and `traceparent`, stored beside the payload for the relay's AMQP
    /// properties.
    pub event_type: &'static str,
    pub traceparent: Option<String>,
}

/// JSON text carried to and from a `jsonb` column as it is. PostgreSQL's binary `jsonb` format is a version
/// byte (1) followed by the JSON text, so neither the worker nor the server builds a tree of the document on
/// the way, and the relay's query needs no cast: a cast in the select list would be evaluated for every due
/// row before the sort and the limit (the whole backlog, decompressed and converted), not for the 50 kept.
#[derive(Debug)]
struct JsonbText<T>(T);

const JSONB_VERSION: u8 = 1;

impl ToSql for JsonbText<&str> {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            out.extend_from_slice(&[JSONB_VERSION]);
        }
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSONB | Type::JSON)
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for JsonbText<String> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let text = if *ty == Type::JSONB {
            match raw.split_first() {
                Some((&JSONB_VERSION, text)) => text,
                _ => return Err("unsupported jsonb version".into()),
            }
        } else {
            raw
        };
        Ok(Self(std::str::from_utf8(text)?.to_owned()))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSONB | Type::JSON)
    }
}

/// Stores `row` for `scan_id`, inside the caller's transaction. A row with the same id already stored (a
/// redelivered job) is left as it is.
pub async fn insert(tx: &deadpool_postgres::Transaction<'_>, scan_id: Uuid, row: &OutboxRow) -> Result<(), JobError> {
    let statement = tx
        .prepare_cached(
            "INSERT INTO outbox (id, scan_id, exchange, routing_key, payload, event_type, traceparent)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO NOTHING",
        )
        .await?;
    tx.execute(
        &statement,
        &[
            &row.id,
            &scan_id,
            &row.exchange,
            &row.routing_key,
            &JsonbText(row.payload.as_str()),
            &row.event_type,
            &row.traceparent,
        ],
    )
    .await?;
    Ok(())
}

/// An unsent row, as the relay reads it.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub id: Uuid,
    pub exchange: String,
    pub routing_key: String,
    /// The CloudEvent as JSON text (the `jsonb` column's text form), published as it is.
    pub payload: String,
    /// The stored `type` and `traceparent` (both `None` for rows stored before schema version 5).
    pub event_type: Option<String>,
    pub traceparent: Option<String>,
}

/// Due rows claimed by one relay pass: locked (`FOR UPDATE SKIP LOCKED`, so replicas' relays share the
/// backlog without sending a row twice at once) until [`ClaimedBatch::commit`].
pub struct ClaimedBatch<'c> {
    tx: Transaction<'c>,
    pub events: Vec<PendingEvent>,
}

/// Claims up to `limit` due rows, the longest due first.
///
/// A sent row's entry leaves the `outbox_unsent` partial index only when vacuum runs, and autovacuum waits
/// for a fifth of the table to be dead: with days of sent rows kept, the index holds many more sent rows
/// than due ones most of the time, and the statistics lag behind. Left to itself the planner took a
/// sequential scan (statistics from before the rows were sent) or a bitmap scan (fresh ones), each with a
/// sort, which read the heap of every sent row on every pass: in the benchmark the pages a claim read grew
/// from 58 to 256 in ten seconds. An index scan in the index's order stops after `limit` rows and marks
/// the dead entries it meets, so that later passes skip them without reading the heap; bitmap scans are
/// turned off for this transaction so that the planner takes it.
pub async fn claim_due(client: &mut Client, limit: i64) -> Result<ClaimedBatch<'_>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    // Polled first, so the setting reaches the server before the claim: a connection runs its requests in the
    // order they were sent, and both go out in one round trip.
    let params: [&(dyn ToSql + Sync); 1] = [&limit];
    let (_, rows) = tokio::try_join!(
        tx.batch_execute("SET LOCAL enable_bitmapscan = off"),
        tx.query(
            "SELECT id, exchange, routing_key, payload, event_type, traceparent FROM outbox
              WHERE sent_at IS NULL AND next_attempt_at <= now()
              ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED",
            &params,
        )
    )?;
    let events = rows
        .into_iter()
        .map(|row| PendingEvent {
            id: row.get("id"),
            exchange: row.get("exchange"),
            routing_key: row.get("routing_key"),
            payload: row.get::<_, JsonbText<String>>("payload").0,
            event_type: row.get("event_type"),
            traceparent: row.get("traceparent"),
        })
        .collect();
    Ok(ClaimedBatch { tx, events })
}

impl ClaimedBatch<'_> {
    /// Marks these rows sent (the broker confirmed them).
    pub async fn mark_sent(&self, ids: &[Uuid]) -> Result<(), tokio_postgres::Error> {
        if ids.is_empty() {
            return Ok(());
        }
        self.tx
            .execute(
                "UPDATE outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = ANY($1)",
                &[&ids],
            )
            .await?;
        Ok(())
    }

    /// Records a failed publish; the row waits (exponentially longer, at most a minute) before the next try.
    pub async fn mark_failed(&self, id: Uuid, error: &str) -> Result<(), tokio_postgres::Error> {
        self.tx
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2,
                        next_attempt_at = now() + make_interval(secs => least(60, power(2, least(attempts, 6))))
                  WHERE id = $1",
                &[&id, &error],
            )
            .await?;
        Ok(())
    }

    pub async fn commit(self) -> Result<(), tokio_postgres::Error> {
        self.tx.commit().await
    }
}

/// Deletes up to `limit` rows the broker confirmed more than `keep_for` ago, oldest first; answers how many.
/// Unsent rows are never touched. Rows another replica is deleting at the same time are skipped, not waited
/// for.
pub async fn prune_sent(
    client: &Client,
    keep_for: std::time::Duration,
    limit: i64,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "DELETE FROM outbox WHERE id IN (
                SELECT id FROM outbox
                 WHERE sent_at < now() - make_interval(secs => $1)
                 ORDER BY sent_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
            &[&keep_for.as_secs_f64(), &limit],
        )
        .await
}

/// Rows not yet sent and the age of the oldest in seconds: the backlog ops watch.
pub async fn backlog(pool: &Pool) -> Result<(i64, Option<f64>), crate::store::StoreError> {
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
