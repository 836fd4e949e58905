//! The bar above the composer while it edits one of our messages or replies to one: what it
//! does, with a button to cancel (as Escape does).

// `#[component]` generates a `pub` props type for each component.
#![allow(unreachable_pub)]

use leptos::prelude::*;

use super::chat;
use super::composer::fill_composer;
use super::quote::quoted;

/// "Editing your message" or "Replying to bob: …", with a cancel button; nothing otherwise.
#[component]
pub(super) fn ComposeBar() -> impl IntoView {
    let chat = chat();
    let target = Memo::new(move |_| {
        chat.with(|c| c.active_room().map(|r| (r.editing, r.reply_to)))
            .unwrap_or_default()
    });
    let text = move || match target.get() {
        (Some(_), _) => Some("Editing your message".to_owned()),
        (None, Some(id)) => Some(format!("Replying to {}", quoted(id))),
        (None, None) => None,
    };
    let cancel = move |_| {
        let editing = target.get_untracked().0.is_some();
        chat.update(|c| {
            if let Some(room) = c.active.clone() {
                c.cancel_compose(&room);
            }
        });
        fill_composer(editing.then_some(""));
    };
    let label = move || {
        if target.get().0.is_some() {
            "Cancel edit"
        } else {
            "Cancel reply"
        }
    };
    view! {
        <Show when=move || text().is_some()>
            <div id="compose-bar" class="compose-bar">
                <span class="compose-what">{text}</span>
                <button class="compose-cancel" aria-label=label title=label on:click=cancel>
                    "×"
                </button>
            </div>
        </Show>
    }
}
