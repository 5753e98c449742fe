//! The Clerk secret key, held so that it cannot leak.
//!
//! [`ClerkSecretKey`] wraps a [`secrecy::SecretString`]: no `Display`, a redacting `Debug`, no `Serialize`,
//! zeroized on drop. The plaintext is reachable only through [`ClerkSecretKey::expose_bearer`], which the
//! allowlisted HTTP layer calls when it builds the `Authorization` header for the Backend API host.

use secrecy::{ExposeSecret, SecretString};
use std::fmt;

/// A decrypted `sk_live_`/`sk_test_` key.
pub struct ClerkSecretKey(SecretString);

/// Which kind of instance a secret key belongs to, as told by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    Live,
    Test,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretKeyError {
    #[error("the decrypted credential is not a Clerk secret key (expected an sk_live_ or sk_test_ prefix)")]
    WrongPrefix,
    #[error("the decrypted credential is not valid UTF-8")]
    NotUtf8,
    #[error("the decrypted credential has a character not allowed in a Clerk secret key")]
    BadCharacter,
}

impl ClerkSecretKey {
    /// Validates the plaintext's shape. The bytes are taken by value and zeroized when this returns.
    pub fn from_plaintext(mut bytes: Vec<u8>) -> Result<Self, SecretKeyError> {
        let parsed = Self::parse(&bytes);
        zeroize::Zeroize::zeroize(&mut bytes);
        parsed
    }

    fn parse(bytes: &[u8]) -> Result<Self, SecretKeyError> {
        let text = std::str::from_utf8(bytes).map_err(|_| SecretKeyError::NotUtf8)?;
        let text = text.trim();
        let rest = text
            .strip_prefix("sk_live_")
            .or_else(|| text.strip_prefix("sk_test_"))
            .ok_or(SecretKeyError::WrongPrefix)?;
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(SecretKeyError::BadCharacter);
        }
        Ok(Self(SecretString::from(text)))
    }

    pub fn mode(&self) -> KeyMode {
        if self.0.expose_secret().starts_with("sk_live_") { KeyMode::Live } else { KeyMode::Test }
    }

    /// The `Authorization` header value, in a buffer zeroized on drop. Only the HTTP layer calls this, for
    /// the Backend API host.
    pub(crate) fn expose_bearer(&self) -> zeroize::Zeroizing<String> {
        let secret = self.0.expose_secret();
        let mut bearer = zeroize::Zeroizing::new(String::with_capacity("Bearer ".len() + secret.len()));
        bearer.push_str("Bearer ");
        bearer.push_str(secret);
        bearer
    }

    /// `sha256:<hex>` of the key: how the repo artifact names a secret key it found, so the two can be
    /// compared without either side holding the other's key.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        format!("sha256:{}", hex::encode(Sha256::digest(self.0.expose_secret().as_bytes())))
    }

    /// The plaintext, for the one place that must encrypt it (`credentials put`).
    pub(crate) fn expose_for_encryption(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for ClerkSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClerkSecretKey([REDACTED])")
    }
}

/// Reads a secret key from `reader` (stdin for the CLI): the whole input, one trailing newline allowed. The
/// buffer is zeroized whatever the outcome.
pub fn read_secret_key(mut reader: impl std::io::Read) -> Result<ClerkSecretKey, SecretKeyError> {
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    reader.read_to_end(&mut bytes).map_err(|_| SecretKeyError::NotUtf8)?;
    ClerkSecretKey::from_plaintext(std::mem::take(&mut *bytes))
}

/// Reads a secret key from the environment variable `name` (`CLERK_SECRET_KEY` for `clerk-audit audit`):
/// `None` when it is unset or empty. The variable's bytes are zeroized whatever the outcome (the process
/// environment itself keeps its copy).
pub fn secret_key_from_env(name: &str) -> Option<Result<ClerkSecretKey, SecretKeyError>> {
    let value = std::env::var_os(name)?;
    let bytes = value.into_encoded_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        let mut bytes = bytes;
        zeroize::Zeroize::zeroize(&mut bytes);
        return None;
    }
    Some(ClerkSecretKey::from_plaintext(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let key = ClerkSecretKey::from_plaintext(b"sk_live_abcDEF123".to_vec()).unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains("abcDEF123"), "{shown}");
        assert_eq!(key.mode(), KeyMode::Live);
    }

    #[test]
    fn refuses_what_is_not_a_secret_key() {
        assert_eq!(ClerkSecretKey::from_plaintext(b"pk_live_x".to_vec()).unwrap_err(), SecretKeyError::WrongPrefix);
        assert_eq!(ClerkSecretKey::from_plaintext(vec![0xff, 0xfe]).unwrap_err(), SecretKeyError::NotUtf8);
        assert_eq!(ClerkSecretKey::from_plaintext(b"sk_test_a b".to_vec()).unwrap_err(), SecretKeyError::BadCharacter);
        assert_eq!(ClerkSecretKey::from_plaintext(b"sk_test_".to_vec()).unwrap_err(), SecretKeyError::BadCharacter);
    }

    #[test]
    fn trims_the_newline_a_paste_leaves() {
        let key = ClerkSecretKey::from_plaintext(b"sk_test_abc\n".to_vec()).unwrap();
        assert_eq!(key.expose_bearer().as_str(), "Bearer sk_test_abc");
        assert_eq!(key.mode(), KeyMode::Test);
    }
}
