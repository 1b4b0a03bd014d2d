//! The mint audit: the [`MintAuditStore`] trait and its backends.

mod jsonl;
mod memory;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use self::jsonl::JsonlMintAuditStore;
pub use self::memory::MemoryMintAuditStore;
pub use crate::jsonl::{Announcement, AppendDone};
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

/// An append for [`MintAuditStore::append_then`]: the records, their
/// announcement, and what to call once they are durable or have failed.
pub struct AppendThen {
    /// The records, in order.
    pub records: Vec<MintRecord>,
    /// Their announcement, to end once they are queued.
    pub announcement: Announcement,
    /// Called once with the outcome.
    pub done: AppendDone,
}

impl std::fmt::Debug for AppendThen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendThen")
            .field("records", &self.records.len())
            .finish_non_exhaustive()
    }
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

    /// Announces records that [`append_announced`] will bring shortly (a
    /// mint whose signature is being computed). A backend with group
    /// commit may hold its next fsync briefly for announced records, so
    /// that concurrent mints share one. Default: announces nothing.
    ///
    /// [`append_announced`]: MintAuditStore::append_announced
    fn announce(&self) -> Announcement {
        Announcement::none()
    }

    /// [`append`](MintAuditStore::append), ending `announcement` once the
    /// records are queued. Default: drops the announcement, then appends.
    ///
    /// # Errors
    /// As [`append`](MintAuditStore::append).
    async fn append_announced(
        &self,
        records: Vec<MintRecord>,
        announcement: Announcement,
    ) -> Result<(), StoreError> {
        drop(announcement);
        self.append(records).await
    }

    /// Starts appending `append.records` from a thread that may have no
    /// async runtime (WalletAuth calls it on its CPU pool, right after
    /// signing) and calls `append.done` once they are durable or have
    /// failed, ending the announcement once they are queued. Must not
    /// block.
    ///
    /// Returns the append back (`Some`) when the store cannot do that; the
    /// caller then uses [`append_announced`] on its runtime. The default
    /// returns it back. Implementing it saves a sign-in one wake-up of
    /// its async task: the task is woken once, when the audit is durable.
    ///
    /// [`append_announced`]: MintAuditStore::append_announced
    fn append_then(&self, append: AppendThen) -> Option<AppendThen> {
        Some(append)
    }

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
    fn announce(&self) -> Announcement {
        (**self).announce()
    }
    async fn append_announced(
        &self,
        records: Vec<MintRecord>,
        announcement: Announcement,
    ) -> Result<(), StoreError> {
        (**self).append_announced(records, announcement).await
    }
    fn append_then(&self, append: AppendThen) -> Option<AppendThen> {
        (**self).append_then(append)
    }
    async fn recent(&self, limit: usize) -> Result<Vec<MintRecord>, StoreError> {
        (**self).recent(limit).await
    }
}
