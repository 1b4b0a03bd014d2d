//! The issuer's signing keys: discovery, the JWKS cache (per
//! `Cache-Control`, refreshed ahead of expiry), the unknown-`kid` refetch
//! (single-flight, at most once per cooldown) and the stale window.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::DecodingKey;
use ml_dsa::{EncodedVerifyingKey, MlDsa65, VerifyingKey};
use serde::Deserialize;

use crate::cache_control;
use crate::fetch::{read_bounded, FetchError};
use crate::{Config, Reason, Rejection};

/// The token signature algorithms a consumer accepts: only these, and
/// only for a key published with the same `alg`.
///
/// ```
/// use wallet_auth_consumer::Algorithm;
/// assert_eq!(Algorithm::from_name("RS256"), Some(Algorithm::Rs256));
/// assert_eq!(Algorithm::from_name("HS256"), None);
/// assert_eq!(Algorithm::from_name("none"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ML-DSA-65 (FIPS 204, RFC 9964), pure, empty context.
    MlDsa65,
}

impl Algorithm {
    /// The algorithm of a JOSE `alg` name, `None` for any other.
    ///
    /// ```
    /// use wallet_auth_consumer::Algorithm;
    /// assert_eq!(Algorithm::from_name("ML-DSA-65"), Some(Algorithm::MlDsa65));
    /// ```
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "RS256" => Some(Self::Rs256),
            "ML-DSA-65" => Some(Self::MlDsa65),
            _ => None,
        }
    }

    /// The JOSE `alg` name.
    ///
    /// ```
    /// assert_eq!(wallet_auth_consumer::Algorithm::Rs256.name(), "RS256");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::MlDsa65 => "ML-DSA-65",
        }
    }
}

/// The ML-DSA-65 signature size.
const MLDSA65_SIG_LEN: usize = 3309;
/// The ML-DSA-65 public key size.
const MLDSA65_PK_LEN: usize = 1952;
/// Most keys taken from one JWKS.
const MAX_KEYS: usize = 64;
/// After a failed fetch, blocking fetches wait this long before trying
/// again (the issuer is not hammered by every request while it is down).
const FETCH_BACKOFF: Duration = Duration::from_secs(1);

enum Verifier {
    Rs256(DecodingKey),
    MlDsa65(Box<VerifyingKey<MlDsa65>>),
}

/// One published verification key.
pub(crate) struct Key {
    alg: Algorithm,
    verifier: Verifier,
}

impl Key {
    pub(crate) fn alg(&self) -> Algorithm {
        self.alg
    }

    /// Whether `signature` (base64url, the token's third part) verifies
    /// `signing_input` under this key.
    pub(crate) fn verify(&self, signing_input: &[u8], signature: &str) -> bool {
        match &self.verifier {
            Verifier::Rs256(key) => jsonwebtoken::crypto::verify(
                signature,
                signing_input,
                key,
                jsonwebtoken::Algorithm::RS256,
            )
            .unwrap_or(false),
            Verifier::MlDsa65(key) => {
                if signature.len() > MLDSA65_SIG_LEN * 4 / 3 + 4 {
                    return false;
                }
                let Ok(raw) = URL_SAFE_NO_PAD.decode(signature) else {
                    return false;
                };
                let sig = ml_dsa::EncodedSignature::<MlDsa65>::try_from(raw.as_slice())
                    .ok()
                    .and_then(|enc| ml_dsa::Signature::<MlDsa65>::decode(&enc));
                sig.is_some_and(|sig| key.verify_with_context(signing_input, &[], &sig))
            }
        }
    }
}

/// A parsed JWK Set: the usable keys by `kid`.
#[derive(Default)]
pub(crate) struct KeySet {
    by_kid: HashMap<String, Arc<Key>>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    n: Option<String>,
    e: Option<String>,
    #[serde(rename = "pub")]
    public: Option<String>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// Parses a JWKS body; keys this consumer cannot use (another `kty`,
    /// `use` other than `sig`, no `alg` it accepts) are skipped.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, String> {
        let raw: RawJwks = serde_json::from_slice(body).map_err(|e| format!("JWKS: {e}"))?;
        let mut by_kid = HashMap::new();
        for value in raw.keys.into_iter().take(MAX_KEYS) {
            let Ok(jwk) = serde_json::from_value::<RawJwk>(value) else {
                continue;
            };
            if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            let kid = jwk.kid.clone().unwrap_or_default();
            if let Some(key) = Self::key_of(jwk) {
                by_kid.insert(kid, Arc::new(key));
            }
        }
        Ok(Self { by_kid })
    }

    fn key_of(jwk: RawJwk) -> Option<Key> {
        match (jwk.kty.as_deref()?, jwk.alg.as_deref()) {
            // An RSA key without `alg` is taken as RS256 (RFC 7517 makes
            // `alg` optional); with one, it must be RS256.
            ("RSA", None | Some("RS256")) => {
                let key =
                    DecodingKey::from_rsa_components(jwk.n.as_deref()?, jwk.e.as_deref()?).ok()?;
                Some(Key {
                    alg: Algorithm::Rs256,
                    verifier: Verifier::Rs256(key),
                })
            }
            ("AKP", Some("ML-DSA-65")) => {
                let raw = URL_SAFE_NO_PAD.decode(jwk.public.as_deref()?).ok()?;
                if raw.len() != MLDSA65_PK_LEN {
                    return None;
                }
                let enc = EncodedVerifyingKey::<MlDsa65>::try_from(raw.as_slice()).ok()?;
                Some(Key {
                    alg: Algorithm::MlDsa65,
                    verifier: Verifier::MlDsa65(Box::new(VerifyingKey::decode(&enc))),
                })
            }
            _ => None,
        }
    }

    /// The key for `kid`; a token without `kid` matches the only key of
    /// its algorithm, if there is exactly one.
    pub(crate) fn get(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<Key>> {
        match kid {
            Some(kid) => self.by_kid.get(kid).cloned(),
            None => {
                let mut of_alg = self.by_kid.values().filter(|k| k.alg == alg);
                match (of_alg.next(), of_alg.next()) {
                    (Some(k), None) => Some(k.clone()),
                    _ => None,
                }
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_kid.len()
    }
}

/// At most one action per period: `try_take(t0)` is true, `try_take(t0 +
/// 29 s)` false with a 30 s period, `try_take(t0 + 30 s)` true again.
#[derive(Debug, Clone)]
pub(crate) struct Cooldown {
    period: Duration,
    last: Option<Duration>,
}

impl Cooldown {
    pub(crate) fn new(period: Duration) -> Self {
        Self { period, last: None }
    }

    /// True (and the period restarts) when the last action was at least a
    /// period ago, or there was none. A clock that went backwards counts
    /// as "not yet".
    pub(crate) fn try_take(&mut self, now: Duration) -> bool {
        let ready = match self.last {
            None => true,
            Some(last) => now.checked_sub(last).is_some_and(|d| d >= self.period),
        };
        if ready {
            self.last = Some(now);
        }
        ready
    }
}

struct Cached {
    set: Arc<KeySet>,
    fetched_at: Duration,
    ttl: Duration,
}

#[derive(Default)]
struct State {
    cached: Option<Cached>,
    jwks_url: Option<String>,
    last_failure: Option<Duration>,
    unknown_kid: Option<Cooldown>,
}

/// The key cache.
pub(crate) struct Keys {
    config: Config,
    client: reqwest::Client,
    state: Mutex<State>,
    /// Held by whoever fetches: one fetch at a time (single flight).
    fetching: tokio::sync::Mutex<()>,
    /// A background refresh-ahead is under way.
    refreshing: AtomicBool,
}

impl Keys {
    pub(crate) fn new(config: Config, client: reqwest::Client) -> Self {
        let state = State {
            unknown_kid: Some(Cooldown::new(config.kid_cooldown)),
            ..State::default()
        };
        Self {
            config,
            client,
            state: Mutex::new(state),
            fetching: tokio::sync::Mutex::new(()),
            refreshing: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached set and its age, if any.
    fn snapshot(&self, now: Duration) -> Option<(Arc<KeySet>, Duration, Duration)> {
        let st = self.lock();
        st.cached
            .as_ref()
            .map(|c| (c.set.clone(), now.saturating_sub(c.fetched_at), c.ttl))
    }

    /// Whether keys are cached and usable now.
    pub(crate) fn usable(&self) -> bool {
        let now = self.config.clock.now();
        self.snapshot(now)
            .is_some_and(|(_, age, ttl)| age <= ttl + self.config.key_stale_window)
    }

    /// Fetches the keys unless usable ones are cached.
    pub(crate) async fn warm(self: &Arc<Self>) -> Result<(), Rejection> {
        self.fetch_blocking(None).await.map(|_| ())
    }

    /// The key that must have signed a token with `kid` and `alg`.
    pub(crate) async fn key(
        self: &Arc<Self>,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<Key>, Rejection> {
        let now = self.config.clock.now();
        let set = match self.snapshot(now) {
            None => self.fetch_blocking(None).await?,
            Some((set, age, ttl)) => {
                if age > ttl + self.config.key_stale_window {
                    // Past the stale window: only fresh keys will do.
                    self.fetch_blocking(None).await?
                } else {
                    if age >= ttl.mul_f64(0.8) {
                        self.refresh_ahead();
                    }
                    set
                }
            }
        };
        if let Some(key) = set.get(kid, alg) {
            return Ok(key);
        }
        self.unknown_kid(kid, alg).await
    }

    /// An unknown kid: one refetch at most per cooldown, single-flight;
    /// every caller waiting for that fetch sees its result.
    async fn unknown_kid(
        self: &Arc<Self>,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<Key>, Rejection> {
        let unknown = || Rejection::invalid("unknown signing key");
        let _flight = self.fetching.lock().await;
        let now = self.config.clock.now();
        // Someone may have refetched while we waited.
        if let Some((set, _, _)) = self.snapshot(now) {
            if let Some(key) = set.get(kid, alg) {
                return Ok(key);
            }
        }
        let allowed = self
            .lock()
            .unknown_kid
            .as_mut()
            .is_some_and(|c| c.try_take(now));
        if !allowed {
            return Err(unknown());
        }
        tracing::debug!("unknown kid: refetching the JWKS");
        match self.fetch_locked(now).await {
            Ok(set) => set.get(kid, alg).ok_or_else(unknown),
            Err(e) => {
                tracing::warn!(error = %e, "JWKS refetch failed");
                Err(unknown())
            }
        }
    }

    /// Fetches now (waiting for a fetch under way instead of starting a
    /// second one), unless the last attempt failed less than
    /// [`FETCH_BACKOFF`] ago.
    async fn fetch_blocking(
        self: &Arc<Self>,
        _why: Option<&str>,
    ) -> Result<Arc<KeySet>, Rejection> {
        let stale = |detail: String| Rejection::new(Reason::Stale, detail);
        let _flight = self.fetching.lock().await;
        let now = self.config.clock.now();
        if let Some((set, age, ttl)) = self.snapshot(now) {
            if age <= ttl + self.config.key_stale_window {
                return Ok(set);
            }
        }
        let recently_failed = self
            .lock()
            .last_failure
            .is_some_and(|t| now.checked_sub(t).is_none_or(|d| d < FETCH_BACKOFF));
        if recently_failed {
            return Err(stale(
                "signing keys unavailable: the issuer is unreachable".into(),
            ));
        }
        self.fetch_locked(now).await.map_err(|e| {
            tracing::warn!(error = %e, "JWKS fetch failed");
            stale("signing keys unavailable: the issuer is unreachable".into())
        })
    }

    /// Starts a background refresh, unless one is running.
    fn refresh_ahead(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let keys = self.clone();
        tokio::spawn(async move {
            {
                let _flight = keys.fetching.lock().await;
                let now = keys.config.clock.now();
                let due = keys
                    .snapshot(now)
                    .is_none_or(|(_, age, ttl)| age >= ttl.mul_f64(0.8));
                let backing_off = keys
                    .lock()
                    .last_failure
                    .is_some_and(|t| now.checked_sub(t).is_none_or(|d| d < FETCH_BACKOFF));
                if due && !backing_off {
                    if let Err(e) = keys.fetch_locked(now).await {
                        tracing::warn!(error = %e, "JWKS refresh failed; the cached keys keep serving");
                    }
                }
            }
            keys.refreshing.store(false, Ordering::Release);
        });
    }

    /// Fetches the JWKS (the caller holds `fetching`).
    async fn fetch_locked(&self, now: Duration) -> Result<Arc<KeySet>, FetchError> {
        let result = self.fetch_jwks().await;
        let mut st = self.lock();
        match result {
            Ok((set, ttl)) => {
                let set = Arc::new(set);
                st.cached = Some(Cached {
                    set: set.clone(),
                    fetched_at: now,
                    ttl,
                });
                st.last_failure = None;
                Ok(set)
            }
            Err(e) => {
                st.last_failure = Some(now);
                Err(e)
            }
        }
    }

    async fn jwks_url(&self) -> String {
        if let Some(url) = self.lock().jwks_url.clone() {
            return url;
        }
        let fallback = self.config.route("/jwks");
        let discovery = format!("{}/.well-known/openid-configuration", self.config.base());
        let found = match self
            .client
            .get(&discovery)
            .timeout(self.config.request_timeout)
            .send()
            .await
        {
            Ok(resp) if resp.status().is_success() => {
                match read_bounded(resp, self.config.max_jwks_bytes).await {
                    Ok(body) => serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|doc| doc.get("jwks_uri")?.as_str().map(str::to_string))
                        .filter(|u| u.starts_with("https://") || u.starts_with("http://")),
                    Err(_) => None,
                }
            }
            // Not served (404 and the like): the pico route, remembered.
            Ok(_) => None,
            // Unreachable: try the fallback now, discover again next time.
            Err(_) => return fallback,
        };
        let url = found.unwrap_or(fallback);
        self.lock().jwks_url = Some(url.clone());
        url
    }

    async fn fetch_jwks(&self) -> Result<(KeySet, Duration), FetchError> {
        let url = self.jwks_url().await;
        let resp = self
            .client
            .get(&url)
            .timeout(self.config.request_timeout)
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(FetchError::Status(resp.status().as_u16()));
        }
        let ttl = cache_control::freshness(
            resp.headers()
                .get_all(reqwest::header::CACHE_CONTROL)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        )
        .unwrap_or(self.config.default_key_ttl)
        .clamp(
            self.config.min_key_ttl,
            self.config.max_key_ttl.max(self.config.min_key_ttl),
        );
        let body = read_bounded(resp, self.config.max_jwks_bytes).await?;
        let set = KeySet::parse(&body).map_err(FetchError::Malformed)?;
        if set.len() == 0 {
            return Err(FetchError::Malformed("JWKS has no usable key".into()));
        }
        Ok((set, ttl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cooldown_allows_one_per_period() {
        let p = Duration::from_secs(30);
        let mut c = Cooldown::new(p);
        let t0 = Duration::from_secs(1000);
        assert!(c.try_take(t0));
        assert!(!c.try_take(t0));
        assert!(!c.try_take(t0 + Duration::from_secs(29)));
        assert!(c.try_take(t0 + p));
        assert!(!c.try_take(t0 + p + Duration::from_secs(1)));
        // A clock going backwards does not reopen it.
        assert!(!c.try_take(t0));
    }

    proptest! {
        #[test]
        fn cooldown_never_grants_twice_within_a_period(
            steps in proptest::collection::vec(0u64..40, 1..200),
        ) {
            let mut c = Cooldown::new(Duration::from_secs(30));
            let mut now = 0u64;
            let mut granted: Vec<u64> = Vec::new();
            for s in steps {
                now += s;
                if c.try_take(Duration::from_secs(now)) {
                    granted.push(now);
                }
            }
            for w in granted.windows(2) {
                prop_assert!(w[1] - w[0] >= 30);
            }
        }

        #[test]
        fn any_jwks_body_parses_or_errors(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = KeySet::parse(&body);
        }
    }

    #[test]
    fn jwks_takes_only_what_it_can_verify() {
        let body = br#"{"keys":[
            {"kty":"oct","kid":"h","alg":"HS256","k":"c2VjcmV0"},
            {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
            {"kty":"AKP","kid":"short","alg":"ML-DSA-65","pub":"AAAA"},
            {"kty":"EC","kid":"ec","crv":"P-256","x":"AA","y":"AA"}
        ]}"#;
        let set = KeySet::parse(body).unwrap();
        assert_eq!(set.len(), 0);
        assert!(KeySet::parse(b"[]").is_err());
    }
}
