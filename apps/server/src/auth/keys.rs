//! The keys of the configuration: the JWT secret or public key that signed mode checks
//! tokens with, and the server API's key. Each is checked when it is read (a short secret or
//! key could be guessed; a public key must be one the node can verify with), and none is ever
//! printed.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey};
use subtle::ConstantTimeEq as _;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// An HS256 secret long enough to sign with (see the module docs).
#[derive(Clone)]
pub struct JwtSecret(String);

impl JwtSecret {
    /// Checks `secret`'s length.
    pub fn new(secret: impl Into<String>) -> Result<Self, KeyError> {
        let secret = secret.into();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(KeyError::WeakSecret { len: secret.len() });
        }
        Ok(Self(secret))
    }

    pub(super) fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for JwtSecret {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtSecret(..)")
    }
}

/// A public key that verifies RS256 (an RSA key) or ES256 (a P-256 key) tokens.
#[derive(Clone)]
pub struct PublicKey {
    key: DecodingKey,
    algorithm: Algorithm,
}

impl PublicKey {
    /// Parses a PEM public key (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`).
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Self {
                key,
                algorithm: Algorithm::RS256,
            });
        }
        match DecodingKey::from_ec_pem(pem) {
            Ok(key) => Ok(Self {
                key,
                algorithm: Algorithm::ES256,
            }),
            Err(_) => Err(KeyError::BadKey),
        }
    }

    /// Reads and parses a PEM public key file.
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let pem = std::fs::read(path).map_err(|err| KeyError::KeyFile {
            path: path.display().to_string(),
            err,
        })?;
        Self::from_pem(&pem)
    }

    /// `RS256` or `ES256`.
    pub(crate) fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub(super) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({:?})", self.algorithm)
    }
}

/// The shortest API key accepted, in bytes.
pub const MIN_API_KEY_BYTES: usize = 16;

/// The key application backends authenticate with (see the module docs).
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// Checks `key`'s length: a short key could be guessed.
    pub fn new(key: impl Into<String>) -> Result<Self, KeyError> {
        let key = key.into();
        if key.len() < MIN_API_KEY_BYTES {
            return Err(KeyError::ShortApiKey { len: key.len() });
        }
        Ok(Self(key))
    }

    /// Whether `given` is the key, in time independent of where they differ.
    pub(crate) fn matches(&self, given: &str) -> bool {
        bool::from(self.0.as_bytes().ct_eq(given.as_bytes()))
    }
}

impl std::fmt::Debug for ApiKey {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(..)")
    }
}

/// Why a key of the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The JWT secret is too short to sign with.
    #[error(
        "the JWT secret is {len} bytes long; it must be at least {MIN_SECRET_BYTES} (an empty or short key lets anyone forge tokens)"
    )]
    WeakSecret {
        /// Its length in bytes.
        len: usize,
    },
    /// The API key is too short.
    #[error("the API key is {len} bytes long; it must be at least {MIN_API_KEY_BYTES}")]
    ShortApiKey {
        /// Its length in bytes.
        len: usize,
    },
    /// The public key file could not be read.
    #[error("cannot read the public key file {path}: {err}")]
    KeyFile {
        /// The file.
        path: String,
        /// Why.
        err: std::io::Error,
    },
    /// The public key is neither an RSA nor an EC (P-256) key in PEM.
    #[error("the public key is not an RSA or P-256 EC public key in PEM")]
    BadKey,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-of-32-bytes-length";

    #[test]
    fn short_secrets_are_refused() {
        for weak in ["", "abc", "fifteen-bytes!!"] {
            assert!(
                matches!(JwtSecret::new(weak), Err(KeyError::WeakSecret { len }) if len == weak.len()),
                "{weak:?}"
            );
        }
        assert!(JwtSecret::new("sixteen-bytes!!!").is_ok());
        assert_eq!(
            format!("{:?}", JwtSecret::new(SECRET).unwrap()),
            "JwtSecret(..)"
        );
    }

    #[test]
    fn keys_are_long_and_compared_whole() {
        assert!(ApiKey::new("short").is_err());
        let key = ApiKey::new("an-api-key-of-enough-bytes").unwrap();
        assert!(key.matches("an-api-key-of-enough-bytes"));
        assert!(!key.matches("an-api-key-of-enough-byte"));
        assert!(!key.matches("an-api-key-of-enough-bytesX"));
        assert!(!key.matches(""));
        assert_eq!(format!("{key:?}"), "ApiKey(..)");
    }
}
