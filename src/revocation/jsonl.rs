//! The durable denylist: a JSON Lines file plus an in-memory index.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use dashmap::DashMap;
use tokio::sync::OnceCell;

use super::feed::SeqAllocator;
use super::{FeedRead, MemoryRevocationStore, RevocationEntry, RevocationStore};
use crate::clock::{SharedClock, SystemClock};
use crate::jsonl::{self, JsonlWriter, RewriteStats};
use crate::StoreError;

/// Dead lines (expired, duplicate, malformed) the file must hold, beyond
/// outnumbering the live entries, before a purge compacts it.
pub const COMPACT_MIN_DEAD_LINES: u64 = 1000;

/// The denylist in a JSON Lines file (pico-server-auth's format), indexed in
/// memory.
///
/// Reads (`get`, `list`, `version`) are answered from the index. A new
/// entry enters the index only after its line is fsync'd, so nothing is
/// served that a crash could take back.
///
/// # Expiry and compaction
/// Entries already expired are not loaded. [`purge_expired`] drops expired
/// entries from the index and, when dead lines dominate the file (more than
/// the live entries, and at least [`COMPACT_MIN_DEAD_LINES`]), compacts it
/// with [`compact`](JsonlRevocationStore::compact): the live lines go to a
/// new file, which is fsync'd and renamed over the old one, then the
/// directory is fsync'd; the writer goes on appending to the new file.
/// Bookkeeping lines written whole by older versions (with the subject) are
/// rewritten without it.
///
/// [`purge_expired`]: RevocationStore::purge_expired
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
/// # The change feed
/// Each operator revocation's line carries its feed sequence number,
/// `"seq"` (bookkeeping lines carry none), taken from a hybrid clock before
/// the line is appended (`revocation::feed`). A line without one (written by
/// pico-server-auth) is numbered one past the highest number before it in
/// the file; compaction writes that number into the line. So a cursor means
/// the same entry after a restart, and after a compaction. The feed's
/// position moves only once every lower-numbered write has finished.
///
/// One gap remains: a revoke whose future is dropped (cancelled) after its
/// line was queued may still get written while a waiter writes a second line
/// for the same jti. The loader keeps the first unexpired line for a jti, so
/// the denylist stays correct; only that entry's `revoked_at` may differ
/// from the one the waiter returned.
pub struct JsonlRevocationStore {
    index: MemoryRevocationStore,
    writer: JsonlWriter,
    in_flight: DashMap<String, Arc<OnceCell<RevocationEntry>>>,
    /// Lines the file is believed to hold (live, expired, duplicate).
    lines_in_file: AtomicU64,
    compact_min_dead: u64,
    compacting: AtomicBool,
    seqs: SeqAllocator,
}

/// A stored line: the entry and, for an operator revocation written by this
/// crate, its feed sequence number.
#[derive(serde::Deserialize)]
struct StoredLine {
    #[serde(flatten)]
    entry: RevocationEntry,
    #[serde(default)]
    seq: Option<u64>,
}

/// The feed sequence number of a line (the numbering rule shared by the
/// loader and compaction): its own `seq`, or one past the highest number of
/// the lines before it; `None` for a line outside the feed. Every line with
/// a jti counts, expired and duplicate ones too, so both see one numbering.
fn number_line(line: &StoredLine, last: &mut u64) -> Option<u64> {
    if line.entry.jti.is_empty() || !line.entry.kind.is_served() {
        return None;
    }
    let seq = line.seq.unwrap_or_else(|| last.saturating_add(1));
    *last = (*last).max(seq);
    Some(seq)
}

impl std::fmt::Debug for JsonlRevocationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlRevocationStore")
            .field("writer", &self.writer)
            .field("entries", &self.index.len())
            .field("lines_in_file", &self.lines_in_file.load(Ordering::Relaxed))
            .finish()
    }
}

impl JsonlRevocationStore {
    /// Opens (creating when missing) the file at `path` and loads it.
    ///
    /// Lines without a `jti` and entries already expired are skipped; when
    /// a jti appears twice, the first unexpired line wins. Does blocking
    /// I/O: call it at start-up.
    ///
    /// # Errors
    /// When the file cannot be opened for writing or read. There is no
    /// fallback to memory.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_clock(path, Arc::new(SystemClock))
    }

    /// As [`open`](JsonlRevocationStore::open), reading time from `clock`.
    ///
    /// # Errors
    /// As [`open`](JsonlRevocationStore::open).
    pub fn open_with_clock(path: impl AsRef<Path>, clock: SharedClock) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let writer = JsonlWriter::open(path)?;
        let now = clock.now_secs();
        let index = MemoryRevocationStore::indexed(clock);
        let (mut lines, mut duplicates, mut no_jti, mut expired) = (0u64, 0usize, 0usize, 0usize);
        let mut last_seq = 0u64;
        for line in jsonl::load::<StoredLine>(path)? {
            lines += 1;
            let seq = number_line(&line, &mut last_seq);
            let entry = line.entry;
            if entry.jti.is_empty() {
                no_jti += 1;
            } else if entry.is_expired(now) {
                expired += 1;
            } else if index.insert_at(entry, seq).is_some() {
                duplicates += 1;
            }
        }
        index.advance_feed(last_seq);
        tracing::info!(
            path = %path.display(),
            entries = index.len(),
            duplicates,
            no_jti,
            expired,
            "revocation store loaded"
        );
        Ok(Self {
            index,
            writer,
            in_flight: DashMap::new(),
            lines_in_file: AtomicU64::new(lines),
            compact_min_dead: COMPACT_MIN_DEAD_LINES,
            compacting: AtomicBool::new(false),
            seqs: SeqAllocator::after(last_seq),
        })
    }

    /// Compacts once at least `lines` dead lines outnumber the live entries
    /// (default [`COMPACT_MIN_DEAD_LINES`]).
    #[must_use]
    pub fn with_compaction_threshold(mut self, lines: u64) -> Self {
        self.compact_min_dead = lines;
        self
    }

    /// The writer, for its counters.
    pub fn writer(&self) -> &JsonlWriter {
        &self.writer
    }

    /// Rewrites the file with the entries live at `now` (the first
    /// unexpired line of each jti), crash-safely (see
    /// [`JsonlWriter::rewrite`]). Appends wait while it runs.
    ///
    /// # Errors
    /// As [`JsonlWriter::rewrite`]; the old file is then kept.
    pub async fn compact(&self, now: u64) -> Result<RewriteStats, StoreError> {
        let mut seen: HashSet<String> = HashSet::new();
        let mut last_seq = 0u64;
        let stats = self
            .writer
            .rewrite(Box::new(move |line| {
                let stored: StoredLine = serde_json::from_slice(line).ok()?;
                let seq = number_line(&stored, &mut last_seq);
                let had_seq = stored.seq.is_some();
                let entry = stored.entry;
                if entry.jti.is_empty() || entry.is_expired(now) || seen.contains(&entry.jti) {
                    return None;
                }
                seen.insert(entry.jti.clone());
                if entry.kind.is_bookkeeping()
                    && !(entry.reason.is_empty() && entry.revoked_by.is_empty())
                {
                    // An older line with the subject: rewritten without it.
                    return entry.stored().to_line().ok().map(Cow::Owned);
                }
                if seq.is_some() && !had_seq {
                    // Numbered by position: the number goes into the line,
                    // so dropping the lines before it cannot renumber it.
                    return entry.to_line_with_seq(seq).ok().map(Cow::Owned);
                }
                Some(Cow::Borrowed(line))
            }))
            .await?;
        self.lines_in_file.store(stats.kept, Ordering::Release);
        Ok(stats)
    }

    /// Writes `entry` unless a live entry for its jti is present; returns
    /// the stored entry (`entry` as given when written) and whether this
    /// call wrote it.
    async fn write_new(
        &self,
        entry: RevocationEntry,
    ) -> Result<(RevocationEntry, bool), StoreError> {
        // Re-check under the cell: an earlier writer may have finished
        // (inserted, then left `in_flight`) between our first lookup and
        // our taking the cell.
        if let Some(existing) = self.index.lookup_live(&entry.jti) {
            return Ok((existing, false));
        }
        // A served entry is numbered before its line is written; the feed
        // moves past the number once the write has finished either way
        // (also when this future is dropped).
        let numbered = entry.kind.is_served().then(|| SeqGuard {
            store: self,
            seq: self.seqs.allocate(self.index.clock().now_millis()),
        });
        let seq = numbered.as_ref().map(|g| g.seq);
        self.writer
            .append(vec![entry.to_line_with_seq(seq)?])
            .await?;
        self.lines_in_file.fetch_add(1, Ordering::AcqRel);
        let outcome = match self.index.insert_at(entry.clone(), seq) {
            Some(existing) => (existing, false),
            None => (entry, true),
        };
        drop(numbered);
        Ok(outcome)
    }

    /// The one write for `entry.jti` (shared by concurrent callers); whether
    /// this call is the one that wrote it.
    async fn insert(&self, entry: RevocationEntry) -> Result<(RevocationEntry, bool), StoreError> {
        if let Some(existing) = self.index.lookup_live(&entry.jti) {
            return Ok((existing, false));
        }
        let jti = entry.jti.clone();
        // Clone the cell out so no map guard is held across an await.
        let cell = Arc::clone(self.in_flight.entry(jti.clone()).or_default().value());
        let _guard = InFlightGuard {
            map: &self.in_flight,
            jti: &jti,
            cell: Arc::clone(&cell),
        };
        let mut created = false;
        let stored = cell
            .get_or_try_init(|| async {
                let (stored, wrote) = self.write_new(entry).await?;
                created = wrote;
                Ok::<_, StoreError>(stored)
            })
            .await?
            .clone();
        Ok((stored, created))
    }
}

/// Finishes a feed number when its write ends, however it ends.
struct SeqGuard<'a> {
    store: &'a JsonlRevocationStore,
    seq: u64,
}

impl Drop for SeqGuard<'_> {
    fn drop(&mut self) {
        let watermark = self.store.seqs.finish(self.seq);
        self.store.index.advance_feed(watermark);
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
    async fn ready(&self) -> Result<(), StoreError> {
        crate::ops::check_writer(&self.writer).await
    }

    fn fsync_stats(&self) -> Option<Arc<crate::jsonl::FsyncStats>> {
        Some(Arc::clone(self.writer.fsync_stats()))
    }

    async fn revoke(&self, entry: RevocationEntry) -> Result<RevocationEntry, StoreError> {
        Ok(self.insert(entry).await?.0)
    }

    async fn try_insert(&self, entry: RevocationEntry) -> Result<bool, StoreError> {
        Ok(self.insert(entry).await?.1)
    }

    async fn get(&self, jti: &str) -> Result<Option<RevocationEntry>, StoreError> {
        Ok(self.index.lookup(jti))
    }

    async fn list(&self) -> Result<Arc<Vec<RevocationEntry>>, StoreError> {
        Ok(self.index.snapshot())
    }

    async fn purge_expired(&self, now: u64) -> Result<usize, StoreError> {
        let removed = self.index.purge(now);
        let live = self.index.len() as u64;
        let dead = self
            .lines_in_file
            .load(Ordering::Acquire)
            .saturating_sub(live);
        if dead >= self.compact_min_dead.max(1)
            && dead > live
            && !self.compacting.swap(true, Ordering::AcqRel)
        {
            let outcome = self.compact(now).await;
            self.compacting.store(false, Ordering::Release);
            outcome?;
        }
        Ok(removed)
    }

    fn version(&self) -> u64 {
        self.index.version()
    }

    fn feed_position(&self) -> Option<u64> {
        Some(self.index.position())
    }

    async fn feed_after(&self, after: u64, limit: usize) -> Result<FeedRead, StoreError> {
        Ok(self.index.read_feed(after, limit, true))
    }

    fn feed_is_at(&self, after: u64) -> bool {
        after == self.index.position()
    }

    fn feed_watch(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.index.watch_feed())
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

    fn feed_jtis(read: FeedRead) -> (Vec<(u64, String)>, u64) {
        match read {
            FeedRead::Changes {
                entries, position, ..
            } => (
                entries.into_iter().map(|(s, e)| (s, e.jti)).collect(),
                position,
            ),
            FeedRead::Unknown => panic!("unknown cursor"),
        }
    }

    #[tokio::test]
    async fn feed_numbers_survive_a_restart_and_a_compaction() {
        use crate::clock::ManualClock;
        use crate::RevocationKind;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        // Two lines as pico-server-auth writes them (no seq).
        std::fs::write(
            &path,
            concat!(
                "{\"jti\":\"p1\",\"revoked_at\":1.0,\"reason\":\"\",\"revoked_by\":\"x\"}\n",
                "{\"jti\":\"p2\",\"revoked_at\":2.0,\"reason\":\"\",\"revoked_by\":\"x\",\"exp\":4000000}\n",
            ),
        )
        .unwrap();
        let clock = ManualClock::new(3_000_000_000);
        let store = JsonlRevocationStore::open_with_clock(&path, Arc::new(clock.clone())).unwrap();
        assert_eq!(store.feed_position(), Some(2));
        store.revoke(entry("ours", "r")).await.unwrap();
        store
            .try_insert(RevocationEntry {
                exp: Some(4_000_000),
                kind: RevocationKind::RefreshUsed,
                ..entry("used", "")
            })
            .await
            .unwrap();
        let (all, end) = feed_jtis(store.feed_after(0, 10).await.unwrap());
        assert_eq!(
            all,
            [
                (1, "p1".into()),
                (2, "p2".into()),
                (3_000_000_000_000, "ours".into())
            ]
        );
        assert_eq!(end, 3_000_000_000_000);
        drop(store);

        // A restart numbers every line the same.
        let store = JsonlRevocationStore::open_with_clock(&path, Arc::new(clock.clone())).unwrap();
        assert_eq!(feed_jtis(store.feed_after(0, 10).await.unwrap()).0, all);
        assert_eq!(store.feed_position(), Some(end));

        // p2 and the bookkeeping line leave by compaction; p1 keeps its
        // number, now written in its line, though p2 no longer follows it.
        clock.advance(std::time::Duration::from_secs(1_000_001));
        store.compact(4_000_001).await.unwrap();
        drop(store);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.contains("\"jti\":\"p1\"") && text.contains("\"seq\":1"),
            "{text}"
        );
        let store = JsonlRevocationStore::open_with_clock(&path, Arc::new(clock.clone())).unwrap();
        let (after, _) = feed_jtis(store.feed_after(0, 10).await.unwrap());
        assert_eq!(
            after,
            [(1, "p1".into()), (3_000_000_000_000, "ours".into())]
        );
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
