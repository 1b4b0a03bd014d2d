//! The one JSON Lines writer and loader of the crate.
//!
//! - [`JsonlWriter`] appends lines durably with group commit: one OS thread
//!   owns the file, drains every request already queued, writes the batch
//!   with one `write_all`, calls `sync_data` once and then answers every
//!   caller of the batch. A caller's `append` returns `Ok` only after its
//!   lines are fsync'd. A caller that knows it will append shortly (a mint
//!   whose signature is being computed) can [`announce`](JsonlWriter::announce)
//!   it: while more appends are announced than are queued, a batch waits
//!   for them (at most [`MAX_LINGER`]) so that they share its fsync.
//! - [`load`] and [`load_last`] read a file written by this crate or by
//!   pico-server-auth: blank lines are skipped, a malformed line is skipped
//!   with a warning (line number only, never its contents), and a torn last
//!   line (a crash mid-append) is survived.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::StoreError;

/// Most requests one batch takes from the queue before writing; bounds the
/// batch buffer while still amortizing the fsync.
const MAX_BATCH_REQUESTS: usize = 4096;

/// Longest a batch waits for announced appends before its fsync.
///
/// An fsync costs this machine about 60 us of CPU and takes about 180 us,
/// less than one sign-in's signature, so under load nearly every audited
/// sign-in paid an fsync of its own (a fifth of its CPU). A batch now waits
/// while more appends are announced (mints being signed) than are queued:
/// about half of the mints in flight share each fsync, and the other half
/// keep the CPU busy while it runs (waiting for all of them left the core
/// idle during every fsync). With nothing announced a batch never waits.
pub const MAX_LINGER: Duration = Duration::from_millis(4);

/// Block size of the backwards reader of [`load_last`].
const TAIL_BLOCK: u64 = 64 * 1024;

/// One caller's lines (already `\n`-terminated) and where to send the outcome.
struct Request {
    bytes: Vec<u8>,
    lines: u64,
    reply: Reply,
}

/// Called once with the outcome of an append that is not awaited
/// ([`JsonlWriter::append_then`], [`crate::MintAuditStore::append_then`]).
pub type AppendDone = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Where a request's outcome goes.
enum Reply {
    /// To an awaiting `append`.
    Channel(oneshot::Sender<Result<(), io::Error>>),
    /// To a callback, run on the writer thread (see
    /// [`JsonlWriter::append_then`]).
    Callback(AppendDone),
}

/// Appends announced and not yet queued, and appends queued and not yet
/// taken by the writer thread.
#[derive(Debug, Default)]
struct Pending {
    announced: AtomicUsize,
    queued: AtomicUsize,
}

impl Pending {
    /// Whether a batch holding `taken` requests stops waiting: nothing is
    /// announced, or no more is announced than is already queued (so the
    /// CPU still has the announced mints to work on during the fsync).
    fn enough(&self, taken: usize) -> bool {
        let announced = self.announced.load(Ordering::Acquire);
        announced == 0 || announced <= self.queued.load(Ordering::Acquire) + taken
    }
}

/// Appends announced to a writer and not yet queued.
#[derive(Debug)]
struct Announced {
    /// Shared with the writer thread.
    pending: Arc<Pending>,
    /// Unparked when an announcement ends, to re-check a batch's wait.
    writer: std::thread::Thread,
}

/// An append announced ahead of time (see [`JsonlWriter::announce`]).
///
/// Pass it to [`JsonlWriter::append_announced`], which ends it once the
/// lines are queued; dropping it instead withdraws the announcement. Either
/// way a batch stops waiting for it.
#[derive(Debug, Default)]
#[must_use = "an announcement ends when dropped"]
pub struct Announcement {
    shared: Option<Arc<Announced>>,
}

impl Announcement {
    /// An announcement that announces nothing (for stores without group
    /// commit).
    pub fn none() -> Self {
        Self::default()
    }
}

impl Drop for Announcement {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.pending.announced.fetch_sub(1, Ordering::AcqRel);
            if shared.pending.enough(1) {
                // A batch may be waiting (a spurious wake-up is harmless).
                shared.writer.unpark();
            }
        }
    }
}

/// Counters of a [`JsonlWriter`], shared with its thread.
#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    lines: AtomicU64,
}

/// The error payload of an append refused because an earlier batch failed.
#[derive(Debug)]
struct FailedEarlier(String);

impl std::fmt::Display for FailedEarlier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "JSONL journal failed earlier ({}); refusing writes until reopened",
            self.0
        )
    }
}

impl std::error::Error for FailedEarlier {}

/// What the writer thread writes to: a file in production, a fake in tests.
trait Journal: Write + Send + 'static {
    /// Makes everything written so far durable.
    fn sync(&mut self) -> io::Result<()>;
}

impl Journal for File {
    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}

/// A durable, append-only JSON Lines file with group commit.
///
/// Cheap to share behind an `Arc`; all methods take `&self`. The writer
/// thread ends once the writer is dropped and every queued request is done.
///
/// # Durability
/// `append` returns `Ok` only after `sync_data` succeeded for a batch holding
/// its lines (and, for a file this writer created, after the parent
/// directory was fsync'd at open). Once a write or an fsync has failed, the
/// writer refuses every later append: after a failed fsync the kernel may
/// have dropped the dirty pages, so nothing written afterwards could be
/// promised durable ("fsyncgate"). Reopen the store (restart) to recover.
///
/// An error does not prove the lines are absent: bytes of a failed batch may
/// still reach the disk and load after a restart. For the denylist that errs
/// on the safe side (a failed revoke may turn out revoked).
///
/// # Cancellation
/// Once `append` has queued its lines, dropping its future does not
/// withdraw them: they are written with their batch.
pub struct JsonlWriter {
    tx: mpsc::Sender<Request>,
    announced: Arc<Announced>,
    counters: Arc<Counters>,
    path: PathBuf,
}

impl std::fmt::Debug for JsonlWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlWriter")
            .field("path", &self.path)
            .field("batches", &self.batches())
            .field("lines", &self.lines())
            .finish()
    }
}

impl JsonlWriter {
    /// Opens `path` for appending, creating it (mode 0600 on unix) and its
    /// parent directories when missing, and starts the writer thread.
    ///
    /// This does blocking I/O; call it at start-up (or in `spawn_blocking`).
    ///
    /// # Errors
    /// When the file cannot be opened for writing, or a new file's directory
    /// entry cannot be made durable. Never falls back to memory.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent)?;
        let (mut file, created) = match open_options(true).open(&path) {
            Ok(f) => (f, true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                (open_options(false).open(&path)?, false)
            }
            Err(e) => return Err(e.into()),
        };
        if created {
            sync_dir(&parent)?;
        }
        let torn_tail = ends_without_newline(&mut file)?;
        if torn_tail {
            tracing::warn!(path = %path.display(), "JSONL file does not end with a newline (torn last line?); the next append starts a new line");
        }
        Ok(Self::spawn(file, torn_tail, path, MAX_LINGER)?)
    }

    fn spawn<J: Journal>(
        journal: J,
        torn_tail: bool,
        path: PathBuf,
        linger: Duration,
    ) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        let name = format!(
            "jsonl-writer:{}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let thread_path = path.clone();
        let pending = Arc::new(Pending::default());
        let thread_pending = Arc::clone(&pending);
        // The thread is detached: it ends on its own once every sender is
        // gone and the queue is drained, so dropping a writer never blocks.
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            writer_loop(
                journal,
                torn_tail,
                &rx,
                &thread_pending,
                linger,
                &thread_counters,
                &thread_path,
            );
        })?;
        let announced = Arc::new(Announced {
            pending,
            writer: thread.thread().clone(),
        });
        Ok(Self {
            tx,
            announced,
            counters,
            path,
        })
    }

    /// Appends `lines` (each without its `\n`) in one batch and returns once
    /// they are fsync'd.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the batch could not be written or fsync'd, or
    /// a line contains `\n` (a bug of the caller); [`StoreError::Unavailable`]
    /// when an earlier batch failed or the writer thread is gone.
    pub async fn append(&self, lines: Vec<Vec<u8>>) -> Result<(), StoreError> {
        self.append_announced(lines, Announcement::none()).await
    }

    /// Announces an append that will follow shortly: until the returned
    /// announcement is passed to [`append_announced`] or dropped, it counts
    /// towards the appends a batch about to be fsync'd may wait for (at
    /// most [`MAX_LINGER`]).
    ///
    /// [`append_announced`]: JsonlWriter::append_announced
    pub fn announce(&self) -> Announcement {
        self.announced
            .pending
            .announced
            .fetch_add(1, Ordering::AcqRel);
        Announcement {
            shared: Some(Arc::clone(&self.announced)),
        }
    }

    /// [`append`](JsonlWriter::append), fulfilling `announcement`.
    ///
    /// # Errors
    /// As [`append`](JsonlWriter::append).
    pub async fn append_announced(
        &self,
        lines: Vec<Vec<u8>>,
        announcement: Announcement,
    ) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.queue(&lines, announcement, Reply::Channel(reply))
            .map_err(|(e, _)| e)?;
        match answer.await {
            Ok(outcome) => outcome.map_err(store_error),
            Err(_) => Err(StoreError::Unavailable(
                "JSONL writer thread ended before answering".into(),
            )),
        }
    }

    /// Queues `lines` without waiting (callable from any thread, async
    /// runtime or not) and calls `done` with the outcome once they are
    /// fsync'd or have failed. `done` runs on the writer thread, or on this
    /// one when the lines are refused at once: keep it short, and never
    /// block in it.
    pub fn append_then(&self, lines: Vec<Vec<u8>>, announcement: Announcement, done: AppendDone) {
        if lines.is_empty() {
            done(Ok(()));
            return;
        }
        // On refusal `queue` hands the callback back, so it is called
        // exactly once either way.
        if let Err((e, Reply::Callback(done))) =
            self.queue(&lines, announcement, Reply::Callback(done))
        {
            done(Err(e));
        }
    }

    /// Frames `lines` and sends them to the writer thread; hands `reply`
    /// back with the error when they are refused.
    fn queue(
        &self,
        lines: &[Vec<u8>],
        announcement: Announcement,
        reply: Reply,
    ) -> Result<(), (StoreError, Reply)> {
        let mut bytes = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            if line.contains(&b'\n') {
                let e = StoreError::Io(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a JSON Lines record contains a newline",
                ));
                return Err((e, reply));
            }
            bytes.extend_from_slice(line);
            bytes.push(b'\n');
        }
        self.announced.pending.queued.fetch_add(1, Ordering::AcqRel);
        let sent = self.tx.send(Request {
            bytes,
            lines: lines.len() as u64,
            reply,
        });
        if sent.is_err() {
            self.announced.pending.queued.fetch_sub(1, Ordering::AcqRel);
        }
        // Queued (or refused): a waiting batch need not wait for it any more.
        drop(announcement);
        sent.map_err(|refused| {
            (
                StoreError::Unavailable("JSONL writer thread is gone".into()),
                refused.0.reply,
            )
        })
    }

    /// Serializes each record as one compact JSON line and [`append`]s them.
    ///
    /// [`append`]: JsonlWriter::append
    ///
    /// # Errors
    /// As [`append`](JsonlWriter::append); [`StoreError::Backend`] when a
    /// record cannot be serialized.
    pub async fn append_records<T: Serialize>(&self, records: &[T]) -> Result<(), StoreError> {
        self.append_records_announced(records, Announcement::none())
            .await
    }

    /// [`append_records`](JsonlWriter::append_records), fulfilling
    /// `announcement`.
    ///
    /// # Errors
    /// As [`append_records`](JsonlWriter::append_records).
    pub async fn append_records_announced<T: Serialize>(
        &self,
        records: &[T],
        announcement: Announcement,
    ) -> Result<(), StoreError> {
        let lines = serialize_lines(records)?;
        self.append_announced(lines, announcement).await
    }

    /// How many batches were written and fsync'd successfully.
    pub fn batches(&self) -> u64 {
        self.counters.batches.load(Ordering::Acquire)
    }

    /// How many lines were written and fsync'd successfully.
    pub fn lines(&self) -> u64 {
        self.counters.lines.load(Ordering::Acquire)
    }

    /// The file this writer appends to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Each record as one compact JSON line (without its newline).
pub(crate) fn serialize_lines<T: Serialize>(records: &[T]) -> Result<Vec<Vec<u8>>, StoreError> {
    records
        .iter()
        .map(serde_json::to_vec)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StoreError::Backend(Box::new(e)))
}

/// The error an append reports for the writer thread's outcome.
fn store_error(e: io::Error) -> StoreError {
    if e.get_ref().is_some_and(|inner| inner.is::<FailedEarlier>()) {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Io(e)
    }
}

fn open_options(create_new: bool) -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).append(true);
    if create_new {
        o.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

/// Makes a new directory entry durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Whether the file is non-empty and its last byte is not `\n`.
fn ends_without_newline(file: &mut File) -> io::Result<bool> {
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// Gathers one batch: waits for a first request, then, while more appends
/// are announced than queued, waits (at most `linger`, [`MAX_LINGER`]
/// outside tests), parked: queued requests do not wake the thread, the end
/// of an announcement that makes it enough does. Then takes every request
/// queued. Empty once every sender is gone.
fn gather(rx: &mpsc::Receiver<Request>, pending: &Pending, linger: Duration) -> Vec<Request> {
    let Ok(first) = rx.recv() else {
        return Vec::new();
    };
    pending.queued.fetch_sub(1, Ordering::AcqRel);
    let deadline = Instant::now() + linger;
    while !pending.enough(1) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::park_timeout(left);
    }
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH_REQUESTS {
        match rx.try_recv() {
            Ok(r) => {
                pending.queued.fetch_sub(1, Ordering::AcqRel);
                batch.push(r);
            }
            Err(_) => break,
        }
    }
    batch
}

fn writer_loop<J: Journal>(
    mut journal: J,
    mut torn_tail: bool,
    rx: &mpsc::Receiver<Request>,
    announced: &Pending,
    linger: Duration,
    counters: &Counters,
    path: &Path,
) {
    // Set after the first failed write or fsync; every later batch fails.
    let mut failed: Option<String> = None;
    let mut buf = Vec::new();
    loop {
        let batch = gather(rx, announced, linger);
        if batch.is_empty() {
            return;
        }
        // `Err((kind, message, earlier))`: `earlier` when an earlier batch
        // failed and this one was not even tried.
        let outcome: Result<(), (io::ErrorKind, String, bool)> = match &failed {
            Some(why) => Err((io::ErrorKind::Other, why.clone(), true)),
            None => {
                buf.clear();
                if torn_tail {
                    buf.push(b'\n');
                }
                for r in &batch {
                    buf.extend_from_slice(&r.bytes);
                }
                match journal.write_all(&buf).and_then(|()| journal.sync()) {
                    Ok(()) => {
                        torn_tail = false;
                        let lines = batch.iter().map(|r| r.lines).sum::<u64>();
                        counters.lines.fetch_add(lines, Ordering::AcqRel);
                        counters.batches.fetch_add(1, Ordering::AcqRel);
                        Ok(())
                    }
                    Err(e) => {
                        tracing::error!(
                            path = %path.display(),
                            error = %e,
                            "JSONL append failed; the journal refuses further writes"
                        );
                        failed = Some(e.to_string());
                        Err((e.kind(), e.to_string(), false))
                    }
                }
            }
        };
        for r in batch {
            let answer = match &outcome {
                Ok(()) => Ok(()),
                Err((_, why, true)) => Err(io::Error::other(FailedEarlier(why.clone()))),
                Err((kind, msg, false)) => Err(io::Error::new(*kind, msg.clone())),
            };
            match r.reply {
                // The caller may have stopped waiting; nothing to do then.
                Reply::Channel(tx) => {
                    let _ = tx.send(answer);
                }
                Reply::Callback(done) => {
                    // A panicking callback must not take the writer down.
                    let outcome = answer.map_err(store_error);
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| done(outcome)))
                        .is_err()
                    {
                        tracing::error!(path = %path.display(), "a JSONL append callback panicked");
                    }
                }
            }
        }
        if buf.capacity() > 1 << 20 {
            buf = Vec::new();
        }
    }
}

/// Reads every record of `path`, oldest first.
///
/// A missing file is empty. Blank lines are skipped; a line that is not JSON
/// or not a `T` is skipped with a warning naming its line number; a torn last
/// line is skipped the same way.
///
/// # Errors
/// When the file exists but cannot be read.
pub fn load<T: DeserializeOwned>(path: impl AsRef<Path>) -> Result<Vec<T>, StoreError> {
    let path = path.as_ref();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut reader = BufReader::new(file);
    let mut out = Vec::new();
    let mut line = Vec::new();
    let mut line_no = 0usize;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        line_no += 1;
        let terminated = line.last() == Some(&b'\n');
        if let Some(record) = parse_line(&line, path, LinePos::Number(line_no), !terminated) {
            out.push(record);
        }
    }
    Ok(out)
}

/// Reads the newest `n` records of `path`, oldest first, reading the file
/// backwards from its end in blocks: start-up cost is bounded by what is
/// kept, not by the size of the file.
///
/// Skips what [`load`] skips; warnings count lines from the end of the file.
///
/// # Errors
/// When the file exists but cannot be read.
pub fn load_last<T: DeserializeOwned>(
    path: impl AsRef<Path>,
    n: usize,
) -> Result<Vec<T>, StoreError> {
    let path = path.as_ref();
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut pos = file.metadata()?.len();
    // Newest first while collecting.
    let mut newest_first: VecDeque<T> = VecDeque::new();
    // Bytes from the start of the current block to the first newline seen
    // so far: the tail end of a line whose start lies further back.
    let mut carry: Vec<u8> = Vec::new();
    let mut from_end = 0usize;
    let mut first_segment = true;
    while pos > 0 && newest_first.len() < n {
        let start = pos.saturating_sub(TAIL_BLOCK);
        let len = usize::try_from(pos - start).unwrap_or(usize::MAX);
        let mut buf = vec![0u8; len];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        buf.extend_from_slice(&carry);
        let mut end = buf.len();
        while let Some(i) = buf[..end].iter().rposition(|b| *b == b'\n') {
            if !(first_segment && i + 1 == end) {
                // Not the empty "line" after the file's final newline.
                from_end += 1;
                let segment = &buf[i + 1..end];
                if let Some(r) =
                    parse_line(segment, path, LinePos::FromEnd(from_end), first_segment)
                {
                    newest_first.push_back(r);
                    if newest_first.len() == n {
                        break;
                    }
                }
            }
            first_segment = false;
            end = i;
        }
        carry = buf[..end].to_vec();
        pos = start;
    }
    if pos == 0 && newest_first.len() < n && !carry.is_empty() {
        from_end += 1;
        if let Some(r) = parse_line(&carry, path, LinePos::FromEnd(from_end), first_segment) {
            newest_first.push_back(r);
        }
    }
    Ok(newest_first.into_iter().rev().collect())
}

#[derive(Clone, Copy)]
enum LinePos {
    Number(usize),
    FromEnd(usize),
}

impl std::fmt::Display for LinePos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinePos::Number(n) => write!(f, "line {n}"),
            LinePos::FromEnd(n) => write!(f, "line {n} from the end"),
        }
    }
}

/// Parses one line (with or without its `\n`); `None` for a blank or bad one.
fn parse_line<T: DeserializeOwned>(
    line: &[u8],
    path: &Path,
    pos: LinePos,
    unterminated: bool,
) -> Option<T> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    match serde_json::from_slice(line) {
        Ok(r) => Some(r),
        Err(e) => {
            // The serde error names a column and a category, never the
            // line's contents.
            let what = if unterminated {
                "torn last line (no newline) skipped"
            } else {
                "malformed line skipped"
            };
            tracing::warn!(
                path = %path.display(),
                error = category(&e),
                column = e.column(),
                "{what}: {pos}"
            );
            None
        }
    }
}

/// A short, content-free name for a serde_json error category.
fn category(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "io",
        serde_json::error::Category::Syntax => "syntax",
        serde_json::error::Category::Data => "unexpected fields or types",
        serde_json::error::Category::Eof => "truncated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        id: u32,
    }

    fn recs(ids: &[u32]) -> Vec<Rec> {
        ids.iter().map(|&id| Rec { id }).collect()
    }

    #[tokio::test]
    async fn appends_load_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/a.jsonl");
        let w = JsonlWriter::open(&path).unwrap();
        w.append_records(&recs(&[1, 2])).await.unwrap();
        w.append_records(&recs(&[3])).await.unwrap();
        assert_eq!(w.lines(), 3);
        assert_eq!(load::<Rec>(&path).unwrap(), recs(&[1, 2, 3]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[tokio::test]
    async fn a_line_with_a_newline_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let w = JsonlWriter::open(dir.path().join("a.jsonl")).unwrap();
        let err = w.append(vec![b"{}\n{}".to_vec()]).await.unwrap_err();
        assert!(matches!(err, StoreError::Io(_)));
        assert_eq!(w.batches(), 0);
    }

    #[test]
    fn unopenable_path_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory cannot be opened as the journal.
        assert!(JsonlWriter::open(dir.path()).is_err());
        // Nor can a file below a regular file.
        let f = dir.path().join("file");
        std::fs::write(&f, b"").unwrap();
        assert!(JsonlWriter::open(f.join("x.jsonl")).is_err());
    }

    #[test]
    fn load_skips_blank_malformed_and_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(
            &path,
            b"{\"id\":1}\n\n   \n{oops\n{\"x\":1}\n\xff\xfe\n{\"id\":2}\r\n{\"id\":3}\n{\"id\":",
        )
        .unwrap();
        assert_eq!(load::<Rec>(&path).unwrap(), recs(&[1, 2, 3]));
        assert_eq!(load_last::<Rec>(&path, 2).unwrap(), recs(&[2, 3]));
        assert_eq!(load_last::<Rec>(&path, 100).unwrap(), recs(&[1, 2, 3]));
        assert!(load_last::<Rec>(&path, 0).unwrap().is_empty());
    }

    #[test]
    fn missing_file_loads_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.jsonl");
        assert!(load::<Rec>(&path).unwrap().is_empty());
        assert!(load_last::<Rec>(&path, 5).unwrap().is_empty());
    }

    #[test]
    fn an_unterminated_complete_last_line_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, b"{\"id\":1}\n{\"id\":2}").unwrap();
        assert_eq!(load::<Rec>(&path).unwrap(), recs(&[1, 2]));
        assert_eq!(load_last::<Rec>(&path, 1).unwrap(), recs(&[2]));
    }

    #[test]
    fn load_last_crosses_block_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.jsonl");
        let mut text = Vec::new();
        let pad = "p".repeat(1000);
        for id in 0..500u32 {
            text.extend_from_slice(format!("{{\"id\":{id},\"pad\":\"{pad}\"}}\n").as_bytes());
            if id == 250 {
                text.extend_from_slice(b"not json at all\n");
            }
        }
        std::fs::write(&path, &text).unwrap();
        assert!(text.len() as u64 > 4 * TAIL_BLOCK);
        let all: Vec<Rec> = load(&path).unwrap();
        assert_eq!(all.len(), 500);
        let last: Vec<Rec> = load_last(&path, 300).unwrap();
        assert_eq!(last, recs(&(200..500).collect::<Vec<_>>()));
        let every: Vec<Rec> = load_last(&path, 10_000).unwrap();
        assert_eq!(every, all);
    }

    #[tokio::test]
    async fn appending_after_a_torn_tail_starts_a_new_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, b"{\"id\":1}\n{\"id\":").unwrap();
        let w = JsonlWriter::open(&path).unwrap();
        w.append_records(&recs(&[2])).await.unwrap();
        w.append_records(&recs(&[3])).await.unwrap();
        let text = std::fs::read(&path).unwrap();
        assert_eq!(text, b"{\"id\":1}\n{\"id\":\n{\"id\":2}\n{\"id\":3}\n");
        assert_eq!(load::<Rec>(&path).unwrap(), recs(&[1, 2, 3]));
    }

    /// A journal whose fsync fails on demand.
    struct FlakyJournal {
        fail_sync_at: usize,
        syncs: usize,
        written: Arc<std::sync::Mutex<Vec<u8>>>,
    }

    impl Write for FlakyJournal {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Journal for FlakyJournal {
        fn sync(&mut self) -> io::Result<()> {
            self.syncs += 1;
            if self.syncs == self.fail_sync_at {
                Err(io::Error::other("EIO from fsync"))
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn after_a_failed_fsync_every_later_append_fails() {
        let written = Arc::new(std::sync::Mutex::new(Vec::new()));
        let journal = FlakyJournal {
            fail_sync_at: 2,
            syncs: 0,
            written: Arc::clone(&written),
        };
        let w =
            JsonlWriter::spawn(journal, false, PathBuf::from("fake.jsonl"), MAX_LINGER).unwrap();
        w.append(vec![b"1".to_vec()]).await.unwrap();
        let err = w.append(vec![b"2".to_vec()]).await.unwrap_err();
        assert!(matches!(err, StoreError::Io(_)), "{err:?}");
        for _ in 0..3 {
            let err = w.append(vec![b"3".to_vec()]).await.unwrap_err();
            assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        }
        assert_eq!(w.batches(), 1);
        // Nothing is written after the failure.
        assert_eq!(&*written.lock().unwrap(), b"1\n2\n");
    }

    /// A writer over a journal that never fails, with its own linger.
    fn fake_writer(linger: Duration) -> (JsonlWriter, Arc<std::sync::Mutex<Vec<u8>>>) {
        let written = Arc::new(std::sync::Mutex::new(Vec::new()));
        let journal = FlakyJournal {
            fail_sync_at: 0,
            syncs: 0,
            written: Arc::clone(&written),
        };
        let w = JsonlWriter::spawn(journal, false, PathBuf::from("fake.jsonl"), linger).unwrap();
        (w, written)
    }

    const LONG: Duration = Duration::from_secs(600);

    /// A writer with a ten-minute linger, two appends announced, and a
    /// third (not announced) append spawned, which the batch holds.
    async fn held_batch() -> (
        Arc<JsonlWriter>,
        Arc<std::sync::Mutex<Vec<u8>>>,
        tokio::task::JoinHandle<Result<(), StoreError>>,
        (Announcement, Announcement),
    ) {
        let (w, written) = fake_writer(LONG);
        let w = Arc::new(w);
        let announced = (w.announce(), w.announce());
        let first = tokio::spawn({
            let w = Arc::clone(&w);
            async move { w.append(vec![b"1".to_vec()]).await }
        });
        // A writer that did not wait would have answered by now.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !first.is_finished(),
            "the batch must wait for the announced appends"
        );
        (w, written, first, announced)
    }

    #[tokio::test]
    async fn a_batch_waits_while_more_is_announced_than_queued() {
        // With a ten-minute linger, only an announced append can end the
        // wait. Two announced, one queued: the batch waits; once one of
        // the two is queued (as many queued as still announced), it goes,
        // with both queued appends in one fsync.
        let (w, written, first, (a1, a2)) = held_batch().await;
        w.append_announced(vec![b"2".to_vec()], a1).await.unwrap();
        first.await.unwrap().unwrap();
        assert_eq!(w.batches(), 1);
        assert_eq!(w.lines(), 2);
        assert_eq!(&*written.lock().unwrap(), b"1\n2\n");
        // One announced, nothing queued: an append goes at once.
        tokio::time::timeout(Duration::from_secs(30), w.append(vec![b"3".to_vec()]))
            .await
            .expect("one announced, one queued: no wait")
            .unwrap();
        drop(a2);
    }

    #[tokio::test]
    async fn dropping_an_announcement_releases_a_waiting_batch() {
        let (w, _, first, (a1, a2)) = held_batch().await;
        drop(a1);
        tokio::time::timeout(Duration::from_secs(30), first)
            .await
            .expect("a withdrawn announcement must end the wait")
            .unwrap()
            .unwrap();
        assert_eq!(w.batches(), 1);
        drop(a2);
    }

    #[tokio::test]
    async fn without_announcements_a_batch_does_not_wait() {
        let (w, _) = fake_writer(LONG);
        for i in 0..3u8 {
            tokio::time::timeout(Duration::from_secs(30), w.append(vec![vec![b'0' + i]]))
                .await
                .expect("nothing announced: no wait")
                .unwrap();
        }
        // A fulfilled announcement leaves nothing outstanding either.
        let a = w.announce();
        w.append_announced(vec![b"x".to_vec()], a).await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), w.append(vec![b"y".to_vec()]))
            .await
            .expect("a fulfilled announcement must not be waited for")
            .unwrap();
        assert_eq!(w.batches(), 5);
    }

    #[test]
    fn the_linger_is_bounded() {
        // An announcement that is never fulfilled delays a batch by at most
        // the linger.
        let (w, _) = fake_writer(Duration::from_millis(20));
        let _announced = (w.announce(), w.announce());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), w.append(vec![b"1".to_vec()]))
                .await
                .expect("the linger must end")
                .unwrap();
        });
    }

    #[test]
    fn append_then_calls_back_once_durable_without_a_runtime() {
        let (w, written) = fake_writer(MAX_LINGER);
        let (tx, rx) = std::sync::mpsc::channel();
        let done_tx = tx.clone();
        w.append_then(
            vec![b"1".to_vec()],
            w.announce(),
            Box::new(move |outcome| done_tx.send(outcome.is_ok()).unwrap()),
        );
        assert!(rx.recv_timeout(Duration::from_secs(30)).unwrap());
        assert_eq!(w.batches(), 1);
        assert_eq!(&*written.lock().unwrap(), b"1\n");
        // A refused line is answered at once, on the calling thread.
        w.append_then(
            vec![b"a\nb".to_vec()],
            Announcement::none(),
            Box::new(move |outcome| tx.send(outcome.is_ok()).unwrap()),
        );
        assert!(!rx.try_recv().unwrap());
        assert_eq!(w.batches(), 1);
    }

    #[test]
    fn append_then_reports_a_failed_fsync_and_the_writer_survives_its_callbacks() {
        let journal = FlakyJournal {
            fail_sync_at: 2,
            syncs: 0,
            written: Arc::new(std::sync::Mutex::new(Vec::new())),
        };
        let w =
            JsonlWriter::spawn(journal, false, PathBuf::from("fake.jsonl"), MAX_LINGER).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // A callback that panics is contained.
        let first_tx = tx.clone();
        w.append_then(
            vec![b"1".to_vec()],
            Announcement::none(),
            Box::new(move |outcome| {
                first_tx.send(outcome).unwrap();
                panic!("callback bug");
            }),
        );
        assert!(rx.recv_timeout(Duration::from_secs(30)).unwrap().is_ok());
        // One append at a time, so that each gets a batch of its own.
        let append = |line: &[u8]| {
            let tx = tx.clone();
            w.append_then(
                vec![line.to_vec()],
                Announcement::none(),
                Box::new(move |outcome| tx.send(outcome).unwrap()),
            );
            rx.recv_timeout(Duration::from_secs(30)).unwrap()
        };
        let second = append(b"2");
        assert!(matches!(second, Err(StoreError::Io(_))), "{second:?}");
        let third = append(b"3");
        assert!(
            matches!(third, Err(StoreError::Unavailable(_))),
            "{third:?}"
        );
    }

    #[test]
    fn works_without_a_tokio_runtime_in_the_writer() {
        // The writer thread is a plain OS thread; only the caller awaits.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let w = JsonlWriter::open(&path).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(w.append_records(&recs(&[7]))).unwrap();
        drop(w);
        assert_eq!(load::<Rec>(&path).unwrap(), recs(&[7]));
    }
}
