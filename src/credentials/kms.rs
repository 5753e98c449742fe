//! KMS: decrypts a stored credential into the secret key, in memory only, and encrypts one for a new row.
//!
//! The ciphertext is bound to its row by the KMS encryption context `{"project_id", "key_ref"}`, so a
//! ciphertext copied to another row or project does not decrypt.

use std::time::Duration;

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use tracing::instrument;
use uuid::Uuid;

use crate::configuration::KmsSettings;
use crate::credentials::StoredCredential;
use crate::credentials::secret::ClerkSecretKey;
use crate::error::{FailureReason, JobError};
use crate::intake::job::ProjectId;
use crate::retry::{Attempt, RetryPolicy, retry};

/// KMS, with the SDK's own retries off: [`crate::retry`] is the one retry policy.
#[derive(Clone)]
pub struct Kms {
    client: aws_sdk_kms::Client,
    policy: RetryPolicy,
    metrics: std::sync::Arc<crate::ops::metrics::Metrics>,
}

/// The encryption context that binds a ciphertext to its row.
fn encryption_context(project_id: &ProjectId, key_ref: Uuid) -> [(&'static str, String); 2] {
    [("project_id", project_id.as_str().to_owned()), ("key_ref", key_ref.to_string())]
}

/// KMS error codes worth another attempt.
const TRANSIENT_KMS_CODES: &[&str] = &[
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "KMSInternalException",
    "KMSInternal",
    "DependencyTimeoutException",
    "KeyUnavailableException",
    "ServiceUnavailable",
    "InternalFailure",
];

impl Kms {
    /// Credentials and region come the standard AWS way; `endpoint_url` overrides the endpoint (tests).
    pub async fn from_settings(settings: &KmsSettings, policy: RetryPolicy) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(settings.region.clone()))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(10))
                    .build(),
            );
        if !settings.endpoint_url.is_empty() {
            loader = loader.endpoint_url(&settings.endpoint_url);
        }
        let config = loader.load().await;
        Self { client: aws_sdk_kms::Client::new(&config), policy, metrics: Default::default() }
    }

    /// Counts every Decrypt attempt in `metrics` (`clerk_audit_kms_calls_total`).
    pub fn with_metrics(mut self, metrics: std::sync::Arc<crate::ops::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn client(&self) -> &aws_sdk_kms::Client {
        &self.client
    }

    /// Decrypts a stored credential into a [`ClerkSecretKey`], in memory only.
    #[instrument(name = "kms.decrypt", skip_all, fields(key_ref = %credential.key_ref))]
    pub async fn decrypt(&self, credential: &StoredCredential) -> Result<ClerkSecretKey, JobError> {
        let output = retry(self.policy, |_| async {
            let mut request = self
                .client
                .decrypt()
                .key_id(&credential.kms_key_id)
                .ciphertext_blob(Blob::new(credential.ciphertext.clone()));
            for (name, value) in encryption_context(&credential.project_id, credential.key_ref) {
                request = request.encryption_context(name, value);
            }
            let result = request.send().await;
            self.metrics.kms_call(kms_outcome(&result));
            result.map_err(classify)
        })
        .await?;
        let plaintext = output
            .plaintext
            .map(Blob::into_inner)
            .ok_or_else(|| JobError::permanent(FailureReason::CredentialUndecryptable, "KMS returned no plaintext"))?;
        ClerkSecretKey::from_plaintext(plaintext)
            .map_err(|e| JobError::permanent(FailureReason::CredentialUndecryptable, e.to_string()))
    }

    /// Encrypts a secret key for a credential row, as the settings service does.
    pub async fn encrypt(
        &self,
        kms_key_id: &str,
        project_id: &ProjectId,
        key_ref: Uuid,
        key: &ClerkSecretKey,
    ) -> Result<Vec<u8>, JobError> {
        let output = retry(self.policy, |_| async {
            let mut request =
                self.client.encrypt().key_id(kms_key_id).plaintext(Blob::new(key.expose_for_encryption().as_bytes()));
            for (name, value) in encryption_context(project_id, key_ref) {
                request = request.encryption_context(name, value);
            }
            request.send().await.map_err(classify)
        })
        .await?;
        output
            .ciphertext_blob
            .map(Blob::into_inner)
            .ok_or_else(|| JobError::permanent(FailureReason::Internal, "KMS returned no ciphertext"))
    }
}

/// The `outcome` label of a KMS attempt.
fn kms_outcome<T, E, R>(result: &Result<T, SdkError<E, R>>) -> &'static str
where
    E: ProvideErrorMetadata,
{
    match result {
        Ok(_) => "ok",
        Err(SdkError::ServiceError(service)) => match service.err().code().unwrap_or("unknown") {
            "ThrottlingException" | "ThrottledException" | "RequestLimitExceeded" => "throttled",
            code if TRANSIENT_KMS_CODES.contains(&code) => "unavailable",
            _ => "refused",
        },
        Err(SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)) => "unreachable",
        Err(_) => "error",
    }
}

/// Sorts a KMS failure into retry or stop. Service errors other than throttling and outages mean the
/// ciphertext, key or context is wrong: retrying cannot fix that.
fn classify<E, R>(error: SdkError<E, R>) -> Attempt<JobError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("unknown").to_owned();
            if TRANSIENT_KMS_CODES.contains(&code.as_str()) {
                Attempt::Retry(JobError::transient(FailureReason::Internal, format!("KMS: {code}")))
            } else {
                Attempt::Stop(JobError::permanent(
                    FailureReason::CredentialUndecryptable,
                    format!("KMS refused: {code}"),
                ))
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Attempt::Retry(JobError::transient(FailureReason::Internal, format!("KMS unreachable: {error}")))
        }
        _ => Attempt::Stop(JobError::permanent(FailureReason::Internal, format!("KMS request: {error}"))),
    }
}
