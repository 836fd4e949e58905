//! Signed identities: HS256 JSON Web Tokens whose `sub` is the user name.
//!
//! In signed mode (a secret is configured) `hello` must carry a token minted with the same
//! secret, unexpired, for exactly the name it claims. An application backend mints tokens for its
//! logged-in users (any JWT library: HS256, claims `sub` and `exp`); [`mint_token`] and
//! `skat-server token <name>` do it for local use.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Why a token was refused or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No token in `hello`.
    #[error("a signed token is required: hello must carry \"token\"")]
    Missing,
    /// Bad signature, expired, malformed, or not HS256.
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
}

/// A token for `name`, valid for `ttl`.
pub fn mint_token(secret: &str, name: &str, ttl: Duration) -> Result<String, AuthError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let claims = Claims {
        sub: name.to_owned(),
        exp: (now + ttl).as_secs(),
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// Checks that `token` is a valid, unexpired HS256 token for `name`.
pub fn verify_token(secret: &str, name: &str, token: Option<&str>) -> Result<(), AuthError> {
    let token = token.ok_or(AuthError::Missing)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 5;
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )?;
    if data.claims.sub == name {
        Ok(())
    } else {
        Err(AuthError::WrongUser)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let token = mint_token("s3cret", "alice", Duration::from_secs(60)).unwrap();
        assert!(verify_token("s3cret", "alice", Some(&token)).is_ok());
        assert!(matches!(
            verify_token("s3cret", "bob", Some(&token)),
            Err(AuthError::WrongUser)
        ));
        assert!(matches!(
            verify_token("other", "alice", Some(&token)),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            verify_token("s3cret", "alice", None),
            Err(AuthError::Missing)
        ));
        assert!(matches!(
            verify_token("s3cret", "alice", Some("not.a.jwt")),
            Err(AuthError::Invalid(_))
        ));
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "alice".into(),
                exp: 1,
            },
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert!(matches!(
            verify_token("s3cret", "alice", Some(&expired)),
            Err(AuthError::Invalid(_))
        ));
    }
}
