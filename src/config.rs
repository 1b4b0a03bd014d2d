//! `AuthConfig`: plain data with the names and defaults of pico-server-auth's
//! `server_auth:` tree (SPEC section 5).

use serde::{Deserialize, Serialize};

/// The router's configuration. Plain data: build it with
/// `AuthConfig { issuer: ..., ..Default::default() }` or deserialize it.
/// [`crate::WalletAuth::builder`] checks it once and refuses a bad value with a
/// [`crate::ConfigError`] naming the field.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct AuthConfig {
    /// `iss` of every token, and the base URL consumers fetch JWKS from.
    pub issuer: String,
    /// `aud` of every token.
    pub audience: String,
    /// Token signing algorithm; only `RS256` is supported.
    pub algorithm: String,
    /// Access token lifetime in minutes.
    pub access_token_expire_minutes: u64,
    /// Refresh token lifetime in days.
    pub refresh_token_expire_days: u64,
    /// How long a challenge may be consumed, in seconds.
    pub challenge_ttl_seconds: u64,
    /// Enables `POST /login` for the bootstrap admin.
    pub auto_create_admin: bool,
    /// The bootstrap admin's email.
    pub admin_email: String,
    /// The admin password: a PHC argon2 hash (preferred) or a plain password
    /// (hashed at start-up). No default.
    pub admin_password: Option<String>,
    /// The role carried by the bootstrap admin's tokens.
    pub admin_role: String,
    /// Wallet algorithms accepted at `/sign-in`.
    pub supported_wallet_algorithms: Vec<String>,
    /// The `X-Fleet-Secret` value; empty disables `/fleet/sessions`.
    pub fleet_mint_secret: String,
    /// Default fleet session lifetime in seconds.
    pub fleet_session_ttl_seconds: u64,
    /// Upper bound for a fleet session's lifetime in seconds.
    pub fleet_max_ttl_seconds: u64,
    /// Roles that `/fleet/sessions` may mint.
    pub fleet_allowed_roles: Vec<String>,
    /// JSON Lines file of the jti denylist; empty keeps it in memory.
    pub revocation_store_path: String,
    /// JSON Lines file of the mint audit; empty keeps it in memory.
    pub mint_audit_path: String,
    /// Mints shorter-lived than this are not audited.
    pub mint_audit_min_ttl_seconds: u64,
    /// How many recent mints are kept in memory.
    pub mint_audit_max_in_memory: usize,
    /// When set, a failed audit write fails the mint (default: log and count).
    pub mint_audit_fail_closed: bool,
    /// PKCS#8 PEM RSA private key used to sign tokens.
    pub signing_key_path: Option<String>,
    /// Outstanding challenges past which `/challenge` answers 503.
    pub challenge_max_outstanding: usize,
    /// Route prefix of the router.
    pub route_prefix: String,
    /// `redis://` URL of a Redis shared by several instances (feature
    /// `redis`); empty keeps memory and files. The library does not connect
    /// by itself: a caller that sets it opens `RedisStores` and passes the
    /// three stores to the builder (the standalone server does).
    pub redis_url: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: "http://localhost:8100".into(),
            audience: "pico".into(),
            algorithm: "RS256".into(),
            access_token_expire_minutes: 480,
            refresh_token_expire_days: 7,
            challenge_ttl_seconds: 60,
            auto_create_admin: false,
            admin_email: "admin@pico.local".into(),
            admin_password: None,
            admin_role: "operator".into(),
            supported_wallet_algorithms: vec![
                "ML-DSA-65".into(),
                "Ed25519".into(),
                "secp256k1".into(),
            ],
            fleet_mint_secret: String::new(),
            fleet_session_ttl_seconds: 86_400,
            fleet_max_ttl_seconds: 100 * 365 * 86_400,
            fleet_allowed_roles: vec!["agent".into(), "service".into()],
            revocation_store_path: String::new(),
            mint_audit_path: String::new(),
            mint_audit_min_ttl_seconds: 300,
            mint_audit_max_in_memory: 5000,
            mint_audit_fail_closed: false,
            signing_key_path: None,
            challenge_max_outstanding: 1_000_000,
            route_prefix: "/api/v1/auth".into(),
            redis_url: String::new(),
        }
    }
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets are redacted.
        f.debug_struct("AuthConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("algorithm", &self.algorithm)
            .field(
                "access_token_expire_minutes",
                &self.access_token_expire_minutes,
            )
            .field("refresh_token_expire_days", &self.refresh_token_expire_days)
            .field("challenge_ttl_seconds", &self.challenge_ttl_seconds)
            .field("auto_create_admin", &self.auto_create_admin)
            .field("admin_email", &self.admin_email)
            .field(
                "admin_password",
                &self.admin_password.as_ref().map(|_| "<redacted>"),
            )
            .field("admin_role", &self.admin_role)
            .field(
                "supported_wallet_algorithms",
                &self.supported_wallet_algorithms,
            )
            .field(
                "fleet_mint_secret",
                &if self.fleet_mint_secret.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("fleet_session_ttl_seconds", &self.fleet_session_ttl_seconds)
            .field("fleet_max_ttl_seconds", &self.fleet_max_ttl_seconds)
            .field("fleet_allowed_roles", &self.fleet_allowed_roles)
            .field("revocation_store_path", &self.revocation_store_path)
            .field("mint_audit_path", &self.mint_audit_path)
            .field(
                "mint_audit_min_ttl_seconds",
                &self.mint_audit_min_ttl_seconds,
            )
            .field("mint_audit_max_in_memory", &self.mint_audit_max_in_memory)
            .field("mint_audit_fail_closed", &self.mint_audit_fail_closed)
            .field("signing_key_path", &self.signing_key_path)
            .field("challenge_max_outstanding", &self.challenge_max_outstanding)
            .field("route_prefix", &self.route_prefix)
            .field(
                "redis_url",
                // The URL may carry a password.
                &if self.redis_url.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .finish()
    }
}
