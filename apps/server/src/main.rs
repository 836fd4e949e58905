//! `skat-server`: configuration, logging, then [`skat_server::run`] until SIGINT or SIGTERM.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use skat_broker::{MemoryBroker, MemoryBrokerConfig, RedisBroker};
use skat_server::ServerConfig;
use tracing_subscriber::EnvFilter;

mod broker_args;

use broker_args::{BrokerArgs, BrokerConfig, DataDir};

/// jemalloc rather than the system allocator. A connection storm allocates and frees many small
/// replies in between long-lived connection state; glibc's malloc keeps the holes they leave
/// (measured: ~0.5 KiB per idle connection after a storm, with Redis), while jemalloc keeps size
/// classes apart and, with background purging (`.cargo/config.toml`), returns the freed pages.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A Skat chat server node.
///
/// Every option can also be set through the environment variable shown. A yes-or-no option
/// reads its variable as true, 1, yes or on, or false, 0, no or off (any case; empty is no).
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
        /// Rooms the token grants, comma-separated names and `prefix*` patterns (its `rooms`
        /// claim); without it, every public room.
        #[arg(long, value_delimiter = ',')]
        rooms: Option<Vec<String>>,
        /// Rooms where the user moderates (edits and deletes anyone's message), in the form of
        /// `--rooms` (its `moderate` claim); without it, none.
        #[arg(long, value_delimiter = ',')]
        moderate: Option<Vec<String>>,
    },
    /// Write the rooms of a data dir to stdout as JSON lines (a backup, or a move to another
    /// node): each room's epoch, messages in their current state, changes, reactors and read
    /// markers. The dir may be a running node's (one consistent snapshot is read).
    Export {
        /// The data dir to read.
        #[arg(long)]
        data_dir: PathBuf,
        /// Only this room.
        #[arg(long)]
        room: Option<String>,
    },
    /// Read JSON lines written by `export` from stdin into a data dir that no node holds,
    /// keeping ids and epochs. All or nothing: a malformed line (named by its number) imports
    /// nothing.
    Import {
        /// The data dir to write (created if missing).
        #[arg(long)]
        data_dir: PathBuf,
    },
}

// The node's own settings (`ServerConfig`, with `Limits`) are `clap::Args` of the library,
// defaults included; the options here are those of the process (where to listen) and of the
// broker (`BrokerArgs`), whose defaults are the broker library's.
//
// Every yes-or-no option (a `bool` field, a flag on the command line) takes
// `value_parser = skat_server::yes_or_no`: clap's default for a flag's environment variable
// accepts only `true` and `false`, and `SKAT_REDIS_CLUSTER=1` would stop the node. A test walks
// every flag with a variable and fails if one is missing it.

/// Options of the server: the node's settings, where it listens and which broker it uses.
#[derive(Debug, Args)]
struct Serve {
    /// Address to listen on.
    #[arg(long, env = "SKAT_BIND", default_value = "127.0.0.1:3000")]
    bind: SocketAddr,
    /// Backlog of the listening socket: connections the kernel queues before they are
    /// accepted (capped by net.core.somaxconn). Too small and connection storms cost clients
    /// one-second SYN retries.
    #[arg(long, env = "SKAT_LISTEN_BACKLOG", default_value_t = skat_server::DEFAULT_BACKLOG)]
    listen_backlog: u32,
    #[command(flatten)]
    broker: BrokerArgs,
    /// Log lines: `text` for people (colored only on a terminal, and never with NO_COLOR set),
    /// `json` for log shippers (one object per line, with the node's and the connection's
    /// span). The level follows RUST_LOG (default `info`).
    #[arg(long, env = "SKAT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    config: ServerConfig,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the log subscriber: lines on stdout, filtered by RUST_LOG.
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => lines.with_ansi(colors()).init(),
        LogFormat::Json => lines
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .init(),
    }
}

/// Whether text lines may carry ANSI colors: only on a terminal, and not when the user asked
/// for none (<https://no-color.org>: `NO_COLOR` set to anything but the empty string).
fn colors() -> bool {
    colors_for(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

fn colors_for(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

fn main() -> anyhow::Result<()> {
    let Cli { command, serve } = Cli::parse();
    match command {
        Some(Command::Token {
            name,
            ttl,
            rooms,
            moderate,
        }) => return print_token(serve.config, &name, ttl, rooms, moderate),
        Some(Command::Export { data_dir, room }) => {
            skat_server::backup::export(&data_dir, room.as_deref(), std::io::stdout().lock())
                .with_context(|| format!("cannot export {}", data_dir.display()))?;
            return Ok(());
        }
        Some(Command::Import { data_dir }) => {
            let imported = skat_server::backup::import(&data_dir, std::io::stdin().lock())
                .with_context(|| format!("cannot import into {}", data_dir.display()))?;
            #[allow(clippy::print_stderr)] // The command's report; stdout stays free.
            {
                eprintln!(
                    "imported {} room(s), {} entries into {}",
                    imported.rooms,
                    imported.entries,
                    data_dir.display()
                );
            }
            return Ok(());
        }
        None => {}
    }
    init_logging(serve.log_format);
    // Every line the node logs, on whichever thread, is in its span: the span is entered on each
    // of the runtime's threads for good (and on this one), so tasks pay nothing per poll for it.
    let node = skat_server::node_span(&serve.config.node_id);
    let on_thread = node.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(move || std::mem::forget(on_thread.clone().entered()))
        .build()
        .context("cannot start the async runtime")?;
    let _node = node.entered();
    runtime.block_on(serve_node(serve))
}

/// The `token` command: prints a token for `name`, valid `ttl` seconds, granting `rooms` and
/// moderating `moderate`.
fn print_token(
    config: ServerConfig,
    name: &str,
    ttl: u64,
    rooms: Option<Vec<String>>,
    moderate: Option<Vec<String>>,
) -> anyhow::Result<()> {
    let secret = config
        .jwt_secret
        .context("set SKAT_JWT_SECRET (or --jwt-secret) to mint tokens")?;
    skat_protocol::validate_name(name).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let ttl = Duration::from_secs(ttl);
    let token = skat_server::auth::mint_token_moderating(&secret, name, ttl, rooms, moderate)
        .context("cannot mint the token")?;
    #[allow(clippy::print_stdout)] // The token is the command's output.
    {
        println!("{token}");
    }
    Ok(())
}

/// Binds, connects the broker and serves until SIGINT or SIGTERM.
async fn serve_node(serve: Serve) -> anyhow::Result<()> {
    let config = serve.config;
    if let Some(verifier) = config.verifier() {
        tracing::info!(?verifier, "signed mode: hello requires a token");
    }
    let listener = skat_server::bind(serve.bind, serve.listen_backlog)
        .with_context(|| format!("cannot listen on {}", serve.bind))?;
    match serve.broker.into_config(&config.node_id)? {
        BrokerConfig::Redis(redis) => {
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
        BrokerConfig::Memory(memory, data) => {
            let broker = Arc::new(embedded_broker(memory, data).await?);
            if let Some(retention) = memory.retention {
                tracing::info!(days = retention.as_secs() / 86_400, "messages expire");
            }
            // Ends with the broker.
            let _retention = broker.spawn_retention();
            skat_server::run(listener, broker, config, shutdown_signal()).await
        }
    }
    .context("server failed")
}

/// The embedded broker: on the data dir if given (opened and loaded on a blocking thread: it
/// reads the whole file), else in memory, which the log says once.
async fn embedded_broker(
    memory: MemoryBrokerConfig,
    data: Option<DataDir>,
) -> anyhow::Result<MemoryBroker> {
    let Some(DataDir { dir, journal }) = data else {
        tracing::warn!(
            broker = "memory",
            "no --data-dir (SKAT_DATA_DIR): history is kept in memory only and lost on restart"
        );
        tracing::info!(broker = "memory", "starting");
        return Ok(MemoryBroker::new(memory));
    };
    let at = dir.display().to_string();
    let broker =
        tokio::task::spawn_blocking(move || MemoryBroker::open_with(memory, &dir, &journal))
            .await
            .context("the data dir's loading thread failed")?
            .with_context(|| format!("cannot use the data dir {at} (--data-dir)"))?;
    tracing::info!(broker = "memory", data_dir = %at, "starting");
    Ok(broker)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag that has an environment variable (those of `ServerConfig` included) reads it
    /// with the shared boolean parser, and the flag alone still means true.
    #[test]
    fn every_yes_or_no_option_reads_1_yes_on_and_0_no_off() {
        use clap::{Arg, ArgAction, CommandFactory as _};
        let cli = Cli::command();
        let mut checked = Vec::new();
        for flag in cli.get_arguments() {
            if !matches!(flag.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
                continue;
            }
            let Some(var) = flag.get_env() else {
                continue;
            };
            // The flag's own parser, on a value given the way its variable gives it.
            let parse = |text: &str| {
                let probe = clap::Command::new("probe").arg(
                    Arg::new("value")
                        .action(ArgAction::Set)
                        .value_parser(flag.get_value_parser().clone()),
                );
                probe
                    .try_get_matches_from(["probe", text])
                    .map(|m| m.get_one::<bool>("value").copied())
            };
            for (text, value) in [
                ("1", true),
                ("true", true),
                ("Yes", true),
                ("ON", true),
                ("0", false),
                ("FALSE", false),
                ("no", false),
                ("off", false),
                ("", false),
            ] {
                match parse(text) {
                    Ok(parsed) => assert_eq!(parsed, Some(value), "{var:?}={text}"),
                    Err(err) => panic!("{var:?}={text} refused: {err}"),
                }
            }
            assert!(parse("maybe").is_err(), "{var:?}=maybe");
            checked.push(flag.get_id().to_string());
        }
        assert!(checked.contains(&"redis_cluster".to_owned()), "{checked:?}");

        let on = Cli::try_parse_from(["skat-server", "--redis-cluster"]).unwrap();
        assert!(on.serve.broker.redis_cluster, "the flag alone means true");
    }

    #[test]
    fn colors_only_on_a_terminal_and_never_with_no_color() {
        let set = Some(std::ffi::OsStr::new("1"));
        let empty = Some(std::ffi::OsStr::new(""));
        assert!(colors_for(true, None));
        assert!(colors_for(true, empty), "an empty NO_COLOR does not count");
        assert!(!colors_for(true, set));
        assert!(!colors_for(false, None));
    }
}
