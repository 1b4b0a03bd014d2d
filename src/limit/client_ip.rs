//! Which client a request comes from: the socket peer, or what trusted
//! proxies say in `X-Forwarded-For`.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// At most this many `X-Forwarded-For` entries are read, right to left.
const MAX_HOPS: usize = 32;

/// The networks whose `X-Forwarded-For` is believed (`trusted_proxies`,
/// SPEC 10). Empty, the default, believes no one: the client is the socket
/// peer and the header is ignored.
///
/// List only the proxies themselves: a client inside a trusted network can
/// name any address it likes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// A `trusted_proxies` entry that is neither a CIDR nor an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a CIDR or IP address: {0:?}")]
pub struct InvalidCidr(pub String);

impl TrustedProxies {
    /// Trusts no proxy.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses CIDRs (`10.0.0.0/8`, `fd00::/8`) or bare addresses (one
    /// host: `/32`, `/128`). Host bits set in a CIDR are ignored, as
    /// `10.1.2.3/8` means `10.0.0.0/8`.
    ///
    /// # Errors
    /// [`InvalidCidr`] naming the first entry that is neither.
    pub fn parse<S: AsRef<str>>(cidrs: impl IntoIterator<Item = S>) -> Result<Self, InvalidCidr> {
        cidrs
            .into_iter()
            .map(|s| {
                let s = s.as_ref().trim();
                s.parse::<IpNet>()
                    .map(|n| n.trunc())
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| InvalidCidr(s.to_string()))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }
}

/// The client's address, as a pure function of the socket peer, the values
/// of the request's `X-Forwarded-For` headers (in the order received) and
/// the trusted proxies:
///
/// - the peer is not a trusted proxy (always so when none is trusted): the
///   peer, whatever the headers say;
/// - otherwise the right-most `X-Forwarded-For` entry that is not a trusted
///   proxy (several headers read as one list, in order), the entries to its
///   right having been appended by trusted proxies;
/// - when the walk meets an entry that is not an address (garbage, empty,
///   `unknown`), or reads more than 32 entries, or every entry is trusted:
///   the last trusted hop it reached (the peer if none), since nothing to the
///   left of it can be vouched for. So a client behind a broken proxy is
///   attributed to that proxy, never to an address it chose.
///
/// Entries may carry a port (`1.2.3.4:80`, `[::1]:80`); IPv4-mapped IPv6
/// addresses are read as IPv4. No allocation.
///
/// ```
/// use std::net::IpAddr;
/// use wallet_auth::limit::{client_ip, TrustedProxies};
///
/// let proxies = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
/// let lb: IpAddr = "10.0.0.2".parse().unwrap();
/// let xff = [b"6.6.6.6, 203.0.113.7, 10.0.0.9".as_slice()];
/// assert_eq!(client_ip(lb, xff, &proxies), "203.0.113.7".parse::<IpAddr>().unwrap());
/// // The same header from anyone else is ignored.
/// let stranger: IpAddr = "198.51.100.1".parse().unwrap();
/// assert_eq!(client_ip(stranger, xff, &proxies), stranger);
/// ```
pub fn client_ip<'a, I>(peer: IpAddr, forwarded_for: I, trusted: &TrustedProxies) -> IpAddr
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: DoubleEndedIterator,
{
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    let mut nearest = peer;
    let mut hops = 0;
    for value in forwarded_for.into_iter().rev() {
        for entry in value.rsplit(|&b| b == b',') {
            hops += 1;
            if hops > MAX_HOPS {
                return nearest;
            }
            let Some(ip) = parse_entry(entry) else {
                return nearest;
            };
            if !trusted.contains(ip) {
                return ip;
            }
            nearest = ip;
        }
    }
    nearest
}

/// One `X-Forwarded-For` entry: an address, optionally with a port.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(entry).ok()?.trim_matches([' ', '\t']);
    let ip = s
        .parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            s.strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<std::net::Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn resolve(peer: &str, headers: &[&str], trusted: &[&str]) -> IpAddr {
        let trusted = TrustedProxies::parse(trusted).unwrap();
        client_ip(ip(peer), headers.iter().map(|h| h.as_bytes()), &trusted)
    }

    const LB: &[&str] = &["10.0.0.0/8", "fd00::/8"];

    #[test]
    fn no_trusted_proxies_ignores_the_header() {
        assert_eq!(resolve("203.0.113.7", &["1.2.3.4"], &[]), ip("203.0.113.7"));
        // Even from a private or loopback peer.
        assert_eq!(resolve("10.0.0.2", &["1.2.3.4"], &[]), ip("10.0.0.2"));
        assert_eq!(resolve("127.0.0.1", &["1.2.3.4"], &[]), ip("127.0.0.1"));
    }

    #[test]
    fn an_untrusted_peer_cannot_spoof() {
        for headers in [
            &["1.2.3.4"][..],
            &["10.0.0.3"],
            &["1.2.3.4, 10.0.0.3"],
            &["1.2.3.4", "5.6.7.8"],
        ] {
            assert_eq!(resolve("198.51.100.1", headers, LB), ip("198.51.100.1"));
        }
    }

    #[test]
    fn right_most_untrusted_entry_behind_trusted_proxies() {
        assert_eq!(resolve("10.0.0.2", &["203.0.113.7"], LB), ip("203.0.113.7"));
        // What the client wrote itself sits further left and is not read.
        assert_eq!(
            resolve("10.0.0.2", &["6.6.6.6, 7.7.7.7,203.0.113.7"], LB),
            ip("203.0.113.7")
        );
        // Two trusted hops.
        assert_eq!(
            resolve("10.0.0.2", &["6.6.6.6, 203.0.113.7, 10.9.9.9"], LB),
            ip("203.0.113.7")
        );
        // A bare address as a "CIDR" trusts that host only.
        assert_eq!(
            resolve("192.0.2.10", &["1.1.1.1, 192.0.2.11"], &["192.0.2.10"]),
            ip("192.0.2.11")
        );
    }

    #[test]
    fn several_headers_read_as_one_list_in_order() {
        // A client-sent header first, then the proxy's own.
        assert_eq!(
            resolve("10.0.0.2", &["6.6.6.6", "203.0.113.7"], LB),
            ip("203.0.113.7")
        );
        assert_eq!(
            resolve(
                "10.0.0.2",
                &["6.6.6.6, 7.7.7.7", "203.0.113.7, 10.1.1.1"],
                LB
            ),
            ip("203.0.113.7")
        );
        // An empty header contributes an empty (garbage) entry.
        assert_eq!(resolve("10.0.0.2", &["6.6.6.6", ""], LB), ip("10.0.0.2"));
    }

    #[test]
    fn garbage_stops_at_the_nearest_trusted_hop() {
        for (headers, want) in [
            (&["6.6.6.6, garbage"][..], "10.0.0.2"),
            (&["6.6.6.6, unknown"], "10.0.0.2"),
            (&["6.6.6.6,,"], "10.0.0.2"),
            (&["6.6.6.6, _hidden, 10.0.0.7"], "10.0.0.7"),
            (&["6.6.6.6, 1.2.3.4.5"], "10.0.0.2"),
            (&["6.6.6.6, 300.1.1.1"], "10.0.0.2"),
            (&["6.6.6.6, fe80::1%eth0"], "10.0.0.2"),
            (&["6.6.6.6, 1.2.3.4/8"], "10.0.0.2"),
            (&["6.6.6.6, \"1.2.3.4\""], "10.0.0.2"),
            (&["1.2.3.4 5.6.7.8"], "10.0.0.2"),
        ] {
            assert_eq!(resolve("10.0.0.2", headers, LB), ip(want), "{headers:?}");
        }
        // Non-UTF-8 bytes.
        let trusted = TrustedProxies::parse(LB).unwrap();
        let xff = [b"6.6.6.6, \xff\xfe".as_slice()];
        assert_eq!(client_ip(ip("10.0.0.2"), xff, &trusted), ip("10.0.0.2"));
        // No header at all, or only trusted hops: the left-most trusted hop.
        assert_eq!(resolve("10.0.0.2", &[], LB), ip("10.0.0.2"));
        assert_eq!(
            resolve("10.0.0.2", &["10.0.0.5, 10.0.0.4"], LB),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn ports_brackets_spaces_and_mapped_addresses() {
        for (entry, want) in [
            ("203.0.113.7:4711", "203.0.113.7"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
            ("\t 203.0.113.7 ", "203.0.113.7"),
            ("::ffff:203.0.113.7", "203.0.113.7"),
        ] {
            assert_eq!(resolve("10.0.0.2", &[entry], LB), ip(want), "{entry}");
        }
        // A mapped peer is the IPv4 peer, trusted or not.
        assert_eq!(
            resolve("::ffff:10.0.0.2", &["203.0.113.7"], LB),
            ip("203.0.113.7")
        );
        assert_eq!(
            resolve("::ffff:198.51.100.1", &["203.0.113.7"], LB),
            ip("198.51.100.1")
        );
        // A mapped trusted hop is trusted.
        assert_eq!(
            resolve("10.0.0.2", &["203.0.113.7, ::ffff:10.3.3.3"], LB),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn a_long_chain_of_trusted_hops_is_cut_off() {
        let mut chain: Vec<String> = vec!["6.6.6.6".into()];
        chain.extend((0..40).map(|i| format!("10.0.0.{i}")));
        let header = chain.join(", ");
        let got = resolve("10.0.0.2", &[&header], LB);
        assert!(TrustedProxies::parse(LB).unwrap().contains(got), "{got}");
        assert_ne!(got, ip("6.6.6.6"));
    }

    #[test]
    fn parse_accepts_cidrs_and_hosts_and_names_the_bad_entry() {
        let t = TrustedProxies::parse(["10.1.2.3/8", " 192.0.2.1 ", "::1", "fd00::/8"]).unwrap();
        assert!(t.contains(ip("10.200.0.1")));
        assert!(t.contains(ip("192.0.2.1")));
        assert!(!t.contains(ip("192.0.2.2")));
        assert!(t.contains(ip("::1")));
        assert!(t.contains(ip("fd12::1")));
        assert!(t.contains(ip("::ffff:10.0.0.1")));
        assert!(TrustedProxies::none().is_empty());
        assert_eq!(
            TrustedProxies::parse(["10.0.0.0/8", "10.0.0.0/33"]),
            Err(InvalidCidr("10.0.0.0/33".into()))
        );
        assert!(TrustedProxies::parse(["localhost"]).is_err());
        assert!(TrustedProxies::parse([""]).is_err());
    }
}
