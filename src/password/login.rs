//! The login check: [`AdminLogin`].
//!
//! A check:
//!
//! 1. refuses at once, before any hashing, when the (email, client IP) pair
//!    or the client IP has had too many recent failures ([`LoginLimits`]), so
//!    a locked-out attacker costs no CPU;
//! 2. waits for one of the global hashing slots
//!    ([`LoginLimits::max_concurrent_hashes`]), or answers
//!    [`Error::Overloaded`] when [`LoginLimits::max_queued_hashes`] checks
//!    already wait;
//! 3. holding the slot, counts the attempt as a failure before hashing, in
//!    one atomic step with the lock-out check, so of many concurrent guesses
//!    only as many as the limit reach argon2; the rest are refused like step
//!    1;
//! 4. compares the email in constant time (SHA-256 digests, so the length does
//!    not leak either) and always runs exactly one argon2 verification, against
//!    the admin hash or, for a wrong email, against a dummy hash with the same
//!    parameters, so a wrong email and a wrong password get the same answer in
//!    similar time;
//! 5. on a correct password forgets the failures of that pair and that IP.
//!
//! A check dropped while argon2 runs (the client went away) stays counted.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::password_hash::PasswordVerifier;
use argon2::{Argon2, PasswordHash};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::hash::{dummy_like, hash_password, parse_argon2_phc};
use super::lockout::{Client, FailureTable};
use super::{LoginLimits, FIELD};
use crate::{ConfigError, Error};

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
    failures: FailureTable,
    hash_slots: Arc<Semaphore>,
    waiting: AtomicUsize,
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
    /// `admin_password` may be an argon2 PHC hash (see
    /// [`super::is_phc_hash`]), used as is, or a plain password, hashed here
    /// with [`super::hash_password`] and a warning suggesting a hash in the
    /// config instead. A dummy hash with the same parameters is computed too,
    /// so this runs argon2 once or twice: call it at start-up, not on an async
    /// worker thread. Neither counts in [`AdminLogin::hashes_computed`].
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
            failures: FailureTable::new(&limits),
            limits,
            waiting: AtomicUsize::new(0),
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

    /// argon2 verifications run by [`AdminLogin::check`] so far (the hashing
    /// at construction is not counted). Shared with the
    /// `LoginLimits::hashes_computed` counter this checker was built with.
    pub fn hashes_computed(&self) -> u64 {
        self.limits.hashes_computed.get()
    }

    /// Checks credentials. `now_secs` comes from the caller's clock
    /// ([`crate::clock::Clock`]) so tests can move time.
    ///
    /// # Errors
    /// - [`Error::TooManyAttempts`] when the (email, client IP) pair already
    ///   has [`LoginLimits::max_failures`] failures in the window, or the
    ///   client IP [`LoginLimits::max_failures_per_ip`], with the seconds
    ///   until the oldest of them ages out (at least 1); no hashing is done;
    /// - [`Error::Overloaded`] when too many checks already wait for a hashing
    ///   slot;
    /// - [`Error::InvalidCredentials`] for a wrong email or a wrong password
    ///   alike (counted, before the hashing, for the pair and the IP);
    /// - [`Error::Internal`] if the hashing task fails (the attempt stays
    ///   counted).
    ///
    /// A success clears the failures of that pair and that IP. A `client_ip`
    /// of `None` (not known to the caller) is one shared client: all such
    /// callers count together, as if from one address.
    ///
    /// # Security
    /// The password and the hash are never logged. The email is compared in
    /// constant time and one argon2 verification runs whether or not it
    /// matches. Failures from one address never lock out another.
    pub async fn check(
        &self,
        email: &str,
        password: &str,
        client_ip: Option<IpAddr>,
        now_secs: u64,
    ) -> Result<(), Error> {
        let email_digest = sha256(email);
        let client = Client::of(client_ip);

        // 1. Refuse locked-out keys before spending any CPU or a queue place.
        if let Some(retry_after_secs) = self.failures.locked(&email_digest, client, now_secs) {
            return Err(Error::TooManyAttempts { retry_after_secs });
        }

        // 2. A hashing slot, or a bounded wait for one.
        let permit = self.hash_slot().await?;

        // 3. The attempt counts as a failure before argon2 runs; refused if
        //    concurrent attempts used up the limit meanwhile.
        self.failures
            .reserve(&email_digest, client, now_secs)
            .map_err(|retry_after_secs| Error::TooManyAttempts { retry_after_secs })?;

        // 4. Constant-time email comparison; one argon2 verification either way.
        let email_ok = email_digest.ct_eq(&self.email_digest);
        let target = if bool::from(email_ok) {
            Arc::clone(&self.admin_hash)
        } else {
            Arc::clone(&self.dummy_hash)
        };
        let password_ok = self.verify_off_thread(permit, password, target).await?;

        // 5. Only a correct password gives the attempt back.
        if bool::from(email_ok & subtle::Choice::from(u8::from(password_ok))) {
            self.failures.clear(&email_digest, client);
            Ok(())
        } else {
            Err(Error::InvalidCredentials)
        }
    }

    /// One of the global hashing slots: at once if free, else after a wait
    /// in a queue of at most [`LoginLimits::max_queued_hashes`].
    async fn hash_slot(&self) -> Result<OwnedSemaphorePermit, Error> {
        if let Ok(permit) = Arc::clone(&self.hash_slots).try_acquire_owned() {
            return Ok(permit);
        }
        let _queued = QueueTicket::take(&self.waiting, self.limits.max_queued_hashes)
            .ok_or(Error::Overloaded)?;
        Arc::clone(&self.hash_slots)
            .acquire_owned()
            .await
            .map_err(|_| Error::Internal("password hashing slots closed".into()))
    }

    /// Runs one verification on the blocking pool, holding the hashing slot
    /// until it ends (even if the caller is dropped meanwhile).
    async fn verify_off_thread(
        &self,
        permit: OwnedSemaphorePermit,
        password: &str,
        target: Arc<PasswordHash>,
    ) -> Result<bool, Error> {
        let password = zeroize::Zeroizing::new(password.as_bytes().to_vec());
        let counter = self.limits.hashes_computed.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            counter.add_one();
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::hash::cheap_hash;
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const EMAIL: &str = "admin@pico.local";
    const PASSWORD: &str = "correct horse battery staple";
    const T0: u64 = 1_700_000_000;

    fn login() -> AdminLogin {
        AdminLogin::new(EMAIL, &cheap_hash(PASSWORD), LoginLimits::default()).unwrap()
    }

    fn login_with(limits: LoginLimits) -> AdminLogin {
        AdminLogin::new(EMAIL, &cheap_hash(PASSWORD), limits).unwrap()
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
        // Each ran exactly one argon2 verification.
        assert_eq!(l.hashes_computed(), 3);
    }

    #[tokio::test]
    async fn password_lockout_per_email_and_ip_then_window_passes() {
        let l = login();
        for i in 0..5u8 {
            let e = l
                .check(EMAIL, "wrong", ip(1), T0 + u64::from(i))
                .await
                .unwrap_err();
            assert!(matches!(e, Error::InvalidCredentials));
        }
        // Locked out from that IP even with the right password...
        let e = l.check(EMAIL, PASSWORD, ip(1), T0 + 10).await.unwrap_err();
        match e {
            Error::TooManyAttempts { retry_after_secs } => assert_eq!(retry_after_secs, 890),
            other => panic!("{other:?}"),
        }
        assert_eq!(l.hashes_computed(), 5, "a locked-out check runs no argon2");
        // ...but not from another one: strangers cannot lock the admin out.
        l.check(EMAIL, PASSWORD, ip(99), T0 + 10).await.unwrap();
        // The oldest failure (T0) ages out at T0 + 900.
        let e = l.check(EMAIL, PASSWORD, ip(1), T0 + 899).await.unwrap_err();
        assert!(matches!(
            e,
            Error::TooManyAttempts {
                retry_after_secs: 1
            }
        ));
        l.check(EMAIL, PASSWORD, ip(1), T0 + 900).await.unwrap();
    }

    #[tokio::test]
    async fn password_lockout_per_ip_across_emails() {
        let l = login_with(LoginLimits {
            max_failures_per_ip: 5,
            ..LoginLimits::default()
        });
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
        let l = login_with(LoginLimits {
            max_failures_per_ip: 5,
            ..LoginLimits::default()
        });
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
    async fn password_unknown_ip_is_one_bucket() {
        let l = login();
        for _ in 0..5 {
            let _ = l.check(EMAIL, "wrong", None, T0).await;
        }
        let e = l.check(EMAIL, PASSWORD, None, T0).await;
        assert!(matches!(e, Err(Error::TooManyAttempts { .. })), "{e:?}");
        // A known address is another client.
        l.check(EMAIL, PASSWORD, ip(1), T0).await.unwrap();
    }

    #[tokio::test]
    async fn password_tracked_keys_bounded_fresh_ip_always_tracked() {
        let l = login_with(LoginLimits {
            max_tracked_keys: 4,
            ..LoginLimits::default()
        });
        for i in 0..10u8 {
            let email = format!("user{i}@example.com");
            let _ = l.check(&email, "x", ip(i), T0).await;
            assert!(l.failures.len() <= 4);
        }
        // A full table neither refuses nor forgets a new pair: guessing from
        // a fresh IP stays limited.
        for _ in 0..5 {
            let _ = l.check(EMAIL, "wrong", ip(50), T0).await;
        }
        let e = l.check(EMAIL, PASSWORD, ip(50), T0).await;
        assert!(matches!(e, Err(Error::TooManyAttempts { .. })), "{e:?}");
        assert!(l.failures.len() <= 4);
        // And the admin from yet another IP gets in.
        l.check(EMAIL, PASSWORD, ip(51), T0).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn password_concurrent_guesses_run_argon2_at_most_the_limit() {
        let l = Arc::new(login());
        let tasks: Vec<_> = (0..60)
            .map(|_| {
                let l = Arc::clone(&l);
                tokio::spawn(async move { l.check(EMAIL, "wrong", ip(1), T0).await })
            })
            .collect();
        let (mut denied, mut limited) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Err(Error::InvalidCredentials) => denied += 1,
                Err(Error::TooManyAttempts { retry_after_secs }) => {
                    assert_eq!(retry_after_secs, 900);
                    limited += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((denied, limited), (5, 55));
        assert_eq!(l.hashes_computed(), 5);
    }

    #[tokio::test]
    async fn password_overloaded_when_queue_full() {
        let l = login_with(LoginLimits {
            max_concurrent_hashes: 1,
            max_queued_hashes: 0,
            ..LoginLimits::default()
        });
        let held = Arc::clone(&l.hash_slots).try_acquire_owned().unwrap();
        let e = l.check(EMAIL, PASSWORD, None, T0).await;
        assert!(matches!(e, Err(Error::Overloaded)), "{e:?}");
        // An overloaded check counted no failure.
        assert_eq!(l.failures.len(), 0);
        drop(held);
        l.check(EMAIL, PASSWORD, None, T0).await.unwrap();
        assert_eq!(l.waiting.load(Ordering::Relaxed), 0);
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
        let zero = LoginLimits {
            max_failures_per_ip: 0,
            ..LoginLimits::default()
        };
        let e = AdminLogin::new(EMAIL, &cheap_hash("x"), zero).unwrap_err();
        assert_eq!(field_of(e), "login_limits.max_failures_per_ip");
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
