//! The room list: joined rooms (direct messages as `@bob`) with unread counts, refusals and
//! leave buttons, and a form to join more.

// `#[component]` generates a `pub` props type for each component.
#![allow(unreachable_pub)]

use leptos::prelude::*;

use super::field_form::FieldForm;
use super::{chat, socket};
use skat_web::label::{room_label, room_title};
use skat_web::state;

/// Joined rooms with unread counts, leave buttons, and a form to join more.
#[component]
pub(super) fn Sidebar() -> impl IntoView {
    let (chat, socket) = (chat(), socket());
    let join = move |room: String| {
        let room = room.to_lowercase();
        state::check_room(&room)?;
        socket.dispatch(|c| c.join(&room));
        Ok(())
    };
    let tabs = move || {
        chat.with(|c| {
            c.rooms
                .iter()
                .map(|(name, r)| Tab {
                    name: name.clone(),
                    label: room_label(name, &c.name),
                    title: room_title(name, &c.name),
                    unread: r.unread,
                    active: c.active.as_deref() == Some(name.as_str()),
                    refused: r.refused.is_some(),
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
                    children=move |Tab { name, label, title, unread, active, refused }| {
                        let switch_name = name.clone();
                        let leave_name = name.clone();
                        view! {
                            <li class="room-item" class:active=active class:refused=refused>
                                <button
                                    class="room-tab"
                                    data-room=name
                                    aria-current=if active { "page" } else { "false" }
                                    on:click=move |_| chat.update(|c| c.switch_to(&switch_name))
                                >
                                    {label}
                                    <Show when=move || refused>
                                        <span class="no-access">"no access"</span>
                                    </Show>
                                    <Show when=move || { unread > 0 }>
                                        <span class="unread" aria-label="unread messages">
                                            {unread}
                                        </span>
                                    </Show>
                                </button>
                                <button
                                    class="leave"
                                    title="Leave room"
                                    aria-label=format!("Leave {title}")
                                    on:click=move |_| {
                                        socket.dispatch(|c| c.leave(&leave_name));
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

/// One room's tab, as shown: re-rendered when any of it changes.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Tab {
    /// The room's name (`data-room`).
    name: String,
    /// `#random`, or `@bob` for direct messages.
    label: String,
    /// `random`, or `@bob`: what the leave button names.
    title: String,
    unread: u32,
    active: bool,
    refused: bool,
}
