//! Findings for a person: the block format (id and title; Repo / Clerk evidence; Why; Fix).

use std::fmt::Write;

use crate::audit::checks::Severity;
use crate::audit::evaluate::{CheckResult, CheckStatus, Finding};
use crate::store::reports::{ScanHistoryEntry, StoredScan};

/// One finding as a block of lines.
pub fn render_finding(finding: &Finding) -> String {
    render_finding_styled(finding, &Style::plain())
}

/// ANSI styling of the block format; [`Style::plain`] writes none.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub fn plain() -> Self {
        Style { color: false }
    }

    /// `text` in the colour of `severity` (bold red, yellow, cyan), when colour is on.
    pub fn severity(&self, severity: Severity, text: &str) -> String {
        if !self.color {
            return text.to_owned();
        }
        let code = match severity {
            Severity::Blocker => "1;31",
            Severity::Warning => "33",
            Severity::Info => "36",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

/// The Users line: how many users the instance has, when the finding's details say.
fn users_line(details: &serde_json::Value) -> Option<String> {
    let count = details.get("user_count")?.as_u64()?;
    Some(match details.get("threshold").and_then(|t| t.as_u64()) {
        Some(threshold) => format!("{count} (threshold {threshold})"),
        None => count.to_string(),
    })
}

/// The MFA line: whether a second factor is required and which are offered, when the details say.
fn mfa_line(details: &serde_json::Value) -> Option<String> {
    let required = details.get("second_factor_required")?.as_bool()?;
    let available: Vec<&str> = details
        .get("second_factors_available")
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let offered = if available.is_empty() { "none".to_owned() } else { available.join(", ") };
    Some(format!("required: {}; second factors offered: {offered}", if required { "yes" } else { "no" }))
}

/// One finding as a block of lines, styled.
pub fn render_finding_styled(finding: &Finding, style: &Style) -> String {
    let mut out = String::new();
    let head = format!("{} - {} [{}]", finding.check_id, finding.title, finding.severity.as_str());
    let lifecycle = finding.lifecycle.map(|l| format!(" ({})", l.as_str())).unwrap_or_default();
    let _ = writeln!(out, "{}{lifecycle}", style.severity(finding.severity, &head));
    if let Some(repo) = &finding.evidence.repo {
        let _ = writeln!(out, "  Repo:   {repo}");
    }
    if let Some(clerk) = &finding.evidence.clerk {
        let _ = writeln!(out, "  Clerk:  {clerk}");
    }
    if let Some(users) = users_line(&finding.evidence.details) {
        let _ = writeln!(out, "  Users:  {users}");
    }
    if let Some(mfa) = mfa_line(&finding.evidence.details) {
        let _ = writeln!(out, "  MFA:    {mfa}");
    }
    let _ = writeln!(out, "  Why:    {}", finding.why);
    let _ = writeln!(out, "  Fix:    {}", finding.fix);
    out
}

/// One line per check that did not pass or fail: what could not be evaluated and why.
pub fn render_unevaluated(results: &[CheckResult]) -> String {
    let mut out = String::new();
    for result in results {
        if matches!(result.status, CheckStatus::Skipped | CheckStatus::Error) {
            let _ = writeln!(
                out,
                "  {} {}: {}",
                result.check_id,
                result.status.as_str(),
                result.reason.as_deref().unwrap_or("")
            );
        }
    }
    out
}

/// A stored scan for a person: its status, the instance, every finding, what could not be evaluated.
pub fn render_scan(scan: &StoredScan) -> String {
    let mut out =
        format!("scan {} of project {} / instance {}: {}\n", scan.id, scan.project_id, scan.instance_name, scan.status);
    if let Some(instance) = &scan.instance {
        let _ = writeln!(
            out,
            "  instance: kind={} users={} domain={}",
            instance.kind,
            instance.user_count,
            instance.domain.as_deref().unwrap_or("-")
        );
    }
    if let Some(code) = &scan.error_code {
        let _ = writeln!(out, "  failed: {code}");
        return out;
    }
    out.push('\n');
    if scan.findings.is_empty() {
        out.push_str("  no findings\n");
    }
    for finding in &scan.findings {
        out.push_str(&render_finding(finding));
        out.push('\n');
    }
    if !scan.resolved.is_empty() {
        out.push_str("resolved since the previous scan:\n");
        for finding in &scan.resolved {
            let _ = writeln!(out, "  {} - {} [{}]", finding.check_id, finding.title, finding.severity.as_str());
        }
        out.push('\n');
    }
    let unevaluated = render_unevaluated(&scan.results);
    if !unevaluated.is_empty() {
        out.push_str("not evaluated:\n");
        out.push_str(&unevaluated);
    }
    out
}

/// A project's scans, most recent first: one line each with its new, persisting and resolved findings.
pub fn render_history(history: &[ScanHistoryEntry]) -> String {
    let mut out = String::from("history (most recent first):\n");
    for entry in history {
        let _ = writeln!(
            out,
            "  {}  {}  {:<9}  instance {}: {} new, {} persisting, {} resolved",
            entry.finished_at.as_deref().unwrap_or("-"),
            entry.id,
            entry.status,
            entry.instance_name,
            entry.new,
            entry.persisting,
            entry.resolved
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checks::Evidence;

    #[test]
    fn renders_the_block_layout() {
        let finding = Finding {
            check_id: "CLERK-DEV-IN-PROD-001".into(),
            severity: Severity::Blocker,
            pillar: "secure".into(),
            title: "Development instance handling production traffic".into(),
            evidence: Evidence {
                repo: Some("references pk_live_* (production publishable key)".into()),
                clerk: Some("instance kind = 'development'".into()),
                details: serde_json::json!({}),
            },
            why: "Anyone can sign up.".into(),
            fix: "Promote the instance.".into(),
            fingerprint: "sha256:00".into(),
            first_seen_at: None,
            lifecycle: None,
        };
        assert_eq!(
            render_finding(&finding),
            "CLERK-DEV-IN-PROD-001 - Development instance handling production traffic [blocker]\n  Repo:   references pk_live_* (production publishable key)\n  Clerk:  instance kind = 'development'\n  Why:    Anyone can sign up.\n  Fix:    Promote the instance.\n"
        );
    }
}
