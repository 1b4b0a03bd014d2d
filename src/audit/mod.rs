//! The mint audit: the [`MintAuditStore`] trait and its backends.

mod group;
mod jsonl;
mod memory;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub(crate) use self::group::GroupCommit;
pub use self::jsonl::JsonlMintAuditStore;
pub use self::memory::MemoryMintAuditStore;
use crate::StoreError;

/// One audit line, as pico-server-auth writes it:
/// `{"jti","sub","role","iat","exp","kind","scope","agent_id","session_id"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// Where mint records go: every mint whose lifetime reaches
/// `mint_audit_min_ttl_seconds` is appended, and `GET /mints` lists the
/// recent ones.
///
/// # Contract
/// - [`append`](MintAuditStore::append) returns `Ok` only once the records
///   are as durable as the backend promises (fsync'd for JSON Lines, in the
///   stream for Redis); WalletAuth answers the mint only after that. The
///   records of one call keep their order; an empty call is a no-op. On
///   `Err` the mint is counted in `audit_failures` and still answered,
///   unless `mint_audit_fail_closed` is set.
/// - [`recent`](MintAuditStore::recent) returns at most `limit` records,
///   newest first, from the newest the store keeps (the crate's stores keep
///   `mint_audit_max_in_memory`).
/// - Both are called from request tasks: never block the async thread
///   (hand blocking I/O to `tokio::task::spawn_blocking`).
///
/// # Optional: group commit
/// [`group_commit`](MintAuditStore::group_commit) is an extension for the
/// crate's own stores, and its type is private to the crate: a custom store
/// keeps the default (`None`), and its `append` is awaited after the token
/// is signed. The JSON Lines and memory stores use it so that concurrent
/// mints share one fsync: a mint announces its records before it signs, the
/// CPU thread that signed queues them itself, and the request's task is
/// woken once, when they are durable.
///
/// # Example
/// ```
/// use std::sync::{Arc, Mutex};
/// use async_trait::async_trait;
/// use wallet_auth::{AuthConfig, MintAuditStore, MintRecord, StoreError, WalletAuth};
///
/// /// Keeps every record in memory (a real store would write them out).
/// #[derive(Default)]
/// struct VecStore(Mutex<Vec<MintRecord>>);
///
/// #[async_trait]
/// impl MintAuditStore for VecStore {
///     async fn append(&self, records: Vec<MintRecord>) -> Result<(), StoreError> {
///         let mut all = self.0.lock().map_err(|_| StoreError::Unavailable("poisoned".into()))?;
///         all.extend(records);
///         Ok(())
///     }
///     async fn recent(&self, limit: usize) -> Result<Vec<MintRecord>, StoreError> {
///         let all = self.0.lock().map_err(|_| StoreError::Unavailable("poisoned".into()))?;
///         Ok(all.iter().rev().take(limit).cloned().collect())
///     }
/// }
///
/// let store = Arc::new(VecStore::default());
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let mint = |jti: &str| MintRecord {
///     jti: jti.into(), sub: "alice".into(), role: "wallet".into(), iat: 0, exp: 600,
///     kind: "access".into(), scope: String::new(), agent_id: String::new(),
///     session_id: String::new(),
/// };
/// store.append(vec![mint("a"), mint("b")]).await.unwrap();
/// let jtis: Vec<_> = store.recent(10).await.unwrap().into_iter().map(|r| r.jti).collect();
/// assert_eq!(jtis, ["b", "a"]);
/// # });
/// // WalletAuth then records every mint in it:
/// let _builder = WalletAuth::builder(AuthConfig::default()).with_mint_audit_store(store);
/// ```
#[async_trait]
pub trait MintAuditStore: Send + Sync + 'static {
    /// Appends records, in order, and returns once they are durable.
    ///
    /// # Errors
    /// When they cannot be made durable.
    async fn append(&self, records: Vec<MintRecord>) -> Result<(), StoreError>;

    /// The newest `limit` records, newest first.
    ///
    /// # Errors
    /// When the backend cannot answer.
    async fn recent(&self, limit: usize) -> Result<Vec<MintRecord>, StoreError>;

    /// Optional, crate-internal: the store's group commit, which lets
    /// concurrent mints share one fsync (see the trait's docs). Its type
    /// cannot be named outside this crate; custom stores keep the default,
    /// `None`.
    fn group_commit(self: Arc<Self>) -> Option<Arc<dyn GroupCommit>> {
        None
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

    /// The fsync statistics of the store's JSON Lines writer, if it has one
    /// (the `wallet_auth_fsync_*` histograms).
    fn fsync_stats(&self) -> Option<Arc<crate::jsonl::FsyncStats>> {
        None
    }
}

#[async_trait]
impl<T: MintAuditStore + ?Sized> MintAuditStore for Arc<T> {
    async fn append(&self, records: Vec<MintRecord>) -> Result<(), StoreError> {
        (**self).append(records).await
    }
    async fn recent(&self, limit: usize) -> Result<Vec<MintRecord>, StoreError> {
        (**self).recent(limit).await
    }
    fn group_commit(self: Arc<Self>) -> Option<Arc<dyn GroupCommit>> {
        T::group_commit(Arc::clone(&*self))
    }
    async fn ready(&self) -> Result<(), StoreError> {
        (**self).ready().await
    }
    fn fsync_stats(&self) -> Option<Arc<crate::jsonl::FsyncStats>> {
        (**self).fsync_stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that keeps the defaults.
    struct Plain;

    #[async_trait]
    impl MintAuditStore for Plain {
        async fn append(&self, _: Vec<MintRecord>) -> Result<(), StoreError> {
            Ok(())
        }
        async fn recent(&self, _: usize) -> Result<Vec<MintRecord>, StoreError> {
            Ok(Vec::new())
        }
    }

    fn rec(jti: &str) -> MintRecord {
        MintRecord {
            jti: jti.into(),
            sub: "s".into(),
            role: "wallet".into(),
            iat: 0,
            exp: 600,
            kind: "access".into(),
            scope: String::new(),
            agent_id: String::new(),
            session_id: String::new(),
        }
    }

    #[test]
    fn group_commit_is_the_crates_own_and_survives_arc_wrapping() {
        let plain: Arc<dyn MintAuditStore> = Arc::new(Plain);
        assert!(plain.group_commit().is_none());
        let memory: Arc<dyn MintAuditStore> = Arc::new(MemoryMintAuditStore::new(4));
        assert!(memory.group_commit().is_some());
        let wrapped: Arc<dyn MintAuditStore> = Arc::new(Arc::new(MemoryMintAuditStore::new(4)));
        assert!(wrapped.group_commit().is_some());
        let wrapped_plain: Arc<dyn MintAuditStore> = Arc::new(Arc::new(Plain));
        assert!(wrapped_plain.group_commit().is_none());
    }

    #[test]
    fn the_memory_store_answers_on_the_calling_thread() {
        let store = Arc::new(MemoryMintAuditStore::new(4));
        let group = Arc::clone(&store).group_commit().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        group.append_then(
            vec![rec("a"), rec("b")],
            group.announce(),
            Box::new(move |outcome| tx.send(outcome.is_ok()).unwrap()),
        );
        // Already answered: no other thread was involved.
        assert_eq!(rx.try_recv(), Ok(true));
        let jtis: Vec<_> = store.newest(10).into_iter().map(|r| r.jti).collect();
        assert_eq!(jtis, ["b", "a"]);
    }
}
