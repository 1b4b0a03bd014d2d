//! The consumer's notion of "now": the system clock, or a settable one for
//! tests (key freshness, the stale windows and token expiry all read it).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time, as a duration since the Unix epoch.
///
/// ```
/// use wallet_auth_consumer::{Clock, SystemClock};
/// assert!(SystemClock.now().as_secs() > 1_600_000_000);
/// ```
pub trait Clock: Send + Sync + 'static {
    /// Now, since the Unix epoch.
    ///
    /// ```
    /// use wallet_auth_consumer::{Clock, ManualClock};
    /// let c = ManualClock::starting_now();
    /// assert_eq!(c.now(), c.now());
    /// ```
    fn now(&self) -> Duration;
}

/// The system clock.
///
/// ```
/// use wallet_auth_consumer::{Clock, SystemClock};
/// let now = SystemClock.now();
/// assert!(now.as_secs() > 0);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
    }
}

/// A clock that stands still until moved: starts at the system time and
/// moves only by [`ManualClock::advance`] or [`ManualClock::set`].
///
/// ```
/// use std::time::Duration;
/// use wallet_auth_consumer::{Clock, ManualClock};
/// let clock = ManualClock::starting_now();
/// let t0 = clock.now();
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(clock.now() - t0, Duration::from_secs(60));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<Duration>>,
}

impl ManualClock {
    /// A clock at the current system time.
    ///
    /// ```
    /// use wallet_auth_consumer::{Clock, ManualClock, SystemClock};
    /// assert!(ManualClock::starting_now().now() <= SystemClock.now());
    /// ```
    pub fn starting_now() -> Self {
        Self {
            now: Arc::new(Mutex::new(SystemClock.now())),
        }
    }

    /// Moves the clock forward by `by`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use wallet_auth_consumer::{Clock, ManualClock};
    /// let c = ManualClock::starting_now();
    /// let t = c.now();
    /// c.advance(Duration::from_secs(1));
    /// assert!(c.now() > t);
    /// ```
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now = now.saturating_add(by);
    }

    /// Sets the clock to `to` since the Unix epoch.
    ///
    /// ```
    /// use std::time::Duration;
    /// use wallet_auth_consumer::{Clock, ManualClock};
    /// let c = ManualClock::starting_now();
    /// c.set(Duration::from_secs(5));
    /// assert_eq!(c.now(), Duration::from_secs(5));
    /// ```
    pub fn set(&self, to: Duration) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}
