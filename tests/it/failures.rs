//! Permanent failures produce a failed event with their reason code and are never retried; duplicates
//! and transient faults behave.

use clerk_audit_sandbox::FaultTarget;
use clerk_audit_sandbox::{Fault, Scenario};
use uuid::Uuid;

use crate::harness::{check_statuses, project, spawn_app};
use crate::scenarios::assert_cloudevent;

#[tokio::test]
async fn key_ref_of_another_project_fails_as_not_found_without_calling_clerk() {
    let mut app = spawn_app().await;
    let owner = project();
    let intruder = project();
    let scenario = Scenario::ProductionOptionalMfa;
    let instance = app.sandbox.instance(scenario).name.clone();
    let key_ref = app.connect_scenario(&owner, scenario).await;
    let job = app.job(&intruder, &instance, key_ref);
    app.enqueue(&job).await;
    let (routing_key, event) = app.event_for(job.scan_id).await;
    assert_eq!(routing_key, "clerk.audit.failed");
    assert_cloudevent(&event, "com.pulselight.clerk.audit.failed.v1", intruder.as_str());
    assert_eq!(event["data"]["reason"], "credential_not_found");
    assert!(event["data"]["message"].as_str().unwrap().len() > 10);
    assert!(app.sandbox.requests().is_empty(), "no Clerk call: {:?}", app.sandbox.requests());
    assert_eq!(app.scan_status(job.scan_id).await, Some(("failed".into(), 1)));
    // An unknown key_ref answers exactly the same.
    let missing = app.job(&owner, &instance, Uuid::new_v4());
    app.enqueue(&missing).await;
    let (_, event) = app.event_for(missing.scan_id).await;
    assert_eq!(event["data"]["reason"], "credential_not_found");
    app.stop().await;
}

#[tokio::test]
async fn revoked_credential_fails_as_revoked() {
    let mut app = spawn_app().await;
    let project = project();
    let scenario = Scenario::Development;
    let instance = app.sandbox.instance(scenario).name.clone();
    let key_ref = app.connect_scenario(&project, scenario).await;
    app.pool
        .get()
        .await
        .unwrap()
        .execute("UPDATE clerk_credentials SET revoked_at = now() WHERE id = $1", &[&key_ref])
        .await
        .unwrap();
    let job = app.job(&project, &instance, key_ref);
    app.enqueue(&job).await;
    let (routing_key, event) = app.event_for(job.scan_id).await;
    assert_eq!(routing_key, "clerk.audit.failed");
    assert_eq!(event["data"]["reason"], "credential_revoked");
    assert!(app.sandbox.requests().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn ciphertext_moved_to_another_project_cannot_be_decrypted() {
    let mut app = spawn_app().await;
    let owner = project();
    let other = project();
    let scenario = Scenario::Development;
    let instance = app.sandbox.instance(scenario).name.clone();
    let key_ref = app.connect_scenario(&owner, scenario).await;
    // Copy the ciphertext into a row of another project: the encryption context no longer matches.
    let stolen_ref = Uuid::new_v4();
    app.pool
        .get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO clerk_credentials (id, project_id, instance_name, ciphertext, kms_key_id)
             SELECT $1, $2, instance_name, ciphertext, kms_key_id FROM clerk_credentials WHERE id = $3",
            &[&stolen_ref, &other.as_str(), &key_ref],
        )
        .await
        .unwrap();
    let job = app.job(&other, &instance, stolen_ref);
    app.enqueue(&job).await;
    let (routing_key, event) = app.event_for(job.scan_id).await;
    assert_eq!(routing_key, "clerk.audit.failed");
    assert_eq!(event["data"]["reason"], "credential_undecryptable");
    assert!(app.sandbox.requests().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn rejected_secret_key_fails_as_clerk_key_rejected_without_retry() {
    let mut app = spawn_app().await;
    let project = project();
    let scenario = Scenario::ProductionRequiredMfa;
    let instance = app.sandbox.instance(scenario).name.clone();
    app.sandbox.set_fault(&instance, Fault::Revoked);
    let key_ref = app.connect_scenario(&project, scenario).await;
    let job = app.job(&project, &instance, key_ref);
    app.enqueue(&job).await;
    let (routing_key, event) = app.event_for(job.scan_id).await;
    assert_eq!(routing_key, "clerk.audit.failed");
    assert_eq!(event["data"]["reason"], "clerk_key_rejected");
    assert!(event["data"]["message"].as_str().unwrap().contains("paste a new one"));
    // At most one attempt per Backend API call of the first round (the four Backend API calls): 401 is never retried.
    let requests = app.clerk_requests_for(&instance);
    assert!(!requests.is_empty() && requests.len() <= 4, "{requests:?}");
    assert!(requests.iter().all(|r| r.status == 401));
    assert_eq!(app.scan_status(job.scan_id).await, Some(("failed".into(), 1)));
    app.stop().await;
}

#[tokio::test]
async fn redelivered_completed_job_is_acked_without_calling_clerk_again() {
    let mut app = spawn_app().await;
    let project = project();
    let scenario = Scenario::ProductionRequiredMfa;
    let instance = app.sandbox.instance(scenario).name.clone();
    let key_ref = app.connect_scenario(&project, scenario).await;
    let job = app.job(&project, &instance, key_ref);
    app.enqueue(&job).await;
    let (_, first) = app.event_for(job.scan_id).await;
    let calls_after_first = app.sandbox.requests().len();

    app.enqueue(&job).await; // the same scan_id again
    assert_eq!(app.no_event_within(std::time::Duration::from_secs(3)).await, None, "no second event");
    assert_eq!(app.sandbox.requests().len(), calls_after_first, "no Clerk call for the duplicate");
    let client = app.pool.get().await.unwrap();
    let rows: i64 =
        client.query_one("SELECT count(*) FROM outbox WHERE scan_id = $1", &[&job.scan_id]).await.unwrap().get(0);
    assert_eq!(rows, 1);
    assert_eq!(first["id"], clerk_audit::outbox::events::event_id(job.scan_id).to_string());
    app.stop().await;
}

#[tokio::test]
async fn server_errors_are_retried_inside_the_job() {
    let mut app = spawn_app().await;
    let project = project();
    let scenario = Scenario::ProductionRequiredMfa;
    let instance = app.sandbox.instance(scenario).name.clone();
    app.sandbox.set_fault(&instance, Fault::ServerError { times: 2 });
    let key_ref = app.connect_scenario(&project, scenario).await;
    let job = app.job(&project, &instance, key_ref);
    app.enqueue(&job).await;
    let (routing_key, event) = app.event_for(job.scan_id).await;
    assert_eq!(routing_key, "clerk.audit.completed", "{event:#}");
    let statuses = check_statuses(&event);
    for check in ["CLERK-MFA-001", "CLERK-MFA-002", "CLERK-EMAIL-001"] {
        assert_eq!(statuses[check], "pass", "{event:#}");
    }
    assert!(app.clerk_requests_for(&instance).iter().filter(|r| r.status == 500).count() == 2);
    app.stop().await;
}

#[tokio::test]
async fn unreachable_frontend_api_makes_mfa_checks_error_not_pass() {
    let mut app = spawn_app().await;
    let project = project();
    let scenario = Scenario::ProductionOptionalMfa;
    let instance = app.sandbox.instance(scenario).name.clone();
    app.sandbox.set_fault_on(&instance, FaultTarget::FrontendApi, Fault::ServerError { times: 0 });
    let key_ref = app.connect_scenario(&project, scenario).await;
    let job = app.job(&project, &instance, key_ref);
    app.enqueue(&job).await;
    let (routing_key, event) = app.event_for(job.scan_id).await;
    assert_eq!(routing_key, "clerk.audit.completed");
    let statuses = check_statuses(&event);
    assert_eq!(statuses["CLERK-MFA-001"], "error");
    assert_eq!(statuses["CLERK-MFA-002"], "error");
    assert_eq!(statuses["CLERK-EMAIL-001"], "pass");
    app.stop().await;
}

#[tokio::test]
async fn dns_timeout_makes_the_email_check_error() {
    let mut app = spawn_app().await;
    let project = project();
    let scenario = Scenario::ProductionRequiredMfa;
    let instance = app.sandbox.instance(scenario).name.clone();
    app.sandbox.set_fault(&instance, Fault::DnsNoAnswer { host: None });
    let key_ref = app.connect_scenario(&project, scenario).await;
    let job = app.job(&project, &instance, key_ref);
    app.enqueue(&job).await;
    let (_, event) = app.event_for(job.scan_id).await;
    assert_eq!(check_statuses(&event)["CLERK-EMAIL-001"], "error", "{event:#}");
    app.stop().await;
}
