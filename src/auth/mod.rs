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

mod builder;
mod operator;
mod refresh;
mod sign_in;

pub use self::builder::WalletAuthBuilder;

fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), Error> {
    if value.chars().count() > max {
        Err(Error::FieldTooLong { field, max })
    } else {
        Ok(())
    }
}

fn decode_hex(s: &str) -> Result<Vec<u8>, Error> {
    crate::hexcodec::decode(s).ok_or(Error::InvalidHex)
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
