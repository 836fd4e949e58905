//! `skat-server`: configuration, logging, then [`skat_server::run`] until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use skat_broker::{MemoryBroker, MemoryBrokerConfig, RedisBroker, RedisConfig};
use skat_server::auth::JwtSecret;
use skat_server::{Limits, ServerConfig};
use tracing_subscriber::EnvFilter;

/// jemalloc rather than the system allocator. A connection storm allocates and frees many small
/// replies in between long-lived connection state; glibc's malloc keeps the holes they leave
/// (measured: ~0.5 KiB per idle connection after a storm, with Redis), while jemalloc keeps size
/// classes apart and, with background purging (`.cargo/config.toml`), returns the freed pages.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A Skat chat server node.
///
/// Every option can also be set through the environment variable shown.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Serve,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a signed token for NAME (HS256, made with SKAT_JWT_SECRET), for local use; in
    /// production the application backend mints them.
    Token {
        /// The user name the token vouches for.
        name: String,
        /// Validity in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
    },
}

// The defaults of the options below are the libraries' own (`ServerConfig::default()` and
// friends): one source of truth, shown by `--help`.

fn server() -> ServerConfig {
    ServerConfig::default()
}

fn limits() -> Limits {
    Limits::default()
}

fn redis_defaults() -> RedisConfig {
    RedisConfig::new("", "")
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Options of the server itself.
#[derive(Debug, Args)]
struct Serve {
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
    #[arg(long, env = "SKAT_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// Prefix of every Redis key and channel.
    #[arg(long, env = "SKAT_REDIS_PREFIX", default_value_t = redis_defaults().prefix)]
    redis_prefix: String,
    /// Messages kept per room stream in Redis.
    #[arg(long, env = "SKAT_STREAM_LEN", default_value_t = redis_defaults().stream_len)]
    stream_len: usize,
    /// Messages kept per room by the embedded broker.
    #[arg(long, env = "SKAT_HISTORY_LEN", default_value_t = MemoryBrokerConfig::default().history_len)]
    history_len: usize,
    /// Frames buffered per connection before a slow client is disconnected.
    #[arg(long, env = "SKAT_OUTBOUND_QUEUE", default_value_t = server().outbound_queue)]
    outbound_queue: usize,
    /// Flush window for room frames, in milliseconds: frames queued for a connection within
    /// this long of the first are written together. 0 writes at once (lowest latency); 5-20
    /// cut the CPU per delivery of busy rooms severalfold, adding at most that much latency.
    #[arg(long, env = "SKAT_WRITE_DELAY_MS", default_value_t = millis(server().write_delay))]
    write_delay_ms: u64,
    /// Backlog of the listening socket: connections the kernel queues before they are
    /// accepted (capped by net.core.somaxconn). Too small and connection storms cost clients
    /// one-second SYN retries.
    #[arg(long, env = "SKAT_LISTEN_BACKLOG", default_value_t = skat_server::DEFAULT_BACKLOG)]
    listen_backlog: u32,
    /// Largest WebSocket message accepted from a client, in bytes.
    #[arg(long, env = "SKAT_MAX_MESSAGE_BYTES", default_value_t = server().max_message_bytes)]
    max_message_bytes: usize,
    /// Most messages a join with `since` recovers; a client that missed more gets the latest
    /// page and pages back with `history`.
    #[arg(long, env = "SKAT_RECOVERY_LIMIT", default_value_t = server().recovery_limit)]
    recovery_limit: usize,
    /// Most bytes of messages in one `joined` or `history` reply: a recovery over it gets the
    /// latest page instead, a page over it is cut short (with `has_more`).
    #[arg(long, env = "SKAT_MAX_REPLY_BYTES", default_value_t = server().max_reply_bytes)]
    max_reply_bytes: usize,
    /// Seconds shutdown waits for connections to close.
    #[arg(long, env = "SKAT_SHUTDOWN_TIMEOUT", default_value_t = server().shutdown_timeout.as_secs())]
    shutdown_timeout: u64,
    /// Signed mode: `hello` must carry an HS256 JWT made with this secret (`sub` = the name).
    #[arg(long, env = "SKAT_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Origins allowed to open WebSockets, comma-separated (`*` for any). Default: only pages
    /// from the same host as the request.
    #[arg(long, env = "SKAT_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Option<Vec<String>>,
    /// Rooms one connection may be in at once.
    #[arg(long, env = "SKAT_MAX_ROOMS_PER_CONN", default_value_t = limits().max_rooms_per_conn)]
    max_rooms_per_conn: usize,
    /// Open WebSockets per client IP address (0: no limit).
    #[arg(long, env = "SKAT_MAX_CONNS_PER_IP", default_value_t = limits().max_conns_per_ip)]
    max_conns_per_ip: usize,
    /// Sustained messages per second per connection (0: no limit).
    #[arg(long, env = "SKAT_MESSAGES_PER_SEC", default_value_t = limits().messages_per_sec)]
    messages_per_sec: u32,
    /// Burst of messages above the sustained rate.
    #[arg(long, env = "SKAT_MESSAGES_BURST", default_value_t = limits().messages_burst)]
    messages_burst: u32,
    /// Typing notifications per second per connection (0: no limit).
    #[arg(long, env = "SKAT_TYPING_PER_SEC", default_value_t = limits().typing_per_sec)]
    typing_per_sec: u32,
    /// Joins and history requests per second per connection (0: no limit); bursts up to the
    /// rooms-per-connection limit.
    #[arg(long, env = "SKAT_JOINS_PER_SEC", default_value_t = limits().joins_per_sec)]
    joins_per_sec: u32,
    /// Connections held before their WebSocket upgrade, at once (0: no limit); at it, new
    /// connections wait in the kernel's backlog, so half-sent requests cannot take every file
    /// descriptor.
    #[arg(long, env = "SKAT_MAX_HANDSHAKES", default_value_t = limits().max_handshakes)]
    max_handshakes: usize,
    /// Seconds a new connection has to send `hello`.
    #[arg(long, env = "SKAT_HELLO_TIMEOUT", default_value_t = limits().hello_timeout.as_secs())]
    hello_timeout: u64,
    /// Seconds without any frame (pongs included) before a connection is closed; the server
    /// pings every third of it.
    #[arg(long, env = "SKAT_IDLE_TIMEOUT", default_value_t = limits().idle_timeout.as_secs())]
    idle_timeout: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli {
        command,
        serve: cli,
    } = Cli::parse();
    if let Some(Command::Token { name, ttl }) = command {
        let secret = cli
            .jwt_secret
            .context("set SKAT_JWT_SECRET (or --jwt-secret) to mint tokens")?;
        let secret = JwtSecret::new(secret).context("SKAT_JWT_SECRET cannot sign tokens")?;
        skat_protocol::validate_name(&name).map_err(|e| anyhow::anyhow!("{}", e.message))?;
        let token = skat_server::auth::mint_token(&secret, &name, Duration::from_secs(ttl))
            .context("cannot mint the token")?;
        #[allow(clippy::print_stdout)] // The token is the command's output.
        {
            println!("{token}");
        }
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let defaults = ServerConfig::default();
    let config = ServerConfig {
        node_id: cli.node_id.unwrap_or(defaults.node_id),
        outbound_queue: cli.outbound_queue,
        write_delay: Duration::from_millis(cli.write_delay_ms),
        max_message_bytes: cli.max_message_bytes,
        recovery_limit: cli.recovery_limit,
        max_reply_bytes: cli.max_reply_bytes.max(1),
        shutdown_timeout: Duration::from_secs(cli.shutdown_timeout),
        static_dir: cli.static_dir,
        limits: Limits {
            max_rooms_per_conn: cli.max_rooms_per_conn,
            max_conns_per_ip: cli.max_conns_per_ip,
            messages_per_sec: cli.messages_per_sec,
            messages_burst: cli.messages_burst,
            typing_per_sec: cli.typing_per_sec,
            joins_per_sec: cli.joins_per_sec,
            hello_timeout: Duration::from_secs(cli.hello_timeout.max(1)),
            idle_timeout: Duration::from_secs(cli.idle_timeout.max(1)),
            max_handshakes: cli.max_handshakes,
        },
        jwt_secret: cli
            .jwt_secret
            .map(JwtSecret::new)
            .transpose()
            .context("SKAT_JWT_SECRET cannot be used for signed mode")?,
        allowed_origins: cli.allowed_origins,
    };
    if config.jwt_secret.is_some() {
        tracing::info!("signed mode: hello requires a token");
    }
    let listener = skat_server::bind(cli.bind, cli.listen_backlog)
        .with_context(|| format!("cannot listen on {}", cli.bind))?;
    match cli.redis_url {
        Some(url) => {
            let redis = RedisConfig {
                prefix: cli.redis_prefix,
                stream_len: cli.stream_len,
                ..RedisConfig::new(url, config.node_id.clone())
            };
            let broker = Arc::new(
                RedisBroker::connect(redis)
                    .await
                    .context("cannot use Redis at SKAT_REDIS_URL / --redis-url")?,
            );
            tracing::info!(broker = "redis", "starting");
            let served =
                skat_server::run(listener, Arc::clone(&broker), config, shutdown_signal()).await;
            // So that a node restarted with this id need not wait for the claim to expire.
            if let Err(err) = broker.release_node_id().await {
                tracing::warn!(error = %err, "node id not released; it expires by itself");
            }
            served
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
