//! The durable mint audit: a JSON Lines file plus the newest records in
//! memory.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use super::{GroupCommit, MemoryMintAuditStore, MintAuditStore, MintRecord};
use crate::jsonl::{self, Announcement, AppendDone, JsonlWriter};
use crate::StoreError;

/// The mint audit in a JSON Lines file (pico-server-auth's format); the file
/// keeps every record, memory keeps the newest `max_in_memory`.
///
/// Records enter memory only after their line is fsync'd. Records appended
/// concurrently may enter memory in a slightly different order than the
/// file's.
pub struct JsonlMintAuditStore {
    ring: Arc<MemoryMintAuditStore>,
    writer: JsonlWriter,
}

impl std::fmt::Debug for JsonlMintAuditStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlMintAuditStore")
            .field("writer", &self.writer)
            .finish()
    }
}

impl JsonlMintAuditStore {
    /// Opens (creating when missing) the file at `path` and loads its newest
    /// `max_in_memory` records, reading the file backwards from its end so
    /// that start-up does not scan a large file. Does blocking I/O: call it
    /// at start-up.
    ///
    /// # Errors
    /// When the file cannot be opened for writing or read. There is no
    /// fallback to memory.
    pub fn open(path: impl AsRef<Path>, max_in_memory: usize) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let max_in_memory = max_in_memory.max(1);
        let writer = JsonlWriter::open(path)?;
        let records = jsonl::load_last::<MintRecord>(path, max_in_memory)?;
        tracing::info!(
            path = %path.display(),
            loaded = records.len(),
            cap = max_in_memory,
            "mint audit loaded"
        );
        let ring = Arc::new(MemoryMintAuditStore::new(max_in_memory));
        ring.push(records);
        Ok(Self { ring, writer })
    }

    /// The writer, for its counters.
    pub fn writer(&self) -> &JsonlWriter {
        &self.writer
    }
}

#[async_trait]
impl MintAuditStore for JsonlMintAuditStore {
    async fn ready(&self) -> Result<(), StoreError> {
        crate::ops::check_writer(&self.writer).await
    }

    fn fsync_stats(&self) -> Option<Arc<crate::jsonl::FsyncStats>> {
        Some(Arc::clone(self.writer.fsync_stats()))
    }

    async fn append(&self, records: Vec<MintRecord>) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.writer.append_records(&records).await?;
        self.ring.push(records);
        Ok(())
    }

    async fn recent(&self, limit: usize) -> Result<Vec<MintRecord>, StoreError> {
        Ok(self.ring.newest(limit))
    }

    fn group_commit(self: Arc<Self>) -> Option<Arc<dyn GroupCommit>> {
        Some(self)
    }
}

/// The writer's group commit: a batch about to be fsync'd waits briefly for
/// announced records, and the writer thread calls back once they are on
/// disk (and in memory).
impl GroupCommit for JsonlMintAuditStore {
    fn announce(&self) -> Announcement {
        self.writer.announce()
    }

    fn append_then(&self, records: Vec<MintRecord>, announcement: Announcement, done: AppendDone) {
        let lines = match jsonl::serialize_lines(&records) {
            Ok(lines) => lines,
            Err(e) => {
                drop(announcement);
                done(Err(e));
                return;
            }
        };
        let ring = Arc::clone(&self.ring);
        self.writer.append_then(
            lines,
            announcement,
            Box::new(move |outcome| {
                if outcome.is_ok() {
                    ring.push(records);
                }
                done(outcome);
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64) -> MintRecord {
        MintRecord {
            jti: format!("m{i}"),
            sub: "s".into(),
            role: "operator".into(),
            iat: i,
            exp: i + 600,
            kind: "access".into(),
            scope: String::new(),
            agent_id: String::new(),
            session_id: String::new(),
        }
    }

    #[tokio::test]
    async fn the_file_keeps_all_memory_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let store = JsonlMintAuditStore::open(&path, 3).unwrap();
        store.append((0..5).map(rec).collect()).await.unwrap();
        store.append(vec![]).await.unwrap();
        assert_eq!(store.writer().batches(), 1);
        let jtis: Vec<_> = store
            .recent(10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.jti)
            .collect();
        assert_eq!(jtis, ["m4", "m3", "m2"]);
        assert_eq!(jsonl::load::<MintRecord>(&path).unwrap().len(), 5);
    }

    #[test]
    fn append_then_writes_then_remembers_then_calls_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let store = Arc::new(JsonlMintAuditStore::open(&path, 10).unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let seen = Arc::clone(&store);
        let group = Arc::clone(&store)
            .group_commit()
            .expect("the JSONL store has group commit");
        group.append_then(
            vec![rec(1), rec(2)],
            group.announce(),
            Box::new(move |outcome| {
                // By the callback, the records are on disk and in memory.
                let on_disk = jsonl::load::<MintRecord>(seen.writer().path())
                    .unwrap()
                    .len();
                tx.send((outcome.is_ok(), on_disk, seen.ring.newest(10).len()))
                    .unwrap();
            }),
        );
        let got = rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
        assert_eq!(got, (true, 2, 2));
    }
}
