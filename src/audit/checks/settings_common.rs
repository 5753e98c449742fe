//! What the checks of a production instance's Frontend API settings (CLERK-TESTMODE-001, CLERK-HIBP-001,
//! CLERK-LOCKOUT-001, CLERK-BOT-001) share: the guard that decides whether the settings are judged, and the
//! rule that a field missing from the answer is an `error`, never a pass.

use serde_json::json;

use super::{CheckInput, Evidence, FailureDraft, Verdict};
use crate::audit::facts::{AuthSettings, Fact};

/// The settings of a production instance, or the verdict to give: `Pass` for any other instance kind
/// (these settings only put real users at risk in production), `Error` when the settings could not be had.
pub fn production_settings<'a>(input: &CheckInput<'a>) -> Result<&'a AuthSettings, Verdict> {
    if !input.facts.is_production() {
        return Err(Verdict::Pass);
    }
    match &input.facts.auth_settings {
        Fact::Known(settings) => Ok(settings),
        // A production instance's settings always apply; not having looked them up is an error too.
        Fact::Unavailable(reason) | Fact::NotApplicable(reason) => Err(Verdict::Error(reason.clone())),
    }
}

/// A setting the check needs: `Error` naming the field when the Frontend API's answer lacked it.
pub fn required<T: Clone>(value: &Option<T>, field: &str) -> Result<T, Verdict> {
    value.clone().ok_or_else(|| Verdict::Error(format!("the Frontend API environment has no {field}")))
}

/// Password sign-in is on: the guard of the password checks. `Ok(())` when it is, the verdict otherwise.
pub fn password_sign_in(settings: &AuthSettings) -> Result<(), Verdict> {
    if required(&settings.password_sign_in, "user_settings.attributes.password")? {
        Ok(())
    } else {
        // Without password sign-in there is no password to screen or to guess.
        Err(Verdict::Pass)
    }
}

/// The one finding of an instance-wide setting: a Clerk sentence and the setting's path and value.
pub fn setting_finding(input: &CheckInput<'_>, clerk: String, setting: &str, value: serde_json::Value) -> Verdict {
    let details = json!({
        "instance_id": input.facts.instance.id,
        "instance_environment": input.facts.instance.environment.as_str(),
        "setting": setting,
        "value": value,
    });
    Verdict::Fail(vec![FailureDraft {
        evidence: Evidence { repo: None, clerk: Some(clerk), details },
        identity: vec![],
    }])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::audit::checks::CheckSettings;
    use crate::audit::checks::fixtures::facts;
    use crate::audit::facts::{ClerkFacts, InstanceEnvironment};

    /// A production instance whose settings are all known and safe; tests change one field.
    pub fn safe_settings() -> AuthSettings {
        AuthSettings {
            second_factor_required: true,
            second_factors_available: vec!["authenticator_app".into()],
            test_mode: Some(false),
            password_sign_in: Some(true),
            disable_hibp: Some(false),
            user_lockout_enabled: Some(true),
            captcha_enabled: Some(true),
            sign_up_mode: Some("public".into()),
        }
    }

    pub fn production(settings: Fact<AuthSettings>) -> ClerkFacts {
        let mut facts = facts(InstanceEnvironment::Production);
        facts.auth_settings = settings;
        facts
    }

    #[test]
    fn guard_passes_other_kinds_and_errors_without_settings() {
        let settings = CheckSettings::default();
        for environment in [InstanceEnvironment::Development, InstanceEnvironment::Staging] {
            let facts = facts(environment);
            let input =
                CheckInput { facts: &facts, artifact: crate::audit::checks::RepoEvidence::Absent, settings: &settings };
            assert_eq!(production_settings(&input), Err(Verdict::Pass));
        }
        let facts = production(Fact::Unavailable("timeout".into()));
        let input =
            CheckInput { facts: &facts, artifact: crate::audit::checks::RepoEvidence::Absent, settings: &settings };
        assert_eq!(production_settings(&input), Err(Verdict::Error("timeout".into())));
        assert_eq!(
            required::<bool>(&None, "x.y"),
            Err(Verdict::Error("the Frontend API environment has no x.y".into()))
        );
    }
}
