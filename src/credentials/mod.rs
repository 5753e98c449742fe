//! Credentials: the secret key type and its decryption through KMS. The stored row is read by
//! [`crate::store::credentials`]; this module only talks to KMS.

pub mod kms;
pub mod secret;

use uuid::Uuid;

use crate::intake::job::ProjectId;

pub use kms::Kms;
pub use secret::ClerkSecretKey;

/// A `clerk_credentials` row, ciphertext still encrypted.
#[derive(Clone)]
pub struct StoredCredential {
    pub key_ref: Uuid,
    pub project_id: ProjectId,
    pub ciphertext: Vec<u8>,
    pub kms_key_id: String,
}
