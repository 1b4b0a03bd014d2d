//! Redis-backed stores (feature `redis`), for several instances behind one
//! load balancer: [`RedisChallengeStore`], [`RedisRevocationStore`] and
//! [`RedisMintAuditStore`], all opened from one [`RedisStores`] handle.
//!
//! # Keys
//! Every key starts with [`RedisOptions::key_prefix`] (default `wallet-auth:`):
//!
//! | key | type | what |
//! |---|---|---|
//! | `{prefix}ch:{hex sha256(len, address, nonce)}` | string, TTL | one outstanding challenge (`challenge::challenge_key`); 64 bytes of key after the prefix whatever the address, no nonce stored |
//! | `{prefix}revoked` | hash | jti -> entry JSON: the denylist |
//! | `{prefix}revoked:exp` | sorted set | jti scored by its `exp`: what the purge deletes when due |
//! | `{prefix}revocations` | stream | the denylist's change feed (capped) |
//! | `{prefix}mints` | stream | the mint audit (capped) |
//!
//! # Propagation and failure
//! Each instance keeps the denylist in memory and tails the change feed with
//! `XREAD BLOCK`, which returns as soon as another instance revokes. `get`
//! and `list` answer from that copy only while it has been confirmed in sync
//! with Redis within [`RedisOptions::max_staleness`]; past it they answer
//! [`StoreError::Unavailable`] (callers fail closed). So a revoke
//! acknowledged at one instance takes effect at every other instance within
//! `max_staleness` (default 3 s) in the worst case, and within one round trip
//! in the normal case.
//!
//! Every command is bounded by [`RedisOptions::op_timeout`]; when Redis is
//! unreachable the stores answer [`StoreError::Unavailable`] and reconnect by
//! themselves when it returns.
//!
//! # TLS
//! A `rediss://` URL connects over TLS (rustls), checking Redis's certificate
//! against the system's roots, or against the CA of `redis_tls_ca_file`, and
//! presenting `redis_tls_cert_file` and `redis_tls_key_file` to a Redis that
//! asks for a client certificate: read them with [`RedisTls::from_config`]
//! and connect with [`RedisStores::connect_tls`].

mod audit;
mod challenge;
mod revocation;
mod tls;

use std::time::Duration;

use std::sync::Arc;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use self::audit::RedisMintAuditStore;
pub use self::challenge::RedisChallengeStore;
pub use self::revocation::RedisRevocationStore;
pub use self::tls::RedisTls;
use crate::clock::{SharedClock, SystemClock};
use crate::StoreError;

/// Settings of the Redis stores. Plain data with [`Default`].
#[derive(Debug, Clone, PartialEq)]
pub struct RedisOptions {
    /// Prefix of every key, so several deployments (or tests) can share one
    /// Redis. Default `wallet-auth:`.
    pub key_prefix: String,
    /// Upper bound on any one Redis command, after which the store answers
    /// [`StoreError::Unavailable`]. Default 2 s.
    pub op_timeout: Duration,
    /// How long one `XREAD BLOCK` of the denylist feed waits. Default 1 s.
    pub feed_block: Duration,
    /// How often each instance reloads the whole denylist (`HGETALL`), to
    /// repair anything the feed missed. Default 30 s.
    pub resync_interval: Duration,
    /// How long the local denylist may go without being confirmed in sync
    /// before `get`/`list` fail closed. Must exceed `feed_block`. Default 3 s.
    pub max_staleness: Duration,
    /// Approximate cap (`MAXLEN ~`) of the mint-audit stream. Default 1,000,000.
    pub mint_stream_max_len: usize,
    /// Approximate cap of the denylist change feed (the hash keeps every
    /// entry). Default 100,000.
    pub feed_max_len: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            key_prefix: "wallet-auth:".into(),
            op_timeout: Duration::from_secs(2),
            feed_block: Duration::from_secs(1),
            resync_interval: Duration::from_secs(30),
            max_staleness: Duration::from_secs(3),
            mint_stream_max_len: 1_000_000,
            feed_max_len: 100_000,
        }
    }
}

/// What Redis reports about its own persistence (`CONFIG GET appendonly
/// appendfsync`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persistence {
    /// `appendonly` is `yes`.
    pub appendonly: bool,
    /// The `appendfsync` policy: `always`, `everysec` or `no`.
    pub appendfsync: String,
}

impl Persistence {
    /// Whether an acknowledged write survives a crash of Redis (AOF with
    /// `appendfsync always`).
    pub fn survives_crash(&self) -> bool {
        self.appendonly && self.appendfsync.eq_ignore_ascii_case("always")
    }
}

/// A connection to one Redis (a multiplexed connection that reconnects by
/// itself) and the options; opens the three stores. Cheap to clone.
#[derive(Clone)]
pub struct RedisStores {
    client: ::redis::Client,
    conn: ConnectionManager,
    options: RedisOptions,
    clock: SharedClock,
}

impl std::fmt::Debug for RedisStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: not printed.
        f.debug_struct("RedisStores")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl RedisStores {
    /// Connects to `url` (`redis://[:password@]host:port[/db]`, or
    /// `rediss://` for TLS checked against the system's roots).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the URL is invalid, the options are
    /// inconsistent, or Redis cannot be reached within `op_timeout`.
    pub async fn connect(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        Self::connect_tls(url, &RedisTls::default(), options).await
    }

    /// Connects to a `rediss://` `url` with the CA and client certificate of
    /// `tls` (see [`RedisTls::from_config`]); with a default `tls`, the same
    /// as [`connect`](Self::connect).
    ///
    /// # Errors
    /// As [`connect`](Self::connect); also when `tls` is set and `url` is not
    /// `rediss://`, and when the TLS handshake fails (a certificate that does
    /// not chain to the CA or does not name the host; a Redis that wants a
    /// client certificate and gets none or one it does not trust).
    pub async fn connect_tls(
        url: &str,
        tls: &RedisTls,
        options: RedisOptions,
    ) -> Result<Self, StoreError> {
        if options.max_staleness <= options.feed_block {
            return Err(StoreError::Unavailable(
                "redis: max_staleness must exceed feed_block".into(),
            ));
        }
        self::tls::install_provider();
        let client = if tls.is_default() {
            ::redis::Client::open(url)
        } else {
            ::redis::Client::build_with_tls(url, tls.certificates())
        }
        .map_err(|e| StoreError::Unavailable(format!("redis url: {e}")))?;
        let conn = manager(&client, &options, options.op_timeout).await?;
        Ok(Self {
            client,
            conn,
            options,
            clock: Arc::new(SystemClock),
        })
    }

    /// Reads time from `clock` (the denylist's staleness bound and expiry;
    /// tests pass a manual clock). Stores opened afterwards use it.
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The options in force.
    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// The challenge store on this connection.
    pub fn challenges(&self) -> RedisChallengeStore {
        RedisChallengeStore::new(self.conn.clone(), &self.options)
    }

    /// The denylist: loads it from Redis, then keeps the local copy fresh
    /// from a background task that stops when the store is dropped.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the first load fails.
    pub async fn revocations(&self) -> Result<RedisRevocationStore, StoreError> {
        // The feed blocks in XREAD: it gets a connection of its own, so it
        // never delays the request path's commands.
        let feed = manager(
            &self.client,
            &self.options,
            self.options.feed_block + self.options.op_timeout,
        )
        .await?;
        RedisRevocationStore::open(
            self.conn.clone(),
            feed,
            self.options.clone(),
            Arc::clone(&self.clock),
        )
        .await
    }

    /// The mint audit, serving the newest `max_in_memory` records
    /// (`mint_audit_max_in_memory`).
    pub fn mint_audit(&self, max_in_memory: usize) -> RedisMintAuditStore {
        RedisMintAuditStore::new(self.conn.clone(), &self.options, max_in_memory)
    }

    /// What Redis reports about its persistence.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when Redis cannot answer (or refuses
    /// `CONFIG GET`, as some managed services do).
    pub async fn persistence(&self) -> Result<Persistence, StoreError> {
        let mut conn = self.conn.clone();
        let got: std::collections::HashMap<String, String> = timed(
            self.options.op_timeout,
            ::redis::cmd("CONFIG")
                .arg("GET")
                .arg("append*")
                .query_async(&mut conn),
        )
        .await?;
        Ok(Persistence {
            appendonly: got.get("appendonly").is_some_and(|v| v == "yes"),
            appendfsync: got.get("appendfsync").cloned().unwrap_or_default(),
        })
    }
}

async fn manager(
    client: &::redis::Client,
    options: &RedisOptions,
    response_timeout: Duration,
) -> Result<ConnectionManager, StoreError> {
    // Few, short retries: a request waits at most op_timeout anyway, and the
    // next command after a failed reconnect starts another one.
    let config = ConnectionManagerConfig::new()
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500))
        .set_connection_timeout(Some(options.op_timeout))
        .set_response_timeout(Some(response_timeout));
    timed(
        options.op_timeout,
        ConnectionManager::new_with_config(client.clone(), config),
    )
    .await
}

/// The longest a readiness check waits for Redis's `PING` (SPEC 11:
/// Redis reachable within a bound), at most `op_timeout`.
pub const READY_PING_TIMEOUT: Duration = Duration::from_secs(1);

/// One `PING`, bounded by [`READY_PING_TIMEOUT`] (and `op_timeout`).
pub(crate) async fn ping(conn: &ConnectionManager, op_timeout: Duration) -> Result<(), StoreError> {
    let mut conn = conn.clone();
    let _: String = timed(
        op_timeout.min(READY_PING_TIMEOUT),
        ::redis::cmd("PING").query_async(&mut conn),
    )
    .await?;
    Ok(())
}

/// Runs one Redis operation bounded by `limit`; any failure is `Unavailable`.
pub(crate) async fn timed<T>(
    limit: Duration,
    op: impl std::future::Future<Output = ::redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, op).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(StoreError::Unavailable(format!("redis: {e}"))),
        Err(_) => Err(StoreError::Unavailable(format!(
            "redis: no answer within {limit:?}"
        ))),
    }
}
