//! Delivery guarantees under faults (issue 4, SPEC section 8), proven against the real RabbitMQ and
//! PostgreSQL with the worker running as a child process (`clerk-audit worker`): SIGTERM drains, SIGKILL
//! loses nothing, replicas never complete a scan twice, transient faults retry in the job or through the
//! delay queues, outages of the database or the broker (a TCP proxy on loopback that drops its
//! connections) are survived, a poison job or a panicking handler never loops.
//!
//! Its own test binary: these tests are slow-ish and spawn processes, and they keep the main suite's
//! linking unchanged.

#[path = "it/harness.rs"]
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use clerk_audit::configuration::Settings;
use clerk_audit::intake::broker::{self, REASON_HEADER, header_text};
use clerk_audit::intake::consumer::{ConsumeEnd, consume};
use clerk_audit::intake::job::ScanJob;
use clerk_audit::intake::{DeliveryInfo, JobOutcome, ProcessJob};
use clerk_audit::pipeline::Pipeline;
use clerk_audit::startup::Application;
use clerk_audit_sandbox::{Fault, Scenario};
use futures::future::BoxFuture;
use lapin::BasicProperties;
use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use harness::{TestApp, project, spawn_env_with};

// ---------------------------------------------------------------------------------------------------
// Helpers: the worker as a child process, conditions with deadlines, a TCP proxy that can fail.
// ---------------------------------------------------------------------------------------------------

/// The `CLERK_AUDIT_*` variables that make the binary use exactly `settings`.
fn worker_env(settings: &Settings) -> Vec<(String, String)> {
    let s = settings;
    let mut vars: Vec<(&str, String)> = vec![
        ("WORKER__CONCURRENCY", s.worker.concurrency.to_string()),
        ("WORKER__MAX_JOB_BYTES", s.worker.max_job_bytes.to_string()),
        ("WORKER__MAX_ATTEMPTS", s.worker.max_attempts.to_string()),
        ("WORKER__RETRY_DELAY_SECS", s.worker.retry_delay_secs.to_string()),
        ("WORKER__DRAIN_GRACE_SECS", s.worker.drain_grace_secs.to_string()),
        ("AMQP__URL", s.amqp.url.expose_secret().to_owned()),
        ("AMQP__JOBS_EXCHANGE", s.amqp.jobs_exchange.clone()),
        ("AMQP__JOBS_ROUTING_KEY", s.amqp.jobs_routing_key.clone()),
        ("AMQP__JOBS_QUEUE", s.amqp.jobs_queue.clone()),
        ("AMQP__RETRY_QUEUE", s.amqp.retry_queue.clone()),
        ("AMQP__DEAD_LETTER_EXCHANGE", s.amqp.dead_letter_exchange.clone()),
        ("AMQP__DEAD_LETTER_QUEUE", s.amqp.dead_letter_queue.clone()),
        ("AMQP__DELIVERY_LIMIT", s.amqp.delivery_limit.to_string()),
        ("AMQP__FINDINGS_EXCHANGE", s.amqp.findings_exchange.clone()),
        ("DATABASE__URL", s.database.url.expose_secret().to_owned()),
        ("DATABASE__POOL_SIZE", s.database.pool_size.to_string()),
        ("DATABASE__TIMEOUT_MS", s.database.timeout_ms.to_string()),
        ("KMS__ENDPOINT_URL", s.kms.endpoint_url.clone()),
        ("KMS__REGION", s.kms.region.clone()),
        ("CLERK__BACKEND_API_URL", s.clerk.backend_api_url.to_string()),
        ("CLERK__API_VERSION", s.clerk.api_version.clone()),
        ("CLERK__RATE_LIMIT_PER_10S", s.clerk.rate_limit_per_10s.to_string()),
        ("SVIX__API_URL", s.svix.api_url.clone()),
        ("HTTP__ALLOW_LOOPBACK", s.http.allow_loopback.to_string()),
        ("HTTP__CONNECT_TIMEOUT_MS", s.http.connect_timeout_ms.to_string()),
        ("HTTP__REQUEST_TIMEOUT_MS", s.http.request_timeout_ms.to_string()),
        ("HTTP__MAX_BODY_BYTES", s.http.max_body_bytes.to_string()),
        ("HTTP__MAX_ATTEMPTS", s.http.max_attempts.to_string()),
        ("HTTP__MAX_RETRY_AFTER_SECS", s.http.max_retry_after_secs.to_string()),
        ("DNS__NAMESERVER", s.dns.nameserver.clone()),
        ("DNS__TIMEOUT_MS", s.dns.timeout_ms.to_string()),
        ("CHECKS__MFA_USER_THRESHOLD", s.checks.mfa_user_threshold.to_string()),
        ("OPS__LISTEN", "127.0.0.1:0".to_owned()),
        ("TELEMETRY__LOG_FORMAT", "text".to_owned()),
        ("EVENTS__SOURCE", s.events.source.clone()),
    ];
    vars.push(("ENVIRONMENT", "local".to_owned()));
    vars.push(("CONFIG_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/config").to_owned()));
    vars.into_iter().map(|(k, v)| (format!("CLERK_AUDIT_{k}"), v)).collect()
}

/// A `clerk-audit worker` child process; its log goes to a temporary file (shown if the test fails,
/// removed otherwise). Killed if dropped while running.
struct Worker {
    child: Child,
    log: PathBuf,
    name: String,
}

impl Worker {
    fn start(settings: &Settings, name: &str) -> Self {
        let log = std::env::temp_dir().join(format!("clerk-audit-delivery-{}-{name}.log", Uuid::new_v4().simple()));
        let file = std::fs::File::create(&log).expect("create the worker log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_clerk-audit"));
        command.arg("worker");
        // The test's own CLERK_AUDIT_* variables must not leak into the worker's configuration.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CLERK_AUDIT_") {
                command.env_remove(key);
            }
        }
        command
            .envs(worker_env(settings))
            .env("RUST_LOG", "info,lapin=warn")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .kill_on_drop(true);
        let child = command.spawn().expect("start clerk-audit worker");
        Worker { child, log, name: name.to_owned() }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("the worker is running")
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGKILL, and reap the process.
    async fn kill(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        let _ = self.child.wait().await;
    }

    /// Waits for the process to exit, at most `deadline`.
    async fn exit_status(&mut self, deadline: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(deadline, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("worker {} did not exit in time:\n{}", self.name, self.log_tail(40)))
            .expect("wait for the worker")
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_lines_containing(&self, needle: &str) -> usize {
        self.log_text().lines().filter(|line| line.contains(needle)).count()
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- worker {} log ({}), last lines ---\n{}", self.name, self.log.display(), self.log_tail(80));
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Polls `condition` every 100 ms until it holds; panics naming `what` after `deadline`.
async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    loop {
        if condition().await {
            return;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    app.pool.get().await.expect("test pool").query_one(sql, &[]).await.expect("count query").get(0)
}

async fn completed_scans(app: &TestApp) -> i64 {
    count(app, "SELECT count(*) FROM scans WHERE status = 'completed'").await
}

/// Ready messages in a queue (passive declare).
async fn queue_depth(app: &TestApp, queue: &str) -> u32 {
    let channel = app.broker.create_channel().await.unwrap();
    let declared = channel
        .queue_declare(queue.into(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default())
        .await
        .expect("queue exists");
    let _ = channel.close(200, "".into()).await;
    declared.message_count()
}

/// Publishes jobs on one confirm channel.
async fn enqueue_all(app: &TestApp, jobs: &[ScanJob]) {
    let channel = broker::confirm_channel(&app.broker).await.unwrap();
    for job in jobs {
        let body = harness::job_body(job);
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_message_id(job.scan_id.to_string().into());
        broker::publish_confirmed(
            &channel,
            &app.settings.amqp.jobs_exchange,
            &app.settings.amqp.jobs_routing_key,
            &body,
            properties,
            Duration::from_secs(10),
        )
        .await
        .expect("job published");
    }
    let _ = channel.close(200, "".into()).await;
}

/// A connected scenario's jobs.
async fn jobs_for(app: &TestApp, scenario: Scenario, n: usize) -> (String, Vec<ScanJob>) {
    let project = project();
    let instance = app.sandbox.instance(scenario).name.clone();
    let key_ref = app.connect_scenario(&project, scenario).await;
    let jobs = (0..n).map(|_| app.job(&project, &instance, key_ref)).collect();
    (instance, jobs)
}

/// Reads events until every scan of `scans` has one, then keeps reading while more arrive within
/// `linger`; answers every event id seen per scan (one entry per delivery).
async fn collect_events(app: &mut TestApp, scans: &BTreeSet<Uuid>, linger: Duration) -> BTreeMap<Uuid, Vec<String>> {
    let mut seen: BTreeMap<Uuid, Vec<String>> = BTreeMap::new();
    let record = |body: &serde_json::Value, seen: &mut BTreeMap<Uuid, Vec<String>>| {
        let scan: Uuid = body["data"]["scan_id"].as_str().expect("scan_id").parse().expect("uuid");
        seen.entry(scan).or_default().push(body["id"].as_str().expect("event id").to_owned());
    };
    while !scans.iter().all(|scan| seen.contains_key(scan)) {
        let (_, body, _) = app.next_event().await;
        record(&body, &mut seen);
    }
    while let Some(body) = app.no_event_within(linger).await {
        record(&body, &mut seen);
    }
    seen
}

/// Every scan got at least one event, all copies of a scan's event share one id, and nothing else came.
fn assert_events_once_per_scan(events: &BTreeMap<Uuid, Vec<String>>, scans: &BTreeSet<Uuid>) {
    let keys: BTreeSet<Uuid> = events.keys().copied().collect();
    assert_eq!(&keys, scans, "events for exactly the jobs' scans");
    for (scan, ids) in events {
        let distinct: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), 1, "scan {scan}: duplicates share their id: {ids:?}");
        assert_eq!(ids[0], clerk_audit::outbox::events::event_id(*scan).to_string());
    }
}

/// Exactly one completed scan and one outbox row per job.
async fn assert_each_completed_once(app: &TestApp, jobs: &[ScanJob]) {
    let client = app.pool.get().await.unwrap();
    for job in jobs {
        let status: String =
            client.query_one("SELECT status FROM scans WHERE id = $1", &[&job.scan_id]).await.unwrap().get(0);
        assert_eq!(status, "completed", "scan {}", job.scan_id);
        let outbox: i64 =
            client.query_one("SELECT count(*) FROM outbox WHERE scan_id = $1", &[&job.scan_id]).await.unwrap().get(0);
        assert_eq!(outbox, 1, "one outbox row for scan {}", job.scan_id);
    }
}

/// A TCP proxy on loopback in front of a real service. `outage` closes every proxied connection and stops
/// accepting (new connections are refused); `recover` accepts again on the same port.
struct TcpProxy {
    port: u16,
    target: SocketAddr,
    running: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
    /// While true, connections stay open but nothing is forwarded (a hung server whose kernel still
    /// acknowledges bytes).
    frozen: tokio::sync::watch::Sender<bool>,
}

impl TcpProxy {
    async fn start(target: SocketAddr) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let proxy = Arc::new(TcpProxy {
            port: listener.local_addr().unwrap().port(),
            target,
            running: Mutex::new(None),
            frozen: tokio::sync::watch::Sender::new(false),
        });
        proxy.serve(listener).await;
        proxy
    }

    async fn serve(&self, listener: TcpListener) {
        let stop = CancellationToken::new();
        let target = self.target;
        let token = stop.clone();
        let frozen = self.frozen.subscribe();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => break,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut inbound, _)) = accepted else { continue };
                let token = token.clone();
                let mut frozen = frozen.clone();
                connections.spawn(async move {
                    let held = *frozen.borrow();
                    if held {
                        // Hold the connection, answer nothing.
                        token.cancelled().await;
                        return;
                    }
                    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = until_frozen(&mut frozen) => token.cancelled().await,
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                    drop((inbound, outbound));
                });
            }
            drop(listener);
            // Dropping the set aborts every connection task, closing both sides.
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        });
        *self.running.lock().await = Some((stop, task));
    }

    /// Stops forwarding without closing anything.
    fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Ends a freeze: the held connections are closed (as a restarted server would) and new ones forwarded.
    async fn thaw(&self) {
        self.outage().await;
        self.frozen.send_replace(false);
        self.recover().await;
    }

    async fn outage(&self) {
        if let Some((stop, task)) = self.running.lock().await.take() {
            stop.cancel();
            let _ = task.await;
        }
    }

    async fn recover(&self) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(error) if tries < 50 => {
                    tries += 1;
                    eprintln!("proxy rebind on {}: {error}; retrying", self.port);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("proxy cannot rebind port {}: {error}", self.port),
            }
        };
        self.serve(listener).await;
    }

    /// `url` with its host and port replaced by the proxy's.
    fn url_through(&self, url: &str) -> String {
        let mut url = url::Url::parse(url).expect("service URL");
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.port)).unwrap();
        url.to_string()
    }
}

async fn until_frozen(frozen: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        let now = *frozen.borrow_and_update();
        if now {
            return;
        }
        if frozen.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn service_addr(url: &str) -> SocketAddr {
    let url = url::Url::parse(url).expect("service URL");
    let host = url.host_str().expect("host");
    let port = url.port_or_known_default().expect("port");
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port)).expect("resolve").next().expect("address")
}

// ---------------------------------------------------------------------------------------------------
// 1. SIGTERM with jobs in flight.
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_jobs_starts_no_new_ones_and_exits_0() {
    let mut app = spawn_env_with(|s| {
        s.worker.concurrency = 2;
        s.worker.drain_grace_secs = 60;
    })
    .await;
    let (instance, jobs) = jobs_for(&app, Scenario::Development, 5).await;
    // Each Clerk call takes a while, so the first two jobs are inside the Clerk call at the signal.
    app.sandbox.set_fault(&instance, Fault::Latency { ms: 1500 });
    enqueue_all(&app, &jobs).await;
    let mut worker = Worker::start(&app.settings, "w1");
    wait_until("two jobs in flight", Duration::from_secs(60), || async {
        count(&app, "SELECT count(*) FROM scans WHERE status = 'running'").await == 2
            && !app.clerk_requests_for(&instance).is_empty()
    })
    .await;

    worker.signal("TERM");
    let status = worker.exit_status(Duration::from_secs(90)).await;
    assert_eq!(status.code(), Some(0), "exit code 0 after SIGTERM");

    // The two in-flight jobs finished, were published and acked; no other job started.
    let started: Vec<Uuid> = app
        .pool
        .get()
        .await
        .unwrap()
        .query("SELECT id FROM scans", &[])
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(started.len(), 2, "no job started after the signal");
    assert_each_completed_once(
        &app,
        &jobs.iter().filter(|j| started.contains(&j.scan_id)).cloned().collect::<Vec<_>>(),
    )
    .await;
    let scans: BTreeSet<Uuid> = started.iter().copied().collect();
    let events = collect_events(&mut app, &scans, Duration::from_secs(1)).await;
    assert_events_once_per_scan(&events, &scans);
    // The other three stay in the queue, ready for the next worker (acked ones are gone).
    assert_eq!(queue_depth(&app, &app.settings.amqp.jobs_queue).await, 3);
    assert!(worker.log_text().contains("worker stopped"));
    drop(worker);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------------
// 2. SIGKILL during the Clerk call.
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_the_clerk_call_loses_nothing_and_completes_once() {
    let mut app = spawn_env_with(|s| s.worker.concurrency = 2).await;
    let (instance, jobs) = jobs_for(&app, Scenario::Development, 2).await;
    app.sandbox.set_fault(&instance, Fault::Latency { ms: 3000 });
    enqueue_all(&app, &jobs).await;
    let mut first = Worker::start(&app.settings, "first");
    wait_until("both jobs inside the Clerk call", Duration::from_secs(60), || async {
        count(&app, "SELECT count(*) FROM scans WHERE status = 'running'").await == 2
            && app.clerk_requests_for(&instance).len() >= 2
    })
    .await;
    first.kill().await;
    assert_eq!(completed_scans(&app).await, 0, "killed before any commit");

    app.sandbox.clear_faults();
    let mut second = Worker::start(&app.settings, "second");
    wait_until("both scans completed", Duration::from_secs(60), || async { completed_scans(&app).await == 2 }).await;
    let scans: BTreeSet<Uuid> = jobs.iter().map(|j| j.scan_id).collect();
    let events = collect_events(&mut app, &scans, Duration::from_secs(2)).await;
    assert_events_once_per_scan(&events, &scans);
    assert_each_completed_once(&app, &jobs).await;
    // The redelivery counted as a second attempt of the same scan.
    for job in &jobs {
        assert_eq!(app.scan_status(job.scan_id).await, Some(("completed".into(), 2)));
    }
    second.signal("TERM");
    assert_eq!(second.exit_status(Duration::from_secs(60)).await.code(), Some(0));
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------------
// 3. SIGKILL after the commit, before the event was published.
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_after_commit_before_publish_sends_the_outbox_row_after_restart() {
    let mut app = spawn_env_with(|_| {}).await;
    let capture = format!("{}.capture", app.settings.amqp.findings_exchange);
    let exchange = app.settings.amqp.findings_exchange.clone();
    let channel = app.broker.create_channel().await.unwrap();
    // No queue bound: the mandatory publish of the event comes back, the outbox row stays unsent.
    channel
        .queue_unbind(capture.as_str().into(), exchange.as_str().into(), "#".into(), FieldTable::default())
        .await
        .unwrap();

    let (_, jobs) = jobs_for(&app, Scenario::Development, 1).await;
    let job = &jobs[0];
    enqueue_all(&app, &jobs).await;
    let mut first = Worker::start(&app.settings, "first");
    wait_until("the completed scan committed and its publish returned", Duration::from_secs(60), || async {
        count(&app, "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND attempts >= 1 AND last_error IS NOT NULL")
            .await
            == 1
    })
    .await;
    first.kill().await;
    assert_eq!(app.scan_status(job.scan_id).await, Some(("completed".into(), 1)));
    assert!(first.log_text().contains("unroutable"), "the event was returned as unroutable");

    channel
        .queue_bind(
            capture.as_str().into(),
            exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut second = Worker::start(&app.settings, "second");
    let scans = BTreeSet::from([job.scan_id]);
    let events = collect_events(&mut app, &scans, Duration::from_secs(2)).await;
    assert_events_once_per_scan(&events, &scans);
    assert_eq!(events[&job.scan_id].len(), 1, "exactly one event: {events:?}");
    assert_eq!(count(&app, "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL").await, 1);
    // The job had been acked after the commit: no second attempt.
    assert_eq!(app.scan_status(job.scan_id).await, Some(("completed".into(), 1)));
    second.signal("TERM");
    assert_eq!(second.exit_status(Duration::from_secs(60)).await.code(), Some(0));
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------------
// 4. Three replicas on one queue, one killed mid-run.
// ---------------------------------------------------------------------------------------------------

const REPLICA_JOBS: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_one_killed_complete_every_scan_exactly_once() {
    let started = Instant::now();
    let mut app = spawn_env_with(|s| {
        // The per-instance rate limit would make 500 scans of one instance take minutes: not under test here.
        s.clerk.rate_limit_per_10s = 1_000_000;
        s.database.pool_size = 4;
    })
    .await;
    let (_, jobs) = jobs_for(&app, Scenario::Development, REPLICA_JOBS).await;
    enqueue_all(&app, &jobs).await;
    let mut workers: Vec<Worker> = (1..=3).map(|i| Worker::start(&app.settings, &format!("replica{i}"))).collect();
    wait_until("a fifth of the scans completed", Duration::from_secs(180), || async {
        completed_scans(&app).await >= (REPLICA_JOBS / 5) as i64
    })
    .await;
    workers[0].kill().await;
    let killed_at = completed_scans(&app).await;
    wait_until("every scan completed", Duration::from_secs(180), || async {
        completed_scans(&app).await == REPLICA_JOBS as i64
    })
    .await;
    let redelivered = count(&app, "SELECT count(*) FROM scans WHERE attempts > 1").await;
    eprintln!(
        "{REPLICA_JOBS} scans by 3 replicas (one killed at {killed_at} completed, {redelivered} scans redelivered) in {:?}",
        started.elapsed()
    );
    assert!(workers[1].is_running() && workers[2].is_running());

    assert_eq!(count(&app, "SELECT count(*) FROM scans").await, REPLICA_JOBS as i64);
    assert_eq!(count(&app, "SELECT count(*) FROM outbox").await, REPLICA_JOBS as i64);
    assert_eq!(count(&app, "SELECT count(DISTINCT scan_id) FROM outbox").await, REPLICA_JOBS as i64);
    let scans: BTreeSet<Uuid> = jobs.iter().map(|j| j.scan_id).collect();
    let events = collect_events(&mut app, &scans, Duration::from_secs(2)).await;
    assert_events_once_per_scan(&events, &scans);
    for worker in &workers[1..] {
        worker.signal("TERM");
    }
    for worker in &mut workers[1..] {
        assert_eq!(worker.exit_status(Duration::from_secs(60)).await.code(), Some(0));
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------------
// 5. Clerk 500 then recovering; Clerk 429 with a long Retry-After.
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clerk_errors_retry_in_the_job_and_a_long_retry_after_goes_through_the_delay_queue() {
    let mut app = spawn_env_with(|s| {
        s.http.max_attempts = 3;
        s.http.max_retry_after_secs = 2;
    })
    .await;
    let mut worker = Worker::start(&app.settings, "w");

    // 500 twice, then answers: retried inside the job, first attempt completes.
    let (instance, jobs) = jobs_for(&app, Scenario::Development, 1).await;
    app.sandbox.set_fault(&instance, Fault::ServerError { times: 2 });
    enqueue_all(&app, &jobs).await;
    let (routing_key, _) = app.event_for(jobs[0].scan_id).await;
    assert_eq!(routing_key, "clerk.audit.completed");
    assert_eq!(app.scan_status(jobs[0].scan_id).await, Some(("completed".into(), 1)));
    let statuses: Vec<u16> = app.clerk_requests_for(&instance).iter().map(|r| r.status).collect();
    assert_eq!(&statuses[..3], &[500, 500, 200], "{statuses:?}");

    // 429 with Retry-After beyond http.max_retry_after_secs: the job is delayed at least that long.
    app.sandbox.clear_requests();
    let retry_after = 5;
    let job = app.job(&jobs[0].project_id, &instance, jobs[0].key_ref);
    app.sandbox.set_fault(&instance, Fault::RateLimited { retry_after_secs: retry_after, times: 1 });
    enqueue_all(&app, std::slice::from_ref(&job)).await;
    let (routing_key, _) = app.event_for(job.scan_id).await;
    assert_eq!(routing_key, "clerk.audit.completed");
    assert_eq!(app.scan_status(job.scan_id).await, Some(("completed".into(), 2)), "two attempts");
    // The two attempts' requests are split by the largest gap between arrivals; the 429 was not retried
    // inside the job (one `GET /v1/instance` per attempt).
    let requests = app.clerk_requests_for(&instance);
    let split = (1..requests.len()).max_by_key(|&i| requests[i].at - requests[i - 1].at).expect("two attempts");
    let (first, second) = requests.split_at(split);
    assert!(first.iter().any(|r| r.status == 429) && second.iter().all(|r| r.status != 429), "{requests:?}");
    for attempt in [first, second] {
        assert_eq!(attempt.iter().filter(|r| r.path == "/v1/instance").count(), 1, "{requests:?}");
    }
    let waited = second[0].at - first[0].at;
    assert!(waited >= chrono::Duration::seconds(retry_after as i64), "delayed {waited:?}, Retry-After {retry_after}s");
    assert!(worker.log_text().contains("job delayed"));
    worker.signal("TERM");
    assert_eq!(worker.exit_status(Duration::from_secs(60)).await.code(), Some(0));
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------------
// 6. PostgreSQL unavailable for a while; the broker restarting with jobs in flight.
// ---------------------------------------------------------------------------------------------------

const DATABASE_OUTAGE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_delays_jobs_and_they_complete_after_recovery() {
    let proxy = TcpProxy::start(service_addr(&harness::admin_database_url())).await;
    let mut app = spawn_env_with(|s| {
        s.database.timeout_ms = 2_000;
        // Enough attempts for the outage: delays of 1, 2, 4, 8, 16 s.
        s.worker.max_attempts = 10;
    })
    .await;
    let mut settings = app.settings.clone();
    settings.database.url = SecretString::from(proxy.url_through(settings.database.url.expose_secret()));
    let mut worker = Worker::start(&settings, "w");

    // Working before the outage.
    let (instance, jobs) = jobs_for(&app, Scenario::Development, 4).await;
    enqueue_all(&app, &jobs[..1]).await;
    app.event_for(jobs[0].scan_id).await;

    let calls_before = app.clerk_requests_for(&instance).len();
    proxy.outage().await;
    let outage_started = Instant::now();
    enqueue_all(&app, &jobs[1..]).await;
    wait_until("the jobs went to the delay queue", Duration::from_secs(60), || async {
        worker.log_lines_containing("job delayed") >= 3
    })
    .await;
    // The outage lasts its time; the process stays up through it.
    while outage_started.elapsed() < DATABASE_OUTAGE {
        assert!(worker.is_running(), "the worker exited during the database outage");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(worker.is_running());
    assert_eq!(app.clerk_requests_for(&instance).len(), calls_before, "no Clerk call without the database");
    proxy.recover().await;

    wait_until("every scan completed after recovery", Duration::from_secs(90), || async {
        completed_scans(&app).await == 4
    })
    .await;
    // The first job's event was read above; it may come again (its relay transaction may have been cut by
    // the outage after the broker confirmed it): a duplicate with the same id.
    let rest: BTreeSet<Uuid> = jobs[1..].iter().map(|j| j.scan_id).collect();
    let mut events = collect_events(&mut app, &rest, Duration::from_secs(1)).await;
    events.entry(jobs[0].scan_id).or_default().push(clerk_audit::outbox::events::event_id(jobs[0].scan_id).to_string());
    assert_events_once_per_scan(&events, &jobs.iter().map(|j| j.scan_id).collect());
    assert_each_completed_once(&app, &jobs).await;
    assert!(worker.is_running());
    worker.signal("TERM");
    assert_eq!(worker.exit_status(Duration::from_secs(60)).await.code(), Some(0));
    proxy.outage().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_database_cannot_hang_a_job() {
    let proxy = TcpProxy::start(service_addr(&harness::admin_database_url())).await;
    let mut app = spawn_env_with(|s| {
        s.database.timeout_ms = 2_000;
        s.worker.max_attempts = 10;
    })
    .await;
    let mut settings = app.settings.clone();
    settings.database.url = SecretString::from(proxy.url_through(settings.database.url.expose_secret()));
    let mut worker = Worker::start(&settings, "w");
    let (_, jobs) = jobs_for(&app, Scenario::Development, 2).await;
    enqueue_all(&app, &jobs[..1]).await;
    app.event_for(jobs[0].scan_id).await;

    // The server stops answering on open connections (and new ones): the job must not hang.
    proxy.freeze();
    enqueue_all(&app, &jobs[1..]).await;
    wait_until("the job failed over to the delay path", Duration::from_secs(60), || async {
        worker.log_lines_containing("job delayed") >= 1
    })
    .await;
    assert!(worker.is_running());
    proxy.thaw().await;
    wait_until("the job completed after the thaw", Duration::from_secs(90), || async {
        completed_scans(&app).await == 2
    })
    .await;
    let rest = BTreeSet::from([jobs[1].scan_id]);
    let mut events = collect_events(&mut app, &rest, Duration::from_secs(1)).await;
    events.entry(jobs[0].scan_id).or_default().push(clerk_audit::outbox::events::event_id(jobs[0].scan_id).to_string());
    assert_events_once_per_scan(&events, &jobs.iter().map(|j| j.scan_id).collect());
    worker.signal("TERM");
    assert_eq!(worker.exit_status(Duration::from_secs(60)).await.code(), Some(0));
    proxy.outage().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_with_jobs_in_flight_reconnects_and_completes_every_job_once() {
    let proxy = TcpProxy::start(service_addr(&harness::amqp_url())).await;
    let mut app = spawn_env_with(|s| s.worker.concurrency = 4).await;
    let mut settings = app.settings.clone();
    settings.amqp.url = SecretString::from(proxy.url_through(settings.amqp.url.expose_secret()));
    let mut worker = Worker::start(&settings, "w");

    let (instance, jobs) = jobs_for(&app, Scenario::Development, 6).await;
    app.sandbox.set_fault(&instance, Fault::Latency { ms: 1500 });
    enqueue_all(&app, &jobs).await;
    wait_until("jobs in flight", Duration::from_secs(60), || async {
        count(&app, "SELECT count(*) FROM scans WHERE status = 'running'").await == 4
    })
    .await;
    proxy.outage().await;
    wait_until("the worker noticed the broker loss", Duration::from_secs(60), || async {
        worker.log_lines_containing("broker connection lost") + worker.log_lines_containing("broker unavailable") >= 1
    })
    .await;
    assert!(worker.is_running());
    app.sandbox.clear_faults();
    proxy.recover().await;

    wait_until("every scan completed", Duration::from_secs(120), || async {
        completed_scans(&app).await == jobs.len() as i64
    })
    .await;
    let scans: BTreeSet<Uuid> = jobs.iter().map(|j| j.scan_id).collect();
    let events = collect_events(&mut app, &scans, Duration::from_secs(2)).await;
    assert_events_once_per_scan(&events, &scans);
    assert_each_completed_once(&app, &jobs).await;
    // Every delivery was settled: nothing is left in the queue.
    wait_until("the jobs queue is empty", Duration::from_secs(30), || async {
        queue_depth(&app, &app.settings.amqp.jobs_queue).await == 0
    })
    .await;
    assert!(worker.is_running());
    assert!(worker.log_lines_containing("connected to the broker") >= 2, "reconnected");
    worker.signal("TERM");
    assert_eq!(worker.exit_status(Duration::from_secs(60)).await.code(), Some(0));
    proxy.outage().await;
    app.stop().await;
}

/// A broker that stops reading from the worker's connection is what blocked publishers look like to a
/// client: publishes and confirms stall. The relay must keep the event unsent, stay alive, and send it once
/// the broker reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_keeps_working_while_the_broker_blocks_publishers() {
    let proxy = TcpProxy::start(service_addr(&harness::amqp_url())).await;
    let mut app = spawn_env_with(|_| {}).await;
    let mut settings = app.settings.clone();
    settings.amqp.url = SecretString::from(proxy.url_through(settings.amqp.url.expose_secret()));
    let mut worker = Worker::start(&settings, "w");
    let (instance, jobs) = jobs_for(&app, Scenario::Development, 2).await;
    enqueue_all(&app, &jobs[..1]).await;
    app.event_for(jobs[0].scan_id).await;

    // Hold the second job inside the Clerk call, then block the broker before it commits.
    app.sandbox.set_fault(&instance, Fault::Latency { ms: 2_000 });
    enqueue_all(&app, &jobs[1..]).await;
    wait_until("the job is in flight", Duration::from_secs(60), || async {
        count(&app, "SELECT count(*) FROM scans WHERE status = 'running'").await == 1
    })
    .await;
    proxy.freeze();
    wait_until("the scan committed while the broker is blocked", Duration::from_secs(60), || async {
        completed_scans(&app).await == 2
    })
    .await;
    wait_until("the relay gave up waiting for the confirm and kept the row", Duration::from_secs(60), || async {
        worker.log_lines_containing("event not published; will retry") >= 1
    })
    .await;
    let unsent = count(&app, "SELECT count(*) FROM outbox WHERE sent_at IS NULL").await;
    assert_eq!(unsent, 1, "the blocked event stays unsent");
    assert!(worker.is_running());

    proxy.thaw().await;
    let rest = BTreeSet::from([jobs[1].scan_id]);
    let mut events = collect_events(&mut app, &rest, Duration::from_secs(2)).await;
    events.entry(jobs[0].scan_id).or_default().push(clerk_audit::outbox::events::event_id(jobs[0].scan_id).to_string());
    assert_events_once_per_scan(&events, &jobs.iter().map(|j| j.scan_id).collect());
    wait_until("every outbox row is marked sent", Duration::from_secs(60), || async {
        count(&app, "SELECT count(*) FROM outbox WHERE sent_at IS NULL").await == 0
    })
    .await;
    assert_each_completed_once(&app, &jobs).await;
    worker.signal("TERM");
    assert_eq!(worker.exit_status(Duration::from_secs(60)).await.code(), Some(0));
    proxy.outage().await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------------
// 7. KMS throttling.
// ---------------------------------------------------------------------------------------------------

/// A KMS stand-in in front of moto: the first `throttle` Decrypt calls get a ThrottlingException.
async fn throttling_kms(moto: String, throttle: u32) -> (String, Arc<AtomicU32>, JoinHandle<()>) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};

    let decrypts = Arc::new(AtomicU32::new(0));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let seen = decrypts.clone();
    let handler = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let client = client.clone();
        let moto = moto.clone();
        let seen = seen.clone();
        async move {
            let is_decrypt = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) == Some("TrentService.Decrypt");
            if is_decrypt && seen.fetch_add(1, Ordering::SeqCst) < throttle {
                return (
                    StatusCode::BAD_REQUEST,
                    [("x-amzn-ErrorType", "ThrottlingException"), ("content-type", "application/x-amz-json-1.1")],
                    r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
                )
                    .into_response();
            }
            let url =
                format!("{}{}", moto.trim_end_matches('/'), uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
            let mut request =
                client.request(reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap(), url).body(body);
            for (name, value) in &headers {
                if name != "host" && name != "content-length" {
                    request = request.header(name.as_str(), value.as_bytes());
                }
            }
            match request.send().await {
                Ok(answer) => {
                    let mut response = Response::builder().status(answer.status().as_u16());
                    for (name, value) in answer.headers() {
                        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
                            response = response.header(name.as_str(), value.as_bytes());
                        }
                    }
                    response.body(axum::body::Body::from(answer.bytes().await.unwrap_or_default())).unwrap()
                }
                Err(_) => StatusCode::BAD_GATEWAY.into_response(),
            }
        }
    };
    let router = axum::Router::new().fallback(handler);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (url, decrypts, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_throttling_is_retried_and_the_job_completes() {
    let throttle = 2;
    let (kms_url, decrypts, kms_task) = throttling_kms(harness::kms_endpoint(), throttle).await;
    let mut app = spawn_env_with(|_| {}).await;
    let mut settings = app.settings.clone();
    settings.kms.endpoint_url = kms_url;
    let mut worker = Worker::start(&settings, "w");
    let (_, jobs) = jobs_for(&app, Scenario::Development, 1).await;
    enqueue_all(&app, &jobs).await;
    let (routing_key, _) = app.event_for(jobs[0].scan_id).await;
    assert_eq!(routing_key, "clerk.audit.completed");
    assert!(decrypts.load(Ordering::SeqCst) > throttle, "the stand-in throttled, then moto answered");
    assert_each_completed_once(&app, &jobs).await;
    worker.signal("TERM");
    assert_eq!(worker.exit_status(Duration::from_secs(60)).await.code(), Some(0));
    kms_task.abort();
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------------
// 8. A poison job never loops; a panicking handler does not kill the process.
// ---------------------------------------------------------------------------------------------------

const PANIC_BODY: &[u8] = b"this body makes the test handler panic";
const POISON_BODY: &[u8] = b"{not json";

/// The real pipeline, except that one body panics; counts deliveries of the odd bodies.
struct Faulty {
    inner: Arc<Pipeline>,
    panics: AtomicU32,
    poison: AtomicU32,
}

impl ProcessJob for Faulty {
    fn process<'a>(&'a self, body: &'a [u8], delivery: &'a DeliveryInfo) -> BoxFuture<'a, JobOutcome> {
        Box::pin(async move {
            if body == PANIC_BODY {
                self.panics.fetch_add(1, Ordering::SeqCst);
                panic!("the test handler panics (attempt {})", delivery.attempt);
            }
            if body == POISON_BODY {
                self.poison.fetch_add(1, Ordering::SeqCst);
            }
            self.inner.process(body, delivery).await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_never_loops_and_a_panicking_handler_is_dead_lettered_after_max_attempts() {
    let mut app = spawn_env_with(|s| {
        s.worker.max_attempts = 3;
        s.worker.concurrency = 2;
    })
    .await;
    let application = Application::build(app.settings.clone()).await.expect("application builds");
    let handler =
        Arc::new(Faulty { inner: application.pipeline(), panics: AtomicU32::new(0), poison: AtomicU32::new(0) });
    let connection = broker::connect(&app.settings.amqp, "delivery test consumer").await.unwrap();
    let jobs_channel = connection.create_channel().await.unwrap();
    let copies = broker::confirm_channel(&connection).await.unwrap();
    let shutdown = CancellationToken::new();
    let settings = app.settings.clone();
    let consumer = {
        let handler: Arc<dyn ProcessJob> = handler.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { consume(jobs_channel, copies, handler, &settings, shutdown).await })
    };

    app.publish_raw(PANIC_BODY).await;
    app.publish_raw(POISON_BODY).await;
    let (_, jobs) = jobs_for(&app, Scenario::Development, 1).await;
    enqueue_all(&app, &jobs).await;

    let mut dead = BTreeMap::new();
    for _ in 0..2 {
        let letter = app.next_dead_letter().await;
        dead.insert(letter.data.clone(), header_text(&letter.properties, REASON_HEADER));
    }
    assert_eq!(dead.get(POISON_BODY), Some(&Some("malformed_json".to_owned())), "{dead:?}");
    assert!(dead.contains_key(PANIC_BODY), "the panicking job is dead-lettered: {dead:?}");
    assert_eq!(handler.panics.load(Ordering::SeqCst), app.settings.worker.max_attempts, "one delivery per attempt");
    // The normal job completed while the other one kept panicking; the consumer is still running.
    wait_until("the normal job completed", Duration::from_secs(60), || async {
        app.scan_status(jobs[0].scan_id).await.is_some_and(|(status, _)| status == "completed")
    })
    .await;
    assert!(!consumer.is_finished(), "the consumer survived the panics");
    assert_eq!(handler.poison.load(Ordering::SeqCst), 1, "the poison job was delivered once");
    assert_eq!(queue_depth(&app, &app.settings.amqp.jobs_queue).await, 0);

    shutdown.cancel();
    assert_eq!(consumer.await.unwrap(), ConsumeEnd::Shutdown);
    assert_eq!(handler.poison.load(Ordering::SeqCst), 1, "still once");
    let _ = connection.close(200, "done".into()).await;
    app.stop().await;
}
