//! Clients that never let their socket run dry: a connection's deadlines (hello, token expiry)
//! hold all the same, it never keeps its thread from other tasks, and pings and pongs nobody
//! asked for are budgeted.
//!
//! The flood is an in-process byte stream ([`Flood`]) under `skat_server::serve_socket`: it has
//! the next frame ready whenever the server reads, which a socket from a fast enough sender does
//! too, but which a real client cannot guarantee on a busy machine.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Node, close_of, join, message, test_config};
use skat_broker::MemoryBroker;
use skat_client::RawFrame;
use skat_protocol::{ClientFrame, close, encode_client};
use skat_server::auth::{JwtSecret, LEEWAY_SECS};
use skat_server::{AppState, Limits, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// A client frame (masked, with an all-zero key).
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(payload);
    frame
}

/// A client that has sent `prefix` (its `hello`, say) and then sends `frame` for ever, as fast
/// as the server reads; what the server writes is kept.
struct Flood {
    prefix: Vec<u8>,
    frame: Vec<u8>,
    /// How far into `prefix`, then the endless repeats of `frame`, the server has read.
    at: usize,
    /// Whether each read spends tokio's cooperative budget, as a socket's does. Without, reads
    /// never return `Pending` at all.
    coop: bool,
    /// Set to end the stream (the client closes its side).
    stop: Arc<AtomicBool>,
    written: Arc<Mutex<Vec<u8>>>,
}

impl Flood {
    fn new(prefix: Vec<u8>, frame: Vec<u8>) -> Self {
        Self {
            prefix,
            frame,
            at: 0,
            coop: true,
            stop: Arc::default(),
            written: Arc::default(),
        }
    }
}

impl AsyncRead for Flood {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.coop {
            ready!(pin!(tokio::task::consume_budget()).poll(cx));
        }
        if this.stop.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        while buf.remaining() > 0 {
            let (source, offset) = match this.at.checked_sub(this.prefix.len()) {
                None => (&this.prefix, this.at),
                Some(past) => (&this.frame, past % this.frame.len()),
            };
            let n = (source.len() - offset).min(buf.remaining());
            buf.put_slice(&source[offset..offset + n]);
            this.at += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Flood {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written.lock().unwrap().extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The server's frames in `bytes` (unmasked), as (opcode, payload).
fn server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0F;
        let (len, header) = match bytes[1] & 0x7F {
            126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => (
                usize::try_from(u64::from_be_bytes(bytes[2..10].try_into().unwrap())).unwrap(),
                10,
            ),
            len => (usize::from(len), 2),
        };
        frames.push((opcode, bytes[header..header + len].to_vec()));
        bytes = &bytes[header + len..];
    }
    frames
}

/// The code and reason of the close frame the server wrote, if it wrote one.
fn close_frame(written: &Mutex<Vec<u8>>) -> Option<(u16, String)> {
    let frames = server_frames(&written.lock().unwrap());
    let (_, payload) = frames.into_iter().find(|(opcode, _)| *opcode == 0x8)?;
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    Some((code, String::from_utf8(payload[2..].to_vec()).unwrap()))
}

/// Settings where control frames are not budgeted, so only the deadlines can end a flood.
fn unbudgeted(mut limits: Limits) -> ServerConfig {
    limits.control_frames_per_sec = 0;
    ServerConfig {
        limits,
        ..test_config()
    }
}

/// Serves `flood` until the server closes it, failing if that takes longer than `within`.
async fn serve_until_closed(flood: Flood, config: ServerConfig, within: Duration) -> Duration {
    let state = AppState::new(Arc::new(MemoryBroker::default()), config);
    let started = Instant::now();
    let served = tokio::time::timeout(within, skat_server::serve_socket(flood, state)).await;
    assert!(
        served.is_ok(),
        "the flood kept its connection open for {within:?}"
    );
    started.elapsed()
}

#[tokio::test]
async fn a_flood_of_pongs_does_not_postpone_the_hello_timeout() {
    let hello_timeout = Duration::from_millis(300);
    let config = unbudgeted(Limits {
        hello_timeout,
        ..Limits::default()
    });
    let flood = Flood::new(Vec::new(), masked(OP_PONG, b""));
    let written = Arc::clone(&flood.written);
    let took = serve_until_closed(flood, config, Duration::from_secs(5)).await;
    assert_eq!(
        close_frame(&written),
        Some((1008, "hello timeout".to_owned()))
    );
    assert!(took >= hello_timeout, "{took:?}");
}

#[tokio::test]
async fn a_flood_of_pongs_does_not_keep_an_expired_token_connected() {
    const SECRET: &str = "a-test-secret-of-32-bytes-length";
    let secret = JwtSecret::new(SECRET).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    // Within the leeway: the identity ends one to two seconds from now.
    let exp = now.as_secs() + 2 - LEEWAY_SECS;
    let claims = serde_json::json!({"sub": "alice", "exp": exp});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    let hello = encode_client(&ClientFrame::Hello {
        name: "alice".into(),
        token: Some(token),
    });
    let config = ServerConfig {
        jwt_secret: Some(secret),
        ..unbudgeted(Limits::default())
    };
    let flood = Flood::new(masked(OP_TEXT, hello.as_bytes()), masked(OP_PONG, b""));
    let written = Arc::clone(&flood.written);
    let took = serve_until_closed(flood, config, Duration::from_secs(6)).await;
    let frames = server_frames(&written.lock().unwrap());
    let welcome = String::from_utf8(frames[0].1.clone()).unwrap();
    assert!(welcome.contains(r#""type":"welcome""#), "{welcome}");
    assert_eq!(
        close_frame(&written),
        Some((close::TOKEN_EXPIRED, "token expired".to_owned()))
    );
    assert!(took >= Duration::from_millis(900), "{took:?}");
}

#[test]
fn a_flood_never_holds_its_thread() {
    // The worst case: reads never run dry and never spend tokio's budget, on a runtime of one
    // thread. Another task on that thread must still run.
    let mut flood = Flood::new(Vec::new(), masked(OP_PONG, b""));
    flood.coop = false;
    let stop = Arc::clone(&flood.stop);
    let (ran, other_task) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let config = unbudgeted(Limits::default());
            let state = AppState::new(Arc::new(MemoryBroker::default()), config);
            tokio::spawn(async move { ran.send(()) });
            skat_server::serve_socket(flood, state).await;
        });
    });
    let waited = other_task.recv_timeout(Duration::from_secs(3));
    // The client goes away, which ends the connection in any case.
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    assert!(
        waited.is_ok(),
        "the flooded connection never yielded its thread"
    );
}

#[tokio::test]
async fn pings_pongs_and_binary_frames_nobody_asked_for_are_budgeted() {
    for opcode in [OP_PING, OP_PONG, OP_BINARY] {
        let config = ServerConfig {
            limits: Limits {
                control_frames_per_sec: 1,
                ..Limits::default()
            },
            ..test_config()
        };
        let flood = Flood::new(Vec::new(), masked(opcode, b"x"));
        let written = Arc::clone(&flood.written);
        serve_until_closed(flood, config, Duration::from_secs(5)).await;
        assert_eq!(
            close_frame(&written),
            Some((1008, "too many control frames".to_owned())),
            "opcode {opcode}"
        );
    }
}

#[tokio::test]
async fn answering_the_servers_pings_is_never_charged() {
    // A ping every 100 ms, and a budget of one control frame a second (bursts of two).
    let config = ServerConfig {
        limits: Limits {
            idle_timeout: Duration::from_millis(300),
            control_frames_per_sec: 1,
            ..Limits::default()
        },
        ..test_config()
    };
    let node = Node::start_with(Arc::new(MemoryBroker::default()), config).await;
    let mut live = node.client("live").await;
    join(&mut live, "general").await;
    // Reading answers each ping (tungstenite does it): about a dozen pongs.
    let until = tokio::time::Instant::now() + Duration::from_millis(1200);
    while tokio::time::Instant::now() < until {
        let _ = tokio::time::timeout(Duration::from_millis(20), live.next_event()).await;
    }
    live.send_message("general", "still here", None)
        .await
        .unwrap();
    assert_eq!(message(&mut live).await.body, "still here");

    // Its own pongs, though, are.
    let mut chatty = node.client("chatty").await;
    for _ in 0..5 {
        chatty.send_ws(RawFrame::Pong(Vec::new())).await.unwrap();
    }
    assert_eq!(
        close_of(&mut chatty).await,
        (Some(1008), "too many control frames".to_owned())
    );
}
