//! Who is online in the active room, each other user with a button opening your direct
//! messages with them.

// `#[component]` generates a `pub` props type for each component.
#![allow(unreachable_pub)]

use leptos::prelude::*;

use super::{chat, socket};

/// Users online in the active room. In signed mode (direct messages need it), every other user
/// whose name makes a direct-message room has a "Message" button that joins it and shows it.
#[component]
pub(super) fn Members() -> impl IntoView {
    let (chat, socket) = (chat(), socket());
    let members = move || {
        chat.with(|c| {
            let me = c.name.as_str();
            let signed = c.session.token.is_some() || c.session.token_url.is_some();
            c.active_room()
                .map(|r| {
                    r.members
                        .iter()
                        .map(|m| {
                            let dm = skat_protocol::dm_room(me, m).filter(|_| signed);
                            (m.clone(), dm)
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
    };
    let open = move |room: &str| {
        socket.dispatch(|c| c.join(room));
    };
    view! {
        <aside class="members" aria-label="Members online">
            <h2>"Online"</h2>
            <ul id="members">
                <For
                    each=members
                    key=|m| m.clone()
                    children=move |(name, dm): (String, Option<String>)| {
                        let label = format!("Message {name}");
                        view! {
                            <li>
                                <span class="member">{name}</span>
                                {dm.map(|room| view! {
                                    <button
                                        class="dm"
                                        aria-label=label
                                        title="Direct message"
                                        on:click=move |_| open(&room)
                                    >
                                        "Message"
                                    </button>
                                })}
                            </li>
                        }
                    }
                />
            </ul>
        </aside>
    }
}
