//! The end-of-run checks of the delivery guarantees, on what the run left behind: the scans table, the
//! outbox, the events captured from the findings exchange and the dead-letter queue.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use clerk_audit::intake::broker::{DETAIL_HEADER, REASON_HEADER, header_text};
use uuid::Uuid;

use crate::rig::{Rig, drain_queue};

/// What the run produced, and what broke a guarantee.
#[derive(Debug, Default)]
pub struct Verdict {
    pub jobs: usize,
    pub completed: usize,
    pub failed: usize,
    pub events: usize,
    /// Extra deliveries of an event id already seen (allowed: at-least-once).
    pub duplicate_events: usize,
    pub dead_lettered: usize,
    pub dead_letter_reasons: BTreeMap<String, usize>,
    pub unsent_outbox: i64,
    pub violations: Vec<String>,
}

impl Verdict {
    fn violation(&mut self, text: String) {
        // Keep the report readable: the first 50 of each run, then a count.
        if self.violations.len() < 50 {
            self.violations.push(text);
        } else if self.violations.len() == 50 {
            self.violations.push("... more violations".to_owned());
        }
    }

    pub fn print(&self) {
        println!("jobs:                 {}", self.jobs);
        println!("scans completed:      {}", self.completed);
        println!("scans failed:         {}", self.failed);
        println!(
            "events received:      {} ({} duplicate deliveries of an id already seen)",
            self.events, self.duplicate_events
        );
        println!("dead-lettered jobs:   {} {:?}", self.dead_lettered, self.dead_letter_reasons);
        println!("outbox rows unsent:   {}", self.unsent_outbox);
        if self.violations.is_empty() {
            println!("violations:           none");
        } else {
            println!("violations:           {}", self.violations.len());
            for violation in &self.violations {
                println!("  - {violation}");
            }
        }
    }
}

/// Checks every guarantee for `jobs` (the scan ids published). Drains the capture and dead-letter queues.
pub async fn verify(rig: &Rig, jobs: &HashSet<Uuid>) -> anyhow::Result<Verdict> {
    let mut verdict = Verdict { jobs: jobs.len(), ..Verdict::default() };
    let client = rig.db().await?;

    // Every job: exactly one finished scan row; no row for anything else.
    let rows = client.query("SELECT id, status FROM scans", &[]).await?;
    let mut statuses: HashMap<Uuid, String> = HashMap::new();
    for row in rows {
        let id: Uuid = row.get(0);
        let status: String = row.get(1);
        if statuses.insert(id, status).is_some() {
            verdict.violation(format!("scan {id}: more than one row"));
        }
    }
    for job in jobs {
        match statuses.get(job).map(String::as_str) {
            Some("completed") => verdict.completed += 1,
            Some("failed") => verdict.failed += 1,
            Some(other) => verdict.violation(format!("scan {job}: left in status {other}")),
            None => verdict.violation(format!("scan {job}: no scan row")),
        }
    }
    for id in statuses.keys().filter(|id| !jobs.contains(id)) {
        verdict.violation(format!("scan {id}: a row for a job never published"));
    }

    // Exactly one event row per finished scan, all sent.
    verdict.unsent_outbox = client.query_one("SELECT count(*) FROM outbox WHERE sent_at IS NULL", &[]).await?.get(0);
    if verdict.unsent_outbox > 0 {
        verdict.violation(format!("{} outbox rows left unsent", verdict.unsent_outbox));
    }

    // Every finished scan: exactly one event id on the findings exchange (copies of it allowed).
    let mut ids_by_scan: HashMap<Uuid, BTreeSet<String>> = HashMap::new();
    let mut seen_ids: HashSet<String> = HashSet::new();
    for delivery in drain_queue(&rig.settings, &rig.capture_queue).await? {
        verdict.events += 1;
        let body: serde_json::Value = match serde_json::from_slice(&delivery.data) {
            Ok(body) => body,
            Err(_) => {
                verdict.violation("an event that is not JSON".to_owned());
                continue;
            }
        };
        let id = body["id"].as_str().unwrap_or_default().to_owned();
        let Some(scan) = body["data"]["scan_id"].as_str().and_then(|s| s.parse::<Uuid>().ok()) else {
            verdict.violation(format!("event {id} names no scan"));
            continue;
        };
        if !seen_ids.insert(id.clone()) {
            verdict.duplicate_events += 1;
        }
        ids_by_scan.entry(scan).or_default().insert(id);
    }
    for (scan, status) in &statuses {
        if status != "completed" && status != "failed" {
            continue;
        }
        match ids_by_scan.get(scan) {
            None => verdict.violation(format!("scan {scan} ({status}): no event")),
            Some(ids) if ids.len() > 1 => verdict.violation(format!("scan {scan}: {} different event ids", ids.len())),
            Some(ids) => {
                let expected = clerk_audit::outbox::events::event_id(*scan).to_string();
                if !ids.contains(&expected) {
                    verdict.violation(format!("scan {scan}: event id {ids:?} is not the scan's"));
                }
            }
        }
    }
    for scan in ids_by_scan.keys().filter(|scan| !statuses.contains_key(scan)) {
        verdict.violation(format!("event for scan {scan}, which has no row"));
    }

    // Dead letters: each explained by a reason header, each for a job that failed (never one that completed).
    for delivery in drain_queue(&rig.settings, &rig.settings.amqp.dead_letter_queue).await? {
        verdict.dead_lettered += 1;
        let reason = header_text(&delivery.properties, REASON_HEADER);
        let scan = serde_json::from_slice::<serde_json::Value>(&delivery.data)
            .ok()
            .and_then(|body| body["scan_id"].as_str().and_then(|s| s.parse::<Uuid>().ok()));
        *verdict.dead_letter_reasons.entry(reason.clone().unwrap_or_else(|| "(none)".to_owned())).or_default() += 1;
        match (reason, scan) {
            (None, scan) => verdict.violation(format!(
                "dead letter without a reason header (scan {scan:?}, broker death reason: {:?})",
                header_text(&delivery.properties, "x-first-death-reason")
            )),
            (Some(reason), Some(scan)) if statuses.get(&scan).map(String::as_str) == Some("completed") => {
                verdict.violation(format!(
                    "scan {scan} completed but its job was dead-lettered ({reason}: {:?})",
                    header_text(&delivery.properties, DETAIL_HEADER)
                ));
            }
            _ => {}
        }
    }
    Ok(verdict)
}
