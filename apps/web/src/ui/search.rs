//! The search of the shown room: a field, the matches newest first (who, when, the text), a
//! button for older ones, and why a search failed. Only a node with a data dir can search;
//! elsewhere the answer says so. The state is `skat_web::state::Search`.

// `#[component]` generates a `pub` props type for each component.
#![allow(unreachable_pub)]

use leptos::prelude::*;
use skat_protocol::Message;
use skat_web::state::{Chat, Search};

use super::field_form::FieldForm;
use super::{chat, local_time, socket};

/// What the results say of themselves.
fn summary(search: &Search) -> String {
    let q = &search.q;
    match (&search.error, search.results.len()) {
        (Some(why), _) => why.clone(),
        (None, 0) if search.waiting => format!("Searching for “{q}”…"),
        (None, 0) => format!("No message holds “{q}”."),
        (None, 1) => format!("1 message holds “{q}”:"),
        (None, n) => format!(
            "{n} messages hold “{q}”{}:",
            if search.has_more { " so far" } else { "" }
        ),
    }
}

/// A search field over the room, and the results of the search while one is open.
#[component]
pub(super) fn SearchBox() -> impl IntoView {
    let (chat, socket) = (chat(), socket());
    let submit = move |q: String| match socket.dispatch(|c| c.search(&q)) {
        Some(Err(why)) => Err(why),
        _ => Ok(()),
    };
    let search = Memo::new(move |_| chat.with(|c| c.search.clone()));
    let results =
        move || search.with(|s| s.as_ref().map(|s| s.results.clone()).unwrap_or_default());
    let more = move || search.with(|s| s.as_ref().is_some_and(|s| s.has_more && !s.waiting));
    view! {
        <section class="search" aria-label="Search this room">
            <FieldForm
                id="search"
                class="search-form"
                label="Search this room"
                placeholder="search this room"
                maxlength=256
                button="Search"
                submit=submit
            />
            <Show when=move || search.with(Option::is_some)>
                <div id="search-results" class="search-results" aria-live="polite">
                    <p class="search-what">
                        <span>{move || search.with(|s| s.as_ref().map(summary))}</span>
                        <button
                            class="search-close"
                            aria-label="Close search"
                            title="Close search"
                            on:click=move |_| chat.update(Chat::close_search)
                        >
                            "×"
                        </button>
                    </p>
                    <ul>
                        <For
                            each=results
                            key=|m: &Message| m.id
                            children=move |m: Message| {
                                view! {
                                    <li>
                                        <span class="from">{m.from}</span>
                                        " "
                                        <time>{local_time(m.ts)}</time>
                                        " "
                                        <span class="body">{m.body}</span>
                                    </li>
                                }
                            }
                        />
                    </ul>
                    <Show when=more>
                        <button
                            class="search-more"
                            on:click=move |_| {
                                socket.dispatch(Chat::search_more);
                            }
                        >
                            "Older matches"
                        </button>
                    </Show>
                </div>
            </Show>
        </section>
    }
}
