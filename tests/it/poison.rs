//! Poison messages are dead-lettered at once with the reason in a header, and the worker keeps going.

use clerk_audit::intake::broker::{REASON_HEADER, header_text};
use clerk_audit_sandbox::Scenario;

use crate::harness::{project, spawn_app};

#[tokio::test]
async fn poison_messages_are_dead_lettered_with_their_reason() {
    let mut app = spawn_app().await;
    let valid = serde_json::json!({
        "schema": "clerk-scan-job/v1",
        "scan_id": "8f0c7c1e-1a7b-4c43-9d7e-2f1d3c1f9a10",
        "project_id": "prj_2abc",
        "instance_name": "acme-prod",
        "key_ref": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "requested_at": "2026-11-26T10:00:00Z"
    });
    let mut unknown_schema = valid.clone();
    unknown_schema["schema"] = "clerk-scan-job/v2".into();
    let mut missing = valid.clone();
    missing.as_object_mut().unwrap().remove("key_ref");
    let mut bad_id = valid.clone();
    bad_id["scan_id"] = "not-a-uuid".into();
    let oversized = format!("{{\"pad\": \"{}\"}}", "x".repeat(app.settings.worker.max_job_bytes));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "malformed_json"),
        (unknown_schema.to_string().into_bytes(), "unknown_schema"),
        (missing.to_string().into_bytes(), "missing_field"),
        (bad_id.to_string().into_bytes(), "invalid_field"),
        (oversized.into_bytes(), "oversized"),
    ];
    for (body, expected) in &cases {
        app.publish_raw(body).await;
        let dead = app.next_dead_letter().await;
        assert_eq!(header_text(&dead.properties, REASON_HEADER).as_deref(), Some(*expected));
        assert_eq!(&dead.data, body, "the original body is kept");
    }

    // The worker is still alive and processes a good job.
    let project = project();
    let instance = app.sandbox.instance(Scenario::Development).name.clone();
    let key_ref = app.connect_scenario(&project, Scenario::Development).await;
    let job = app.job(&project, &instance, key_ref);
    app.enqueue(&job).await;
    let (routing_key, _) = app.event_for(job.scan_id).await;
    assert_eq!(routing_key, "clerk.audit.completed");
    // Poison never created a scan row.
    let client = app.pool.get().await.unwrap();
    let scans: i64 = client.query_one("SELECT count(*) FROM scans", &[]).await.unwrap().get(0);
    assert_eq!(scans, 1);
    app.stop().await;
}
