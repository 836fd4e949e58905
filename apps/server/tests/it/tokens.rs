//! A connection's identity lives as long as its token: expiry closes the socket with 4001, a
//! `refresh` keeps it and can narrow its rooms, and public keys (RS256, ES256) with issuer and
//! audience checks verify tokens the node could not mint.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Node, close_of, closed, error, join, message, next_where, test_config};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use skat_broker::MemoryBroker;
use skat_client::{Client, ClientError};
use skat_protocol::{ErrorCode, ServerFrame, close};
use skat_server::ServerConfig;
use skat_server::auth::{JwtSecret, LEEWAY_SECS, PublicKey};

const SECRET: &str = "a-test-secret-of-32-bytes-length";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token with these claims.
fn hs256(claims: &serde_json::Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
}

async fn signed_node() -> Node {
    let config = ServerConfig {
        jwt_secret: Some(JwtSecret::new(SECRET).unwrap()),
        ..test_config()
    };
    Node::start_with(Arc::new(MemoryBroker::default()), config).await
}

/// Waits for `refreshed`; returns its `exp`.
async fn refreshed(client: &mut Client) -> Option<u64> {
    next_where(client, "refreshed", |f| match f {
        ServerFrame::Refreshed { exp } => Ok(exp),
        other => Err(Box::new(other)),
    })
    .await
}

#[tokio::test]
async fn expiry_closes_the_socket_and_a_refresh_keeps_it() {
    let node = signed_node().await;
    // Both tokens end at the same second, so one close times the other's survival.
    let exp = now() + 1;
    let short = |name: &str| hs256(&serde_json::json!({"sub": name, "exp": exp}));
    let mut alice = Client::connect_signed(&node.url, "alice", &short("alice"))
        .await
        .unwrap();
    let mut bob = Client::connect_signed(&node.url, "bob", &short("bob"))
        .await
        .unwrap();
    assert_eq!((alice.expires(), bob.expires()), (Some(exp), Some(exp)));
    join(&mut alice, "general").await;
    join(&mut bob, "general").await;

    // A token for someone else is refused, and the connection keeps its own.
    alice
        .refresh(&hs256(
            &serde_json::json!({"sub": "bob", "exp": now() + 600}),
        ))
        .await
        .unwrap();
    assert_eq!(error(&mut alice).await.0, ErrorCode::Unauthorized);
    let later = now() + 600;
    alice
        .refresh(&hs256(&serde_json::json!({"sub": "alice", "exp": later})))
        .await
        .unwrap();
    assert_eq!(refreshed(&mut alice).await, Some(later));
    assert_eq!(alice.expires(), Some(later));

    // Bob did not refresh: closed with 4001 once `exp` (plus the leeway) passes.
    let started = std::time::Instant::now();
    let code = close_of(&mut bob).await;
    assert_eq!(
        code,
        (Some(close::TOKEN_EXPIRED), "token expired".to_owned())
    );
    assert!(started.elapsed() >= Duration::from_secs(LEEWAY_SECS - 1));

    // Alice, past the same moment, is still served.
    alice
        .send_message("general", "still here", None)
        .await
        .unwrap();
    assert_eq!(message(&mut alice).await.body, "still here");
}

#[tokio::test]
async fn a_refresh_that_narrows_the_rooms_leaves_the_revoked_ones() {
    let node = signed_node().await;
    let claims =
        |rooms: &[&str]| serde_json::json!({"sub": "alice", "exp": now() + 600, "rooms": rooms});
    let mut alice = Client::connect_signed(
        &node.url,
        "alice",
        &hs256(&claims(&["private-ops", "general"])),
    )
    .await
    .unwrap();
    join(&mut alice, "private-ops").await;
    join(&mut alice, "general").await;
    alice.refresh(&hs256(&claims(&["general"]))).await.unwrap();
    refreshed(&mut alice).await;
    let left = next_where(&mut alice, "left", |f| match f {
        ServerFrame::Left { room } => Ok(room),
        other => Err(Box::new(other)),
    })
    .await;
    assert_eq!(left, "private-ops");
    alice.history("private-ops", None, None).await.unwrap();
    assert_eq!(error(&mut alice).await.0, ErrorCode::NotJoined);
    alice.join("private-ops").await.unwrap();
    assert_eq!(error(&mut alice).await.0, ErrorCode::Forbidden);
    alice.send_message("general", "kept", None).await.unwrap();
    assert_eq!(message(&mut alice).await.body, "kept");
}

/// `"rooms": null` is not "no claim" (every public room): the token is refused, at `hello` and
/// at `refresh`, so a backend that writes null for "no rooms" never widens a user's access.
#[tokio::test]
async fn a_null_rooms_claim_is_refused() {
    let node = signed_node().await;
    let null_rooms = hs256(&serde_json::json!({"sub": "alice", "exp": now() + 600, "rooms": null}));
    match Client::connect_signed(&node.url, "alice", &null_rooms).await {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, ErrorCode::Unauthorized),
        other => panic!("expected unauthorized, got {other:?}"),
    }

    let general =
        hs256(&serde_json::json!({"sub": "alice", "exp": now() + 600, "rooms": ["general"]}));
    let mut alice = Client::connect_signed(&node.url, "alice", &general)
        .await
        .unwrap();
    alice.refresh(&null_rooms).await.unwrap();
    assert_eq!(error(&mut alice).await.0, ErrorCode::Unauthorized);
    // The old token's rooms still hold.
    alice.join("lobby").await.unwrap();
    assert_eq!(error(&mut alice).await.0, ErrorCode::Forbidden);
}

#[tokio::test]
async fn anonymous_mode_answers_refresh_without_exp() {
    let node = Node::start().await;
    let mut alice = node.client("alice").await;
    assert_eq!(alice.expires(), None);
    alice.refresh("anything").await.unwrap();
    assert_eq!(refreshed(&mut alice).await, None);
}

/// A node verifying with the public key in `tests/keys`, requiring an issuer and an audience.
async fn public_key_node(public: &str) -> Node {
    let path = format!("{}/tests/keys/{public}", env!("CARGO_MANIFEST_DIR"));
    let config = ServerConfig {
        jwt_public_key: Some(PublicKey::read(path.as_ref()).unwrap()),
        jwt_issuer: Some("https://app.example".into()),
        jwt_audience: Some("skat".into()),
        ..test_config()
    };
    Node::start_with(Arc::new(MemoryBroker::default()), config).await
}

#[tokio::test]
async fn public_keys_verify_tokens_from_the_backend() {
    let keys = format!("{}/tests/keys", env!("CARGO_MANIFEST_DIR"));
    let read = |file: &str| std::fs::read(format!("{keys}/{file}")).unwrap();
    for (algorithm, public, key) in [
        (
            Algorithm::RS256,
            "rsa-public.pem",
            EncodingKey::from_rsa_pem(&read("rsa-private.pem")).unwrap(),
        ),
        (
            Algorithm::ES256,
            "ec-public.pem",
            EncodingKey::from_ec_pem(&read("ec-private.pem")).unwrap(),
        ),
    ] {
        let node = public_key_node(public).await;
        let token = |iss: &str| {
            let claims = serde_json::json!({
                "sub": "alice", "exp": now() + 60, "iss": iss, "aud": "skat"
            });
            jsonwebtoken::encode(&Header::new(algorithm), &claims, &key).unwrap()
        };
        let mut alice = Client::connect_signed(&node.url, "alice", &token("https://app.example"))
            .await
            .unwrap();
        join(&mut alice, "general").await;
        // Same key, wrong issuer: refused and closed.
        let mut raw = node.raw_client().await;
        let refused = raw
            .hello_with("alice", Some(&token("https://evil.example")))
            .await;
        assert!(
            matches!(
                refused,
                Err(ClientError::Refused {
                    code: ErrorCode::Unauthorized,
                    ..
                })
            ),
            "{algorithm:?}: {refused:?}"
        );
        assert_eq!(closed(&mut raw).await, Some(1008));
        // An HS256 token is refused by a public-key node, whatever its secret.
        let mut raw = node.raw_client().await;
        let hs = hs256(&serde_json::json!({
            "sub": "alice", "exp": now() + 60, "iss": "https://app.example", "aud": "skat"
        }));
        assert!(raw.hello_with("alice", Some(&hs)).await.is_err());
    }
}
