//! An echo server over the crate's own WebSocket layer, for `just autobahn`
//! (`examples/autobahn_echo.rs`); not part of the supported API.
//!
//! Autobahn|Testsuite's fuzzing client checks a server by sending it messages and frames, valid
//! and broken, and expecting every message echoed and every violation closed with the right
//! code. What it should judge is `ws` — the handshake, the frame parser and the stream — exactly
//! as the node runs it, so this module uses those pieces and nothing else. It cannot use the
//! node's connection loop: that one speaks Skat's JSON protocol and refuses binary messages. The
//! loop here answers like the node does where the two overlap: a pong for each ping, 1000 to the
//! client's close, and the violation's own close frame (`FrameError::close_frame`) to anything
//! the parser refuses.

use std::future::poll_fn;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::ws::{self, Incoming, ReadError, WsStream};

/// The largest message echoed: above the suite's biggest (16 MiB, cases 9.x).
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// The echo server: a WebSocket upgrade on any path, then the echo loop until the client closes.
pub fn router() -> Router {
    Router::new().fallback(upgrade)
}

/// Checks the upgrade request with `ws::accept`, as `/ws` does, and echoes once upgraded.
async fn upgrade(mut request: Request) -> Response {
    let response = match ws::accept(request.method(), request.headers()) {
        Ok(response) => response,
        Err(rejection) => return rejection.response(),
    };
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgrade.await.map(ws::Upgraded::from_hyper) {
            Ok(ws::Upgraded::Tcp(tcp, read)) => echo(WsStream::new(tcp, &read, MAX_MESSAGE)).await,
            Ok(ws::Upgraded::Other(io)) => echo(WsStream::new(io, &[], MAX_MESSAGE)).await,
            Err(err) => tracing::debug!(error = %err, "upgrade failed"),
        }
    });
    response
}

/// Sends every text and binary message back as one unfragmented frame of the same kind, until
/// the client closes or breaks the protocol.
async fn echo<IO: AsyncRead + AsyncWrite + Unpin>(mut ws: WsStream<IO>) {
    let (code, reason) = loop {
        let (opcode, payload) = match poll_fn(|cx| ws.poll_next(cx)).await {
            None | Some(Err(ReadError::Io(_))) => return,
            Some(Err(ReadError::Frame(violation))) => break violation.close_frame(),
            Some(Ok(Incoming::Close)) => break (1000, ""),
            Some(Ok(Incoming::Pong)) => continue,
            Some(Ok(Incoming::Text(text))) => (ws::OP_TEXT, text.into_bytes()),
            Some(Ok(Incoming::Binary(bytes))) => (ws::OP_BINARY, bytes),
            Some(Ok(Incoming::Ping(payload))) => (ws::OP_PONG, payload),
        };
        ws::encode(ws.out(), opcode, &payload);
        if poll_fn(|cx| ws.poll_flush(cx)).await.is_err() {
            return;
        }
    };
    ws::encode_close(ws.out(), code, reason);
    // The server closes the TCP connection first (RFC 6455 §7.1.1): flush, shut down, drop.
    let _ = ws.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A masked client frame (mask 1, 2, 3, 4) with a payload shorter than 126 bytes.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut frame = vec![(u8::from(fin) << 7) | opcode, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        frame
    }

    /// Writes `frames` to an echo loop and reads everything it sends until it closes.
    async fn exchange(frames: &[Vec<u8>]) -> Vec<u8> {
        let (server, mut client) = tokio::io::duplex(4096);
        let echoing = tokio::spawn(echo(WsStream::new(server, &[], 100)));
        client.write_all(&frames.concat()).await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        echoing.await.unwrap();
        got
    }

    #[tokio::test]
    async fn echoes_text_binary_and_pings_then_answers_the_close() {
        let got = exchange(&[
            client_frame(true, ws::OP_TEXT, "héllo".as_bytes()),
            client_frame(false, ws::OP_BINARY, &[0, 0xff]),
            client_frame(true, ws::OP_PING, b"p"),
            client_frame(true, 0x0, &[7]),
            client_frame(true, ws::OP_PONG, b"ignored"),
            client_frame(true, 0x8, &1000u16.to_be_bytes()),
        ])
        .await;
        let mut want = Vec::new();
        ws::encode(&mut want, ws::OP_TEXT, "héllo".as_bytes());
        ws::encode(&mut want, ws::OP_PONG, b"p");
        ws::encode(&mut want, ws::OP_BINARY, &[0, 0xff, 7]);
        ws::encode_close(&mut want, 1000, "");
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn violations_close_with_their_own_code() {
        for (frame, code) in [
            (client_frame(true, ws::OP_TEXT, &[0xff]), 1007),
            (client_frame(true, ws::OP_TEXT, &[b'a'; 101]), 1009),
            (client_frame(true, 0x3, b""), 1002),
        ] {
            let got = exchange(&[frame]).await;
            assert_eq!(got[0], 0x88, "a close frame");
            assert_eq!(u16::from_be_bytes([got[2], got[3]]), code);
        }
    }
}
