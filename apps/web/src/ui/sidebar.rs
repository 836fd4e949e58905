//! The room list: joined rooms with unread counts, leave buttons, and a form to join more.

// `#[component]` generates a `pub` props type for each component.
#![allow(unreachable_pub)]

use leptos::prelude::*;

use super::field_form::FieldForm;
use super::{chat, socket};
use skat_web::state;

/// Joined rooms with unread counts, leave buttons, and a form to join more.
#[component]
pub(super) fn Sidebar() -> impl IntoView {
    let (chat, socket) = (chat(), socket());
    let join = move |room: String| {
        let room = room.to_lowercase();
        state::check_room(&room)?;
        if let Some(frame) = chat.try_update(|c| c.join(&room)).flatten() {
            socket.send(&frame);
        }
        Ok(())
    };
    let tabs = move || {
        chat.with(|c| {
            c.rooms
                .iter()
                .map(|(name, r)| {
                    (
                        name.clone(),
                        r.unread,
                        c.active.as_deref() == Some(name.as_str()),
                    )
                })
                .collect::<Vec<_>>()
        })
    };
    view! {
        <nav class="sidebar" aria-label="Rooms">
            <h2>"Rooms"</h2>
            <ul class="rooms">
                <For
                    each=tabs
                    key=|tab| tab.clone()
                    children=move |(name, unread, active)| {
                        let switch_name = name.clone();
                        let leave_name = name.clone();
                        view! {
                            <li class="room-item" class:active=active>
                                <button
                                    class="room-tab"
                                    data-room=name.clone()
                                    aria-current=if active { "page" } else { "false" }
                                    on:click=move |_| chat.update(|c| c.switch_to(&switch_name))
                                >
                                    "#"
                                    {name.clone()}
                                    <Show when=move || { unread > 0 }>
                                        <span class="unread" aria-label="unread messages">
                                            {unread}
                                        </span>
                                    </Show>
                                </button>
                                <button
                                    class="leave"
                                    title="Leave room"
                                    aria-label=format!("Leave {name}")
                                    on:click=move |_| {
                                        if let Some(frame) = chat.try_update(|c| c.leave(&leave_name)).flatten() {
                                            socket.send(&frame);
                                        }
                                    }
                                >
                                    "×"
                                </button>
                            </li>
                        }
                    }
                />
            </ul>
            <FieldForm
                id="join"
                class="join"
                label="Room to join"
                placeholder="join a room"
                maxlength=64
                button="Join"
                submit=join
            />
        </nav>
    }
}
