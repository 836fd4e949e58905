//! Signed identities: JSON Web Tokens whose `sub` is the user name.
//!
//! In signed mode (a key is configured) `hello` must carry a token signed with the node's key,
//! unexpired, for exactly the name it claims. The key is either
//! - an HS256 secret shared with the application's backend ([`JwtSecret`]), or
//! - an RS256 or ES256 public key ([`PublicKey`]): the backend keeps the private key, so a node
//!   (or whoever reads its configuration) cannot mint tokens.
//!
//! A [`Verifier`] holds the key and what else a token must show: optionally an issuer (`iss`)
//! and an audience (`aud`). A token's `exp` bounds the connection's identity: the connection is
//! closed when it passes, unless a `refresh` frame brought a newer token for the same user
//! (`Identity::exp`). An application backend mints tokens with any JWT library (claims `sub`,
//! `exp`, optionally `rooms`, `moderate`, `iss`, `aud`, `nbf`); [`mint_token`] and
//! `skat-server token <name>` do it for local use with a secret ([`mint_token_moderating`] adds
//! a `moderate` claim).
//!
//! The `moderate` claim names the rooms (exact names and `prefix*` patterns, read like `rooms`)
//! where the user may edit and delete anyone's message; without it, only their own.
//!
//! A secret must be at least [`MIN_SECRET_BYTES`] long: an empty or short HS256 key can be
//! guessed, and a node configured with one would accept tokens anyone can forge. [`JwtSecret`] is
//! the only way to hold one, so no code path can use a key that was not checked.
//!
//! The server API's callers, application backends, authenticate with an [`ApiKey`] instead
//! (`--api-key`, at least [`MIN_API_KEY_BYTES`] long), compared in constant time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::access::RoomGrants;

mod keys;

pub use keys::{ApiKey, JwtSecret, KeyError, MIN_API_KEY_BYTES, MIN_SECRET_BYTES, PublicKey};

/// Seconds of clock skew allowed between the backend that mints tokens and the node, on `exp`
/// and `nbf`. A connection's identity also lasts this long past `exp`, so that a token accepted
/// at the edge of its life is not cut off at once.
pub const LEEWAY_SECS: u64 = 5;

/// Why a token was refused or could not be made. (What a key of the configuration may be is
/// [`KeyError`]'s.)
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No token in `hello`.
    #[error("a signed token is required: hello must carry \"token\"")]
    Missing,
    /// Bad signature, expired, not yet valid (`nbf`), wrong issuer or audience, malformed, or
    /// signed with another algorithm than the node's key.
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
    /// The rooms the user may join (see `access`); absent: every public room. `null` is not
    /// absent: it fails to decode, so the token is refused (see [`present`]).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    rooms: Option<Vec<String>>,
    /// The rooms where the user moderates (see the module docs); absent: none. `null` is
    /// refused like `rooms`' (a backend meant "none", and may be wrong about what else it
    /// meant).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    moderate: Option<Vec<String>>,
}

/// Decodes a claim that is there, refusing `null`: serde reads `null` into an `Option` as
/// `None`, the same as an absent claim, and for `rooms` absent means every public room. A backend
/// that serialises "no rooms" or a missing list as `null` meant to narrow access, not to widen
/// it, so such a token fails closed (refused as invalid, `unauthorized`). Absent claims never
/// reach this function: `#[serde(default)]` makes them `None`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// What a valid token vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The rooms its `rooms` claim grants, if it has one.
    pub(crate) grants: Option<RoomGrants>,
    /// The rooms its `moderate` claim names, if it has one.
    pub(crate) moderates: Option<RoomGrants>,
    /// When it expires, in Unix seconds.
    pub(crate) exp: u64,
}

impl Identity {
    /// How long from now the identity lasts: until `exp`, plus the [leeway](LEEWAY_SECS).
    pub(crate) fn remaining(&self) -> Duration {
        let end = Duration::from_secs(self.exp.saturating_add(LEEWAY_SECS));
        end.saturating_sub(unix_now())
    }
}

/// Checks tokens against the node's key, and the issuer and audience it requires.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    /// Tokens signed HS256 with `secret`.
    pub(crate) fn hs256(secret: &JwtSecret) -> Self {
        Self::new(DecodingKey::from_secret(secret.bytes()), Algorithm::HS256)
    }

    /// Tokens signed with the private half of `key`.
    pub(crate) fn public(key: &PublicKey) -> Self {
        Self::new(key.decoding_key().clone(), key.algorithm())
    }

    fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        // Without a configured audience, a token's `aud` (if any) is not checked.
        validation.validate_aud = false;
        Self { key, validation }
    }

    /// Also requires `iss` to be `issuer`.
    pub(crate) fn with_issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self.validation
            .required_spec_claims
            .insert("iss".to_owned());
        self
    }

    /// Also requires `aud` to be (or contain) `audience`.
    pub(crate) fn with_audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.validation.validate_aud = true;
        self.validation
            .required_spec_claims
            .insert("aud".to_owned());
        self
    }

    /// Checks that `token` is a valid token for `name`: signed with the key, unexpired, past its
    /// `nbf` if it has one, from the issuer and for the audience if those are required.
    pub(crate) fn verify(&self, name: &str, token: Option<&str>) -> Result<Identity, AuthError> {
        let token = token.ok_or(AuthError::Missing)?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)?;
        if data.claims.sub != name {
            return Err(AuthError::WrongUser);
        }
        Ok(Identity {
            grants: data.claims.rooms.map(RoomGrants::new),
            moderates: data.claims.moderate.map(RoomGrants::new),
            exp: data.claims.exp,
        })
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .field("iss", &self.validation.iss)
            .field("aud", &self.validation.aud)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// A token for `name`, valid for `ttl`, granting `rooms` if given (see `access`).
pub fn mint_token(
    secret: &JwtSecret,
    name: &str,
    ttl: Duration,
    rooms: Option<Vec<String>>,
) -> Result<String, AuthError> {
    mint_token_moderating(secret, name, ttl, rooms, None)
}

/// Like [`mint_token`], with a `moderate` claim if `moderate` is given (see the module docs).
pub fn mint_token_moderating(
    secret: &JwtSecret,
    name: &str,
    ttl: Duration,
    rooms: Option<Vec<String>>,
    moderate: Option<Vec<String>>,
) -> Result<String, AuthError> {
    let claims = Claims {
        sub: name.to_owned(),
        exp: (unix_now() + ttl).as_secs(),
        rooms,
        moderate,
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.bytes()),
    )?)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

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
    fn round_trip_and_refusals() {
        let key = secret(SECRET);
        let token = mint_token(&key, "alice", Duration::from_secs(60), None).unwrap();
        assert!(Verifier::hs256(&key).verify("alice", Some(&token)).is_ok());
        assert!(matches!(
            Verifier::hs256(&key).verify("bob", Some(&token)),
            Err(AuthError::WrongUser)
        ));
        assert!(matches!(
            Verifier::hs256(&secret("another-secret-of-enough-bytes"))
                .verify("alice", Some(&token)),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            Verifier::hs256(&key).verify("alice", None),
            Err(AuthError::Missing)
        ));
        assert!(matches!(
            Verifier::hs256(&key).verify("alice", Some("not.a.jwt")),
            Err(AuthError::Invalid(_))
        ));
        let expired = token_with(SECRET, &serde_json::json!({"sub": "alice", "exp": 1}));
        assert!(matches!(
            Verifier::hs256(&key).verify("alice", Some(&expired)),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn a_null_claim_is_refused_not_read_as_absent() {
        let key = secret(SECRET);
        let exp = now() + 600;
        // `rooms: null` would otherwise be no claim: every public room.
        let null_rooms = token_with(
            SECRET,
            &serde_json::json!({"sub": "alice", "exp": exp, "rooms": null}),
        );
        assert!(matches!(
            Verifier::hs256(&key).verify("alice", Some(&null_rooms)),
            Err(AuthError::Invalid(_))
        ));
        // The other claims a null could widen: `nbf` (no earliest time), `iss` and `aud` when
        // required (no issuer, no audience), `exp` and `sub`. All refused.
        let strict = Verifier::hs256(&key)
            .with_issuer("https://app")
            .with_audience("skat");
        let good =
            serde_json::json!({"sub": "alice", "exp": exp, "iss": "https://app", "aud": "skat"});
        assert!(
            strict
                .verify("alice", Some(&token_with(SECRET, &good)))
                .is_ok()
        );
        for claim in ["nbf", "iss", "aud", "exp", "sub", "rooms", "moderate"] {
            let mut claims = good.clone();
            claims[claim] = serde_json::Value::Null;
            assert!(
                matches!(
                    strict.verify("alice", Some(&token_with(SECRET, &claims))),
                    Err(AuthError::Invalid(_))
                ),
                "{claim}: null"
            );
        }
        // An absent claim, or a list, still decode; a null inside the list does not.
        let absent = token_with(SECRET, &serde_json::json!({"sub": "alice", "exp": exp}));
        let identity = Verifier::hs256(&key)
            .verify("alice", Some(&absent))
            .unwrap();
        assert_eq!(identity.grants, None);
        let listed = token_with(
            SECRET,
            &serde_json::json!({"sub": "alice", "exp": exp, "rooms": ["ops"]}),
        );
        let identity = Verifier::hs256(&key)
            .verify("alice", Some(&listed))
            .unwrap();
        assert!(
            identity
                .grants
                .is_some_and(|g| g.allows("ops") && !g.allows("lobby"))
        );
        let null_inside = token_with(
            SECRET,
            &serde_json::json!({"sub": "alice", "exp": exp, "rooms": ["ops", null]}),
        );
        assert!(
            Verifier::hs256(&key)
                .verify("alice", Some(&null_inside))
                .is_err()
        );
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
            Verifier::hs256(&key).verify("alice", Some(&early)),
            Err(AuthError::Invalid(_))
        ));
        let ripe = token_with(
            SECRET,
            &serde_json::json!({"sub": "alice", "exp": exp, "nbf": now() - 10}),
        );
        assert!(Verifier::hs256(&key).verify("alice", Some(&ripe)).is_ok());
    }

    const RSA_PRIVATE: &[u8] = include_bytes!("../tests/keys/rsa-private.pem");
    const RSA_PUBLIC: &[u8] = include_bytes!("../tests/keys/rsa-public.pem");
    const EC_PRIVATE: &[u8] = include_bytes!("../tests/keys/ec-private.pem");
    const EC_PUBLIC: &[u8] = include_bytes!("../tests/keys/ec-public.pem");

    fn signed(algorithm: Algorithm, key: &EncodingKey, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(algorithm), claims, key).unwrap()
    }

    #[test]
    fn public_keys_verify_rs256_and_es256_and_nothing_else() {
        let claims = serde_json::json!({"sub": "alice", "exp": now() + 60, "rooms": ["ops"]});
        let rsa = PublicKey::from_pem(RSA_PUBLIC).unwrap();
        let ec = PublicKey::from_pem(EC_PUBLIC).unwrap();
        assert_eq!(
            (rsa.algorithm(), ec.algorithm()),
            (Algorithm::RS256, Algorithm::ES256)
        );
        let rs256 = signed(
            Algorithm::RS256,
            &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
            &claims,
        );
        let es256 = signed(
            Algorithm::ES256,
            &EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
            &claims,
        );
        let identity = Verifier::public(&rsa)
            .verify("alice", Some(&rs256))
            .unwrap();
        assert!(identity.grants.unwrap().allows("ops"));
        assert!(Verifier::public(&ec).verify("alice", Some(&es256)).is_ok());
        // Each key verifies its own algorithm only: no RS256 token passes the EC key, and an
        // HS256 token made with the public key's bytes as a secret (the classic algorithm
        // confusion) passes neither.
        assert!(Verifier::public(&ec).verify("alice", Some(&rs256)).is_err());
        assert!(
            Verifier::public(&rsa)
                .verify("alice", Some(&es256))
                .is_err()
        );
        let confused = signed(
            Algorithm::HS256,
            &EncodingKey::from_secret(RSA_PUBLIC),
            &claims,
        );
        assert!(
            Verifier::public(&rsa)
                .verify("alice", Some(&confused))
                .is_err()
        );
        assert!(matches!(
            PublicKey::from_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
            Err(KeyError::BadKey)
        ));
        assert!(matches!(
            PublicKey::read(Path::new("/nonexistent/key.pem")),
            Err(KeyError::KeyFile { .. })
        ));
    }

    #[test]
    fn issuer_and_audience_are_checked_when_required() {
        let key = secret(SECRET);
        let claims = |extra: serde_json::Value| {
            let mut claims = serde_json::json!({"sub": "alice", "exp": now() + 60});
            claims
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            token_with(SECRET, &claims)
        };
        let good = claims(serde_json::json!({"iss": "https://app", "aud": ["skat", "x"]}));
        let strict = Verifier::hs256(&key)
            .with_issuer("https://app")
            .with_audience("skat");
        assert!(strict.verify("alice", Some(&good)).is_ok());
        for bad in [
            claims(serde_json::json!({})),
            claims(serde_json::json!({"iss": "https://evil", "aud": "skat"})),
            claims(serde_json::json!({"iss": "https://app", "aud": "other"})),
            claims(serde_json::json!({"iss": "https://app"})),
        ] {
            assert!(strict.verify("alice", Some(&bad)).is_err());
        }
        // Not required: not checked, whatever the token says.
        assert!(Verifier::hs256(&key).verify("alice", Some(&good)).is_ok());
    }

    #[test]
    fn an_identity_lasts_until_exp_plus_the_leeway() {
        let identity = Identity {
            grants: None,
            moderates: None,
            exp: now() + 100,
        };
        let left = identity.remaining().as_secs();
        assert!((100..=100 + LEEWAY_SECS).contains(&left), "{left}");
        let long_gone = Identity {
            grants: None,
            moderates: None,
            exp: 1,
        };
        assert_eq!(long_gone.remaining(), Duration::ZERO);
    }
}
