//! [`Process`]: a child process of a test or the benchmark, started from a [`Launch`] with its
//! output in a log file (pinned to CPUs with `taskset` if asked), waited for until it serves
//! ([`Probe`]), and killed when dropped.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::Error;

/// Lines of a process's log an error quotes.
const LOG_TAIL: usize = 30;

/// How to start a [`Process`]: its program, arguments and environment, and the CPUs it may run
/// on.
#[derive(Debug, Clone)]
pub struct Launch {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    cpus: Option<String>,
}

impl Launch {
    /// Runs `program`; `name` names the process in errors and its log, `<name>.log`.
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>) -> Launch {
        Launch {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            envs: Vec::new(),
            cpus: None,
        }
    }

    /// The same launch under another name.
    pub(crate) fn renamed(mut self, name: &str) -> Launch {
        name.clone_into(&mut self.name);
        self
    }

    /// Adds arguments.
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable (a later one of the same name wins).
    #[must_use]
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Launch {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Runs it under `taskset -c <cpus>` (a list such as `0` or `0,2-3`) when `cpus` is given.
    /// `taskset` execs the program, so the pid is the program's.
    #[must_use]
    pub fn pinned(mut self, cpus: Option<&str>) -> Launch {
        self.cpus = cpus.map(str::to_owned);
        self
    }

    /// Starts it, its output (stdout and stderr) appended to `<dir>/<name>.log`. The caller's
    /// `SKAT_*` variables are removed from its environment: a process's settings are the ones
    /// given here, never those of the shell that ran the tests or the benchmark.
    ///
    /// # Errors
    ///
    /// If the log cannot be opened or the program cannot be started.
    pub fn spawn(&self, dir: &Path) -> Result<Process, Error> {
        let log = dir.join(format!("{}.log", self.name));
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|err| Error::io(format!("cannot open {}", log.display()), err))?;
        let err = out
            .try_clone()
            .map_err(|err| Error::io(format!("cannot open {}", log.display()), err))?;
        let mut command = match &self.cpus {
            Some(cpus) => {
                let mut taskset = Command::new("taskset");
                taskset.arg("-c").arg(cpus).arg(&self.program);
                taskset
            }
            None => Command::new(&self.program),
        };
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SKAT_") {
                command.env_remove(key);
            }
        }
        command
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = command.spawn().map_err(|source| Error::Spawn {
            program: self.program.display().to_string(),
            source,
        })?;
        Ok(Process {
            name: self.name.clone(),
            pid: child.id(),
            child,
            log,
        })
    }
}

/// How [`Process::wait_ready`] tells that a process serves on its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Probe {
    /// It accepts TCP connections.
    Connect,
    /// It answers `GET /readyz` with 200, as a `skat-server` node does once it serves.
    Readyz,
    /// It answers `PING` with `+PONG`, as a `redis-server` does.
    RedisPing,
}

impl Probe {
    /// One attempt on `port` (2 s at most): whether it answered as expected.
    async fn once(self, port: u16) -> bool {
        let attempt = async {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
            let (request, expect): (&[u8], &[u8]) = match self {
                Probe::Connect => return Ok::<bool, std::io::Error>(true),
                Probe::Readyz => (
                    b"GET /readyz HTTP/1.1\r\nHost: harness\r\nConnection: close\r\n\r\n",
                    b"HTTP/1.1 200",
                ),
                Probe::RedisPing => (b"PING\r\n", b"+PONG"),
            };
            stream.write_all(request).await?;
            let mut buf = [0; 64];
            let mut got = 0;
            while got < expect.len() {
                let n = stream.read(&mut buf[got..]).await?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            Ok(buf[..got].starts_with(expect))
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), attempt).await,
            Ok(Ok(true))
        )
    }
}

/// A child process, killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Process {
    name: String,
    pid: u32,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Its name, as its [`Launch`] gave it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Fails with the end of its log if it has exited.
    ///
    /// # Errors
    ///
    /// [`Error::Exited`] if it has.
    pub fn check_alive(&mut self) -> Result<(), Error> {
        let exited = self
            .child
            .try_wait()
            .map_err(|err| Error::io(format!("cannot wait for {}", self.name), err))?;
        match exited {
            None => Ok(()),
            Some(status) => Err(Error::Exited {
                name: self.name.clone(),
                status,
                log: self.log_tail(LOG_TAIL),
            }),
        }
    }

    /// Waits until it answers `probe` on `port`, for `timeout` at most.
    ///
    /// # Errors
    ///
    /// [`Error::Exited`] if it exits meanwhile, [`Error::Timeout`] if it does not answer.
    pub async fn wait_ready(
        &mut self,
        port: u16,
        probe: Probe,
        timeout: Duration,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if probe.once(port).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    name: self.name.clone(),
                    what: format!("did not become ready on port {port}"),
                    timeout,
                    log: self.log_tail(LOG_TAIL),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, as a crash would, and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as an orchestrator stopping it does; then waits `timeout` at most for it to
    /// exit by itself.
    ///
    /// # Errors
    ///
    /// If `kill -TERM` fails, or [`Error::Timeout`] if it is still running after `timeout`.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus, Error> {
        let pid = self.pid.to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(|source| Error::Spawn {
                program: "kill".to_owned(),
                source,
            })?;
        if !status.success() {
            let failed = std::io::Error::other(format!("{status}"));
            return Err(Error::io(format!("kill -TERM {pid}"), failed));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self
                .child
                .try_wait()
                .map_err(|err| Error::io(format!("cannot wait for {}", self.name), err))?;
            if let Some(status) = exited {
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    name: self.name.clone(),
                    what: "did not exit after SIGTERM".to_owned(),
                    timeout,
                    log: self.log_tail(LOG_TAIL),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{TempDir, free_port};

    #[tokio::test]
    async fn a_process_logs_is_probed_and_reports_its_exit() {
        let dir = TempDir::new("process-test").unwrap();
        let mut shell = Launch::new("sh", "sh")
            .args(["-c", "echo \"$GREETING\"; exit 3"])
            .env("GREETING", "hello")
            .spawn(dir.path())
            .unwrap();
        let port = free_port().unwrap();
        let err = shell
            .wait_ready(port, Probe::Connect, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Exited { name, log, .. } if name == "sh" && log == "hello"),
            "{err}"
        );
        assert!(!shell.is_running());
        assert_eq!(shell.log_path(), dir.path().join("sh.log"));
    }

    #[tokio::test]
    async fn terminate_sends_sigterm_and_waits() {
        let dir = TempDir::new("process-test").unwrap();
        let mut sleeper = Launch::new("sleep", "sleep")
            .args(["30"])
            .spawn(dir.path())
            .unwrap();
        assert!(sleeper.is_running());
        let status = sleeper.terminate(Duration::from_secs(5)).await.unwrap();
        assert!(!status.success());
        assert!(!sleeper.is_running());
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let dir = TempDir::new("process-test").unwrap();
        let err = Launch::new("x", "/nonexistent/skat-test-program")
            .spawn(dir.path())
            .unwrap_err();
        assert!(matches!(err, Error::Spawn { .. }), "{err}");
    }
}
