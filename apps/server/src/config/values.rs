//! How each setting's text becomes its value, and [`ConfigError`], why it cannot. clap calls
//! these parsers (`value_parser = ...`) for flags and environment variables alike; the keys'
//! own checks are `auth`'s ([`KeyError`]), and [`SecretParser`] reports them without echoing
//! the secret.

use std::ffi::OsStr;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::error::ErrorKind;
use ipnet::{IpNet, Ipv4Net};
use skat_broker::InvalidNodeId;

use crate::auth::{KeyError, PublicKey};

/// Why a setting's value cannot be used. (A key's own checks are [`KeyError`]'s.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A yes-or-no option's value is neither.
    #[error("expected true, 1, yes or on, or false, 0, no or off")]
    NotYesOrNo,
    /// Not a whole number of milliseconds.
    #[error("expected milliseconds")]
    NotMillis,
    /// Not a whole number of seconds.
    #[error("expected seconds")]
    NotSeconds,
    /// Zero seconds where at least one is needed.
    #[error("must be at least 1 second")]
    ZeroSeconds,
    /// Not a count of at least one.
    #[error("expected a number of at least 1")]
    NotAtLeastOne,
    /// A node id no broker could use.
    #[error(transparent)]
    NodeId(#[from] InvalidNodeId),
    /// A `--trusted-proxies` entry that is neither an address nor a CIDR.
    #[error("{0:?} is neither an IP address nor a CIDR (10.0.0.0/8)")]
    NotAProxy(String),
    /// A secret that is not UTF-8.
    #[error("not valid UTF-8")]
    NotUtf8,
}

/// An 8-hex-digit id, different for every call and process.
pub(super) fn random_node_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = (
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now(),
    );
    format!("{:08x}", RandomState::new().hash_one(seed) as u32)
}

/// A node id; none (empty) makes a random one, every time: clap parses a default value afresh
/// on each parse, so every `ServerConfig::default()` has its own id. Any other must pass
/// [`skat_broker::check_node_id`], whichever broker the node runs on, so that an id accepted
/// today is not refused the day the node moves to Redis.
pub(super) fn node_id(text: &str) -> Result<String, ConfigError> {
    match text {
        "" => Ok(random_node_id()),
        id => Ok(skat_broker::check_node_id(id).map(|()| id.to_owned())?),
    }
}

/// A yes-or-no option's value: `true`, `1`, `yes`, `on` or `false`, `0`, `no`, `off`, in any
/// case, and empty as no (an unset variable passed on as `VAR=` by a compose file or a unit).
/// Every `bool` option of the node takes it (`value_parser = yes_or_no`): clap's own default for
/// a flag's variable accepts only `true` and `false`, so `SKAT_REDIS_CLUSTER=1` stopped the node.
/// The flag alone on the command line still means yes.
pub fn yes_or_no(text: &str) -> Result<bool, ConfigError> {
    const YES: [&str; 4] = ["true", "1", "yes", "on"];
    const NO: [&str; 5] = ["false", "0", "no", "off", ""];
    let text = text.trim();
    if YES.iter().any(|yes| text.eq_ignore_ascii_case(yes)) {
        Ok(true)
    } else if NO.iter().any(|no| text.eq_ignore_ascii_case(no)) {
        Ok(false)
    } else {
        Err(ConfigError::NotYesOrNo)
    }
}

/// A duration given in milliseconds.
pub(super) fn millis(text: &str) -> Result<Duration, ConfigError> {
    let ms: u64 = text.parse().map_err(|_| ConfigError::NotMillis)?;
    Ok(Duration::from_millis(ms))
}

/// A duration given in whole seconds.
pub(super) fn seconds(text: &str) -> Result<Duration, ConfigError> {
    let secs: u64 = text.parse().map_err(|_| ConfigError::NotSeconds)?;
    Ok(Duration::from_secs(secs))
}

/// A duration given in whole seconds, at least one.
pub(crate) fn positive_seconds(text: &str) -> Result<Duration, ConfigError> {
    match seconds(text)? {
        Duration::ZERO => Err(ConfigError::ZeroSeconds),
        duration => Ok(duration),
    }
}

/// A count of at least one.
pub(super) fn at_least_one(text: &str) -> Result<usize, ConfigError> {
    match text.parse() {
        Ok(0) | Err(_) => Err(ConfigError::NotAtLeastOne),
        Ok(n) => Ok(n),
    }
}

/// Reads `--jwt-public-key`'s file.
pub(super) fn public_key(path: &str) -> Result<PublicKey, KeyError> {
    PublicKey::read(Path::new(path))
}

/// Parses a secret (`--jwt-secret`, `--api-key`) without ever echoing it: clap's own errors
/// quote the bad value.
#[derive(Clone, Copy)]
pub(super) struct SecretParser<T> {
    /// The variable and flag, for errors.
    names: &'static str,
    parse: fn(&str) -> Result<T, KeyError>,
}

impl<T> SecretParser<T> {
    pub(super) fn new(names: &'static str, parse: fn(&str) -> Result<T, KeyError>) -> Self {
        Self { names, parse }
    }
}

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for SecretParser<T> {
    type Value = T;

    fn parse_ref(
        &self,
        command: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let refuse = |why: &dyn std::fmt::Display| {
            clap::Error::raw(
                ErrorKind::ValueValidation,
                format!("{}: {why}\n", self.names),
            )
            .with_cmd(command)
        };
        let text = value
            .to_str()
            .ok_or_else(|| refuse(&ConfigError::NotUtf8))?;
        (self.parse)(text).map_err(|err| refuse(&err))
    }
}

/// Parses a `--trusted-proxies` entry: a CIDR (`10.0.0.0/8`) or a single address.
pub(crate) fn parse_proxy(text: &str) -> Result<IpNet, ConfigError> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map(canonical_net)
        .map_err(|_| ConfigError::NotAProxy(text.to_owned()))
}

/// `net` with an IPv4-mapped IPv6 range (`::ffff:10.0.0.0/104`) read as the IPv4 one
/// (`10.0.0.0/8`), since peers are matched in their canonical form.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.network().to_ipv4_mapped()
        && let Some(len) = v6.prefix_len().checked_sub(96)
        && let Ok(v4) = Ipv4Net::new(v4, len)
    {
        return IpNet::V4(v4);
    }
    net
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yes_or_no_reads_the_usual_spellings() {
        for yes in ["true", "1", "yes", "on", "TRUE", "Yes", " on "] {
            assert_eq!(yes_or_no(yes), Ok(true), "{yes:?}");
        }
        for no in ["false", "0", "no", "off", "OFF", "No", ""] {
            assert_eq!(yes_or_no(no), Ok(false), "{no:?}");
        }
        for neither in ["maybe", "2", "y", "enabled"] {
            assert!(yes_or_no(neither).is_err(), "{neither:?}");
        }
    }

    #[test]
    fn ipv4_mapped_proxy_entries_are_read_as_ipv4() {
        assert_eq!(
            parse_proxy("::ffff:10.0.0.0/104").unwrap(),
            parse_proxy("10.0.0.0/8").unwrap()
        );
        assert_eq!(
            parse_proxy("::ffff:192.168.1.1").unwrap(),
            parse_proxy("192.168.1.1/32").unwrap()
        );
        // Wider than the mapped range, or plain IPv6: kept.
        assert_eq!(
            parse_proxy("::/64").unwrap().to_string(),
            "::/64",
            "not a mapped range"
        );
        assert_eq!(
            parse_proxy("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
    }

    #[test]
    fn proxies_are_cidrs_or_addresses() {
        assert!(parse_proxy("10.0.0.0/8").is_ok());
        assert!(parse_proxy("::1").is_ok());
        assert!(parse_proxy(" 192.168.1.1 ").is_ok());
        assert!(parse_proxy("proxy.example").is_err());
        assert!(parse_proxy("10.0.0.0/33").is_err());
    }
}
