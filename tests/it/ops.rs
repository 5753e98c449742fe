//! Operability: `/readyz` follows the broker, `/metrics` counts jobs and calls, a job's `traceparent`
//! continues into the worker's spans and the findings event, logs of a job name it on every line, and
//! the configuration reference documents every key of `config/default.toml`.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use clerk_audit::configuration::LogFormat;
use clerk_audit::intake::broker;
use clerk_audit::ops::metrics::sample;
use clerk_audit::ops::telemetry;
use clerk_audit_sandbox::Scenario;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::harness::{amqp_url, cleanup_broker, project, spawn_app, spawn_app_with};

/// The file that holds the configuration reference table (the lead may move it into README.md).
const CONFIG_REFERENCE: &str = "README.md";

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    match reqwest::get(format!("http://{addr}{path}")).await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
        Err(error) => (0, error.to_string()),
    }
}

/// Polls `path` until it answers `status`; answers the body.
async fn wait_for(addr: SocketAddr, path: &str, status: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let (got, body) = get(addr, path).await;
        if got == status {
            return body;
        }
        assert!(Instant::now() < deadline, "{path} still answers {got} ({body:?}) after {within:?}; wanted {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A TCP proxy on loopback in front of the broker, which the test can kill and restore, so the worker
/// loses its broker without the machine's RabbitMQ being touched.
struct BrokerProxy {
    port: u16,
    upstream: SocketAddr,
    stop: CancellationToken,
    accept: Option<tokio::task::JoinHandle<()>>,
}

impl BrokerProxy {
    async fn start() -> Self {
        let url = url::Url::parse(&amqp_url()).unwrap();
        let upstream = tokio::net::lookup_host((url.host_str().unwrap(), url.port().unwrap_or(5672)))
            .await
            .unwrap()
            .next()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut proxy = Self { port, upstream, stop: CancellationToken::new(), accept: None };
        proxy.serve(listener);
        proxy
    }

    /// The broker URL through the proxy.
    fn url(&self) -> String {
        let mut url = url::Url::parse(&amqp_url()).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.port)).unwrap();
        url.to_string()
    }

    fn serve(&mut self, listener: TcpListener) {
        let stop = CancellationToken::new();
        self.stop = stop.clone();
        let upstream = self.upstream;
        self.accept = Some(tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted { Ok(pair) => pair, Err(_) => continue },
                };
                let stop = stop.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                    // Dropping both sockets closes them: the worker sees its connection end.
                });
            }
        }));
    }

    /// Closes the listener and every proxied connection.
    async fn kill(&mut self) {
        self.stop.cancel();
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
    }

    /// Listens again on the same port.
    async fn restore(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(error) => {
                    assert!(Instant::now() < deadline, "rebinding the proxy port: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        self.serve(listener);
    }
}

#[tokio::test]
async fn readyz_follows_the_broker_while_healthz_stays_up() {
    let mut proxy = BrokerProxy::start().await;
    let url = proxy.url();
    let app = spawn_app_with(|settings| settings.amqp.url = url.into()).await;
    let ops = app.ops_addr;

    assert_eq!(wait_for(ops, "/readyz", 200, Duration::from_secs(30)).await, "ready\n");
    assert_eq!(get(ops, "/healthz").await.0, 200);

    proxy.kill().await;
    let body = wait_for(ops, "/readyz", 503, Duration::from_secs(10)).await;
    assert!(body.contains("broker not connected"), "{body}");
    assert_eq!(get(ops, "/healthz").await, (200, "alive\n".to_owned()), "liveness does not depend on the broker");
    // Still not ready after a reconnect attempt has failed while the broker is away.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let metrics = get(ops, "/metrics").await.1;
        if sample(&metrics, "clerk_audit_broker_reconnects_total", &[]).unwrap_or(0.0) >= 1.0 {
            break metrics;
        }
        assert!(std::time::Instant::now() < deadline, "no reconnect attempt was counted: {metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(sample(&metrics, "clerk_audit_ready", &[]), Some(0.0), "{metrics}");
    assert_eq!(get(ops, "/readyz").await.0, 503);

    proxy.restore().await;
    wait_for(ops, "/readyz", 200, Duration::from_secs(40)).await;
    assert_eq!(get(ops, "/healthz").await.0, 200);

    let mut settings = app.settings.clone();
    app.stop().await;
    assert_eq!(get(ops, "/healthz").await.0, 0, "the ops port closes once the worker stopped");
    proxy.kill().await;
    // The harness's own connection went through the proxy and died with it: clean up directly.
    settings.amqp.url = amqp_url().into();
    let direct = broker::connect(&settings.amqp, "clerk-audit test cleanup").await.unwrap();
    cleanup_broker(&direct, &settings).await;
}

/// Sum of every sample of `name` whose labels include all of `labels`.
fn sum(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name && labels.iter().all(|(k, v)| series.contains(&format!("{k}=\"{v}\""))))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

#[tokio::test]
async fn metrics_count_jobs_calls_and_the_outbox() {
    let mut app = spawn_app().await;
    let ops = app.ops_addr;
    let before = wait_for(ops, "/metrics", 200, Duration::from_secs(10)).await;
    assert_eq!(sum(&before, "clerk_audit_jobs_total", &[]), 0.0, "{before}");
    assert!(before.contains("clerk_audit_build_info{version=\""), "{before}");

    // One job that completes...
    let project = project();
    let scenario = Scenario::ProductionRequiredMfa;
    let instance = app.sandbox.instance(scenario).name.clone();
    let key_ref = app.connect_scenario(&project, scenario).await;
    let completed = app.job(&project, &instance, key_ref);
    app.enqueue(&completed).await;
    let (routing_key, completed_event) = app.event_for(completed.scan_id).await;
    assert_eq!(routing_key, "clerk.audit.completed");
    // ... and one that fails permanently (no such credential).
    let failed = app.job(&project, &instance, Uuid::new_v4());
    app.enqueue(&failed).await;
    let (routing_key, _) = app.event_for(failed.scan_id).await;
    assert_eq!(routing_key, "clerk.audit.failed");

    // The consumer counts a job after settling it, just after the event went out: poll briefly.
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let text = get(ops, "/metrics").await.1;
        let settled = sum(&text, "clerk_audit_jobs_total", &[]) >= 2.0;
        let published = sample(&text, "clerk_audit_outbox_backlog", &[]) == Some(0.0);
        if (settled && published) || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        sample(&after, "clerk_audit_jobs_total", &[("outcome", "completed"), ("reason", "")]),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        sample(&after, "clerk_audit_jobs_total", &[("outcome", "failed"), ("reason", "credential_not_found")]),
        Some(1.0),
        "{after}"
    );
    assert_eq!(sum(&after, "clerk_audit_jobs_total", &[]), 2.0, "{after}");
    assert_eq!(sum(&after, "clerk_audit_job_duration_seconds_count", &[]), 2.0, "{after}");
    assert!(after.contains("# TYPE clerk_audit_job_duration_seconds histogram"), "{after}");
    assert_eq!(sample(&after, "clerk_audit_jobs_in_flight", &[]), Some(0.0), "{after}");
    assert_eq!(sample(&after, "clerk_audit_kms_calls_total", &[("outcome", "ok")]), Some(1.0), "{after}");
    // Every outbound call of the completed scan is counted by allowlist row, name and status, exactly as
    // the scan reported them in its event (the failed job made none).
    let users_count = sum(
        &after,
        "clerk_audit_outbound_calls_total",
        &[("row", "2"), ("name", "clerk.users_count"), ("status", "200")],
    );
    assert_eq!(users_count, 1.0, "{after}");
    let mut reported = 0.0;
    for call in completed_event["data"]["calls"].as_array().expect("calls") {
        let (row, name) = (call["row"].to_string(), call["name"].as_str().unwrap());
        for (status, count) in call["outcomes"].as_object().unwrap() {
            let labels = [("row", row.as_str()), ("name", name), ("status", status.as_str())];
            assert_eq!(
                sample(&after, "clerk_audit_outbound_calls_total", &labels),
                count.as_f64(),
                "{labels:?} in {after}"
            );
            reported += count.as_f64().unwrap();
        }
    }
    assert!(reported >= 4.0, "{completed_event:#}");
    assert_eq!(sum(&after, "clerk_audit_outbound_calls_total", &[]), reported, "{after}");
    assert_eq!(sample(&after, "clerk_audit_outbox_backlog", &[]), Some(0.0), "{after}");
    assert_eq!(sample(&after, "clerk_audit_outbox_oldest_age_seconds", &[]), Some(0.0), "{after}");
    assert_eq!(sample(&after, "clerk_audit_ready", &[]), Some(1.0), "{after}");
    app.stop().await;
}

/// What the process-wide subscriber of this test binary captures: spans (in memory) and JSON log lines.
struct Capture {
    spans: InMemorySpanExporter,
    logs: LogBuffer,
}

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl LogBuffer {
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
            .collect()
    }
}

/// Installs, once, the worker's own subscriber (JSON logs + OpenTelemetry layer) with an in-memory span
/// exporter. Other tests of the binary run under it too; spans are told apart by trace id.
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let spans = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(spans.clone()).build();
        let logs = LogBuffer::default();
        let subscriber =
            telemetry::subscriber_with_provider(LogFormat::Json, "clerk_audit=debug,warn", logs.clone(), &provider);
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in the integration tests");
        Capture { spans, logs }
    })
}

fn spans_of(trace_id: &str) -> Vec<SpanData> {
    capture()
        .spans
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|span| span.span_context.trace_id().to_string() == trace_id)
        .collect()
}

#[tokio::test]
async fn job_traceparent_continues_into_spans_logs_and_the_event() {
    let capture = capture();
    let mut app = spawn_app().await;
    let project = project();
    let scenario = Scenario::ProductionOptionalMfa;
    let instance = app.sandbox.instance(scenario).name.clone();
    let key_ref = app.connect_scenario(&project, scenario).await;
    let job = app.job(&project, &instance, key_ref);

    let trace_id = Uuid::new_v4().simple().to_string();
    let producer_span = &Uuid::new_v4().simple().to_string()[..16];
    let traceparent = format!("00-{trace_id}-{producer_span}-01");
    let mut headers = FieldTable::default();
    headers.insert("traceparent".into(), AMQPValue::LongString(LongString::from(traceparent.clone().into_bytes())));
    let channel = broker::confirm_channel(&app.broker).await.unwrap();
    broker::publish_confirmed(
        &channel,
        &app.settings.amqp.jobs_exchange,
        &app.settings.amqp.jobs_routing_key,
        &crate::harness::job_body(&job),
        BasicProperties::default().with_content_type("application/json".into()).with_headers(headers),
        Duration::from_secs(10),
    )
    .await
    .unwrap();

    // The event carries a traceparent of its own: the job's trace, the worker's span.
    let (routing_key, event, properties) = loop {
        let (key, body, properties) = app.next_event().await;
        if body["data"]["scan_id"] == job.scan_id.to_string() {
            break (key, body, properties);
        }
    };
    assert_eq!(routing_key, "clerk.audit.completed", "{event:#}");
    let event_traceparent = event["traceparent"].as_str().expect("the event has a traceparent").to_owned();
    assert_eq!(telemetry::trace_id_of(&event_traceparent), Some(trace_id.as_str()), "{event_traceparent}");
    assert_ne!(event_traceparent, traceparent, "not the job's traceparent verbatim");
    assert!(event_traceparent.ends_with("-01"), "sampled, as the job was: {event_traceparent}");
    assert_eq!(
        broker::header_text(&properties, "traceparent").as_deref(),
        Some(event_traceparent.as_str()),
        "AMQP header too"
    );
    let event_span = event_traceparent.split('-').nth(2).unwrap().to_owned();

    // The worker's spans: job (child of the producer's span), with decrypt, outbound calls and persist
    // as its children, and publish as the child of persist (the span the event names).
    let deadline = Instant::now() + Duration::from_secs(10);
    let spans = loop {
        let spans = spans_of(&trace_id);
        if spans.iter().any(|s| s.name == "publish") || Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let by_name = |name: &str| spans.iter().filter(|s| s.name == name).collect::<Vec<_>>();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    let job_span = *by_name("job").first().unwrap_or_else(|| panic!("a job span in {names:?}"));
    assert_eq!(job_span.parent_span_id.to_string(), producer_span, "the job span continues the producer's");
    assert!(job_span.parent_span_is_remote);
    let job_id = job_span.span_context.span_id();
    for name in ["kms.decrypt", "outbound_call", "persist"] {
        let children = by_name(name);
        assert!(!children.is_empty(), "a {name} span in {names:?}");
        assert!(children.iter().all(|s| s.parent_span_id == job_id), "{name} spans are children of the job span");
    }
    assert!(by_name("outbound_call").len() >= 3, "one span per outbound call: {names:?}");
    let persist = by_name("persist")[0];
    assert_eq!(persist.span_context.span_id().to_string(), event_span, "the event names the persist span");
    let publish = by_name("publish");
    assert_eq!(publish.len(), 1, "{names:?}");
    assert_eq!(publish[0].parent_span_id, persist.span_context.span_id(), "publish is a child of persist");

    // Logs: every line logged inside a job (any job of the binary) has both ids; this job's lines name
    // its trace, including those of nested spans.
    let lines = capture.logs.lines();
    let in_a_job: Vec<&Value> = lines
        .iter()
        .filter(|line| line["spans"].as_str().is_some_and(|spans| spans.split('>').any(|s| s == "job")))
        .collect();
    for line in &in_a_job {
        assert!(line["scan_id"].is_string() && line["project_id"].is_string(), "a job line without its ids: {line}");
    }
    let ours: Vec<&&Value> = in_a_job.iter().filter(|line| line["scan_id"] == job.scan_id.to_string()).collect();
    assert!(
        ours.iter().all(|line| line["project_id"] == project.as_str() && line["trace_id"] == trace_id.as_str()),
        "{ours:#?}"
    );
    assert!(ours.iter().any(|line| line["spans"] == "job>outbound_call"), "lines of nested spans: {ours:#?}");
    assert!(ours.iter().any(|line| line["message"] == "job done"), "{ours:#?}");
    app.stop().await;
}

/// `[section] key = value` pairs of a TOML file, values rendered as TOML.
fn toml_keys(path: &std::path::Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap();
    let table: toml::Table = text.parse().unwrap();
    let mut keys = BTreeMap::new();
    for (section, values) in table {
        for (key, value) in values.as_table().unwrap_or_else(|| panic!("[{section}] is a table")) {
            keys.insert(format!("{section}.{key}"), value.to_string());
        }
    }
    keys
}

/// Rows of the reference table: key -> (env var, default).
fn reference_rows(markdown: &str) -> BTreeMap<String, (String, String)> {
    let mut rows = BTreeMap::new();
    for line in markdown.lines() {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() < 4 {
            continue;
        }
        let unquote = |cell: &str| cell.trim_matches('`').to_owned();
        let key = unquote(cells[0]);
        if !key.contains('.') || key.contains(' ') || !cells[1].contains("CLERK_AUDIT_") {
            continue;
        }
        assert!(rows.insert(key.clone(), (unquote(cells[1]), unquote(cells[2]))).is_none(), "{key} documented twice");
    }
    rows
}

#[test]
fn configuration_reference_documents_every_key() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let defaults = toml_keys(&root.join("config/default.toml"));
    // Keys without a default (secrets) are set by the per-environment files or the environment.
    let local = toml_keys(&root.join("config/local.toml"));
    let markdown = std::fs::read_to_string(root.join(CONFIG_REFERENCE)).unwrap();
    let rows = reference_rows(&markdown);
    assert!(!rows.is_empty(), "no configuration table in {CONFIG_REFERENCE}");

    for (key, value) in &defaults {
        let (env, default) =
            rows.get(key).unwrap_or_else(|| panic!("{key} (config/default.toml) is missing from {CONFIG_REFERENCE}"));
        let (section, name) = key.split_once('.').unwrap();
        assert_eq!(
            env,
            &format!("CLERK_AUDIT_{}__{}", section.to_uppercase(), name.to_uppercase()),
            "env var of {key}"
        );
        assert_eq!(default, value, "default of {key} in {CONFIG_REFERENCE} differs from config/default.toml");
    }
    for (key, (env, default)) in &rows {
        if defaults.contains_key(key) {
            continue;
        }
        assert!(local.contains_key(key), "{key} is documented but is not a configuration key");
        let (section, name) = key.split_once('.').unwrap();
        assert_eq!(
            env,
            &format!("CLERK_AUDIT_{}__{}", section.to_uppercase(), name.to_uppercase()),
            "env var of {key}"
        );
        assert!(default.contains("none") || default.contains("required"), "{key} has no default: say so ({default})");
    }
    for key in local.keys() {
        assert!(rows.contains_key(key), "{key} (config/local.toml) is missing from {CONFIG_REFERENCE}");
    }
}

/// The worker's retry sweep sends again a delayed job whose record is overdue while no attempt began on its
/// scan (what a broker that lost the delayed copy leaves behind): the job runs as the recorded attempt, the
/// record is cleared, and `/metrics` counts it.
#[tokio::test]
async fn the_retry_sweep_sends_a_lost_delayed_job_again_and_counts_it() {
    use clerk_audit::store::retries::{self, ScheduledRetry};

    let mut app = spawn_app_with(|s| s.worker.retry_sweep_grace_secs = 1).await;
    let project = project();
    let instance = app.sandbox.instance(Scenario::Development).name.clone();
    let key_ref = app.connect_scenario(&project, Scenario::Development).await;
    let lost = app.job(&project, &instance, key_ref);
    // What the first attempt left: the scan row, and the record of a retry whose copy never came back.
    let body = crate::harness::job_body(&lost);
    let client = app.pool.get().await.unwrap();
    clerk_audit::store::scans::begin(&client, &lost).await.unwrap();
    let retry =
        ScheduledRetry { scan_id: lost.scan_id, attempt: 2, delay: Duration::ZERO, body: &body, traceparent: None };
    retries::schedule(&client, &retry).await.unwrap();

    let (routing_key, _) = app.event_for(lost.scan_id).await;
    assert_eq!(routing_key, "clerk.audit.completed");
    assert_eq!(app.scan_status(lost.scan_id).await, Some(("completed".into(), 2)), "ran as the recorded attempt");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = get(app.ops_addr, "/metrics").await.1;
        let records: i64 = client.query_one("SELECT count(*) FROM scan_retries", &[]).await.unwrap().get(0);
        if sample(&metrics, "clerk_audit_retries_resent_total", &[]) == Some(1.0) && records == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "records left: {records}; {metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(client);
    app.stop().await;
}

/// While this process has seen the database fail within the grace period, the sweep judges nothing: a
/// delayed job that came back during the outage and failed again before its attempt was registered went back
/// to its delay queue with its record left behind, which would look lost. With no recent failure, the same
/// record is sent again. (When a failure stops counting as recent is `LastFailure`'s unit test.)
#[tokio::test]
async fn the_retry_sweep_waits_out_a_recent_database_failure() {
    use clerk_audit::outbox::resend::{SweepPass, SweepTarget, sweep_once};
    use clerk_audit::store::LastFailure;

    let app = crate::harness::spawn_env_with(|_| {}).await;
    let client = app.pool.get().await.unwrap();
    overdue_records(&app, &client, 1).await;
    let channel = broker::confirm_channel(&app.broker).await.unwrap();
    let failures = Arc::new(LastFailure::default());
    failures.mark();
    let held = SweepTarget {
        jobs_queue: app.settings.amqp.jobs_queue.clone(),
        grace: SWEEP_GRACE,
        database_failures: failures,
        unrecorded: Arc::default(),
    };
    assert_eq!(sweep_once(&app.pool, &channel, &held).await.unwrap(), SweepPass::default());
    let records: i64 = client.query_one("SELECT count(*) FROM scan_retries", &[]).await.unwrap().get(0);
    assert_eq!(records, 1, "held: the record stays");
    assert_eq!(jobs_waiting(&app).await, 0, "held: nothing was sent");

    let clear = SweepTarget { database_failures: Arc::default(), ..held };
    assert_eq!(sweep_once(&app.pool, &channel, &clear).await.unwrap(), SweepPass { returned: 0, resent: 1 });
    let records: i64 = client.query_one("SELECT count(*) FROM scan_retries", &[]).await.unwrap().get(0);
    assert_eq!(records, 0);
    assert_eq!(jobs_waiting(&app).await, 1, "the job is back in the jobs queue");
    drop(client);
    app.stop().await;
}

/// A retry that could not be recorded leaves the scan's earlier record stale: the job went back to a delay
/// queue, but the record shows the earlier due time and no attempt registered since. The next pass first moves
/// that record to the later copy's due time, so no replica sends the job again before that copy can have come
/// back; a record with nothing kept for it is judged as before.
#[tokio::test]
async fn the_retry_sweep_postpones_records_left_stale_by_retries_it_could_not_record() {
    use std::time::SystemTime;

    use clerk_audit::outbox::resend::{SweepPass, SweepTarget, sweep_once};

    let app = crate::harness::spawn_env_with(|_| {}).await;
    let client = app.pool.get().await.unwrap();
    let jobs = overdue_records(&app, &client, 2).await;
    let (stale, stranded) = (&jobs[0], &jobs[1]);
    // `stale`'s job came back, failed again before registering its attempt, and was delayed for an hour; the
    // database refused the new record. (Kept twice: the later due time counts.)
    let target = SweepTarget {
        jobs_queue: app.settings.amqp.jobs_queue.clone(),
        grace: SWEEP_GRACE,
        database_failures: Arc::default(),
        unrecorded: Arc::default(),
    };
    target.unrecorded.keep(stale.scan_id, SystemTime::now() + Duration::from_secs(60));
    target.unrecorded.keep(stale.scan_id, SystemTime::now() + Duration::from_secs(3600));
    let channel = broker::confirm_channel(&app.broker).await.unwrap();
    assert_eq!(sweep_once(&app.pool, &channel, &target).await.unwrap(), SweepPass { returned: 0, resent: 1 });
    assert!(target.unrecorded.take().is_empty(), "postponed, not kept");
    let left: Vec<(Uuid, f64)> = client
        .query("SELECT scan_id, extract(epoch FROM due_at - now())::float8 FROM scan_retries", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(left, vec![(stale.scan_id, left[0].1)], "only {} was sent again", stranded.scan_id);
    assert!((3500.0..=3600.0).contains(&left[0].1), "due in about an hour: {left:?}");
    assert_eq!(jobs_waiting(&app).await, 1);
    drop(client);
    app.stop().await;
}

/// The grace of the sweeps in these tests; [`overdue_records`] are due an hour before now.
const SWEEP_GRACE: Duration = Duration::from_secs(60);

/// `n` scans whose first attempt began and whose retry record is an hour past due, with no attempt since: what
/// a broker that lost the delayed copies leaves behind.
async fn overdue_records(
    app: &crate::harness::TestApp,
    client: &deadpool_postgres::Client,
    n: usize,
) -> Vec<clerk_audit::intake::job::ScanJob> {
    use clerk_audit::store::retries::{self, ScheduledRetry};

    let project = project();
    let instance = app.sandbox.instance(Scenario::Development).name.clone();
    let key_ref = app.connect_scenario(&project, Scenario::Development).await;
    let jobs: Vec<_> = (0..n).map(|_| app.job(&project, &instance, key_ref)).collect();
    for job in &jobs {
        let body = crate::harness::job_body(job);
        clerk_audit::store::scans::begin(client, job).await.unwrap();
        let retry =
            ScheduledRetry { scan_id: job.scan_id, attempt: 2, delay: Duration::ZERO, body: &body, traceparent: None };
        retries::schedule(client, &retry).await.unwrap();
    }
    client.execute("UPDATE scan_retries SET due_at = now() - interval '1 hour'", &[]).await.unwrap();
    jobs
}

/// Messages ready in the test's jobs queue (passive declare).
async fn jobs_waiting(app: &crate::harness::TestApp) -> u32 {
    let channel = app.broker.create_channel().await.unwrap();
    let options = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
    let declared = channel
        .queue_declare(app.settings.amqp.jobs_queue.as_str().into(), options, FieldTable::default())
        .await
        .unwrap();
    let _ = channel.close(200, "".into()).await;
    declared.message_count()
}
