//! The table of recent login failures, bounded in memory.
//!
//! Two keys are counted for every attempt:
//!
//! - **(email, client)**, limited to [`LoginLimits::max_failures`]: the
//!   lock-out. A stranger guessing the admin's password from elsewhere fills
//!   their own (email, client) entry, never the admin's, so nobody can lock the
//!   admin out from an address they do not share (SPEC section 10).
//! - **client**, limited to [`LoginLimits::max_failures_per_ip`]: one address
//!   that rotates emails still gets a bounded number of argon2 runs, and
//!   creates a bounded number of (email, client) entries.
//!
//! A client is its IP address (IPv6 by its /64, the block one subscriber
//! usually holds), or one shared "unknown" client when the caller does not know
//! the address (a router served without `ConnectInfo`). Unknown callers are one
//! bucket, like one address: their guesses stay limited, at the price that a
//! stranger who is also unknown can lock them out. Serve with
//! [`crate::http::serve`] (or `into_make_service_with_connect_info`) to get
//! per-address lock-outs.
//!
//! [`FailureTable::reserve`] checks and records in one step under one lock, so
//! a failure is counted before the argon2 work starts and concurrent guesses
//! cannot overrun the limit.
//!
//! # Memory
//! At most [`LoginLimits::max_tracked_keys`] entries (and never fewer than
//! the two of one attempt). When a new key finds the table full, entries with
//! no failure left in the window go first; if that frees too little, the
//! entries whose newest failure is oldest are evicted, a sixteenth of the
//! table at once so the scan is paid once per many inserts. A new key is
//! never refused and never left untracked, so filling the table cannot lock
//! anyone out nor open unlimited guessing from a fresh address. Evicting a
//! live entry hands its owner back guesses, but only after the table has
//! taken `max_tracked_keys` newer failures, each of which cost one argon2 run
//! under the global bound; with the defaults (100,000 keys, two hashing
//! slots) that is longer than the 15-minute window.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::LoginLimits;

/// Who is attempting: an address, or the one bucket of callers whose address
/// is not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Client {
    /// No address was given.
    Unknown,
    /// An IPv4 address, or the /64 of an IPv6 one.
    Ip(IpAddr),
}

impl Client {
    /// The client of `ip`: IPv4-mapped IPv6 as IPv4, IPv6 by its /64.
    pub(super) fn of(ip: Option<IpAddr>) -> Self {
        match ip.map(|ip| ip.to_canonical()) {
            None => Client::Unknown,
            Some(IpAddr::V6(v6)) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Client::Ip(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
            Some(v4) => Client::Ip(v4),
        }
    }
}

/// A counted key. Emails are SHA-256 digests, so a key costs the same
/// whatever the email's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Pair([u8; 32], Client),
    Client(Client),
}

/// Failure times of one key, oldest first, at most the key's limit.
type Failures = VecDeque<u64>;

/// Recent failures per (email, client) and per client. All methods take the
/// caller's time in seconds (from [`crate::clock::Clock`]) so tests can move
/// it.
pub(super) struct FailureTable {
    per_pair: usize,
    per_client: usize,
    window_secs: u64,
    max_keys: usize,
    entries: Mutex<HashMap<Key, Failures>>,
}

impl fmt::Debug for FailureTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailureTable")
            .field("tracked_keys", &self.len())
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

impl FailureTable {
    pub(super) fn new(limits: &LoginLimits) -> Self {
        let to_usize = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
        Self {
            per_pair: to_usize(limits.max_failures).max(1),
            per_client: to_usize(limits.max_failures_per_ip).max(1),
            window_secs: limits.window_secs.max(1),
            max_keys: limits.max_tracked_keys.max(2),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Keys tracked now.
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Seconds until `email_digest` may try again from `client`, or `None`
    /// when it may try now. Records nothing.
    pub(super) fn locked(&self, email_digest: &[u8; 32], client: Client, now: u64) -> Option<u64> {
        let mut entries = self.lock();
        self.keys(email_digest, client)
            .into_iter()
            .filter_map(|(key, limit)| self.retry_after(&mut entries, &key, limit, now))
            .max()
    }

    /// Counts one failure for `email_digest` from `client`, unless either key
    /// is locked out already: then nothing is recorded and the answer is the
    /// seconds to wait (at least 1). Check and record happen under one lock,
    /// so of many concurrent callers exactly as many as the limit get through.
    pub(super) fn reserve(
        &self,
        email_digest: &[u8; 32],
        client: Client,
        now: u64,
    ) -> Result<(), u64> {
        let keys = self.keys(email_digest, client);
        let mut entries = self.lock();
        let wait = keys
            .iter()
            .filter_map(|(key, limit)| self.retry_after(&mut entries, key, *limit, now))
            .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        let new = keys
            .iter()
            .filter(|(k, _)| !entries.contains_key(k))
            .count();
        if entries.len() + new > self.max_keys {
            self.make_room(&mut entries, new, &[keys[0].0, keys[1].0], now);
        }
        for (key, limit) in keys {
            let failures = entries.entry(key).or_default();
            failures.push_back(now);
            // Only the newest `limit` matter: the lock-out ends when the
            // oldest of them ages out.
            while failures.len() > limit {
                failures.pop_front();
            }
        }
        Ok(())
    }

    /// A correct password: forgets the failures of the pair and of the client.
    pub(super) fn clear(&self, email_digest: &[u8; 32], client: Client) {
        let mut entries = self.lock();
        for (key, _) in self.keys(email_digest, client) {
            entries.remove(&key);
        }
    }

    fn keys(&self, email_digest: &[u8; 32], client: Client) -> [(Key, usize); 2] {
        [
            (Key::Pair(*email_digest, client), self.per_pair),
            (Key::Client(client), self.per_client),
        ]
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Failures>> {
        // Nothing under this lock panics; if something ever did, the table is
        // still a valid map of failure times.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_live(&self, t: u64, now: u64) -> bool {
        t.saturating_add(self.window_secs) > now
    }

    /// Drops the aged-out failures of `key`; the wait if `limit` remain.
    fn retry_after(
        &self,
        entries: &mut HashMap<Key, Failures>,
        key: &Key,
        limit: usize,
        now: u64,
    ) -> Option<u64> {
        let failures = entries.get_mut(key)?;
        while failures.front().is_some_and(|&t| !self.is_live(t, now)) {
            failures.pop_front();
        }
        if failures.is_empty() {
            entries.remove(key);
            return None;
        }
        if failures.len() < limit {
            return None;
        }
        let oldest = *failures.front()?;
        let wait = oldest.saturating_add(self.window_secs).saturating_sub(now);
        Some(wait.clamp(1, self.window_secs))
    }

    /// Frees room for `new` keys (and a sixteenth of the table more), never
    /// evicting `keep`: first entries with no live failure, then those whose
    /// newest failure is oldest.
    fn make_room(&self, entries: &mut HashMap<Key, Failures>, new: usize, keep: &[Key], now: u64) {
        entries.retain(|k, f| keep.contains(k) || f.back().is_some_and(|&t| self.is_live(t, now)));
        let target = self.max_keys.saturating_sub(new.max(self.max_keys / 16));
        if entries.len() <= target {
            return;
        }
        let mut by_age: Vec<(u64, Key)> = entries
            .iter()
            .filter(|(k, _)| !keep.contains(k))
            .map(|(k, f)| (f.back().copied().unwrap_or(0), *k))
            .collect();
        let evict = (entries.len() - target).min(by_age.len());
        if evict == 0 {
            return;
        }
        if evict < by_age.len() {
            by_age.select_nth_unstable_by_key(evict - 1, |(t, _)| *t);
        }
        for (_, key) in &by_age[..evict] {
            entries.remove(key);
        }
        tracing::warn!(
            evicted = evict,
            max_tracked_keys = self.max_keys,
            "login failure table full; evicted the entries with the oldest failures"
        );
    }

    #[cfg(test)]
    fn tracks(&self, email: &str, client: Client) -> bool {
        self.lock().contains_key(&Key::Pair(digest(email), client))
    }
}

#[cfg(test)]
pub(super) fn digest(email: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(email.as_bytes()).into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use std::net::Ipv4Addr;
    use std::sync::Arc;
    use std::time::Duration;

    const ADMIN: &str = "admin@pico.local";

    fn table(max_tracked_keys: usize) -> FailureTable {
        FailureTable::new(&LoginLimits {
            max_tracked_keys,
            ..LoginLimits::default()
        })
    }

    fn ip(a: u8, b: u8) -> Client {
        Client::of(Some(IpAddr::V4(Ipv4Addr::new(198, 51, a, b))))
    }

    fn clock() -> ManualClock {
        ManualClock::new(1_700_000_000_000)
    }

    #[test]
    fn reserve_counts_up_to_the_limit_then_refuses_with_the_wait() {
        let (t, c) = (table(100), clock());
        let admin = digest(ADMIN);
        for _ in 0..5 {
            assert_eq!(t.locked(&admin, ip(0, 1), c.now_secs()), None);
            t.reserve(&admin, ip(0, 1), c.now_secs()).unwrap();
            c.advance(Duration::from_secs(10));
        }
        // The oldest failure was 50 s ago; it ages out after 900.
        assert_eq!(t.reserve(&admin, ip(0, 1), c.now_secs()), Err(850));
        assert_eq!(t.locked(&admin, ip(0, 1), c.now_secs()), Some(850));
        // A refused attempt records nothing: the wait does not grow.
        c.advance(Duration::from_secs(849));
        assert_eq!(t.reserve(&admin, ip(0, 1), c.now_secs()), Err(1));
        c.advance(Duration::from_secs(1));
        t.reserve(&admin, ip(0, 1), c.now_secs()).unwrap();
    }

    #[test]
    fn lockout_is_per_email_and_client() {
        let (t, c) = (table(100), clock());
        let admin = digest(ADMIN);
        for _ in 0..5 {
            t.reserve(&admin, ip(0, 1), c.now_secs()).unwrap();
        }
        assert!(t.reserve(&admin, ip(0, 1), c.now_secs()).is_err());
        // The same email from elsewhere, another email from the same client.
        t.reserve(&admin, ip(0, 2), c.now_secs()).unwrap();
        t.reserve(&admin, Client::Unknown, c.now_secs()).unwrap();
        t.reserve(&digest("x@y"), ip(0, 1), c.now_secs()).unwrap();
    }

    #[test]
    fn one_client_rotating_emails_is_bounded_per_client() {
        let (t, c) = (table(1000), clock());
        for i in 0..20 {
            t.reserve(&digest(&format!("u{i}@y")), ip(0, 1), c.now_secs())
                .unwrap();
        }
        assert_eq!(
            t.reserve(&digest("u99@y"), ip(0, 1), c.now_secs()),
            Err(900)
        );
        // 20 pairs and one client key: what one address can make per window.
        assert_eq!(t.len(), 21);
    }

    #[test]
    fn clear_forgets_the_pair_and_the_client() {
        let (t, c) = (table(100), clock());
        let admin = digest(ADMIN);
        for _ in 0..5 {
            t.reserve(&admin, ip(0, 1), c.now_secs()).unwrap();
        }
        t.reserve(&admin, ip(0, 2), c.now_secs()).unwrap();
        t.clear(&admin, ip(0, 1));
        assert_eq!(t.locked(&admin, ip(0, 1), c.now_secs()), None);
        assert!(t.tracks(ADMIN, ip(0, 2)), "another client's count stays");
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_limit() {
        let (t, c) = (Arc::new(table(100)), clock());
        let admin = digest(ADMIN);
        let now = c.now_secs();
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || {
                    (0..10)
                        .filter(|_| t.reserve(&admin, ip(0, 1), now).is_ok())
                        .count()
                })
            })
            .collect();
        let ok: usize = threads.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(ok, 5);
    }

    #[test]
    fn aged_out_entries_are_dropped_when_read() {
        let (t, c) = (table(100), clock());
        t.reserve(&digest(ADMIN), ip(0, 1), c.now_secs()).unwrap();
        assert_eq!(t.len(), 2);
        c.advance(Duration::from_secs(900));
        assert_eq!(t.locked(&digest(ADMIN), ip(0, 1), c.now_secs()), None);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn full_table_evicts_idle_entries_first() {
        let (t, c) = (table(32), clock());
        // 15 idle pairs (and their clients) from long ago...
        for i in 0..15 {
            t.reserve(&digest("old@y"), ip(1, i), c.now_secs()).unwrap();
        }
        c.advance(Duration::from_secs(1000));
        // ...and one locked pair now.
        for _ in 0..5 {
            t.reserve(&digest(ADMIN), ip(0, 1), c.now_secs()).unwrap();
        }
        assert_eq!(t.len(), 32);
        t.reserve(&digest("new@y"), ip(2, 1), c.now_secs()).unwrap();
        assert!(t.len() <= 32);
        assert!(t.tracks("new@y", ip(2, 1)));
        assert!(!t.tracks("old@y", ip(1, 0)));
        // The locked pair was live: it stays locked.
        assert!(t.locked(&digest(ADMIN), ip(0, 1), c.now_secs()).is_some());
    }

    #[test]
    fn full_table_evicts_the_oldest_live_entries_never_refuses_a_fresh_client() {
        let (t, c) = (table(64), clock());
        // The admin's own pair holds a failure from the start.
        t.reserve(&digest(ADMIN), ip(0, 1), c.now_secs()).unwrap();
        // An attacker floods from many addresses, all failures live.
        for i in 0..=255u8 {
            c.advance(Duration::from_secs(1));
            t.reserve(&digest(ADMIN), ip(9, i), c.now_secs()).unwrap();
            assert!(t.len() <= 64, "{}", t.len());
        }
        // The newest attacker entries survive; the oldest went first.
        assert!(t.tracks(ADMIN, ip(9, 255)));
        assert!(!t.tracks(ADMIN, ip(9, 0)));
        // The admin, from a fresh address, is tracked and not locked out.
        assert_eq!(t.locked(&digest(ADMIN), ip(0, 2), c.now_secs()), None);
        t.reserve(&digest(ADMIN), ip(0, 2), c.now_secs()).unwrap();
        assert!(t.tracks(ADMIN, ip(0, 2)));
        assert!(t.len() <= 64);
    }

    #[test]
    fn eviction_never_drops_the_keys_being_counted() {
        let (t, c) = (table(2), clock());
        for _ in 0..4 {
            t.reserve(&digest(ADMIN), ip(0, 1), c.now_secs()).unwrap();
        }
        t.reserve(&digest("other@y"), ip(0, 1), c.now_secs())
            .unwrap();
        // The client key (5 failures) was kept; the admin pair was evicted
        // to make room for the new pair.
        assert_eq!(t.len(), 2);
        assert!(t.tracks("other@y", ip(0, 1)));
        assert_eq!(
            t.reserve(&digest("third@y"), ip(0, 1), c.now_secs()),
            Ok(())
        );
    }

    #[test]
    fn ipv6_by_slash_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1).into();
        let b: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 9, 9, 9, 9).into();
        let c: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1).into();
        assert_eq!(Client::of(Some(a)), Client::of(Some(b)));
        assert_ne!(Client::of(Some(a)), Client::of(Some(c)));
        let mapped: IpAddr = Ipv4Addr::new(198, 51, 0, 1).to_ipv6_mapped().into();
        assert_eq!(Client::of(Some(mapped)), ip(0, 1));
        assert_eq!(Client::of(None), Client::Unknown);
    }
}
