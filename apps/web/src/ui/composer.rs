//! The message input: Enter sends (or saves the edit in progress), Shift+Enter inserts a new
//! line, Up in an empty input edits our last message, Escape cancels an edit or a reply. A
//! refused edit's text comes back to it.

// `#[component]` generates a `pub` props type for each component.
#![allow(unreachable_pub)]

use leptos::prelude::*;
use wasm_bindgen::JsCast;

use super::{chat, now, socket};
use skat_web::state::Unsent;

/// Focuses the composer, first setting its text to `text` if given.
pub(super) fn fill_composer(text: Option<&str>) {
    let area = document()
        .get_element_by_id("composer")
        .and_then(|el| el.dyn_into::<web_sys::HtmlTextAreaElement>().ok());
    if let Some(area) = area {
        if let Some(text) = text {
            area.set_value(text);
        }
        let _ = area.focus();
    }
}

/// Message input: Enter sends or saves, Shift+Enter inserts a new line, Up edits our last
/// message, Escape cancels.
#[component]
pub(super) fn Composer() -> impl IntoView {
    let (chat, socket) = (chat(), socket());
    let area = NodeRef::<leptos::html::Textarea>::new();
    // A refused edit's text comes back to the shown room's composer, unless the user is typing
    // something else there (`Chat::take_draft`).
    Effect::new(move |_| {
        if !chat.with(|c| c.active_room().is_some_and(|r| r.draft.is_some())) {
            return;
        }
        let Some(el) = area.get_untracked() else {
            return;
        };
        let empty = el.value().is_empty();
        let draft = chat
            .try_update(|c| {
                let room = c.active.clone()?;
                c.take_draft(&room, empty)
            })
            .flatten();
        if let Some(text) = draft {
            el.set_value(&text);
            let _ = el.focus();
        }
    });
    let send = move || {
        let Some(el) = area.get_untracked() else {
            return;
        };
        let text = el.value();
        let sent = socket.dispatch(|c| {
            let room = c.active.clone().ok_or(Unsent::NotJoined)?;
            c.submit(&room, &text, now())
        });
        match sent {
            Some(Ok(_) | Err(Unsent::Unchanged)) => el.set_value(""),
            // Not connected (reconnecting): keep the text. (After a disconnection that is not
            // retried, the header says why.)
            Some(Err(Unsent::Offline { retrying: true })) => {
                chat.update(|c| {
                    c.notice = Some(
                        "not connected: your message is kept, send it again once connected".into(),
                    );
                });
            }
            Some(Err(_)) | None => {}
        }
    };
    let on_keydown = move |ev: leptos::ev::KeyboardEvent| {
        if ev.is_composing() {
            return;
        }
        let Some(el) = area.get_untracked() else {
            return;
        };
        match ev.key().as_str() {
            "Enter" if !ev.shift_key() => {
                ev.prevent_default();
                send();
            }
            "ArrowUp" if el.value().is_empty() => {
                let body = chat
                    .try_update(|c| {
                        let room = c.active.clone()?;
                        c.edit_last(&room)
                    })
                    .flatten();
                if let Some(body) = body {
                    ev.prevent_default();
                    el.set_value(&body);
                }
            }
            "Escape" => {
                let editing = chat.with_untracked(|c| c.active_room().and_then(|r| r.editing));
                let cancelled = chat
                    .try_update(|c| {
                        let room = c.active.clone()?;
                        Some(c.cancel_compose(&room))
                    })
                    .flatten()
                    .unwrap_or(false);
                if cancelled {
                    ev.prevent_default();
                }
                if editing.is_some() {
                    el.set_value("");
                }
            }
            _ => {}
        }
    };
    let on_input = move |_| {
        socket.dispatch(|c| {
            let room = c.active.clone()?;
            c.typing(&room, now())
        });
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
                aria-keyshortcuts="ArrowUp Escape"
                placeholder="Message (Enter to send, Shift+Enter for a new line, Up to edit your last)"
                maxlength="4000"
                on:keydown=on_keydown
                on:input=on_input
            ></textarea>
            <button id="send" type="submit">"Send"</button>
        </form>
    }
}
