//! What `clerk-audit report` reads: a stored scan with its findings and check results.

use tokio_postgres::Client;
use uuid::Uuid;

use crate::audit::evaluate::{CheckResult, CheckStatus, Finding, Lifecycle};
use crate::audit::facts::InstanceSummary;
use crate::store::scans::finding_of_row;

/// A scan as stored.
#[derive(Debug, Clone)]
pub struct StoredScan {
    pub id: Uuid,
    pub project_id: String,
    pub instance_name: String,
    /// `running`, `completed` or `failed`.
    pub status: String,
    pub instance: Option<InstanceSummary>,
    pub error_code: Option<String>,
    /// Blockers first, then warnings, then info; by check id within a severity. Each `new` or `persisting`.
    pub findings: Vec<Finding>,
    /// The previous scan's findings that this one no longer has (`resolved`), in the same order.
    pub resolved: Vec<Finding>,
    pub results: Vec<CheckResult>,
}

/// Which scan to read.
#[derive(Debug, Clone)]
pub enum ScanSelector<'a> {
    Id(Uuid),
    /// The project's most recently started scan.
    LatestOf(&'a str),
}

/// Reads a scan; `None` when there is no such scan.
pub async fn load(client: &Client, selector: ScanSelector<'_>) -> Result<Option<StoredScan>, tokio_postgres::Error> {
    const COLUMNS: &str = "id, project_id, instance_name, status, instance_summary, error_code";
    let row = match selector {
        ScanSelector::Id(id) => client.query_opt(&format!("SELECT {COLUMNS} FROM scans WHERE id = $1"), &[&id]).await?,
        ScanSelector::LatestOf(project) => {
            client
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM scans WHERE project_id = $1 ORDER BY started_at DESC LIMIT 1"),
                    &[&project],
                )
                .await?
        }
    };
    let Some(row) = row else { return Ok(None) };
    let id: Uuid = row.get("id");
    let (resolved, findings): (Vec<Finding>, Vec<Finding>) = client
        .query(
            "SELECT check_id, severity, pillar, title, evidence, why, fix, fingerprint, first_seen_at, lifecycle
               FROM findings WHERE scan_id = $1
              ORDER BY CASE severity WHEN 'blocker' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, check_id",
            &[&id],
        )
        .await?
        .iter()
        .filter_map(finding_of_row)
        .partition(|finding| finding.lifecycle == Some(Lifecycle::Resolved));
    let results = client
        .query("SELECT check_id, status, reason FROM check_results WHERE scan_id = $1 ORDER BY check_id", &[&id])
        .await?
        .into_iter()
        .filter_map(|row| {
            Some(CheckResult {
                check_id: row.get("check_id"),
                status: CheckStatus::parse(row.get("status"))?,
                reason: row.get("reason"),
            })
        })
        .collect();
    Ok(Some(StoredScan {
        id,
        project_id: row.get("project_id"),
        instance_name: row.get("instance_name"),
        status: row.get("status"),
        instance: row
            .get::<_, Option<serde_json::Value>>("instance_summary")
            .and_then(|v| serde_json::from_value(v).ok()),
        error_code: row.get("error_code"),
        findings,
        resolved,
        results,
    }))
}

/// One scan of a project's history, with how its findings compare to the scan before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanHistoryEntry {
    pub id: Uuid,
    pub instance_name: String,
    /// `running`, `completed` or `failed`.
    pub status: String,
    /// When the scan finished (RFC 3339), `None` while it runs.
    pub finished_at: Option<String>,
    pub new: i64,
    pub persisting: i64,
    pub resolved: i64,
}

/// The project's scans, most recent first (at most `limit`), with their new, persisting and resolved counts.
pub async fn history(
    client: &Client,
    project: &str,
    limit: i64,
) -> Result<Vec<ScanHistoryEntry>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT s.id, s.instance_name, s.status,
                    to_char(s.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS finished_at,
                    count(*) FILTER (WHERE f.lifecycle = 'new') AS new,
                    count(*) FILTER (WHERE f.lifecycle = 'persisting') AS persisting,
                    count(*) FILTER (WHERE f.lifecycle = 'resolved') AS resolved
               FROM scans s LEFT JOIN findings f ON f.scan_id = s.id
              WHERE s.project_id = $1
              GROUP BY s.id
              ORDER BY s.started_at DESC
              LIMIT $2",
            &[&project, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| ScanHistoryEntry {
            id: row.get("id"),
            instance_name: row.get("instance_name"),
            status: row.get("status"),
            finished_at: row.get("finished_at"),
            new: row.get("new"),
            persisting: row.get("persisting"),
            resolved: row.get("resolved"),
        })
        .collect())
}
