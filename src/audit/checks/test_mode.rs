//! CLERK-TESTMODE-001: a production instance has test mode on (`auth_config.test_mode`).

use serde_json::json;

use super::settings_common::{production_settings, required, setting_finding};
use super::{CheckInput, CheckMeta, Severity, Verdict};

pub const META: CheckMeta = CheckMeta {
    id: "CLERK-TESTMODE-001",
    severity: Severity::Blocker,
    title: "Test mode enabled on the production instance",
    why: "With test mode on, Clerk accepts its test email addresses (anything+clerk_test@...) and test phone \
          numbers (+1 (XXX) 555-0100 to 0199) with the fixed verification code 424242. On a production \
          instance that means anyone can create and verify accounts, and sign in to existing test-address \
          accounts, without access to any inbox or phone: a verification bypass on real traffic.",
    fix: "In the Clerk dashboard, select the production instance, open Settings and turn Test mode off. Run \
          end-to-end tests against a development or staging instance instead, or with testing tokens.",
};

pub fn evaluate(input: &CheckInput<'_>) -> Verdict {
    let settings = match production_settings(input) {
        Ok(settings) => settings,
        Err(verdict) => return verdict,
    };
    match required(&settings.test_mode, "auth_config.test_mode") {
        Ok(false) => Verdict::Pass,
        Ok(true) => setting_finding(
            input,
            "production instance with auth_config.test_mode = true".into(),
            "auth_config.test_mode",
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
    fn meta_is_a_blocker() {
        assert_eq!(META.id, "CLERK-TESTMODE-001");
        assert_eq!(META.severity, Severity::Blocker);
    }

    #[test]
    fn passes_on_a_development_instance() {
        assert_eq!(run(evaluate, &facts(InstanceEnvironment::Development)), Verdict::Pass);
    }

    #[test]
    fn error_when_settings_are_unavailable() {
        let verdict = run(evaluate, &production(Fact::Unavailable("Frontend API environment: timed out".into())));
        assert_eq!(verdict, Verdict::Error("Frontend API environment: timed out".into()));
    }

    #[test]
    fn error_when_the_field_is_absent() {
        assert_eq!(
            with(|s| s.test_mode = None),
            Verdict::Error("the Frontend API environment has no auth_config.test_mode".into())
        );
    }

    #[test]
    fn passes_when_test_mode_is_off() {
        assert_eq!(with(|_| {}), Verdict::Pass);
    }

    #[test]
    fn fails_when_test_mode_is_on() {
        let Verdict::Fail(findings) = with(|s| s.test_mode = Some(true)) else { panic!("expected a failure") };
        assert_eq!(findings.len(), 1);
        assert!(findings[0].identity.is_empty());
        assert_eq!(
            findings[0].evidence.clerk.as_deref(),
            Some("production instance with auth_config.test_mode = true")
        );
        assert_eq!(findings[0].evidence.details["setting"], "auth_config.test_mode");
    }
}
