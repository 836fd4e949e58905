//! The echo server `just autobahn` runs Autobahn|Testsuite's fuzzing client against: Skat's own
//! WebSocket layer (`skat_server::autobahn`) on a TCP port.
//!
//! ```text
//! cargo run --release -p skat-server --example autobahn_echo [ADDR]
//! ```
//!
//! `ADDR` defaults to `127.0.0.1:0` (a free port); the first line printed is
//! `listening on ws://ADDR` with the address actually bound, for the script to read.

#![allow(clippy::print_stdout)]

use std::io::Write as _;
use std::net::SocketAddr;

use anyhow::Context as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:0")
        .parse()
        .context("ADDR must be an IP address and port, e.g. 127.0.0.1:9001")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    println!("listening on ws://{bound}");
    std::io::stdout().flush().context("writing to stdout")?;
    axum::serve(listener, skat_server::autobahn::router())
        .await
        .context("serving")
}
