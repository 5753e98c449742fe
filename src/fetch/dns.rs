//! DNS CNAME lookups of the domain's email sender records (allowlist call `dns.cname`), through the configured
//! nameserver (tests point it at the sandbox's resolver) or the system resolver.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};

use crate::audit::facts::{CnameTarget, DnsObservation, DnsRecordStatus};
use crate::configuration::DnsSettings;

/// The first labels of Clerk's email sender records: the mail CNAME and two DKIM keys.
pub const EMAIL_RECORD_PREFIXES: &[&str] = &["clkmail.", "clk._domainkey.", "clk2._domainkey."];

/// True when `host` is one of Clerk's email sender records.
pub fn is_email_record(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    EMAIL_RECORD_PREFIXES.iter().any(|prefix| host.starts_with(prefix))
}

#[derive(Clone)]
pub struct DnsLookup {
    resolver: TokioResolver,
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsLookup {
    pub fn from_settings(settings: &DnsSettings) -> anyhow::Result<Self> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if settings.nameserver.is_empty() {
            TokioResolver::builder_tokio()?
        } else {
            let addr: SocketAddr = settings.nameserver.parse()?;
            let mut server = NameServerConfig::udp_and_tcp(addr.ip());
            for connection in &mut server.connections {
                connection.port = addr.port();
            }
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(vec![server]), provider)
        };
        let options: &mut ResolverOpts = builder.options_mut();
        options.timeout = Duration::from_millis(settings.timeout_ms);
        options.attempts = 2;
        // Each scan must see DNS as it is now, and names are absolute.
        options.cache_size = 0;
        options.ndots = 0;
        Ok(Self { resolver: builder.build()? })
    }

    /// Looks up one CNAME target and compares it with what Clerk expects. A mismatching answer outside the
    /// customer's `domain` and the expected target's zone is not echoed (the resolver's view may include
    /// internal names); a failed lookup says so without the resolver's message (it may name a nameserver).
    pub async fn observe(&self, target: &CnameTarget, domain: &str) -> DnsRecordStatus {
        let expected = normalize(&target.value);
        let name = format!("{}.", normalize(&target.host));
        let observation = match self.resolver.lookup(name.as_str(), RecordType::CNAME).await {
            Ok(lookup) => {
                let found: Vec<String> = lookup
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        RData::CNAME(cname) => Some(normalize(&cname.0.to_ascii())),
                        _ => None,
                    })
                    .collect();
                if found.contains(&expected) {
                    DnsObservation::Matches
                } else if found.is_empty() {
                    DnsObservation::Missing
                } else {
                    DnsObservation::Mismatch { found: shown_targets(found, domain, &expected) }
                }
            }
            Err(error) if error.is_nx_domain() || error.is_no_records_found() => DnsObservation::Missing,
            Err(error) => {
                let what = if error.to_string().contains("timed out") { "timed out" } else { "lookup failed" };
                DnsObservation::LookupFailed { reason: format!("{}: {what}", normalize(&target.host)) }
            }
        };
        DnsRecordStatus { host: normalize(&target.host), expected, observation }
    }
}

/// The placeholder for a CNAME answer outside the customer's domain and Clerk's zone.
pub const HIDDEN_TARGET: &str = "(a host outside the customer's domain)";

/// The found CNAME targets as evidence may show them: names under the customer's `domain` or under the
/// zone of the `expected` target (its last two labels, e.g. `clerk.services`) as they are, others replaced
/// by [`HIDDEN_TARGET`] (once).
pub fn shown_targets(found: Vec<String>, domain: &str, expected: &str) -> Vec<String> {
    let labels: Vec<&str> = expected.trim_end_matches('.').rsplitn(3, '.').collect();
    let expected_zone = if labels.len() >= 2 { format!("{}.{}", labels[1], labels[0]) } else { String::new() };
    let mut shown: Vec<String> = Vec::new();
    for name in found {
        let visible = super::is_within(&name, domain) || super::is_within(&name, &expected_zone);
        let entry = if visible { name } else { HIDDEN_TARGET.to_owned() };
        if !shown.contains(&entry) {
            shown.push(entry);
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatching_answers_outside_the_domain_are_not_echoed() {
        let found = vec![
            "old.acme.com".to_owned(),
            "mail.x1.clerk.services".to_owned(),
            "db.corp.internal".to_owned(),
            "10-0-0-5.svc.cluster.local".to_owned(),
        ];
        assert_eq!(
            shown_targets(found, "acme.com", "mail.abc.clerk.services"),
            vec!["old.acme.com", "mail.x1.clerk.services", HIDDEN_TARGET]
        );
    }

    #[test]
    fn recognises_email_records() {
        assert!(is_email_record("clkmail.acme.com"));
        assert!(is_email_record("CLK._domainkey.acme.com"));
        assert!(is_email_record("clk2._domainkey.acme.com"));
        assert!(!is_email_record("clerk.acme.com"));
        assert!(!is_email_record("accounts.acme.com"));
    }
}
