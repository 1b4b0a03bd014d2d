//! The in-memory challenge store on DashMap.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;

use super::{challenge_key, parse_nonce, ChallengeMeta, ChallengeStore};
use crate::clock::{SharedClock, SystemClock};
use crate::StoreError;

/// Challenges in memory, any number per address: one entry per challenge,
/// keyed by [`challenge_key`] (SHA-256 of the address and the nonce) with its
/// expiry and its [`ChallengeMeta`] as the value, so 64 bytes of key and
/// value per challenge whatever the address length, and no nonce (nor
/// message) kept at all. Bounded by a cap on the
/// number of outstanding challenges. Expired entries are removed by
/// [`purge_expired`](ChallengeStore::purge_expired), which
/// [`crate::WalletAuth`] runs from a background task.
///
/// A consume looks up the key of (address, presented nonce): a nonce that
/// was not issued to the address finds nothing and removes nothing.
pub struct MemoryChallengeStore {
    /// challenge key -> (expiry in milliseconds since the epoch, meta).
    map: DashMap<[u8; 32], (u64, ChallengeMeta), DigestHash>,
    /// Entries in `map`, kept beside it so the cap check on `issue` reads
    /// one atomic instead of locking every shard for `DashMap::len`.
    count: AtomicUsize,
    cap: usize,
    clock: SharedClock,
}

impl std::fmt::Debug for MemoryChallengeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryChallengeStore")
            .field("len", &self.len())
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
            map: DashMap::with_hasher(DigestHash),
            count: AtomicUsize::new(0),
            cap,
            clock,
        }
    }

    /// Outstanding challenges, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether no challenge is outstanding.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Hashes a challenge key by its leading bytes. The key is already a
/// SHA-256 digest, and every key in the map covers a nonce the server drew
/// at random, so no client can choose where an entry lands: SipHash's
/// flood resistance buys nothing here, and a lookup with a chosen key still
/// only probes one bucket of random entries.
#[derive(Debug, Clone, Copy, Default)]
struct DigestHash;

impl BuildHasher for DigestHash {
    type Hasher = DigestHasher;

    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

#[derive(Debug, Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // An array hashes as its length, then its bytes: fold in the first
        // eight bytes of each write (a digest's are as good as any).
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = (self.0 ^ u64::from_le_bytes(word)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[async_trait]
impl ChallengeStore for MemoryChallengeStore {
    async fn issue_with(
        &self,
        address: &str,
        ttl: Duration,
        meta: ChallengeMeta,
    ) -> Result<String, StoreError> {
        // Take a slot first: of concurrent issuers at the cap, none overshoots.
        if self.count.fetch_add(1, Ordering::AcqRel) >= self.cap {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return Err(StoreError::Full {
                retry_after_secs: ttl.as_secs().max(1),
            });
        }
        let mut nonce = [0u8; 32];
        if let Err(e) = getrandom::fill(&mut nonce) {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return Err(StoreError::Unavailable(format!("random source: {e}")));
        }
        let expires_at_ms = self
            .clock
            .now_millis()
            .saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        // A fresh 256-bit nonce never meets an existing key; if it ever did,
        // the slot taken above would be counted twice, so give it back.
        if self
            .map
            .insert(challenge_key(address, &nonce), (expires_at_ms, meta))
            .is_some()
        {
            self.count.fetch_sub(1, Ordering::AcqRel);
        }
        Ok(crate::hexcodec::encode(&nonce))
    }

    async fn take(&self, address: &str, nonce: &str) -> Result<Option<ChallengeMeta>, StoreError> {
        // Only 64 lowercase hex characters were ever issued.
        let Some(nonce) = parse_nonce(nonce) else {
            return Ok(None);
        };
        // `remove` is the atomic step: of concurrent callers only one gets
        // the entry. An expired one goes too (it was dead anyway).
        let Some((_, (expires_at_ms, meta))) = self.map.remove(&challenge_key(address, &nonce))
        else {
            return Ok(None);
        };
        self.count.fetch_sub(1, Ordering::AcqRel);
        Ok((self.clock.now_millis() < expires_at_ms).then_some(meta))
    }

    async fn purge_expired(&self) -> Result<usize, StoreError> {
        let now = self.clock.now_millis();
        let mut purged = 0usize;
        self.map.retain(|_, (expires_at_ms, _)| {
            let keep = *expires_at_ms > now;
            purged += usize::from(!keep);
            keep
        });
        self.count.fetch_sub(purged, Ordering::AcqRel);
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn digest_hash_spreads_keys_and_sees_only_their_bytes() {
        let hash = |key: &[u8; 32]| DigestHash.hash_one(key);
        let a = challenge_key("a", &[1; 32]);
        let b = challenge_key("a", &[2; 32]);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        // Uniform digests land in all of 64 buckets after 4,096 keys.
        let mut seen = [false; 64];
        for i in 0u32..4096 {
            let mut nonce = [0u8; 32];
            nonce[..4].copy_from_slice(&i.to_le_bytes());
            seen[(hash(&challenge_key("x", &nonce)) >> 58) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[tokio::test]
    async fn several_per_address_each_once_wrong_nonce_burns_nothing() {
        let store = MemoryChallengeStore::new(100);
        let a1 = store.issue("a", TTL).await.unwrap();
        let a2 = store.issue("a", TTL).await.unwrap();
        assert_ne!(a1, a2);
        assert_eq!(a2.len(), 64);
        assert_eq!(store.len(), 2);
        for wrong in [
            String::new(),
            "zz".into(),
            "0".repeat(64),
            a1.to_uppercase(),
            format!("{a1}0"),
        ] {
            assert!(!store.consume("a", &wrong).await.unwrap(), "{wrong:?}");
        }
        // Another address's nonce, and the right nonce at another address.
        let b = store.issue("b", TTL).await.unwrap();
        assert!(!store.consume("a", &b).await.unwrap());
        assert!(!store.consume("b", &a1).await.unwrap());
        assert_eq!(store.len(), 3, "nothing burned");
        assert!(store.consume("a", &a2).await.unwrap());
        assert!(store.consume("a", &a1).await.unwrap());
        assert!(!store.consume("a", &a1).await.unwrap());
        assert!(store.consume("b", &b).await.unwrap());
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn the_meta_comes_back_once_and_not_after_expiry() {
        let clock = ManualClock::new(1_000_000);
        let store = MemoryChallengeStore::with_clock(10, Arc::new(clock.clone()));
        let meta = ChallengeMeta::new(crate::message::Layout::Solana, 1_000, 60, 0);
        let n = store.issue_with("s", TTL, meta).await.unwrap();
        assert_eq!(store.take("t", &n).await.unwrap(), None, "another address");
        assert_eq!(store.take("s", &n).await.unwrap(), Some(meta));
        assert_eq!(store.take("s", &n).await.unwrap(), None);
        let bare = store.issue("s", TTL).await.unwrap();
        assert_eq!(
            store.take("s", &bare).await.unwrap(),
            Some(ChallengeMeta::default())
        );
        let late = store.issue_with("s", TTL, meta).await.unwrap();
        clock.advance(TTL);
        assert_eq!(store.take("s", &late).await.unwrap(), None);
    }

    #[tokio::test]
    async fn cap_counts_challenges_and_frees_on_consume_and_purge() {
        let clock = ManualClock::new(1_000_000);
        let store = MemoryChallengeStore::with_clock(2, Arc::new(clock.clone()));
        let c = store.issue("c", TTL).await.unwrap();
        store.issue("c", Duration::from_secs(1)).await.unwrap();
        // Full: the same address gets no more than any other.
        for addr in ["c", "d"] {
            assert!(matches!(
                store.issue(addr, TTL).await,
                Err(StoreError::Full {
                    retry_after_secs: 60
                })
            ));
        }
        assert_eq!(store.len(), 2, "a refused issue takes no slot");
        assert!(store.consume("c", &c).await.unwrap());
        let d = store.issue("d", TTL).await.unwrap();
        clock.advance(Duration::from_secs(2));
        assert_eq!(store.purge_expired().await.unwrap(), 1);
        assert_eq!(store.len(), 1);
        clock.advance(Duration::from_secs(58));
        assert!(!store.consume("d", &d).await.unwrap(), "expired at its ttl");
        assert!(store.is_empty(), "an expired consume removes it too");
        store.issue("x", TTL).await.unwrap();
        store.issue("y", TTL).await.unwrap();
        clock.advance(TTL);
        assert_eq!(store.purge_expired().await.unwrap(), 2);
        assert!(store.is_empty());
        assert_eq!(store.purge_expired().await.unwrap(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_issues_never_pass_the_cap() {
        let store = Arc::new(MemoryChallengeStore::new(50));
        let mut set = tokio::task::JoinSet::new();
        for i in 0..200 {
            let store = Arc::clone(&store);
            set.spawn(async move { store.issue(&format!("w{}", i % 7), TTL).await.is_ok() });
        }
        let ok = set.join_all().await.into_iter().filter(|&ok| ok).count();
        assert_eq!(ok, 50);
        assert_eq!(store.len(), 50);
        assert_eq!(store.map.len(), 50);
    }

    /// Memory of 1,000,000 outstanding challenges: VmRSS before and after
    /// filling the store with an ML-DSA-65-length address. Run alone, so
    /// nothing else allocates meanwhile:
    /// `cargo test --lib challenge::memory -- --ignored --nocapture`.
    #[tokio::test]
    #[ignore = "measurement; prints the figure"]
    async fn memory_of_a_million_challenges() {
        fn vm_rss_kib() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        }
        const N: usize = 1_000_000;
        let before = vm_rss_kib();
        let store = MemoryChallengeStore::new(N);
        // An ML-DSA-65 wallet id: the address length costs nothing.
        let address = "ab".repeat(1952);
        for _ in 0..N {
            store.issue(&address, TTL).await.unwrap();
        }
        let after = vm_rss_kib();
        assert_eq!(store.len(), N);
        assert!(store.issue(&address, TTL).await.is_err(), "cap holds");
        let mib = (after - before) as f64 / 1024.0;
        println!(
            "1,000,000 outstanding challenges: VmRSS {before} KiB -> {after} KiB, \
             +{mib:.1} MiB ({:.0} bytes per challenge)",
            (after - before) as f64 * 1024.0 / N as f64
        );
        assert!(mib < 256.0, "{mib} MiB");
    }
}
