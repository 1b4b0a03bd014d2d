//! What a consumer is told: where the issuer is, what it expects of a
//! token, and how stale keys and the denylist may get.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{Clock, Decision, SystemClock};

/// How the denylist is kept current.
///
/// ```
/// use wallet_auth_consumer::RevocationSource;
/// assert_eq!(RevocationSource::default(), RevocationSource::Stream);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RevocationSource {
    /// The event stream (`/revoked-jtis/stream`), falling back to delta
    /// polls and then full polls when the issuer does not offer it.
    #[default]
    Stream,
    /// Polls only: deltas (`?since=`) when the issuer answers them, else
    /// the full list (pico-server-auth), every [`Config::poll_interval`].
    Poll,
    /// No revocation checks at all (no service token available).
    Off,
}

/// What to do when the denylist is older than [`Config::max_staleness`].
///
/// ```
/// use wallet_auth_consumer::StalePolicy;
/// assert_eq!(StalePolicy::default(), StalePolicy::FailClosed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StalePolicy {
    /// Refuse every token (`503`, reason `stale`) until the denylist is
    /// current again: a revoked token is never let through because the
    /// issuer could not be asked.
    #[default]
    FailClosed,
    /// Keep accepting tokens not on the (old) denylist.
    FailOpen,
}

/// The hook called on every decision (see [`Decision`]).
///
/// ```
/// use std::sync::Arc;
/// use wallet_auth_consumer::Hook;
/// let hook: Hook = Arc::new(|d| {
///     if let Some(reason) = d.reason { eprintln!("refused: {}", reason.as_str()); }
/// });
/// # let _ = hook;
/// ```
pub type Hook = Arc<dyn Fn(&Decision<'_>) + Send + Sync>;

/// A consumer's configuration. Build it with [`Config::new`] and change
/// the fields that differ.
///
/// The stated bounds, with the defaults: a revocation is honoured within
/// about a second while the event stream is connected, within
/// [`Config::poll_interval`] (15 s) while polling, and a denylist older
/// than [`Config::max_staleness`] (60 s) is never trusted under
/// [`StalePolicy::FailClosed`]. Signing keys are reused per the JWKS
/// `Cache-Control` and, with the issuer unreachable, for at most
/// [`Config::key_stale_window`] longer.
///
/// ```
/// use std::time::Duration;
/// use wallet_auth_consumer::Config;
/// let mut config = Config::new("https://auth.example.com", "orders-api");
/// config.service_token = std::env::var("WALLET_AUTH_SERVICE_TOKEN").ok();
/// config.leeway = Duration::from_secs(5);
/// ```
#[derive(Clone)]
pub struct Config {
    /// The issuer: the tokens' expected `iss`, and (unless
    /// [`Config::base_url`] is set) where its routes are.
    pub issuer: String,
    /// Where the issuer is reached, when not at `issuer` (a sidecar, a
    /// test listener). No trailing slash.
    pub base_url: Option<String>,
    /// The issuer's route prefix (`/api/v1/auth`).
    pub prefix: String,
    /// The audience this service accepts (`aud` must contain it).
    pub audience: String,
    /// The Bearer token for the revocation feed (role `service`). Without
    /// one the feed cannot be read: every token is then refused as
    /// `stale` under fail-closed, unless [`Config::revocations`] is
    /// [`RevocationSource::Off`].
    pub service_token: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// An unknown `kid` causes at most one JWKS refetch per this period.
    pub kid_cooldown: Duration,
    /// How long past its freshness a cached JWKS keeps serving while the
    /// issuer cannot be reached; after it, tokens are refused (`stale`).
    pub key_stale_window: Duration,
    /// JWKS freshness when the issuer sends no `Cache-Control` age.
    pub default_key_ttl: Duration,
    /// Bounds on the JWKS freshness the issuer may ask for.
    pub min_key_ttl: Duration,
    /// See [`Config::min_key_ttl`].
    pub max_key_ttl: Duration,
    /// How the denylist is kept current.
    pub revocations: RevocationSource,
    /// Time between polls of the denylist (when not streaming).
    pub poll_interval: Duration,
    /// The oldest the denylist may be before [`Config::policy`] applies.
    pub max_staleness: Duration,
    /// What a too-old denylist means.
    pub policy: StalePolicy,
    /// Timeout of each JWKS fetch and poll.
    pub request_timeout: Duration,
    /// An event stream silent for this long (no event, no keep-alive) is
    /// dropped and reopened. The server sends a comment every 15 s.
    pub stream_idle_timeout: Duration,
    /// Largest JWKS (or discovery document) body read.
    pub max_jwks_bytes: usize,
    /// Largest denylist body read.
    pub max_feed_bytes: usize,
    /// Longest event-stream line (and event data) read.
    pub max_sse_line: usize,
    /// The clock (a [`crate::ManualClock`] in tests).
    pub clock: Arc<dyn Clock>,
    /// Called on every accept and refusal.
    pub on_decision: Option<Hook>,
}

impl Config {
    /// The defaults for `issuer` and `audience`.
    ///
    /// ```
    /// let c = wallet_auth_consumer::Config::new("http://127.0.0.1:8100", "pico");
    /// assert_eq!(c.prefix, "/api/v1/auth");
    /// ```
    pub fn new(issuer: &str, audience: &str) -> Self {
        Self {
            issuer: issuer.trim_end_matches('/').to_string(),
            base_url: None,
            prefix: "/api/v1/auth".into(),
            audience: audience.into(),
            service_token: None,
            leeway: Duration::from_secs(30),
            kid_cooldown: Duration::from_secs(30),
            key_stale_window: Duration::from_secs(15 * 60),
            default_key_ttl: Duration::from_secs(300),
            min_key_ttl: Duration::from_secs(10),
            max_key_ttl: Duration::from_secs(24 * 3600),
            revocations: RevocationSource::Stream,
            poll_interval: Duration::from_secs(15),
            max_staleness: Duration::from_secs(60),
            policy: StalePolicy::FailClosed,
            request_timeout: Duration::from_secs(10),
            stream_idle_timeout: Duration::from_secs(45),
            max_jwks_bytes: 1 << 20,
            max_feed_bytes: 64 << 20,
            max_sse_line: 64 << 10,
            clock: Arc::new(SystemClock),
            on_decision: None,
        }
    }

    /// The issuer's base URL for requests.
    pub(crate) fn base(&self) -> &str {
        self.base_url
            .as_deref()
            .unwrap_or(&self.issuer)
            .trim_end_matches('/')
    }

    /// `{base}{prefix}{path}`.
    pub(crate) fn route(&self, path: &str) -> String {
        format!("{}{}{path}", self.base(), self.prefix.trim_end_matches('/'))
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the service token itself.
        f.debug_struct("Config")
            .field("issuer", &self.issuer)
            .field("base_url", &self.base_url)
            .field("prefix", &self.prefix)
            .field("audience", &self.audience)
            .field(
                "service_token",
                &self.service_token.as_ref().map(|_| "<set>"),
            )
            .field("revocations", &self.revocations)
            .field("policy", &self.policy)
            .field("max_staleness", &self.max_staleness)
            .field("poll_interval", &self.poll_interval)
            .field("kid_cooldown", &self.kid_cooldown)
            .field("key_stale_window", &self.key_stale_window)
            .finish_non_exhaustive()
    }
}
