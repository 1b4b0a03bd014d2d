//! The mint audit in a capped Redis stream.

use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::streams::StreamRangeReply;
use async_trait::async_trait;

use super::{timed, RedisOptions};
use crate::audit::{MintAuditStore, MintRecord};
use crate::StoreError;

/// Mint records in the stream `{prefix}mints`, one entry per record (field
/// `record`, the JSON line pico-server-auth writes), trimmed with
/// `MAXLEN ~ mint_stream_max_len`. `recent` reads `XREVRANGE`, newest first,
/// at most the newest `max_in_memory`.
///
/// Each mint's records are one `MULTI`/`EXEC` transaction, awaited after the
/// token is signed: Redis batches its own writes, so the store has no group
/// commit.
#[derive(Clone)]
pub struct RedisMintAuditStore {
    conn: ConnectionManager,
    key: String,
    op_timeout: Duration,
    stream_max_len: usize,
    max_in_memory: usize,
}

impl std::fmt::Debug for RedisMintAuditStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisMintAuditStore")
            .field("key", &self.key)
            .field("max_in_memory", &self.max_in_memory)
            .finish_non_exhaustive()
    }
}

impl RedisMintAuditStore {
    pub(super) fn new(
        conn: ConnectionManager,
        options: &RedisOptions,
        max_in_memory: usize,
    ) -> Self {
        Self {
            conn,
            key: format!("{}mints", options.key_prefix),
            op_timeout: options.op_timeout,
            stream_max_len: options.mint_stream_max_len.max(1),
            max_in_memory,
        }
    }
}

#[async_trait]
impl MintAuditStore for RedisMintAuditStore {
    async fn ready(&self) -> Result<(), StoreError> {
        super::ping(&self.conn, self.op_timeout).await
    }

    async fn append(&self, records: Vec<MintRecord>) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        // One transaction, so a batch keeps its order and lands whole.
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        for r in &records {
            let json = serde_json::to_string(r).map_err(|e| StoreError::Backend(Box::new(e)))?;
            pipe.cmd("XADD")
                .arg(&self.key)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.stream_max_len)
                .arg("*")
                .arg("record")
                .arg(json)
                .ignore();
        }
        let mut conn = self.conn.clone();
        timed(self.op_timeout, pipe.query_async::<()>(&mut conn)).await
    }

    async fn recent(&self, limit: usize) -> Result<Vec<MintRecord>, StoreError> {
        let count = limit.min(self.max_in_memory);
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let reply: StreamRangeReply = timed(
            self.op_timeout,
            ::redis::cmd("XREVRANGE")
                .arg(&self.key)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(count)
                .query_async(&mut conn),
        )
        .await?;
        let mut out = Vec::with_capacity(reply.ids.len());
        for id in reply.ids {
            let Some(json) = id.get::<String>("record") else {
                tracing::warn!(id = %id.id, "mint audit entry without a record skipped");
                continue;
            };
            match serde_json::from_str(&json) {
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::warn!(id = %id.id, error = %e, "malformed mint audit entry skipped")
                }
            }
        }
        Ok(out)
    }
}
