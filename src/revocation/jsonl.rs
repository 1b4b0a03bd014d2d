//! The durable denylist: a JSON Lines file plus an in-memory index.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use dashmap::DashMap;
use tokio::sync::OnceCell;

use super::{MemoryRevocationStore, RevocationEntry, RevocationStore};
use crate::jsonl::{self, JsonlWriter};
use crate::StoreError;

/// The denylist in a JSON Lines file (pico-server-auth's format), indexed in
/// memory.
///
/// Reads (`get`, `list`, `version`) are answered from the index. A new
/// entry enters the index only after its line is fsync'd, so nothing is
/// served that a crash could take back.
///
/// # Concurrent revokes of one jti
/// The first caller for a jti not yet in the index becomes its writer: the
/// callers of that jti share one [`OnceCell`] (kept in `in_flight` while a
/// write is under way), whose initializer appends the line and inserts it
/// into the index. The others wait on the cell and return the same entry; so
/// the file gets one line per jti, and revokes of *different* jtis never wait
/// for one another, which keeps the writer's group commit. If the write
/// fails, the cell stays empty and the next waiter tries its own write.
///
/// One gap remains: a revoke whose future is dropped (cancelled) after its
/// line was queued may still get written while a waiter writes a second line
/// for the same jti. The loader keeps the first line for a jti, so the
/// denylist stays correct; only that entry's `revoked_at` may differ from
/// the one the waiter returned.
pub struct JsonlRevocationStore {
    index: MemoryRevocationStore,
    writer: JsonlWriter,
    in_flight: DashMap<String, Arc<OnceCell<RevocationEntry>>>,
}

impl std::fmt::Debug for JsonlRevocationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlRevocationStore")
            .field("writer", &self.writer)
            .field("entries", &self.index.len())
            .finish()
    }
}

impl JsonlRevocationStore {
    /// Opens (creating when missing) the file at `path` and loads it.
    ///
    /// Lines without a `jti` are skipped; when a jti appears twice, the
    /// first line wins. Does blocking I/O: call it at start-up.
    ///
    /// # Errors
    /// When the file cannot be opened for writing or read. There is no
    /// fallback to memory.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let writer = JsonlWriter::open(path)?;
        let index = MemoryRevocationStore::new();
        let mut duplicates = 0usize;
        let mut no_jti = 0usize;
        for entry in jsonl::load::<RevocationEntry>(path)? {
            if entry.jti.is_empty() {
                no_jti += 1;
            } else if index.insert_if_absent(entry).is_some() {
                duplicates += 1;
            }
        }
        tracing::info!(
            path = %path.display(),
            entries = index.len(),
            duplicates,
            no_jti,
            "revocation store loaded"
        );
        Ok(Self {
            index,
            writer,
            in_flight: DashMap::new(),
        })
    }

    /// The writer, for its counters.
    pub fn writer(&self) -> &JsonlWriter {
        &self.writer
    }

    async fn write_new(&self, entry: RevocationEntry) -> Result<RevocationEntry, StoreError> {
        // Re-check under the cell: an earlier writer may have finished
        // (inserted, then left `in_flight`) between our first lookup and
        // our taking the cell.
        if let Some(existing) = self.index.lookup(&entry.jti) {
            return Ok(existing);
        }
        self.writer
            .append_records(std::slice::from_ref(&entry))
            .await?;
        Ok(self.index.insert_if_absent(entry.clone()).unwrap_or(entry))
    }
}

/// Removes a jti's cell from `in_flight` when its revoke ends, even when the
/// revoke is cancelled; leaves a newer cell alone.
struct InFlightGuard<'a> {
    map: &'a DashMap<String, Arc<OnceCell<RevocationEntry>>>,
    jti: &'a str,
    cell: Arc<OnceCell<RevocationEntry>>,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.map
            .remove_if(self.jti, |_, c| Arc::ptr_eq(c, &self.cell));
    }
}

#[async_trait]
impl RevocationStore for JsonlRevocationStore {
    async fn revoke(&self, entry: RevocationEntry) -> Result<RevocationEntry, StoreError> {
        if let Some(existing) = self.index.lookup(&entry.jti) {
            return Ok(existing);
        }
        let jti = entry.jti.clone();
        // Clone the cell out so no map guard is held across an await.
        let cell = Arc::clone(self.in_flight.entry(jti.clone()).or_default().value());
        let _guard = InFlightGuard {
            map: &self.in_flight,
            jti: &jti,
            cell: Arc::clone(&cell),
        };
        cell.get_or_try_init(|| self.write_new(entry))
            .await
            .cloned()
    }

    async fn get(&self, jti: &str) -> Result<Option<RevocationEntry>, StoreError> {
        Ok(self.index.lookup(jti))
    }

    async fn list(&self) -> Result<Arc<Vec<RevocationEntry>>, StoreError> {
        Ok(self.index.snapshot())
    }

    fn version(&self) -> u64 {
        self.index.version()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(jti: &str, reason: &str) -> RevocationEntry {
        RevocationEntry {
            jti: jti.into(),
            revoked_at: 1.5,
            reason: reason.into(),
            revoked_by: "op".into(),
            exp: None,
            kind: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_repeated_revoke_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let store = JsonlRevocationStore::open(&path).unwrap();
        store.revoke(entry("a", "first")).await.unwrap();
        let again = store.revoke(entry("a", "second")).await.unwrap();
        assert_eq!(again.reason, "first");
        assert_eq!(store.writer().lines(), 1);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_revokes_of_one_jti_write_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let store = Arc::new(JsonlRevocationStore::open(&path).unwrap());
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { store.revoke(entry("same", &format!("r{i}"))).await })
            })
            .collect();
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap().unwrap());
        }
        assert!(got.iter().all(|e| *e == got[0]));
        assert_eq!(store.writer().lines(), 1);
        assert!(store.in_flight.is_empty());
        let reopened = JsonlRevocationStore::open(&path).unwrap();
        assert_eq!(reopened.get("same").await.unwrap().as_ref(), Some(&got[0]));
    }

    #[tokio::test]
    async fn the_first_line_for_a_jti_wins_and_jtiless_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(
            &path,
            concat!(
                "{\"jti\":\"a\",\"revoked_at\":1.0,\"reason\":\"one\",\"revoked_by\":\"x\"}\n",
                "{\"jti\":\"\",\"revoked_at\":2.0}\n",
                "{\"jti\":\"a\",\"revoked_at\":3.0,\"reason\":\"two\",\"revoked_by\":\"y\"}\n",
            ),
        )
        .unwrap();
        let store = JsonlRevocationStore::open(&path).unwrap();
        assert_eq!(store.list().await.unwrap().len(), 1);
        assert_eq!(store.get("a").await.unwrap().unwrap().reason, "one");
    }
}
