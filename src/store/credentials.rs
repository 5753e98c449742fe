//! `clerk_credentials`: written by the platform's settings service (or `clerk-audit credentials put`), read
//! by the worker. A `key_ref` that does not belong to the job's project is reported exactly like a missing
//! one, so the answer reveals nothing about other projects.

use tokio_postgres::Client;
use uuid::Uuid;

use crate::credentials::StoredCredential;
use crate::error::{FailureReason, JobError};
use crate::intake::job::{InstanceName, ProjectId};

/// Loads the credential `key_ref` of `project_id`; missing, other project's and revoked rows are permanent.
pub async fn load(
    client: &deadpool_postgres::Client,
    key_ref: Uuid,
    project_id: &ProjectId,
) -> Result<StoredCredential, JobError> {
    let statement = client
        .prepare_cached(
            "SELECT ciphertext, kms_key_id, revoked_at IS NOT NULL AS revoked
               FROM clerk_credentials WHERE id = $1 AND project_id = $2",
        )
        .await?;
    let row = client.query_opt(&statement, &[&key_ref, &project_id.as_str()]).await?;
    let Some(row) = row else {
        return Err(JobError::permanent(
            FailureReason::CredentialNotFound,
            "no credential with this key_ref for the project",
        ));
    };
    if row.get::<_, bool>("revoked") {
        return Err(JobError::permanent(FailureReason::CredentialRevoked, "the credential is revoked"));
    }
    Ok(StoredCredential {
        key_ref,
        project_id: project_id.clone(),
        ciphertext: row.get("ciphertext"),
        kms_key_id: row.get("kms_key_id"),
    })
}

/// Inserts a credential row, as the settings service does.
pub async fn insert(
    client: &Client,
    instance_name: &InstanceName,
    credential: &StoredCredential,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO clerk_credentials (id, project_id, instance_name, ciphertext, kms_key_id)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &credential.key_ref,
                &credential.project_id.as_str(),
                &instance_name.as_str(),
                &credential.ciphertext,
                &credential.kms_key_id,
            ],
        )
        .await?;
    Ok(())
}

/// Marks a credential revoked; answers whether such a row exists.
pub async fn revoke(client: &Client, key_ref: Uuid) -> Result<bool, tokio_postgres::Error> {
    Ok(client.execute("UPDATE clerk_credentials SET revoked_at = now() WHERE id = $1", &[&key_ref]).await? > 0)
}
