//! What `clerk-audit report` reads: a stored scan with its findings and check results.

use tokio_postgres::Client;
use uuid::Uuid;

use crate::audit::evaluate::{CheckResult, CheckStatus, Finding};
use crate::audit::facts::InstanceSummary;

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
    /// Blockers first, then warnings, then info; by check id within a severity.
    pub findings: Vec<Finding>,
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
    let findings = client
        .query(
            "SELECT check_id, severity, pillar, title, evidence, why, fix, fingerprint,
                    to_char(first_seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS first_seen_at
               FROM findings WHERE scan_id = $1
              ORDER BY CASE severity WHEN 'blocker' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, check_id",
            &[&id],
        )
        .await?
        .into_iter()
        .filter_map(|row| {
            Some(Finding {
                check_id: row.get("check_id"),
                severity: serde_json::from_value(serde_json::Value::String(row.get("severity"))).ok()?,
                pillar: row.get("pillar"),
                title: row.get("title"),
                evidence: serde_json::from_value(row.get("evidence")).ok()?,
                why: row.get("why"),
                fix: row.get("fix"),
                fingerprint: row.get("fingerprint"),
                first_seen_at: row.get("first_seen_at"),
                lifecycle: None,
            })
        })
        .collect();
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
        results,
    }))
}
