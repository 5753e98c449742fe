//! Findings for a person: the block format (id and title; Repo / Clerk evidence; Why; Fix).

use std::fmt::Write;

use crate::audit::evaluate::{CheckResult, CheckStatus, Finding};
use crate::store::reports::StoredScan;

/// One finding as a block of lines.
pub fn render_finding(finding: &Finding) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} - {} [{}]", finding.check_id, finding.title, finding.severity.as_str());
    if let Some(repo) = &finding.evidence.repo {
        let _ = writeln!(out, "  Repo:   {repo}");
    }
    if let Some(clerk) = &finding.evidence.clerk {
        let _ = writeln!(out, "  Clerk:  {clerk}");
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
    let unevaluated = render_unevaluated(&scan.results);
    if !unevaluated.is_empty() {
        out.push_str("not evaluated:\n");
        out.push_str(&unevaluated);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checks::{Evidence, Severity};

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
        };
        assert_eq!(
            render_finding(&finding),
            "CLERK-DEV-IN-PROD-001 - Development instance handling production traffic [blocker]\n  Repo:   references pk_live_* (production publishable key)\n  Clerk:  instance kind = 'development'\n  Why:    Anyone can sign up.\n  Fix:    Promote the instance.\n"
        );
    }
}
