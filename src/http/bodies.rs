//! Response bodies the edge builds once and serves many times: the JWKS
//! document, and the `/revoked-jtis` body (JSON, and gzip'd for clients that
//! accept it, each with its strong `ETag`) cached until the denylist changes
//! or one of its entries expires; and the encodings of the change feed
//! (SPEC 7): cursors, delta bodies, `If-None-Match`.

use std::sync::{Arc, OnceLock, RwLock};

use axum::http::{header, HeaderMap, HeaderValue};
use bytes::Bytes;
use serde::Serialize;

use crate::revocation::RevocationEntry;
use crate::{Error, WalletAuth};

/// The longest `max-age` of `/jwks`, seconds.
const JWKS_MAX_AGE: u64 = 300;

/// The bodies one router serves; built by [`WalletAuth::router`].
pub(super) struct Bodies {
    /// The service whose key ring holds the JWKS document (serialized once
    /// per key rotation).
    auth: WalletAuth,
    /// `Cache-Control` of `/jwks`: never longer than a new key's
    /// pre-publication (less the reload interval that may pass before an
    /// instance publishes it).
    jwks_cache_control: axum::http::HeaderValue,
    poll: RwLock<Option<Arc<PollBody>>>,
    /// The empty delta of the latest cursor asked for: what every poller
    /// that is up to date gets, shared rather than written per poll.
    empty_delta: RwLock<Option<(u64, Bytes, HeaderValue)>>,
}

/// One version of the `/revoked-jtis` body.
pub(super) struct PollBody {
    version: u64,
    valid_until: u64,
    pub(super) json: Bytes,
    /// `json` gzip-compressed, made on the first request that accepts gzip.
    gzip: OnceLock<Bytes>,
    /// The strong `ETag` of `json`: a digest of the bytes, so every
    /// instance serving the same list gives the same tag.
    pub(super) etag: HeaderValue,
    /// The `ETag` of the gzip representation (another representation,
    /// another strong tag).
    pub(super) etag_gzip: HeaderValue,
}

/// The full list: `items` newest first, the `cursor` it is complete up to,
/// and `"full": true` (what a delta poll with an unknown cursor answers;
/// pico-client-auth reads `items` only).
#[derive(Serialize)]
struct Full<'a> {
    items: Vec<&'a RevocationEntry>,
    cursor: String,
    full: bool,
}

/// A delta: `items` oldest first.
#[derive(Serialize)]
struct Delta<'a> {
    items: &'a [RevocationEntry],
    cursor: String,
    full: bool,
}

/// A feed position as the wire carries it: an opaque string (today the
/// decimal sequence number).
pub(super) fn format_cursor(seq: u64) -> String {
    seq.to_string()
}

/// A cursor this server may have issued: `None` for anything else (which
/// the feed treats as unknown: the full list, or `reset` on the stream).
pub(super) fn parse_cursor(raw: &str) -> Option<u64> {
    if raw.is_empty() || raw.len() > 20 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110
/// asks for this header) or is `*`.
pub(super) fn none_match(headers: &HeaderMap, etags: [&HeaderValue; 2]) -> bool {
    let values = headers.get_all(header::IF_NONE_MATCH);
    // What a poller sends back: exactly the tag it was given.
    if values
        .iter()
        .any(|v| etags.iter().any(|e| e.as_bytes() == v.as_bytes()))
    {
        return true;
    }
    values
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| {
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            tag == "*" || etags.iter().any(|e| e.as_bytes() == tag.as_bytes())
        })
}

/// The delta body `{"items":[...],"cursor":C,"full":false}`.
pub(super) fn delta_json(items: &[RevocationEntry], cursor: u64) -> Result<Bytes, Error> {
    serde_json::to_vec(&Delta {
        items,
        cursor: format_cursor(cursor),
        full: false,
    })
    .map(Bytes::from)
    .map_err(|e| Error::Internal(format!("serialize delta: {e}")))
}

/// The answer to most polls, `{"items":[],"cursor":C,"full":false}`,
/// without the serializer; the cursor as [`format_cursor`] writes it (a
/// unit test holds the two forms equal).
fn empty_delta_json(cursor: u64) -> Bytes {
    Bytes::from(format!(
        r#"{{"items":[],"cursor":"{cursor}","full":false}}"#
    ))
}

/// A strong entity tag of `body`: 128 bits of its SHA-256, quoted.
fn etag_of(body: &[u8], suffix: &str) -> HeaderValue {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    let tag = format!(
        "\"{}{suffix}\"",
        crate::hexcodec::encode(&digest.as_ref()[..16])
    );
    HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"x\""))
}

impl Bodies {
    pub(super) fn new(auth: &WalletAuth) -> Self {
        let config = auth.config();
        let max_age = config
            .key_prepublish_seconds
            .saturating_sub(config.key_reload_seconds)
            .min(JWKS_MAX_AGE);
        let jwks_cache_control =
            axum::http::HeaderValue::from_str(&format!("public, max-age={max_age}"))
                .unwrap_or_else(|_| axum::http::HeaderValue::from_static("no-cache"));
        Self {
            auth: auth.clone(),
            jwks_cache_control,
            poll: RwLock::new(None),
            empty_delta: RwLock::new(None),
        }
    }

    /// [`delta_json`] of no items at `cursor` and its `Content-Length`
    /// value, kept for the latest cursor.
    pub(super) fn empty_delta(&self, cursor: u64) -> (Bytes, HeaderValue) {
        if let Some((at, body, len)) = &*self.empty_delta.read().unwrap_or_else(|p| p.into_inner())
        {
            if *at == cursor {
                return (body.clone(), len.clone());
            }
        }
        let body = empty_delta_json(cursor);
        let len = HeaderValue::from(body.len());
        *self.empty_delta.write().unwrap_or_else(|p| p.into_inner()) =
            Some((cursor, body.clone(), len.clone()));
        (body, len)
    }

    /// The `Cache-Control` value of `/jwks`.
    pub(super) fn jwks_cache_control(&self) -> axum::http::HeaderValue {
        self.jwks_cache_control.clone()
    }

    /// The JWKS document, `{"keys": [...]}`.
    pub(super) fn jwks(&self) -> Result<Bytes, Error> {
        let body = self.auth.inner.tokens.jwks_body();
        if body.is_empty() {
            return Err(Error::Internal("the JWKS did not serialize".into()));
        }
        Ok(body)
    }

    /// The `/revoked-jtis` body, `{"items": [...], "cursor", "full"}`.
    #[cfg(test)]
    pub(super) async fn revoked_jtis_json(&self, auth: &WalletAuth) -> Result<Bytes, Error> {
        Ok(self.poll(auth).await?.json.clone())
    }

    /// The current full-list body (rebuilt when out of date).
    pub(super) async fn revoked_jtis(&self, auth: &WalletAuth) -> Result<Arc<PollBody>, Error> {
        self.poll(auth).await
    }

    /// The `/revoked-jtis` body gzip-compressed (`Content-Encoding: gzip`),
    /// for clients that send `Accept-Encoding: gzip`, as pico-client-auth's
    /// httpx does.
    #[cfg(test)]
    pub(super) async fn revoked_jtis_gzip(&self, auth: &WalletAuth) -> Result<Bytes, Error> {
        let poll = self.poll(auth).await?;
        Self::gzip_of(auth, &poll).await
    }

    /// The gzip representation of `poll`, made once.
    pub(super) async fn gzip_of(auth: &WalletAuth, poll: &PollBody) -> Result<Bytes, Error> {
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
        let json = serde_json::to_vec(&Full {
            items: list.items().collect(),
            cursor: format_cursor(list.cursor.unwrap_or(0)),
            full: true,
        })
        .map_err(|e| Error::Internal(format!("serialize denylist: {e}")))?;
        let poll = Arc::new(PollBody {
            version: list.version,
            valid_until: list.valid_until,
            etag: etag_of(&json, ""),
            etag_gzip: etag_of(&json, "-gzip"),
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

    use super::{delta_json, empty_delta_json, format_cursor, Bodies, Delta};

    use crate::clock::{Clock, ManualClock};
    use crate::{AccessClaims, AuthConfig, SigningKey, WalletAuth};

    #[test]
    fn the_empty_delta_is_what_the_serializer_writes() {
        for cursor in [0, 7, u64::MAX] {
            let by_serde = serde_json::to_vec(&Delta {
                items: &[],
                cursor: format_cursor(cursor),
                full: false,
            })
            .unwrap();
            assert_eq!(empty_delta_json(cursor), by_serde);
            assert_eq!(delta_json(&[], cursor).unwrap(), by_serde);
        }
    }

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
    fn cursors_are_decimal_and_anything_else_is_unknown() {
        use super::{format_cursor, parse_cursor};
        assert_eq!(
            parse_cursor(&format_cursor(1_764_000_000_000_123)),
            Some(1_764_000_000_000_123)
        );
        assert_eq!(parse_cursor("0"), Some(0));
        for bad in ["", "-1", "1.5", "abc", " 1", "99999999999999999999", "1%20"] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn if_none_match_names_either_tag_or_any() {
        use super::none_match;
        use axum::http::{HeaderMap, HeaderValue};
        let (a, b) = (
            HeaderValue::from_static("\"aa\""),
            HeaderValue::from_static("\"aa-gzip\""),
        );
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("if-none-match", HeaderValue::from_static(v));
            none_match(&h, [&a, &b])
        };
        assert!(with("\"aa\""));
        assert!(with("\"zz\", W/\"aa-gzip\""));
        assert!(with("*"));
        assert!(!with("\"a\""));
        assert!(!with("aa"));
        assert!(!none_match(&HeaderMap::new(), [&a, &b]));
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
