//! Search (issue 23): words, not a query language; newest first, paged with `before`; messages
//! in their current state (an edit's new words, never the old; a deleted message never), as
//! `history` shows them; only what `history` retains. And the backends that keep no index
//! answer `Unsupported`.

#![allow(clippy::unwrap_used, missing_docs)]

use super::{change, changed, edit, latest, publish_n, react};
use crate::{Broker, ChangeKind, Message, MessageId, NewMessage, SearchPage, Searched};

/// The search of `words` in `room`, failing the test if the backend cannot search.
pub async fn found<B: Broker>(
    broker: &B,
    room: &str,
    words: &[&str],
    before: Option<MessageId>,
    limit: usize,
) -> SearchPage {
    let words: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
    match broker.search(room, &words, before, limit).await.unwrap() {
        Searched::Found(page) => page,
        Searched::Unsupported => panic!("this backend cannot search"),
    }
}

/// The bodies of a page, newest first.
fn bodies(page: &SearchPage) -> Vec<&str> {
    page.messages.iter().map(|m| m.body.as_str()).collect()
}

async fn say<B: Broker>(broker: &B, room: &str, from: &str, body: &str) -> Message {
    broker
        .publish(NewMessage {
            room: room.into(),
            from: from.into(),
            body: body.into(),
            nonce: None,
            reply_to: None,
        })
        .await
        .unwrap()
        .into_message()
        .unwrap()
}

pub async fn search_finds_words<B: Broker>(broker: &B) {
    let room = "c-search";
    let mut said = Vec::new();
    for (from, body) in [
        ("alice", "deploy the api on friday"),
        ("bob", "lunch on friday?"),
        ("alice", "deploy OR rollback: NOT sure"),
        ("carol", "the deployment went fine"),
        ("bob", "friday deploy again"),
        ("alice", "unrelated chatter"),
    ] {
        said.push(say(broker, room, from, body).await);
    }
    say(
        broker,
        "c-search-other",
        "dan",
        "deploy elsewhere on friday",
    )
    .await;

    // Every word must be there; the last one may be a word's start; newest first.
    let page = found(broker, room, &["deploy", "friday"], None, 10).await;
    assert_eq!(
        bodies(&page),
        ["friday deploy again", "deploy the api on friday"]
    );
    assert!(!page.has_more);
    let page = found(broker, room, &["deploy"], None, 10).await;
    assert_eq!(
        bodies(&page),
        [
            "friday deploy again",
            "the deployment went fine",
            "deploy OR rollback: NOT sure",
            "deploy the api on friday",
        ],
        "the last word matches a word's start"
    );
    assert!(
        found(broker, room, &["eploy"], None, 10)
            .await
            .messages
            .is_empty()
    );
    let page = found(broker, room, &["the", "de"], None, 10).await;
    assert!(
        page.messages.is_empty(),
        "a last word under 3 characters is a whole word only: {page:?}"
    );

    // Paged with `before`, bounded by `limit`.
    let page = found(broker, room, &["friday"], None, 2).await;
    assert_eq!(bodies(&page), ["friday deploy again", "lunch on friday?"]);
    assert!(page.has_more);
    let next = found(broker, room, &["friday"], Some(page.messages[1].id), 2).await;
    assert_eq!(bodies(&next), ["deploy the api on friday"]);
    assert!(!next.has_more);

    // Operators and syntax are plain text.
    let page = found(broker, room, &["OR"], None, 10).await;
    assert_eq!(bodies(&page), ["deploy OR rollback: NOT sure"]);
    let page = found(broker, room, &["deploy", "OR", "lunch"], None, 10).await;
    assert!(page.messages.is_empty(), "OR is a word: {page:?}");
    let page = found(broker, room, &["NOT", "sure"], None, 10).await;
    assert_eq!(bodies(&page), ["deploy OR rollback: NOT sure"]);
    for syntax in [
        r#""friday"#,
        "friday)",
        "(lunch",
        "body:lunch",
        "^lunch",
        "NEAR(lunch",
    ] {
        found(broker, room, &[syntax], None, 10).await;
    }
    let page = found(broker, room, &["rollback:"], None, 10).await;
    assert_eq!(bodies(&page), ["deploy OR rollback: NOT sure"]);

    // Current state: an edit's new words, not its old ones; a deleted message never.
    changed(
        broker,
        change(room, said[5].id, "alice", edit("quarterly numbers")),
    )
    .await;
    assert!(
        found(broker, room, &["chatter"], None, 10)
            .await
            .messages
            .is_empty()
    );
    let page = found(broker, room, &["quarterly"], None, 10).await;
    assert_eq!(bodies(&page), ["quarterly numbers"]);
    assert!(page.messages[0].edited().is_some());
    changed(broker, change(room, said[1].id, "bob", ChangeKind::Delete)).await;
    assert!(
        found(broker, room, &["lunch"], None, 10)
            .await
            .messages
            .is_empty()
    );
    let page = found(broker, room, &["friday"], None, 10).await;
    assert_eq!(
        bodies(&page),
        ["friday deploy again", "deploy the api on friday"]
    );

    // As `history` shows them, reactions included.
    changed(broker, change(room, said[4].id, "carol", react("👍", true))).await;
    let page = found(broker, room, &["again"], None, 10).await;
    let history = latest(broker, room, 10).await;
    let shown = history.iter().find(|m| m.id == said[4].id).unwrap();
    assert_eq!(page.messages, std::slice::from_ref(shown));
    assert_eq!(page.messages[0].reactions().len(), 1);

    // Rooms apart; a room nobody used finds nothing.
    let page = found(broker, "c-search-other", &["deploy"], None, 10).await;
    assert_eq!(bodies(&page), ["deploy elsewhere on friday"]);
    assert!(
        found(broker, "c-search-none", &["deploy"], None, 10)
            .await
            .messages
            .is_empty()
    );
}

/// Only what `history` retains is found: a room's oldest messages, trimmed past `history_len`,
/// are not.
pub async fn search_finds_what_history_retains<B: Broker>(broker: &B, history_len: usize) {
    let room = "c-search-trim";
    let sent = publish_n(broker, room, history_len + 5).await;
    // Their bodies are `m0`, `m1`, ... (too short to share a prefix search): each is looked
    // for whole, oldest first.
    let mut ids = Vec::new();
    for message in &sent {
        let page = found(broker, room, &[&message.body], None, 10).await;
        ids.extend(
            page.messages
                .iter()
                .filter(|m| m.body == message.body)
                .map(|m| m.id),
        );
    }
    let retained = latest(broker, room, history_len + 5).await;
    assert_eq!(retained.len(), history_len);
    assert_eq!(ids, retained.iter().map(|m| m.id).collect::<Vec<_>>());
    assert!(!ids.contains(&sent[0].id));
}

/// A backend that keeps no index answers `Unsupported`.
pub async fn search_is_unsupported<B: Broker>(broker: &B) {
    publish_n(broker, "c-search-none", 1).await;
    let words = vec!["m0".to_owned()];
    let searched = broker
        .search("c-search-none", &words, None, 10)
        .await
        .unwrap();
    assert_eq!(searched, Searched::Unsupported);
}
