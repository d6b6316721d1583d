//! Who a request comes from behind a load balancer. With `--trusted-proxies`, a connection from
//! one of those networks is taken to come from the address its `X-Forwarded-For` header names:
//! the rightmost one that is not itself a trusted proxy (each proxy appends the address it was
//! reached from, so the entries to its left are the client's word and may be forged). Per-address
//! caps and the audit log then see clients, not nginx.
//!
//! Owns: the networks' syntax and reading the header's value. Must not: believe the header from a
//! peer that is not trusted (anyone may send one).

use std::net::IpAddr;
use std::str::FromStr;

/// An address or a network in CIDR notation (`10.0.0.0/8`, `127.0.0.1`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (address, prefix) =
            text.trim().split_once('/').map_or((text.trim(), None), |(a, p)| (a, Some(p)));
        let address: IpAddr =
            address.parse().map_err(|_| format!("{text:?} is not an address or a network"))?;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= bits)
                .ok_or_else(|| format!("{text:?}: the prefix must be 0-{bits}"))?,
        };
        Ok(Self { address, prefix })
    }
}

impl Network {
    pub fn contains(&self, address: IpAddr) -> bool {
        let (network, address, bits) = match (self.address, canonical(address)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                (u128::from(u32::from(n)), u128::from(u32::from(a)), 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), u128::from(a), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || network >> shift == address >> shift
    }
}

/// An IPv4 address mapped into IPv6 (`::ffff:10.0.0.1`, as a dual-stack listener sees it) as IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: `peer`, or, when `peer` is a trusted proxy, the rightmost address of
/// `forwarded_for` (the `X-Forwarded-For` values, in order) that is not one. An entry that is no
/// address stops the walk there: the last good one to its right (or `peer`) is the answer.
pub fn client_address<'a>(
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'a str>,
    trusted: &[Network],
) -> IpAddr {
    let is_trusted = |address: IpAddr| trusted.iter().any(|network| network.contains(address));
    let mut client = canonical(peer);
    if !is_trusted(client) {
        return client;
    }
    let entries: Vec<&str> = forwarded_for.flat_map(|value| value.split(',')).collect();
    for entry in entries.iter().rev() {
        let Ok(address) = entry.trim().parse::<IpAddr>() else { break };
        client = canonical(address);
        if !is_trusted(client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_contain_their_addresses() {
        let net: Network = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.200.3")) && !net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")), "an IPv4-mapped address is IPv4");
        let one: Network = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("::1")));
        let v6: Network = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        for bad in ["10.0.0.0/33", "nginx", "10.0.0.0/x", "::/129", ""] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
    }

    #[test]
    fn only_a_trusted_peer_is_believed_and_the_rightmost_untrusted_entry_is_the_client() {
        let trusted: Vec<Network> =
            vec!["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        let from = |peer: &str, values: &[&str]| {
            client_address(ip(peer), values.iter().copied(), &trusted)
        };
        assert_eq!(
            from("203.0.113.9", &["198.51.100.1"]),
            ip("203.0.113.9"),
            "not a proxy: its word is not taken"
        );
        assert_eq!(from("127.0.0.1", &[]), ip("127.0.0.1"), "no header: the proxy itself");
        assert_eq!(from("127.0.0.1", &["198.51.100.1"]), ip("198.51.100.1"));
        // The client wrote the first entry itself; the proxies appended the rest.
        assert_eq!(from("127.0.0.1", &["6.6.6.6, 198.51.100.1, 10.0.0.5"]), ip("198.51.100.1"));
        assert_eq!(
            from("127.0.0.1", &["6.6.6.6", "198.51.100.1"]),
            ip("198.51.100.1"),
            "two header lines"
        );
        assert_eq!(
            from("127.0.0.1", &["198.51.100.1, junk"]),
            ip("127.0.0.1"),
            "garbage stops the walk"
        );
        assert_eq!(
            from("127.0.0.1", &["10.0.0.5, 10.0.0.6"]),
            ip("10.0.0.5"),
            "only proxies: the leftmost"
        );
    }
}
