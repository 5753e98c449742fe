//! The worker binary as a child process of a test, configured exactly like a test app's settings.

use std::path::PathBuf;
use std::time::Duration;

use clerk_audit::configuration::Settings;
use secrecy::ExposeSecret;
use tokio::process::{Child, Command};
use uuid::Uuid;

/// The `CLERK_AUDIT_*` variables that make the binary use exactly `settings`.
pub fn worker_env(settings: &Settings) -> Vec<(String, String)> {
    let s = settings;
    let mut vars: Vec<(&str, String)> = vec![
        ("WORKER__CONCURRENCY", s.worker.concurrency.to_string()),
        ("WORKER__MAX_JOB_BYTES", s.worker.max_job_bytes.to_string()),
        ("WORKER__MAX_ATTEMPTS", s.worker.max_attempts.to_string()),
        ("WORKER__RETRY_DELAY_SECS", s.worker.retry_delay_secs.to_string()),
        ("WORKER__DRAIN_GRACE_SECS", s.worker.drain_grace_secs.to_string()),
        ("AMQP__URL", s.amqp.url.expose_secret().to_owned()),
        ("AMQP__JOBS_EXCHANGE", s.amqp.jobs_exchange.clone()),
        ("AMQP__JOBS_ROUTING_KEY", s.amqp.jobs_routing_key.clone()),
        ("AMQP__JOBS_QUEUE", s.amqp.jobs_queue.clone()),
        ("AMQP__RETRY_QUEUE", s.amqp.retry_queue.clone()),
        ("AMQP__DEAD_LETTER_EXCHANGE", s.amqp.dead_letter_exchange.clone()),
        ("AMQP__DEAD_LETTER_QUEUE", s.amqp.dead_letter_queue.clone()),
        ("AMQP__DELIVERY_LIMIT", s.amqp.delivery_limit.to_string()),
        ("AMQP__FINDINGS_EXCHANGE", s.amqp.findings_exchange.clone()),
        ("DATABASE__URL", s.database.url.expose_secret().to_owned()),
        ("DATABASE__POOL_SIZE", s.database.pool_size.to_string()),
        ("DATABASE__TIMEOUT_MS", s.database.timeout_ms.to_string()),
        ("KMS__ENDPOINT_URL", s.kms.endpoint_url.clone()),
        ("KMS__REGION", s.kms.region.clone()),
        ("CLERK__BACKEND_API_URL", s.clerk.backend_api_url.to_string()),
        ("CLERK__API_VERSION", s.clerk.api_version.clone()),
        ("CLERK__RATE_LIMIT_PER_10S", s.clerk.rate_limit_per_10s.to_string()),
        ("SVIX__API_URL", s.svix.api_url.clone()),
        ("HTTP__ALLOW_LOOPBACK", s.http.allow_loopback.to_string()),
        ("HTTP__CLEARTEXT_HTTP2", s.http.cleartext_http2.to_string()),
        ("HTTP__CONNECT_TIMEOUT_MS", s.http.connect_timeout_ms.to_string()),
        ("HTTP__REQUEST_TIMEOUT_MS", s.http.request_timeout_ms.to_string()),
        ("HTTP__MAX_BODY_BYTES", s.http.max_body_bytes.to_string()),
        ("HTTP__MAX_ATTEMPTS", s.http.max_attempts.to_string()),
        ("HTTP__MAX_RETRY_AFTER_SECS", s.http.max_retry_after_secs.to_string()),
        ("DNS__NAMESERVER", s.dns.nameserver.clone()),
        ("DNS__TIMEOUT_MS", s.dns.timeout_ms.to_string()),
        ("CHECKS__MFA_USER_THRESHOLD", s.checks.mfa_user_threshold.to_string()),
        ("OPS__LISTEN", "127.0.0.1:0".to_owned()),
        ("TELEMETRY__LOG_FORMAT", "text".to_owned()),
        ("EVENTS__SOURCE", s.events.source.clone()),
    ];
    vars.push(("ENVIRONMENT", "local".to_owned()));
    vars.push(("CONFIG_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/config").to_owned()));
    vars.into_iter().map(|(k, v)| (format!("CLERK_AUDIT_{k}"), v)).collect()
}

/// A `clerk-audit worker` child process; its log goes to a temporary file (shown if the test fails,
/// removed otherwise). Killed if dropped while running.
pub struct Worker {
    child: Child,
    log: PathBuf,
    name: String,
}

impl Worker {
    pub fn start(settings: &Settings, name: &str) -> Self {
        Self::start_with_env(settings, name, &[])
    }

    /// Like [`Worker::start`], with extra environment variables (a test hook).
    pub fn start_with_env(settings: &Settings, name: &str, extra: &[(&str, &str)]) -> Self {
        let log = std::env::temp_dir().join(format!("clerk-audit-delivery-{}-{name}.log", Uuid::new_v4().simple()));
        let file = std::fs::File::create(&log).expect("create the worker log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_clerk-audit"));
        command.arg("worker");
        // The test's own CLERK_AUDIT_* variables must not leak into the worker's configuration.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CLERK_AUDIT_") {
                command.env_remove(key);
            }
        }
        command
            .envs(worker_env(settings))
            .env("RUST_LOG", "info,lapin=warn")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .envs(extra.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .kill_on_drop(true);
        let child = command.spawn().expect("start clerk-audit worker");
        Worker { child, log, name: name.to_owned() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the worker is running")
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGKILL, and reap the process.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        let _ = self.child.wait().await;
    }

    /// Waits for the process to exit, at most `deadline`.
    pub async fn exit_status(&mut self, deadline: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(deadline, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("worker {} did not exit in time:\n{}", self.name, self.log_tail(40)))
            .expect("wait for the worker")
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_lines_containing(&self, needle: &str) -> usize {
        self.log_text().lines().filter(|line| line.contains(needle)).count()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- worker {} log ({}), last lines ---\n{}", self.name, self.log.display(), self.log_tail(80));
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}
