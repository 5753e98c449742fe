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

    /// Looks up one CNAME target and compares it with what Clerk expects.
    pub async fn observe(&self, target: &CnameTarget) -> DnsRecordStatus {
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
                    DnsObservation::Mismatch { found }
                }
            }
            Err(error) if error.is_nx_domain() || error.is_no_records_found() => DnsObservation::Missing,
            Err(error) => DnsObservation::LookupFailed { reason: format!("{}: {error}", normalize(&target.host)) },
        };
        DnsRecordStatus { host: normalize(&target.host), expected, observation }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_email_records() {
        assert!(is_email_record("clkmail.acme.com"));
        assert!(is_email_record("CLK._domainkey.acme.com"));
        assert!(is_email_record("clk2._domainkey.acme.com"));
        assert!(!is_email_record("clerk.acme.com"));
        assert!(!is_email_record("accounts.acme.com"));
    }
}
