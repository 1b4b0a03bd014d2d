//! The Bearer gates' memory of tokens they have already verified.
//!
//! A consumer polls `/revoked-jtis` (or holds a stream) with the same
//! service token for its whole life, so verifying its signature on every
//! poll (RS256: tens of µs; ML-DSA-65: hundreds) would be most of a `304`
//! poll's cost. A token that passed the full check is remembered by the
//! SHA-256 of its exact bytes, with its claims, until the sooner of its
//! `exp` and [`REMEMBER_SECS`] from the check; the denylist and the role are
//! still checked on every request. Only tokens that verified are stored, so
//! an anonymous client cannot grow the map, and it is bounded
//! ([`MAX_ENTRIES`]) besides.

use dashmap::DashMap;
use sha2::{Digest, Sha256};

use crate::token::AccessClaims;

/// Longest time a verified token is trusted without verifying it again, in
/// seconds: how long a key removed in an emergency can still be honoured
/// for a token already seen.
pub(crate) const REMEMBER_SECS: u64 = 60;

/// Most tokens remembered at once.
pub(crate) const MAX_ENTRIES: usize = 10_000;

struct Entry {
    claims: AccessClaims,
    /// Passed the check for the router's default audience, not only for one
    /// of its `audiences`.
    default_audience: bool,
    /// Epoch second from which the entry is no longer used.
    until: u64,
}

/// Verified tokens by the SHA-256 of their bytes.
#[derive(Default)]
pub(crate) struct VerifiedTokens {
    map: DashMap<[u8; 32], Entry>,
}

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl VerifiedTokens {
    /// The claims of `token` if it verified less than [`REMEMBER_SECS`] ago,
    /// has not expired at `now`, and passed for the default audience when
    /// `any_audience` is false.
    pub(crate) fn get(&self, token: &str, any_audience: bool, now: u64) -> Option<AccessClaims> {
        let entry = self.map.get(&key(token))?;
        if entry.until <= now || !(any_audience || entry.default_audience) {
            return None;
        }
        Some(entry.claims.clone())
    }

    /// Remembers a token that passed the full check at `now`.
    pub(crate) fn insert(&self, token: &str, claims: &AccessClaims, any_audience: bool, now: u64) {
        if self.map.len() >= MAX_ENTRIES {
            self.map.retain(|_, e| e.until > now);
            if self.map.len() >= MAX_ENTRIES {
                self.map.clear();
            }
        }
        let until = claims.exp.min(now.saturating_add(REMEMBER_SECS));
        let default_audience = !any_audience;
        self.map
            .entry(key(token))
            .and_modify(|e| {
                e.default_audience |= default_audience;
                e.until = e.until.max(until);
            })
            .or_insert_with(|| Entry {
                claims: claims.clone(),
                default_audience,
                until,
            });
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

    fn claims(exp: u64) -> AccessClaims {
        serde_json::from_value(serde_json::json!({
            "iss": "i", "aud": "a", "sub": "s", "iat": 0, "exp": exp,
            "jti": "0123456789abcdef0123456789abcdef", "role": "service",
        }))
        .unwrap()
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
    fn stays_bounded() {
        let v = VerifiedTokens::default();
        for i in 0..(MAX_ENTRIES + 5) {
            v.insert(&format!("token-{i}"), &claims(1_000), false, 100);
        }
        assert!(v.len() <= MAX_ENTRIES, "{}", v.len());
        assert!(v
            .get(&format!("token-{}", MAX_ENTRIES + 4), false, 100)
            .is_some());
    }
}
