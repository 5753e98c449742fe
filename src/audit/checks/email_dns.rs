//! CLERK-EMAIL-001: on a production instance, the email sender records Clerk asks for (`clkmail`,
//! `clk._domainkey`, `clk2._domainkey` among the primary domain's `cname_targets`) do not resolve to their
//! expected targets. One finding per bad record, identified by its host.

use std::collections::BTreeSet;

use serde_json::json;

use super::{CheckInput, CheckMeta, Evidence, FailureDraft, Severity, Verdict};
use crate::audit::facts::{DnsObservation, DnsRecordStatus, Fact};

pub const META: CheckMeta = CheckMeta {
    id: "CLERK-EMAIL-001",
    severity: Severity::Warning,
    title: "Email sender DNS records not verified",
    why: "Clerk sends verification codes, magic links and password-reset emails from your domain. Without \
          the clkmail and DKIM records pointing at Clerk, those emails fail SPF/DKIM alignment and land in \
          spam or are rejected, so new users cannot verify their address and existing ones cannot recover \
          their accounts.",
    fix: "At your DNS provider, create each CNAME record listed for the production instance in the Clerk \
          dashboard (Configure > Domains) with exactly the target shown, as DNS-only records (not proxied, \
          e.g. grey cloud on Cloudflare), remove any conflicting record for the same name, then verify the \
          domain in the Clerk dashboard.",
};

/// The sender record names (first labels) this check looks at.
const SENDER_LABELS: [&str; 3] = ["clkmail", "clk._domainkey", "clk2._domainkey"];

/// The reason when the primary domain lists none of the sender records.
pub const NO_SENDER_RECORDS: &str = "the primary domain lists no email sender records";

fn is_sender_record(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    SENDER_LABELS
        .iter()
        .any(|label| host.strip_prefix(label).is_some_and(|rest| rest.is_empty() || rest.starts_with('.')))
}

/// The one-line Clerk-side sentence for a record DNS does not confirm; `None` for a good or unknown one.
fn problem_sentence(record: &DnsRecordStatus) -> Option<String> {
    let (host, expected) = (&record.host, &record.expected);
    match &record.observation {
        DnsObservation::Missing => {
            Some(format!("{host} has no CNAME record in DNS; Clerk expects it to point at {expected}"))
        }
        DnsObservation::Mismatch { found } if found.is_empty() => {
            Some(format!("{host} does not point at {expected}, the CNAME target Clerk expects"))
        }
        DnsObservation::Mismatch { found } => {
            Some(format!("{host} points at {} in DNS; Clerk expects {expected}", found.join(", ")))
        }
        DnsObservation::Matches | DnsObservation::LookupFailed { .. } => None,
    }
}

pub fn evaluate(input: &CheckInput<'_>) -> Verdict {
    if !input.facts.is_production() {
        return Verdict::Pass;
    }
    let records = match &input.facts.email_dns {
        Fact::Known(records) => records,
        // A production instance's sender records always apply; not having looked them up is an error too.
        Fact::Unavailable(reason) | Fact::NotApplicable(reason) => {
            return Verdict::Error(reason.clone());
        }
    };
    let senders: Vec<&DnsRecordStatus> = records.iter().filter(|r| is_sender_record(&r.host)).collect();
    if senders.is_empty() {
        return Verdict::Skipped(NO_SENDER_RECORDS.into());
    }

    let domain = input.facts.primary_domain.as_ref().map(|d| d.name.as_str());
    let mut seen = BTreeSet::new();
    let findings: Vec<FailureDraft> = senders
        .iter()
        .filter_map(|record| {
            let sentence = problem_sentence(record)?;
            let host = record.host.to_ascii_lowercase();
            if !seen.insert(host.clone()) {
                return None; // the same record listed twice is one problem
            }
            Some(FailureDraft {
                evidence: Evidence {
                    repo: None,
                    clerk: Some(sentence),
                    details: json!({
                        "domain": domain,
                        "host": record.host,
                        "expected": record.expected,
                        "observation": record.observation,
                    }),
                },
                identity: vec![host],
            })
        })
        .collect();
    if !findings.is_empty() {
        return Verdict::Fail(findings);
    }

    let failed: Vec<String> = senders
        .iter()
        .filter_map(|record| match &record.observation {
            DnsObservation::LookupFailed { reason } => Some(format!("{} ({reason})", record.host)),
            _ => None,
        })
        .collect();
    if !failed.is_empty() {
        return Verdict::Error(format!("DNS lookup failed for {}", failed.join("; ")));
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::audit::checks::fixtures::facts;
    use crate::audit::checks::fixtures::run;
    use crate::audit::facts::{ClerkFacts, CnameTarget, InstanceEnvironment::*, PrimaryDomain};

    fn record(host: &str, observation: DnsObservation) -> DnsRecordStatus {
        let expected = match host.to_ascii_lowercase().split('.').next().unwrap() {
            "clkmail" => "mail.x1y2.clerk.services",
            "clk" => "dkim1.x1y2.clerk.services",
            "clk2" => "dkim2.x1y2.clerk.services",
            _ => "frontend-api.clerk.services",
        };
        DnsRecordStatus { host: host.into(), expected: expected.into(), observation }
    }

    fn production(email_dns: Fact<Vec<DnsRecordStatus>>) -> ClerkFacts {
        let mut facts = facts(Production);
        facts.primary_domain = Some(PrimaryDomain {
            name: "acme.com".into(),
            frontend_api_url: "https://clerk.acme.com".into(),
            cname_targets: vec![CnameTarget {
                host: "clkmail.acme.com".into(),
                value: "mail.x1y2.clerk.services".into(),
                required: true,
            }],
        });
        facts.email_dns = email_dns;
        facts
    }

    fn all_good() -> Vec<DnsRecordStatus> {
        vec![
            record("clerk.acme.com", DnsObservation::Matches),
            record("clkmail.acme.com", DnsObservation::Matches),
            record("clk._domainkey.acme.com", DnsObservation::Matches),
            record("clk2._domainkey.acme.com", DnsObservation::Matches),
        ]
    }

    #[test]
    fn meta_is_a_warning() {
        assert_eq!(META.id, "CLERK-EMAIL-001");
        assert_eq!(META.severity, Severity::Warning);
    }

    #[test]
    fn passes_on_a_non_production_instance() {
        assert_eq!(run(evaluate, &facts(Development)), Verdict::Pass);
        let mut staging = facts(Staging);
        staging.email_dns = Fact::Known(vec![record("clkmail.acme.com", DnsObservation::Missing)]);
        assert_eq!(run(evaluate, &staging), Verdict::Pass);
    }

    #[test]
    fn error_when_dns_facts_are_unavailable() {
        let facts = production(Fact::Unavailable("no resolver reachable".into()));
        assert_eq!(run(evaluate, &facts), Verdict::Error("no resolver reachable".into()));
    }

    #[test]
    fn error_when_dns_facts_were_not_looked_up_on_production() {
        let facts = production(Fact::NotApplicable("GET /v1/domains returned no primary domain".into()));
        assert_eq!(run(evaluate, &facts), Verdict::Error("GET /v1/domains returned no primary domain".into()));
    }

    #[test]
    fn skipped_when_no_sender_record_is_listed() {
        let facts = production(Fact::Known(vec![
            record("clerk.acme.com", DnsObservation::Missing),
            record("accounts.acme.com", DnsObservation::Missing),
            record("clkmailer.acme.com", DnsObservation::Missing),
        ]));
        assert_eq!(run(evaluate, &facts), Verdict::Skipped(NO_SENDER_RECORDS.into()));
        assert_eq!(run(evaluate, &production(Fact::Known(vec![]))), Verdict::Skipped(NO_SENDER_RECORDS.into()));
    }

    #[test]
    fn passes_when_every_sender_record_matches() {
        // A missing non-sender record (the Frontend API CNAME) is not this check's business.
        let mut records = all_good();
        records[0].observation = DnsObservation::Missing;
        assert_eq!(run(evaluate, &production(Fact::Known(records))), Verdict::Pass);
    }

    #[test]
    fn fails_once_per_missing_or_mismatched_record() {
        let facts = production(Fact::Known(vec![
            record("clerk.acme.com", DnsObservation::Missing),
            record("CLKMAIL.Acme.com", DnsObservation::Missing),
            record("clk._domainkey.acme.com", DnsObservation::Matches),
            record("clk2._domainkey.acme.com", DnsObservation::Mismatch { found: vec!["old.sendgrid.net".into()] }),
            record("clk._domainkey.acme.com.", DnsObservation::LookupFailed { reason: "timeout".into() }),
        ]));
        let Verdict::Fail(findings) = run(evaluate, &facts) else { panic!("expected a failure") };
        assert_eq!(findings.len(), 2);

        assert_eq!(findings[0].identity, vec!["clkmail.acme.com"]);
        assert_eq!(findings[0].evidence.repo, None);
        assert_eq!(
            findings[0].evidence.clerk.as_deref(),
            Some("CLKMAIL.Acme.com has no CNAME record in DNS; Clerk expects it to point at mail.x1y2.clerk.services")
        );
        assert_eq!(
            findings[0].evidence.details,
            json!({"domain": "acme.com", "host": "CLKMAIL.Acme.com", "expected": "mail.x1y2.clerk.services",
                   "observation": {"result": "missing"}})
        );

        assert_eq!(findings[1].identity, vec!["clk2._domainkey.acme.com"]);
        assert_eq!(
            findings[1].evidence.clerk.as_deref(),
            Some("clk2._domainkey.acme.com points at old.sendgrid.net in DNS; Clerk expects dkim2.x1y2.clerk.services")
        );
        assert_eq!(
            findings[1].evidence.details["observation"],
            json!({"result": "mismatch", "found": ["old.sendgrid.net"]})
        );
    }

    #[test]
    fn a_record_listed_twice_is_one_finding() {
        let facts = production(Fact::Known(vec![
            record("clkmail.acme.com", DnsObservation::Missing),
            record("ClkMail.acme.com", DnsObservation::Mismatch { found: vec![] }),
        ]));
        let Verdict::Fail(findings) = run(evaluate, &facts) else { panic!("expected a failure") };
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].identity, vec!["clkmail.acme.com"]);
    }

    #[test]
    fn error_naming_the_hosts_whose_lookup_failed() {
        let mut records = all_good();
        records[1].observation = DnsObservation::LookupFailed { reason: "timeout".into() };
        records[3].observation = DnsObservation::LookupFailed { reason: "SERVFAIL".into() };
        assert_eq!(
            run(evaluate, &production(Fact::Known(records))),
            Verdict::Error(
                "DNS lookup failed for clkmail.acme.com (timeout); clk2._domainkey.acme.com (SERVFAIL)".into()
            )
        );
    }
}
