//! Small collections shared by the broker and the server: the shape every per-room table of a
//! node takes (the server's members of a room and users per room, the embedded broker's presence
//! counts, the presence entries a Redis node holds). Not part of the [`Broker`](crate::Broker)
//! API: a utility that lives here because the broker uses it itself and every crate that keeps
//! rooms already depends on this one.

mod sorted;
mod tally;

pub use sorted::SortedMap;
pub use tally::Tally;
