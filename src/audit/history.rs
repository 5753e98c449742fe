//! What earlier completed scans of the same project and instance say about today's findings: when each was
//! first seen, and what the previous completed scan reported, which makes each finding `new` or
//! `persisting` and the previous scan's missing ones `resolved`. Read by the store inside the transaction
//! that completes a scan; used by the event builder. Pure data.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::audit::evaluate::{Finding, Lifecycle};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanHistory {
    /// The earliest `first_seen_at` of each of today's fingerprints in any completed scan of the project
    /// and instance.
    pub first_seen: BTreeMap<String, DateTime<Utc>>,
    /// The findings the previous completed scan of the project and instance reported (not the ones it
    /// listed as resolved), by fingerprint.
    pub previous: BTreeMap<String, Finding>,
}

impl ScanHistory {
    /// When `fingerprint` was first seen; `now` for a finding never seen before.
    pub fn first_seen_at(&self, fingerprint: &str, now: DateTime<Utc>) -> DateTime<Utc> {
        self.first_seen.get(fingerprint).copied().unwrap_or(now)
    }

    /// `persisting` when the previous scan reported the same fingerprint, else `new` (also for a finding
    /// that was resolved and is back).
    pub fn lifecycle(&self, fingerprint: &str) -> Lifecycle {
        if self.previous.contains_key(fingerprint) { Lifecycle::Persisting } else { Lifecycle::New }
    }

    /// Fingerprints of the previous completed scan that are not among `current`, in order.
    pub fn resolved<'a>(&self, current: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let current: BTreeSet<&str> = current.into_iter().collect();
        self.previous.keys().filter(|f| !current.contains(f.as_str())).cloned().collect()
    }

    /// The previous scan's findings that are not among `current`, as stored then, marked `resolved`.
    pub fn resolved_findings<'a>(&self, current: impl IntoIterator<Item = &'a str>) -> Vec<Finding> {
        self.resolved(current)
            .into_iter()
            .filter_map(|fingerprint| self.previous.get(&fingerprint))
            .map(|finding| Finding { lifecycle: Some(Lifecycle::Resolved), ..finding.clone() })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checks::{Evidence, Severity};

    fn stored(fingerprint: &str) -> (String, Finding) {
        let finding = Finding {
            check_id: "CLERK-X".into(),
            severity: Severity::Warning,
            pillar: "secure".into(),
            title: "t".into(),
            evidence: Evidence { repo: None, clerk: Some("c".into()), details: serde_json::json!({}) },
            why: "w".into(),
            fix: "f".into(),
            fingerprint: fingerprint.into(),
            first_seen_at: Some("2026-01-01T00:00:00.000Z".into()),
            lifecycle: Some(Lifecycle::New),
        };
        (fingerprint.to_owned(), finding)
    }

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
        let history =
            ScanHistory { first_seen: Default::default(), previous: [stored("sha256:a"), stored("sha256:b")].into() };
        assert_eq!(history.resolved(["sha256:b", "sha256:c"]), vec!["sha256:a".to_owned()]);
        assert!(ScanHistory::default().resolved(["sha256:x"]).is_empty());
        let resolved = history.resolved_findings(["sha256:b", "sha256:c"]);
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].fingerprint, "sha256:a");
        assert_eq!(resolved[0].lifecycle, Some(Lifecycle::Resolved));
    }

    #[test]
    fn lifecycle_is_persisting_only_for_the_previous_scan_s_findings() {
        let history = ScanHistory { first_seen: Default::default(), previous: [stored("sha256:a")].into() };
        assert_eq!(history.lifecycle("sha256:a"), Lifecycle::Persisting);
        assert_eq!(history.lifecycle("sha256:b"), Lifecycle::New);
        assert_eq!(ScanHistory::default().lifecycle("sha256:a"), Lifecycle::New);
    }
}
