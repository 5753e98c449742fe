//! Each sandbox scenario, enqueued as a real message, yields the expected completed event.

use clerk_audit::audit::artifact::{
    ARTIFACT_SCHEMA, KeyEnvironment, KeyKind, KeyReference, ReferenceContext, RepoArtifact,
};
use clerk_audit_sandbox::Scenario;
use serde_json::Value;

use crate::harness::{TestApp, check_statuses, finding_ids, project, spawn_app};

/// A repo that ships a production publishable key in `.env.production`.
pub fn artifact_with_live_key() -> RepoArtifact {
    RepoArtifact {
        schema: ARTIFACT_SCHEMA.into(),
        repo: Some("github.com/acme/web".into()),
        commit: Some("3f2a9c1".into()),
        scanned_at: Some("2026-11-26T09:58:00Z".into()),
        committed_secrets: vec![],
        key_references: vec![KeyReference {
            kind: KeyKind::Publishable,
            environment: KeyEnvironment::Live,
            file: ".env.production".into(),
            line: 3,
            variable: Some("NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY".into()),
            context: ReferenceContext::Production,
            frontend_api_host: Some("clerk.acme.com".into()),
            fingerprint: None,
            malformed: false,
            confidence: None,
        }],
        webhook_handlers: vec![],
    }
}

/// [`artifact_with_live_key`] whose key decodes to `scenario`'s own Frontend API host: the app uses the
/// connected instance (so CLERK-KEY-MISMATCH-001 passes on production instances).
pub fn artifact_for(app: &TestApp, scenario: Scenario) -> RepoArtifact {
    let mut artifact = artifact_with_live_key();
    let url = app.sandbox.instance(scenario).frontend_api_url.as_str();
    artifact.key_references[0].frontend_api_host = clerk_audit::audit::facts::url_host(url);
    artifact
}

/// Runs one scan of `scenario` with the live-key artifact and answers the completed event.
async fn scan(app: &mut TestApp, scenario: Scenario, with_artifact: bool) -> Value {
    let project = project();
    let key_ref = app.connect_scenario(&project, scenario).await;
    if with_artifact {
        app.store_artifact(&project, "rs_1", &artifact_for(app, scenario)).await;
    }
    let instance = app.sandbox.instance(scenario).name.clone();
    let job = app.job(&project, &instance, key_ref);
    app.enqueue(&job).await;
    let (routing_key, event) = app.event_for(job.scan_id).await;
    assert_eq!(routing_key, "clerk.audit.completed", "{event:#}");
    assert_cloudevent(&event, "com.pulselight.clerk.audit.completed.v1", project.as_str());
    assert_eq!(event["data"]["project_id"], project.as_str());
    assert_eq!(event["data"]["instance_name"], instance.as_str());
    assert_eq!(app.scan_status(job.scan_id).await.unwrap().0, "completed");
    event
}

pub fn assert_cloudevent(event: &Value, event_type: &str, project: &str) {
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["type"], event_type);
    assert_eq!(event["subject"], project);
    assert_eq!(event["source"], "urn:pulselight:clerk-audit");
    assert_eq!(event["datacontenttype"], "application/json");
    let id = event["id"].as_str().expect("id");
    uuid::Uuid::parse_str(id).expect("id is a UUID");
    chrono::DateTime::parse_from_rfc3339(event["time"].as_str().expect("time")).expect("time is RFC 3339");
}

fn statuses(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn finding<'a>(event: &'a Value, check_id: &str) -> &'a Value {
    event["data"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check_id"] == check_id)
        .unwrap_or_else(|| panic!("{check_id} finding in {event:#}"))
}

fn assert_finding_shape(finding: &Value, severity: &str) {
    assert_eq!(finding["severity"], severity);
    assert_eq!(finding["pillar"], "secure");
    for field in ["title", "why", "fix", "first_seen_at"] {
        assert!(finding[field].as_str().is_some_and(|s| !s.is_empty()), "{field} in {finding:#}");
    }
    assert!(finding["fingerprint"].as_str().unwrap().starts_with("sha256:"));
    assert!(finding["evidence"].is_object());
}

fn calls_by_row(event: &Value) -> std::collections::BTreeMap<u64, u64> {
    event["data"]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["row"].as_u64().unwrap(), c["count"].as_u64().unwrap()))
        .collect()
}

#[tokio::test]
async fn development_instance_with_live_key_is_a_blocker() {
    let mut app = spawn_app().await;
    let event = scan(&mut app, Scenario::Development, true).await;
    assert_eq!(
        check_statuses(&event),
        statuses(&[
            ("CLERK-DEV-IN-PROD-001", "fail"),
            ("CLERK-DEV-KEY-001", "pass"),
            ("CLERK-INSTANCE-001", "pass"),
            ("CLERK-MFA-001", "pass"),
            ("CLERK-MFA-002", "pass"),
            ("CLERK-EMAIL-001", "pass"),
            ("CLERK-WEBHOOK-001", "pass"),
            ("CLERK-WEBHOOK-002", "pass"),
            ("CLERK-WEBHOOK-003", "pass"),
            ("CLERK-WEBHOOK-004", "pass"),
            ("CLERK-WEBHOOK-005", "pass"),
            ("CLERK-WEBHOOK-006", "pass"),
            ("CLERK-WEBHOOK-007", "pass"),
            ("CLERK-TESTMODE-001", "pass"),
            ("CLERK-SECRET-LEAK-001", "pass"),
            ("CLERK-SECRET-PUBLIC-001", "pass"),
            ("CLERK-KEY-MISMATCH-001", "pass"),
            ("CLERK-ORIGIN-001", "pass"),
            ("CLERK-HIBP-001", "pass"),
            ("CLERK-LOCKOUT-001", "pass"),
            ("CLERK-BOT-001", "pass"),
            ("CLERK-DEVCAP-001", "pass"),
        ])
    );
    assert_eq!(finding_ids(&event), vec!["CLERK-DEV-IN-PROD-001"]);
    let blocker = finding(&event, "CLERK-DEV-IN-PROD-001");
    assert_finding_shape(blocker, "blocker");
    assert!(blocker["evidence"]["clerk"].as_str().unwrap().contains("development"));
    assert!(blocker["evidence"]["repo"].as_str().unwrap().contains(".env.production"));
    assert_eq!(event["data"]["instance"]["kind"], "development");
    assert_eq!(event["data"]["instance"]["user_count"], app.sandbox.instance(Scenario::Development).user_count);
    // A development instance: no Frontend API call (it wants a dev-browser token) and no DNS lookup; its
    // webhooks are asked for (`clerk.svix_url` answers 400: no Svix app, so no Svix call).
    let rows = calls_by_row(&event);
    assert_eq!(rows.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    app.stop().await;
}

#[tokio::test]
async fn development_instance_without_repo_scan_reports_the_instance_kind() {
    let mut app = spawn_app().await;
    let event = scan(&mut app, Scenario::Development, false).await;
    let checks = event["data"]["checks"].as_array().unwrap();
    for check in checks {
        let id = check["check_id"].as_str().unwrap();
        if ["CLERK-DEV-IN-PROD-001", "CLERK-DEV-KEY-001"].contains(&id) {
            assert_eq!(check["status"], "skipped", "{id}");
            assert_eq!(check["reason"], "no repo scan stored for this project");
        }
    }
    // Nothing in a repo says this instance serves production: the info finding exists for this case.
    assert_eq!(check_statuses(&event)["CLERK-INSTANCE-001"], "fail");
    assert_eq!(finding_ids(&event), vec!["CLERK-INSTANCE-001"]);
    let info = finding(&event, "CLERK-INSTANCE-001");
    assert_finding_shape(info, "info");
    assert_eq!(info["evidence"]["repo"], "no repo scan stored for this project");
    app.stop().await;
}

#[tokio::test]
async fn unreadable_repo_artifact_is_an_error_not_a_missing_scan() {
    let mut app = spawn_app().await;
    let project = project();
    let key_ref = app.connect_scenario(&project, Scenario::Development).await;
    // Parses as JSON (the column is jsonb) but is not the artifact schema.
    let client = app.pool.get().await.unwrap();
    client
        .execute(
            "INSERT INTO repo_scan_artifacts (project_id, repo_scan_id, artifact) VALUES ($1, 'rs_bad', $2)",
            &[
                &project.as_str(),
                &tokio_postgres::types::Json(serde_json::json!({"schema": "clerk-repo-artifact/v1",
                "key_references": [{"kind": "publishable", "environment": "live", "file": "pk_live_Y2xlcmsu"}]})),
            ],
        )
        .await
        .unwrap();
    let instance = app.sandbox.instance(Scenario::Development).name.clone();
    let job = app.job(&project, &instance, key_ref);
    app.enqueue(&job).await;
    let (routing_key, event) = app.event_for(job.scan_id).await;
    assert_eq!(routing_key, "clerk.audit.completed", "{event:#}");
    for check in event["data"]["checks"].as_array().unwrap() {
        let id = check["check_id"].as_str().unwrap();
        if ["CLERK-DEV-IN-PROD-001", "CLERK-DEV-KEY-001", "CLERK-INSTANCE-001", "CLERK-WEBHOOK-001"].contains(&id) {
            assert_eq!(check["status"], "error", "{id}");
            assert_eq!(check["reason"], "repo artifact unreadable: it does not follow the artifact schema", "{id}");
        }
    }
    // The reason names the rule broken, never the stored content.
    assert!(!event.to_string().contains("pk_live_Y2xlcmsu"));
    app.stop().await;
}

#[tokio::test]
async fn busy_production_instance_with_optional_mfa_warns() {
    let mut app = spawn_app().await;
    let event = scan(&mut app, Scenario::ProductionOptionalMfa, true).await;
    assert_eq!(
        check_statuses(&event),
        statuses(&[
            ("CLERK-DEV-IN-PROD-001", "pass"),
            ("CLERK-DEV-KEY-001", "pass"),
            ("CLERK-INSTANCE-001", "pass"),
            ("CLERK-MFA-001", "fail"),
            ("CLERK-MFA-002", "pass"),
            ("CLERK-EMAIL-001", "pass"),
            ("CLERK-WEBHOOK-001", "pass"),
            ("CLERK-WEBHOOK-002", "pass"),
            ("CLERK-WEBHOOK-003", "pass"),
            ("CLERK-WEBHOOK-004", "pass"),
            ("CLERK-WEBHOOK-005", "pass"),
            ("CLERK-WEBHOOK-006", "pass"),
            ("CLERK-WEBHOOK-007", "pass"),
            ("CLERK-TESTMODE-001", "pass"),
            ("CLERK-SECRET-LEAK-001", "pass"),
            ("CLERK-SECRET-PUBLIC-001", "pass"),
            ("CLERK-KEY-MISMATCH-001", "pass"),
            ("CLERK-ORIGIN-001", "pass"),
            ("CLERK-HIBP-001", "pass"),
            ("CLERK-LOCKOUT-001", "pass"),
            ("CLERK-BOT-001", "pass"),
            ("CLERK-DEVCAP-001", "pass"),
        ])
    );
    assert_eq!(finding_ids(&event), vec!["CLERK-MFA-001"]);
    let warning = finding(&event, "CLERK-MFA-001");
    assert_finding_shape(warning, "warning");
    assert_eq!(
        event["data"]["instance"],
        serde_json::json!({"kind": "production", "user_count": 1247, "domain": app.sandbox.instance(Scenario::ProductionOptionalMfa).domain})
    );
    // Rows 1-6 once each (one page of endpoints; no secret read: the repo writes no whsec_); three DNS
    // lookups (`dns.cname`).
    let rows = calls_by_row(&event);
    assert_eq!(rows, [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1), (8, 3)].into_iter().collect());
    app.stop().await;
}

#[tokio::test]
async fn production_instance_without_second_factor_is_a_blocker() {
    let mut app = spawn_app().await;
    let event = scan(&mut app, Scenario::ProductionNoSecondFactor, true).await;
    assert_eq!(check_statuses(&event)["CLERK-MFA-002"], "fail");
    assert_eq!(check_statuses(&event)["CLERK-MFA-001"], "pass");
    assert_eq!(finding_ids(&event), vec!["CLERK-MFA-002"]);
    assert_finding_shape(finding(&event, "CLERK-MFA-002"), "blocker");
    app.stop().await;
}

#[tokio::test]
async fn production_instance_with_required_mfa_and_verified_dns_is_clean() {
    let mut app = spawn_app().await;
    let event = scan(&mut app, Scenario::ProductionRequiredMfa, true).await;
    assert!(check_statuses(&event).values().all(|s| s == "pass"), "{event:#}");
    assert!(finding_ids(&event).is_empty());
    assert_eq!(event["data"]["resolved"], serde_json::json!([]));
    app.stop().await;
}

#[tokio::test]
async fn production_instance_missing_clkmail_warns_about_email_dns() {
    let mut app = spawn_app().await;
    let event = scan(&mut app, Scenario::ProductionMissingClkmail, true).await;
    assert_eq!(check_statuses(&event)["CLERK-EMAIL-001"], "fail");
    assert_eq!(finding_ids(&event), vec!["CLERK-EMAIL-001"]);
    let warning = finding(&event, "CLERK-EMAIL-001");
    assert_finding_shape(warning, "warning");
    let domain = &app.sandbox.instance(Scenario::ProductionMissingClkmail).domain;
    assert_eq!(warning["evidence"]["details"]["host"], format!("clkmail.{domain}"));
    app.stop().await;
}

#[tokio::test]
async fn a_second_scan_keeps_fingerprints_and_first_seen_and_reports_resolved() {
    let mut app = spawn_app().await;
    let project = project();
    let scenario = Scenario::ProductionOptionalMfa;
    let instance = app.sandbox.instance(scenario).name.clone();
    let key_ref = app.connect_scenario(&project, scenario).await;

    // First scan: a pk_test_ key in production context (DEV-KEY) plus optional MFA.
    let mut artifact = artifact_for(&app, scenario);
    artifact.key_references[0].environment = clerk_audit::audit::artifact::KeyEnvironment::Test;
    app.store_artifact(&project, "rs_1", &artifact).await;
    let first = app.job(&project, &instance, key_ref);
    app.enqueue(&first).await;
    let (_, first_event) = app.event_for(first.scan_id).await;
    assert_eq!(finding_ids(&first_event), vec!["CLERK-DEV-KEY-001", "CLERK-MFA-001"]);

    // Second scan: the key was fixed; MFA still optional.
    app.store_artifact(&project, "rs_2", &artifact_for(&app, scenario)).await;
    let mut second = app.job(&project, &instance, key_ref);
    second.repo_scan_id = Some("rs_2".into());
    app.enqueue(&second).await;
    let (_, second_event) = app.event_for(second.scan_id).await;
    assert_eq!(finding_ids(&second_event), vec!["CLERK-MFA-001"]);
    let before = finding(&first_event, "CLERK-MFA-001");
    let after = finding(&second_event, "CLERK-MFA-001");
    assert_eq!(before["fingerprint"], after["fingerprint"]);
    assert_eq!(before["first_seen_at"], after["first_seen_at"]);
    assert_eq!(
        second_event["data"]["resolved"],
        serde_json::json!([finding(&first_event, "CLERK-DEV-KEY-001")["fingerprint"]])
    );
    assert_ne!(first_event["id"], second_event["id"]);

    // Third scan: the test key is back. It is `new` again, first seen when the first scan saw it (two scans
    // back, so only the first-seen record knows).
    app.store_artifact(&project, "rs_3", &artifact).await;
    let mut third = app.job(&project, &instance, key_ref);
    third.repo_scan_id = Some("rs_3".into());
    app.enqueue(&third).await;
    let (_, third_event) = app.event_for(third.scan_id).await;
    let back = finding(&third_event, "CLERK-DEV-KEY-001");
    assert_eq!(back["lifecycle"], "new");
    assert_eq!(back["first_seen_at"], finding(&first_event, "CLERK-DEV-KEY-001")["first_seen_at"]);
    assert_eq!(finding(&third_event, "CLERK-MFA-001")["first_seen_at"], before["first_seen_at"]);
    app.stop().await;
}

/// Findings stored without a `finding_first_seen` row (history written by another tool, or before that
/// table existed) still give their first-seen time, and the migration that created the table fills it from
/// them.
#[tokio::test]
async fn first_seen_comes_from_stored_findings_when_the_first_seen_record_lacks_them() {
    let mut app = spawn_app().await;
    let project = project();
    let scenario = Scenario::ProductionOptionalMfa;
    let instance = app.sandbox.instance(scenario).name.clone();
    let key_ref = app.connect_scenario(&project, scenario).await;
    let first = app.job(&project, &instance, key_ref);
    app.enqueue(&first).await;
    let (_, first_event) = app.event_for(first.scan_id).await;
    let seen = finding(&first_event, "CLERK-MFA-001")["first_seen_at"].clone();

    let client = app.pool.get().await.unwrap();
    client.execute("DELETE FROM finding_first_seen", &[]).await.unwrap();
    let second = app.job(&project, &instance, key_ref);
    app.enqueue(&second).await;
    let (_, second_event) = app.event_for(second.scan_id).await;
    assert_eq!(finding(&second_event, "CLERK-MFA-001")["first_seen_at"], seen, "read from `findings`");
    assert_eq!(first_seen_rows(&client, project.as_str()).await, 1, "recorded again by the second scan");

    // The migration's fill, run again on an emptied table, restores the same time.
    let client = app.pool.get().await.unwrap();
    client.execute("DELETE FROM finding_first_seen", &[]).await.unwrap();
    client.batch_execute(include_str!("../../migrations/V3__finding_first_seen.sql")).await.unwrap();
    let filled: chrono::DateTime<chrono::Utc> = client
        .query_one("SELECT first_seen_at FROM finding_first_seen WHERE project_id = $1", &[&project.as_str()])
        .await
        .unwrap()
        .get(0);
    assert_eq!(filled.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), seen.as_str().unwrap());
    assert_eq!(first_seen_rows(&client, project.as_str()).await, 1);
    app.stop().await;
}

async fn first_seen_rows(client: &tokio_postgres::Client, project: &str) -> i64 {
    client.query_one("SELECT count(*) FROM finding_first_seen WHERE project_id = $1", &[&project]).await.unwrap().get(0)
}
