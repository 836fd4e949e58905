//! The active room's messages (each a [`MessageRow`]), our pending sends with their retry, and
//! who is typing.

// `#[component]` generates a `pub` props type for each component.
#![allow(unreachable_pub)]

use leptos::prelude::*;
use skat_protocol::Message;

use super::composer::fill_composer;
use super::message::MessageRow;
use super::quote::Quote;
use super::{chat, now, socket};
use skat_web::room::revision;
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
    let divider = Memo::new(move |_| chat.with(|c| c.active_room()?.divider_before()));

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
                // A message changed (edited, deleted, reacted to) is made again, alone.
                key=|m| (m.id, revision(m))
                children=move |m: Message| view! { <MessageRow message=m divider=divider /> }
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
        if let Some(text) = text {
            fill_composer(Some(&text));
        }
    };
    view! {
        <article class="message own pending" class:failed=failed>
            <span class="from">{move || chat.with_untracked(|c| c.name.clone())}</span>
            <span class="time">{if failed { "not sent" } else { "sending…" }}</span>
            {pending.reply_to.map(|target| view! { <Quote target=target /> })}
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
