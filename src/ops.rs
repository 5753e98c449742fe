//! The ops HTTP port: `/healthz` (the process and its consumer supervisor are alive; independent of the
//! broker and the database, so an outage causes no restart storm) and `/readyz` (connected to both and
//! consuming, not draining).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

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

async fn healthz(State(health): State<Arc<Health>>) -> (StatusCode, &'static str) {
    if health.supervisor_alive.load(Ordering::SeqCst) {
        (StatusCode::OK, "alive\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "consumer supervisor stopped\n")
    }
}

async fn readyz(State(health): State<Arc<Health>>) -> (StatusCode, String) {
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

pub fn router(health: Arc<Health>) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(health)
}

/// Binds the ops port; answers the bound address (port 0 picks a free one).
pub async fn serve(addr: SocketAddr, health: Arc<Health>, shutdown: CancellationToken) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, router(health)).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
    });
    Ok((bound, handle))
}
