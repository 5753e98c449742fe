//! The binary's contract subcommands, run as a person or the platform would run them.

use std::io::Write;
use std::process::{Command, Stdio};

use clerk_audit::configuration::Settings;
use secrecy::ExposeSecret;

use crate::harness::{create_kms_key, drop_database, fresh_database, kms_endpoint};

fn clerk_audit(settings: &Settings) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_clerk-audit"));
    command
        .env("CLERK_AUDIT_CONFIG_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
        .env("CLERK_AUDIT_ENVIRONMENT", "local")
        .env("CLERK_AUDIT_DATABASE__URL", settings.database.url.expose_secret())
        .env("CLERK_AUDIT_KMS__ENDPOINT_URL", kms_endpoint())
        .env("RUST_LOG", "warn");
    for (name, value) in
        [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_REGION", "us-east-1")]
    {
        if std::env::var_os(name).is_none() {
            command.env(name, value);
        }
    }
    command
}

async fn migrated_settings() -> (Settings, deadpool_postgres::Pool) {
    let sandbox = clerk_audit_sandbox::start(Default::default()).await.unwrap();
    let url = fresh_database().await;
    let settings = crate::harness::test_settings(&url, &sandbox);
    let pool = clerk_audit::store::pool(&settings.database).unwrap();
    clerk_audit::store::migrate(&pool).await.unwrap();
    (settings, pool)
}

#[test]
fn endpoints_prints_the_allowlist() {
    let output = Command::new(env!("CARGO_BIN_EXE_clerk-audit")).arg("endpoints").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for path in [
        "/v1/instance",
        "/v1/users/count",
        "/v1/domains",
        "/v1/webhooks/svix_url",
        "/v1/environment",
        "/api/v1/app/{app_id}/endpoint",
    ] {
        assert!(text.contains(path), "{path} in {text}");
    }
}

#[tokio::test]
async fn repo_scan_prints_and_stores_the_artifact() {
    let (settings, pool) = migrated_settings().await;
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo/repo");
    let printed = clerk_audit(&settings)
        .args(["repo-scan", repo, "--repo", "github.com/acme/web", "--commit", "c0ffee"])
        .output()
        .unwrap();
    assert!(printed.status.success(), "{}", String::from_utf8_lossy(&printed.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(printed["schema"], "clerk-repo-artifact/v1");
    assert_eq!(printed["key_references"][0]["environment"], "live");
    assert_eq!(printed["webhook_handlers"][0]["route"], "/api/webhooks/clerk");

    let stored = clerk_audit(&settings)
        .args([
            "repo-scan",
            repo,
            "--store",
            "--project",
            "prj_cli",
            "--repo-scan-id",
            "rs_cli",
            "--repo",
            "github.com/acme/web",
            "--commit",
            "c0ffee",
        ])
        .output()
        .unwrap();
    assert!(stored.status.success(), "{}", String::from_utf8_lossy(&stored.stderr));
    assert_eq!(String::from_utf8_lossy(&stored.stdout).trim(), "rs_cli");
    let client = pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT artifact FROM repo_scan_artifacts WHERE project_id = 'prj_cli' AND repo_scan_id = 'rs_cli'",
            &[],
        )
        .await
        .unwrap();
    let artifact: serde_json::Value = row.get(0);
    assert_eq!(artifact["key_references"], printed["key_references"]);
    assert_eq!(artifact["webhook_handlers"], printed["webhook_handlers"]);
    drop(client);
    drop_database(&pool, &settings).await;
}

#[tokio::test]
async fn credentials_put_encrypts_with_the_encryption_context_and_prints_the_key_ref() {
    let (settings, pool) = migrated_settings().await;
    let key_id = create_kms_key(&settings).await;
    let secret = "sk_test_CliStoredSecretKey0000000000000000000000";
    let mut child = clerk_audit(&settings)
        .args(["credentials", "put", "--project", "prj_cli", "--instance", "acme-dev", "--kms-key-id", &key_id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{secret}\n").as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(!stdout.contains(secret) && !String::from_utf8_lossy(&output.stderr).contains(secret));
    let key_ref = uuid::Uuid::parse_str(stdout.trim()).expect("prints the key_ref");

    let client = pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT project_id, instance_name, ciphertext, kms_key_id FROM clerk_credentials WHERE id = $1",
            &[&key_ref],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "prj_cli");
    assert_eq!(row.get::<_, String>(1), "acme-dev");
    let ciphertext: Vec<u8> = row.get(2);
    assert!(!String::from_utf8_lossy(&ciphertext).contains("CliStoredSecretKey"));
    // Decrypts with the right context, and only with it.
    let kms =
        clerk_audit::credentials::Kms::from_settings(&settings.kms, clerk_audit::retry::RetryPolicy::immediate(1))
            .await;
    let credential = clerk_audit::credentials::StoredCredential {
        key_ref,
        project_id: clerk_audit::intake::job::ProjectId::parse("prj_cli").unwrap(),
        ciphertext: ciphertext.clone(),
        kms_key_id: key_id.clone(),
    };
    let fingerprint = {
        use sha2::{Digest, Sha256};
        format!("sha256:{}", hex::encode(Sha256::digest(secret.as_bytes())))
    };
    assert_eq!(kms.decrypt(&credential).await.unwrap().fingerprint(), fingerprint);
    let moved = clerk_audit::credentials::StoredCredential {
        project_id: clerk_audit::intake::job::ProjectId::parse("prj_other").unwrap(),
        ..credential
    };
    let error = kms.decrypt(&moved).await.expect_err("another project's context does not decrypt");
    assert_eq!(error.reason(), clerk_audit::error::FailureReason::CredentialUndecryptable);
    drop(client);
    drop_database(&pool, &settings).await;
}

#[test]
fn schema_prints_each_contract_as_committed() {
    let contracts = concat!(env!("CARGO_MANIFEST_DIR"), "/contracts/");
    for (name, file) in [
        ("job", "clerk-scan-job.v1.schema.json"),
        ("artifact", "clerk-repo-artifact.v1.schema.json"),
        ("finding", "clerk-finding.v1.schema.json"),
        ("event", "clerk-audit-completed-event.v1.schema.json"),
        ("event-data", "clerk-audit-completed-data.v1.schema.json"),
        ("event-failed", "clerk-audit-failed-event.v1.schema.json"),
        ("event-failed-data", "clerk-audit-failed-data.v1.schema.json"),
        ("cloudevent", "clerk-audit-cloudevent.v1.schema.json"),
        ("asyncapi", "asyncapi.yaml"),
    ] {
        // No configuration or services needed: it runs anywhere the binary does.
        let output = Command::new(env!("CARGO_BIN_EXE_clerk-audit"))
            .args(["schema", name])
            .env("CLERK_AUDIT_CONFIG_DIR", "/nonexistent")
            .output()
            .unwrap();
        assert!(output.status.success(), "{name}: {}", String::from_utf8_lossy(&output.stderr));
        let printed = String::from_utf8(output.stdout).unwrap();
        assert_eq!(printed, std::fs::read_to_string(format!("{contracts}{file}")).unwrap(), "{name}");
        if file.ends_with(".json") {
            let schema: serde_json::Value = serde_json::from_str(&printed).unwrap();
            assert!(schema["$id"].as_str().unwrap().ends_with(file), "{name}");
        }
    }
    let unknown = Command::new(env!("CARGO_BIN_EXE_clerk-audit")).args(["schema", "jobs"]).output().unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("event-failed"), "the error lists the names");
}
