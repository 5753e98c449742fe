//! Scaffolding for the delivery tests: the worker as a child process ([`worker`]), a TCP proxy that can fail
//! ([`proxy`]), a throttling KMS ([`kms`]), and conditions with deadlines over the broker and the database.

pub mod kms;
pub mod proxy;
pub mod worker;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use clerk_audit::intake::broker;
use clerk_audit::intake::job::ScanJob;
use clerk_audit_sandbox::Scenario;
use lapin::BasicProperties;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use uuid::Uuid;

use crate::harness::{self, TestApp, project};

/// Polls `condition` every 100 ms until it holds; panics naming `what` after `deadline`.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut condition: F)
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

pub async fn count(app: &TestApp, sql: &str) -> i64 {
    app.pool.get().await.expect("test pool").query_one(sql, &[]).await.expect("count query").get(0)
}

pub async fn completed_scans(app: &TestApp) -> i64 {
    count(app, "SELECT count(*) FROM scans WHERE status = 'completed'").await
}

/// Ready messages in a queue (passive declare).
pub async fn queue_depth(app: &TestApp, queue: &str) -> u32 {
    let channel = app.broker.create_channel().await.unwrap();
    let declared = channel
        .queue_declare(queue.into(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default())
        .await
        .expect("queue exists");
    let _ = channel.close(200, "".into()).await;
    declared.message_count()
}

/// Publishes jobs on one confirm channel.
pub async fn enqueue_all(app: &TestApp, jobs: &[ScanJob]) {
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
pub async fn jobs_for(app: &TestApp, scenario: Scenario, n: usize) -> (String, Vec<ScanJob>) {
    let project = project();
    let instance = app.sandbox.instance(scenario).name.clone();
    let key_ref = app.connect_scenario(&project, scenario).await;
    let jobs = (0..n).map(|_| app.job(&project, &instance, key_ref)).collect();
    (instance, jobs)
}

/// Reads events until every scan of `scans` has one, then keeps reading while more arrive within
/// `linger`; answers every event id seen per scan (one entry per delivery).
pub async fn collect_events(
    app: &mut TestApp,
    scans: &BTreeSet<Uuid>,
    linger: Duration,
) -> BTreeMap<Uuid, Vec<String>> {
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
pub fn assert_events_once_per_scan(events: &BTreeMap<Uuid, Vec<String>>, scans: &BTreeSet<Uuid>) {
    let keys: BTreeSet<Uuid> = events.keys().copied().collect();
    assert_eq!(&keys, scans, "events for exactly the jobs' scans");
    for (scan, ids) in events {
        let distinct: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), 1, "scan {scan}: duplicates share their id: {ids:?}");
        assert_eq!(ids[0], clerk_audit::outbox::events::event_id(*scan).to_string());
    }
}

/// Exactly one completed scan and one outbox row per job.
pub async fn assert_each_completed_once(app: &TestApp, jobs: &[ScanJob]) {
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
