//! [`WalletAuth`]: the one cheap-to-clone handle that owns the configuration,
//! stores and keys, and carries out every operation the routes expose.
//!
//! One file per operation, each adding its methods to [`WalletAuth`]:
//!
//! | file            | methods |
//! |-----------------|---------|
//! | `builder.rs`    | [`WalletAuth::builder`], [`WalletAuthBuilder`], the config checks |
//! | `sign_in.rs`    | [`WalletAuth::challenge`], [`WalletAuth::issue_challenge`], [`WalletAuth::sign_in`] |
//! | `refresh.rs`    | [`WalletAuth::refresh`] (one-time rotation, family revocation) |
//! | `login.rs`      | [`WalletAuth::login`] (the bootstrap admin's password) |
//! | `fleet.rs`      | [`WalletAuth::check_fleet_secret`], [`WalletAuth::mint_fleet_session`] |
//! | `keys.rs`       | [`WalletAuth::key_states`], [`WalletAuth::reload_keys`], the key set's reload |
//! | `gate.rs`       | [`WalletAuth::authorize`], [`WalletAuth::authenticate`] (Bearer gates) |
//! | `revocation.rs` | [`WalletAuth::revoke`], [`WalletAuth::revoked_jtis`], [`WalletAuth::mints`] |
//! | `mint.rs`       | `issue_pair`, `mint_audited`, `audit_records`, the claims builders |
//! | `sweeper.rs`    | the background sweep of expired challenges |

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::audit::MintAuditStore;
use crate::challenge::ChallengeStore;
use crate::clock::SharedClock;
use crate::limit::RateLimits;
use crate::password::AdminLogin;
use crate::revocation::RevocationStore;
use crate::token::{Jwk, TokenService};
use crate::wallet::Algorithm;
use crate::work::CpuLimiter;
use crate::{AuthConfig, Error};

mod builder;
mod fleet;
mod gate;
mod keys;
mod login;
mod mint;
mod refresh;
mod revocation;
mod sign_in;
mod sweeper;
mod verified;

pub use self::builder::WalletAuthBuilder;
pub use self::fleet::{FleetRequest, FleetSession};
pub use self::gate::Gate;
pub use self::mint::TokenPair;
pub use self::revocation::{MintView, RevokedJtis, MAX_DELTA};
pub use self::sign_in::{
    ChallengeRequest, IssuedChallenge, SignInRequest, SignInResponse, MAX_MESSAGE_LEN,
};

/// Longest accepted `address` (an ML-DSA-65 wallet id is 3,904 characters).
pub const MAX_ADDRESS_LEN: usize = 8192;
/// Longest accepted hex `public_key` / `signature` field.
pub const MAX_HEX_LEN: usize = 16 * 1024;
/// Longest accepted `challenge` field.
pub const MAX_CHALLENGE_LEN: usize = 128;
/// Longest accepted short text field (ids, roles, reasons, jti, email).
pub const MAX_TEXT_LEN: usize = 1024;
/// Shortest fleet session lifetime, seconds.
pub const FLEET_MIN_TTL: u64 = 60;

/// The `detail` reason of a refresh token presented a second time (its
/// family is revoked); `wallet_auth_refreshes_total{result="reuse"}`.
pub(crate) const REUSE_DETECTED: &str = "refresh token already used; its session is revoked";

pub(crate) struct Inner {
    pub(crate) config: AuthConfig,
    algorithms: Vec<Algorithm>,
    pub(crate) challenges: Arc<dyn ChallengeStore>,
    pub(crate) revocations: Arc<dyn RevocationStore>,
    pub(crate) audit: Arc<dyn MintAuditStore>,
    pub(crate) tokens: TokenService,
    clock: SharedClock,
    cpu: CpuLimiter,
    operator_roles: HashSet<String>,
    fleet_roles: HashSet<String>,
    audit_failures: Arc<AtomicU64>,
    /// The metrics registry, when metrics are on.
    pub(crate) metrics: Option<Arc<crate::ops::Metrics>>,
    admin: Option<AdminLogin>,
    /// A keyed tag of the admin password: carried by the admin's refresh
    /// tokens, which die when it changes.
    password_version: Option<String>,
    limits: RateLimits,
    sweeper: sweeper::Sweeper,
    /// The configured parts of the sign-in messages (SPEC 9).
    messages: crate::message::MessageSettings,
    /// The embedding app's EIP-1271 verifier, if any.
    contract_wallets: Option<Arc<dyn crate::wallet::ContractWalletVerifier>>,
    /// The keep-alive interval of the revocation event streams.
    stream_keep_alive: std::time::Duration,
    /// Bearer tokens the gates have verified (`gate.rs`).
    verified: verified::VerifiedTokens,
    /// The signing key set, when keys come from one (SPEC 8).
    key_set: Option<Arc<crate::keyset::KeySet>>,
}

/// The wallet-auth service: configuration, stores and keys behind one `Arc`.
/// Clone it freely; [`WalletAuth::router`] serves it over HTTP.
#[derive(Clone)]
pub struct WalletAuth {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for WalletAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalletAuth")
            .field("config", &self.inner.config)
            .field("kid", &self.inner.tokens.kid())
            .finish()
    }
}

fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), Error> {
    if value.chars().count() > max {
        Err(Error::FieldTooLong { field, max })
    } else {
        Ok(())
    }
}

impl WalletAuth {
    /// The configuration in force.
    pub fn config(&self) -> &AuthConfig {
        &self.inner.config
    }

    /// The keep-alive interval of the revocation event streams, for the edge.
    pub(crate) fn stream_keep_alive(&self) -> std::time::Duration {
        self.inner.stream_keep_alive
    }

    /// The rate limits (SPEC 10), for the edge.
    pub(crate) fn limits(&self) -> &RateLimits {
        &self.inner.limits
    }

    /// The token service (mint and validate).
    pub fn tokens(&self) -> &TokenService {
        &self.inner.tokens
    }

    /// The denylist store.
    pub fn revocations(&self) -> &Arc<dyn RevocationStore> {
        &self.inner.revocations
    }

    /// How many mint-audit writes have failed since start.
    pub fn audit_failures(&self) -> u64 {
        self.inner.audit_failures.load(Ordering::Relaxed)
    }

    /// The public keys served at `/jwks`: the signing key first, then the
    /// next and retired ones also accepted.
    pub fn jwks(&self) -> Vec<Jwk> {
        self.inner.tokens.jwks()
    }

    /// Runs `f` on the CPU pool (off the async worker threads) and returns
    /// its result.
    ///
    /// # Errors
    /// [`Error::Overloaded`] when the pool's queue is full; [`Error::Internal`]
    /// when `f` panicked.
    pub(crate) async fn run_cpu<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.inner.cpu.run(f).await
    }
}
