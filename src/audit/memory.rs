//! The in-memory mint audit: a bounded ring of the newest records.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{GroupCommit, MintAuditStore, MintRecord};
use crate::jsonl::{Announcement, AppendDone};
use crate::StoreError;

/// The newest `cap` mint records in memory; also the window the JSON Lines
/// store keeps.
#[derive(Debug)]
pub struct MemoryMintAuditStore {
    ring: Mutex<VecDeque<MintRecord>>,
    cap: usize,
}

impl MemoryMintAuditStore {
    /// A ring holding the newest `cap` records.
    pub fn new(cap: usize) -> Self {
        Self {
            ring: Mutex::new(VecDeque::with_capacity(cap.min(1024))),
            cap: cap.max(1),
        }
    }

    /// Adds records without any I/O, dropping the oldest past the cap.
    pub fn push(&self, records: impl IntoIterator<Item = MintRecord>) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        for r in records {
            if ring.len() == self.cap {
                ring.pop_front();
            }
            ring.push_back(r);
        }
    }

    /// The newest `limit` records, newest first.
    pub fn newest(&self, limit: usize) -> Vec<MintRecord> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter().rev().take(limit).cloned().collect()
    }
}

#[async_trait]
impl MintAuditStore for MemoryMintAuditStore {
    async fn append(&self, records: Vec<MintRecord>) -> Result<(), StoreError> {
        self.push(records);
        Ok(())
    }

    async fn recent(&self, limit: usize) -> Result<Vec<MintRecord>, StoreError> {
        Ok(self.newest(limit))
    }

    fn group_commit(self: Arc<Self>) -> Option<Arc<dyn GroupCommit>> {
        Some(self)
    }
}

/// Nothing to batch: the CPU thread that signed pushes the records and
/// answers at once, so the request's task is woken once.
impl GroupCommit for MemoryMintAuditStore {
    fn announce(&self) -> Announcement {
        Announcement::none()
    }

    fn append_then(&self, records: Vec<MintRecord>, announcement: Announcement, done: AppendDone) {
        self.push(records);
        drop(announcement);
        done(Ok(()));
    }
}
