//! `clerk-audit-bench`: the whole pipeline measured from outside, through the real broker and database.
//!
//! Runs one `clerk-audit worker` process (the real binary) against RabbitMQ and PostgreSQL (the shared ones
//! are fine: the run uses its own queue names and a fresh database), the sandbox at a chosen added latency
//! and the KMS stand-in. Regimes:
//!
//! - `instant`, `50ms`, `150ms`: closed loop, `--in-flight` jobs outstanding at any time (a new job is
//!   published as each event arrives), `--jobs` in all;
//! - `backlog`: `--jobs` (default 10,000) published before the worker starts, `--in-flight` (default 256)
//!   as the worker's concurrency; peak RSS is the figure of interest.
//!
//! Reports scans/s, p50/p99 job latency (the job's `requested_at` to its event received), worker CPU ms per
//! scan (`/proc/<pid>/stat`), peak RSS (`VmHWM`), the CPU per scan of PostgreSQL and RabbitMQ when they run
//! on this host and of this driver process (they share its cores with the worker), how many cores they kept
//! busy together, and the per-stage breakdown the worker itself measures
//! (`clerk_audit_stage_duration_seconds` on its `/metrics`: decode, load credential, load artifact, decrypt,
//! Clerk calls, DNS, evaluate, persist, publish; mean time per scan and its spread). With `--floor`, also measures the floor in the same run:
//! the same broker and database doing only consume -> one transaction -> confirmed publish -> ack (no Clerk,
//! no KMS), implemented here with lapin and tokio-postgres, and reports the worker's throughput as a ratio
//! of it. Timings are reported, never asserted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use clerk_audit::intake::broker;
use clerk_audit_loadgen::rig::{self, Endpoints, Publisher, Rig};
use clerk_audit_loadgen::server_cpu::{ServerCpu, ServerProcesses};
use clerk_audit_loadgen::worker::{WorkerProcess, WorkerSpec, worker_env};
use clerk_audit_sandbox::{Fault, FaultTarget};
use futures::StreamExt as _;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use rand::SeedableRng as _;
use tokio::sync::Mutex;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Regime {
    Instant,
    #[value(name = "50ms")]
    Latency50,
    #[value(name = "150ms")]
    Latency150,
    Backlog,
}

#[derive(Debug, Parser)]
#[command(
    name = "clerk-audit-bench",
    about = "Benchmark of the clerk-audit worker through the real broker and database"
)]
struct Args {
    #[arg(long, value_enum, default_value = "instant")]
    regime: Regime,
    /// Jobs in all (default: 2,000; 10,000 for the backlog regime).
    #[arg(long)]
    jobs: Option<usize>,
    /// Jobs outstanding (closed loop) and the worker's concurrency (default: 64; 256 for the backlog).
    #[arg(long)]
    in_flight: Option<u16>,
    /// Also measure the floor (consume -> transaction -> confirmed publish -> ack).
    #[arg(long)]
    floor: bool,
    /// HTTP/1.1 to the sandbox (one connection per call in flight) instead of HTTP/2 without TLS (h2c).
    /// Production reaches Clerk and Svix over HTTPS, where ALPN picks HTTP/2: one multiplexed connection
    /// per host, which the default reproduces.
    #[arg(long)]
    http1: bool,
    /// The worker binary (default: target/release/clerk-audit).
    #[arg(long)]
    worker_bin: Option<PathBuf>,
    /// The worker's `RUST_LOG`. The default is production's level (one INFO line per job, in production's
    /// JSON format); `warn` leaves out the lines a deployed worker writes, to see what they cost.
    #[arg(long, default_value = "info")]
    log_filter: String,
    /// PostgreSQL URL with rights to create a database.
    #[arg(long, env = "CLERK_AUDIT_TEST_DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    database_url: String,
    #[arg(long, env = "CLERK_AUDIT_TEST_AMQP_URL", default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
}

struct Figures {
    scans: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.scans as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        sorted[((sorted.len() - 1) as f64 * p).round() as usize]
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("clerk-audit-bench: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let backlog = matches!(args.regime, Regime::Backlog);
    let jobs = args.jobs.unwrap_or(if backlog { 10_000 } else { 2_000 });
    let in_flight = args.in_flight.unwrap_or(if backlog { 256 } else { 64 });
    let latency_ms = match args.regime {
        Regime::Latency50 => 50,
        Regime::Latency150 => 150,
        Regime::Instant | Regime::Backlog => 0,
    };
    let endpoints = Endpoints { admin_database_url: args.database_url.clone(), amqp_url: args.amqp_url.clone() };
    let rig = Rig::build(&endpoints, 1, |s| {
        s.worker.concurrency = in_flight;
        s.database.pool_size = 16;
        s.http.cleartext_http2 = !args.http1;
    })
    .await?;
    if latency_ms > 0 {
        rig.sandbox.set_fault_everywhere(FaultTarget::Any, Fault::Latency { ms: latency_ms });
    }
    let binary = args.worker_bin.clone().unwrap_or_else(|| rig::target_dir().join("release/clerk-audit"));
    anyhow::ensure!(
        binary.exists(),
        "worker binary {} not found (cargo build --release --bin clerk-audit)",
        binary.display()
    );
    let log_dir = std::env::temp_dir().join(format!("clerk-audit-bench-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&log_dir)?;
    // A fixed ops port, to read the worker's own per-stage timings from `/metrics`.
    let ops_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut env = worker_env(&rig.settings, &rig::config_dir());
    // Production's log format (JSON lines), so the run pays what a deployed worker pays for its log layer.
    env.retain(|(key, _)| key != "CLERK_AUDIT_OPS__LISTEN" && key != "CLERK_AUDIT_TELEMETRY__LOG_FORMAT");
    env.push(("CLERK_AUDIT_OPS__LISTEN".to_owned(), format!("127.0.0.1:{ops_port}")));
    env.push(("CLERK_AUDIT_TELEMETRY__LOG_FORMAT".to_owned(), "json".to_owned()));
    let spec = WorkerSpec { binary, env, log_filter: args.log_filter.clone(), log_dir: log_dir.clone() };

    let servers = {
        use secrecy::ExposeSecret as _;
        let database_url = rig.settings.database.url.expose_secret();
        ServerProcesses::find(&rig.db().await?, database_url, rig.settings.amqp.url.expose_secret()).await
    };
    let result = measure_worker(&rig, &spec, &servers, jobs, in_flight, backlog, ops_port).await;
    let floor =
        if args.floor && result.is_ok() { Some(measure_floor(&rig, &servers, jobs, in_flight).await) } else { None };
    rig.cleanup().await;
    let (figures, cpu, servers_cpu, peak_kib, exposition) = result?;

    let protocol = if args.http1 { "HTTP/1.1" } else { "h2c" };
    println!("==== clerk-audit-bench ({:?}, {} ms added Clerk latency, {protocol}) ====", args.regime, latency_ms);
    println!("jobs:               {} ({} in flight)", figures.scans, in_flight);
    println!("scans/s:            {:.1}", figures.rate());
    println!("job latency p50:    {:.1} ms", figures.percentile(0.50).as_secs_f64() * 1e3);
    println!("job latency p99:    {:.1} ms", figures.percentile(0.99).as_secs_f64() * 1e3);
    println!("worker CPU/scan:    {:.3} ms", cpu.as_secs_f64() * 1e3 / figures.scans.max(1) as f64);
    println!("worker peak RSS:    {:.1} MB", peak_kib as f64 / 1024.0);
    // The servers' share of the same cores: what a scan costs the whole system besides the worker.
    println!("PostgreSQL CPU/scan: {}", per_job(servers_cpu.postgres, figures.scans));
    println!("RabbitMQ CPU/scan:  {}", per_job(servers_cpu.rabbitmq, figures.scans));
    println!(
        "driver CPU/scan:    {} (stand-ins for Clerk, Svix, DNS, KMS; job feed)",
        per_job(servers_cpu.driver, figures.scans)
    );
    print_cores(cpu, &servers_cpu, figures.elapsed);
    if latency_ms > 0 {
        // Two sequential rounds of calls, each one added latency long.
        let ideal = f64::from(in_flight) / (2.0 * latency_ms as f64 / 1e3);
        println!(
            "in flight / critical path: {ideal:.1} scans/s (2 rounds x {latency_ms} ms); measured {:.0}% of it",
            100.0 * figures.rate() / ideal
        );
    }
    print_stages(&exposition, figures.scans);
    if let Some(floor) = floor {
        let (floor, floor_servers) = floor?;
        println!("floor scans/s:      {:.1} (consume -> transaction -> confirmed publish -> ack)", floor.rate());
        println!(
            "floor PostgreSQL / RabbitMQ / driver CPU per job: {} / {} / {} (the floor's consumer runs in the driver)",
            per_job(floor_servers.postgres, floor.scans),
            per_job(floor_servers.rabbitmq, floor.scans),
            per_job(floor_servers.driver, floor.scans)
        );
        print_cores(Duration::ZERO, &floor_servers, floor.elapsed);
        println!("worker / floor:     {:.1}%", 100.0 * figures.rate() / floor.rate().max(1e-9));
    }
    let _ = std::fs::remove_dir_all(&log_dir);
    Ok(())
}

/// A server's CPU time per job, for the report.
fn per_job(used: Option<Duration>, jobs: usize) -> String {
    match used {
        Some(used) => format!("{:.3} ms", used.as_secs_f64() * 1e3 / jobs.max(1) as f64),
        None => "n/a (not a local process this user can read)".to_owned(),
    }
}

/// How many cores the run kept busy: the worker, the servers and the driver together, over the run's wall
/// time. Near the machine's core count, the run was CPU-bound and every process's CPU per scan set the rate.
fn print_cores(worker: Duration, servers: &ServerCpu, elapsed: Duration) {
    let parts = [Some(worker), servers.postgres, servers.rabbitmq, servers.driver];
    let busy: Duration = parts.iter().flatten().sum();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "cores busy:         {:.2} of {cores} (worker, PostgreSQL, RabbitMQ and driver over the run's wall time)",
        busy.as_secs_f64() / elapsed.as_secs_f64().max(1e-9)
    );
}

/// The per-stage table from the worker's `/metrics` exposition: per stage, how many times it ran, its mean
/// time, and its mean time per scan (a stage can run less than once per scan: DNS only for production
/// instances with email records, publish once per event).
fn print_stages(exposition: &str, scans: usize) {
    use clerk_audit::ops::metrics::{Stage, sample};
    println!("per-stage breakdown (the worker's clerk_audit_stage_duration_seconds):");
    println!("  {:<16} {:>8} {:>12} {:>14}", "stage", "count", "mean ms", "ms per scan");
    for stage in Stage::ALL {
        let labels = [("stage", stage.label())];
        let count = sample(exposition, "clerk_audit_stage_duration_seconds_count", &labels).unwrap_or(0.0);
        let sum = sample(exposition, "clerk_audit_stage_duration_seconds_sum", &labels).unwrap_or(0.0);
        let mean = if count > 0.0 { sum * 1e3 / count } else { 0.0 };
        println!("  {:<16} {:>8} {:>12.3} {:>14.3}", stage.label(), count, mean, sum * 1e3 / scans.max(1) as f64);
    }
    println!("  (clerk is the fetch's wall time; dns runs inside it, in parallel with the second round)");
}

/// `GET /metrics` from the worker's ops port (plain HTTP/1.0, the answer read to its end).
async fn scrape(port: u16) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await??;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (_, body) = answer.split_once("\r\n\r\n").context("metrics: no HTTP body")?;
    Ok(body.to_owned())
}

/// One message for the [`feeder`].
struct Outgoing {
    exchange: String,
    routing_key: String,
    body: Vec<u8>,
    properties: lapin::BasicProperties,
}

/// Publishes what it is sent on `channel` (a confirm channel) without waiting for one confirm before the
/// next publish, so the driver's own loop never paces the system it measures: a closed loop that awaited
/// each job's confirm before reading the next event measured its own round trips to the broker. Every
/// confirm is still checked (a nack, a return or a timeout ends the task with an error).
fn feeder(
    channel: lapin::Channel,
) -> (tokio::sync::mpsc::UnboundedSender<Outgoing>, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Outgoing>();
    let task = tokio::spawn(async move {
        let mut pending = futures::stream::FuturesUnordered::new();
        let mut open = true;
        while open || !pending.is_empty() {
            tokio::select! {
                next = rx.recv(), if open => match next {
                    Some(message) => {
                        let confirm = broker::publish_mandatory(
                            &channel,
                            &message.exchange,
                            &message.routing_key,
                            &message.body,
                            message.properties,
                        )
                        .await?;
                        pending.push(broker::confirmed(confirm, Duration::from_secs(30)));
                    }
                    None => open = false,
                },
                Some(confirmed) = pending.next(), if !pending.is_empty() => confirmed?,
            }
        }
        anyhow::Ok(())
    });
    (tx, task)
}

/// A job as the platform publishes it.
fn job_message(rig: &Rig, job: &clerk_audit::intake::job::ScanJob) -> anyhow::Result<Outgoing> {
    Ok(Outgoing {
        exchange: rig.settings.amqp.jobs_exchange.clone(),
        routing_key: rig.settings.amqp.jobs_routing_key.clone(),
        body: serde_json::to_vec(&job.to_message())?,
        properties: rig::job_properties(job),
    })
}

/// Runs the worker over `jobs` jobs; answers the figures, its CPU time, its peak RSS in KiB and its
/// metrics exposition at the end.
async fn measure_worker(
    rig: &Rig,
    spec: &WorkerSpec,
    servers: &ServerProcesses,
    jobs: usize,
    in_flight: u16,
    backlog: bool,
    ops_port: u16,
) -> anyhow::Result<(Figures, Duration, ServerCpu, u64, String)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut publisher = Publisher::new(&rig.settings);
    let requested: Arc<Mutex<HashMap<Uuid, chrono::DateTime<chrono::Utc>>>> = Arc::default();
    let mut published = 0usize;
    if backlog {
        for _ in 0..jobs {
            let job = rig.job(&mut rng);
            publisher.publish(&job, Duration::from_secs(30)).await?;
            requested.lock().await.insert(job.scan_id, job.requested_at);
            published += 1;
        }
    }

    let connection = broker::connect(&rig.settings.amqp, "clerk-audit bench events").await?;
    let channel = connection.create_channel().await?;
    let mut events = channel
        .basic_consume(
            rig.capture_queue.as_str().into(),
            "bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let (feed, feeding) = feeder(broker::confirm_channel(&connection).await?);
    let mut worker = WorkerProcess::start(spec, "bench-worker")?;
    let cpu_before = worker.cpu_time().unwrap_or_default();
    let servers_before = servers.cpu();
    let start = Instant::now();
    if !backlog {
        for _ in 0..usize::from(in_flight).min(jobs) {
            let mut job = rig.job(&mut rng);
            job.requested_at = chrono::Utc::now();
            requested.lock().await.insert(job.scan_id, job.requested_at);
            feed.send(job_message(rig, &job)?).context("the feeder stopped")?;
            published += 1;
        }
    }
    let mut latencies = Vec::with_capacity(jobs);
    let mut peak = 0;
    while latencies.len() < jobs {
        let delivery = tokio::time::timeout(Duration::from_secs(120), events.next())
            .await
            .context("no event for 120 s")?
            .context("event stream closed")??;
        delivery.acker.ack(BasicAckOptions::default()).await?;
        let now = chrono::Utc::now();
        let body: serde_json::Value = serde_json::from_slice(&delivery.data)?;
        let Some(scan) = body["data"]["scan_id"].as_str().and_then(|s| s.parse::<Uuid>().ok()) else { continue };
        let Some(at) = requested.lock().await.remove(&scan) else { continue };
        latencies.push((now - at).to_std().unwrap_or_default());
        if !backlog && published < jobs {
            let mut job = rig.job(&mut rng);
            job.requested_at = chrono::Utc::now();
            requested.lock().await.insert(job.scan_id, job.requested_at);
            feed.send(job_message(rig, &job)?).context("the feeder stopped")?;
            published += 1;
        }
        if latencies.len().is_multiple_of(256) {
            peak = peak.max(worker.peak_rss_kib().unwrap_or(0));
        }
    }
    let elapsed = start.elapsed();
    drop(feed);
    feeding.await??;
    let cpu = worker.cpu_time().unwrap_or_default().saturating_sub(cpu_before);
    let servers_used = servers.cpu().since(&servers_before);
    peak = peak.max(worker.peak_rss_kib().unwrap_or(0));
    // The relay may still be marking the last batch sent: give it a moment before reading the timings.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let exposition = scrape(ops_port).await.unwrap_or_else(|error| {
        eprintln!("clerk-audit-bench: could not read the worker's metrics: {error:#}");
        String::new()
    });
    worker.signal("TERM")?;
    if worker.wait_exit(Duration::from_secs(60)).await.is_none() {
        worker.kill().await;
    }
    let _ = connection.close(200, "bench done".into()).await;
    Ok((Figures { scans: jobs, elapsed, latencies }, cpu, servers_used, peak, exposition))
}

/// The floor: consume -> one transaction (a row and an outbox-like row) -> confirmed publish -> ack, with
/// `in_flight` messages outstanding, closed loop, on the run's broker and database. A floor job is complete
/// when its event is received and acked here, as a scan is complete when the worker run's capture consumer
/// receives its event: both sides carry the same harness work per job (the event's consume and ack).
async fn measure_floor(
    rig: &Rig,
    servers: &ServerProcesses,
    jobs: usize,
    in_flight: u16,
) -> anyhow::Result<(Figures, ServerCpu)> {
    use secrecy::ExposeSecret as _;
    let queue = format!("{}.floor", rig.capture_queue);
    let events = format!("{}.floor.events", rig.capture_queue);
    let connection = broker::connect(&rig.settings.amqp, "clerk-audit bench floor").await?;
    let setup = connection.create_channel().await?;
    let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    for name in [&queue, &events] {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), broker::text_value("quorum"));
        setup.queue_declare(name.as_str().into(), durable, args).await?;
    }
    let mut config = deadpool_postgres::Config::new();
    config.url = Some(rig.settings.database.url.expose_secret().to_owned());
    config.pool = Some(deadpool_postgres::PoolConfig::new(16));
    let pool = config.create_pool(Some(deadpool_postgres::Runtime::Tokio1), tokio_postgres::NoTls)?;
    pool.get()
        .await?
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS bench_floor (id uuid PRIMARY KEY, body jsonb NOT NULL, done_at timestamptz NOT NULL DEFAULT now());
             CREATE TABLE IF NOT EXISTS bench_floor_outbox (id uuid PRIMARY KEY, payload jsonb NOT NULL, sent_at timestamptz)",
        )
        .await?;

    let consumer_channel = connection.create_channel().await?;
    consumer_channel.basic_qos(in_flight, BasicQosOptions::default()).await?;
    let mut deliveries = consumer_channel
        .basic_consume(queue.as_str().into(), "floor".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    let confirms = broker::confirm_channel(&connection).await?;
    let publisher = broker::confirm_channel(&connection).await?;
    let events_channel = connection.create_channel().await?;
    let mut floor_events = events_channel
        .basic_consume(
            events.as_str().into(),
            "floor events".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let worker = {
        let pool = pool.clone();
        let events = events.clone();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = deliveries.next().await {
                let pool = pool.clone();
                let confirms = confirms.clone();
                let events = events.clone();
                tokio::spawn(async move {
                    let result: anyhow::Result<()> = async {
                        let body: serde_json::Value = serde_json::from_slice(&delivery.data)?;
                        let id = Uuid::new_v4();
                        let mut client = pool.get().await?;
                        let tx = client.transaction().await?;
                        tx.execute("INSERT INTO bench_floor (id, body) VALUES ($1, $2)", &[&id, &body]).await?;
                        tx.execute("INSERT INTO bench_floor_outbox (id, payload) VALUES ($1, $2)", &[&id, &body])
                            .await?;
                        tx.commit().await?;
                        drop(client);
                        broker::publish_confirmed(
                            &confirms,
                            "",
                            &events,
                            &delivery.data,
                            Default::default(),
                            Duration::from_secs(10),
                        )
                        .await?;
                        pool.get()
                            .await?
                            .execute("UPDATE bench_floor_outbox SET sent_at = now() WHERE id = $1", &[&id])
                            .await?;
                        delivery.acker.ack(BasicAckOptions::default()).await?;
                        Ok(())
                    }
                    .await;
                    if let Err(error) = result {
                        eprintln!("floor: {error:#}");
                    }
                });
            }
        })
    };

    // Published the way the worker's jobs are (see `feeder`).
    let (feed, feeding) = feeder(publisher);
    let publish = || -> anyhow::Result<()> {
        let body = serde_json::json!({ "sent": chrono::Utc::now().timestamp_micros() });
        let message = Outgoing {
            exchange: String::new(),
            routing_key: queue.clone(),
            body: serde_json::to_vec(&body)?,
            properties: Default::default(),
        };
        feed.send(message).context("the feeder stopped")
    };
    let servers_before = servers.cpu();
    let start = Instant::now();
    let mut published = 0;
    for _ in 0..usize::from(in_flight).min(jobs) {
        publish()?;
        published += 1;
    }
    let mut latencies = Vec::with_capacity(jobs);
    while latencies.len() < jobs {
        let event = tokio::time::timeout(Duration::from_secs(60), floor_events.next())
            .await
            .context("floor: no event for 60 s")?
            .context("floor: event stream closed")??;
        event.acker.ack(BasicAckOptions::default()).await?;
        let now = chrono::Utc::now().timestamp_micros();
        let body: serde_json::Value = serde_json::from_slice(&event.data)?;
        let sent = body["sent"].as_i64().unwrap_or_default();
        latencies.push(Duration::from_micros((now - sent).max(0) as u64));
        if published < jobs {
            publish()?;
            published += 1;
        }
    }
    let elapsed = start.elapsed();
    let servers_used = servers.cpu().since(&servers_before);
    drop(feed);
    feeding.await??;
    worker.abort();
    for name in [&queue, &events] {
        let _ = setup.queue_delete(name.as_str().into(), Default::default()).await;
    }
    let _ = connection.close(200, "floor done".into()).await;
    pool.close();
    Ok((Figures { scans: jobs, elapsed, latencies }, servers_used))
}
