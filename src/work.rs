//! A bound on CPU-heavy work (RSA signing, signature verification), run off
//! the async worker threads.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::Error;

/// Runs CPU-heavy closures on the blocking pool, at most `workers` at once,
/// with at most `queue` more waiting; past that, [`Error::Overloaded`].
#[derive(Debug, Clone)]
pub(crate) struct CpuLimiter {
    admission: Arc<Semaphore>,
    workers: Arc<Semaphore>,
}

impl CpuLimiter {
    pub(crate) fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        Self {
            admission: Arc::new(Semaphore::new(workers + queue)),
            workers: Arc::new(Semaphore::new(workers)),
        }
    }

    /// One worker per core, and a queue of 256 per core.
    pub(crate) fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Self::new(cores, 256 * cores)
    }

    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let _admitted = Arc::clone(&self.admission)
            .try_acquire_owned()
            .map_err(|_| Error::Overloaded)?;
        let _worker = Arc::clone(&self.workers)
            .acquire_owned()
            .await
            .map_err(|_| Error::Overloaded)?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))
    }
}
