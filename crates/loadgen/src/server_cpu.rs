//! CPU time of the PostgreSQL and RabbitMQ servers a run uses, when they run on this host, and of the
//! driver process itself (the sandbox and KMS stand-ins it serves, its job feed and event consumer): on a
//! small machine they all share the cores with the worker, and a scan's cost to the whole system is theirs
//! plus the worker's. Read from `/proc`, so only for local servers that this user may inspect; `None`
//! otherwise.

use std::path::Path;
use std::time::Duration;

use crate::worker::{cpu_time, stat_fields, ticks};

/// Processes whose CPU time is summed.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerProcesses {
    /// The postmaster: its own time, its reaped backends' and its live children's.
    pub postgres: Option<u32>,
    /// The Erlang VM of the RabbitMQ node.
    pub rabbitmq: Option<u32>,
}

/// CPU time used so far by each server and by this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerCpu {
    pub postgres: Option<Duration>,
    pub rabbitmq: Option<Duration>,
    /// This process: the stand-ins for Clerk, Svix, DNS and KMS, and the driver's own work. Production's
    /// Clerk and KMS run elsewhere; here they take their share of the cores the worker runs on.
    pub driver: Option<Duration>,
}

impl ServerProcesses {
    /// Finds the servers, each only when its URL names this host: PostgreSQL from the data directory the
    /// server reports (its `postmaster.pid`), RabbitMQ as the first `beam.smp` process running the `rabbit`
    /// application (one node per host is assumed). `database` is a connection to the run's server.
    pub async fn find(database: &tokio_postgres::Client, database_url: &str, amqp_url: &str) -> Self {
        let postgres = if names_this_host(database_url) {
            match database.query_one("SELECT current_setting('data_directory')", &[]).await {
                Ok(row) => postmaster_pid(Path::new(&row.get::<_, String>(0))),
                Err(_) => None,
            }
        } else {
            None
        };
        let rabbitmq = if names_this_host(amqp_url) { rabbitmq_pid() } else { None };
        Self { postgres, rabbitmq }
    }

    pub fn cpu(&self) -> ServerCpu {
        ServerCpu {
            postgres: self.postgres.and_then(tree_cpu_time),
            rabbitmq: self.rabbitmq.and_then(cpu_time),
            driver: cpu_time(std::process::id()),
        }
    }
}

impl ServerCpu {
    /// What each server used since `before`.
    pub fn since(&self, before: &ServerCpu) -> ServerCpu {
        let delta = |now: Option<Duration>, then: Option<Duration>| Some(now?.saturating_sub(then?));
        ServerCpu {
            postgres: delta(self.postgres, before.postgres),
            rabbitmq: delta(self.rabbitmq, before.rabbitmq),
            driver: delta(self.driver, before.driver),
        }
    }
}

/// Whether a server URL points at this host: a loopback address, `localhost`, or no host (a Unix socket).
fn names_this_host(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else { return false };
    match url.host() {
        None => true,
        // `postgres:` and `amqp:` are not special schemes to the URL standard: their hosts stay text.
        Some(url::Host::Domain(name)) => {
            let address = name.trim_start_matches('[').trim_end_matches(']');
            name == "localhost"
                || name.starts_with("%2F")
                || address.parse::<std::net::IpAddr>().is_ok_and(|address| address.is_loopback())
        }
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
    }
}

fn postmaster_pid(data_directory: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data_directory.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

fn rabbitmq_pid() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let is_beam = args.first().is_some_and(|arg0| arg0.ends_with(b"beam.smp"));
        (is_beam && args.iter().any(|arg| arg.windows(6).any(|w| w == b"rabbit"))).then_some(pid)
    })
}

/// A process's user + system time, its reaped children's (`cutime`, `cstime`) and its live children's:
/// PostgreSQL's backends come and go with the connections, and a backend that ended during the run is
/// counted by its parent once reaped.
fn tree_cpu_time(pid: u32) -> Option<Duration> {
    // Own user and system time, then the reaped children's (indexes 11-14).
    let own = stat_fields(pid)?;
    let mut total: u64 = own.get(11..15)?.iter().sum();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        if let Some(fields) = stat_fields(child)
            && fields.get(1) == Some(&u64::from(pid))
        {
            total += fields.get(11).unwrap_or(&0) + fields.get(12).unwrap_or(&0);
        }
    }
    Some(ticks(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_tree_counts_the_children_it_reaped() {
        let pid = std::process::id();
        // A child that spends CPU and is waited for: its time moves into this process's `cutime`/`cstime`.
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        let own = cpu_time(pid).unwrap();
        let tree = tree_cpu_time(pid).unwrap();
        assert!(tree >= own + ticks(5), "tree {tree:?}, own {own:?}: the reaped child is not counted");
        assert_eq!(tree_cpu_time(u32::MAX), None);
        assert_eq!(postmaster_pid(Path::new("/nonexistent")), None);
    }

    #[test]
    fn only_servers_on_this_host_are_measured() {
        assert!(names_this_host("postgres://postgres@127.0.0.1:5432/postgres"));
        assert!(names_this_host("amqp://guest:guest@localhost:5672/%2f"));
        assert!(names_this_host("postgres://[::1]:5432/postgres"));
        assert!(!names_this_host("postgres://db.internal:5432/postgres"));
        assert!(!names_this_host("amqp://10.0.0.5:5672/%2f"));
        assert!(!names_this_host("not a url"));
    }

    #[test]
    fn a_delta_needs_both_readings() {
        let before = ServerCpu { postgres: Some(Duration::from_millis(100)), rabbitmq: None, driver: None };
        let after = ServerCpu {
            postgres: Some(Duration::from_millis(350)),
            rabbitmq: Some(Duration::from_secs(1)),
            driver: Some(Duration::from_millis(5)),
        };
        let delta = after.since(&before);
        assert_eq!(delta.postgres, Some(Duration::from_millis(250)));
        assert_eq!(delta.rabbitmq, None);
        assert_eq!(delta.driver, None);
    }

    #[test]
    fn the_driver_is_always_measured_and_servers_only_when_found() {
        let reading = ServerProcesses::default().cpu();
        assert!(reading.driver.is_some(), "this process's own /proc/<pid>/stat is always readable");
        assert_eq!((reading.postgres, reading.rabbitmq), (None, None));
    }
}
