//! The Bearer gates' memory of tokens they have already verified.
//!
//! A consumer polls `/revoked-jtis` (or holds a stream) with the same
//! service token for its whole life, so verifying its signature on every
//! poll (RS256: tens of µs; ML-DSA-65: hundreds) would be most of a `304`
//! poll's cost. A token that passed the full check is remembered, with its
//! claims, until the sooner of its `exp` and [`REMEMBER_SECS`] from the
//! check; the denylist and the role are still checked on every request.
//!
//! An entry keeps the token's exact bytes and is found by a seeded XXH3 of
//! them, then compared in full in constant time: a lookup reads the token
//! about twice, where a SHA-256 key cost a few percent of a `304` poll.
//! Only tokens that verified are stored, so an anonymous client cannot
//! grow the map without tokens of ours, and it is bounded besides: at most
//! [`MAX_ENTRIES`] tokens and [`MAX_BYTES`] of them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::mapref::entry::Entry as Slot;
use dashmap::DashMap;

use crate::token::AccessClaims;

/// Longest time a verified token is trusted without verifying it again, in
/// seconds: how long a key removed in an emergency can still be honoured
/// for a token already seen.
pub(crate) const REMEMBER_SECS: u64 = 60;

/// Most tokens remembered at once.
pub(crate) const MAX_ENTRIES: usize = 10_000;

/// Most token bytes remembered at once (about 3,000 ML-DSA-65 tokens, or
/// all [`MAX_ENTRIES`] RS256 ones).
pub(crate) const MAX_BYTES: usize = 16 << 20;

struct Entry {
    token: Box<[u8]>,
    claims: Arc<AccessClaims>,
    /// Passed the check for the router's default audience, not only for one
    /// of its `audiences`.
    default_audience: bool,
    /// Epoch second from which the entry is no longer used.
    until: u64,
}

/// Verified tokens by a seeded hash of their bytes.
pub(crate) struct VerifiedTokens {
    map: DashMap<u64, Entry>,
    /// The sum of the remembered tokens' lengths (approximate while
    /// inserts race; recounted whenever the bound is reached).
    bytes: AtomicUsize,
    /// Drawn once per process, so which tokens share a bucket cannot be
    /// chosen from outside.
    seed: u64,
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        let mut seed = [0u8; 8];
        // Without the OS source the map still works: the seed only spreads
        // buckets, the full comparison decides.
        let _ = getrandom::fill(&mut seed);
        Self {
            map: DashMap::new(),
            bytes: AtomicUsize::new(0),
            seed: u64::from_ne_bytes(seed),
        }
    }
}

/// Whether `a` and `b` are the same bytes, in time that depends on their
/// lengths only (a token's length is no secret: its shape shows it).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a8, a_tail) = a.as_chunks::<8>();
    let (b8, b_tail) = b.as_chunks::<8>();
    let mut diff = a8.iter().zip(b8).fold(0u64, |acc, (x, y)| {
        acc | (u64::from_ne_bytes(*x) ^ u64::from_ne_bytes(*y))
    });
    for (x, y) in a_tail.iter().zip(b_tail) {
        diff |= u64::from(x ^ y);
    }
    subtle::ConstantTimeEq::ct_eq(&diff, &0).into()
}

impl VerifiedTokens {
    fn key(&self, token: &str) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(token.as_bytes(), self.seed)
    }

    /// The claims of `token` if it verified less than [`REMEMBER_SECS`] ago,
    /// has not expired at `now`, and passed for the default audience when
    /// `any_audience` is false.
    pub(crate) fn get(
        &self,
        token: &str,
        any_audience: bool,
        now: u64,
    ) -> Option<Arc<AccessClaims>> {
        let entry = self.map.get(&self.key(token))?;
        if !same_bytes(&entry.token, token.as_bytes())
            || entry.until <= now
            || !(any_audience || entry.default_audience)
        {
            return None;
        }
        Some(Arc::clone(&entry.claims))
    }

    /// Remembers a token that passed the full check at `now`.
    pub(crate) fn insert(
        &self,
        token: &str,
        claims: &Arc<AccessClaims>,
        any_audience: bool,
        now: u64,
    ) {
        let len = token.len();
        if len > MAX_BYTES {
            return;
        }
        if self.map.len() >= MAX_ENTRIES
            || self.bytes.load(Ordering::Relaxed).saturating_add(len) > MAX_BYTES
        {
            self.map.retain(|_, e| e.until > now);
            if self.map.len() >= MAX_ENTRIES || self.count_bytes().saturating_add(len) > MAX_BYTES {
                self.map.clear();
            }
            self.bytes.store(self.count_bytes(), Ordering::Relaxed);
        }
        let until = claims.exp.min(now.saturating_add(REMEMBER_SECS));
        let default_audience = !any_audience;
        let fresh = Entry {
            token: token.as_bytes().into(),
            claims: Arc::clone(claims),
            default_audience,
            until,
        };
        match self.map.entry(self.key(token)) {
            Slot::Occupied(mut slot) => {
                let e = slot.get_mut();
                if same_bytes(&e.token, token.as_bytes()) {
                    e.default_audience |= default_audience;
                    e.until = e.until.max(until);
                } else {
                    // Another token with the same hash: the newer one wins.
                    let old = std::mem::replace(e, fresh);
                    self.bytes.fetch_sub(old.token.len(), Ordering::Relaxed);
                    self.bytes.fetch_add(len, Ordering::Relaxed);
                }
            }
            Slot::Vacant(slot) => {
                slot.insert(fresh);
                self.bytes.fetch_add(len, Ordering::Relaxed);
            }
        }
    }

    fn count_bytes(&self) -> usize {
        self.map.iter().map(|e| e.token.len()).sum()
    }

    /// How many tokens are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Arc<AccessClaims> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "iss": "i", "aud": "a", "sub": "s", "iat": 0, "exp": exp,
                "jti": "0123456789abcdef0123456789abcdef", "role": "service",
            }))
            .unwrap(),
        )
    }

    #[test]
    fn remembers_until_the_sooner_of_exp_and_the_window() {
        let v = VerifiedTokens::default();
        v.insert("t1", &claims(1_000), false, 100);
        assert!(v.get("t1", false, 159).is_some());
        assert!(
            v.get("t1", false, 160).is_none(),
            "{REMEMBER_SECS} s after the check"
        );
        v.insert("t2", &claims(120), false, 100);
        assert!(v.get("t2", false, 119).is_some());
        assert!(v.get("t2", false, 120).is_none(), "expired");
        assert!(v.get("t3", true, 100).is_none(), "never verified");
    }

    #[test]
    fn another_audience_does_not_pass_for_the_default_one() {
        let v = VerifiedTokens::default();
        v.insert("t", &claims(1_000), true, 100);
        assert!(v.get("t", true, 100).is_some());
        assert!(v.get("t", false, 100).is_none());
        v.insert("t", &claims(1_000), false, 101);
        assert!(v.get("t", false, 101).is_some());
    }

    #[test]
    fn stays_bounded_in_entries() {
        let v = VerifiedTokens::default();
        for i in 0..(MAX_ENTRIES + 5) {
            v.insert(&format!("token-{i}"), &claims(1_000), false, 100);
        }
        assert!(v.len() <= MAX_ENTRIES, "{}", v.len());
        assert!(v
            .get(&format!("token-{}", MAX_ENTRIES + 4), false, 100)
            .is_some());
    }

    #[test]
    fn stays_bounded_in_bytes() {
        let v = VerifiedTokens::default();
        let big = |i: usize| format!("{i:08}{}", "x".repeat(1 << 20));
        for i in 0..40 {
            v.insert(&big(i), &claims(1_000), false, 100);
            assert!(v.bytes.load(Ordering::Relaxed) <= MAX_BYTES);
        }
        assert!(v.count_bytes() <= MAX_BYTES, "{}", v.count_bytes());
        assert!(v.get(&big(39), false, 100).is_some(), "the newest is kept");
        let huge = "y".repeat(MAX_BYTES + 1);
        v.insert(&huge, &claims(1_000), false, 100);
        assert!(v.get(&huge, false, 100).is_none(), "larger than the budget");
    }

    #[test]
    fn a_token_sharing_a_bucket_is_not_taken_for_another() {
        let v = VerifiedTokens::default();
        let (a, b) = ("token-a", "token-b");
        v.insert(a, &claims(1_000), false, 100);
        // Force b into a's bucket: only the full comparison tells them apart.
        let entry_key = v.key(a);
        let stored = v.map.remove(&entry_key).unwrap().1;
        v.map.insert(v.key(b), stored);
        assert!(v.get(b, false, 100).is_none());
        // And b's own insert replaces the entry rather than merging into it.
        v.insert(b, &claims(2_000), false, 100);
        assert_eq!(v.get(b, false, 100).unwrap().exp, 2_000);
        assert_eq!(v.count_bytes(), b.len());
    }

    #[test]
    fn same_bytes_compares_every_byte() {
        assert!(same_bytes(b"", b""));
        assert!(same_bytes(b"0123456789abcdefXYZ", b"0123456789abcdefXYZ"));
        assert!(!same_bytes(b"0123456789abcdefXYZ", b"0123456789abcdefXYz"));
        assert!(!same_bytes(b"0123456789abcdefXYZ", b"1123456789abcdefXYZ"));
        assert!(!same_bytes(b"0123456789", b"0123456789a"));
    }
}
