//! The presence entries this node holds, and the heartbeat that keeps them (and the node's claim
//! on its id) alive: a node's entries outlive it by one TTL at most.

use std::collections::HashMap;
use std::sync::Arc;

use super::claim::Claim;
use super::store::Store;
use crate::sparse::ShrinkWhenSparse as _;
use crate::{SortedMap, lock};

/// The presence entries this node holds, by room: each room's name is kept once, not once per
/// user in it (a node may hold one entry per connection). A set, as Redis holds one entry per
/// node and user; sorted per room, as most rooms have a few users (see [`SortedMap`]).
#[derive(Debug, Default)]
pub(super) struct Held(HashMap<Box<str>, SortedMap<Box<str>, ()>>);

impl Held {
    pub(super) fn insert(&mut self, room: &str, user: &str) {
        let users = match self.0.get_mut(room) {
            Some(users) => users,
            None => self.0.entry(room.into()).or_default(),
        };
        users.get_or_insert_with(user.into(), || ());
    }

    pub(super) fn remove(&mut self, room: &str, user: &str) {
        let Some(users) = self.0.get_mut(room) else {
            return;
        };
        users.remove(user);
        if users.is_empty() {
            self.0.remove(room);
            self.0.shrink_when_sparse();
        }
    }

    /// Every (room, user) held, for a heartbeat round.
    fn pairs(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .flat_map(|(room, users)| {
                users
                    .keys()
                    .map(|user| (room.to_string(), user.to_string()))
            })
            .collect()
    }
}

/// Refreshes this node's presence entries so they outlive it only by the TTL.
pub(super) async fn heartbeat_task(store: Arc<Store>, claim: Arc<Claim>) {
    let mut interval = tokio::time::interval(store.config.heartbeat);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match claim.refresh(&store).await {
            Ok(true) => {}
            Ok(false) => tracing::error!(
                node = %store.config.node_id,
                "another node took this node's id (its claim expired while Redis was unreachable): presence is shared with it until one of them stops"
            ),
            Err(err) => tracing::warn!(error = %err, "node id claim not refreshed"),
        }
        let held = lock(&store.held).pairs();
        for chunk in held.chunks(64) {
            let refreshes = chunk
                .iter()
                .map(|(room, user)| store.presence_join(room, user));
            for result in futures_util::future::join_all(refreshes).await {
                if let Err(err) = result {
                    tracing::warn!(error = %err, "presence heartbeat failed");
                }
            }
        }
    }
}
