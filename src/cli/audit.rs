//! `clerk-audit audit`: the one-shot audit for a person or a CI job. No queue, database or KMS: the secret
//! key comes from `CLERK_SECRET_KEY` or stdin, the repo evidence from scanning `--repo`, and the fetch and
//! checks are the worker's own ([`crate::pipeline::audit_instance`]). Output as text, the completed event's
//! `data` (JSON) or SARIF 2.1.0.
//!
//! Exit codes: 0 no finding at or above `--fail-on`; 1 findings at or above it; 2 the audit could not run
//! (bad key, Clerk unreachable, bad arguments), or a check is in `error` while the findings alone would
//! give 0.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use chrono::Utc;
use uuid::Uuid;

use super::report::{Style, render_finding_styled};
use super::sarif;
use crate::audit::checks::Severity;
use crate::audit::evaluate::{CheckStatus, Evaluation};
use crate::audit::facts::InstanceSummary;
use crate::audit::history::ScanHistory;
use crate::configuration::AuditSettings;
use crate::credentials::secret::{SecretKeyError, read_secret_key, secret_key_from_env};
use crate::error::{FailureReason, JobError};
use crate::fetch::dns::DnsLookup;
use crate::fetch::http::HttpLayer;
use crate::outbox::events::{CompletedScan, ScanRef, completed_data};
use crate::pipeline::{InstanceAudit, audit_instance};
use crate::retry::RetryPolicy;

/// The environment variable holding the secret key (never a command-line argument: it would land in shell
/// history and in `ps`).
pub const SECRET_KEY_VAR: &str = "CLERK_SECRET_KEY";
/// The project and instance names a one-shot audit binds its fingerprints to.
pub const LOCAL_PROJECT: &str = "local";
pub const LOCAL_INSTANCE: &str = "local";
/// Files larger than this are not scanned (the same default as `repo-scan`).
const MAX_FILE_SIZE: u64 = 1024 * 1024;

pub const EXIT_FINDINGS: u8 = 1;
pub const EXIT_COULD_NOT_RUN: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Sarif,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    Blocker,
    Warning,
    Info,
    Never,
}

impl FailOn {
    /// Whether a finding of `severity` fails the run.
    pub fn fails(self, severity: Severity) -> bool {
        match self {
            FailOn::Blocker => severity == Severity::Blocker,
            FailOn::Warning => severity <= Severity::Warning,
            FailOn::Info => true,
            FailOn::Never => false,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// A checkout to scan for Clerk keys and webhook handlers (default: no repo evidence).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Exit 1 when a finding is at or above this severity.
    #[arg(long, value_enum, default_value_t = FailOn::Blocker)]
    pub fail_on: FailOn,
    /// Write the report to this file instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// The exit code of an evaluation under `fail_on`.
pub fn exit_code(evaluation: &Evaluation, fail_on: FailOn) -> u8 {
    if evaluation.findings.iter().any(|f| fail_on.fails(f.severity)) {
        EXIT_FINDINGS
    } else if evaluation.results.iter().any(|r| r.status == CheckStatus::Error) {
        EXIT_COULD_NOT_RUN
    } else {
        0
    }
}

fn progress(message: &str) {
    eprintln!("clerk-audit: {message}");
}

/// Runs the audit; every failure to run is reported on stderr with exit code 2.
pub async fn run(args: AuditArgs) -> ExitCode {
    match audit(args).await {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("clerk-audit: {error:#}");
            ExitCode::from(EXIT_COULD_NOT_RUN)
        }
    }
}

fn key_error(source: &str, error: SecretKeyError) -> anyhow::Error {
    let problem = match error {
        SecretKeyError::WrongPrefix => "it does not start with sk_live_ or sk_test_",
        SecretKeyError::NotUtf8 => "it is not valid UTF-8",
        SecretKeyError::BadCharacter => "it has a character a Clerk secret key never has (or nothing after the prefix)",
    };
    anyhow!("{source} is not a Clerk secret key: {problem}")
}

/// What a failure of the fetch means for a person.
fn fetch_error(error: JobError) -> anyhow::Error {
    let (reason, detail) = match &error {
        JobError::Transient { reason, detail, .. } | JobError::Permanent { reason, detail } => (*reason, detail),
    };
    match reason {
        FailureReason::ClerkKeyRejected => anyhow!("Clerk rejected the secret key (revoked, or another instance's)"),
        FailureReason::ClerkUnavailable => anyhow!("Clerk could not be reached: {detail}"),
        _ => anyhow!("the audit failed: {detail}"),
    }
}

async fn audit(args: AuditArgs) -> anyhow::Result<u8> {
    let settings = AuditSettings::load()?;
    let key = match secret_key_from_env(SECRET_KEY_VAR) {
        Some(key) => key.map_err(|e| key_error(SECRET_KEY_VAR, e))?,
        None if std::io::stdin().is_terminal() => {
            bail!("no secret key: set {SECRET_KEY_VAR} or pipe the key on stdin (never pass it as an argument)")
        }
        None => read_secret_key(std::io::stdin().lock()).map_err(|e| key_error("the key read from stdin", e))?,
    };
    let artifact = match &args.repo {
        Some(dir) => {
            progress(&format!("scanning {} for Clerk keys and webhook handlers", dir.display()));
            Some(super::repo_scan_artifact(dir, None, None, MAX_FILE_SIZE).context("scanning the repo")?)
        }
        None => None,
    };
    let policy = RetryPolicy::in_job(settings.http.max_attempts);
    let http = HttpLayer::new(
        &settings.http,
        settings.clerk.backend_api_url.clone(),
        &settings.clerk.api_version,
        settings.clerk.rate_limit_per_10s,
        policy,
    )
    .context("building the HTTP client")?
    .with_svix_api_url(&settings.svix.api_url)?;
    let dns = DnsLookup::from_settings(&settings.dns).context("building the DNS resolver")?;
    progress("reading the Clerk instance (read-only)");
    // The key lives only inside this block.
    let InstanceAudit { facts, calls, evaluation } = {
        let mut calls = http.session(format!("{LOCAL_PROJECT}/{LOCAL_INSTANCE}"), &key);
        audit_instance(&mut calls, &dns, artifact.as_ref().into(), &settings.checks, (LOCAL_PROJECT, LOCAL_INSTANCE))
            .await
            .map_err(fetch_error)?
    };
    drop(key);
    let instance = facts.summary();

    let to_terminal = args.output.is_none() && std::io::stdout().is_terminal();
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let style = Style { color: to_terminal && !no_color };
    let rendered = match args.format {
        Format::Text => render_text(&evaluation, &instance, &facts.instance.id, &style),
        Format::Json => {
            let scan = CompletedScan {
                scan: ScanRef { scan_id: Uuid::new_v4(), project_id: LOCAL_PROJECT, instance_name: LOCAL_INSTANCE },
                evaluation: &evaluation,
                instance: &instance,
                calls: &calls,
                traceparent: None,
            };
            let data = completed_data(&scan, &ScanHistory::default(), Utc::now());
            // Serialized as the relay publishes it: through a `Value`, compact.
            serde_json::to_string(&serde_json::to_value(&data)?)? + "\n"
        }
        Format::Sarif => {
            let anchor = sarif::anchor(artifact.as_ref(), args.repo.as_deref());
            let anchor = anchor.as_ref().map(|(file, line)| (file.as_str(), *line));
            serde_json::to_string_pretty(&sarif::render(&evaluation, anchor))? + "\n"
        }
    };
    match &args.output {
        Some(path) => std::fs::write(path, rendered).with_context(|| format!("writing {}", path.display()))?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(rendered.as_bytes())?;
            stdout.flush()?;
        }
    }
    progress(&summary(&evaluation));
    Ok(exit_code(&evaluation, args.fail_on))
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// One line: findings by severity, checks that could not run.
pub fn summary(evaluation: &Evaluation) -> String {
    let of = |severity| evaluation.findings.iter().filter(|f| f.severity == severity).count();
    let status = |status| evaluation.results.iter().filter(|r| r.status == status).count();
    format!(
        "{}, {}, {}; {} run, {} in error, {} skipped",
        count(of(Severity::Blocker), "blocker", "blockers"),
        count(of(Severity::Warning), "warning", "warnings"),
        count(of(Severity::Info), "info", "info"),
        count(evaluation.results.len(), "check", "checks"),
        status(CheckStatus::Error),
        status(CheckStatus::Skipped),
    )
}

/// The block format grouped by severity, then what could not be evaluated, then the summary line.
pub fn render_text(evaluation: &Evaluation, instance: &InstanceSummary, instance_id: &str, style: &Style) -> String {
    let mut out = format!(
        "Clerk {} instance {instance_id}: {} users, domain {}\n",
        instance.kind,
        instance.user_count,
        instance.domain.as_deref().unwrap_or("-")
    );
    for (severity, heading) in
        [(Severity::Blocker, "Blockers"), (Severity::Warning, "Warnings"), (Severity::Info, "Info")]
    {
        let findings: Vec<_> = evaluation.findings.iter().filter(|f| f.severity == severity).collect();
        if findings.is_empty() {
            continue;
        }
        blank_line(&mut out);
        let _ = writeln!(out, "{}\n", style.severity(severity, &format!("{heading} ({})", findings.len())));
        for finding in findings {
            out.push_str(&render_finding_styled(finding, style));
            out.push('\n');
        }
    }
    if evaluation.findings.is_empty() {
        blank_line(&mut out);
        out.push_str("No findings.\n");
    }
    let errors: Vec<_> = evaluation.results.iter().filter(|r| r.status == CheckStatus::Error).collect();
    if !errors.is_empty() {
        blank_line(&mut out);
        out.push_str("Could not evaluate:\n");
        for result in errors {
            let _ = writeln!(out, "  {}: {}", result.check_id, result.reason.as_deref().unwrap_or(""));
        }
    }
    let skipped: Vec<_> =
        evaluation.results.iter().filter(|r| r.status == CheckStatus::Skipped).map(|r| r.check_id.as_str()).collect();
    if !skipped.is_empty() {
        blank_line(&mut out);
        let _ = writeln!(out, "Skipped (no --repo given or not applicable): {}", skipped.join(", "));
    }
    blank_line(&mut out);
    let _ = writeln!(out, "{}", summary(evaluation));
    out
}

/// Ends `out` with exactly one empty line, so sections are set apart once.
fn blank_line(out: &mut String) {
    while !out.ends_with("\n\n") {
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::evaluate::{CheckResult, Finding};

    fn finding(severity: Severity) -> Finding {
        Finding {
            check_id: "CLERK-X".into(),
            severity,
            pillar: "secure".into(),
            title: "t".into(),
            evidence: crate::audit::checks::Evidence {
                repo: None,
                clerk: Some("c".into()),
                details: serde_json::json!({}),
            },
            why: "w".into(),
            fix: "f".into(),
            fingerprint: "sha256:0".into(),
            first_seen_at: None,
            lifecycle: None,
        }
    }

    fn evaluation(findings: Vec<Finding>, error: bool) -> Evaluation {
        let status = if error { CheckStatus::Error } else { CheckStatus::Pass };
        Evaluation { results: vec![CheckResult { check_id: "CLERK-Y".into(), status, reason: None }], findings }
    }

    #[test]
    fn exit_codes_follow_fail_on() {
        let warning = evaluation(vec![finding(Severity::Warning)], false);
        assert_eq!(exit_code(&warning, FailOn::Blocker), 0);
        assert_eq!(exit_code(&warning, FailOn::Warning), 1);
        assert_eq!(exit_code(&warning, FailOn::Info), 1);
        assert_eq!(exit_code(&warning, FailOn::Never), 0);
        let blocker = evaluation(vec![finding(Severity::Blocker)], false);
        assert_eq!(exit_code(&blocker, FailOn::Blocker), 1);
        let info = evaluation(vec![finding(Severity::Info)], false);
        assert_eq!(exit_code(&info, FailOn::Warning), 0);
        assert_eq!(exit_code(&info, FailOn::Info), 1);
    }

    #[test]
    fn errors_exit_2_only_when_findings_would_pass() {
        assert_eq!(exit_code(&evaluation(vec![finding(Severity::Blocker)], true), FailOn::Blocker), 1);
        assert_eq!(exit_code(&evaluation(vec![finding(Severity::Warning)], true), FailOn::Blocker), 2);
        assert_eq!(exit_code(&evaluation(vec![], true), FailOn::Never), 2);
    }

    #[test]
    fn text_groups_by_severity_and_colours_only_when_asked() {
        let evaluation = evaluation(vec![finding(Severity::Warning), finding(Severity::Blocker)], true);
        let instance = InstanceSummary { kind: "production".into(), user_count: 5, domain: None };
        let plain = render_text(&evaluation, &instance, "ins_1", &Style::plain());
        let blockers = plain.find("Blockers (1)").unwrap();
        let warnings = plain.find("Warnings (1)").unwrap();
        assert!(blockers < warnings, "{plain}");
        assert!(plain.contains("Could not evaluate:\n  CLERK-Y: "), "{plain}");
        assert!(plain.ends_with("1 blocker, 1 warning, 0 info; 1 check run, 1 in error, 0 skipped\n"), "{plain}");
        assert!(!plain.contains('\x1b'));
        assert!(render_text(&evaluation, &instance, "ins_1", &Style { color: true }).contains("\x1b[1;31m"));
    }
}
