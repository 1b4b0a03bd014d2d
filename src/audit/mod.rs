//! The mint audit: the [`MintAuditStore`] trait and its backends.

mod jsonl;
mod memory;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use self::jsonl::JsonlMintAuditStore;
pub use self::memory::MemoryMintAuditStore;
use crate::StoreError;

/// One audit line, as pico-server-auth writes it:
/// `{"jti","sub","role","iat","exp","kind","scope","agent_id","session_id"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintRecord {
    /// Token id.
    #[serde(default)]
    pub jti: String,
    /// Subject.
    #[serde(default)]
    pub sub: String,
    /// Role claim.
    #[serde(default)]
    pub role: String,
    /// Issued at, epoch seconds.
    #[serde(default)]
    pub iat: u64,
    /// Expires at, epoch seconds.
    #[serde(default)]
    pub exp: u64,
    /// `access`, `refresh` or `sign` (fleet).
    #[serde(default)]
    pub kind: String,
    /// Fleet scope, empty when none.
    #[serde(default)]
    pub scope: String,
    /// Fleet agent id, empty when none.
    #[serde(default)]
    pub agent_id: String,
    /// Fleet session id, empty when none.
    #[serde(default)]
    pub session_id: String,
}

/// Where mint records go.
///
/// # Contract
/// - [`append`](MintAuditStore::append) returns `Ok` only once the records
///   are as durable as the backend promises (fsync'd for JSON Lines).
/// - [`recent`](MintAuditStore::recent) returns at most `limit` records,
///   newest first, from the newest `mint_audit_max_in_memory` kept in memory.
#[async_trait]
pub trait MintAuditStore: Send + Sync + 'static {
    /// Appends records (in order).
    ///
    /// # Errors
    /// When they cannot be made durable.
    async fn append(&self, records: Vec<MintRecord>) -> Result<(), StoreError>;

    /// The newest `limit` records, newest first.
    ///
    /// # Errors
    /// When the backend cannot answer.
    async fn recent(&self, limit: usize) -> Result<Vec<MintRecord>, StoreError>;
}

#[async_trait]
impl<T: MintAuditStore + ?Sized> MintAuditStore for Arc<T> {
    async fn append(&self, records: Vec<MintRecord>) -> Result<(), StoreError> {
        (**self).append(records).await
    }
    async fn recent(&self, limit: usize) -> Result<Vec<MintRecord>, StoreError> {
        (**self).recent(limit).await
    }
}
