//! What a run needs around the worker: the sandbox (Clerk, Svix, DNS), the KMS stand-in, a fresh database
//! with the migrations and one credential per (project, sandbox instance), the broker topology under
//! unique names, and a durable capture queue on the findings exchange. Jobs are published by a
//! [`Publisher`] that reconnects (the broker may be restarting).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clerk_audit::configuration::Settings;
use clerk_audit::credentials::Kms;
use clerk_audit::credentials::secret::ClerkSecretKey;
use clerk_audit::intake::broker;
use clerk_audit::intake::job::{InstanceName, ProjectId, ScanJob};
use clerk_audit::retry::RetryPolicy;
use clerk_audit_sandbox::{KmsStandIn, Sandbox, SandboxConfig};
use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection};
use secrecy::SecretString;
use uuid::Uuid;

/// The names of the runs' scratch databases (see [`crate::scratch`]).
pub const SCRATCH_PREFIX: &str = "clerk_audit_load_";

/// The repository's `config/` directory (the worker reads its files from there).
pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

/// The workspace's `target/` directory.
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

/// Where the services are.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// A PostgreSQL URL with rights to create databases.
    pub admin_database_url: String,
    pub amqp_url: String,
}

/// One credential a job can name.
#[derive(Debug, Clone)]
pub struct Target {
    pub project: ProjectId,
    pub instance: InstanceName,
    pub key_ref: Uuid,
}

pub struct Rig {
    pub settings: Settings,
    pub sandbox: Sandbox,
    pub kms: KmsStandIn,
    pub targets: Vec<Target>,
    /// Bound to the findings exchange with `#`: every event the worker publishes.
    pub capture_queue: String,
    pub database_name: String,
    admin_database_url: String,
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from(b"quorum".to_vec())));
    args
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() }
}

impl Rig {
    /// Starts the stand-ins, creates the database, stores `projects` credentials per sandbox instance and
    /// declares the topology. `adjust` tunes the worker settings before anything is created.
    pub async fn build(
        endpoints: &Endpoints,
        projects: usize,
        adjust: impl FnOnce(&mut Settings),
    ) -> anyhow::Result<Self> {
        for (name, value) in
            [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_REGION", "us-east-1")]
        {
            if std::env::var_os(name).is_none() {
                // SAFETY: called before any other thread reads the environment (before the AWS client).
                unsafe { std::env::set_var(name, value) };
            }
        }
        let sandbox = clerk_audit_sandbox::start(SandboxConfig::default()).await?;
        sandbox.set_recording(false);
        let kms = clerk_audit_sandbox::start_kms(std::net::Ipv4Addr::LOCALHOST.into(), 0).await?;

        let database_name = crate::scratch::name(SCRATCH_PREFIX, std::time::SystemTime::now());
        let (admin, connection) = tokio_postgres::connect(&endpoints.admin_database_url, tokio_postgres::NoTls)
            .await
            .context("connect to PostgreSQL")?;
        tokio::spawn(connection);
        crate::scratch::drop_stale(&admin, SCRATCH_PREFIX, std::time::SystemTime::now()).await;
        admin.execute(&format!("CREATE DATABASE {database_name}"), &[]).await?;
        let mut database_url = url::Url::parse(&endpoints.admin_database_url)?;
        database_url.set_path(&format!("/{database_name}"));

        let mut settings = Settings::load_from(&config_dir(), "local").context("config loads")?;
        let prefix = format!("load{}", &Uuid::new_v4().simple().to_string()[..8]);
        settings.database.url = SecretString::from(database_url.to_string());
        settings.amqp.url = SecretString::from(endpoints.amqp_url.clone());
        settings.amqp.jobs_exchange = format!("{prefix}.scans");
        settings.amqp.jobs_queue = format!("{prefix}.jobs");
        settings.amqp.retry_queue = format!("{prefix}.jobs.retry");
        settings.amqp.dead_letter_exchange = format!("{prefix}.dlx");
        settings.amqp.dead_letter_queue = format!("{prefix}.jobs.dead");
        settings.amqp.findings_exchange = format!("{prefix}.findings");
        settings.kms.endpoint_url = kms.endpoint_url();
        settings.clerk.backend_api_url = sandbox.backend_api_url();
        settings.clerk.rate_limit_per_10s = 100_000;
        settings.svix.api_url = sandbox.svix_api_url().to_string();
        settings.http.allow_loopback = true;
        settings.dns.nameserver = sandbox.dns_addr().to_string();
        settings.ops.listen = "127.0.0.1:0".parse()?;
        adjust(&mut settings);
        settings.validate().map_err(|e| anyhow::anyhow!("settings: {e}"))?;

        let pool = clerk_audit::store::pool(&settings.database)?;
        clerk_audit::store::migrate(&pool).await?;
        let client = pool.get().await?;
        let worker_kms = Kms::from_settings(&settings.kms, RetryPolicy::immediate(3)).await;
        let kms_key_id = kms.create_key();
        let mut targets = Vec::new();
        for _ in 0..projects {
            let project = ProjectId::parse(format!("prj_{}", &Uuid::new_v4().simple().to_string()[..8]))
                .map_err(anyhow::Error::msg)?;
            for instance in sandbox.instances() {
                let key_ref = Uuid::new_v4();
                let key = ClerkSecretKey::from_plaintext(instance.secret_key.as_bytes().to_vec())
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let ciphertext = worker_kms
                    .encrypt(&kms_key_id, &project, key_ref, &key)
                    .await
                    .map_err(|e| anyhow::anyhow!("encrypt: {e}"))?;
                client
                    .execute(
                        "INSERT INTO clerk_credentials (id, project_id, instance_name, ciphertext, kms_key_id) \
                         VALUES ($1, $2, $3, $4, $5)",
                        &[&key_ref, &project.as_str(), &instance.name, &ciphertext, &kms_key_id],
                    )
                    .await?;
                targets.push(Target {
                    project: project.clone(),
                    instance: InstanceName::parse(instance.name.clone()).map_err(anyhow::Error::msg)?,
                    key_ref,
                });
            }
        }
        drop(client);
        pool.close();

        let connection = broker::connect(&settings.amqp, "clerk-audit loadgen setup").await?;
        let channel = connection.create_channel().await?;
        broker::declare_topology(&channel, &settings.amqp, &settings.worker).await?;
        let capture_queue = format!("{prefix}.capture");
        channel.queue_declare(capture_queue.as_str().into(), durable(), quorum_args()).await?;
        channel
            .queue_bind(
                capture_queue.as_str().into(),
                settings.amqp.findings_exchange.as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let _ = connection.close(200, "setup done".into()).await;

        Ok(Self {
            settings,
            sandbox,
            kms,
            targets,
            capture_queue,
            database_name,
            admin_database_url: endpoints.admin_database_url.clone(),
        })
    }

    /// A job for a random target.
    pub fn job(&self, rng: &mut impl rand::Rng) -> ScanJob {
        let target = &self.targets[rng.random_range(0..self.targets.len())];
        ScanJob {
            scan_id: Uuid::new_v4(),
            project_id: target.project.clone(),
            instance_name: target.instance.clone(),
            key_ref: target.key_ref,
            requested_at: chrono::Utc::now(),
            repo_scan_id: None,
        }
    }

    /// A connection to the run's database (a fresh one each time: the server may have restarted).
    pub async fn db(&self) -> anyhow::Result<tokio_postgres::Client> {
        use secrecy::ExposeSecret as _;
        let connect = tokio_postgres::connect(self.settings.database.url.expose_secret(), tokio_postgres::NoTls);
        let (client, connection) =
            tokio::time::timeout(Duration::from_secs(5), connect).await.context("database connect timed out")??;
        tokio::spawn(connection);
        Ok(client)
    }

    /// Deletes the run's queues, exchanges and database (for runs on shared services).
    pub async fn cleanup(&self) {
        if let Ok(connection) = broker::connect(&self.settings.amqp, "clerk-audit loadgen cleanup").await {
            use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
            let amqp = &self.settings.amqp;
            let mut queues = vec![amqp.jobs_queue.clone(), amqp.dead_letter_queue.clone(), self.capture_queue.clone()];
            let mut tier = self.settings.worker.retry_delay_secs.max(1);
            while tier <= 2 * broker::MAX_DELAY_SECS {
                queues.push(broker::delay_queue_name(amqp, tier));
                tier *= 2;
            }
            for queue in queues {
                if let Ok(channel) = connection.create_channel().await {
                    let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
                    let _ = channel.close(200, "".into()).await;
                }
            }
            for exchange in [&amqp.jobs_exchange, &amqp.dead_letter_exchange, &amqp.findings_exchange] {
                if let Ok(channel) = connection.create_channel().await {
                    let _ = channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()).await;
                    let _ = channel.close(200, "".into()).await;
                }
            }
            let _ = connection.close(200, "cleanup done".into()).await;
        }
        if let Ok((client, connection)) = tokio_postgres::connect(&self.admin_database_url, tokio_postgres::NoTls).await
        {
            tokio::spawn(connection);
            let _ = client.execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database_name), &[]).await;
        }
    }
}

/// The message properties of a job, as the platform publishes it.
pub fn job_properties(job: &ScanJob) -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id(job.scan_id.to_string().into())
}

/// Publishes jobs with confirms, reconnecting while the broker is away. A job whose confirm was lost may be
/// published twice: the worker must recognise the copy.
pub struct Publisher {
    settings: Settings,
    channel: Option<(Connection, Channel)>,
    /// Publishes that had to be tried again.
    pub republished: u64,
}

impl Publisher {
    pub fn new(settings: &Settings) -> Self {
        Self { settings: settings.clone(), channel: None, republished: 0 }
    }

    async fn channel(&mut self) -> anyhow::Result<&Channel> {
        if self.channel.as_ref().is_none_or(|(connection, _)| !connection.status().connected()) {
            let connection = broker::connect(&self.settings.amqp, "clerk-audit loadgen publisher").await?;
            let channel = broker::confirm_channel(&connection).await?;
            self.channel = Some((connection, channel));
        }
        Ok(&self.channel.as_ref().context("channel")?.1)
    }

    /// Publishes `job`, trying for at most `deadline`.
    pub async fn publish(&mut self, job: &ScanJob, deadline: Duration) -> anyhow::Result<()> {
        let body = serde_json::to_vec(&job.to_message())?;
        let end = tokio::time::Instant::now() + deadline;
        let exchange = self.settings.amqp.jobs_exchange.clone();
        let routing_key = self.settings.amqp.jobs_routing_key.clone();
        let mut tries = 0u32;
        loop {
            let result = async {
                let channel = self.channel().await?;
                let properties = job_properties(job);
                broker::publish_confirmed(channel, &exchange, &routing_key, &body, properties, Duration::from_secs(10))
                    .await
                    .map_err(anyhow::Error::from)
            }
            .await;
            match result {
                Ok(()) => return Ok(()),
                Err(_) if tokio::time::Instant::now() < end => {
                    tries += 1;
                    if tries == 1 {
                        self.republished += 1;
                    }
                    self.channel = None;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(error) => return Err(error.context(format!("publishing job {} for {deadline:?}", job.scan_id))),
            }
        }
    }
}

/// Every message of a queue, taken with `basic.get` until the queue is empty.
pub async fn drain_queue(settings: &Settings, queue: &str) -> anyhow::Result<Vec<lapin::message::Delivery>> {
    use lapin::options::BasicGetOptions;
    let connection = broker::connect(&settings.amqp, "clerk-audit loadgen drain").await?;
    let channel = connection.create_channel().await?;
    let mut messages = Vec::new();
    while let Some(message) =
        channel.basic_get(queue.into(), BasicGetOptions { no_ack: true }).await.context("basic.get")?
    {
        messages.push(message.delivery);
    }
    let _ = connection.close(200, "drained".into()).await;
    Ok(messages)
}

/// Ready messages in a queue.
pub async fn queue_depth(settings: &Settings, queue: &str) -> anyhow::Result<u32> {
    let connection = broker::connect(&settings.amqp, "clerk-audit loadgen depth").await?;
    let channel = connection.create_channel().await?;
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
            FieldTable::default(),
        )
        .await?;
    let _ = connection.close(200, "".into()).await;
    Ok(declared.message_count())
}

/// A random duration in `[min, max]` seconds.
pub fn secs_between(rng: &mut impl rand::Rng, min: f64, max: f64) -> Duration {
    Duration::from_secs_f64(rng.random_range(min..=max))
}
