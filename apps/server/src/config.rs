//! A node's settings, [`ServerConfig`] with its [`Limits`], and where their defaults live.
//!
//! The settings are `clap::Args`: each field's `#[arg]` names its flag and environment variable
//! and holds its default, the only place that default is written. The binary flattens these
//! structs into its command line, so `--help`, the environment and [`Default`] cannot disagree;
//! [`Default`] reads the same `#[arg]` defaults with the environment ignored, which is what
//! tests and embedders get.

mod limits;
mod values;

pub use limits::Limits;
pub use values::{ConfigError, yes_or_no};
pub(crate) use values::{parse_proxy, positive_seconds};

use std::path::PathBuf;
use std::time::Duration;

use crate::auth::{ApiKey, JwtSecret, PublicKey, Verifier};
use values::{SecretParser, at_least_one, millis, node_id, public_key, seconds};

/// Settings of one node, independent of how they were obtained (CLI, env, tests).
#[derive(Debug, Clone, clap::Args)]
pub struct ServerConfig {
    /// This node's id, reported to clients in `welcome` (default, or empty: a random one): 1 to
    /// 64 ASCII letters, digits, `-`, `_` or `.`.
    #[arg(
        long,
        env = "SKAT_NODE_ID",
        value_parser = node_id,
        default_value = "",
        hide_default_value = true
    )]
    pub node_id: String,
    /// Frames buffered per connection before it counts as a slow consumer and is disconnected.
    #[arg(long, env = "SKAT_OUTBOUND_QUEUE", default_value_t = 1024)]
    pub outbound_queue: usize,
    /// Bytes of frames buffered per connection before it counts as a slow consumer, whichever
    /// of this and `outbound_queue` comes first: a backlog of big frames is bounded too.
    #[arg(
        long,
        env = "SKAT_OUTBOUND_QUEUE_BYTES",
        value_parser = at_least_one,
        default_value_t = 1024 * 1024
    )]
    pub outbound_queue_bytes: usize,
    /// Flush window for room frames, in milliseconds: frames queued for a connection within
    /// this long of the first are written together, with one system call. 0 writes at once
    /// (lowest latency); 5-20 cut the CPU per delivery of busy rooms severalfold, adding at
    /// most that much latency.
    #[arg(
        long = "write-delay-ms",
        env = "SKAT_WRITE_DELAY_MS",
        value_name = "MS",
        value_parser = millis,
        default_value = "0"
    )]
    pub write_delay: Duration,
    /// Largest WebSocket message a client may send, in bytes.
    #[arg(long, env = "SKAT_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,
    /// Most messages a `join` with `since` recovers; a client that missed more gets the latest
    /// page and pages back with `history`.
    #[arg(long, env = "SKAT_RECOVERY_LIMIT", default_value_t = 1000)]
    pub recovery_limit: usize,
    /// Most bytes of messages in one reply (`joined`, `history`, the API's history), counted
    /// encoded as they go on the wire (`skat_protocol::message_size`: JSON escapes included): a
    /// recovery over it gets the latest page instead, and a page over it is cut (with
    /// `has_more`), so no reply grows with a room's history or what a client missed. A reply's
    /// `messages` array then holds less than this many bytes between its brackets, so the
    /// whole frame is at most this much longer than the same frame without messages (its
    /// envelope: type, room, members, epoch...). The one exception: a single message larger
    /// than the bound on its own (a 4000-character body of control characters is 24 KB
    /// escaped) is still sent, alone, so every message stays readable.
    #[arg(
        long,
        env = "SKAT_MAX_REPLY_BYTES",
        value_parser = at_least_one,
        default_value_t = 1024 * 1024
    )]
    pub max_reply_bytes: usize,
    /// Seconds shutdown waits for connections to close before giving up on them.
    #[arg(
        long = "shutdown-timeout",
        env = "SKAT_SHUTDOWN_TIMEOUT",
        value_name = "SECS",
        value_parser = seconds,
        default_value = "10"
    )]
    pub shutdown_timeout: Duration,
    /// Directory of the built web app, served at `/`.
    #[arg(long, env = "SKAT_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,
    /// What one client may cost the node.
    #[command(flatten)]
    pub limits: Limits,
    /// Signed mode: `hello` must carry an HS256 JWT made with this secret (`sub` = the name),
    /// at least 16 bytes long (see the `auth` module).
    #[arg(
        long,
        env = "SKAT_JWT_SECRET",
        hide_env_values = true,
        value_parser = SecretParser::new("SKAT_JWT_SECRET / --jwt-secret", |s| JwtSecret::new(s))
    )]
    pub jwt_secret: Option<JwtSecret>,
    /// Signed mode with a public key: `hello` must carry an RS256 or ES256 JWT whose signature
    /// this PEM file's key verifies (the application's backend keeps the private key). Instead
    /// of `--jwt-secret`.
    #[arg(
        long,
        env = "SKAT_JWT_PUBLIC_KEY",
        value_name = "PEM_FILE",
        value_parser = public_key,
        conflicts_with = "jwt_secret"
    )]
    pub jwt_public_key: Option<PublicKey>,
    /// Signed mode: tokens must also carry this `iss` claim.
    #[arg(long, env = "SKAT_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Signed mode: tokens must also carry this `aud` claim (or list it).
    #[arg(long, env = "SKAT_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// The server API's key: with it, `/api/v1` serves application backends that send
    /// `Authorization: Bearer <key>` (see `API.md`); without it, the API is off. At least 16
    /// bytes.
    #[arg(
        long,
        env = "SKAT_API_KEY",
        hide_env_values = true,
        value_parser = SecretParser::new("SKAT_API_KEY / --api-key", |s| ApiKey::new(s))
    )]
    pub api_key: Option<ApiKey>,
    /// Rooms whose names start with this are private: in signed mode only users whose token's
    /// `rooms` claim names them may join (see the `access` module). Empty: no private rooms.
    #[arg(long, env = "SKAT_PRIVATE_PREFIX", default_value = "private-")]
    pub private_prefix: String,
    /// Origins allowed to open WebSockets, comma-separated (`*` for any). Default: only pages
    /// from the same host as the request, against cross-site WebSocket hijacking.
    #[arg(long, env = "SKAT_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// Serve `GET /metrics` on this address (e.g. 127.0.0.1:9100) instead of the main one, to
    /// keep it off the public port. Default: on the main address.
    #[arg(long, env = "SKAT_METRICS_BIND")]
    pub metrics_bind: Option<std::net::SocketAddr>,
    /// Reverse proxies, comma-separated addresses or CIDRs: a WebSocket from one of them counts
    /// as coming from the address in `X-Forwarded-For` (for the per-address limit and the
    /// logs). From anyone else, forwarded headers are ignored. Default: none.
    #[arg(
        long,
        env = "SKAT_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = parse_proxy
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl ServerConfig {
    /// Signed mode's token checks, if a secret or a public key is configured.
    pub fn verifier(&self) -> Option<Verifier> {
        let verifier = match (&self.jwt_secret, &self.jwt_public_key) {
            (Some(secret), _) => Verifier::hs256(secret),
            (None, Some(key)) => Verifier::public(key),
            (None, None) => return None,
        };
        let verifier = match &self.jwt_issuer {
            Some(issuer) => verifier.with_issuer(issuer),
            None => verifier,
        };
        Some(match &self.jwt_audience {
            Some(audience) => verifier.with_audience(audience),
            None => verifier,
        })
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        defaults()
    }
}

/// The settings `T`'s `#[arg]`s give when no flag is passed and no environment variable is
/// set, whatever the environment holds.
pub(crate) fn defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("defaults")).mut_args(|arg| arg.env(None));
    let parsed = command
        .try_get_matches_from(["defaults"])
        .and_then(|matches| T::from_arg_matches(&matches));
    // Every option has a default or is optional: the unit tests below parse them all.
    parsed.expect("every setting has a default")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = ServerConfig::default();
        assert_eq!(config.node_id.len(), 8);
        assert_ne!(config.node_id, ServerConfig::default().node_id, "random");
        assert_eq!(config.outbound_queue, 1024);
        assert_eq!(config.outbound_queue_bytes, 1024 * 1024);
        assert_eq!(config.write_delay, Duration::ZERO);
        assert_eq!(config.max_message_bytes, 64 * 1024);
        assert_eq!(config.recovery_limit, 1000);
        assert_eq!(config.max_reply_bytes, 1024 * 1024);
        assert_eq!(config.shutdown_timeout, Duration::from_secs(10));
        assert!(config.static_dir.is_none() && config.jwt_secret.is_none());
        assert!(config.allowed_origins.is_none());
        let limits = config.limits;
        assert_eq!(limits.max_rooms_per_conn, 100);
        assert_eq!(limits.hello_timeout, Duration::from_secs(10));
        assert_eq!(limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(limits.max_handshakes, 16_384);
        assert_eq!(limits.max_handshakes_per_ip, None, "derived: 256");
        assert_eq!(limits.http_timeout, Duration::from_secs(60));
        assert_eq!(
            (limits.control_frames_per_sec, limits.control_burst()),
            (10, 20)
        );
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        config: ServerConfig,
    }

    fn parse(args: &[&str]) -> Result<ServerConfig, clap::Error> {
        use clap::Parser as _;
        let args = std::iter::once("skat").chain(args.iter().copied());
        Cli::try_parse_from(args).map(|cli| cli.config)
    }

    #[test]
    fn flags_set_fields_in_their_units() {
        let config = parse(&[
            "--write-delay-ms",
            "20",
            "--shutdown-timeout",
            "3",
            "--idle-timeout",
            "90",
            "--http-timeout",
            "20",
            "--max-handshakes-per-ip",
            "0",
            "--allowed-origins",
            "https://a.example,https://b.example",
            "--jwt-secret",
            "sixteen-bytes!!!",
        ])
        .unwrap();
        assert_eq!(config.write_delay, Duration::from_millis(20));
        assert_eq!(config.shutdown_timeout, Duration::from_secs(3));
        assert_eq!(config.limits.idle_timeout, Duration::from_secs(90));
        assert_eq!(config.limits.http_timeout, Duration::from_secs(20));
        assert_eq!(config.limits.handshakes_per_ip(), 0, "0: no share");
        assert_eq!(config.allowed_origins.unwrap().len(), 2);
        assert!(config.jwt_secret.is_some());
    }

    #[test]
    fn bad_values_are_refused_clearly_and_secrets_never_echoed() {
        for args in [
            &["--hello-timeout", "0"][..],
            &["--http-timeout", "0"],
            &["--max-handshakes-per-ip", "-1"],
            &["--idle-timeout", "soon"],
            &["--max-reply-bytes", "0"],
            &["--outbound-queue-bytes", "0"],
            &["--write-delay-ms", "-1"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
        let err = parse(&["--jwt-secret", "tiny-secret"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 16"), "{err}");
        assert!(!err.contains("tiny-secret"), "the secret leaked: {err}");
        let err = parse(&["--api-key", "tiny-api-key"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SKAT_API_KEY") && err.contains("at least 16"),
            "{err}"
        );
        assert!(!err.contains("tiny-api-key"), "the key leaked: {err}");
    }

    #[test]
    fn node_ids_are_checked() {
        assert_eq!(
            parse(&["--node-id", "chat-2.eu"]).unwrap().node_id,
            "chat-2.eu"
        );
        let err = parse(&["--node-id", "chat:2"]).unwrap_err().to_string();
        assert!(
            err.contains("--node-id") && err.contains("invalid node id \"chat:2\""),
            "{err}"
        );
        assert!(parse(&["--node-id", "a b"]).is_err());
        assert_eq!(
            skat_broker::check_node_id(&values::random_node_id()),
            Ok(())
        );
    }

    #[test]
    fn signed_mode_takes_a_secret_or_a_public_key_not_both() {
        let key = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/ec-public.pem");
        let config = parse(&["--jwt-public-key", key, "--jwt-issuer", "https://app"]).unwrap();
        let verifier = format!("{:?}", config.verifier().unwrap());
        assert!(
            verifier.contains("ES256") && verifier.contains("https://app"),
            "{verifier}"
        );
        assert!(parse(&["--jwt-public-key", key, "--jwt-secret", "sixteen-bytes!!!"]).is_err());
        let err = parse(&["--jwt-public-key", "/nonexistent.pem"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent.pem"), "{err}");
        assert!(ServerConfig::default().verifier().is_none());
    }
}
