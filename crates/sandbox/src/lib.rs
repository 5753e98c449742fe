//! A stand-in for Clerk and Svix, for tests and demos: nothing on this machine reaches the real services.
//!
//! [`start`] binds, on loopback only:
//! - the **Backend API** (`GET /v1/instance`, `GET /v1/users/count`, `GET /v1/domains`,
//!   `POST /v1/webhooks/svix_url`), selecting the instance by the `Bearer` secret key presented, plus an
//!   admin surface under `/__sandbox/` (see below);
//! - the **Svix API** (`GET /api/v1/app/{app_id}/endpoint`, `GET .../endpoint/{id}/secret`) on its own
//!   listener, authenticated by the token found in a `svix_url`;
//! - one **Frontend API** per instance (`GET /v1/environment`), each on its own listener so that its
//!   `frontend_api_url` is a host root like `https://clerk.acme.com`;
//! - a UDP **DNS** responder answering the scenarios' CNAME records.
//!
//! [`start_kms`] starts a KMS stand-in (the real KMS JSON protocol, encryption context enforced; see
//! the `kms` module) on its own listener.
//!
//! Ports: with `backend_port = 0` everything takes an ephemeral port. With a fixed `backend_port = P`, the
//! Svix API listens on `P + 1` and the Frontend API of the `i`-th instance (in [`Scenario::ALL`] order) on
//! `P + 2 + i`, so demo configuration can name them in advance.
//!
//! Answers follow `reference/` (Clerk BAPI/FAPI 2026-05-12, Svix endpoint subset); the tests in
//! this module validate every kind of answer against those schemas. Every request is recorded
//! ([`Sandbox::requests`]) without its credentials. Faults ([`Fault`]) can be injected per instance.
//!
//! Admin surface (on the Backend API listener, for child-process tests; not recorded):
//! - `GET /__sandbox/instances`: [`SandboxInfo`] (the same JSON `clerk-audit sandbox` prints);
//! - `GET /__sandbox/requests`, `DELETE /__sandbox/requests`: the request log ([`RecordedRequest`]), clear it
//!   (also clears the DNS log);
//! - `GET /__sandbox/dns-queries`: the DNS log ([`RecordedDnsQuery`]);
//! - `POST /__sandbox/faults` with `{"instance": name, "fault": {"type": "rate_limited", ...},
//!   "target": "backend_api"|"frontend_api"|"svix_api"|"any", "path": "/v1/instance"}` (`target` optional, default
//!   `backend_api`; `path` optional, default every path): 204, 404 for an unknown instance, 400 for a bad body;
//!   `DELETE /__sandbox/faults` clears all faults.

mod backend;
mod dns;
mod frontend;
mod gate;
mod kms;
mod respond;
mod scenario;
mod state;
mod svix;

#[cfg(test)]
mod openapi;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::serve::ListenerExt as _;
use base64::Engine as _;
use serde::{Serialize, Serializer};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use gate::{GATE_GIVE_UP, GateGroup};
pub use kms::{KmsCounts, KmsStandIn, run_kms_cli, start_kms};
pub use scenario::{
    ENDPOINT_QUERY, ENDPOINT_USERINFO, SECRET_KEY_DEVELOPMENT, SECRET_KEY_DEVELOPMENT_NEAR_CAP,
    SECRET_KEY_PRODUCTION_LAX, SECRET_KEY_PRODUCTION_MISSING_CLKMAIL, SECRET_KEY_PRODUCTION_NO_SECOND_FACTOR,
    SECRET_KEY_PRODUCTION_OPTIONAL_MFA, SECRET_KEY_PRODUCTION_REQUIRED_MFA, SECRET_KEY_WEBHOOKS_ALL_DISABLED,
    SECRET_KEY_WEBHOOKS_FILTER_COVERING, SECRET_KEY_WEBHOOKS_FILTER_MISSING_EVENT, SECRET_KEY_WEBHOOKS_MATCHING,
    SECRET_KEY_WEBHOOKS_NO_ENDPOINTS, SECRET_KEY_WEBHOOKS_NO_SVIX_APP, SECRET_KEY_WEBHOOKS_OTHER_PATH,
    SECRET_KEY_WEBHOOKS_PAGINATED, Scenario, WEBHOOK_ROUTE, WEBHOOK_SECRET_MATCHING, WEBHOOK_SECRET_STALE,
};
pub use state::{DnsOutcome, Fault, FaultTarget, HostKind, PresentedCredential, RecordedDnsQuery, RecordedRequest};

use state::{InstanceRuntime, Shared};

/// Where the sandbox listens. Only loopback addresses are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxConfig {
    /// The address every listener binds (e.g. `127.0.0.1`).
    pub host: IpAddr,
    /// The Backend API port; `0` for any. A fixed port also fixes the Svix and Frontend API ports (see the
    /// module documentation).
    pub backend_port: u16,
    /// The UDP DNS port; `0` for any.
    pub dns_port: u16,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self { host: IpAddr::V4(Ipv4Addr::LOCALHOST), backend_port: 0, dns_port: 0 }
    }
}

/// One sandbox instance, as a test or demo needs to know it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SandboxInstance {
    /// The instance's name, equal to its scenario's name (e.g. `production-optional-mfa`).
    pub name: String,
    pub scenario: Scenario,
    /// `development` or `production`.
    pub environment_type: String,
    /// Clerk's instance id (`ins_...`).
    pub instance_id: String,
    /// The constant secret key selecting this instance on the Backend API.
    pub secret_key: String,
    /// `pk_test_`/`pk_live_` + base64 of the Frontend API host (`127.0.0.1:<port>`) + `$`.
    pub publishable_key: String,
    /// The instance's own Frontend API, e.g. `http://127.0.0.1:41234` (serialized without trailing slash).
    #[serde(serialize_with = "serialize_origin")]
    pub frontend_api_url: url::Url,
    /// The primary domain's name (e.g. `acme-optional-mfa.example`).
    pub domain: String,
    /// The Svix app id, if the instance has a Svix app.
    pub svix_app_id: Option<String>,
    /// What `GET /v1/users/count` answers.
    pub user_count: u64,
}

/// Everything a child-process test or demo script needs: printed by [`run_cli`] and served at
/// `GET /__sandbox/instances`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SandboxInfo {
    #[serde(serialize_with = "serialize_origin")]
    pub backend_api_url: url::Url,
    #[serde(serialize_with = "serialize_origin")]
    pub svix_api_url: url::Url,
    pub dns_addr: SocketAddr,
    pub instances: Vec<SandboxInstance>,
}

impl SandboxInfo {
    fn of(shared: &Shared) -> Self {
        Self {
            backend_api_url: shared.backend_api_url.clone(),
            svix_api_url: shared.svix_api_url.clone(),
            dns_addr: shared.dns_addr,
            instances: shared.instances.iter().map(|i| i.public.clone()).collect(),
        }
    }
}

fn serialize_origin<S: Serializer>(url: &url::Url, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&origin(url))
}

/// `scheme://host:port` without trailing slash.
pub(crate) fn origin(url: &url::Url) -> String {
    url.as_str().trim_end_matches('/').to_owned()
}

/// A running sandbox. Dropping it stops the servers (without waiting); [`Sandbox::shutdown`] waits.
pub struct Sandbox {
    shared: Arc<Shared>,
    public_instances: Vec<SandboxInstance>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

async fn bind_tcp(host: IpAddr, port: u16, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(SocketAddr::new(host, port))
        .await
        .with_context(|| format!("sandbox: cannot bind the {what} on {host}:{port}"))
}

fn url_of(addr: SocketAddr) -> anyhow::Result<url::Url> {
    url::Url::parse(&format!("http://{addr}")).context("sandbox: listener address is not a URL")
}

fn fixed_port(base: u16, offset: usize) -> anyhow::Result<u16> {
    if base == 0 {
        return Ok(0);
    }
    u16::try_from(usize::from(base) + offset).context("sandbox: backend_port too high for the ports that follow it")
}

/// Starts the sandbox with every scenario's instance.
pub async fn start(config: SandboxConfig) -> anyhow::Result<Sandbox> {
    if !config.host.is_loopback() {
        bail!("sandbox: refusing to bind {}: only loopback addresses are allowed", config.host);
    }
    let backend = bind_tcp(config.host, config.backend_port, "Backend API").await?;
    let svix = bind_tcp(config.host, fixed_port(config.backend_port, 1)?, "Svix API").await?;
    let mut frontends = Vec::new();
    for (offset, scenario) in Scenario::ALL.into_iter().enumerate() {
        let port = fixed_port(config.backend_port, 2 + offset)?;
        frontends.push(bind_tcp(config.host, port, &format!("Frontend API of {scenario}")).await?);
    }
    let dns_socket = UdpSocket::bind(SocketAddr::new(config.host, config.dns_port))
        .await
        .with_context(|| format!("sandbox: cannot bind the DNS server on {}:{} (udp)", config.host, config.dns_port))?;

    let mut instances = Vec::new();
    for (scenario, listener) in Scenario::ALL.into_iter().zip(&frontends) {
        let spec = scenario.spec();
        let frontend_addr = listener.local_addr()?;
        let frontend_api_url = url_of(frontend_addr)?;
        let prefix = if spec.environment == scenario::EnvironmentType::Production { "pk_live_" } else { "pk_test_" };
        let publishable_key =
            format!("{prefix}{}", base64::engine::general_purpose::STANDARD.encode(format!("{frontend_addr}$")));
        let public = SandboxInstance {
            name: scenario.as_str().to_owned(),
            scenario,
            environment_type: spec.environment.as_str().to_owned(),
            instance_id: spec.instance_id.clone(),
            secret_key: scenario.secret_key().to_owned(),
            publishable_key,
            frontend_api_url,
            domain: spec.primary_domain().name.clone(),
            svix_app_id: spec.svix.as_ref().map(|app| app.app_id.clone()),
            user_count: spec.users_total,
        };
        instances.push(InstanceRuntime { spec, public });
    }

    let shared = Arc::new(Shared::new(
        instances,
        url_of(backend.local_addr()?)?,
        url_of(svix.local_addr()?)?,
        dns_socket.local_addr()?,
    ));
    let (shutdown, _) = watch::channel(false);
    let mut tasks = Vec::new();

    let serve = |listener: TcpListener, router: axum::Router| {
        let mut stop = shutdown.subscribe();
        tokio::spawn(async move {
            let signal = async move {
                let _ = stop.changed().await;
            };
            // Small HTTP/2 frames (a stream's headers, then its body) must not wait for the previous segment's
            // ACK: without TCP_NODELAY, Nagle's algorithm and the peer's delayed ACK add up to 40 ms to a
            // response on a busy multiplexed connection. Real API edges send at once.
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, router).with_graceful_shutdown(signal).await;
        })
    };
    tasks.push(serve(backend, backend::router(shared.clone())));
    tasks.push(serve(svix, svix::router(shared.clone())));
    for (index, listener) in frontends.into_iter().enumerate() {
        tasks.push(serve(listener, frontend::router(shared.clone(), index)));
    }
    let table = dns::DnsTable::build(&shared);
    tasks.push(tokio::spawn(dns::serve(dns_socket, shared.clone(), table, shutdown.subscribe())));

    let public_instances = shared.instances.iter().map(|i| i.public.clone()).collect();
    Ok(Sandbox { shared, public_instances, shutdown, tasks })
}

impl Sandbox {
    /// The Backend API root, e.g. `http://127.0.0.1:PORT/` (the worker calls `{root}/v1/instance`).
    pub fn backend_api_url(&self) -> url::Url {
        self.shared.backend_api_url.clone()
    }

    /// The Svix API root (its own listener), e.g. `http://127.0.0.1:PORT/`.
    pub fn svix_api_url(&self) -> url::Url {
        self.shared.svix_api_url.clone()
    }

    /// The UDP DNS server answering the scenarios' CNAME records.
    pub fn dns_addr(&self) -> SocketAddr {
        self.shared.dns_addr
    }

    /// Every instance, in [`Scenario::ALL`] order.
    pub fn instances(&self) -> &[SandboxInstance] {
        &self.public_instances
    }

    /// The instance of a scenario (there is exactly one per scenario).
    pub fn instance(&self, scenario: Scenario) -> &SandboxInstance {
        self.public_instances
            .iter()
            .find(|instance| instance.scenario == scenario)
            .expect("the sandbox serves one instance per scenario")
    }

    /// What `clerk-audit sandbox` prints and `GET /__sandbox/instances` serves.
    pub fn info(&self) -> SandboxInfo {
        SandboxInfo::of(&self.shared)
    }

    /// Adds a fault to an instance's Backend API (DNS faults: its DNS names). Panics on an unknown instance
    /// name (a test bug).
    pub fn set_fault(&self, instance_name: &str, fault: Fault) {
        self.set_fault_on(instance_name, FaultTarget::BackendApi, fault);
    }

    /// Adds a fault to the chosen HTTP host(s) of an instance.
    pub fn set_fault_on(&self, instance_name: &str, target: FaultTarget, fault: Fault) {
        let index = self
            .shared
            .instance_by_name(instance_name)
            .unwrap_or_else(|| panic!("sandbox: no instance named `{instance_name}`"));
        self.shared.add_fault(index, target, None, fault);
    }

    /// Adds a fault to one request path (e.g. `/v1/instance`) of the chosen HTTP host(s) of an instance:
    /// the client's independent calls run in parallel, so a counted fault on a whole host would land on
    /// whichever call arrives first.
    pub fn set_fault_on_path(&self, instance_name: &str, target: FaultTarget, path: &str, fault: Fault) {
        let index = self
            .shared
            .instance_by_name(instance_name)
            .unwrap_or_else(|| panic!("sandbox: no instance named `{instance_name}`"));
        self.shared.add_fault(index, target, Some(path.to_owned()), fault);
    }

    /// Adds a fault to the chosen HTTP host(s) of every instance.
    pub fn set_fault_everywhere(&self, target: FaultTarget, fault: Fault) {
        for index in 0..self.shared.instances.len() {
            self.shared.add_fault(index, target, None, fault.clone());
        }
    }

    /// Turns the request and DNS logs on (the default) or off: a long benchmark or chaos run would
    /// otherwise keep every request in memory.
    pub fn set_recording(&self, on: bool) {
        self.shared.set_recording(on);
    }

    /// Arms the rendezvous gate for one instance: its requests (HTTP on any host, and DNS questions about
    /// its names) are held in groups of these sizes, each group answered only once it is full (see
    /// [`GateGroup`]; a group that does not fill within [`GATE_GIVE_UP`] is released and reported unfilled).
    /// Proves which calls a client makes at the same time. Panics on an unknown instance name.
    pub fn set_gate(&self, instance_name: &str, group_sizes: Vec<usize>) {
        let index = self
            .shared
            .instance_by_name(instance_name)
            .unwrap_or_else(|| panic!("sandbox: no instance named `{instance_name}`"));
        self.shared.gate.arm(index, group_sizes, GATE_GIVE_UP);
    }

    /// The groups the gate formed so far, in order (an unfilled open group last).
    pub fn gate_report(&self) -> Vec<GateGroup> {
        self.shared.gate.report()
    }

    /// Removes every fault of every instance.
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// Every HTTP request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Every DNS question received so far, in order of arrival.
    pub fn dns_queries(&self) -> Vec<RecordedDnsQuery> {
        self.shared.dns_queries()
    }

    /// Forgets the recorded HTTP requests and DNS questions.
    pub fn clear_requests(&self) {
        self.shared.clear_requests();
    }

    /// Stops every server and waits for them (at most 5 s; connections still open then are dropped).
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let tasks = std::mem::take(&mut self.tasks);
        let aborts: Vec<_> = tasks.iter().map(|task| task.abort_handle()).collect();
        if tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(tasks)).await.is_err() {
            for abort in aborts {
                abort.abort();
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// `clerk-audit sandbox`: starts the sandbox, prints [`SandboxInfo`] as one JSON line on stdout, and serves
/// until ctrl-c (or SIGTERM).
pub async fn run_cli(config: SandboxConfig) -> anyhow::Result<()> {
    use std::io::Write as _;
    let sandbox = start(config).await?;
    let line = serde_json::to_string(&sandbox.info())?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
    }
    wait_for_stop_signal().await?;
    sandbox.shutdown().await;
    Ok(())
}

#[cfg(unix)]
pub(crate) async fn wait_for_stop_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
pub(crate) async fn wait_for_stop_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await?;
    Ok(())
}
