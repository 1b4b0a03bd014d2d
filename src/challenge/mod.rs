//! One-time sign-in challenges: the pluggable [`ChallengeStore`] and its
//! in-memory default.

mod memory;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

pub use self::memory::MemoryChallengeStore;
use crate::StoreError;

/// Where challenges live between `/challenge` and `/sign-in`.
///
/// # Contract
/// - [`issue`](ChallengeStore::issue) creates a fresh nonce (32 bytes from the
///   OS CSPRNG as 64 lowercase hex characters, see [`new_nonce`]) for an
///   address, valid for `ttl`. It does **not** touch earlier challenges: an
///   address may have several outstanding at once, each usable once, so a
///   stranger who asks for challenges for someone else's address takes
///   nothing away from its owner (SPEC 1, 10). When the store is at capacity
///   it answers [`StoreError::Full`].
/// - [`consume`](ChallengeStore::consume) answers `true` only for a nonce
///   that was issued to that address and has not expired, and removes that
///   one challenge. It is **atomic**: among any number of concurrent calls for
///   one challenge, at most one answers `true`. Never implement it as a read
///   followed by a delete. A nonce that was not issued to the address (a
///   guess, another address's nonce, another spelling) answers `false` and
///   leaves every challenge of the address as it was.
/// - Expiry is the store's job; the request path never scans the store.
/// - A challenge should cost no more than a digest of (address, nonce)
///   ([`challenge_key`]) and its expiry, whatever the address's length.
///
/// # Example: a custom store
/// ```
/// use std::{collections::HashMap, sync::Mutex, time::{Duration, Instant}};
/// use async_trait::async_trait;
/// use wallet_auth::{ChallengeStore, StoreError, challenge::{challenge_key, parse_nonce}};
///
/// #[derive(Default)]
/// struct MutexStore(Mutex<HashMap<[u8; 32], Instant>>);
///
/// #[async_trait]
/// impl ChallengeStore for MutexStore {
///     async fn issue(&self, address: &str, ttl: Duration) -> Result<String, StoreError> {
///         let mut nonce = [0u8; 32];
///         getrandom::fill(&mut nonce).map_err(|e| StoreError::Unavailable(e.to_string()))?;
///         let mut map = self.0.lock().map_err(|_| StoreError::Unavailable("poisoned".into()))?;
///         // One entry per challenge: earlier ones for `address` stay.
///         map.insert(challenge_key(address, &nonce), Instant::now() + ttl);
///         Ok(hex::encode(nonce))
///     }
///     async fn consume(&self, address: &str, nonce: &str) -> Result<bool, StoreError> {
///         // A nonce we could not have issued matches nothing and burns nothing.
///         let Some(nonce) = parse_nonce(nonce) else { return Ok(false) };
///         let mut map = self.0.lock().map_err(|_| StoreError::Unavailable("poisoned".into()))?;
///         // remove() is the atomic step: only one caller gets the entry.
///         Ok(map
///             .remove(&challenge_key(address, &nonce))
///             .is_some_and(|expires| Instant::now() < expires))
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
    /// Issues a new challenge for `address`; earlier ones stay valid.
    ///
    /// # Errors
    /// [`StoreError::Full`] at capacity; [`StoreError::Unavailable`] when the
    /// backend cannot be reached.
    async fn issue(&self, address: &str, ttl: Duration) -> Result<String, StoreError>;

    /// Consumes the challenge `nonce` of `address`: `true` only if it was
    /// issued to `address`, has not expired and was not consumed before; it
    /// is gone afterwards. Any other nonce answers `false` and changes
    /// nothing.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the backend cannot be reached.
    async fn consume(&self, address: &str, nonce: &str) -> Result<bool, StoreError>;

    /// Removes expired challenges; returns how many. Called by a background
    /// task, never on the request path. Stores with native expiry keep the
    /// default.
    async fn purge_expired(&self) -> Result<usize, StoreError> {
        Ok(0)
    }
}

#[async_trait]
impl<T: ChallengeStore + ?Sized> ChallengeStore for Arc<T> {
    async fn issue(&self, address: &str, ttl: Duration) -> Result<String, StoreError> {
        (**self).issue(address, ttl).await
    }
    async fn consume(&self, address: &str, nonce: &str) -> Result<bool, StoreError> {
        (**self).consume(address, nonce).await
    }
    async fn purge_expired(&self) -> Result<usize, StoreError> {
        (**self).purge_expired().await
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
