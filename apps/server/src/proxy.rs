//! Behind a reverse proxy: which address a WebSocket comes from.
//!
//! A node behind a proxy sees the proxy as every client's TCP peer. With `--trusted-proxies`,
//! a request whose peer is one of them is attributed to the address the proxies put in
//! `X-Forwarded-For`: walking the list from the right (the hop nearest the node), past every
//! trusted proxy, the first address that is not one is the client. Anything a client wrote
//! further left is its own claim and ignored. A peer that is not a trusted proxy is the client,
//! whatever headers it sends. The per-address connection limit and the logs use this address.
//!
//! Every address is canonical: a dual-stack listener (`--bind [::]:3000`) sees IPv4 peers as
//! `::ffff:a.b.c.d`, which no IPv4 entry of `--trusted-proxies` would match, so peers, hops
//! and IPv4-mapped entries (those by `config`'s parser) are all read as the IPv4 addresses they
//! are.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// Whether `peer` is one of the `trusted` proxies.
pub(crate) fn is_trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    let peer = peer.to_canonical();
    trusted.iter().any(|net| net.contains(&peer))
}

/// The client's address for a request from TCP peer `peer`: see the module docs.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let trusts = |ip: &IpAddr| is_trusted(*ip, trusted);
    if !trusts(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        // A hop we cannot read ends the walk: the nearest trusted address stands.
        let Some(ip) = parse_hop(hop) else { break };
        client = ip;
        if !trusts(&ip) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_proxy;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let trusted = [
            parse_proxy("10.0.0.0/8").unwrap(),
            parse_proxy("127.0.0.1").unwrap(),
        ];
        let forwarded = headers(&["6.6.6.6, 1.2.3.4", "10.0.0.2"]);
        // From a trusted proxy: past the trusted hops, the first other address.
        assert_eq!(
            client_ip(ip("127.0.0.1"), &forwarded, &trusted),
            ip("1.2.3.4")
        );
        // From anyone else: the peer, whatever it claims.
        assert_eq!(
            client_ip(ip("8.8.8.8"), &forwarded, &trusted),
            ip("8.8.8.8")
        );
        assert_eq!(client_ip(ip("127.0.0.1"), &forwarded, &[]), ip("127.0.0.1"));
        // No header: the proxy itself.
        assert_eq!(
            client_ip(ip("10.1.1.1"), &HeaderMap::new(), &trusted),
            ip("10.1.1.1")
        );
        // Only trusted hops: the leftmost of them.
        assert_eq!(
            client_ip(ip("10.1.1.1"), &headers(&["10.0.0.9"]), &trusted),
            ip("10.0.0.9")
        );
        // Ports and IPv6.
        let ported = headers(&["[2001:db8::1]:4711, 1.2.3.4:80"]);
        assert_eq!(client_ip(ip("127.0.0.1"), &ported, &trusted), ip("1.2.3.4"));
        // Garbage nearest the node: the walk stops at the proxy.
        assert_eq!(
            client_ip(ip("127.0.0.1"), &headers(&["1.2.3.4, junk"]), &trusted),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn ipv4_mapped_peers_and_hops_are_read_as_ipv4() {
        let trusted = [parse_proxy("10.0.0.0/8").unwrap()];
        // A dual-stack listener's view of IPv4 proxy 10.0.0.2.
        let mapped_proxy = ip("::ffff:10.0.0.2");
        assert_eq!(
            client_ip(mapped_proxy, &headers(&["1.2.3.4"]), &trusted),
            ip("1.2.3.4")
        );
        assert!(is_trusted(mapped_proxy, &trusted));
        // A mapped trusted hop is walked past; a mapped client comes out as IPv4.
        assert_eq!(
            client_ip(
                mapped_proxy,
                &headers(&["::ffff:1.2.3.4, ::ffff:10.0.0.9"]),
                &trusted
            ),
            ip("1.2.3.4")
        );
        // An untrusted mapped peer is the client, in its IPv4 form.
        assert_eq!(
            client_ip(ip("::ffff:8.8.8.8"), &headers(&["1.2.3.4"]), &trusted),
            ip("8.8.8.8")
        );
    }
}
