//! CLERK-BOT-001: a production instance open to sign-ups has no bot protection
//! (`user_settings.sign_up.captcha_enabled` false while `user_settings.sign_up.mode` is `public`).

use serde_json::json;

use super::settings_common::{production_settings, required, setting_finding};
use super::{CheckInput, CheckMeta, Severity, Verdict};

pub const META: CheckMeta = CheckMeta {
    id: "CLERK-BOT-001",
    severity: Severity::Warning,
    title: "Bot protection disabled on open sign-up",
    why: "Anyone can sign up and Clerk's bot protection (the CAPTCHA challenge on sign-up) is turned off, so \
          scripts can create accounts in bulk: fake sign-ups that skew metrics, abuse free tiers and trials, \
          and run up the SMS and email verification costs billed to you.",
    fix: "In the Clerk dashboard, select the production instance, open Configure > Attack protection and \
          enable bot sign-up protection. If sign-up should not be open, switch the sign-up mode to \
          restricted or waitlist instead.",
};

/// The sign-up mode in which anyone may create an account.
const OPEN_SIGN_UP: &str = "public";

pub fn evaluate(input: &CheckInput<'_>) -> Verdict {
    let settings = match production_settings(input) {
        Ok(settings) => settings,
        Err(verdict) => return verdict,
    };
    match required(&settings.captcha_enabled, "user_settings.sign_up.captcha_enabled") {
        Ok(true) => return Verdict::Pass,
        Ok(false) => {}
        Err(verdict) => return verdict,
    }
    match required(&settings.sign_up_mode, "user_settings.sign_up.mode") {
        Ok(mode) if mode == OPEN_SIGN_UP => setting_finding(
            input,
            "production instance with sign_up.mode = 'public' and sign_up.captcha_enabled = false".into(),
            "user_settings.sign_up.captcha_enabled",
            json!(false),
        ),
        // Restricted or waitlist sign-up: accounts cannot be created in bulk.
        Ok(_) => Verdict::Pass,
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
        assert_eq!(META.id, "CLERK-BOT-001");
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
    fn error_when_captcha_is_absent() {
        assert_eq!(
            with(|s| s.captcha_enabled = None),
            Verdict::Error("the Frontend API environment has no user_settings.sign_up.captcha_enabled".into())
        );
    }

    #[test]
    fn passes_when_captcha_is_on() {
        assert_eq!(with(|s| s.sign_up_mode = None), Verdict::Pass);
    }

    #[test]
    fn error_when_captcha_is_off_and_the_mode_is_absent() {
        assert_eq!(
            with(|s| {
                s.captcha_enabled = Some(false);
                s.sign_up_mode = None;
            }),
            Verdict::Error("the Frontend API environment has no user_settings.sign_up.mode".into())
        );
    }

    #[test]
    fn passes_when_sign_up_is_not_open() {
        for mode in ["restricted", "waitlist"] {
            let verdict = with(|s| {
                s.captcha_enabled = Some(false);
                s.sign_up_mode = Some(mode.into());
            });
            assert_eq!(verdict, Verdict::Pass, "{mode}");
        }
    }

    #[test]
    fn fails_when_open_sign_up_has_no_captcha() {
        let Verdict::Fail(findings) = with(|s| s.captcha_enabled = Some(false)) else { panic!("expected a failure") };
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].evidence.details["setting"], "user_settings.sign_up.captcha_enabled");
    }
}
