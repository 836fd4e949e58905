//! A data dir that fails, as real processes (issue 23): read-only, corrupt or locked is a clear
//! startup error naming the path and a non-zero exit; a full one answers the send it cannot
//! store `unavailable`, keeps every confirmed message and keeps serving reads. Never a panic.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use skat_client::Client;
use skat_protocol::{ErrorCode, ServerFrame};
use skat_testkit::{Error, Launch, TempDir};

use crate::common::process::{NodeProcess, http_status};
use crate::common::{self, next_where};
use crate::durable::{all_history, assert_increasing, joined, ws_url};

const ROOM: &str = "full";

/// Runs `launch` (logging into `logs`), expecting it to stop by itself: its status and log.
async fn exits(launch: Launch, logs: &Path) -> (ExitStatus, String) {
    let mut process = launch.spawn(logs).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match process.check_alive() {
            Ok(()) => {}
            Err(Error::Exited { status, .. }) => {
                let log = std::fs::read_to_string(process.log_path()).unwrap();
                return (status, log);
            }
            Err(err) => panic!("{err}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} still runs: {}",
            process.name(),
            process.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `skat-server` on a free port with the data dir `data` (run by `program` with `args` before
/// the binary, e.g. `runuser -u nobody --`).
fn node_on(name: &str, data: &Path, wrapper: &[&str]) -> Launch {
    node_of(
        Path::new(env!("CARGO_BIN_EXE_skat-server")),
        name,
        data,
        wrapper,
    )
}

/// [`node_on`] with the binary `bin`.
fn node_of(bin: &Path, name: &str, data: &Path, wrapper: &[&str]) -> Launch {
    let launch = match wrapper.split_first() {
        Some((program, args)) => Launch::new(name, program)
            .args(args.iter().copied())
            .args([bin]),
        None => Launch::new(name, bin),
    };
    launch
        .env("SKAT_BIND", common::free_addr().to_string())
        .env("SKAT_DATA_DIR", data)
        .env("RUST_LOG", "warn")
}

/// Asserts a clear startup failure: non-zero, `words` and the path in the log, no panic.
fn assert_refused((status, log): &(ExitStatus, String), data: &Path, words: &str) {
    assert!(!status.success(), "{status}: {log}");
    assert!(log.contains(words), "no {words:?} in: {log}");
    assert!(
        log.contains(&data.display().to_string()),
        "no path in: {log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test]
async fn a_read_only_data_dir_stops_the_node_with_a_clear_error() {
    let dir = TempDir::new("durable-ro").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root ignores permissions: run the node as a user who has none here, from a copy of the
    // binary `nobody` can reach (the build's target dir may not be traversable by others).
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let bin_dir = TempDir::new("durable-ro-bin").unwrap();
    let (bin, wrapper): (PathBuf, &[&str]) = if root {
        std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = bin_dir.path().join("skat-server");
        std::fs::copy(env!("CARGO_BIN_EXE_skat-server"), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let can_run = Command::new("runuser")
            .args(["-u", "nobody", "--", "test", "-x"])
            .arg(&bin)
            .status()
            .is_ok_and(|s| s.success());
        if !can_run {
            // A pass that tested nothing must be asked for.
            assert!(
                std::env::var_os("SKAT_TEST_ALLOW_SKIP").is_some_and(|v| v == "1"),
                "as root, and cannot run the node as `nobody` (runuser): set \
                 SKAT_TEST_ALLOW_SKIP=1 to skip this test"
            );
            eprintln!("skipped (SKAT_TEST_ALLOW_SKIP=1): cannot run the node as `nobody`");
            return;
        }
        (bin, &["runuser", "-u", "nobody", "--"])
    } else {
        (env!("CARGO_BIN_EXE_skat-server").into(), &[])
    };
    let logs = TempDir::new("durable-ro-logs").unwrap();
    let exit = exits(node_of(&bin, "ro", &data, wrapper), logs.path()).await;
    assert_refused(&exit, &data, "read-only");
}

#[tokio::test]
async fn a_corrupt_database_stops_the_node_with_a_clear_error() {
    let data = TempDir::new("durable-corrupt").unwrap();
    std::fs::write(data.path().join("skat.db"), vec![0xA5_u8; 8192]).unwrap();
    let logs = TempDir::new("durable-corrupt-logs").unwrap();
    let exit = exits(node_on("corrupt", data.path(), &[]), logs.path()).await;
    assert_refused(&exit, data.path(), "corrupt");
}

#[tokio::test]
async fn a_second_node_on_a_data_dir_in_use_stops_with_a_clear_error() {
    let data = TempDir::new("durable-locked").unwrap();
    let logs = TempDir::new("durable-locked-logs").unwrap();
    let first =
        NodeProcess::embedded("first", common::free_addr(), data.path(), logs.path(), &[]).await;
    let exit = exits(node_on("second", data.path(), &[]), logs.path()).await;
    assert_refused(&exit, data.path(), "in use by another node");
    assert_eq!(
        http_status(first.addr, "/readyz").await,
        Some(200),
        "the first serves on"
    );
}

#[tokio::test]
async fn a_full_database_answers_unavailable_and_keeps_what_it_confirmed() {
    let data = TempDir::new("durable-full").unwrap();
    let logs = TempDir::new("durable-full-logs").unwrap();
    let addr = common::free_addr();
    let capped = [("SKAT_DATA_MAX_MB", "1")];
    let mut node = NodeProcess::embedded("full-a", addr, data.path(), logs.path(), &capped).await;
    let url = ws_url(&node);
    let mut alice = Client::connect(&url, "alice").await.unwrap();
    alice.join(ROOM).await.unwrap();
    joined(&mut alice, ROOM).await;

    // One send at a time until one cannot be stored.
    let body = |i: usize| format!("{i:04} {}", "x".repeat(3900));
    let mut confirmed = Vec::new();
    let mut refused = None;
    for i in 0..2000 {
        let nonce = format!("n{i}");
        alice
            .send_message(ROOM, &body(i), Some(&nonce))
            .await
            .unwrap();
        let answer = next_where(&mut alice, "an answer", |f| match f {
            ServerFrame::Message(m) => Ok(Ok(m.id)),
            ServerFrame::Error { code, nonce, .. } => Ok(Err((code, nonce))),
            other => Err(Box::new(other)),
        })
        .await;
        match answer {
            Ok(id) => confirmed.push((id, format!("{i:04}"))),
            Err((code, answered)) => {
                assert_eq!(
                    (code, answered.as_deref()),
                    (ErrorCode::Unavailable, Some(&*nonce))
                );
                refused = Some(i);
                break;
            }
        }
    }
    let refused = refused.expect("1 MiB never filled");
    assert!(!confirmed.is_empty(), "nothing stored");
    // Reads are served on.
    alice.history(ROOM, None, Some(10)).await.unwrap();
    let page = next_where(&mut alice, "history", |f| match f {
        ServerFrame::History { messages, .. } => Ok(messages),
        other => Err(Box::new(other)),
    })
    .await;
    assert!(!page.is_empty(), "no history served once full");
    let log = node.log();
    assert!(
        log.contains("publish failed") && log.contains("full"),
        "not logged: {log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    drop(alice);
    assert!(node.terminate().await.success());

    let _node = NodeProcess::embedded("full-b", addr, data.path(), logs.path(), &capped).await;
    let history = all_history(&url, ROOM).await;
    assert_increasing(&history);
    // (id, the number the body starts with): bodies are too long to print.
    let stored: Vec<_> = history
        .iter()
        .map(|m| (m.id, m.body[..4].to_owned()))
        .collect();
    let missing: Vec<_> = confirmed.iter().filter(|c| !stored.contains(c)).collect();
    let extra: Vec<_> = stored.iter().filter(|s| !confirmed.contains(s)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "after a restart, confirmed but missing: {missing:?}; stored, never confirmed: {extra:?}"
    );
    assert_eq!(stored.len(), confirmed.len());
    assert!(!history.iter().any(|m| m.body == body(refused)));
}
