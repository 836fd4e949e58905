//! The message input: Enter sends, Shift+Enter inserts a new line.

// `#[component]` generates a `pub` props type for each component.
#![allow(unreachable_pub)]

use leptos::prelude::*;

use super::{chat, now, socket};
use skat_web::state::Unsent;

/// Message input: Enter sends, Shift+Enter inserts a new line.
#[component]
pub(super) fn Composer() -> impl IntoView {
    let (chat, socket) = (chat(), socket());
    let area = NodeRef::<leptos::html::Textarea>::new();
    let send = move || {
        let Some(el) = area.get_untracked() else {
            return;
        };
        let text = el.value();
        let sent = socket.dispatch(|c| {
            let room = c.active.clone().ok_or(Unsent::NotJoined)?;
            c.send(&room, &text, now())
        });
        match sent {
            Some(Ok(_)) => el.set_value(""),
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
        if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
            ev.prevent_default();
            send();
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
                placeholder="Message (Enter to send, Shift+Enter for a new line)"
                maxlength="4000"
                on:keydown=on_keydown
                on:input=on_input
            ></textarea>
            <button id="send" type="submit">"Send"</button>
        </form>
    }
}
