//! Operating wallet-auth (SPEC 11): readiness checks per store, the
//! discovery document, request ids, and the metrics registry. Plain domain
//! code; the routes that serve it are in `http` ([`WalletAuth::ops_router`],
//! [`WalletAuth::metrics_router`]).
//!
//! [`WalletAuth::ops_router`]: crate::WalletAuth::ops_router
//! [`WalletAuth::metrics_router`]: crate::WalletAuth::metrics_router

pub mod histogram;
pub mod metrics;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use serde::Serialize;

use crate::jsonl::JsonlWriter;
use crate::{StoreError, WalletAuth};

pub use self::metrics::{Metrics, ShedReason};

/// The longest one readiness check may take before `/health/ready` reports
/// it as failed (a Redis store's `PING` is bounded by this too).
pub const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// The request id header, read from the request and echoed in the response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The longest request id accepted from a client; a longer one is replaced.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Whether a client's `X-Request-Id` is kept: 1 to [`MAX_REQUEST_ID_LEN`]
/// visible ASCII characters (no space, no control character), so it cannot
/// break a log line or grow one without bound.
pub fn is_sane_request_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.iter().all(|b| b.is_ascii_graphic())
}

/// A new request id: 32 lowercase hex characters, unique in the process
/// (a counter through a bijective mix) and, with 128 bits from the OS
/// random source drawn once per process, across processes. Ids name log
/// lines, they are no secret: one system call per process, not one per
/// request.
pub fn new_request_id() -> String {
    static SEED: OnceLock<[u64; 2]> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let [a, b] = *SEED.get_or_init(|| {
        let mut bytes = [0u8; 16];
        // Without the OS source the clock still tells processes apart.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            bytes = (nanos ^ u128::from(std::process::id())).to_le_bytes();
        }
        let (hi, lo) = bytes.split_at(8);
        [
            u64::from_le_bytes(hi.try_into().unwrap_or_default()),
            u64::from_le_bytes(lo.try_into().unwrap_or_default()),
        ]
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&mix64(a ^ n).to_be_bytes());
    id[8..].copy_from_slice(&mix64(b.wrapping_add(n)).to_be_bytes());
    crate::hexcodec::encode(&id)
}

/// SplitMix64's finalizer: a bijection of `u64` that spreads every input
/// bit over the output, so consecutive counters give unrelated-looking ids.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The readiness of each store the service needs: check name -> `"ok"` or
/// the reason it cannot serve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// `challenges`, `revocations`, `mint_audit`, `signing_keys`.
    pub checks: BTreeMap<&'static str, String>,
}

impl Readiness {
    /// The text of a passing check.
    pub const OK: &'static str = "ok";

    /// Whether every check passed.
    pub fn is_ready(&self) -> bool {
        self.checks.values().all(|v| v == Self::OK)
    }
}

/// A check's outcome as shown, bounded by [`READY_TIMEOUT`].
async fn bounded(check: impl std::future::Future<Output = Result<(), StoreError>>) -> String {
    match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(Ok(())) => Readiness::OK.to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {READY_TIMEOUT:?}"),
    }
}

/// A JSON Lines writer's health, checked on a blocking thread.
pub(crate) async fn check_writer(writer: &JsonlWriter) -> Result<(), StoreError> {
    let probe = writer.health_probe();
    match tokio::task::spawn_blocking(move || probe.check()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(StoreError::Unavailable(why)),
        Err(e) => Err(StoreError::Unavailable(format!(
            "the health check did not finish: {e}"
        ))),
    }
}

impl WalletAuth {
    /// Runs every readiness check (SPEC 11), concurrently, each bounded by
    /// [`READY_TIMEOUT`]: the challenge store, the denylist, the mint
    /// audit (a JSON Lines writer's thread, directory and file; Redis's
    /// `PING`), and a current signing key.
    pub async fn readiness(&self) -> Readiness {
        let inner = &self.inner;
        let (challenges, revocations, mint_audit) = tokio::join!(
            bounded(inner.challenges.ready()),
            bounded(inner.revocations.ready()),
            bounded(inner.audit.ready()),
        );
        let mut checks = BTreeMap::new();
        checks.insert("challenges", challenges);
        checks.insert("revocations", revocations);
        checks.insert("mint_audit", mint_audit);
        checks.insert("signing_keys", self.signing_key_check());
        Readiness { checks }
    }

    /// `"ok"` when exactly one signing key is current (SPEC 8).
    fn signing_key_check(&self) -> String {
        let states = self.key_states();
        match states
            .iter()
            .filter(|k| k.state == crate::KeyState::Current)
            .count()
        {
            1 => Readiness::OK.into(),
            0 => "no current signing key".into(),
            n => format!("{n} current signing keys"),
        }
    }

    /// The key set's sizes by state, for `wallet_auth_signing_keys{state}`.
    pub(crate) fn signing_key_counts(&self) -> [(&'static str, usize); 3] {
        let mut counts = [("next", 0), ("current", 0), ("retired", 0)];
        for k in self.key_states() {
            let i = match k.state {
                crate::KeyState::Next => 0,
                crate::KeyState::Current => 1,
                crate::KeyState::Retired => 2,
            };
            counts[i].1 += 1;
        }
        counts
    }

    /// The OpenID discovery document (`/.well-known/openid-configuration`):
    /// the issuer, where its JWKS is, and the algorithms of the published
    /// keys, so consumers that discover keys from the issuer find ours.
    pub fn discovery(&self) -> serde_json::Value {
        let c = &self.inner.config;
        let base = format!("{}{}", c.issuer.trim_end_matches('/'), c.route_prefix);
        let mut algs: Vec<String> = Vec::new();
        for jwk in self.inner.tokens.jwks() {
            if !algs.contains(&jwk.alg) {
                algs.push(jwk.alg);
            }
        }
        serde_json::json!({
            "issuer": c.issuer,
            "jwks_uri": format!("{base}/jwks"),
            "id_token_signing_alg_values_supported": algs,
            "token_endpoint_auth_methods_supported": ["none"],
            "subject_types_supported": ["public"],
            "response_types_supported": ["token"],
            "grant_types_supported": ["refresh_token"],
            "claims_supported": [
                "iss", "aud", "sub", "exp", "iat", "jti", "auth_time", "role",
                "algorithm", "wallet_address"
            ],
            "service_documentation": format!("{base}/openapi.json"),
        })
    }

    /// The metrics registry, when metrics are on.
    pub fn metrics(&self) -> Option<&Metrics> {
        self.inner.metrics.as_deref()
    }

    /// Every metric in the Prometheus text format, reading the denylist's
    /// size and the key set first; `None` when metrics are off.
    pub async fn render_metrics(&self) -> Option<String> {
        let metrics = self.inner.metrics.as_deref()?;
        match self.inner.revocations.list().await {
            Ok(list) => metrics.set_scraped(list.len(), &self.signing_key_counts()),
            Err(e) => {
                tracing::warn!(error = %e, "metrics: the denylist cannot be read");
                metrics.set_scraped(0, &self.signing_key_counts());
            }
        }
        Some(metrics.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_bounded_visible_ascii() {
        assert!(is_sane_request_id(b"abc-123_X.y:z"));
        assert!(is_sane_request_id(&[b'a'; MAX_REQUEST_ID_LEN]));
        assert!(!is_sane_request_id(&[b'a'; MAX_REQUEST_ID_LEN + 1]));
        for bad in [&b""[..], b"a b", b"a\tb", b"a\nb", b"\x7f", "é".as_bytes()] {
            assert!(!is_sane_request_id(bad), "{bad:?}");
        }
        let id = new_request_id();
        assert_eq!(id.len(), 32);
        assert!(is_sane_request_id(id.as_bytes()));
        assert_ne!(id, new_request_id());
    }

    #[test]
    fn request_ids_do_not_repeat_and_are_lowercase_hex() {
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))));
        // Both halves move between consecutive ids (no visible counter).
        let (x, y) = (new_request_id(), new_request_id());
        assert_ne!(x[..16], y[..16]);
        assert_ne!(x[16..], y[16..]);
    }

    #[test]
    fn mix64_is_a_bijection_on_a_sample() {
        let outs: std::collections::HashSet<u64> = (0..100_000u64).map(mix64).collect();
        assert_eq!(outs.len(), 100_000);
    }
}
