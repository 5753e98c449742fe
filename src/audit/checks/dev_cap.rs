//! CLERK-DEVCAP-001: a development instance is within 10% of Clerk's cap on development users.

use serde_json::json;

use super::{CheckInput, CheckMeta, Evidence, FailureDraft, Severity, Verdict};
use crate::audit::facts::InstanceEnvironment;

/// How many users Clerk allows on a development instance.
pub const DEV_USER_CAP: u64 = 100;
/// The finding starts this many users below the cap (10% of it).
pub const MARGIN: u64 = DEV_USER_CAP / 10;

pub const META: CheckMeta = CheckMeta {
    id: "CLERK-DEVCAP-001",
    severity: Severity::Warning,
    title: "Development instance close to its user cap",
    why: "Clerk caps development instances at 100 users. An instance this close to the cap is holding real \
          users, not test accounts: it is being used as production, with development-instance security \
          (shared OAuth credentials, relaxed verification, development browser tokens), and sign-ups will \
          start failing when the cap is reached.",
    fix: "Create a production instance in the Clerk dashboard (it can copy this instance's settings), point \
          the deployed app at its pk_live_/sk_live_ keys and migrate the users. Keep the development instance \
          for local testing only, and delete test users you no longer need.",
};

pub fn evaluate(input: &CheckInput<'_>) -> Verdict {
    if input.facts.instance.environment != InstanceEnvironment::Development {
        return Verdict::Pass;
    }
    let users = input.facts.user_count;
    if users < DEV_USER_CAP - MARGIN {
        return Verdict::Pass;
    }
    let clerk = format!("development instance with {users} users (cap {DEV_USER_CAP})");
    let details = json!({
        "instance_id": input.facts.instance.id,
        "user_count": users,
        "cap": DEV_USER_CAP,
        "threshold": DEV_USER_CAP - MARGIN,
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
    use crate::audit::facts::InstanceEnvironment::*;

    fn run(environment: InstanceEnvironment, users: u64) -> Verdict {
        let mut facts = facts(environment);
        facts.user_count = users;
        evaluate(&CheckInput {
            facts: &facts,
            artifact: crate::audit::checks::RepoEvidence::Absent,
            settings: &CheckSettings::default(),
        })
    }

    #[test]
    fn meta_is_a_warning() {
        assert_eq!(META.id, "CLERK-DEVCAP-001");
        assert_eq!(META.severity, Severity::Warning);
    }

    #[test]
    fn passes_on_other_instance_kinds() {
        assert_eq!(run(Production, 5000), Verdict::Pass);
        assert_eq!(run(Staging, 95), Verdict::Pass);
    }

    #[test]
    fn passes_below_ninety_users() {
        assert_eq!(run(Development, 89), Verdict::Pass);
    }

    #[test]
    fn fails_from_ninety_users() {
        let Verdict::Fail(findings) = run(Development, 90) else { panic!("expected a failure") };
        assert_eq!(findings[0].evidence.clerk.as_deref(), Some("development instance with 90 users (cap 100)"));
        assert!(findings[0].identity.is_empty());
        assert!(matches!(run(Development, 100), Verdict::Fail(_)));
    }
}
