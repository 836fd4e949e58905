//! Reply bounds count encoded bytes: every backend measures a recovery as
//! [`message_size`] does (the JSON the client will get, escapes included),
//! not the raw text, and they agree to the byte (the Redis backend counts in its join script).

#![allow(clippy::unwrap_used, missing_docs)]

use crate::{Broker, Message, NewMessage, Recovery, Resume, message_size};

use super::resume;

/// Bodies and nonces whose JSON differs from their text in every way there is.
fn tricky() -> Vec<(String, Option<String>)> {
    vec![
        ("plain".into(), None),
        ("\u{1}".repeat(50), None),
        (
            "\0\u{8}\t\n\u{b}\u{c}\r\u{1f} \"\\/\u{7f}".into(),
            Some("n\"\\\n\u{1}".into()),
        ),
        ("-\n5\n".into(), Some(String::new())),
        ("\n\n".into(), Some("\n".into())),
        ("é💬\u{2028}".into(), Some("c-1".into())),
        ("\u{1}".repeat(4000), Some("\u{1f}".repeat(64))),
    ]
}

async fn publish<B: Broker>(
    broker: &B,
    room: &str,
    body: String,
    nonce: Option<String>,
) -> Message {
    let new = NewMessage {
        room: room.into(),
        from: "alice".into(),
        body,
        nonce,
        reply_to: None,
    };
    broker.publish(new).await.unwrap().into_message().unwrap()
}

pub async fn recovery_counts_encoded_bytes<B: Broker>(broker: &B) {
    // Each message alone: a recovery bounded at exactly its size gets it, one byte less does not.
    for (i, (body, nonce)) in tricky().into_iter().enumerate() {
        let room = format!("c-size-{i}");
        let since = publish(broker, &room, "since".into(), None).await.id;
        let message = publish(broker, &room, body, nonce).await;
        let size = message_size(&message);
        let exactly = Recovery {
            limit: 10,
            max_bytes: size,
        };
        // Failures name the case, not its (up to 24 KB) text.
        let recovered = broker
            .recover(&room, since, exactly)
            .await
            .unwrap()
            .map(super::no_changes);
        assert!(
            recovered == Some(vec![message.clone()]),
            "case {i} not recovered in its {size} bytes"
        );
        let short = Recovery {
            max_bytes: size - 1,
            ..exactly
        };
        let recovered = broker
            .recover(&room, since, short)
            .await
            .unwrap()
            .map(super::no_changes);
        assert!(
            recovered.is_none(),
            "case {i} recovered in {} bytes",
            size - 1
        );
    }

    // Four messages of 1000 control characters: about 4.4 KB raw, but 24 KB in JSON. A bound of
    // 10 KB does not hold them: the latest page instead.
    let room = "c-size-escapes";
    let since = publish(broker, room, "since".into(), None).await.id;
    let mut sent = Vec::new();
    for _ in 0..4 {
        sent.push(publish(broker, room, "\u{1}".repeat(1000), None).await);
    }
    let encoded: usize = sent.iter().map(message_size).sum();
    assert!(encoded > 24_000, "{encoded}");
    let join = |max_bytes| Resume {
        since: Some(since),
        recovery: Recovery {
            limit: 100,
            max_bytes,
        },
        ..resume(2)
    };
    let ids = |messages: &[Message]| messages.iter().map(|m| m.id).collect::<Vec<_>>();
    let snapshot = broker
        .join_snapshot(room, "bob", false, join(10_000))
        .await
        .unwrap();
    assert_eq!(
        (ids(&snapshot.messages), snapshot.recovered),
        (ids(&sent[2..]), false),
        "fits raw, not encoded: the latest page"
    );
    assert!(snapshot.messages == sent[2..], "the messages themselves");
    let snapshot = broker
        .join_snapshot(room, "bob", false, join(encoded))
        .await
        .unwrap();
    assert_eq!(
        (ids(&snapshot.messages), snapshot.recovered),
        (ids(&sent), true)
    );
    assert!(snapshot.messages == sent, "the messages themselves");
}
