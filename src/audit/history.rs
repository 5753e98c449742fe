//! What earlier completed scans of the same project say about today's findings: when each was first seen,
//! and which fingerprints the previous completed scan reported. Read by the store inside the transaction
//! that completes a scan; used by the event builder. Pure data.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanHistory {
    /// The earliest `first_seen_at` of each of today's fingerprints in any completed scan of the project.
    pub first_seen: BTreeMap<String, DateTime<Utc>>,
    /// The fingerprints of the previous completed scan of the project.
    pub previous: BTreeSet<String>,
}

impl ScanHistory {
    /// When `fingerprint` was first seen; `now` for a finding never seen before.
    pub fn first_seen_at(&self, fingerprint: &str, now: DateTime<Utc>) -> DateTime<Utc> {
        self.first_seen.get(fingerprint).copied().unwrap_or(now)
    }

    /// Fingerprints of the previous completed scan that are not among `current`, in order.
    pub fn resolved<'a>(&self, current: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let current: BTreeSet<&str> = current.into_iter().collect();
        self.previous.iter().filter(|f| !current.contains(f.as_str())).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_finding_is_first_seen_now_and_a_known_one_keeps_its_time() {
        let then = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let now = Utc::now();
        let history = ScanHistory { first_seen: [("sha256:a".to_owned(), then)].into(), previous: Default::default() };
        assert_eq!(history.first_seen_at("sha256:a", now), then);
        assert_eq!(history.first_seen_at("sha256:b", now), now);
    }

    #[test]
    fn resolved_lists_what_the_previous_scan_had_and_this_one_does_not() {
        let history = ScanHistory {
            first_seen: Default::default(),
            previous: ["sha256:a", "sha256:b"].into_iter().map(String::from).collect(),
        };
        assert_eq!(history.resolved(["sha256:b", "sha256:c"]), vec!["sha256:a".to_owned()]);
        assert!(ScanHistory::default().resolved(["sha256:x"]).is_empty());
    }
}
