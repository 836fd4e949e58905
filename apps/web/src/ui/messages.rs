//! The active room's messages, our pending sends with their retry, and who is typing.

// `#[component]` generates a `pub` props type for each component.
#![allow(unreachable_pub)]

use leptos::prelude::*;
use skat_protocol::Message;
use wasm_bindgen::JsCast;

use super::{chat, local_time, now, socket};
use skat_web::label;
use skat_web::state::{self, Pending};

/// The active room's messages, pending sends, and "load older"; sticks to the bottom unless the
/// user scrolled up.
#[component]
pub(super) fn Messages() -> impl IntoView {
    let (chat, socket) = (chat(), socket());
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
                .map(|r| r.messages().to_vec())
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
        socket.dispatch(|c| {
            let room = c.active.clone()?;
            c.load_older(&room)
        });
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
                key=|m| m.id
                children=move |m: Message| {
                    let own = m.from == me();
                    let system = label::is_system(&m.from);
                    view! {
                        <article
                            class="message"
                            class:own=own
                            class:system=system
                            data-id=m.id.to_string()
                        >
                            <span class="from">{label::sender_label(&m.from).to_owned()}</span>
                            <time class="time">{local_time(m.ts)}</time>
                            <p class="body">{m.body.clone()}</p>
                        </article>
                    }
                }
            />
            <For
                each=move || pending.get()
                key=|p| (p.nonce.clone(), p.error.clone())
                children=move |p: Pending| view! { <PendingRow pending=p /> }
            />
        </div>
    }
}

/// One of our messages awaiting its echo, or failed with a retry.
#[component]
fn PendingRow(
    /// The pending send.
    pending: Pending,
) -> impl IntoView {
    let (chat, socket) = (chat(), socket());
    let failed = pending.error.is_some();
    let (retry_nonce, edit_nonce) = (pending.nonce.clone(), pending.nonce.clone());
    let retry = move |_| {
        socket.dispatch(|c| {
            let room = c.active.clone()?;
            c.retry(&room, &retry_nonce)
        });
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
pub(super) fn TypingLine() -> impl IntoView {
    let chat = chat();
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
