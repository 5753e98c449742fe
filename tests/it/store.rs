//! The store against a real PostgreSQL: errors become typed job errors by SQLSTATE (a retry can fix an
//! unavailable database, never a broken statement or a constraint violation), and stored artifacts over a
//! cap are unreadable.

use clerk_audit::error::JobError;

use crate::harness::admin_database_url;

async fn client() -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(&admin_database_url(), tokio_postgres::NoTls).await.expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn syntax_and_constraint_errors_are_permanent() {
    let client = client().await;
    let syntax = client.batch_execute("SELEC 1").await.unwrap_err();
    assert_eq!(syntax.code().map(|c| c.code()), Some("42601"));
    assert!(!JobError::from(syntax).is_transient());

    let undefined = client.batch_execute("SELECT * FROM no_such_table_for_this_test").await.unwrap_err();
    assert!(!JobError::from(undefined).is_transient());

    client.batch_execute("CREATE TEMP TABLE t (id int PRIMARY KEY)").await.unwrap();
    client.batch_execute("INSERT INTO t VALUES (1)").await.unwrap();
    let unique = client.batch_execute("INSERT INTO t VALUES (1)").await.unwrap_err();
    assert_eq!(unique.code().map(|c| c.code()), Some("23505"));
    assert!(!JobError::from(unique).is_transient());
}

#[tokio::test]
async fn lock_timeouts_and_lost_connections_are_transient() {
    let holder = client().await;
    let client = client().await;
    let key: i64 = rand_key();
    holder.execute("SELECT pg_advisory_lock($1)", &[&key]).await.unwrap();
    let lock =
        client.batch_execute(&format!("SET lock_timeout = '10ms'; SELECT pg_advisory_lock({key})")).await.unwrap_err();
    assert_eq!(lock.code().map(|c| c.code()), Some("55P03"));
    assert!(JobError::from(lock).is_transient());
    holder.execute("SELECT pg_advisory_unlock($1)", &[&key]).await.unwrap();
    client.batch_execute("SET lock_timeout = 0").await.unwrap();

    // A statement canceled by the server (57014, query_canceled) is transient.
    let canceled = client.batch_execute("SET statement_timeout = '1ms'; SELECT pg_sleep(1)").await.unwrap_err();
    assert_eq!(canceled.code().map(|c| c.code()), Some("57014"));
    assert!(JobError::from(canceled).is_transient());

    // No SQLSTATE at all: the connection could not be made.
    let refused = tokio_postgres::connect("postgres://postgres@127.0.0.1:1/postgres", tokio_postgres::NoTls)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(refused.code().is_none());
    assert!(JobError::from(refused).is_transient());
}

fn rand_key() -> i64 {
    i64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().unwrap())
}

/// The artifact caps are enforced by the query: an oversized document is judged from its size alone, a
/// list over its cap from its length, and neither is a "no repo scan".
#[tokio::test]
async fn stored_artifacts_over_a_cap_are_unreadable() {
    use clerk_audit::audit::artifact::{ArtifactUnreadable, StoredArtifact};
    use clerk_audit::intake::job::ProjectId;
    use clerk_audit::store::artifacts::{
        self, MAX_ARTIFACT_BYTES, MAX_COMMITTED_SECRETS, MAX_KEY_REFERENCES, MAX_WEBHOOK_HANDLERS,
    };
    use tokio_postgres::types::Json;

    let (url, pool) = migrated_database().await;
    let client = pool.get().await.unwrap();
    let project = ProjectId::parse("prj_caps").unwrap();
    let insert = |id: &'static str, document: serde_json::Value| {
        let client = &client;
        let project = &project;
        async move {
            client
                .execute(
                    "INSERT INTO repo_scan_artifacts (project_id, repo_scan_id, artifact) VALUES ($1, $2, $3)",
                    &[&project.as_str(), &id, &Json(document)],
                )
                .await
                .unwrap();
        }
    };
    let base = |extra: (&str, serde_json::Value)| {
        let mut document = serde_json::json!({"schema": "clerk-repo-artifact/v1"});
        document[extra.0] = extra.1;
        document
    };
    let reference = serde_json::json!({"kind": "publishable", "environment": "live", "file": ".env"});
    insert("big", base(("pad", serde_json::Value::String("x".repeat(MAX_ARTIFACT_BYTES as usize))))).await;
    insert(
        "keys",
        base(("key_references", serde_json::Value::Array(vec![reference; MAX_KEY_REFERENCES as usize + 1]))),
    )
    .await;
    let handler = serde_json::json!({"file": "a.ts", "line": 1, "framework": "x", "verification": "none"});
    insert(
        "hooks",
        base(("webhook_handlers", serde_json::Value::Array(vec![handler; MAX_WEBHOOK_HANDLERS as usize + 1]))),
    )
    .await;
    let secret = serde_json::json!({"file": ".env", "line": 1, "variable": "CLERK_WEBHOOK_SECRET",
        "fingerprint": "sha256:00"});
    insert(
        "secrets",
        base(("committed_secrets", serde_json::Value::Array(vec![secret; MAX_COMMITTED_SECRETS as usize + 1]))),
    )
    .await;
    insert("bad", serde_json::json!({"schema": "clerk-repo-artifact/v1", "key_references": "not a list"})).await;

    let load = |id: &'static str| artifacts::load(&client, &project, Some(id));
    assert!(matches!(load("big").await.unwrap(), StoredArtifact::Unreadable(ArtifactUnreadable::TooLarge(_))));
    assert_eq!(
        load("keys").await.unwrap(),
        StoredArtifact::Unreadable(ArtifactUnreadable::TooManyEntries {
            field: "key_references",
            limit: MAX_KEY_REFERENCES as usize
        })
    );
    assert_eq!(
        load("hooks").await.unwrap(),
        StoredArtifact::Unreadable(ArtifactUnreadable::TooManyEntries {
            field: "webhook_handlers",
            limit: MAX_WEBHOOK_HANDLERS as usize
        })
    );
    assert_eq!(
        load("secrets").await.unwrap(),
        StoredArtifact::Unreadable(ArtifactUnreadable::TooManyEntries {
            field: "committed_secrets",
            limit: MAX_COMMITTED_SECRETS as usize
        })
    );
    assert_eq!(load("bad").await.unwrap(), StoredArtifact::Unreadable(ArtifactUnreadable::Malformed));
    assert_eq!(load("none").await.unwrap(), StoredArtifact::Absent);
    drop(client);
    drop_database(&url, pool).await;
}

/// A fresh database with the worker's migrations applied: its URL and a small pool on it.
async fn migrated_database() -> (String, deadpool_postgres::Pool) {
    let url = crate::harness::fresh_database().await;
    let settings = clerk_audit::configuration::DatabaseSettings {
        url: secrecy::SecretString::from(url.clone()),
        pool_size: 2,
        timeout_ms: 10_000,
    };
    let pool = clerk_audit::store::pool(&settings).unwrap();
    clerk_audit::store::migrate(&pool).await.unwrap();
    (url, pool)
}

/// Drops a database made by [`migrated_database`].
async fn drop_database(url: &str, pool: deadpool_postgres::Pool) {
    pool.close();
    let name = url::Url::parse(url).unwrap().path().trim_start_matches('/').to_owned();
    client().await.execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), &[]).await.unwrap();
}

/// A scratch database older than the stale age is dropped by the next run; a young one (a run still going)
/// and one of another prefix or an unreadable name are not.
#[tokio::test]
async fn scratch_databases_left_behind_are_dropped_and_others_kept() {
    use clerk_audit_loadgen::scratch;
    use std::time::{Duration, SystemTime};
    const PREFIX: &str = "clerk_audit_scratchtest_";
    const OTHER_PREFIX: &str = "clerk_audit_otherscratch_";
    let admin = client().await;
    // What an earlier run of this test left when it failed midway: only this test uses these prefixes, and
    // its names are made to look old, so the sweeps of the other prefixes never reach them.
    for prefix in [PREFIX, OTHER_PREFIX] {
        scratch::drop_all(&admin, prefix).await;
    }
    let now = SystemTime::now();
    let stale = scratch::name(PREFIX, now - scratch::STALE_AFTER - Duration::from_secs(60));
    let young = scratch::name(PREFIX, now - scratch::STALE_AFTER + Duration::from_secs(600));
    let unreadable = format!("{PREFIX}{}", uuid::Uuid::new_v4().simple());
    let other = scratch::name(OTHER_PREFIX, now - 2 * scratch::STALE_AFTER);
    for name in [&stale, &young, &unreadable, &other] {
        admin.execute(&format!("CREATE DATABASE {name}"), &[]).await.unwrap();
    }
    let exists = async |name: &str| {
        admin.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await.unwrap().is_some()
    };

    let dropped = scratch::drop_stale(&admin, PREFIX, now).await;

    assert_eq!(dropped, vec![stale.clone()]);
    assert!(!exists(&stale).await);
    for kept in [&young, &unreadable, &other] {
        assert!(exists(kept).await, "{kept} was dropped");
        admin.execute(&format!("DROP DATABASE {kept} WITH (FORCE)"), &[]).await.unwrap();
    }
}

/// Retention deletes published rows older than the period, in batches, and never an unpublished row.
#[tokio::test]
async fn outbox_retention_deletes_old_published_rows_only() {
    use std::time::Duration;

    let (url, pool) = migrated_database().await;
    let client = pool.get().await.unwrap();
    // `sent` is how long ago the row was published (NULL: not yet), `count` how many such rows.
    let insert = |label: &'static str, sent: Option<&'static str>, count: i32| {
        let client = &client;
        async move {
            client
                .execute(
                    "INSERT INTO outbox (id, scan_id, exchange, routing_key, payload, created_at, sent_at)
                     SELECT gen_random_uuid(), gen_random_uuid(), 'pulselight.findings', $1,
                            '{\"type\": \"t\"}'::jsonb, now() - interval '30 days', now() - $2::text::interval
                       FROM generate_series(1, $3)",
                    &[&label, &sent, &count],
                )
                .await
                .unwrap();
        }
    };
    // More expired rows than one statement deletes, so the pass needs several batches.
    insert("expired", Some("8 days"), 2_500).await;
    insert("kept", Some("6 days"), 3).await;
    insert("unsent", None, 4).await;
    let remaining = || async {
        let rows = client
            .query("SELECT routing_key, count(*) FROM outbox GROUP BY routing_key ORDER BY routing_key", &[])
            .await
            .unwrap();
        rows.iter().map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1))).collect::<Vec<_>>()
    };

    let week = Duration::from_secs(7 * 24 * 3600);
    let deleted = clerk_audit::outbox::retention::prune(&pool, week).await.unwrap();
    assert_eq!(deleted, 2_500);
    assert_eq!(remaining().await, vec![("kept".to_owned(), 3), ("unsent".to_owned(), 4)]);
    // A second pass has nothing to do.
    assert_eq!(clerk_audit::outbox::retention::prune(&pool, week).await.unwrap(), 0);
    // A shorter period reaches the younger published rows, still not the unsent ones (created 30 days ago).
    let deleted = clerk_audit::outbox::retention::prune(&pool, Duration::from_secs(24 * 3600)).await.unwrap();
    assert_eq!(deleted, 3);
    assert_eq!(remaining().await, vec![("unsent".to_owned(), 4)]);

    // The worker's task prunes at start (then once a minute) and counts what it deleted.
    insert("expired", Some("8 days"), 5).await;
    let metrics = std::sync::Arc::new(clerk_audit::ops::metrics::Metrics::new());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(clerk_audit::outbox::retention::run(pool.clone(), week, metrics.clone(), shutdown.clone()));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while remaining().await != vec![("unsent".to_owned(), 4)] {
        assert!(std::time::Instant::now() < deadline, "the retention task did not prune");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    task.await.unwrap();
    let exposition = metrics.encode();
    assert!(exposition.contains("clerk_audit_outbox_pruned_rows_total 5"), "{exposition}");
    drop(client);
    drop_database(&url, pool).await;
}

/// A scan's transaction reads first-seen times with that statement's generic plan: with a custom plan the
/// server planned it again on every execution, which measured as a sixth of the database's time per scan.
/// The setting ends with the transaction, so the connection's other statements plan as they did.
#[tokio::test]
async fn completing_scans_reuses_the_first_seen_plan_and_leaves_the_session_as_it_was() {
    use clerk_audit::audit::checks::{Evidence, Severity};
    use clerk_audit::audit::evaluate::{CheckResult, CheckStatus, Evaluation, Finding};
    use clerk_audit::audit::facts::InstanceSummary;
    use clerk_audit::intake::job::{InstanceName, ProjectId, ScanJob};
    use clerk_audit::store::outbox::OutboxRow;
    use clerk_audit::store::scans::{self, Committed, CompletedRecord, ScanStart};

    const SCANS: i64 = 8;
    let (url, pool) = migrated_database().await;
    let mut client = pool.get().await.unwrap();
    let project = ProjectId::parse("prj_plans").unwrap();
    let instance = InstanceSummary { kind: "production".into(), user_count: 1, domain: None };
    for n in 0..SCANS {
        let job = ScanJob {
            scan_id: uuid::Uuid::new_v4(),
            project_id: project.clone(),
            instance_name: InstanceName::parse("acme-prod").unwrap(),
            key_ref: uuid::Uuid::new_v4(),
            requested_at: chrono::Utc::now(),
            repo_scan_id: None,
        };
        assert_eq!(scans::begin(&client, &job).await.unwrap(), ScanStart::Running { attempts: 1 });
        let finding = |fingerprint: String| Finding {
            check_id: "CLERK-X".into(),
            severity: Severity::Warning,
            pillar: "secure".into(),
            title: "t".into(),
            evidence: Evidence { repo: None, clerk: Some("c".into()), details: serde_json::json!({}) },
            why: "w".into(),
            fix: "f".into(),
            fingerprint,
            first_seen_at: None,
            lifecycle: None,
        };
        // One finding that persists and, from the second scan on, one more than the scan before had.
        let evaluation = Evaluation {
            results: vec![CheckResult { check_id: "CLERK-X".into(), status: CheckStatus::Fail, reason: None }],
            findings: (0..=n).map(|i| finding(format!("sha256:{i}"))).collect(),
        };
        let record = CompletedRecord {
            job: &job,
            started_at: chrono::Utc::now(),
            evaluation: &evaluation,
            instance: &instance,
            calls: &[],
        };
        let committed = scans::complete(&mut client, record, |_, _| OutboxRow {
            id: uuid::Uuid::new_v4(),
            exchange: "pulselight.findings".into(),
            routing_key: "clerk.audit.completed",
            payload: "{}".into(),
            event_type: "com.pulselight.clerk.audit.completed.v1",
            traceparent: None,
        })
        .await
        .unwrap();
        assert_eq!(committed, Committed::Stored);
    }
    let plans = client
        .query_one(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements
              WHERE statement LIKE 'SELECT wanted.fp AS fingerprint%'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((plans.get::<_, i64>("generic_plans"), plans.get::<_, i64>("custom_plans")), (SCANS, 0));
    let mode: String = client.query_one("SHOW plan_cache_mode", &[]).await.unwrap().get(0);
    assert_eq!(mode, "auto");
    drop(client);
    drop_database(&url, pool).await;
}

/// The relay's claim stays cheap while sent rows wait for vacuum: their entries stay in the partial index of
/// unsent rows until it runs, which for a table keeping days of events is rare, and the statistics lag
/// behind. A sequential scan or a bitmap scan read the heap of every such row on every pass; the claim's
/// index scan marks their entries dead the first time, and later passes read the pages of the rows they
/// return only.
#[tokio::test]
async fn claiming_due_events_does_not_read_the_rows_sent_before() {
    const SENT: i32 = 20_000;
    let (url, pool) = migrated_database().await;
    let mut client = pool.get().await.unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO outbox (id, scan_id, exchange, routing_key, payload)
             SELECT gen_random_uuid(), gen_random_uuid(), 'pulselight.findings', 'clerk.audit.completed',
                    '{{\"type\": \"t\"}}'::jsonb
               FROM generate_series(1, {SENT});
             ANALYZE outbox;
             UPDATE outbox SET sent_at = now(), attempts = 1;
             INSERT INTO outbox (id, scan_id, exchange, routing_key, payload)
             SELECT gen_random_uuid(), gen_random_uuid(), 'pulselight.findings', 'clerk.audit.completed',
                    '{{\"type\": \"t\"}}'::jsonb
               FROM generate_series(1, 10);"
        ))
        .await
        .unwrap();
    // The statistics were taken before the rows were sent, as autovacuum's last analyze usually was: the
    // planner believes most rows unsent (a sequential scan and a sort would read the whole table each pass).

    // Heap blocks of `outbox` read so far, as the server counts them (its statistics flushed first).
    async fn heap_blocks(client: &deadpool_postgres::Client) -> i64 {
        client.batch_execute("SELECT pg_stat_force_next_flush()").await.unwrap();
        client
            .query_one(
                "SELECT coalesce(heap_blks_read, 0) + coalesce(heap_blks_hit, 0) FROM pg_statio_user_tables
                  WHERE relname = 'outbox'",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }
    for pass in 0..3 {
        let before = heap_blocks(&client).await;
        let batch = clerk_audit::store::outbox::claim_due(&mut client, 50).await.unwrap();
        assert_eq!(batch.events.len(), 10);
        batch.commit().await.unwrap();
        let read = heap_blocks(&client).await - before;
        // The first pass meets the dead entries; the later ones read about the ten rows' pages.
        if pass > 0 {
            assert!(read < 50, "pass {pass} read {read} heap blocks for 10 due rows");
        }
    }
    drop(client);
    drop_database(&url, pool).await;
}

/// A recorded retry waits until it is more than the grace past due. Then the sweep sends it again only if the
/// broker did not bring it back: no attempt began on the scan since it was scheduled, and the scan still runs
/// (or has no row yet). Replicas never claim the same retry at once; what is not settled stays.
#[tokio::test]
async fn overdue_retries_are_lost_only_when_no_attempt_began_since_they_were_scheduled() {
    use std::time::Duration;

    use clerk_audit::intake::job::{InstanceName, ProjectId, ScanJob};
    use clerk_audit::store::retries::{self, ScheduledRetry};
    use clerk_audit::store::scans::{self, ScanStart};

    let (url, pool) = migrated_database().await;
    let mut client = pool.get().await.unwrap();
    let job = |_: &str| ScanJob {
        scan_id: uuid::Uuid::new_v4(),
        project_id: ProjectId::parse("prj_retries").unwrap(),
        instance_name: InstanceName::parse("acme-prod").unwrap(),
        key_ref: uuid::Uuid::new_v4(),
        requested_at: chrono::Utc::now(),
        repo_scan_id: None,
    };
    let (stranded, returned, finished, unregistered, not_due) =
        (job("stranded"), job("returned"), job("finished"), job("unregistered"), job("not due"));
    for registered in [&stranded, &returned, &finished, &not_due] {
        assert_eq!(scans::begin(&client, registered).await.unwrap(), ScanStart::Running { attempts: 1 });
    }
    let schedule = |job: &ScanJob, delay: Duration| {
        let client = &client;
        let scan_id = job.scan_id;
        async move {
            let body = format!("{{\"scan_id\": \"{scan_id}\"}}");
            let retry = ScheduledRetry {
                scan_id,
                attempt: 2,
                delay,
                body: body.as_bytes(),
                traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            };
            retries::schedule(client, &retry).await.unwrap();
        }
    };
    for due_now in [&stranded, &returned, &finished, &unregistered] {
        schedule(due_now, Duration::ZERO).await;
    }
    schedule(&not_due, Duration::from_secs(3600)).await;
    // The delayed copy of `returned` came back and its attempt began; `finished` completed by another copy.
    assert_eq!(scans::begin(&client, &returned).await.unwrap(), ScanStart::Running { attempts: 2 });
    client.execute("UPDATE scans SET status = 'completed' WHERE id = $1", &[&finished.scan_id]).await.unwrap();

    // Within the grace period nothing is claimed.
    let batch = retries::claim_overdue(&mut client, Duration::from_secs(600), 100).await.unwrap();
    assert!(batch.retries.is_empty(), "{:?}", batch.retries);
    batch.finish(&[]).await.unwrap();

    let batch = retries::claim_overdue(&mut client, Duration::ZERO, 100).await.unwrap();
    let mut verdicts: Vec<(uuid::Uuid, bool)> = batch.retries.iter().map(|r| (r.scan_id, r.lost)).collect();
    verdicts.sort();
    let mut expected = vec![
        (stranded.scan_id, true),
        (returned.scan_id, false),
        (finished.scan_id, false),
        (unregistered.scan_id, true),
    ];
    expected.sort();
    assert_eq!(verdicts, expected);
    let first = batch.retries.iter().find(|r| r.scan_id == stranded.scan_id).unwrap();
    assert_eq!(first.attempt, 2);
    assert_eq!(first.body, format!("{{\"scan_id\": \"{}\"}}", stranded.scan_id).into_bytes());
    assert_eq!(first.traceparent.as_deref(), Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));

    // Another replica's sweep, meanwhile, skips the claimed rows.
    let (mut other, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let concurrent = retries::claim_overdue(&mut other, Duration::ZERO, 100).await.unwrap();
    assert!(concurrent.retries.is_empty(), "{:?}", concurrent.retries);
    concurrent.finish(&[]).await.unwrap();

    // Settled: the returned ones and `stranded` (sent again); `unregistered` was not (its publish failed).
    batch.finish(&[stranded.scan_id, returned.scan_id, finished.scan_id]).await.unwrap();
    let left: Vec<uuid::Uuid> = client
        .query("SELECT scan_id FROM scan_retries ORDER BY due_at", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(left, vec![unregistered.scan_id, not_due.scan_id]);

    // A later delay of the same scan replaces its retry, with the attempts begun so far.
    scans::begin(&client, &not_due).await.unwrap();
    let retry =
        ScheduledRetry { scan_id: not_due.scan_id, attempt: 3, delay: Duration::ZERO, body: b"{}", traceparent: None };
    retries::schedule(&client, &retry).await.unwrap();
    let row = client
        .query_one(
            "SELECT attempt, begun_attempts, traceparent FROM scan_retries WHERE scan_id = $1",
            &[&not_due.scan_id],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i32>(1), row.get::<_, Option<String>>(2)), (3, 2, None));
    let batch = retries::claim_overdue(&mut client, Duration::ZERO, 100).await.unwrap();
    assert!(batch.retries.iter().any(|r| r.scan_id == not_due.scan_id && r.lost));
    batch.finish(&[]).await.unwrap();
    drop(other);
    drop(client);
    drop_database(&url, pool).await;
}
