//! The index of rooms (`<prefix>rooms`, a sorted set with every score 0, paged by name) that
//! [`Broker::rooms`](crate::Broker::rooms) lists.
//!
//! A node adds a room when it subscribes to it, best effort: the index is for administration,
//! and a failure to add must not fail a user's join. A room's own keys expire (see
//! `ensure_epoch.lua`) but its name in the index, on another slot in a cluster, cannot go with
//! them; so listing drops the names it passes whose room is gone: no history, no members, and no
//! node subscribed (a node subscribes before it adds the name, and a join makes the room's keys
//! after, so a room being joined for the first time is never dropped for good: the name is
//! removed, the room looked at again, and put back if a node subscribed meanwhile). Each gone
//! name costs one listing a few commands, once; a listing skips rooms with neither history nor
//! members, as the embedded broker does, and reads on until its page is full, or until it has
//! examined [`GONE_PER_PAGE`] names more than it lists (then it ends early, with `has_more`).

use super::error::RedisBrokerError;
use super::store::Store;
use crate::{NODES_ROOM, RoomSummary, RoomsPage};

/// Names a page of rooms examines beyond its limit, at most, once it has a room: the names of
/// gone rooms it passes (made-up names joined and left) are removed on the way, a few commands
/// each.
const GONE_PER_PAGE: usize = 1000;

/// Adds `room` to the index; a failure is logged, not returned.
pub(super) async fn index(store: &Store, room: &str) {
    if room == NODES_ROOM {
        return;
    }
    if let Err(err) = store.index_room(room).await {
        tracing::debug!(%room, error = %err, "could not add the room to the index");
    }
}

/// [`Broker::rooms`](crate::Broker::rooms): the rooms with history or members, by name,
/// dropping the names of rooms that are gone on the way.
pub(super) async fn list(
    store: &Store,
    after: Option<&str>,
    limit: usize,
) -> Result<RoomsPage, RedisBrokerError> {
    let mut rooms = Vec::with_capacity(limit.min(1024));
    let mut from = after.map(str::to_owned);
    let mut examined = 0;
    loop {
        // Past the budget, a page that has rooms ends (the caller reads on after its last);
        // one that has none reads on, since its caller would have no name to go on from:
        // the names of gone rooms it passes are removed, so that work is done once.
        let budget = (limit + GONE_PER_PAGE).saturating_sub(examined);
        let wanted = match rooms.len() {
            0 => limit,
            listed => (limit - listed).min(budget.max(1)),
        };
        let mut names = store
            .indexed_rooms(from.as_deref(), wanted.saturating_add(1))
            .await?;
        let has_more = names.len() > wanted;
        names.truncate(wanted);
        examined += names.len();
        let found = futures_util::future::try_join_all(
            names.iter().map(|room| store.members_if_live(room)),
        )
        .await?;
        let gone = names
            .iter()
            .zip(&found)
            .filter(|(_, members)| members.is_none())
            .map(|(room, _)| drop_if_gone(store, room));
        futures_util::future::try_join_all(gone).await?;
        if let Some(last) = names.last() {
            from = Some(last.clone());
        }
        rooms.extend(names.into_iter().zip(found).filter_map(|(name, members)| {
            Some(RoomSummary {
                name,
                members: members?,
            })
        }));
        let spent = examined >= limit + GONE_PER_PAGE && !rooms.is_empty();
        if rooms.len() == limit || !has_more || spent {
            return Ok(RoomsPage { rooms, has_more });
        }
    }
}

/// Drops `room` from the index unless a node is subscribed to it (see the module docs).
async fn drop_if_gone(store: &Store, room: &str) -> Result<(), RedisBrokerError> {
    if store.subscribed(room).await? {
        return Ok(());
    }
    store.unindex_room(room).await?;
    if store.subscribed(room).await? || store.members_if_live(room).await?.is_some() {
        store.index_room(room).await?;
    }
    Ok(())
}
