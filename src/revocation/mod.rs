//! The jti denylist: the [`RevocationStore`] trait and its backends.

mod feed;
mod jsonl;
mod memory;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use self::feed::FeedRead;
pub use self::jsonl::{JsonlRevocationStore, COMPACT_MIN_DEAD_LINES};
pub use self::memory::MemoryRevocationStore;
use crate::StoreError;

/// Why an entry is on the denylist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
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

    /// Whether entries of this kind are served to consumers (by
    /// `/revoked-jtis` and its feed): operator revocations only.
    pub fn is_served(&self) -> bool {
        self.is_token()
    }

    /// Whether entries of this kind are the server's own bookkeeping (used
    /// refresh tokens, revoked families): never served, and stored with no
    /// more than the jti, `revoked_at`, `exp` and kind.
    pub fn is_bookkeeping(&self) -> bool {
        matches!(
            self,
            RevocationKind::RefreshUsed | RevocationKind::RefreshFamily
        )
    }
}

/// One denylist line: `{"jti","revoked_at","reason","revoked_by"}` as in
/// pico-server-auth, plus optional `exp` and `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// The token's own `exp`, when known: past it the entry protects
    /// nothing and is purged (see [`RevocationStore::purge_expired`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// What kind of entry this is; absent means an operator revocation.
    #[serde(default, skip_serializing_if = "RevocationKind::is_token")]
    pub kind: RevocationKind,
}

impl RevocationEntry {
    /// The entry as the stores keep it: a bookkeeping entry
    /// ([`RevocationKind::is_bookkeeping`]) loses `reason` and `revoked_by`
    /// (which would carry the subject, 3,904 characters for an ML-DSA-65
    /// wallet); an operator revocation is kept whole.
    #[must_use]
    pub fn stored(mut self) -> Self {
        if self.kind.is_bookkeeping() {
            self.reason = String::new();
            self.revoked_by = String::new();
        }
        self
    }

    /// Whether the entry's `exp` has passed at `now` (epoch seconds): it
    /// then protects nothing. An entry without `exp` never expires.
    pub fn is_expired(&self, now: u64) -> bool {
        self.exp.is_some_and(|exp| exp <= now)
    }

    /// The entry as one stored JSON line (without its newline): an operator
    /// revocation in pico-server-auth's shape, a bookkeeping entry as
    /// `{"jti","revoked_at","exp","kind"}` only.
    pub(crate) fn to_line(&self) -> Result<Vec<u8>, StoreError> {
        self.to_line_with_seq(None)
    }

    /// As [`to_line`](Self::to_line), an operator revocation also carrying
    /// its feed sequence number as `"seq"` (pico-server-auth's loader
    /// ignores the extra member).
    pub(crate) fn to_line_with_seq(&self, seq: Option<u64>) -> Result<Vec<u8>, StoreError> {
        #[derive(Serialize)]
        struct Sequenced<'a> {
            #[serde(flatten)]
            entry: &'a RevocationEntry,
            seq: u64,
        }
        if let (Some(seq), false) = (seq, self.kind.is_bookkeeping()) {
            return serde_json::to_vec(&Sequenced { entry: self, seq })
                .map_err(|e| StoreError::Backend(Box::new(e)));
        }
        #[derive(Serialize)]
        struct Bookkeeping<'a> {
            jti: &'a str,
            revoked_at: f64,
            #[serde(skip_serializing_if = "Option::is_none")]
            exp: Option<u64>,
            kind: RevocationKind,
        }
        let line = if self.kind.is_bookkeeping() {
            serde_json::to_vec(&Bookkeeping {
                jti: &self.jti,
                revoked_at: self.revoked_at,
                exp: self.exp,
                kind: self.kind,
            })
        } else {
            serde_json::to_vec(self)
        };
        line.map_err(|e| StoreError::Backend(Box::new(e)))
    }
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
/// - [`try_insert`](RevocationStore::try_insert) is atomic: of many
///   concurrent calls for one jti (on one instance or, for a shared
///   backend, on all), exactly one returns `true`.
/// - Bookkeeping entries ([`RevocationKind::is_bookkeeping`]) are stored
///   without `reason` and `revoked_by` ([`RevocationEntry::stored`]).
/// - An entry whose `exp` has passed protects nothing: an insert treats it
///   as absent, and [`purge_expired`](RevocationStore::purge_expired)
///   removes it from memory, from `list`, and from the backing storage
///   (the JSON Lines file by compaction, Redis by deleting it). Entries
///   without `exp` stay forever. The purge runs in the background (the
///   builder schedules it), never on a request's path.
/// - [`version`](RevocationStore::version) changes whenever the set changes
///   (inserts and purges), so callers can cache what they derive from
///   `list`.
#[async_trait]
pub trait RevocationStore: Send + Sync + 'static {
    /// Adds `entry` unless its jti is already revoked. Returns the entry
    /// already stored, or `entry` itself (as given, so a caller can
    /// recognise its own) when this call added it.
    ///
    /// # Errors
    /// When the entry cannot be made durable; it is then not revoked.
    async fn revoke(&self, entry: RevocationEntry) -> Result<RevocationEntry, StoreError>;

    /// Adds `entry` unless its jti is already present (and not expired),
    /// atomically; `true` when this call added it. `Ok` comes once the
    /// entry is durable, as for [`revoke`](RevocationStore::revoke).
    ///
    /// # Errors
    /// When the entry cannot be made durable; it is then not added.
    async fn try_insert(&self, entry: RevocationEntry) -> Result<bool, StoreError>;

    /// Removes every entry whose `exp` is at or before `now` (epoch
    /// seconds); returns how many left memory. For scheduling in the
    /// background; the default does nothing.
    ///
    /// # Errors
    /// When the backing storage cannot be cleaned up (what left memory
    /// stays gone; the next purge tries the storage again).
    async fn purge_expired(&self, now: u64) -> Result<usize, StoreError> {
        let _ = now;
        Ok(0)
    }

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

    /// The position of the change feed (SPEC 7): every served entry (an
    /// operator revocation, [`RevocationKind::Token`]) whose sequence number
    /// is at or below it is already in [`list`](RevocationStore::list).
    /// Sequence numbers only grow, and stay valid across restarts (and, for
    /// a shared backend, across instances). `None` (the default) means the
    /// store keeps no feed: `/revoked-jtis` then answers every `since` with
    /// the full list and the event stream is not offered.
    fn feed_position(&self) -> Option<u64> {
        None
    }

    /// The served entries with a sequence number after `after`, oldest
    /// first, at most `limit` of them, only those whose `exp` has not
    /// passed; [`FeedRead::Unknown`] when `after` is not a position this
    /// feed can continue from. Answered from memory (the event stream and
    /// delta polls call it); the default knows no position.
    ///
    /// # Errors
    /// When the backend cannot answer (callers fail closed).
    async fn feed_after(&self, after: u64, limit: usize) -> Result<FeedRead, StoreError> {
        let _ = (after, limit);
        Ok(FeedRead::Unknown)
    }

    /// Whether `after` is this feed's position, known here and now without
    /// any I/O, so a delta after it is empty: the answer to an up-to-date
    /// poller without a call to [`feed_after`](RevocationStore::feed_after).
    /// `false` sends the caller to `feed_after` (the default, and a store
    /// whose local copy must be checked for freshness first).
    fn feed_is_at(&self, after: u64) -> bool {
        let _ = after;
        false
    }

    /// A receiver that sees [`feed_position`](RevocationStore::feed_position)
    /// whenever it moves; `None` when the store keeps no feed.
    fn feed_watch(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
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
impl<T: RevocationStore + ?Sized> RevocationStore for Arc<T> {
    async fn revoke(&self, entry: RevocationEntry) -> Result<RevocationEntry, StoreError> {
        (**self).revoke(entry).await
    }
    async fn try_insert(&self, entry: RevocationEntry) -> Result<bool, StoreError> {
        (**self).try_insert(entry).await
    }
    async fn purge_expired(&self, now: u64) -> Result<usize, StoreError> {
        (**self).purge_expired(now).await
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
    fn feed_position(&self) -> Option<u64> {
        (**self).feed_position()
    }
    async fn feed_after(&self, after: u64, limit: usize) -> Result<FeedRead, StoreError> {
        (**self).feed_after(after, limit).await
    }
    fn feed_is_at(&self, after: u64) -> bool {
        (**self).feed_is_at(after)
    }
    fn feed_watch(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        (**self).feed_watch()
    }
    async fn ready(&self) -> Result<(), StoreError> {
        (**self).ready().await
    }
    fn fsync_stats(&self) -> Option<Arc<crate::jsonl::FsyncStats>> {
        (**self).fsync_stats()
    }
}
