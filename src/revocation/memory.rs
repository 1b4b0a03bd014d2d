//! The in-memory denylist; also the index the persistent stores keep.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use tokio::sync::watch;

use super::feed::{clock_cursor_is_past, next_clock_seq};
use super::{FeedRead, RevocationEntry, RevocationStore};
use crate::clock::{SharedClock, SystemClock};
use crate::StoreError;

#[derive(Default)]
struct Inner {
    by_jti: HashMap<String, Held>,
    /// Newest first, rebuilt lazily.
    listed: Option<Arc<Vec<RevocationEntry>>>,
    /// Insertion order (oldest first).
    order: Vec<String>,
    /// The served entries by feed sequence number.
    by_seq: BTreeMap<u64, String>,
    /// The last number this store handed out itself.
    last_seq: u64,
}

struct Held {
    entry: RevocationEntry,
    /// Its feed sequence number; 0 for an entry outside the feed
    /// (bookkeeping).
    seq: u64,
}

/// The denylist in memory. Lost at restart: configure
/// `revocation_store_path` for a durable one.
///
/// Entries are kept as [`RevocationEntry::stored`] makes them (bookkeeping
/// entries without their subject). [`purge`](MemoryRevocationStore::purge)
/// drops expired entries; it returns at once, without taking the lock, while
/// no entry can have expired.
pub struct MemoryRevocationStore {
    inner: RwLock<Inner>,
    version: AtomicU64,
    /// The feed position (see [`RevocationStore::feed_position`]).
    position: watch::Sender<u64>,
    /// Whether this store numbers its served entries itself (a plain memory
    /// store) or is told the numbers (the index of the JSON Lines and Redis
    /// stores).
    own_seqs: bool,
    /// The earliest `exp` held (`u64::MAX` when none): a purge before it
    /// has nothing to do.
    next_expiry: AtomicU64,
    clock: SharedClock,
}

impl Default for MemoryRevocationStore {
    fn default() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }
}

impl std::fmt::Debug for MemoryRevocationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRevocationStore")
            .field("version", &self.version())
            .finish()
    }
}

impl MemoryRevocationStore {
    /// An empty denylist.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty denylist reading time from `clock` (to tell an expired
    /// entry, which an insert replaces).
    pub fn with_clock(clock: SharedClock) -> Self {
        Self {
            inner: RwLock::default(),
            version: AtomicU64::new(0),
            position: watch::Sender::new(0),
            own_seqs: true,
            next_expiry: AtomicU64::new(u64::MAX),
            clock,
        }
    }

    /// The index of a persistent store: entries get the sequence numbers
    /// their store gives ([`insert_at`](Self::insert_at)), and the feed
    /// moves only when told ([`advance_feed`](Self::advance_feed)).
    pub(crate) fn indexed(clock: SharedClock) -> Self {
        Self {
            own_seqs: false,
            ..Self::with_clock(clock)
        }
    }

    /// The clock this store reads.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The live entry already present for `entry.jti`, or `None` after
    /// inserting `entry` (as [`RevocationEntry::stored`] makes it). An
    /// expired entry counts as absent and is replaced. Never blocks on I/O.
    ///
    /// A plain memory store numbers a served entry it adds and moves its
    /// feed to it; the index of a persistent store leaves it outside the
    /// feed (its store uses [`insert_at`](Self::insert_at)).
    pub fn insert_if_absent(&self, entry: RevocationEntry) -> Option<RevocationEntry> {
        self.insert_at(entry, None)
    }

    /// As [`insert_if_absent`](Self::insert_if_absent), a served entry
    /// taking the feed sequence number `seq` (the feed does not move: see
    /// [`advance_feed`](Self::advance_feed)).
    pub(crate) fn insert_at(
        &self,
        entry: RevocationEntry,
        seq: Option<u64>,
    ) -> Option<RevocationEntry> {
        let entry = entry.stored();
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = inner.by_jti.get(&entry.jti) {
            if !existing.entry.is_expired(self.clock.now_secs()) {
                return Some(existing.entry.clone());
            }
            let old_seq = existing.seq;
            inner.by_seq.remove(&old_seq);
            inner.order.retain(|j| *j != entry.jti);
        }
        if let Some(exp) = entry.exp {
            self.next_expiry.fetch_min(exp, Ordering::AcqRel);
        }
        let served = entry.kind.is_served();
        let (seq, own) = match seq {
            Some(seq) if served => (seq, false),
            None if served && self.own_seqs => {
                let seq = next_clock_seq(inner.last_seq, self.clock.now_millis());
                inner.last_seq = seq;
                (seq, true)
            }
            _ => (0, false),
        };
        if seq != 0 {
            inner.by_seq.insert(seq, entry.jti.clone());
        }
        inner.order.push(entry.jti.clone());
        inner.by_jti.insert(entry.jti.clone(), Held { entry, seq });
        inner.listed = None;
        self.version.fetch_add(1, Ordering::Release);
        if own {
            // Under the write lock: the feed moves in numbering order.
            self.position.send_replace(seq);
        }
        None
    }

    /// Moves the feed to `seq` (never back): every served entry numbered
    /// at or below it must be in the index already.
    pub(crate) fn advance_feed(&self, seq: u64) {
        self.position.send_if_modified(|p| {
            let moved = seq > *p;
            if moved {
                *p = seq;
            }
            moved
        });
    }

    /// The feed's position.
    pub(crate) fn position(&self) -> u64 {
        *self.position.borrow()
    }

    /// A receiver of the feed's position.
    pub(crate) fn watch_feed(&self) -> watch::Receiver<u64> {
        self.position.subscribe()
    }

    /// The served, unexpired entries numbered after `after` up to the feed's
    /// position, oldest first, at most `limit`. A cursor past the position
    /// is [`FeedRead::Unknown`], unless `clock_numbers` (the numbers come
    /// from the clock) and it is not in the future: then nothing follows it.
    pub(crate) fn read_feed(&self, after: u64, limit: usize, clock_numbers: bool) -> FeedRead {
        let position = self.position();
        if after >= position {
            if after == position
                || (clock_numbers && clock_cursor_is_past(after, position, self.clock.now_millis()))
            {
                return FeedRead::Changes {
                    entries: Vec::new(),
                    position: after,
                    more: false,
                };
            }
            return FeedRead::Unknown;
        }
        let now = self.clock.now_secs();
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let mut entries = Vec::new();
        let mut more = false;
        let range = (Bound::Excluded(after), Bound::Included(position));
        for (&seq, jti) in inner.by_seq.range(range) {
            let Some(held) = inner.by_jti.get(jti) else {
                continue;
            };
            if !held.entry.kind.is_served() || held.entry.is_expired(now) {
                continue;
            }
            if entries.len() >= limit {
                more = true;
                break;
            }
            entries.push((seq, held.entry.clone()));
        }
        let position = match (more, entries.last()) {
            (true, Some((seq, _))) => *seq,
            _ => position,
        };
        FeedRead::Changes {
            entries,
            position,
            more,
        }
    }

    /// The entry for `jti`, if present (expired or not).
    pub fn lookup(&self, jti: &str) -> Option<RevocationEntry> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_jti
            .get(jti)
            .map(|h| h.entry.clone())
    }

    /// The entry for `jti`, if present and not expired.
    pub fn lookup_live(&self, jti: &str) -> Option<RevocationEntry> {
        self.lookup(jti)
            .filter(|e| !e.is_expired(self.clock.now_secs()))
    }

    /// Removes every entry expired at `now` (epoch seconds); returns how
    /// many. Cheap (no lock) while nothing can have expired.
    pub fn purge(&self, now: u64) -> usize {
        if now < self.next_expiry.load(Ordering::Acquire) {
            return 0;
        }
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let before = inner.by_jti.len();
        inner.by_jti.retain(|_, h| !h.entry.is_expired(now));
        let removed = before - inner.by_jti.len();
        let next = inner
            .by_jti
            .values()
            .filter_map(|h| h.entry.exp)
            .min()
            .unwrap_or(u64::MAX);
        self.next_expiry.store(next, Ordering::Release);
        if removed > 0 {
            let Inner {
                by_jti,
                order,
                by_seq,
                ..
            } = &mut *inner;
            order.retain(|j| by_jti.contains_key(j));
            by_seq.retain(|seq, j| by_jti.get(j).is_some_and(|h| h.seq == *seq));
            inner.listed = None;
            self.version.fetch_add(1, Ordering::Release);
        }
        removed
    }

    /// Every entry, newest first (by insertion order).
    pub fn snapshot(&self) -> Arc<Vec<RevocationEntry>> {
        if let Some(l) = &self.inner.read().unwrap_or_else(|p| p.into_inner()).listed {
            return Arc::clone(l);
        }
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = &inner.listed {
            return Arc::clone(l);
        }
        let list: Vec<RevocationEntry> = inner
            .order
            .iter()
            .rev()
            .filter_map(|j| inner.by_jti.get(j).map(|h| h.entry.clone()))
            .collect();
        let list = Arc::new(list);
        inner.listed = Some(Arc::clone(&list));
        list
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_jti
            .len()
    }

    /// Whether the denylist is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl RevocationStore for MemoryRevocationStore {
    async fn revoke(&self, entry: RevocationEntry) -> Result<RevocationEntry, StoreError> {
        Ok(match self.insert_if_absent(entry.clone()) {
            Some(existing) => existing,
            None => entry,
        })
    }

    async fn try_insert(&self, entry: RevocationEntry) -> Result<bool, StoreError> {
        Ok(self.insert_if_absent(entry).is_none())
    }

    async fn get(&self, jti: &str) -> Result<Option<RevocationEntry>, StoreError> {
        Ok(self.lookup(jti))
    }

    async fn list(&self) -> Result<Arc<Vec<RevocationEntry>>, StoreError> {
        Ok(self.snapshot())
    }

    async fn purge_expired(&self, now: u64) -> Result<usize, StoreError> {
        Ok(self.purge(now))
    }

    fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn feed_position(&self) -> Option<u64> {
        Some(self.position())
    }

    async fn feed_after(&self, after: u64, limit: usize) -> Result<FeedRead, StoreError> {
        Ok(self.read_feed(after, limit, true))
    }

    fn feed_is_at(&self, after: u64) -> bool {
        after == self.position()
    }

    fn feed_watch(&self) -> Option<watch::Receiver<u64>> {
        Some(self.watch_feed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::RevocationKind;

    fn entry(jti: &str, exp: Option<u64>, kind: RevocationKind) -> RevocationEntry {
        RevocationEntry {
            jti: jti.into(),
            revoked_at: 1.0,
            reason: format!("rotated to {jti}-next"),
            revoked_by: "0x".to_string() + &"ab".repeat(1952),
            exp,
            kind,
        }
    }

    #[test]
    fn the_feed_is_at_its_position_only() {
        let store = MemoryRevocationStore::new();
        let at = store.position();
        assert!(store.feed_is_at(at));
        store.insert_if_absent(entry("op", None, RevocationKind::Token));
        assert!(!store.feed_is_at(at), "an entry was added after {at}");
        let now = store.position();
        assert!(store.feed_is_at(now));
        assert!(!store.feed_is_at(now + 1));
        // What feed_after says of the same cursor.
        assert!(matches!(
            store.read_feed(now, 10, true),
            FeedRead::Changes { ref entries, more: false, .. } if entries.is_empty()
        ));
    }

    #[test]
    fn bookkeeping_entries_are_kept_without_their_subject() {
        let store = MemoryRevocationStore::new();
        store.insert_if_absent(entry(
            "used",
            Some(u64::MAX - 1),
            RevocationKind::RefreshUsed,
        ));
        store.insert_if_absent(entry("op", None, RevocationKind::Token));
        let used = store.lookup("used").unwrap();
        assert_eq!((used.reason.as_str(), used.revoked_by.as_str()), ("", ""));
        assert_eq!(used.exp, Some(u64::MAX - 1));
        assert_eq!(store.lookup("op").unwrap().revoked_by.len(), 3906);
    }

    #[test]
    fn purge_drops_expired_entries_and_bumps_the_version() {
        let clock = ManualClock::new(1_000_000);
        let store = MemoryRevocationStore::with_clock(Arc::new(clock.clone()));
        store.insert_if_absent(entry("a", Some(1_100), RevocationKind::RefreshUsed));
        store.insert_if_absent(entry("b", Some(1_200), RevocationKind::Token));
        store.insert_if_absent(entry("forever", None, RevocationKind::Token));
        let v = store.version();
        assert_eq!(store.purge(1_099), 0);
        assert_eq!(store.version(), v, "nothing expired, no change");
        assert_eq!(store.purge(1_100), 1);
        assert_ne!(store.version(), v);
        let listed: Vec<String> = store.snapshot().iter().map(|e| e.jti.clone()).collect();
        assert_eq!(listed, ["forever", "b"]);
        assert_eq!(store.purge(10_000), 1);
        assert_eq!(store.len(), 1);
        assert_eq!(store.purge(u64::MAX), 0);
    }

    fn changes(read: FeedRead) -> (Vec<String>, u64, bool) {
        match read {
            FeedRead::Changes {
                entries,
                position,
                more,
            } => (
                entries.into_iter().map(|(_, e)| e.jti).collect(),
                position,
                more,
            ),
            FeedRead::Unknown => panic!("unknown cursor"),
        }
    }

    #[test]
    fn the_feed_serves_operator_revocations_oldest_first_in_pages() {
        let clock = ManualClock::new(3_000_000);
        let store = MemoryRevocationStore::with_clock(Arc::new(clock.clone()));
        let start = store.position();
        assert_eq!(start, 0);
        store.insert_if_absent(entry("a", None, RevocationKind::Token));
        store.insert_if_absent(entry("used", Some(4_000), RevocationKind::RefreshUsed));
        store.insert_if_absent(entry("b", Some(3_010), RevocationKind::Token));
        store.insert_if_absent(entry("c", None, RevocationKind::Token));
        let end = store.position();
        assert_eq!(
            changes(store.read_feed(0, 10, true)),
            (vec!["a".into(), "b".into(), "c".into()], end, false)
        );
        let (page, at, more) = changes(store.read_feed(0, 2, true));
        assert_eq!((page.len(), more), (2, true));
        assert_eq!(
            changes(store.read_feed(at, 2, true)),
            (vec!["c".into()], end, false)
        );
        assert_eq!(changes(store.read_feed(end, 2, true)), (vec![], end, false));
        // Expired entries leave the feed.
        clock.advance(std::time::Duration::from_secs(10));
        assert_eq!(changes(store.read_feed(0, 10, true)).0, ["a", "c"]);
        // A cursor from the future is unknown; one from the past, past the
        // position (a restarted memory store), has nothing after it.
        assert_eq!(store.read_feed(u64::MAX, 10, true), FeedRead::Unknown);
        let fresh = MemoryRevocationStore::with_clock(Arc::new(ManualClock::new(5_000_000)));
        assert_eq!(
            changes(fresh.read_feed(end, 10, true)),
            (vec![], end, false)
        );
        assert_eq!(fresh.read_feed(end, 10, false), FeedRead::Unknown);
    }

    #[test]
    fn an_expired_entry_is_replaced_by_an_insert() {
        let clock = ManualClock::new(2_000_000);
        let store = MemoryRevocationStore::with_clock(Arc::new(clock.clone()));
        assert!(store
            .insert_if_absent(entry("j", Some(2_001), RevocationKind::Token))
            .is_none());
        assert!(store
            .insert_if_absent(entry("j", None, RevocationKind::Token))
            .is_some());
        clock.advance(std::time::Duration::from_secs(1));
        assert!(store
            .insert_if_absent(entry("j", None, RevocationKind::Token))
            .is_none());
        assert_eq!(store.lookup("j").unwrap().exp, None);
        assert_eq!(store.snapshot().len(), 1);
    }
}
