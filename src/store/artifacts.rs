//! `repo_scan_artifacts`: written by the platform's repo scanner (or `clerk-audit repo-scan --store`), read
//! by the worker to cross-reference the code with the instance.

use tokio_postgres::Client;
use tokio_postgres::types::Json;

use crate::audit::artifact::RepoArtifact;
use crate::error::JobError;
use crate::intake::job::ProjectId;

/// Loads the artifact: the job's `repo_scan_id`, else the project's latest. A stored artifact that does not
/// parse is treated as absent (and logged), since a retry cannot fix it.
pub async fn load(
    client: &deadpool_postgres::Client,
    project_id: &ProjectId,
    repo_scan_id: Option<&str>,
) -> Result<Option<RepoArtifact>, JobError> {
    let row = match repo_scan_id {
        Some(id) => {
            let statement = client
                .prepare_cached("SELECT artifact FROM repo_scan_artifacts WHERE project_id = $1 AND repo_scan_id = $2")
                .await?;
            client.query_opt(&statement, &[&project_id.as_str(), &id]).await?
        }
        None => {
            let statement = client
                .prepare_cached(
                    "SELECT artifact FROM repo_scan_artifacts WHERE project_id = $1
                     ORDER BY created_at DESC, repo_scan_id DESC LIMIT 1",
                )
                .await?;
            client.query_opt(&statement, &[&project_id.as_str()]).await?
        }
    };
    let Some(row) = row else { return Ok(None) };
    match RepoArtifact::from_json(row.get("artifact")) {
        Ok(artifact) => Ok(Some(artifact)),
        Err(error) => {
            tracing::warn!(error = %error, "stored repo artifact ignored");
            Ok(None)
        }
    }
}

/// Stores an artifact, as the platform's repo scanner does.
pub async fn store(
    client: &Client,
    project_id: &ProjectId,
    repo_scan_id: &str,
    artifact: &RepoArtifact,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO repo_scan_artifacts (project_id, repo_scan_id, artifact) VALUES ($1, $2, $3)
             ON CONFLICT (project_id, repo_scan_id) DO UPDATE SET artifact = EXCLUDED.artifact, created_at = now()",
            &[&project_id.as_str(), &repo_scan_id, &Json(artifact)],
        )
        .await?;
    Ok(())
}
