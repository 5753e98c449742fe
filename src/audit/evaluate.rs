//! Evaluate: run every check over the facts and the artifact, and turn verdicts into check results and
//! findings with stable fingerprints. Pure: no I/O.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit::checks::{self, CheckInput, Evidence, Severity, Verdict};

/// The pillar every finding of this worker belongs to.
pub const PILLAR: &str = "secure";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    Fail,
    Skipped,
    Error,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Pass => "pass",
            CheckStatus::Fail => "fail",
            CheckStatus::Skipped => "skipped",
            CheckStatus::Error => "error",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "pass" => CheckStatus::Pass,
            "fail" => CheckStatus::Fail,
            "skipped" => CheckStatus::Skipped,
            "error" => CheckStatus::Error,
            _ => return None,
        })
    }
}

/// Where a finding stands against the previous completed scan of the same project and instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    /// Not in the previous scan (never seen, or resolved then and back now).
    New,
    /// In the previous scan too.
    Persisting,
    /// In the previous scan, gone from this one.
    Resolved,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::New => "new",
            Lifecycle::Persisting => "persisting",
            Lifecycle::Resolved => "resolved",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "new" => Lifecycle::New,
            "persisting" => Lifecycle::Persisting,
            "resolved" => Lifecycle::Resolved,
            _ => return None,
        })
    }
}

/// One check's outcome, as stored and published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub check_id: String,
    pub status: CheckStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One finding: a check that failed, with its evidence; the same object is published in the completed event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub check_id: String,
    pub severity: Severity,
    pub pillar: String,
    pub title: String,
    pub evidence: Evidence,
    pub why: String,
    pub fix: String,
    /// Same problem on the next scan, same fingerprint.
    pub fingerprint: String,
    /// When this problem was first seen in a completed scan of the project (RFC 3339); set when the scan's
    /// event is built, absent before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen_at: Option<String>,
    /// New, persisting or resolved since the previous completed scan of the project and instance; set when
    /// the scan's event is built, absent before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Evaluation {
    pub results: Vec<CheckResult>,
    pub findings: Vec<Finding>,
}

/// `sha256:<hex>` over the check id, the project, the instance name and the finding's identity.
pub fn fingerprint(check_id: &str, project_id: &str, instance_name: &str, identity: &[String]) -> String {
    let mut hasher = Sha256::new();
    for part in [check_id, project_id, instance_name].into_iter().chain(identity.iter().map(String::as_str)) {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// Runs every check of [`checks::ALL`].
pub fn evaluate(input: &CheckInput<'_>, project_id: &str, instance_name: &str) -> Evaluation {
    let mut evaluation = Evaluation::default();
    for check in checks::ALL {
        let meta = check.meta;
        let (status, reason) = match (check.evaluate)(input) {
            Verdict::Pass => (CheckStatus::Pass, None),
            Verdict::Skipped(reason) => (CheckStatus::Skipped, Some(reason)),
            Verdict::Error(reason) => (CheckStatus::Error, Some(reason)),
            Verdict::Fail(drafts) => {
                for draft in drafts {
                    let fingerprint = fingerprint(meta.id, project_id, instance_name, &draft.identity);
                    // Two drafts with one identity are one problem: keep the first.
                    if evaluation.findings.iter().any(|f| f.fingerprint == fingerprint) {
                        continue;
                    }
                    evaluation.findings.push(Finding {
                        check_id: meta.id.to_owned(),
                        severity: meta.severity,
                        pillar: PILLAR.to_owned(),
                        title: meta.title.to_owned(),
                        evidence: draft.evidence,
                        why: meta.why.to_owned(),
                        fix: meta.fix.to_owned(),
                        fingerprint,
                        first_seen_at: None,
                        lifecycle: None,
                    });
                }
                (CheckStatus::Fail, None)
            }
        };
        evaluation.results.push(CheckResult { check_id: meta.id.to_owned(), status, reason });
    }
    evaluation
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checks::{CheckSettings, fixtures};
    use crate::audit::facts::InstanceEnvironment;

    #[test]
    fn every_check_yields_one_result_and_fingerprints_are_stable() {
        let facts = fixtures::facts(InstanceEnvironment::Development);
        let artifact = fixtures::artifact(vec![]);
        let settings = CheckSettings::default();
        let input = CheckInput { facts: &facts, artifact: Some(&artifact).into(), settings: &settings };
        let first = evaluate(&input, "prj_1", "acme-dev");
        let second = evaluate(&input, "prj_1", "acme-dev");
        assert_eq!(first.results.len(), checks::ALL.len());
        assert_eq!(first, second);
        // A development instance with no production evidence: CLERK-INSTANCE-001 fails (info).
        let instance = first.findings.iter().find(|f| f.check_id == "CLERK-INSTANCE-001").expect("info finding");
        assert_eq!(instance.severity, Severity::Info);
        assert_eq!(instance.pillar, "secure");
        assert!(instance.fingerprint.starts_with("sha256:") && instance.fingerprint.len() == 71);
    }

    #[test]
    fn fingerprint_depends_on_project_instance_and_identity() {
        let base = fingerprint("C", "p", "i", &["a".into()]);
        assert_ne!(base, fingerprint("C", "p2", "i", &["a".into()]));
        assert_ne!(base, fingerprint("C", "p", "i2", &["a".into()]));
        assert_ne!(base, fingerprint("C", "p", "i", &["b".into()]));
        // Length-prefixing keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(
            fingerprint("C", "p", "i", &["ab".into(), "c".into()]),
            fingerprint("C", "p", "i", &["a".into(), "bc".into()])
        );
    }
}
