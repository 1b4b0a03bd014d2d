//! Challenges in Redis: one string key per challenge with a native TTL,
//! holding its [`ChallengeMeta`], taken by one `GETDEL`.

use std::time::Duration;

use ::redis::aio::ConnectionManager;
use async_trait::async_trait;

use super::{timed, RedisOptions};
use crate::challenge::{challenge_key, parse_nonce, ChallengeMeta, ChallengeStore};
use crate::StoreError;

/// Challenges shared by every instance using the same Redis and key prefix.
///
/// - One key per challenge, `{prefix}ch:{hex challenge_key(address, nonce)}`
///   (the SHA-256 of the address and the nonce), value the 21 bytes of its
///   [`ChallengeMeta`], set with `SET .. PX ttl NX`. An address may have any
///   number outstanding; issuing one never touches another, and expiry is
///   Redis's.
/// - `take` is one `GETDEL` (Redis 6.2 or later) of the key of (address,
///   presented nonce): of any number of concurrent calls, on any instances,
///   exactly one gets the value. A nonce that was not issued to the address
///   names a key that does not exist, so it deletes nothing. Redis never
///   holds the nonce itself, only its digest, nor the message, only what
///   rebuilds it. A value written before the meta was kept (`1`) reads as a
///   challenge issued without a message.
/// - `challenge_max_outstanding` is not counted here: each challenge lives at
///   most `challenge_ttl_seconds`, the per-IP rate limit bounds how many one
///   client can have, and the bound on their number is Redis's `maxmemory`.
///   Use `maxmemory-policy volatile-ttl`: only challenges carry a TTL, so
///   they are evicted first and the denylist never is.
#[derive(Clone)]
pub struct RedisChallengeStore {
    conn: ConnectionManager,
    prefix: String,
    op_timeout: Duration,
}

impl std::fmt::Debug for RedisChallengeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisChallengeStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisChallengeStore {
    pub(super) fn new(conn: ConnectionManager, options: &RedisOptions) -> Self {
        Self {
            conn,
            prefix: options.key_prefix.clone(),
            op_timeout: options.op_timeout,
        }
    }

    /// The Redis key of the challenge `nonce` (its 32 bytes) of `address`.
    pub fn key(&self, address: &str, nonce: &[u8; 32]) -> String {
        format!(
            "{}ch:{}",
            self.prefix,
            crate::hexcodec::encode(&challenge_key(address, nonce))
        )
    }
}

#[async_trait]
impl ChallengeStore for RedisChallengeStore {
    async fn ready(&self) -> Result<(), StoreError> {
        super::ping(&self.conn, self.op_timeout).await
    }

    async fn issue_with(
        &self,
        address: &str,
        ttl: Duration,
        meta: ChallengeMeta,
    ) -> Result<String, StoreError> {
        let mut nonce = [0u8; 32];
        getrandom::fill(&mut nonce)
            .map_err(|e| StoreError::Unavailable(format!("random source: {e}")))?;
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut conn = self.conn.clone();
        // NX: a fresh 256-bit nonce never meets an existing key, and if it
        // ever did, the earlier challenge's expiry is not moved.
        let set: Option<String> = timed(
            self.op_timeout,
            ::redis::cmd("SET")
                .arg(self.key(address, &nonce))
                .arg(&meta.to_bytes()[..])
                .arg("PX")
                .arg(ms)
                .arg("NX")
                .query_async(&mut conn),
        )
        .await?;
        if set.is_none() {
            return Err(StoreError::Unavailable("challenge key collision".into()));
        }
        Ok(crate::hexcodec::encode(&nonce))
    }

    async fn take(&self, address: &str, nonce: &str) -> Result<Option<ChallengeMeta>, StoreError> {
        // Only 64 lowercase hex characters were ever issued: anything else
        // costs no round trip.
        let Some(nonce) = parse_nonce(nonce) else {
            return Ok(None);
        };
        let mut conn = self.conn.clone();
        // GETDEL is the atomic step; never a GET followed by a DEL. An
        // expired key is gone already, so a value also means "within its TTL".
        let value: Option<Vec<u8>> = timed(
            self.op_timeout,
            ::redis::cmd("GETDEL")
                .arg(self.key(address, &nonce))
                .query_async(&mut conn),
        )
        .await?;
        Ok(value.map(|v| ChallengeMeta::from_bytes(&v).unwrap_or_default()))
    }
}
