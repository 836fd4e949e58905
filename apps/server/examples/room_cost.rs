//! What rooms and their members cost a node on the embedded broker, counted by the allocator:
//! the registry's entry, the room's fan-out and subscription, and the broker's room state,
//! exactly as a connection's `join` makes them, without sockets.
//!
//! ```text
//! cargo run --release -p skat-server --example room_cost [ROOMS] [MEMBERS]
//! ```
//!
//! It reports bytes in use (as requested from the allocator, counted by `dhat`) and live blocks (each costs the
//! allocator some 8 to 16 bytes more): per room with one member, per member of one room of
//! `MEMBERS` (10,000 by default), and their difference, what a room costs beyond its members.
//! Then everyone leaves, and what is still held is reported too.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use skat_server::bench::Registry;

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

fn in_use() -> (isize, isize) {
    let stats = dhat::HeapStats::get();
    (stats.curr_bytes as isize, stats.curr_blocks as isize)
}

/// Bytes and blocks per unit since `before`.
fn per(before: (isize, isize), units: usize) -> (f64, f64) {
    let (bytes, blocks) = in_use();
    (
        (bytes - before.0) as f64 / units as f64,
        (blocks - before.1) as f64 / units as f64,
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rooms: usize = args.next().map_or(10_000, |n| n.parse().unwrap());
    let members: usize = args.next().map_or(10_000, |n| n.parse().unwrap());
    // Names made up front, so only what the registry and broker keep is counted.
    let room_names: Vec<String> = (0..rooms).map(|i| format!("room-{i:06}")).collect();
    let user_names: Vec<String> = (0..members).map(|i| format!("user-{i:06}")).collect();

    // Counts the heap in use; testing mode writes no profile.
    let _profiler = dhat::Profiler::builder().testing().build();
    let mut registry = Registry::default();
    let before = in_use();
    for room in &room_names {
        registry.join(room, "alice").await.unwrap();
    }
    registry.drain();
    let (room_bytes, room_blocks) = per(before, rooms);
    println!(
        "{rooms} rooms of 1 member: {room_bytes:.0} bytes in {room_blocks:.1} blocks per room"
    );
    registry.leave_all().await;
    assert_eq!(registry.rooms(), 0);
    let (left, _) = per(before, rooms);
    println!("  after everyone left: {left:.0} bytes per room still held");

    let before = in_use();
    for user in &user_names {
        registry.join("big", user).await.unwrap();
    }
    registry.drain();
    let (member_bytes, member_blocks) = per(before, members);
    println!(
        "1 room of {members} members: {member_bytes:.0} bytes in {member_blocks:.2} blocks per member"
    );
    println!(
        "a room beyond its members: {:.0} bytes in {:.1} blocks",
        room_bytes - member_bytes,
        room_blocks - member_blocks
    );
    registry.leave_all().await;
}
