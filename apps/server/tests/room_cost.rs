//! What a room costs a node beyond its members, counted by the allocator (so this is a count of
//! bytes, not a timing): a test binary of its own, as it installs `dhat` as its allocator.
//! `examples/room_cost.rs` prints the same figures.

#![allow(clippy::unwrap_used)]

use skat_server::bench::Registry;

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

fn bytes_in_use() -> usize {
    dhat::HeapStats::get().curr_bytes
}

#[tokio::test(flavor = "current_thread")]
async fn a_room_costs_a_few_hundred_bytes_beyond_its_members_and_nothing_once_left() {
    const ROOMS: usize = 2000;
    const MEMBERS: usize = 2000;
    let _profiler = dhat::Profiler::builder().testing().build();
    let rooms: Vec<String> = (0..ROOMS).map(|i| format!("room-{i:06}")).collect();
    let users: Vec<String> = (0..MEMBERS).map(|i| format!("user-{i:06}")).collect();
    let mut registry = Registry::default();

    let before = bytes_in_use();
    for room in &rooms {
        registry.join(room, "alice").await.unwrap();
    }
    registry.drain();
    let per_room = (bytes_in_use() - before) / ROOMS;
    registry.leave_all().await;
    assert_eq!(registry.rooms(), 0);
    let left = bytes_in_use().saturating_sub(before) / ROOMS;

    let before = bytes_in_use();
    for user in &users {
        registry.join("big", user).await.unwrap();
    }
    registry.drain();
    let per_member = (bytes_in_use() - before) / MEMBERS;
    registry.leave_all().await;

    let beyond = per_room.saturating_sub(per_member);
    eprintln!("room with one member {per_room} B, member {per_member} B, room beyond {beyond} B");
    assert!(
        beyond < 1024,
        "a room costs {beyond} bytes beyond its members"
    );
    assert!(left < 128, "{left} bytes per room kept after everyone left");
}
