//! Who may join which room: private rooms named by a token's `rooms` claim, direct messages
//! between two users, and nothing of a refused room reaching the refused user.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{Node, error, join, message, test_config};
use skat_broker::MemoryBroker;
use skat_client::Client;
use skat_protocol::{ErrorCode, dm_room};
use skat_server::ServerConfig;
use skat_server::auth::{JwtSecret, mint_token};

const SECRET: &str = "a-test-secret-of-32-bytes-length";

/// A client welcomed as `name` with a token granting `rooms` (none: no `rooms` claim).
async fn signed(node: &Node, name: &str, rooms: Option<&[&str]>) -> Client {
    let secret = JwtSecret::new(SECRET).unwrap();
    let rooms = rooms.map(|r| r.iter().map(|s| (*s).to_owned()).collect());
    let token = mint_token(&secret, name, Duration::from_secs(60), rooms).unwrap();
    let client = Client::connect_signed(&node.url, name, &token)
        .await
        .unwrap();
    assert_eq!(client.user(), Some(name));
    client
}

/// Joining `room` is refused with `forbidden`.
async fn forbidden(client: &mut Client, room: &str) {
    client.join(room).await.unwrap();
    assert_eq!(error(client).await.0, ErrorCode::Forbidden, "{room}");
}

#[tokio::test]
async fn private_rooms_and_direct_messages_are_closed_to_others() {
    let secret = JwtSecret::new(SECRET).unwrap();
    let config = ServerConfig {
        jwt_secret: Some(secret),
        ..test_config()
    };
    let node = Node::start_with(Arc::new(MemoryBroker::default()), config).await;
    let mut alice = signed(&node, "alice", Some(&["private-ops", "general"])).await;
    let mut bob = signed(&node, "bob", None).await;
    let mut carol = signed(&node, "carol", Some(&["support-*"])).await;

    // A private room: only for tokens that name it.
    join(&mut alice, "private-ops").await;
    forbidden(&mut bob, "private-ops").await;
    // Nothing of it reaches Bob: every other request needs the room joined.
    bob.history("private-ops", None, None).await.unwrap();
    assert_eq!(error(&mut bob).await.0, ErrorCode::NotJoined);
    bob.send_message("private-ops", "let me in", None)
        .await
        .unwrap();
    assert_eq!(error(&mut bob).await.0, ErrorCode::NotJoined);
    bob.typing("private-ops").await.unwrap();
    assert_eq!(error(&mut bob).await.0, ErrorCode::NotJoined);
    // And nothing of Bob reaches the room: Alice's next frame is her own message.
    alice
        .send_message("private-ops", "ops only", None)
        .await
        .unwrap();
    assert_eq!(message(&mut alice).await.body, "ops only");

    // A `rooms` claim also limits public rooms, with prefix patterns.
    join(&mut carol, "support-42").await;
    forbidden(&mut carol, "general").await;
    join(&mut bob, "general").await;

    // Direct messages: only the two users, whatever their tokens grant.
    let dm = dm_room("bob", "alice").unwrap();
    assert_eq!(dm, "dm-5-alice-bob");
    join(&mut alice, &dm).await;
    join(&mut bob, &dm).await;
    forbidden(&mut carol, &dm).await;
    alice.send_message(&dm, "just us", None).await.unwrap();
    assert_eq!(message(&mut bob).await.body, "just us");
}

#[tokio::test]
async fn the_rust_client_speaks_signed_mode() {
    let secret = JwtSecret::new(SECRET).unwrap();
    let config = ServerConfig {
        jwt_secret: Some(secret.clone()),
        ..test_config()
    };
    let node = Node::start_with(Arc::new(MemoryBroker::default()), config).await;
    let bobs = mint_token(&secret, "bob", Duration::from_secs(60), None).unwrap();
    match Client::connect_signed(&node.url, "alice", &bobs).await {
        Err(skat_client::ClientError::Refused { code, .. }) => {
            assert_eq!(code, ErrorCode::Unauthorized);
        }
        other => panic!("a token for bob must not identify alice: {other:?}"),
    }
    let bob = Client::connect_signed(&node.url, "bob", &bobs)
        .await
        .unwrap();
    assert_eq!(bob.user(), Some("bob"));
}

#[tokio::test]
async fn anonymous_mode_has_no_private_rooms_or_direct_messages() {
    let node = Node::start_with(Arc::new(MemoryBroker::default()), test_config()).await;
    let mut alice = node.client("alice").await;
    forbidden(&mut alice, "private-ops").await;
    forbidden(&mut alice, "dm-5-alice-bob").await;
    join(&mut alice, "general").await;
}
