//! The WebSocket, reconnected with backoff: it feeds server frames to the [`Chat`] state and
//! sends the client frames the state returns. Every change that may call for frames, the
//! components' included, goes through [`ReconnectingSocket::dispatch`], which sends what the
//! change returned: the one place where frames leave. It also fetches fresh tokens when the
//! state asks (before a connection that needs one, or to refresh the live connection's), since
//! a token is for the connection.

use std::time::Duration;

use leptos::prelude::*;
use skat_protocol::{ClientFrame, decode_server, encode_client};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

use super::token::fetch_token;
use super::{now, ws_url};
use skat_web::state::{self, Chat, Fetched, Outgoing};

/// The connection and its reconnect bookkeeping; cheap to copy into callbacks.
#[derive(Clone, Copy)]
pub(super) struct ReconnectingSocket {
    chat: RwSignal<Chat>,
    socket: StoredValue<Option<Socket>, LocalStorage>,
    failures: StoredValue<u32>,
}

/// A WebSocket with the callbacks it calls, which live exactly as long as it: dropped (with
/// the handlers cleared) when the next attempt replaces it, not leaked one set per attempt.
struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        // The callbacks go with this value: the socket must not call them afterwards.
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

impl ReconnectingSocket {
    pub(super) fn new(chat: RwSignal<Chat>) -> Self {
        Self {
            chat,
            socket: StoredValue::new_local(None),
            failures: StoredValue::new(0),
        }
    }

    /// Changes the state with `change` and sends the frames it returns ([`Outgoing`]); returns
    /// what it returned, for whatever else it says (`None` once the state is gone with its
    /// view). Frames of a change made while the socket is not open are not sent: the state
    /// regenerates what matters when the next connection opens.
    pub(super) fn dispatch<R: Outgoing>(self, change: impl FnOnce(&mut Chat) -> R) -> Option<R> {
        let outcome = self.chat.try_update(change)?;
        for frame in outcome.frames() {
            self.send(frame);
        }
        Some(outcome)
    }

    /// Sends a frame if the socket is open.
    fn send(self, frame: &ClientFrame) {
        self.socket.with_value(|socket| {
            if let Some(socket) = socket
                .as_ref()
                .filter(|s| s.ws.ready_state() == WebSocket::OPEN)
            {
                let _ = socket.ws.send_with_str(&encode_client(frame));
            }
        });
    }

    /// Opens a connection, after fetching a token if the state needs one first.
    pub(super) fn connect(self) {
        // The previous attempt's socket and callbacks (never dropped from inside them).
        self.socket.set_value(None);
        if self.chat.with_untracked(|c| c.session.needs_token()) {
            return self.fetch_token();
        }
        let Ok(ws) = WebSocket::new(&ws_url()) else {
            return self.retry_later();
        };
        let on_open = Closure::<dyn FnMut()>::new(move || {
            self.dispatch(Chat::on_open);
        });
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let Some(text) = event.data().as_string() else {
                return;
            };
            // Frames this version does not know are skipped (forward compatibility).
            let Ok(frame) = decode_server(&text) else {
                return;
            };
            if matches!(frame, skat_protocol::ServerFrame::Welcome { .. }) {
                self.failures.set_value(0);
            }
            self.dispatch(|chat| chat.apply(frame, now()));
        });
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            // The socket (and this callback) is dropped by the next attempt, not from here.
            let (code, reason) = (event.code(), event.reason());
            if self
                .chat
                .try_update(|c| c.on_socket_closed(code, &reason))
                .unwrap_or(false)
            {
                self.retry_later();
            }
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        self.socket.set_value(Some(Socket {
            ws,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        }));
    }

    /// Refreshes the live connection's token if it is time, and asks again for member pages
    /// the server refused; called on a timer.
    pub(super) fn tick(self) {
        if self.chat.with_untracked(|c| c.refresh_due(now())) {
            self.fetch_token();
        }
        // Member pages refused as over the request rate, asked for again.
        let retrying = self
            .chat
            .with_untracked(|c| c.rooms.values().any(|r| r.members_retry_at.is_some()));
        if retrying {
            self.dispatch(|chat| chat.retry_members(now()));
        }
    }

    /// Fetches a token from the token URL (unless a fetch is in flight), then refreshes the
    /// live connection with it or opens the connection that waited for it.
    fn fetch_token(self) {
        let Some(url) = self.chat.try_update(|c| c.session.begin_fetch()).flatten() else {
            return;
        };
        leptos::task::spawn_local(async move {
            match fetch_token(&url).await {
                // A `refresh` is sent by the dispatch.
                Ok(token) => {
                    if let Some(Fetched::Connect) = self.dispatch(|c| c.token_fetched(token)) {
                        self.connect();
                    }
                }
                Err(error) => {
                    if self
                        .chat
                        .try_update(|c| c.token_fetch_failed(&error, now()))
                        .unwrap_or(false)
                    {
                        self.retry_later();
                    }
                }
            }
        });
    }

    /// Schedules the next attempt with exponential backoff and jitter.
    fn retry_later(self) {
        let attempt = self.failures.get_value();
        self.failures.set_value(attempt + 1);
        let delay = state::backoff_ms(attempt, js_sys::Math::random());
        self.chat.update(|chat| chat.on_close(attempt + 1, delay));
        set_timeout(
            move || self.connect(),
            Duration::from_millis(u64::from(delay)),
        );
    }
}
