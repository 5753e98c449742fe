//! The `clerk-audit` command line. Each subcommand is a thin shell over the library.

use std::io::Read;

use anyhow::{Context, bail};
use chrono::Utc;
use clap::{Parser, Subcommand};
use lapin::BasicProperties;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::checks::Evidence;
use crate::configuration::Settings;
use crate::decrypt::Kms;
use crate::evaluate::{CheckResult, CheckStatus};
use crate::fetch::allowlist::AllowlistTable;
use crate::job::{InstanceName, ProjectId, ScanJob};
use crate::report::{PrintableFinding, render_finding, render_unevaluated};
use crate::retry::RetryPolicy;
use crate::secret::ClerkSecretKey;
use crate::startup::Application;
use crate::{broker, db, telemetry};

#[derive(Debug, Parser)]
#[command(name = "clerk-audit", version, about = "Read-only audit of a customer's Clerk instance")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the worker: consume scan jobs until SIGTERM/SIGINT.
    Worker,
    /// Apply the database migrations.
    Migrate,
    /// Print the allowlist of outbound calls.
    Endpoints,
    /// Store credentials (as the platform's settings service does).
    Credentials {
        #[command(subcommand)]
        command: CredentialsCommand,
    },
    /// Publish a scan job (as the scan orchestrator does); prints the scan id.
    Enqueue {
        #[arg(long)]
        project: String,
        #[arg(long)]
        instance: String,
        #[arg(long)]
        key_ref: Uuid,
        #[arg(long)]
        repo_scan_id: Option<String>,
        /// Defaults to a new random id.
        #[arg(long)]
        scan_id: Option<Uuid>,
    },
    /// Print a scan's stored results and findings for a person (default: the project's latest scan).
    Report {
        #[arg(long)]
        scan_id: Option<Uuid>,
        #[arg(long, required_unless_present = "scan_id")]
        project: Option<String>,
    },
    /// Extract the clerk-repo-artifact/v1 document from a checkout: JSON on stdout, or stored with --store.
    RepoScan {
        /// The checkout to scan.
        path: std::path::PathBuf,
        /// Insert the artifact into repo_scan_artifacts (needs --project).
        #[arg(long, requires = "project")]
        store: bool,
        #[arg(long)]
        project: Option<String>,
        /// Defaults to the commit id, else a new random id.
        #[arg(long)]
        repo_scan_id: Option<String>,
        /// Overrides the repository name read from .git.
        #[arg(long)]
        repo: Option<String>,
        /// Overrides the commit read from .git.
        #[arg(long)]
        commit: Option<String>,
        /// Files larger than this many bytes are skipped.
        #[arg(long, default_value_t = 1024 * 1024)]
        max_file_size: u64,
    },
    /// Serve the Clerk/Svix/DNS sandbox on loopback (tests and demos); prints its instances as JSON.
    Sandbox {
        /// Backend API port (Svix on +1, each instance's Frontend API on +2, +3, ...); 0 picks free ports.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// UDP port of the sandbox DNS server; 0 picks a free one.
        #[arg(long, default_value_t = 0)]
        dns_port: u16,
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
    },
    /// Print findings events as they are published (binds a temporary queue to the findings exchange).
    Events {
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
        /// Stop after this many seconds without an event.
        #[arg(long, default_value_t = 60)]
        idle_secs: u64,
    },
    /// KMS helpers for local setups and tests.
    Kms {
        #[command(subcommand)]
        command: KmsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// Read a secret key from stdin, encrypt it through KMS bound to the project and key_ref, insert the
    /// row; prints the key_ref.
    Put {
        #[arg(long)]
        project: String,
        #[arg(long)]
        instance: String,
        #[arg(long)]
        kms_key_id: String,
        /// Defaults to a new random id.
        #[arg(long)]
        key_ref: Option<Uuid>,
    },
    /// Mark a credential revoked.
    Revoke {
        #[arg(long)]
        key_ref: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum KmsCommand {
    /// Create a symmetric KMS key (for a local KMS stand-in); prints its id.
    CreateKey,
}

/// Entry point of the binary.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Endpoints => {
            print!("{AllowlistTable}");
            Ok(())
        }
        Command::RepoScan { path, store: false, repo, commit, max_file_size, .. } => {
            let artifact = repo_scan_artifact(&path, repo, commit, max_file_size)?;
            println!("{}", crate::repo_scan::to_json(&artifact));
            Ok(())
        }
        Command::Sandbox { port, dns_port, host } => {
            telemetry::init(crate::configuration::LogFormat::Text);
            crate::sandbox::run_cli(crate::sandbox::SandboxConfig { host, backend_port: port, dns_port }).await
        }
        command => {
            let settings = Settings::load()?;
            // Kept until the command ends: dropping it flushes the trace exporter.
            let _telemetry = telemetry::init_with_traces(&settings.telemetry)?;
            run_with_settings(command, settings).await
        }
    }
}

async fn run_with_settings(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Endpoints | Command::Sandbox { .. } | Command::RepoScan { store: false, .. } => {
            unreachable!("handled before configuration")
        }
        Command::RepoScan { path, store: true, project, repo_scan_id, repo, commit, max_file_size } => {
            let project = ProjectId::parse(project.unwrap_or_default()).map_err(anyhow::Error::msg)?;
            let artifact = repo_scan_artifact(&path, repo, commit, max_file_size)?;
            let repo_scan_id =
                repo_scan_id.or_else(|| artifact.commit.clone()).unwrap_or_else(|| Uuid::new_v4().to_string());
            let pool = db::pool(&settings.database)?;
            let client = pool.get().await?;
            crate::persist::store_artifact(&client, &project, &repo_scan_id, &artifact).await?;
            println!("{repo_scan_id}");
            Ok(())
        }
        Command::Worker => {
            let pool = db::pool(&settings.database)?;
            db::migrate(&pool).await.context("running migrations at start")?;
            let application = Application::build(settings).await?;
            let shutdown = CancellationToken::new();
            tokio::spawn(signal_shutdown(shutdown.clone()));
            application.run(shutdown).await
        }
        Command::Migrate => {
            let pool = db::pool(&settings.database)?;
            db::migrate(&pool).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Credentials { command: CredentialsCommand::Put { project, instance, kms_key_id, key_ref } } => {
            let project = ProjectId::parse(project).map_err(anyhow::Error::msg)?;
            InstanceName::parse(instance.clone()).map_err(anyhow::Error::msg)?;
            let mut plaintext = Vec::new();
            std::io::stdin().read_to_end(&mut plaintext).context("reading the secret key from stdin")?;
            let key = ClerkSecretKey::from_plaintext(plaintext)?;
            let key_ref = key_ref.unwrap_or_else(Uuid::new_v4);
            let kms = Kms::from_settings(&settings.kms, RetryPolicy::in_job(3)).await;
            let ciphertext = kms.encrypt(&kms_key_id, &project, key_ref, &key).await?;
            let pool = db::pool(&settings.database)?;
            let client = pool.get().await?;
            client
                .execute(
                    "INSERT INTO clerk_credentials (id, project_id, instance_name, ciphertext, kms_key_id) VALUES ($1, $2, $3, $4, $5)",
                    &[&key_ref, &project.as_str(), &instance, &ciphertext, &kms_key_id],
                )
                .await?;
            println!("{key_ref}");
            Ok(())
        }
        Command::Credentials { command: CredentialsCommand::Revoke { key_ref } } => {
            let pool = db::pool(&settings.database)?;
            let n = pool
                .get()
                .await?
                .execute("UPDATE clerk_credentials SET revoked_at = now() WHERE id = $1", &[&key_ref])
                .await?;
            if n == 0 {
                bail!("no credential {key_ref}");
            }
            Ok(())
        }
        Command::Enqueue { project, instance, key_ref, repo_scan_id, scan_id } => {
            let job = ScanJob {
                scan_id: scan_id.unwrap_or_else(Uuid::new_v4),
                project_id: ProjectId::parse(project).map_err(anyhow::Error::msg)?,
                instance_name: InstanceName::parse(instance).map_err(anyhow::Error::msg)?,
                key_ref,
                requested_at: Utc::now(),
                repo_scan_id,
            };
            enqueue(&settings, &job).await?;
            println!("{}", job.scan_id);
            Ok(())
        }
        Command::Report { scan_id, project } => {
            let pool = db::pool(&settings.database)?;
            let client = pool.get().await?;
            print!("{}", report(&client, scan_id, project.as_deref()).await?);
            Ok(())
        }
        Command::Events { count, idle_secs } => watch_events(&settings, count, idle_secs).await,
        Command::Kms { command: KmsCommand::CreateKey } => {
            let kms = Kms::from_settings(&settings.kms, RetryPolicy::in_job(3)).await;
            let output = kms.client().create_key().description("clerk-audit credentials").send().await?;
            let id = output.key_metadata().map(|m| m.key_id().to_owned()).context("KMS returned no key id")?;
            println!("{id}");
            Ok(())
        }
    }
}

fn repo_scan_artifact(
    path: &std::path::Path,
    repo: Option<String>,
    commit: Option<String>,
    max_file_size: u64,
) -> anyhow::Result<crate::artifact::RepoArtifact> {
    let options = crate::repo_scan::ScanOptions {
        max_file_size,
        repo,
        commit,
        scanned_at: Some(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        ..crate::repo_scan::ScanOptions::default()
    };
    Ok(crate::repo_scan::scan(path, &options)?)
}

/// Publishes a job the way the orchestrator does (persistent JSON, confirmed).
pub async fn enqueue(settings: &Settings, job: &ScanJob) -> anyhow::Result<()> {
    let connection = broker::connect(&settings.amqp, "clerk-audit enqueue").await?;
    let setup = connection.create_channel().await?;
    broker::declare_topology(&setup, &settings.amqp, &settings.worker).await?;
    let channel = broker::confirm_channel(&connection).await?;
    let body = serde_json::to_vec(&job.to_message())?;
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id(job.scan_id.to_string().into());
    broker::publish_confirmed(
        &channel,
        &settings.amqp.jobs_exchange,
        &settings.amqp.jobs_routing_key,
        &body,
        properties,
        std::time::Duration::from_secs(10),
    )
    .await?;
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

/// Prints each event on the findings exchange as one JSON line.
async fn watch_events(settings: &Settings, count: Option<usize>, idle_secs: u64) -> anyhow::Result<()> {
    use futures::StreamExt;
    use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    use std::io::Write;

    let connection = broker::connect(&settings.amqp, "clerk-audit events").await?;
    let channel = connection.create_channel().await?;
    broker::declare_topology(&channel, &settings.amqp, &settings.worker).await?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.name().clone(),
            settings.amqp.findings_exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut consumer = channel
        .basic_consume(queue.name().clone(), "events".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    // Tell a script that the queue is bound and events will be caught from now on.
    eprintln!("listening on {}", settings.amqp.findings_exchange);
    let mut seen = 0;
    while count.is_none_or(|count| seen < count) {
        let Ok(Some(delivery)) = tokio::time::timeout(std::time::Duration::from_secs(idle_secs), consumer.next()).await
        else {
            break;
        };
        let delivery = delivery?;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&delivery.data)?;
        stdout.write_all(b"\n")?;
        stdout.flush()?;
        delivery.acker.ack(BasicAckOptions::default()).await?;
        seen += 1;
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

/// Renders a stored scan for a person.
pub async fn report(
    client: &tokio_postgres::Client,
    scan_id: Option<Uuid>,
    project: Option<&str>,
) -> anyhow::Result<String> {
    let scan = match scan_id {
        Some(id) => client.query_opt("SELECT * FROM scans WHERE id = $1", &[&id]).await?,
        None => {
            client
                .query_opt(
                    "SELECT * FROM scans WHERE project_id = $1 ORDER BY started_at DESC LIMIT 1",
                    &[&project.unwrap_or_default()],
                )
                .await?
        }
    };
    let Some(scan) = scan else { bail!("no such scan") };
    let id: Uuid = scan.get("id");
    let status: String = scan.get("status");
    let mut out = format!(
        "scan {id} of project {} / instance {}: {status}\n",
        scan.get::<_, String>("project_id"),
        scan.get::<_, String>("instance_name")
    );
    if let Some(summary) = scan.get::<_, Option<serde_json::Value>>("instance_summary") {
        out.push_str(&format!(
            "  instance: kind={} users={} domain={}\n",
            summary["kind"].as_str().unwrap_or("?"),
            summary["user_count"],
            summary["domain"].as_str().unwrap_or("-")
        ));
    }
    if let Some(code) = scan.get::<_, Option<String>>("error_code") {
        out.push_str(&format!("  failed: {code}\n"));
        return Ok(out);
    }
    let findings = client
        .query(
            "SELECT check_id, severity, title, evidence, why, fix FROM findings WHERE scan_id = $1
              ORDER BY CASE severity WHEN 'blocker' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, check_id",
            &[&id],
        )
        .await?;
    out.push('\n');
    if findings.is_empty() {
        out.push_str("  no findings\n");
    }
    for row in &findings {
        let evidence: Evidence = serde_json::from_value(row.get("evidence"))?;
        out.push_str(&render_finding(&PrintableFinding {
            check_id: row.get("check_id"),
            severity: row.get("severity"),
            title: row.get("title"),
            evidence: &evidence,
            why: row.get("why"),
            fix: row.get("fix"),
        }));
        out.push('\n');
    }
    let results: Vec<CheckResult> = client
        .query("SELECT check_id, status, reason FROM check_results WHERE scan_id = $1 ORDER BY check_id", &[&id])
        .await?
        .into_iter()
        .filter_map(|row| {
            Some(CheckResult {
                check_id: row.get("check_id"),
                status: CheckStatus::parse(row.get("status"))?,
                reason: row.get("reason"),
            })
        })
        .collect();
    let unevaluated = render_unevaluated(&results);
    if !unevaluated.is_empty() {
        out.push_str("not evaluated:\n");
        out.push_str(&unevaluated);
    }
    Ok(out)
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
async fn signal_shutdown(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested; draining");
    shutdown.cancel();
}
