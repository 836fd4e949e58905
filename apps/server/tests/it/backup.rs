//! `skat-server export` and `import` (issue 23): a data dir's rooms out as JSON lines and into
//! another dir, where a broker serves the same history, epochs, reactions and read markers;
//! what an import refuses (and that it then stores nothing); and the subcommands once as
//! processes.

#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use skat_broker::durable::DurableError;
use skat_broker::{
    Broker, ChangeKind, HistoryPage, MemoryBroker, MemoryBrokerConfig, MessageId, NewChange,
    NewMessage, Published, Recovery,
};
use skat_server::backup::{self, BackupError};
use skat_testkit::TempDir;

const ROOMS: [&str; 2] = ["general", "ops"];

fn config() -> MemoryBrokerConfig {
    MemoryBrokerConfig {
        history_len: 100,
        ..Default::default()
    }
}

async fn send(broker: &MemoryBroker, room: &str, body: &str) -> MessageId {
    let new = NewMessage {
        room: room.into(),
        from: "ann".into(),
        body: body.into(),
        nonce: None,
        reply_to: None,
    };
    match broker.publish(new).await.unwrap() {
        Published::New(m) => m.id,
        other => panic!("{other:?}"),
    }
}

async fn change(broker: &MemoryBroker, room: &str, target: MessageId, by: &str, kind: ChangeKind) {
    let new = NewChange {
        room: room.into(),
        target,
        by: by.into(),
        kind,
        nonce: None,
        as_author: true,
    };
    broker.change(new).await.unwrap();
}

/// Fills `dir` with two rooms of messages, an edit, a deletion, more reactors than a message
/// shows, a reaction taken back and read markers.
async fn fill(dir: &Path) {
    let broker = MemoryBroker::open(config(), dir).unwrap();
    for room in ROOMS {
        let first = send(&broker, room, "hello").await;
        let second = send(&broker, room, "to be deleted").await;
        send(&broker, room, "third").await;
        change(
            &broker,
            room,
            first,
            "ann",
            ChangeKind::Edit {
                body: "hello!".into(),
            },
        )
        .await;
        change(&broker, room, second, "ann", ChangeKind::Delete).await;
        for i in 0..23 {
            let react = ChangeKind::React {
                emoji: if i % 3 == 0 { "🎉" } else { "👍" }.into(),
                add: true,
            };
            change(&broker, room, first, &format!("user{i:02}"), react).await;
        }
        let back = ChangeKind::React {
            emoji: "👍".into(),
            add: false,
        };
        change(&broker, room, first, "user01", back).await;
        broker.read(room, "bob", first).await.unwrap();
        broker.read(room, "cy", second).await.unwrap();
    }
}

/// What a broker on `dir` serves of each room: history, epoch, read markers, recovery.
async fn served(dir: &Path) -> Vec<(HistoryPage, String, Vec<Option<MessageId>>, String)> {
    let broker = MemoryBroker::open(config(), dir).unwrap();
    let mut out = Vec::new();
    for room in ROOMS {
        let history = broker.history(room, None, 100).await.unwrap();
        let epoch = broker.epoch(room).await.unwrap();
        let mut markers = Vec::new();
        for user in ["bob", "cy", "dee"] {
            markers.push(broker.read(room, user, MessageId::MIN).await.unwrap().id);
        }
        let since = history.messages[0].id;
        let recovered = broker
            .recover(room, since, Recovery::count(1000))
            .await
            .unwrap();
        out.push((history, epoch, markers, format!("{recovered:?}")));
    }
    out
}

fn export_to_vec(dir: &Path, room: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    backup::export(dir, room, &mut out).unwrap();
    out
}

#[tokio::test]
async fn an_import_of_an_export_serves_the_same_rooms() {
    let tmp = TempDir::new("backup").unwrap();
    let (from, to) = (tmp.path().join("from"), tmp.path().join("to"));
    fill(&from).await;
    let lines = export_to_vec(&from, None);
    let text = String::from_utf8(lines.clone()).unwrap();
    assert!(
        text.starts_with(r#"{"type":"room","room":"general","epoch":"#),
        "{text}"
    );
    assert!(text.contains(r#""type":"reactors""#) && text.contains(r#""type":"read_marker""#));
    assert!(
        !text.contains("to be deleted"),
        "a deleted body was exported"
    );
    let imported = backup::import(&to, &lines[..]).unwrap();
    assert_eq!(imported.rooms, 2);
    let before = served(&from).await;
    let after = served(&to).await;
    assert_eq!(after, before);
    let first = &after[0].0.messages[0];
    assert_eq!(first.body, "hello!");
    let counts: Vec<_> = first
        .reactions()
        .iter()
        .map(|r| (r.emoji.as_str(), r.count))
        .collect();
    assert_eq!(counts, [("🎉", 8), ("👍", 14)], "in first-appeared order");
    // The imported dir exports the same lines: reactors in their order, markers, trimmed ids.
    assert_eq!(export_to_vec(&to, None), lines);
    // One room alone.
    let ops = String::from_utf8(export_to_vec(&from, Some("ops"))).unwrap();
    assert!(ops.lines().all(|l| l.contains(r#""room":"ops""#)), "{ops}");
    let missing = backup::export(&from, Some("nowhere"), Vec::new()).unwrap_err();
    assert!(matches!(missing, BackupError::NoSuchRoom(_)), "{missing}");
}

#[tokio::test]
async fn an_import_refuses_bad_lines_a_held_dir_and_known_rooms_storing_nothing() {
    let tmp = TempDir::new("backup").unwrap();
    let (from, to) = (tmp.path().join("from"), tmp.path().join("to"));
    fill(&from).await;
    let lines = export_to_vec(&from, None);
    let text = String::from_utf8(lines.clone()).unwrap();
    let refused = |input: &str| backup::import(&to, input.as_bytes()).unwrap_err();
    let mut broken: Vec<&str> = text.lines().collect();
    broken.insert(3, r#"{"type":"message","room":"general"}"#);
    let err = refused(&broken.join("\n"));
    assert!(
        matches!(err, BackupError::Line { line: 4, .. }),
        "{err}: the 4th line is bad"
    );
    let err = refused(r#"{"type":"read_marker","room":"general","user":"bob","id":"1-0"}"#);
    assert!(err.to_string().contains("line 1"), "{err}");
    // Reactors of a message the import does not have.
    let room = text.lines().next().unwrap();
    let stray = r#"{"type":"reactors","room":"general","id":"1-0","emoji":"👍","users":["bob"]}"#;
    let err = refused(&format!("{room}\n{stray}"));
    assert!(
        matches!(&err, BackupError::Line { line: 2, detail } if detail.contains("constraint")),
        "{err}"
    );
    // An entry out of order: the 3rd line's is older than the 2nd's.
    let mut swapped: Vec<&str> = text.lines().collect();
    swapped.swap(1, 2);
    let err = refused(&swapped.join("\n"));
    assert!(matches!(err, BackupError::Line { line: 3, .. }), "{err}");
    // Nothing of the refused imports was stored.
    assert!(export_to_vec(&to, None).is_empty());
    backup::import(&to, &lines[..]).unwrap();
    let err = refused(&text);
    assert!(err.to_string().contains("already in the data dir"), "{err}");
    // A dir a node holds.
    let _node = MemoryBroker::open(config(), &from).unwrap();
    let err = backup::import(&from, &lines[..]).unwrap_err();
    assert!(
        matches!(err, BackupError::Durable(DurableError::Locked { .. })),
        "{err}"
    );
    // An export reads a held dir all the same.
    assert_eq!(export_to_vec(&from, None), lines);
}

/// Each record the protocol's checks refuse, after a valid `room` line: refused on its line,
/// saying why, and nothing stored.
#[test]
fn an_import_refuses_records_the_protocol_would_refuse() {
    let tmp = TempDir::new("backup").unwrap();
    let to = tmp.path().join("to");
    let room = r#"{"type":"room","room":"general","epoch":"e1"}"#;
    let message = |fields: &str| format!(r#"{{"type":"message","room":"general",{fields}}}"#);
    let long_nonce = "n".repeat(65);
    let cases = [
        (
            r#"{"type":"room","room":"Not A Room","epoch":"e1"}"#.to_owned(),
            "room names",
        ),
        (
            message(r#""id":"5-0","from":"bad name","body":"hi","ts":5"#),
            "names are",
        ),
        (
            message(r#""id":"5-0","from":"ann","body":"  ","ts":5"#),
            "empty",
        ),
        (
            message(r#""id":"5-0","from":"ann","body":"secret","ts":5,"deleted":true"#),
            "deleted message's body",
        ),
        (
            message(&format!(
                r#""id":"5-0","from":"ann","body":"hi","ts":5,"nonce":"{long_nonce}""#
            )),
            "nonces",
        ),
        (
            message(r#""id":"5-9223372036854775807","from":"ann","body":"hi","ts":5"#),
            "too large",
        ),
        (
            message(r#""id":"18446744073709551615-0","from":"ann","body":"hi","ts":5"#),
            "future",
        ),
        (
            r#"{"type":"reactors","room":"general","id":"1-0","emoji":"ab","users":["bob"]}"#
                .to_owned(),
            "one emoji",
        ),
    ];
    for (bad, why) in cases {
        let input = if bad.contains(r#""type":"room""#) {
            bad.clone()
        } else {
            format!("{room}\n{bad}")
        };
        let line = if bad.contains(r#""type":"room""#) {
            1
        } else {
            2
        };
        let err = backup::import(&to, input.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, BackupError::Line { line: at, detail } if *at == line && detail.contains(why)),
            "{bad}: {err}"
        );
    }
    // A line past the cap is refused, not read whole.
    let long = format!(
        "{room}\n{}\n",
        "x".repeat(skat_protocol::MAX_EXPORT_LINE_BYTES + 1)
    );
    let err = backup::import(&to, long.as_bytes()).unwrap_err();
    assert!(
        matches!(&err, BackupError::Line { line: 2, detail } if detail.contains("longer than")),
        "{err}"
    );
    assert!(export_to_vec(&to, None).is_empty());
}

fn skat_server(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_skat-server"))
        .args(args)
        .env_remove("SKAT_REDIS_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn the_export_and_import_commands() {
    let tmp = TempDir::new("backup").unwrap();
    let (from, to) = (tmp.path().join("from"), tmp.path().join("to"));
    fill(&from).await;
    let path = |dir: &Path| dir.to_str().unwrap().to_owned();
    let exported = skat_server(&["export", "--data-dir", &path(&from)], b"");
    assert!(exported.status.success(), "{exported:?}");
    assert_eq!(exported.stdout, export_to_vec(&from, None));
    let imported = skat_server(&["import", "--data-dir", &path(&to)], &exported.stdout);
    let report = String::from_utf8_lossy(&imported.stderr);
    assert!(imported.status.success(), "{report}");
    assert!(report.contains("imported 2 room(s)"), "{report}");
    assert_eq!(export_to_vec(&to, None), exported.stdout);
    let bad = skat_server(&["import", "--data-dir", &path(&to)], b"\n{oops\n");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("line 2"), "{err}");
}
