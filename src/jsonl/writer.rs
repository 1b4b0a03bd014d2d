//! The writer: one OS thread that owns the file, writes each batch with one
//! `write_all` and fsyncs it once; after a failure it reopens the file and
//! tries again with the next batch; between batches it can rewrite the file
//! crash-safely (compaction).

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::oneshot;

use super::batch::{gather, Announced, Announcement, Gathered, Pending, MAX_LINGER};
use crate::ops::histogram::{AtomicHistogram, BATCH_BUCKETS, FSYNC_BUCKETS};
use crate::StoreError;

/// One caller's lines (already `\n`-terminated) and where to send the outcome.
pub(super) struct Request {
    bytes: Vec<u8>,
    lines: u64,
    reply: Reply,
}

/// What the writer thread is asked to do, in queue order.
pub(super) enum Job {
    /// Append lines (batched with the appends queued next to them).
    Append(Request),
    /// Rewrite the file (alone, between batches).
    Rewrite(Rewrite),
}

/// A request to rewrite the file: which lines to keep, where to answer.
pub(super) struct Rewrite {
    keep: KeepLine,
    reply: oneshot::Sender<io::Result<RewriteStats>>,
}

/// Called once with the outcome of an append that is not awaited
/// ([`JsonlWriter::append_then`], [`crate::MintAuditStore::append_then`]).
pub type AppendDone = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Decides, for each line of the file (without its `\n`), what a
/// [`rewrite`](JsonlWriter::rewrite) keeps: `None` drops the line, `Some`
/// keeps it as given (`Cow::Borrowed`) or replaced (`Cow::Owned`, without a
/// `\n`). Called on the writer thread, in file order; blank lines never
/// reach it (they are dropped).
pub type KeepLine = Box<dyn for<'a> FnMut(&'a [u8]) -> Option<Cow<'a, [u8]>> + Send>;

/// What a [`rewrite`](JsonlWriter::rewrite) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RewriteStats {
    /// Lines in the new file.
    pub kept: u64,
    /// Lines (blank ones included) of the old file left out.
    pub dropped: u64,
    /// Size of the old file.
    pub bytes_before: u64,
    /// Size of the new file.
    pub bytes_after: u64,
}

/// Where a request's outcome goes.
enum Reply {
    /// To an awaiting `append`.
    Channel(oneshot::Sender<Result<(), io::Error>>),
    /// To a callback, run on the writer thread (see
    /// [`JsonlWriter::append_then`]).
    Callback(AppendDone),
}

/// Counters of a [`JsonlWriter`], shared with its thread.
#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    lines: AtomicU64,
    failed_batches: AtomicU64,
    reopens: AtomicU64,
    /// The last batch failed (cleared by the next success).
    failing: AtomicBool,
    /// The writer thread has ended (set by a guard, also on a panic).
    ended: AtomicBool,
}

/// Sets [`Counters::ended`] when the writer thread ends, however it ends.
struct EndGuard(Arc<Counters>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.0.ended.store(true, Ordering::Release);
    }
}

/// The group commit of one [`JsonlWriter`] as histograms (SPEC 11's
/// `wallet_auth_fsync_batch_size` and `wallet_auth_fsync_duration_seconds`):
/// recorded per batch on the writer thread, a few atomic adds per fsync.
#[derive(Debug)]
pub struct FsyncStats {
    batch_size: AtomicHistogram,
    duration: AtomicHistogram,
}

impl Default for FsyncStats {
    fn default() -> Self {
        Self {
            batch_size: AtomicHistogram::new(BATCH_BUCKETS),
            duration: AtomicHistogram::new(FSYNC_BUCKETS),
        }
    }
}

impl FsyncStats {
    /// Appends (callers) made durable by each successful fsync.
    pub fn batch_size(&self) -> &AtomicHistogram {
        &self.batch_size
    }

    /// Seconds each batch's write and fsync took (failed ones included).
    pub fn duration(&self) -> &AtomicHistogram {
        &self.duration
    }
}

/// What the writer thread writes to: a file in production, a fake in tests.
pub(super) trait Journal: Write + Send + 'static {
    /// Makes everything written so far durable.
    fn sync(&mut self) -> io::Result<()>;

    /// Starts over after a failed write or fsync: a fresh handle on the
    /// same path. Returns whether the file now ends without a newline (a
    /// torn line from the failed batch).
    fn reopen(&mut self) -> io::Result<bool> {
        Ok(false)
    }

    /// Replaces the file with the lines `keep` keeps, crash-safely; later
    /// writes go to the new file.
    fn rewrite(&mut self, keep: &mut KeepLine) -> io::Result<RewriteStats> {
        let _ = keep;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this journal cannot be rewritten",
        ))
    }
}

/// The journal of a real file.
struct FileJournal {
    file: File,
    path: PathBuf,
    /// The directory holding `path` (`.` for a bare file name).
    dir: PathBuf,
    /// Set when a rename into `dir` is not yet known durable: the next
    /// sync fsyncs the directory first.
    dir_dirty: bool,
}

impl Write for FileJournal {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Journal for FileJournal {
    fn sync(&mut self) -> io::Result<()> {
        if self.dir_dirty {
            sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        self.file.sync_data()
    }

    fn reopen(&mut self) -> io::Result<bool> {
        let (mut file, created) = open_file(&self.path)?;
        if created {
            // The file was gone: its new directory entry must be durable
            // before any line in it is acknowledged.
            self.dir_dirty = true;
        }
        let torn = ends_without_newline(&mut file)?;
        self.file = file;
        Ok(torn)
    }

    fn rewrite(&mut self, keep: &mut KeepLine) -> io::Result<RewriteStats> {
        let tmp = rewrite_temp_path(&self.path);
        remove_if_present(&tmp)?;
        let (new, stats) = match copy_kept(&self.path, &tmp, keep) {
            Ok(done) => done,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        if let Err(e) = std::fs::rename(&tmp, &self.path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        // From here the path names the new file: append to it. Until the
        // rename is durable nothing more is acknowledged (a crash could
        // bring the old file back without the lines appended since).
        self.file = new;
        self.dir_dirty = true;
        sync_dir(&self.dir)?;
        self.dir_dirty = false;
        Ok(stats)
    }
}

/// Writes the lines of `path` that `keep` keeps to a new file at `tmp` and
/// fsyncs it; returns its handle (open for appending) and the counts.
fn copy_kept(path: &Path, tmp: &Path, keep: &mut KeepLine) -> io::Result<(File, RewriteStats)> {
    let mut stats = RewriteStats::default();
    let new = open_options(true).open(tmp)?;
    let mut reader = BufReader::new(File::open(path)?);
    let mut out = BufWriter::new(&new);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        stats.bytes_before += n as u64;
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        let kept = if body.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            keep(body)
        };
        match kept {
            Some(text) if !text.contains(&b'\n') => {
                out.write_all(&text)?;
                out.write_all(b"\n")?;
                stats.kept += 1;
                stats.bytes_after += text.len() as u64 + 1;
            }
            Some(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a rewritten JSON Lines record contains a newline",
                ))
            }
            None => stats.dropped += 1,
        }
    }
    out.flush()?;
    drop(out);
    new.sync_all()?;
    Ok((new, stats))
}

/// Where a [`rewrite`](JsonlWriter::rewrite) of `path` builds the new file:
/// `<file name>.rewrite.tmp` beside it. A file left there by an interrupted
/// rewrite is incomplete; [`JsonlWriter::open`] deletes it.
pub fn rewrite_temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".rewrite.tmp");
    path.with_file_name(name)
}

fn remove_if_present(path: &Path) -> io::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// A durable, append-only JSON Lines file with group commit.
///
/// Cheap to share behind an `Arc`; all methods take `&self`. The writer
/// thread ends once the writer is dropped and every queued request is done.
///
/// # Durability
/// `append` returns `Ok` only after `sync_data` succeeded for a batch holding
/// its lines (and, for a file this writer created, after its directory entry
/// and every directory it created were fsync'd).
///
/// # Failures
/// When a batch cannot be written or fsync'd, each of its callers gets the
/// error, and the writer starts over with the next batch: it opens the file
/// again (a fresh handle, so an fsync error reported on the old one cannot
/// hide behind it), starts a new line if the failed batch left a torn one,
/// and writes. So appends succeed again by themselves once the cause is gone
/// (a full disk freed); nothing is acknowledged that was not fsync'd after
/// the failure. The first failure is logged as an error, the recovery at
/// info; [`failed_batches`](JsonlWriter::failed_batches) counts the gap.
///
/// An error does not prove the lines are absent: bytes of a failed batch may
/// still reach the disk and load after a restart. For the denylist that errs
/// on the safe side (a failed revoke may turn out revoked).
///
/// # Cancellation
/// Once `append` has queued its lines, dropping its future does not
/// withdraw them: they are written with their batch.
pub struct JsonlWriter {
    tx: mpsc::Sender<Job>,
    announced: Arc<Announced>,
    counters: Arc<Counters>,
    stats: Arc<FsyncStats>,
    path: PathBuf,
}

impl std::fmt::Debug for JsonlWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlWriter")
            .field("path", &self.path)
            .field("batches", &self.batches())
            .field("lines", &self.lines())
            .field("failed_batches", &self.failed_batches())
            .finish()
    }
}

impl JsonlWriter {
    /// Opens `path` for appending, creating it (mode 0600 on unix) and its
    /// parent directories when missing, and starts the writer thread. Each
    /// directory it creates is fsync'd into its parent, and a new file into
    /// its directory, before this returns. A file left by an interrupted
    /// [`rewrite`](JsonlWriter::rewrite) ([`rewrite_temp_path`]) is deleted.
    ///
    /// This does blocking I/O; call it at start-up (or in `spawn_blocking`).
    ///
    /// # Errors
    /// When the file cannot be opened for writing, or a new file's directory
    /// entry cannot be made durable. Never falls back to memory.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let dir = dir_of(&path);
        create_dirs_durably(&dir, sync_dir)?;
        let (mut file, created) = open_file(&path)?;
        if created {
            sync_dir(&dir)?;
        }
        let tmp = rewrite_temp_path(&path);
        if remove_if_present(&tmp)? {
            tracing::warn!(path = %tmp.display(), "deleted the incomplete file of an interrupted rewrite");
        }
        let torn_tail = ends_without_newline(&mut file)?;
        if torn_tail {
            tracing::warn!(path = %path.display(), "JSONL file does not end with a newline (torn last line?); the next append starts a new line");
        }
        let journal = FileJournal {
            file,
            path: path.clone(),
            dir,
            dir_dirty: false,
        };
        Ok(Self::spawn(journal, torn_tail, path, MAX_LINGER)?)
    }

    pub(super) fn spawn<J: Journal>(
        journal: J,
        torn_tail: bool,
        path: PathBuf,
        linger: Duration,
    ) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        let stats = Arc::new(FsyncStats::default());
        let thread_stats = Arc::clone(&stats);
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
            let _ended = EndGuard(Arc::clone(&thread_counters));
            let mut state = Thread {
                journal,
                torn_tail,
                broken: false,
                failing: false,
                linger,
                counters: &thread_counters,
                stats: &thread_stats,
                path: &thread_path,
                buf: Vec::new(),
            };
            state.run(&rx, &thread_pending);
        })?;
        let announced = Arc::new(Announced {
            pending,
            writer: thread.thread().clone(),
        });
        Ok(Self {
            tx,
            announced,
            counters,
            stats,
            path,
        })
    }

    /// Appends `lines` (each without its `\n`) in one batch and returns once
    /// they are fsync'd.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the batch could not be written or fsync'd
    /// (the next batch tries again), or a line contains `\n` (a bug of the
    /// caller); [`StoreError::Unavailable`] when the writer thread is gone.
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
            Ok(outcome) => outcome.map_err(StoreError::Io),
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
        let sent = self.tx.send(Job::Append(Request {
            bytes,
            lines: lines.len() as u64,
            reply,
        }));
        if sent.is_err() {
            self.announced.pending.queued.fetch_sub(1, Ordering::AcqRel);
        }
        // Queued (or refused): a waiting batch need not wait for it any more.
        drop(announcement);
        sent.map_err(|refused| {
            let reply = match refused.0 {
                Job::Append(r) => r.reply,
                Job::Rewrite(_) => unreachable_reply(),
            };
            (
                StoreError::Unavailable("JSONL writer thread is gone".into()),
                reply,
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

    /// How many batches failed (each of their callers got the error).
    pub fn failed_batches(&self) -> u64 {
        self.counters.failed_batches.load(Ordering::Acquire)
    }

    /// How many times the file was opened again after a failure.
    pub fn reopens(&self) -> u64 {
        self.counters.reopens.load(Ordering::Acquire)
    }

    /// The writer's fsync histograms.
    pub fn fsync_stats(&self) -> &Arc<FsyncStats> {
        &self.stats
    }

    /// Whether the writer can take appends now (readiness, SPEC 11): its
    /// thread runs, its last batch did not fail, the file's directory is a
    /// directory in which a file can be created (a probe file, created and
    /// removed: root ignores permission bits, not a missing or read-only
    /// directory), and the file is still there. Blocking I/O: call it off
    /// the async threads.
    ///
    /// # Errors
    /// The reason, for `/health/ready` to show.
    pub fn check_health(&self) -> Result<(), String> {
        self.health_probe().check()
    }

    /// What [`check_health`](JsonlWriter::check_health) reads, owned, to run
    /// on a blocking thread.
    pub fn health_probe(&self) -> HealthProbe {
        HealthProbe {
            counters: Arc::clone(&self.counters),
            path: self.path.clone(),
        }
    }
}

/// A [`JsonlWriter`]'s health check, detached from the writer (see
/// [`JsonlWriter::check_health`]).
#[derive(Debug, Clone)]
pub struct HealthProbe {
    counters: Arc<Counters>,
    path: PathBuf,
}

impl HealthProbe {
    /// As [`JsonlWriter::check_health`].
    ///
    /// # Errors
    /// The reason, for `/health/ready` to show.
    pub fn check(&self) -> Result<(), String> {
        if self.counters.ended.load(Ordering::Acquire) {
            return Err("the writer thread has ended".into());
        }
        if self.counters.failing.load(Ordering::Acquire) {
            return Err("the last append failed (the next one retries)".into());
        }
        let dir = dir_of(&self.path);
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("{} is not a directory", dir.display())),
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        }
        let mut probe = self.path.file_name().unwrap_or_default().to_os_string();
        probe.push(".ready-probe");
        let probe = dir.join(probe);
        let made = open_options(false)
            .create(true)
            .truncate(false)
            .open(&probe);
        let _ = std::fs::remove_file(&probe);
        if let Err(e) = made {
            return Err(format!("cannot create a file in {}: {e}", dir.display()));
        }
        match std::fs::metadata(&self.path) {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => Err(format!("{} is not a file", self.path.display())),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }
}

impl JsonlWriter {
    /// Replaces the file with the lines `keep` keeps, crash-safely: the
    /// kept lines go to a new file ([`rewrite_temp_path`]), which is
    /// fsync'd and renamed over the old one, and then the directory is
    /// fsync'd. A crash at any point leaves one complete file (the old or
    /// the new; at worst also the temporary file, which `open` deletes).
    ///
    /// It runs on the writer thread between two batches: every append
    /// queued before it is in the file `keep` reads, every append queued
    /// after it goes to the new file. Appends wait while it runs. It reads
    /// the file once and is meant to be rare (compaction).
    ///
    /// # Errors
    /// [`StoreError::Io`] when the new file cannot be written or renamed
    /// (the old file is then kept and appends go on), or the rename cannot
    /// be made durable (appends then fail until the directory fsync
    /// succeeds); [`StoreError::Unavailable`] when the writer thread is gone.
    pub async fn rewrite(&self, keep: KeepLine) -> Result<RewriteStats, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job::Rewrite(Rewrite { keep, reply }))
            .map_err(|_| StoreError::Unavailable("JSONL writer thread is gone".into()))?;
        match answer.await {
            Ok(outcome) => outcome.map_err(StoreError::Io),
            Err(_) => Err(StoreError::Unavailable(
                "JSONL writer thread ended before answering".into(),
            )),
        }
    }
}

/// A reply for a job that is never an append (keeps `queue`'s error path
/// total without a panic).
fn unreachable_reply() -> Reply {
    Reply::Callback(Box::new(|_| {}))
}

/// A copy of `e` for one of a batch's callers: the OS error code when there
/// is one (so callers can tell ENOSPC from EIO), else its kind and message.
fn copy_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
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

/// Opens `path` for appending, creating it when missing; says whether it
/// was created.
fn open_file(path: &Path) -> io::Result<(File, bool)> {
    match open_options(true).open(path) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Ok((open_options(false).open(path)?, false))
        }
        Err(e) => Err(e),
    }
}

/// The directory holding `path`: its parent, or `.` for a bare file name.
fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Creates `dir` and its missing ancestors, fsyncing (`sync_dir`) each new
/// directory into its parent (so a crash cannot lose a directory, and with
/// it a file whose own fsync succeeded). Returns the directories it
/// created, outermost first.
fn create_dirs_durably(
    dir: &Path,
    mut sync_dir: impl FnMut(&Path) -> io::Result<()>,
) -> io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cur = dir.to_path_buf();
    loop {
        match std::fs::metadata(&cur) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a directory", cur.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(cur.clone());
                match cur.parent() {
                    Some(p) if !p.as_os_str().is_empty() => cur = p.to_path_buf(),
                    _ => break,
                }
            }
            Err(e) => return Err(e),
        }
    }
    let mut created = Vec::new();
    for d in missing.into_iter().rev() {
        match std::fs::create_dir(&d) {
            Ok(()) => {}
            // Made meanwhile by someone else, who may not fsync it: sync anyway.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(e),
        }
        sync_dir(&dir_of(&d))?;
        created.push(d);
    }
    Ok(created)
}

/// Makes the entries of a directory durable.
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

/// The writer thread's state.
struct Thread<'a, J> {
    journal: J,
    /// The file ends without a newline: the next batch starts with one.
    torn_tail: bool,
    /// The last write or fsync failed: reopen before the next one.
    broken: bool,
    /// Batches have been failing since the last success (logs the first
    /// failure and the recovery once).
    failing: bool,
    linger: Duration,
    counters: &'a Counters,
    stats: &'a FsyncStats,
    path: &'a Path,
    buf: Vec<u8>,
}

impl<J: Journal> Thread<'_, J> {
    fn run(&mut self, rx: &mpsc::Receiver<Job>, pending: &Pending) {
        let mut held = None;
        loop {
            match gather(rx, &mut held, pending, self.linger) {
                Gathered::Closed => return,
                Gathered::Appends(batch) => self.write_batch(batch),
                Gathered::Rewrite(rewrite) => self.rewrite(rewrite),
            }
        }
    }

    /// Reopens the journal when the last attempt failed.
    fn ready(&mut self) -> io::Result<()> {
        if !self.broken {
            return Ok(());
        }
        self.torn_tail = self.journal.reopen()?;
        self.broken = false;
        self.counters.reopens.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    fn write_batch(&mut self, batch: Vec<Request>) {
        let started = std::time::Instant::now();
        let outcome = self.ready().and_then(|()| {
            self.buf.clear();
            if self.torn_tail {
                self.buf.push(b'\n');
            }
            for r in &batch {
                self.buf.extend_from_slice(&r.bytes);
            }
            self.journal
                .write_all(&self.buf)
                .and_then(|()| self.journal.sync())
        });
        self.stats.duration.observe(started.elapsed().as_secs_f64());
        self.counters
            .failing
            .store(outcome.is_err(), Ordering::Release);
        match &outcome {
            Ok(()) => {
                self.stats.batch_size.observe(batch.len() as f64);
                self.torn_tail = false;
                let lines = batch.iter().map(|r| r.lines).sum::<u64>();
                self.counters.lines.fetch_add(lines, Ordering::AcqRel);
                self.counters.batches.fetch_add(1, Ordering::AcqRel);
                if std::mem::take(&mut self.failing) {
                    tracing::info!(
                        path = %self.path.display(),
                        failed_batches = self.counters.failed_batches.load(Ordering::Acquire),
                        "JSONL appends succeed again"
                    );
                }
            }
            Err(e) => {
                self.counters.failed_batches.fetch_add(1, Ordering::AcqRel);
                if !self.failing {
                    tracing::error!(
                        path = %self.path.display(),
                        error = %e,
                        "JSONL append failed; its callers get the error and the next batch reopens the file and tries again"
                    );
                } else {
                    tracing::debug!(path = %self.path.display(), error = %e, "JSONL append failed again");
                }
                self.broken = true;
                self.failing = true;
            }
        }
        for r in batch {
            let answer = outcome.as_ref().map(|_| ()).map_err(copy_error);
            match r.reply {
                // The caller may have stopped waiting; nothing to do then.
                Reply::Channel(tx) => {
                    let _ = tx.send(answer);
                }
                Reply::Callback(done) => {
                    // A panicking callback must not take the writer down.
                    let outcome = answer.map_err(StoreError::Io);
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| done(outcome)))
                        .is_err()
                    {
                        tracing::error!(path = %self.path.display(), "a JSONL append callback panicked");
                    }
                }
            }
        }
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::new();
        }
    }

    fn rewrite(&mut self, mut rewrite: Rewrite) {
        let outcome = self
            .ready()
            .and_then(|()| self.journal.rewrite(&mut rewrite.keep));
        match &outcome {
            Ok(stats) => {
                self.torn_tail = false;
                tracing::info!(
                    path = %self.path.display(),
                    kept = stats.kept,
                    dropped = stats.dropped,
                    bytes_before = stats.bytes_before,
                    bytes_after = stats.bytes_after,
                    "JSONL file rewritten"
                );
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "JSONL rewrite failed");
            }
        }
        let _ = rewrite.reply.send(outcome);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::jsonl::load;
    use crate::jsonl::test_support::{recs, Rec};

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

    /// A journal whose fsync fails on demand, and whose reopen can fail a
    /// number of times or report a torn tail.
    #[derive(Default)]
    pub(crate) struct FlakyJournal {
        /// Which fsync (1-based) fails; 0: none.
        pub(crate) fail_sync_at: usize,
        pub(crate) syncs: usize,
        /// How many reopens fail before one succeeds.
        pub(crate) failing_reopens: usize,
        /// What a successful reopen reports (a torn tail).
        pub(crate) torn_after_reopen: bool,
        pub(crate) written: Arc<std::sync::Mutex<Vec<u8>>>,
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
        fn reopen(&mut self) -> io::Result<bool> {
            if self.failing_reopens > 0 {
                self.failing_reopens -= 1;
                return Err(io::Error::other("EIO from open"));
            }
            Ok(self.torn_after_reopen)
        }
    }

    fn flaky_writer(journal: FlakyJournal) -> JsonlWriter {
        JsonlWriter::spawn(journal, false, PathBuf::from("fake.jsonl"), MAX_LINGER).unwrap()
    }

    #[tokio::test]
    async fn after_a_failed_fsync_the_next_batch_reopens_and_succeeds() {
        let written = Arc::new(std::sync::Mutex::new(Vec::new()));
        let w = flaky_writer(FlakyJournal {
            fail_sync_at: 2,
            written: Arc::clone(&written),
            ..Default::default()
        });
        w.append(vec![b"1".to_vec()]).await.unwrap();
        let err = w.append(vec![b"2".to_vec()]).await.unwrap_err();
        assert!(matches!(err, StoreError::Io(_)), "{err:?}");
        assert_eq!((w.failed_batches(), w.reopens()), (1, 0));
        for line in [b"3", b"4"] {
            w.append(vec![line.to_vec()]).await.unwrap();
        }
        assert_eq!(w.batches(), 3);
        assert_eq!((w.failed_batches(), w.reopens()), (1, 1));
        assert_eq!(&*written.lock().unwrap(), b"1\n2\n3\n4\n");
    }

    #[tokio::test]
    async fn while_reopening_fails_appends_fail_then_recover() {
        let written = Arc::new(std::sync::Mutex::new(Vec::new()));
        let w = flaky_writer(FlakyJournal {
            fail_sync_at: 1,
            failing_reopens: 2,
            torn_after_reopen: true,
            written: Arc::clone(&written),
            ..Default::default()
        });
        for _ in 0..3 {
            let err = w.append(vec![b"x".to_vec()]).await.unwrap_err();
            assert!(matches!(err, StoreError::Io(_)), "{err:?}");
        }
        w.append(vec![b"ok".to_vec()]).await.unwrap();
        assert_eq!((w.batches(), w.failed_batches(), w.reopens()), (1, 3, 1));
        // The failed fsync's line stays; the reopened file ended torn, so
        // the first batch after it starts a new line.
        assert_eq!(&*written.lock().unwrap(), b"x\n\nok\n");
    }

    #[tokio::test]
    async fn a_journal_that_cannot_be_rewritten_says_so_and_keeps_appending() {
        let (w, written) = fake_writer(MAX_LINGER);
        w.append(vec![b"1".to_vec()]).await.unwrap();
        let err = w.rewrite(Box::new(|l| Some(l.into()))).await.unwrap_err();
        assert!(matches!(err, StoreError::Io(ref e) if e.kind() == io::ErrorKind::Unsupported));
        w.append(vec![b"2".to_vec()]).await.unwrap();
        assert_eq!(&*written.lock().unwrap(), b"1\n2\n");
    }

    #[test]
    fn new_directories_are_each_fsynced_into_their_parent() {
        let dir = tempfile::tempdir().unwrap();
        let synced = std::sync::Mutex::new(Vec::new());
        let record = |d: &Path| {
            synced.lock().unwrap().push(d.to_path_buf());
            sync_dir(d)
        };
        let at = |d: &str| dir.path().join(d);
        let deep = at("a/b/c");
        let created = create_dirs_durably(&deep, record).unwrap();
        assert_eq!(created, [at("a"), at("a/b"), at("a/b/c")]);
        assert_eq!(
            *synced.lock().unwrap(),
            [dir.path().to_path_buf(), at("a"), at("a/b")]
        );
        assert!(deep.is_dir());
        // Existing directories are left alone.
        synced.lock().unwrap().clear();
        assert!(create_dirs_durably(&deep, record).unwrap().is_empty());
        assert!(synced.lock().unwrap().is_empty());
        assert_eq!(
            create_dirs_durably(&at("a/b/d"), record).unwrap(),
            [at("a/b/d")]
        );
        assert_eq!(*synced.lock().unwrap(), [at("a/b")]);
        // A file in the way is an error.
        std::fs::write(at("f"), b"").unwrap();
        assert!(create_dirs_durably(&at("f/g"), record).is_err());
    }

    /// Keeps lines with an even id, rewrites id 4 as id 40, drops the rest.
    fn keep_even() -> KeepLine {
        Box::new(|line| {
            let rec: Rec = serde_json::from_slice(line).ok()?;
            match rec.id {
                4 => Some(Cow::Owned(b"{\"id\":40}".to_vec())),
                id if id % 2 == 0 => Some(Cow::Borrowed(line)),
                _ => None,
            }
        })
    }

    #[tokio::test]
    async fn a_rewrite_keeps_what_it_is_told_and_appends_go_to_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        // A blank line, a malformed one, a torn tail.
        std::fs::write(
            &path,
            b"{\"id\":1}\n\n{\"id\":2}\nnope\n{\"id\":4}\n{\"id\":",
        )
        .unwrap();
        let w = JsonlWriter::open(&path).unwrap();
        w.append_records(&recs(&[5, 6])).await.unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        let stats = w.rewrite(keep_even()).await.unwrap();
        assert_eq!(stats.kept, 3);
        assert_eq!(stats.dropped, 5);
        assert_eq!(stats.bytes_before, before);
        let text = std::fs::read(&path).unwrap();
        assert_eq!(stats.bytes_after, text.len() as u64);
        assert_eq!(text, b"{\"id\":2}\n{\"id\":40}\n{\"id\":6}\n");
        assert!(!rewrite_temp_path(&path).exists());
        w.append_records(&recs(&[7])).await.unwrap();
        assert_eq!(load::<Rec>(&path).unwrap(), recs(&[2, 40, 6, 7]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_queued_around_a_rewrite_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let w = Arc::new(JsonlWriter::open(&path).unwrap());
        let mut set = tokio::task::JoinSet::new();
        for id in 0..200u32 {
            let appender = Arc::clone(&w);
            set.spawn(async move { appender.append_records(&recs(&[id * 2])).await });
            if id % 50 == 0 {
                let rewriter = Arc::clone(&w);
                set.spawn(async move { rewriter.rewrite(keep_even()).await.map(|_| ()) });
            }
        }
        for r in set.join_all().await {
            r.unwrap();
        }
        let mut ids: Vec<u32> = load::<Rec>(&path).unwrap().iter().map(|r| r.id).collect();
        ids.sort_unstable();
        // id 4 may have been appended after the last rewrite (kept as 4)
        // or before one (rewritten to 40).
        let four = if ids.contains(&4) { 4 } else { 40 };
        let expected: Vec<u32> = {
            let mut e: Vec<u32> = (0..200)
                .map(|i| if i == 2 { four } else { i * 2 })
                .collect();
            e.sort_unstable();
            e
        };
        assert_eq!(ids, expected);
    }

    #[test]
    fn open_deletes_the_leftover_of_an_interrupted_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, b"{\"id\":1}\n{\"id\":2}\n").unwrap();
        // A crash mid-rewrite: the new file half written, never renamed.
        let tmp = rewrite_temp_path(&path);
        assert_eq!(tmp, dir.path().join("a.jsonl.rewrite.tmp"));
        std::fs::write(&tmp, b"{\"id\":2}\n{\"id").unwrap();
        let w = JsonlWriter::open(&path).unwrap();
        assert!(!tmp.exists());
        drop(w);
        assert_eq!(load::<Rec>(&path).unwrap(), recs(&[1, 2]));
    }

    /// A writer over a journal that never fails, with its own linger.
    pub(crate) fn fake_writer(linger: Duration) -> (JsonlWriter, Arc<std::sync::Mutex<Vec<u8>>>) {
        let written = Arc::new(std::sync::Mutex::new(Vec::new()));
        let journal = FlakyJournal {
            written: Arc::clone(&written),
            ..Default::default()
        };
        let w = JsonlWriter::spawn(journal, false, PathBuf::from("fake.jsonl"), linger).unwrap();
        (w, written)
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
        let w = flaky_writer(FlakyJournal {
            fail_sync_at: 2,
            ..Default::default()
        });
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
        // The writer recovered by itself.
        let third = append(b"3");
        assert!(third.is_ok(), "{third:?}");
        assert_eq!((w.batches(), w.failed_batches(), w.reopens()), (2, 1, 1));
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
