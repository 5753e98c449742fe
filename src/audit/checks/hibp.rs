//! CLERK-HIBP-001: a production instance with password sign-in does not screen passwords against known
//! breaches (`user_settings.password_settings.disable_hibp`).

use serde_json::json;

use super::settings_common::{password_sign_in, production_settings, required, setting_finding};
use super::{CheckInput, CheckMeta, Severity, Verdict};

pub const META: CheckMeta = CheckMeta {
    id: "CLERK-HIBP-001",
    severity: Severity::Warning,
    title: "Breached-password screening disabled",
    why: "Users sign in with passwords, and Clerk's check against the Have I Been Pwned corpus of breached \
          passwords is turned off. Users can then set passwords that are already in attackers' \
          credential-stuffing lists, and those accounts fall to the first automated login attempt that \
          tries them.",
    fix: "In the Clerk dashboard, select the production instance, open User & authentication > Password and \
          turn breached-password protection back on (optionally also enforce it at sign-in, so existing \
          users with a breached password must reset it).",
};

pub fn evaluate(input: &CheckInput<'_>) -> Verdict {
    let settings = match production_settings(input) {
        Ok(settings) => settings,
        Err(verdict) => return verdict,
    };
    if let Err(verdict) = password_sign_in(settings) {
        return verdict;
    }
    match required(&settings.disable_hibp, "user_settings.password_settings.disable_hibp") {
        Ok(false) => Verdict::Pass,
        Ok(true) => setting_finding(
            input,
            "production instance with password sign-in and password_settings.disable_hibp = true".into(),
            "user_settings.password_settings.disable_hibp",
            json!(true),
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
        assert_eq!(META.id, "CLERK-HIBP-001");
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
        let verdict = with(|s| s.password_sign_in = None);
        assert_eq!(
            verdict,
            Verdict::Error("the Frontend API environment has no user_settings.attributes.password".into())
        );
    }

    #[test]
    fn passes_without_password_sign_in_even_if_screening_is_off() {
        assert_eq!(
            with(|s| {
                s.password_sign_in = Some(false);
                s.disable_hibp = Some(true);
            }),
            Verdict::Pass
        );
    }

    #[test]
    fn error_when_the_field_is_absent() {
        let verdict = with(|s| s.disable_hibp = None);
        assert_eq!(
            verdict,
            Verdict::Error("the Frontend API environment has no user_settings.password_settings.disable_hibp".into())
        );
    }

    #[test]
    fn passes_when_screening_is_on() {
        assert_eq!(with(|_| {}), Verdict::Pass);
    }

    #[test]
    fn fails_when_screening_is_off() {
        let Verdict::Fail(findings) = with(|s| s.disable_hibp = Some(true)) else { panic!("expected a failure") };
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].evidence.details["setting"], "user_settings.password_settings.disable_hibp");
    }
}
