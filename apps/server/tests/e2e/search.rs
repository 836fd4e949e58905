//! The search box, in the browser (issue 23): on a node with a data dir, a search of the shown
//! room lists its matches newest first and closes; on a node without one, the box says the
//! server cannot search.

use std::sync::Arc;

use fantoccini::{Client, Locator};

use super::{Driver, bundle, click, common, eventually, open_as, say, wait_messages, wait_text};
use common::Node;
use skat_broker::MemoryBroker;
use skat_server::ServerConfig;
use skat_testkit::TempDir;

/// Types `q` into the search field and presses Enter.
async fn search(page: &Client, q: &str) {
    page.find(Locator::Id("search-input"))
        .await
        .unwrap()
        .send_keys(&format!("{q}\u{E007}"))
        .await
        .unwrap();
}

/// The bodies of the matches shown.
async fn matches(page: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for element in page
        .find_all(Locator::Css("#search-results li .body"))
        .await
        .unwrap()
    {
        out.push(element.text().await.unwrap());
    }
    out
}

#[tokio::test]
async fn the_search_box_lists_the_room_s_matches() {
    let dir = TempDir::new("e2e-search").unwrap();
    let config = || ServerConfig {
        static_dir: Some(bundle()),
        ..common::test_config()
    };
    let node = Node::durable(dir.path(), config()).await;
    let driver = Driver::start().await;
    let alice = driver.browser().await;
    open_as(&alice, &node, "alice").await;
    for text in ["deploy on friday", "lunch?", "deploy done"] {
        say(&alice, text).await;
    }
    wait_messages(&alice, "her messages", |m| m.len() == 3).await;

    search(&alice, "deploy").await;
    wait_text(&alice, "#search-results", "the matches", |t| {
        t.contains("2 messages hold “deploy”")
    })
    .await;
    assert_eq!(matches(&alice).await, ["deploy done", "deploy on friday"]);
    click(&alice, ".search-close").await;
    eventually("the search closed", || async {
        match alice.find_all(Locator::Id("search-results")).await {
            Ok(found) if found.is_empty() => Ok(()),
            Ok(_) => Err("still open".to_owned()),
            Err(err) => Err(err.to_string()),
        }
    })
    .await;

    // Without a data dir the server cannot search, and the box says so.
    let memory = Node::start_with(Arc::new(MemoryBroker::default()), config()).await;
    let bob = driver.browser().await;
    open_as(&bob, &memory, "bob").await;
    search(&bob, "deploy").await;
    wait_text(&bob, "#search-results", "the refusal", |t| {
        t.contains("does not keep an index")
    })
    .await;
}
