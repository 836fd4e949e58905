//! A message's reactions as chips ("👍 2", who reacted in the title; ours pressed), each a
//! toggle, and the small fixed picker to add one. A toggle sends `react` with `add` the
//! opposite of what is shown (see `Chat::react`); the server's `reacted` changes the chips.

// `#[component]` generates a `pub` props type for each component.
#![allow(unreachable_pub)]

use leptos::prelude::*;
use skat_protocol::{MessageId, Reaction};

use super::{chat, socket};

/// The emoji the picker offers.
const PICKS: [&str; 6] = ["👍", "❤️", "😂", "🎉", "😮", "😢"];

/// Toggles our reaction `emoji` on message `id` of the active room.
fn toggle(id: MessageId, emoji: &str) {
    socket().dispatch(|c| {
        let room = c.active.clone()?;
        c.react(&room, id, emoji)
    });
}

/// The chips of a message's reactions.
#[component]
pub(super) fn Reactions(
    /// The message.
    id: MessageId,
    /// Its reactions, as they are now (the row is made again when they change).
    reactions: Vec<Reaction>,
) -> impl IntoView {
    let me = chat().with_untracked(|c| c.name.clone());
    let chips = reactions
        .into_iter()
        .map(|r| {
            let mine = r.users.contains(&me);
            let emoji = r.emoji.clone();
            let label = format!("{} {}", r.emoji, r.count);
            let who = r.users.join(", ");
            let more = (r.count as usize).saturating_sub(r.users.len());
            let title = if more > 0 {
                format!("{who} and {more} more")
            } else {
                who
            };
            view! {
                <button
                    class="reaction"
                    class:mine=mine
                    data-emoji=r.emoji
                    title=title
                    aria-pressed=mine.to_string()
                    aria-label=format!("{label}, toggle your reaction")
                    on:click=move |_| toggle(id, &emoji)
                >
                    {label.clone()}
                </button>
            }
        })
        .collect_view();
    view! { <div class="reactions">{chips}</div> }
}

/// The fixed set of emoji to react with; `on_pick` runs after a pick (to close it).
#[component]
pub(super) fn Picker(
    /// The message to react to.
    id: MessageId,
    /// Called once an emoji is picked.
    on_pick: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let picks = PICKS
        .iter()
        .map(|&emoji| {
            view! {
                <button
                    class="pick"
                    data-emoji=emoji
                    aria-label=format!("React with {emoji}")
                    on:click=move |_| {
                        toggle(id, emoji);
                        on_pick();
                    }
                >
                    {emoji}
                </button>
            }
        })
        .collect_view();
    view! { <span class="picker" role="group" aria-label="Reactions">{picks}</span> }
}
