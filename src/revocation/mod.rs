//! The jti denylist: the [`RevocationStore`] trait and its backends.

mod jsonl;
mod memory;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use self::jsonl::JsonlRevocationStore;
pub use self::memory::MemoryRevocationStore;
use crate::StoreError;

/// Why an entry is on the denylist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RevocationKind {
    /// A token revoked by an operator (pico-server-auth's only kind; the
    /// default when the field is absent).
    #[default]
    Token,
    /// A refresh token that has been exchanged once (one-time rotation).
    RefreshUsed,
    /// A whole refresh-token family, revoked after reuse was detected; `jti`
    /// holds the family id.
    RefreshFamily,
}

impl RevocationKind {
    fn is_token(&self) -> bool {
        *self == RevocationKind::Token
    }
}

/// One denylist line: `{"jti","revoked_at","reason","revoked_by"}` as in
/// pico-server-auth, plus optional `exp` and `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevocationEntry {
    /// The revoked token id.
    pub jti: String,
    /// When it was revoked, float epoch seconds.
    pub revoked_at: f64,
    /// Free-form reason given by the operator.
    #[serde(default)]
    pub reason: String,
    /// `sub` of whoever revoked it.
    #[serde(default)]
    pub revoked_by: String,
    /// The token's own `exp`, when known: past it the entry no longer needs
    /// to be served to consumers (the file keeps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// What kind of entry this is; absent means an operator revocation.
    #[serde(default, skip_serializing_if = "RevocationKind::is_token")]
    pub kind: RevocationKind,
}

/// Where the denylist lives.
///
/// # Contract
/// - [`revoke`](RevocationStore::revoke) is idempotent: when the jti is
///   already present it returns the first entry unchanged and writes nothing.
///   When it returns `Ok`, the entry is durable as far as the backend
///   promises (on disk and fsync'd for the JSON Lines store).
/// - [`get`](RevocationStore::get) is answered from memory; it is on the hot
///   path of every gated request and every refresh.
/// - [`list`](RevocationStore::list) returns every entry, newest first.
/// - [`version`](RevocationStore::version) changes whenever the set changes,
///   so callers can cache what they derive from `list`.
#[async_trait]
pub trait RevocationStore: Send + Sync + 'static {
    /// Adds `entry` unless its jti is already revoked; returns the stored entry.
    ///
    /// # Errors
    /// When the entry cannot be made durable; it is then not revoked.
    async fn revoke(&self, entry: RevocationEntry) -> Result<RevocationEntry, StoreError>;

    /// The entry for `jti`, if revoked.
    ///
    /// # Errors
    /// When the backend cannot answer (callers fail closed).
    async fn get(&self, jti: &str) -> Result<Option<RevocationEntry>, StoreError>;

    /// Every entry, newest first.
    ///
    /// # Errors
    /// When the backend cannot answer.
    async fn list(&self) -> Result<Arc<Vec<RevocationEntry>>, StoreError>;

    /// A number that changes whenever the set of entries changes.
    fn version(&self) -> u64;
}

#[async_trait]
impl<T: RevocationStore + ?Sized> RevocationStore for Arc<T> {
    async fn revoke(&self, entry: RevocationEntry) -> Result<RevocationEntry, StoreError> {
        (**self).revoke(entry).await
    }
    async fn get(&self, jti: &str) -> Result<Option<RevocationEntry>, StoreError> {
        (**self).get(jti).await
    }
    async fn list(&self) -> Result<Arc<Vec<RevocationEntry>>, StoreError> {
        (**self).list().await
    }
    fn version(&self) -> u64 {
        (**self).version()
    }
}
