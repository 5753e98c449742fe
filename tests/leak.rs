//! The secret key must never appear in a log line (at TRACE, every crate included), an event, or a table.
//! Its own test binary, because the log capture is a process-wide tracing subscriber.

#[path = "it/harness.rs"]
mod harness;

use clerk_audit::configuration::LogFormat;
use clerk_audit_sandbox::{Fault, Scenario};

use harness::{project, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_key_appears_in_no_log_event_or_table() {
    let capture = harness::LogCapture::default();
    // SAFETY: set before any thread of this test binary reads the environment.
    unsafe { std::env::set_var("RUST_LOG", "trace") };
    let subscriber = clerk_audit::ops::telemetry::subscriber(LogFormat::Json, "trace", capture.clone());
    tracing::subscriber::set_global_default(subscriber).expect("first subscriber");

    let mut app = spawn_app().await;
    let mut events = Vec::new();
    // A development scan, a production scan (Frontend API and DNS too), and a rejected key.
    for (scenario, fault) in [
        (Scenario::Development, None),
        (Scenario::ProductionOptionalMfa, None),
        (Scenario::ProductionRequiredMfa, Some(Fault::Revoked)),
    ] {
        let project = project();
        let instance = app.sandbox.instance(scenario).name.clone();
        if let Some(fault) = fault {
            app.sandbox.set_fault(&instance, fault);
        }
        let key_ref = app.connect_scenario(&project, scenario).await;
        let job = app.job(&project, &instance, key_ref);
        app.enqueue(&job).await;
        let (_, event) = app.event_for(job.scan_id).await;
        events.push(event.to_string());
    }

    let secrets: Vec<String> = app.sandbox.instances().iter().map(|i| i.secret_key.clone()).collect();
    // The part after the prefix, in case something trimmed it.
    let secret_bodies: Vec<String> = secrets.iter().map(|s| s[8..].to_owned()).collect();

    let logs = String::from_utf8_lossy(&capture.contents()).into_owned();
    assert!(logs.lines().count() > 100, "TRACE logging captured ({} lines)", logs.lines().count());
    assert!(logs.contains("outbound_call"), "the outbound calls were logged");

    let table_text = harness::all_table_text(&app.pool).await;

    for secret in secrets.iter().chain(&secret_bodies) {
        assert!(!logs.contains(secret.as_str()), "a log line holds a secret key");
        assert!(!events.iter().any(|e| e.contains(secret.as_str())), "an event holds a secret key");
        assert!(!table_text.contains(secret.as_str()), "a table holds a secret key");
    }
    // The Authorization header value never shows up either.
    assert!(!logs.contains("Bearer sk_"), "an Authorization header was logged");
    app.stop().await;
}
