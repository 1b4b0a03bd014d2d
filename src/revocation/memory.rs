//! The in-memory denylist; also the index the persistent stores keep.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use super::{RevocationEntry, RevocationStore};
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
#[derive(Default)]
pub struct MemoryRevocationStore {
    inner: RwLock<Inner>,
    version: AtomicU64,
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

    /// The entry already present for `entry.jti`, or `None` after inserting
    /// `entry`. Never blocks on I/O.
    pub fn insert_if_absent(&self, entry: RevocationEntry) -> Option<RevocationEntry> {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = inner.by_jti.get(&entry.jti) {
            return Some(existing.clone());
        }
        inner.order.push(entry.jti.clone());
        inner.by_jti.insert(entry.jti.clone(), entry);
        inner.listed = None;
        self.version.fetch_add(1, Ordering::Release);
        None
    }

    /// The entry for `jti`, if present.
    pub fn lookup(&self, jti: &str) -> Option<RevocationEntry> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_jti
            .get(jti)
            .cloned()
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

    async fn get(&self, jti: &str) -> Result<Option<RevocationEntry>, StoreError> {
        Ok(self.lookup(jti))
    }

    async fn list(&self) -> Result<Arc<Vec<RevocationEntry>>, StoreError> {
        Ok(self.snapshot())
    }

    fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}
