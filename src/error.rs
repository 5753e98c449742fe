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

/// Whether a PostgreSQL error class is worth retrying, by SQLSTATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorClass {
    /// The database or the connection was unavailable, or the transaction lost a race: a retry may pass.
    Transient,
    /// The statement or the data is wrong (a bug or a schema mismatch): every retry fails the same way.
    Permanent,
}

/// Classifies a SQLSTATE: connection exceptions (`08`), serialization failure (`40001`), deadlock (`40P01`),
/// transaction rollback (`40`), insufficient resources (`53`, e.g. too many connections `53300`), lock not
/// available (`55P03`), operator intervention (`57`, admin/crash shutdown, query canceled), system errors
/// (`58`) are transient; everything else (constraint violations `23`, syntax and undefined objects `42`,
/// data exceptions `22`, ...) is permanent.
pub fn classify_sqlstate(code: &str) -> DbErrorClass {
    let transient = code.starts_with("08")
        || code.starts_with("40")
        || code.starts_with("53")
        || code == "55P03"
        || code == "55006"
        || code.starts_with("57")
        || code.starts_with("58");
    if transient { DbErrorClass::Transient } else { DbErrorClass::Permanent }
}

impl From<tokio_postgres::Error> for JobError {
    fn from(error: tokio_postgres::Error) -> Self {
        // No SQLSTATE: the connection broke or could not be made, which a retry may fix.
        match error.code().map(|state| classify_sqlstate(state.code())) {
            Some(DbErrorClass::Permanent) => {
                JobError::permanent(FailureReason::Internal, format!("database (permanent): {error}"))
            }
            _ => JobError::transient(FailureReason::Internal, format!("database: {error}")),
        }
    }
}

impl From<deadpool_postgres::PoolError> for JobError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        JobError::transient(FailureReason::Internal, format!("database pool: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_that_a_retry_can_fix_are_transient() {
        for code in [
            "08000", "08003", "08006", "08001", "08004", "40001", "40P01", "40000", "53300", "53200", "55P03", "57P01",
            "57P02", "57P03", "57014", "58000",
        ] {
            assert_eq!(classify_sqlstate(code), DbErrorClass::Transient, "{code}");
        }
    }

    #[test]
    fn sqlstates_of_bugs_are_permanent() {
        for code in
            ["23505", "23503", "23502", "23514", "42601", "42P01", "42703", "42883", "22P02", "22001", "0A000", "XX000"]
        {
            assert_eq!(classify_sqlstate(code), DbErrorClass::Permanent, "{code}");
        }
    }
}
