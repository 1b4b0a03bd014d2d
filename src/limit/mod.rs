//! Rate limits (SPEC 10): keyed token buckets with bounded memory, and the
//! client-IP resolution they are keyed by.
//!
//! - [`KeyedLimiter`]: `N` a minute per key with a burst of `N`, `0` = off;
//!   [`check`](KeyedLimiter::check) answers `Ok` or [`RetryAfter`]. Idle keys
//!   are forgotten by [`sweep`](KeyedLimiter::sweep), and the number of keys
//!   tracked is capped (past it newcomers share fixed overflow buckets; see
//!   [`KeyedLimiter`] for why neither refusing nor evicting is safe).
//! - [`client_ip`]: the socket peer, or the right-most `X-Forwarded-For`
//!   entry not in [`TrustedProxies`] when the peer is one of them.
//! - [`RateLimits`]: the two limits of SPEC 10 and the trusted proxies in one
//!   handle, so wiring them into the router is a few lines.
//!
//! # Wiring (for the router)
//! ```
//! use std::{net::IpAddr, sync::Arc};
//! use wallet_auth::clock::SystemClock;
//! use wallet_auth::limit::{RateLimits, RetryAfter, TrustedProxies};
//!
//! // At build time, from `rate_limit_per_ip_per_minute`,
//! // `refresh_per_family_per_minute` and `trusted_proxies` (a bad CIDR is a
//! // ConfigError naming `trusted_proxies`):
//! let trusted = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
//! let limits = RateLimits::new(600, 10, trusted, Arc::new(SystemClock));
//!
//! // In a route layer on /challenge, /sign-in, /refresh, /login and
//! // /fleet/sessions (`peer` from `ConnectInfo<SocketAddr>`, the header
//! // values from `headers.get_all("x-forwarded-for").iter().map(|v| v.as_bytes())`):
//! let peer: IpAddr = "10.0.0.2".parse().unwrap();
//! let xff = [b"203.0.113.7".as_slice()];
//! let ip = limits.client_ip(peer, xff);
//! limits.check_ip(ip)?; // Err -> 429 `too many requests`, `Retry-After: {secs}`
//!
//! // In /refresh, once the token's signature is verified, before it is
//! // marked used (a 429 leaves the token valid):
//! limits.check_family("c0ffee00c0ffee00c0ffee00c0ffee00")?;
//!
//! // Every few seconds, from the background sweeper beside
//! // `ChallengeStore::purge_expired`:
//! limits.sweep();
//! # Ok::<(), RetryAfter>(())
//! ```
//! The per-IP bucket is what keeps one client from filling the challenge
//! store: within a challenge's TTL of `T` seconds one IP can be issued at most
//! `N + N * T / 60` challenges (a burst, then the steady rate), 1,200 with
//! the defaults, far below `challenge_max_outstanding` (1,000,000).
//!
//! Without `ConnectInfo` (a host app serving with plain `into_make_service`)
//! there is no peer; the router should then skip the per-IP limit and say so
//! once at start-up, rather than put every client in one bucket.

mod bucket;
mod client_ip;

use std::net::IpAddr;

use sha2::{Digest, Sha256};

pub use self::bucket::{KeyedLimiter, DEFAULT_MAX_KEYS};
pub use self::client_ip::{client_ip, InvalidCidr, TrustedProxies};
use crate::clock::SharedClock;

/// A request past a limit: retry after this many whole seconds (at least 1),
/// the value of the `Retry-After` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many requests (retry after {0} s)")]
pub struct RetryAfter(pub u64);

/// What a client IP is counted as: an IPv4 address, or an IPv6 address's
/// /64. One host is routinely given a whole /64, so a per-address key would
/// let it rotate through 2^64 buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpKey {
    /// An IPv4 address (IPv4-mapped IPv6 included).
    V4(u32),
    /// The upper 64 bits of an IPv6 address.
    V6Net(u64),
}

impl From<IpAddr> for IpKey {
    fn from(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => Self::V6Net((u128::from(v6) >> 64) as u64),
        }
    }
}

/// A refresh family's key: the first 16 bytes of the SHA-256 of its `fam`,
/// so a family costs 16 bytes whatever the claim's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FamilyKey([u8; 16]);

impl FamilyKey {
    /// The key of family `fam`.
    pub fn new(fam: &str) -> Self {
        let digest = Sha256::digest(fam.as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        Self(key)
    }
}

/// The limits of SPEC 10 in one handle: a bucket per client IP shared by
/// `/challenge`, `/sign-in`, `/refresh`, `/login` and `/fleet/sessions`, a
/// bucket per refresh family on `/refresh`, and the trusted proxies that
/// decide what the client IP is.
#[derive(Debug)]
pub struct RateLimits {
    per_ip: KeyedLimiter<IpKey>,
    per_family: KeyedLimiter<FamilyKey>,
    trusted: TrustedProxies,
}

impl RateLimits {
    /// `per_ip_per_minute` (`rate_limit_per_ip_per_minute`) and
    /// `per_family_per_minute` (`refresh_per_family_per_minute`), each `0` =
    /// off, each tracking at most [`DEFAULT_MAX_KEYS`] keys.
    pub fn new(
        per_ip_per_minute: u32,
        per_family_per_minute: u32,
        trusted: TrustedProxies,
        clock: SharedClock,
    ) -> Self {
        Self {
            per_ip: KeyedLimiter::per_minute(per_ip_per_minute, clock.clone()),
            per_family: KeyedLimiter::per_minute(per_family_per_minute, clock),
            trusted,
        }
    }

    /// Both limits off, no proxy trusted.
    pub fn off() -> Self {
        Self::new(
            0,
            0,
            TrustedProxies::none(),
            std::sync::Arc::new(crate::clock::SystemClock),
        )
    }

    /// The client IP of a request from `peer` with these `X-Forwarded-For`
    /// values (see [`client_ip`]).
    pub fn client_ip<'a, I>(&self, peer: IpAddr, forwarded_for: I) -> IpAddr
    where
        I: IntoIterator<Item = &'a [u8]>,
        I::IntoIter: DoubleEndedIterator,
    {
        client_ip(peer, forwarded_for, &self.trusted)
    }

    /// Whether the per-IP edge layer has work: a per-IP limit to charge, or
    /// trusted proxies whose `X-Forwarded-For` decides the client IP. When
    /// neither, the client IP is the peer and the layer is left out.
    pub fn needs_edge_layer(&self) -> bool {
        !self.per_ip.is_off() || !self.trusted.is_empty()
    }

    /// The trusted proxies.
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.trusted
    }

    /// Takes one request from the bucket of client `ip`.
    ///
    /// # Errors
    /// [`RetryAfter`] past `rate_limit_per_ip_per_minute`.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), RetryAfter> {
        self.per_ip.check(&IpKey::from(ip))
    }

    /// Takes one request from the bucket of refresh family `fam`.
    ///
    /// # Errors
    /// [`RetryAfter`] past `refresh_per_family_per_minute`.
    pub fn check_family(&self, fam: &str) -> Result<(), RetryAfter> {
        if self.per_family.is_off() {
            return Ok(());
        }
        self.per_family.check(&FamilyKey::new(fam))
    }

    /// Forgets idle keys of both limits; returns how many. For a background
    /// task, every few seconds.
    pub fn sweep(&self) -> usize {
        self.per_ip.sweep() + self.per_family.sweep()
    }

    /// The per-IP limiter.
    pub fn per_ip(&self) -> &KeyedLimiter<IpKey> {
        &self.per_ip
    }

    /// The per-family limiter.
    pub fn per_family(&self) -> &KeyedLimiter<FamilyKey> {
        &self.per_family
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_is_limited_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            IpKey::from(ip("2001:db8:1:2:aaaa::1")),
            IpKey::from(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_ne!(
            IpKey::from(ip("2001:db8:1:2::1")),
            IpKey::from(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            IpKey::from(ip("::ffff:192.0.2.1")),
            IpKey::from(ip("192.0.2.1"))
        );
        assert_ne!(IpKey::from(ip("192.0.2.1")), IpKey::from(ip("192.0.2.2")));
    }

    #[test]
    fn per_ip_and_per_family_buckets_through_the_handle() {
        let clock = ManualClock::new(1_700_000_000_000);
        let trusted = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        let limits = RateLimits::new(3, 2, trusted, Arc::new(clock.clone()));
        // Behind the proxy, two clients; a third talks to us directly and
        // claims to be the first.
        let lb = ip("10.0.0.2");
        let a = limits.client_ip(lb, [b"203.0.113.7".as_slice()]);
        let b = limits.client_ip(lb, [b"203.0.113.8".as_slice()]);
        let liar = limits.client_ip(ip("198.51.100.1"), [b"203.0.113.7".as_slice()]);
        assert_eq!(liar, ip("198.51.100.1"));
        for _ in 0..3 {
            assert!(limits.check_ip(a).is_ok());
        }
        assert_eq!(limits.check_ip(a), Err(RetryAfter(20)));
        assert!(limits.check_ip(b).is_ok());
        assert!(limits.check_ip(liar).is_ok());
        assert!(limits.check_ip(ip("2001:db8::1")).is_ok());

        assert!(limits.check_family("fam-1").is_ok());
        assert!(limits.check_family("fam-1").is_ok());
        assert_eq!(limits.check_family("fam-1"), Err(RetryAfter(30)));
        assert!(limits.check_family("fam-2").is_ok());

        assert_eq!(limits.sweep(), 0);
        clock.advance(Duration::from_secs(60));
        assert_eq!(limits.sweep(), 6, "4 IPs and 2 families, all idle");
        assert!(limits.per_ip().is_empty() && limits.per_family().is_empty());
    }

    #[test]
    fn off_passes_everything() {
        let limits = RateLimits::off();
        for _ in 0..10_000 {
            limits.check_ip(ip("192.0.2.1")).unwrap();
            limits.check_family("f").unwrap();
        }
        assert!(limits.per_ip().is_off() && limits.per_family().is_off());
        assert_eq!(limits.sweep(), 0);
        // And no proxy is trusted.
        assert_eq!(
            limits.client_ip(ip("10.0.0.2"), [b"1.2.3.4".as_slice()]),
            ip("10.0.0.2")
        );
    }
}
