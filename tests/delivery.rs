//! Delivery guarantees under faults (at least once, never a second scan row or a second event id), proven against the real RabbitMQ and
//! PostgreSQL with the worker running as a child process (`clerk-audit worker`): SIGTERM drains, SIGKILL
//! loses nothing, replicas never complete a scan twice, transient faults retry in the job or through the
//! delay queues (and a delayed job the broker loses is sent again), outages of the database or the broker (a TCP proxy on loopback that drops its
//! connections) are survived, a poison job or a panicking handler never loops.
//!
//! Its own test binary: these tests are slow-ish and spawn processes, and they keep the main suite's
//! linking unchanged. The scaffolding (worker process, TCP proxy, throttling KMS) is in `support/`.

#[path = "it/harness.rs"]
mod harness;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use clerk_audit::intake::broker::{self, REASON_HEADER, header_text};
use clerk_audit::intake::consumer::{ConsumeEnd, consume};
use clerk_audit::intake::{DeliveryInfo, JobOutcome, ProcessJob};
use clerk_audit::pipeline::Pipeline;
use clerk_audit::startup::Application;
use clerk_audit_sandbox::{Fault, FaultTarget, Scenario};
use futures::future::BoxFuture;
use lapin::options::QueueBindOptions;
use lapin::types::FieldTable;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use harness::spawn_env_with;
use support::kms::throttling_kms;
use support::proxy::{TcpProxy, service_addr};
use support::worker::Worker;
use support::{
    assert_each_completed_once, assert_events_once_per_scan, collect_events, completed_scans, count, enqueue_all,
    jobs_for, queue_depth, wait_until,
};

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
// 3b. A crash after the event was published, before the job was acknowledged.
// ---------------------------------------------------------------------------------------------------

/// The test hook holds the ack of the completed job and aborts the process once the broker confirmed the
/// event, before the outbox row is marked sent: the job is committed, its event is out, the delivery is
/// unacknowledged. After a restart the broker redelivers the job (recognised as already finished: no second
/// scan row) and the relay publishes the event again with the same id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_publish_before_ack_redelivers_a_recognised_duplicate_with_the_same_event_id() {
    let mut app = spawn_env_with(|_| {}).await;
    let hook = [(clerk_audit::test_hooks::VAR, "crash_after_publish_before_ack")];
    let mut hooked = Worker::start_with_env(&app.settings, "hooked", &hook);
    let (_, jobs) = jobs_for(&app, Scenario::Development, 1).await;
    enqueue_all(&app, &jobs).await;
    let (_, first) = app.event_for(jobs[0].scan_id).await;
    let status = hooked.exit_status(Duration::from_secs(60)).await;
    assert!(!status.success(), "the hook aborted the worker: {status:?}");
    assert_eq!(count(&app, "SELECT count(*) FROM outbox WHERE sent_at IS NULL").await, 1, "the row is not marked sent");
    assert_eq!(completed_scans(&app).await, 1);

    let mut restarted = Worker::start(&app.settings, "restarted");
    let (_, second) = app.event_for(jobs[0].scan_id).await;
    assert_eq!(first["id"], second["id"], "the duplicate event keeps its id");
    assert_eq!(first["id"], clerk_audit::outbox::events::event_id(jobs[0].scan_id).to_string());
    wait_until("the redelivered job is recognised as already finished", Duration::from_secs(60), || async {
        restarted.log_text().lines().any(|line| line.contains("job done") && line.contains("duplicate"))
    })
    .await;
    wait_until("the outbox row is marked sent", Duration::from_secs(60), || async {
        count(&app, "SELECT count(*) FROM outbox WHERE sent_at IS NULL").await == 0
    })
    .await;
    assert_each_completed_once(&app, &jobs).await;
    assert_eq!(count(&app, "SELECT count(*) FROM scans").await, 1, "no second scan row");
    assert_eq!(queue_depth(&app, &app.settings.amqp.jobs_queue).await, 0);
    assert!(app.no_event_within(Duration::from_secs(2)).await.is_none(), "no third copy");
    restarted.signal("TERM");
    assert_eq!(restarted.exit_status(Duration::from_secs(60)).await.code(), Some(0));
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
    // The fault is on one path: the first round's calls run in parallel, so a fault on the whole host would
    // land on whichever arrives first (an optional call's failure does not fail the job).
    app.sandbox.set_fault_on_path(&instance, FaultTarget::BackendApi, "/v1/instance", Fault::ServerError { times: 2 });
    enqueue_all(&app, &jobs).await;
    let (routing_key, _) = app.event_for(jobs[0].scan_id).await;
    assert_eq!(routing_key, "clerk.audit.completed");
    assert_eq!(app.scan_status(jobs[0].scan_id).await, Some(("completed".into(), 1)));
    let statuses: Vec<u16> =
        app.clerk_requests_for(&instance).iter().filter(|r| r.path == "/v1/instance").map(|r| r.status).collect();
    assert_eq!(&statuses[..3], &[500, 500, 200], "{statuses:?}");

    // 429 with Retry-After beyond http.max_retry_after_secs: the job is delayed at least that long.
    app.sandbox.clear_requests();
    let retry_after = 5;
    let job = app.job(&jobs[0].project_id, &instance, jobs[0].key_ref);
    app.sandbox.set_fault_on_path(
        &instance,
        FaultTarget::BackendApi,
        "/v1/instance",
        Fault::RateLimited { retry_after_secs: retry_after, times: 1 },
    );
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

/// The broker's delay queues are not trusted alone (RabbitMQ has left delayed jobs in them for good): a retry
/// is recorded before the job is delayed, and a job the broker does not bring back within
/// `worker.retry_sweep_grace_secs` of its due time is sent to the jobs queue again. Here the broker "loses" the
/// first job (its delay queue is purged while the job waits); the second job's delay runs its course and it is
/// not sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_job_the_broker_never_returns_is_sent_again_and_one_it_returns_is_not() {
    use lapin::options::QueuePurgeOptions;

    use clerk_audit::outbox::resend::RESENT_LOG as RESENT;
    let mut app = spawn_env_with(|s| {
        s.http.max_retry_after_secs = 1;
        s.worker.retry_delay_secs = 1;
        s.worker.retry_sweep_grace_secs = 3;
    })
    .await;
    let mut worker = Worker::start(&app.settings, "w");
    // A 429 whose Retry-After exceeds http.max_retry_after_secs delays the job by a tier of at least that long.
    let retry_after = 5;
    let delay_queue =
        broker::delay_queue_name(&app.settings.amqp, broker::delay_for(1, 1, Some(Duration::from_secs(retry_after))));
    let (instance, jobs) = jobs_for(&app, Scenario::Development, 1).await;
    let rate_limited = Fault::RateLimited { retry_after_secs: retry_after, times: 1 };
    const RETRIES: &str = "SELECT count(*) FROM scan_retries";

    // Lost in the delay queue.
    let lost = &jobs[0];
    app.sandbox.set_fault_on_path(&instance, FaultTarget::BackendApi, "/v1/instance", rate_limited.clone());
    enqueue_all(&app, std::slice::from_ref(lost)).await;
    // The delay queue is declared on use, before the worker logs the delay.
    wait_until("the job waits in its delay queue", Duration::from_secs(30), || async {
        worker.log_lines_containing("job delayed") == 1 && queue_depth(&app, &delay_queue).await == 1
    })
    .await;
    assert_eq!(count(&app, RETRIES).await, 1, "the retry is recorded before the delayed copy is published");
    let channel = app.broker.create_channel().await.unwrap();
    let purged = channel.queue_purge(delay_queue.as_str().into(), QueuePurgeOptions::default()).await.unwrap();
    assert_eq!(purged, 1);
    let (routing_key, _) = app.event_for(lost.scan_id).await;
    assert_eq!(routing_key, "clerk.audit.completed");
    assert_eq!(app.scan_status(lost.scan_id).await, Some(("completed".into(), 2)), "sent again as the second attempt");
    assert_eq!(worker.log_lines_containing(RESENT), 1, "{}", worker.log_tail(20));

    // Returned on time by the broker: completes once, is not sent again, and its record is cleared.
    let returned = app.job(&lost.project_id, &instance, lost.key_ref);
    app.sandbox.set_fault_on_path(&instance, FaultTarget::BackendApi, "/v1/instance", rate_limited);
    enqueue_all(&app, std::slice::from_ref(&returned)).await;
    let (routing_key, _) = app.event_for(returned.scan_id).await;
    assert_eq!(routing_key, "clerk.audit.completed");
    assert_eq!(app.scan_status(returned.scan_id).await, Some(("completed".into(), 2)));
    // Cleared by the sweep once more than the grace period past due (both records: the lost job's when it was
    // sent again).
    wait_until("the returned retry's record is cleared", Duration::from_secs(30), || async {
        count(&app, RETRIES).await == 0
    })
    .await;
    assert_eq!(worker.log_lines_containing(RESENT), 1, "{}", worker.log_tail(20));
    assert_each_completed_once(&app, &[lost.clone(), returned]).await;
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
    let proxy = TcpProxy::start(service_addr(&harness::admin_database_url())).await.unwrap();
    let mut app = spawn_env_with(|s| {
        s.database.timeout_ms = 2_000;
        // Enough attempts for the outage: delays of 1, 2, 4, 8, 16 s.
        s.worker.max_attempts = 10;
    })
    .await;
    let mut settings = app.settings.clone();
    settings.database.url = SecretString::from(proxy.url_through(settings.database.url.expose_secret()).unwrap());
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
    proxy.recover().await.unwrap();

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

/// A replica that starts while the database is down (a node drain during a database restart) neither
/// crash-loops nor dies by signal: it waits for the database to run its migrations, starts when the database
/// is back, and a SIGTERM while it waits is a clean exit (code 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_starting_while_the_database_is_down_waits_for_it_and_exits_0_on_sigterm() {
    let proxy = TcpProxy::start(service_addr(&harness::admin_database_url())).await.unwrap();
    let mut app = spawn_env_with(|s| s.database.timeout_ms = 2_000).await;
    let mut settings = app.settings.clone();
    settings.database.url = SecretString::from(proxy.url_through(settings.database.url.expose_secret()).unwrap());
    proxy.outage().await;
    let mut stopped_early = Worker::start(&settings, "stopped-early");
    let mut waiting = Worker::start(&settings, "waiting");
    wait_until("both workers wait for the database", Duration::from_secs(60), || async {
        stopped_early.log_lines_containing("database unavailable at start") > 0
            && waiting.log_lines_containing("database unavailable at start") > 0
    })
    .await;
    assert!(waiting.is_running() && stopped_early.is_running(), "no worker exits while the database is down");
    stopped_early.signal("TERM");
    assert_eq!(stopped_early.exit_status(Duration::from_secs(60)).await.code(), Some(0));

    proxy.recover().await.unwrap();
    let (_, jobs) = jobs_for(&app, Scenario::Development, 1).await;
    enqueue_all(&app, &jobs).await;
    let (routing_key, _) = app.event_for(jobs[0].scan_id).await;
    assert_eq!(routing_key, "clerk.audit.completed", "the waiting worker started once the database was back");
    assert_each_completed_once(&app, &jobs).await;
    waiting.signal("TERM");
    assert_eq!(waiting.exit_status(Duration::from_secs(60)).await.code(), Some(0));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_database_cannot_hang_a_job() {
    let proxy = TcpProxy::start(service_addr(&harness::admin_database_url())).await.unwrap();
    let mut app = spawn_env_with(|s| {
        s.database.timeout_ms = 2_000;
        s.worker.max_attempts = 10;
    })
    .await;
    let mut settings = app.settings.clone();
    settings.database.url = SecretString::from(proxy.url_through(settings.database.url.expose_secret()).unwrap());
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
    proxy.thaw().await.unwrap();
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
    let proxy = TcpProxy::start(service_addr(&harness::amqp_url())).await.unwrap();
    let mut app = spawn_env_with(|s| s.worker.concurrency = 4).await;
    let mut settings = app.settings.clone();
    settings.amqp.url = SecretString::from(proxy.url_through(settings.amqp.url.expose_secret()).unwrap());
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
    proxy.recover().await.unwrap();

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
    let proxy = TcpProxy::start(service_addr(&harness::amqp_url())).await.unwrap();
    let mut app = spawn_env_with(|_| {}).await;
    let mut settings = app.settings.clone();
    settings.amqp.url = SecretString::from(proxy.url_through(settings.amqp.url.expose_secret()).unwrap());
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

    proxy.thaw().await.unwrap();
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
