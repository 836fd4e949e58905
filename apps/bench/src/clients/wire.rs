//! The little of WebSocket (RFC 6455) and of Skat's frames that the load clients need, kept
//! cheap: the upgrade request, server frames parsed in place from a big read buffer, client
//! frames masked with an all-zero key (valid, and the payload needs no copy or XOR), and a scan
//! of `message` frames that extracts only the send time carried at the start of the body.
//!
//! What the clients send is encoded by `skat-protocol`, the one crate that writes Skat's JSON.
//! What they receive is scanned, not decoded: a `message` frame's type and the digits at the
//! start of its body are found in the bytes, so a worker spends next to nothing per delivery
//! (it must stay cheaper than the server it measures), and floor's frames, whose keys come in
//! another order, read the same.

use std::fmt::Write as _;
use std::sync::LazyLock;

use anyhow::{Context as _, bail};
use memchr::memmem::Finder;
use skat_protocol::{ClientFrame, encode_client};

/// Continuation frame.
pub(crate) const OP_CONTINUATION: u8 = 0x0;
/// Text frame.
pub(crate) const OP_TEXT: u8 = 0x1;
/// Binary frame.
#[cfg(test)]
pub(crate) const OP_BINARY: u8 = 0x2;
/// Close frame.
pub(crate) const OP_CLOSE: u8 = 0x8;
/// Ping frame.
pub(crate) const OP_PING: u8 = 0x9;
/// Pong frame.
pub(crate) const OP_PONG: u8 = 0xA;

/// Largest frame accepted from a server; anything bigger is a broken stream.
const MAX_FRAME: u64 = 64 << 20;

/// The header of one server frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHead {
    /// Last frame of its message.
    pub(crate) fin: bool,
    /// The opcode (`OP_*`).
    pub(crate) opcode: u8,
    /// Bytes of header before the payload.
    pub(crate) header_len: usize,
    /// Bytes of payload.
    pub(crate) payload_len: usize,
}

impl FrameHead {
    /// Header plus payload.
    pub(crate) fn total_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// Parses the header of the server frame at the start of `buf`: `None` until the whole header
/// is there (the payload may still be incomplete). Servers never mask their frames.
pub(crate) fn parse_head(buf: &[u8]) -> anyhow::Result<Option<FrameHead>> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    if b1 & 0x80 != 0 {
        bail!("the server sent a masked frame");
    }
    let (len, header_len) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut be = [0u8; 8];
                be.copy_from_slice(b);
                (u64::from_be_bytes(be), 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if len > MAX_FRAME {
        bail!("the server sent a frame of {len} bytes");
    }
    Ok(Some(FrameHead {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        header_len,
        payload_len: usize::try_from(len).context("frame length")?,
    }))
}

/// Calls `on_frame` for each complete frame at the start of `buf` and returns how many bytes
/// they took; the rest is an incomplete frame to keep for the next read.
pub(crate) fn scan_frames(
    buf: &[u8],
    mut on_frame: impl FnMut(FrameHead, &[u8]),
) -> anyhow::Result<usize> {
    let mut used = 0;
    while let Some(head) = parse_head(&buf[used..])? {
        let end = used + head.total_len();
        let Some(payload) = buf.get(used + head.header_len..end) else {
            break;
        };
        on_frame(head, payload);
        used = end;
    }
    Ok(used)
}

/// Appends a client frame to `out`: FIN set, masked with the all-zero key.
pub(crate) fn encode_client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
}

/// The HTTP request that opens a WebSocket at `path` on `host`.
pub(crate) fn upgrade_request(host: &str, path: &str) -> String {
    // The key is not secret: the server only hashes it into its answer, which we do not check.
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Checks the server's answer to the upgrade request at the start of `buf`: `None` until the
/// head is complete, then the length of the head (frames may follow it).
pub(crate) fn upgrade_response(buf: &[u8]) -> anyhow::Result<Option<usize>> {
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        if buf.len() > 16 * 1024 {
            bail!("the upgrade response has no end");
        }
        return Ok(None);
    };
    let head = &buf[..end];
    let status = head.split(|&b| b == b'\n').next().unwrap_or_default();
    if !status.starts_with(b"HTTP/1.1 101") {
        let shown = String::from_utf8_lossy(&buf[..buf.len().min(300)]);
        bail!("upgrade refused: {}", shown.trim());
    }
    Ok(Some(end + 4))
}

/// What a server text frame is, as far as the bench cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A `message`, with the send time at the start of its body if it has one.
    Message(Option<u64>),
    /// An `error` frame.
    Error,
    /// Anything else (`welcome`, `joined`, `presence`, ...).
    Other,
}

static TYPE_MESSAGE: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(br#""type":"message""#));
static TYPE_ERROR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(br#""type":"error""#));
static BODY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(br#""body":""#));

/// Classifies a server text frame without parsing its JSON. Skat puts `type` first; other
/// servers (floor) may put it anywhere, so it is searched for. Bodies the bench sends hold no
/// quotes, so the search cannot match inside one.
pub(crate) fn classify(text: &[u8]) -> Kind {
    let is_message = text.starts_with(br#"{"type":"message""#) || TYPE_MESSAGE.find(text).is_some();
    if is_message {
        Kind::Message(body_sent_at(text))
    } else if TYPE_ERROR.find(text).is_some() {
        Kind::Error
    } else {
        Kind::Other
    }
}

/// The send time (µs since the Unix epoch) written at the start of a message body.
pub(crate) fn body_sent_at(text: &[u8]) -> Option<u64> {
    let start = BODY.find(text)? + 8;
    let digits = text.get(start..)?;
    let mut value: u64 = 0;
    let mut any = false;
    for &b in digits.iter().take(20) {
        if !b.is_ascii_digit() {
            break;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

/// Whether a text frame is of the given `type` (for the replies awaited while connecting).
pub(crate) fn has_type(text: &[u8], kind: &str) -> bool {
    let needle = format!(r#""type":"{kind}""#);
    memchr::memmem::find(text, needle.as_bytes()).is_some()
}

/// The code and reason of a close frame's payload.
pub(crate) fn close_reason(payload: &[u8]) -> (u16, String) {
    match payload {
        [a, b, rest @ ..] => (
            u16::from_be_bytes([*a, *b]),
            String::from_utf8_lossy(rest).into_owned(),
        ),
        _ => (1005, String::new()),
    }
}

/// Appends `frame` to `out` as a client text frame, its JSON encoded by the protocol crate.
pub(crate) fn encode_client_text(out: &mut Vec<u8>, frame: &ClientFrame) {
    encode_client_frame(out, OP_TEXT, encode_client(frame).as_bytes());
}

/// The `send` of a measured message: its body is `"<sent_at> xxx…"`, the send time (µs since
/// the epoch, read back by [`body_sent_at`]) padded with `x` to `body_bytes` (one at least).
pub(crate) fn stamped_send(
    room: &str,
    sent_at: u64,
    body_bytes: usize,
    nonce: String,
) -> ClientFrame {
    let stamp = sent_at.checked_ilog10().unwrap_or(0) as usize + 2;
    let mut body = String::with_capacity(body_bytes.max(stamp + 1));
    let _ = write!(body, "{sent_at} ");
    body.extend(std::iter::repeat_n(
        'x',
        body_bytes.saturating_sub(stamp).max(1),
    ));
    ClientFrame::Send {
        room: room.to_owned(),
        body,
        nonce: Some(nonce),
        reply_to: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x80 | opcode];
        let len = payload.len();
        if len < 126 {
            out.push(len as u8);
        } else if len <= 0xffff {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn scans_complete_frames_and_keeps_the_rest() {
        let big = vec![b'a'; 70_000];
        let mid = vec![b'b'; 300];
        let mut buf = server_frame(OP_TEXT, b"hi");
        buf.extend(server_frame(OP_TEXT, &mid));
        buf.extend(server_frame(OP_BINARY, &big));
        buf.extend(server_frame(OP_PING, b"p"));
        let whole = buf.len();
        let mut seen = Vec::new();
        let used = scan_frames(&buf, |h, p| seen.push((h.opcode, p.len()))).unwrap();
        assert_eq!(used, whole);
        assert_eq!(
            seen,
            [
                (OP_TEXT, 2),
                (OP_TEXT, 300),
                (OP_BINARY, 70_000),
                (OP_PING, 1)
            ]
        );

        // Every split point: the frames before it are seen, the rest is left over.
        for cut in 0..whole.min(400) {
            let mut n = 0;
            let used = scan_frames(&buf[..cut], |_, _| n += 1).unwrap();
            assert!(used <= cut);
            let expected = if cut >= 4 { 1 } else { 0 } + if cut >= 4 + 304 { 1 } else { 0 };
            assert_eq!(n, expected, "cut {cut}");
        }
    }

    #[test]
    fn refuses_masked_server_frames() {
        assert!(parse_head(&[0x81, 0x85, 0, 0, 0, 0]).is_err());
        assert_eq!(parse_head(&[0x81]).unwrap(), None);
    }

    #[test]
    fn client_frames_are_masked_with_zero_key() {
        for len in [0, 5, 125, 126, 65_535, 65_536] {
            let payload = vec![b'z'; len];
            let mut out = Vec::new();
            encode_client_frame(&mut out, OP_TEXT, &payload);
            assert_eq!(out[0], 0x81);
            assert_ne!(out[1] & 0x80, 0, "mask bit");
            let header = match len {
                0..126 => 2,
                126..65_536 => 4,
                _ => 10,
            };
            assert_eq!(out.len(), header + 4 + len);
            assert_eq!(&out[header..header + 4], &[0, 0, 0, 0]);
            // The same bytes parse as an unmasked frame once the mask bit and key are dropped.
            let mut unmasked = out.clone();
            unmasked[1] &= 0x7f;
            unmasked.drain(header..header + 4);
            let head = parse_head(&unmasked).unwrap().unwrap();
            assert_eq!(head.payload_len, len);
        }
    }

    #[test]
    fn upgrade_answer() {
        assert_eq!(upgrade_response(b"HTTP/1.1 101 Switching").unwrap(), None);
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00";
        assert_eq!(upgrade_response(ok).unwrap(), Some(ok.len() - 2));
        let refused = b"HTTP/1.1 429 Too Many Requests\r\n\r\ntoo many";
        assert!(upgrade_response(refused).is_err());
    }

    #[test]
    fn classifies_frames_by_type_wherever_it_is() {
        let skat = br#"{"type":"message","room":"r1","id":"1-0","from":"u1","body":"1764290000123456 xxxx","ts":1,"nonce":"n"}"#;
        assert_eq!(classify(skat), Kind::Message(Some(1_764_290_000_123_456)));
        // floor's serde_json sorts keys: type comes last.
        let floor = br#"{"body":"42 xx","from":"u","id":"1-2","nonce":"n","room":"r","ts":1,"type":"message"}"#;
        assert_eq!(classify(floor), Kind::Message(Some(42)));
        let foreign =
            br#"{"type":"message","room":"r","id":"1-0","from":"u","body":"hello","ts":1}"#;
        assert_eq!(classify(foreign), Kind::Message(None));
        // History inside `joined` is not a delivery.
        let joined = br#"{"type":"joined","room":"r","members":[],"messages":[{"room":"r","id":"1-0","from":"u","body":"7 x","ts":1}],"recovered":false}"#;
        assert_eq!(classify(joined), Kind::Other);
        let error = br#"{"type":"error","code":"rate_limited","message":"slow down"}"#;
        assert_eq!(classify(error), Kind::Error);
        assert!(has_type(joined, "joined"));
        assert!(!has_type(joined, "welcome"));
    }

    #[test]
    fn send_bodies_have_the_requested_size_and_their_stamp_reads_back() {
        for body in [1, 10, 17, 18, 100, 1000] {
            let send = stamped_send("r1", 1_764_290_000_123_456, body, "n-1".to_owned());
            let ClientFrame::Send { body: text, .. } = &send else {
                panic!("not a send");
            };
            assert_eq!(text.len(), body.max(18), "body {body}: {text}");
            let json = encode_client(&send);
            assert_eq!(body_sent_at(json.as_bytes()), Some(1_764_290_000_123_456));
            let mut out = Vec::new();
            encode_client_text(&mut out, &send);
            assert!(
                out.ends_with(json.as_bytes()),
                "the payload is the JSON, unmasked"
            );
        }
        // The bytes the bench wrote by hand before the protocol crate encoded them.
        let send = stamped_send("r1", 42, 5, "n-1".to_owned());
        assert_eq!(
            encode_client(&send),
            r#"{"type":"send","room":"r1","body":"42 xx","nonce":"n-1"}"#
        );
    }

    #[test]
    fn close_payloads() {
        assert_eq!(
            close_reason(b"\x03\xf0slow consumer"),
            (1008, "slow consumer".to_owned())
        );
        assert_eq!(close_reason(b""), (1005, String::new()));
    }
}
