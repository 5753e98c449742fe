//! Finding lifecycle across scans of one project and instance: a finding appears (`new`), stays
//! (`persisting`), goes (`resolved`) and comes back (`new` again); scans of another instance of the same
//! project do not count; `report --project` shows the stored history.

use clerk_audit::audit::artifact::KeyEnvironment;
use clerk_audit::intake::job::ProjectId;
use clerk_audit_sandbox::Scenario;
use secrecy::ExposeSecret;
use serde_json::Value;
use uuid::Uuid;

use crate::harness::{TestApp, finding_ids, project, spawn_app};
use crate::scenarios::artifact_for;

/// Scans `scenario` with the stored artifact `repo_scan_id`; answers the completed event's data.
async fn scan(app: &mut TestApp, project: &ProjectId, scenario: Scenario, key_ref: Uuid, repo_scan_id: &str) -> Value {
    let instance = app.sandbox.instance(scenario).name.clone();
    let mut job = app.job(project, &instance, key_ref);
    job.repo_scan_id = Some(repo_scan_id.into());
    app.enqueue(&job).await;
    let (routing_key, event) = app.event_for(job.scan_id).await;
    assert_eq!(routing_key, "clerk.audit.completed", "{event:#}");
    event["data"].clone()
}

fn lifecycle_of(data: &Value, check_id: &str) -> String {
    let finding = data["findings"].as_array().unwrap().iter().find(|f| f["check_id"] == check_id);
    finding.unwrap_or_else(|| panic!("{check_id} in {data:#}"))["lifecycle"].as_str().unwrap().to_owned()
}

fn resolved_ids(data: &Value) -> Vec<&str> {
    data["resolved_findings"].as_array().unwrap().iter().map(|f| f["check_id"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_finding_appears_persists_resolves_and_comes_back() {
    let mut app = spawn_app().await;
    let project = project();
    let scenario = Scenario::ProductionOptionalMfa;
    let key_ref = app.connect_scenario(&project, scenario).await;
    // rs_test: a pk_test_ key in production context (CLERK-DEV-KEY-001); rs_live: fixed.
    let mut test_key = artifact_for(&app, scenario);
    test_key.key_references[0].environment = KeyEnvironment::Test;
    app.store_artifact(&project, "rs_test", &test_key).await;
    app.store_artifact(&project, "rs_live", &artifact_for(&app, scenario)).await;

    // 1. Appears.
    let first = scan(&mut app, &project, scenario, key_ref, "rs_test").await;
    assert_eq!(lifecycle_of(&first, "CLERK-DEV-KEY-001"), "new");
    assert_eq!(lifecycle_of(&first, "CLERK-MFA-001"), "new");
    assert_eq!(first["resolved_findings"], serde_json::json!([]));

    // 2. Persists.
    let second = scan(&mut app, &project, scenario, key_ref, "rs_test").await;
    assert_eq!(lifecycle_of(&second, "CLERK-DEV-KEY-001"), "persisting");
    assert_eq!(lifecycle_of(&second, "CLERK-MFA-001"), "persisting");

    // Another instance of the same project, in between: not part of this instance's history.
    let other = Scenario::ProductionNoSecondFactor;
    let other_key = app.connect_scenario(&project, other).await;
    let other_scan = scan(&mut app, &project, other, other_key, "rs_live").await;
    assert_eq!(other_scan["resolved_findings"], serde_json::json!([]), "{other_scan:#}");

    // 3. Resolved: the key was fixed; MFA still optional.
    let third = scan(&mut app, &project, scenario, key_ref, "rs_live").await;
    assert_eq!(finding_ids(&serde_json::json!({ "data": third })), vec!["CLERK-MFA-001"]);
    assert_eq!(lifecycle_of(&third, "CLERK-MFA-001"), "persisting");
    assert_eq!(resolved_ids(&third), vec!["CLERK-DEV-KEY-001"]);
    let resolved = &third["resolved_findings"][0];
    assert_eq!(resolved["lifecycle"], "resolved");
    let dev_key = |data: &Value| {
        data["findings"].as_array().unwrap().iter().find(|f| f["check_id"] == "CLERK-DEV-KEY-001").cloned().unwrap()
    };
    assert_eq!(resolved["fingerprint"], dev_key(&first)["fingerprint"]);
    assert_eq!(resolved["evidence"], dev_key(&first)["evidence"]);
    assert_eq!(third["resolved"], serde_json::json!([dev_key(&first)["fingerprint"]]));

    // 4. Comes back: new again (a regression), and no longer resolved.
    let fourth = scan(&mut app, &project, scenario, key_ref, "rs_test").await;
    assert_eq!(lifecycle_of(&fourth, "CLERK-DEV-KEY-001"), "new");
    assert_eq!(lifecycle_of(&fourth, "CLERK-MFA-001"), "persisting");
    assert_eq!(fourth["resolved_findings"], serde_json::json!([]));
    assert_eq!(dev_key(&fourth)["fingerprint"], dev_key(&first)["fingerprint"]);

    // Stored: the report shows the latest scan's lifecycles and the project's history.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_clerk-audit"))
        .args(["report", "--project", project.as_str()])
        .env("CLERK_AUDIT_CONFIG_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
        .env("CLERK_AUDIT_ENVIRONMENT", "local")
        .env("CLERK_AUDIT_DATABASE__URL", app.settings.database.url.expose_secret())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        report.contains("CLERK-DEV-KEY-001 - Development Clerk key in production configuration [blocker] (new)"),
        "{report}"
    );
    assert!(report.contains("[warning] (persisting)"), "{report}");
    let history: Vec<&str> = report.lines().skip_while(|l| !l.starts_with("history")).skip(1).collect();
    assert_eq!(history.len(), 5, "{report}");
    let instance = app.sandbox.instance(scenario).name.clone();
    let expected = [
        (instance.as_str(), "1 new, 1 persisting, 0 resolved"),
        (instance.as_str(), "0 new, 1 persisting, 1 resolved"),
        (app.sandbox.instance(other).name.as_str(), "0 persisting, 0 resolved"),
        (instance.as_str(), "0 new, 2 persisting, 0 resolved"),
        (instance.as_str(), "2 new, 0 persisting, 0 resolved"),
    ];
    for (line, (name, counts)) in history.iter().zip(expected) {
        assert!(line.contains(&format!("instance {name}:")) && line.contains(counts), "{line} / {counts}\n{report}");
    }
    app.stop().await;
}
