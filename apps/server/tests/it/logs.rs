//! The binary's log lines: JSON for shippers, plain text off a terminal, and every line of a
//! connection in the node's and the connection's spans.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use skat_client::Client;

/// A `skat-server` on a free port whose stdout lines arrive on a channel; killed on drop.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Server {
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_skat-server"))
            .args(args)
            .env("SKAT_BIND", "127.0.0.1:0")
            .env_remove("SKAT_REDIS_URL")
            .env_remove("SKAT_JWT_SECRET")
            .env_remove("SKAT_DATA_DIR")
            .env_remove("NO_COLOR")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Server { child, lines }
    }

    /// The next line for which `pick` returns something, failing after 10 s.
    fn wait_for<T>(&self, what: &str, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line with {what} within 10 s"));
            if let Some(found) = pick(&line) {
                return found;
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn json_lines_carry_the_node_and_the_connection() {
    let server = Server::start(
        &["--log-format", "json", "--node-id", "log-node"],
        &[("RUST_LOG", "skat_server=debug")],
    );
    let addr = server.wait_for("the listening address", |line| {
        let line: Value = serde_json::from_str(line).expect("every line is a JSON object");
        (line["fields"]["message"] == "listening").then(|| {
            assert_eq!(line["spans"][0]["name"], "node");
            assert_eq!(line["spans"][0]["id"], "log-node");
            line["fields"]["addr"].as_str().unwrap().to_owned()
        })
    });
    let mut alice = Client::connect(&format!("ws://{addr}/ws"), "alice")
        .await
        .unwrap();
    alice.join("general").await.unwrap();
    let spans = server.wait_for("the hello of alice", |line| {
        let line: Value = serde_json::from_str(line).unwrap();
        (line["fields"]["message"] == "hello").then(|| line["spans"].clone())
    });
    assert_eq!(spans[0]["id"], "log-node", "{spans}");
    assert_eq!(spans[1]["name"], "conn", "{spans}");
    assert_eq!(spans[1]["user"], "alice", "{spans}");
    assert_eq!(spans[1]["peer"], "127.0.0.1", "{spans}");
}

#[tokio::test]
async fn text_lines_have_no_colors_off_a_terminal() {
    let server = Server::start(&["--node-id", "plain-node"], &[]);
    let line = server.wait_for("listening", |line| {
        line.contains("listening").then(|| line.to_owned())
    });
    assert!(
        !line.contains('\u{1b}'),
        "no ANSI escapes in a pipe: {line:?}"
    );
    assert!(line.contains("node{id=plain-node}"), "{line}");
}

/// The lines a node logs before `listening` that say history is in memory only.
fn memory_only_warnings(args: &[&str]) -> usize {
    let server = Server::start(args, &[]);
    let mut warnings = 0;
    server.wait_for("listening", |line| {
        warnings += usize::from(line.contains("history is kept in memory only"));
        line.contains("listening").then_some(())
    });
    warnings
}

#[tokio::test]
async fn without_a_data_dir_the_node_says_once_that_history_is_in_memory_only() {
    assert_eq!(memory_only_warnings(&["--node-id", "memory-node"]), 1);
    let data = skat_testkit::TempDir::new("logs-data").unwrap();
    let data = data.path().to_str().unwrap();
    assert_eq!(
        memory_only_warnings(&["--node-id", "durable-node", "--data-dir", data]),
        0
    );
}
