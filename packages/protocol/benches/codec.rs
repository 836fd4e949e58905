//! The protocol's hot path: decoding a client's `send` frame and encoding the `message` frame
//! every room member receives (once per node and message), with bodies of about 100 bytes.
//!
//! ```text
//! cargo bench -p skat-protocol --bench codec            # full measurement
//! cargo bench -p skat-protocol --bench codec -- --quick # a few seconds
//! ```

// `criterion_group!` and `criterion_main!` generate undocumented public items.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use skat_protocol::{ClientFrame, Message, MessageId, ServerFrame, decode_client, encode_server};

/// A 100-byte chat line, plain text.
const PLAIN: &str = "Sure, let's meet at 10:30 tomorrow in the lobby; I'll bring the slides and the printed agenda.";
/// A 100-byte chat line that needs escaping and has non-ASCII text.
const ESCAPED: &str =
    "\"Größe\" matters:\n\tsee https://example.org/a?b=c&d=e — ça va? 😀 \\o/ line two\nline three";

fn send_frame(body: &str) -> String {
    skat_protocol::encode_client(&ClientFrame::Send {
        room: "general".to_owned(),
        body: body.to_owned(),
        nonce: Some("c-1764290000000-42".to_owned()),
        reply_to: None,
    })
}

fn message_frame(body: &str) -> ServerFrame {
    ServerFrame::Message(Message {
        room: "general".to_owned(),
        id: MessageId {
            ms: 1_764_290_000_000,
            seq: 17,
        },
        from: "alice".to_owned(),
        body: body.to_owned(),
        ts: 1_764_290_000_000,
        nonce: Some("c-1764290000000-42".to_owned()),
        extras: None,
    })
}

fn codec(c: &mut Criterion) {
    for (name, body) in [("plain", PLAIN), ("escaped", ESCAPED)] {
        let text = send_frame(body);
        let mut group = c.benchmark_group("decode_client/send");
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| decode_client(black_box(&text)).unwrap());
        });
        group.finish();

        let frame = message_frame(body);
        let mut group = c.benchmark_group("encode_server/message");
        group.throughput(Throughput::Bytes(encode_server(&frame).len() as u64));
        group.bench_function(name, |b| b.iter(|| encode_server(black_box(&frame))));
        group.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
