//! One-time sign-in challenges: the pluggable [`ChallengeStore`] and its
//! in-memory default.

mod memory;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

pub use self::memory::MemoryChallengeStore;
use crate::message::Layout;
use crate::StoreError;

/// Where challenges live between `/challenge` and `/sign-in`.
///
/// # Contract
/// - [`issue_with`](ChallengeStore::issue_with) creates a fresh nonce (32
///   bytes from the OS CSPRNG as 64 lowercase hex characters, see
///   [`new_nonce`]) for an address, valid for `ttl`, and keeps the
///   [`ChallengeMeta`] beside it. It does **not** touch earlier challenges:
///   an address may have several outstanding at once, each usable once, so
///   a stranger who asks for challenges for someone else's address takes
///   nothing away from its owner (SPEC 1, 10). When the store is at
///   capacity it answers [`StoreError::Full`].
/// - [`take`](ChallengeStore::take) answers the challenge's meta only for a
///   nonce that was issued to that address and has not expired, and removes
///   that one challenge. It is **atomic**: among any number of concurrent
///   calls for one challenge, at most one answers `Some`. Never implement it
///   as a read followed by a delete. A nonce that was not issued to the
///   address (a guess, another address's nonce, another spelling) answers
///   `None` and leaves every challenge of the address as it was.
/// - The meta comes back exactly as it was given: the issued message is
///   rebuilt from it byte for byte (SPEC 4, 9). It is 21 bytes
///   ([`ChallengeMeta::to_bytes`]); a store keeps it as it is.
/// - Expiry is the store's job; the request path never scans the store.
/// - A challenge should cost no more than a digest of (address, nonce)
///   ([`challenge_key`]), its expiry and its meta, whatever the address's
///   length.
///
/// [`issue`](ChallengeStore::issue) and [`consume`](ChallengeStore::consume)
/// are the same without the meta, for callers that need no message.
///
/// # Example: a custom store
/// ```
/// use std::{collections::HashMap, sync::Mutex, time::{Duration, Instant}};
/// use async_trait::async_trait;
/// use wallet_auth::{ChallengeMeta, ChallengeStore, StoreError, challenge::{challenge_key, parse_nonce}};
///
/// #[derive(Default)]
/// struct MutexStore(Mutex<HashMap<[u8; 32], (Instant, ChallengeMeta)>>);
///
/// #[async_trait]
/// impl ChallengeStore for MutexStore {
///     async fn issue_with(
///         &self,
///         address: &str,
///         ttl: Duration,
///         meta: ChallengeMeta,
///     ) -> Result<String, StoreError> {
///         let mut nonce = [0u8; 32];
///         getrandom::fill(&mut nonce).map_err(|e| StoreError::Unavailable(e.to_string()))?;
///         let mut map = self.0.lock().map_err(|_| StoreError::Unavailable("poisoned".into()))?;
///         // One entry per challenge: earlier ones for `address` stay.
///         map.insert(challenge_key(address, &nonce), (Instant::now() + ttl, meta));
///         Ok(hex::encode(nonce))
///     }
///     async fn take(&self, address: &str, nonce: &str) -> Result<Option<ChallengeMeta>, StoreError> {
///         // A nonce we could not have issued matches nothing and burns nothing.
///         let Some(nonce) = parse_nonce(nonce) else { return Ok(None) };
///         let mut map = self.0.lock().map_err(|_| StoreError::Unavailable("poisoned".into()))?;
///         // remove() is the atomic step: only one caller gets the entry.
///         Ok(map
///             .remove(&challenge_key(address, &nonce))
///             .filter(|(expires, _)| Instant::now() < *expires)
///             .map(|(_, meta)| meta))
///     }
/// }
/// # let store = MutexStore::default();
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let first = store.issue("alice", Duration::from_secs(60)).await.unwrap();
/// let second = store.issue("alice", Duration::from_secs(60)).await.unwrap();
/// assert!(!store.consume("alice", &"0".repeat(64)).await.unwrap());
/// assert!(store.consume("alice", &first).await.unwrap());
/// assert!(!store.consume("alice", &first).await.unwrap());
/// assert!(store.consume("alice", &second).await.unwrap());
/// # });
/// ```
#[async_trait]
pub trait ChallengeStore: Send + Sync + 'static {
    /// Issues a new challenge for `address`, keeping `meta` with it;
    /// earlier ones stay valid.
    ///
    /// # Errors
    /// [`StoreError::Full`] at capacity; [`StoreError::Unavailable`] when the
    /// backend cannot be reached.
    async fn issue_with(
        &self,
        address: &str,
        ttl: Duration,
        meta: ChallengeMeta,
    ) -> Result<String, StoreError>;

    /// Takes the challenge `nonce` of `address`: its meta only if it was
    /// issued to `address`, has not expired and was not taken before; it is
    /// gone afterwards. Any other nonce answers `None` and changes nothing.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the backend cannot be reached.
    async fn take(&self, address: &str, nonce: &str) -> Result<Option<ChallengeMeta>, StoreError>;

    /// [`issue_with`](ChallengeStore::issue_with) with no message
    /// ([`ChallengeMeta::default`]).
    ///
    /// # Errors
    /// As [`issue_with`](ChallengeStore::issue_with).
    async fn issue(&self, address: &str, ttl: Duration) -> Result<String, StoreError> {
        self.issue_with(address, ttl, ChallengeMeta::default())
            .await
    }

    /// [`take`](ChallengeStore::take), answering only whether the challenge
    /// was there.
    ///
    /// # Errors
    /// As [`take`](ChallengeStore::take).
    async fn consume(&self, address: &str, nonce: &str) -> Result<bool, StoreError> {
        Ok(self.take(address, nonce).await?.is_some())
    }

    /// Removes expired challenges; returns how many. Called by a background
    /// task, never on the request path. Stores with native expiry keep the
    /// default.
    async fn purge_expired(&self) -> Result<usize, StoreError> {
        Ok(0)
    }

    /// Whether the store can serve now (`/health/ready`, SPEC 11). The
    /// default says yes; a store behind a file or a server checks it here,
    /// quickly (the caller gives up after [`READY_TIMEOUT`](crate::ops::READY_TIMEOUT)).
    ///
    /// # Errors
    /// What is wrong, shown by `/health/ready`.
    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl<T: ChallengeStore + ?Sized> ChallengeStore for Arc<T> {
    async fn issue_with(
        &self,
        address: &str,
        ttl: Duration,
        meta: ChallengeMeta,
    ) -> Result<String, StoreError> {
        (**self).issue_with(address, ttl, meta).await
    }
    async fn take(&self, address: &str, nonce: &str) -> Result<Option<ChallengeMeta>, StoreError> {
        (**self).take(address, nonce).await
    }
    async fn issue(&self, address: &str, ttl: Duration) -> Result<String, StoreError> {
        (**self).issue(address, ttl).await
    }
    async fn consume(&self, address: &str, nonce: &str) -> Result<bool, StoreError> {
        (**self).consume(address, nonce).await
    }
    async fn purge_expired(&self) -> Result<usize, StoreError> {
        (**self).purge_expired().await
    }
    async fn ready(&self) -> Result<(), StoreError> {
        (**self).ready().await
    }
}

/// What a challenge store keeps beside a challenge so that the message
/// issued with it (SPEC 9) can be rebuilt byte for byte: which text it was
/// (EIP-4361, Sign-In With Solana, or the layout naming a pico key), when it
/// was issued, for how long, and the Ethereum chain id. Opaque to stores:
/// keep it as it is, or as its 21 bytes ([`to_bytes`](Self::to_bytes)).
///
/// The default is a challenge issued with no message (a bare nonce, as
/// [`ChallengeStore::issue`] makes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChallengeMeta {
    layout: u8,
    ttl_secs: u32,
    issued_at: u64,
    chain_id: u64,
}

impl ChallengeMeta {
    /// Length of [`to_bytes`](Self::to_bytes).
    pub const ENCODED_LEN: usize = 21;

    pub(crate) fn new(layout: Layout, issued_at: u64, ttl_secs: u64, chain_id: u64) -> Self {
        Self {
            layout: layout.tag(),
            ttl_secs: u32::try_from(ttl_secs).unwrap_or(u32::MAX),
            issued_at,
            chain_id,
        }
    }

    /// The layout of the issued message; `None` when none was issued.
    pub(crate) fn layout(&self) -> Option<Layout> {
        Layout::from_tag(self.layout)
    }

    /// When the message was issued, epoch seconds.
    pub(crate) fn issued_at(&self) -> u64 {
        self.issued_at
    }

    /// The lifetime the message states, seconds.
    pub(crate) fn ttl_secs(&self) -> u32 {
        self.ttl_secs
    }

    /// When the message expires (its `Expiration Time`), epoch seconds.
    pub(crate) fn expires_at(&self) -> u64 {
        self.issued_at.saturating_add(u64::from(self.ttl_secs))
    }

    /// The EIP-155 chain id of an Ethereum message (0 otherwise).
    pub(crate) fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The 21-byte encoding: layout, ttl (4 bytes), issued-at and chain id
    /// (8 bytes each), big-endian.
    pub fn to_bytes(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[0] = self.layout;
        out[1..5].copy_from_slice(&self.ttl_secs.to_be_bytes());
        out[5..13].copy_from_slice(&self.issued_at.to_be_bytes());
        out[13..21].copy_from_slice(&self.chain_id.to_be_bytes());
        out
    }

    /// Decodes [`to_bytes`](Self::to_bytes); `None` for any other length.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; Self::ENCODED_LEN] = bytes.try_into().ok()?;
        let mut ttl = [0u8; 4];
        ttl.copy_from_slice(&bytes[1..5]);
        let mut issued = [0u8; 8];
        issued.copy_from_slice(&bytes[5..13]);
        let mut chain = [0u8; 8];
        chain.copy_from_slice(&bytes[13..21]);
        Some(Self {
            layout: bytes[0],
            ttl_secs: u32::from_be_bytes(ttl),
            issued_at: u64::from_be_bytes(issued),
            chain_id: u64::from_be_bytes(chain),
        })
    }
}

/// A fresh nonce: 32 bytes from the OS CSPRNG as 64 lowercase hex characters.
///
/// # Panics
/// Only if the operating system's random source fails, which leaves nothing
/// safe to do.
#[allow(clippy::expect_used)]
pub fn new_nonce() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("OS random source failed");
    crate::hexcodec::encode(&bytes)
}

/// SHA-256 of an address: a fixed-size stand-in for it, so a long address
/// never costs more memory than a digest. Challenges themselves are keyed by
/// [`challenge_key`].
pub fn address_key(address: &str) -> [u8; 32] {
    Sha256::digest(address.as_bytes()).into()
}

/// The fixed-size key of one challenge: SHA-256 of the address's length (8
/// bytes, big-endian), the address and the nonce's 32 bytes. The length
/// prefix keeps (address, nonce) pairs from running into each other; the
/// digest keeps a 3,904-character ML-DSA-65 address at 32 bytes and lets a
/// store keep no nonce at all, only this key.
pub fn challenge_key(address: &str, nonce: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((address.len() as u64).to_be_bytes());
    h.update(address.as_bytes());
    h.update(nonce);
    h.finalize().into()
}

/// The 32 bytes of a nonce as [`new_nonce`] spells it (64 lowercase hex
/// characters); `None` for anything else, which no store ever issued.
pub fn parse_nonce(nonce: &str) -> Option<[u8; 32]> {
    if nonce.len() != 64 || nonce.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; 32];
    crate::hexcodec::decode_to_slice(nonce, &mut out).then_some(out)
}

/// Constant-time comparison of two nonces.
pub fn nonce_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_its_bytes() {
        let meta = ChallengeMeta::new(Layout::Ethereum, 1_700_000_000, 60, 8453);
        let bytes = meta.to_bytes();
        assert_eq!(ChallengeMeta::from_bytes(&bytes), Some(meta));
        assert_eq!(meta.layout(), Some(Layout::Ethereum));
        assert_eq!(meta.expires_at(), 1_700_000_060);
        assert_eq!(ChallengeMeta::from_bytes(&bytes[..20]), None);
        assert_eq!(ChallengeMeta::from_bytes(b"1"), None);
        assert_eq!(ChallengeMeta::default().layout(), None);
    }
}
