//! Response bodies the edge builds once and serves many times: the JWKS
//! document, and the `/revoked-jtis` body (JSON, and gzip'd for clients that
//! accept it) cached until the denylist changes or one of its entries
//! expires.

use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;
use serde::Serialize;

use crate::revocation::RevocationEntry;
use crate::{Error, WalletAuth};

/// The bodies one router serves; built by [`WalletAuth::router`].
pub(super) struct Bodies {
    /// The JWKS document (`None` only if it failed to serialize, which
    /// plain strings cannot).
    jwks: Option<Bytes>,
    poll: RwLock<Option<Arc<PollBody>>>,
}

/// One version of the `/revoked-jtis` body.
struct PollBody {
    version: u64,
    valid_until: u64,
    json: Bytes,
    /// `json` gzip-compressed, made on the first request that accepts gzip.
    gzip: OnceLock<Bytes>,
}

#[derive(Serialize)]
struct Items<'a> {
    items: Vec<&'a RevocationEntry>,
}

impl Bodies {
    pub(super) fn new(auth: &WalletAuth) -> Self {
        let jwks = match serde_json::to_vec(&serde_json::json!({ "keys": auth.jwks() })) {
            Ok(body) => Some(Bytes::from(body)),
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize the JWKS");
                None
            }
        };
        Self {
            jwks,
            poll: RwLock::new(None),
        }
    }

    /// The JWKS document, `{"keys": [...]}`.
    pub(super) fn jwks(&self) -> Result<Bytes, Error> {
        self.jwks
            .clone()
            .ok_or_else(|| Error::Internal("the JWKS did not serialize".into()))
    }

    /// The `/revoked-jtis` body, `{"items": [...]}`.
    pub(super) async fn revoked_jtis_json(&self, auth: &WalletAuth) -> Result<Bytes, Error> {
        Ok(self.poll(auth).await?.json.clone())
    }

    /// The `/revoked-jtis` body gzip-compressed (`Content-Encoding: gzip`),
    /// for clients that send `Accept-Encoding: gzip`, as pico-client-auth's
    /// httpx does.
    pub(super) async fn revoked_jtis_gzip(&self, auth: &WalletAuth) -> Result<Bytes, Error> {
        let poll = self.poll(auth).await?;
        if let Some(z) = poll.gzip.get() {
            return Ok(z.clone());
        }
        // Compressing a large denylist takes milliseconds: off the async threads.
        let json = poll.json.clone();
        let z = auth.run_cpu(move || gzip(&json)).await??;
        Ok(poll.gzip.get_or_init(|| z).clone())
    }

    async fn poll(&self, auth: &WalletAuth) -> Result<Arc<PollBody>, Error> {
        if let Some(p) = self.poll.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            if auth.revoked_jtis_current(p.version, p.valid_until) {
                return Ok(Arc::clone(p));
            }
        }
        let list = auth.revoked_jtis().await?;
        let json = serde_json::to_vec(&Items {
            items: list.items().collect(),
        })
        .map_err(|e| Error::Internal(format!("serialize denylist: {e}")))?;
        let poll = Arc::new(PollBody {
            version: list.version,
            valid_until: list.valid_until,
            json: Bytes::from(json),
            gzip: OnceLock::new(),
        });
        *self.poll.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&poll));
        Ok(poll)
    }
}

/// Gzip of a poll body. Fast compression: the body is rebuilt whenever the
/// denylist changes, and a poll of 10,000 entries shrinks about fivefold.
fn gzip(body: &[u8]) -> Result<Bytes, Error> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    enc.write_all(body)
        .and_then(|()| enc.finish())
        .map(Bytes::from)
        .map_err(|e| Error::Internal(format!("gzip denylist: {e}")))
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::Arc;
    use std::time::Duration;

    use super::Bodies;
    use crate::clock::{Clock, ManualClock};
    use crate::{AccessClaims, AuthConfig, SigningKey, WalletAuth};

    fn auth(clock: &ManualClock) -> WalletAuth {
        let pem = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/keys/test-rsa-2048.pem"
        ));
        WalletAuth::builder(AuthConfig {
            allow_memory_revocations: true,
            ..AuthConfig::default()
        })
        .with_signing_key(SigningKey::from_pem(pem).unwrap())
        .with_clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
    }

    fn jtis(body: &[u8]) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["jti"].as_str().unwrap().to_string())
            .collect()
    }

    #[tokio::test]
    async fn the_poll_body_is_rebuilt_only_on_a_change_or_an_expiry() {
        let clock = ManualClock::starting_now();
        let auth = auth(&clock);
        let bodies = Bodies::new(&auth);
        let now = clock.now_secs();
        let op = AccessClaims::new("i", "a", "op", "operator", now, now + 60);
        auth.revoke(&op, "forever", "", None).await.unwrap();
        auth.revoke(&op, "soon", "", Some(now + 10)).await.unwrap();

        let first = bodies.revoked_jtis_json(&auth).await.unwrap();
        assert_eq!(jtis(&first), ["soon", "forever"]);
        let again = bodies.revoked_jtis_json(&auth).await.unwrap();
        assert_eq!(first.as_ptr(), again.as_ptr(), "served from the cache");

        // gzip: made once, of the same body.
        let z = bodies.revoked_jtis_gzip(&auth).await.unwrap();
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, &first[..]);
        let z2 = bodies.revoked_jtis_gzip(&auth).await.unwrap();
        assert_eq!(z.as_ptr(), z2.as_ptr(), "gzip served from the cache");

        // A change to the denylist: rebuilt.
        auth.revoke(&op, "newest", "", None).await.unwrap();
        let changed = bodies.revoked_jtis_json(&auth).await.unwrap();
        assert_eq!(jtis(&changed), ["newest", "soon", "forever"]);

        // An entry expiring: rebuilt without it.
        clock.advance(Duration::from_secs(10));
        let expired = bodies.revoked_jtis_json(&auth).await.unwrap();
        assert_eq!(jtis(&expired), ["newest", "forever"]);
    }

    #[test]
    fn the_jwks_document_lists_the_keys() {
        let auth = auth(&ManualClock::starting_now());
        let body = Bodies::new(&auth).jwks().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["keys"][0]["kid"], auth.tokens().kid());
        assert_eq!(v["keys"].as_array().unwrap().len(), auth.jwks().len());
    }
}
