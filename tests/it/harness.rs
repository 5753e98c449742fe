//! Test harness: spawns the real worker in-process against the real RabbitMQ, PostgreSQL and KMS
//! stand-in on loopback, with the project's Clerk sandbox. Every test gets its own database, its own
//! exchange and queue names and its own sandbox, so tests run in parallel.
//!
//! Services: `scripts/services.sh` starts them; the URLs come from `CLERK_AUDIT_TEST_DATABASE_URL`,
//! `CLERK_AUDIT_TEST_AMQP_URL` and `CLERK_AUDIT_TEST_KMS_ENDPOINT` (defaults: the local services).

#![allow(dead_code)]

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use clerk_audit::audit::artifact::RepoArtifact;
use clerk_audit::configuration::Settings;
use clerk_audit::credentials::Kms;
use clerk_audit::credentials::secret::ClerkSecretKey;
use clerk_audit::intake::broker;
use clerk_audit::intake::job::{InstanceName, ProjectId, ScanJob};
use clerk_audit::retry::RetryPolicy;
use clerk_audit::startup::Application;
use clerk_audit::store as db;
use clerk_audit_loadgen::scratch;
use clerk_audit_sandbox::{self as sandbox, Sandbox, SandboxConfig, Scenario};
use deadpool_postgres::Pool;
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const WAIT: Duration = Duration::from_secs(60);

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

pub fn admin_database_url() -> String {
    env_or("CLERK_AUDIT_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
}

pub fn amqp_url() -> String {
    env_or("CLERK_AUDIT_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
}

pub fn kms_endpoint() -> String {
    env_or("CLERK_AUDIT_TEST_KMS_ENDPOINT", "http://127.0.0.1:4599")
}

static AWS_ENV: Once = Once::new();

/// moto accepts any credentials; the AWS SDK still wants some. Set before the first client is built.
fn ensure_aws_env() {
    AWS_ENV.call_once(|| {
        for (name, value) in
            [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_REGION", "us-east-1")]
        {
            if std::env::var_os(name).is_none() {
                // SAFETY: runs once, before any AWS client reads the environment.
                unsafe { std::env::set_var(name, value) };
            }
        }
    });
}

/// The names of the tests' databases (see [`clerk_audit_loadgen::scratch`]).
pub const SCRATCH_PREFIX: &str = "clerk_audit_test_";

/// Creates an empty database named after the test run and answers its URL.
pub async fn fresh_database() -> String {
    let admin = admin_database_url();
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL (run scripts/services.sh)");
    tokio::spawn(connection);
    // Once per test binary: the databases of earlier runs that panicked before dropping theirs.
    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SWEPT.swap(true, std::sync::atomic::Ordering::Relaxed) {
        scratch::drop_stale(&client, SCRATCH_PREFIX, std::time::SystemTime::now()).await;
    }
    let name = scratch::name(SCRATCH_PREFIX, std::time::SystemTime::now());
    client.execute(&format!("CREATE DATABASE {name}"), &[]).await.expect("create test database");
    let mut url = url::Url::parse(&admin).expect("admin URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// Settings for one test: local defaults, then a fresh database, unique broker names, the sandbox.
pub fn test_settings(database_url: &str, sandbox: &Sandbox) -> Settings {
    ensure_aws_env();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut settings = Settings::load_from(&dir, "local").expect("config loads");
    let prefix = format!("t{}", &Uuid::new_v4().simple().to_string()[..10]);
    settings.database.url = SecretString::from(database_url.to_owned());
    settings.amqp.url = SecretString::from(amqp_url());
    settings.amqp.jobs_exchange = format!("{prefix}.scans");
    settings.amqp.jobs_queue = format!("{prefix}.jobs");
    settings.amqp.retry_queue = format!("{prefix}.jobs.retry");
    settings.amqp.dead_letter_exchange = format!("{prefix}.dlx");
    settings.amqp.dead_letter_queue = format!("{prefix}.jobs.dead");
    settings.amqp.findings_exchange = format!("{prefix}.findings");
    settings.kms.endpoint_url = kms_endpoint();
    settings.clerk.backend_api_url = sandbox.backend_api_url();
    settings.svix.api_url = sandbox.svix_api_url().to_string();
    settings.http.allow_loopback = true;
    settings.http.request_timeout_ms = 5_000;
    settings.http.max_attempts = 3;
    settings.http.max_retry_after_secs = 3;
    settings.dns.nameserver = sandbox.dns_addr().to_string();
    settings.dns.timeout_ms = 1_000;
    settings.ops.listen = "127.0.0.1:0".parse().unwrap();
    settings.worker.retry_delay_secs = 1;
    settings.worker.drain_grace_secs = 10;
    settings.validate().expect("test settings are valid");
    settings
}

/// A running worker with everything it talks to.
pub struct TestApp {
    pub settings: Settings,
    pub pool: Pool,
    pub sandbox: Sandbox,
    pub kms: Kms,
    pub kms_key_id: String,
    pub shutdown: CancellationToken,
    pub worker: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// The worker's ops port (`/healthz`, `/readyz`, `/metrics`).
    /// The in-process worker's ops port (unbound placeholder when no worker was started).
    pub ops_addr: std::net::SocketAddr,
    pub broker: Connection,
    events: lapin::Consumer,
    dead: lapin::Consumer,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let mut app = spawn_env_with(adjust).await;
    let mut application = Application::build(app.settings.clone()).await.expect("application builds");
    app.ops_addr = application.bind_ops().await.expect("ops port binds");
    app.worker = Some(tokio::spawn(application.run(app.shutdown.clone())));
    app
}

/// Creates a KMS key on the test KMS, as an operator would once per environment.
pub async fn create_kms_key(settings: &Settings) -> String {
    let kms = Kms::from_settings(&settings.kms, RetryPolicy::immediate(3)).await;
    kms.client()
        .create_key()
        .send()
        .await
        .expect("KMS answers (run scripts/services.sh)")
        .key_metadata()
        .expect("key metadata")
        .key_id()
        .to_owned()
}

/// Everything [`spawn_app_with`] prepares (sandbox, database, KMS key, topology, capture queues) without
/// starting a worker: for tests that run the worker as a child process or call the consumer directly.
pub async fn spawn_env_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let sandbox = sandbox::start(SandboxConfig::default()).await.expect("sandbox starts");
    let database_url = fresh_database().await;
    let mut settings = test_settings(&database_url, &sandbox);
    adjust(&mut settings);
    let pool = db::pool(&settings.database).expect("pool");
    db::migrate(&pool).await.expect("migrations apply");

    let kms = Kms::from_settings(&settings.kms, RetryPolicy::immediate(3)).await;
    let kms_key_id = create_kms_key(&settings).await;

    // Declare the topology and bind capture queues before the worker starts, so no event is missed.
    let broker = broker::connect(&settings.amqp, "clerk-audit test")
        .await
        .expect("connect to RabbitMQ (run scripts/services.sh)");
    let channel = broker.create_channel().await.unwrap();
    broker::declare_topology(&channel, &settings.amqp, &settings.worker).await.unwrap();
    let events_queue = format!("{}.capture", settings.amqp.findings_exchange);
    channel
        .queue_declare(
            events_queue.as_str().into(),
            QueueDeclareOptions { exclusive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            events_queue.as_str().into(),
            settings.amqp.findings_exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let events = channel
        .basic_consume(
            events_queue.as_str().into(),
            "capture".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let dead_channel = broker.create_channel().await.unwrap();
    let dead = dead_channel
        .basic_consume(
            settings.amqp.dead_letter_queue.as_str().into(),
            "dead".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let shutdown = CancellationToken::new();
    let ops_addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    TestApp { settings, pool, sandbox, kms, kms_key_id, shutdown, worker: None, ops_addr, broker, events, dead }
}

pub fn project() -> ProjectId {
    ProjectId::parse(format!("prj_{}", &Uuid::new_v4().simple().to_string()[..8])).unwrap()
}

impl TestApp {
    /// Encrypts `secret_key` through KMS for `project` and inserts the credential row; answers key_ref.
    pub async fn store_credential(&self, project: &ProjectId, instance: &str, secret_key: &str) -> Uuid {
        let key_ref = Uuid::new_v4();
        let key = ClerkSecretKey::from_plaintext(secret_key.as_bytes().to_vec()).unwrap();
        let ciphertext = self.kms.encrypt(&self.kms_key_id, project, key_ref, &key).await.expect("encrypt");
        self.pool
            .get()
            .await
            .unwrap()
            .execute(
                "INSERT INTO clerk_credentials (id, project_id, instance_name, ciphertext, kms_key_id) VALUES ($1, $2, $3, $4, $5)",
                &[&key_ref, &project.as_str(), &instance, &ciphertext, &self.kms_key_id],
            )
            .await
            .unwrap();
        key_ref
    }

    /// Stores a credential for a sandbox scenario's instance.
    pub async fn connect_scenario(&self, project: &ProjectId, scenario: Scenario) -> Uuid {
        let instance = self.sandbox.instance(scenario);
        self.store_credential(project, &instance.name, &instance.secret_key.clone()).await
    }

    pub async fn store_artifact(&self, project: &ProjectId, repo_scan_id: &str, artifact: &RepoArtifact) {
        let client = self.pool.get().await.unwrap();
        clerk_audit::store::artifacts::store(&client, project, repo_scan_id, artifact).await.unwrap();
    }

    pub fn job(&self, project: &ProjectId, instance: &str, key_ref: Uuid) -> ScanJob {
        ScanJob {
            scan_id: Uuid::new_v4(),
            project_id: project.clone(),
            instance_name: InstanceName::parse(instance).unwrap(),
            key_ref,
            requested_at: chrono::Utc::now(),
            repo_scan_id: None,
        }
    }

    /// Publishes `job` as the orchestrator does, after checking it against the job schema.
    pub async fn enqueue(&self, job: &ScanJob) {
        contracts::assert_valid(contracts::schema::JOB, &job.to_message());
        clerk_audit::intake::broker::enqueue(&self.settings, job).await.expect("enqueue");
    }

    /// Publishes a raw body to the jobs exchange, as a misbehaving producer would. Whatever the job schema
    /// accepts, the worker must decode.
    pub async fn publish_raw(&self, body: &[u8]) {
        contracts::assert_schema_valid_jobs_decode(body, self.settings.worker.max_job_bytes);
        let channel = broker::confirm_channel(&self.broker).await.unwrap();
        broker::publish_confirmed(
            &channel,
            &self.settings.amqp.jobs_exchange,
            &self.settings.amqp.jobs_routing_key,
            body,
            BasicProperties::default().with_content_type("application/json".into()),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    }

    /// The next findings event (routing key, parsed body, AMQP properties).
    pub async fn next_event(&mut self) -> (String, serde_json::Value, BasicProperties) {
        let delivery = tokio::time::timeout(WAIT, self.events.next())
            .await
            .expect("an event arrives in time")
            .expect("event stream open")
            .expect("event delivery");
        delivery.acker.ack(BasicAckOptions::default()).await.unwrap();
        let body = serde_json::from_slice(&delivery.data).expect("event is JSON");
        contracts::assert_event(delivery.routing_key.as_str(), &body, &delivery.properties);
        (delivery.routing_key.to_string(), body, delivery.properties)
    }

    /// Waits for the event of `scan_id`, skipping others.
    pub async fn event_for(&mut self, scan_id: Uuid) -> (String, serde_json::Value) {
        loop {
            let (key, body, _) = self.next_event().await;
            if body["data"]["scan_id"] == scan_id.to_string() {
                return (key, body);
            }
        }
    }

    /// Asserts that no event arrives within `window`.
    pub async fn no_event_within(&mut self, window: Duration) -> Option<serde_json::Value> {
        match tokio::time::timeout(window, self.events.next()).await {
            Err(_) => None,
            Ok(delivery) => {
                let delivery = delivery.unwrap().unwrap();
                let body = serde_json::from_slice(&delivery.data).unwrap();
                contracts::assert_event(delivery.routing_key.as_str(), &body, &delivery.properties);
                Some(body)
            }
        }
    }

    /// The next message in the dead-letter queue.
    pub async fn next_dead_letter(&mut self) -> lapin::message::Delivery {
        let delivery = tokio::time::timeout(WAIT, self.dead.next())
            .await
            .expect("a dead letter arrives in time")
            .expect("stream open")
            .expect("delivery");
        delivery.acker.ack(BasicAckOptions::default()).await.unwrap();
        contracts::assert_dead_letter(&delivery.properties);
        delivery
    }

    /// Requests the sandbox saw for `instance`.
    pub fn clerk_requests_for(&self, instance: &str) -> Vec<sandbox::RecordedRequest> {
        self.sandbox.requests().into_iter().filter(|r| r.instance.as_deref() == Some(instance)).collect()
    }

    pub async fn scan_status(&self, scan_id: Uuid) -> Option<(String, i32)> {
        let client = self.pool.get().await.unwrap();
        client
            .query_opt("SELECT status, attempts FROM scans WHERE id = $1", &[&scan_id])
            .await
            .unwrap()
            .map(|r| (r.get(0), r.get(1)))
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(worker) = self.worker.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), worker).await;
        }
        self.sandbox.shutdown().await;
        cleanup_broker(&self.broker, &self.settings).await;
        drop_database(&self.pool, &self.settings).await;
    }
}

/// Deletes the test's queues and exchanges: quorum queues are costly for the broker, so tests leave none.
pub async fn cleanup_broker(broker: &Connection, settings: &Settings) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let amqp = &settings.amqp;
    let mut queues = vec![amqp.jobs_queue.clone(), amqp.dead_letter_queue.clone()];
    let mut tier = settings.worker.retry_delay_secs.max(1);
    while tier <= 2 * clerk_audit::intake::broker::MAX_DELAY_SECS {
        queues.push(clerk_audit::intake::broker::delay_queue_name(amqp, tier));
        tier *= 2;
    }
    for queue in queues {
        // A fresh channel each time: deleting a queue that was never declared may close the channel.
        if let Ok(channel) = broker.create_channel().await {
            let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
            let _ = channel.close(200, "".into()).await;
        }
    }
    for exchange in [&amqp.jobs_exchange, &amqp.dead_letter_exchange, &amqp.findings_exchange] {
        if let Ok(channel) = broker.create_channel().await {
            let _ = channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()).await;
            let _ = channel.close(200, "".into()).await;
        }
    }
    let _ = broker.close(200, "test done".into()).await;
}

/// Drops the test's database.
pub async fn drop_database(pool: &Pool, settings: &Settings) {
    use secrecy::ExposeSecret;
    pool.close();
    let name =
        url::Url::parse(settings.database.url.expose_secret()).unwrap().path().trim_start_matches('/').to_owned();
    if let Ok((client, connection)) = tokio_postgres::connect(&admin_database_url(), tokio_postgres::NoTls).await {
        tokio::spawn(connection);
        let _ = client.execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), &[]).await;
    }
}

/// Statuses of every check in a completed event, by check id.
pub fn check_statuses(event: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    event["data"]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| (c["check_id"].as_str().unwrap().to_owned(), c["status"].as_str().unwrap().to_owned()))
        .collect()
}

pub fn finding_ids(event: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = event["data"]["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["check_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// Everything a tracing subscriber writes, for tests that search logs (one per test binary: the
/// subscriber is process-wide).
#[derive(Clone, Default)]
pub struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn contents(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Every row of every table of the test database, as JSON text: what a leak test searches.
pub async fn all_table_text(pool: &Pool) -> String {
    let client = pool.get().await.unwrap();
    let tables: Vec<String> = client
        .query("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'", &[])
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.get(0))
        .collect();
    assert!(tables.contains(&"scans".to_owned()) && tables.contains(&"outbox".to_owned()));
    let mut text = String::new();
    for table in &tables {
        for row in client.query(&format!("SELECT row_to_json(t)::text FROM \"{table}\" t"), &[]).await.unwrap() {
            text.push_str(&row.get::<_, String>(0));
            text.push('\n');
        }
    }
    text
}

/// The body of `job` as the orchestrator sends it, checked against the job schema first: for tests that
/// publish jobs themselves.
pub fn job_body(job: &ScanJob) -> Vec<u8> {
    let message = job.to_message();
    contracts::assert_valid(contracts::schema::JOB, &message);
    serde_json::to_vec(&message).expect("a job serializes")
}

/// The JSON Schemas of `contracts/` (as embedded in the binary), held true against every job the tests
/// publish and every event they receive.
pub mod contracts {
    use std::collections::HashMap;
    use std::sync::OnceLock;

    pub use clerk_audit::cli::schema;
    use clerk_audit::cli::schema::Contract;
    use clerk_audit::intake::broker::{DETAIL_HEADER, REASON_HEADER, header_text};
    use clerk_audit::outbox::events;
    use jsonschema::{Draft, Registry, Resource, Validator};
    use lapin::BasicProperties;
    use serde_json::Value;

    pub fn parse(contract: Contract) -> Value {
        serde_json::from_str(contract.text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", contract.file))
    }

    /// Every schema under its `$id`, so the relative `$ref`s between them resolve without any retrieval.
    fn registry() -> &'static Registry<'static> {
        static REGISTRY: OnceLock<Registry<'static>> = OnceLock::new();
        REGISTRY.get_or_init(|| {
            let resources = schema::SCHEMAS.iter().map(|contract| {
                let value = parse(*contract);
                let id = value["$id"].as_str().unwrap_or_else(|| panic!("{} has an $id", contract.file)).to_owned();
                (id, Resource::from_contents(value))
            });
            Registry::new()
                .draft(Draft::Draft202012)
                .extend(resources)
                .and_then(|builder| builder.prepare())
                .expect("the schemas register")
        })
    }

    /// The validator of a schema, with format assertions on (`uuid`, `date-time`).
    pub fn validator(contract: Contract) -> &'static Validator {
        static VALIDATORS: OnceLock<HashMap<&'static str, Validator>> = OnceLock::new();
        let validators = VALIDATORS.get_or_init(|| {
            schema::SCHEMAS
                .iter()
                .map(|contract| {
                    let validator = jsonschema::options()
                        .with_draft(Draft::Draft202012)
                        .should_validate_formats(true)
                        .with_registry(registry())
                        .build(&parse(*contract))
                        .unwrap_or_else(|e| panic!("{} compiles: {e}", contract.file));
                    (contract.file, validator)
                })
                .collect()
        });
        validators.get(contract.file).unwrap_or_else(|| panic!("{} is one of schema::SCHEMAS", contract.file))
    }

    /// What is wrong with `instance` under `contract`; empty when it validates.
    pub fn errors(contract: Contract, instance: &Value) -> Vec<String> {
        validator(contract).iter_errors(instance).map(|e| format!("at `{}`: {e}", e.instance_path())).collect()
    }

    pub fn assert_valid(contract: Contract, instance: &Value) {
        let errors = errors(contract, instance);
        assert!(errors.is_empty(), "{} does not hold for {instance:#}:\n{}", contract.file, errors.join("\n"));
    }

    /// A findings event as received: the body validates against the event schema of its routing key, and
    /// the AMQP properties are those the AsyncAPI document promises.
    pub fn assert_event(routing_key: &str, body: &Value, properties: &BasicProperties) {
        let contract = match routing_key {
            events::COMPLETED_ROUTING_KEY => schema::COMPLETED_EVENT,
            events::FAILED_ROUTING_KEY => schema::FAILED_EVENT,
            other => panic!("an event with routing key {other:?}, which no contract names: {body:#}"),
        };
        assert_valid(contract, body);
        let property = |value: Option<&lapin::types::ShortString>| value.map(|v| v.as_str().to_owned());
        assert_eq!(property(properties.content_type().as_ref()).as_deref(), Some(events::CONTENT_TYPE));
        assert_eq!(property(properties.message_id().as_ref()).as_deref(), body["id"].as_str(), "message_id");
        assert_eq!(property(properties.kind().as_ref()).as_deref(), body["type"].as_str(), "AMQP type");
        assert_eq!(header_text(properties, "traceparent").as_deref(), body["traceparent"].as_str(), "traceparent");
    }

    /// The AsyncAPI document as JSON.
    pub fn asyncapi() -> Value {
        let document: serde_yaml::Value = serde_yaml::from_str(schema::ASYNCAPI.text).expect("asyncapi.yaml parses");
        serde_json::to_value(document).expect("the AsyncAPI document maps to JSON")
    }

    /// The reason codes the AsyncAPI document allows in the dead-letter reason header.
    pub fn dead_letter_reasons() -> Vec<String> {
        let header = &asyncapi()["components"]["messages"]["deadLetter"]["headers"]["properties"][REASON_HEADER];
        let codes = header["enum"].as_array().expect("the reason header enumerates its codes");
        codes.iter().map(|code| code.as_str().expect("a code is text").to_owned()).collect()
    }

    /// A dead letter the worker wrote carries a documented reason code and a bounded detail.
    pub fn assert_dead_letter(properties: &BasicProperties) {
        if let Some(reason) = header_text(properties, REASON_HEADER) {
            assert!(dead_letter_reasons().contains(&reason), "undocumented {REASON_HEADER} {reason:?}");
            let detail = header_text(properties, DETAIL_HEADER).expect("a reason comes with a detail");
            assert!(detail.chars().count() <= 500, "{DETAIL_HEADER} is at most 500 characters");
        }
    }

    /// A job body the job schema accepts must never be poison to the worker's decoder.
    pub fn assert_schema_valid_jobs_decode(body: &[u8], max_job_bytes: usize) {
        let Ok(value) = serde_json::from_slice::<Value>(body) else { return };
        if body.len() <= max_job_bytes && errors(schema::JOB, &value).is_empty() {
            clerk_audit::intake::job::decode(body, max_job_bytes)
                .unwrap_or_else(|e| panic!("the job schema accepts {value:#}, the decoder refuses it: {e}"));
        }
    }
}
