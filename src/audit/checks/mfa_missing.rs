//! CLERK-MFA-002: a production instance with more users than the threshold offers no second factor at
//! all. Same guards as CLERK-MFA-001 ([`super::mfa_optional::mfa_scope`]).

use serde_json::json;

use super::mfa_optional::{instance_sentence, mfa_scope};
use super::{CheckInput, CheckMeta, Evidence, FailureDraft, Severity, Verdict};

pub const META: CheckMeta = CheckMeta {
    id: "CLERK-MFA-002",
    severity: Severity::Blocker,
    title: "No second factor available",
    why: "No sign-in factor on this instance can be used as a second factor, so no account, admins' \
          included, can be protected by more than one factor: a single phished, reused or leaked password or \
          email code is enough to take it over, and users who want stronger protection cannot turn it on.",
    fix: "In the Clerk dashboard, open the production instance's Multi-factor settings and enable an \
          authenticator app (TOTP) and backup codes (SMS codes as a fallback if you must), then require \
          multi-factor authentication for all users, or at least check for a second factor before admin actions.",
};

pub fn evaluate(input: &CheckInput<'_>) -> Verdict {
    let settings = match mfa_scope(input) {
        Ok(settings) => settings,
        Err(verdict) => return verdict,
    };
    // Required MFA never yields an MFA finding.
    if settings.second_factor_required || !settings.second_factors_available.is_empty() {
        return Verdict::Pass;
    }
    let clerk = format!("{}: no second factor available", instance_sentence(input));
    let details = json!({
        "instance_id": input.facts.instance.id,
        "user_count": input.facts.user_count,
        "threshold": input.settings.mfa_user_threshold,
        "second_factor_required": false,
        "second_factors_available": [],
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
    use crate::audit::facts::{Fact, InstanceEnvironment::*};

    #[test]
    fn meta_is_the_blocker() {
        assert_eq!(META.id, "CLERK-MFA-002");
        assert_eq!(META.severity, Severity::Blocker);
    }

    #[test]
    fn passes_on_a_development_instance() {
        let mut facts = facts(Development);
        facts.user_count = 5000;
        assert_eq!(run(evaluate, &facts), Verdict::Pass);
    }

    #[test]
    fn passes_at_or_below_the_threshold() {
        assert_eq!(run(evaluate, &production(100, settings(false, &[]))), Verdict::Pass);
        assert_eq!(run(evaluate, &production(0, Fact::Unavailable("timeout".into()))), Verdict::Pass);
    }

    #[test]
    fn error_when_settings_are_unavailable() {
        let facts = production(101, Fact::Unavailable("GET /v1/environment timed out".into()));
        assert_eq!(run(evaluate, &facts), Verdict::Error("GET /v1/environment timed out".into()));
    }

    #[test]
    fn error_when_settings_were_not_looked_up_on_production() {
        let facts = production(101, Fact::NotApplicable("development instance".into()));
        assert_eq!(run(evaluate, &facts), Verdict::Error("development instance".into()));
    }

    #[test]
    fn passes_when_mfa_is_required() {
        // Required with no listed factor is odd, but required MFA never yields an MFA finding.
        assert_eq!(run(evaluate, &production(5000, settings(true, &[]))), Verdict::Pass);
    }

    #[test]
    fn passes_when_a_factor_is_available() {
        assert_eq!(run(evaluate, &production(5000, settings(false, &["phone_number"]))), Verdict::Pass);
    }

    #[test]
    fn fails_when_no_factor_is_available() {
        let Verdict::Fail(findings) = run(evaluate, &production(101, settings(false, &[]))) else {
            panic!("expected a failure");
        };
        assert_eq!(findings.len(), 1);
        let finding = &findings[0];
        assert!(finding.identity.is_empty());
        assert_eq!(finding.evidence.repo, None);
        assert_eq!(
            finding.evidence.clerk.as_deref(),
            Some("production instance with 101 users (threshold 100): no second factor available")
        );
        assert_eq!(
            finding.evidence.details,
            json!({"instance_id": "ins_test", "user_count": 101, "threshold": 100,
                   "second_factor_required": false, "second_factors_available": []})
        );
    }

    #[test]
    fn exactly_one_mfa_check_fails_when_mfa_is_not_required() {
        use crate::audit::checks::mfa_optional;
        for available in [&[][..], &["totp"][..]] {
            let facts = production(5000, settings(false, available));
            let input = CheckInput {
                facts: &facts,
                artifact: crate::audit::checks::RepoEvidence::Absent,
                settings: &CheckSettings::default(),
            };
            let fails = [evaluate(&input), mfa_optional::evaluate(&input)]
                .iter()
                .filter(|v| matches!(v, Verdict::Fail(_)))
                .count();
            assert_eq!(fails, 1, "available: {available:?}");
        }
    }
}
