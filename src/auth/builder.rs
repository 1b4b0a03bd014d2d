//! Building a [`WalletAuth`]: configuration checks, keys, stores, the sweeper.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use super::sweeper::Sweeper;
use super::{Inner, WalletAuth};
use crate::audit::MintAuditStore;
use crate::challenge::{ChallengeStore, MemoryChallengeStore};
use crate::clock::{SharedClock, SystemClock};
use crate::keyset::{Initial, KeySet, KeySetOptions};
use crate::limit::{RateLimits, TrustedProxies};
use crate::message::MessageSettings;
use crate::password::{AdminLogin, LoginLimits};
use crate::revocation::RevocationStore;
use crate::token::{Jwk, SigningKey, TokenService};
use crate::wallet::ContractWalletVerifier;
use crate::work::CpuLimiter;
use crate::{AuthConfig, ConfigError};

/// The longest silence on a revocation event stream (SPEC 7).
const STREAM_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Builds a [`WalletAuth`]; see [`WalletAuth::builder`].
#[must_use]
pub struct WalletAuthBuilder {
    config: AuthConfig,
    challenge_store: Option<Arc<dyn ChallengeStore>>,
    revocation_store: Option<Arc<dyn RevocationStore>>,
    audit_store: Option<Arc<dyn MintAuditStore>>,
    signing_key: Option<Arc<SigningKey>>,
    key_set: Option<Arc<KeySet>>,
    retired_keys: Vec<Jwk>,
    clock: Option<SharedClock>,
    sweep_interval: Duration,
    cpu_limits: Option<(usize, usize)>,
    login_limits: LoginLimits,
    contract_wallets: Option<Arc<dyn ContractWalletVerifier>>,
    stream_keep_alive: Duration,
    metrics: bool,
}

impl WalletAuth {
    /// Starts building from a configuration.
    pub fn builder(config: AuthConfig) -> WalletAuthBuilder {
        WalletAuthBuilder {
            config,
            challenge_store: None,
            revocation_store: None,
            audit_store: None,
            signing_key: None,
            key_set: None,
            retired_keys: Vec::new(),
            clock: None,
            sweep_interval: Duration::from_secs(5),
            cpu_limits: None,
            login_limits: LoginLimits::default(),
            contract_wallets: None,
            stream_keep_alive: STREAM_KEEP_ALIVE,
            metrics: false,
        }
    }
}

impl WalletAuthBuilder {
    /// Uses `store` for challenges instead of the in-memory default.
    pub fn with_challenge_store(mut self, store: Arc<dyn ChallengeStore>) -> Self {
        self.challenge_store = Some(store);
        self
    }

    /// Uses `store` for the denylist instead of the one `revocation_store_path` selects.
    pub fn with_revocation_store(mut self, store: Arc<dyn RevocationStore>) -> Self {
        self.revocation_store = Some(store);
        self
    }

    /// Uses `store` for the mint audit instead of the one `mint_audit_path` selects.
    pub fn with_mint_audit_store(mut self, store: Arc<dyn MintAuditStore>) -> Self {
        self.audit_store = Some(store);
        self
    }

    /// Signs with `key` instead of loading `signing_key_path`.
    pub fn with_signing_key(mut self, key: SigningKey) -> Self {
        self.signing_key = Some(Arc::new(key));
        self
    }

    /// Signs with a shared key.
    pub fn with_shared_signing_key(mut self, key: Arc<SigningKey>) -> Self {
        self.signing_key = Some(key);
        self
    }

    /// Signs with the current key of `set` (SPEC 8), publishing its next
    /// and retired keys, instead of opening the one `signing_keys_dir`
    /// names (use this to open it with [`Initial`](crate::keyset::Initial)
    /// keys, e.g. an imported one). A running service re-reads the set
    /// every `key_reload_seconds`. [`with_signing_key`](Self::with_signing_key)
    /// and `signing_key_path` win over it.
    pub fn with_key_set(mut self, set: Arc<KeySet>) -> Self {
        self.key_set = Some(set);
        self
    }

    /// Keeps accepting and publishing an older public key (after a rotation)
    /// until the tokens it signed have expired.
    pub fn with_retired_key(mut self, jwk: Jwk) -> Self {
        self.retired_keys.push(jwk);
        self
    }

    /// Reads time from `clock` (tests).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// How often expired challenges are swept (default 5 s).
    pub fn with_sweep_interval(mut self, every: Duration) -> Self {
        self.sweep_interval = every;
        self
    }

    /// Bounds CPU-heavy work: `workers` dedicated threads, at most `queue` jobs waiting (default: one thread per core, 256 waiting per core).
    pub fn with_cpu_limits(mut self, workers: usize, queue: usize) -> Self {
        self.cpu_limits = Some((workers, queue));
        self
    }

    /// Limits of the admin password login (failures per window, concurrent
    /// argon2 hashes).
    pub fn with_login_limits(mut self, limits: LoginLimits) -> Self {
        self.login_limits = limits;
        self
    }

    /// Verifies smart-contract wallets' `eip191` signatures (EIP-1271) with
    /// `verifier`. Without one, only externally owned accounts sign in.
    pub fn with_contract_wallet_verifier(
        mut self,
        verifier: Arc<dyn ContractWalletVerifier>,
    ) -> Self {
        self.contract_wallets = Some(verifier);
        self
    }

    /// How long a `/revoked-jtis/stream` connection may go without a byte
    /// before a keep-alive comment is sent (default 15 s, SPEC 7's bound;
    /// at least 1 ms).
    pub fn with_stream_keep_alive(mut self, every: Duration) -> Self {
        self.stream_keep_alive = every.max(Duration::from_millis(1));
        self
    }

    /// Collects the metrics of SPEC 11 even with `metrics_listen` empty
    /// (for a host that serves [`WalletAuth::metrics_router`] on a listener
    /// of its own choosing).
    pub fn with_metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// Checks the configuration, loads keys and opens stores.
    ///
    /// Starts the background sweep of expired challenges (every
    /// [`with_sweep_interval`](Self::with_sweep_interval); it stops when the
    /// last handle is dropped). Called inside a tokio runtime, `build`
    /// starts it on that runtime. Called outside one (a synchronous `main`
    /// that makes its runtime later), it does not fail: the sweep starts with
    /// the first challenge issued inside a runtime, so a store never fills
    /// with expired challenges unswept.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field at fault.
    pub fn build(self) -> Result<WalletAuth, ConfigError> {
        crate::install_crypto_provider();
        let config = self.config;
        config.validate()?;
        // A bad Redis TLS file fails here, naming its field, whoever opened
        // the stores (`RedisStores::connect_tls` reads the same files).
        #[cfg(feature = "redis")]
        crate::store_redis::RedisTls::from_config(&config)?;
        let algorithms = config.wallet_algorithms()?;
        let messages = MessageSettings::from_config(&config)?;
        let clock: SharedClock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));

        let key_path = config.signing_key_path.as_deref().filter(|p| !p.is_empty());
        let key_set = match (&self.signing_key, key_path, self.key_set) {
            (None, None, Some(set)) => Some(set),
            (None, None, None) if !config.signing_keys_dir.is_empty() => {
                let dir = std::path::Path::new(&config.signing_keys_dir);
                let opts = KeySetOptions::from_config(&config, dir)?;
                Some(Arc::new(KeySet::open(
                    opts,
                    Arc::clone(&clock),
                    Initial::default(),
                )?))
            }
            _ => None,
        };
        let persistent_key = self.signing_key.is_some() || key_path.is_some() || key_set.is_some();
        let algorithm = config.signing_algorithm()?;
        // The signer, its refresh secret, and the key set's schedule (none without a set).
        let (signer, refresh_secret, scheduled) = if let Some(set) = &key_set {
            // The signer is the set's current key; `algorithm` picks the
            // algorithm of its new keys (a migration publishes both kinds).
            let scheduled = set.scheduled();
            let first = scheduled
                .first()
                .map(|s| Arc::clone(&s.key))
                .ok_or_else(|| {
                    ConfigError::from(crate::keyset::KeySetError::Empty(set.dir().to_path_buf()))
                })?;
            (first, set.refresh_secret()?, scheduled)
        } else {
            let key = match (self.signing_key, key_path) {
                (Some(k), _) => k,
                (None, Some(path)) => Arc::new(
                    SigningKey::load(std::path::Path::new(path))
                        .map_err(|e| ConfigError::SigningKey(format!("signing_key_path: {e}")))?,
                ),
                (None, None) => {
                    tracing::warn!(
                        %algorithm,
                        "no signing key configured: generated an ephemeral key; tokens will not survive a restart \
                         (set signing_key_path or signing_keys_dir)"
                    );
                    Arc::new(SigningKey::generate_for(algorithm)?)
                }
            };
            // `algorithm` picks the signer: its key must be of that algorithm.
            if key.algorithm() != algorithm {
                return Err(ConfigError::invalid(
                    "algorithm",
                    format!(
                        "is {algorithm}, but the signing key is a {} key",
                        key.algorithm()
                    ),
                ));
            }
            let refresh_secret = key.derive_secret(crate::keyset::REFRESH_LABEL);
            (key, refresh_secret, Vec::new())
        };
        let mut tokens = TokenService::new(
            signer,
            &self.retired_keys,
            &refresh_secret,
            config.issuer.clone(),
            config.audience.clone(),
            Arc::clone(&clock),
        )
        .with_audiences(&config.audiences);
        if let Some(set) = &key_set {
            tokens = tokens.with_reserver(Arc::clone(set) as Arc<dyn crate::token::ExpReserver>);
            tokens.install(scheduled, &[]);
        }

        // A key that outlives the process (given, or read from a file) with
        // a denylist that does not would re-arm every revocation at restart.
        if persistent_key
            && self.revocation_store.is_none()
            && config.revocation_store_path.is_empty()
            && !config.allow_memory_revocations
        {
            return Err(ConfigError::invalid(
                "revocation_store_path",
                "is empty while the signing key is persistent: a restart would forget every \
                 revocation and re-arm every used refresh token. Set revocation_store_path (or \
                 pass a store with with_revocation_store), or set allow_memory_revocations",
            ));
        }
        if !config.redis_url.is_empty()
            && (self.challenge_store.is_none()
                || self.revocation_store.is_none()
                || self.audit_store.is_none())
        {
            // Never fall back to per-instance memory when a shared store was asked for.
            return Err(ConfigError::invalid(
                "redis_url",
                "is set, but the Redis stores were not passed: open them with \
                 RedisStores::connect (feature `redis`) and pass them with \
                 with_challenge_store, with_revocation_store and with_mint_audit_store",
            ));
        }
        let challenges: Arc<dyn ChallengeStore> = match self.challenge_store {
            Some(s) => s,
            None => Arc::new(MemoryChallengeStore::with_clock(
                config.challenge_max_outstanding,
                Arc::clone(&clock),
            )),
        };
        let revocations: Arc<dyn RevocationStore> = match self.revocation_store {
            Some(s) => s,
            None => crate::stores::open_revocations(&config)?,
        };
        let audit: Arc<dyn MintAuditStore> = match self.audit_store {
            Some(s) => s,
            None => crate::stores::open_audit(&config)?,
        };

        let admin = if config.auto_create_admin {
            Some(AdminLogin::from_config(&config, self.login_limits)?)
        } else {
            None
        };
        let password_version = admin.as_ref().map(|_| {
            tokens.keyed_tag(
                "admin-password",
                config.admin_password.as_deref().unwrap_or("").as_bytes(),
            )
        });
        let trusted = TrustedProxies::parse(&config.trusted_proxies)
            .map_err(|e| ConfigError::invalid("trusted_proxies", e.to_string()))?;
        let limits = RateLimits::new(
            config.rate_limit_per_ip_per_minute,
            config.refresh_per_family_per_minute,
            trusted,
            Arc::clone(&clock),
        );
        let mut operator_roles = HashSet::new();
        operator_roles.insert("operator".to_string());
        operator_roles.insert(config.admin_role.clone());
        let fleet_roles = config.fleet_allowed_roles.iter().cloned().collect();

        let cpu = match self.cpu_limits {
            Some((workers, queue)) => CpuLimiter::new(workers, queue),
            None => CpuLimiter::for_this_machine(),
        }
        .map_err(|e| {
            ConfigError::invalid("cpu_limits", format!("cannot start the CPU pool: {e}"))
        })?;
        let audit_failures = Arc::new(AtomicU64::new(0));
        let metrics = (self.metrics || !config.metrics_listen.is_empty()).then(|| {
            let fsync = [
                ("revocations", revocations.fsync_stats()),
                ("mint_audit", audit.fsync_stats()),
            ]
            .into_iter()
            .filter_map(|(name, stats)| stats.map(|s| (name, s)))
            .collect();
            Arc::new(crate::ops::Metrics::new(crate::ops::metrics::Sources {
                audit_failures: Arc::clone(&audit_failures),
                cpu_queue_depth: cpu.depth(),
                fsync,
            }))
        });
        let inner = Arc::new(Inner {
            config,
            algorithms,
            challenges,
            revocations,
            audit,
            tokens,
            clock,
            cpu,
            operator_roles,
            fleet_roles,
            audit_failures,
            metrics,
            admin,
            password_version,
            limits,
            sweeper: Sweeper::new(self.sweep_interval),
            messages,
            contract_wallets: self.contract_wallets,
            stream_keep_alive: self.stream_keep_alive,
            verified: Default::default(),
            key_set,
        });
        inner.sweeper.ensure_started(&inner);
        super::keys::start_reload(&inner);
        Ok(WalletAuth { inner })
    }
}
