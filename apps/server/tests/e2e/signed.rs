//! Signed mode in the browser: direct messages from the member list, refused rooms, tokens
//! refreshed from the application's token URL, and what the server API does to a page.

use super::*;

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
        api_key: Some(skat_server::auth::ApiKey::new(API_KEY).unwrap()),
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
    join_room(&page, "private-ops").await;
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

/// A copy of the bundle in `target/e2e/<name>`, for a test to change.
fn bundle_copy(name: &str) -> PathBuf {
    let dir = workspace_root().join("target/e2e").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for file in std::fs::read_dir(bundle()).unwrap() {
        let file = file.unwrap();
        std::fs::copy(file.path(), dir.join(file.file_name())).unwrap();
    }
    dir
}

/// Makes the `index.html` in `dir` name `token_url` in `<meta name="skat-token-url">`, as an
/// operator sets it, and removes its precompressed copies, which the node would serve first.
fn set_meta_token_url(dir: &Path, token_url: &str) {
    let index = dir.join("index.html");
    let html = std::fs::read_to_string(&index).unwrap();
    let meta = format!("<meta name=\"skat-token-url\" content=\"{token_url}\">");
    let html = html.replacen("<head>", &format!("<head>\n  {meta}"), 1);
    std::fs::write(&index, html).unwrap();
    std::fs::remove_file(dir.join("index.html.gz")).unwrap();
    std::fs::remove_file(dir.join("index.html.br")).unwrap();
}

/// A link crafted by mallory (his name, his token, his token URL in the fragment) opens a page
/// whose operator set `<meta name="skat-token-url">`: the page ignores the link's token and
/// token URL, fetches from the operator's URL (with the visitor's cookies), and signs in as the
/// visitor, grace, not as mallory.
#[tokio::test]
async fn a_links_token_does_not_override_the_operators_token_url() {
    let secret = skat_server::auth::JwtSecret::new(SECRET).unwrap();
    let static_dir = bundle_copy("meta-token-url");
    let config = ServerConfig {
        node_id: "meta".into(),
        static_dir: Some(static_dir.clone()),
        jwt_secret: Some(secret.clone()),
        ..common::test_config()
    };
    let node = Node::start_with(Arc::new(skat_broker::MemoryBroker::default()), config).await;
    // The token URLs answer the node's origin, which is known now; the node reads its files
    // from disk on each request, so the page it serves names the visitor's token URL.
    let origin = format!("http://{}", node.addr);
    let ttl = Duration::from_secs(600);
    let visitors = TokenServer::start(secret.clone(), "grace", ttl, origin.clone()).await;
    let makers = TokenServer::start(secret.clone(), "mallory", ttl, origin).await;
    set_meta_token_url(&static_dir, &visitors.url);
    let bob_token = token(&secret, "bob", ttl);
    let mut bob = skat_client::Client::connect_signed(&node.url, "bob", &bob_token)
        .await
        .unwrap();
    common::join(&mut bob, "general").await;

    let driver = Driver::start().await;
    let page = driver.browser().await;
    let mallory = token(&secret, "mallory", ttl);
    open_signed(&page, &node, "mallory", &mallory, &makers.fragment()).await;
    wait_text(&page, ".me", "signed in as grace", |t| t == "you: grace").await;
    say(&page, "who am I?").await;
    let m = common::message(&mut bob).await;
    assert_eq!((m.from.as_str(), m.body.as_str()), ("grace", "who am I?"));
    assert!(visitors.calls() >= 1, "the operator's token URL was used");
    assert_eq!(makers.calls(), 0, "the link's token URL was not");
    // The link's token still leaves the address bar.
    let url = page.current_url().await.unwrap();
    assert!(!url.as_str().contains("token="), "token left in {url}");
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
