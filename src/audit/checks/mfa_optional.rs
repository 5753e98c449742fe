//! CLERK-MFA-001: a production instance with more users than the threshold offers a second factor but
//! does not require one.
//!
//! [`mfa_scope`] holds the guards it shares with CLERK-MFA-002, so the two checks always agree on when MFA
//! is judged at all: exactly one of them fails when MFA is not required, never both.

use serde_json::json;

use super::{CheckInput, CheckMeta, Evidence, FailureDraft, Severity, Verdict};
use crate::audit::facts::{AuthSettings, Fact};

pub const META: CheckMeta = CheckMeta {
    id: "CLERK-MFA-001",
    severity: Severity::Warning,
    title: "MFA available but not required",
    why: "Users can enroll a second factor, but nothing makes them, and most never do: their accounts, \
          admins' included, fall to a single phished, reused or leaked password or email code. With this many \
          real users, credential-stuffing and phishing attempts are a matter of when, not if.",
    fix: "In the Clerk dashboard, open the production instance's Multi-factor settings and require \
          multi-factor authentication for all users, so each one sets up a second factor at their next sign-in. \
          If you cannot require it for everyone yet, at least check for a second factor in your app before \
          admin or billing actions.",
};

/// The MFA checks' shared guards. `Ok(settings)` when MFA is to be judged: a production instance with more
/// users than the threshold whose settings are known. Otherwise the verdict to return: `Pass` when MFA
/// does not apply, `Error` when the settings could not be had.
pub(super) fn mfa_scope<'a>(input: &CheckInput<'a>) -> Result<&'a AuthSettings, Verdict> {
    if !input.facts.is_production() {
        return Err(Verdict::Pass);
    }
    if input.facts.user_count <= input.settings.mfa_user_threshold {
        return Err(Verdict::Pass);
    }
    match &input.facts.auth_settings {
        Fact::Known(settings) => Ok(settings),
        // A production instance's settings always apply; not having looked them up is an error too.
        Fact::Unavailable(reason) | Fact::NotApplicable(reason) => Err(Verdict::Error(reason.clone())),
    }
}

/// The Clerk-side sentence both MFA checks open with.
pub(super) fn instance_sentence(input: &CheckInput<'_>) -> String {
    format!(
        "production instance with {} users (threshold {})",
        input.facts.user_count, input.settings.mfa_user_threshold
    )
}

pub fn evaluate(input: &CheckInput<'_>) -> Verdict {
    let settings = match mfa_scope(input) {
        Ok(settings) => settings,
        Err(verdict) => return verdict,
    };
    if settings.second_factor_required || settings.second_factors_available.is_empty() {
        // Required MFA is what we want; no factor at all is CLERK-MFA-002's finding.
        return Verdict::Pass;
    }
    let clerk = format!(
        "{}: second factor available ({}) but not required",
        instance_sentence(input),
        settings.second_factors_available.join(", ")
    );
    let details = json!({
        "instance_id": input.facts.instance.id,
        "user_count": input.facts.user_count,
        "threshold": input.settings.mfa_user_threshold,
        "second_factor_required": false,
        "second_factors_available": settings.second_factors_available,
    });
    Verdict::Fail(vec![FailureDraft {
        evidence: Evidence { repo: None, clerk: Some(clerk), details },
        identity: vec![],
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checks::CheckSettings;
    use crate::audit::checks::fixtures::facts;
    use crate::audit::checks::fixtures::run;
    use crate::audit::checks::fixtures::{mfa_settings as settings, production_with_users as production};
    use crate::audit::facts::InstanceEnvironment::*;

    #[test]
    fn meta_is_a_warning() {
        assert_eq!(META.id, "CLERK-MFA-001");
        assert_eq!(META.severity, Severity::Warning);
    }

    #[test]
    fn passes_on_a_development_instance() {
        let mut facts = facts(Development);
        facts.user_count = 5000;
        assert_eq!(run(evaluate, &facts), Verdict::Pass);
    }

    #[test]
    fn passes_at_or_below_the_threshold_even_without_settings() {
        assert_eq!(run(evaluate, &production(100, settings(false, &["totp"]))), Verdict::Pass);
        assert_eq!(run(evaluate, &production(100, Fact::Unavailable("timeout".into()))), Verdict::Pass);
        let custom = CheckSettings { mfa_user_threshold: 500 };
        let facts = production(400, settings(false, &["totp"]));
        assert_eq!(
            evaluate(&CheckInput {
                facts: &facts,
                artifact: crate::audit::checks::RepoEvidence::Absent,
                settings: &custom
            }),
            Verdict::Pass
        );
    }

    #[test]
    fn error_when_settings_are_unavailable() {
        let facts = production(101, Fact::Unavailable("Frontend API host refused: private address".into()));
        assert_eq!(run(evaluate, &facts), Verdict::Error("Frontend API host refused: private address".into()));
    }

    #[test]
    fn error_when_settings_were_not_looked_up_on_production() {
        let facts = production(101, Fact::NotApplicable("no primary domain".into()));
        assert_eq!(run(evaluate, &facts), Verdict::Error("no primary domain".into()));
    }

    #[test]
    fn passes_when_mfa_is_required() {
        assert_eq!(run(evaluate, &production(5000, settings(true, &["totp"]))), Verdict::Pass);
    }

    #[test]
    fn passes_when_no_factor_is_available() {
        assert_eq!(run(evaluate, &production(5000, settings(false, &[]))), Verdict::Pass);
    }

    #[test]
    fn fails_when_a_factor_is_available_but_optional() {
        let facts = production(2350, settings(false, &["backup_code", "totp"]));
        let Verdict::Fail(findings) = run(evaluate, &facts) else { panic!("expected a failure") };
        assert_eq!(findings.len(), 1);
        let finding = &findings[0];
        assert!(finding.identity.is_empty());
        assert_eq!(finding.evidence.repo, None);
        assert_eq!(
            finding.evidence.clerk.as_deref(),
            Some(
                "production instance with 2350 users (threshold 100): second factor available (backup_code, totp) but not required"
            )
        );
        assert_eq!(
            finding.evidence.details,
            json!({"instance_id": "ins_test", "user_count": 2350, "threshold": 100,
                   "second_factor_required": false, "second_factors_available": ["backup_code", "totp"]})
        );
    }
}
