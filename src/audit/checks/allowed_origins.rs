//! CLERK-ORIGIN-001: a production instance allows local or plain-HTTP origins (`allowed_origins` of
//! `GET /v1/instance`).

use serde_json::json;

use super::{CheckInput, CheckMeta, Evidence, FailureDraft, Severity, Verdict};

pub const META: CheckMeta = CheckMeta {
    id: "CLERK-ORIGIN-001",
    severity: Severity::Warning,
    title: "Production instance allows local or plain-HTTP origins",
    why: "The production instance's allowed origins include localhost, 127.0.0.1 or an http:// origin. \
          Sessions of real users can then be requested from a page served on the user's machine or over an \
          unencrypted connection, where any local process or anyone on the network path can read or inject \
          it; such entries are usually development leftovers that widen who can drive the production \
          Frontend API with a user's cookies.",
    fix: "Remove the localhost, 127.0.0.1 and http:// entries from the production instance's allowed origins \
          (Backend API PATCH /v1/instance with the https origins you serve, or the Clerk dashboard). Use a \
          development instance for local work.",
};

/// Why an origin is unsafe for production, if it is.
fn problem(origin: &str) -> Option<&'static str> {
    let lower = origin.trim().to_ascii_lowercase();
    let host = match url::Url::parse(&lower) {
        Ok(url) => url.host_str().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned()),
        Err(_) => None,
    };
    let host = host.as_deref().unwrap_or(lower.as_str());
    if host == "localhost" || host.ends_with(".localhost") {
        Some("localhost")
    } else if host.starts_with("127.") || host == "::1" {
        Some("loopback address")
    } else if lower.starts_with("http://") {
        Some("plain http")
    } else {
        None
    }
}

pub fn evaluate(input: &CheckInput<'_>) -> Verdict {
    if !input.facts.is_production() {
        return Verdict::Pass;
    }
    let Some(origins) = &input.facts.instance.allowed_origins else {
        return Verdict::Error("GET /v1/instance answered without allowed_origins".into());
    };
    let findings: Vec<FailureDraft> = origins
        .iter()
        .filter_map(|origin| problem(origin).map(|why| (origin, why)))
        .map(|(origin, why)| FailureDraft {
            evidence: Evidence {
                repo: None,
                clerk: Some(format!("production instance allows origin {origin} ({why})")),
                details: json!({
                    "instance_id": input.facts.instance.id,
                    "origin": origin,
                    "problem": why,
                }),
            },
            identity: vec![origin.clone()],
        })
        .collect();
    if findings.is_empty() { Verdict::Pass } else { Verdict::Fail(findings) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checks::CheckSettings;
    use crate::audit::checks::fixtures::facts;
    use crate::audit::facts::InstanceEnvironment::{self, *};

    fn run(environment: InstanceEnvironment, origins: Option<&[&str]>) -> Verdict {
        let mut facts = facts(environment);
        facts.instance.allowed_origins = origins.map(|o| o.iter().map(|s| s.to_string()).collect());
        evaluate(&CheckInput {
            facts: &facts,
            artifact: crate::audit::checks::RepoEvidence::Absent,
            settings: &CheckSettings::default(),
        })
    }

    #[test]
    fn meta_is_a_warning() {
        assert_eq!(META.id, "CLERK-ORIGIN-001");
        assert_eq!(META.severity, Severity::Warning);
    }

    #[test]
    fn passes_on_a_development_instance() {
        assert_eq!(run(Development, Some(&["http://localhost:3000"])), Verdict::Pass);
    }

    #[test]
    fn error_when_the_field_is_absent() {
        assert_eq!(run(Production, None), Verdict::Error("GET /v1/instance answered without allowed_origins".into()));
    }

    #[test]
    fn passes_with_https_origins_or_none() {
        assert_eq!(run(Production, Some(&["https://acme.com", "https://www.acme.com"])), Verdict::Pass);
        assert_eq!(run(Production, Some(&[])), Verdict::Pass);
    }

    #[test]
    fn fails_once_per_unsafe_origin() {
        let origins = ["https://acme.com", "http://localhost:3000", "https://127.0.0.1:8443", "http://acme.com"];
        let Verdict::Fail(findings) = run(Production, Some(&origins)) else { panic!("expected a failure") };
        let identities: Vec<_> = findings.iter().map(|f| f.identity.clone()).collect();
        assert_eq!(
            identities,
            vec![vec!["http://localhost:3000"], vec!["https://127.0.0.1:8443"], vec!["http://acme.com"]]
        );
        assert_eq!(
            findings[0].evidence.clerk.as_deref(),
            Some("production instance allows origin http://localhost:3000 (localhost)")
        );
        assert_eq!(findings[2].evidence.details["problem"], "plain http");
    }
}
