//! One message of the active room: its sender, time and "(edited)", the quote of the message it
//! replies to, its body and reactions, and its actions (reply, react; edit and delete on our
//! own, delete confirmed inline). A deleted one is a tombstone: "message deleted", nothing else.
//! The list re-creates a row only when its message changes (it is keyed by id and revision).

// `#[component]` generates a `pub` props type for each component.
#![allow(unreachable_pub)]

use leptos::prelude::*;
use skat_protocol::{Message, MessageId};

use super::composer::fill_composer;
use super::quote::Quote;
use super::reactions::{Picker, Reactions};
use super::{chat, local_time, socket};
use skat_web::label;

/// One message, preceded by the "new messages" divider when `divider` names it.
#[component]
pub(super) fn MessageRow(
    /// The message, as it is now.
    message: Message,
    /// The message the "new messages" divider goes before.
    divider: Memo<Option<MessageId>>,
) -> impl IntoView {
    let chat = chat();
    let id = message.id;
    let own = chat.with_untracked(|c| c.name == message.from);
    let system = label::is_system(&message.from);
    let deleted = message.is_deleted();
    let edited = message.edited().map(|ts| {
        view! { <span class="edited" title=format!("edited at {}", local_time(ts))>"(edited)"</span> }
    });
    let from = label::sender_label(&message.from).to_owned();
    let ts = message.ts;
    let content = if deleted {
        view! { <p class="body tombstone">"message deleted"</p> }.into_any()
    } else {
        let quote = message
            .reply_to()
            .map(|target| view! { <Quote target=target /> });
        let reactions = message.reactions().to_vec();
        view! {
            {quote}
            <p class="body">{message.body}</p>
            <Reactions id=id reactions=reactions />
            <Actions id=id own=own />
        }
        .into_any()
    };
    view! {
        <Show when=move || divider.get() == Some(id)>
            <div class="divider" role="separator" aria-label="New messages">
                <span>"new messages"</span>
            </div>
        </Show>
        <article
            class="message"
            class:own=own
            class:system=system
            class:deleted=deleted
            data-id=id.to_string()
        >
            <span class="from">{from}</span>
            <time class="time">{local_time(ts)}</time>
            {edited}
            {content}
        </article>
    }
}

/// A message's actions: reply, react, and on our own edit and delete (confirmed inline).
#[component]
fn Actions(
    /// The message.
    id: MessageId,
    /// Whether it is ours.
    own: bool,
) -> impl IntoView {
    let (chat, socket) = (chat(), socket());
    let confirming = RwSignal::new(false);
    let picking = RwSignal::new(false);
    let reply = move |_| {
        chat.update(|c| {
            if let Some(room) = c.active.clone() {
                c.reply_to(&room, id);
            }
        });
        fill_composer(None);
    };
    let edit = move |_| {
        let body = chat
            .try_update(|c| {
                let room = c.active.clone()?;
                c.start_edit(&room, id)
            })
            .flatten();
        if let Some(body) = body {
            fill_composer(Some(&body));
        }
    };
    let delete = move |_| {
        confirming.set(false);
        socket.dispatch(|c| {
            let room = c.active.clone()?;
            c.delete(&room, id)
        });
    };
    view! {
        <div class="actions">
            <button class="reply" aria-label="Reply" title="Reply" on:click=reply>"↩"</button>
            <button
                class="react"
                aria-label="Add reaction"
                title="Add reaction"
                aria-expanded=move || picking.get().to_string()
                on:click=move |_| picking.update(|p| *p = !*p)
            >
                "☺"
            </button>
            <Show when=move || own>
                <button class="edit" aria-label="Edit" title="Edit" on:click=edit>"✎"</button>
                <Show
                    when=move || confirming.get()
                    fallback=move || view! {
                        <button
                            class="delete"
                            aria-label="Delete"
                            title="Delete"
                            on:click=move |_| confirming.set(true)
                        >
                            "🗑"
                        </button>
                    }
                >
                    <span class="confirm" role="group" aria-label="Delete this message?">
                        "Delete?"
                        <button class="confirm-delete" on:click=delete>"Delete"</button>
                        <button class="cancel-delete" on:click=move |_| confirming.set(false)>
                            "Cancel"
                        </button>
                    </span>
                </Show>
            </Show>
            <Show when=move || picking.get()>
                <Picker id=id on_pick=move || picking.set(false) />
            </Show>
        </div>
    }
}
