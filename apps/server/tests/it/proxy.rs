//! Two nodes behind nginx with the repository's own configuration (`deploy/nginx/skat.conf`):
//! chat through one public port reaches both nodes, the per-address limit counts the address
//! nginx forwards, and the origin check holds through the proxy.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{DEADLINE, Node, free_addr, join, message};
use skat_client::Client;
use skat_server::{Limits, ServerConfig};
use skat_testkit::RedisServer;

/// nginx's binary, installed from apt if missing (CI runs as root on Debian).
fn nginx_binary() -> PathBuf {
    let find = || {
        ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .map(PathBuf::from)
            .find(|path| path.exists())
    };
    if let Some(path) = find() {
        return path;
    }
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-qq", "nginx"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status();
    assert!(
        installed.is_ok_and(|s| s.success()),
        "nginx is missing and apt-get could not install it: run `just setup`"
    );
    find().expect("nginx installed")
}

/// nginx serving `deploy/nginx/skat.conf` on `listen`, proxying to `nodes`; killed on drop.
struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    async fn start(listen: SocketAddr, nodes: [SocketAddr; 2]) -> Nginx {
        let dir = std::env::temp_dir().join(format!("skat-nginx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nginx/skat.conf");
        let site = std::fs::read_to_string(shipped).unwrap();
        let site = site
            .replace("listen 80;", &format!("listen {listen};"))
            .replace("server 127.0.0.1:3001;", &format!("server {};", nodes[0]))
            .replace("server 127.0.0.1:3002;", &format!("server {};", nodes[1]));
        std::fs::write(dir.join("skat.conf"), site).unwrap();
        // The main configuration an operator's nginx.conf stands for: ours keeps every file in
        // `dir`, and workers run as the master's user.
        let d = dir.display();
        let main = format!(
            "user root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  \
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             include {d}/skat.conf;\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), main).unwrap();
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let nginx = Nginx { child, dir };
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while tokio::net::TcpStream::connect(listen).await.is_err() {
            let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
            assert!(
                tokio::time::Instant::now() < deadline,
                "nginx did not start: {log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        nginx
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A WebSocket handshake through `proxy` from local address `from`, with an `Origin` if given;
/// returns the response's status code.
async fn handshake(proxy: SocketAddr, from: &str, origin: Option<&str>) -> u16 {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    common::http::upgrade(proxy, from, &origin).await.0
}

#[tokio::test]
async fn two_nodes_behind_nginx_chat_and_see_forwarded_addresses() {
    let redis = RedisServer::start().await;
    let config = |id: &str| ServerConfig {
        node_id: id.to_owned(),
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        limits: Limits {
            max_conns_per_ip: 1,
            messages_per_sec: 0,
            ..Default::default()
        },
        ..ServerConfig::default()
    };
    let a = Node::redis_with(&redis.url(), "proxy:", config("node-a"), 100).await;
    let b = Node::redis_with(&redis.url(), "proxy:", config("node-b"), 100).await;
    let public = free_addr();
    let _nginx = Nginx::start(public, [a.addr, b.addr]).await;
    let url = format!("ws://{public}/ws");

    // One public port, both nodes: nginx alternates, and the rooms are shared.
    let mut alice = Client::connect(&url, "alice").await.unwrap();
    let mut bob = Client::connect(&url, "bob").await.unwrap();
    let mut nodes = [alice.node().unwrap(), bob.node().unwrap()];
    nodes.sort_unstable();
    assert_eq!(nodes, ["node-a", "node-b"], "one client on each node");
    join(&mut alice, "general").await;
    join(&mut bob, "general").await;
    alice
        .send_message("general", "via nginx", None)
        .await
        .unwrap();
    assert_eq!(message(&mut bob).await.body, "via nginx");

    // Every connection's TCP peer is nginx (127.0.0.1), but the limit of one per address
    // counts the forwarded client address: Alice and Bob hold 127.0.0.1's one on each node, so
    // another from there is refused, while other addresses still get in.
    assert_eq!(
        handshake(public, "127.0.0.1", None).await,
        429,
        "over its limit"
    );
    for _ in 0..2 {
        assert_eq!(
            handshake(public, "127.0.0.2", None).await,
            101,
            "another address"
        );
    }

    // The origin check sees the public Host through the proxy.
    let same = format!("http://{public}");
    assert_eq!(handshake(public, "127.0.0.3", Some(&same)).await, 101);
    assert_eq!(
        handshake(public, "127.0.0.3", Some("http://evil.example")).await,
        403
    );
}
