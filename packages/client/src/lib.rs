//! A typed async client for Skat servers.
//!
//! It speaks the wire protocol through [`skat_protocol`] types over `tokio-tungstenite`, for
//! integration tests, bots, load tools and terminal clients. No `tungstenite` type appears in
//! its API (errors carry the transport's as an opaque source, raw frames are [`RawFrame`]), so
//! an upgrade of the WebSocket library does not break its users.
//!
//! Besides messages, it edits, deletes and reacts to them ([`Client::edit`], [`Client::delete`],
//! [`Client::react`], [`Client::send_reply`]) and moves the user's read marker
//! ([`Client::read`]); the outcomes are events like any other (`edited`, `deleted`, `reacted`,
//! `read`). To resume a room, keep the greatest id seen in it, of a message or a change, and
//! pass it to [`Client::join_since`]. Apply changes idempotently: one made while a join was
//! under way may arrive after the `joined` that already shows its outcome, and each carries
//! that outcome (body, tombstone, resulting count), so setting it again is harmless.
//!
//! ```no_run
//! # async fn demo() -> Result<(), skat_client::ClientError> {
//! use skat_client::Client;
//! use skat_protocol::ServerFrame;
//!
//! let mut client = Client::connect("ws://127.0.0.1:3000/ws", "alice").await?;
//! client.join("general").await?;
//! client.send_message("general", "hi", Some("c-1")).await?;
//! while let Ok(frame) = client.next_event().await {
//!     if let ServerFrame::Message(message) = frame {
//!         println!("{}: {}", message.from, message.body);
//!     }
//! }
//! # Ok(()) }
//! ```

use futures_util::{SinkExt, StreamExt};
use skat_protocol::{
    ClientFrame, DecodeError, ErrorCode, MessageId, ServerFrame, decode_server, encode_client,
};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Everything that can go wrong talking to a server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The WebSocket could not be opened or failed (the WebSocket library's error, as an
    /// opaque source).
    #[error("websocket error: {0}")]
    WebSocket(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The server answered the WebSocket upgrade with this HTTP status instead (say 403 for a
    /// refused origin, 429 past the connections allowed per address).
    #[error("websocket upgrade refused with HTTP status {status}")]
    Rejected {
        /// The HTTP status code.
        status: u16,
    },
    /// The server closed the connection.
    #[error("connection closed by the server (code {code:?}): {reason}")]
    Closed {
        /// The close code, if the server sent a close frame.
        code: Option<u16>,
        /// The close reason, empty if none.
        reason: String,
    },
    /// The server sent something that is not a protocol frame.
    #[error("undecodable server frame: {0}")]
    Decode(#[from] DecodeError),
    /// The server refused `hello`.
    #[error("hello refused ({code}): {message}")]
    Refused {
        /// The error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The server answered `hello` with something else than `welcome` or an error.
    #[error("expected welcome, got {0:?}")]
    Unexpected(Box<ServerFrame>),
}

/// An error of the WebSocket library, before it becomes a [`ClientError`] (a private type, so
/// that no `From` impl names the library in the public API).
struct Transport(tungstenite::Error);

impl From<Transport> for ClientError {
    fn from(Transport(err): Transport) -> Self {
        match err {
            tungstenite::Error::Http(response) => Self::Rejected {
                status: response.status().as_u16(),
            },
            other => Self::WebSocket(Box::new(other)),
        }
    }
}

/// A WebSocket frame that is not a protocol message, for tools and tests that send what a
/// normal client would not ([`Client::send_ws`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawFrame {
    /// A binary frame (the protocol is text only).
    Binary(Vec<u8>),
    /// A ping with this payload.
    Ping(Vec<u8>),
    /// A pong with this payload (unsolicited, if no ping asked for it).
    Pong(Vec<u8>),
    /// A close frame without a code: the server closes too, after the frames it has queued.
    Close,
}

impl From<RawFrame> for WsMessage {
    fn from(frame: RawFrame) -> Self {
        match frame {
            RawFrame::Binary(data) => Self::Binary(data.into()),
            RawFrame::Ping(data) => Self::Ping(data.into()),
            RawFrame::Pong(data) => Self::Pong(data.into()),
            RawFrame::Close => Self::Close(None),
        }
    }
}

/// A connection to a Skat server.
#[derive(Debug)]
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    user: Option<String>,
    node: Option<String>,
    /// Signed mode: when the token expires (Unix seconds), from `welcome` and `refreshed`.
    exp: Option<u64>,
}

impl Client {
    /// Connects to `url` (e.g. `ws://host:3000/ws`) and identifies as `name`.
    pub async fn connect(url: &str, name: &str) -> Result<Self, ClientError> {
        let mut client = Self::connect_raw(url).await?;
        client.hello(name).await?;
        Ok(client)
    }

    /// Connects to `url` and identifies as `name` with a signed-mode `token` (a JWT the
    /// application's backend minted for `name`).
    pub async fn connect_signed(url: &str, name: &str, token: &str) -> Result<Self, ClientError> {
        let mut client = Self::connect_raw(url).await?;
        client.hello_with(name, Some(token)).await?;
        Ok(client)
    }

    /// Opens the WebSocket without sending `hello`.
    pub async fn connect_raw(url: &str) -> Result<Self, ClientError> {
        // Nagle's algorithm would delay small frames behind unacknowledged ones.
        let (ws, _response) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .map_err(Transport)?;
        Ok(Self {
            ws,
            user: None,
            node: None,
            exp: None,
        })
    }

    /// Sends `hello` and waits for `welcome`.
    pub async fn hello(&mut self, name: &str) -> Result<(), ClientError> {
        self.hello_with(name, None).await
    }

    /// Sends `hello` with a signed-mode `token`, if given, and waits for `welcome`.
    pub async fn hello_with(&mut self, name: &str, token: Option<&str>) -> Result<(), ClientError> {
        self.send_frame(&ClientFrame::Hello {
            name: name.to_owned(),
            token: token.map(str::to_owned),
        })
        .await?;
        match self.next_event().await? {
            ServerFrame::Welcome {
                user, node, exp, ..
            } => {
                self.user = Some(user);
                self.node = Some(node);
                self.exp = exp;
                Ok(())
            }
            ServerFrame::Error { code, message, .. } => Err(ClientError::Refused { code, message }),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    /// The name the server welcomed us as.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The id of the node serving this connection.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// Signed mode: when the connection's token expires, in Unix seconds (from `welcome`, then
    /// from each `refreshed` read by [`Client::next_event`]). The server closes the connection
    /// then (code [`skat_protocol::close::TOKEN_EXPIRED`]) unless [`Client::refresh`] replaced
    /// the token.
    pub fn expires(&self) -> Option<u64> {
        self.exp
    }

    /// Signed mode: sends a fresh `token` for the same user before the current one expires.
    /// The answer is a `refreshed` event, or an `unauthorized` error if the server refused the
    /// token (the connection then keeps its current one).
    pub async fn refresh(&mut self, token: &str) -> Result<(), ClientError> {
        self.send_frame(&ClientFrame::Refresh {
            token: token.to_owned(),
        })
        .await
    }

    /// Asks to join `room`; the answer is a `joined` event.
    pub async fn join(&mut self, room: &str) -> Result<(), ClientError> {
        self.send_frame(&ClientFrame::Join {
            room: room.to_owned(),
            since: None,
            epoch: None,
        })
        .await
    }

    /// Asks to join `room` and recover the messages after `since`.
    pub async fn join_since(&mut self, room: &str, since: MessageId) -> Result<(), ClientError> {
        self.join_resume(room, since, None).await
    }

    /// Asks to join `room` again and recover the messages after `since`, the last id it got in
    /// the room, from the history named by `epoch` (the `epoch` of the `joined` that `since`
    /// followed): if the room's history was lost since, `joined` says `recovered: false`
    /// instead of passing off a new history's messages as what was missed.
    pub async fn join_resume(
        &mut self,
        room: &str,
        since: MessageId,
        epoch: Option<&str>,
    ) -> Result<(), ClientError> {
        self.send_frame(&ClientFrame::Join {
            room: room.to_owned(),
            since: Some(since.to_string()),
            epoch: epoch.map(str::to_owned),
        })
        .await
    }

    /// Asks to leave `room`; the answer is a `left` event.
    pub async fn leave(&mut self, room: &str) -> Result<(), ClientError> {
        self.send_frame(&ClientFrame::Leave {
            room: room.to_owned(),
        })
        .await
    }

    /// Sends a message; its confirmation is our own `message` event carrying `nonce`.
    pub async fn send_message(
        &mut self,
        room: &str,
        body: &str,
        nonce: Option<&str>,
    ) -> Result<(), ClientError> {
        let frame = ClientFrame::Send {
            room: room.to_owned(),
            body: body.to_owned(),
            nonce: nonce.map(str::to_owned),
            reply_to: None,
        };
        self.send_frame(&frame).await
    }

    /// Sends a message replying to `reply_to`, a message of the same room (as received); like
    /// [`Client::send_message`] otherwise. A `reply_to` the room does not hold (or deleted) is
    /// refused with `invalid_reply`.
    pub async fn send_reply(
        &mut self,
        room: &str,
        body: &str,
        nonce: Option<&str>,
        reply_to: MessageId,
    ) -> Result<(), ClientError> {
        let frame = ClientFrame::Send {
            room: room.to_owned(),
            body: body.to_owned(),
            nonce: nonce.map(str::to_owned),
            reply_to: Some(reply_to.to_string()),
        };
        self.send_frame(&frame).await
    }

    /// Replaces the body of message `id` (ours, or anyone's in a room our token moderates);
    /// its confirmation is the `edited` event every member gets, carrying `nonce`. Retries with
    /// the same nonce are carried out once.
    pub async fn edit(
        &mut self,
        room: &str,
        id: MessageId,
        body: &str,
        nonce: Option<&str>,
    ) -> Result<(), ClientError> {
        let frame = ClientFrame::Edit {
            room: room.to_owned(),
            id: id.to_string(),
            body: body.to_owned(),
            nonce: nonce.map(str::to_owned),
        };
        self.send_frame(&frame).await
    }

    /// Deletes message `id` (as for [`Client::edit`], who may); confirmed by a `deleted` event.
    pub async fn delete(
        &mut self,
        room: &str,
        id: MessageId,
        nonce: Option<&str>,
    ) -> Result<(), ClientError> {
        let frame = ClientFrame::Delete {
            room: room.to_owned(),
            id: id.to_string(),
            nonce: nonce.map(str::to_owned),
        };
        self.send_frame(&frame).await
    }

    /// Adds (`add`) or takes back our reaction with `emoji` to message `id`; confirmed by a
    /// `reacted` event (to us alone, with the current count, if it changed nothing).
    pub async fn react(
        &mut self,
        room: &str,
        id: MessageId,
        emoji: &str,
        add: bool,
        nonce: Option<&str>,
    ) -> Result<(), ClientError> {
        let frame = ClientFrame::React {
            room: room.to_owned(),
            id: id.to_string(),
            emoji: emoji.to_owned(),
            add,
            nonce: nonce.map(str::to_owned),
        };
        self.send_frame(&frame).await
    }

    /// Marks everything up to `id` read in `room`. When the marker moved, every connection of
    /// our user, on every node, gets a `read` event with the unread count after it.
    pub async fn read(&mut self, room: &str, id: MessageId) -> Result<(), ClientError> {
        self.send_frame(&ClientFrame::Read {
            room: room.to_owned(),
            id: id.to_string(),
        })
        .await
    }

    /// Tells the room we are typing.
    pub async fn typing(&mut self, room: &str) -> Result<(), ClientError> {
        self.send_frame(&ClientFrame::Typing {
            room: room.to_owned(),
        })
        .await
    }

    /// Asks for a page of history; the answer is a `history` event.
    pub async fn history(
        &mut self,
        room: &str,
        before: Option<MessageId>,
        limit: Option<u32>,
    ) -> Result<(), ClientError> {
        let frame = ClientFrame::History {
            room: room.to_owned(),
            before: before.map(|id| id.to_string()),
            limit,
        };
        self.send_frame(&frame).await
    }

    /// Searches a joined room for messages holding every word of `q` (plain words, the last
    /// one may be a word's start), older than `before` if given; the answer is a `search`
    /// event (newest first), or an `unsupported` error where the server keeps no index.
    pub async fn search(
        &mut self,
        room: &str,
        q: &str,
        before: Option<MessageId>,
        limit: Option<u32>,
    ) -> Result<(), ClientError> {
        let frame = ClientFrame::Search {
            room: room.to_owned(),
            q: q.to_owned(),
            before: before.map(|id| id.to_string()),
            limit,
        };
        self.send_frame(&frame).await
    }

    /// Asks for a page of a joined room's members with names after `after` (the first page
    /// when `None`); the answer is a `members` event, whose `next` is the `after` of the next
    /// page. `joined` lists only the first 1000 members: when it says `more_members`, page on
    /// from its last name.
    pub async fn members(&mut self, room: &str, after: Option<&str>) -> Result<(), ClientError> {
        let frame = ClientFrame::Members {
            room: room.to_owned(),
            after: after.map(str::to_owned),
            limit: None,
        };
        self.send_frame(&frame).await
    }

    /// Sends any client frame.
    pub async fn send_frame(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        self.send_raw(encode_client(frame)).await
    }

    /// Sends arbitrary text as one frame (tools and tests use it to send invalid input).
    pub async fn send_raw(&mut self, text: impl Into<String>) -> Result<(), ClientError> {
        self.ws
            .send(WsMessage::text(text.into()))
            .await
            .map_err(Transport)?;
        Ok(())
    }

    /// Sends a WebSocket frame that is not a protocol message (e.g. a binary frame).
    pub async fn send_ws(&mut self, frame: RawFrame) -> Result<(), ClientError> {
        self.ws.send(frame.into()).await.map_err(Transport)?;
        Ok(())
    }

    /// The next frame from the server; control frames, and frame types newer than this client,
    /// are skipped.
    ///
    /// Cancel-safe: it can be raced against a timeout without losing a frame.
    pub async fn next_event(&mut self) -> Result<ServerFrame, ClientError> {
        loop {
            match self.ws.next().await {
                Some(Ok(WsMessage::Text(text))) => match decode_server(text.as_str()) {
                    Ok(frame) => {
                        if let ServerFrame::Refreshed { exp } = &frame {
                            self.exp = *exp;
                        }
                        return Ok(frame);
                    }
                    Err(err) if err.code == ErrorCode::UnknownType => continue,
                    Err(err) => return Err(err.into()),
                },
                Some(Ok(WsMessage::Close(frame))) => {
                    return Err(ClientError::Closed {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    });
                }
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Err(Transport(err).into()),
                None => {
                    return Err(ClientError::Closed {
                        code: None,
                        reason: String::new(),
                    });
                }
            }
        }
    }

    /// The next text frame, undecoded (for tools that only need part of it, like load probes).
    pub async fn next_text(&mut self) -> Result<String, ClientError> {
        loop {
            match self.ws.next().await {
                Some(Ok(WsMessage::Text(text))) => return Ok(text.as_str().to_owned()),
                Some(Ok(WsMessage::Close(_))) | None => {
                    return Err(ClientError::Closed {
                        code: None,
                        reason: String::new(),
                    });
                }
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Err(Transport(err).into()),
            }
        }
    }

    /// Closes the connection politely.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.ws.close(None).await.map_err(Transport)?;
        Ok(())
    }
}
