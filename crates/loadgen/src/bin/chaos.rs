//! `clerk-audit-chaos`: the delivery guarantees under faults that come together.
//!
//! Starts a private RabbitMQ node and PostgreSQL cluster (never the machine's shared ones: this run
//! restarts them), the sandbox with random latency and a few percent of 429/5xx, the KMS stand-in, a TCP
//! proxy between the workers and PostgreSQL, and `--replicas` real worker processes. It publishes `--jobs`
//! jobs spread over `--duration-secs`, and during that time injects faults at random moments drawn from a
//! seeded generator: SIGKILL of a replica (restarted after a pause), SIGTERM (drain, then restart), a broker
//! restart (`stop_app`/`start_app`), a PostgreSQL restart (immediate stop), a black-holed database
//! connection, a KMS throttling burst. Then it waits for the work to settle and checks every guarantee
//! (see `verify`); any violation makes the exit status non-zero.
//!
//! `--soak`: one replica, no faults, a steady arrival rate (`--rate` jobs/s for `--minutes`), the worker's
//! RSS sampled every 10 s; flat means the median of the last third of the samples is within 10% of the
//! first third's.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use clerk_audit_loadgen::proxy::TcpProxy;
use clerk_audit_loadgen::rig::{self, Endpoints, Publisher, Rig, secs_between};
use clerk_audit_loadgen::services::{OwnPostgres, OwnRabbit};
use clerk_audit_loadgen::verify::verify;
use clerk_audit_loadgen::worker::{WorkerProcess, WorkerSpec, worker_env};
use clerk_audit_sandbox::{Fault, FaultTarget};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use secrecy::ExposeSecret as _;
use tokio::sync::Mutex;
use uuid::Uuid;

/// `worker.retry_sweep_grace_secs` of the replicas.
const RETRY_SWEEP_GRACE_SECS: u64 = 15;

/// Lines containing `needle` in the replicas' log files (`<run dir>/*.log`).
fn log_lines_containing(run_dir: &std::path::Path, needle: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(run_dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| text.lines().filter(|line| line.contains(needle)).count())
        .sum()
}

#[derive(Debug, Parser)]
#[command(name = "clerk-audit-chaos", about = "Chaos run and soak of the clerk-audit worker")]
struct Args {
    /// Jobs to publish (spread evenly over the fault period).
    #[arg(long, default_value_t = 10_000)]
    jobs: usize,
    /// How long faults are injected, in seconds (jobs are published during this time).
    #[arg(long, default_value_t = 600)]
    duration_secs: u64,
    /// Seed of the fault schedule; random when absent (printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Worker replicas.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Mean time between two faults, in seconds.
    #[arg(long, default_value_t = 8.0)]
    fault_every_secs: f64,
    /// How long the work may take to settle after the fault period, in seconds.
    #[arg(long, default_value_t = 600)]
    settle_secs: u64,
    /// The worker binary (built by `cargo build --bin clerk-audit`).
    #[arg(long)]
    worker_bin: Option<PathBuf>,
    /// Jobs in flight per replica (`worker.concurrency`).
    #[arg(long, default_value_t = 16)]
    concurrency: u16,
    /// Added Clerk/Svix latency per request: a random value between these bounds, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_min_ms: u64,
    #[arg(long, default_value_t = 150)]
    latency_max_ms: u64,
    /// Share of Clerk/Svix requests answered 429, and 500, in per mille.
    #[arg(long, default_value_t = 20)]
    rate_limited_permille: u32,
    #[arg(long, default_value_t = 20)]
    server_error_permille: u32,
    /// Ports of the private RabbitMQ node (AMQP, Erlang distribution) and PostgreSQL cluster.
    #[arg(long, default_value_t = 5673)]
    amqp_port: u16,
    #[arg(long, default_value_t = 25673)]
    dist_port: u16,
    #[arg(long, default_value_t = 5433)]
    pg_port: u16,
    /// Where logs and the private services' files go (default: a new directory under the temp dir). Kept
    /// when the run fails.
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Soak mode: one replica, no faults, a steady arrival rate.
    #[arg(long)]
    soak: bool,
    /// Soak length in minutes.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Soak arrival rate in jobs per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Soak: fixed added Clerk latency per request, in milliseconds.
    #[arg(long, default_value_t = 150)]
    soak_latency_ms: u64,
}

/// One injected fault, for the timeline.
#[derive(Debug, Clone)]
struct Event {
    at: Duration,
    what: String,
}

#[derive(Default)]
struct Timeline {
    events: std::sync::Mutex<Vec<Event>>,
}

impl Timeline {
    fn note(&self, start: Instant, what: impl Into<String>) {
        let event = Event { at: start.elapsed(), what: what.into() };
        eprintln!("chaos: [{:>7.1}s] {}", event.at.as_secs_f64(), event.what);
        self.events.lock().unwrap_or_else(|p| p.into_inner()).push(event);
    }

    fn print(&self) {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        println!("fault timeline ({} entries):", events.len());
        for event in events.iter() {
            println!("  {:>7.1}s  {}", event.at.as_secs_f64(), event.what);
        }
    }
}

struct Replica {
    name: String,
    process: Option<WorkerProcess>,
    generation: usize,
}

struct World {
    rig: Rig,
    rabbit: OwnRabbit,
    postgres: OwnPostgres,
    proxy: Arc<TcpProxy>,
    spec: WorkerSpec,
    replicas: Vec<Mutex<Replica>>,
    timeline: Timeline,
    start: Instant,
    broker_busy: AtomicBool,
    postgres_busy: AtomicBool,
    proxy_busy: AtomicBool,
    kms_busy: AtomicBool,
    /// SIGTERM drains that did not exit 0 in time.
    bad_drains: AtomicUsize,
    counts: FaultCounts,
}

#[derive(Default)]
struct FaultCounts {
    kill: AtomicUsize,
    term: AtomicUsize,
    broker: AtomicUsize,
    postgres: AtomicUsize,
    blackhole: AtomicUsize,
    kms: AtomicUsize,
}

#[derive(Debug, Clone, Copy)]
enum FaultKind {
    Kill,
    Term,
    BrokerRestart,
    PostgresRestart,
    Blackhole,
    KmsThrottle,
}

const KINDS: [FaultKind; 6] = [
    FaultKind::Kill,
    FaultKind::Term,
    FaultKind::BrokerRestart,
    FaultKind::PostgresRestart,
    FaultKind::Blackhole,
    FaultKind::KmsThrottle,
];

/// Claims a single-flight flag; false if that fault is already under way.
fn claim(flag: &AtomicBool) -> bool {
    flag.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_ok()
}

impl World {
    fn start_replica(&self, replica: &mut Replica) -> anyhow::Result<()> {
        replica.generation += 1;
        let name = format!("{}-{}", replica.name, replica.generation);
        replica.process = Some(WorkerProcess::start(&self.spec, &name)?);
        Ok(())
    }

    /// Runs one fault to its end (pauses drawn from `rng` beforehand). Answers false when it could not start
    /// (that kind of fault is already under way).
    async fn inject(self: &Arc<Self>, kind: FaultKind, index: usize, pause: Duration) -> anyhow::Result<bool> {
        let t = self.start;
        match kind {
            FaultKind::Kill | FaultKind::Term => {
                let slot = &self.replicas[index % self.replicas.len()];
                let Ok(mut replica) = slot.try_lock() else { return Ok(false) };
                let Some(mut process) = replica.process.take() else { return Ok(false) };
                if matches!(kind, FaultKind::Kill) {
                    self.counts.kill.fetch_add(1, Ordering::Relaxed);
                    self.timeline
                        .note(t, format!("SIGKILL {} (pid {}), restart in {pause:.1?}", replica.name, process.pid()));
                    process.kill().await;
                } else {
                    self.counts.term.fetch_add(1, Ordering::Relaxed);
                    self.timeline.note(t, format!("SIGTERM {} (pid {}): drain", replica.name, process.pid()));
                    process.signal("TERM")?;
                    let grace = Duration::from_secs(self.rig.settings.worker.drain_grace_secs + 20);
                    match process.wait_exit(grace).await {
                        Some(status) if status.success() => {
                            self.timeline.note(t, format!("{} drained and exited 0", replica.name));
                        }
                        other => {
                            self.bad_drains.fetch_add(1, Ordering::Relaxed);
                            self.timeline.note(t, format!("{} did not drain cleanly: {other:?}", replica.name));
                            process.kill().await;
                        }
                    }
                }
                tokio::time::sleep(pause).await;
                self.start_replica(&mut replica)?;
                self.timeline.note(t, format!("{} restarted", replica.name));
            }
            FaultKind::BrokerRestart => {
                if !claim(&self.broker_busy) {
                    return Ok(false);
                }
                self.counts.broker.fetch_add(1, Ordering::Relaxed);
                self.timeline.note(t, format!("broker stop_app (down {pause:.1?})"));
                let result = async {
                    self.rabbit.stop_app().await?;
                    tokio::time::sleep(pause).await;
                    self.rabbit.start_app().await
                }
                .await;
                self.timeline.note(t, "broker start_app done");
                self.broker_busy.store(false, Ordering::SeqCst);
                result?;
            }
            FaultKind::PostgresRestart => {
                if !claim(&self.postgres_busy) {
                    return Ok(false);
                }
                self.counts.postgres.fetch_add(1, Ordering::Relaxed);
                self.timeline.note(t, format!("PostgreSQL immediate stop (down {pause:.1?})"));
                let result = self.postgres.restart(pause).await;
                self.timeline.note(t, "PostgreSQL started");
                self.postgres_busy.store(false, Ordering::SeqCst);
                result?;
            }
            FaultKind::Blackhole => {
                if !claim(&self.proxy_busy) {
                    return Ok(false);
                }
                self.counts.blackhole.fetch_add(1, Ordering::Relaxed);
                self.timeline.note(t, format!("database connections black-holed for {pause:.1?}"));
                self.proxy.freeze();
                tokio::time::sleep(pause).await;
                let result = self.proxy.thaw().await;
                self.timeline.note(t, "database proxy forwarding again");
                self.proxy_busy.store(false, Ordering::SeqCst);
                result?;
            }
            FaultKind::KmsThrottle => {
                if !claim(&self.kms_busy) {
                    return Ok(false);
                }
                self.counts.kms.fetch_add(1, Ordering::Relaxed);
                self.timeline.note(t, format!("KMS throttling burst for {pause:.1?}"));
                self.rig.kms.throttle_for(pause);
                tokio::time::sleep(pause).await;
                self.kms_busy.store(false, Ordering::SeqCst);
            }
        }
        Ok(true)
    }
}

fn pause_for(kind: FaultKind, rng: &mut StdRng) -> Duration {
    match kind {
        FaultKind::Kill => secs_between(rng, 0.5, 4.0),
        FaultKind::Term => secs_between(rng, 0.5, 3.0),
        FaultKind::BrokerRestart => secs_between(rng, 1.0, 6.0),
        FaultKind::PostgresRestart => secs_between(rng, 0.5, 4.0),
        FaultKind::Blackhole => secs_between(rng, 2.0, 12.0),
        FaultKind::KmsThrottle => secs_between(rng, 1.0, 8.0),
    }
}

fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let outcome = tokio::select! {
        outcome = run(args) => outcome,
        () = stop_signal() => {
            eprintln!("clerk-audit-chaos: interrupted: stopping the workers and the private services");
            clerk_audit_loadgen::worker::kill_all_now();
            clerk_audit_loadgen::services::stop_all_now();
            return std::process::ExitCode::from(130);
        }
    };
    match outcome {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(error) => {
            eprintln!("clerk-audit-chaos: error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// Answers whether every guarantee held.
async fn run(args: Args) -> anyhow::Result<bool> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let run_dir = args
        .run_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("clerk-audit-chaos-{}", Uuid::new_v4().simple())));
    std::fs::create_dir_all(&run_dir)?;
    let mode = if args.soak { "soak" } else { "chaos" };
    println!("clerk-audit-chaos: mode {mode}, seed {seed}, run dir {}", run_dir.display());

    let rabbit =
        OwnRabbit::start(&run_dir, &format!("clerk-audit-chaos-{}", args.amqp_port), args.amqp_port, args.dist_port)
            .await
            .context("private RabbitMQ node")?;
    let postgres = OwnPostgres::start(&run_dir, args.pg_port).await.context("private PostgreSQL cluster")?;
    let endpoints = Endpoints { admin_database_url: postgres.admin_url(), amqp_url: rabbit.amqp_url() };
    let concurrency = args.concurrency;
    let rig = Rig::build(&endpoints, 4, |s| {
        s.worker.concurrency = concurrency;
        s.worker.retry_delay_secs = 1;
        // Faults stack up: a job may meet several outages before it completes.
        s.worker.max_attempts = 12;
        s.worker.drain_grace_secs = 15;
        // Well inside the settle time: a delayed job the broker loses is sent again by the sweep, and the run
        // shows how many were.
        s.worker.retry_sweep_grace_secs = RETRY_SWEEP_GRACE_SECS;
        s.amqp.delivery_limit = 50;
        s.database.timeout_ms = 3_000;
        s.database.pool_size = 8;
        s.http.request_timeout_ms = 5_000;
        s.http.max_retry_after_secs = 3;
        s.dns.timeout_ms = 1_000;
    })
    .await?;
    if args.soak {
        rig.sandbox.set_fault_everywhere(FaultTarget::Any, Fault::Latency { ms: args.soak_latency_ms });
    } else {
        rig.sandbox.set_fault_everywhere(
            FaultTarget::Any,
            Fault::RandomLatency { min_ms: args.latency_min_ms, max_ms: args.latency_max_ms },
        );
        rig.sandbox.set_fault_everywhere(
            FaultTarget::Any,
            Fault::Flaky {
                rate_limited_permille: args.rate_limited_permille,
                server_error_permille: args.server_error_permille,
                retry_after_secs: 1,
            },
        );
    }

    // The workers reach PostgreSQL through the proxy (the black hole); the driver goes direct.
    let proxy = TcpProxy::start(([127, 0, 0, 1], postgres.port()).into()).await?;
    let mut worker_settings = rig.settings.clone();
    worker_settings.database.url =
        secrecy::SecretString::from(proxy.url_through(rig.settings.database.url.expose_secret())?);
    let binary = args.worker_bin.clone().unwrap_or_else(|| rig::target_dir().join("debug/clerk-audit"));
    anyhow::ensure!(binary.exists(), "worker binary {} not found (cargo build --bin clerk-audit)", binary.display());
    let spec = WorkerSpec {
        binary,
        env: worker_env(&worker_settings, &rig::config_dir()),
        log_filter: "warn,clerk_audit=info,lapin=error".to_owned(),
        log_dir: run_dir.clone(),
    };
    let replicas = if args.soak { 1 } else { args.replicas.max(1) };
    let world = Arc::new(World {
        rig,
        rabbit,
        postgres,
        proxy,
        spec,
        replicas: (0..replicas)
            .map(|i| Mutex::new(Replica { name: format!("replica{}", i + 1), process: None, generation: 0 }))
            .collect(),
        timeline: Timeline::default(),
        start: Instant::now(),
        broker_busy: AtomicBool::new(false),
        postgres_busy: AtomicBool::new(false),
        proxy_busy: AtomicBool::new(false),
        kms_busy: AtomicBool::new(false),
        bad_drains: AtomicUsize::new(0),
        counts: FaultCounts::default(),
    });
    for slot in &world.replicas {
        let mut replica = slot.lock().await;
        world.start_replica(&mut replica)?;
    }

    let (jobs_total, period) = if args.soak {
        ((args.rate * 60.0 * args.minutes as f64).round() as usize, Duration::from_secs(args.minutes * 60))
    } else {
        (args.jobs, Duration::from_secs(args.duration_secs))
    };
    let published: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    let publisher_task = {
        let world = world.clone();
        let published = published.clone();
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
            let mut publisher = Publisher::new(&world.rig.settings);
            let start = Instant::now();
            for n in 0..jobs_total {
                // Even spacing over the period.
                let due = period.mul_f64(n as f64 / jobs_total.max(1) as f64);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
                let job = world.rig.job(&mut rng);
                publisher.publish(&job, Duration::from_secs(300)).await?;
                published.lock().await.insert(job.scan_id);
            }
            anyhow::Ok(publisher.republished)
        })
    };

    // RSS samples (soak) and progress.
    let sampler = {
        let world = world.clone();
        let published = published.clone();
        tokio::spawn(async move {
            let mut samples: Vec<u64> = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                let mut rss = Vec::new();
                for slot in &world.replicas {
                    if let Ok(replica) = slot.try_lock()
                        && let Some(process) = &replica.process
                    {
                        rss.push(process.rss_kib().unwrap_or(0));
                    }
                }
                if let Some(first) = rss.first() {
                    samples.push(*first);
                }
                let finished = match world.rig.db().await {
                    Ok(client) => client
                        .query_one("SELECT count(*) FROM scans WHERE status <> 'running'", &[])
                        .await
                        .map(|row| row.get::<_, i64>(0))
                        .unwrap_or(-1),
                    Err(_) => -1,
                };
                eprintln!(
                    "chaos: [{:>7.1}s] published {}, finished {}, worker RSS KiB {:?}",
                    world.start.elapsed().as_secs_f64(),
                    published.lock().await.len(),
                    finished,
                    rss
                );
                if world.replicas.len() == 1 && samples.len().is_multiple_of(6) {
                    // Soak progress in a stable shape, for the record.
                    println!("rss sample {}: {} KiB", samples.len(), samples.last().copied().unwrap_or(0));
                }
                let _ = &samples;
                if samples.len() > 100_000 {
                    samples.clear();
                }
                WORLD_SAMPLES.lock().await.clone_from(&samples);
            }
        })
    };

    // The fault schedule: exponential gaps, a uniformly chosen kind, pauses drawn at once, all from the seed.
    let mut faults = tokio::task::JoinSet::new();
    if !args.soak {
        let mut rng = StdRng::seed_from_u64(seed);
        let mean = args.fault_every_secs.max(0.5);
        let mut next = Duration::ZERO;
        loop {
            let gap = -mean * (1.0 - rng.random::<f64>()).ln();
            next += Duration::from_secs_f64(gap);
            if next >= period {
                break;
            }
            let kind = KINDS[rng.random_range(0..KINDS.len())];
            let index = rng.random_range(0..world.replicas.len());
            let pause = pause_for(kind, &mut rng);
            if let Some(wait) = next.checked_sub(world.start.elapsed()) {
                tokio::time::sleep(wait).await;
            }
            let world = world.clone();
            faults.spawn(async move {
                match world.inject(kind, index, pause).await {
                    Ok(true) => {}
                    Ok(false) => world.timeline.note(world.start, format!("{kind:?} skipped: one is under way")),
                    Err(error) => world.timeline.note(world.start, format!("{kind:?} failed: {error:#}")),
                }
            });
        }
    }
    let republished = publisher_task.await.context("publisher task")??;
    while faults.join_next().await.is_some() {}
    world.timeline.note(world.start, "fault period over; waiting for the work to settle");

    // Every replica running again, then wait for every job to finish and every event to be sent.
    for slot in &world.replicas {
        let mut replica = slot.lock().await;
        if !replica.process.as_mut().is_some_and(WorkerProcess::is_running) {
            world.start_replica(&mut replica)?;
        }
    }
    let jobs: HashSet<Uuid> = published.lock().await.clone();
    let settle_deadline = Instant::now() + Duration::from_secs(args.settle_secs);
    let mut settled = false;
    while Instant::now() < settle_deadline {
        if let Ok(client) = world.rig.db().await {
            let finished: Option<i64> = client
                .query_one("SELECT count(*) FROM scans WHERE status IN ('completed', 'failed')", &[])
                .await
                .ok()
                .map(|row| row.get(0));
            let unsent: Option<i64> =
                client.query_one("SELECT count(*) FROM outbox WHERE sent_at IS NULL", &[]).await.ok().map(|r| r.get(0));
            if finished == Some(jobs.len() as i64) && unsent == Some(0) {
                settled = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let settle_time = world.start.elapsed().saturating_sub(period);
    world.timeline.note(world.start, if settled { "settled" } else { "did not settle in time" });
    sampler.abort();
    let _ = sampler.await;

    // Peak RSS and CPU of the replicas still running, then stop them (drain).
    let mut peaks = Vec::new();
    for slot in &world.replicas {
        let mut replica = slot.lock().await;
        if let Some(mut process) = replica.process.take() {
            peaks.push(process.peak_rss_kib().unwrap_or(0));
            let _ = process.signal("TERM");
            if process.wait_exit(Duration::from_secs(60)).await.is_none() {
                process.kill().await;
            }
        }
    }
    // Give the broker a moment to route the last confirmed events, then check.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut verdict = verify(&world.rig, &jobs).await?;
    if !settled {
        verdict
            .violations
            .insert(0, format!("the work did not settle within {}s of the fault period", args.settle_secs));
    }
    let bad_drains = world.bad_drains.load(Ordering::Relaxed);
    if bad_drains > 0 {
        verdict.violations.push(format!("{bad_drains} SIGTERM drains did not exit 0 in time"));
    }

    println!();
    println!("==== clerk-audit-chaos report ({mode}) ====");
    println!("seed:                 {seed}");
    println!("replicas:             {replicas} x concurrency {}", args.concurrency);
    println!("fault/publish period: {}s; settled {:.1}s after it", period.as_secs(), settle_time.as_secs_f64());
    println!("jobs published:       {} ({} publishes retried)", jobs.len(), republished);
    let c = &world.counts;
    println!(
        "faults:               {} SIGKILL, {} SIGTERM, {} broker restarts, {} PostgreSQL restarts, {} database black holes, {} KMS throttling bursts",
        c.kill.load(Ordering::Relaxed),
        c.term.load(Ordering::Relaxed),
        c.broker.load(Ordering::Relaxed),
        c.postgres.load(Ordering::Relaxed),
        c.blackhole.load(Ordering::Relaxed),
        c.kms.load(Ordering::Relaxed),
    );
    let kms = world.rig.kms.counts();
    println!("KMS:                  {} decrypts, {} throttled answers", kms.decrypt, kms.throttled);
    println!("worker peak RSS KiB:  {peaks:?}");
    println!(
        "delayed jobs resent:  {} (the broker had not returned them {RETRY_SWEEP_GRACE_SECS}s after their delay)",
        log_lines_containing(&run_dir, clerk_audit::outbox::resend::RESENT_LOG)
    );
    let mut flat_ok = true;
    if args.soak {
        let samples = WORLD_SAMPLES.lock().await.clone();
        let third = samples.len() / 3;
        if third >= 1 {
            let first = median(&mut samples[..third].to_vec());
            let last = median(&mut samples[samples.len() - third..].to_vec());
            let ratio = last as f64 / first.max(1) as f64;
            flat_ok = (0.9..=1.1).contains(&ratio);
            println!(
                "RSS samples (10 s):   {} samples; first third median {first} KiB, last third median {last} KiB ({:+.1}%): {}",
                samples.len(),
                (ratio - 1.0) * 100.0,
                if flat_ok { "flat" } else { "NOT flat" }
            );
            println!("RSS samples KiB:      {samples:?}");
        } else {
            println!("RSS samples (10 s):   too few samples ({}) to judge flatness", samples.len());
        }
        if !flat_ok {
            verdict.violations.push("RSS is not flat over the soak".to_owned());
        }
    }
    verdict.print();
    world.timeline.print();
    let ok = verdict.violations.is_empty();
    println!("result:               {}", if ok { "PASS" } else { "FAIL" });

    let world = Arc::into_inner(world).context("every task holding the run has ended")?;
    if ok {
        world.rig.cleanup().await;
    }
    // Dropping the world stops the private broker and database.
    drop(world);
    if ok && args.run_dir.is_none() {
        let _ = std::fs::remove_dir_all(&run_dir);
    } else {
        println!("logs and service files kept in {}", run_dir.display());
    }
    Ok(ok)
}

static WORLD_SAMPLES: Mutex<Vec<u64>> = Mutex::const_new(Vec::new());
