//! Signed identities: HS256 JSON Web Tokens whose `sub` is the user name.
//!
//! In signed mode (a secret is configured) `hello` must carry a token minted with the same
//! secret, unexpired, for exactly the name it claims. An application backend mints tokens for its
//! logged-in users (any JWT library: HS256, claims `sub` and `exp`); [`mint_token`] and
//! `skat-server token <name>` do it for local use.
//!
//! A secret must be at least [`MIN_SECRET_BYTES`] long: an empty or short HS256 key can be
//! guessed, and a node configured with one would accept tokens anyone can forge. [`JwtSecret`] is
//! the only way to hold one, so no code path can use a key that was not checked.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::access::RoomGrants;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// An HS256 secret long enough to sign with (see the module docs).
#[derive(Clone)]
pub struct JwtSecret(String);

impl JwtSecret {
    /// Checks `secret`'s length.
    pub fn new(secret: impl Into<String>) -> Result<Self, AuthError> {
        let secret = secret.into();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(AuthError::WeakSecret { len: secret.len() });
        }
        Ok(Self(secret))
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for JwtSecret {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtSecret(..)")
    }
}

/// Why a token was refused or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The configured secret is too short to sign with.
    #[error(
        "the JWT secret is {len} bytes long; it must be at least {MIN_SECRET_BYTES} (an empty or short key lets anyone forge tokens)"
    )]
    WeakSecret {
        /// Its length in bytes.
        len: usize,
    },
    /// No token in `hello`.
    #[error("a signed token is required: hello must carry \"token\"")]
    Missing,
    /// Bad signature, expired, not yet valid (`nbf`), malformed, or not HS256.
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// A valid token for someone else.
    #[error("the token is for another user")]
    WrongUser,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    /// The rooms the user may join (see `access`); absent: every public room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rooms: Option<Vec<String>>,
}

/// A token for `name`, valid for `ttl`, granting `rooms` if given (see `access`).
pub fn mint_token(
    secret: &JwtSecret,
    name: &str,
    ttl: Duration,
    rooms: Option<Vec<String>>,
) -> Result<String, AuthError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let claims = Claims {
        sub: name.to_owned(),
        exp: (now + ttl).as_secs(),
        rooms,
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.bytes()),
    )?)
}

/// Checks that `token` is a valid HS256 token for `name`: unexpired, and past its `nbf` if it
/// has one.
pub fn verify_token(
    secret: &JwtSecret,
    name: &str,
    token: Option<&str>,
) -> Result<Option<RoomGrants>, AuthError> {
    let token = token.ok_or(AuthError::Missing)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 5;
    validation.validate_nbf = true;
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.bytes()),
        &validation,
    )?;
    if data.claims.sub == name {
        Ok(data.claims.rooms.map(RoomGrants::new))
    } else {
        Err(AuthError::WrongUser)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-of-32-bytes-length";

    fn secret(s: &str) -> JwtSecret {
        JwtSecret::new(s).unwrap()
    }

    /// A token with arbitrary claims, signed with `key`.
    fn token_with(key: &str, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap()
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn short_secrets_are_refused() {
        for weak in ["", "abc", "fifteen-bytes!!"] {
            assert!(
                matches!(JwtSecret::new(weak), Err(AuthError::WeakSecret { len }) if len == weak.len()),
                "{weak:?}"
            );
        }
        assert!(JwtSecret::new("sixteen-bytes!!!").is_ok());
        assert_eq!(format!("{:?}", secret(SECRET)), "JwtSecret(..)");
    }

    #[test]
    fn round_trip_and_refusals() {
        let key = secret(SECRET);
        let token = mint_token(&key, "alice", Duration::from_secs(60), None).unwrap();
        assert!(verify_token(&key, "alice", Some(&token)).is_ok());
        assert!(matches!(
            verify_token(&key, "bob", Some(&token)),
            Err(AuthError::WrongUser)
        ));
        assert!(matches!(
            verify_token(
                &secret("another-secret-of-enough-bytes"),
                "alice",
                Some(&token)
            ),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            verify_token(&key, "alice", None),
            Err(AuthError::Missing)
        ));
        assert!(matches!(
            verify_token(&key, "alice", Some("not.a.jwt")),
            Err(AuthError::Invalid(_))
        ));
        let expired = token_with(SECRET, &serde_json::json!({"sub": "alice", "exp": 1}));
        assert!(matches!(
            verify_token(&key, "alice", Some(&expired)),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn a_token_is_refused_before_its_nbf() {
        let key = secret(SECRET);
        let exp = now() + 600;
        let early = token_with(
            SECRET,
            &serde_json::json!({"sub": "alice", "exp": exp, "nbf": now() + 300}),
        );
        assert!(matches!(
            verify_token(&key, "alice", Some(&early)),
            Err(AuthError::Invalid(_))
        ));
        let ripe = token_with(
            SECRET,
            &serde_json::json!({"sub": "alice", "exp": exp, "nbf": now() - 10}),
        );
        assert!(verify_token(&key, "alice", Some(&ripe)).is_ok());
    }
}
