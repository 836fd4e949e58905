//! The connection's life, seen from the chat: what to send when the socket opens (`hello`, then
//! a `join` with `since` per room so a reconnect misses nothing), what `welcome` and each close
//! code mean (reconnect, fetch a fresh token first, or stop), and the token fetches the UI makes
//! for it. The token's own bookkeeping is [`Session`](crate::session::Session)'s; this side only
//! tells it what happened to the connection.

use skat_protocol::{ClientFrame, close};

use super::{Chat, Connection, Fetched};
use crate::session::token_subject;

impl Chat {
    /// The frames to send once the socket opens: `hello`, then a `join` per known room, with
    /// `since` = the greatest id seen (of a message or a change) so the server sends exactly
    /// what we missed.
    #[must_use = "the frames it returns are to be sent"]
    pub fn on_open(&mut self) -> Vec<ClientFrame> {
        self.connection = Connection::Connecting;
        self.generation += 1;
        // A token is for one name, its `sub`: claim that one (a token fetched from the
        // operator's token URL decides who the page is, whatever it was opened as).
        let name = self.session.token.as_deref().and_then(token_subject);
        let mut frames = vec![ClientFrame::Hello {
            name: name.unwrap_or_else(|| self.name.clone()),
            token: self.session.token.clone(),
        }];
        self.joining.clear();
        for (name, room) in &mut self.rooms {
            room.joined = false;
            room.read_sent = None;
            // Answers to edits sent on the closed connection will not come.
            room.edits_sent.clear();
            if room.refused.is_some() {
                continue;
            }
            self.joining.push_back(name.clone());
            room.typing.clear();
            let since = room.since().map(|id| id.to_string());
            frames.push(ClientFrame::Join {
                room: name.clone(),
                epoch: since.as_ref().and(room.history_epoch.clone()),
                since,
            });
        }
        frames
    }

    /// Whether the connection should be retried after it closes: not after a refusal, a
    /// disconnection by the application, or an expiry with no way to a fresh token.
    pub fn should_reconnect(&self) -> bool {
        !matches!(
            self.connection,
            Connection::Refused(_) | Connection::Disconnected(_) | Connection::Expired
        )
    }

    /// The socket closed with `code` and `reason`; returns whether to reconnect. 4000 (the
    /// application disconnected us) stops with the reason shown; 4001 (token expired) fetches a
    /// fresh token before the next connection, or stops with "session expired" if there is no
    /// token URL; anything else reconnects (unless our identity was refused).
    pub fn on_socket_closed(&mut self, code: u16, reason: &str) -> bool {
        self.session.on_close();
        self.joining.clear();
        match code {
            close::DISCONNECTED => {
                let reason = if reason.is_empty() {
                    "by the application"
                } else {
                    reason
                };
                self.connection = Connection::Disconnected(reason.to_owned());
            }
            close::TOKEN_EXPIRED if !self.session.on_expired() => {
                self.connection = Connection::Expired;
            }
            _ => {}
        }
        self.should_reconnect()
    }

    /// The connection closed: reconnect attempt `attempt` comes in `retry_in_ms`.
    pub fn on_close(&mut self, attempt: u32, retry_in_ms: u32) {
        self.connection = Connection::Reconnecting {
            attempt,
            retry_in_ms,
        };
        for room in self.rooms.values_mut() {
            room.joined = false;
            room.loading_older = false;
            room.typing.clear();
        }
    }

    /// Identified: the connection is live, its token expiring at `exp` (signed mode).
    pub(super) fn on_welcome(&mut self, user: String, node: String, exp: Option<u64>, now: f64) {
        self.name = user;
        self.node = Some(node);
        self.connection = Connection::Online;
        self.notice = None;
        self.session.on_welcome(exp, now);
    }

    /// Whether a fresh token should be fetched for the live connection now.
    pub fn refresh_due(&self, now: f64) -> bool {
        self.connection == Connection::Online && self.session.refresh_due(now)
    }

    /// The UI fetched a fresh token: what to do with it (see [`Fetched`]), a `refresh` to send
    /// among others.
    #[must_use = "the frames it returns are to be sent"]
    pub fn token_fetched(&mut self, token: String) -> Fetched {
        let online = self.connection == Connection::Online;
        self.session.fetched(token, online)
    }

    /// Fetching a token failed at `now` with `error` (shown); returns whether a connection was
    /// waiting for it and should back off and retry.
    pub fn token_fetch_failed(&mut self, error: &str, now: f64) -> bool {
        self.notice = Some(format!("Could not get a fresh token: {error}"));
        self.session.fetch_failed(now)
    }
}
