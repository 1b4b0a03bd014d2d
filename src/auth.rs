//! [`WalletAuth`]: the one cheap-to-clone handle that owns the configuration,
//! stores and keys, and carries out every operation the routes expose.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::audit::{MintAuditStore, MintRecord};
use crate::challenge::{ChallengeStore, MemoryChallengeStore};
use crate::clock::{SharedClock, SystemClock};
use crate::password::{AdminLogin, LoginLimits};
use crate::revocation::{RevocationEntry, RevocationKind, RevocationStore};
use crate::token::{
    new_jti, AccessClaims, Jwk, RefreshClaims, SigningKey, TokenError, TokenService,
};
use crate::wallet::{self, Algorithm};
use crate::work::CpuLimiter;
use crate::{AuthConfig, ConfigError, Error};

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

/// A sign-in request (SPEC 1, `POST /sign-in`).
#[derive(Debug, Clone, Default)]
pub struct SignInRequest {
    /// Address the challenge was issued for.
    pub address: String,
    /// Hex public key.
    pub public_key: String,
    /// Hex signature over the challenge.
    pub signature: String,
    /// The challenge as issued.
    pub challenge: String,
    /// Algorithm name; `None` means `ML-DSA-65`.
    pub algorithm: Option<String>,
}

/// A successful sign-in.
#[derive(Debug, Clone, Serialize)]
pub struct SignInResponse {
    /// RS256 access token.
    pub access_token: String,
    /// Refresh token (opaque to clients).
    pub refresh_token: String,
    /// The wallet id.
    pub address: String,
    /// The algorithm used.
    pub algorithm: &'static str,
}

/// An access and refresh token pair.
#[derive(Debug, Clone, Serialize)]
pub struct TokenPair {
    /// RS256 access token.
    pub access_token: String,
    /// Refresh token.
    pub refresh_token: String,
}

/// A fleet session request (SPEC 1, `POST /fleet/sessions`).
#[derive(Debug, Clone, Default)]
pub struct FleetRequest {
    /// Becomes `sub` and `session_id`.
    pub session_id: String,
    /// Becomes `agent_id`.
    pub agent_id: String,
    /// Role; `None` means `agent`.
    pub role: Option<String>,
    /// Requested lifetime in seconds (clamped).
    pub ttl: Option<i64>,
    /// Optional scope.
    pub scope: Option<String>,
}

/// A minted fleet session.
#[derive(Debug, Clone, Serialize)]
pub struct FleetSession {
    /// The RS256 session token.
    pub session_token: String,
    /// Its expiry, epoch seconds.
    pub exp: u64,
}

/// A mint record with its revocation status, as `/mints` serves it.
#[derive(Debug, Clone, Serialize)]
pub struct MintView {
    /// The record.
    #[serde(flatten)]
    pub record: MintRecord,
    /// Whether its jti is on the denylist now.
    pub revoked: bool,
}

/// Which role a gated route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// `operator` or the configured `admin_role`.
    Operator,
    /// `service`, or an operator role.
    Service,
}

struct PollCache {
    version: u64,
    valid_until: u64,
    body: bytes::Bytes,
    /// `body` gzip-compressed, made on the first request that accepts gzip.
    gzip: std::sync::OnceLock<bytes::Bytes>,
}

/// Gzip of a poll body. Fast compression: the body is rebuilt whenever the
/// denylist changes, and a poll of 10,000 entries shrinks about fivefold.
fn gzip(body: &[u8]) -> Result<bytes::Bytes, Error> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    enc.write_all(body)
        .and_then(|()| enc.finish())
        .map(bytes::Bytes::from)
        .map_err(|e| Error::Internal(format!("gzip denylist: {e}")))
}

pub(crate) struct Inner {
    pub(crate) config: AuthConfig,
    algorithms: Vec<Algorithm>,
    challenges: Arc<dyn ChallengeStore>,
    revocations: Arc<dyn RevocationStore>,
    audit: Arc<dyn MintAuditStore>,
    pub(crate) tokens: TokenService,
    clock: SharedClock,
    cpu: CpuLimiter,
    operator_roles: HashSet<String>,
    fleet_roles: HashSet<String>,
    pub(crate) jwks_body: bytes::Bytes,
    poll_cache: RwLock<Option<Arc<PollCache>>>,
    audit_failures: AtomicU64,
    admin: Option<AdminLogin>,
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

/// Builds a [`WalletAuth`]; see [`WalletAuth::builder`].
#[must_use]
pub struct WalletAuthBuilder {
    config: AuthConfig,
    challenge_store: Option<Arc<dyn ChallengeStore>>,
    revocation_store: Option<Arc<dyn RevocationStore>>,
    audit_store: Option<Arc<dyn MintAuditStore>>,
    signing_key: Option<Arc<SigningKey>>,
    retired_keys: Vec<Jwk>,
    clock: Option<SharedClock>,
    sweep_interval: Duration,
    cpu: Option<CpuLimiter>,
    login_limits: LoginLimits,
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
            retired_keys: Vec::new(),
            clock: None,
            sweep_interval: Duration::from_secs(5),
            cpu: None,
            login_limits: LoginLimits::default(),
        }
    }
}

fn validate_config(c: &AuthConfig) -> Result<Vec<Algorithm>, ConfigError> {
    if c.algorithm != "RS256" {
        return Err(ConfigError::invalid(
            "algorithm",
            format!("only RS256 is supported, got {:?}", c.algorithm),
        ));
    }
    if c.issuer.trim().is_empty() {
        return Err(ConfigError::invalid("issuer", "must not be empty"));
    }
    if c.audience.trim().is_empty() {
        return Err(ConfigError::invalid("audience", "must not be empty"));
    }
    if c.access_token_expire_minutes == 0 || c.access_token_expire_minutes > 525_600 {
        return Err(ConfigError::invalid(
            "access_token_expire_minutes",
            "must be between 1 and 525600",
        ));
    }
    if c.refresh_token_expire_days == 0 || c.refresh_token_expire_days > 3650 {
        return Err(ConfigError::invalid(
            "refresh_token_expire_days",
            "must be between 1 and 3650",
        ));
    }
    if c.challenge_ttl_seconds == 0 || c.challenge_ttl_seconds > 3600 {
        return Err(ConfigError::invalid(
            "challenge_ttl_seconds",
            "must be between 1 and 3600",
        ));
    }
    if c.challenge_max_outstanding == 0 {
        return Err(ConfigError::invalid(
            "challenge_max_outstanding",
            "must be at least 1",
        ));
    }
    if c.mint_audit_max_in_memory == 0 {
        return Err(ConfigError::invalid(
            "mint_audit_max_in_memory",
            "must be at least 1",
        ));
    }
    if c.fleet_max_ttl_seconds < FLEET_MIN_TTL {
        return Err(ConfigError::invalid(
            "fleet_max_ttl_seconds",
            format!("must be at least {FLEET_MIN_TTL}"),
        ));
    }
    if c.fleet_session_ttl_seconds == 0 {
        return Err(ConfigError::invalid(
            "fleet_session_ttl_seconds",
            "must be at least 1",
        ));
    }
    if !c.route_prefix.is_empty()
        && (!c.route_prefix.starts_with('/') || c.route_prefix.ends_with('/'))
    {
        return Err(ConfigError::invalid(
            "route_prefix",
            "must start with '/' and not end with '/' (or be empty)",
        ));
    }
    if c.auto_create_admin && c.admin_email.trim().is_empty() {
        return Err(ConfigError::invalid(
            "admin_email",
            "must not be empty when auto_create_admin is on",
        ));
    }
    if c.admin_role.trim().is_empty() {
        return Err(ConfigError::invalid("admin_role", "must not be empty"));
    }
    let mut algorithms = Vec::new();
    for name in &c.supported_wallet_algorithms {
        let alg: Algorithm = name.parse().map_err(|_| {
            ConfigError::invalid(
                "supported_wallet_algorithms",
                format!("unknown algorithm {name:?} (known: ML-DSA-65, Ed25519, secp256k1)"),
            )
        })?;
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    if algorithms.is_empty() {
        return Err(ConfigError::invalid(
            "supported_wallet_algorithms",
            "must name at least one algorithm",
        ));
    }
    if c.fleet_allowed_roles.iter().any(|r| r.trim().is_empty()) {
        return Err(ConfigError::invalid(
            "fleet_allowed_roles",
            "roles must not be empty",
        ));
    }
    Ok(algorithms)
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

    /// Bounds CPU-heavy work: at most `workers` at once, `queue` waiting.
    pub fn with_cpu_limits(mut self, workers: usize, queue: usize) -> Self {
        self.cpu = Some(CpuLimiter::new(workers, queue));
        self
    }

    /// Limits of the admin password login (failures per window, concurrent
    /// argon2 hashes).
    pub fn with_login_limits(mut self, limits: LoginLimits) -> Self {
        self.login_limits = limits;
        self
    }

    /// Checks the configuration, loads keys and opens stores.
    ///
    /// When called inside a tokio runtime, starts the background sweep of
    /// expired challenges (it stops when the last handle is dropped).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field at fault.
    pub fn build(self) -> Result<WalletAuth, ConfigError> {
        crate::install_crypto_provider();
        let config = self.config;
        let algorithms = validate_config(&config)?;
        let clock: SharedClock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));

        let key = match (self.signing_key, &config.signing_key_path) {
            (Some(k), _) => k,
            (None, Some(path)) if !path.is_empty() => {
                let pem = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::SigningKey(format!("cannot read signing_key_path {path:?}: {e}"))
                })?;
                Arc::new(SigningKey::from_pem(&pem)?)
            }
            _ => {
                tracing::warn!(
                    "no signing key configured: generated an ephemeral RSA key; tokens will not survive a restart \
                     (set signing_key_path)"
                );
                Arc::new(SigningKey::generate(2048)?)
            }
        };
        let refresh_secret = key.derive_secret(b"wallet-auth refresh-token HS256 key v1");
        let tokens = TokenService::new(
            Arc::clone(&key),
            &self.retired_keys,
            &refresh_secret,
            config.issuer.clone(),
            config.audience.clone(),
            Arc::clone(&clock),
        );

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
        let mut operator_roles = HashSet::new();
        operator_roles.insert("operator".to_string());
        operator_roles.insert(config.admin_role.clone());
        let fleet_roles = config.fleet_allowed_roles.iter().cloned().collect();
        let jwks_body = bytes::Bytes::from(
            serde_json::to_vec(&serde_json::json!({ "keys": tokens.jwks() }))
                .map_err(|e| ConfigError::SigningKey(e.to_string()))?,
        );

        let inner = Arc::new(Inner {
            config,
            algorithms,
            challenges,
            revocations,
            audit,
            tokens,
            clock,
            cpu: self.cpu.unwrap_or_else(CpuLimiter::for_this_machine),
            operator_roles,
            fleet_roles,
            jwks_body,
            poll_cache: RwLock::new(None),
            audit_failures: AtomicU64::new(0),
            admin,
        });
        spawn_sweeper(&inner, self.sweep_interval);
        Ok(WalletAuth { inner })
    }
}

fn spawn_sweeper(inner: &Arc<Inner>, every: Duration) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        tracing::debug!(
            "no tokio runtime at build time: expired challenges are not swept in the background"
        );
        return;
    };
    let weak = Arc::downgrade(inner);
    handle.spawn(async move {
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
        }
    });
}

fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), Error> {
    if value.chars().count() > max {
        Err(Error::FieldTooLong { field, max })
    } else {
        Ok(())
    }
}

fn decode_hex(s: &str) -> Result<Vec<u8>, Error> {
    hex::decode(s).map_err(|_| Error::InvalidHex)
}

impl WalletAuth {
    /// The configuration in force.
    pub fn config(&self) -> &AuthConfig {
        &self.inner.config
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

    /// The JWK Set, serialized.
    pub fn jwks_json(&self) -> bytes::Bytes {
        self.inner.jwks_body.clone()
    }

    /// Issues a challenge for `address`; returns it and its TTL in seconds.
    ///
    /// # Errors
    /// `AddressRequired`, `FieldTooLong`, `ChallengesFull`, `Unavailable`.
    pub async fn issue_challenge(&self, address: &str) -> Result<(String, u64), Error> {
        if address.is_empty() {
            return Err(Error::AddressRequired);
        }
        check_len("address", address, MAX_ADDRESS_LEN)?;
        let ttl = self.inner.config.challenge_ttl_seconds;
        let nonce = self
            .inner
            .challenges
            .issue(address, Duration::from_secs(ttl))
            .await?;
        Ok((nonce, ttl))
    }

    /// Verifies a wallet's signature over its challenge and mints tokens.
    ///
    /// Malformed requests (fields, hex, algorithm, lengths, an address that
    /// is not the key's wallet id) are refused before the challenge is
    /// consumed; after that, every attempt burns it.
    ///
    /// # Errors
    /// See SPEC 1 `POST /sign-in`.
    pub async fn sign_in(&self, req: SignInRequest) -> Result<SignInResponse, Error> {
        if req.address.is_empty()
            || req.public_key.is_empty()
            || req.signature.is_empty()
            || req.challenge.is_empty()
        {
            return Err(Error::SignInFieldsRequired);
        }
        check_len("address", &req.address, MAX_ADDRESS_LEN)?;
        check_len("public_key", &req.public_key, MAX_HEX_LEN)?;
        check_len("signature", &req.signature, MAX_HEX_LEN)?;
        check_len("challenge", &req.challenge, MAX_CHALLENGE_LEN)?;
        let alg_name = req.algorithm.as_deref().unwrap_or("ML-DSA-65");
        let algorithm = alg_name
            .parse::<Algorithm>()
            .ok()
            .filter(|a| self.inner.algorithms.contains(a))
            .ok_or_else(|| Error::UnsupportedAlgorithm(alg_name.chars().take(64).collect()))?;
        let public_key = decode_hex(&req.public_key)?;
        let signature = decode_hex(&req.signature)?;
        wallet::check_encoding(algorithm, &public_key, &signature).map_err(|e| {
            Error::MalformedWalletInput {
                what: if e == wallet::VerifyError::MalformedSignature {
                    "signature"
                } else {
                    "public_key"
                },
                algorithm: algorithm.as_str(),
            }
        })?;
        let wallet_id = hex::encode(&public_key);
        if req.address != wallet_id {
            return Err(Error::AddressMismatch);
        }

        if !self
            .inner
            .challenges
            .consume(&req.address, &req.challenge)
            .await?
        {
            return Err(Error::InvalidChallenge);
        }

        let now = self.inner.clock.now_secs();
        let access = AccessClaims {
            algorithm: Some(algorithm.as_str().to_string()),
            wallet_address: Some(wallet_id.clone()),
            ..self.access_claims(&wallet_id, "wallet", now)
        };
        let refresh = self.refresh_claims(&wallet_id, "wallet", None, now);
        let message = req.challenge.into_bytes();
        let pair = self
            .issue_pair(access, refresh, move || {
                wallet::verify(algorithm, &public_key, &message, &signature)
                    .map_err(Error::SignatureFailed)
            })
            .await?;
        Ok(SignInResponse {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            address: wallet_id,
            algorithm: algorithm.as_str(),
        })
    }

    fn access_claims(&self, sub: &str, role: &str, now: u64) -> AccessClaims {
        let c = &self.inner.config;
        AccessClaims::new(
            &c.issuer,
            &c.audience,
            sub,
            role,
            now,
            now + c.access_token_expire_minutes * 60,
        )
    }

    fn refresh_claims(
        &self,
        sub: &str,
        role: &str,
        family: Option<String>,
        now: u64,
    ) -> RefreshClaims {
        let c = &self.inner.config;
        let jti = new_jti();
        RefreshClaims {
            iss: c.issuer.clone(),
            aud: c.audience.clone(),
            sub: sub.to_string(),
            iat: now,
            exp: now + c.refresh_token_expire_days * 86_400,
            fam: family.unwrap_or_else(|| jti.clone()),
            jti,
            role: Some(role.to_string()),
            token_type: "refresh".into(),
        }
    }

    /// Records mints whose lifetime reaches `mint_audit_min_ttl_seconds`.
    async fn audit(&self, mints: &[(&AccessClaims, &str)]) -> Result<(), Error> {
        let min = self.inner.config.mint_audit_min_ttl_seconds;
        let records: Vec<MintRecord> = mints
            .iter()
            .filter(|(c, _)| c.exp.saturating_sub(c.iat) >= min)
            .map(|(c, kind)| MintRecord {
                jti: c.jti.clone(),
                sub: c.sub.clone(),
                role: c.role.clone(),
                iat: c.iat,
                exp: c.exp,
                kind: (*kind).to_string(),
                scope: c.scope.clone().unwrap_or_default(),
                agent_id: c.agent_id.clone().unwrap_or_default(),
                session_id: c.session_id.clone().unwrap_or_default(),
            })
            .collect();
        if records.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.inner.audit.append(records).await {
            self.inner.audit_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "mint audit write failed");
            if self.inner.config.mint_audit_fail_closed {
                return Err(Error::Unavailable(e));
            }
        }
        Ok(())
    }

    /// Exchanges a refresh token for a new pair (one-time rotation).
    ///
    /// # Errors
    /// See SPEC 1 `POST /refresh`.
    pub async fn refresh(&self, token: &str) -> Result<TokenPair, Error> {
        if token.is_empty() {
            return Err(Error::RefreshRequired);
        }
        let claims = self
            .inner
            .tokens
            .validate_refresh(token)
            .map_err(|e| match e {
                TokenError::Expired => Error::RefreshExpired,
                other => Error::RefreshInvalid(other.to_string()),
            })?;
        let store = &self.inner.revocations;
        if store.get(&family_key(&claims.fam)).await?.is_some() {
            return Err(Error::RefreshInvalid("token family revoked".into()));
        }
        if let Some(entry) = store.get(&claims.jti).await? {
            return Err(match entry.kind {
                RevocationKind::RefreshUsed => self.revoke_family(&claims).await?,
                _ => Error::RefreshInvalid("token revoked".into()),
            });
        }
        let now = self.inner.clock.now_secs();
        let role = claims
            .role
            .clone()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "user".into());
        let next = self.refresh_claims(&claims.sub, &role, Some(claims.fam.clone()), now);
        // Mark this token used. The reason names the successor, so of two
        // concurrent exchanges exactly one sees its own entry come back.
        let mine = RevocationEntry {
            jti: claims.jti.clone(),
            revoked_at: self.inner.clock.now_f64(),
            reason: format!("rotated to {}", next.jti),
            revoked_by: claims.sub.clone(),
            exp: Some(claims.exp),
            kind: RevocationKind::RefreshUsed,
        };
        let stored = store.revoke(mine.clone()).await?;
        if stored.reason != mine.reason || stored.kind != RevocationKind::RefreshUsed {
            return Err(self.revoke_family(&claims).await?);
        }
        let access = self.access_claims(&claims.sub, &role, now);
        self.issue_pair(access, next, || Ok(())).await
    }

    /// Reuse of a spent refresh token: revoke its whole family.
    async fn revoke_family(&self, claims: &RefreshClaims) -> Result<Error, Error> {
        tracing::warn!(jti = %claims.jti, family = %claims.fam, "refresh token reuse detected; revoking its family");
        self.inner
            .revocations
            .revoke(RevocationEntry {
                jti: family_key(&claims.fam),
                revoked_at: self.inner.clock.now_f64(),
                reason: "refresh token reuse detected".into(),
                revoked_by: claims.sub.clone(),
                exp: Some(
                    self.inner.clock.now_secs()
                        + self.inner.config.refresh_token_expire_days * 86_400,
                ),
                kind: RevocationKind::RefreshFamily,
            })
            .await?;
        Ok(Error::RefreshInvalid(
            "refresh token already used; its session is revoked".into(),
        ))
    }

    /// Password login of the bootstrap admin (SPEC 1 `POST /login`).
    ///
    /// # Errors
    /// `LoginDisabled`, `InvalidCredentials`, `TooManyAttempts`, `Overloaded`.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client_ip: Option<std::net::IpAddr>,
    ) -> Result<TokenPair, Error> {
        let Some(admin) = &self.inner.admin else {
            return Err(Error::LoginDisabled);
        };
        check_len("email", email, MAX_TEXT_LEN)?;
        check_len("password", password, MAX_TEXT_LEN)?;
        admin
            .check(email, password, client_ip, self.inner.clock.now_secs())
            .await?;
        self.mint_login(email).await
    }

    /// Mints a token pair for a password login whose credentials have been
    /// checked.
    async fn mint_login(&self, email: &str) -> Result<TokenPair, Error> {
        let now = self.inner.clock.now_secs();
        let role = self.inner.config.admin_role.clone();
        let access = self.access_claims(email, &role, now);
        let refresh = self.refresh_claims(email, &role, None, now);
        self.issue_pair(access, refresh, || Ok(())).await
    }

    /// Runs `check` (a wallet verification, or nothing) and signs the pair on
    /// the CPU pool, then audits both mints.
    async fn issue_pair<F>(
        &self,
        access: AccessClaims,
        refresh: RefreshClaims,
        check: F,
    ) -> Result<TokenPair, Error>
    where
        F: FnOnce() -> Result<(), Error> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let (a, r) = (access.clone(), refresh.clone());
        let (access_token, refresh_token) = self
            .inner
            .cpu
            .run(move || {
                check()?;
                inner.mint_pair(&a, &r)
            })
            .await??;
        self.audit(&[(&access, "access"), (&refresh.as_audit(), "refresh")])
            .await?;
        Ok(TokenPair {
            access_token,
            refresh_token,
        })
    }

    /// Checks an `X-Fleet-Secret` value in constant time.
    ///
    /// # Errors
    /// `FleetDisabled` (404) when no secret is configured,
    /// `FleetSecretInvalid` (401) when it is missing or wrong.
    pub fn check_fleet_secret(&self, secret: Option<&[u8]>) -> Result<(), Error> {
        let configured = self.inner.config.fleet_mint_secret.as_bytes();
        if configured.is_empty() {
            return Err(Error::FleetDisabled);
        }
        if secret.is_some_and(|s| secret_eq(s, configured)) {
            Ok(())
        } else {
            Err(Error::FleetSecretInvalid)
        }
    }

    /// Mints a fleet session token. `secret` is the `X-Fleet-Secret` header.
    ///
    /// # Errors
    /// See SPEC 1 `POST /fleet/sessions`.
    pub async fn mint_fleet_session(
        &self,
        secret: Option<&[u8]>,
        req: FleetRequest,
    ) -> Result<FleetSession, Error> {
        self.check_fleet_secret(secret)?;
        if req.session_id.is_empty() {
            return Err(Error::FieldRequired("session_id"));
        }
        if req.agent_id.is_empty() {
            return Err(Error::FieldRequired("agent_id"));
        }
        check_len("session_id", &req.session_id, MAX_TEXT_LEN)?;
        check_len("agent_id", &req.agent_id, MAX_TEXT_LEN)?;
        let role = req.role.unwrap_or_else(|| "agent".into());
        check_len("role", &role, MAX_TEXT_LEN)?;
        if !self.inner.fleet_roles.contains(&role) {
            return Err(Error::RoleNotAllowed(role));
        }
        if let Some(scope) = &req.scope {
            check_len("scope", scope, MAX_TEXT_LEN)?;
        }
        let c = &self.inner.config;
        let ttl = match req.ttl {
            Some(t) => t.clamp(
                FLEET_MIN_TTL as i64,
                c.fleet_max_ttl_seconds.min(i64::MAX as u64) as i64,
            ) as u64,
            None => c
                .fleet_session_ttl_seconds
                .clamp(FLEET_MIN_TTL, c.fleet_max_ttl_seconds),
        };
        let now = self.inner.clock.now_secs();
        let claims = AccessClaims {
            exp: now.saturating_add(ttl),
            session_id: Some(req.session_id.clone()),
            agent_id: Some(req.agent_id),
            scope: req.scope.filter(|s| !s.is_empty()),
            ..self.access_claims(&req.session_id, &role, now)
        };
        let inner = Arc::clone(&self.inner);
        let c2 = claims.clone();
        let token = self
            .inner
            .cpu
            .run(move || inner.tokens.sign_access(&c2))
            .await?
            .map_err(token_internal)?;
        self.audit(&[(&claims, "sign")]).await?;
        Ok(FleetSession {
            session_token: token,
            exp: claims.exp,
        })
    }

    /// Validates a Bearer token for a gated route: an access token of ours,
    /// not revoked, with a role the gate admits.
    ///
    /// # Errors
    /// `Unauthorized` (401) for a missing, invalid or revoked token;
    /// `Forbidden` (403) for a valid token with the wrong role.
    pub async fn authorize(&self, token: Option<&str>, gate: Gate) -> Result<AccessClaims, Error> {
        let claims = self.authenticate(token).await?;
        let role = claims.role.as_str();
        let ok = match gate {
            Gate::Operator => self.inner.operator_roles.contains(role),
            Gate::Service => role == "service" || self.inner.operator_roles.contains(role),
        };
        if ok {
            Ok(claims)
        } else {
            Err(Error::Forbidden)
        }
    }

    /// Validates a Bearer token of ours (any role): signature, `iss`, `aud`,
    /// `exp`, not a refresh token, not revoked.
    ///
    /// # Errors
    /// `Unauthorized` with the reason.
    pub async fn authenticate(&self, token: Option<&str>) -> Result<AccessClaims, Error> {
        let token = token.ok_or_else(|| Error::Unauthorized("missing bearer token".into()))?;
        let claims = self
            .inner
            .tokens
            .validate_access(token)
            .map_err(|e| Error::Unauthorized(format!("invalid token: {e}")))?;
        if self.inner.revocations.get(&claims.jti).await?.is_some() {
            return Err(Error::Unauthorized("invalid token: token revoked".into()));
        }
        Ok(claims)
    }

    /// Adds a jti to the denylist on behalf of `caller` (idempotent). `exp`,
    /// when the caller knows the token's expiry, lets the entry drop out of
    /// `/revoked-jtis` once the token is dead anyway (the file keeps it).
    ///
    /// # Errors
    /// `JtiRequired`, `FieldTooLong`, `Unavailable` when it cannot be made durable.
    pub async fn revoke(
        &self,
        caller: &AccessClaims,
        jti: &str,
        reason: &str,
        exp: Option<u64>,
    ) -> Result<RevocationEntry, Error> {
        if jti.is_empty() {
            return Err(Error::JtiRequired);
        }
        check_len("jti", jti, MAX_TEXT_LEN)?;
        check_len("reason", reason, MAX_TEXT_LEN)?;
        let entry = RevocationEntry {
            jti: jti.to_string(),
            revoked_at: self.inner.clock.now_f64(),
            reason: reason.to_string(),
            revoked_by: caller.sub.clone(),
            exp,
            kind: RevocationKind::Token,
        };
        let stored = self.inner.revocations.revoke(entry).await?;
        tracing::info!(jti = %stored.jti, by = %caller.sub, "revoked");
        Ok(stored)
    }

    /// The body of `/revoked-jtis`: operator revocations whose token has not
    /// expired, newest first. Cached until the denylist changes or an entry
    /// expires.
    ///
    /// # Errors
    /// `Unavailable` when the store cannot answer.
    pub async fn revoked_jtis_json(&self) -> Result<bytes::Bytes, Error> {
        Ok(self.poll_cache().await?.body.clone())
    }

    /// The body of [`revoked_jtis_json`](Self::revoked_jtis_json),
    /// gzip-compressed (`Content-Encoding: gzip`), cached alike. The route
    /// serves it to clients that send `Accept-Encoding: gzip`, as
    /// pico-client-auth's httpx does.
    ///
    /// # Errors
    /// `Unavailable` when the store cannot answer.
    pub async fn revoked_jtis_gzip(&self) -> Result<bytes::Bytes, Error> {
        let cache = self.poll_cache().await?;
        if let Some(z) = cache.gzip.get() {
            return Ok(z.clone());
        }
        let z = gzip(&cache.body)?;
        Ok(cache.gzip.get_or_init(|| z).clone())
    }

    async fn poll_cache(&self) -> Result<Arc<PollCache>, Error> {
        let now = self.inner.clock.now_secs();
        let version = self.inner.revocations.version();
        if let Some(c) = self
            .inner
            .poll_cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            if c.version == version && now < c.valid_until {
                return Ok(Arc::clone(c));
            }
        }
        let all = self.inner.revocations.list().await?;
        let mut valid_until = u64::MAX;
        let items: Vec<&RevocationEntry> = all
            .iter()
            .filter(|e| e.kind == RevocationKind::Token)
            .filter(|e| match e.exp {
                Some(exp) if exp <= now => false,
                Some(exp) => {
                    valid_until = valid_until.min(exp);
                    true
                }
                None => true,
            })
            .collect();
        #[derive(Serialize)]
        struct Items<'a> {
            items: Vec<&'a RevocationEntry>,
        }
        let body = bytes::Bytes::from(
            serde_json::to_vec(&Items { items })
                .map_err(|e| Error::Internal(format!("serialize denylist: {e}")))?,
        );
        let cache = Arc::new(PollCache {
            version,
            valid_until,
            body,
            gzip: std::sync::OnceLock::new(),
        });
        *self
            .inner
            .poll_cache
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&cache));
        Ok(cache)
    }

    /// The newest `limit` audited mints with their revocation status.
    ///
    /// # Errors
    /// `Unavailable` when a store cannot answer.
    pub async fn mints(&self, limit: Option<i64>) -> Result<Vec<MintView>, Error> {
        let max = self.inner.config.mint_audit_max_in_memory;
        let limit = limit
            .unwrap_or(200)
            .clamp(1, max.min(i64::MAX as usize) as i64) as usize;
        let records = self.inner.audit.recent(limit).await?;
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            let revoked =
                !record.jti.is_empty() && self.inner.revocations.get(&record.jti).await?.is_some();
            out.push(MintView { record, revoked });
        }
        Ok(out)
    }
}

impl Inner {
    fn mint_pair(
        &self,
        access: &AccessClaims,
        refresh: &RefreshClaims,
    ) -> Result<(String, String), Error> {
        let a = self.tokens.sign_access(access).map_err(token_internal)?;
        let r = self.tokens.sign_refresh(refresh).map_err(token_internal)?;
        Ok((a, r))
    }
}

fn token_internal(e: TokenError) -> Error {
    Error::Internal(format!("token signing failed: {e}"))
}

fn family_key(fam: &str) -> String {
    format!("family:{fam}")
}

/// Constant-time equality of two secrets of any lengths (their SHA-256
/// digests are compared, so the length does not leak either).
pub(crate) fn secret_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let (da, db) = (Sha256::digest(a), Sha256::digest(b));
    bool::from(da.as_slice().ct_eq(db.as_slice()))
}

impl RefreshClaims {
    /// The audit view of a refresh token (same fields as an access token's).
    fn as_audit(&self) -> AccessClaims {
        AccessClaims {
            jti: self.jti.clone(),
            token_type: Some("refresh".into()),
            ..AccessClaims::new(
                &self.iss,
                &self.aud,
                &self.sub,
                self.role.as_deref().unwrap_or(""),
                self.iat,
                self.exp,
            )
        }
    }
}
