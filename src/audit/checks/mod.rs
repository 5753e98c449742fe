//! The security checks, one module each, with their metadata beside their logic.
//!
//! A check is a pure function of [`CheckInput`]: the fetched [`ClerkFacts`], the repo artifact if one is
//! stored, and the check settings. It answers a [`Verdict`]: `Pass` only when its failure condition could be
//! evaluated and is false, `Skipped` when an input it needs is absent by design (no repo scan), `Error`
//! when an input could not be had. [`crate::audit::evaluate`] turns verdicts into results and findings.

use serde::{Deserialize, Serialize};

use crate::audit::artifact::{ArtifactUnreadable, RepoArtifact, StoredArtifact};
use crate::audit::facts::ClerkFacts;

pub mod allowed_origins;
pub mod bot_protection;
pub mod dev_cap;
pub mod dev_in_prod;
pub mod dev_key_in_prod;
pub mod email_dns;
pub mod hibp;
pub mod instance_kind;
pub mod key_mismatch;
pub mod lockout;
pub mod mfa_missing;
pub mod mfa_optional;
pub mod secret_leak;
pub mod secret_public;
pub mod settings_common;
pub mod test_mode;
pub mod webhook_acks_failure;
pub mod webhook_common;
pub mod webhook_events_filtered;
pub mod webhook_reserialized;
pub mod webhook_secret_live;
pub mod webhook_secret_stale;
pub mod webhook_unfed;
pub mod webhook_unverified;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Blocker,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Blocker => "blocker",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// What a check is, said once next to its logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckMeta {
    pub id: &'static str,
    pub severity: Severity,
    pub title: &'static str,
    pub why: &'static str,
    pub fix: &'static str,
}

/// Knobs of the checks, from configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSettings {
    /// MFA checks apply to production instances with more users than this.
    pub mfa_user_threshold: u64,
}

impl Default for CheckSettings {
    fn default() -> Self {
        Self { mfa_user_threshold: 100 }
    }
}

/// What the store holds of the project's repo scan, as a check sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RepoEvidence<'a> {
    /// No repo scan is stored for the project: the repo-dependent checks are skipped by design.
    Absent,
    Present(&'a RepoArtifact),
    /// A repo scan is stored but could not be read (over a size cap, or not the artifact schema): the
    /// repo-dependent checks report `error`, since the repo may well show a problem.
    Unreadable(ArtifactUnreadable),
}

impl<'a> RepoEvidence<'a> {
    pub fn of(stored: &'a StoredArtifact) -> Self {
        match stored {
            StoredArtifact::Absent => RepoEvidence::Absent,
            StoredArtifact::Present(artifact) => RepoEvidence::Present(artifact),
            StoredArtifact::Unreadable(why) => RepoEvidence::Unreadable(*why),
        }
    }

    /// The artifact, when one was read.
    pub fn artifact(self) -> Option<&'a RepoArtifact> {
        match self {
            RepoEvidence::Present(artifact) => Some(artifact),
            _ => None,
        }
    }

    /// The artifact, or the verdict of a check that needs it: `Skipped` without a repo scan, `Error` when
    /// the stored one is unreadable.
    pub fn require(self) -> Result<&'a RepoArtifact, Verdict> {
        match self {
            RepoEvidence::Present(artifact) => Ok(artifact),
            RepoEvidence::Absent => Err(Verdict::Skipped(NO_REPO_SCAN.into())),
            RepoEvidence::Unreadable(why) => Err(Verdict::Error(format!("{REPO_ARTIFACT_UNREADABLE}: {why}"))),
        }
    }
}

impl<'a> From<Option<&'a RepoArtifact>> for RepoEvidence<'a> {
    fn from(artifact: Option<&'a RepoArtifact>) -> Self {
        artifact.map_or(RepoEvidence::Absent, RepoEvidence::Present)
    }
}

/// Everything a check may read.
#[derive(Debug, Clone, Copy)]
pub struct CheckInput<'a> {
    pub facts: &'a ClerkFacts,
    /// The repo scan: absent, present or unreadable. Checks that need it start with
    /// `let artifact = match input.artifact.require() { Ok(a) => a, Err(verdict) => return verdict };`.
    pub artifact: RepoEvidence<'a>,
    pub settings: &'a CheckSettings,
}

/// The evidence of one finding: a sentence each for what the repo and Clerk show, plus structured details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clerk: Option<String>,
    /// Structured facts behind the sentences (files and lines, the instance kind, DNS answers...).
    pub details: serde_json::Value,
}

/// One problem a failing check found, before metadata and fingerprint are attached.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureDraft {
    pub evidence: Evidence,
    /// What makes this problem the same problem on the next scan (e.g. the file and variable, the DNS host).
    /// Never volatile values such as counts or timestamps.
    pub identity: Vec<String>,
}

/// A check's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pass,
    Fail(Vec<FailureDraft>),
    Skipped(String),
    Error(String),
}

/// A check: its metadata and its logic.
#[derive(Clone, Copy)]
pub struct Check {
    pub meta: &'static CheckMeta,
    pub evaluate: fn(&CheckInput<'_>) -> Verdict,
}

/// Every check the worker runs, in report order.
pub const ALL: &[Check] = &[
    Check { meta: &dev_in_prod::META, evaluate: dev_in_prod::evaluate },
    Check { meta: &dev_key_in_prod::META, evaluate: dev_key_in_prod::evaluate },
    Check { meta: &instance_kind::META, evaluate: instance_kind::evaluate },
    Check { meta: &mfa_optional::META, evaluate: mfa_optional::evaluate },
    Check { meta: &mfa_missing::META, evaluate: mfa_missing::evaluate },
    Check { meta: &email_dns::META, evaluate: email_dns::evaluate },
    Check { meta: &webhook_unfed::META, evaluate: webhook_unfed::evaluate },
    Check { meta: &webhook_unverified::META, evaluate: webhook_unverified::evaluate },
    Check { meta: &webhook_secret_live::META, evaluate: webhook_secret_live::evaluate },
    Check { meta: &webhook_secret_stale::META, evaluate: webhook_secret_stale::evaluate },
    Check { meta: &webhook_events_filtered::META, evaluate: webhook_events_filtered::evaluate },
    Check { meta: &webhook_reserialized::META, evaluate: webhook_reserialized::evaluate },
    Check { meta: &webhook_acks_failure::META, evaluate: webhook_acks_failure::evaluate },
    Check { meta: &test_mode::META, evaluate: test_mode::evaluate },
    Check { meta: &secret_leak::META, evaluate: secret_leak::evaluate },
    Check { meta: &secret_public::META, evaluate: secret_public::evaluate },
    Check { meta: &key_mismatch::META, evaluate: key_mismatch::evaluate },
    Check { meta: &allowed_origins::META, evaluate: allowed_origins::evaluate },
    Check { meta: &hibp::META, evaluate: hibp::evaluate },
    Check { meta: &lockout::META, evaluate: lockout::evaluate },
    Check { meta: &bot_protection::META, evaluate: bot_protection::evaluate },
    Check { meta: &dev_cap::META, evaluate: dev_cap::evaluate },
];

/// The reason a repo-dependent check gives when no repo scan is stored.
pub const NO_REPO_SCAN: &str = "no repo scan stored for this project";

/// The start of the reason a repo-dependent check gives when the stored repo scan cannot be read.
pub const REPO_ARTIFACT_UNREADABLE: &str = "repo artifact unreadable";

#[cfg(test)]
pub(crate) mod fixtures;
