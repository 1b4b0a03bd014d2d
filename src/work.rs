//! A bound on CPU-heavy work (RSA signing, signature verification, gzip),
//! run off the async worker threads.
//!
//! The work runs on a small pool of dedicated threads (one per core) that
//! drain one bounded queue. Under load a pool thread takes job after job
//! without sleeping, so a sign-in costs no thread wake-up on the way to the
//! crypto; the async task that submitted the job is woken once, with the
//! result. (Before, each job went through `spawn_blocking` behind a
//! semaphore of one permit per core: every job waited for the async side to
//! hand the permit on, and the pool thread slept between jobs. A profile
//! under sign-in load put those thread switches at about a tenth of the
//! server's CPU.)

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::Error;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Runs CPU-heavy closures on `workers` dedicated threads, with at most
/// `queue` jobs waiting; past that, [`Error::Overloaded`].
///
/// Clones share the pool. Its threads end once every clone is dropped and
/// the queue is drained.
#[derive(Debug, Clone)]
pub(crate) struct CpuLimiter {
    tx: SyncSender<Job>,
    /// Jobs queued and not yet picked up by a worker
    /// (`wallet_auth_cpu_queue_depth`).
    depth: Arc<AtomicUsize>,
}

impl CpuLimiter {
    /// A pool of `workers` threads (at least one) and a queue of `queue`
    /// jobs (at least one).
    ///
    /// # Errors
    /// When the OS refuses to start a thread.
    pub(crate) fn new(workers: usize, queue: usize) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers.max(1) {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("wallet-auth-cpu-{i}"))
                .spawn(move || worker(&rx))?;
        }
        Ok(Self {
            tx,
            depth: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// One worker per core, and a queue of 256 per core.
    pub(crate) fn for_this_machine() -> std::io::Result<Self> {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Self::new(cores, 256 * cores)
    }

    /// The jobs waiting for a worker, shared with the metrics.
    pub(crate) fn depth(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.depth)
    }

    /// Runs `f` on the pool and returns its result.
    ///
    /// # Errors
    /// [`Error::Overloaded`] when the queue is full; [`Error::Internal`] when
    /// `f` panicked or the pool is gone.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.submit(move || {
            // The caller may have gone (its request was dropped): fine.
            let _ = reply.send(f());
        })?;
        // A panic drops `reply` unsent.
        answer
            .await
            .map_err(|_| Error::Internal("CPU-bound task panicked".into()))
    }

    /// Queues `job` on the pool without waiting for it: the job delivers
    /// its own result (a panic in it is caught and logged, dropping
    /// whatever it would have sent).
    ///
    /// # Errors
    /// [`Error::Overloaded`] when the queue is full; [`Error::Internal`]
    /// when the pool is gone.
    pub(crate) fn submit<F>(&self, job: F) -> Result<(), Error>
    where
        F: FnOnce() + Send + 'static,
    {
        let depth = Arc::clone(&self.depth);
        let job: Job = Box::new(move || {
            depth.fetch_sub(1, Ordering::Relaxed);
            if panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
                tracing::error!("a CPU-bound task panicked");
            }
        });
        // Counted before it is sent, so a worker's decrement never comes first.
        self.depth.fetch_add(1, Ordering::Relaxed);
        let sent = self.tx.try_send(job);
        if sent.is_err() {
            self.depth.fetch_sub(1, Ordering::Relaxed);
        }
        match sent {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Error::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(Error::Internal("CPU pool is gone".into())),
        }
    }
}

fn worker(rx: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job; a poisoned
        // lock cannot happen (jobs run outside it and catch their panics),
        // but would still hold a usable receiver.
        let next = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match next {
            Ok(job) => job(),
            Err(_) => return, // every sender is gone
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_returns_their_results() {
        let cpu = CpuLimiter::new(2, 8).unwrap();
        let name = cpu
            .run(|| std::thread::current().name().map(str::to_string))
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("wallet-auth-cpu-"));
        assert_eq!(cpu.run(|| 6 * 7).await.unwrap(), 42);
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_internal_error_and_the_pool_survives() {
        let cpu = CpuLimiter::new(1, 8).unwrap();
        let err = cpu.run(|| panic!("boom")).await.unwrap_err();
        assert!(matches!(err, Error::Internal(_)), "{err:?}");
        assert_eq!(cpu.run(|| 1).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn submitted_jobs_deliver_their_own_results() {
        let cpu = CpuLimiter::new(1, 8).unwrap();
        let (tx, rx) = oneshot::channel();
        cpu.submit(move || tx.send(7).unwrap()).unwrap();
        assert_eq!(rx.await.unwrap(), 7);
        // A panicking job drops what it would have sent; the pool goes on.
        let (tx, rx) = oneshot::channel::<u8>();
        cpu.submit(move || {
            let _keep = tx;
            panic!("boom");
        })
        .unwrap();
        assert!(rx.await.is_err());
        assert_eq!(cpu.run(|| 1).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_full_queue_is_overloaded() {
        let cpu = CpuLimiter::new(1, 1).unwrap();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = std::sync::mpsc::channel::<()>();
        // Occupy the one worker until released...
        let busy = tokio::spawn({
            let cpu = cpu.clone();
            async move {
                cpu.run(move || {
                    started_tx.send(()).unwrap();
                    gate.recv().unwrap();
                })
                .await
            }
        });
        tokio::task::spawn_blocking(move || started.recv().unwrap())
            .await
            .unwrap();
        // ...fill the one queue slot...
        let queued = tokio::spawn({
            let cpu = cpu.clone();
            async move { cpu.run(|| 2).await }
        });
        for _ in 0..10 {
            tokio::task::yield_now().await; // lets `queued` send its job
        }
        let third = tokio::time::timeout(Duration::from_secs(5), cpu.run(|| 3)).await;
        release.send(()).unwrap();
        assert!(
            matches!(third, Ok(Err(Error::Overloaded))),
            "a full queue must refuse at once: {third:?}"
        );
        busy.await.unwrap().unwrap();
        assert_eq!(queued.await.unwrap().unwrap(), 2);
    }
}
