//! CPU time of the PostgreSQL and RabbitMQ servers a run uses, when they run on this host: on a small
//! machine they share the cores with the worker, and a scan's cost to the whole system is theirs plus the
//! worker's. Read from `/proc`, so only for local servers that this user may inspect; `None` otherwise.

use std::path::Path;
use std::time::Duration;

/// Processes whose CPU time is summed.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerProcesses {
    /// The postmaster: its own time, its reaped backends' and its live children's.
    pub postgres: Option<u32>,
    /// The Erlang VM of the RabbitMQ node.
    pub rabbitmq: Option<u32>,
}

/// CPU time used so far by each server.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerCpu {
    pub postgres: Option<Duration>,
    pub rabbitmq: Option<Duration>,
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
            rabbitmq: self.rabbitmq.and_then(crate::worker::cpu_time),
        }
    }
}

impl ServerCpu {
    /// What each server used since `before`.
    pub fn since(&self, before: &ServerCpu) -> ServerCpu {
        let delta = |now: Option<Duration>, then: Option<Duration>| Some(now?.saturating_sub(then?));
        ServerCpu { postgres: delta(self.postgres, before.postgres), rabbitmq: delta(self.rabbitmq, before.rabbitmq) }
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

/// The fields of `/proc/<pid>/stat` after the command name (`state` is index 0).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    // Non-numeric fields (the state letter) become 0; only numeric ones are read.
    Some(after.split_whitespace().map(|field| field.parse().unwrap_or(0)).collect())
}

/// A process's user + system time, its reaped children's (`cutime`, `cstime`) and its live children's:
/// PostgreSQL's backends come and go with the connections, and a backend that ended during the run is
/// counted by its parent once reaped.
fn tree_cpu_time(pid: u32) -> Option<Duration> {
    // After ")": ppid is index 1, utime 11, stime 12, cutime 13, cstime 14 (clock ticks of 1/100 s).
    let own = stat_fields(pid)?;
    let mut ticks: u64 = own.get(11..15)?.iter().sum();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        if let Some(fields) = stat_fields(child)
            && fields.get(1) == Some(&u64::from(pid))
        {
            ticks += fields.get(11).unwrap_or(&0) + fields.get(12).unwrap_or(&0);
        }
    }
    Some(Duration::from_millis(ticks * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_tree_has_cpu_time_and_a_missing_one_has_none() {
        let pid = std::process::id();
        // Burn a little CPU so the count is above zero.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(tree_cpu_time(pid).is_some());
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
        let before = ServerCpu { postgres: Some(Duration::from_millis(100)), rabbitmq: None };
        let after = ServerCpu { postgres: Some(Duration::from_millis(350)), rabbitmq: Some(Duration::from_secs(1)) };
        let delta = after.since(&before);
        assert_eq!(delta.postgres, Some(Duration::from_millis(250)));
        assert_eq!(delta.rabbitmq, None);
    }
}
