//! The store: all SQL of the worker, as typed functions, one module per table group.
//!
//! - [`credentials`]: `clerk_credentials` (owned by the settings service; read here, written by the CLI).
//! - [`artifacts`]: `repo_scan_artifacts` (owned by the repo scanner; read here, written by the CLI).
//! - [`scans`]: `scans`, `check_results`, `findings`: a scan's row and its terminal transaction.
//! - [`outbox`]: the events waiting for the relay.
//! - [`retries`]: `scan_retries`, the jobs handed to a broker delay queue, for the sweep that sends again the ones
//!   the broker did not return.
//! - [`reports`]: what `clerk-audit report` reads.
//!
//! This module holds the pool and the migrations. Every connection gets a `statement_timeout` and the pool
//! a wait timeout, so a black-holed database fails a job (transiently) instead of hanging it. Callers take
//! a pooled connection per database step and never hold one across the Clerk calls.

pub mod artifacts;
pub mod credentials;
pub mod outbox;
pub mod reports;
pub mod retries;
pub mod scans;

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use secrecy::ExposeSecret;
use tokio_postgres::NoTls;

use crate::configuration::DatabaseSettings;
use crate::error::{DbErrorClass, classify_sqlstate};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// An arbitrary constant that serializes migrations across replicas starting together.
const MIGRATION_LOCK_KEY: i64 = 0x000c_1e4a_0d17;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database.url (env CLERK_AUDIT_DATABASE__URL) is not a valid PostgreSQL URL: {0}")]
    BadUrl(#[source] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database pool: {0}")]
    Build(#[from] deadpool_postgres::BuildError),
    #[error("database: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("migrations: {0}")]
    Migration(#[from] refinery::Error),
}

/// Builds the pool; connections are opened lazily.
pub fn pool(settings: &DatabaseSettings) -> Result<Pool, StoreError> {
    let mut config = tokio_postgres::Config::from_str(settings.url.expose_secret()).map_err(StoreError::BadUrl)?;
    let timeout = Duration::from_millis(settings.timeout_ms);
    config.connect_timeout(timeout);
    // Server-side timeouts cannot help when the network black-holes the connection: the kernel drops a
    // connection whose sent data stays unacknowledged this long, so the waiting query fails instead of hanging.
    config.tcp_user_timeout(timeout);
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    config.options(format!("-c statement_timeout={} -c lock_timeout={}", settings.timeout_ms, settings.timeout_ms));
    config.application_name("clerk-audit");
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(settings.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .build()
        .map_err(StoreError::from)
}

impl StoreError {
    /// Whether waiting can fix this: the database or the connection was unavailable (no SQLSTATE, or a
    /// transient class such as `57P03` "the database system is starting up"); a bad URL, a failed migration
    /// statement or a constraint violation fails the same way every time.
    pub fn is_transient(&self) -> bool {
        let postgres_is_transient = |error: &tokio_postgres::Error| {
            error.code().is_none_or(|state| classify_sqlstate(state.code()) == DbErrorClass::Transient)
        };
        match self {
            StoreError::BadUrl(_) | StoreError::Build(_) => false,
            StoreError::Pool(deadpool_postgres::PoolError::Backend(error)) | StoreError::Postgres(error) => {
                postgres_is_transient(error)
            }
            StoreError::Pool(_) => true,
            StoreError::Migration(error) => matches!(error.kind(), refinery::error::Kind::Connection(..)),
        }
    }
}

/// Applies pending migrations, holding an advisory lock so concurrent replicas migrate one at a time.
pub async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY]).await?;
    let client: &mut tokio_postgres::Client = &mut client;
    let result = embedded::migrations::runner().run_async(client).await;
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY]).await?;
    result.map(|_| ()).map_err(StoreError::from)
}

/// Answers whether the database answers a trivial query (readiness).
pub async fn ping(pool: &Pool) -> bool {
    match pool.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}

/// When this process last saw the database fail. The retry sweep reads it: a delayed job that came back
/// during an outage and failed again before its attempt was registered went back to a delay queue without its
/// record being updated, so until the database has been reachable for the sweep's whole grace period, an
/// overdue record may be stale rather than lost.
#[derive(Debug, Default)]
pub struct LastFailure {
    /// Milliseconds since the Unix epoch; 0: never.
    at_ms: std::sync::atomic::AtomicU64,
}

impl LastFailure {
    pub fn mark(&self) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        self.at_ms.store(now.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long ago the last failure was seen (`None`: never).
    pub fn elapsed(&self) -> Option<Duration> {
        let at = self.at_ms.load(std::sync::atomic::Ordering::Relaxed);
        (at != 0).then(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            now.saturating_sub(Duration::from_millis(at))
        })
    }

    /// Whether the database has been reachable for at least `period` (as far as this process saw).
    pub fn clear_for(&self, period: Duration) -> bool {
        self.elapsed().is_none_or(|elapsed| elapsed >= period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_clear_until_a_failure_and_again_a_period_after_it() {
        let failures = LastFailure::default();
        assert!(failures.clear_for(Duration::from_secs(3600)), "never failed");
        failures.mark();
        assert!(!failures.clear_for(Duration::from_secs(60)));
        assert!(failures.clear_for(Duration::ZERO));
        // A failure seen two minutes ago.
        let two_minutes_ago =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap() - Duration::from_secs(120);
        failures.at_ms.store(two_minutes_ago.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
        assert!(failures.clear_for(Duration::from_secs(60)));
        assert!(!failures.clear_for(Duration::from_secs(300)));
    }
}
