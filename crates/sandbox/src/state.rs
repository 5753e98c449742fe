//! The sandbox's shared state: instances, active faults, issued Svix tokens and the request log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use axum::http::{HeaderMap, Method, Uri, Version};
use serde::{Deserialize, Serialize};

use super::SandboxInstance;
use super::scenario::ScenarioSpec;

/// Which of the sandbox's servers a request reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostKind {
    /// The Backend API (`api.clerk.com` stand-in). Serialized `backend_api`.
    BackendApi,
    /// An instance's Frontend API (`clerk.<domain>` stand-in). Serialized `frontend_api`.
    FrontendApi,
    /// The Svix API (`api.<region>.svix.com` stand-in). Serialized `svix_api`.
    SvixApi,
}

/// What the request presented in its `Authorization` header, classified without keeping it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresentedCredential {
    /// No `Authorization` header.
    None,
    /// `Bearer <a secret key of a sandbox instance>`.
    ClerkSecretKey,
    /// `Bearer <a Svix token the sandbox issued through svix_url>`.
    SvixToken,
    /// `Bearer <something else>` (unknown key or token).
    UnknownBearer,
    /// An `Authorization` header that is not `Bearer <token>`.
    Malformed,
}

/// One HTTP request the sandbox received (admin requests under `/__sandbox/` are not recorded).
/// Never holds a secret key, token or signing secret: credentials are only classified, and query or path
/// parts that look like one are replaced by `[REDACTED]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// Order of arrival, from 0.
    pub seq: u64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub method: String,
    pub host: HostKind,
    pub path: String,
    pub query: Option<String>,
    /// The instance the request was attributed to (by secret key, listener or Svix token), if any.
    pub instance: Option<String>,
    /// The status answered (decided before any injected latency).
    pub status: u16,
    /// The `Clerk-API-Version` header, if sent.
    pub clerk_api_version: Option<String>,
    pub credential: PresentedCredential,
    pub user_agent: Option<String>,
    /// The HTTP version the request came in (`HTTP/1.1`, `HTTP/2.0`).
    pub http_version: String,
}

/// What the sandbox DNS did with a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum DnsOutcome {
    Cname {
        target: String,
    },
    NxDomain,
    /// The name exists (a zone apex) but has no record of that type.
    NoData,
    ServFail,
    /// No answer sent (fault `dns_no_answer`): the client times out.
    Dropped,
    FormErr,
}

/// One DNS question the sandbox DNS received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedDnsQuery {
    pub seq: u64,
    pub at: chrono::DateTime<chrono::Utc>,
    /// Lowercase, without the trailing dot.
    pub name: String,
    pub record_type: String,
    pub instance: Option<String>,
    pub outcome: DnsOutcome,
}

/// A fault injected into an instance's answers. HTTP faults apply to the hosts chosen by the
/// [`FaultTarget`] (default: the Backend API); DNS faults apply to the instance's DNS names.
///
/// `times` counts the requests that get the fault before it clears by itself; `0` means "until
/// [`super::Sandbox::clear_faults`]". Serialized with a `type` tag, e.g.
/// `{"type":"rate_limited","retry_after_secs":2,"times":3}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Fault {
    /// 429 with `Retry-After: <retry_after_secs>` and a Clerk (or Svix) error body.
    RateLimited { retry_after_secs: u64, times: u32 },
    /// 500 with an error body.
    ServerError { times: u32 },
    /// Status and headers at once, then half the body, then the rest after `delay_ms`.
    SlowBody { delay_ms: u64 },
    /// 401 `authentication_invalid` on every call, as for a revoked secret key (Svix target: 401 for the token).
    Revoked,
    /// Wait `ms` before answering anything.
    Latency { ms: u64 },
    /// Wait a random time between `min_ms` and `max_ms` (inclusive) before answering, drawn per request.
    RandomLatency { min_ms: u64, max_ms: u64 },
    /// Refuse a random share of requests, drawn per request: `rate_limited_permille` of them with 429 and
    /// `Retry-After: <retry_after_secs>`, `server_error_permille` with 500. Stays until cleared.
    Flaky { rate_limited_permille: u32, server_error_permille: u32, retry_after_secs: u64 },
    /// 200 with a JSON body that follows no API shape and quotes the request's `Authorization` header, as a
    /// value and as a map key, the way a broken or hostile server could: the client's decoder errors must not
    /// repeat it.
    MalformedBody,
    /// Never answer DNS queries for `host` (or, without `host`, for every name of the instance).
    DnsNoAnswer { host: Option<String> },
    /// Answer SERVFAIL for `host` (or every name of the instance).
    DnsServFail { host: Option<String> },
    /// Answer a CNAME to `target` instead of the expected value for `host`.
    DnsWrongTarget { host: String, target: String },
}

impl Fault {
    fn is_dns(&self) -> bool {
        matches!(self, Fault::DnsNoAnswer { .. } | Fault::DnsServFail { .. } | Fault::DnsWrongTarget { .. })
    }

    fn times(&self) -> Option<u32> {
        match self {
            Fault::RateLimited { times, .. } | Fault::ServerError { times } if *times > 0 => Some(*times),
            _ => None,
        }
    }
}

/// Which of an instance's HTTP hosts an HTTP fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultTarget {
    /// Serialized `backend_api` (also accepted: `backend`).
    #[default]
    #[serde(alias = "backend")]
    BackendApi,
    /// Serialized `frontend_api` (also accepted: `frontend`).
    #[serde(alias = "frontend")]
    FrontendApi,
    /// Serialized `svix_api` (also accepted: `svix`).
    #[serde(alias = "svix")]
    SvixApi,
    /// Every HTTP host of the instance.
    Any,
}

impl FaultTarget {
    fn covers(self, host: HostKind) -> bool {
        matches!(
            (self, host),
            (FaultTarget::Any, _)
                | (FaultTarget::BackendApi, HostKind::BackendApi)
                | (FaultTarget::FrontendApi, HostKind::FrontendApi)
                | (FaultTarget::SvixApi, HostKind::SvixApi)
        )
    }
}

#[derive(Debug, Clone)]
struct ActiveFault {
    instance: usize,
    target: FaultTarget,
    /// Only requests for this path (no query) are affected; `None`: every path of the target host(s).
    path: Option<String>,
    fault: Fault,
    remaining: Option<u32>,
}

/// A refusal a fault imposes instead of the normal answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    RateLimited { retry_after_secs: u64 },
    ServerError,
    Revoked,
    MalformedBody,
}

/// What the active faults do to one HTTP request.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FaultPlan {
    pub latency: Duration,
    pub slow_body: Option<Duration>,
    pub rejection: Option<Rejection>,
}

/// What the active faults do to one DNS question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DnsFaultAction {
    Drop,
    ServFail,
    WrongTarget(String),
}

/// One instance as the servers see it.
pub(crate) struct InstanceRuntime {
    pub spec: ScenarioSpec,
    pub public: SandboxInstance,
}

#[derive(Default)]
struct Inner {
    faults: Vec<ActiveFault>,
    requests: Vec<RecordedRequest>,
    dns_queries: Vec<RecordedDnsQuery>,
    /// Svix tokens issued by `svix_url`, to the index of the instance whose app they open.
    svix_tokens: HashMap<String, usize>,
}

pub(crate) struct Shared {
    pub instances: Vec<InstanceRuntime>,
    pub backend_api_url: url::Url,
    pub svix_api_url: url::Url,
    pub dns_addr: std::net::SocketAddr,
    seq: AtomicU64,
    dns_seq: AtomicU64,
    /// Off: requests and DNS questions are not logged (long benchmark and chaos runs).
    recording: AtomicBool,
    inner: Mutex<Inner>,
    /// Holds an instance's requests in groups (see the `gate` module).
    pub gate: super::gate::Gate,
}

/// The parts of a request the handlers read and the log keeps; an extractor, so every handler takes the
/// same head the same way.
pub(crate) struct RequestHead {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestHead {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
        })
    }
}

impl Shared {
    pub(crate) fn new(
        instances: Vec<InstanceRuntime>,
        backend_api_url: url::Url,
        svix_api_url: url::Url,
        dns_addr: std::net::SocketAddr,
    ) -> Self {
        Self {
            instances,
            backend_api_url,
            svix_api_url,
            dns_addr,
            seq: AtomicU64::new(0),
            dns_seq: AtomicU64::new(0),
            recording: AtomicBool::new(true),
            inner: Mutex::new(Inner::default()),
            gate: super::gate::Gate::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn instance_by_name(&self, name: &str) -> Option<usize> {
        self.instances.iter().position(|instance| instance.public.name == name)
    }

    pub(crate) fn instance_by_secret_key(&self, key: &str) -> Option<usize> {
        self.instances.iter().position(|instance| instance.public.secret_key == key)
    }

    pub(crate) fn instance_by_svix_token(&self, token: &str) -> Option<usize> {
        self.lock().svix_tokens.get(token).copied()
    }

    pub(crate) fn issue_svix_token(&self, instance: usize) -> String {
        use rand::Rng as _;
        use rand::distr::Alphanumeric;
        let token: String = rand::rng().sample_iter(&Alphanumeric).take(32).map(char::from).collect();
        let token = format!("appsk_{token}");
        self.lock().svix_tokens.insert(token.clone(), instance);
        token
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst)
    }

    /// Classifies the `Authorization` header and returns the bearer token if there is one.
    pub(crate) fn classify_credential<'h>(&self, headers: &'h HeaderMap) -> (PresentedCredential, Option<&'h str>) {
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
            return (PresentedCredential::None, None);
        };
        let Some(token) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim) else {
            return (PresentedCredential::Malformed, None);
        };
        if token.is_empty() {
            return (PresentedCredential::Malformed, None);
        }
        let kind = if self.instance_by_secret_key(token).is_some() {
            PresentedCredential::ClerkSecretKey
        } else if self.instance_by_svix_token(token).is_some() {
            PresentedCredential::SvixToken
        } else {
            PresentedCredential::UnknownBearer
        };
        (kind, Some(token))
    }

    /// Records one answered request.
    pub(crate) fn record(
        &self,
        seq: u64,
        host: HostKind,
        head: &RequestHead,
        instance: Option<usize>,
        status: u16,
        credential: PresentedCredential,
    ) {
        if !self.recording.load(Ordering::Relaxed) {
            return;
        }
        let header = |name: &str| head.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let entry = RecordedRequest {
            seq,
            at: chrono::Utc::now(),
            method: head.method.as_str().to_owned(),
            host,
            path: self.redact(head.uri.path()),
            query: head.uri.query().map(|q| self.redact(q)),
            instance: instance.map(|i| self.instances[i].public.name.clone()),
            status,
            clerk_api_version: header("clerk-api-version"),
            credential,
            user_agent: header("user-agent"),
            http_version: format!("{:?}", head.version),
        };
        self.lock().requests.push(entry);
    }

    pub(crate) fn set_recording(&self, on: bool) {
        self.recording.store(on, Ordering::Relaxed);
    }

    pub(crate) fn record_dns(&self, name: String, record_type: String, instance: Option<usize>, outcome: DnsOutcome) {
        if !self.recording.load(Ordering::Relaxed) {
            return;
        }
        let entry = RecordedDnsQuery {
            seq: self.dns_seq.fetch_add(1, Ordering::SeqCst),
            at: chrono::Utc::now(),
            name,
            record_type,
            instance: instance.map(|i| self.instances[i].public.name.clone()),
            outcome,
        };
        self.lock().dns_queries.push(entry);
    }

    /// Replaces anything that looks like a credential (`sk_`, `pk_` excepted, `whsec_`, `appsk_`, a known
    /// key or token) in a path or query with `[REDACTED]`.
    fn redact(&self, text: &str) -> String {
        let inner = self.lock();
        let looks_secret = |piece: &str| {
            let decoded = url_decode(piece);
            ["sk_live_", "sk_test_", "whsec_", "appsk_", "Bearer"].iter().any(|p| decoded.contains(p))
                || inner.svix_tokens.contains_key(decoded.as_str())
                || self.instances.iter().any(|i| decoded.contains(&i.public.secret_key))
        };
        text.split_inclusive(['/', '&', '=', '?'])
            .map(|piece| {
                let (body, sep) = match piece.char_indices().last() {
                    Some((i, '/' | '&' | '=' | '?')) => (&piece[..i], &piece[i..]),
                    _ => (piece, ""),
                };
                if looks_secret(body) { format!("[REDACTED]{sep}") } else { piece.to_owned() }
            })
            .collect()
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        let mut requests = self.lock().requests.clone();
        requests.sort_by_key(|r| r.seq);
        requests
    }

    pub(crate) fn dns_queries(&self) -> Vec<RecordedDnsQuery> {
        let mut queries = self.lock().dns_queries.clone();
        queries.sort_by_key(|q| q.seq);
        queries
    }

    pub(crate) fn clear_requests(&self) {
        let mut inner = self.lock();
        inner.requests.clear();
        inner.dns_queries.clear();
    }

    pub(crate) fn add_fault(&self, instance: usize, target: FaultTarget, path: Option<String>, fault: Fault) {
        let remaining = fault.times();
        self.lock().faults.push(ActiveFault { instance, target, path, fault, remaining });
    }

    pub(crate) fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Decides what the active faults do to one HTTP request, consuming one use of a counted fault.
    pub(crate) fn plan_faults(&self, instance: usize, host: HostKind, path: &str) -> FaultPlan {
        let mut inner = self.lock();
        let mut plan = FaultPlan::default();
        let mut exhausted = None;
        for (index, active) in inner.faults.iter_mut().enumerate() {
            if active.instance != instance
                || active.fault.is_dns()
                || !active.target.covers(host)
                || active.path.as_deref().is_some_and(|only| only != path)
            {
                continue;
            }
            match &active.fault {
                Fault::Latency { ms } => plan.latency += Duration::from_millis(*ms),
                Fault::RandomLatency { min_ms, max_ms } => {
                    use rand::Rng as _;
                    let ms = rand::rng().random_range(*min_ms..=(*max_ms).max(*min_ms));
                    plan.latency += Duration::from_millis(ms);
                }
                Fault::Flaky { rate_limited_permille, server_error_permille, retry_after_secs } => {
                    use rand::Rng as _;
                    let draw = rand::rng().random_range(0..1000u32);
                    if plan.rejection.is_none() {
                        if draw < *rate_limited_permille {
                            plan.rejection = Some(Rejection::RateLimited { retry_after_secs: *retry_after_secs });
                        } else if draw < rate_limited_permille + server_error_permille {
                            plan.rejection = Some(Rejection::ServerError);
                        }
                    }
                }
                Fault::SlowBody { delay_ms } => plan.slow_body = Some(Duration::from_millis(*delay_ms)),
                rejecting if plan.rejection.is_none() => {
                    plan.rejection = Some(match rejecting {
                        Fault::RateLimited { retry_after_secs, .. } => {
                            Rejection::RateLimited { retry_after_secs: *retry_after_secs }
                        }
                        Fault::ServerError { .. } => Rejection::ServerError,
                        Fault::MalformedBody => Rejection::MalformedBody,
                        _ => Rejection::Revoked,
                    });
                    if let Some(remaining) = active.remaining.as_mut() {
                        *remaining -= 1;
                        if *remaining == 0 {
                            exhausted = Some(index);
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(index) = exhausted {
            inner.faults.remove(index);
        }
        plan
    }

    /// Decides what the active DNS faults do to a question about `name` (an instance's name).
    pub(crate) fn dns_fault(&self, instance: usize, name: &str) -> Option<DnsFaultAction> {
        let inner = self.lock();
        let applies = |host: &Option<String>| host.as_deref().is_none_or(|h| normalize_dns_name(h) == name);
        inner.faults.iter().filter(|f| f.instance == instance).find_map(|active| match &active.fault {
            Fault::DnsNoAnswer { host } if applies(host) => Some(DnsFaultAction::Drop),
            Fault::DnsServFail { host } if applies(host) => Some(DnsFaultAction::ServFail),
            Fault::DnsWrongTarget { host, target } if normalize_dns_name(host) == name => {
                Some(DnsFaultAction::WrongTarget(normalize_dns_name(target)))
            }
            _ => None,
        })
    }
}

/// Lowercase, without a trailing dot.
pub(crate) fn normalize_dns_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn url_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_owned())
}
