//! Findings for a person, in the format of SPEC section 6.

use std::fmt::Write;

use crate::checks::Evidence;
use crate::evaluate::CheckResult;

/// The fields a printed finding needs.
pub struct PrintableFinding<'a> {
    pub check_id: &'a str,
    pub severity: &'a str,
    pub title: &'a str,
    pub evidence: &'a Evidence,
    pub why: &'a str,
    pub fix: &'a str,
}

pub fn render_finding(finding: &PrintableFinding<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} - {} [{}]", finding.check_id, finding.title, finding.severity);
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
        if matches!(result.status, crate::evaluate::CheckStatus::Skipped | crate::evaluate::CheckStatus::Error) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_spec_layout() {
        let evidence = Evidence {
            repo: Some("references pk_live_* (production publishable key)".into()),
            clerk: Some("instance kind = 'development'".into()),
            details: serde_json::json!({}),
        };
        let text = render_finding(&PrintableFinding {
            check_id: "CLERK-DEV-IN-PROD-001",
            severity: "blocker",
            title: "Development instance handling production traffic",
            evidence: &evidence,
            why: "Anyone can sign up.",
            fix: "Promote the instance.",
        });
        assert_eq!(
            text,
            "CLERK-DEV-IN-PROD-001 - Development instance handling production traffic [blocker]\n  Repo:   references pk_live_* (production publishable key)\n  Clerk:  instance kind = 'development'\n  Why:    Anyone can sign up.\n  Fix:    Promote the instance.\n"
        );
    }
}
