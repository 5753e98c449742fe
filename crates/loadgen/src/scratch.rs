//! Scratch databases on a shared PostgreSQL (a test's, a benchmark or chaos run's): each is named after the
//! time it was created, `<prefix><unix seconds>_<random>`, so that a later run drops the ones a run that
//! panicked or was killed before its cleanup left behind, and never one a run still uses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

/// Older than this, a scratch database is left over: no test or run lasts that long.
pub const STALE_AFTER: Duration = Duration::from_secs(6 * 3600);

/// A new scratch database name: `prefix`, the creation time, a random part. `prefix` is a lowercase SQL
/// identifier ending in `_`.
pub fn name(prefix: &str, now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    format!("{prefix}{secs}_{}", &Uuid::new_v4().simple().to_string()[..12])
}

/// When the scratch database `name` (of [`name`] with `prefix`) was created; `None` for any other name.
pub fn created_at(name: &str, prefix: &str) -> Option<SystemTime> {
    let (secs, random) = name.strip_prefix(prefix)?.split_once('_')?;
    let wellformed = !secs.is_empty()
        && secs.bytes().all(|b| b.is_ascii_digit())
        && !random.is_empty()
        && random.bytes().all(|b| b.is_ascii_hexdigit());
    wellformed.then(|| UNIX_EPOCH.checked_add(Duration::from_secs(secs.parse().ok()?))).flatten()
}

/// Drops the scratch databases of `prefix` created more than [`STALE_AFTER`] before `now`; answers their
/// names. Best effort: a database that cannot be dropped is left for the next run.
pub async fn drop_stale(admin: &tokio_postgres::Client, prefix: &str, now: SystemTime) -> Vec<String> {
    drop_where(admin, prefix, |name| {
        created_at(name, prefix).is_some_and(|created| now.duration_since(created).is_ok_and(|age| age > STALE_AFTER))
    })
    .await
}

/// Drops every database whose name starts with `prefix`, whatever its age: only for a prefix that one caller
/// alone uses and never concurrently (a test's own); answers their names.
pub async fn drop_all(admin: &tokio_postgres::Client, prefix: &str) -> Vec<String> {
    drop_where(admin, prefix, |_| true).await
}

async fn drop_where(admin: &tokio_postgres::Client, prefix: &str, drop: impl Fn(&str) -> bool) -> Vec<String> {
    let pattern = format!("{}%", prefix.replace('_', "\\_"));
    let Ok(rows) = admin.query("SELECT datname FROM pg_database WHERE datname LIKE $1", &[&pattern]).await else {
        return Vec::new();
    };
    let mut dropped = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        // The prefix is a plain identifier and the rest of a listed name is checked before it is spliced in.
        let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if plain
            && drop(&name)
            && admin.execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), &[]).await.is_ok()
        {
            dropped.push(name);
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_carries_its_creation_time_and_only_such_names_have_one() {
        let now = UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        let made = name("clerk_audit_test_", now);
        assert!(made.starts_with("clerk_audit_test_1796000000_"), "{made}");
        assert_eq!(created_at(&made, "clerk_audit_test_"), Some(now));
        assert_eq!(created_at(&made, "clerk_audit_load_"), None);
        // The names of earlier versions (a bare uuid) and anything else are never judged stale.
        for other in [
            "clerk_audit_test_3f2a9c0e5b7d4e1f8a6b2c9d0e1f2a3b",
            "clerk_audit_test_",
            "clerk_audit_test_123_",
            "clerk_audit_test__abc",
            "clerk_audit_test_12x_abc",
            "clerk_audit_test_123_xyz",
            "clerk_audit_test_99999999999999999999_abc",
            "clerk_audit_test_18446744073709551615_abc",
            "postgres",
        ] {
            assert_eq!(created_at(other, "clerk_audit_test_"), None, "{other}");
        }
    }
}
