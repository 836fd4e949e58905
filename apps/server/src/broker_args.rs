//! The binary's broker options: which broker the node uses (Redis with `--redis-url`, else the
//! embedded one, in memory or on a data dir) and its settings, one `clap::Args` struct
//! flattened into the command line and converted into the broker crate's `RedisConfig` or
//! `MemoryBrokerConfig` (with the data dir and its `JournalConfig`).
//!
//! The defaults are the broker crate's (`RedisConfig::DEFAULT_*`,
//! `MemoryBrokerConfig::DEFAULT_HISTORY_LEN`), written once there and named in each `#[arg]`;
//! the rules the settings must keep together (the heartbeat at most half the presence TTL, no
//! zero length) are the broker config's own (`RedisConfig::validate`), so the command line, the
//! tests and the benchmark cannot build a broker that breaks them.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use clap::builder::TypedValueParser as _;
use skat_broker::durable::JournalConfig;
use skat_broker::{MemoryBrokerConfig, RedisConfig};

/// Options of the broker.
#[derive(Debug, Args)]
pub(crate) struct BrokerArgs {
    /// Redis URL (e.g. redis://127.0.0.1:6379/, or rediss://... for TLS): share rooms with
    /// every node using the same Redis. Without it the node runs the embedded single-node
    /// broker.
    #[arg(long, env = "SKAT_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// `--redis-url` is a comma-separated list of seed nodes of a Redis Cluster (Redis 7):
    /// rooms spread over its shards, and each room's events travel on a sharded channel that
    /// only its shard carries.
    #[arg(long, env = "SKAT_REDIS_CLUSTER", value_parser = skat_server::yes_or_no)]
    pub(crate) redis_cluster: bool,
    /// Replicas that must have a message before a send is confirmed (Redis WAIT; 0: the
    /// master's write is enough). 1 makes a failover lose no confirmed message.
    #[arg(
        long,
        env = "SKAT_REDIS_WAIT_REPLICAS",
        default_value_t = RedisConfig::DEFAULT_WAIT_REPLICAS
    )]
    redis_wait_replicas: u32,
    /// With a `rediss://` URL (TLS): a PEM file of the CAs to trust for Redis's certificate,
    /// instead of the system's.
    #[arg(long, env = "SKAT_REDIS_CA_CERT")]
    redis_ca_cert: Option<PathBuf>,
    /// Prefix of every Redis key and channel.
    #[arg(long, env = "SKAT_REDIS_PREFIX", default_value = RedisConfig::DEFAULT_PREFIX)]
    redis_prefix: String,
    /// Messages kept per room stream in Redis.
    #[arg(
        long,
        env = "SKAT_STREAM_LEN",
        default_value_t = RedisConfig::DEFAULT_STREAM_LEN,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    stream_len: usize,
    /// With Redis: seconds a room with history is kept while unused (no message sent, nobody
    /// joining) before its history expires; 0 keeps it for good. A room that never had a
    /// message keeps nothing for good either way.
    #[arg(long, env = "SKAT_REDIS_ROOM_TTL", default_value_t = 0)]
    redis_room_ttl: u64,
    /// With Redis: milliseconds after a node's last heartbeat before its claim lapses and the
    /// other nodes sweep its presence (its users go offline).
    #[arg(
        long,
        env = "SKAT_PRESENCE_TTL_MS",
        default_value_t = RedisConfig::DEFAULT_PRESENCE_TTL.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(100..)
    )]
    presence_ttl_ms: u64,
    /// With Redis: milliseconds between a node's heartbeats (claim, registry stamp, sweeps of
    /// dead nodes); at most half the presence TTL.
    #[arg(
        long,
        env = "SKAT_HEARTBEAT_MS",
        default_value_t = RedisConfig::DEFAULT_HEARTBEAT.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(10..)
    )]
    heartbeat_ms: u64,
    /// Messages kept per room by the embedded broker.
    #[arg(long, env = "SKAT_HISTORY_LEN", default_value_t = MemoryBrokerConfig::DEFAULT_HISTORY_LEN)]
    history_len: usize,
    /// Days the embedded broker keeps messages (in memory and in its data dir): older ones,
    /// with the changes to them, are dropped once a minute. Without it, `--history-len` alone
    /// bounds a room. With Redis it is refused: there retention is `--redis-room-ttl` and
    /// `--stream-len`.
    #[arg(
        long,
        env = "SKAT_RETENTION_DAYS",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    retention_days: Option<u64>,
    /// The embedded broker keeps its rooms (history, epochs, changes, read markers, recent
    /// nonces) in DIR/skat.db (SQLite), so a restarted node serves what it confirmed before;
    /// created if missing. Without it (or empty) history is in memory only, lost on restart.
    /// Not with `--redis-url`.
    #[arg(
        long,
        env = "SKAT_DATA_DIR",
        value_name = "DIR",
        value_parser = clap::builder::OsStringValueParser::new().map(PathBuf::from)
    )]
    data_dir: Option<PathBuf>,
    /// With `--data-dir`: the most megabytes (MiB) the database may hold; past it a send is
    /// answered `unavailable`, as on a full disk. Without it, only the disk limits it.
    #[arg(
        long,
        env = "SKAT_DATA_MAX_MB",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    data_max_mb: Option<u64>,
}

/// The broker the options choose, with its settings.
#[derive(Debug)]
pub(crate) enum BrokerConfig {
    /// Nodes sharing Redis.
    Redis(RedisConfig),
    /// The embedded single-node broker, on a data dir if given.
    Memory(MemoryBrokerConfig, Option<DataDir>),
}

/// Where and how the embedded broker keeps its rooms.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DataDir {
    /// The dir (`--data-dir`).
    pub(crate) dir: PathBuf,
    /// The journal's settings (`--data-max-mb`).
    pub(crate) journal: JournalConfig,
}

impl BrokerArgs {
    /// The broker of node `node_id`: Redis with `--redis-url` (its CA file read, its settings
    /// checked), else the embedded one (on `--data-dir` if given; an empty one is none).
    pub(crate) fn into_config(self, node_id: &str) -> anyhow::Result<BrokerConfig> {
        let data_dir = self.data_dir.filter(|dir| !dir.as_os_str().is_empty());
        if data_dir.is_none() && self.data_max_mb.is_some() {
            anyhow::bail!("--data-max-mb (SKAT_DATA_MAX_MB) needs --data-dir (SKAT_DATA_DIR)");
        }
        let Some(url) = self.redis_url else {
            let memory = MemoryBrokerConfig {
                history_len: self.history_len,
                retention: self
                    .retention_days
                    .map(|days| Duration::from_secs(days.saturating_mul(86_400))),
                ..MemoryBrokerConfig::default()
            };
            let data = data_dir.map(|dir| DataDir {
                dir,
                journal: JournalConfig {
                    max_bytes: self.data_max_mb.map(|mb| mb.saturating_mul(1 << 20)),
                },
            });
            return Ok(BrokerConfig::Memory(memory, data));
        };
        anyhow::ensure!(
            self.retention_days.is_none(),
            "--retention-days is the embedded broker's: with Redis, retention is \
             --redis-room-ttl / --stream-len; the archive (issue 24) will apply it"
        );
        if let Some(dir) = data_dir {
            anyhow::bail!(
                "--data-dir (SKAT_DATA_DIR, here {}) is for the embedded broker: with --redis-url \
                 (SKAT_REDIS_URL) Redis keeps the history; set one of them, not both",
                dir.display()
            );
        }
        let tls_ca = self
            .redis_ca_cert
            .map(|path| {
                std::fs::read(&path)
                    .with_context(|| format!("cannot read the CA file {}", path.display()))
            })
            .transpose()?;
        let redis = RedisConfig {
            prefix: self.redis_prefix,
            presence_ttl: Duration::from_millis(self.presence_ttl_ms),
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            stream_len: self.stream_len,
            tls_ca,
            cluster: self.redis_cluster,
            wait_replicas: self.redis_wait_replicas,
            room_ttl: (self.redis_room_ttl > 0).then(|| Duration::from_secs(self.redis_room_ttl)),
            ..RedisConfig::new(url, node_id)
        };
        redis.validate().context("invalid Redis broker settings")?;
        Ok(BrokerConfig::Redis(redis))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        broker: BrokerArgs,
    }

    fn parse(args: &[&str]) -> anyhow::Result<BrokerConfig> {
        let cli = Cli::try_parse_from([&["skat-server"], args].concat())?;
        cli.broker.into_config("node-a")
    }

    #[test]
    fn the_defaults_are_the_broker_crates() {
        let Ok(BrokerConfig::Memory(memory, None)) = parse(&[]) else {
            panic!("no --redis-url: the embedded broker, in memory");
        };
        assert_eq!(memory, MemoryBrokerConfig::default());
        let Ok(BrokerConfig::Redis(redis)) = parse(&["--redis-url", "redis://127.0.0.1/"]) else {
            panic!("--redis-url: Redis");
        };
        let defaults = RedisConfig::new("redis://127.0.0.1/", "node-a");
        assert_eq!(redis.prefix, defaults.prefix);
        assert_eq!(redis.stream_len, defaults.stream_len);
        assert_eq!(redis.presence_ttl, defaults.presence_ttl);
        assert_eq!(redis.heartbeat, defaults.heartbeat);
        assert_eq!(redis.wait_replicas, defaults.wait_replicas);
        assert_eq!(redis.room_ttl, None);
        assert!(!redis.cluster && redis.tls_ca.is_none());
    }

    #[test]
    fn a_heartbeat_over_half_the_presence_ttl_is_refused() {
        let url = ["--redis-url", "redis://127.0.0.1/"];
        let refused = parse(
            &[
                &url[..],
                &["--presence-ttl-ms", "1000", "--heartbeat-ms", "501"],
            ]
            .concat(),
        );
        let err = refused.expect_err("refused");
        assert!(
            format!("{err:#}").contains("at most half the presence TTL"),
            "{err:#}"
        );
        assert!(
            parse(
                &[
                    &url[..],
                    &["--presence-ttl-ms", "1000", "--heartbeat-ms", "500"]
                ]
                .concat()
            )
            .is_ok()
        );
        let err = parse(&[&url[..], &["--stream-len", "0"]].concat()).expect_err("refused");
        assert!(format!("{err:#}").contains("--stream-len"), "{err:#}");
    }

    #[test]
    fn retention_is_in_days_for_the_embedded_broker_only() {
        let Ok(BrokerConfig::Memory(memory, _)) = parse(&["--retention-days", "7"]) else {
            panic!("the embedded broker");
        };
        assert_eq!(memory.retention, Some(Duration::from_secs(7 * 86_400)));
        assert!(parse(&["--retention-days", "0"]).is_err(), "0 days");
        let err = parse(&["--redis-url", "redis://127.0.0.1/", "--retention-days", "7"])
            .expect_err("refused with Redis");
        assert!(format!("{err:#}").contains("--redis-room-ttl"), "{err:#}");
    }

    #[test]
    fn a_data_dir_is_for_the_embedded_broker_with_an_optional_cap() {
        let Ok(BrokerConfig::Memory(_, Some(data))) = parse(&["--data-dir", "/tmp/skat-data"])
        else {
            panic!("--data-dir: the embedded broker on it");
        };
        let uncapped = DataDir {
            dir: "/tmp/skat-data".into(),
            journal: JournalConfig::default(),
        };
        assert_eq!(data, uncapped);
        let capped = parse(&["--data-dir", "/tmp/d", "--data-max-mb", "2"]);
        let Ok(BrokerConfig::Memory(_, Some(data))) = capped else {
            panic!("--data-max-mb: capped");
        };
        assert_eq!(data.journal.max_bytes, Some(2 * 1024 * 1024));
        // An empty dir is none (so an image's default can be switched off).
        assert!(matches!(
            parse(&["--data-dir", ""]),
            Ok(BrokerConfig::Memory(_, None))
        ));

        let both = parse(&["--data-dir", "/tmp/d", "--redis-url", "redis://127.0.0.1/"]);
        let err = format!("{:#}", both.expect_err("refused"));
        assert!(
            err.contains("--data-dir") && err.contains("--redis-url"),
            "{err}"
        );
        let err = format!("{:#}", parse(&["--data-max-mb", "1"]).expect_err("refused"));
        assert!(err.contains("needs --data-dir"), "{err}");
        assert!(parse(&["--data-dir", "/tmp/d", "--data-max-mb", "0"]).is_err());
    }
}
