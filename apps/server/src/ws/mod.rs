//! Skat's own server-side WebSocket: handshake, framing and the connection's byte stream.
//!
//! Why not a general WebSocket library: a chat node holds tens of thousands of mostly idle
//! connections and, when busy, writes the same small frames to many of them. This module is
//! built for exactly that and nothing else:
//!
//! - an idle connection holds no read or write buffer (`stream`);
//! - a room event is framed once and the same bytes are copied to every member (`frame`);
//! - everything queued for a connection is written with one flush per wakeup (`stream`);
//! - after the handshake the TCP socket is taken back from hyper, so nothing of the HTTP
//!   stack stays per connection (`handshake`).
//!
//! Only the server side of RFC 6455 is implemented: text and binary messages (fragmented or
//! not), ping, pong and close, no extensions (no `permessage-deflate`) and no subprotocols.

mod frame;
mod handshake;
mod stream;

pub(crate) use frame::{
    FrameError, Incoming, OP_BINARY, OP_PING, OP_PONG, OP_TEXT, encode, encode_close, text_frame,
};
pub(crate) use handshake::{Upgraded, accept};
pub(crate) use stream::{ReadError, WsStream};
