//! The node's hot path without the kernel: one room event encoded once and delivered to 1000
//! local members (queue push, batch take, copy into each connection's output).
//!
//! `cargo bench -p skat-server --bench fanout`. The figure per member is the user-space cost of
//! one delivery before the `write` system call; compare it with the end-to-end CPU per delivery
//! that `skat-bench` measures.

#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use skat_server::bench::FanOut;

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan_out");
    let members = 1000;
    group.throughput(Throughput::Elements(members as u64));
    let mut room = FanOut::new(members);
    group.bench_function("one_event_to_1000_members", |b| {
        b.iter(|| room.deliver_one());
    });
    group.finish();
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
