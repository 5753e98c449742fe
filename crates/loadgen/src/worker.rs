//! The real `clerk-audit worker` binary as a child process, configured entirely by environment variables
//! from a [`Settings`], with its log in a file, signals, and the resource figures Linux keeps for it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clerk_audit::configuration::Settings;
use secrecy::ExposeSecret;
use tokio::process::{Child, Command};

/// The `CLERK_AUDIT_*` variables that make the binary use exactly `settings` (config files from
/// `config_dir`, environment `local`).
pub fn worker_env(settings: &Settings, config_dir: &Path) -> Vec<(String, String)> {
    let s = settings;
    let vars: Vec<(&str, String)> = vec![
        ("WORKER__CONCURRENCY", s.worker.concurrency.to_string()),
        ("WORKER__MAX_JOB_BYTES", s.worker.max_job_bytes.to_string()),
        ("WORKER__MAX_ATTEMPTS", s.worker.max_attempts.to_string()),
        ("WORKER__RETRY_DELAY_SECS", s.worker.retry_delay_secs.to_string()),
        ("WORKER__RETRY_SWEEP_GRACE_SECS", s.worker.retry_sweep_grace_secs.to_string()),
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
        ("OPS__LISTEN", s.ops.listen.to_string()),
        ("TELEMETRY__LOG_FORMAT", "text".to_owned()),
        ("EVENTS__SOURCE", s.events.source.clone()),
        ("EVENTS__OUTBOX_RETENTION_HOURS", s.events.outbox_retention_hours.to_string()),
        ("ENVIRONMENT", "local".to_owned()),
        ("CONFIG_DIR", config_dir.display().to_string()),
    ];
    vars.into_iter().map(|(k, v)| (format!("CLERK_AUDIT_{k}"), v)).collect()
}

/// How to start a worker process.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub binary: PathBuf,
    pub env: Vec<(String, String)>,
    /// `RUST_LOG` for the worker.
    pub log_filter: String,
    /// Directory for the log files.
    pub log_dir: PathBuf,
}

/// Pids of the workers this process started and has not reaped, for [`kill_all_now`].
static RUNNING: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

fn forget(pid: u32) {
    RUNNING.lock().unwrap_or_else(|p| p.into_inner()).retain(|p| *p != pid);
}

/// SIGKILLs every worker this process started and has not reaped (for a signal handler: a signal ends the
/// process without running destructors).
pub fn kill_all_now() {
    for pid in std::mem::take(&mut *RUNNING.lock().unwrap_or_else(|p| p.into_inner())) {
        let _ = std::process::Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
    }
}

/// A running (or exited) `clerk-audit worker`. Killed if dropped while running.
pub struct WorkerProcess {
    child: Child,
    pid: u32,
    pub log: PathBuf,
}

impl WorkerProcess {
    pub fn start(spec: &WorkerSpec, name: &str) -> anyhow::Result<Self> {
        let log = spec.log_dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("open {}", log.display()))?;
        let mut command = Command::new(&spec.binary);
        command.arg("worker");
        // The driver's own CLERK_AUDIT_* variables must not leak into the worker's configuration.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CLERK_AUDIT_") {
                command.env_remove(key);
            }
        }
        command
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", &spec.log_filter)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true);
        let child = command.spawn().with_context(|| format!("start {}", spec.binary.display()))?;
        let pid = child.id().context("the worker has a pid")?;
        RUNNING.lock().unwrap_or_else(|p| p.into_inner()).push(pid);
        Ok(Self { child, pid, log })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal` (a name such as `TERM` or `KILL`).
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()
            .context("run kill")?;
        anyhow::ensure!(status.success(), "kill -{signal} {} failed", self.pid);
        Ok(())
    }

    /// Waits for the process to exit, at most `deadline`; `None` if it is still running then.
    pub async fn wait_exit(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let status = tokio::time::timeout(deadline, self.child.wait()).await.ok().and_then(Result::ok);
        if status.is_some() {
            forget(self.pid);
        }
        status
    }

    /// SIGKILL, and reap.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        forget(self.pid);
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Resident set size in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid, "VmRSS:")
    }

    /// Peak resident set size in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid, "VmHWM:")
    }

    /// CPU time used so far (user + system, from `/proc/<pid>/stat`).
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time(self.pid)
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        // kill_on_drop ends the process.
        forget(self.pid);
    }
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// User + system CPU time of a process, from `/proc/<pid>/stat` (clock ticks of 1/100 s, the Linux
/// `USER_HZ` on every supported architecture).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let fields = stat_fields(pid)?;
    Some(ticks(fields.get(11)? + fields.get(12)?))
}

/// The numeric fields of `/proc/<pid>/stat` after the command name, which may hold spaces (`state`, index
/// 0, reads as 0). Index 1 is the parent's pid, 11 and 12 user and system time, 13 and 14 those of the
/// children the process has reaped.
pub(crate) fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    Some(after.split_whitespace().map(|field| field.parse().unwrap_or(0)).collect())
}

/// Clock ticks of `/proc/<pid>/stat` as a duration.
pub(crate) fn ticks(count: u64) -> Duration {
    Duration::from_millis(count * 10)
}
