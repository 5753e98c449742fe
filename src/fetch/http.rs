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
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use tracing::{debug, debug_span};
use url::Url;

use super::address::{REFUSED_ADDRESS, is_refused, is_refused_name, literal_ip};
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

/// A successful answer: status 2xx and the (capped) body. `Debug` shows the body's length, never its
/// content (it may hold an app-portal token or a signing secret).
pub struct CallResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

impl fmt::Debug for CallResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallResponse")
            .field("status", &self.status)
            .field("body", &format_args!("[{} bytes REDACTED]", self.body.len()))
            .finish()
    }
}

impl CallResponse {
    /// Decodes the body. An error names the category (syntax, data, EOF) and the field path where decoding
    /// stopped, never a value of the body: serde's own messages quote the offending value.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, CallError> {
        decode_json(&self.body)
    }
}

/// Decodes `body` as `T`; an error says the category and the field path only (see [`CallResponse::json`]).
pub fn decode_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, CallError> {
    // Answers that decode (nearly all) take serde_json's plain path; only a failure is decoded a second time
    // with path tracking, which wraps every visitor and costs as much as the decode itself. The plain path
    // reads text validated once as a whole: decoding from bytes checks the UTF-8 of every string separately
    // (hundreds per answer; 2% of a scan's instructions). A body that is not UTF-8 as a whole (an ignored
    // field may hold bytes the byte decoder never checks) takes the slower path, which decodes from bytes.
    if let Ok(text) = std::str::from_utf8(body)
        && let Ok(value) = serde_json::from_str(text)
    {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    let value = result.map_err(|error| {
        let category = match error.inner().classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "unexpected field type or missing field",
            serde_json::error::Category::Eof => "truncated JSON",
        };
        CallError::Decode(format!("{category} at {}", safe_path(error.path())))
    })?;
    deserializer.end().map_err(|_| CallError::Decode("trailing data after the JSON value".into()))?;
    Ok(value)
}

/// A field path as serde_path_to_error gives it (`data[3].url`). Struct fields and map keys look alike
/// there, and a map key is data of the body, so a segment is shown only when it looks like a schema field
/// name (letters and `_`, at most 40, not a key or secret prefix); anything else becomes `<key>`.
fn safe_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let field_like = |name: &str| {
        !name.is_empty()
            && name.len() <= 40
            && name.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_')
            && !["sk_", "pk_", "whsec_", "whsk_", "whpk_"].iter().any(|prefix| name.starts_with(prefix))
    };
    let mut out = String::new();
    for segment in path.iter().take(20) {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(if field_like(key) { key } else { "<key>" });
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    if out.is_empty() { ".".into() } else { out }
}

/// The per-instance rate limiter map is pruned when it holds more keys than this.
pub const LIMITER_PRUNE_ABOVE: usize = 256;

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

/// Answers the addresses of a host name. The worker uses the system resolver ([`SystemResolver`]); tests
/// substitute a table to prove what the layer does with each answer.
pub trait NameResolver: Send + Sync + 'static {
    fn lookup(&self, host: String) -> futures::future::BoxFuture<'static, std::io::Result<Vec<IpAddr>>>;
}

/// The operating system's resolver.
pub struct SystemResolver;

impl NameResolver for SystemResolver {
    fn lookup(&self, host: String) -> futures::future::BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.map(|a| a.ip()).collect()) })
    }
}

/// Marks a refusal by the resolver, so [`transport_error`] can tell it from a network failure.
#[derive(Debug)]
struct Refused(&'static str);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Refused {}

/// Resolves host names, refusing special-use names before any lookup and any host with an address
/// outside what [`is_refused`] allows. Errors never name the addresses.
struct GuardedResolver {
    allow_loopback: bool,
    inner: Arc<dyn NameResolver>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        let host = name.as_str().to_owned();
        let lookup = (!is_refused_name(&host)).then(|| self.inner.lookup(host));
        Box::pin(async move {
            let Some(lookup) = lookup else {
                return Err(Box::new(Refused("the host name is reserved for internal use")) as _);
            };
            let addrs = lookup.await?;
            // One refused address refuses the host: a name that mixes public and internal addresses is
            // the shape of a DNS-rebinding attempt.
            if addrs.iter().any(|ip| is_refused(*ip, allow_loopback)) {
                return Err(Box::new(Refused(REFUSED_ADDRESS)) as _);
            }
            if addrs.is_empty() {
                return Err("the host name has no address".into());
            }
            let addrs: Vec<SocketAddr> = addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn build_client(settings: &HttpSettings, resolver: Arc<dyn NameResolver>) -> anyhow::Result<reqwest::Client> {
    let builder = reqwest::Client::builder();
    // Production reaches HTTPS hosts, where ALPN picks HTTP/2 when the host offers it; the sandbox is plain
    // HTTP, where only prior knowledge gives one multiplexed connection per host as production has.
    let builder = if settings.cleartext_http2 { builder.http2_prior_knowledge() } else { builder };
    Ok(builder
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
        .timeout(Duration::from_millis(settings.request_timeout_ms))
        .no_proxy()
        .user_agent(concat!("clerk-audit/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(GuardedResolver { allow_loopback: settings.allow_loopback, inner: resolver }))
        .https_only(!settings.allow_loopback)
        .build()?)
}

impl HttpLayer {
    pub fn new(
        settings: &HttpSettings,
        backend_api: Url,
        api_version: &str,
        rate_limit_per_10s: u32,
        policy: RetryPolicy,
    ) -> anyhow::Result<Self> {
        let client = build_client(settings, Arc::new(SystemResolver))?;
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

    /// Resolves host names through `resolver` instead of the system's (tests: a table of answers). The
    /// address rules apply to its answers as to the system's.
    pub fn with_name_resolver(mut self, resolver: Arc<dyn NameResolver>) -> anyhow::Result<Self> {
        self.client = build_client(&self.settings, resolver)?;
        Ok(self)
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

    /// Forgets rate-limit state of instances whose quota is full again (indistinguishable from a fresh key),
    /// once the map holds more than [`LIMITER_PRUNE_ABOVE`] keys: a long-lived worker sees many instances and
    /// must not keep one entry per instance forever. Answers the number of keys kept.
    pub fn prune_rate_limits(&self) -> usize {
        if self.limiter.len() > LIMITER_PRUNE_ABOVE {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.len()
    }

    /// Starts one scan's session of calls, keyed for the rate limit by `instance_key`.
    pub fn session<'a>(&'a self, instance_key: String, secret_key: &'a ClerkSecretKey) -> ScanCalls<'a> {
        self.prune_rate_limits();
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

    /// Whether the test-only loopback allowance is on.
    pub fn allow_loopback(&self) -> bool {
        self.http.settings.allow_loopback
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
        let literal_ip = literal_ip(host);
        match url.scheme() {
            "https" => {}
            "http" if allow_loopback && literal_ip.is_some_and(|ip| ip.is_loopback()) => {}
            _ => return Err(CallError::AddressRefused("only https is allowed".into())),
        }
        match literal_ip {
            Some(ip) if is_refused(ip, allow_loopback) => Err(CallError::AddressRefused(REFUSED_ADDRESS.into())),
            None if is_refused_name(host) => {
                Err(CallError::AddressRefused("the host name is reserved for internal use".into()))
            }
            _ => Ok(call),
        }
    }

    /// Sends one allowlisted request, with retries; answers a 2xx response or the error.
    pub async fn send(&self, method: CallMethod, url: Url) -> Result<CallResponse, CallError> {
        let call = self.authorize(method, &url)?;
        // DEBUG: exported as a trace span, but formatted for the logs only when their DEBUG lines are on (see
        // `ops::telemetry`). Never entered: its one event names it as parent, and a span's time in a trace runs
        // from its creation to its drop. Entering it at every poll of the call (four or five times a call,
        // through both layers' filters) was about 1% of a scan's instructions.
        let span = debug_span!("outbound_call", call = call.name, row = call.row, status = tracing::field::Empty);
        let span = &span;
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
                debug!(parent: span, attempt, outcome = %outcome, "call attempt");
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
                let bearer = self.secret_key.expose_bearer();
                let mut value = HeaderValue::from_str(bearer.as_str())
                    .map_err(|_| CallError::Transport("secret key is not a valid header value".into()))?;
                value.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, value);
                headers.insert("Clerk-API-Version", self.http.api_version.clone());
            }
            CallAuth::SvixToken => {
                let (_, token) = self.svix.as_ref().ok_or_else(|| CallError::Transport("no Svix token".into()))?;
                let exposed = token.expose_secret();
                let mut bearer = zeroize::Zeroizing::new(String::with_capacity("Bearer ".len() + exposed.len()));
                bearer.push_str("Bearer ");
                bearer.push_str(exposed);
                let mut value = HeaderValue::from_str(bearer.as_str())
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
        if let Some(refused) = inner.downcast_ref::<Refused>() {
            return CallError::AddressRefused(refused.0.to_owned());
        }
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    CallError::Transport(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer() -> HttpLayer {
        let settings = HttpSettings {
            allow_loopback: true,
            cleartext_http2: false,
            connect_timeout_ms: 1_000,
            request_timeout_ms: 1_000,
            max_body_bytes: 1_024,
            max_attempts: 1,
            max_retry_after_secs: 1,
        };
        // 10 000 per 10 s: a key used once is fresh again after about a millisecond.
        HttpLayer::new(
            &settings,
            "http://127.0.0.1:1".parse().unwrap(),
            "2026-05-12",
            10_000,
            RetryPolicy::immediate(1),
        )
        .unwrap()
    }

    #[test]
    fn the_rate_limiter_map_is_pruned_of_idle_instances() {
        let http = layer();
        for n in 0..(LIMITER_PRUNE_ABOVE + 50) {
            assert!(http.limiter.check_key(&format!("prj/{n}")).is_ok());
        }
        assert_eq!(http.limiter.len(), LIMITER_PRUNE_ABOVE + 50);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while http.prune_rate_limits() > LIMITER_PRUNE_ABOVE {
            assert!(std::time::Instant::now() < deadline, "idle keys were never pruned");
            std::thread::yield_now();
        }
        assert!(http.limiter.len() <= LIMITER_PRUNE_ABOVE);
    }

    #[test]
    fn a_small_map_is_left_alone() {
        let http = layer();
        assert!(http.limiter.check_key(&"prj/a".to_owned()).is_ok());
        assert_eq!(http.prune_rate_limits(), 1);
    }

    #[test]
    fn call_response_debug_redacts_the_body() {
        let response =
            CallResponse { status: 200, body: br#"{"svix_url":"https://app.svix.com/#key=SECRET"}"#.to_vec() };
        let shown = format!("{response:?}");
        assert!(!shown.contains("SECRET") && !shown.contains("svix_url"), "{shown}");
        assert!(shown.contains("200"), "{shown}");
    }

    #[test]
    fn decode_errors_name_the_category_and_path_never_the_value() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Page {
            data: Vec<Item>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Item {
            id: String,
            count: u32,
        }
        let body = br#"{"data": [{"id": "a", "count": 1}, {"id": "whsec_LEAKME", "count": "sk_live_LEAKME"}]}"#;
        let CallError::Decode(detail) = decode_json::<Page>(body).unwrap_err() else { panic!("a decode error") };
        assert_eq!(detail, "unexpected field type or missing field at data[1].count");
        let CallError::Decode(detail) = decode_json::<Page>(br#"{"data": [{"id": "whsec_LEAKME""#).unwrap_err() else {
            panic!("a decode error")
        };
        assert!(detail.starts_with("truncated JSON at data[0]"), "{detail}");
        assert!(!detail.contains("LEAKME"));
        let CallError::Decode(detail) = decode_json::<Page>(b"whsec_LEAKME").unwrap_err() else { panic!() };
        assert!(!detail.contains("LEAKME") && detail.starts_with("not JSON"), "{detail}");
        // A map key of the body is data: never echoed.
        let CallError::Decode(detail) =
            decode_json::<BTreeMap<String, u32>>(br#"{"sk_live_LEAKME": "x"}"#).unwrap_err()
        else {
            panic!()
        };
        assert!(!detail.contains("LEAKME"), "{detail}");
        // A whole value followed by more text is refused too (the plain path fails, the tracked one says why).
        let CallError::Decode(detail) = decode_json::<Page>(br#"{"data": []} sk_live_LEAKME"#).unwrap_err() else {
            panic!("a decode error")
        };
        assert_eq!(detail, "trailing data after the JSON value");
        let page = decode_json::<Page>(br#"{"data": [{"id": "a", "count": 1}]} "#).unwrap();
        assert_eq!(page.data.len(), 1);
    }

    #[test]
    fn bodies_decode_the_same_whether_or_not_they_are_utf8_as_a_whole() {
        #[derive(Debug, serde::Deserialize)]
        struct Item {
            id: String,
        }
        // Text beyond ASCII, escaped and not.
        let item = decode_json::<Item>("{\"id\": \"caf\u{e9} \\u00e9\"}".as_bytes()).unwrap();
        assert_eq!(item.id, "caf\u{e9} \u{e9}");
        // Bytes that are not UTF-8 in a field nobody reads: decoding from bytes never checked them, so the
        // answer still decodes (on the slower path).
        let item = decode_json::<Item>(b"{\"id\": \"a\", \"note\": \"\xff\xfe\"}").unwrap();
        assert_eq!(item.id, "a");
        // In a field that is read, they are a decode error that does not quote them.
        let CallError::Decode(detail) = decode_json::<Item>(b"{\"id\": \"sk_live_\xff\"}").unwrap_err() else {
            panic!("a decode error")
        };
        assert!(!detail.contains("sk_live"), "{detail}");
    }
}
