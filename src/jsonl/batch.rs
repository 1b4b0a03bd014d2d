//! Group commit: how one batch is gathered, and announcements of appends
//! that will follow shortly, which a batch may wait for so that they share
//! its fsync.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::writer::{Job, Request, Rewrite};

/// Most requests one batch takes from the queue before writing; bounds the
/// batch buffer while still amortizing the fsync.
pub(super) const MAX_BATCH_REQUESTS: usize = 4096;

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

/// Appends announced and not yet queued, and appends queued and not yet
/// taken by the writer thread.
#[derive(Debug, Default)]
pub(super) struct Pending {
    pub(super) announced: AtomicUsize,
    pub(super) queued: AtomicUsize,
}

impl Pending {
    /// Whether a batch holding `taken` requests stops waiting: nothing is
    /// announced, or no more is announced than is already queued (so the
    /// CPU still has the announced mints to work on during the fsync).
    pub(super) fn enough(&self, taken: usize) -> bool {
        let announced = self.announced.load(Ordering::Acquire);
        announced == 0 || announced <= self.queued.load(Ordering::Acquire) + taken
    }
}

/// Appends announced to a writer and not yet queued.
#[derive(Debug)]
pub(super) struct Announced {
    /// Shared with the writer thread.
    pub(super) pending: Arc<Pending>,
    /// Unparked when an announcement ends, to re-check a batch's wait.
    pub(super) writer: std::thread::Thread,
}

/// An append announced ahead of time (see [`JsonlWriter::announce`]).
///
/// Pass it to [`JsonlWriter::append_announced`], which ends it once the
/// lines are queued; dropping it instead withdraws the announcement. Either
/// way a batch stops waiting for it.
#[derive(Debug, Default)]
#[must_use = "an announcement ends when dropped"]
pub struct Announcement {
    pub(super) shared: Option<Arc<Announced>>,
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

/// What [`gather`] took from the queue.
pub(super) enum Gathered {
    /// Appends to write in one batch (at least one).
    Appends(Vec<Request>),
    /// A rewrite, run alone between batches.
    Rewrite(Rewrite),
    /// Every sender is gone and the queue is drained.
    Closed,
}

/// Gathers one batch: waits for a first job, then, while more appends are
/// announced than queued, waits (at most `linger`, [`MAX_LINGER`] outside
/// tests), parked: queued requests do not wake the thread, the end of an
/// announcement that makes it enough does. Then takes every append queued,
/// up to the first rewrite, which is kept in `held` for the next call (so a
/// rewrite sees every append queued before it and none queued after).
pub(super) fn gather(
    rx: &mpsc::Receiver<Job>,
    held: &mut Option<Rewrite>,
    pending: &Pending,
    linger: Duration,
) -> Gathered {
    if let Some(rewrite) = held.take() {
        return Gathered::Rewrite(rewrite);
    }
    let first = match rx.recv() {
        Ok(Job::Append(first)) => first,
        Ok(Job::Rewrite(rewrite)) => return Gathered::Rewrite(rewrite),
        Err(_) => return Gathered::Closed,
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
            Ok(Job::Append(r)) => {
                pending.queued.fetch_sub(1, Ordering::AcqRel);
                batch.push(r);
            }
            Ok(Job::Rewrite(rewrite)) => {
                *held = Some(rewrite);
                break;
            }
            Err(_) => break,
        }
    }
    Gathered::Appends(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonl::writer::tests::fake_writer;
    use crate::jsonl::JsonlWriter;
    use crate::StoreError;

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
}
