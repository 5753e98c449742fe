//! Wires the worker: pools and clients from [`Settings`], the metrics, the ops port, and the supervisor
//! that keeps a broker connection (reconnecting with backoff), runs the consumer, the outbox relay and the retry sweep on
//! it, and drains on shutdown. Shutdown is a [`CancellationToken`] passed in (the binary cancels it on
//! SIGTERM/SIGINT; tests cancel it directly). The ops port stays up until the drain is over, answering
//! `/readyz` 503 ("draining") meanwhile.

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
use crate::credentials::Kms;
use crate::fetch::dns::DnsLookup;
use crate::fetch::http::HttpLayer;
use crate::intake::broker;
use crate::intake::consumer::{ConsumeEnd, consume};
use crate::ops::metrics::Metrics;
use crate::ops::{self, Health, OpsState};
use crate::outbox::events::EventTarget;
use crate::outbox::relay as publish;
use crate::pipeline::Pipeline;
use crate::retry::RetryPolicy;
use crate::store as db;

pub struct Application {
    settings: Settings,
    pipeline: Arc<Pipeline>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    /// The ops port, when bound ahead of [`Application::run`] by [`Application::bind_ops`].
    ops_listener: Option<tokio::net::TcpListener>,
}

/// Applies the migrations before the worker starts, waiting out a database that is not reachable yet
/// (a replica starting during a database restart must not crash-loop) until `shutdown`; a migration that
/// fails by itself (bad SQL, a conflicting schema) fails the start. Answers false when `shutdown` came
/// first: the worker then exits cleanly without having started.
pub async fn migrate_at_start(pool: &deadpool_postgres::Pool, shutdown: &CancellationToken) -> anyhow::Result<bool> {
    let mut backoff = RetryPolicy::reconnect();
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return Ok(false),
            attempt = db::migrate(pool) => attempt,
        };
        match attempt {
            Ok(()) => return Ok(true),
            Err(error) if error.is_transient() => {
                let wait = backoff.next_backoff().unwrap_or(Duration::from_secs(10));
                warn!(error = %error, retry_in_ms = wait.as_millis() as u64, "database unavailable at start; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(false),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Err(error) => return Err(anyhow::Error::new(error).context("running migrations at start")),
        }
    }
}

impl Application {
    /// Builds every client; connects to nothing yet.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = db::pool(&settings.database)?;
        let metrics = Arc::new(Metrics::new());
        let policy = RetryPolicy::in_job(settings.http.max_attempts);
        let kms = Kms::from_settings(&settings.kms, policy).await.with_metrics(metrics.clone());
        let http = HttpLayer::new(
            &settings.http,
            settings.clerk.backend_api_url.clone(),
            &settings.clerk.api_version,
            settings.clerk.rate_limit_per_10s,
            policy,
        )
        .context("building the HTTP client")?
        .with_metrics(metrics.clone());
        let dns = DnsLookup::from_settings(&settings.dns).context("building the DNS resolver")?;
        let http = http.with_svix_api_url(&settings.svix.api_url)?;
        let pipeline = Arc::new(Pipeline {
            pool,
            kms,
            http,
            dns,
            checks: settings.checks.clone(),
            events: EventTarget {
                source: settings.events.source.clone(),
                exchange: settings.amqp.findings_exchange.clone(),
            },
            max_job_bytes: settings.worker.max_job_bytes,
            max_attempts: settings.worker.max_attempts,
            retry_delay_secs: settings.worker.retry_delay_secs,
            database_failures: Arc::default(),
            unrecorded_retries: Arc::default(),
            relay_wake: Arc::new(Notify::new()),
            metrics: metrics.clone(),
        });
        Ok(Self { settings, pipeline, health: Arc::new(Health::default()), metrics, ops_listener: None })
    }

    /// Binds the ops port now (`ops.listen`; port 0 picks a free one) and answers its address; `run`
    /// then serves on it. Without this call, `run` binds it.
    pub async fn bind_ops(&mut self) -> anyhow::Result<SocketAddr> {
        if self.ops_listener.is_none() {
            let listener = ops::bind(self.settings.ops.listen)
                .await
                .with_context(|| format!("binding the ops port {} (ops.listen)", self.settings.ops.listen))?;
            self.ops_listener = Some(listener);
        }
        Ok(self.ops_listener.as_ref().expect("bound above").local_addr()?)
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    pub fn pipeline(&self) -> Arc<Pipeline> {
        self.pipeline.clone()
    }

    /// Serves the ops port (bound now unless [`Application::bind_ops`] did) and runs until `shutdown`
    /// fires and the drain is done.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.bind_ops().await?;
        let listener = self.ops_listener.take().expect("bound above");
        let ops_addr = listener.local_addr()?;
        let state = OpsState {
            health: self.health.clone(),
            metrics: self.metrics.clone(),
            outbox_backlog: Some({
                let pool = self.pipeline.pool.clone();
                Arc::new(move || {
                    let pool = pool.clone();
                    Box::pin(async move { db::outbox::backlog(&pool).await.ok() })
                })
            }),
        };
        // The ops port outlives `shutdown` until the drain is over, so probes see "draining", not a refusal.
        let ops_stop = CancellationToken::new();
        let ops_task = ops::serve_on(listener, state, ops_stop.clone());
        info!(%ops_addr, "ops port listening");
        let result = self.supervise(shutdown).await;
        ops_stop.cancel();
        let _ = ops_task.await;
        result
    }

    async fn supervise(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.health.supervisor_alive.store(true, Ordering::SeqCst);
        let db_watch = tokio::spawn(watch_database(
            self.pipeline.pool.clone(),
            self.health.clone(),
            self.pipeline.database_failures.clone(),
            shutdown.clone(),
        ));
        let outbox_retention = self.settings.events.outbox_retention().map(|keep_for| {
            tokio::spawn(crate::outbox::retention::run(
                self.pipeline.pool.clone(),
                keep_for,
                self.metrics.clone(),
                shutdown.clone(),
            ))
        });
        let drain_watch = tokio::spawn({
            let (health, shutdown) = (self.health.clone(), shutdown.clone());
            async move {
                shutdown.cancelled().await;
                health.draining.store(true, Ordering::SeqCst);
                info!("shutdown requested; draining");
            }
        });
        let mut reconnect = RetryPolicy::reconnect();
        while !shutdown.is_cancelled() {
            match self.connected_session(&shutdown).await {
                Ok(ConsumeEnd::Shutdown) => break,
                Ok(ConsumeEnd::ConnectionLost(reason)) => {
                    warn!(reason = %reason, "broker connection lost; reconnecting");
                    // The session had been up: start the backoff over.
                    reconnect.reset();
                }
                Err(error) => warn!(error = %format!("{error:#}"), "broker unavailable; retrying"),
            }
            self.health.consuming.store(false, Ordering::SeqCst);
            self.metrics.broker_reconnect();
            let wait = reconnect.next_backoff().unwrap_or(Duration::from_secs(10));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        self.health.consuming.store(false, Ordering::SeqCst);
        self.health.draining.store(true, Ordering::SeqCst);
        db_watch.abort();
        drain_watch.abort();
        if let Some(task) = outbox_retention {
            task.abort();
        }
        self.health.supervisor_alive.store(false, Ordering::SeqCst);
        info!("worker stopped");
        Ok(())
    }

    /// One broker connection's life: topology, relay, retry sweep, consumer.
    async fn connected_session(&self, shutdown: &CancellationToken) -> anyhow::Result<ConsumeEnd> {
        let settings = &self.settings;
        let connection =
            broker::connect(&settings.amqp, "clerk-audit worker").await.context("connecting to the broker")?;
        let setup = connection.create_channel().await?;
        broker::declare_topology(&setup, &settings.amqp, &settings.worker).await.context("declaring the topology")?;
        let _ = setup.close(200, "topology declared".into()).await;
        let jobs = connection.create_channel().await?;
        let copies = broker::confirm_channel(&connection).await?;
        let events = broker::confirm_channel(&connection).await?;
        info!("connected to the broker");
        self.health.consuming.store(true, Ordering::SeqCst);
        // Not ready from the moment the connection fails, not only once the consumer loop notices.
        let connection_watch = tokio::spawn({
            let health = self.health.clone();
            let failed = broker::connection_failed(&connection);
            async move {
                if let Some(error) = failed.await {
                    health.consuming.store(false, Ordering::SeqCst);
                    warn!(error = %error, "broker connection failed");
                }
            }
        });

        let relay_stop = CancellationToken::new();
        let relay = tokio::spawn(publish::run(
            self.pipeline.pool.clone(),
            events.clone(),
            self.pipeline.relay_wake.clone(),
            self.metrics.clone(),
            relay_stop.clone(),
        ));
        let sweep = tokio::spawn(crate::outbox::resend::run(
            self.pipeline.pool.clone(),
            broker::confirm_channel(&connection).await?,
            crate::outbox::resend::SweepTarget {
                jobs_queue: settings.amqp.jobs_queue.clone(),
                grace: settings.retry_sweep_grace(),
                database_failures: self.pipeline.database_failures.clone(),
                unrecorded: self.pipeline.unrecorded_retries.clone(),
            },
            settings.retry_sweep_interval(),
            self.metrics.clone(),
            relay_stop.clone(),
        ));
        let end = consume(jobs, copies, self.pipeline.clone(), settings, shutdown.clone()).await;
        connection_watch.abort();
        relay_stop.cancel();
        let _ = relay.await;
        let _ = sweep.await;
        if end == ConsumeEnd::Shutdown {
            // Publish what the drained jobs committed before leaving.
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                while let Ok(n) = publish::relay_batch(&self.pipeline.pool, &events, &self.metrics).await {
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

/// Keeps `database_connected` current, and marks each failed probe in `failures`.
async fn watch_database(
    pool: deadpool_postgres::Pool,
    health: Arc<Health>,
    failures: Arc<db::LastFailure>,
    shutdown: CancellationToken,
) {
    loop {
        let ok = tokio::time::timeout(Duration::from_secs(5), db::ping(&pool)).await.unwrap_or(false);
        if !ok {
            failures.mark();
        }
        if health.database_connected.swap(ok, Ordering::SeqCst) != ok {
            if ok { info!("database connected") } else { warn!("database unavailable") }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(if ok { 5 } else { 1 })) => {}
        }
    }
}
