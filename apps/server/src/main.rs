//! `skat-server`: configuration, logging, then [`skat_server::run`] until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use skat_broker::{MemoryBroker, MemoryBrokerConfig, RedisBroker, RedisConfig};
use skat_server::ServerConfig;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// A Skat chat server node.
///
/// Every option can also be set through the environment variable shown.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "SKAT_BIND", default_value = "127.0.0.1:3000")]
    bind: SocketAddr,
    /// This node's id, shown to clients (default: random).
    #[arg(long, env = "SKAT_NODE_ID")]
    node_id: Option<String>,
    /// Directory of the built web app, served at `/`.
    #[arg(long, env = "SKAT_STATIC_DIR")]
    static_dir: Option<PathBuf>,
    /// Redis URL (e.g. redis://127.0.0.1:6379/): share rooms with every node using the same
    /// Redis. Without it the node runs the embedded single-node broker.
    #[arg(long, env = "SKAT_REDIS_URL")]
    redis_url: Option<String>,
    /// Prefix of every Redis key and channel.
    #[arg(long, env = "SKAT_REDIS_PREFIX", default_value = "skat:")]
    redis_prefix: String,
    /// Messages kept per room stream in Redis.
    #[arg(long, env = "SKAT_STREAM_LEN", default_value_t = 10_000)]
    stream_len: usize,
    /// Messages kept per room by the embedded broker.
    #[arg(long, env = "SKAT_HISTORY_LEN", default_value_t = 1000)]
    history_len: usize,
    /// Frames buffered per connection before a slow client is disconnected.
    #[arg(long, env = "SKAT_OUTBOUND_QUEUE", default_value_t = 1024)]
    outbound_queue: usize,
    /// Largest WebSocket message accepted from a client, in bytes.
    #[arg(long, env = "SKAT_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    max_message_bytes: usize,
    /// Seconds shutdown waits for connections to close.
    #[arg(long, env = "SKAT_SHUTDOWN_TIMEOUT", default_value_t = 10)]
    shutdown_timeout: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let defaults = ServerConfig::default();
    let config = ServerConfig {
        node_id: cli.node_id.unwrap_or(defaults.node_id),
        outbound_queue: cli.outbound_queue,
        max_message_bytes: cli.max_message_bytes,
        shutdown_timeout: Duration::from_secs(cli.shutdown_timeout),
        static_dir: cli.static_dir,
        ..defaults
    };
    let listener = TcpListener::bind(cli.bind)
        .await
        .with_context(|| format!("cannot listen on {}", cli.bind))?;
    match cli.redis_url {
        Some(url) => {
            let redis = RedisConfig {
                prefix: cli.redis_prefix,
                stream_len: cli.stream_len,
                ..RedisConfig::new(url, config.node_id.clone())
            };
            let broker = RedisBroker::connect(redis)
                .await
                .context("cannot use Redis at SKAT_REDIS_URL / --redis-url")?;
            tracing::info!(broker = "redis", "starting");
            skat_server::run(listener, Arc::new(broker), config, shutdown_signal()).await
        }
        None => {
            let memory = MemoryBrokerConfig {
                history_len: cli.history_len,
                ..Default::default()
            };
            tracing::info!(broker = "memory", "starting");
            let broker = Arc::new(MemoryBroker::new(memory));
            skat_server::run(listener, broker, config, shutdown_signal()).await
        }
    }
    .context("server failed")
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}
