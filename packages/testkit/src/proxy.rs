//! A TCP proxy in front of one Redis server, to inject the faults a network makes.
//!
//! Killing or pausing Redis hits every client at once; a real outage often hits one node: its
//! connections are cut, or its path goes silent, or replies are late. A test points one node at
//! a [`Proxy`] (and others straight at Redis) and then cuts, partitions, blackholes or delays
//! exactly that node's connections, deterministically: no sleeps that hope for a race.
//!
//! Every connection is two pumps (client → server, server → client) in one task that also
//! watches the proxy's [`Faults`]; a change of faults applies to open connections at once.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The faults the proxy applies now.
#[derive(Debug, Clone, Default)]
struct Faults {
    /// Bumped by [`Proxy::cut`]: a connection from before the bump closes.
    cuts: u64,
    /// A partition the client notices: connections are closed, new ones too.
    down: bool,
    /// A silent partition: bytes are swallowed both ways.
    blackhole: bool,
    /// Replies to connections that have sent this command (upper case) are held back.
    hold: Option<String>,
    /// The proxy is dropped: every connection closes.
    closed: bool,
}

/// What the connections share with the [`Proxy`].
#[derive(Debug)]
struct Shared {
    upstream: u16,
    faults: watch::Sender<Faults>,
    /// Connections that hold reply bytes back right now.
    holding: watch::Sender<usize>,
    open: AtomicUsize,
}

/// A TCP proxy on a free loopback port in front of a Redis server on `127.0.0.1`; see the
/// module docs. Dropping it closes every connection through it.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    accept: tokio::task::AbortHandle,
}

impl Proxy {
    /// Starts a proxy to the server on `upstream_port` (e.g. [`RedisServer::port`]).
    ///
    /// [`RedisServer::port`]: crate::RedisServer::port
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound.
    pub async fn start(upstream_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("cannot bind a loopback port for the proxy");
        let port = listener
            .local_addr()
            .expect("bound socket has an address")
            .port();
        let shared = Arc::new(Shared {
            upstream: upstream_port,
            faults: watch::Sender::new(Faults::default()),
            holding: watch::Sender::new(0),
            open: AtomicUsize::new(0),
        });
        let accept = tokio::spawn(accept(listener, Arc::clone(&shared))).abort_handle();
        Proxy {
            port,
            shared,
            accept,
        }
    }

    /// The proxy's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL a Redis client connects through the proxy with.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Closes every open connection now (both sides see it closed); new ones work.
    pub fn cut(&self) {
        self.shared.faults.send_modify(|f| f.cuts += 1);
    }

    /// While down, open connections are closed and new ones closed as soon as accepted: a
    /// partition the client notices.
    pub fn set_down(&self, down: bool) {
        self.shared.faults.send_modify(|f| f.down = down);
    }

    /// While on, bytes are swallowed in both directions on open and new connections: a silent
    /// partition (nothing fails, nothing answers; a connect succeeds, its handshake times out).
    /// Turning it off closes the connections that lost bytes (their streams are broken).
    pub fn set_blackhole(&self, on: bool) {
        self.shared.faults.send_modify(|f| f.blackhole = on);
    }

    /// From now on, holds back (in order) what the server sends to every connection that has
    /// sent `command` (a RESP bulk string of letters, matched case-insensitively: `"SUBSCRIBE"`
    /// matches a pub/sub connection, not one that sent `SSUBSCRIBE`), until
    /// [`release`](Self::release).
    pub fn hold_replies_to(&self, command: &str) {
        let command = command.to_ascii_uppercase();
        self.shared.faults.send_modify(|f| f.hold = Some(command));
    }

    /// Lets the held replies through, and stops holding.
    pub fn release(&self) {
        self.shared.faults.send_modify(|f| f.hold = None);
    }

    /// Waits until some connection holds a reply back (after
    /// [`hold_replies_to`](Self::hold_replies_to)).
    pub async fn holding(&self) {
        let mut holding = self.shared.holding.subscribe();
        // The sender lives in `self`: waiting cannot fail.
        let _ = holding.wait_for(|n| *n > 0).await;
    }

    /// Connections open through the proxy now.
    pub fn connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.faults.send_modify(|f| f.closed = true);
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((client, _)) = listener.accept().await {
        if shared.faults.borrow().down {
            continue;
        }
        tokio::spawn(serve(client, Arc::clone(&shared)));
    }
}

/// Counts a connection open while it lives.
struct Open<'a>(&'a AtomicUsize);

impl<'a> Open<'a> {
    fn new(open: &'a AtomicUsize) -> Self {
        open.fetch_add(1, Ordering::SeqCst);
        Self(open)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One connection: pumps bytes both ways under the faults of the moment.
async fn serve(mut client: TcpStream, shared: Arc<Shared>) {
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", shared.upstream)).await else {
        return;
    };
    let _open = Open::new(&shared.open);
    let mut faults = shared.faults.subscribe();
    let born = faults.borrow().cuts;
    let (mut from_client, mut to_client) = client.split();
    let (mut from_server, mut to_server) = server.split();
    let (mut up, mut down) = ([0u8; 16 * 1024], [0u8; 16 * 1024]);
    let mut commands = Commands::default();
    // Reply bytes held back; this connection counts in `shared.holding` while there are some.
    let mut held = Holding::new(&shared.holding);
    let mut lost_bytes = false;
    loop {
        let now = faults.borrow_and_update().clone();
        if now.closed || now.down || now.cuts != born || (lost_bytes && !now.blackhole) {
            break;
        }
        let holds = now.hold.as_ref().is_some_and(|c| commands.sent(c));
        if !holds && !held.bytes.is_empty() {
            if to_client.write_all(&held.bytes).await.is_err() {
                break;
            }
            held.clear();
        }
        tokio::select! {
            changed = faults.changed() => if changed.is_err() { break },
            read = from_client.read(&mut up) => {
                let n = match read { Ok(0) | Err(_) => break, Ok(n) => n };
                if now.blackhole {
                    lost_bytes = true;
                    continue;
                }
                commands.scan(&up[..n]);
                if to_server.write_all(&up[..n]).await.is_err() {
                    break;
                }
            }
            read = from_server.read(&mut down) => {
                let n = match read { Ok(0) | Err(_) => break, Ok(n) => n };
                if now.blackhole {
                    lost_bytes = true;
                } else if holds {
                    held.push(&down[..n]);
                } else if to_client.write_all(&down[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// Reply bytes a connection holds back, counted in the proxy's `holding` while there are some.
struct Holding<'a> {
    bytes: Vec<u8>,
    count: &'a watch::Sender<usize>,
}

impl<'a> Holding<'a> {
    fn new(count: &'a watch::Sender<usize>) -> Self {
        Self {
            bytes: Vec::new(),
            count,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.bytes.is_empty() {
            self.count.send_modify(|n| *n += 1);
        }
        self.bytes.extend_from_slice(bytes);
    }

    fn clear(&mut self) {
        if !self.bytes.is_empty() {
            self.count.send_modify(|n| *n = n.saturating_sub(1));
        }
        self.bytes.clear();
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The command names a client has sent: every RESP bulk string made of letters only (a
/// command's name, or an argument that looks like one, which tests can live with).
#[derive(Debug, Default)]
struct Commands {
    seen: HashSet<String>,
    /// The end of the previous read, scanned again with the next, so that a name split
    /// between two reads is found.
    carry: Vec<u8>,
}

impl Commands {
    /// The longest name looked for, and so the most a split needs carried over.
    const LONGEST: usize = 32;

    fn sent(&self, command: &str) -> bool {
        self.seen.contains(command)
    }

    fn scan(&mut self, bytes: &[u8]) {
        let mut window = std::mem::take(&mut self.carry);
        window.extend_from_slice(bytes);
        for start in positions(b'$', &window) {
            if let Some(name) = bulk_word(&window[start + 1..]) {
                self.seen.insert(name.to_ascii_uppercase());
            }
        }
        let keep = window.len().saturating_sub(Self::LONGEST + 8);
        self.carry = window.split_off(keep);
    }
}

/// Positions of `byte` in `bytes`.
fn positions(byte: u8, bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes
        .iter()
        .enumerate()
        .filter(move |(_, b)| **b == byte)
        .map(|(i, _)| i)
}

/// `<len>\r\n<letters>\r\n` at the start of `bytes`: the letters.
fn bulk_word(bytes: &[u8]) -> Option<String> {
    let line = bytes.windows(2).position(|w| w == b"\r\n")?;
    let len: usize = std::str::from_utf8(&bytes[..line]).ok()?.parse().ok()?;
    if len == 0 || len > Commands::LONGEST {
        return None;
    }
    let word = bytes.get(line + 2..line + 2 + len)?;
    let end = bytes.get(line + 2 + len..line + 4 + len)?;
    (end == b"\r\n" && word.iter().all(u8::is_ascii_alphabetic))
        .then(|| String::from_utf8_lossy(word).into_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::RedisServer;

    /// Sends `command` on `stream` and reads what comes back within `wait`.
    async fn ask(stream: &mut TcpStream, command: &[u8], wait: Duration) -> Option<Vec<u8>> {
        stream.write_all(command).await.ok()?;
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => Some(buf[..n].to_vec()),
            _ => None,
        }
    }

    const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
    const SUBSCRIBE: &[u8] = b"*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n";
    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn finds_command_names_split_between_reads() {
        let mut commands = Commands::default();
        let (a, b) = SUBSCRIBE.split_at(12);
        commands.scan(a);
        assert!(!commands.sent("SUBSCRIBE"));
        commands.scan(b);
        assert!(commands.sent("SUBSCRIBE"));
        assert!(!commands.sent("SSUBSCRIBE"));
    }

    #[tokio::test]
    async fn passes_cuts_blackholes_and_holds() {
        let redis = RedisServer::start().await;
        let proxy = Proxy::start(redis.port()).await;
        let mut conn = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .unwrap();
        assert_eq!(ask(&mut conn, PING, SECOND).await.unwrap(), b"+PONG\r\n");
        assert_eq!(proxy.connections(), 1);

        proxy.cut();
        assert_eq!(ask(&mut conn, PING, SECOND).await, None, "cut");

        let mut conn = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .unwrap();
        proxy.set_blackhole(true);
        assert_eq!(ask(&mut conn, PING, SECOND / 4).await, None, "swallowed");
        proxy.set_blackhole(false);
        assert_eq!(
            ask(&mut conn, PING, SECOND).await,
            None,
            "broken, so closed"
        );

        let mut subscriber = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .unwrap();
        let mut other = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .unwrap();
        proxy.hold_replies_to("subscribe");
        assert_eq!(ask(&mut subscriber, SUBSCRIBE, SECOND / 4).await, None);
        proxy.holding().await;
        assert_eq!(ask(&mut other, PING, SECOND).await.unwrap(), b"+PONG\r\n");
        proxy.release();
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(SECOND, subscriber.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"*3\r\n$9\r\nsubscribe"));

        proxy.set_down(true);
        let mut refused = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .unwrap();
        assert_eq!(ask(&mut refused, PING, SECOND).await, None, "down");
        proxy.set_down(false);
        let mut conn = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .unwrap();
        assert_eq!(ask(&mut conn, PING, SECOND).await.unwrap(), b"+PONG\r\n");
    }
}
