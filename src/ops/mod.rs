//! The ops HTTP port:
//!
//! - `/healthz`: 200 while the process and its consumer supervisor are alive. It does not depend on the
//!   broker or the database, so an outage of either causes no restart storm.
//! - `/readyz`: 200 only while connected to the broker and the database and consuming; 503 while
//!   reconnecting or draining.
//! - `/metrics`: Prometheus text ([`crate::ops::metrics`]); the outbox gauges are read from the database on
//!   each scrape (bounded by a short timeout; the previous values stay when it is unreachable).

pub mod metrics;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::ops::metrics::Metrics;

/// How long a scrape waits for the outbox backlog query.
const BACKLOG_TIMEOUT: Duration = Duration::from_secs(2);

/// What the worker reports about itself.
#[derive(Debug, Default)]
pub struct Health {
    pub consuming: AtomicBool,
    pub database_connected: AtomicBool,
    pub draining: AtomicBool,
    pub supervisor_alive: AtomicBool,
}

impl Health {
    pub fn is_ready(&self) -> bool {
        self.consuming.load(Ordering::SeqCst)
            && self.database_connected.load(Ordering::SeqCst)
            && !self.draining.load(Ordering::SeqCst)
    }
}

/// What the ops handlers read.
#[derive(Clone)]
pub struct OpsState {
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    /// Reads the outbox backlog for its gauges at each scrape; `None` leaves them as they are.
    pub outbox_backlog: Option<BacklogProbe>,
}

/// The outbox backlog (unsent rows, age of the oldest in seconds), read on demand; `None` when it could not
/// be read. Given by the caller so this module needs no database code.
pub type BacklogProbe = Arc<dyn Fn() -> BoxFuture<'static, Option<(i64, Option<f64>)>> + Send + Sync>;

async fn healthz(State(state): State<OpsState>) -> (StatusCode, &'static str) {
    if state.health.supervisor_alive.load(Ordering::SeqCst) {
        (StatusCode::OK, "alive\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "consumer supervisor stopped\n")
    }
}

async fn readyz(State(state): State<OpsState>) -> (StatusCode, String) {
    let health = &state.health;
    if health.is_ready() {
        return (StatusCode::OK, "ready\n".into());
    }
    let mut reasons = Vec::new();
    if health.draining.load(Ordering::SeqCst) {
        reasons.push("draining");
    }
    if !health.consuming.load(Ordering::SeqCst) {
        reasons.push("broker not connected");
    }
    if !health.database_connected.load(Ordering::SeqCst) {
        reasons.push("database not connected");
    }
    (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", reasons.join(", ")))
}

async fn metrics_handler(State(state): State<OpsState>) -> impl IntoResponse {
    state.metrics.set_ready(state.health.is_ready());
    if let Some(probe) = &state.outbox_backlog
        && let Ok(Some((unsent, oldest))) = tokio::time::timeout(BACKLOG_TIMEOUT, probe()).await
    {
        state.metrics.set_outbox(unsent, oldest);
    }
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], state.metrics.encode())
}

pub fn router(state: OpsState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(state)
}

/// Binds the ops port; answers the listener (port 0 picks a free one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serves the ops port on `listener` until `shutdown` fires.
pub fn serve_on(
    listener: tokio::net::TcpListener,
    state: OpsState,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(state))
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    })
}

/// Binds the ops port and serves it; answers the bound address.
pub async fn serve(
    addr: SocketAddr,
    state: OpsState,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((bound, serve_on(listener, state, shutdown)))
}
