//! What every process of a test or the benchmark runs on: a free loopback port, and a
//! temporary directory for its data and log, removed when dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Error;

/// A port on 127.0.0.1 nobody listens on right now, for a process started next. (Another
/// process may take it in between; the servers started here retry or fail loudly.)
///
/// # Errors
///
/// If no loopback port can be bound.
pub fn free_port() -> Result<u16, Error> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|err| Error::io("cannot bind a loopback port", err))?;
    let addr = listener
        .local_addr()
        .map_err(|err| Error::io("a bound socket's address", err))?;
    Ok(addr.port())
}

/// A fresh directory under the system's temp dir, removed with what it holds when dropped
/// (unless [kept](TempDir::keep)).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    /// Creates `skat-<tag>-<pid>-<n>-<nanos>`: unique per process, per call and per run, so
    /// tests running side by side and a rerun never share one.
    ///
    /// # Errors
    ///
    /// If the directory cannot be created.
    pub fn new(tag: &str) -> Result<TempDir, Error> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "skat-{tag}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .map_err(|err| Error::io(format!("cannot create {}", path.display()), err))?;
        Ok(TempDir { path, keep: false })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the directory in place when this is dropped: the logs of a failed test, say.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn temp_dirs_are_fresh_and_removed_unless_kept() {
        let (a, b) = (TempDir::new("t").unwrap(), TempDir::new("t").unwrap());
        assert_ne!(a.path(), b.path());
        assert!(a.path().is_dir());
        std::fs::write(a.path().join("f"), "x").unwrap();
        let path = a.path().to_owned();
        drop(a);
        assert!(!path.exists());

        let mut kept = b;
        kept.keep();
        let path = kept.path().to_owned();
        drop(kept);
        assert!(path.is_dir());
        std::fs::remove_dir_all(path).unwrap();
    }

    #[test]
    fn free_ports_can_be_bound() {
        let port = free_port().unwrap();
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
