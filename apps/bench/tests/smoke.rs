//! Smoke test of the whole bench (coordinator, worker processes, frame scanning, report): a tiny
//! in-process fan-out speaking the protocol subset the bench uses (through `skat-protocol`'s
//! codec), and `skat-bench load --url` against it for about a second. Checks counts only, never
//! timings; the bench's own JSON report is read with `serde_json`.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use skat_protocol::{ClientFrame, Message, MessageId, ServerFrame, decode_client, encode_server};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

type Rooms = Arc<Mutex<HashMap<String, Vec<mpsc::UnboundedSender<Vec<u8>>>>>>;

/// An unmasked server text frame.
fn frame(text: &str) -> Vec<u8> {
    let len = text.len();
    let mut out = vec![0x81];
    if len < 126 {
        out.push(len as u8);
    } else {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    }
    out.extend_from_slice(text.as_bytes());
    out
}

/// One masked client frame off the front of `buf`: (opcode, payload, bytes used).
fn client_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    let (len, mut at) = match b1 & 0x7f {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => return None,
        n => (n as usize, 2),
    };
    let key: [u8; 4] = buf.get(at..at + 4)?.try_into().unwrap();
    at += 4;
    let payload = buf.get(at..at + len)?;
    let unmasked = payload
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ key[i % 4])
        .collect();
    Some((b0 & 0x0f, unmasked, at + len))
}

async fn serve(stream: TcpStream, rooms: Rooms) {
    let (mut read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if write.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut buf = Vec::new();
    let mut chunk = vec![0; 64 * 1024];
    let mut upgraded = false;
    let mut name = String::new();
    loop {
        let n = match read.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if !upgraded {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            buf.drain(..end + 4);
            upgraded = true;
            let answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                          Connection: Upgrade\r\nSec-WebSocket-Accept: unchecked\r\n\r\n";
            let _ = tx.send(answer.as_bytes().to_vec());
        }
        while let Some((opcode, payload, used)) = client_frame(&buf) {
            buf.drain(..used);
            if opcode == 8 {
                return;
            }
            let text = std::str::from_utf8(&payload).unwrap();
            match decode_client(text).unwrap() {
                ClientFrame::Hello { name: hello, .. } => {
                    name = hello;
                    let welcome = ServerFrame::Welcome {
                        user: name.clone(),
                        node: "smoke".to_owned(),
                        protocol: 1,
                        exp: None,
                    };
                    let _ = tx.send(frame(&encode_server(&welcome)));
                }
                ClientFrame::Join { room, .. } => {
                    rooms
                        .lock()
                        .unwrap()
                        .entry(room.clone())
                        .or_default()
                        .push(tx.clone());
                    let joined = ServerFrame::Joined {
                        room,
                        members: Vec::new(),
                        messages: Vec::new(),
                        recovered: false,
                        epoch: None,
                        more_members: false,
                        read: None,
                        unread: 0,
                        changes: vec![],
                    };
                    let _ = tx.send(frame(&encode_server(&joined)));
                }
                ClientFrame::Send {
                    room, body, nonce, ..
                } => {
                    let message = ServerFrame::Message(Message {
                        room: room.clone(),
                        id: MessageId::MIN,
                        from: name.clone(),
                        body,
                        ts: 1,
                        nonce,
                        extras: None,
                    });
                    let bytes = frame(&encode_server(&message));
                    for member in rooms.lock().unwrap().get(&room).into_iter().flatten() {
                        let _ = member.send(bytes.clone());
                    }
                }
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn a_tiny_load_against_an_in_process_fan_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let rooms = Rooms::default();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(serve(stream, rooms.clone()));
        }
    });

    let url = format!("ws://127.0.0.1:{port}/ws");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_skat-bench"))
        .args([
            "load",
            "--url",
            &url,
            "--clients",
            "20",
            "--rooms",
            "2",
            "--senders",
            "4",
            "--rate",
            "40",
            "--warmup",
            "0.2",
            "--duration",
            "1",
            "--drain",
            "5",
            "--json",
        ])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "skat-bench failed: {stderr}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let load = &json["loads"][0];
    let expected = load["expected"].as_u64().unwrap();
    // 40 sends/s for 1 s, each to the 10 members of its room (sender included).
    assert!(expected >= 300, "expected {expected}: {load}");
    assert_eq!(expected % 10, 0, "{load}");
    assert_eq!(load["received"].as_u64().unwrap(), expected, "{load}");
    assert_eq!(load["lost"].as_u64().unwrap(), 0);
    assert_eq!(load["errors"].as_u64().unwrap(), 0);
    assert_eq!(load["evictions"].as_u64().unwrap(), 0);
    assert_eq!(load["connect"]["ok"].as_u64().unwrap(), 20);
    // Not started by the bench and no --pid: no server CPU to report.
    assert!(load["server_cpu"].is_null());
    assert!(
        stderr.contains("load: deliveries/s"),
        "the table goes to stderr with --json"
    );
}
