//! Group commit: the crate-internal extension of
//! [`MintAuditStore`](super::MintAuditStore) that lets concurrent mints share
//! one fsync.
//!
//! The trait is public in a private module, so that
//! `MintAuditStore::group_commit` can return it while no one outside the
//! crate can name or implement it: a backend's batching stays its own
//! business, and the store contract stays `append` + `recent`.

use super::MintRecord;
use crate::jsonl::{Announcement, AppendDone};

/// A store that can take appends announced ahead of time, from any thread.
///
/// WalletAuth announces a mint's records before its signature is computed,
/// and the CPU thread that signed hands them to
/// [`append_then`](GroupCommit::append_then); a batch about to be fsync'd
/// may wait briefly for announced records (see
/// [`crate::jsonl::MAX_LINGER`]).
pub trait GroupCommit: Send + Sync {
    /// Announces records that [`append_then`](GroupCommit::append_then)
    /// will bring shortly. Dropping the announcement withdraws it.
    fn announce(&self) -> Announcement;

    /// Queues `records` without blocking (callable from a thread without an
    /// async runtime), ends `announcement` once they are queued, and calls
    /// `done` exactly once: when they are durable, or with the failure.
    /// `done` may run on another thread, or on this one.
    fn append_then(&self, records: Vec<MintRecord>, announcement: Announcement, done: AppendDone);
}
