//! Messages people change, in the browser (issue 22): an edit (Up, Enter, Escape), a deletion
//! confirmed inline, a reaction toggled from the picker and from its chip, a reply whose quote
//! jumps to the original, each seen by another browser; and the unread badge of a user with two
//! browsers, cleared on the second when the first opens the room (the server's `read`). The
//! browsers are on two nodes sharing one Redis, so everything crosses nodes.

use fantoccini::{Client, Locator};

use super::{
    Driver, bundle, click, common, eventually, join_room, open_as, patient_node, say, screenshot,
    wait_messages, wait_text,
};
use common::Node;
use skat_server::ServerConfig;
use skat_testkit::RedisServer;

/// Two nodes serving the bundle, sharing a test Redis (returned too: it lives as long as they).
async fn two_nodes() -> (RedisServer, Node, Node) {
    let redis = RedisServer::start().await;
    let config = |id: &str| ServerConfig {
        node_id: id.into(),
        static_dir: Some(bundle()),
        ..common::test_config()
    };
    let a = patient_node(&redis.url(), "changes:", config("node-a"), 1000).await;
    let b = patient_node(&redis.url(), "changes:", config("node-b"), 1000).await;
    (redis, a, b)
}

/// Waits until nothing matches `css`.
async fn wait_gone(page: &Client, css: &str, what: &str) {
    eventually(what, || async {
        match page.find_all(Locator::Css(css)).await {
            Ok(found) if found.is_empty() => Ok(()),
            Ok(found) => Err(format!("{} of {css}", found.len())),
            Err(err) => Err(err.to_string()),
        }
    })
    .await;
}

/// Waits until something matches `css`.
async fn wait_for(page: &Client, css: &str, what: &str) {
    eventually(what, || async {
        match page.find_all(Locator::Css(css)).await {
            Ok(found) if !found.is_empty() => Ok(()),
            Ok(_) => Err(format!("no {css}")),
            Err(err) => Err(err.to_string()),
        }
    })
    .await;
}

/// The composer's text.
async fn composer_text(page: &Client) -> String {
    let composer = page.find(Locator::Id("composer")).await.unwrap();
    composer.prop("value").await.unwrap().unwrap_or_default()
}

#[tokio::test]
async fn edits_deletions_reactions_and_replies_reach_another_browser() {
    let (_redis, node_a, node_b) = two_nodes().await;
    let driver = Driver::start().await;
    let alice = driver.browser().await;
    let bob = driver.browser().await;
    open_as(&alice, &node_a, "alice").await;
    open_as(&bob, &node_b, "bob").await;
    wait_text(&alice, "#members", "bob", |t| t.contains("bob")).await;

    say(&alice, "first draft").await;
    wait_messages(&bob, "alice's message", |m| m == ["first draft"]).await;

    // Up in the empty composer edits her last message; Escape cancels, leaving it as it was.
    let composer = alice.find(Locator::Id("composer")).await.unwrap();
    composer.send_keys("\u{E013}").await.unwrap();
    wait_text(&alice, "#compose-bar", "editing", |t| t.contains("Editing")).await;
    assert_eq!(composer_text(&alice).await, "first draft");
    composer.send_keys("\u{E00C}").await.unwrap();
    wait_gone(&alice, "#compose-bar", "the edit cancelled").await;
    assert_eq!(composer_text(&alice).await, "");
    // Up again, new text, Enter: saved, and bob sees it edited.
    composer.send_keys("\u{E013}").await.unwrap();
    wait_text(&alice, "#compose-bar", "editing", |t| t.contains("Editing")).await;
    composer.clear().await.unwrap();
    say(&alice, "final text").await;
    wait_messages(&bob, "the edit", |m| m == ["final text"]).await;
    let edited = bob.find(Locator::Css(".message .edited")).await.unwrap();
    assert_eq!(edited.text().await.unwrap(), "(edited)");
    assert!(
        edited
            .attr("title")
            .await
            .unwrap()
            .is_some_and(|t| t.starts_with("edited at"))
    );

    // Bob replies: the quote bar, then a reply alice sees quoting the original.
    click(&bob, ".message:not(.own) .reply").await;
    wait_text(&bob, "#compose-bar", "replying", |t| {
        t.contains("Replying to alice: final text")
    })
    .await;
    say(&bob, "a reply").await;
    wait_gone(&bob, "#compose-bar", "the reply target used").await;
    wait_messages(&alice, "bob's reply", |m| m == ["final text", "a reply"]).await;
    wait_text(&alice, ".message .quote", "the quote", |t| {
        t == "alice: final text"
    })
    .await;
    // Its quote jumps to the original and highlights it.
    click(&alice, ".message .quote").await;
    wait_for(
        &alice,
        ".message.own[data-highlight]",
        "the original highlighted",
    )
    .await;

    // Alice reacts from the picker; bob sees the chip, toggles it on too, then alice sees 2.
    click(&alice, ".message:not(.own) .react").await;
    click(&alice, ".message:not(.own) .pick[data-emoji='👍']").await;
    wait_text(&bob, ".message.own .reaction", "alice's reaction", |t| {
        t == "👍 1"
    })
    .await;
    click(&bob, ".message.own .reaction[data-emoji='👍']").await;
    wait_text(&alice, ".reaction.mine", "both reactions", |t| t == "👍 2").await;
    let title = alice
        .find(Locator::Css(".reaction.mine"))
        .await
        .unwrap()
        .attr("title")
        .await
        .unwrap()
        .unwrap_or_default();
    assert_eq!(title, "alice, bob");
    // And her chip takes hers back.
    click(&alice, ".reaction.mine").await;
    wait_text(
        &bob,
        ".message.own .reaction",
        "alice's reaction gone",
        |t| t == "👍 1",
    )
    .await;
    screenshot(&alice, "changes-alice").await;

    // Alice deletes her message (confirmed inline): a tombstone for bob, and his reply's quote
    // says so.
    click(&alice, ".message.own .delete").await;
    click(&alice, ".message.own .confirm-delete").await;
    wait_text(&bob, ".message .tombstone", "the tombstone", |t| {
        t == "message deleted"
    })
    .await;
    wait_text(&bob, ".message .quote", "a deleted quote", |t| {
        t == "deleted message"
    })
    .await;
    assert!(
        bob.find(Locator::Css(".message:not(.own) .actions"))
            .await
            .is_err(),
        "a tombstone has no actions"
    );
    screenshot(&bob, "changes-bob").await;
    alice.close().await.unwrap();
    bob.close().await.unwrap();
}

#[tokio::test]
async fn the_unread_badge_clears_on_a_second_browser_of_the_same_user() {
    let (_redis, node_a, node_b) = two_nodes().await;
    let driver = Driver::start().await;
    let first = driver.browser().await;
    let second = driver.browser().await;
    for (page, node) in [(&first, &node_a), (&second, &node_b)] {
        open_as(page, node, "alice").await;
        join_room(page, "side").await;
        wait_text(page, "h1", "#side", |t| t == "#side").await;
        wait_text(page, "#members", "joined", |t| t.contains("alice")).await;
        click(page, ".room-tab[data-room=general]").await;
        wait_text(page, "h1", "#general", |t| t == "#general").await;
    }

    let mut bob = skat_client::Client::connect(&node_a.url, "bob")
        .await
        .unwrap();
    common::join(&mut bob, "side").await;
    bob.send_message("side", "psst", None).await.unwrap();
    let badge = ".room-tab[data-room=side] .unread";
    for page in [&first, &second] {
        wait_text(page, badge, "one unread", |t| t == "1").await;
    }

    // The first browser opens the room: it reads it, and the server tells the second.
    click(&first, ".room-tab[data-room=side]").await;
    wait_messages(&first, "the room", |m| m == ["psst"]).await;
    wait_gone(&first, badge, "no badge where it is read").await;
    wait_gone(&second, badge, "the badge cleared on the other browser").await;
    // It shows the divider before what was new, for the first browser.
    wait_text(&first, ".divider", "the divider", |t| {
        t.eq_ignore_ascii_case("new messages")
    })
    .await;
    first.close().await.unwrap();
    second.close().await.unwrap();
}
