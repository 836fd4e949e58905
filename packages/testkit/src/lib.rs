//! Test harness: real `redis-server` processes for Skat's tests, and a [`Proxy`] to put
//! network faults between a node and one of them.
//!
//! Tests never touch a shared Redis (such as one on 6379): each [`RedisServer`] is a child
//! process on a free loopback port with its own temporary directory, killed and cleaned up on
//! drop. It persists with an fsync'ed append-only file, so a [`RedisServer::kill`] followed by
//! [`RedisServer::restart`] simulates a crash that loses nothing Redis acknowledged.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod cluster;
mod proxy;
mod replica;

pub use cluster::RedisCluster;
pub use proxy::Proxy;

/// How long a start or restart may take before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` child process on a free loopback port, in its own temporary directory.
///
/// Dropping it kills the process (SIGKILL), waits for it and removes the directory.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// With [`RedisServer::start_tls`]: the TLS port (the plain one stays open for the
    /// harness's own `PING`s and [`RedisServer::command`]).
    tls_port: Option<u16>,
    /// More `redis-server` arguments (a cluster node's).
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a fresh server and waits until it answers `PING`.
    ///
    /// # Panics
    ///
    /// If `redis-server` is missing from `PATH` or does not answer `PING` within 10 s.
    pub async fn start() -> RedisServer {
        let mut server = RedisServer::new();
        server.spawn_and_wait().await;
        server
    }

    /// Starts a server that also speaks TLS, with a certificate for `127.0.0.1` signed by a
    /// throwaway CA made here (with the `openssl` command); see [`RedisServer::tls_url`] and
    /// [`RedisServer::ca_pem`].
    ///
    /// # Panics
    ///
    /// If `openssl` or `redis-server` is missing, or the server does not start.
    pub async fn start_tls() -> RedisServer {
        let mut server = RedisServer::new();
        make_certificates(&server.dir);
        server.tls_port = Some(free_port());
        server.spawn_and_wait().await;
        server
    }

    /// The `rediss://` URL of a server started with [`RedisServer::start_tls`].
    ///
    /// # Panics
    ///
    /// If the server was started without TLS.
    pub fn tls_url(&self) -> String {
        let port = self.tls_port.expect("started with start_tls");
        format!("rediss://127.0.0.1:{port}/")
    }

    /// The PEM certificate of the CA that signed a TLS server's certificate.
    ///
    /// # Panics
    ///
    /// If the server was started without TLS.
    pub fn ca_pem(&self) -> Vec<u8> {
        assert!(self.tls_port.is_some(), "started with start_tls");
        std::fs::read(self.dir.join("ca.crt")).expect("the CA certificate is in the server's dir")
    }

    fn new() -> RedisServer {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "skat-redis-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("cannot create a temp dir for redis-server");
        RedisServer {
            port: free_port(),
            dir,
            child: None,
            tls_port: None,
            extra: Vec::new(),
        }
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory (its data survives a
    /// [`kill`](Self::kill)) and waits until it answers `PING`.
    ///
    /// # Panics
    ///
    /// If the server does not answer `PING` within 10 s.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn_and_wait().await;
    }

    /// Kills the server and starts it again with its data files deleted, as a Redis without
    /// persistence comes back from a crash: empty.
    ///
    /// # Panics
    ///
    /// If the data files cannot be deleted, or the server does not answer `PING` within 10 s.
    pub async fn restart_empty(&mut self) {
        self.kill();
        for data in ["appendonlydir", "dump.rdb"] {
            let path = self.dir.join(data);
            if path.is_dir() {
                std::fs::remove_dir_all(&path).expect("delete redis's append-only files");
            } else if path.exists() {
                std::fs::remove_file(&path).expect("delete redis's snapshot");
            }
        }
        self.spawn_and_wait().await;
    }

    /// Runs one command over a raw connection and returns the start of the RESP reply (e.g.
    /// `:2\r\n`), or `None` if the server did not answer.
    pub async fn command(&self, args: &[&str]) -> Option<String> {
        let mut resp = format!("*{}\r\n", args.len());
        for arg in args {
            resp.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        raw(self.port, resp.as_bytes()).await
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    async fn spawn_and_wait(&mut self) {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            let tls = self.tls_port.map(|port| {
                [
                    "--tls-port".to_owned(),
                    port.to_string(),
                    "--tls-cert-file".to_owned(),
                    "redis.crt".to_owned(),
                    "--tls-key-file".to_owned(),
                    "redis.key".to_owned(),
                    "--tls-ca-cert-file".to_owned(),
                    "ca.crt".to_owned(),
                    "--tls-auth-clients".to_owned(),
                    "no".to_owned(),
                ]
            });
            let child = Command::new("redis-server")
                .current_dir(&self.dir)
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(tls.iter().flatten())
                .args(&self.extra)
                .arg("--dir")
                .arg(&self.dir)
                .args([
                    "--save",
                    "",
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                ])
                .args([
                    "--daemonize",
                    "no",
                    "--protected-mode",
                    "no",
                    "--loglevel",
                    "warning",
                ])
                .args(["--logfile", "redis.log"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("cannot run redis-server: is redis-server installed? run `just setup`");
            self.child = Some(child);
            while tokio::time::Instant::now() < deadline {
                if ping(self.port).await {
                    return;
                }
                if !self.is_running() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Exited early (e.g. the port was briefly unavailable after a kill): try again.
            self.kill();
            if tokio::time::Instant::now() >= deadline {
                // The directory goes away when `self` drops during the panic: show the log now.
                let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
                panic!(
                    "redis-server did not answer PING on port {} within {START_TIMEOUT:?} \
                     (is redis-server installed? run `just setup`); its log:\n{log}",
                    self.port
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Makes, in `dir`, a CA (`ca.crt`) and a certificate for 127.0.0.1 it signed (`redis.crt`,
/// `redis.key`), valid for a day.
fn make_certificates(dir: &std::path::Path) {
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n")
        .expect("cannot write in the server's dir");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let steps: [&[&str]; 3] = [
        &[
            &["req", "-x509"],
            &ec[..],
            &["-keyout", "ca.key", "-out", "ca.crt"],
        ]
        .concat(),
        &[
            &["req"],
            &ec[..],
            &["-keyout", "redis.key", "-out", "redis.csr"],
        ]
        .concat(),
        &[
            "x509",
            "-req",
            "-in",
            "redis.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "redis.crt",
            "-extfile",
            "san.ext",
        ],
    ];
    for (step, subject) in steps.iter().zip(["/CN=skat test CA", "/CN=127.0.0.1", ""]) {
        let mut openssl = Command::new("openssl");
        openssl.current_dir(dir).args(*step).args(["-days", "1"]);
        if !subject.is_empty() {
            openssl.args(["-subj", subject]);
        }
        let out = openssl
            .stdin(Stdio::null())
            .output()
            .expect("cannot run openssl: is it installed?");
        assert!(
            out.status.success(),
            "openssl {step:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port");
    listener
        .local_addr()
        .expect("bound socket has an address")
        .port()
}

/// Sends one raw RESP command and returns the start of the reply.
async fn raw(port: u16, command: &[u8]) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    stream.write_all(command).await.ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        if complete(&reply) {
            break;
        }
    }
    Some(String::from_utf8_lossy(&reply).into_owned())
}

/// Whether `reply` holds a whole RESP reply of the simple kinds these helpers read: a line, or
/// a bulk string (`$<len>` then that many bytes).
fn complete(reply: &[u8]) -> bool {
    let Some(line_end) = reply.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    match reply.first() {
        Some(b'$') => std::str::from_utf8(&reply[1..line_end])
            .ok()
            .and_then(|len| len.parse::<i64>().ok())
            .is_none_or(|len| len < 0 || reply.len() >= line_end + 2 + len as usize + 2),
        _ => true,
    }
}

/// Whether a server on `port` answers `PING` with `+PONG`.
async fn ping(port: u16) -> bool {
    raw(port, b"PING\r\n")
        .await
        .is_some_and(|reply| reply.starts_with("+PONG"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_crashes_and_restarts_with_its_data() {
        let mut redis = RedisServer::start().await;
        assert!(ping(redis.port()).await);
        assert!(redis.url().contains(&redis.port().to_string()));
        let set = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
        assert_eq!(raw(redis.port(), set).await.as_deref(), Some("+OK\r\n"));
        redis.kill();
        assert!(!redis.is_running());
        assert!(!ping(redis.port()).await);
        redis.restart().await;
        assert!(redis.is_running());
        assert_eq!(
            redis.command(&["GET", "k"]).await.as_deref(),
            Some("$1\r\nv\r\n")
        );
    }
}
