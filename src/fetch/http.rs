//! The one outbound HTTP layer. Every request to Clerk or Svix goes through [`ScanCalls::send`], which:
//!
//! 1. names the host kind by the request's origin (Backend API from configuration, Frontend API and Svix
//!    hosts fixed for the scan) and matches method, path and query against the [allowlist](super::allowlist),
//!    refusing the request before any connection when no row matches;
//! 2. refuses plain HTTP and private addresses (unless the test-only `allow_loopback` is set, and then for
//!    loopback only), both for IP literals and for every address a host name resolves to;
//! 3. attaches the credential the row names (the secret key only ever to the Backend API host);
//! 4. keeps the per-instance rate limit, follows no redirect, caps time and body size;
//! 5. retries 429 (honouring `Retry-After`, bounded), 5xx and timeouts with backoff, through [`crate::retry`].

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use tracing::{Instrument, debug, info_span};
use url::Url;

use super::address::is_refused;
use super::allowlist::{AllowedCall, CallAuth, CallMethod, HostKind, NotAllowed, match_request};
pub use crate::audit::facts::CallTally;
use crate::configuration::HttpSettings;
use crate::credentials::secret::ClerkSecretKey;
use crate::retry::{Attempt, RetryPolicy, retry};

/// Why a call produced no usable response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
    #[error("address refused: {0}")]
    AddressRefused(String),
    #[error("timed out")]
    Timeout,
    #[error("connection failed: {0}")]
    Transport(String),
    #[error("answered HTTP {status}")]
    Status { status: u16, retry_after: Option<Duration> },
    #[error("answered a redirect (HTTP {0}), which is never followed")]
    Redirect(u16),
    #[error("response body is over the {0}-byte cap")]
    BodyTooLarge(usize),
    #[error("response body does not match the expected shape: {0}")]
    Decode(String),
}

impl CallError {
    /// Worth another attempt inside the job.
    pub fn is_transient(&self) -> bool {
        match self {
            CallError::Timeout | CallError::Transport(_) => true,
            CallError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A successful answer: status 2xx and the (capped) body.
#[derive(Debug)]
pub struct CallResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

impl CallResponse {
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, CallError> {
        serde_json::from_slice(&self.body).map_err(|e| CallError::Decode(e.to_string()))
    }
}

/// Shared by all scans of the process: the HTTP client, the settings and the per-instance rate limiter.
#[derive(Clone)]
pub struct HttpLayer {
    client: reqwest::Client,
    settings: HttpSettings,
    backend_api: Url,
    api_version: HeaderValue,
    /// `svix.api_url` when set: replaces the regional Svix host named by the app-portal token (tests).
    svix_api_url: Option<Url>,
    limiter: Arc<DefaultKeyedRateLimiter<String>>,
    policy: RetryPolicy,
    metrics: Arc<crate::ops::metrics::Metrics>,
}

/// Resolves host names, refusing any host with an address outside what [`is_refused`] allows.
struct GuardedResolver {
    allow_loopback: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // One refused address refuses the host: a name that mixes public and internal addresses is
            // the shape of a DNS-rebinding attempt.
            if let Some(bad) = addrs.iter().find(|addr| is_refused(addr.ip(), allow_loopback)) {
                return Err(format!("{host} resolves to refused address {}", bad.ip()).into());
            }
            if addrs.is_empty() {
                return Err(format!("{host} has no address").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl HttpLayer {
    pub fn new(
        settings: &HttpSettings,
        backend_api: Url,
        api_version: &str,
        rate_limit_per_10s: u32,
        policy: RetryPolicy,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
            .timeout(Duration::from_millis(settings.request_timeout_ms))
            .no_proxy()
            .user_agent(concat!("clerk-audit/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver { allow_loopback: settings.allow_loopback }))
            .https_only(!settings.allow_loopback)
            .build()?;
        let per_10s = NonZeroU32::new(rate_limit_per_10s).unwrap_or(NonZeroU32::MIN);
        let quota =
            Quota::with_period(Duration::from_millis(10_000 / u64::from(per_10s.get())).max(Duration::from_millis(1)))
                .expect("a positive period")
                .allow_burst(per_10s);
        Ok(Self {
            client,
            settings: settings.clone(),
            backend_api,
            api_version: HeaderValue::from_str(api_version)?,
            svix_api_url: None,
            limiter: Arc::new(RateLimiter::keyed(quota)),
            policy,
            metrics: Arc::default(),
        })
    }

    /// Counts every call attempt in `metrics` (`clerk_audit_outbound_calls_total`).
    pub fn with_metrics(mut self, metrics: Arc<crate::ops::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn backend_api(&self) -> &Url {
        &self.backend_api
    }

    /// The `svix.api_url` override, if configured.
    pub fn svix_api_url(&self) -> Option<&Url> {
        self.svix_api_url.as_ref()
    }

    /// Sets the `svix.api_url` override: empty keeps the regional Svix host named by each app-portal token.
    pub fn with_svix_api_url(mut self, raw: &str) -> anyhow::Result<Self> {
        let raw = raw.trim();
        self.svix_api_url = if raw.is_empty() {
            None
        } else {
            let url = Url::parse(raw).map_err(|e| anyhow::anyhow!("svix.api_url: {e}"))?;
            anyhow::ensure!(url.host_str().is_some(), "svix.api_url: no host");
            Some(url)
        };
        Ok(self)
    }

    /// Starts one scan's session of calls, keyed for the rate limit by `instance_key`.
    pub fn session<'a>(&'a self, instance_key: String, secret_key: &'a ClerkSecretKey) -> ScanCalls<'a> {
        ScanCalls {
            http: self,
            secret_key,
            instance_key,
            frontend_api: None,
            svix: None,
            tallies: Mutex::new(BTreeMap::new()),
        }
    }
}

/// One scan's outbound calls: the hosts fixed for it, its credentials, and the tally of calls made.
pub struct ScanCalls<'a> {
    http: &'a HttpLayer,
    secret_key: &'a ClerkSecretKey,
    instance_key: String,
    frontend_api: Option<Url>,
    svix: Option<(Url, SecretString)>,
    tallies: Mutex<BTreeMap<u8, CallTally>>,
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

/// The part of `url`'s path below `base`'s path, or None when `url` is not under `base`.
fn path_below<'u>(url: &'u Url, base: &Url) -> Option<&'u str> {
    let base_path = base.path().trim_end_matches('/');
    url.path().strip_prefix(base_path).filter(|rest| rest.starts_with('/'))
}

impl ScanCalls<'_> {
    /// Sets the instance's Frontend API host, as `GET /v1/domains` named it.
    pub fn set_frontend_api(&mut self, url: Url) {
        self.frontend_api = Some(url);
    }

    /// Sets the Svix host and the app-portal token for the Svix rows.
    pub fn set_svix(&mut self, url: Url, token: SecretString) {
        self.svix = Some((url, token));
    }

    /// URL of `path` on the Backend API.
    pub fn backend_url(&self, path: &str) -> Url {
        join(&self.http.backend_api, path)
    }

    pub fn frontend_url(&self, path: &str) -> Option<Url> {
        self.frontend_api.as_ref().map(|base| join(base, path))
    }

    /// The `svix.api_url` override, if configured (see [`HttpLayer::with_svix_api_url`]).
    pub fn svix_api_override(&self) -> Option<&Url> {
        self.http.svix_api_url.as_ref()
    }

    pub fn svix_url(&self, path: &str) -> Option<Url> {
        self.svix.as_ref().map(|(base, _)| join(base, path))
    }

    /// `sha256:<hex>` of the scan's secret key: what the facts carry to compare with the repo's keys.
    pub fn secret_key_fingerprint(&self) -> String {
        self.secret_key.fingerprint()
    }

    /// Counts a DNS lookup (allowlist call `dns.cname`) with its outcome.
    pub fn tally_dns(&self, outcome: &str) {
        self.tally(super::allowlist::Call::DnsCname.spec(), outcome.to_owned());
    }

    /// Times one stage of the scan in the layer's metrics.
    pub fn observe_stage(&self, stage: crate::ops::metrics::Stage, elapsed: std::time::Duration) {
        self.http.metrics.stage(stage, elapsed);
    }

    /// The calls made so far, by row.
    pub fn tallies(&self) -> Vec<CallTally> {
        self.tallies.lock().expect("tally lock").values().cloned().collect()
    }

    fn tally(&self, call: &AllowedCall, outcome: String) {
        self.http.metrics.outbound_call(call.row, call.name, &outcome);
        let mut tallies = self.tallies.lock().expect("tally lock");
        let entry = tallies.entry(call.row).or_insert_with(|| CallTally {
            row: call.row,
            name: call.name.to_owned(),
            ..CallTally::default()
        });
        entry.count += 1;
        *entry.outcomes.entry(outcome).or_default() += 1;
    }

    /// Which host kind `url` is, and its path relative to that host's base.
    fn classify<'u>(&self, url: &'u Url) -> Option<(HostKind, &'u str)> {
        let candidates = [
            (HostKind::BackendApi, Some(&self.http.backend_api)),
            (HostKind::FrontendApi, self.frontend_api.as_ref()),
            (HostKind::SvixApi, self.svix.as_ref().map(|(url, _)| url)),
        ];
        candidates.into_iter().find_map(|(kind, base)| {
            let base = base?;
            if same_origin(url, base) { path_below(url, base).map(|path| (kind, path)) } else { None }
        })
    }

    /// Checks a request against the allowlist and the address rules without sending it.
    pub fn authorize(&self, method: CallMethod, url: &Url) -> Result<&'static AllowedCall, CallError> {
        let refuse = |host: &'static str| NotAllowed {
            method: method.as_str(),
            host,
            path: url.path().chars().take(200).collect(),
        };
        let (kind, path) = self.classify(url).ok_or_else(|| refuse("unknown-host"))?;
        if url.username() != "" || url.password().is_some() || url.fragment().is_some() {
            return Err(refuse(kind.as_str()).into());
        }
        let call = match_request(
            method,
            kind,
            path,
            url.query_pairs().map(|(name, _)| name).collect::<Vec<_>>().iter().map(|n| n.as_ref()),
        )?;
        let allow_loopback = self.http.settings.allow_loopback;
        let host = url.host_str().unwrap_or_default();
        let literal_ip = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok();
        match url.scheme() {
            "https" => {}
            "http" if allow_loopback && literal_ip.is_some_and(|ip| ip.is_loopback()) => {}
            scheme => return Err(CallError::AddressRefused(format!("scheme {scheme} is not allowed for {host}"))),
        }
        if let Some(ip) = literal_ip
            && is_refused(ip, allow_loopback)
        {
            return Err(CallError::AddressRefused(format!("{ip} is not a public address")));
        }
        Ok(call)
    }

    /// Sends one allowlisted request, with retries; answers a 2xx response or the error.
    pub async fn send(&self, method: CallMethod, url: Url) -> Result<CallResponse, CallError> {
        let call = self.authorize(method, &url)?;
        let span = info_span!("outbound_call", call = call.name, row = call.row, status = tracing::field::Empty);
        let max_retry_after = Duration::from_secs(self.http.settings.max_retry_after_secs);
        let result = retry(self.http.policy, |attempt| {
            let url = url.clone();
            async move {
                self.http.limiter.until_key_ready(&self.instance_key).await;
                let result = self.attempt(call, method, url).await;
                let outcome = match &result {
                    Ok(response) => response.status.to_string(),
                    Err(CallError::Status { status, .. }) => status.to_string(),
                    Err(CallError::Timeout) => "timeout".into(),
                    Err(_) => "error".into(),
                };
                debug!(attempt, outcome = %outcome, "call attempt");
                self.tally(call, outcome);
                match result {
                    Ok(response) => Ok(response),
                    Err(error @ CallError::Status { status: 429, retry_after: Some(after) }) => {
                        if after > max_retry_after {
                            Err(Attempt::Stop(error))
                        } else {
                            Err(Attempt::RetryAfter(error, after))
                        }
                    }
                    Err(error) if error.is_transient() => Err(Attempt::Retry(error)),
                    Err(error) => Err(Attempt::Stop(error)),
                }
            }
        })
        .instrument(span.clone())
        .await;
        if let Ok(response) = &result {
            span.record("status", response.status);
        }
        result
    }

    async fn attempt(&self, call: &AllowedCall, method: CallMethod, url: Url) -> Result<CallResponse, CallError> {
        let mut headers = HeaderMap::new();
        match call.auth {
            CallAuth::SecretKey => {
                let mut value = HeaderValue::from_str(&self.secret_key.expose_bearer())
                    .map_err(|_| CallError::Transport("secret key is not a valid header value".into()))?;
                value.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, value);
                headers.insert("Clerk-API-Version", self.http.api_version.clone());
            }
            CallAuth::SvixToken => {
                let (_, token) = self.svix.as_ref().ok_or_else(|| CallError::Transport("no Svix token".into()))?;
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                    .map_err(|_| CallError::Transport("Svix token is not a valid header value".into()))?;
                value.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, value);
            }
            CallAuth::None => {}
        }
        headers.insert(reqwest::header::ACCEPT, HeaderValue::from_static("application/json"));
        let method = match method {
            CallMethod::Get => reqwest::Method::GET,
            CallMethod::Post => reqwest::Method::POST,
            CallMethod::DnsCname => return Err(CallError::Transport("DNS is not an HTTP call".into())),
        };
        let mut response =
            self.http.client.request(method, url).headers(headers).send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        if response.status().is_redirection() {
            return Err(CallError::Redirect(status));
        }
        if !response.status().is_success() {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(CallError::Status { status, retry_after });
        }
        let cap = self.http.settings.max_body_bytes;
        if response.content_length().is_some_and(|len| len > cap as u64) {
            return Err(CallError::BodyTooLarge(cap));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > cap {
                return Err(CallError::BodyTooLarge(cap));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(CallResponse { status, body })
    }
}

fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url
}

/// Describes a reqwest failure without its URL (a Svix URL could hold an app id; never a secret, but the
/// description stays short and uniform).
fn transport_error(error: reqwest::Error) -> CallError {
    if error.is_timeout() {
        return CallError::Timeout;
    }
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    if message.contains("refused address") {
        return CallError::AddressRefused(message);
    }
    CallError::Transport(message)
}
