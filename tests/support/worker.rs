//! The worker binary as a child process of a test, configured exactly like a test app's settings.

use std::path::PathBuf;
use std::time::Duration;

use clerk_audit::configuration::Settings;
use tokio::process::{Child, Command};
use uuid::Uuid;

/// The `CLERK_AUDIT_*` variables that make the binary use exactly `settings` (the drivers' list), with the
/// ops listener on an ephemeral port and this crate's config files.
pub fn worker_env(settings: &Settings) -> Vec<(String, String)> {
    let config_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut vars = clerk_audit_loadgen::worker::worker_env(settings, &config_dir);
    for (key, value) in &mut vars {
        if key == "CLERK_AUDIT_OPS__LISTEN" {
            *value = "127.0.0.1:0".to_owned();
        }
    }
    vars
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
