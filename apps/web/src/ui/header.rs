//! The header (room, connection state, node), the notice banner, and what a refused room
//! shows instead of its messages.

// `#[component]` generates a `pub` props type for each component.
#![allow(unreachable_pub)]

use leptos::prelude::*;

use super::{chat, socket};
use skat_web::label::room_label;
use skat_web::state::Connection;

/// Room name, connection state and serving node: always visible.
#[component]
pub(super) fn Header() -> impl IntoView {
    let chat = chat();
    let status = move || {
        chat.with(|c| match &c.connection {
            Connection::Online => ("online", "Connected".to_owned()),
            Connection::Refused(reason) => ("refused", format!("Not authorized: {reason}")),
            Connection::Disconnected(reason) => ("disconnected", format!("Disconnected: {reason}")),
            Connection::Expired => (
                "expired",
                "Your session expired: open the chat again from the application to sign in."
                    .to_owned(),
            ),
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
            <h1>
                {move || {
                    chat.with(|c| c.active.as_ref().map(|r| room_label(r, &c.name)).unwrap_or_default())
                }}
            </h1>
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

/// In place of a refused room's messages: why we are not in it, and a way to ask again or
/// close it.
#[component]
pub(super) fn RefusedRoom() -> impl IntoView {
    let (chat, socket) = (chat(), socket());
    let reason = move || chat.with(|c| c.active_room().and_then(|r| r.refused.clone()));
    let again = move |_| {
        socket.dispatch(|c| {
            let room = c.active.clone()?;
            c.join(&room)
        });
    };
    let close = move |_| {
        socket.dispatch(|c| {
            let room = c.active.clone()?;
            c.leave(&room)
        });
    };
    view! {
        <section class="refused-room" role="alert">
            <p id="refused">{reason}</p>
            <button class="retry" on:click=again>"Try again"</button>
            <button class="close" on:click=close>"Close"</button>
        </section>
    }
}
