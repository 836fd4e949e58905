//! The chat UI: Leptos components and the WebSocket connection (wasm only).
//!
//! One [`Chat`] lives in a signal; the socket feeds it server frames and sends the client frames
//! it returns. Both are in the context ([`chat()`], [`socket()`]) for the components, one per file,
//! which read the state, and change it through the socket's `dispatch` whenever the change may
//! call for frames (it sends them). User text is always rendered as text nodes, never as HTML.
//! Fresh tokens come from the application's token URL ([`token`]).

use std::time::Duration;

use leptos::prelude::*;

use skat_web::fragment::Identity;
use skat_web::state::{self, Chat, Session};

mod compose_bar;
mod composer;
mod field_form;
mod header;
mod members;
mod message;
mod messages;
mod quote;
mod reactions;
mod search;
mod sidebar;
mod socket;
mod token;

use compose_bar::ComposeBar;
use composer::Composer;
use field_form::FieldForm;
use header::{Header, Notice, RefusedRoom};
use members::Members;
use messages::{Messages, TypingLine};
use search::SearchBox;
use sidebar::Sidebar;
use socket::ReconnectingSocket;

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

/// The chat state, from the context [`ChatView`] provides.
fn chat() -> RwSignal<Chat> {
    expect_context()
}

/// The connection, from the context [`ChatView`] provides.
fn socket() -> ReconnectingSocket {
    expect_context()
}

/// The [`Identity`] from the page's fragment (`#name=alice&token=...&token_url=...`), which is
/// how an application hands a signed identity to the app without it reaching server logs, and
/// the operator's `<meta name="skat-token-url">`, which when present overrides the fragment's
/// token and token URL (see [`skat_web::fragment::identity`]; the console says what was
/// ignored). The token is then removed from the address bar (and this history entry), so a
/// copied link does not leak it; the token URL stays, so a reload fetches a token from it.
fn page_identity() -> Identity {
    let location = window().location();
    let fragment = skat_web::fragment::parse_fragment(&location.hash().unwrap_or_default());
    if fragment.token.is_some() {
        let path = location.pathname().unwrap_or_default();
        let search = location.search().unwrap_or_default();
        let url = format!("{path}{search}{}", fragment.scrubbed);
        if let Ok(history) = window().history() {
            let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url));
        }
    }
    let (identity, ignored) = skat_web::fragment::identity(fragment, token::meta_token_url());
    if let Some(why) = ignored {
        leptos::logging::warn!("{why}");
    }
    identity
}

/// The app: asks for a name once (remembered), then shows the chat.
#[allow(unreachable_pub)] // `#[component]` generates a `pub` props type.
#[component]
pub(crate) fn App() -> impl IntoView {
    let identity = page_identity();
    let name = RwSignal::new(
        identity
            .name
            .or_else(|| load(NAME_KEY))
            .filter(|n| state::check_name(n).is_ok()),
    );
    let session = StoredValue::new(Session::new(identity.token, identity.token_url));
    view! {
        {move || match name.get() {
            Some(n) => view! { <ChatView name=n session=session.get_value() /> }.into_any(),
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
    let submit = move |name: String| {
        state::check_name(&name)?;
        on_name(name);
        Ok(())
    };
    view! {
        <main class="welcome">
            <h1>"Skat"</h1>
            <FieldForm
                id="name"
                label="Choose a display name"
                autocomplete="nickname"
                maxlength=32
                button="Start chatting"
                submit=submit
            />
        </main>
    }
}

/// The chat screen: rooms, the active room's messages and composer, members.
#[component]
fn ChatView(
    /// The user's display name.
    name: String,
    /// Signed mode: the token vouching for `name`, and where fresh ones come from.
    session: Session,
) -> impl IntoView {
    let nonce_prefix = format!(
        "w{:08x}",
        (js_sys::Math::random() * f64::from(u32::MAX)) as u32
    );
    let mut initial = Chat::new(name, nonce_prefix);
    initial.session = session;
    let chat = RwSignal::new(initial);
    let socket = ReconnectingSocket::new(chat);
    provide_context(chat);
    provide_context(socket);
    // Not connected yet: the joins go with the connection's `hello`.
    let rooms = load(ROOMS_KEY).unwrap_or_else(|| DEFAULT_ROOM.to_owned());
    for room in rooms.split(',').filter(|r| state::check_room(r).is_ok()) {
        socket.dispatch(|c| c.join(room));
    }
    chat.update(|c| {
        if let Some(first) = c.rooms.keys().next().cloned() {
            c.switch_to(&first);
        }
    });
    socket.connect();

    // Typing notices expire, and tokens near their expiry, without any frame arriving. The
    // shown room is marked read here too while the page is visible: at most twice a second
    // (a debounce), and only when that moves the marker forward.
    let ticker = set_interval_with_handle(
        move || {
            if chat.with_untracked(|c| c.rooms.values().any(|r| !r.typing.is_empty())) {
                chat.update(|c| {
                    c.expire_typing(now());
                });
            }
            socket.tick();
            if !document().hidden() && chat.with_untracked(|c| c.read_due().is_some()) {
                socket.dispatch(Chat::mark_read);
            }
        },
        Duration::from_millis(500),
    );
    on_cleanup(move || {
        if let Ok(handle) = ticker {
            handle.clear();
        }
    });
    // Remember the joined rooms (not the refused ones) for the next visit: written when they
    // change, not on every frame (the memo only notifies when its value differs).
    let names = Memo::new(move |_| {
        chat.with(|c| {
            c.rooms
                .iter()
                .filter(|(_, r)| r.refused.is_none())
                .map(|(name, _)| name.clone())
                .collect::<Vec<_>>()
        })
    });
    let refused = move || chat.with(|c| c.active_room().is_some_and(|r| r.refused.is_some()));
    Effect::new(move |_| names.with(|names| save(ROOMS_KEY, &names.join(","))));

    view! {
        <div class="app">
            <Sidebar />
            <main class="room">
                <Header />
                <Notice />
                <Show
                    when=refused
                    fallback=|| {
                        view! { <SearchBox /> <Messages /> <TypingLine /> <ComposeBar /> <Composer /> }
                    }
                >
                    <RefusedRoom />
                </Show>
            </main>
            <Members />
        </div>
    }
}
