//! Opens many idle connections (hello + join) and holds them, to measure a node's memory per
//! idle connection: `cargo run --release -p skat-client --example idle -- <url> [count] [seconds]`.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::Duration;

use skat_client::Client;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args
        .first()
        .map_or("ws://127.0.0.1:3000/ws", String::as_str);
    let count: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5000);
    let hold: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let mut clients = Vec::with_capacity(count);
    for i in 0..count {
        let mut client = Client::connect(url, &format!("idle{i}")).await.unwrap();
        client.join(&format!("room{}", i % 100)).await.unwrap();
        clients.push(client);
    }
    println!("{count} idle connections open");
    // Keep reading so pings are answered, without holding anything else.
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| tokio::spawn(async move { while c.next_text().await.is_ok() {} }))
        .collect();
    tokio::time::sleep(Duration::from_secs(hold)).await;
    for reader in readers {
        reader.abort();
    }
}
