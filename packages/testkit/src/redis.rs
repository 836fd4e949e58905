//! [`RedisServer`]: a real `redis-server` on a free loopback port, in its own temporary
//! directory, as a test (crashed and restarted at will) or the benchmark ([`RedisOptions`]:
//! without persistence, on pinned CPUs) wants it.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Error, Launch, Probe, Process, TempDir, free_port};

/// How long a start or restart may take.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How a [`RedisServer`] runs. The default: `redis-server` from `PATH`, unpinned, persisting
/// every write to an fsync'ed append-only file (what crash tests need).
#[derive(Debug, Clone)]
pub struct RedisOptions {
    bin: PathBuf,
    cpus: Option<String>,
    persist: bool,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            bin: PathBuf::from("redis-server"),
            cpus: None,
            persist: true,
        }
    }
}

impl RedisOptions {
    /// Runs the `redis-server` binary `bin`.
    #[must_use]
    pub fn bin(mut self, bin: impl Into<PathBuf>) -> RedisOptions {
        self.bin = bin.into();
        self
    }

    /// Pins it to `cpus` (`taskset -c`) when given.
    #[must_use]
    pub fn pinned(mut self, cpus: Option<&str>) -> RedisOptions {
        self.cpus = cpus.map(str::to_owned);
        self
    }

    /// Persists nothing (`--save "" --appendonly no`): no disk work while a benchmark measures,
    /// and nothing left after a crash.
    #[must_use]
    pub fn without_persistence(mut self) -> RedisOptions {
        self.persist = false;
        self
    }

    /// The `redis-server` arguments that follow from these options.
    fn args(&self) -> &'static [&'static str] {
        if self.persist {
            &[
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ]
        } else {
            &["--save", "", "--appendonly", "no"]
        }
    }
}

/// A `redis-server` child process on a free loopback port, in its own temporary directory.
///
/// Dropping it kills the process (SIGKILL), waits for it and removes the directory.
#[derive(Debug)]
pub struct RedisServer {
    pub(crate) port: u16,
    dir: TempDir,
    process: Option<Process>,
    pub(crate) options: RedisOptions,
    /// With [`RedisServer::start_tls`]: the TLS port (the plain one stays open for the
    /// harness's own `PING`s and [`RedisServer::command`]).
    tls_port: Option<u16>,
    /// More `redis-server` arguments (a cluster node's, a replica's).
    pub(crate) extra: Vec<String>,
}

impl RedisServer {
    /// Starts a fresh server with the default [`RedisOptions`] and waits until it answers
    /// `PING`.
    ///
    /// # Panics
    ///
    /// If `redis-server` is missing from `PATH` or does not answer `PING` within 10 s.
    pub async fn start() -> RedisServer {
        RedisServer::launch(&RedisOptions::default())
            .await
            .unwrap_or_else(|err| panic!("{err}\n(is redis-server installed? run `just setup`)"))
    }

    /// Starts a fresh server as `options` say and waits until it answers `PING`.
    ///
    /// # Errors
    ///
    /// If it cannot start or does not answer `PING` within 10 s.
    pub async fn launch(options: &RedisOptions) -> Result<RedisServer, Error> {
        let mut server = RedisServer::prepare(options.clone())?;
        server.spawn_and_wait().await?;
        Ok(server)
    }

    /// Starts a server that also speaks TLS, with a certificate for `127.0.0.1` signed by a
    /// throwaway CA made here (with the `openssl` command); see [`RedisServer::tls_url`] and
    /// [`RedisServer::ca_pem`].
    ///
    /// # Panics
    ///
    /// If `openssl` or `redis-server` is missing, or the server does not start.
    pub async fn start_tls() -> RedisServer {
        let mut server = RedisServer::prepare(RedisOptions::default()).expect("a redis dir");
        make_certificates(server.dir.path());
        server.tls_port = Some(free_port().expect("a free port"));
        server
            .spawn_and_wait()
            .await
            .unwrap_or_else(|err| panic!("{err}"));
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
        std::fs::read(self.dir.path().join("ca.crt"))
            .expect("the CA certificate is in the server's dir")
    }

    /// A server not started yet: its port and directory.
    pub(crate) fn prepare(options: RedisOptions) -> Result<RedisServer, Error> {
        Ok(RedisServer {
            port: free_port()?,
            dir: TempDir::new("redis")?,
            process: None,
            options,
            tls_port: None,
            extra: Vec::new(),
        })
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The process's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
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
        self.spawn_and_wait()
            .await
            .unwrap_or_else(|err| panic!("{err}"));
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
            let path = self.dir.path().join(data);
            if path.is_dir() {
                std::fs::remove_dir_all(&path).expect("delete redis's append-only files");
            } else if path.exists() {
                std::fs::remove_file(&path).expect("delete redis's snapshot");
            }
        }
        self.spawn_and_wait()
            .await
            .unwrap_or_else(|err| panic!("{err}"));
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

    /// Runs one command that answers `+OK`.
    pub(crate) async fn command_ok(&self, args: &[&str]) -> Result<(), Error> {
        let reply = self.command(args).await;
        if reply.as_deref().is_some_and(|r| r.starts_with("+OK")) {
            Ok(())
        } else {
            Err(Error::Redis {
                port: self.port,
                command: args.join(" "),
                reply,
            })
        }
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(Process::is_running)
    }

    /// Starts the process (again) and waits until it answers `PING`, retrying while it exits
    /// early (the port may be briefly unavailable after a kill).
    pub(crate) async fn spawn_and_wait(&mut self) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let dir = self.dir.path().to_owned();
        let mut args = vec!["--port".to_owned(), self.port.to_string()];
        args.extend(["--bind", "127.0.0.1"].map(str::to_owned));
        if let Some(port) = self.tls_port {
            let file = |name: &str| dir.join(name).display().to_string();
            args.extend([
                "--tls-port".to_owned(),
                port.to_string(),
                "--tls-cert-file".to_owned(),
                file("redis.crt"),
                "--tls-key-file".to_owned(),
                file("redis.key"),
                "--tls-ca-cert-file".to_owned(),
                file("ca.crt"),
                "--tls-auth-clients".to_owned(),
                "no".to_owned(),
            ]);
        }
        args.extend(self.extra.iter().cloned());
        args.extend(["--dir".to_owned(), dir.display().to_string()]);
        args.extend(self.options.args().iter().map(|a| (*a).to_owned()));
        args.extend(
            [
                "--daemonize",
                "no",
                "--protected-mode",
                "no",
                "--loglevel",
                "warning",
            ]
            .map(str::to_owned),
        );
        let launch = Launch::new("redis", &self.options.bin)
            .args(args)
            .pinned(self.options.cpus.as_deref());
        loop {
            let mut process = launch.spawn(&dir)?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match process.wait_ready(self.port, Probe::RedisPing, left).await {
                Ok(()) => {
                    self.process = Some(process);
                    return Ok(());
                }
                // Exited early (e.g. the port was briefly unavailable after a kill): try again.
                Err(Error::Exited { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => return Err(err),
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a server on `port` answers `PING` with `+PONG`.
    async fn ping(port: u16) -> bool {
        raw(port, b"PING\r\n")
            .await
            .is_some_and(|reply| reply.starts_with("+PONG"))
    }

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
