//! The chat UI: Leptos components and the WebSocket connection (wasm only).
//!
//! One [`Chat`] lives in a signal; the socket feeds it server frames and sends the client frames
//! it returns. Components only read it. User text is always rendered as text nodes, never as HTML.

use std::time::Duration;

use leptos::prelude::*;
use skat_protocol::{ClientFrame, Message, decode_server, encode_client};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

use crate::state::{self, Chat, Connection, Pending};

/// localStorage key of the chosen display name.
const NAME_KEY: &str = "skat.name";
/// localStorage key of the joined rooms, rejoined on the next visit.
const ROOMS_KEY: &str = "skat.rooms";
/// Room joined on a first visit.
const DEFAULT_ROOM: &str = "general";

fn storage() -> Option<web_sys::Storage> {
    window().local_storage().ok().flatten()
}

fn load(key: &str) -> Option<String> {
    storage().and_then(|s| s.get_item(key).ok().flatten())
}

fn save(key: &str, value: &str) {
    if let Some(s) = storage() {
        let _ = s.set_item(key, value);
    }
}

fn now() -> f64 {
    js_sys::Date::now()
}

/// The WebSocket URL next to the page: works wherever the app is served from.
fn ws_url() -> String {
    let location = window().location();
    let href = location.href().unwrap_or_default();
    let base = href.split(['?', '#']).next().unwrap_or_default();
    let dir = &base[..base.rfind('/').map_or(base.len(), |i| i + 1)];
    let dir = dir
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    format!("{dir}ws")
}

/// Local time of a message as `HH:MM`.
fn local_time(ts: u64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ts as f64));
    format!("{:02}:{:02}", date.get_hours(), date.get_minutes())
}

/// `name` and `token` from the page's fragment (`#name=alice&token=...`), which is how an
/// application hands a signed identity to the app without it reaching server logs. The token is
/// then removed from the address bar (and this history entry), so a copied link does not leak it.
fn fragment_identity() -> (Option<String>, Option<String>) {
    let location = window().location();
    let fragment = state::parse_fragment(&location.hash().unwrap_or_default());
    if fragment.token.is_some() {
        let path = location.pathname().unwrap_or_default();
        let search = location.search().unwrap_or_default();
        let url = format!("{path}{search}{}", fragment.scrubbed);
        if let Ok(history) = window().history() {
            let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url));
        }
    }
    (fragment.name, fragment.token)
}

/// The app: asks for a name once (remembered), then shows the chat.
#[allow(unreachable_pub)] // `#[component]` generates a `pub` props type.
#[component]
pub(crate) fn App() -> impl IntoView {
    let (given, token) = fragment_identity();
    let name = RwSignal::new(
        given
            .or_else(|| load(NAME_KEY))
            .filter(|n| state::check_name(n).is_ok()),
    );
    let token = StoredValue::new(token);
    view! {
        {move || match name.get() {
            Some(n) => view! { <ChatView name=n token=token.get_value() /> }.into_any(),
            None => view! {
                <NameForm on_name=move |n: String| {
                    save(NAME_KEY, &n);
                    name.set(Some(n));
                } />
            }
            .into_any(),
        }}
    }
}

/// Asks for a display name.
#[component]
fn NameForm(
    /// Called with a valid name.
    on_name: impl Fn(String) + 'static,
) -> impl IntoView {
    let text = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let n = text.get_untracked().trim().to_owned();
        match state::check_name(&n) {
            Ok(()) => on_name(n),
            Err(e) => error.set(Some(e)),
        }
    };
    view! {
        <main class="welcome">
            <h1>"Skat"</h1>
            <form on:submit=submit>
                <label for="name-input">"Choose a display name"</label>
                <input
                    id="name-input"
                    autocomplete="nickname"
                    maxlength="32"
                    prop:value=move || text.get()
                    on:input=move |ev| text.set(event_target_value(&ev))
                />
                <button id="name-submit" type="submit">"Start chatting"</button>
                <p class="error" role="alert">{move || error.get()}</p>
            </form>
        </main>
    }
}

/// The connection and its reconnect bookkeeping; cheap to copy into callbacks.
#[derive(Clone, Copy)]
struct Client {
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

impl Client {
    fn new(chat: RwSignal<Chat>) -> Self {
        Self {
            chat,
            socket: StoredValue::new_local(None),
            failures: StoredValue::new(0),
        }
    }

    /// Sends a frame if the socket is open (frames are regenerated from state on reconnect).
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

    fn connect(self) {
        // The previous attempt's socket and callbacks (never dropped from inside them).
        self.socket.set_value(None);
        let Ok(ws) = WebSocket::new(&ws_url()) else {
            return self.retry_later();
        };
        let on_open = Closure::<dyn FnMut()>::new(move || {
            let frames = self.chat.try_update(Chat::on_open).unwrap_or_default();
            for frame in &frames {
                self.send(frame);
            }
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
            let outbox = self.chat.try_update(|chat| {
                chat.apply(frame, now());
                std::mem::take(&mut chat.outbox)
            });
            for frame in outbox.unwrap_or_default() {
                self.send(&frame);
            }
        });
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |_: CloseEvent| {
            // The socket (and this callback) is dropped by the next attempt, not from here.
            if self.chat.with_untracked(Chat::should_reconnect) {
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

/// The chat screen: rooms, the active room's messages and composer, members.
#[component]
fn ChatView(
    /// The user's display name.
    name: String,
    /// Signed mode: the token vouching for `name`.
    token: Option<String>,
) -> impl IntoView {
    let nonce_prefix = format!(
        "w{:08x}",
        (js_sys::Math::random() * f64::from(u32::MAX)) as u32
    );
    let mut initial = Chat::new(name, nonce_prefix);
    initial.token = token;
    let chat = RwSignal::new(initial);
    let client = Client::new(chat);
    let rooms = load(ROOMS_KEY).unwrap_or_else(|| DEFAULT_ROOM.to_owned());
    chat.update(|c| {
        for room in rooms.split(',').filter(|r| state::check_room(r).is_ok()) {
            c.join(room);
        }
        if let Some(first) = c.rooms.keys().next().cloned() {
            c.switch_to(&first);
        }
    });
    client.connect();

    // Typing notices expire without any frame arriving.
    let ticker = set_interval_with_handle(
        move || {
            if chat.with_untracked(|c| c.rooms.values().any(|r| !r.typing.is_empty())) {
                chat.update(|c| {
                    c.expire_typing(now());
                });
            }
        },
        Duration::from_millis(500),
    );
    on_cleanup(move || {
        if let Ok(handle) = ticker {
            handle.clear();
        }
    });
    // Remember the joined rooms for the next visit: written when they change, not on every
    // frame (the memo only notifies when its value differs).
    let names = Memo::new(move |_| chat.with(|c| c.rooms.keys().cloned().collect::<Vec<_>>()));
    Effect::new(move |_| names.with(|names| save(ROOMS_KEY, &names.join(","))));

    view! {
        <div class="app">
            <Sidebar chat=chat client=client />
            <main class="room">
                <Header chat=chat />
                <Notice chat=chat />
                <Messages chat=chat client=client />
                <TypingLine chat=chat />
                <Composer chat=chat client=client />
            </main>
            <Members chat=chat />
        </div>
    }
}

/// Joined rooms with unread counts, leave buttons, and a form to join more.
#[component]
fn Sidebar(
    /// The chat state.
    chat: RwSignal<Chat>,
    /// The connection.
    client: Client,
) -> impl IntoView {
    let text = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let join = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let room = text.get_untracked().trim().to_lowercase();
        if let Err(e) = state::check_room(&room) {
            error.set(Some(e));
            return;
        }
        error.set(None);
        text.set(String::new());
        if let Some(frame) = chat.try_update(|c| c.join(&room)).flatten() {
            client.send(&frame);
        }
    };
    let tabs = move || {
        chat.with(|c| {
            c.rooms
                .iter()
                .map(|(name, r)| {
                    (
                        name.clone(),
                        r.unread,
                        c.active.as_deref() == Some(name.as_str()),
                    )
                })
                .collect::<Vec<_>>()
        })
    };
    view! {
        <nav class="sidebar" aria-label="Rooms">
            <h2>"Rooms"</h2>
            <ul class="rooms">
                <For
                    each=tabs
                    key=|tab| tab.clone()
                    children=move |(name, unread, active)| {
                        let switch_name = name.clone();
                        let leave_name = name.clone();
                        view! {
                            <li class="room-item" class:active=active>
                                <button
                                    class="room-tab"
                                    data-room=name.clone()
                                    aria-current=if active { "page" } else { "false" }
                                    on:click=move |_| chat.update(|c| c.switch_to(&switch_name))
                                >
                                    "#"
                                    {name.clone()}
                                    <Show when=move || { unread > 0 }>
                                        <span class="unread" aria-label="unread messages">
                                            {unread}
                                        </span>
                                    </Show>
                                </button>
                                <button
                                    class="leave"
                                    title="Leave room"
                                    aria-label=format!("Leave {name}")
                                    on:click=move |_| {
                                        if let Some(frame) = chat.try_update(|c| c.leave(&leave_name)).flatten() {
                                            client.send(&frame);
                                        }
                                    }
                                >
                                    "×"
                                </button>
                            </li>
                        }
                    }
                />
            </ul>
            <form class="join" on:submit=join>
                <input
                    id="join-input"
                    aria-label="Room to join"
                    placeholder="join a room"
                    maxlength="64"
                    prop:value=move || text.get()
                    on:input=move |ev| text.set(event_target_value(&ev))
                />
                <button id="join-submit" type="submit">"Join"</button>
                <p class="error" role="alert">{move || error.get()}</p>
            </form>
        </nav>
    }
}

/// Room name, connection state and serving node: always visible.
#[component]
fn Header(
    /// The chat state.
    chat: RwSignal<Chat>,
) -> impl IntoView {
    let status = move || {
        chat.with(|c| match &c.connection {
            Connection::Online => ("online", "Connected".to_owned()),
            Connection::Refused(reason) => ("refused", format!("Not authorized: {reason}")),
            Connection::Connecting => ("connecting", "Connecting…".to_owned()),
            Connection::Reconnecting {
                attempt,
                retry_in_ms,
            } => (
                "reconnecting",
                format!(
                    "Reconnecting (attempt {attempt}, next in {:.1} s)…",
                    f64::from(*retry_in_ms) / 1000.0
                ),
            ),
        })
    };
    view! {
        <header class="room-header">
            <h1>{move || chat.with(|c| c.active.as_ref().map(|r| format!("#{r}")).unwrap_or_default())}</h1>
            <div class="meta">
                <span id="status" class=move || format!("status {}", status().0) role="status">
                    {move || status().1}
                </span>
                <span id="node" title="Server node of this connection">
                    {move || chat.with(|c| c.node.clone().map(|n| format!("node {n}")).unwrap_or_default())}
                </span>
                <span class="me">{move || chat.with(|c| format!("you: {}", c.name))}</span>
            </div>
        </header>
    }
}

/// Errors not tied to a message.
#[component]
fn Notice(
    /// The chat state.
    chat: RwSignal<Chat>,
) -> impl IntoView {
    view! {
        <Show when=move || chat.with(|c| c.notice.is_some())>
            <div class="notice" role="alert">
                {move || chat.with(|c| c.notice.clone())}
                <button aria-label="Dismiss" on:click=move |_| chat.update(|c| c.notice = None)>
                    "×"
                </button>
            </div>
        </Show>
    }
}

/// The active room's messages, pending sends, and "load older"; sticks to the bottom unless the
/// user scrolled up.
#[component]
fn Messages(
    /// The chat state.
    chat: RwSignal<Chat>,
    /// The connection.
    client: Client,
) -> impl IntoView {
    let list = NodeRef::<leptos::html::Div>::new();
    let at_bottom = StoredValue::new(true);
    // The list is copied out of the state only when the active room or its messages change,
    // not on every frame (typing, presence, another room's message...).
    let shown = Memo::new(move |_| {
        chat.with(|c| {
            c.active
                .clone()
                .zip(c.active_room().map(state::Room::version))
        })
    });
    let messages = Memo::new(move |_| {
        shown.track();
        chat.with_untracked(|c| {
            c.active_room()
                .map(|r| r.messages.clone())
                .unwrap_or_default()
        })
    });
    let pending = Memo::new(move |_| {
        chat.with(|c| {
            c.active_room()
                .map(|r| r.pending.clone())
                .unwrap_or_default()
        })
    });
    let has_more = move || chat.with(|c| c.active_room().is_some_and(|r| r.has_more));
    let me = move || chat.with_untracked(|c| c.name.clone());

    Effect::new(move |_| {
        // Re-run whenever the visible list changes.
        shown.track();
        pending.with(Vec::len);
        if at_bottom.get_value() {
            request_animation_frame(move || {
                if let Some(el) = list.get_untracked() {
                    el.set_scroll_top(el.scroll_height());
                }
            });
        }
    });
    let on_scroll = move |_| {
        if let Some(el) = list.get_untracked() {
            at_bottom.set_value(el.scroll_top() + el.client_height() >= el.scroll_height() - 40);
        }
    };
    let load_older = move |_| {
        let room = chat.with_untracked(|c| c.active.clone());
        if let Some(frame) =
            room.and_then(|room| chat.try_update(|c| c.load_older(&room)).flatten())
        {
            client.send(&frame);
        }
    };

    view! {
        <div class="messages" node_ref=list on:scroll=on_scroll aria-live="polite">
            <Show when=has_more>
                <button id="load-older" class="load-older" on:click=load_older>
                    "Load older messages"
                </button>
            </Show>
            <For
                each=move || messages.get()
                key=|m| m.id.clone()
                children=move |m: Message| {
                    let own = m.from == me();
                    view! {
                        <article class="message" class:own=own data-id=m.id>
                            <span class="from">{m.from.clone()}</span>
                            <time class="time">{local_time(m.ts)}</time>
                            <p class="body">{m.body.clone()}</p>
                        </article>
                    }
                }
            />
            <For
                each=move || pending.get()
                key=|p| (p.nonce.clone(), p.error.clone())
                children=move |p: Pending| view! { <PendingRow chat=chat client=client pending=p /> }
            />
        </div>
    }
}

/// One of our messages awaiting its echo, or failed with a retry.
#[component]
fn PendingRow(
    /// The chat state.
    chat: RwSignal<Chat>,
    /// The connection.
    client: Client,
    /// The pending send.
    pending: Pending,
) -> impl IntoView {
    let failed = pending.error.is_some();
    let (retry_nonce, edit_nonce) = (pending.nonce.clone(), pending.nonce.clone());
    let retry = move |_| {
        let room = chat.with_untracked(|c| c.active.clone());
        if let Some(frame) =
            room.and_then(|room| chat.try_update(|c| c.retry(&room, &retry_nonce)).flatten())
        {
            client.send(&frame);
        }
    };
    let edit = move |_| {
        let room = chat.with_untracked(|c| c.active.clone());
        let text =
            room.and_then(|room| chat.try_update(|c| c.discard(&room, &edit_nonce)).flatten());
        let area = document()
            .get_element_by_id("composer")
            .and_then(|el| el.dyn_into::<web_sys::HtmlTextAreaElement>().ok());
        if let (Some(text), Some(area)) = (text, area) {
            area.set_value(&text);
            let _ = area.focus();
        }
    };
    view! {
        <article class="message own pending" class:failed=failed>
            <span class="from">{move || chat.with_untracked(|c| c.name.clone())}</span>
            <span class="time">{if failed { "not sent" } else { "sending…" }}</span>
            <p class="body">{pending.body.clone()}</p>
            <Show when=move || failed>
                <p class="error" role="alert">{pending.error.clone()}</p>
                <button class="retry" on:click=retry.clone()>"Retry"</button>
                <button class="edit" on:click=edit.clone()>"Edit"</button>
            </Show>
        </article>
    }
}

/// "bob is typing…", expiring by itself.
#[component]
fn TypingLine(
    /// The chat state.
    chat: RwSignal<Chat>,
) -> impl IntoView {
    let line = move || {
        chat.with(|c| {
            let users: Vec<String> = c
                .active_room()
                .map(|r| {
                    r.typing_users(now())
                        .into_iter()
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            match users.as_slice() {
                [] => String::new(),
                [one] => format!("{one} is typing…"),
                [a, b] => format!("{a} and {b} are typing…"),
                _ => "several people are typing…".to_owned(),
            }
        })
    };
    view! { <div id="typing" class="typing" aria-live="polite">{line}</div> }
}

/// Message input: Enter sends, Shift+Enter inserts a new line.
#[component]
fn Composer(
    /// The chat state.
    chat: RwSignal<Chat>,
    /// The connection.
    client: Client,
) -> impl IntoView {
    let area = NodeRef::<leptos::html::Textarea>::new();
    let send = move || {
        let Some(el) = area.get_untracked() else {
            return;
        };
        let text = el.value();
        let room = chat.with_untracked(|c| c.active.clone());
        let frame =
            room.and_then(|room| chat.try_update(|c| c.send(&room, &text, now())).flatten());
        match frame {
            Some(frame) => {
                client.send(&frame);
                el.set_value("");
            }
            // Not connected (reconnecting): keep the text.
            None if !text.trim().is_empty() => {
                chat.update(|c| {
                    c.notice = Some(
                        "not connected: your message is kept, send it again once connected".into(),
                    );
                });
            }
            None => {}
        }
    };
    let on_keydown = move |ev: leptos::ev::KeyboardEvent| {
        if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
            ev.prevent_default();
            send();
        }
    };
    let on_input = move |_| {
        let room = chat.with_untracked(|c| c.active.clone());
        if let Some(frame) =
            room.and_then(|room| chat.try_update(|c| c.typing(&room, now())).flatten())
        {
            client.send(&frame);
        }
    };
    view! {
        <form class="composer" on:submit=move |ev| {
            ev.prevent_default();
            send();
        }>
            <textarea
                id="composer"
                node_ref=area
                rows="2"
                aria-label="Message"
                placeholder="Message (Enter to send, Shift+Enter for a new line)"
                maxlength="4000"
                on:keydown=on_keydown
                on:input=on_input
            ></textarea>
            <button id="send" type="submit">"Send"</button>
        </form>
    }
}

/// Users online in the active room.
#[component]
fn Members(
    /// The chat state.
    chat: RwSignal<Chat>,
) -> impl IntoView {
    let members = move || {
        chat.with(|c| {
            c.active_room()
                .map(|r| r.members.iter().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        })
    };
    view! {
        <aside class="members" aria-label="Members online">
            <h2>"Online"</h2>
            <ul id="members">
                <For each=members key=|m| m.clone() children=move |m: String| view! { <li>{m}</li> } />
            </ul>
        </aside>
    }
}
