//! A minimal line-based chat client: `cargo run -p skat-client --example chat -- alice general`.
//!
//! Arguments: name, room, and optionally the server URL (default `ws://127.0.0.1:3000/ws`). Every
//! line typed on stdin is sent to the room; every event is printed as it arrives.

#![allow(clippy::print_stdout)]

use skat_client::{Client, ClientError};
use skat_protocol::ServerFrame;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "guest".to_owned());
    let room = args.next().unwrap_or_else(|| "general".to_owned());
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:3000/ws".to_owned());

    let mut client = Client::connect(&url, &name).await?;
    println!(
        "connected to node {} as {name}",
        client.node().unwrap_or("?")
    );
    client.join(&room).await?;

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    // Nonces must not repeat for this user within the server's 2-minute dedup window, even
    // across restarts of this program: prefix them with the start time.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut sent = 0u64;
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) if !line.trim().is_empty() => {
                    sent += 1;
                    client.send_message(&room, &line, Some(&format!("cli-{run}-{sent}"))).await?;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return client.close().await,
            },
            event = client.next_event() => print_event(&event?),
        }
    }
}

fn print_event(frame: &ServerFrame) {
    match frame {
        ServerFrame::Joined {
            room,
            members,
            messages,
            more_members,
            ..
        } => {
            let more = if *more_members { ", …" } else { "" };
            println!("joined #{room}; online: {}{more}", members.join(", "));
            for m in messages {
                println!("[{}] {}: {}", m.id, m.from, m.body);
            }
        }
        ServerFrame::Message(m) => println!("[{}] {}: {}", m.id, m.from, m.body),
        ServerFrame::Presence { user, online, .. } => {
            println!("* {user} {}", if *online { "joined" } else { "left" });
        }
        ServerFrame::Typing { user, .. } => println!("* {user} is typing…"),
        ServerFrame::Error { code, message, .. } => println!("! {code}: {message}"),
        other => println!("{other:?}"),
    }
}
