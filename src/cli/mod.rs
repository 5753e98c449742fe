//! The `clerk-audit` command line. Each subcommand is a thin shell over the library.

pub mod audit;
pub mod report;
pub mod sarif;
pub mod schema;

use anyhow::{Context, bail};
use chrono::Utc;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::configuration::Settings;
use crate::credentials::{Kms, StoredCredential};
use crate::fetch::allowlist::AllowlistTable;
use crate::intake::job::{InstanceName, ProjectId, ScanJob};
use crate::ops::telemetry;
use crate::retry::RetryPolicy;
use crate::startup::{self, Application};
use crate::store as db;
use crate::store::reports::ScanSelector;
use crate::{intake, outbox};

#[derive(Debug, Parser)]
#[command(name = "clerk-audit", version, about = "Read-only audit of a customer's Clerk instance")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One-shot audit of the Clerk instance whose secret key is in CLERK_SECRET_KEY (or on stdin), with the
    /// repo evidence of --repo; no queue, database or KMS. Exit 0: nothing at or above --fail-on; 1:
    /// findings at or above it; 2: the audit could not run.
    Audit(audit::AuditArgs),
    /// Run the worker: consume scan jobs until SIGTERM/SIGINT.
    Worker,
    /// Apply the database migrations.
    Migrate,
    /// Print the allowlist of outbound calls.
    Endpoints,
    /// Print a machine-readable contract from contracts/: a JSON Schema (draft 2020-12) or the AsyncAPI
    /// document. `event` is the whole completed CloudEvent.
    Schema {
        #[arg(value_enum)]
        name: schema::SchemaName,
    },
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
    /// Print a scan's stored results and findings for a person (default: the project's latest scan, followed
    /// by the project's history of scans with their new, persisting and resolved findings).
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
    /// Print findings events as they are published (binds a temporary queue to the findings exchange).
    Events {
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
        /// Stop after this many seconds without an event.
        #[arg(long, default_value_t = 60)]
        idle_secs: u64,
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

/// How many scans `report --project` lists in its history.
const HISTORY_LIMIT: i64 = 20;

/// Entry point of the binary: the exit code of the command, or the error that stopped it.
pub async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    if let Command::Audit(args) = cli.command {
        return Ok(audit::run(args).await);
    }
    run_command(cli.command).await.map(|()| std::process::ExitCode::SUCCESS)
}

async fn run_command(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Endpoints => {
            print!("{AllowlistTable}");
            Ok(())
        }
        Command::Schema { name } => {
            print!("{}", name.contract().text);
            Ok(())
        }
        Command::RepoScan { path, store: false, repo, commit, max_file_size, .. } => {
            let artifact = repo_scan_artifact(&path, repo, commit, max_file_size)?;
            println!("{}", clerk_repo_scan::to_json(&artifact));
            Ok(())
        }
        command => {
            // The worker handles SIGTERM/SIGINT from before it reads its configuration: a signal while it
            // starts (or waits for its database) is a clean exit, not the default signal death.
            let shutdown = CancellationToken::new();
            if matches!(command, Command::Worker) {
                install_signal_shutdown(shutdown.clone())?;
            }
            let settings = Settings::load()?;
            // Kept until the command ends: dropping it flushes the trace exporter.
            let _telemetry = telemetry::init_with_traces(&settings.telemetry)?;
            run_with_settings(command, settings, shutdown).await
        }
    }
}

async fn run_with_settings(command: Command, settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    match command {
        Command::Endpoints | Command::Schema { .. } | Command::RepoScan { store: false, .. } | Command::Audit(_) => {
            unreachable!("handled before configuration")
        }
        Command::RepoScan { path, store: true, project, repo_scan_id, repo, commit, max_file_size } => {
            let project = ProjectId::parse(project.unwrap_or_default()).map_err(anyhow::Error::msg)?;
            let artifact = repo_scan_artifact(&path, repo, commit, max_file_size)?;
            let repo_scan_id =
                repo_scan_id.or_else(|| artifact.commit.clone()).unwrap_or_else(|| Uuid::new_v4().to_string());
            let pool = db::pool(&settings.database)?;
            let client = pool.get().await?;
            crate::store::artifacts::store(&client, &project, &repo_scan_id, &artifact).await?;
            println!("{repo_scan_id}");
            Ok(())
        }
        Command::Worker => {
            let pool = db::pool(&settings.database)?;
            if !startup::migrate_at_start(&pool, &shutdown).await? {
                tracing::info!("shutdown requested before the worker started");
                return Ok(());
            }
            let application = Application::build(settings).await?;
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
            let instance = InstanceName::parse(instance).map_err(anyhow::Error::msg)?;
            let key = crate::credentials::secret::read_secret_key(std::io::stdin().lock())
                .context("reading the secret key from stdin")?;
            let key_ref = key_ref.unwrap_or_else(Uuid::new_v4);
            let kms = Kms::from_settings(&settings.kms, RetryPolicy::in_job(3)).await;
            let ciphertext = kms.encrypt(&kms_key_id, &project, key_ref, &key).await?;
            let pool = db::pool(&settings.database)?;
            let credential = StoredCredential { key_ref, project_id: project, ciphertext, kms_key_id };
            db::credentials::insert(&*pool.get().await?, &instance, &credential).await?;
            println!("{key_ref}");
            Ok(())
        }
        Command::Credentials { command: CredentialsCommand::Revoke { key_ref } } => {
            let pool = db::pool(&settings.database)?;
            if !db::credentials::revoke(&*pool.get().await?, key_ref).await? {
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
            intake::broker::enqueue(&settings, &job).await?;
            println!("{}", job.scan_id);
            Ok(())
        }
        Command::Report { scan_id, project } => {
            let pool = db::pool(&settings.database)?;
            let selector = match (scan_id, project.as_deref()) {
                (Some(id), _) => ScanSelector::Id(id),
                (None, Some(project)) => ScanSelector::LatestOf(project),
                (None, None) => bail!("give --scan-id or --project"),
            };
            let client = pool.get().await?;
            let Some(scan) = db::reports::load(&client, selector).await? else { bail!("no such scan") };
            print!("{}", report::render_scan(&scan));
            if let (None, Some(project)) = (scan_id, project.as_deref()) {
                let history = db::reports::history(&client, project, HISTORY_LIMIT).await?;
                print!("\n{}", report::render_history(&history));
            }
            Ok(())
        }
        Command::Events { count, idle_secs } => outbox::watch::print_events(&settings, count, idle_secs).await,
    }
}

pub(crate) fn repo_scan_artifact(
    path: &std::path::Path,
    repo: Option<String>,
    commit: Option<String>,
    max_file_size: u64,
) -> anyhow::Result<crate::audit::artifact::RepoArtifact> {
    let options = clerk_repo_scan::ScanOptions {
        max_file_size,
        repo,
        commit,
        scanned_at: Some(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        ..clerk_repo_scan::ScanOptions::default()
    };
    Ok(clerk_repo_scan::scan(path, &options)?)
}

/// Cancels `shutdown` on SIGTERM or SIGINT. The handlers are registered before this returns, so no signal
/// that arrives afterwards takes its default action (ending the process at once).
fn install_signal_shutdown(shutdown: CancellationToken) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
            tracing::info!("shutdown requested; draining");
            shutdown.cancel();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested; draining");
        shutdown.cancel();
    });
    Ok(())
}
