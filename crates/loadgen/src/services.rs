//! A private RabbitMQ node and a private PostgreSQL cluster for runs that restart them: the machine's
//! shared services are never stopped or restarted. Both live under one run directory, listen on loopback
//! ports of their own, and are stopped (and their files removed) when dropped.
//!
//! Needs the Debian packages `rabbitmq-server` and `postgresql` (`scripts/chaos.sh` installs them when
//! missing). Run as root, the servers are started as their own system users (`rabbitmq`, `postgres`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::process::Command;

/// What to stop when the driver is interrupted (a signal ends the process without running destructors).
enum Cleanup {
    Rabbit { node: String, env: Vec<(&'static str, String)> },
    Postgres { bin: PathBuf, data: PathBuf },
}

static CLEANUPS: std::sync::Mutex<Vec<Cleanup>> = std::sync::Mutex::new(Vec::new());

fn register(cleanup: Cleanup) {
    CLEANUPS.lock().unwrap_or_else(|p| p.into_inner()).push(cleanup);
}

/// Stops every private server started by this process, at once and synchronously (for a signal handler;
/// the normal path stops them when they are dropped).
pub fn stop_all_now() {
    let cleanups = std::mem::take(&mut *CLEANUPS.lock().unwrap_or_else(|p| p.into_inner()));
    for cleanup in cleanups {
        match cleanup {
            Cleanup::Rabbit { node, env } => stop_rabbit_now(&node, &env),
            Cleanup::Postgres { bin, data } => stop_postgres_now(&bin, &data),
        }
    }
}

fn stop_rabbit_now(node: &str, env: &[(&'static str, String)]) {
    let ctl = Path::new(RABBIT_BIN).join("rabbitmqctl");
    let mut command = if running_as_root() {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "rabbitmq", "--", "env"]);
        for (key, value) in env {
            c.arg(format!("{key}={value}"));
        }
        c.arg(ctl);
        c
    } else {
        std::process::Command::new(ctl)
    };
    let _ = command
        .args(["-q", "-n", node, "stop"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn stop_postgres_now(bin: &Path, data: &Path) {
    let mut command = if running_as_root() {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join("pg_ctl"));
        c
    } else {
        std::process::Command::new(bin.join("pg_ctl"))
    };
    let _ = command
        .arg("-D")
        .arg(data)
        .args(["-w", "-t", "60", "stop", "-m", "immediate"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// `program args...` as `user` when running as root (the servers refuse to run as root), else as is.
fn command_as(user: &str, program: &Path, env: &[(&str, String)]) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", user, "--", "env"]);
        for (key, value) in env {
            command.arg(format!("{key}={value}"));
        }
        command.arg(program);
        command
    } else {
        let mut command = Command::new(program);
        command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        command
    }
}

fn chown(path: &Path, user: &str) -> anyhow::Result<()> {
    if running_as_root() {
        let status = std::process::Command::new("chown").arg("-R").arg(format!("{user}:")).arg(path).status()?;
        anyhow::ensure!(status.success(), "chown {user} {}", path.display());
    }
    Ok(())
}

async fn run(mut command: Command, what: &str, deadline: Duration) -> anyhow::Result<String> {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let output = tokio::time::timeout(deadline, command.output())
        .await
        .with_context(|| format!("{what}: no answer within {deadline:?}"))?
        .with_context(|| format!("{what}: cannot run"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

async fn wait_port(port: u16, deadline: Duration) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// A RabbitMQ node of its own (`<name>@localhost`), AMQP on `127.0.0.1:<amqp_port>`, no plugins.
pub struct OwnRabbit {
    node: String,
    amqp_port: u16,
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
}

const RABBIT_BIN: &str = "/usr/lib/rabbitmq/bin";

impl OwnRabbit {
    pub async fn start(run_dir: &Path, name: &str, amqp_port: u16, dist_port: u16) -> anyhow::Result<Self> {
        for port in [amqp_port, dist_port] {
            anyhow::ensure!(port_free(port), "port {port} is taken: choose other ports for the private RabbitMQ node");
        }
        let dir = run_dir.join("rabbitmq");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{amqp_port}\nloopback_users = none\n"),
        )?;
        std::fs::write(dir.join("enabled_plugins"), "[].\n")?;
        chown(&dir, "rabbitmq")?;
        let node = format!("{name}@localhost");
        let home = if running_as_root() { "/var/lib/rabbitmq".to_owned() } else { std::env::var("HOME")? };
        let env = vec![
            ("HOME", home),
            ("RABBITMQ_NODENAME", node.clone()),
            ("RABBITMQ_NODE_PORT", amqp_port.to_string()),
            ("RABBITMQ_DIST_PORT", dist_port.to_string()),
            ("RABBITMQ_MNESIA_BASE", dir.join("mnesia").display().to_string()),
            ("RABBITMQ_LOG_BASE", dir.join("log").display().to_string()),
            ("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf").display().to_string()),
            ("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins").display().to_string()),
            ("RABBITMQ_PID_FILE", dir.join("pid").display().to_string()),
        ];
        let rabbit = Self { node, amqp_port, dir, env };
        register(Cleanup::Rabbit { node: rabbit.node.clone(), env: rabbit.env.clone() });
        let mut server = command_as("rabbitmq", &Path::new(RABBIT_BIN).join("rabbitmq-server"), &rabbit.env);
        server.arg("-detached");
        run(server, "rabbitmq-server -detached", Duration::from_secs(60)).await?;
        rabbit.await_startup().await?;
        rabbit.ctl(&["enable_feature_flag", "all"], Duration::from_secs(60)).await?;
        anyhow::ensure!(wait_port(amqp_port, Duration::from_secs(30)).await, "RabbitMQ does not listen on {amqp_port}");
        Ok(rabbit)
    }

    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port)
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("log")
    }

    async fn ctl(&self, args: &[&str], deadline: Duration) -> anyhow::Result<String> {
        let mut command = command_as("rabbitmq", &Path::new(RABBIT_BIN).join("rabbitmqctl"), &self.env);
        command.args(["-q", "-n", &self.node]).args(args);
        run(command, &format!("rabbitmqctl {}", args.join(" ")), deadline).await
    }

    /// `rabbitmqctl stop_app`: the node stays up, the broker inside it stops (every connection closes).
    pub async fn stop_app(&self) -> anyhow::Result<()> {
        self.ctl(&["stop_app"], Duration::from_secs(120)).await.map(drop)
    }

    pub async fn start_app(&self) -> anyhow::Result<()> {
        self.ctl(&["start_app"], Duration::from_secs(120)).await?;
        self.await_startup().await
    }

    /// `await_startup` refuses a node that has not registered yet: ask again until it answers.
    async fn await_startup(&self) -> anyhow::Result<()> {
        let end = Instant::now() + Duration::from_secs(180);
        loop {
            match self.ctl(&["await_startup", "--timeout", "60"], Duration::from_secs(90)).await {
                Ok(_) => return Ok(()),
                Err(error) if Instant::now() >= end => return Err(error.context("RabbitMQ node did not start")),
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }
}

impl Drop for OwnRabbit {
    fn drop(&mut self) {
        stop_rabbit_now(&self.node, &self.env);
    }
}

/// A PostgreSQL cluster of its own (`initdb` into the run directory), trust auth, `127.0.0.1:<port>`.
pub struct OwnPostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
}

/// The newest `/usr/lib/postgresql/<version>/bin`.
fn postgres_bin() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL server binaries not found under /usr/lib/postgresql")?
        .filter_map(Result::ok)
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).context("no PostgreSQL version with initdb under /usr/lib/postgresql")
}

impl OwnPostgres {
    pub async fn start(run_dir: &Path, port: u16) -> anyhow::Result<Self> {
        anyhow::ensure!(port_free(port), "port {port} is taken: choose another port for the private PostgreSQL");
        let bin = postgres_bin()?;
        let dir = run_dir.join("postgres");
        std::fs::create_dir_all(&dir)?;
        chown(&dir, "postgres")?;
        let data = dir.join("data");
        let mut initdb = command_as("postgres", &bin.join("initdb"), &[]);
        initdb.arg("-D").arg(&data).args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
        run(initdb, "initdb", Duration::from_secs(120)).await?;
        let pg = Self { bin, data, port };
        register(Cleanup::Postgres { bin: pg.bin.clone(), data: pg.data.clone() });
        pg.pg_ctl(&["start"]).await?;
        Ok(pg)
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn options(&self) -> String {
        // fsync off: the machine does not crash in these runs, only the server does; WAL in the page cache
        // survives an immediate shutdown.
        format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off",
            self.port,
            self.data.parent().unwrap_or(&self.data).display()
        )
    }

    async fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut command = command_as("postgres", &self.bin.join("pg_ctl"), &[]);
        let log = self.data.parent().unwrap_or(&self.data).join("server.log");
        command.arg("-D").arg(&self.data).arg("-l").arg(&log).args(["-w", "-t", "120", "-o", &self.options()]);
        command.args(args);
        run(command, &format!("pg_ctl {}", args.join(" ")), Duration::from_secs(150)).await.map(drop)
    }

    /// Stops the server the way a crash does (no checkpoint), then starts it again after `down`.
    pub async fn restart(&self, down: Duration) -> anyhow::Result<()> {
        self.pg_ctl(&["stop", "-m", "immediate"]).await?;
        tokio::time::sleep(down).await;
        self.pg_ctl(&["start"]).await
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        stop_postgres_now(&self.bin, &self.data);
    }
}
