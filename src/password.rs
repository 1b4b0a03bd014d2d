//! Admin bootstrap: the password check behind `POST /login` (SPEC sections 1, 5, 6).
//!
//! The admin password is stored and checked as argon2 (argon2id for hashes made
//! here). A check:
//!
//! 1. refuses at once, before any hashing, when the email or the client IP has
//!    had too many recent failures ([`LoginLimits`]), so a locked-out attacker
//!    costs no CPU;
//! 2. compares the email in constant time (SHA-256 digests, so the length does
//!    not leak either);
//! 3. always runs exactly one argon2 verification, against the admin hash or,
//!    for a wrong email, against a dummy hash with the same parameters, so a
//!    wrong email and a wrong password get the same answer in similar time;
//! 4. runs argon2 on tokio's blocking pool, at most
//!    [`LoginLimits::max_concurrent_hashes`] at once, and answers
//!    [`Error::Overloaded`] rather than queueing without bound.
//!
//! Neither the password nor the hash is ever logged.

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::password_hash::{CustomizedPasswordHasher, PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};
use base64::Engine as _;
use dashmap::DashMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::{ConfigError, Error};

/// The config field every password error names (SPEC section 5).
const FIELD: &str = "admin_password";

/// Hashes a password as an argon2id PHC string (`$argon2id$v=19$...`) with the
/// argon2 crate's default parameters and a random salt. Used at start-up and by
/// the standalone server to turn a plain `admin_password` into a hash.
///
/// This is slow on purpose (tens of milliseconds): call it at start-up or from a
/// blocking context, not on an async worker thread.
///
/// # Errors
/// [`ConfigError::Invalid`] naming `admin_password` when `plain` is empty or
/// the hashing fails (for example, no OS randomness for the salt).
pub fn hash_password(plain: &str) -> Result<String, ConfigError> {
    if plain.is_empty() {
        return Err(ConfigError::invalid(FIELD, "must not be empty"));
    }
    Argon2::default()
        .hash_password(plain.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| ConfigError::invalid(FIELD, format!("argon2 hashing failed: {e}")))
}

/// Whether `s` is a PHC argon2 string (`$argon2id$...`, `$argon2i$...` or
/// `$argon2d$...`) that parses, with a salt, an output and parameters argon2
/// accepts, i.e. one that [`AdminLogin`] can verify against.
pub fn is_phc_hash(s: &str) -> bool {
    parse_argon2_phc(s).is_ok()
}

/// Generates a random admin password for a first start: 256 bits from the OS
/// RNG as unpadded URL-safe base64 (43 characters).
///
/// # Panics
/// If the operating system's random number generator fails, which leaves no
/// safe way to make a password.
#[allow(clippy::expect_used)]
pub fn generate_password() -> String {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut()).expect("OS random number generator unavailable");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref())
}

/// Parses `s` as an argon2 PHC string that can be verified against.
fn parse_argon2_phc(s: &str) -> Result<PasswordHash, String> {
    let hash = PasswordHash::new(s).map_err(|e| format!("not a PHC string: {e}"))?;
    Algorithm::new(hash.algorithm.as_str())
        .map_err(|_| "not an argon2 hash (want $argon2id$, $argon2i$ or $argon2d$)".to_string())?;
    if let Some(v) = hash.version {
        Version::try_from(v).map_err(|e| format!("unsupported argon2 version: {e}"))?;
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err("PHC string has no salt or no hash output".to_string());
    }
    Params::try_from(&hash).map_err(|e| format!("invalid argon2 parameters: {e}"))?;
    Ok(hash)
}

/// Limits on failed logins and on argon2 work. `Default` gives the values
/// documented on each field.
#[derive(Debug, Clone)]
pub struct LoginLimits {
    /// Failed attempts allowed per email and per client IP within
    /// `window_secs`; once a key has this many, further attempts for it are
    /// refused with [`Error::TooManyAttempts`] until the oldest ages out.
    /// Default 5.
    pub max_failures: u32,
    /// The sliding window for `max_failures`, in seconds. Default 900.
    pub window_secs: u64,
    /// argon2 verifications running at once. Default 2.
    pub max_concurrent_hashes: usize,
    /// Rate-limit keys (emails and client IPs) kept in memory. When full, keys
    /// with no failure in the window are dropped (at most once a second); if
    /// it is still full, a new key is not tracked. The configured admin email
    /// is always tracked, so guessing its password stays limited. Default
    /// 100,000.
    pub max_tracked_keys: usize,
    /// Checks allowed to wait for a hashing slot; past it, a check answers
    /// [`Error::Overloaded`] instead of queueing. Default 64.
    pub max_queued_hashes: usize,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window_secs: 900,
            max_concurrent_hashes: 2,
            max_tracked_keys: 100_000,
            max_queued_hashes: 64,
        }
    }
}

impl LoginLimits {
    fn validate(&self) -> Result<(), ConfigError> {
        let checks: [(&'static str, bool); 4] = [
            ("login_limits.max_failures", self.max_failures == 0),
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

/// A rate-limit key. Emails are kept as SHA-256 digests, so a key costs the
/// same whatever the email's length. IPv6 clients are keyed by their /64, the
/// block one subscriber usually holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum LimitKey {
    Email([u8; 32]),
    Ip(IpAddr),
}

impl LimitKey {
    fn ip(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                LimitKey::Ip(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
            v4 => LimitKey::Ip(v4),
        }
    }
}

fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// The bootstrap admin's credentials and the login rate limiter.
///
/// Cheap to share behind an `Arc`; all methods take `&self`.
pub struct AdminLogin {
    email: String,
    email_digest: [u8; 32],
    admin_hash: Arc<PasswordHash>,
    /// Same algorithm, version and parameters as `admin_hash`, for a random
    /// password nobody knows; verified against when the email is wrong.
    dummy_hash: Arc<PasswordHash>,
    limits: LoginLimits,
    /// Failure times per key, newest last, at most `max_failures` each.
    failures: DashMap<LimitKey, VecDeque<u64>>,
    last_sweep_secs: AtomicU64,
    hash_slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
}

impl fmt::Debug for AdminLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminLogin")
            .field("email", &self.email)
            .field("admin_hash", &"<redacted>")
            .field("limits", &self.limits)
            .field("tracked_keys", &self.failures.len())
            .finish()
    }
}

impl AdminLogin {
    /// Builds the checker for `email`.
    ///
    /// `admin_password` may be an argon2 PHC hash (see [`is_phc_hash`]), used
    /// as is, or a plain password, hashed here with [`hash_password`] and a
    /// warning suggesting a hash in the config instead. A dummy hash with the
    /// same parameters is computed too, so this runs argon2 once or twice:
    /// call it at start-up, not on an async worker thread.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `admin_password` when it is empty, when
    /// it starts like a PHC hash (`$argon2...`, or any `$id$...` PHC string)
    /// but is not a usable argon2 hash, or when hashing fails; naming
    /// `admin_email` when `email` is empty; naming the `login_limits` field
    /// when a limit is zero.
    pub fn new(
        email: &str,
        admin_password: &str,
        limits: LoginLimits,
    ) -> Result<Self, ConfigError> {
        if admin_password.is_empty() {
            return Err(ConfigError::invalid(
                FIELD,
                "required when auto_create_admin is on",
            ));
        }
        if email.is_empty() {
            return Err(ConfigError::invalid("admin_email", "must not be empty"));
        }
        limits.validate()?;

        let admin_hash = if admin_password.starts_with("$argon2") {
            parse_argon2_phc(admin_password).map_err(|why| ConfigError::invalid(FIELD, why))?
        } else if admin_password.starts_with('$') && PasswordHash::new(admin_password).is_ok() {
            return Err(ConfigError::invalid(
                FIELD,
                "a PHC hash of an unsupported algorithm; use argon2id",
            ));
        } else {
            tracing::warn!(
                "admin_password is a plain password; configure an argon2id PHC hash instead \
                 (see wallet_auth::password::hash_password)"
            );
            let phc = hash_password(admin_password)?;
            parse_argon2_phc(&phc).map_err(|why| ConfigError::invalid(FIELD, why))?
        };
        let dummy_hash = dummy_like(&admin_hash)?;

        Ok(Self {
            email: email.to_owned(),
            email_digest: sha256(email),
            admin_hash: Arc::new(admin_hash),
            dummy_hash: Arc::new(dummy_hash),
            hash_slots: Arc::new(Semaphore::new(limits.max_concurrent_hashes)),
            limits,
            failures: DashMap::new(),
            last_sweep_secs: AtomicU64::new(0),
            waiting: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// [`AdminLogin::new`] from the config's `admin_email` and
    /// `admin_password`.
    ///
    /// # Errors
    /// As [`AdminLogin::new`]; an unset `admin_password` is
    /// [`ConfigError::Invalid`] naming `admin_password`.
    pub fn from_config(
        config: &crate::AuthConfig,
        limits: LoginLimits,
    ) -> Result<Self, ConfigError> {
        let password = config.admin_password.as_deref().unwrap_or_default();
        Self::new(&config.admin_email, password, limits)
    }

    /// The admin email this checker accepts.
    pub fn email(&self) -> &str {
        &self.email
    }

    /// Checks credentials. `now_secs` comes from the caller's clock
    /// ([`crate::clock::Clock`]) so tests can move time.
    ///
    /// # Errors
    /// - [`Error::TooManyAttempts`] when the email or the client IP already has
    ///   [`LoginLimits::max_failures`] failures in the window, with the seconds
    ///   until the oldest of them ages out (at least 1); no hashing is done;
    /// - [`Error::Overloaded`] when too many checks already wait for a hashing
    ///   slot;
    /// - [`Error::InvalidCredentials`] for a wrong email or a wrong password
    ///   alike (counted as a failure for both the email and the IP);
    /// - [`Error::Internal`] if the hashing task fails.
    ///
    /// A success clears the failures of that email and that IP. With no
    /// `client_ip` (not known to the caller) only the email is limited.
    ///
    /// # Security
    /// The password and the hash are never logged. The email is compared in
    /// constant time and one argon2 verification runs whether or not it
    /// matches.
    pub async fn check(
        &self,
        email: &str,
        password: &str,
        client_ip: Option<IpAddr>,
        now_secs: u64,
    ) -> Result<(), Error> {
        let email_digest = sha256(email);
        let keys = [
            Some(LimitKey::Email(email_digest)),
            client_ip.map(LimitKey::ip),
        ];

        // 1. Refuse locked-out keys before spending any CPU.
        let retry_after = keys
            .iter()
            .flatten()
            .filter_map(|k| self.retry_after(k, now_secs))
            .max();
        if let Some(retry_after_secs) = retry_after {
            return Err(Error::TooManyAttempts { retry_after_secs });
        }

        // 2. Constant-time email comparison; pick the hash to verify against.
        let email_ok = email_digest.ct_eq(&self.email_digest);
        let target = if bool::from(email_ok) {
            Arc::clone(&self.admin_hash)
        } else {
            Arc::clone(&self.dummy_hash)
        };

        // 3. One argon2 verification, off the async workers, bounded.
        let password_ok = self.verify_off_thread(password, target).await?;

        if bool::from(email_ok & subtle::Choice::from(u8::from(password_ok))) {
            for key in keys.iter().flatten() {
                self.clear_failures(key);
            }
            Ok(())
        } else {
            for key in keys.iter().flatten() {
                self.record_failure(*key, now_secs);
            }
            Err(Error::InvalidCredentials)
        }
    }

    /// Runs one verification on the blocking pool, holding a hashing slot
    /// until it ends (even if the caller is dropped meanwhile).
    async fn verify_off_thread(
        &self,
        password: &str,
        target: Arc<PasswordHash>,
    ) -> Result<bool, Error> {
        let permit = match Arc::clone(&self.hash_slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let _queued = QueueTicket::take(&self.waiting, self.limits.max_queued_hashes)
                    .ok_or(Error::Overloaded)?;
                Arc::clone(&self.hash_slots)
                    .acquire_owned()
                    .await
                    .map_err(|_| Error::Internal("password hashing slots closed".into()))?
            }
        };
        let password = zeroize::Zeroizing::new(password.as_bytes().to_vec());
        let outcome = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            Argon2::default().verify_password(&password, &*target)
        })
        .await;
        match outcome {
            Ok(Ok(())) => Ok(true),
            Ok(Err(argon2::password_hash::Error::PasswordInvalid)) => Ok(false),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "argon2 verification failed");
                Err(Error::Internal("password verification failed".into()))
            }
            Err(e) => {
                tracing::error!(error = %e, "password verification task failed");
                Err(Error::Internal("password verification task failed".into()))
            }
        }
    }

    /// Seconds until `key` may try again, or `None` if it is not locked out.
    fn retry_after(&self, key: &LimitKey, now: u64) -> Option<u64> {
        let mut entry = self.failures.get_mut(key)?;
        let window = self.limits.window_secs;
        while entry
            .front()
            .is_some_and(|&t| t.saturating_add(window) <= now)
        {
            entry.pop_front();
        }
        if entry.len() < self.max_failures() {
            return None;
        }
        let oldest = *entry.front()?;
        let wait = oldest.saturating_add(window).saturating_sub(now);
        Some(wait.clamp(1, window))
    }

    fn max_failures(&self) -> usize {
        usize::try_from(self.limits.max_failures).unwrap_or(usize::MAX)
    }

    fn record_failure(&self, key: LimitKey, now: u64) {
        if !self.failures.contains_key(&key) && !self.make_room(&key, now) {
            return;
        }
        let max = self.max_failures();
        let window = self.limits.window_secs;
        let mut entry = self.failures.entry(key).or_default();
        while entry
            .front()
            .is_some_and(|&t| t.saturating_add(window) <= now)
        {
            entry.pop_front();
        }
        entry.push_back(now);
        // Only the newest `max` matter: the lockout ends when the oldest of
        // them ages out.
        while entry.len() > max {
            entry.pop_front();
        }
    }

    /// Whether a new key may be tracked; sweeps keys with no live failure
    /// when the map is full (at most once a second, so a flood of new keys
    /// cannot make every request scan the map).
    fn make_room(&self, key: &LimitKey, now: u64) -> bool {
        if self.is_admin_key(key) || self.failures.len() < self.limits.max_tracked_keys {
            return true;
        }
        let last = self.last_sweep_secs.load(Ordering::Relaxed);
        if last != now
            && self
                .last_sweep_secs
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let window = self.limits.window_secs;
            self.failures
                .retain(|_, v| v.back().is_some_and(|&t| t.saturating_add(window) > now));
            if self.failures.len() < self.limits.max_tracked_keys {
                return true;
            }
            tracing::warn!(
                max_tracked_keys = self.limits.max_tracked_keys,
                "login rate limiter full; new emails and IPs are not tracked until entries expire"
            );
        }
        false
    }

    fn is_admin_key(&self, key: &LimitKey) -> bool {
        matches!(key, LimitKey::Email(d) if d == &self.email_digest)
    }

    fn clear_failures(&self, key: &LimitKey) {
        self.failures.remove(key);
    }
}

/// A place in the queue for a hashing slot; gives it back on drop, so a
/// cancelled check does not leak it.
struct QueueTicket<'a>(&'a AtomicUsize);

impl<'a> QueueTicket<'a> {
    fn take(waiting: &'a AtomicUsize, max: usize) -> Option<Self> {
        waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| QueueTicket(waiting))
    }
}

impl Drop for QueueTicket<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A hash of a random, discarded password with the same algorithm, version and
/// parameters as `like`, so verifying against it costs the same.
fn dummy_like(like: &PasswordHash) -> Result<PasswordHash, ConfigError> {
    let params = Params::try_from(like)
        .map_err(|e| ConfigError::invalid(FIELD, format!("invalid argon2 parameters: {e}")))?;
    let password = generate_password();
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)
        .map_err(|e| ConfigError::invalid(FIELD, format!("no randomness for a salt: {e}")))?;
    Argon2::default()
        .hash_password_customized(
            password.as_bytes(),
            &salt,
            Some(like.algorithm.as_str()),
            like.version,
            params,
        )
        .map_err(|e| ConfigError::invalid(FIELD, format!("argon2 hashing failed: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const EMAIL: &str = "admin@pico.local";
    const PASSWORD: &str = "correct horse battery staple";
    const T0: u64 = 1_700_000_000;

    /// A PHC argon2id hash with minimal cost, so tests stay fast.
    fn cheap_hash(plain: &str) -> String {
        let params = Params::new(8, 1, 1, None).unwrap();
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_with_salt(plain.as_bytes(), b"testsalt12345678")
            .unwrap()
            .to_string()
    }

    fn login() -> AdminLogin {
        AdminLogin::new(EMAIL, &cheap_hash(PASSWORD), LoginLimits::default()).unwrap()
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
    }

    fn field_of(e: ConfigError) -> &'static str {
        match e {
            ConfigError::Invalid { field, .. } => field,
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[tokio::test]
    async fn password_phc_hash_accepted() {
        let l = login();
        l.check(EMAIL, PASSWORD, ip(1), T0).await.unwrap();
        // The dummy hash copies the admin hash's cheap parameters.
        assert_eq!(l.dummy_hash.params, l.admin_hash.params);
        assert_ne!(l.dummy_hash.hash, l.admin_hash.hash);
    }

    #[tokio::test]
    async fn password_plain_is_hashed_and_accepted() {
        let l = AdminLogin::new(EMAIL, PASSWORD, LoginLimits::default()).unwrap();
        assert_eq!(l.admin_hash.algorithm.as_str(), "argon2id");
        l.check(EMAIL, PASSWORD, None, T0).await.unwrap();
        let err = l.check(EMAIL, "nope", None, T0).await.unwrap_err();
        assert!(matches!(err, Error::InvalidCredentials));
    }

    #[tokio::test]
    async fn password_wrong_password_and_wrong_email_alike() {
        let l = login();
        let a = l.check(EMAIL, "wrong", ip(1), T0).await.unwrap_err();
        let b = l
            .check("root@pico.local", PASSWORD, ip(2), T0)
            .await
            .unwrap_err();
        let c = l.check("", "", None, T0).await.unwrap_err();
        for e in [a, b, c] {
            assert!(matches!(e, Error::InvalidCredentials), "{e:?}");
        }
    }

    #[tokio::test]
    async fn password_lockout_per_email_then_window_passes() {
        let l = login();
        for i in 0..5u8 {
            let e = l
                .check(EMAIL, "wrong", ip(i), T0 + u64::from(i))
                .await
                .unwrap_err();
            assert!(matches!(e, Error::InvalidCredentials));
        }
        // Locked out even with the right password and a fresh IP.
        let e = l.check(EMAIL, PASSWORD, ip(99), T0 + 10).await.unwrap_err();
        match e {
            Error::TooManyAttempts { retry_after_secs } => assert_eq!(retry_after_secs, 890),
            other => panic!("{other:?}"),
        }
        // The oldest failure (T0) ages out at T0 + 900.
        let e = l
            .check(EMAIL, PASSWORD, ip(99), T0 + 899)
            .await
            .unwrap_err();
        assert!(matches!(
            e,
            Error::TooManyAttempts {
                retry_after_secs: 1
            }
        ));
        l.check(EMAIL, PASSWORD, ip(99), T0 + 900).await.unwrap();
    }

    #[tokio::test]
    async fn password_lockout_per_ip_across_emails() {
        let l = login();
        for i in 0..5u64 {
            let email = format!("user{i}@example.com");
            let e = l.check(&email, "x", ip(7), T0 + i).await.unwrap_err();
            assert!(matches!(e, Error::InvalidCredentials));
        }
        let e = l.check(EMAIL, PASSWORD, ip(7), T0 + 5).await.unwrap_err();
        assert!(matches!(e, Error::TooManyAttempts { .. }), "{e:?}");
        // Another IP, and the admin's email, are not locked.
        l.check(EMAIL, PASSWORD, ip(8), T0 + 5).await.unwrap();
    }

    #[tokio::test]
    async fn password_ipv6_keyed_by_slash_64() {
        let l = login();
        for i in 0..5u16 {
            let addr: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, i + 1).into();
            let email = format!("user{i}@example.com");
            let _ = l.check(&email, "x", Some(addr), T0).await;
        }
        let other_host: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 9, 9, 9, 9).into();
        let e = l.check(EMAIL, PASSWORD, Some(other_host), T0).await;
        assert!(matches!(e, Err(Error::TooManyAttempts { .. })), "{e:?}");
    }

    #[tokio::test]
    async fn password_success_resets_counter() {
        let l = login();
        for i in 0..4u64 {
            let _ = l.check(EMAIL, "wrong", ip(1), T0 + i).await;
        }
        l.check(EMAIL, PASSWORD, ip(1), T0 + 4).await.unwrap();
        // Four more failures are allowed again before a lockout.
        for i in 0..4u64 {
            let e = l
                .check(EMAIL, "wrong", ip(1), T0 + 5 + i)
                .await
                .unwrap_err();
            assert!(matches!(e, Error::InvalidCredentials), "{e:?}");
        }
        l.check(EMAIL, PASSWORD, ip(1), T0 + 10).await.unwrap();
    }

    #[tokio::test]
    async fn password_tracked_keys_bounded_admin_always_tracked() {
        let limits = LoginLimits {
            max_tracked_keys: 4,
            ..LoginLimits::default()
        };
        let l = AdminLogin::new(EMAIL, &cheap_hash(PASSWORD), limits).unwrap();
        for i in 0..10u64 {
            let email = format!("user{i}@example.com");
            let _ = l.check(&email, "x", None, T0).await;
        }
        assert!(l.failures.len() <= 4);
        for _ in 0..5 {
            let _ = l.check(EMAIL, "wrong", None, T0).await;
        }
        let e = l.check(EMAIL, PASSWORD, None, T0).await;
        assert!(matches!(e, Err(Error::TooManyAttempts { .. })), "{e:?}");
        assert!(l.failures.len() <= 5);
        // Once the window has passed, expired keys are swept for new ones.
        let _ = l.check("late@example.com", "x", None, T0 + 1000).await;
        assert!(l
            .failures
            .contains_key(&LimitKey::Email(sha256("late@example.com"))));
    }

    #[tokio::test]
    async fn password_overloaded_when_queue_full() {
        let limits = LoginLimits {
            max_concurrent_hashes: 1,
            max_queued_hashes: 0,
            ..LoginLimits::default()
        };
        let l = AdminLogin::new(EMAIL, &cheap_hash(PASSWORD), limits).unwrap();
        let held = Arc::clone(&l.hash_slots).try_acquire_owned().unwrap();
        let e = l.check(EMAIL, PASSWORD, None, T0).await;
        assert!(matches!(e, Err(Error::Overloaded)), "{e:?}");
        drop(held);
        l.check(EMAIL, PASSWORD, None, T0).await.unwrap();
        assert_eq!(l.waiting.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn password_is_phc_hash_cases() {
        assert!(is_phc_hash(&cheap_hash("x")));
        let i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(8, 1, 1, None).unwrap(),
        )
        .hash_password_with_salt(b"x", b"testsalt12345678")
        .unwrap()
        .to_string();
        assert!(i.starts_with("$argon2i$"));
        assert!(is_phc_hash(&i));
        assert!(!is_phc_hash(""));
        assert!(!is_phc_hash("admin"));
        assert!(!is_phc_hash("$argon2id$"));
        assert!(!is_phc_hash("$argon2id$v=19$m=19456,t=2,p=1"));
        assert!(!is_phc_hash("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ"));
        assert!(!is_phc_hash(
            "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E"
        ));
        let mut broken = cheap_hash("x");
        broken.insert(broken.len() - 3, '!');
        assert!(!is_phc_hash(&broken));
    }

    #[test]
    fn password_generate_password_length_and_entropy() {
        let a = generate_password();
        let b = generate_password();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&a)
            .unwrap();
        assert!(decoded.len() * 8 >= 128);
    }

    #[test]
    fn password_hash_password_makes_argon2id_phc() {
        let h = hash_password("hunter42").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"));
        assert!(is_phc_hash(&h));
        assert_eq!(field_of(hash_password("").unwrap_err()), "admin_password");
    }

    #[test]
    fn password_construction_errors_name_the_field() {
        let e = AdminLogin::new(EMAIL, "", LoginLimits::default()).unwrap_err();
        assert_eq!(field_of(e), "admin_password");
        let none = crate::AuthConfig {
            admin_password: None,
            ..crate::AuthConfig::default()
        };
        let e = AdminLogin::from_config(&none, LoginLimits::default()).unwrap_err();
        assert_eq!(field_of(e), "admin_password");
        let e =
            AdminLogin::new(EMAIL, "$argon2id$v=19$garbage", LoginLimits::default()).unwrap_err();
        assert_eq!(field_of(e), "admin_password");
        let scrypt =
            "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E";
        let e = AdminLogin::new(EMAIL, scrypt, LoginLimits::default()).unwrap_err();
        assert_eq!(field_of(e), "admin_password");
        let zero = LoginLimits {
            max_failures: 0,
            ..LoginLimits::default()
        };
        let e = AdminLogin::new(EMAIL, &cheap_hash("x"), zero).unwrap_err();
        assert_eq!(field_of(e), "login_limits.max_failures");
    }

    #[test]
    fn password_debug_redacts_hash() {
        let phc = cheap_hash(PASSWORD);
        let l = AdminLogin::new(EMAIL, &phc, LoginLimits::default()).unwrap();
        let dbg = format!("{l:?}");
        assert!(dbg.contains("<redacted>"));
        assert!(!dbg.contains("argon2"));
        assert!(!dbg.contains(PASSWORD));
    }
}
