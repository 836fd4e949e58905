//! The web app end to end: two headless Chromium sessions, driven over WebDriver, on two server
//! nodes sharing one test Redis.
//!
//! Needs the bundle built by `just web` (in `target/web`), `chromedriver` and `chromium` (both
//! installed by `just setup`); `just test` runs it. Screenshots land in `target/e2e/`.

#![allow(clippy::unwrap_used, clippy::result_large_err)]

// The helpers of `it`; this binary uses a few of them.
mod changes;
#[allow(dead_code)]
#[path = "../it/common/mod.rs"]
mod common;
mod durable;
mod signed;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::Node;
use common::process::NodeProcess;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use skat_server::ServerConfig;
use skat_testkit::{RedisServer, TempDir};

/// How long the page may take to show an expected state.
const UI_DEADLINE: Duration = Duration::from_secs(20);

/// A node on the Redis at `url` like `Node::redis_with`, with Redis commands allowed seconds
/// rather than half a second: these tests share the machine with browsers and node processes,
/// and a starved Redis answering late is not what they test.
async fn patient_node(url: &str, prefix: &str, config: ServerConfig, stream_len: usize) -> Node {
    let redis = patient_redis_config(url, prefix, &config.node_id, stream_len);
    let broker = skat_broker::RedisBroker::connect(redis).await.unwrap();
    Node::start_with(Arc::new(broker), config).await
}

/// `common::redis_config` with a command timeout of seconds (see [`patient_node`]).
fn patient_redis_config(
    url: &str,
    prefix: &str,
    node_id: &str,
    stream_len: usize,
) -> skat_broker::RedisConfig {
    skat_broker::RedisConfig {
        command_timeout: Duration::from_secs(5),
        ..common::redis_config(url, prefix, node_id, stream_len)
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The web bundle built by `just web`.
fn bundle() -> PathBuf {
    let dir = workspace_root().join("target/web");
    let has_wasm = std::fs::read_dir(&dir).is_ok_and(|files| {
        files
            .flatten()
            .any(|f| f.file_name().to_string_lossy().ends_with(".wasm"))
    });
    assert!(
        dir.join("index.html").exists() && has_wasm,
        "no web bundle in {}: run `just web` (or `just test`) first",
        dir.display()
    );
    dir
}

/// A chromedriver process on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let port = skat_testkit::free_port().unwrap();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run chromedriver: run `just setup`");
        let deadline = tokio::time::Instant::now() + UI_DEADLINE;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A new headless browser session.
    async fn browser(&self) -> Client {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1100,700",
        ];
        let caps = json!({ "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args } });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `probe` until it returns `Ok`, failing with its last `Err` (what the page showed)
/// after [`UI_DEADLINE`].
async fn eventually<T, Fut>(what: &str, mut probe: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + UI_DEADLINE;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                tokio::time::Instant::now() < deadline,
                "expected {what}; saw {seen}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the text of the first element matching `css` satisfies `check`.
async fn wait_text(page: &Client, css: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    eventually(&format!("{what} in {css}"), || async {
        let text = match page.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => return Err("no such element".to_owned()),
        };
        if check(&text) {
            Ok(text)
        } else {
            Err(format!("{text:?}"))
        }
    })
    .await
}

/// The bodies of the messages shown, in order.
async fn bodies(page: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for element in page
        .find_all(Locator::Css(".message:not(.pending) .body"))
        .await
        .unwrap()
    {
        out.push(element.text().await.unwrap());
    }
    out
}

/// Waits until the message list satisfies `check`.
async fn wait_messages(
    page: &Client,
    what: &str,
    check: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    eventually(what, || async {
        let shown = bodies(page).await;
        if check(&shown) {
            Ok(shown)
        } else {
            Err(format!("{shown:?}"))
        }
    })
    .await
}

/// Opens the app on `node`, picks `name`, and waits until connected.
async fn open_as(page: &Client, node: &Node, name: &str) {
    open_at(page, node.addr, name).await;
}

/// Opens the app served at `addr`, picks `name`, and waits until connected.
async fn open_at(page: &Client, addr: SocketAddr, name: &str) {
    page.goto(&format!("http://{addr}/")).await.unwrap();
    let input = page
        .wait()
        .at_most(UI_DEADLINE)
        .for_element(Locator::Id("name-input"))
        .await
        .unwrap();
    input.send_keys(name).await.unwrap();
    page.find(Locator::Id("name-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(page, "#status", "Connected", |t| t == "Connected").await;
}

/// Clicks the element `css` finds.
async fn click(page: &Client, css: &str) {
    page.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Types `room` into the sidebar's join form and presses Enter.
async fn join_room(page: &Client, room: &str) {
    page.find(Locator::Id("join-input"))
        .await
        .unwrap()
        .send_keys(&format!("{room}\u{E007}"))
        .await
        .unwrap();
}

/// Types `text` into the composer and presses Enter.
async fn say(page: &Client, text: &str) {
    let composer = page.find(Locator::Id("composer")).await.unwrap();
    composer
        .send_keys(&format!("{text}\u{E007}"))
        .await
        .unwrap();
}

async fn screenshot(page: &Client, name: &str) {
    let dir = workspace_root().join("target/e2e");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{name}.png")),
        page.screenshot().await.unwrap(),
    )
    .unwrap();
}

#[tokio::test]
async fn two_browsers_on_two_nodes_chat_and_survive_a_node_restart() {
    let static_dir = bundle();
    let redis = RedisServer::start().await;
    let config = |id: &str| ServerConfig {
        node_id: id.into(),
        static_dir: Some(static_dir.clone()),
        ..common::test_config()
    };
    let node_a = patient_node(&redis.url(), "e2e:", config("node-a"), 1000).await;
    let node_b = patient_node(&redis.url(), "e2e:", config("node-b"), 1000).await;
    let driver = Driver::start().await;
    let alice = driver.browser().await;
    let bob = driver.browser().await;

    open_as(&alice, &node_a, "alice").await;
    open_as(&bob, &node_b, "bob").await;
    wait_text(&alice, "#node", "node-a", |t| t.contains("node-a")).await;
    wait_text(&bob, "#node", "node-b", |t| t.contains("node-b")).await;
    // Both see each other online, across nodes.
    wait_text(&alice, "#members", "alice and bob", |t| {
        t.contains("alice") && t.contains("bob")
    })
    .await;
    wait_text(&bob, "#members", "alice and bob", |t| {
        t.contains("alice") && t.contains("bob")
    })
    .await;

    // Typing shows up on the other side, then the message does, both ways.
    let composer = alice.find(Locator::Id("composer")).await.unwrap();
    composer.send_keys("hello bob").await.unwrap();
    wait_text(&bob, "#typing", "alice typing", |t| {
        t.contains("alice is typing")
    })
    .await;
    composer.send_keys("\u{E007}").await.unwrap();
    wait_messages(&bob, "alice's message", |m| {
        m.iter().any(|b| b == "hello bob")
    })
    .await;
    say(&bob, "<b>hi</b> alice").await;
    wait_messages(&alice, "bob's reply", |m| {
        m.iter().any(|b| b == "<b>hi</b> alice")
    })
    .await;
    // User text is text: the markup is shown, not rendered.
    assert!(
        alice.find(Locator::Css(".message .body b")).await.is_err(),
        "no HTML injection"
    );
    // Alice's own message is marked as hers, and nothing stays pending.
    let own = alice
        .find(Locator::Css(".message.own:not(.pending) .body"))
        .await
        .unwrap();
    assert_eq!(own.text().await.unwrap(), "hello bob");
    wait_text(&alice, "#typing", "typing notice to expire", str::is_empty).await;

    // Bob reloads: his name is remembered and the history is there.
    bob.refresh().await.unwrap();
    wait_text(&bob, "#status", "Connected", |t| t == "Connected").await;
    wait_messages(&bob, "history after reload", |m| {
        m == ["hello bob", "<b>hi</b> alice"]
    })
    .await;

    // Shift+Enter makes a new line; Enter sends.
    say(&alice, "line one\u{E008}\u{E007}\u{E000}line two").await;
    wait_messages(&bob, "a two-line message", |m| {
        m.iter().any(|b| b == "line one\nline two")
    })
    .await;

    // A second room: unread count on the inactive tab, cleared by switching to it.
    for (page, me) in [(&alice, "alice"), (&bob, "bob")] {
        join_room(page, "random").await;
        wait_text(page, "h1", "#random", |t| t == "#random").await;
        // The member list fills in once the server has confirmed the join.
        wait_text(page, "#members", "own name", |t| t.contains(me)).await;
    }
    alice
        .find(Locator::Css(".room-tab[data-room=general]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&alice, "h1", "#general", |t| t == "#general").await;
    say(&bob, "over here").await;
    wait_text(
        &alice,
        ".room-tab[data-room=random] .unread",
        "one unread",
        |t| t == "1",
    )
    .await;
    alice
        .find(Locator::Css(".room-tab[data-room=random]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_messages(&alice, "the random room", |m| m == ["over here"]).await;
    assert!(
        alice.find(Locator::Css(".unread")).await.is_err(),
        "unread cleared"
    );
    // Leaving: the tab goes away and bob sees alice leave.
    alice
        .find(Locator::Css(".leave[aria-label='Leave random']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&alice, "h1", "#general", |t| t == "#general").await;
    wait_text(&bob, "#members", "alice gone from random", |t| {
        !t.contains("alice")
    })
    .await;
    bob.find(Locator::Css(".room-tab[data-room=general]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // Alice's node restarts; her page reconnects by itself and gets what was said meanwhile.
    let addr: SocketAddr = node_a.addr;
    node_a.stop().await.unwrap();
    wait_text(&alice, "#status", "reconnecting", |t| {
        t.starts_with("Reconnecting")
    })
    .await;
    say(&bob, "while you were away").await;
    wait_messages(&bob, "bob's own message", |m| {
        m.iter().any(|b| b == "while you were away")
    })
    .await;
    let broker = skat_broker::RedisBroker::connect(patient_redis_config(
        &redis.url(),
        "e2e:",
        "node-a",
        1000,
    ))
    .await
    .unwrap();
    let node_a = Node::start_on(addr, std::sync::Arc::new(broker), config("node-a")).await;
    wait_text(&alice, "#status", "Connected again", |t| t == "Connected").await;
    let shown = wait_messages(&alice, "the missed message", |m| {
        m.iter().any(|b| b == "while you were away")
    })
    .await;
    assert_eq!(
        shown,
        [
            "hello bob",
            "<b>hi</b> alice",
            "line one\nline two",
            "while you were away"
        ],
        "nothing lost or duplicated"
    );
    say(&alice, "back").await;
    wait_messages(&bob, "alice is back", |m| {
        m.last().is_some_and(|b| b == "back")
    })
    .await;

    // A long room: the latest 50 messages first, then "Load older" pages back.
    let mut bot = skat_client::Client::connect(&node_b.url, "bot")
        .await
        .unwrap();
    common::join(&mut bot, "archive").await;
    for i in 0..60 {
        bot.send_message("archive", &format!("archived {i}"), None)
            .await
            .unwrap();
        common::message(&mut bot).await;
    }
    join_room(&alice, "archive").await;
    let page = wait_messages(&alice, "the latest page", |m| m.len() == 50).await;
    assert_eq!(page.first().map(String::as_str), Some("archived 10"));
    alice
        .find(Locator::Id("load-older"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let all = wait_messages(&alice, "all 60 messages", |m| m.len() == 60).await;
    assert_eq!(all.first().map(String::as_str), Some("archived 0"));
    assert!(
        alice.find(Locator::Id("load-older")).await.is_err(),
        "nothing older left"
    );
    alice
        .find(Locator::Css(".room-tab[data-room=general]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    screenshot(&alice, "alice").await;
    screenshot(&bob, "bob").await;
    // Phone width: one column, still usable.
    bob.set_window_size(390, 760).await.unwrap();
    wait_text(&bob, "#status", "Connected", |t| t == "Connected").await;
    assert!(
        bob.find(Locator::Id("composer"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap()
    );
    screenshot(&bob, "bob-phone").await;
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    drop((node_a, node_b));
}

#[tokio::test]
async fn a_signed_identity_from_the_fragment_connects_and_leaves_the_address_bar() {
    let secret = skat_server::auth::JwtSecret::new("an-e2e-secret-of-enough-bytes").unwrap();
    let config = ServerConfig {
        node_id: "signed".into(),
        static_dir: Some(bundle()),
        jwt_secret: Some(secret.clone()),
        ..common::test_config()
    };
    let node = Node::start_with(
        std::sync::Arc::new(skat_broker::MemoryBroker::default()),
        config,
    )
    .await;
    let token =
        skat_server::auth::mint_token(&secret, "carol", Duration::from_secs(600), None).unwrap();
    let driver = Driver::start().await;
    let page = driver.browser().await;
    page.goto(&format!("http://{}/#name=carol&token={token}", node.addr))
        .await
        .unwrap();
    // Signed mode refuses a hello without a valid token: connecting proves it was sent.
    wait_text(&page, "#status", "Connected", |t| t == "Connected").await;
    let url = page.current_url().await.unwrap();
    assert!(!url.as_str().contains("token"), "token left in {url}");
    assert!(url.as_str().ends_with("#name=carol"), "{url}");
    // The page names an icon that exists (browsers otherwise log a 404 on every load).
    let status = page
        .execute_async(
            "const done = arguments[0]; \
             const icon = document.querySelector('link[rel=icon]'); \
             if (!icon) { done(0); } else { fetch(icon.href).then(r => done(r.status)); }",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(200), "favicon");
    page.close().await.unwrap();
}

#[tokio::test]
async fn a_send_cut_off_by_a_crash_is_resent_and_appears_once() {
    let static_dir = bundle();
    let static_env = static_dir.to_string_lossy().into_owned();
    let extra = [("SKAT_STATIC_DIR", static_env.as_str())];
    let redis = RedisServer::start().await;
    let logs = TempDir::new("e2e-resend").unwrap();
    let addr = common::free_addr();
    let mut node_a =
        NodeProcess::spawn_with("resend-a", addr, &redis.url(), logs.path(), &extra).await;
    // Bob listens on another node; the process uses the default key prefix.
    let config = ServerConfig {
        node_id: "resend-b".into(),
        ..common::test_config()
    };
    let node_b = patient_node(&redis.url(), "skat:", config, 1000).await;
    let mut bob = skat_client::Client::connect(&node_b.url, "bob")
        .await
        .unwrap();
    common::join(&mut bob, "general").await;

    let driver = Driver::start().await;
    let alice = driver.browser().await;
    open_at(&alice, addr, "alice").await;
    wait_text(&alice, "#members", "alice joined", |t| t.contains("alice")).await;

    // Redis holds every write back, so alice's send gets no echo; then her node crashes.
    let paused = redis.command(&["CLIENT", "PAUSE", "10000", "WRITE"]).await;
    assert_eq!(paused.as_deref(), Some("+OK\r\n"));
    say(&alice, "exactly once").await;
    wait_text(&alice, ".message.pending .time", "sending…", |t| {
        t.contains("sending")
    })
    .await;
    node_a.kill();
    wait_text(&alice, "#status", "reconnecting", |t| {
        t.starts_with("Reconnecting")
    })
    .await;
    let resumed = redis.command(&["CLIENT", "UNPAUSE"]).await;
    assert_eq!(resumed.as_deref(), Some("+OK\r\n"));
    let _node_a =
        NodeProcess::spawn_with("resend-a2", addr, &redis.url(), logs.path(), &extra).await;

    // The page reconnects by itself and re-sends with the same nonce: shown once, not pending.
    wait_text(&alice, "#status", "Connected again", |t| t == "Connected").await;
    wait_messages(&alice, "the message, once", |m| {
        m.iter().filter(|b| *b == "exactly once").count() == 1
    })
    .await;
    eventually("nothing left pending", || async {
        match alice.find_all(Locator::Css(".message.pending")).await {
            Ok(left) if left.is_empty() => Ok(()),
            Ok(left) => Err(format!("{} pending", left.len())),
            Err(err) => Err(err.to_string()),
        }
    })
    .await;
    // And the room got it once.
    bob.send_message("general", "marker", None).await.unwrap();
    let mut seen = 0;
    loop {
        let m = common::message(&mut bob).await;
        if m.body == "marker" {
            break;
        }
        seen += usize::from(m.body == "exactly once");
    }
    assert_eq!(seen, 1, "bob got it {seen} times");
    alice.close().await.unwrap();
}
