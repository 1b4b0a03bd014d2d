//! The in-memory denylist; also the index the persistent stores keep.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use super::{RevocationEntry, RevocationStore};
use crate::clock::{SharedClock, SystemClock};
use crate::StoreError;

#[derive(Default)]
struct Inner {
    by_jti: HashMap<String, RevocationEntry>,
    /// Newest first, rebuilt lazily.
    listed: Option<Arc<Vec<RevocationEntry>>>,
    /// Insertion order (oldest first).
    order: Vec<String>,
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
            next_expiry: AtomicU64::new(u64::MAX),
            clock,
        }
    }

    /// The clock this store reads.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The live entry already present for `entry.jti`, or `None` after
    /// inserting `entry` (as [`RevocationEntry::stored`] makes it). An
    /// expired entry counts as absent and is replaced. Never blocks on I/O.
    pub fn insert_if_absent(&self, entry: RevocationEntry) -> Option<RevocationEntry> {
        let entry = entry.stored();
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = inner.by_jti.get(&entry.jti) {
            if !existing.is_expired(self.clock.now_secs()) {
                return Some(existing.clone());
            }
            inner.order.retain(|j| *j != entry.jti);
        }
        if let Some(exp) = entry.exp {
            self.next_expiry.fetch_min(exp, Ordering::AcqRel);
        }
        inner.order.push(entry.jti.clone());
        inner.by_jti.insert(entry.jti.clone(), entry);
        inner.listed = None;
        self.version.fetch_add(1, Ordering::Release);
        None
    }

    /// The entry for `jti`, if present (expired or not).
    pub fn lookup(&self, jti: &str) -> Option<RevocationEntry> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_jti
            .get(jti)
            .cloned()
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
        inner.by_jti.retain(|_, e| !e.is_expired(now));
        let removed = before - inner.by_jti.len();
        let next = inner
            .by_jti
            .values()
            .filter_map(|e| e.exp)
            .min()
            .unwrap_or(u64::MAX);
        self.next_expiry.store(next, Ordering::Release);
        if removed > 0 {
            let Inner { by_jti, order, .. } = &mut *inner;
            order.retain(|j| by_jti.contains_key(j));
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
            .filter_map(|j| inner.by_jti.get(j).cloned())
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
