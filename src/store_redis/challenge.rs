//! Challenges in Redis: one string key per address with a native TTL,
//! consumed by one `GETDEL`.

use std::time::Duration;

use ::redis::aio::ConnectionManager;
use async_trait::async_trait;

use super::{timed, RedisOptions};
use crate::challenge::{address_key, new_nonce, nonce_eq, ChallengeStore};
use crate::StoreError;

/// Challenges shared by every instance using the same Redis and key prefix.
///
/// - Key `{prefix}ch:{hex sha256(address)}`, value the nonce, set with
///   `SET .. PX ttl`: replacing an earlier challenge is the `SET`, expiry is
///   Redis's.
/// - `consume` is one `GETDEL`: of any number of concurrent calls, on any
///   instances, exactly one gets the value; the comparison happens after, in
///   constant time, and the challenge is burned either way.
/// - `challenge_max_outstanding` is not counted here: each challenge lives at
///   most `challenge_ttl_seconds`, and the bound on their number is Redis's
///   `maxmemory`. Use `maxmemory-policy volatile-ttl`: only challenges carry a
///   TTL, so they are evicted first and the denylist never is.
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

    /// The Redis key of `address`'s challenge.
    pub fn key(&self, address: &str) -> String {
        format!(
            "{}ch:{}",
            self.prefix,
            crate::hexcodec::encode(&address_key(address))
        )
    }
}

#[async_trait]
impl ChallengeStore for RedisChallengeStore {
    async fn issue(&self, address: &str, ttl: Duration) -> Result<String, StoreError> {
        let nonce = new_nonce();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut conn = self.conn.clone();
        timed(
            self.op_timeout,
            ::redis::cmd("SET")
                .arg(self.key(address))
                .arg(&nonce)
                .arg("PX")
                .arg(ms)
                .query_async::<()>(&mut conn),
        )
        .await?;
        Ok(nonce)
    }

    async fn consume(&self, address: &str, nonce: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        // GETDEL is the atomic step; never a GET followed by a DEL.
        let stored: Option<String> = timed(
            self.op_timeout,
            ::redis::cmd("GETDEL")
                .arg(self.key(address))
                .query_async(&mut conn),
        )
        .await?;
        // Only lowercase hex was issued; nonce_eq compares in constant time.
        Ok(stored.is_some_and(|s| nonce_eq(&s, nonce)))
    }
}
