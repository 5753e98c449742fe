//! `clerk-audit audit`, run as a person or a CI job would: the built binary against the sandbox, with the
//! key in `CLERK_SECRET_KEY` or on stdin, for each format and each exit code.

use std::path::PathBuf;
use std::process::{Output, Stdio};

use base64::Engine as _;
use clerk_audit::audit::checks;
use clerk_audit::outbox::events::CompletedData;
use clerk_audit_sandbox::{Fault, FaultTarget, Sandbox, Scenario};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The binary, configured through the documented environment overrides to talk to the sandbox.
fn clerk_audit(sandbox: &Sandbox) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_clerk-audit"));
    command
        .arg("audit")
        .env_remove("CLERK_SECRET_KEY")
        .env_remove("NO_COLOR")
        .env("CLERK_AUDIT_CLERK__BACKEND_API_URL", sandbox.backend_api_url().as_str())
        .env("CLERK_AUDIT_SVIX__API_URL", sandbox.svix_api_url().as_str())
        .env("CLERK_AUDIT_HTTP__ALLOW_LOOPBACK", "true")
        .env("CLERK_AUDIT_HTTP__REQUEST_TIMEOUT_MS", "5000")
        .env("CLERK_AUDIT_HTTP__MAX_ATTEMPTS", "2")
        .env("CLERK_AUDIT_HTTP__MAX_RETRY_AFTER_SECS", "1")
        .env("CLERK_AUDIT_DNS__NAMESERVER", sandbox.dns_addr().to_string())
        .env("CLERK_AUDIT_DNS__TIMEOUT_MS", "1000")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

fn with_key(mut command: Command, sandbox: &Sandbox, scenario: Scenario) -> Command {
    command.env("CLERK_SECRET_KEY", &sandbox.instance(scenario).secret_key);
    command
}

async fn run(mut command: Command) -> Output {
    command.output().await.expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited")
}

/// A checkout of an app wired to `production-lax` carelessly: the connected secret key committed, a secret
/// key in a `NEXT_PUBLIC_` variable, and a production publishable key of another instance.
fn careless_repo(sandbox: &Sandbox) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clerk-audit-repo-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = &sandbox.instance(Scenario::ProductionLax).secret_key;
    let other = base64::engine::general_purpose::STANDARD.encode("clerk.another-app.example$");
    std::fs::write(
        dir.join(".env.production"),
        format!(
            "NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY=pk_live_{other}\nCLERK_SECRET_KEY={key}\nNEXT_PUBLIC_CLERK_SECRET_KEY={key}\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("package.json"), r#"{"name":"careless","dependencies":{"@clerk/nextjs":"6.0.0"}}"#)
        .unwrap();
    dir
}

fn finding_ids(data: &Value) -> Vec<String> {
    data["findings"].as_array().unwrap().iter().map(|f| f["check_id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn text_lists_the_lax_instance_s_findings_by_severity_and_exits_1_on_a_blocker() {
    let sandbox = clerk_audit_sandbox::start(Default::default()).await.unwrap();
    let output = run(with_key(clerk_audit(&sandbox), &sandbox, Scenario::ProductionLax)).await;
    let text = stdout(&output);
    assert_eq!(code(&output), 1, "{text}\n{}", stderr(&output));
    let blockers = text.find("Blockers (1)").expect(&text);
    let warnings = text.find("Warnings (").expect(&text);
    assert!(blockers < warnings);
    for id in ["CLERK-TESTMODE-001", "CLERK-HIBP-001", "CLERK-LOCKOUT-001", "CLERK-BOT-001", "CLERK-ORIGIN-001"] {
        assert!(text.contains(&format!("{id} - ")), "{id} in {text}");
    }
    assert!(text.contains("  Clerk:  production instance allows origin http://localhost:3000 (localhost)"), "{text}");
    assert!(text.contains("  Why:    ") && text.contains("  Fix:    "));
    // Not a terminal: no colour. Progress goes to stderr, the summary last.
    assert!(!text.contains('\x1b'), "{text}");
    let progress = stderr(&output);
    assert!(progress.contains("reading the Clerk instance"), "{progress}");
    let last = progress.lines().last().unwrap_or_default();
    assert!(last.starts_with("clerk-audit: 1 blocker, 5 warnings, 0 info; "), "{progress}");
    let key = &sandbox.instance(Scenario::ProductionLax).secret_key;
    assert!(!text.contains(key.as_str()) && !progress.contains(key.as_str()));
}

#[tokio::test]
async fn json_is_the_completed_event_data_with_the_repo_checks() {
    let sandbox = clerk_audit_sandbox::start(Default::default()).await.unwrap();
    let repo = careless_repo(&sandbox);
    let out = repo.join("audit.json");
    let mut command = with_key(clerk_audit(&sandbox), &sandbox, Scenario::ProductionLax);
    command.arg("--repo").arg(&repo).args(["--format", "json", "--output"]).arg(&out);
    let output = run(command).await;
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    assert!(output.stdout.is_empty(), "--output takes the report");
    let written = std::fs::read_to_string(&out).unwrap();
    let data: Value = serde_json::from_str(&written).unwrap();
    // Byte-compatible with what the worker publishes: the same type, serialized the way the relay does
    // (the event stored as a `Value`, published with `to_vec`).
    let typed: CompletedData = serde_json::from_value(data.clone()).unwrap();
    let published = serde_json::to_vec(&serde_json::to_value(&typed).unwrap()).unwrap();
    assert_eq!(String::from_utf8(published).unwrap() + "\n", written);
    assert_eq!(data["project_id"], "local");
    assert_eq!(data["instance"]["kind"], "production");
    assert_eq!(data["checks"].as_array().unwrap().len(), checks::ALL.len());
    assert_eq!(data["resolved"], serde_json::json!([]));
    let ids = finding_ids(&data);
    for id in ["CLERK-SECRET-LEAK-001", "CLERK-SECRET-PUBLIC-001", "CLERK-KEY-MISMATCH-001", "CLERK-TESTMODE-001"] {
        assert!(ids.iter().any(|found| found == id), "{id} in {ids:?}");
    }
    for finding in data["findings"].as_array().unwrap() {
        assert_eq!(finding["lifecycle"], "new", "{finding}");
    }
    let leak = data["findings"].as_array().unwrap().iter().find(|f| f["check_id"] == "CLERK-SECRET-LEAK-001").unwrap();
    assert_eq!(leak["evidence"]["details"]["references"][0]["file"], ".env.production");
    let key = &sandbox.instance(Scenario::ProductionLax).secret_key;
    assert!(!written.contains(key.as_str()), "the key never reaches the report");
    std::fs::remove_dir_all(&repo).unwrap();
}

#[tokio::test]
async fn sarif_validates_against_the_sarif_2_1_0_schema_and_locates_repo_findings() {
    let sandbox = clerk_audit_sandbox::start(Default::default()).await.unwrap();
    let repo = careless_repo(&sandbox);
    let mut command = with_key(clerk_audit(&sandbox), &sandbox, Scenario::ProductionLax);
    command.arg("--repo").arg(&repo).args(["--format", "sarif"]);
    let output = run(command).await;
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let log: Value = serde_json::from_slice(&output.stdout).unwrap();

    let schema: Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sarif/sarif-schema-2.1.0.json"
    )))
    .unwrap();
    let validator = jsonschema::draft4::new(&schema).expect("the SARIF schema compiles");
    let errors: Vec<String> = validator.iter_errors(&log).map(|e| format!("{}: {e}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}");

    let run = &log["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), checks::ALL.len());
    let leak_rule = rules.iter().find(|r| r["id"] == "CLERK-SECRET-LEAK-001").unwrap();
    assert_eq!(leak_rule["defaultConfiguration"]["level"], "error");
    assert_eq!(leak_rule["fullDescription"]["text"], checks::secret_leak::META.why);
    assert_eq!(leak_rule["help"]["text"], checks::secret_leak::META.fix);
    let hibp_rule = rules.iter().find(|r| r["id"] == "CLERK-HIBP-001").unwrap();
    assert_eq!(hibp_rule["defaultConfiguration"]["level"], "warning");

    let results = run["results"].as_array().unwrap();
    let public = results.iter().find(|r| r["ruleId"] == "CLERK-SECRET-PUBLIC-001").unwrap();
    let location = &public["locations"][0]["physicalLocation"];
    assert_eq!(location["artifactLocation"]["uri"], ".env.production");
    assert_eq!(location["region"]["startLine"], 3);
    // An instance setting is anchored where the repo configures Clerk (code scanning wants a location).
    let test_mode = results.iter().find(|r| r["ruleId"] == "CLERK-TESTMODE-001").unwrap();
    let anchor = &test_mode["locations"][0];
    assert_eq!(anchor["physicalLocation"]["artifactLocation"]["uri"], ".env.production");
    assert_eq!(anchor["physicalLocation"]["region"]["startLine"], 1);
    assert!(anchor["message"]["text"].as_str().unwrap().contains("Clerk instance"), "{anchor}");
    assert!(results.iter().all(|r| r["locations"].is_array()), "every result is located");
    std::fs::remove_dir_all(&repo).unwrap();
}

#[tokio::test]
async fn fail_on_sets_the_exit_code_and_the_key_may_come_on_stdin() {
    let sandbox = clerk_audit_sandbox::start(Default::default()).await.unwrap();
    // development-near-cap: one warning (CLERK-DEVCAP-001) and, with no repo scan to say the instance serves
    // production, the info finding CLERK-INSTANCE-001; nothing in error.
    for (fail_on, expected) in [("blocker", 0), ("warning", 1), ("info", 1), ("never", 0)] {
        let mut command = with_key(clerk_audit(&sandbox), &sandbox, Scenario::DevelopmentNearCap);
        command.args(["--format", "json", "--fail-on", fail_on]);
        let output = run(command).await;
        assert_eq!(code(&output), expected, "--fail-on {fail_on}: {}", stderr(&output));
        let data: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(finding_ids(&data), vec!["CLERK-INSTANCE-001", "CLERK-DEVCAP-001"], "{data}");
    }

    let mut command = clerk_audit(&sandbox);
    command.args(["--format", "json"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let key = format!("{}\n", sandbox.instance(Scenario::DevelopmentNearCap).secret_key);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(key.as_bytes()).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(serde_json::from_slice::<Value>(&output.stdout).unwrap()["instance"]["user_count"], 95);
}

#[tokio::test]
async fn checks_in_error_exit_2_only_when_the_findings_would_pass() {
    let sandbox = clerk_audit_sandbox::start(Default::default()).await.unwrap();
    // The Frontend API fails: every check of its settings is in error.
    let name = Scenario::ProductionRequiredMfa.as_str();
    sandbox.set_fault_on(name, FaultTarget::FrontendApi, Fault::ServerError { times: 1000 });
    let output = run(with_key(clerk_audit(&sandbox), &sandbox, Scenario::ProductionRequiredMfa)).await;
    let text = stdout(&output);
    assert_eq!(code(&output), 2, "{text}\n{}", stderr(&output));
    assert!(text.contains("Could not evaluate:"), "{text}");
    assert!(text.contains("  CLERK-TESTMODE-001: Frontend API environment"), "{text}");

    // The same errors next to a finding at or above --fail-on: the findings decide (1).
    sandbox.set_fault_on(
        Scenario::ProductionLax.as_str(),
        FaultTarget::FrontendApi,
        Fault::ServerError { times: 1000 },
    );
    let mut command = with_key(clerk_audit(&sandbox), &sandbox, Scenario::ProductionLax);
    command.args(["--fail-on", "warning"]);
    let output = run(command).await;
    assert_eq!(code(&output), 1, "{}", stdout(&output));
    assert!(stdout(&output).contains("CLERK-ORIGIN-001"));
}

#[tokio::test]
async fn the_audit_cannot_run_exits_2() {
    let sandbox = clerk_audit_sandbox::start(Default::default()).await.unwrap();

    // A value that is not a Clerk secret key: refused before any call, without echoing it.
    let mut command = clerk_audit(&sandbox);
    command.env("CLERK_SECRET_KEY", "pk_live_NotASecretKey123");
    let output = run(command).await;
    assert_eq!(code(&output), 2);
    let error = stderr(&output);
    assert!(error.contains("CLERK_SECRET_KEY is not a Clerk secret key"), "{error}");
    assert!(!error.contains("NotASecretKey123"), "{error}");
    assert!(sandbox.requests().is_empty());

    // A well-shaped key Clerk does not know.
    let mut command = clerk_audit(&sandbox);
    command.env("CLERK_SECRET_KEY", "sk_live_NoSuchSandboxInstance0000000000000000000000");
    let output = run(command).await;
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains("Clerk rejected the secret key"), "{}", stderr(&output));

    // Clerk unreachable: nothing listens on the configured Backend API port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut command = with_key(clerk_audit(&sandbox), &sandbox, Scenario::ProductionLax);
    command.env("CLERK_AUDIT_CLERK__BACKEND_API_URL", &url);
    let output = run(command).await;
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains("Clerk could not be reached"), "{}", stderr(&output));

    // No key at all (stdin is not a terminal here, so an empty stdin is read and refused).
    let output = run(clerk_audit(&sandbox)).await;
    assert_eq!(code(&output), 2);

    // Bad arguments.
    let mut command = with_key(clerk_audit(&sandbox), &sandbox, Scenario::ProductionLax);
    command.args(["--format", "xml"]);
    let output = run(command).await;
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains("xml"), "{}", stderr(&output));
}

#[tokio::test]
async fn the_one_shot_and_the_worker_agree_on_the_same_instance() {
    let mut app = crate::harness::spawn_app().await;
    let project = crate::harness::project();
    let scenario = Scenario::ProductionLax;
    let key_ref = app.connect_scenario(&project, scenario).await;
    let instance = app.sandbox.instance(scenario).name.clone();
    let job = app.job(&project, &instance, key_ref);
    app.enqueue(&job).await;
    let (_, event) = app.event_for(job.scan_id).await;

    let mut command = with_key(clerk_audit(&app.sandbox), &app.sandbox, scenario);
    command.args(["--format", "json"]);
    let output = run(command).await;
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let one_shot: Value = serde_json::from_slice(&output.stdout).unwrap();

    // The same checks with the same outcomes, the same findings with the same evidence and metadata; only
    // what names the scan differs (ids, names bound into fingerprints, times).
    let worker = &event["data"];
    assert_eq!(one_shot["checks"], worker["checks"]);
    assert_eq!(one_shot["instance"], worker["instance"]);
    let comparable = |data: &Value| -> Vec<Value> {
        data["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|finding| {
                let mut finding = finding.clone();
                let object = finding.as_object_mut().unwrap();
                object.remove("fingerprint");
                object.remove("first_seen_at");
                finding
            })
            .collect()
    };
    assert_eq!(comparable(&one_shot), comparable(worker));
    assert!(!comparable(worker).is_empty());
    app.stop().await;
}
