//! The web app end to end: two headless Chromium sessions, driven over WebDriver, on two server
//! nodes sharing one test Redis.
//!
//! Needs the bundle built by `just web` (in `target/web`), `chromedriver` and `chromium` (both
//! installed by `just setup`); `just test` runs it. Screenshots land in `target/e2e/`.

#![allow(clippy::unwrap_used, clippy::result_large_err)]

mod common;

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
use skat_testkit::RedisServer;

/// How long the page may take to show an expected state.
const UI_DEADLINE: Duration = Duration::from_secs(20);

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
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
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
    let node_a = Node::redis_with(&redis.url(), "e2e:", config("node-a"), 1000).await;
    let node_b = Node::redis_with(&redis.url(), "e2e:", config("node-b"), 1000).await;
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
        page.find(Locator::Id("join-input"))
            .await
            .unwrap()
            .send_keys("random\u{E007}")
            .await
            .unwrap();
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
    let broker = skat_broker::RedisBroker::connect(common::redis_config(
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
    alice
        .find(Locator::Id("join-input"))
        .await
        .unwrap()
        .send_keys("archive\u{E007}")
        .await
        .unwrap();
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
    let logs = std::env::temp_dir().join(format!("skat-e2e-resend-{}", std::process::id()));
    std::fs::create_dir_all(&logs).unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut node_a = NodeProcess::spawn_with("resend-a", addr, &redis.url(), &logs, &extra).await;
    // Bob listens on another node; the process uses the default key prefix.
    let config = ServerConfig {
        node_id: "resend-b".into(),
        ..common::test_config()
    };
    let node_b = Node::redis_with(&redis.url(), "skat:", config, 1000).await;
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
    let _node_a = NodeProcess::spawn_with("resend-a2", addr, &redis.url(), &logs, &extra).await;

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
    let _ = std::fs::remove_dir_all(&logs);
}

/// The secret of the signed-mode tests.
const SECRET: &str = "an-e2e-secret-of-enough-bytes";

/// The server API key of the signed-mode tests.
const API_KEY: &str = "an-e2e-api-key-of-enough-bytes";

/// A signed-mode node with the embedded broker and the server API, serving the bundle.
async fn signed_node(id: &str) -> (Node, skat_server::auth::JwtSecret) {
    let secret = skat_server::auth::JwtSecret::new(SECRET).unwrap();
    let config = ServerConfig {
        node_id: id.into(),
        static_dir: Some(bundle()),
        jwt_secret: Some(secret.clone()),
        api_key: Some(skat_server::api::ApiKey::new(API_KEY).unwrap()),
        ..common::test_config()
    };
    let node = Node::start_with(Arc::new(skat_broker::MemoryBroker::default()), config).await;
    (node, secret)
}

/// A token for `name`, valid `ttl`, with no rooms claim.
fn token(secret: &skat_server::auth::JwtSecret, name: &str, ttl: Duration) -> String {
    skat_server::auth::mint_token(secret, name, ttl, None).unwrap()
}

/// Opens the app on `node` signed in as `name` with `token` (and `extra` fragment parameters),
/// and waits until connected.
async fn open_signed(page: &Client, node: &Node, name: &str, token: &str, extra: &str) {
    page.goto(&format!(
        "http://{}/#name={name}&token={token}{extra}",
        node.addr
    ))
    .await
    .unwrap();
    wait_text(page, "#status", "Connected", |t| t == "Connected").await;
}

/// Clicks the element `css` finds.
async fn click(page: &Client, css: &str) {
    page.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_direct_message_opens_from_the_member_list() {
    let (node, secret) = signed_node("dm").await;
    let dm = skat_protocol::dm_room("alice", "bob").unwrap();
    let bob_token = token(&secret, "bob", Duration::from_secs(600));
    let mut bob = skat_client::Client::connect_signed(&node.url, "bob", &bob_token)
        .await
        .unwrap();
    common::join(&mut bob, "general").await;
    common::join(&mut bob, &dm).await;

    let driver = Driver::start().await;
    let alice = driver.browser().await;
    let alice_token = token(&secret, "alice", Duration::from_secs(600));
    open_signed(&alice, &node, "alice", &alice_token, "").await;
    wait_text(&alice, "#members", "bob online", |t| t.contains("bob")).await;
    // No button to message oneself.
    assert!(
        alice
            .find(Locator::Css("#members .dm[aria-label='Message alice']"))
            .await
            .is_err()
    );
    click(&alice, "#members .dm[aria-label='Message bob']").await;
    // The DM room is shown by the other user's name, in the header and the sidebar.
    wait_text(&alice, "h1", "@bob", |t| t == "@bob").await;
    let tab = format!(".room-tab[data-room={dm}]");
    wait_text(&alice, &tab, "the @bob tab", |t| t.starts_with("@bob")).await;
    wait_text(&alice, "#members", "alice in the DM", |t| {
        t.contains("alice")
    })
    .await;
    say(&alice, "just between us").await;
    let m = common::message(&mut bob).await;
    assert_eq!((m.room.as_str(), m.from.as_str()), (dm.as_str(), "alice"));
    assert_eq!(m.body, "just between us");
    bob.send_message(&dm, "sure", None).await.unwrap();
    wait_messages(&alice, "bob's answer", |m| m == ["just between us", "sure"]).await;
    // Nothing of it in #general.
    click(&alice, ".room-tab[data-room=general]").await;
    wait_text(&alice, "h1", "#general", |t| t == "#general").await;
    wait_messages(&alice, "an empty #general", <[String]>::is_empty).await;
    screenshot(&alice, "alice-dm").await;
    alice.close().await.unwrap();
}

#[tokio::test]
async fn a_refused_private_room_is_shown_clearly() {
    let (node, secret) = signed_node("refused").await;
    let driver = Driver::start().await;
    let page = driver.browser().await;
    let token = token(&secret, "alice", Duration::from_secs(600));
    open_signed(&page, &node, "alice", &token, "").await;
    page.find(Locator::Id("join-input"))
        .await
        .unwrap()
        .send_keys("private-ops\u{E007}")
        .await
        .unwrap();
    let shown = wait_text(&page, "#refused", "the refusal", |t| {
        t.starts_with("You don't have access to #private-ops")
    })
    .await;
    assert!(shown.contains("not in your token's rooms"), "{shown}");
    // The tab says so too; the room is not usable, and the connection is fine.
    wait_text(
        &page,
        ".room-tab[data-room=private-ops]",
        "no access",
        |t| t.contains("no access"),
    )
    .await;
    assert!(page.find(Locator::Id("composer")).await.is_err());
    wait_text(&page, "#status", "Connected", |t| t == "Connected").await;
    screenshot(&page, "refused").await;
    // Closing it sends nothing the server would refuse (no leave of an unjoined room).
    click(&page, "#refused ~ .close").await;
    wait_text(&page, "h1", "#general", |t| t == "#general").await;
    assert!(page.find(Locator::Css(".notice")).await.is_err());
    assert!(
        page.find(Locator::Css(".room-tab[data-room=private-ops]"))
            .await
            .is_err()
    );
    page.close().await.unwrap();
}

/// An application's token endpoint: `GET /token` answers `{"token": ...}` for `name`, valid
/// `ttl`, to the node's origin with credentials (CORS), or 503 while it is refusing. Counts its
/// calls.
struct TokenServer {
    url: String,
    calls: Arc<AtomicUsize>,
    refusing: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl TokenServer {
    async fn start(
        secret: skat_server::auth::JwtSecret,
        name: &str,
        ttl: Duration,
        origin: String,
    ) -> TokenServer {
        use axum::http::{StatusCode, header};
        let calls = Arc::new(AtomicUsize::new(0));
        let refusing = Arc::new(AtomicBool::new(false));
        let (counter, refuse, name) = (calls.clone(), refusing.clone(), name.to_owned());
        let handler = move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let (status, body) = if refuse.load(Ordering::SeqCst) {
                (StatusCode::SERVICE_UNAVAILABLE, String::new())
            } else {
                let token = token(&secret, &name, ttl);
                (StatusCode::OK, json!({ "token": token }).to_string())
            };
            let headers = [
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()),
                (header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true".to_owned()),
                (header::CONTENT_TYPE, "application/json".to_owned()),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ];
            std::future::ready((status, headers, body))
        };
        let app = axum::Router::new().route("/token", axum::routing::get(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TokenServer {
            url: format!("http://{addr}/token"),
            calls,
            refusing,
            task,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Answers 503 (`true`) or tokens (`false`) from now on.
    fn refuse(&self, refusing: bool) {
        self.refusing.store(refusing, Ordering::SeqCst);
    }

    /// `&token_url=...` for the page's fragment.
    fn fragment(&self) -> String {
        let encoded = self.url.replace(':', "%3A").replace('/', "%2F");
        format!("&token_url={encoded}")
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Unix time in seconds.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A counter of the node's metrics, e.g. `skat_connections_opened_total`, 0 if absent.
async fn metric(node: &Node, series: &str) -> u64 {
    let metrics = common::http::request(node.addr, "GET", "/metrics", "", "")
        .await
        .text();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

const OPENED: &str = "skat_connections_opened_total";
const EXPIRED: &str = "skat_connections_closed_total{reason=\"token_expired\"}";

#[tokio::test]
async fn a_page_refreshes_its_token_and_stays_connected_past_its_expiry() {
    let (node, secret) = signed_node("refresh").await;
    let origin = format!("http://{}", node.addr);
    let tokens = TokenServer::start(secret.clone(), "dave", Duration::from_secs(8), origin).await;
    let driver = Driver::start().await;
    let dave = driver.browser().await;
    let carol = driver.browser().await;

    // Dave's first token lasts 6 s; the page refreshes it from the token URL before then.
    let first_exp = unix_now() + 6;
    let first = token(&secret, "dave", Duration::from_secs(6));
    open_signed(&dave, &node, "dave", &first, &tokens.fragment()).await;
    let url = dave.current_url().await.unwrap();
    assert!(!url.as_str().contains("token="), "token left in {url}");
    assert!(url.as_str().contains("token_url="), "token URL kept: {url}");
    // Carol has no token URL: her 5 s token runs out, and the page says the session expired.
    let short = token(&secret, "carol", Duration::from_secs(5));
    open_signed(&carol, &node, "carol", &short, "").await;

    // Dave's refreshes (of the first token, then of the fresh ones) take him past the first
    // token's expiry and the server's leeway after it.
    let cut_off = first_exp + skat_server::auth::LEEWAY_SECS;
    eventually("refreshes past the first token's expiry", || async {
        let calls = tokens.calls();
        if calls >= 2 && unix_now() > cut_off {
            Ok(())
        } else {
            let left = cut_off.saturating_sub(unix_now());
            Err(format!("{calls} fetches, {left} s to go"))
        }
    })
    .await;
    wait_text(&carol, "#status", "the session expired", |t| {
        t.starts_with("Your session expired")
    })
    .await;
    say(&dave, "still here").await;
    wait_messages(&dave, "the message, confirmed", |m| m == ["still here"]).await;
    assert!(dave.find(Locator::Css(".message.pending")).await.is_err());
    wait_text(&dave, "#status", "Connected", |t| t == "Connected").await;
    // Neither page reconnected: the node accepted exactly their two WebSockets, and closed
    // carol's alone for expiry.
    assert_eq!(metric(&node, OPENED).await, 2);
    assert_eq!(metric(&node, EXPIRED).await, 1);
    dave.close().await.unwrap();
    carol.close().await.unwrap();
}

#[tokio::test]
async fn an_expired_token_is_fetched_again_and_the_page_reconnects() {
    let (node, secret) = signed_node("expired").await;
    let origin = format!("http://{}", node.addr);
    let tokens = TokenServer::start(secret.clone(), "erin", Duration::from_secs(600), origin).await;
    // The token URL is down, so the refreshes fail and the token expires (close 4001).
    tokens.refuse(true);
    let driver = Driver::start().await;
    let page = driver.browser().await;
    let first = token(&secret, "erin", Duration::from_secs(6));
    open_signed(&page, &node, "erin", &first, &tokens.fragment()).await;
    wait_text(&page, ".notice", "the failed refresh", |t| {
        t.contains("Could not get a fresh token: the token URL answered 503")
    })
    .await;
    wait_text(&page, "#status", "reconnecting", |t| {
        t.starts_with("Reconnecting")
    })
    .await;
    assert_eq!(metric(&node, EXPIRED).await, 1);
    // Back up: the page gets a token and reconnects by itself.
    tokens.refuse(false);
    wait_text(&page, "#status", "Connected again", |t| t == "Connected").await;
    assert_eq!(metric(&node, OPENED).await, 2);
    say(&page, "back with a fresh token").await;
    wait_messages(&page, "the message, confirmed", |m| {
        m == ["back with a fresh token"]
    })
    .await;
    page.close().await.unwrap();
}

/// `POST /api/v1{path}` with `body`, as the application's backend; the status.
async fn api_post(node: &Node, path: &str, body: &serde_json::Value) -> u16 {
    let auth = format!("Authorization: Bearer {API_KEY}\r\n");
    let path = format!("/api/v1{path}");
    common::http::request(node.addr, "POST", &path, &auth, &body.to_string())
        .await
        .status()
}

#[tokio::test]
async fn the_application_posts_as_the_system_and_disconnects_a_page() {
    let (node, secret) = signed_node("api").await;
    let driver = Driver::start().await;
    let page = driver.browser().await;
    let token = token(&secret, "frank", Duration::from_secs(600));
    open_signed(&page, &node, "frank", &token, "").await;
    wait_text(&page, "#members", "frank joined", |t| t.contains("frank")).await;

    // A message from the system is set apart.
    let notice = json!({"body": "Maintenance at noon"});
    assert_eq!(
        api_post(&node, "/rooms/general/messages", &notice).await,
        201
    );
    wait_text(&page, ".message.system", "the system message", |t| {
        t.starts_with("system") && t.contains("Maintenance at noon")
    })
    .await;

    // Disconnected by the application: the reason is shown, and the page stays disconnected.
    let reason = json!({"reason": "Your account was suspended"});
    assert_eq!(
        api_post(&node, "/users/frank/disconnect", &reason).await,
        204
    );
    wait_text(&page, "#status", "the disconnection", |t| {
        t == "Disconnected: Your account was suspended"
    })
    .await;
    screenshot(&page, "disconnected").await;
    // No reconnection follows: a first retry would come within half a second.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(metric(&node, OPENED).await, 1);
    wait_text(&page, "#status", "still disconnected", |t| {
        t.starts_with("Disconnected")
    })
    .await;
    page.close().await.unwrap();
}
