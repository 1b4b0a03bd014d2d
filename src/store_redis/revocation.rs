//! The denylist in Redis, answered from a local copy kept fresh by a change
//! feed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::clock::SharedClock;

use ::redis::aio::ConnectionManager;
use ::redis::streams::{StreamRangeReply, StreamReadReply};
use ::redis::Script;
use async_trait::async_trait;
use tokio::sync::oneshot;

use super::{timed, RedisOptions};
use crate::revocation::{FeedRead, MemoryRevocationStore, RevocationEntry, RevocationStore};
use crate::StoreError;

/// Insert-if-absent, the expiry index and `XADD` in one atomic step: the
/// first live entry for a jti wins on every instance (an expired one counts
/// as absent), and the feed carries each new entry exactly once. Then up to
/// [`PURGE_ON_WRITE`] expired entries are deleted, so that Redis stays
/// bounded by the live entries even when no instance runs the purge.
///
/// A served entry (an operator revocation) also takes the next number of
/// the shared sequence (`INCR`), indexed in the sequence set and carried by
/// its feed entry as `seq`: since the script is atomic, feed order is
/// number order, and served entries are numbered without gaps.
///
/// KEYS: hash, feed, expiry index, sequence counter, sequence set. ARGV:
/// jti, entry JSON, feed cap, `exp` (empty when none), now (epoch seconds),
/// purge limit, `1` for a served entry.
const REVOKE: &str = r"
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then
  local ok, e = pcall(cjson.decode, existing)
  local exp = nil
  if ok and type(e) == 'table' then exp = tonumber(e['exp']) end
  if not (exp and exp <= tonumber(ARGV[5])) then
    local s = redis.call('ZSCORE', KEYS[5], ARGV[1])
    return {0, existing, tonumber(s or '0')}
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
else
  redis.call('ZREM', KEYS[3], ARGV[1])
end
local seq = 0
if ARGV[7] == '1' then
  seq = redis.call('INCR', KEYS[4])
  redis.call('ZADD', KEYS[5], seq, ARGV[1])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'entry', ARGV[2], 'seq', seq)
else
  redis.call('ZREM', KEYS[5], ARGV[1])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'entry', ARGV[2])
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[5], 'LIMIT', 0, tonumber(ARGV[6]))
for _, j in ipairs(dead) do
  if j ~= ARGV[1] then
    redis.call('HDEL', KEYS[1], j)
    redis.call('ZREM', KEYS[3], j)
    redis.call('ZREM', KEYS[5], j)
  end
end
return {1, ARGV[2], seq}
";

/// Deletes up to ARGV[2] entries whose `exp` (their score in the expiry
/// index) is at or before ARGV[1]; returns how many. KEYS: hash, index,
/// sequence set.
const PURGE: &str = r"
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, j in ipairs(dead) do
  redis.call('HDEL', KEYS[1], j)
  redis.call('ZREM', KEYS[2], j)
  redis.call('ZREM', KEYS[3], j)
end
return #dead
";

/// Expired entries each insert deletes on the way.
const PURGE_ON_WRITE: usize = 8;

/// Expired entries one purge step deletes.
const PURGE_BATCH: usize = 1000;

/// Most purge steps of one [`RedisRevocationStore::purge_expired`].
const PURGE_MAX_STEPS: usize = 100;

/// How many feed entries one `XREAD` may return.
const FEED_BATCH: usize = 1000;

/// Pause after a failed feed read before trying again.
const FEED_RETRY: Duration = Duration::from_millis(200);

struct Shared {
    local: MemoryRevocationStore,
    clock: SharedClock,
    /// Clock time (epoch milliseconds) up to which the local copy is known
    /// to hold every entry Redis acknowledged.
    synced_ms: AtomicU64,
    max_staleness: Duration,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.clock.now_millis()
    }

    fn mark_synced(&self, as_of_ms: u64) {
        self.synced_ms.fetch_max(as_of_ms, Ordering::AcqRel);
    }

    fn check_fresh(&self) -> Result<(), StoreError> {
        let age = self
            .now_ms()
            .saturating_sub(self.synced_ms.load(Ordering::Acquire));
        if u128::from(age) > self.max_staleness.as_millis() {
            return Err(StoreError::Unavailable(format!(
                "redis: denylist not confirmed in sync for {age} ms"
            )));
        }
        Ok(())
    }

    /// Adds entries missing locally (each with its feed number, when it
    /// has one), oldest first, except expired ones. Only the purge removes
    /// entries: keeping a revocation Redis lost is the safe side. The feed
    /// does not move here (see [`Shared::advance`]).
    fn apply(&self, entries: impl IntoIterator<Item = (RevocationEntry, Option<u64>)>) {
        let now = self.clock.now_secs();
        for (e, seq) in entries {
            if !e.is_expired(now) {
                self.local.insert_at(e, seq.filter(|&s| s > 0));
            }
        }
    }
}

/// The denylist shared by every instance using the same Redis and key prefix.
///
/// - `revoke` and `try_insert` run one Lua script: `HSET {prefix}revoked
///   jti entry` unless a live entry for the jti is present, `ZADD
///   {prefix}revoked:exp exp jti` when the entry has an `exp`, and then
///   `XADD {prefix}revocations`. `Ok` means Redis acknowledged it; how
///   durable that is depends on Redis's `appendfsync` (see the README).
/// - Expiry: Redis 7.0 has no per-field TTL in a hash (`HEXPIRE` came with
///   7.4), so each entry's `exp` is its score in the index
///   `{prefix}revoked:exp`; [`purge_expired`](RevocationStore::purge_expired)
///   deletes the entries due (and every insert deletes a few on the way),
///   and each instance drops them from its copy. Entries without `exp`
///   stay. Bookkeeping entries are stored without their subject.
/// - `get`, `list` and `version` answer from a local copy
///   ([`MemoryRevocationStore`]), never a round trip per entry. A background
///   task keeps it fresh: it tails the feed with `XREAD BLOCK feed_block`,
///   which wakes as soon as any instance revokes, and reloads the whole hash
///   every `resync_interval` and after any feed error.
/// - When the copy has not been confirmed in sync for `max_staleness` (by
///   the crate's [`Clock`](crate::clock::Clock), so tests can move it),
///   `get` and `list` answer [`StoreError::Unavailable`]: callers fail closed. The
///   worst-case delay between a revoke acknowledged at one instance and its
///   effect at another is therefore `max_staleness`.
/// - The task stops when the store is dropped.
pub struct RedisRevocationStore {
    shared: Arc<Shared>,
    conn: ConnectionManager,
    script: Script,
    purge: Script,
    hash_key: String,
    feed_key: String,
    expiry_key: String,
    keys: SeqKeys,
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
        clock: SharedClock,
    ) -> Result<Self, StoreError> {
        let hash_key = format!("{}revoked", options.key_prefix);
        let feed_key = format!("{}revocations", options.key_prefix);
        let expiry_key = format!("{}revoked:exp", options.key_prefix);
        let keys = SeqKeys {
            counter: format!("{}revoked:seq", options.key_prefix),
            set: format!("{}revoked:seqs", options.key_prefix),
        };
        let shared = Arc::new(Shared {
            local: MemoryRevocationStore::indexed(Arc::clone(&clock)),
            clock,
            synced_ms: AtomicU64::new(0),
            max_staleness: options.max_staleness,
        });
        let mut first = conn.clone();
        let sent = shared.now_ms();
        let sync = full_sync(&mut first, &hash_key, &feed_key, &keys, options.op_timeout).await?;
        let entries: Vec<RevocationEntry> = sync.entries.iter().map(|(e, _)| e.clone()).collect();
        index_expiries(&mut first, &expiry_key, &entries, options.op_timeout).await?;
        let cursor = sync.cursor.clone();
        shared.install(sync);
        shared.mark_synced(sent);
        let (stop, stopped) = oneshot::channel();
        let feed = Feed {
            shared: Arc::downgrade(&shared),
            conn: feed_conn,
            hash_key: hash_key.clone(),
            feed_key: feed_key.clone(),
            keys: keys.clone(),
            options: options.clone(),
            cursor,
        };
        tokio::spawn(feed.run(stopped));
        Ok(Self {
            shared,
            conn,
            script: Script::new(REVOKE),
            purge: Script::new(PURGE),
            hash_key,
            feed_key,
            expiry_key,
            keys,
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

    /// The one atomic insert: the stored entry and whether this call
    /// created it.
    async fn insert(&self, entry: &RevocationEntry) -> Result<(RevocationEntry, bool), StoreError> {
        let line = entry.to_line()?;
        let exp = entry.exp.map(|e| e.to_string()).unwrap_or_default();
        let mut conn = self.conn.clone();
        let served = if entry.kind.is_served() { "1" } else { "0" };
        let (created, stored, seq): (i64, Vec<u8>, u64) = timed(
            self.options.op_timeout,
            self.script
                .key(&self.hash_key)
                .key(&self.feed_key)
                .key(&self.expiry_key)
                .key(&self.keys.counter)
                .key(&self.keys.set)
                .arg(&entry.jti)
                .arg(line)
                .arg(self.options.feed_max_len.max(1))
                .arg(exp)
                .arg(self.shared.clock.now_secs())
                .arg(PURGE_ON_WRITE)
                .arg(served)
                .invoke_async(&mut conn),
        )
        .await?;
        let stored: RevocationEntry =
            serde_json::from_slice(&stored).map_err(|e| StoreError::Backend(Box::new(e)))?;
        // Read your own writes: this instance sees it before the feed says
        // so (the feed's position moves when the feed task reads it, in
        // order with the other instances' entries).
        self.shared.apply([(stored.clone(), Some(seq))]);
        Ok((stored, created == 1))
    }
}

/// Indexes the `exp` of entries written before the index existed (a no-op
/// for entries already in it), so that they expire too.
async fn index_expiries(
    conn: &mut ConnectionManager,
    expiry_key: &str,
    entries: &[RevocationEntry],
    limit: Duration,
) -> Result<(), StoreError> {
    let with_exp: Vec<(u64, &str)> = entries
        .iter()
        .filter_map(|e| e.exp.map(|exp| (exp, e.jti.as_str())))
        .collect();
    for chunk in with_exp.chunks(500) {
        let mut cmd = ::redis::cmd("ZADD");
        cmd.arg(expiry_key).arg("NX");
        for (exp, jti) in chunk {
            cmd.arg(*exp).arg(*jti);
        }
        let _: i64 = timed(limit, cmd.query_async(conn)).await?;
    }
    Ok(())
}

#[async_trait]
impl RevocationStore for RedisRevocationStore {
    async fn ready(&self) -> Result<(), StoreError> {
        super::ping(&self.conn, self.options.op_timeout).await
    }

    async fn revoke(&self, entry: RevocationEntry) -> Result<RevocationEntry, StoreError> {
        let (stored, created) = self.insert(&entry).await?;
        Ok(if created { entry } else { stored })
    }

    async fn try_insert(&self, entry: RevocationEntry) -> Result<bool, StoreError> {
        Ok(self.insert(&entry).await?.1)
    }

    async fn purge_expired(&self, now: u64) -> Result<usize, StoreError> {
        let removed = self.shared.local.purge(now);
        let mut conn = self.conn.clone();
        for _ in 0..PURGE_MAX_STEPS {
            let deleted: usize = timed(
                self.options.op_timeout,
                self.purge
                    .key(&self.hash_key)
                    .key(&self.expiry_key)
                    .key(&self.keys.set)
                    .arg(now)
                    .arg(PURGE_BATCH)
                    .invoke_async(&mut conn),
            )
            .await?;
            if deleted < PURGE_BATCH {
                break;
            }
        }
        Ok(removed)
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

    fn feed_position(&self) -> Option<u64> {
        Some(self.shared.local.position())
    }

    /// From the local copy while it is fresh. A cursor past this
    /// instance's position may come from another instance that is ahead:
    /// one `GET` of the shared counter tells a lagging instance (nothing
    /// after the cursor yet) from a cursor of another sequence (unknown).
    async fn feed_after(&self, after: u64, limit: usize) -> Result<FeedRead, StoreError> {
        self.shared.check_fresh()?;
        let local = &self.shared.local;
        if after <= local.position() {
            return Ok(local.read_feed(after, limit, false));
        }
        let mut conn = self.conn.clone();
        let counter: Option<u64> = timed(
            self.options.op_timeout,
            ::redis::cmd("GET")
                .arg(&self.keys.counter)
                .query_async(&mut conn),
        )
        .await?;
        Ok(if after <= counter.unwrap_or(0) {
            FeedRead::Changes {
                entries: Vec::new(),
                position: after,
                more: false,
            }
        } else {
            FeedRead::Unknown
        })
    }

    fn feed_watch(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.shared.local.watch_feed())
    }
}

/// The keys of the shared feed numbering.
#[derive(Debug, Clone)]
struct SeqKeys {
    /// `{prefix}revoked:seq`: the last number handed out.
    counter: String,
    /// `{prefix}revoked:seqs`: the served jtis scored by their number.
    set: String,
}

/// What one full sync read, in one transaction.
struct FullSync {
    /// The feed (stream) id the sync corresponds to.
    cursor: String,
    /// Every entry with its number (when it has one), oldest first.
    entries: Vec<(RevocationEntry, Option<u64>)>,
    /// The shared counter: every number at or below it is in `entries`
    /// (or was purged).
    counter: u64,
}

impl Shared {
    /// Applies a full sync and moves the feed to its counter.
    fn install(&self, sync: FullSync) {
        self.apply(sync.entries);
        self.local.advance_feed(sync.counter);
    }
}

/// The whole denylist, each entry's feed number, the shared counter and the
/// stream position it corresponds to, read in one transaction. Entries come
/// oldest first (by `revoked_at`, then jti).
async fn full_sync(
    conn: &mut ConnectionManager,
    hash_key: &str,
    feed_key: &str,
    keys: &SeqKeys,
    limit: Duration,
) -> Result<FullSync, StoreError> {
    let mut pipe = ::redis::pipe();
    pipe.atomic()
        .cmd("XREVRANGE")
        .arg(feed_key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .cmd("HGETALL")
        .arg(hash_key)
        .cmd("ZRANGE")
        .arg(&keys.set)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .cmd("GET")
        .arg(&keys.counter);
    #[allow(clippy::type_complexity)]
    let (last, all, seqs, counter): (
        StreamRangeReply,
        HashMap<String, String>,
        HashMap<String, u64>,
        Option<u64>,
    ) = timed(limit, pipe.query_async(conn)).await?;
    let cursor = last
        .ids
        .first()
        .map_or_else(|| "0-0".to_string(), |id| id.id.clone());
    let mut entries: Vec<(RevocationEntry, Option<u64>)> = all
        .into_iter()
        .filter_map(
            |(jti, json)| match serde_json::from_str::<RevocationEntry>(&json) {
                Ok(e) => {
                    let seq = seqs.get(&jti).copied();
                    Some((e, seq))
                }
                Err(e) => {
                    tracing::warn!(%jti, error = %e, "malformed denylist entry in redis skipped");
                    None
                }
            },
        )
        .collect();
    entries.sort_by(|(a, _), (b, _)| {
        a.revoked_at
            .total_cmp(&b.revoked_at)
            .then_with(|| a.jti.cmp(&b.jti))
    });
    Ok(FullSync {
        cursor,
        entries,
        counter: counter.unwrap_or(0),
    })
}

/// The background task that keeps one instance's copy fresh.
struct Feed {
    shared: Weak<Shared>,
    conn: ConnectionManager,
    hash_key: String,
    feed_key: String,
    keys: SeqKeys,
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
        let Some(sent) = self.shared.upgrade().map(|s| s.now_ms()) else {
            return Ok(false);
        };
        if *need_full || last_full.elapsed() >= o.resync_interval {
            let sync = full_sync(
                &mut self.conn,
                &self.hash_key,
                &self.feed_key,
                &self.keys,
                o.op_timeout,
            )
            .await?;
            let Some(shared) = self.shared.upgrade() else {
                return Ok(false);
            };
            self.cursor = sync.cursor.clone();
            shared.install(sync);
            shared.mark_synced(sent);
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
            let seq = id.get::<u64>("seq");
            match id
                .get::<String>("entry")
                .map(|json| serde_json::from_str::<RevocationEntry>(&json))
            {
                Some(Ok(e)) => shared.apply([(e, seq)]),
                _ => tracing::warn!(id = %id.id, "malformed denylist feed entry skipped"),
            }
            if let Some(seq) = seq {
                // Served entries are numbered without gaps, in feed order:
                // a gap means the feed lost entries (trimmed while this
                // instance was behind). The feed stays before the gap until
                // a full sync has every entry.
                let position = shared.local.position();
                if seq == position + 1 {
                    shared.local.advance_feed(seq);
                } else if seq > position {
                    *need_full = true;
                }
            }
            self.cursor = id.id;
        }
        if n == 0 {
            // An empty answer came after the server waited feed_block from
            // when it received the request: nothing was added before then.
            let block_ms = u64::try_from(o.feed_block.as_millis()).unwrap_or(u64::MAX);
            shared.mark_synced(sent.saturating_add(block_ms).min(shared.now_ms()));
        } else if n < FEED_BATCH {
            shared.mark_synced(sent);
        }
        Ok(true)
    }
}
