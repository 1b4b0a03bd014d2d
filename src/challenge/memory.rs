//! The in-memory challenge store on DashMap.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use subtle::ConstantTimeEq;

use super::{address_key, ChallengeStore};
use crate::clock::{SharedClock, SystemClock};
use crate::StoreError;

#[derive(Clone, Copy)]
struct Entry {
    nonce: [u8; 32],
    expires_at_ms: u64,
}

/// Challenges in memory: one per address, keyed by the SHA-256 of the address
/// (so 72 bytes of key and value per challenge whatever the address length),
/// bounded by a cap. Expired entries are removed by
/// [`purge_expired`](ChallengeStore::purge_expired), which
/// [`crate::WalletAuth`] runs from a background task.
pub struct MemoryChallengeStore {
    map: DashMap<[u8; 32], Entry>,
    cap: usize,
    clock: SharedClock,
}

impl std::fmt::Debug for MemoryChallengeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryChallengeStore")
            .field("len", &self.map.len())
            .field("cap", &self.cap)
            .finish()
    }
}

impl MemoryChallengeStore {
    /// A store holding at most `cap` outstanding challenges.
    pub fn new(cap: usize) -> Self {
        Self::with_clock(cap, Arc::new(SystemClock))
    }

    /// A store reading time from `clock`.
    pub fn with_clock(cap: usize, clock: SharedClock) -> Self {
        Self {
            map: DashMap::new(),
            cap,
            clock,
        }
    }

    /// Outstanding challenges, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no challenge is outstanding.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[async_trait]
impl ChallengeStore for MemoryChallengeStore {
    async fn issue(&self, address: &str, ttl: Duration) -> Result<String, StoreError> {
        let key = address_key(address);
        let mut nonce = [0u8; 32];
        getrandom::fill(&mut nonce)
            .map_err(|e| StoreError::Unavailable(format!("random source: {e}")))?;
        let expires_at_ms = self
            .clock
            .now_millis()
            .saturating_add(ttl.as_millis() as u64);
        // The cap is checked before inserting a new key; replacing an
        // address's challenge never counts against it.
        if self.map.len() >= self.cap && !self.map.contains_key(&key) {
            return Err(StoreError::Full {
                retry_after_secs: ttl.as_secs().max(1),
            });
        }
        self.map.insert(
            key,
            Entry {
                nonce,
                expires_at_ms,
            },
        );
        Ok(crate::hexcodec::encode(&nonce))
    }

    async fn consume(&self, address: &str, nonce: &str) -> Result<bool, StoreError> {
        // `remove` is the atomic step: of concurrent callers only one gets it.
        let Some((_, entry)) = self.map.remove(&address_key(address)) else {
            return Ok(false);
        };
        if self.clock.now_millis() >= entry.expires_at_ms {
            return Ok(false);
        }
        let mut given = [0u8; 32];
        if nonce.len() != 64 || !crate::hexcodec::decode_to_slice(nonce, &mut given) {
            return Ok(false);
        }
        // Only lowercase hex was issued; refuse other spellings of the bytes.
        if nonce.bytes().any(|b| b.is_ascii_uppercase()) {
            return Ok(false);
        }
        Ok(bool::from(entry.nonce.ct_eq(&given)))
    }

    async fn purge_expired(&self) -> Result<usize, StoreError> {
        let now = self.clock.now_millis();
        let before = self.map.len();
        self.map.retain(|_, e| e.expires_at_ms > now);
        Ok(before.saturating_sub(self.map.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[tokio::test]
    async fn replace_consume_once_expire_cap() {
        let clock = ManualClock::new(1_000_000);
        let store = MemoryChallengeStore::with_clock(2, Arc::new(clock.clone()));
        let ttl = Duration::from_secs(60);
        let a1 = store.issue("a", ttl).await.unwrap();
        let a2 = store.issue("a", ttl).await.unwrap();
        assert_ne!(a1, a2);
        assert_eq!(a2.len(), 64);
        assert!(
            !store.consume("a", &a1).await.unwrap(),
            "replaced challenge must not work"
        );
        // The failed attempt burned a2 too.
        assert!(!store.consume("a", &a2).await.unwrap());
        let b = store.issue("b", ttl).await.unwrap();
        assert!(store.consume("b", &b).await.unwrap());
        assert!(!store.consume("b", &b).await.unwrap());

        store.issue("c", ttl).await.unwrap();
        store.issue("d", ttl).await.unwrap();
        assert!(matches!(
            store.issue("e", ttl).await,
            Err(StoreError::Full { .. })
        ));
        // Replacing an existing address is fine at the cap.
        let d = store.issue("d", ttl).await.unwrap();
        assert_eq!(d.to_uppercase().len(), 64);
        assert!(!store.consume("d", &d.to_uppercase()).await.unwrap());

        let c = store.issue("c", ttl).await.unwrap();
        clock.advance(Duration::from_secs(61));
        assert!(!store.consume("c", &c).await.unwrap(), "expired");
        store.issue("x", Duration::from_secs(1)).await.unwrap();
        store.issue("y", Duration::from_secs(60)).await.unwrap();
        clock.advance(Duration::from_secs(2));
        assert_eq!(store.purge_expired().await.unwrap(), 1);
        assert_eq!(store.len(), 1);
        clock.advance(Duration::from_secs(60));
        assert_eq!(store.purge_expired().await.unwrap(), 1);
        assert!(store.is_empty());
    }
}
