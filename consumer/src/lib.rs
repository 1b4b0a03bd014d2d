//! Trust [wallet-auth](https://docs.rs/wallet-auth) tokens in another
//! Rust service (and pico-server-auth's: the wire is the same).
//!
//! A [`Consumer`] fetches the issuer's signing keys (discovery through
//! `/.well-known/openid-configuration` when served, else
//! `{issuer}/api/v1/auth/jwks`) and caches them per `Cache-Control`,
//! validates access tokens (`iss`, `aud`, `exp`/`nbf` with a small leeway,
//! the algorithms of the published keys only, refresh tokens refused), and
//! keeps the denylist current through the issuer's event stream, falling
//! back to delta polls and then full polls. With the `axum` feature it
//! comes with an extractor ([`Claims`]) and a tower layer.
//!
//! ```no_run
//! use wallet_auth_consumer::{Config, Consumer};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = Config::new("https://auth.example.com", "orders-api");
//! config.service_token = std::env::var("WALLET_AUTH_SERVICE_TOKEN").ok();
//! let consumer = Consumer::start(config)?;
//! match consumer.validate("eyJ...").await {
//!     Ok(claims) => println!("hello {}", claims.sub),
//!     Err(refusal) => println!("{} ({})", refusal.detail(), refusal.reason().status()),
//! }
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

#[cfg(feature = "axum")]
mod axum_glue;
pub mod cache_control;
mod claims;
mod clock;
mod config;
mod error;
mod fetch;
mod keys;
mod revocations;
pub mod sse;

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

#[cfg(feature = "axum")]
pub use axum_glue::{ConsumerLayer, ConsumerService};
pub use claims::{Audience, Claims};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, Hook, RevocationSource, StalePolicy};
pub use error::{Decision, Reason, Rejection, StartError};
pub use keys::Algorithm;
pub use revocations::RevocationStatus;

/// Longest token accepted (an ML-DSA-65 token is about 5.5 KB); a longer
/// one is refused as `invalid` before any decoding.
///
/// ```
/// assert!(wallet_auth_consumer::MAX_TOKEN_LEN >= 8 * 1024);
/// ```
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Longest decoded JWS header accepted.
const MAX_HEADER_LEN: usize = 2048;

/// Validates tokens of one issuer for one audience. Cheap to clone (one
/// shared state); the background revocation task stops when the last
/// clone is dropped.
///
/// ```no_run
/// # async fn f() -> Result<(), wallet_auth_consumer::StartError> {
/// let consumer = wallet_auth_consumer::Consumer::start(
///     wallet_auth_consumer::Config::new("http://127.0.0.1:8100", "pico"),
/// )?;
/// let again = consumer.clone();
/// # let _ = again; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Consumer {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    keys: Arc<keys::Keys>,
    revocations: Arc<revocations::Revocations>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

impl Consumer {
    /// Starts a consumer: checks `config` and spawns the task keeping the
    /// denylist current. Keys are fetched on first use; see
    /// [`Consumer::ready`] to wait for both.
    ///
    /// # Errors
    /// [`StartError`] when the configuration is unusable or no tokio
    /// runtime is running.
    ///
    /// ```no_run
    /// # async fn f() {
    /// use wallet_auth_consumer::{Config, Consumer};
    /// let consumer = Consumer::start(Config::new("http://127.0.0.1:8100", "pico")).unwrap();
    /// # let _ = consumer; }
    /// ```
    pub fn start(config: Config) -> Result<Self, StartError> {
        let base = config.base().to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(StartError::Config(format!(
                "issuer must be an http(s) URL, not {base:?}"
            )));
        }
        if config.audience.is_empty() {
            return Err(StartError::Config("audience must not be empty".into()));
        }
        let handle = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let client = reqwest::Client::builder()
            .connect_timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| StartError::Client(e.to_string()))?;
        let keys = Arc::new(keys::Keys::new(config.clone(), client.clone()));
        let revocations = Arc::new(revocations::Revocations::new(config.clone(), client));
        let task = (config.revocations != RevocationSource::Off)
            .then(|| handle.spawn(revocations.clone().run()));
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                keys,
                revocations,
                task,
            }),
        })
    }

    /// The configuration.
    ///
    /// ```no_run
    /// # fn f(c: wallet_auth_consumer::Consumer) {
    /// println!("{}", c.config().audience);
    /// # }
    /// ```
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Waits (at most `within`) until the signing keys are fetched and the
    /// denylist is current; true when both are.
    ///
    /// ```no_run
    /// # async fn f(c: wallet_auth_consumer::Consumer) {
    /// if !c.ready(std::time::Duration::from_secs(5)).await {
    ///     eprintln!("issuer not reachable yet; tokens get 503 until it is");
    /// }
    /// # }
    /// ```
    pub async fn ready(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if !self.inner.keys.usable() {
                let _ = self.inner.keys.warm().await;
            }
            if self.inner.keys.usable() && self.inner.revocations.current() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Where the denylist stands.
    ///
    /// ```no_run
    /// # fn f(c: wallet_auth_consumer::Consumer) {
    /// assert!(c.revocation_status().age.is_some());
    /// # }
    /// ```
    pub fn revocation_status(&self) -> RevocationStatus {
        self.inner.revocations.status()
    }

    /// Validates an access token (the bare token, without `Bearer `) and
    /// calls the hook with the decision.
    ///
    /// # Errors
    /// The [`Rejection`] saying why the token is refused.
    ///
    /// ```no_run
    /// # async fn f(c: wallet_auth_consumer::Consumer, token: &str) {
    /// let claims = c.validate(token).await;
    /// # let _ = claims; }
    /// ```
    pub async fn validate(&self, token: &str) -> Result<Claims, Rejection> {
        self.authorize(Some(token), &[]).await
    }

    /// Validates `token` (`None`: no token was presented) and, when
    /// `roles` is not empty, requires one of them; calls the hook once
    /// with the decision.
    ///
    /// # Errors
    /// The [`Rejection`]: `Forbidden` for a valid token of another role.
    ///
    /// ```no_run
    /// # async fn f(c: wallet_auth_consumer::Consumer, token: &str) {
    /// let operator = c.authorize(Some(token), &["operator"]).await;
    /// # let _ = operator; }
    /// ```
    pub async fn authorize(
        &self,
        token: Option<&str>,
        roles: &[&str],
    ) -> Result<Claims, Rejection> {
        let (claims, outcome) = match token {
            None => (None, Err(Rejection::invalid("missing bearer token"))),
            Some(token) => match self.check(token).await {
                Ok(claims) => {
                    let outcome = if roles.is_empty() {
                        Ok(())
                    } else {
                        claims.require_role(roles)
                    };
                    (Some(claims), outcome)
                }
                Err((claims, rejection)) => (claims, Err(rejection)),
            },
        };
        if let Some(hook) = &self.inner.config.on_decision {
            let decision = Decision {
                claims: claims.as_ref(),
                reason: outcome.as_ref().err().map(Rejection::reason),
                detail: outcome.as_ref().err().map(Rejection::detail).unwrap_or(""),
            };
            hook(&decision);
        }
        match (claims, outcome) {
            (Some(claims), Ok(())) => Ok(claims),
            (_, Err(r)) => Err(r),
            (None, Ok(())) => Err(Rejection::invalid("missing bearer token")),
        }
    }

    /// The checks, in order: shape, header (type, algorithm), key,
    /// signature, claims, denylist.
    async fn check(&self, token: &str) -> Result<Claims, (Option<Claims>, Rejection)> {
        let bare = |r: Rejection| (None, r);
        if token.len() > MAX_TOKEN_LEN {
            return Err(bare(Rejection::invalid("token too long")));
        }
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bare(Rejection::invalid("malformed token")));
        };
        if h64.len() > MAX_HEADER_LEN * 4 / 3 + 4 {
            return Err(bare(Rejection::invalid("malformed token header")));
        }
        let header: Header = URL_SAFE_NO_PAD
            .decode(h64)
            .ok()
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .ok_or_else(|| bare(Rejection::invalid("malformed token header")))?;
        if header.crit.is_some() {
            return Err(bare(Rejection::invalid("unsupported critical header")));
        }
        match header.typ.as_deref() {
            None => {}
            Some(t) if t.eq_ignore_ascii_case("JWT") || t.eq_ignore_ascii_case("at+jwt") => {}
            Some(_) => {
                return Err(bare(Rejection::new(
                    Reason::WrongType,
                    "not an access token",
                )))
            }
        }
        let alg = Algorithm::from_name(&header.alg)
            .ok_or_else(|| bare(Rejection::invalid("token algorithm not accepted")))?;
        let key = self
            .inner
            .keys
            .key(header.kid.as_deref(), alg)
            .await
            .map_err(bare)?;
        if key.alg() != alg {
            return Err(bare(Rejection::invalid(
                "token algorithm does not match its key",
            )));
        }
        let signing_input = &token[..h64.len() + 1 + p64.len()];
        if !key.verify(signing_input.as_bytes(), s64) {
            return Err(bare(Rejection::invalid("bad signature")));
        }
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(p64)
            .ok()
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .ok_or_else(|| bare(Rejection::invalid("malformed token claims")))?;
        match self.check_claims(&claims) {
            Ok(()) => Ok(claims),
            Err(r) => Err((Some(claims), r)),
        }
    }

    fn check_claims(&self, claims: &Claims) -> Result<(), Rejection> {
        let config = &self.inner.config;
        if claims.extra.get("type").and_then(|t| t.as_str()) == Some("refresh") {
            return Err(Rejection::new(
                Reason::WrongType,
                "refresh tokens are not accepted here",
            ));
        }
        if claims.iss != config.issuer {
            return Err(Rejection::invalid("wrong issuer"));
        }
        if !claims.aud.contains(&config.audience) {
            return Err(Rejection::invalid("wrong audience"));
        }
        let now = config.clock.now().as_secs();
        let leeway = config.leeway.as_secs();
        if claims.exp == 0 {
            return Err(Rejection::invalid("token has no exp"));
        }
        if now > claims.exp.saturating_add(leeway) {
            return Err(Rejection::new(Reason::Expired, "token expired"));
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(leeway))
        {
            return Err(Rejection::invalid("token not yet valid"));
        }
        if claims.jti.is_empty() {
            return Err(Rejection::invalid("token has no jti"));
        }
        self.inner.revocations.check(&claims.jti)
    }
}
