//! The denylist in Redis, answered from a local copy kept fresh by a change
//! feed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ::redis::aio::ConnectionManager;
use ::redis::streams::{StreamRangeReply, StreamReadReply};
use ::redis::Script;
use async_trait::async_trait;
use tokio::sync::oneshot;

use super::{timed, RedisOptions};
use crate::revocation::{MemoryRevocationStore, RevocationEntry, RevocationStore};
use crate::StoreError;

/// `HSETNX` and `XADD` in one atomic step: the first entry for a jti wins on
/// every instance, and the feed carries each new entry exactly once.
const REVOKE: &str = r"
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then
  return {0, existing}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'entry', ARGV[2])
return {1, ARGV[2]}
";

/// How many feed entries one `XREAD` may return.
const FEED_BATCH: usize = 1000;

/// Pause after a failed feed read before trying again.
const FEED_RETRY: Duration = Duration::from_millis(200);

struct Shared {
    local: MemoryRevocationStore,
    base: Instant,
    /// Milliseconds after `base` up to which the local copy is known to hold
    /// every entry Redis acknowledged.
    synced_ms: AtomicU64,
    max_staleness: Duration,
}

impl Shared {
    fn mark_synced(&self, as_of: Instant) {
        let ms = u64::try_from(as_of.saturating_duration_since(self.base).as_millis())
            .unwrap_or(u64::MAX);
        self.synced_ms.fetch_max(ms, Ordering::AcqRel);
    }

    fn check_fresh(&self) -> Result<(), StoreError> {
        let synced = self.base + Duration::from_millis(self.synced_ms.load(Ordering::Acquire));
        let age = Instant::now().saturating_duration_since(synced);
        if age > self.max_staleness {
            return Err(StoreError::Unavailable(format!(
                "redis: denylist not confirmed in sync for {} ms",
                age.as_millis()
            )));
        }
        Ok(())
    }

    /// Adds entries missing locally, oldest first. Entries are never removed:
    /// keeping a revocation Redis lost is the safe side.
    fn apply(&self, entries: impl IntoIterator<Item = RevocationEntry>) {
        for e in entries {
            self.local.insert_if_absent(e);
        }
    }
}

/// The denylist shared by every instance using the same Redis and key prefix.
///
/// - `revoke` runs one Lua script: `HSET {prefix}revoked jti entry` unless
///   the jti is present, and then `XADD {prefix}revocations`; it returns the
///   stored (first) entry. `Ok` means Redis acknowledged it; how durable that
///   is depends on Redis's `appendfsync` (see the README).
/// - `get`, `list` and `version` answer from a local copy
///   ([`MemoryRevocationStore`]), never a round trip per entry. A background
///   task keeps it fresh: it tails the feed with `XREAD BLOCK feed_block`,
///   which wakes as soon as any instance revokes, and reloads the whole hash
///   every `resync_interval` and after any feed error.
/// - When the copy has not been confirmed in sync for `max_staleness`, `get`
///   and `list` answer [`StoreError::Unavailable`]: callers fail closed. The
///   worst-case delay between a revoke acknowledged at one instance and its
///   effect at another is therefore `max_staleness`.
/// - The task stops when the store is dropped.
pub struct RedisRevocationStore {
    shared: Arc<Shared>,
    conn: ConnectionManager,
    script: Script,
    hash_key: String,
    feed_key: String,
    options: RedisOptions,
    _stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for RedisRevocationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRevocationStore")
            .field("hash_key", &self.hash_key)
            .field("entries", &self.shared.local.len())
            .field("version", &self.shared.local.version())
            .finish_non_exhaustive()
    }
}

impl RedisRevocationStore {
    pub(super) async fn open(
        conn: ConnectionManager,
        feed_conn: ConnectionManager,
        options: RedisOptions,
    ) -> Result<Self, StoreError> {
        let hash_key = format!("{}revoked", options.key_prefix);
        let feed_key = format!("{}revocations", options.key_prefix);
        let shared = Arc::new(Shared {
            local: MemoryRevocationStore::new(),
            base: Instant::now(),
            synced_ms: AtomicU64::new(0),
            max_staleness: options.max_staleness,
        });
        let mut first = conn.clone();
        let sent = Instant::now();
        let (cursor, entries) =
            full_sync(&mut first, &hash_key, &feed_key, options.op_timeout).await?;
        shared.apply(entries);
        shared.mark_synced(sent);
        let (stop, stopped) = oneshot::channel();
        let feed = Feed {
            shared: Arc::downgrade(&shared),
            conn: feed_conn,
            hash_key: hash_key.clone(),
            feed_key: feed_key.clone(),
            options: options.clone(),
            cursor,
        };
        tokio::spawn(feed.run(stopped));
        Ok(Self {
            shared,
            conn,
            script: Script::new(REVOKE),
            hash_key,
            feed_key,
            options,
            _stop: stop,
        })
    }

    /// How many entries the local copy holds.
    pub fn len(&self) -> usize {
        self.shared.local.len()
    }

    /// Whether the local copy is empty.
    pub fn is_empty(&self) -> bool {
        self.shared.local.is_empty()
    }
}

#[async_trait]
impl RevocationStore for RedisRevocationStore {
    async fn revoke(&self, entry: RevocationEntry) -> Result<RevocationEntry, StoreError> {
        let json = serde_json::to_string(&entry).map_err(|e| StoreError::Backend(Box::new(e)))?;
        let mut conn = self.conn.clone();
        let (_created, stored): (i64, String) = timed(
            self.options.op_timeout,
            self.script
                .key(&self.hash_key)
                .key(&self.feed_key)
                .arg(&entry.jti)
                .arg(json)
                .arg(self.options.feed_max_len.max(1))
                .invoke_async(&mut conn),
        )
        .await?;
        let stored: RevocationEntry =
            serde_json::from_str(&stored).map_err(|e| StoreError::Backend(Box::new(e)))?;
        // Read your own writes: this instance sees it before the feed says so.
        self.shared.apply([stored.clone()]);
        Ok(stored)
    }

    async fn get(&self, jti: &str) -> Result<Option<RevocationEntry>, StoreError> {
        self.shared.check_fresh()?;
        Ok(self.shared.local.lookup(jti))
    }

    async fn list(&self) -> Result<Arc<Vec<RevocationEntry>>, StoreError> {
        self.shared.check_fresh()?;
        Ok(self.shared.local.snapshot())
    }

    fn version(&self) -> u64 {
        self.shared.local.version()
    }
}

/// The whole denylist and the feed position it corresponds to, read in one
/// transaction. Entries come oldest first (by `revoked_at`, then jti).
async fn full_sync(
    conn: &mut ConnectionManager,
    hash_key: &str,
    feed_key: &str,
    limit: Duration,
) -> Result<(String, Vec<RevocationEntry>), StoreError> {
    let mut pipe = ::redis::pipe();
    pipe.atomic()
        .cmd("XREVRANGE")
        .arg(feed_key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .cmd("HGETALL")
        .arg(hash_key);
    let (last, all): (StreamRangeReply, HashMap<String, String>) =
        timed(limit, pipe.query_async(conn)).await?;
    let cursor = last
        .ids
        .first()
        .map_or_else(|| "0-0".to_string(), |id| id.id.clone());
    let mut entries: Vec<RevocationEntry> = all
        .into_iter()
        .filter_map(|(jti, json)| match serde_json::from_str(&json) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!(%jti, error = %e, "malformed denylist entry in redis skipped");
                None
            }
        })
        .collect();
    entries.sort_by(|a, b| {
        a.revoked_at
            .total_cmp(&b.revoked_at)
            .then_with(|| a.jti.cmp(&b.jti))
    });
    Ok((cursor, entries))
}

/// The background task that keeps one instance's copy fresh.
struct Feed {
    shared: Weak<Shared>,
    conn: ConnectionManager,
    hash_key: String,
    feed_key: String,
    options: RedisOptions,
    cursor: String,
}

impl Feed {
    async fn run(mut self, mut stopped: oneshot::Receiver<()>) {
        let mut last_full = Instant::now();
        let mut need_full = false;
        let mut healthy = true;
        loop {
            let step = self.step(&mut last_full, &mut need_full);
            let outcome = tokio::select! {
                _ = &mut stopped => return,
                r = step => r,
            };
            match outcome {
                Ok(true) => {
                    if !healthy {
                        tracing::info!("redis denylist feed back in sync");
                        healthy = true;
                    }
                }
                Ok(false) => return,
                Err(e) => {
                    if healthy {
                        tracing::warn!(error = %e, "redis denylist feed failed; refreshes fail closed after max_staleness");
                        healthy = false;
                    }
                    need_full = true;
                    tokio::select! {
                        _ = &mut stopped => return,
                        () = tokio::time::sleep(FEED_RETRY) => {}
                    }
                }
            }
        }
    }

    /// One full sync or one feed read. `Ok(false)` when the store is gone.
    async fn step(
        &mut self,
        last_full: &mut Instant,
        need_full: &mut bool,
    ) -> Result<bool, StoreError> {
        let o = &self.options;
        let sent = Instant::now();
        if *need_full || last_full.elapsed() >= o.resync_interval {
            let (cursor, entries) =
                full_sync(&mut self.conn, &self.hash_key, &self.feed_key, o.op_timeout).await?;
            let Some(shared) = self.shared.upgrade() else {
                return Ok(false);
            };
            shared.apply(entries);
            shared.mark_synced(sent);
            self.cursor = cursor;
            *need_full = false;
            *last_full = Instant::now();
            return Ok(true);
        }
        let block_ms = u64::try_from(o.feed_block.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let reply: Option<StreamReadReply> = timed(
            o.feed_block + o.op_timeout,
            ::redis::cmd("XREAD")
                .arg("COUNT")
                .arg(FEED_BATCH)
                .arg("BLOCK")
                .arg(block_ms)
                .arg("STREAMS")
                .arg(&self.feed_key)
                .arg(&self.cursor)
                .query_async(&mut self.conn),
        )
        .await?;
        let Some(shared) = self.shared.upgrade() else {
            return Ok(false);
        };
        let ids = reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect::<Vec<_>>())
            .unwrap_or_default();
        let n = ids.len();
        for id in ids {
            match id
                .get::<String>("entry")
                .map(|json| serde_json::from_str::<RevocationEntry>(&json))
            {
                Some(Ok(e)) => shared.apply([e]),
                _ => tracing::warn!(id = %id.id, "malformed denylist feed entry skipped"),
            }
            self.cursor = id.id;
        }
        if n == 0 {
            // An empty answer came after the server waited feed_block from
            // when it received the request: nothing was added before then.
            shared.mark_synced((sent + o.feed_block).min(Instant::now()));
        } else if n < FEED_BATCH {
            shared.mark_synced(sent);
        }
        Ok(true)
    }
}
