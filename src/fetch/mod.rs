//! Fetch: learn the Clerk facts of one instance through the allowlisted calls and DNS.
//!
//! - [`allowlist`]: the published table of calls.
//! - [`address`]: which resolved addresses may be connected to.
//! - [`http`]: the one outbound HTTP layer.
//! - [`clerk`]: the shapes of Clerk's answers.
//! - [`dns`]: CNAME lookups of the email sender records.
//! - [`svix`]: the webhook facts (`clerk.svix_url`, `svix.list_endpoints`, `svix.endpoint_secret`): the Svix app, its endpoints, signing-secret fingerprints.
//!
//! Backend API failures decide the job (401/403: the key is rejected, permanent; 429/5xx/timeouts:
//! transient). Frontend API, DNS and Svix failures (and `clerk.svix_url`'s other failures) only make the facts they
//! feed [`Fact::Unavailable`], so the checks that need them report `error` and the rest of the scan still
//! completes.

pub mod address;
pub mod allowlist;
pub mod clerk;
pub mod dns;
pub mod http;
pub mod svix;

use std::time::{Duration, Instant};

use tracing::{debug, warn};

use self::allowlist::CallMethod;
use self::clerk::{DomainsResponse, EnvironmentResponse, InstanceResponse, TotalCountResponse};
use self::dns::{DnsLookup, is_email_record};
use self::http::{CallError, ScanCalls};
use self::svix::Portal;
use crate::audit::artifact::RepoArtifact;
use crate::audit::facts::{AuthSettings, ClerkFacts, DnsRecordStatus, Fact, InstanceInfo, PrimaryDomain, WebhookFacts};
use crate::error::{FailureReason, JobError};
use crate::ops::metrics::Stage;

/// Maps a Backend API failure to the job's error.
fn backend_failure(call: &str, error: CallError) -> JobError {
    match error {
        CallError::Status { status: 401 | 403, .. } => JobError::permanent(
            FailureReason::ClerkKeyRejected,
            format!("{call}: the Backend API rejected the secret key"),
        ),
        CallError::Status { status: 429, retry_after } => JobError::Transient {
            reason: FailureReason::ClerkUnavailable,
            detail: format!("{call}: rate limited by Clerk"),
            retry_after,
        },
        error if error.is_transient() => {
            JobError::transient(FailureReason::ClerkUnavailable, format!("{call}: {error}"))
        }
        CallError::Decode(detail) => {
            JobError::permanent(FailureReason::Internal, format!("{call}: unexpected answer shape: {detail}"))
        }
        error => JobError::permanent(FailureReason::ClerkUnavailable, format!("{call}: {error}")),
    }
}

async fn get_backend<T: serde::de::DeserializeOwned>(
    calls: &ScanCalls<'_>,
    path: &str,
    name: &str,
) -> Result<T, JobError> {
    let response = calls.send(CallMethod::Get, calls.backend_url(path)).await.map_err(|e| backend_failure(name, e))?;
    response.json().map_err(|e| backend_failure(name, e))
}

/// Learns everything the checks need. `calls` must be fresh for this scan. The artifact (when one is
/// stored) decides whether any endpoint signing secret is read (`svix.endpoint_secret`): only to compare with a `whsec_`
/// written in the repo.
pub async fn gather(
    calls: &mut ScanCalls<'_>,
    dns: &DnsLookup,
    artifact: Option<&RepoArtifact>,
) -> Result<ClerkFacts, JobError> {
    // Round one: the four Backend API calls are independent, so they run together. Round two (below): the Frontend API, the
    // DNS lookups and the Svix endpoint list, which need round one's answers, run together too. A scan's
    // critical path is two sequential round trips, three when a signing secret is compared
    // (`svix.endpoint_secret`).
    let (instance, count, domains, portal) = tokio::join!(
        get_backend::<InstanceResponse>(calls, "/v1/instance", "GET /v1/instance"),
        get_backend::<TotalCountResponse>(calls, "/v1/users/count", "GET /v1/users/count"),
        get_backend::<DomainsResponse>(calls, "/v1/domains", "GET /v1/domains"),
        svix::portal(calls),
    );
    // A rejected key decides the job whichever call saw it first.
    let errors = [instance.as_ref().err(), count.as_ref().err(), domains.as_ref().err(), portal.as_ref().err()];
    for result in errors.into_iter().flatten() {
        if result.reason() == FailureReason::ClerkKeyRejected {
            return Err(JobError::permanent(
                FailureReason::ClerkKeyRejected,
                "the Backend API rejected the secret key",
            ));
        }
    }
    let instance: InstanceInfo = instance?.into();
    let user_count = count?.total_count;
    let domains = domains?;
    let frontend_api_hosts = domains.frontend_api_hosts();
    let primary_domain = domains.primary();
    let secret_key_fingerprint = Some(calls.secret_key_fingerprint());
    debug!(environment = instance.environment.as_str(), user_count, "instance facts fetched");

    // `clerk.svix_url` answered for every instance kind (Svix serves development too).
    let webhook_app = match portal? {
        Portal::Access(access) => {
            let base = svix::api_base(calls.svix_api_override(), access.region.as_deref());
            calls.set_svix(base, access.token);
            Ok(access.app_id)
        }
        Portal::NoApp => Err(Fact::Known(WebhookFacts { svix_app: false, endpoints: Vec::new() })),
        Portal::Unavailable(reason) => Err(Fact::Unavailable(reason)),
    };
    let secret_wants = svix::secret_wants(artifact);

    let production = instance.environment == crate::audit::facts::InstanceEnvironment::Production;
    let frontend_base = match (&primary_domain, production) {
        (Some(domain), true) => frontend_api_base(&domain.frontend_api_url, calls.allow_loopback()),
        _ => Err("not looked up"),
    };
    if let Ok(base) = &frontend_base {
        calls.set_frontend_api(base.clone());
    }
    let calls = &*calls;
    let sign_in_and_email = async {
        if !production {
            let reason = format!("{} instance", instance.environment.as_str());
            return (Fact::NotApplicable(reason.clone()), Fact::NotApplicable(reason));
        }
        match &primary_domain {
            Some(domain) => {
                tokio::join!(frontend_settings(calls, frontend_base.err()), email_records(calls, dns, domain))
            }
            None => (
                Fact::Unavailable("the instance has no primary domain".into()),
                Fact::Unavailable("the instance has no primary domain".into()),
            ),
        }
    };
    let webhooks = async {
        match &webhook_app {
            Ok(app_id) => svix::endpoints(calls, app_id, &secret_wants).await,
            Err(fact) => fact.clone(),
        }
    };
    let ((auth_settings, email_dns), webhooks) = tokio::join!(sign_in_and_email, webhooks);
    Ok(ClerkFacts {
        instance,
        user_count,
        primary_domain,
        frontend_api_hosts,
        secret_key_fingerprint,
        auth_settings,
        email_dns,
        webhooks,
    })
}

/// The Frontend API base from the domain's `frontend_api_url`, or which rule it breaks. Clerk answers a
/// host root (`https://clerk.acme.com`); anything else could steer the `clerk.frontend_environment` call
/// elsewhere: it must be https on the default port, name a DNS host (no IP literal), and carry no path,
/// query, fragment or userinfo.
/// Tests (`allow_loopback`) may use a plain-http loopback literal with a port, where the sandbox listens.
pub fn frontend_api_base(raw: &str, allow_loopback: bool) -> Result<url::Url, &'static str> {
    let url = url::Url::parse(raw.trim()).map_err(|_| "it is not a URL")?;
    let host = url.host_str().ok_or("it has no host")?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("it carries userinfo");
    }
    // Everything after the path: `?query` and `#fragment`.
    if !url[url::Position::AfterPath..].is_empty() {
        return Err("it carries a query or fragment");
    }
    if !matches!(url.path(), "" | "/") {
        return Err("it has a path");
    }
    let literal = address::literal_ip(host);
    if allow_loopback && literal.is_some_and(|ip| ip.is_loopback()) && matches!(url.scheme(), "http" | "https") {
        return Ok(url);
    }
    if url.scheme() != "https" {
        return Err("it is not https");
    }
    if url.port().is_some() {
        return Err("it names a port");
    }
    if literal.is_some() {
        return Err("it names an IP address, not a DNS name");
    }
    Ok(url)
}

/// `clerk.frontend_environment` against the Frontend API host named by `GET /v1/domains`.
async fn frontend_settings(calls: &ScanCalls<'_>, unusable: Option<&'static str>) -> Fact<AuthSettings> {
    if let Some(why) = unusable {
        return Fact::Unavailable(format!("the domain's frontend_api_url is unusable: {why}"));
    }
    let Some(url) = calls.frontend_url("/v1/environment") else {
        return Fact::Unavailable("no Frontend API host".into());
    };
    match calls.send(CallMethod::Get, url).await {
        Ok(response) => match response.json::<EnvironmentResponse>() {
            Ok(environment) => Fact::Known(environment.into()),
            Err(error) => Fact::Unavailable(format!("Frontend API environment: {error}")),
        },
        Err(error) => {
            warn!(error = %error, "Frontend API environment unavailable");
            Fact::Unavailable(format!("Frontend API environment: {error}"))
        }
    }
}

/// The most email sender records looked up per scan (Clerk asks for three).
pub const MAX_DNS_LOOKUPS: usize = 10;

/// Whether `host` is `domain` or a name under it (both compared without a trailing dot, case-blind).
pub fn is_within(host: &str, domain: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    !domain.is_empty() && (host == domain || host.ends_with(&format!(".{domain}")))
}

/// `dns.cname`: the email sender records among the domain's CNAME targets. Only names equal to or under the
/// primary domain are looked up (a Clerk answer cannot make the worker query arbitrary names), at most
/// [`MAX_DNS_LOOKUPS`].
async fn email_records(calls: &ScanCalls<'_>, dns: &DnsLookup, domain: &PrimaryDomain) -> Fact<Vec<DnsRecordStatus>> {
    let targets = domain
        .cname_targets
        .iter()
        .filter(|target| is_email_record(&target.host) && is_within(&target.host, &domain.name))
        .take(MAX_DNS_LOOKUPS);
    let lookups = targets.map(|target| async move {
        let status = dns.observe(target, &domain.name).await;
        let outcome = match &status.observation {
            crate::audit::facts::DnsObservation::LookupFailed { .. } => "error",
            crate::audit::facts::DnsObservation::Missing => "nxdomain",
            _ => "answer",
        };
        calls.tally_dns(outcome);
        status
    });
    let started = Instant::now();
    let statuses = futures::future::join_all(lookups).await;
    if !statuses.is_empty() {
        calls.observe_stage(Stage::Dns, started.elapsed());
    }
    Fact::Known(statuses)
}

/// Upper bound for a whole fetch, so a scan cannot hang on a misbehaving peer.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(120);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontend_api_url_must_be_an_https_dns_host_root() {
        let ok = frontend_api_base("https://clerk.acme.com", false).unwrap();
        assert_eq!(ok.host_str(), Some("clerk.acme.com"));
        frontend_api_base("https://clerk.acme.com/", false).unwrap();
        for (raw, why) in [
            ("clerk.acme.com", "it is not a URL"),
            ("http://clerk.acme.com", "it is not https"),
            ("https://clerk.acme.com:8443", "it names a port"),
            ("https://clerk.acme.com/v1", "it has a path"),
            ("https://clerk.acme.com?x=1", "it carries a query or fragment"),
            ("https://clerk.acme.com#f", "it carries a query or fragment"),
            ("https://user:pw@clerk.acme.com", "it carries userinfo"),
            ("https://api.clerk.com@169.254.169.254", "it carries userinfo"),
            ("https://169.254.169.254", "it names an IP address, not a DNS name"),
            ("https://[fd00:ec2::254]", "it names an IP address, not a DNS name"),
            ("https://2130706433", "it names an IP address, not a DNS name"),
            ("file:///etc/passwd", "it has no host"),
        ] {
            assert_eq!(frontend_api_base(raw, false).unwrap_err(), why, "{raw}");
        }
        // Tests: the sandbox's plain-http loopback listener, and nothing else.
        frontend_api_base("http://127.0.0.1:4000", true).unwrap();
        assert_eq!(frontend_api_base("http://10.0.0.1:4000", true).unwrap_err(), "it is not https");
    }

    #[test]
    fn only_names_within_the_primary_domain_are_looked_up() {
        assert!(is_within("clkmail.acme.com", "acme.com"));
        assert!(is_within("CLK._domainkey.Acme.com.", "acme.com"));
        assert!(is_within("acme.com", "acme.com."));
        assert!(!is_within("clkmail.evil.com", "acme.com"));
        assert!(!is_within("clkmail.notacme.com", "acme.com"));
        assert!(!is_within("clkmail.acme.com.evil.com", "acme.com"));
        assert!(!is_within("acme.com", ""));
    }
}
