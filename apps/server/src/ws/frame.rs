//! RFC 6455 framing, server side: parse what clients send, encode what the server sends.
//!
//! Pure functions over byte slices, so the rules are unit-tested without sockets. Clients must
//! mask every frame; servers never mask, so an encoded server frame is the same bytes for every
//! recipient and a room event is framed once for all of them (see `rooms`).

use bytes::{Buf, BytesMut};

/// Opcode of a text frame.
pub(crate) const OP_TEXT: u8 = 0x1;
const OP_CONTINUATION: u8 = 0x0;
/// Opcode of a binary frame.
pub(crate) const OP_BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub(crate) const OP_CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub(crate) const OP_PING: u8 = 0x9;
/// Opcode of a pong frame.
pub(crate) const OP_PONG: u8 = 0xA;

/// Largest header a server frame can have: 2 bytes plus an 8-byte length.
const MAX_HEADER: usize = 10;

/// A complete message from the client (fragments already joined, payload unmasked).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A text message, UTF-8 checked.
    Text(String),
    /// A binary message. Skat's protocol has no use for them (the connection answers with an
    /// error), but the payload is already in hand, and the conformance harness echoes it.
    Binary(Vec<u8>),
    /// A ping; the payload must be echoed in a pong.
    Ping(Vec<u8>),
    /// A pong (answer to our ping).
    Pong,
    /// The client started the closing handshake.
    Close,
}

/// Why the client's byte stream is not acceptable WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// A frame or message above the size limit (close code 1009).
    #[error("message too big")]
    TooBig,
    /// A text message that is not UTF-8 (close code 1007).
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// Anything else RFC 6455 forbids (close code 1002).
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
}

impl FrameError {
    /// The close frame that answers the violation: its RFC 6455 §7.4.1 code and a reason.
    pub(crate) fn close_frame(self) -> (u16, &'static str) {
        match self {
            Self::TooBig => (1009, "message too big"),
            Self::InvalidUtf8 => (1007, "invalid UTF-8"),
            Self::Protocol(_) => (1002, "protocol error"),
        }
    }
}

/// A message being reassembled from fragments.
#[derive(Debug, Default)]
pub(crate) struct Reassembly {
    /// Opcode of the first fragment, if a fragmented message is in progress.
    opcode: Option<u8>,
    payload: Vec<u8>,
}

impl Reassembly {
    /// Whether fragments of a message have arrived and its last one has not.
    pub(crate) fn in_progress(&self) -> bool {
        self.opcode.is_some()
    }
}

/// Parses the next frame out of `buf`, consuming it; `Ok(None)` when `buf` holds no complete
/// frame yet (nothing is consumed then). Control frames may arrive between the fragments of a
/// message; data fragments are joined in `partial`. `max` bounds every message's payload.
pub(crate) fn parse(
    buf: &mut BytesMut,
    partial: &mut Reassembly,
    max: usize,
) -> Result<Option<Incoming>, FrameError> {
    loop {
        let Some(header) = parse_header(buf, max)? else {
            return Ok(None);
        };
        let is_data = header.opcode & 0x08 == 0;
        if is_data && partial.payload.len() + header.len > max {
            // Refused from the header, before the fragment is buffered.
            return Err(FrameError::TooBig);
        }
        // Nothing is reserved for the announced length: memory follows the bytes that arrive.
        if buf.len() < header.header_len + header.len {
            return Ok(None);
        }
        buf.advance(header.header_len);
        let mut payload = buf.split_to(header.len);
        unmask(&mut payload, header.mask);
        match header.opcode {
            OP_PING => return Ok(Some(Incoming::Ping(payload.to_vec()))),
            OP_PONG => return Ok(Some(Incoming::Pong)),
            OP_CLOSE => return check_close(&payload).map(|()| Some(Incoming::Close)),
            OP_TEXT | OP_BINARY if partial.opcode.is_some() => {
                return Err(FrameError::Protocol("new message inside a fragmented one"));
            }
            OP_CONTINUATION if partial.opcode.is_none() => {
                return Err(FrameError::Protocol("continuation without a message"));
            }
            OP_TEXT | OP_BINARY if header.fin => return finish(header.opcode, payload.to_vec()),
            opcode => {
                partial.opcode.get_or_insert(opcode);
                partial.payload.extend_from_slice(&payload);
                if header.fin {
                    let opcode = partial.opcode.take().unwrap_or(OP_BINARY);
                    return finish(opcode, std::mem::take(&mut partial.payload));
                }
            }
        }
    }
}

/// A close frame's payload is empty, or a status code a peer may send plus a UTF-8 reason.
fn check_close(payload: &[u8]) -> Result<(), FrameError> {
    let Some((code, reason)) = payload.split_first_chunk::<2>() else {
        return if payload.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Protocol("close frame with a 1-byte payload"))
        };
    };
    // RFC 6455 §7.4 and the IANA registry; 1004-1006 and 1015 must never be sent.
    match u16::from_be_bytes(*code) {
        1000..=1003 | 1007..=1014 | 3000..=4999 => {}
        _ => return Err(FrameError::Protocol("invalid close code")),
    }
    std::str::from_utf8(reason)
        .map(drop)
        .map_err(|_| FrameError::InvalidUtf8)
}

fn finish(opcode: u8, payload: Vec<u8>) -> Result<Option<Incoming>, FrameError> {
    if opcode == OP_TEXT {
        String::from_utf8(payload)
            .map(|text| Some(Incoming::Text(text)))
            .map_err(|_| FrameError::InvalidUtf8)
    } else {
        Ok(Some(Incoming::Binary(payload)))
    }
}

struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    header_len: usize,
    len: usize,
}

/// Reads and checks a client frame header without consuming it.
fn parse_header(buf: &[u8], max: usize) -> Result<Option<Header>, FrameError> {
    let [b0, b1, rest @ ..] = buf else {
        return Ok(None);
    };
    let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0F);
    if b0 & 0x70 != 0 {
        return Err(FrameError::Protocol("reserved bits set"));
    }
    if b1 & 0x80 == 0 {
        return Err(FrameError::Protocol("client frame not masked"));
    }
    let control = opcode & 0x08 != 0;
    if !matches!(
        opcode,
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return Err(FrameError::Protocol("unknown opcode"));
    }
    let (len, ext) = match b1 & 0x7F {
        126 => match rest {
            [a, b, ..] => (u64::from(u16::from_be_bytes([*a, *b])), 2),
            _ => return Ok(None),
        },
        127 => match rest.get(..8) {
            Some(bytes) => {
                let mut be = [0; 8];
                be.copy_from_slice(bytes);
                (u64::from_be_bytes(be), 8)
            }
            None => return Ok(None),
        },
        short => (u64::from(short), 0),
    };
    if control && (len > 125 || !fin) {
        return Err(FrameError::Protocol("bad control frame"));
    }
    if len >> 63 != 0 {
        return Err(FrameError::Protocol("64-bit length with the top bit set"));
    }
    let len = usize::try_from(len).map_err(|_| FrameError::TooBig)?;
    if len > max {
        return Err(FrameError::TooBig);
    }
    let Some(mask) = rest.get(ext..ext + 4) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask: [mask[0], mask[1], mask[2], mask[3]],
        header_len: 2 + ext + 4,
        len,
    }))
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let mut w = [0; 4];
        w.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u32::from_ne_bytes(w) ^ word).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i];
    }
}

/// Appends an unmasked, unfragmented server frame to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.reserve(MAX_HEADER + payload.len());
    out.push(0x80 | opcode);
    match payload.len() {
        len @ 0..=125 => out.push(len as u8),
        len @ 126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// A whole text frame, ready to be copied to any number of sockets.
pub(crate) fn text_frame(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode(&mut out, OP_TEXT, text.as_bytes());
    out
}

/// Appends a close frame with `code` and `reason` (truncated to fit a control frame).
pub(crate) fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(out, OP_CLOSE, &payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame, as a browser would send it.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            len @ 0..=125 => out.push(0x80 | len as u8),
            len @ 126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn parse_all(bytes: &[u8], max: usize) -> Result<Vec<Incoming>, FrameError> {
        let mut buf = BytesMut::from(bytes);
        let mut partial = Reassembly::default();
        let mut out = Vec::new();
        while let Some(message) = parse(&mut buf, &mut partial, max)? {
            out.push(message);
        }
        Ok(out)
    }

    #[test]
    fn text_of_every_length_class() {
        for len in [0, 5, 125, 126, 300, 0xFFFF, 0x10000] {
            let text = "é".repeat(len / 2) + &"x".repeat(len % 2);
            let frame = client_frame(true, OP_TEXT, text.as_bytes());
            assert_eq!(
                parse_all(&frame, 1 << 20).unwrap(),
                vec![Incoming::Text(text)]
            );
        }
    }

    #[test]
    fn incomplete_input_waits_byte_by_byte() {
        let frame = client_frame(true, OP_TEXT, &[b'a'; 300]);
        let mut buf = BytesMut::new();
        let mut partial = Reassembly::default();
        for (i, byte) in frame.iter().enumerate() {
            buf.extend_from_slice(&[*byte]);
            let parsed = parse(&mut buf, &mut partial, 1000).unwrap();
            assert_eq!(parsed.is_some(), i == frame.len() - 1, "at byte {i}");
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn fragments_join_around_control_frames() {
        let mut bytes = client_frame(false, OP_TEXT, b"hel");
        bytes.extend(client_frame(true, OP_PING, b"p"));
        bytes.extend(client_frame(false, OP_CONTINUATION, b"lo "));
        bytes.extend(client_frame(true, OP_CONTINUATION, "wörld".as_bytes()));
        bytes.extend(client_frame(true, OP_CLOSE, &1000u16.to_be_bytes()));
        assert_eq!(
            parse_all(&bytes, 100).unwrap(),
            vec![
                Incoming::Ping(b"p".to_vec()),
                Incoming::Text("hello wörld".into()),
                Incoming::Close
            ]
        );
    }

    #[test]
    fn limits_and_violations() {
        let big = client_frame(true, OP_TEXT, &[b'a'; 101]);
        assert_eq!(parse_all(&big, 100), Err(FrameError::TooBig));
        // The size is refused from the header alone, before the payload arrives.
        assert_eq!(parse_all(&big[..4], 100), Err(FrameError::TooBig));
        let mut fragmented = client_frame(false, OP_TEXT, &[b'a'; 60]);
        fragmented.extend(client_frame(true, OP_CONTINUATION, &[b'a'; 60]));
        assert_eq!(parse_all(&fragmented, 100), Err(FrameError::TooBig));

        let mut unmasked = client_frame(true, OP_TEXT, b"hi");
        unmasked[1] &= 0x7F;
        assert!(matches!(
            parse_all(&unmasked, 100),
            Err(FrameError::Protocol(_))
        ));
        let mut reserved = client_frame(true, OP_TEXT, b"hi");
        reserved[0] |= 0x40;
        assert!(matches!(
            parse_all(&reserved, 100),
            Err(FrameError::Protocol(_))
        ));
        for bad in [
            client_frame(true, 0x3, b""),
            client_frame(false, OP_PING, b""),
            client_frame(true, OP_PING, &[0; 126]),
            client_frame(true, OP_CONTINUATION, b"x"),
        ] {
            assert!(
                matches!(parse_all(&bad, 1000), Err(FrameError::Protocol(_))),
                "{bad:?}"
            );
        }
        let mut nested = client_frame(false, OP_TEXT, b"a");
        nested.extend(client_frame(true, OP_TEXT, b"b"));
        assert!(matches!(
            parse_all(&nested, 100),
            Err(FrameError::Protocol(_))
        ));
        assert_eq!(
            parse_all(&client_frame(true, OP_TEXT, &[0xff, 0xfe]), 100),
            Err(FrameError::InvalidUtf8)
        );
        assert_eq!(
            parse_all(&client_frame(true, OP_BINARY, &[0xff]), 100).unwrap(),
            vec![Incoming::Binary(vec![0xff])]
        );
        let mut huge = vec![0x81, 0x80 | 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(
            parse_all(&huge, 100),
            Err(FrameError::Protocol(_))
        ));
    }

    #[test]
    fn a_fragment_past_the_limit_is_refused_from_its_header() {
        let mut bytes = client_frame(false, OP_TEXT, &[b'a'; 60]);
        bytes.extend(&client_frame(true, OP_CONTINUATION, &[b'a'; 60])[..8]);
        assert_eq!(parse_all(&bytes, 100), Err(FrameError::TooBig));
    }

    #[test]
    fn nothing_is_reserved_for_an_announced_length() {
        let frame = client_frame(true, OP_TEXT, &[b'a'; 60_000]);
        let mut buf = BytesMut::from(&frame[..8]);
        let before = buf.capacity();
        assert_eq!(
            parse(&mut buf, &mut Reassembly::default(), 65_536),
            Ok(None)
        );
        assert_eq!(buf.capacity(), before);
    }

    #[test]
    fn close_frames_are_checked() {
        let close = |payload: &[u8]| parse_all(&client_frame(true, OP_CLOSE, payload), 200);
        assert_eq!(close(b"").unwrap(), vec![Incoming::Close]);
        for ok in [1000u16, 1001, 1003, 1007, 1011, 1012, 3000, 4999] {
            let mut payload = ok.to_be_bytes().to_vec();
            payload.extend_from_slice("bye é".as_bytes());
            assert_eq!(close(&payload).unwrap(), vec![Incoming::Close], "{ok}");
        }
        for bad in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert!(
                matches!(close(&bad.to_be_bytes()), Err(FrameError::Protocol(_))),
                "{bad}"
            );
        }
        assert!(matches!(close(&[3]), Err(FrameError::Protocol(_))));
        assert_eq!(close(&[0x03, 0xe8, 0xff]), Err(FrameError::InvalidUtf8));
    }

    #[test]
    fn server_frames_are_unmasked_with_minimal_lengths() {
        assert_eq!(text_frame("hi"), [0x81, 2, b'h', b'i']);
        let mid = text_frame(&"x".repeat(126));
        assert_eq!(&mid[..4], &[0x81, 126, 0, 126]);
        let long = text_frame(&"x".repeat(70_000));
        assert_eq!(&long[..2], &[0x81, 127]);
        assert_eq!(long.len(), 10 + 70_000);
        let mut close = Vec::new();
        encode_close(&mut close, 1008, &"é".repeat(100));
        assert!(close[1] <= 125, "control frames stay within 125 bytes");
        assert_eq!(close.len(), 2 + 2 + 122, "cut at a character boundary");
        assert_eq!(&close[2..4], &1008u16.to_be_bytes());
    }
}
