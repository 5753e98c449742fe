//! Wires the worker: pools and clients from [`Settings`], the ops port, and the supervisor that keeps
//! a broker connection (reconnecting with backoff), runs the consumer and the outbox relay on it, and
//! drains on shutdown. Shutdown is a [`CancellationToken`] passed in (the binary cancels it on
//! SIGTERM/SIGINT; tests cancel it directly).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use backoff::backoff::Backoff;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::configuration::Settings;
use crate::consumer::{ConsumeEnd, consume};
use crate::decrypt::Kms;
use crate::fetch::dns::DnsLookup;
use crate::fetch::http::HttpLayer;
use crate::ops::{self, Health};
use crate::persist::EventTarget;
use crate::pipeline::Pipeline;
use crate::retry::RetryPolicy;
use crate::{broker, db, publish};

pub struct Application {
    settings: Settings,
    pipeline: Arc<Pipeline>,
    health: Arc<Health>,
}

impl Application {
    /// Builds every client; connects to nothing yet.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = db::pool(&settings.database)?;
        let policy = RetryPolicy::in_job(settings.http.max_attempts);
        let kms = Kms::from_settings(&settings.kms, policy).await;
        let http = HttpLayer::new(
            &settings.http,
            settings.clerk.backend_api_url.clone(),
            &settings.clerk.api_version,
            settings.clerk.rate_limit_per_10s,
            policy,
        )
        .context("building the HTTP client")?;
        let dns = DnsLookup::from_settings(&settings.dns).context("building the DNS resolver")?;
        let http = http.with_svix_api_url(&settings.svix.api_url)?;
        let pipeline = Arc::new(Pipeline {
            pool,
            kms,
            http,
            dns,
            checks: settings.checks.clone(),
            events: EventTarget { source: settings.events.source.clone(), exchange: settings.amqp.findings_exchange.clone() },
            max_job_bytes: settings.worker.max_job_bytes,
            max_attempts: settings.worker.max_attempts,
            relay_wake: Arc::new(Notify::new()),
        });
        Ok(Self { settings, pipeline, health: Arc::new(Health::default()) })
    }

    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    pub fn pipeline(&self) -> Arc<Pipeline> {
        self.pipeline.clone()
    }

    /// Starts the ops port (answers its bound address) and runs until `shutdown` fires and the drain is done.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let (ops_addr, ops_task) = ops::serve(self.settings.ops.listen, self.health.clone(), shutdown.clone())
            .await
            .with_context(|| format!("binding the ops port {} (ops.listen)", self.settings.ops.listen))?;
        info!(%ops_addr, "ops port listening");
        self.run_with_ops(shutdown, ops_addr).await?;
        let _ = ops_task.await;
        Ok(())
    }

    async fn run_with_ops(self, shutdown: CancellationToken, _ops_addr: SocketAddr) -> anyhow::Result<()> {
        self.health.supervisor_alive.store(true, Ordering::SeqCst);
        let db_watch = tokio::spawn(watch_database(self.pipeline.pool.clone(), self.health.clone(), shutdown.clone()));
        let mut reconnect = RetryPolicy::reconnect();
        while !shutdown.is_cancelled() {
            match self.connected_session(&shutdown).await {
                Ok(ConsumeEnd::Shutdown) => break,
                Ok(ConsumeEnd::ConnectionLost(reason)) => warn!(reason = %reason, "broker connection lost; reconnecting"),
                Err(error) => warn!(error = %format!("{error:#}"), "broker unavailable; retrying"),
            }
            self.health.consuming.store(false, Ordering::SeqCst);
            let wait = reconnect.next_backoff().unwrap_or(Duration::from_secs(10));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        self.health.consuming.store(false, Ordering::SeqCst);
        db_watch.abort();
        info!("worker stopped");
        Ok(())
    }

    /// One broker connection's life: topology, relay, consumer.
    async fn connected_session(&self, shutdown: &CancellationToken) -> anyhow::Result<ConsumeEnd> {
        let settings = &self.settings;
        let connection = broker::connect(&settings.amqp, "clerk-audit worker").await.context("connecting to the broker")?;
        let setup = connection.create_channel().await?;
        broker::declare_topology(&setup, &settings.amqp, &settings.worker).await.context("declaring the topology")?;
        let _ = setup.close(200, "topology declared".into()).await;
        let jobs = connection.create_channel().await?;
        let copies = broker::confirm_channel(&connection).await?;
        let events = broker::confirm_channel(&connection).await?;
        info!("connected to the broker");
        self.health.consuming.store(true, Ordering::SeqCst);

        let relay_stop = CancellationToken::new();
        let relay = tokio::spawn(publish::run(self.pipeline.pool.clone(), events.clone(), self.pipeline.relay_wake.clone(), relay_stop.clone()));
        let end = consume(jobs, copies, self.pipeline.clone(), settings, shutdown.clone()).await;
        if end == ConsumeEnd::Shutdown {
            self.health.draining.store(true, Ordering::SeqCst);
        }
        relay_stop.cancel();
        let _ = relay.await;
        if end == ConsumeEnd::Shutdown {
            // Publish what the drained jobs committed before leaving.
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                while let Ok(n) = publish::relay_batch(&self.pipeline.pool, &events).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
            let _ = connection.close(200, "clerk-audit stopping".into()).await;
        }
        Ok(end)
    }
}

/// Keeps `database_connected` current.
async fn watch_database(pool: deadpool_postgres::Pool, health: Arc<Health>, shutdown: CancellationToken) {
    loop {
        let ok = match tokio::time::timeout(Duration::from_secs(5), pool.get()).await {
            Ok(Ok(client)) => client.simple_query("SELECT 1").await.is_ok(),
            _ => false,
        };
        if health.database_connected.swap(ok, Ordering::SeqCst) != ok {
            if ok { info!("database connected") } else { warn!("database unavailable") }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(if ok { 5 } else { 1 })) => {}
        }
    }
}
