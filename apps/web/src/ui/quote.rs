//! The quote of the message a reply answers: its author and the first line of its body, or
//! "deleted message", or "earlier message" when the room does not show it. Clicking it scrolls
//! to the original and highlights it briefly.

// `#[component]` generates a `pub` props type for each component.
#![allow(unreachable_pub)]

use std::time::Duration;

use leptos::prelude::*;
use skat_protocol::MessageId;

use super::chat;
use skat_web::label;

/// How long the original stays highlighted after a jump to it.
const HIGHLIGHT: Duration = Duration::from_millis(1500);

/// What a quote says of `target` in the active room (also the composer's reply bar's text).
pub(super) fn quoted(target: MessageId) -> String {
    chat().with(|c| match c.active_room().and_then(|r| r.get(target)) {
        None => "earlier message".to_owned(),
        Some(m) if m.is_deleted() => "deleted message".to_owned(),
        Some(m) => {
            let line: String = m
                .body
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(80)
                .collect();
            format!("{}: {line}", label::sender_label(&m.from))
        }
    })
}

/// Scrolls to the message `target` of the list, if shown, and highlights it briefly.
fn jump_to(target: MessageId) {
    let selector = format!(".message[data-id=\"{target}\"]");
    let Some(el) = document().query_selector(&selector).ok().flatten() else {
        return;
    };
    el.scroll_into_view();
    let _ = el.set_attribute("data-highlight", "");
    set_timeout(
        move || {
            let _ = el.remove_attribute("data-highlight");
        },
        HIGHLIGHT,
    );
}

/// The quote above a reply's body.
#[component]
pub(super) fn Quote(
    /// The message replied to.
    target: MessageId,
) -> impl IntoView {
    // Follows the original: an edit or a deletion, or it loading with an older page.
    let text = Memo::new(move |_| quoted(target));
    view! {
        <button
            class="quote"
            data-reply-to=target.to_string()
            title="Show the original message"
            on:click=move |_| jump_to(target)
        >
            {move || text.get()}
        </button>
    }
}
