//! `repo_scan_artifacts`: written by the platform's repo scanner (or `clerk-audit repo-scan --store`), read
//! by the worker to cross-reference the code with the instance.

use tokio_postgres::Client;
use tokio_postgres::types::Json;

use crate::audit::artifact::{ArtifactUnreadable, RepoArtifact, StoredArtifact};
use crate::error::JobError;
use crate::intake::job::ProjectId;

/// The largest stored artifact read, as JSON text. The repo scanner writes a few kilobytes per project;
/// anything near this is not an artifact the checks can use, and is never pulled into memory.
pub const MAX_ARTIFACT_BYTES: i64 = 4 * 1024 * 1024;
/// The most `key_references` an artifact may list.
pub const MAX_KEY_REFERENCES: i64 = 10_000;
/// The most `webhook_handlers` an artifact may list.
pub const MAX_WEBHOOK_HANDLERS: i64 = 1_000;
/// The most `committed_secrets` an artifact may list.
pub const MAX_COMMITTED_SECRETS: i64 = 1_000;

/// The lengths of an artifact's lists, as the database counted them (0 for a missing or non-list field).
#[derive(Debug, Clone, Copy, Default)]
pub struct ListLengths {
    pub key_references: i64,
    pub webhook_handlers: i64,
    pub committed_secrets: i64,
}

/// The size and list lengths are computed in the database, and the document itself is only sent when it
/// is under the size cap (a constant, so inlined): an oversized artifact costs the worker no memory.
fn select() -> String {
    format!(
        "SELECT octet_length(artifact::text)::int8 AS size,
        CASE WHEN jsonb_typeof(artifact->'key_references') = 'array'
             THEN jsonb_array_length(artifact->'key_references') ELSE 0 END::int8 AS key_references,
        CASE WHEN jsonb_typeof(artifact->'webhook_handlers') = 'array'
             THEN jsonb_array_length(artifact->'webhook_handlers') ELSE 0 END::int8 AS webhook_handlers,
        CASE WHEN jsonb_typeof(artifact->'committed_secrets') = 'array'
             THEN jsonb_array_length(artifact->'committed_secrets') ELSE 0 END::int8 AS committed_secrets,
        CASE WHEN octet_length(artifact::text) <= {MAX_ARTIFACT_BYTES} THEN artifact::text END AS artifact
     FROM repo_scan_artifacts"
    )
}

/// Loads the artifact: the job's `repo_scan_id`, else the project's latest. A stored artifact over a cap
/// or that does not parse is [`StoredArtifact::Unreadable`] (and logged without its content): the checks
/// that need it report `error`, since a retry cannot fix it and "no repo scan" would be untrue.
pub async fn load(
    client: &Client,
    project_id: &ProjectId,
    repo_scan_id: Option<&str>,
) -> Result<StoredArtifact, JobError> {
    let row = match repo_scan_id {
        Some(id) => {
            client
                .query_opt(
                    &format!("{} WHERE project_id = $1 AND repo_scan_id = $2", select()),
                    &[&project_id.as_str(), &id],
                )
                .await?
        }
        None => {
            client
                .query_opt(
                    &format!("{} WHERE project_id = $1 ORDER BY created_at DESC, repo_scan_id DESC LIMIT 1", select()),
                    &[&project_id.as_str()],
                )
                .await?
        }
    };
    let Some(row) = row else { return Ok(StoredArtifact::Absent) };
    let lengths = ListLengths {
        key_references: row.get("key_references"),
        webhook_handlers: row.get("webhook_handlers"),
        committed_secrets: row.get("committed_secrets"),
    };
    let stored = judge(row.get("size"), lengths, row.get::<_, Option<String>>("artifact").as_deref());
    if let StoredArtifact::Unreadable(why) = &stored {
        tracing::warn!(reason = %why, "stored repo artifact unreadable");
    }
    Ok(stored)
}

/// Decides what a stored artifact row is worth, from its size, list lengths and text (absent when over
/// the size cap).
pub fn judge(size: i64, lengths: ListLengths, text: Option<&str>) -> StoredArtifact {
    let cap = usize::try_from(MAX_ARTIFACT_BYTES).unwrap_or(usize::MAX);
    if size > MAX_ARTIFACT_BYTES {
        return StoredArtifact::Unreadable(ArtifactUnreadable::TooLarge(cap));
    }
    for (field, count, limit) in [
        ("key_references", lengths.key_references, MAX_KEY_REFERENCES),
        ("webhook_handlers", lengths.webhook_handlers, MAX_WEBHOOK_HANDLERS),
        ("committed_secrets", lengths.committed_secrets, MAX_COMMITTED_SECRETS),
    ] {
        if count > limit {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            return StoredArtifact::Unreadable(ArtifactUnreadable::TooManyEntries { field, limit });
        }
    }
    let Some(text) = text.filter(|text| text.len() <= cap) else {
        return StoredArtifact::Unreadable(ArtifactUnreadable::TooLarge(cap));
    };
    match serde_json::from_str(text).map_err(|_| ()).and_then(|value| RepoArtifact::from_json(value).map_err(|_| ())) {
        Ok(artifact) => StoredArtifact::Present(artifact),
        Err(()) => StoredArtifact::Unreadable(ArtifactUnreadable::Malformed),
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

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"{"schema": "clerk-repo-artifact/v1", "repo": null, "commit": null, "scanned_at": null}"#;

    #[test]
    fn a_valid_artifact_under_the_caps_is_present() {
        let StoredArtifact::Present(artifact) = judge(VALID.len() as i64, ListLengths::default(), Some(VALID)) else {
            panic!("expected the artifact");
        };
        assert!(artifact.key_references.is_empty());
    }

    #[test]
    fn an_oversized_artifact_is_unreadable_without_being_read() {
        let cap = MAX_ARTIFACT_BYTES as usize;
        assert_eq!(
            judge(MAX_ARTIFACT_BYTES + 1, ListLengths::default(), None),
            StoredArtifact::Unreadable(ArtifactUnreadable::TooLarge(cap))
        );
        // Text the database should not have sent is not trusted either.
        let big = " ".repeat(cap + 1);
        assert_eq!(
            judge(1, ListLengths::default(), Some(&big)),
            StoredArtifact::Unreadable(ArtifactUnreadable::TooLarge(cap))
        );
    }

    #[test]
    fn too_many_list_entries_are_unreadable() {
        assert_eq!(
            judge(10, ListLengths { key_references: MAX_KEY_REFERENCES + 1, ..Default::default() }, Some(VALID)),
            StoredArtifact::Unreadable(ArtifactUnreadable::TooManyEntries {
                field: "key_references",
                limit: MAX_KEY_REFERENCES as usize
            })
        );
        assert_eq!(
            judge(10, ListLengths { webhook_handlers: MAX_WEBHOOK_HANDLERS + 1, ..Default::default() }, Some(VALID)),
            StoredArtifact::Unreadable(ArtifactUnreadable::TooManyEntries {
                field: "webhook_handlers",
                limit: MAX_WEBHOOK_HANDLERS as usize
            })
        );
        assert_eq!(
            judge(10, ListLengths { committed_secrets: MAX_COMMITTED_SECRETS + 1, ..Default::default() }, Some(VALID)),
            StoredArtifact::Unreadable(ArtifactUnreadable::TooManyEntries {
                field: "committed_secrets",
                limit: MAX_COMMITTED_SECRETS as usize
            })
        );
    }

    #[test]
    fn an_artifact_that_does_not_parse_is_unreadable() {
        for text in [r#"{"schema": "clerk-repo-artifact/v2"}"#, r#"{"schema": 1}"#, "[]", r#"{"key_references": 5}"#] {
            assert_eq!(
                judge(text.len() as i64, ListLengths::default(), Some(text)),
                StoredArtifact::Unreadable(ArtifactUnreadable::Malformed),
                "{text}"
            );
        }
    }
}
