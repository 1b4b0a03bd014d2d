//! Admin bootstrap: the password check behind `POST /login` (SPEC sections 1,
//! 5, 6, 10).
//!
//! The admin password is stored and checked as argon2 (argon2id for hashes made
//! here). The pieces:
//!
//! - `hash`: PHC helpers ([`hash_password`], [`is_phc_hash`],
//!   [`generate_password`]) and the dummy hash a wrong email is checked
//!   against;
//! - `lockout`: the bounded table of recent failures per (email, client IP)
//!   and per client IP;
//! - `login`: [`AdminLogin`], the check itself, which counts a failure before
//!   the argon2 work and bounds that work globally.
//!
//! Neither the password nor the hash is ever logged.

mod hash;
mod lockout;
mod login;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use hash::{generate_password, hash_password, is_phc_hash};
pub use login::AdminLogin;

use crate::ConfigError;

/// The config field every password error names (SPEC section 5).
const FIELD: &str = "admin_password";

/// Limits on failed logins and on argon2 work. `Default` gives the values
/// documented on each field.
#[derive(Debug, Clone)]
pub struct LoginLimits {
    /// Failed attempts allowed per (email, client IP) within `window_secs`;
    /// once a pair has this many, further attempts for it are refused with
    /// [`crate::Error::TooManyAttempts`] until the oldest ages out. Attempts
    /// from other addresses are not affected. Default 5.
    pub max_failures: u32,
    /// Failed attempts allowed per client IP within `window_secs`, whatever
    /// the email, so one address that rotates emails still gets a bounded
    /// number of argon2 runs. Default 20.
    pub max_failures_per_ip: u32,
    /// The sliding window for `max_failures`, in seconds. Default 900.
    pub window_secs: u64,
    /// argon2 verifications running at once, for all clients together.
    /// Default 2.
    pub max_concurrent_hashes: usize,
    /// Failure-table keys ((email, IP) pairs and IPs) kept in memory. When
    /// full, keys with no failure in the window go first, then those whose
    /// newest failure is oldest; a new key is always tracked, so a full table
    /// locks nobody out. Default 100,000.
    pub max_tracked_keys: usize,
    /// Checks allowed to wait for a hashing slot; past it, a check answers
    /// [`crate::Error::Overloaded`] instead of queueing. Default 64.
    pub max_queued_hashes: usize,
    /// Counts the argon2 verifications run by the checker built with these
    /// limits (clones share the count). Not a limit: a hook for tests and
    /// metrics until [`crate::WalletAuth`] exposes
    /// [`AdminLogin::hashes_computed`].
    #[doc(hidden)]
    pub hashes_computed: HashCounter,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            max_failures: 5,
            max_failures_per_ip: 20,
            window_secs: 900,
            max_concurrent_hashes: 2,
            max_tracked_keys: 100_000,
            max_queued_hashes: 64,
            hashes_computed: HashCounter::default(),
        }
    }
}

impl LoginLimits {
    fn validate(&self) -> Result<(), ConfigError> {
        let checks: [(&'static str, bool); 5] = [
            ("login_limits.max_failures", self.max_failures == 0),
            (
                "login_limits.max_failures_per_ip",
                self.max_failures_per_ip == 0,
            ),
            ("login_limits.window_secs", self.window_secs == 0),
            (
                "login_limits.max_concurrent_hashes",
                self.max_concurrent_hashes == 0,
            ),
            ("login_limits.max_tracked_keys", self.max_tracked_keys == 0),
        ];
        for (field, zero) in checks {
            if zero {
                return Err(ConfigError::invalid(field, "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// A shared count of argon2 verifications; clones count together.
#[doc(hidden)]
#[derive(Clone, Default)]
pub struct HashCounter(Arc<AtomicU64>);

impl HashCounter {
    /// Verifications counted so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add_one(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for HashCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HashCounter").field(&self.get()).finish()
    }
}
