//! `AuthConfig`: plain data with the names and defaults of pico-server-auth's
//! `server_auth:` tree (SPEC section 5), its checks
//! ([`AuthConfig::validate`]), and [`Secret`], the redacting string its
//! secrets are kept in.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::wallet::Algorithm;
use crate::ConfigError;

/// The router's configuration. Plain data: build it with
/// `AuthConfig { issuer: ..., ..Default::default() }` or deserialize it.
/// [`crate::WalletAuth::builder`] checks it once and refuses a bad value with a
/// [`crate::ConfigError`] naming the field (see [`AuthConfig::validate`]).
///
/// `Debug` shows no secret: `admin_password`, `fleet_mint_secret` and
/// `redis_url` are [`Secret`]s.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct AuthConfig {
    /// `iss` of every token, and the base URL consumers fetch JWKS from.
    pub issuer: String,
    /// `aud` of every token.
    pub audience: String,
    /// Algorithm of the access and fleet tokens: `RS256` (the default) or
    /// `ML-DSA-65` (RFC 9964; SPEC 8). Refresh tokens are HS256 either way.
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
    pub admin_password: Option<Secret>,
    /// The role carried by the bootstrap admin's tokens.
    pub admin_role: String,
    /// Wallet algorithms accepted at `/sign-in`.
    pub supported_wallet_algorithms: Vec<String>,
    /// The `X-Fleet-Secret` value; empty disables `/fleet/sessions`. At
    /// least 16 bytes when set (32 or more recommended: shorter is warned
    /// about).
    pub fleet_mint_secret: Secret,
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
    /// three stores to the builder (the standalone server does). A
    /// [`Secret`], since it may carry a password.
    pub redis_url: Secret,
    /// PEM file of the CA certificate(s) that Redis's certificate must chain
    /// to, for a `rediss://` `redis_url`; empty trusts the system's roots.
    /// Read and checked at start-up (`RedisTls::from_config`, feature
    /// `redis`), like the two below.
    pub redis_tls_ca_file: String,
    /// PEM certificate (chain) this instance shows Redis for mutual TLS
    /// (`tls-auth-clients yes`); set with `redis_tls_key_file`, or neither.
    pub redis_tls_cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `redis_tls_cert_file`.
    pub redis_tls_key_file: String,
    /// Requests per minute one client IP may make to `/challenge`,
    /// `/sign-in`, `/refresh`, `/login` and `/fleet/sessions` together
    /// (a token bucket with a burst of the same size); 0 turns it off.
    /// Applied where the peer address is known (served with
    /// [`crate::http::serve`] or `ConnectInfo<SocketAddr>`).
    pub rate_limit_per_ip_per_minute: u32,
    /// Refreshes per minute of one refresh family; 0 turns it off.
    pub refresh_per_family_per_minute: u32,
    /// CIDRs (or addresses) of proxies whose `X-Forwarded-For` is believed;
    /// empty (the default) ignores the header.
    pub trusted_proxies: Vec<String>,
    /// No refresh family outlives this many days from its sign-in or login.
    pub session_max_days: u64,
    /// Lets a router with a persistent signing key keep its denylist in
    /// memory (a restart then forgets every revocation and re-arms every
    /// used refresh token). Off: `build()` refuses that combination.
    pub allow_memory_revocations: bool,
    /// The `domain` every sign-in message names (SPEC 9): the site a wallet
    /// shows and checks. Empty (the default): the issuer's host[:port]. An
    /// RFC 3986 authority, as EIP-4361 requires.
    pub domain: String,
    /// The `URI:` of every sign-in message. Empty (the default): the issuer.
    pub uri: String,
    /// One line shown to the user in every sign-in message; empty for none.
    /// EIP-4361's grammar applies: ASCII letters, digits, spaces and
    /// `-._~:/?#[]@!$&'()*+,;=` (a line break or `"` is a start-up error).
    pub statement: String,
    /// EIP-155 chain ids an `eip191` challenge may name (SPEC 9); the first
    /// is the default. At least one, each 1 to 2^53 - 1.
    pub chain_ids: Vec<u64>,
    /// Refuses sign-ins that sign the bare nonce: every `/sign-in` must
    /// present the issued `message` (SPEC 9).
    pub require_signed_message: bool,
    /// Further audiences a client may ask `/sign-in`, `/login` and
    /// `/fleet/sessions` for (SPEC 2): the access token's `aud` is then that
    /// audience, so a token minted for one downstream service is refused by
    /// another. Empty by default; `audience` stays the default.
    pub audiences: Vec<String>,
    /// Most `/revoked-jtis/stream` connections open at once; past it a new
    /// one is answered `503` with `Retry-After`.
    pub revocation_stream_max: usize,
    /// Where the host serves Prometheus metrics (SPEC 11), e.g.
    /// `127.0.0.1:9464`. Non-empty turns metrics collection on
    /// ([`WalletAuth::metrics_router`](crate::WalletAuth::metrics_router)
    /// serves them); the library never binds it, the host does (the
    /// standalone server binds it, and defaults it to `127.0.0.1:9464`).
    /// Empty (the library's default) = off, with no per-request cost.
    pub metrics_listen: String,
    /// The signing key set's directory (SPEC 8): one PKCS#8 file per key
    /// with its state, rotated by `standalone keys rotate` or every
    /// `key_rotation_days`. Empty = no key set (`signing_key_path`, or an
    /// ephemeral key). The standalone server defaults it to `keys/` in its
    /// data directory. `signing_key_path`, when set, wins.
    pub signing_keys_dir: String,
    /// Automatic rotation of the key set every this many days; 0 = off.
    pub key_rotation_days: u64,
    /// How long a new key of the key set is published in the JWKS before it
    /// signs. The JWKS `Cache-Control: max-age` never exceeds it.
    pub key_prepublish_seconds: u64,
    /// How often a running server re-reads its key set directory, so a
    /// rotation made by another process is picked up without a restart.
    /// Default 30; must be shorter than `key_prepublish_seconds`.
    pub key_reload_seconds: u64,
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
            fleet_mint_secret: Secret::default(),
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
            redis_url: Secret::default(),
            redis_tls_ca_file: String::new(),
            redis_tls_cert_file: String::new(),
            redis_tls_key_file: String::new(),
            rate_limit_per_ip_per_minute: 600,
            refresh_per_family_per_minute: 10,
            trusted_proxies: Vec::new(),
            session_max_days: 30,
            allow_memory_revocations: false,
            domain: String::new(),
            uri: String::new(),
            statement: String::new(),
            chain_ids: vec![1],
            require_signed_message: false,
            audiences: Vec::new(),
            revocation_stream_max: 1000,
            metrics_listen: String::new(),
            signing_keys_dir: String::new(),
            key_rotation_days: 0,
            key_prepublish_seconds: 600,
            key_reload_seconds: crate::keyset::DEFAULT_RELOAD_SECS,
        }
    }
}

/// Shortest `fleet_mint_secret` accepted, in bytes.
const FLEET_SECRET_MIN_LEN: usize = 16;
/// Shortest `fleet_mint_secret` accepted without a warning, in bytes.
const FLEET_SECRET_GOOD_LEN: usize = 32;

/// The role that opens the operator surface; never a fleet role.
const OPERATOR_ROLE: &str = "operator";
/// The role of every wallet sign-in.
const WALLET_ROLE: &str = "wallet";

impl AuthConfig {
    /// Checks every field; [`crate::WalletAuth::builder`]'s `build` calls it.
    /// Logs a warning (`tracing`) for a `fleet_mint_secret` shorter than 32
    /// bytes.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first field at fault: a value out
    /// of range, an unknown wallet algorithm, or a role guardrail (the
    /// admin role may not be `wallet` nor a fleet role; fleet roles may not
    /// include `operator` or the admin role; a fleet secret is at least 16
    /// bytes), or Redis TLS settings that do not fit together (a client
    /// certificate without its key or the reverse, TLS files without a
    /// `rediss://` `redis_url`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.signing_algorithm()?;
        if self.key_reload_seconds == 0 || self.key_reload_seconds > 86_400 {
            return Err(ConfigError::invalid(
                "key_reload_seconds",
                "must be between 1 and 86400",
            ));
        }
        if !self.signing_keys_dir.is_empty()
            && self.key_prepublish_seconds > 0
            && self.key_reload_seconds >= self.key_prepublish_seconds
        {
            return Err(ConfigError::invalid(
                "key_reload_seconds",
                format!(
                    "is {}, but must be shorter than key_prepublish_seconds ({}): every \
                     instance must see a new key before it signs",
                    self.key_reload_seconds, self.key_prepublish_seconds
                ),
            ));
        }
        if self.key_rotation_days > 36_500 {
            return Err(ConfigError::invalid(
                "key_rotation_days",
                "must be at most 36500 (0 = off)",
            ));
        }
        if self.issuer.trim().is_empty() {
            return Err(ConfigError::invalid("issuer", "must not be empty"));
        }
        if self.audience.trim().is_empty() {
            return Err(ConfigError::invalid("audience", "must not be empty"));
        }
        if self.access_token_expire_minutes == 0 || self.access_token_expire_minutes > 525_600 {
            return Err(ConfigError::invalid(
                "access_token_expire_minutes",
                "must be between 1 and 525600",
            ));
        }
        if self.refresh_token_expire_days == 0 || self.refresh_token_expire_days > 3650 {
            return Err(ConfigError::invalid(
                "refresh_token_expire_days",
                "must be between 1 and 3650",
            ));
        }
        if self.challenge_ttl_seconds == 0 || self.challenge_ttl_seconds > 3600 {
            return Err(ConfigError::invalid(
                "challenge_ttl_seconds",
                "must be between 1 and 3600",
            ));
        }
        if self.challenge_max_outstanding == 0 {
            return Err(ConfigError::invalid(
                "challenge_max_outstanding",
                "must be at least 1",
            ));
        }
        if self.mint_audit_max_in_memory == 0 {
            return Err(ConfigError::invalid(
                "mint_audit_max_in_memory",
                "must be at least 1",
            ));
        }
        let fleet_min_ttl = crate::auth::FLEET_MIN_TTL;
        if self.fleet_max_ttl_seconds < fleet_min_ttl {
            return Err(ConfigError::invalid(
                "fleet_max_ttl_seconds",
                format!("must be at least {fleet_min_ttl}"),
            ));
        }
        if self.fleet_session_ttl_seconds == 0 {
            return Err(ConfigError::invalid(
                "fleet_session_ttl_seconds",
                "must be at least 1",
            ));
        }
        if !self.route_prefix.is_empty()
            && (!self.route_prefix.starts_with('/') || self.route_prefix.ends_with('/'))
        {
            return Err(ConfigError::invalid(
                "route_prefix",
                "must start with '/' and not end with '/' (or be empty)",
            ));
        }
        self.check_redis_tls()?;
        if self.auto_create_admin && self.admin_email.trim().is_empty() {
            return Err(ConfigError::invalid(
                "admin_email",
                "must not be empty when auto_create_admin is on",
            ));
        }
        if self.admin_role.trim().is_empty() {
            return Err(ConfigError::invalid("admin_role", "must not be empty"));
        }
        self.wallet_algorithms()?;
        if self.session_max_days == 0 || self.session_max_days > 3650 {
            return Err(ConfigError::invalid(
                "session_max_days",
                "must be between 1 and 3650",
            ));
        }
        crate::limit::TrustedProxies::parse(&self.trusted_proxies)
            .map_err(|e| ConfigError::invalid("trusted_proxies", e.to_string()))?;
        if self.fleet_allowed_roles.iter().any(|r| r.trim().is_empty()) {
            return Err(ConfigError::invalid(
                "fleet_allowed_roles",
                "roles must not be empty",
            ));
        }
        crate::message::MessageSettings::from_config(self)?;
        self.check_chain_ids()?;
        self.check_roles()?;
        self.check_audiences()?;
        if self.revocation_stream_max == 0 {
            return Err(ConfigError::invalid(
                "revocation_stream_max",
                "must be at least 1",
            ));
        }
        self.check_fleet_secret()
    }

    /// `chain_ids`: at least one, distinct, each a chain id a JavaScript
    /// wallet can name exactly (1 to 2^53 - 1).
    fn check_chain_ids(&self) -> Result<(), ConfigError> {
        const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
        if self.chain_ids.is_empty() {
            return Err(ConfigError::invalid(
                "chain_ids",
                "must name at least one chain id",
            ));
        }
        for (i, id) in self.chain_ids.iter().enumerate() {
            if *id == 0 || *id > MAX_SAFE_INTEGER {
                return Err(ConfigError::invalid(
                    "chain_ids",
                    format!("{id} is not a chain id (1 to 2^53 - 1)"),
                ));
            }
            if self.chain_ids[..i].contains(id) {
                return Err(ConfigError::invalid(
                    "chain_ids",
                    format!("{id} is listed twice"),
                ));
            }
        }
        Ok(())
    }

    /// Every audience a token may be minted for: `audience` first, then
    /// those of `audiences` (without repeats).
    pub fn all_audiences(&self) -> Vec<String> {
        let mut all = vec![self.audience.clone()];
        for a in &self.audiences {
            if !all.contains(a) {
                all.push(a.clone());
            }
        }
        all
    }

    /// `audiences`: non-empty names without surrounding spaces or control
    /// characters, each at most 1,024 characters.
    fn check_audiences(&self) -> Result<(), ConfigError> {
        for a in &self.audiences {
            if a.is_empty()
                || a.trim() != a
                || a.chars().any(char::is_control)
                || a.chars().count() > crate::auth::MAX_TEXT_LEN
            {
                return Err(ConfigError::invalid(
                    "audiences",
                    format!("{a:?} is not an audience name (non-empty, no surrounding spaces or control characters, at most 1024 characters)"),
                ));
            }
        }
        Ok(())
    }

    /// The algorithm `algorithm` names.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `algorithm` for any other name.
    pub fn signing_algorithm(&self) -> Result<crate::token::SigningAlgorithm, ConfigError> {
        crate::token::SigningAlgorithm::from_name(&self.algorithm).ok_or_else(|| {
            ConfigError::invalid(
                "algorithm",
                format!(
                    "only RS256 and ML-DSA-65 are supported, got {:?}",
                    self.algorithm
                ),
            )
        })
    }

    /// The distinct wallet algorithms of `supported_wallet_algorithms`, in
    /// their order.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `supported_wallet_algorithms` for an
    /// unknown name or an empty list.
    pub fn wallet_algorithms(&self) -> Result<Vec<Algorithm>, ConfigError> {
        let mut algorithms = Vec::new();
        for name in &self.supported_wallet_algorithms {
            let alg: Algorithm = name.parse().map_err(|_| {
                ConfigError::invalid(
                    "supported_wallet_algorithms",
                    format!("unknown algorithm {name:?} (known: ML-DSA-65, Ed25519, secp256k1, eip191, solana)"),
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
        Ok(algorithms)
    }

    /// The shape of the Redis TLS settings, without reading a file (that is
    /// `RedisTls::from_config`'s): a client certificate and its key both or
    /// neither, and any of the three only with a `rediss://` `redis_url`.
    pub(crate) fn check_redis_tls(&self) -> Result<(), ConfigError> {
        let cert = !self.redis_tls_cert_file.is_empty();
        let key = !self.redis_tls_key_file.is_empty();
        if cert != key {
            let (field, other) = if cert {
                ("redis_tls_key_file", "redis_tls_cert_file")
            } else {
                ("redis_tls_cert_file", "redis_tls_key_file")
            };
            return Err(ConfigError::invalid(
                field,
                format!("must be set when {other} is (a client certificate and its key: both or neither)"),
            ));
        }
        let first = if !self.redis_tls_ca_file.is_empty() {
            "redis_tls_ca_file"
        } else if cert {
            "redis_tls_cert_file"
        } else {
            return Ok(());
        };
        if self.redis_url.is_empty() {
            return Err(ConfigError::invalid(
                first,
                "is set, but redis_url is empty (the TLS files are for a rediss:// Redis)",
            ));
        }
        // The URL is a secret: the reason never quotes it.
        let scheme = self.redis_url.expose_secret().get(..9);
        if !scheme.is_some_and(|s| s.eq_ignore_ascii_case("rediss://")) {
            return Err(ConfigError::invalid(
                "redis_url",
                format!(
                    "must be a rediss:// URL when {first} is set: a plain redis:// connection \
                     is not encrypted and would ignore the TLS files"
                ),
            ));
        }
        Ok(())
    }

    /// The role guardrails: a wallet never signs in as the admin, and the
    /// fleet secret never mints an operator or admin token.
    fn check_roles(&self) -> Result<(), ConfigError> {
        if self.admin_role == WALLET_ROLE {
            return Err(ConfigError::invalid(
                "admin_role",
                "must not be \"wallet\": every wallet sign-in carries that role",
            ));
        }
        if self.fleet_allowed_roles.iter().any(|r| r == OPERATOR_ROLE) {
            return Err(ConfigError::invalid(
                "fleet_allowed_roles",
                "must not contain \"operator\": the fleet secret would mint operator tokens",
            ));
        }
        if self
            .fleet_allowed_roles
            .iter()
            .any(|r| r == &self.admin_role)
        {
            return Err(ConfigError::invalid(
                "admin_role",
                format!(
                    "{:?} is also in fleet_allowed_roles: the fleet secret would mint admin tokens",
                    self.admin_role
                ),
            ));
        }
        Ok(())
    }

    /// Refuses a set `fleet_mint_secret` shorter than 16 bytes; warns about
    /// one shorter than 32.
    fn check_fleet_secret(&self) -> Result<(), ConfigError> {
        let len = self.fleet_mint_secret.len();
        if len == 0 {
            return Ok(());
        }
        if len < FLEET_SECRET_MIN_LEN {
            return Err(ConfigError::invalid(
                "fleet_mint_secret",
                format!("must be at least {FLEET_SECRET_MIN_LEN} bytes (or empty to disable /fleet/sessions), got {len}"),
            ));
        }
        if len < FLEET_SECRET_GOOD_LEN {
            tracing::warn!(
                len,
                "fleet_mint_secret is shorter than {FLEET_SECRET_GOOD_LEN} bytes: use a random secret of 32 bytes or more"
            );
        }
        Ok(())
    }
}

/// A secret string of the configuration (a password, a shared secret, a URL
/// that may carry a password).
///
/// - `Debug` prints `<redacted>` (an empty secret prints `""`, so that a
///   missing value stays visible); there is no `Display`.
/// - The bytes are zeroized when it is dropped.
/// - Two secrets compare in constant time (their lengths excepted).
/// - It deserializes from, and serializes to, a plain string, so that a
///   configuration file reads as before.
///
/// It derefs to `str` for the code that uses the value; prefer
/// [`expose_secret`](Secret::expose_secret), which says so.
///
/// # Security
/// Serializing an [`AuthConfig`] writes its secrets in clear: do not log a
/// serialized configuration.
///
/// ```
/// use wallet_auth::config::Secret;
///
/// let secret = Secret::from("correct horse battery staple");
/// assert_eq!(format!("{secret:?}"), "<redacted>");
/// assert_eq!(format!("{:?}", Secret::default()), "\"\"");
/// assert_eq!(secret.expose_secret(), "correct horse battery staple");
/// ```
#[derive(Clone, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The secret itself.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Secret {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("<redacted>")
        }
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// The field a refusal names.
    fn refused(config: &AuthConfig) -> &'static str {
        match config.validate() {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// What `validate` logs, and its outcome.
    fn logs_of(config: &AuthConfig) -> (String, Result<(), ConfigError>) {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || writer.clone())
            .finish();
        let outcome = tracing::subscriber::with_default(subscriber, || config.validate());
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        (text, outcome)
    }

    #[test]
    fn the_defaults_are_valid() {
        AuthConfig::default().validate().unwrap();
        assert_eq!(
            AuthConfig::default().wallet_algorithms().unwrap(),
            [Algorithm::MlDsa65, Algorithm::Ed25519, Algorithm::Secp256k1]
        );
    }

    #[test]
    fn each_existing_check_names_its_field() {
        type Change = fn(&mut AuthConfig);
        let cases: &[(Change, &str)] = &[
            (|c| c.algorithm = "HS256".into(), "algorithm"),
            (|c| c.issuer = " ".into(), "issuer"),
            (|c| c.audience = String::new(), "audience"),
            (
                |c| c.access_token_expire_minutes = 0,
                "access_token_expire_minutes",
            ),
            (
                |c| c.access_token_expire_minutes = 525_601,
                "access_token_expire_minutes",
            ),
            (
                |c| c.refresh_token_expire_days = 0,
                "refresh_token_expire_days",
            ),
            (
                |c| c.refresh_token_expire_days = 3651,
                "refresh_token_expire_days",
            ),
            (|c| c.challenge_ttl_seconds = 0, "challenge_ttl_seconds"),
            (|c| c.challenge_ttl_seconds = 3601, "challenge_ttl_seconds"),
            (
                |c| c.challenge_max_outstanding = 0,
                "challenge_max_outstanding",
            ),
            (
                |c| c.mint_audit_max_in_memory = 0,
                "mint_audit_max_in_memory",
            ),
            (|c| c.fleet_max_ttl_seconds = 59, "fleet_max_ttl_seconds"),
            (
                |c| c.fleet_session_ttl_seconds = 0,
                "fleet_session_ttl_seconds",
            ),
            (|c| c.route_prefix = "auth".into(), "route_prefix"),
            (|c| c.route_prefix = "/auth/".into(), "route_prefix"),
            (
                |c| {
                    c.auto_create_admin = true;
                    c.admin_email = " ".into();
                },
                "admin_email",
            ),
            (|c| c.admin_role = " ".into(), "admin_role"),
            (
                |c| c.supported_wallet_algorithms = vec!["RSA".into()],
                "supported_wallet_algorithms",
            ),
            (
                |c| c.supported_wallet_algorithms = vec![],
                "supported_wallet_algorithms",
            ),
            (
                |c| c.fleet_allowed_roles = vec!["agent".into(), String::new()],
                "fleet_allowed_roles",
            ),
        ];
        for (i, (change, field)) in cases.iter().enumerate() {
            let mut config = AuthConfig::default();
            change(&mut config);
            assert_eq!(refused(&config), *field, "case {i}");
        }
        // Boundaries that pass, and an empty prefix.
        let config = AuthConfig {
            access_token_expire_minutes: 525_600,
            refresh_token_expire_days: 3650,
            challenge_ttl_seconds: 3600,
            fleet_max_ttl_seconds: 60,
            route_prefix: String::new(),
            supported_wallet_algorithms: vec!["Ed25519".into(), "Ed25519".into()],
            ..AuthConfig::default()
        };
        config.validate().unwrap();
        assert_eq!(config.wallet_algorithms().unwrap(), [Algorithm::Ed25519]);
    }

    #[test]
    fn sign_in_message_settings_are_checked_at_start_up() {
        type Change = fn(&mut AuthConfig);
        let cases: &[(Change, &str)] = &[
            (|c| c.statement = "line\nbreak".into(), "statement"),
            (|c| c.statement = "a \"quote\"".into(), "statement"),
            (|c| c.domain = "evil.example\n".into(), "domain"),
            (|c| c.uri = "not a uri".into(), "uri"),
            (|c| c.chain_ids = vec![], "chain_ids"),
            (|c| c.chain_ids = vec![0], "chain_ids"),
            (|c| c.chain_ids = vec![1, 137, 1], "chain_ids"),
            (|c| c.chain_ids = vec![1 << 53], "chain_ids"),
        ];
        for (i, (change, field)) in cases.iter().enumerate() {
            let mut config = AuthConfig::default();
            change(&mut config);
            assert_eq!(refused(&config), *field, "case {i}");
        }
        AuthConfig {
            statement: "Sign in to Example".into(),
            domain: "app.example.com".into(),
            uri: "https://app.example.com/login".into(),
            chain_ids: vec![8453, 1, (1 << 53) - 1],
            supported_wallet_algorithms: vec!["eip191".into(), "solana".into()],
            ..AuthConfig::default()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn the_admin_role_may_not_be_wallet() {
        let config = AuthConfig {
            admin_role: "wallet".into(),
            ..AuthConfig::default()
        };
        assert_eq!(refused(&config), "admin_role");
    }

    #[test]
    fn the_admin_role_may_not_be_a_fleet_role() {
        let config = AuthConfig {
            admin_role: "admin".into(),
            fleet_allowed_roles: vec!["agent".into(), "admin".into()],
            ..AuthConfig::default()
        };
        assert_eq!(refused(&config), "admin_role");
        AuthConfig {
            admin_role: "admin".into(),
            ..AuthConfig::default()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn fleet_roles_may_not_include_operator() {
        let config = AuthConfig {
            admin_role: "admin".into(),
            fleet_allowed_roles: vec!["agent".into(), "operator".into()],
            ..AuthConfig::default()
        };
        assert_eq!(refused(&config), "fleet_allowed_roles");
        // With the default admin role, "operator" is refused as a fleet role
        // before it is found to be the admin's.
        let config = AuthConfig {
            fleet_allowed_roles: vec!["operator".into()],
            ..AuthConfig::default()
        };
        assert_eq!(refused(&config), "fleet_allowed_roles");
    }

    #[test]
    fn redis_tls_settings_fit_together() {
        let tls = |url: &str, ca: &str, cert: &str, key: &str| AuthConfig {
            redis_url: url.into(),
            redis_tls_ca_file: ca.into(),
            redis_tls_cert_file: cert.into(),
            redis_tls_key_file: key.into(),
            ..AuthConfig::default()
        };
        let s = "rediss://:hunter2@127.0.0.1:6380";
        // Both or neither.
        assert_eq!(refused(&tls(s, "", "c.pem", "")), "redis_tls_key_file");
        assert_eq!(
            refused(&tls(s, "ca.pem", "", "k.pem")),
            "redis_tls_cert_file"
        );
        // TLS files want a rediss:// URL, and a URL at all.
        let plain = tls("redis://:hunter2@127.0.0.1:6379", "ca.pem", "", "");
        assert_eq!(refused(&plain), "redis_url");
        let Err(e) = plain.validate() else {
            unreachable!()
        };
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(
            refused(&tls("unix:///tmp/r.sock", "", "c.pem", "k.pem")),
            "redis_url"
        );
        assert_eq!(refused(&tls("", "ca.pem", "", "")), "redis_tls_ca_file");
        assert_eq!(
            refused(&tls("", "", "c.pem", "k.pem")),
            "redis_tls_cert_file"
        );
        // What passes (validate reads no file: these paths need not exist).
        for ok in [
            tls(s, "", "", ""),
            tls(s, "ca.pem", "", ""),
            tls(s, "", "c.pem", "k.pem"),
            tls("REDISS://h:6380", "ca.pem", "c.pem", "k.pem"),
            tls("redis://h:6379", "", "", ""),
        ] {
            ok.validate().unwrap();
        }
    }

    #[test]
    fn a_fleet_secret_under_16_bytes_is_refused() {
        let config = AuthConfig {
            fleet_mint_secret: "x".repeat(15).into(),
            ..AuthConfig::default()
        };
        assert_eq!(refused(&config), "fleet_mint_secret");
        let Err(e) = config.validate() else {
            unreachable!()
        };
        assert!(!e.to_string().contains(&"x".repeat(15)), "{e}");
    }

    #[test]
    fn a_fleet_secret_under_32_bytes_is_warned_about() {
        for (len, warned) in [(0, false), (16, true), (31, true), (32, false)] {
            let config = AuthConfig {
                fleet_mint_secret: "x".repeat(len).into(),
                ..AuthConfig::default()
            };
            let (logs, outcome) = logs_of(&config);
            outcome.unwrap();
            assert_eq!(logs.contains("fleet_mint_secret"), warned, "{len}: {logs}");
            assert!(!logs.contains(&"x".repeat(16)), "{logs}");
        }
    }

    #[test]
    fn debug_shows_no_secret() {
        let config = AuthConfig {
            admin_password: Some("correct horse battery staple".into()),
            fleet_mint_secret: "fleet-secret-0123456789abcdef-xyz".into(),
            redis_url: "redis://:hunter2@127.0.0.1:6379".into(),
            ..AuthConfig::default()
        };
        let debug = format!("{config:?}");
        for secret in ["correct horse", "fleet-secret", "hunter2", "127.0.0.1"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(
            debug.contains("admin_password: Some(<redacted>)"),
            "{debug}"
        );
        assert!(debug.contains("fleet_mint_secret: <redacted>"), "{debug}");
        assert!(debug.contains("redis_url: <redacted>"), "{debug}");
        // Unset stays visibly unset.
        let debug = format!("{:?}", AuthConfig::default());
        assert!(debug.contains("admin_password: None"), "{debug}");
        assert!(debug.contains("fleet_mint_secret: \"\""), "{debug}");
        assert!(debug.contains("redis_url: \"\""), "{debug}");
    }

    #[test]
    fn secrets_read_and_write_plain_strings() {
        let config: AuthConfig = serde_json::from_value(serde_json::json!({
            "admin_password": "pw",
            "fleet_mint_secret": "0123456789abcdef",
            "redis_url": "redis://h",
        }))
        .unwrap();
        assert_eq!(config.admin_password.as_deref(), Some("pw"));
        assert_eq!(config.fleet_mint_secret.expose_secret(), "0123456789abcdef");
        assert_eq!(&*config.redis_url, "redis://h");
        let back = serde_json::to_value(&config).unwrap();
        assert_eq!(back["fleet_mint_secret"], "0123456789abcdef");
        assert_eq!(serde_json::from_value::<AuthConfig>(back).unwrap(), config);
        assert!(serde_json::from_value::<Secret>(serde_json::json!(7)).is_err());
    }

    #[test]
    fn secrets_compare_by_value() {
        assert_eq!(Secret::from("abc"), Secret::from(String::from("abc")));
        assert_ne!(Secret::from("abc"), Secret::from("abd"));
        assert_ne!(Secret::from("abc"), Secret::from("abcd"));
        assert_eq!(Secret::default(), Secret::from(""));
    }

    #[test]
    fn algorithm_is_rs256_or_ml_dsa_65_exactly() {
        use crate::token::SigningAlgorithm;
        let with = |alg: &str| AuthConfig {
            algorithm: alg.into(),
            ..Default::default()
        };
        assert_eq!(
            AuthConfig::default().signing_algorithm().unwrap(),
            SigningAlgorithm::Rs256
        );
        let pq = with("ML-DSA-65");
        pq.validate().unwrap();
        assert_eq!(pq.signing_algorithm().unwrap(), SigningAlgorithm::MlDsa65);
        for bad in ["ml-dsa-65", "ML-DSA-87", "MLDSA65", "none", "HS256", ""] {
            let err = with(bad).validate().unwrap_err().to_string();
            assert!(err.contains("`algorithm`"), "{bad}: {err}");
        }
    }
}
