//! The writer: one OS thread that owns the file, writes each batch with one
//! `write_all` and fsyncs it once.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::oneshot;

use super::batch::{gather, Announced, Announcement, Pending, MAX_LINGER};
use crate::StoreError;

/// One caller's lines (already `\n`-terminated) and where to send the outcome.
pub(super) struct Request {
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

    /// A journal whose fsync fails on demand.
    pub(crate) struct FlakyJournal {
        pub(crate) fail_sync_at: usize,
        pub(crate) syncs: usize,
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
    pub(crate) fn fake_writer(linger: Duration) -> (JsonlWriter, Arc<std::sync::Mutex<Vec<u8>>>) {
        let written = Arc::new(std::sync::Mutex::new(Vec::new()));
        let journal = FlakyJournal {
            fail_sync_at: 0,
            syncs: 0,
            written: Arc::clone(&written),
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
