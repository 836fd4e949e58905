//! The header (room, connection state, node) and the notice banner.

// `#[component]` generates a `pub` props type for each component.
#![allow(unreachable_pub)]

use leptos::prelude::*;

use super::chat;
use skat_web::state::Connection;

/// Room name, connection state and serving node: always visible.
#[component]
pub(super) fn Header() -> impl IntoView {
    let chat = chat();
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
pub(super) fn Notice() -> impl IntoView {
    let chat = chat();
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
