//! A minimal HTTP/1.1 client over a raw socket, for the node's plain HTTP endpoints.

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A response: status line, lowercased headers, body.
pub(crate) struct Response {
    pub status_line: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    /// The status code.
    pub(crate) fn status(&self) -> u16 {
        self.status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap()
    }

    /// The body as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

/// Sends `method path` with extra `headers` (each line ending in `\r\n`) and `body`.
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> Response {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let length = if body.is_empty() && method == "GET" {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}{length}Connection: close\r\n\r\n{body}"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(response[..split].to_vec()).unwrap();
    let mut lines = head.lines();
    let status_line = lines.next().unwrap().to_owned();
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
        .collect();
    Response {
        status_line,
        headers,
        body: response[split + 4..].to_vec(),
    }
}

/// A TCP connection to `addr` from local address `from`: loopback has 127.0.0.0/8, so a test
/// can be several clients to the node. With `receive_buffer`, the socket takes at most about
/// that much before its peer's writes block (a client that does not read).
pub(crate) async fn connect_from(
    from: std::net::IpAddr,
    addr: SocketAddr,
    receive_buffer: Option<u32>,
) -> std::io::Result<TcpStream> {
    let socket = match from {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    if let Some(size) = receive_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(addr).await
}

/// A WebSocket handshake with `addr` from local address `from`, with extra `headers` (each
/// line ending in `\r\n`): the answer's status code, and the connection (a WebSocket after a
/// 101, held open as long as the caller keeps it).
pub(crate) async fn upgrade(addr: SocketAddr, from: &str, headers: &str) -> (u16, TcpStream) {
    let mut stream = connect_from(from.parse().unwrap(), addr, None)
        .await
        .unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\n{headers}Upgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(super::DEADLINE, stream.read_exact(&mut head))
        .await
        .expect("no answer to the upgrade")
        .unwrap();
    let status = String::from_utf8_lossy(&head[9..12]).parse().unwrap();
    (status, stream)
}
