//! Who is online in the active room.

// `#[component]` generates a `pub` props type for each component.
#![allow(unreachable_pub)]

use leptos::prelude::*;

use super::chat;

/// Users online in the active room.
#[component]
pub(super) fn Members() -> impl IntoView {
    let chat = chat();
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
