//! The background sweep: expired challenges, denylist entries past their
//! token's `exp`, and idle rate-limit buckets.
//!
//! It is started by [`build`](crate::WalletAuthBuilder::build) when that
//! runs inside a tokio runtime, or else by the first challenge issued inside
//! one: checking costs `issue_challenge` one atomic load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Inner;

pub(super) struct Sweeper {
    started: AtomicBool,
    every: Duration,
}

impl Sweeper {
    pub(super) fn new(every: Duration) -> Self {
        Self {
            started: AtomicBool::new(false),
            every,
        }
    }

    /// Starts the sweep of `inner`'s challenge store unless it runs already;
    /// does nothing outside a tokio runtime (a later call will try again).
    pub(super) fn ensure_started(&self, inner: &Arc<Inner>) {
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self
            .started
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            handle.spawn(sweep(Arc::downgrade(inner), self.every));
        }
    }

    /// Whether the sweep has been started.
    #[cfg(test)]
    pub(super) fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }
}

/// Purges expired challenges every `every` until the last handle is dropped.
async fn sweep(weak: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = weak.upgrade() else { break };
        match inner.challenges.purge_expired().await {
            Ok(n) if n > 0 => tracing::debug!(purged = n, "swept expired challenges"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "challenge sweep failed"),
        }
        // Denylist entries past their token's exp protect nothing.
        match inner
            .revocations
            .purge_expired(inner.clock.now_secs())
            .await
        {
            Ok(n) if n > 0 => tracing::debug!(purged = n, "purged expired denylist entries"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "denylist purge failed"),
        }
        // Rate-limit buckets that have refilled are forgotten.
        inner.limits.sweep();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;
    use tokio::sync::mpsc;

    use crate::challenge::{ChallengeMeta, ChallengeStore, MemoryChallengeStore};
    use crate::{AuthConfig, SigningKey, StoreError, WalletAuth};

    /// A memory store that reports each sweep on a channel.
    struct Watched {
        store: MemoryChallengeStore,
        sweeps: mpsc::UnboundedSender<()>,
    }

    #[async_trait]
    impl ChallengeStore for Watched {
        async fn issue_with(
            &self,
            address: &str,
            ttl: Duration,
            meta: ChallengeMeta,
        ) -> Result<String, StoreError> {
            self.store.issue_with(address, ttl, meta).await
        }
        async fn take(
            &self,
            address: &str,
            nonce: &str,
        ) -> Result<Option<ChallengeMeta>, StoreError> {
            self.store.take(address, nonce).await
        }
        async fn purge_expired(&self) -> Result<usize, StoreError> {
            let _ = self.sweeps.send(());
            self.store.purge_expired().await
        }
    }

    fn build() -> (WalletAuth, mpsc::UnboundedReceiver<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let store = Watched {
            store: MemoryChallengeStore::new(16),
            sweeps: tx,
        };
        let auth = WalletAuth::builder(AuthConfig {
            allow_memory_revocations: true,
            ..AuthConfig::default()
        })
        .with_signing_key(
            SigningKey::from_pem(include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/fixtures/keys/test-rsa-2048.pem"
            )))
            .unwrap(),
        )
        .with_challenge_store(Arc::new(store))
        .with_sweep_interval(Duration::from_millis(10))
        .build()
        .unwrap();
        (auth, rx)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn built_outside_a_runtime_it_sweeps_from_the_first_challenge() {
        let (auth, mut sweeps) = build();
        assert!(!auth.inner.sweeper.is_started());
        runtime().block_on(async {
            // Not yet: nothing has been issued inside a runtime.
            tokio::task::yield_now().await;
            assert!(sweeps.try_recv().is_err());
            auth.issue_challenge("addr").await.unwrap();
            assert!(auth.inner.sweeper.is_started());
            // The interval's first tick is immediate; the timeout only
            // bounds a failure.
            let swept = tokio::time::timeout(Duration::from_secs(10), sweeps.recv()).await;
            assert_eq!(swept, Ok(Some(())), "the sweeper never ran");
        });
    }

    #[test]
    fn built_inside_a_runtime_it_sweeps_at_once() {
        runtime().block_on(async {
            let (auth, mut sweeps) = build();
            assert!(auth.inner.sweeper.is_started());
            let swept = tokio::time::timeout(Duration::from_secs(10), sweeps.recv()).await;
            assert_eq!(swept, Ok(Some(())), "the sweeper never ran");
        });
    }
}
