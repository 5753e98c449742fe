//! Outbox retention. A row the broker confirmed is only kept for people to look at: the relay never reads
//! it again and `clerk-audit events` reads the broker. Without a bound the table grows by one row per scan
//! forever (315,000 rows in a 30-minute soak), and with it the relay's claims, the indexes and autovacuum's
//! work. Sent rows older than `events.outbox_retention_hours` are deleted in small batches, once a minute;
//! unsent rows are never deleted, however old.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::ops::metrics::Metrics;
use crate::store::outbox::prune_sent;

/// How often a replica looks for expired rows.
pub const INTERVAL: Duration = Duration::from_secs(60);
/// Rows deleted by one statement: small enough to keep each transaction short.
const BATCH: i64 = 1_000;
/// Statements per pass at most: 100,000 rows a minute, far above the rate rows are written (one per scan).
const MAX_BATCHES: usize = 100;

/// Deletes every sent row older than `keep_for` (up to [`MAX_BATCHES`] batches); answers how many.
pub async fn prune(pool: &Pool, keep_for: Duration) -> Result<u64, crate::store::StoreError> {
    let client = pool.get().await?;
    let mut deleted = 0;
    for _ in 0..MAX_BATCHES {
        let batch = prune_sent(&client, keep_for, BATCH).await?;
        deleted += batch;
        if batch < BATCH as u64 {
            break;
        }
    }
    Ok(deleted)
}

/// Prunes at once, then every [`INTERVAL`], until `shutdown` fires. A database outage only postpones a pass.
pub async fn run(pool: Pool, keep_for: Duration, metrics: std::sync::Arc<Metrics>, shutdown: CancellationToken) {
    loop {
        match prune(&pool, keep_for).await {
            Ok(0) => {}
            Ok(deleted) => {
                metrics.outbox_pruned(deleted);
                debug!(rows = deleted, "outbox: sent rows past retention deleted");
            }
            Err(error) => warn!(error = %error, "outbox retention: database unavailable; next pass later"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(INTERVAL) => {}
        }
    }
}
