//! CLERK-LOCKOUT-001: a production instance with password sign-in does not lock accounts after repeated
//! failed attempts (`user_settings.attack_protection.user_lockout.enabled`).

use serde_json::json;

use super::settings_common::{password_sign_in, production_settings, required, setting_finding};
use super::{CheckInput, CheckMeta, Severity, Verdict};

pub const META: CheckMeta = CheckMeta {
    id: "CLERK-LOCKOUT-001",
    severity: Severity::Warning,
    title: "Account lockout disabled",
    why: "Users sign in with passwords and Clerk's user lockout is turned off, so nothing stops an attacker \
          from guessing one account's password again and again: online brute force and password spraying \
          are limited only by request rate limits.",
    fix: "In the Clerk dashboard, select the production instance, open User & authentication > Attack \
          protection and enable user lockout (Clerk's default locks an account for an hour after 100 failed \
          attempts; lower the attempts for sensitive apps).",
};

pub fn evaluate(input: &CheckInput<'_>) -> Verdict {
    let settings = match production_settings(input) {
        Ok(settings) => settings,
        Err(verdict) => return verdict,
    };
    if let Err(verdict) = password_sign_in(settings) {
        return verdict;
    }
    match required(&settings.user_lockout_enabled, "user_settings.attack_protection.user_lockout.enabled") {
        Ok(true) => Verdict::Pass,
        Ok(false) => setting_finding(
            input,
            "production instance with password sign-in and attack_protection.user_lockout.enabled = false".into(),
            "user_settings.attack_protection.user_lockout.enabled",
            json!(false),
        ),
        Err(verdict) => verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checks::fixtures::facts;
    use crate::audit::checks::fixtures::run;
    use crate::audit::checks::settings_common::tests::{production, safe_settings};
    use crate::audit::facts::{AuthSettings, Fact, InstanceEnvironment};

    fn with(change: impl FnOnce(&mut AuthSettings)) -> Verdict {
        let mut settings = safe_settings();
        change(&mut settings);
        run(evaluate, &production(Fact::Known(settings)))
    }

    #[test]
    fn meta_is_a_warning() {
        assert_eq!(META.id, "CLERK-LOCKOUT-001");
        assert_eq!(META.severity, Severity::Warning);
    }

    #[test]
    fn passes_on_a_development_instance() {
        assert_eq!(run(evaluate, &facts(InstanceEnvironment::Development)), Verdict::Pass);
    }

    #[test]
    fn error_when_settings_are_unavailable() {
        assert_eq!(run(evaluate, &production(Fact::Unavailable("x".into()))), Verdict::Error("x".into()));
    }

    #[test]
    fn error_when_password_sign_in_is_unknown() {
        assert!(matches!(with(|s| s.password_sign_in = None), Verdict::Error(_)));
    }

    #[test]
    fn passes_without_password_sign_in() {
        assert_eq!(
            with(|s| {
                s.password_sign_in = Some(false);
                s.user_lockout_enabled = Some(false);
            }),
            Verdict::Pass
        );
    }

    #[test]
    fn error_when_the_field_is_absent() {
        assert_eq!(
            with(|s| s.user_lockout_enabled = None),
            Verdict::Error(
                "the Frontend API environment has no user_settings.attack_protection.user_lockout.enabled".into()
            )
        );
    }

    #[test]
    fn passes_when_lockout_is_on() {
        assert_eq!(with(|_| {}), Verdict::Pass);
    }

    #[test]
    fn fails_when_lockout_is_off() {
        let Verdict::Fail(findings) = with(|s| s.user_lockout_enabled = Some(false)) else {
            panic!("expected a failure")
        };
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].evidence.details["value"], false);
    }
}
