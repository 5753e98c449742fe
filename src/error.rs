//! Typed job errors: transient (retry later) or permanent (report at once, never retry).

use std::time::Duration;

/// The reason codes of a `clerk.audit.failed` event (`reason` in `contracts/clerk-audit-failed-data.v1.schema.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    CredentialNotFound,
    CredentialRevoked,
    CredentialUndecryptable,
    ClerkKeyRejected,
    ClerkUnavailable,
    Internal,
}

impl FailureReason {
    pub fn code(self) -> &'static str {
        match self {
            FailureReason::CredentialNotFound => "credential_not_found",
            FailureReason::CredentialRevoked => "credential_revoked",
            FailureReason::CredentialUndecryptable => "credential_undecryptable",
            FailureReason::ClerkKeyRejected => "clerk_key_rejected",
            FailureReason::ClerkUnavailable => "clerk_unavailable",
            FailureReason::Internal => "internal",
        }
    }

    /// A message the customer can act on. Never includes request details or secrets.
    pub fn customer_message(self) -> &'static str {
        match self {
            FailureReason::CredentialNotFound => {
                "no Clerk secret key is connected for this project: connect the Clerk instance again in the project settings"
            }
            FailureReason::CredentialRevoked => {
                "the connected Clerk secret key was removed: connect the Clerk instance again to resume audits"
            }
            FailureReason::CredentialUndecryptable => {
                "the stored Clerk secret key could not be decrypted: paste the secret key again in the project settings"
            }
            FailureReason::ClerkKeyRejected => {
                "the Clerk secret key was rejected: paste a new one from the Clerk dashboard (API keys)"
            }
            FailureReason::ClerkUnavailable => {
                "Clerk could not be reached for this scan: it will be audited again on the next scan"
            }
            FailureReason::Internal => "the audit failed on our side: it will be retried on the next scan",
        }
    }
}

/// Why a job did not complete.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Retrying later may succeed (throttling, 5xx, timeouts, a database or broker outage).
    #[error("transient failure ({reason_code}): {detail}", reason_code = .reason.code())]
    Transient {
        /// What to report if the attempts run out.
        reason: FailureReason,
        detail: String,
        /// The earliest time a retry makes sense (a long Retry-After).
        retry_after: Option<Duration>,
    },
    /// No retry can fix it.
    #[error("permanent failure ({reason_code}): {detail}", reason_code = .reason.code())]
    Permanent { reason: FailureReason, detail: String },
}

impl JobError {
    pub fn transient(reason: FailureReason, detail: impl Into<String>) -> Self {
        JobError::Transient { reason, detail: detail.into(), retry_after: None }
    }

    pub fn permanent(reason: FailureReason, detail: impl Into<String>) -> Self {
        JobError::Permanent { reason, detail: detail.into() }
    }

    pub fn reason(&self) -> FailureReason {
        match self {
            JobError::Transient { reason, .. } | JobError::Permanent { reason, .. } => *reason,
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, JobError::Transient { .. })
    }
}

impl From<tokio_postgres::Error> for JobError {
    fn from(error: tokio_postgres::Error) -> Self {
        JobError::transient(FailureReason::Internal, format!("database: {error}"))
    }
}

impl From<deadpool_postgres::PoolError> for JobError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        JobError::transient(FailureReason::Internal, format!("database pool: {error}"))
    }
}
