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
///   address, valid for `ttl`, and **replaces** any earlier challenge for that
///   address. When the store is at capacity it answers
///   [`StoreError::Full`].
/// - [`consume`](ChallengeStore::consume) removes the address's challenge,
///   whatever it is, and answers `true` only when it existed, had not expired
///   and equals `nonce` (compared in constant time). It is **atomic**: among
///   any number of concurrent calls for one challenge, at most one answers
///   `true`. Never implement it as a read followed by a delete.
/// - Expiry is the store's job; the request path never scans the store.
/// - Keys should be no larger than a digest of the address ([`address_key`]).
///
/// # Example: a custom store
/// ```
/// use std::{collections::HashMap, sync::Mutex, time::{Duration, Instant}};
/// use async_trait::async_trait;
/// use wallet_auth::{ChallengeStore, StoreError, challenge::{address_key, new_nonce, nonce_eq}};
///
/// #[derive(Default)]
/// struct MutexStore(Mutex<HashMap<[u8; 32], (String, Instant)>>);
///
/// #[async_trait]
/// impl ChallengeStore for MutexStore {
///     async fn issue(&self, address: &str, ttl: Duration) -> Result<String, StoreError> {
///         let nonce = new_nonce();
///         let mut map = self.0.lock().map_err(|_| StoreError::Unavailable("poisoned".into()))?;
///         map.insert(address_key(address), (nonce.clone(), Instant::now() + ttl));
///         Ok(nonce)
///     }
///     async fn consume(&self, address: &str, nonce: &str) -> Result<bool, StoreError> {
///         let mut map = self.0.lock().map_err(|_| StoreError::Unavailable("poisoned".into()))?;
///         // remove() is the atomic step: only one caller gets the entry.
///         Ok(match map.remove(&address_key(address)) {
///             Some((stored, expires)) => Instant::now() < expires && nonce_eq(&stored, nonce),
///             None => false,
///         })
///     }
/// }
/// # let store = MutexStore::default();
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let n = store.issue("alice", Duration::from_secs(60)).await.unwrap();
/// assert!(store.consume("alice", &n).await.unwrap());
/// assert!(!store.consume("alice", &n).await.unwrap());
/// # });
/// ```
#[async_trait]
pub trait ChallengeStore: Send + Sync + 'static {
    /// Issues a new challenge for `address`, replacing any earlier one.
    ///
    /// # Errors
    /// [`StoreError::Full`] at capacity; [`StoreError::Unavailable`] when the
    /// backend cannot be reached.
    async fn issue(&self, address: &str, ttl: Duration) -> Result<String, StoreError>;

    /// Consumes the challenge of `address`; `true` only if it was `nonce` and
    /// still valid. The challenge is gone afterwards either way.
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

/// The fixed-size key a store should index an address by (SHA-256 of it), so
/// a long address never costs more memory than a digest.
pub fn address_key(address: &str) -> [u8; 32] {
    Sha256::digest(address.as_bytes()).into()
}

/// Constant-time comparison of two nonces.
pub fn nonce_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
